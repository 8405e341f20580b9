/* A domain snapshot's XML (libvirt's <domainsnapshot>, formatsnapshot.rst):
 * parsed from what a client sends (create, redefine) or from the daemon's
 * own metadata files, and formatted back as libvirt's snapshot-dumpxml
 * shows it.  Pure: no I/O, no daemon state. */
#ifndef KVMM_SNAPSHOT_CONF_H
#define KVMM_SNAPSHOT_CONF_H

#include <stdbool.h>
#include <stddef.h>

/* <memory snapshot=> and <disk snapshot=>: absent, or one of libvirt's. */
enum snapshot_location { SNAP_LOC_DEFAULT, SNAP_LOC_NO, SNAP_LOC_INTERNAL, SNAP_LOC_EXTERNAL,
			 SNAP_LOC_MANUAL };

struct snapshot_disk {
	char *name;		/* the disk's target (vda) */
	int snapshot;		/* snapshot_location */
	char *file;		/* external: the overlay made for it */
	char *driver;		/* <driver type=>, NULL when not given */
};

struct snapshot_def {
	char *name;
	char *description;
	char *state;		/* libvirt's snapshot state: running, paused,
				 * shutoff, disk-snapshot; NULL when not given */
	char *parent;		/* NULL for a root */
	long long creation;	/* creationTime, seconds; 0 when not given */
	int memory;		/* snapshot_location */
	char *memory_file;	/* external memory: the state stream */
	struct snapshot_disk *disks; size_t ndisks;
	char *domain_xml;	/* the domain as it was, <domain> element */
	bool current;		/* metadata files only: <active>1</active> */
};

/* Parses XML; INTERNAL: a metadata file of ours (its <active> read).
 * NULL after reporting VIR_ERR_XML_ERROR (not well-formed, not a
 * <domainsnapshot>) or VIR_ERR_XML_DETAIL (a value we do not know). */
struct snapshot_def *snapshot_def_parse(const char *xml, bool internal);
void snapshot_def_free(struct snapshot_def *def);

/* libvirt's layout; INTERNAL adds <active>.  g_malloc'ed. */
char *snapshot_def_format(const struct snapshot_def *def, bool internal);

const char *snapshot_location_name(int loc);

#endif
