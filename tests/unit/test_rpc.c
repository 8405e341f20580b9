/* virtkvmmd's RPC pieces without a socket: length limits, header and
 * body encoding, framing off a stream, error wording, keepalive timing, dispatch checks. */
/* VIR_ERR_NUMBER_LAST: every error code libvirt has. */
#define VIR_ENUM_SENTINELS
#include <dlfcn.h>
#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include <glib.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include "dispatch.h"
#include "error.h"
#include "message.h"
#include "reader.h"
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

/* A transport for the reader: the bytes of data[0..avail) come out at
 * most step at a time, then EAGAIN (or end of stream once eof). */
struct script {
	const uint8_t *data;
	size_t avail, pos, step;
	bool eof;
	unsigned calls;
};

static ssize_t script_recv(void *opaque, void *buf, size_t len)
{
	struct script *s = opaque;
	size_t n = MIN(len, MIN(s->step, s->avail - s->pos));

	s->calls++;
	if (!n) {
		if (s->eof)
			return 0;
		errno = EAGAIN;
		return -1;
	}
	memcpy(buf, s->data + s->pos, n);
	s->pos += n;
	return n;
}

static GBytes *stream_packet(size_t body)
{
	struct rpc_header h = { REMOTE_PROGRAM, 1, 209, RPC_STREAM, 5, RPC_CONTINUE };
	uint8_t *data = g_malloc(body);
	GBytes *pkt;

	for (size_t i = 0; i < body; i++)
		data[i] = i * 7 + 3;
	pkt = rpc_msg_encode_raw(&h, data, body);
	g_free(data);
	return pkt;
}

UNIT_TEST(reader_byte_by_byte)
{
	GBytes *pkt = stream_packet(100);
	size_t len;
	const uint8_t *p = g_bytes_get_data(pkt, &len);
	struct script s = { .data = p, .avail = len, .step = 1 };
	struct rpc_reader r;
	unsigned more = 0;
	enum rpc_read rc;

	rpc_reader_init(&r);
	while ((rc = rpc_reader_recv(&r, RPC_PACKET_MAX, script_recv, &s)) == RPC_READ_MORE)
		more++;
	CHECK(rc == RPC_READ_PACKET);
	CHECK_EQ_U64(more, len - 1);
	CHECK_EQ_U64(r.len, len);
	CHECK(memcmp(r.buf, p, len) == 0);
	rpc_reader_next(&r);
	CHECK(rpc_reader_recv(&r, RPC_PACKET_MAX, script_recv, &s) == RPC_READ_AGAIN);
	rpc_reader_clear(&r);
	g_bytes_unref(pkt);
}

UNIT_TEST(reader_partial_length_word)
{
	GBytes *pkt = stream_packet(10);
	size_t len;
	const uint8_t *p = g_bytes_get_data(pkt, &len);
	struct script s = { .data = p, .avail = 2, .step = len };
	struct rpc_reader r;

	rpc_reader_init(&r);
	/* half a length word, then nothing yet: no packet, no error */
	CHECK(rpc_reader_recv(&r, RPC_PACKET_MAX, script_recv, &s) == RPC_READ_MORE);
	CHECK(rpc_reader_recv(&r, RPC_PACKET_MAX, script_recv, &s) == RPC_READ_AGAIN);
	CHECK_EQ_U64(r.have, 2);
	CHECK_EQ_U64(r.len, 0);
	/* one more byte: still not a length word */
	s.avail = 3;
	CHECK(rpc_reader_recv(&r, RPC_PACKET_MAX, script_recv, &s) == RPC_READ_MORE);
	CHECK_EQ_U64(r.len, 0);
	/* the rest arrives */
	s.avail = len;
	CHECK(rpc_reader_recv(&r, RPC_PACKET_MAX, script_recv, &s) == RPC_READ_MORE);
	CHECK_EQ_U64(r.len, len);
	CHECK(rpc_reader_recv(&r, RPC_PACKET_MAX, script_recv, &s) == RPC_READ_PACKET);
	CHECK(memcmp(r.buf, p, len) == 0);
	rpc_reader_next(&r);
	/* the peer goes in the middle of the next length word */
	s.pos = 0;
	s.avail = 3;
	s.eof = true;
	CHECK(rpc_reader_recv(&r, RPC_PACKET_MAX, script_recv, &s) == RPC_READ_MORE);
	CHECK(rpc_reader_recv(&r, RPC_PACKET_MAX, script_recv, &s) == RPC_READ_EOF);
	CHECK_EQ_U64(r.have, 3);
	rpc_reader_clear(&r);
	g_bytes_unref(pkt);
}

