/* libvirt RPC streams (facts §7): after a call such as DOMAIN_OPEN_CONSOLE
 * is answered, packets of type STREAM with that call's procedure and
 * serial carry raw bytes both ways; a zero-length CONTINUE is the
 * server's end of data, the client ends with OK (finish) or ERROR
 * (abort) and waits for an empty OK.
 *
 * A stream relays between a file descriptor (a console pty) and one
 * client.  Handlers open it from a worker during their call; it starts
 * once the reply is queued, so no data overtakes the reply.  Everything
 * else runs on the main loop. */
#ifndef KVMM_RPC_STREAM_H
#define KVMM_RPC_STREAM_H

#include <stddef.h>
#include <stdint.h>

#include "dispatch.h"

struct rpc_stream;

/* Called once when the stream lets go of its fd (end of data, taken
 * over, finished, aborted, client gone): on the main loop, or on the
 * worker whose call failed after opening it. */
typedef void (*rpc_stream_released_fn)(struct rpc_stream *s, void *opaque);

/* Handler (worker), during the call that names the stream: relay FD
 * (taken; non-blocking) once the reply is out.  The stream stays valid
 * until RELEASED has run. */
struct rpc_stream *rpc_stream_open(struct rpc_conn *conn, int fd, rpc_stream_released_fn released,
				   void *opaque);

/* Any thread, while the stream is valid: end it for its client (end of
 * data) and release its fd, as when another client takes the console
 * over. */
void rpc_stream_kick(struct rpc_stream *s);

/* server.c, main loop: start the stream the call just answered opened;
 * a STREAM packet from the client; the client is going away (its running
 * call's stream, if any, is discarded when that call ends). */
void rpc_stream_start_pending(struct rpc_conn *conn);
/* The call that opened it failed, or its client left: never start it
 * (the worker of a failed call, or the main loop). */
void rpc_stream_discard_pending(struct rpc_conn *conn);
void rpc_stream_input(struct rpc_conn *conn, const struct rpc_header *hdr, const uint8_t *pkt,
		      size_t len);
void rpc_streams_close_all(struct rpc_conn *conn);

#endif
