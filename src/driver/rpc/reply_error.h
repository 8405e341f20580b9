/* Error replies: the calling thread's last error (error.h) as the
 * rpc_error body libvirt's client re-raises. */
#ifndef KVMM_RPC_REPLY_ERROR_H
#define KVMM_RPC_REPLY_ERROR_H

#include <glib.h>

#include "error.h"
#include "protocol_xdr.h"

/* The text a libvirt daemon would send for code with detail: libvirt
 * prefixes the detail by code ("Domain not found: ..."), and clients
 * print the message as is, so we do the same.  Caller frees. */
char *rpc_error_text(int code, const char *detail);

/* A REPLY/ERROR packet answering call with err (or, when err is NULL, an
 * internal error saying the cause is unknown). */
GBytes *rpc_reply_error(const struct rpc_header *call, const struct drv_error *err);

#endif