UNIT_TEST(reader_bad_lengths)
{
	static const uint8_t small[] = { 0, 0, 0, 27, 1, 2, 3 };
	static const uint8_t huge[] = { 0xff, 0xff, 0xff, 0xff, 1, 2, 3 };
	static const uint8_t over[] = { 0, 0x10, 0, 1, 1, 2, 3 };	/* 1 MiB + 1 */
	struct script s = { .data = small, .avail = sizeof(small), .step = 64 };
	struct rpc_reader r;

	rpc_reader_init(&r);
	CHECK(rpc_reader_recv(&r, RPC_PACKET_MAX, script_recv, &s) == RPC_READ_BAD_LENGTH);
	CHECK(drv_error_last() && drv_error_last()->code == VIR_ERR_RPC);
	drv_error_reset();
	/* nothing past the length word was read */
	CHECK_EQ_U64(s.pos, 4);
	rpc_reader_clear(&r);

	rpc_reader_init(&r);
	s = (struct script){ .data = huge, .avail = sizeof(huge), .step = 64 };
	CHECK(rpc_reader_recv(&r, RPC_PACKET_MAX, script_recv, &s) == RPC_READ_BAD_LENGTH);
	CHECK_EQ_U64(r.len, 0xffffffff);
	CHECK_EQ_U64(r.cap, 65536);
	drv_error_reset();
	rpc_reader_clear(&r);

	/* legal, but above what the caller takes from this peer: refused
	 * before a byte of it is buffered, and not an RPC error */
	rpc_reader_init(&r);
	s = (struct script){ .data = over, .avail = sizeof(over), .step = 64 };
	CHECK(rpc_reader_recv(&r, 1024 * 1024, script_recv, &s) == RPC_READ_TOO_BIG);
	CHECK_EQ_U64(r.len, 1024 * 1024 + 1);
	CHECK_EQ_U64(r.cap, 65536);
	CHECK(!drv_error_last());
	rpc_reader_clear(&r);
}

UNIT_TEST(reader_two_packets_in_one_read)
{
	GBytes *a = stream_packet(40), *b = stream_packet(300);
	size_t alen, blen;
	const uint8_t *ap = g_bytes_get_data(a, &alen), *bp = g_bytes_get_data(b, &blen);
	uint8_t *both = g_malloc(alen + blen);
	struct script s = { .data = both, .avail = alen + blen, .step = alen + blen };
	struct rpc_reader r;

	memcpy(both, ap, alen);
	memcpy(both + alen, bp, blen);
	rpc_reader_init(&r);
	/* the length word, then exactly the rest of the first packet: the
	 * second stays with the transport */
	CHECK(rpc_reader_recv(&r, RPC_PACKET_MAX, script_recv, &s) == RPC_READ_MORE);
	CHECK(rpc_reader_recv(&r, RPC_PACKET_MAX, script_recv, &s) == RPC_READ_PACKET);
	CHECK_EQ_U64(r.len, alen);
	CHECK_EQ_U64(s.pos, alen);
	CHECK(memcmp(r.buf, ap, alen) == 0);
	rpc_reader_next(&r);
	CHECK(rpc_reader_recv(&r, RPC_PACKET_MAX, script_recv, &s) == RPC_READ_MORE);
	CHECK(rpc_reader_recv(&r, RPC_PACKET_MAX, script_recv, &s) == RPC_READ_PACKET);
	CHECK_EQ_U64(r.len, blen);
	CHECK(memcmp(r.buf, bp, blen) == 0);
	rpc_reader_next(&r);
	CHECK(rpc_reader_recv(&r, RPC_PACKET_MAX, script_recv, &s) == RPC_READ_AGAIN);
	rpc_reader_clear(&r);
	g_free(both);
	g_bytes_unref(a);
	g_bytes_unref(b);
}

