/* Save and restore of a whole VM through the state stream
 * (docs/state-stream.md): vCPUs, in-kernel irqchip, PIT, kvmclock, every
 * device's record and guest memory.  Errors are -errno with one line in
 * err naming the problem. */
#ifndef KVMM_MIGRATION_H
#define KVMM_MIGRATION_H

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
};

/* Opens the stream and reads its header, configuration and layout. */
int migration_restore_open(struct restore *rs, const char *path, char *err, size_t errlen);
/* The same from FD, already open (taken: closed by migration_restore_close),
 * read sequentially unless it is a regular file; PATH names it in messages. */
int migration_restore_open_fd(struct restore *rs, int fd, const char *path, char *err,
			      size_t errlen);
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

#endif
