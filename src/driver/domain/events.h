/* Domain events: the callbacks clients register (per connection, with
 * an optional domain filter) and the event messages sent to them when a
 * domain is defined, undefined, renamed or its metadata changes.
 *
 * Handlers run on worker threads; one lock covers the callbacks, and an
 * event is queued on every interested client before the handler that
 * caused it returns, so a client sees the events of one domain in the
 * order they happened. */
#ifndef KVMM_DRV_EVENTS_H
#define KVMM_DRV_EVENTS_H

#include "domain.h"
#include "rpc/dispatch.h"

/* Forgets every callback of CONN (its client is going away). */
void events_conn_gone(struct rpc_conn *conn);

/* A lifecycle event (VIR_DOMAIN_EVENT_*, with its detail) for the domain
 * NAME/UUID/ID; the explicit name lets a rename announce the old one. */
void events_lifecycle(const char *name, const unsigned char uuid[16], int id, int event,
		      int detail);

/* The same for OBJ as it is now. */
void events_lifecycle_obj(struct domain_obj *obj, int event, int detail);

/* VIR_DOMAIN_EVENT_ID_METADATA_CHANGE: TYPE is VIR_DOMAIN_METADATA_*,
 * NSURI the namespace of element metadata (NULL otherwise). */
void events_metadata_change(struct domain_obj *obj, int type, const char *nsuri);
/* VIR_DOMAIN_EVENT_ID_MIGRATION_ITERATION: a live migration of OBJ
 * begins its memory round ITERATION (from 1). */
void events_migration_iteration(struct domain_obj *obj, int iteration);

/* VIR_DOMAIN_EVENT_ID_REBOOT: the guest of OBJ was reset (by itself,
 * virsh reset or reboot). */
void events_reboot(struct domain_obj *obj);

/* VIR_DOMAIN_EVENT_ID_CONTROL_ERROR: the daemon lost control of OBJ's
 * kvmm, which still runs (a command timed out, or the control socket
 * broke). */
void events_control_error(struct domain_obj *obj);

/* The guest's balloon changed: it now keeps ACTUAL_KIB (event ID 13, as
 * libvirt's qemu driver raises it when the guest's actual changes). */
void events_balloon_change(struct domain_obj *obj, unsigned long long actual_kib);

/* A disk of OBJ met a host I/O error: VIR_DOMAIN_EVENT_ID_IO_ERROR and
 * IO_ERROR_REASON (IDs 4 and 6) with its source PATH, its name DEV, the
 * ACTION taken (VIR_DOMAIN_EVENT_IO_ERROR_*) and REASON ("enospc" or
 * ""), as libvirt's qemu driver raises them. */
void events_io_error(struct domain_obj *obj, const char *path, const char *dev, int action,
		     const char *reason);

/* Hotplug: a device of OBJ with alias ALIAS was added (ID 19), removed
 * once the guest gave it back (ID 15), or its removal failed (ID 22). */
void events_device_added(struct domain_obj *obj, const char *alias);
void events_device_removed(struct domain_obj *obj, const char *alias);
void events_device_removal_failed(struct domain_obj *obj, const char *alias);

#endif
