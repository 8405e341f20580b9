/* Networks, storage, node devices, secrets, network filters and host
 * interfaces are libvirt's own drivers: virtkvmmd relays those
 * procedures, packet for packet, to the libvirt daemon that serves them
 * on this host, as libvirt's virtproxyd does (docs/virtkvmmd.md says
 * why).
 *
 * Per client and per family, lazily: one connection to the socket the
 * client library would pick (virt<family>d-sock, else libvirtd's
 * libvirt-sock; the -ro sockets for read-only clients; the XDG ones for a
 * session instance), authenticated and opened with <family>:///system
 * (or ///session).  Then the client's calls and stream packets of that
 * family go there verbatim, with the client's serials, and the replies,
 * events and stream packets that come back go to the client verbatim.
 * Keepalive is answered locally on both sides.
 *
 * Everything runs on the main loop, without blocking: sockets are
 * non-blocking, the set-up is a small state machine bounded by a timer,
 * a daemon that stops answering is pinged and given up (the calls
 * waiting on it fail), and a client's link closes with the client. */
#ifndef KVMM_RPC_FORWARD_H
#define KVMM_RPC_FORWARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <glib.h>

#include "dispatch.h"

/* Seconds a secondary daemon has to accept and open a connection. */
#define FWD_OPEN_TIMEOUT 10
/* Keepalive towards a daemon when the clients' is off (libvirt's
 * defaults). */
#define FWD_KEEPALIVE_INTERVAL 5
#define FWD_KEEPALIVE_COUNT 5

/* Whether the call pkt (a whole packet, a CALL to the remote program)
 * belongs to a forwarded family. */
bool rpc_fwd_handles(const uint8_t *pkt, size_t len);

/* Main loop, in the client's call order: relay the call (or answer it
 * with an error: connection not open, daemon not running). */
void rpc_fwd_call(struct rpc_conn *conn, const uint8_t *pkt, size_t len);

/* Main loop: a STREAM or STREAM_HOLE packet of a forwarded procedure;
 * false if its procedure is not forwarded. */
bool rpc_fwd_stream(struct rpc_conn *conn, const struct rpc_header *hdr, const uint8_t *pkt,
		    size_t len);

/* Main loop: whether the client's reading must pause (a daemon does not
 * take what the client sends as fast). */
bool rpc_fwd_blocked(const struct rpc_conn *conn);

/* Main loop: the client's replies drained; links paused because it did
 * not read may read again. */
void rpc_fwd_resume(struct rpc_conn *conn);

/* Main loop, about once a second: keepalive towards the daemons. */
void rpc_fwd_tick(struct rpc_conn *conn, gint64 now, unsigned interval, unsigned count);

/* Main loop: the client is gone; close its links. */
void rpc_fwd_conn_gone(struct rpc_conn *conn);

#endif
