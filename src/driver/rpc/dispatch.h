/* The one dispatch table: remote procedure number -> handler, with what
 * each procedure needs (an open connection, write access).  rpc_dispatch
 * takes one whole packet from a client and queues the answer, if any;
 * it knows nothing of sockets, so tests can drive it directly. */
#ifndef KVMM_RPC_DISPATCH_H
#define KVMM_RPC_DISPATCH_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <glib.h>

#include "keepalive.h"
#include "protocol_xdr.h"

struct rpc_stream;
struct fwd_client;

/* The protocol state of one client connection. */
struct rpc_conn {
	unsigned id;		/* for log lines */
	pid_t pid;		/* SO_PEERCRED, at accept time */
	uid_t uid;
	gid_t gid;
	bool readonly;		/* -ro socket, or opened read-only */
	bool open;		/* CONNECT_OPEN succeeded */
	bool closing;		/* CONNECT_CLOSE answered: drop once flushed */
	bool gone;		/* dropped by the server (events.c, under its lock) */
	struct rpc_header call;	/* the call being handled (streams name it) */
	struct rpc_stream *pending_stream;	/* opened by that call (stream.c) */
	GList *streams;		/* open streams, main loop only (stream.c) */
	bool close_callback;	/* the client registered a close callback */
	struct rpc_keepalive keepalive;
	/* Queues one packet to the client; takes the reference. */
	void (*send)(struct rpc_conn *conn, GBytes *pkt);
	/* Bytes queued to the client and not yet written (NULL: none);
	 * lets events skip a client that stopped reading. */
	size_t (*backlog)(const struct rpc_conn *conn);
	/* Main loop: reading from the client may resume (forward.c's
	 * links drained); NULL: nothing to do. */
	void (*wake)(struct rpc_conn *conn);
	struct fwd_client *fwd;	/* forward.c's links, main loop only */
};

/* Handlers return 0, or -1 with the error reported (error.h). */
typedef int (*rpc_handler)(struct rpc_conn *conn, void *args, void *ret);

enum {
	RPC_PROC_BEFORE_OPEN = 1 << 0,	/* allowed before CONNECT_OPEN */
	RPC_PROC_MUTATING = 1 << 1,	/* refused on read-only connections */
};

struct rpc_proc {
	const char *api;	/* libvirt API name, for messages and logs */
	xdrproc_t args_filter;
	size_t args_size;
	xdrproc_t ret_filter;
	size_t ret_size;
	rpc_handler fn;		/* NULL: known, not implemented yet */
	unsigned flags;
};

/* The table entry for a remote procedure number, or NULL. */
const struct rpc_proc *rpc_proc_lookup(int proc);

/* Handles one packet pkt[0..len), length word included (already checked
 * with rpc_msg_check_length by the reader).  Returns 0, or -1 when the
 * client must be dropped (its byte stream can no longer be trusted). */
int rpc_dispatch(struct rpc_conn *conn, const uint8_t *pkt, size_t len);

/* Whether pkt is a call to a remote procedure, which the server runs on
 * a worker thread (handlers may block); everything else (keepalive,
 * packets refused from their header alone) is answered at once. */
bool rpc_dispatch_is_call(const uint8_t *pkt, size_t len);

/* The server is dropping conn: forget what the driver holds of it (its
 * event callbacks), so that nothing is sent to it any more.  A call of
 * conn may still be running on a worker. */
void rpc_conn_gone(struct rpc_conn *conn);

#endif
