/* The VM description: one structure, filled from a JSON document by one
 * parser.  The command line is turned into the same JSON first (main.c), so
 * flags and --config files are validated by exactly the same code.
 * Schema: schemas/vm-config.schema.json. */
#ifndef KVMM_CONFIG_H
#define KVMM_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vm_limits.h"	/* the ranges, shared with virtkvmmd */

struct json_object;

#define KVMM_MAX_CPUS VM_MAX_CPUS
#define KVMM_MIN_MEMORY VM_MIN_MEMORY
#define KVMM_MAX_MEMORY VM_MAX_MEMORY

enum serial_mode {
	SERIAL_NONE,
	SERIAL_STDIO,
	SERIAL_PTY,
	SERIAL_FILE,
	SERIAL_UNIX,
};

struct serial_config {
	enum serial_mode mode;
	char *path;		/* file: and unix: */
	/* Everything the guest writes is also appended to this file (as
	 * QEMU's chardev logfile=; nova reads it for the console log);
	 * log_append false truncates it at start. */
	char *log;
	bool log_append;
	uint64_t log_max;	/* rotate past this many bytes; 0: CHARDEV_LOG_MAX */
};

/* --disk cache=: what the host's page cache may hold and what a guest
 * FLUSH does (docs/kvmm.md). */
enum disk_cache {
	DISK_CACHE_WRITEBACK,	/* buffered, FLUSH = fdatasync (default) */
	DISK_CACHE_NONE,	/* O_DIRECT, FLUSH = fdatasync */
	DISK_CACHE_UNSAFE,	/* buffered, FLUSH does nothing */
	DISK_CACHE_WRITETHROUGH,	/* buffered, O_DSYNC: a write is durable when done */
	DISK_CACHE_DIRECTSYNC,	/* O_DIRECT and O_DSYNC */
};

/* --disk error_policy= (writes and flushes) and rerror_policy= (reads):
 * what a host I/O error does, as QEMU's werror/rerror (docs/kvmm.md).
 * DEFAULT is enospace for writes, report for reads, as QEMU's. */
enum disk_error_policy {
	DISK_ERROR_DEFAULT,
	DISK_ERROR_REPORT,	/* the guest's request fails */
	DISK_ERROR_IGNORE,	/* the guest's request succeeds */
	DISK_ERROR_STOP,	/* the VM pauses; resuming retries the request */
	DISK_ERROR_ENOSPACE,	/* stop on ENOSPC, report otherwise */
};

/* --disk format=: how the image maps the disk (never probed). */
enum disk_format {
	DISK_FORMAT_RAW,
	DISK_FORMAT_QCOW2,
};

#define KVMM_MAX_DISKS		VM_MAX_DISKS
#define KVMM_MAX_BACKING	16	/* backing files below one disk image */
#define KVMM_DISK_SERIAL_MAX	VM_DISK_SERIAL_MAX	/* virtio-blk GET_ID */

struct disk_config {
	char *path;
	bool readonly;
	enum disk_cache cache;
	enum disk_error_policy werror, rerror;
	char *serial;		/* NULL: GET_ID answers an empty string */
	unsigned int blk_size;	/* logical block: 512 (default) to 4096 */
	bool shareable;		/* other VMs may use the image at once: no exclusive lock */
	enum disk_format format;
	/* The backing chain the image may use, top's backing first: an
	 * image naming any other file is refused. */
	char *backing[KVMM_MAX_BACKING];
	enum disk_format backing_format[KVMM_MAX_BACKING];
	unsigned int nbacking, nbacking_format;
	/* The image already open (device-add's fdname), owned here; path
	 * only names it. */
	bool has_fd;
	int fd;
};

#define KVMM_MAX_NETS		VM_MAX_NETS

/* --net: a virtio-net NIC on a tap device, named (kvmm opens it, and
 * creates it if it does not exist) or already open (fd=N). */
