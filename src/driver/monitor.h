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

/* Connects to PATH and reads the greeting: a connected fd, or -errno
 * (-ENOENT/-ECONNREFUSED while kvmm is still starting). */
int monitor_connect(const char *path, int timeout_ms);

/* Runs COMMAND on the VM whose control socket is PATH.  On success, 0
 * and (when RET is not NULL) the "return" object, which the caller puts.
 * Otherwise -1 after reporting: kvmm's own error message with
 * VIR_ERR_OPERATION_INVALID for InvalidState, VIR_ERR_OPERATION_FAILED
 * for the rest, or why kvmm could not be reached. */
int monitor_command(const char *path, const char *command, json_object **ret);

#endif
