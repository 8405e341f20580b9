/* The kvmm control socket (--api-socket): newline-delimited JSON.
 * Commands get replies; state changes are broadcast as events.  The
 * protocol is described by schemas/api.schema.json and docs/api.md. */
#ifndef KVMM_API_H
#define KVMM_API_H

#include "vm.h"

#define KVMM_API_VERSION 1

struct api;

/* Listens on path; -errno (and a message) if it cannot. */
int api_open(struct vm *vm, const char *path, struct api **out);
void api_close(struct api *api);

/* Event broadcasts; api may be NULL (no control socket). */
void api_event_state(struct api *api, struct vm *vm, enum vm_reason reason);
void api_event_reset(struct api *api, struct vm *vm);
/* "device-deleted" (a hot-added device's removal completed). */
void api_event_device(struct api *api, const char *event, const char *id,
		      unsigned int slot);
/* "cpu-deleted" (the guest ejected a vCPU). */
void api_event_cpu(struct api *api, const char *event, unsigned int id);
void api_event_block_io_error(struct api *api, const struct vm_io_error *e);
/* "migration-status": a live migration's status changed (error: why it
 * failed, or NULL). */
void api_event_migration(struct api *api, const char *status, const char *error);

#endif
