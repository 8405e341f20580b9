/* Keepalive: answer the peer's PINGs, and ping a silent peer that said it
 * speaks keepalive, dropping it when too many pings go unanswered. */
#ifndef KVMM_RPC_KEEPALIVE_H
#define KVMM_RPC_KEEPALIVE_H

#include <stdbool.h>

#include <glib.h>

#include "keepalive_xdr.h"
#include "protocol_xdr.h"

struct rpc_keepalive {
	bool enabled;		/* the client probed the keepalive feature */
	gint64 last_rx;		/* monotonic µs of the last packet received */
	gint64 last_ping;	/* monotonic µs of our last PING */
	unsigned unanswered;	/* PINGs sent since the last packet received */
};

enum rpc_keepalive_action {
	RPC_KEEPALIVE_NOTHING,
	RPC_KEEPALIVE_PING,	/* send rpc_keepalive_packet(PING) */
	RPC_KEEPALIVE_DEAD,	/* drop the client */
};

/* Any packet from the peer proves it alive. */
void rpc_keepalive_received(struct rpc_keepalive *ka, gint64 now);

/* Called about once a second.  After interval seconds of silence, one
 * PING per interval; after count unanswered PINGs, DEAD (libvirt's
 * semantics, so a client dies after roughly interval * (count + 1)). */
enum rpc_keepalive_action rpc_keepalive_tick(struct rpc_keepalive *ka, gint64 now,
					     unsigned interval, unsigned count);

/* A PING or PONG packet. */
GBytes *rpc_keepalive_packet(int proc);

#endif
