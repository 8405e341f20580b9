/* Every procedure of libvirt's remote program by number: the libvirt API
 * it stands for (for VIR_ERR_NO_SUPPORT's wording, "this function is not
 * supported by the connection driver: virDomainXxx"), whether libvirt
 * refuses it on a read-only connection, and the secondary driver family
 * it belongs to when virtkvmmd forwards it to libvirt's own daemon
 * (forward.h).  The dispatch table (dispatch.c) says what virtkvmmd
 * implements itself; this one covers the rest. */
#ifndef KVMM_RPC_PROC_NAMES_H
#define KVMM_RPC_PROC_NAMES_H

/* Secondary driver families, kept in the flags above dispatch.h's
 * RPC_PROC_* bits. */
enum fwd_family {
	FWD_NONE = 0,
	FWD_NETWORK = 1,
	FWD_STORAGE,
	FWD_NODEDEV,
	FWD_SECRET,
	FWD_NWFILTER,
	FWD_INTERFACE,
	FWD_NFAMILIES,
};
#define FWD_SHIFT 8

struct rpc_proc_name {
	const char *api;	/* NULL: no API (authentication steps, event messages) */
	unsigned flags;		/* RPC_PROC_MUTATING, or a family << FWD_SHIFT */
};

/* The family of a procedure's flags (FWD_NONE: not forwarded). */
#define rpc_proc_family(flags) ((enum fwd_family)((flags) >> FWD_SHIFT))

/* The entry for a procedure number, or NULL for a number libvirt 9.0
 * does not have (or one with neither an API nor a family). */
const struct rpc_proc_name *rpc_proc_name(int proc);

#endif
