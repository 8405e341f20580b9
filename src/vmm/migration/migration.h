/* Save and restore of a whole VM through the state stream
 * (docs/state-stream.md): vCPUs, in-kernel irqchip, PIT, kvmclock, every
 * device's record and guest memory.  Errors are -errno with one line in
 * err naming the problem. */
#ifndef KVMM_MIGRATION_H
#define KVMM_MIGRATION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "stream.h"

struct vm;
struct vm_config;
struct json_object;

struct save_result {
	uint64_t bytes;		/* stream size */
	uint64_t pages;		/* guest pages written */
	uint64_t ns;		/* time taken */
};

/* Writes the paused VM to fd. */
int migration_save(struct vm *vm, int fd, struct save_result *res,
		   char *err, size_t errlen);
/* The configuration a stream carries: the one the VM started with, its
 * hot-added devices and present vCPUs as they are now (malloc'd; NULL:
 * out of memory).  Main thread: device and vCPU hotplug change it. */
char *migration_stream_config(struct vm *vm);
/* The parts of a stream save and live migration share: header, CONFIG
 * (config, from migration_stream_config) and LAYOUT; then, of a
 * paused VM, vCPUs, irqchip, PIT, clock, devices, the MEMORY section
 * with the pages pages() names (a malloc'd bitmap, called after the
 * devices' save hooks) and END. */
int migration_write_prologue(struct vm *vm, struct stream_writer *w, const char *config,
			     char *err, size_t errlen);
int migration_write_state(struct vm *vm, struct stream_writer *w,
			  uint8_t *(*pages)(struct vm *vm, void *opaque, uint64_t *count),
			  void *opaque, uint64_t *npages, char *err, size_t errlen);
/* The same for a post-copy switchover: in the memory section's place a
 * POSTCOPY section with the bitmap pages() gives (the pages the
 * destination then waits for), then END. */
int migration_write_state_postcopy(struct vm *vm, struct stream_writer *w,
				   uint8_t *(*pages)(struct vm *vm, void *opaque, uint64_t *count),
				   void *opaque, char *err, size_t errlen);
/* Pages the guest touched (resident, swapped, or mapped by a restore),
 * less all-zero ones: a malloc'd bitmap, *count of them set. */
uint8_t *migration_touched_pages(struct vm *vm, uint64_t *count);

/* Writes path.new, fsyncs it and renames it to path; on any failure the
 * partial file is removed. */
int migration_save_file(struct vm *vm, const char *path, struct save_result *res,
			char *err, size_t errlen);

/* Writes to fd, a file or a pipe already open (the control socket's
 * save with fdname), and fsyncs it if it is a file; the caller closes
 * it.  A failure leaves what was written: the sender removes it. */
int migration_save_fd(struct vm *vm, int fd, struct save_result *res,
		      char *err, size_t errlen);

struct restore {
	int fd;
	struct stream_reader r;
	char *config_json;	/* the stream's VM configuration */
	uint64_t mem_size;
	unsigned int nregions;
	uint64_t region_gpa[2], region_size[2];
	/* A section header read ahead (the one after the PAGES sections). */
	struct stream_section_hdr next;
	bool have_next;
	/* now_ns() when a live migration's state began to arrive (the
	 * source paused), for the downtime's share on this side. */
	uint64_t state_ns;
};

/* Opens the stream and reads its header, configuration and layout. */
int migration_restore_open(struct restore *rs, const char *path, char *err, size_t errlen);
/* The same over fd, already open (kvmm --incoming's connection, or a
 * descriptor it inherited), named name in messages; rs owns fd from
 * here, failure or not. */
int migration_restore_open_fd(struct restore *rs, int fd, const char *name,
			      char *err, size_t errlen);
/* The guest-visible parts of the configuration must be the stream's:
 * only host-side paths may differ. */
int migration_check_config(const struct vm_config *stream, const struct vm_config *cfg,
			   char *err, size_t errlen);
/* The restored VM's configuration: the stream's with overrides (the
 * command line's, host-side only) laid over it, into *cfg; its JSON in
 * *json_out (malloc'd).  overrides' "paused" decides how it starts. */
int migration_restore_config(struct restore *rs, struct json_object *overrides,
			     struct vm_config *cfg, char **json_out,
			     char *err, size_t errlen);
/* Loads the rest into a VM created from that configuration (vCPUs and
 * devices created, no vCPU run yet) and maps its memory. */
int migration_restore_load(struct restore *rs, struct vm *vm, char *err, size_t errlen);
void migration_restore_close(struct restore *rs);

/* Migration URIs (uri.c): tcp:HOST:PORT, unix:PATH, fd:N.  The
 * destination's end: listens, accepts one connection and returns it
 * (fd:N: the descriptor itself); the source's: connects.  A descriptor
 * or -errno with err set. */
int migration_listen(const char *uri, char *err, size_t errlen);
int migration_connect(const char *uri, char *err, size_t errlen);
/* fd:N's descriptor, -ENOENT if uri is not fd:N, -EBADF if N is not
 * open for reading. */
int migration_uri_fd(const char *uri, char *err, size_t errlen);

#endif