UNIT_TEST(reader_buffer_follows_the_bytes)
{
	/* a packet near the limit: the buffer grows with what arrived,
	 * never to the claimed length at once, and shrinks after it */
	GBytes *pkt = stream_packet(4 * 1024 * 1024);
	size_t len;
	const uint8_t *p = g_bytes_get_data(pkt, &len);
	struct script s = { .data = p, .avail = len, .step = 4096 };
	struct rpc_reader r;
	enum rpc_read rc;

	rpc_reader_init(&r);
	while ((rc = rpc_reader_recv(&r, RPC_PACKET_MAX, script_recv, &s)) == RPC_READ_MORE)
		CHECK(r.cap <= 2 * (r.have + 65536));
	CHECK(rc == RPC_READ_PACKET);
	CHECK(memcmp(r.buf, p, len) == 0);
	rpc_reader_next(&r);
	CHECK_EQ_U64(r.cap, 65536);
	rpc_reader_clear(&r);
	g_bytes_unref(pkt);
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

static void quiet(void *opaque, virErrorPtr err)
{
	(void)opaque;
	(void)err;
}

/* libvirt's own wording, from the libvirt library the daemon links,
 * never spelled out here: libvirt formats an error as its per-code
 * format (virErrorMsg) around the detail, and keeps that format in str1
 * and the detail in str2.  The last libvirt error must have CODE, and
 * the daemon's wording for CODE must be libvirt's. */
static void check_like_libvirt(int code, const char *what)
{
	virErrorPtr e = virGetLastError();
	g_autofree char *ours = NULL;

	if (!e || e->code != code || !e->str1) {
		printf("  %s: libvirt gave %s (code %d, str1 %s)\n", what,
		       e ? e->message : "no error", e ? e->code : -1,
		       e && e->str1 ? e->str1 : "none");
		unit_failed = 1;
		return;
	}
	ours = rpc_error_text(code, "%s");
	if (strcmp(ours, e->str1)) {
		printf("  %s: code %d: ours \"%s\", libvirt's \"%s\"\n", what, code, ours, e->str1);
		unit_failed = 1;
	}
	/* str2 is the detail: around it, ours reads as libvirt's message */
	if (e->str2) {
		g_autofree char *msg = rpc_error_text(code, e->str2);

		if (strcmp(msg, e->message)) {
			printf("  %s: ours \"%s\", libvirt's \"%s\"\n", what, msg, e->message);
			unit_failed = 1;
		}
	}
	virResetLastError();
}

UNIT_TEST(error_wording_is_libvirts_own)
{
	virConnectPtr c, ro;
	virDomainPtr d;
	const char *other_uuid = "11111111-2222-3333-4444-555555555555";
	g_autofree char *xml = NULL, *dup = NULL;

	virSetErrorFunc(NULL, quiet);
	/* libvirt's test driver runs inside the library: no daemon. */
	c = virConnectOpen("test:///default");
	ro = virConnectOpenReadOnly("test:///default");
	CHECK(c && ro);
	if (!c || !ro)
		return;
	d = virDomainLookupByName(c, "test");
	CHECK(d);
	if (!d)
		return;

	CHECK(virDomainCreate(d) < 0);			/* running already */
	check_like_libvirt(VIR_ERR_INTERNAL_ERROR, "create a running domain");
	CHECK(virDomainGetBlockJobInfo(d, "vda", &(virDomainBlockJobInfo){ 0 }, 0) < 0);
	check_like_libvirt(VIR_ERR_NO_SUPPORT, "an API the test driver lacks");
	CHECK(!virDomainGetMetadata(d, VIR_DOMAIN_METADATA_TITLE, NULL, 0));
	check_like_libvirt(VIR_ERR_NO_DOMAIN_METADATA, "a missing title");
	CHECK(virDomainInterfaceStats(d, "nosuch", &(virDomainInterfaceStatsStruct){ 0 },
				      sizeof(virDomainInterfaceStatsStruct)) < 0);
	check_like_libvirt(VIR_ERR_INVALID_ARG, "an unknown interface");
	CHECK(!virDomainDefineXML(c, "<domain type='bogus'><name>x</name><memory>1024</memory>"
				  "<os><type>hvm</type></os></domain>"));
	check_like_libvirt(VIR_ERR_CONFIG_UNSUPPORTED, "an unknown domain type");
	CHECK(!virDomainDefineXMLFlags(c, "<domain type='test'><name>x</name><bogus/>"
				       "<memory>1024</memory><os><type>hvm</type></os></domain>",
				       VIR_DOMAIN_DEFINE_VALIDATE));
	check_like_libvirt(VIR_ERR_XML_INVALID_SCHEMA, "XML the schema refuses");
	xml = virDomainGetXMLDesc(d, 0);
	CHECK(xml);
	if (xml) {
		char uuid[VIR_UUID_STRING_BUFLEN];
		g_auto(GStrv) pieces = NULL;

		CHECK(!virDomainCreateXML(c, xml, 0));	/* its name is active */
		check_like_libvirt(VIR_ERR_OPERATION_INVALID, "a second domain 'test'");
		CHECK(virDomainGetUUIDString(d, uuid) == 0);
		pieces = g_strsplit(xml, uuid, -1);
		dup = g_strjoinv(other_uuid, pieces);
		CHECK(!virDomainDefineXML(c, dup));	/* its name, another UUID */
		check_like_libvirt(VIR_ERR_OPERATION_FAILED, "a name taken by another UUID");
	}
	{
		virDomainPtr rod = virDomainLookupByName(ro, "test");

		CHECK(rod && virDomainDestroy(rod) < 0);
		check_like_libvirt(VIR_ERR_OPERATION_DENIED, "destroy on a read-only connection");
		if (rod)
			virDomainFree(rod);
	}
	virDomainFree(d);
	virConnectClose(ro);
	virConnectClose(c);
}

/* Codes the test driver cannot be made to raise: every format of ours
 * must at least be one of the strings of the libvirt library itself. */
UNIT_TEST(every_error_format_is_in_libvirt)
{
	Dl_info info;
	g_autofree char *lib = NULL;
	gsize len = 0;
	int formats = 0;

	CHECK(dladdr((void *)virGetLastError, &info) && info.dli_fname);
	if (!info.dli_fname || !g_file_get_contents(info.dli_fname, &lib, &len, NULL)) {
		printf("  cannot read the libvirt library\n");
		unit_failed = 1;
		return;
	}
	for (int code = 0; code < VIR_ERR_NUMBER_LAST; code++) {
		g_autofree char *t = rpc_error_text(code, "\x01");
		g_auto(GStrv) parts = g_strsplit(t, "\x01", 2);
		bool found = false;

		if (!strcmp(t, "\x01"))
			continue;			/* passed through as is */
		formats++;
		/* A string's end in the library (the linker may store it as the
		 * tail of a longer one), with %s or (newer libvirt) %1$s. */
		for (int positional = 0; positional < 2 && !found; positional++) {
			g_autofree char *needle = g_strconcat(parts[0], positional ? "%1$s" : "%s",
							      parts[1], NULL);

			found = memmem(lib, len, needle, strlen(needle) + 1) != NULL;
		}
		if (!found) {
			printf("  code %d: \"%s%%s%s\" is not a string of %s\n", code, parts[0],
			       parts[1], info.dli_fname);
			unit_failed = 1;
		}
	}
	CHECK(formats > 10);
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
