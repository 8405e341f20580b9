/* The daemon's side of kvmm's control API (docs/api.md): the only file
 * in virtkvmmd that speaks it.
 *
 * A command opens its own connection to the VM's socket, reads the
 * greeting, sends one request and reads until the reply with its id
 * (events on the way are skipped), then closes.  Blocking, with a
 * deadline, so it is called from worker threads only; kvmm accepts
 * several clients, so concurrent commands need no coordination. */
#ifndef KVMM_DRV_MONITOR_H
#define KVMM_DRV_MONITOR_H

#include <json-c/json.h>

/* How long a command may take, kvmm's greeting included (virtkvmmd.conf
 * monitor_timeout); set once at start. */
void monitor_set_timeout(unsigned ms);

/* Called (from the worker) when a command fails for want of an answer --
 * a timeout, EOF, garbage, no connection -- rather than kvmm's refusal:
 * FN(path, -errno).  Whether the daemon lost control of a VM that still
 * runs is the handler's to decide. */
typedef void (*monitor_lost_fn)(const char *path, int err);
void monitor_set_lost_handler(monitor_lost_fn fn);

/* Connects to PATH and reads the greeting: a connected fd, or -errno
 * (-ENOENT/-ECONNREFUSED while kvmm is still starting). */
int monitor_connect(const char *path, int timeout_ms);

/* Runs COMMAND on the VM whose control socket is PATH.  On success, 0
 * and (when RET is not NULL) the "return" object, which the caller puts.
 * Otherwise -1 after reporting: kvmm's own error message with
 * VIR_ERR_OPERATION_INVALID for InvalidState, VIR_ERR_OPERATION_FAILED
 * for the rest, or why kvmm could not be reached. */
int monitor_command(const char *path, const char *command, json_object **ret);
/* The same with ARGS (not NULL) as the request's "arguments"; kvmm's
 * InvalidArgument becomes VIR_ERR_INVALID_ARG. */
int monitor_command_args(const char *path, const char *command, json_object *args,
			 json_object **ret);

/* An event connection on the main loop: FN(event, data, OPAQUE) for each
 * event kvmm sends (data may be NULL), until kvmm closes the socket.
 * NULL if kvmm cannot be reached. */
typedef void (*monitor_event_fn)(const char *event, json_object *data, void *opaque);
struct monitor_watch;
struct monitor_watch *monitor_watch_new(const char *path, monitor_event_fn fn, void *opaque);
/* Reads and dispatches what has already arrived (main loop): kvmm's last
 * event is in the socket before its process ends, but the pidfd may be
 * seen first. */
void monitor_watch_drain(struct monitor_watch *w);
void monitor_watch_free(struct monitor_watch *w);

#endif