struct net_config {
	char *tap;		/* NULL with fd */
	int fd;			/* -1 with tap */
	bool has_mac;		/* else the device picks 52:54:00:xx:xx:xx */
	uint8_t mac[6];
	unsigned int mtu;	/* 0: not given; else told to the guest (VIRTIO_NET_F_MTU) */
};

#define KVMM_NET_MTU_MIN	VM_NET_MTU_MIN
#define KVMM_NET_MTU_MAX	VM_NET_MTU_MAX

/* "smbios": the strings of SMBIOS structures types 0 to 3 and 11 the guest
 * finds in its tables (arch/x86/smbios.c).  Fields are indexed by the
 * names in smbios_field_names; NULL: not given. */
enum smbios_group { SMBIOS_BIOS, SMBIOS_SYSTEM, SMBIOS_BASEBOARD, SMBIOS_CHASSIS,
		    SMBIOS_GROUPS };
#define SMBIOS_MAX_FIELDS	7
#define SMBIOS_STRING_MAX	VM_SMBIOS_STRING_MAX
#define SMBIOS_MAX_OEM_STRINGS	VM_SMBIOS_OEM_STRINGS
enum { SMBIOS_BIOS_VENDOR, SMBIOS_BIOS_VERSION, SMBIOS_BIOS_DATE, SMBIOS_BIOS_RELEASE };
enum { SMBIOS_SYS_MANUFACTURER, SMBIOS_SYS_PRODUCT, SMBIOS_SYS_VERSION, SMBIOS_SYS_SERIAL,
       SMBIOS_SYS_UUID, SMBIOS_SYS_SKU, SMBIOS_SYS_FAMILY };
enum { SMBIOS_BOARD_MANUFACTURER, SMBIOS_BOARD_PRODUCT, SMBIOS_BOARD_VERSION,
       SMBIOS_BOARD_SERIAL, SMBIOS_BOARD_ASSET, SMBIOS_BOARD_LOCATION };
enum { SMBIOS_CHASSIS_MANUFACTURER, SMBIOS_CHASSIS_VERSION, SMBIOS_CHASSIS_SERIAL,
       SMBIOS_CHASSIS_ASSET, SMBIOS_CHASSIS_SKU };
extern const char *const smbios_group_names[SMBIOS_GROUPS];
extern const char *const smbios_field_names[SMBIOS_GROUPS][SMBIOS_MAX_FIELDS + 1];

/* "hotplug": a device a saved VM had hot-added (docs/hotplug.md), plugged
 * again at its slot under its id before the restored guest runs, as the
 * stream's configuration lists it; opts are the device's keys (those of
 * device-add) for the stream of the next save. */
#define KVMM_HOTPLUG_ID_MAX	64
#define KVMM_MAX_HOTPLUG	(KVMM_MAX_DISKS + KVMM_MAX_NETS)

enum hotplug_type { HOTPLUG_BLK, HOTPLUG_NET };

struct hotplug_config {
	enum hotplug_type type;
	char id[KVMM_HOTPLUG_ID_MAX];
	unsigned int slot;
	struct disk_config disk;	/* HOTPLUG_BLK */
	struct net_config net;		/* HOTPLUG_NET */
	struct json_object *opts;
};

struct smbios_config {
	bool present;			/* "smbios" given (tables are built either way) */
	char *fields[SMBIOS_GROUPS][SMBIOS_MAX_FIELDS];
	bool has_uuid;			/* system.uuid, parsed */
	uint8_t uuid[16];		/* as written: time_low first (big-endian text order) */
	uint8_t bios_release[2];	/* bios.release "MAJOR.MINOR" */
	char *oem_strings[SMBIOS_MAX_OEM_STRINGS];
	unsigned int noem_strings;
};

/* "balloon": a virtio-balloon device (virtio/balloon.c). */
struct balloon_config {
	bool present;
	bool deflate_on_oom;		/* offer DEFLATE_ON_OOM (libvirt autodeflate) */
	bool free_page_reporting;	/* offer PAGE_REPORTING */
	unsigned int stats_period;	/* seconds between statistics; 0: not polled */
};

