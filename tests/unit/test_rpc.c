/* virtkvmmd's RPC pieces without a socket: length limits, header and
 * body encoding, error wording, keepalive timing, dispatch checks. */
#include <string.h>

#include <glib.h>

#include "dispatch.h"
#include "error.h"
#include "message.h"
#include "remote_xdr.h"
#include "reply_error.h"
#include "unit.h"

#define S (G_USEC_PER_SEC)

UNIT_TEST(length_word_limits)
{
	CHECK(rpc_msg_check_length(27) < 0);
	CHECK(rpc_msg_check_length(28) == 0);
	CHECK(rpc_msg_check_length(4 + 33554432) == 0);
	CHECK(rpc_msg_check_length(4 + 33554432 + 1) < 0);
	CHECK(rpc_msg_check_length(0xffffffff) < 0);
	CHECK(drv_error_last() && drv_error_last()->code == VIR_ERR_RPC);
	drv_error_reset();
}

UNIT_TEST(header_round_trip)
{
	struct rpc_header h = { REMOTE_PROGRAM, 1, 273, RPC_REPLY, 77, RPC_OK }, back;
	remote_connect_get_type_ret body = { .type = "KVMM" };
	GBytes *pkt = rpc_msg_encode(&h, (xdrproc_t)xdr_remote_connect_get_type_ret, &body);
	size_t len;
	const uint8_t *p = g_bytes_get_data(pkt, &len);

	CHECK_EQ_U64(len, 28 + 4 + 4);
	CHECK_EQ_U64(rpc_msg_length(p), len);
	CHECK(rpc_msg_decode_header(p, len, &back) == 0);
	CHECK(back.prog == REMOTE_PROGRAM && back.proc == 273 && back.serial == 77);
	/* a length word that disagrees with the buffer is refused */
	CHECK(rpc_msg_decode_header(p, len - 1, &back) < 0);
	drv_error_reset();
	g_bytes_unref(pkt);
}

UNIT_TEST(node_info_model_is_128_bytes)
{
	/* char model[32] widens to 4 bytes per char: 128 + 8 + 6 * 4. */
	struct rpc_header h = { REMOTE_PROGRAM, 1, 6, RPC_REPLY, 0, RPC_OK };
	remote_node_get_info_ret body;
	GBytes *pkt;

	memset(&body, 0, sizeof(body));
	pkt = rpc_msg_encode(&h, (xdrproc_t)xdr_remote_node_get_info_ret, &body);
	CHECK_EQ_U64(g_bytes_get_size(pkt), 28 + 128 + 8 + 24);
	g_bytes_unref(pkt);
}

UNIT_TEST(error_wording_follows_libvirt)
{
	g_autofree char *a = rpc_error_text(VIR_ERR_NO_DOMAIN, "no domain with matching name 'x'");
	g_autofree char *b = rpc_error_text(VIR_ERR_RPC, "unknown procedure: 5");
	g_autofree char *c = rpc_error_text(VIR_ERR_DOM_EXIST, "x");
	g_autofree char *d = rpc_error_text(VIR_ERR_NO_CONNECT, "qemu:///system");

	CHECK_STR(a, "Domain not found: no domain with matching name 'x'");
	CHECK_STR(b, "unknown procedure: 5");
	CHECK_STR(c, "domain x exists already");
	CHECK_STR(d, "no connection driver available for qemu:///system");
}

UNIT_TEST(keepalive_timing)
{
	struct rpc_keepalive ka = { 0 };

	/* not enabled: never pinged, never dropped */
	CHECK(rpc_keepalive_tick(&ka, 100 * S, 5, 5) == RPC_KEEPALIVE_NOTHING);
	ka.enabled = true;
	rpc_keepalive_received(&ka, 0);
	CHECK(rpc_keepalive_tick(&ka, 4 * S, 5, 2) == RPC_KEEPALIVE_NOTHING);
	CHECK(rpc_keepalive_tick(&ka, 5 * S, 5, 2) == RPC_KEEPALIVE_PING);
	CHECK(rpc_keepalive_tick(&ka, 6 * S, 5, 2) == RPC_KEEPALIVE_NOTHING);
	CHECK(rpc_keepalive_tick(&ka, 10 * S, 5, 2) == RPC_KEEPALIVE_PING);
	CHECK(rpc_keepalive_tick(&ka, 14 * S, 5, 2) == RPC_KEEPALIVE_DEAD);
	/* an answer (any packet) resets it */
	rpc_keepalive_received(&ka, 14 * S);
	CHECK(rpc_keepalive_tick(&ka, 15 * S, 5, 2) == RPC_KEEPALIVE_NOTHING);
	CHECK(rpc_keepalive_tick(&ka, 19 * S, 5, 2) == RPC_KEEPALIVE_PING);
	/* interval 0: never */
	CHECK(rpc_keepalive_tick(&ka, 1000 * S, 0, 2) == RPC_KEEPALIVE_NOTHING);
}

static GBytes *last_sent;

static void capture(struct rpc_conn *conn, GBytes *pkt)
{
	if (last_sent)
		g_bytes_unref(last_sent);
	last_sent = pkt;
}

/* Dispatches a bodiless call to proc; returns 0 for an OK reply, else
 * the error code it carries. */
static int call(struct rpc_conn *conn, int proc)
{
	struct rpc_header h = { REMOTE_PROGRAM, 1, proc, RPC_CALL, 9, RPC_OK }, r;
	GBytes *pkt = rpc_msg_encode(&h, (xdrproc_t)rpc_xdr_void, NULL);
	size_t len;
	const uint8_t *p = g_bytes_get_data(pkt, &len);
	int code = -1;

	CHECK(rpc_dispatch(conn, p, len) == 0);
	g_bytes_unref(pkt);
	p = g_bytes_get_data(last_sent, &len);
	CHECK(rpc_msg_decode_header(p, len, &r) == 0);
	CHECK(r.type == RPC_REPLY && r.serial == 9 && r.proc == proc);
	if (r.status == RPC_OK) {
		code = 0;
	} else {
		struct rpc_error e;

		memset(&e, 0, sizeof(e));
		CHECK(rpc_msg_decode_body(p, len, (xdrproc_t)xdr_rpc_error, &e) == 0);
		code = e.code;
		xdr_free((xdrproc_t)xdr_rpc_error, (char *)&e);
	}
	return code;
}

UNIT_TEST(dispatch_checks_in_libvirt_order)
{
	struct rpc_conn conn = { .send = capture };

	CHECK(call(&conn, 9999) == VIR_ERR_RPC);		/* unknown */
	CHECK(call(&conn, REMOTE_PROC_CONNECT_GET_TYPE) == VIR_ERR_INTERNAL_ERROR); /* not open */
	CHECK(call(&conn, REMOTE_PROC_AUTH_LIST) == 0);
	conn.open = true;
	CHECK(call(&conn, REMOTE_PROC_CONNECT_GET_TYPE) == 0);
	CHECK(call(&conn, REMOTE_PROC_DOMAIN_CREATE) == VIR_ERR_RPC);	/* not yet */
	conn.readonly = true;
	CHECK(call(&conn, REMOTE_PROC_DOMAIN_DEFINE_XML) == VIR_ERR_OPERATION_DENIED);
	CHECK(call(&conn, REMOTE_PROC_CONNECT_GET_TYPE) == 0);
	CHECK(call(&conn, REMOTE_PROC_CONNECT_CLOSE) == 0);
	CHECK(conn.closing);
	g_bytes_unref(last_sent);
	last_sent = NULL;
}
