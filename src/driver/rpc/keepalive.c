/* Keepalive; see keepalive.h. */
#include "keepalive.h"
#include "message.h"

void rpc_keepalive_received(struct rpc_keepalive *ka, gint64 now)
{
	ka->last_rx = now;
	ka->unanswered = 0;
}

enum rpc_keepalive_action rpc_keepalive_tick(struct rpc_keepalive *ka, gint64 now,
					     unsigned interval, unsigned count)
{
	gint64 period = (gint64)interval * G_USEC_PER_SEC;

	if (!ka->enabled || interval == 0 || now - ka->last_rx < period)
		return RPC_KEEPALIVE_NOTHING;
	if (ka->unanswered >= count)
		return RPC_KEEPALIVE_DEAD;
	if (ka->unanswered > 0 && now - ka->last_ping < period)
		return RPC_KEEPALIVE_NOTHING;
	ka->unanswered++;
	ka->last_ping = now;
	return RPC_KEEPALIVE_PING;
}

GBytes *rpc_keepalive_packet(int proc)
{
	struct rpc_header hdr = {
		.prog = KEEPALIVE_PROGRAM,
		.vers = KEEPALIVE_PROTOCOL_VERSION,
		.proc = proc,
		.type = RPC_MESSAGE,
		.serial = 0,
		.status = RPC_OK,
	};

	return rpc_msg_encode(&hdr, (xdrproc_t)rpc_xdr_void, NULL);
}