#define KVMM_BALLOON_MAX_PERIOD	(24 * 3600)

/* "sandbox": run confined once everything is open (sandbox.c,
 * docs/kvmm.md).  uid/gid: who kvmm becomes; names are looked up here,
 * while /etc is still reachable. */
struct sandbox_config {
	bool enabled;
	bool has_uid, has_gid;	/* else nobody / nogroup */
	unsigned int uid, gid;
	/* A forbidden system call fails with EPERM and is logged instead of
	 * killing kvmm: for finding what a new code path needs. */
	bool log;
};

struct vm_config {
	char *name;
	char *kernel;
	char *initrd;
	char *cmdline;
	uint64_t memory;	/* bytes */
	unsigned int cpus;
	/* vCPUs the guest may have with hot-added ones (docs/hotplug.md);
	 * from --cpus up; 0 in a configuration: cpus. */
	unsigned int max_cpus;
	struct serial_config serial;
	bool has_console;	/* a virtio-console ("console") ... */
	struct serial_config console;	/* ... and its host end */
	char *api_socket;
	bool no_reboot;
	bool thp;		/* guest RAM on transparent huge pages (default) */
	bool ksm;		/* guest RAM mergeable by KSM (default) */
	bool locked;		/* guest RAM locked in host memory (mlock) */
	uint64_t hugepages;	/* guest RAM on hugetlb pages of this size; 0: not */
	bool paused;		/* first boot waits for "resume" (no reset does) */
	bool rng;		/* virtio-rng fed by the host's getrandom() */
	/* KVM-PVM hosts only: stand in for what hardware virtualization
	 * would do (arch/x86/pvm_compat.c, docs/pvm-compat.md). */
	bool pvm_compat;
	struct disk_config disks[KVMM_MAX_DISKS];
	unsigned int ndisks;
	struct net_config nets[KVMM_MAX_NETS];
	unsigned int nnets;
	struct hotplug_config hotplug[KVMM_MAX_HOTPLUG];
	unsigned int nhotplug;
	/* "vcpus_present": the vCPUs a saved VM had (hot-added ones in,
	 * ejected ones out); else 0 to cpus - 1. */
	bool has_present;
	uint64_t present[4];		/* bit per vCPU id below max_cpus */
	struct smbios_config smbios;
	/* fw_cfg's etc/vmcoreinfo: the guest kernel writes where its
	 * VMCOREINFO note is; kvmm reports it when the guest crashes. */
	bool vmcoreinfo;
	struct balloon_config balloon;
	struct sandbox_config sandbox;
};

/* Fills *cfg from a JSON object.  On error returns -EINVAL and writes one
 * line naming the problem and its fix into err. */
int config_from_json(struct json_object *obj, struct vm_config *cfg,
		     char *err, size_t errlen);
void config_free(struct vm_config *cfg);
/* One disk or NIC as in "disks"/"nets" (for a hot-added device; n only
 * names it in messages).  On error: -EINVAL, one line in err, nothing
 * left allocated. */
int config_disk_parse(struct json_object *v, struct disk_config *d, unsigned int n,
		      char *err, size_t errlen);
int config_net_parse(struct json_object *v, struct net_config *nc, unsigned int n,
		     char *err, size_t errlen);
void config_disk_free(struct disk_config *d);
/* Whether vCPU id is there when the VM is built ("vcpus_present", else
 * the boot set). */
bool config_cpu_present(const struct vm_config *cfg, unsigned int id);
void config_net_free(struct net_config *nc);
const char *serial_mode_name(enum serial_mode mode);
const char *disk_cache_name(enum disk_cache cache);
const char *disk_error_policy_name(enum disk_error_policy p);
const char *disk_format_name(enum disk_format format);

#endif
