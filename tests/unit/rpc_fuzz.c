/* Bounded randomized fuzz of virtkvmmd's packet path: the server's
 * framing reader (fed in random pieces), then rpc_dispatch (header decode, table
 * lookup, argument decode, handlers, reply encode) on mutated valid
 * packets and on plain noise.  Every packet the daemon would send back
 * is checked to be well framed.  A crash, an assertion or a sanitizer
 * report is a failure; the exit status is 0 otherwise.
 *
 *   rpc_fuzz [--seconds N] [--seed S]    defaults: 10 s, seed 1
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>

#include "dispatch.h"
#include "error.h"
#include "keepalive_xdr.h"
#include "log.h"
#include "message.h"
#include "reader.h"
#include "remote_xdr.h"
#include "fuzz_rng.h"

static unsigned long replies, failures;

static void check_reply(struct rpc_conn *conn, GBytes *pkt)
{
	size_t size;
	const uint8_t *data = g_bytes_get_data(pkt, &size);
	struct rpc_header hdr;

	if (size < RPC_PACKET_MIN || size > RPC_PACKET_MAX || rpc_msg_length(data) != size ||
	    rpc_msg_decode_header(data, size, &hdr) < 0 ||
	    !(hdr.type == RPC_REPLY || (hdr.type == RPC_MESSAGE && hdr.prog == KEEPALIVE_PROGRAM))) {
		fprintf(stderr, "rpc_fuzz: malformed packet sent back (%zu bytes)\n", size);
		failures++;
	}
	drv_error_reset();
	replies++;
	g_bytes_unref(pkt);
}

/* The bytes of one mutated packet as a peer's stream: random pieces,
 * now and then EAGAIN, then end of stream. */
struct feed {
	const GByteArray *b;
	size_t pos;
};

static ssize_t feed_recv(void *opaque, void *buf, size_t len)
{
	struct feed *f = opaque;
	size_t n, step;

	if (f->pos == f->b->len)
		return 0;
	if (rng() % 8 == 0) {
		errno = rng() % 2 ? EAGAIN : EINTR;
		return -1;
	}
	/* (MIN evaluates its arguments twice: no rng() inside) */
	step = rng() % 64 ? 1 + rng() % 512 : 65536;
	n = MIN(len, MIN(step, f->b->len - f->pos));
	memcpy(buf, f->b->data + f->pos, n);
	f->pos += n;
	return n;
}

static void put32(GByteArray *b, uint32_t v)
{
	uint8_t w[4] = { v >> 24, v >> 16, v >> 8, v };

	g_byte_array_append(b, w, 4);
}

static void put_string(GByteArray *b, const char *s)
{
	static const uint8_t pad[4];
	size_t n = strlen(s);

	put32(b, n);
	g_byte_array_append(b, (const uint8_t *)s, n);
	g_byte_array_append(b, pad, (4 - n % 4) % 4);
}

static const int known_procs[] = {
	REMOTE_PROC_CONNECT_OPEN, REMOTE_PROC_CONNECT_CLOSE, REMOTE_PROC_CONNECT_GET_TYPE,
	REMOTE_PROC_CONNECT_GET_VERSION, REMOTE_PROC_NODE_GET_INFO,
	REMOTE_PROC_CONNECT_LIST_DEFINED_DOMAINS, REMOTE_PROC_CONNECT_NUM_OF_DEFINED_DOMAINS,
	REMOTE_PROC_CONNECT_LIST_DOMAINS, REMOTE_PROC_CONNECT_NUM_OF_DOMAINS,
	REMOTE_PROC_CONNECT_GET_HOSTNAME, REMOTE_PROC_CONNECT_SUPPORTS_FEATURE,
	REMOTE_PROC_AUTH_LIST, REMOTE_PROC_CONNECT_GET_URI, REMOTE_PROC_CONNECT_GET_LIB_VERSION,
	REMOTE_PROC_CONNECT_LIST_ALL_DOMAINS, REMOTE_PROC_DOMAIN_DEFINE_XML,
	REMOTE_PROC_DOMAIN_UNDEFINE_FLAGS,
};

/* A well-formed packet: header, then a body of one of a few shapes the
 * remote procedures take. */
static GByteArray *seed_packet(void)
{
	GByteArray *b = g_byte_array_new();
	int shape = rng() % 6;
	uint32_t prog = rng() % 8 ? REMOTE_PROGRAM : (rng() % 2 ? KEEPALIVE_PROGRAM : (uint32_t)rng());

	put32(b, 0);			/* length, fixed below */
	put32(b, prog);
	put32(b, rng() % 16 ? 1 : (uint32_t)rng());
	/* Mostly procedures the table knows, so handlers run too. */
	put32(b, prog == KEEPALIVE_PROGRAM ? 1 + rng() % 2 :
		 rng() % 4 ? (uint32_t)known_procs[rng() % G_N_ELEMENTS(known_procs)] : (uint32_t)(rng() % 450));
	put32(b, rng() % 8 ? RPC_CALL : rng() % 8);
	put32(b, rng());
	put32(b, rng() % 16 ? RPC_OK : rng() % 4);
	switch (shape) {
	case 0:
		break;
	case 1:			/* one int */
		put32(b, rng() % 20);
		break;
	case 2:			/* optional string + flags (CONNECT_OPEN) */
		put32(b, 1);
		put_string(b, rng() % 2 ? "kvmm:///system" : "qemu:///system?x=y");
		put32(b, rng() % 8);
		break;
	case 3:			/* two ints (LIST_ALL_DOMAINS) */
		put32(b, rng() % 2);
		put32(b, rng() % 4 ? rng() % 0x10000 : (uint32_t)rng());
		break;
	case 4:			/* a string */
		put_string(b, "<domain type='kvm'><name>x</name></domain>");
		break;
	default:		/* a domain */
		put_string(b, "guest");
		for (int i = 0; i < 4; i++)
			put32(b, rng());
		put32(b, -1);
		break;
	}
	return b;
}

static void mutate(GByteArray *b)
{
	static const uint32_t nasty[] = { 0, 1, 0x7fffffff, 0x80000000, 0xffffffff,
					  RPC_PACKET_MAX, RPC_PACKET_MAX + 1, 4194304, 4194305, 16385 };
	int n = rng() % 4;

	for (int i = 0; i < n && b->len > 4; i++) {
		size_t off = 4 + rng() % (b->len - 4);

		switch (rng() % 4) {
		case 0:
			b->data[off] ^= 1u << (rng() % 8);
			break;
		case 1:
			b->data[off] = rng();
			break;
		case 2:
			off &= ~(size_t)3;
			if (off + 4 <= b->len) {
				uint32_t v = nasty[rng() % G_N_ELEMENTS(nasty)];

				b->data[off] = v >> 24;
				b->data[off + 1] = v >> 16;
				b->data[off + 2] = v >> 8;
				b->data[off + 3] = v;
			}
			break;
		default:
			g_byte_array_set_size(b, MAX(4u, b->len - rng() % 8));
			break;
		}
	}
	if (rng() % 8 == 0) {		/* trailing junk */
		size_t extra = rng() % 64, old = b->len;

		g_byte_array_set_size(b, old + extra);
		for (size_t i = old; i < b->len; i++)
			b->data[i] = rng();
	}
}

static GByteArray *noise(void)
{
	GByteArray *b = g_byte_array_new();

	g_byte_array_set_size(b, rng() % 96);
	for (size_t i = 0; i < b->len; i++)
		b->data[i] = rng();
	return b;
}

static void fresh_conn(struct rpc_conn *conn)
{
	memset(conn, 0, sizeof(*conn));
	conn->send = check_reply;
	conn->open = rng() % 2;
	conn->readonly = rng() % 2;
}

int main(int argc, char **argv)
{
	double seconds = 10;
	uint64_t seed = 1;
	unsigned long iterations = 0, dropped = 0, refused = 0;
	struct rpc_conn conn;
	struct rpc_reader reader;
	gint64 end;

	for (int i = 1; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--seconds"))
			seconds = atof(argv[i + 1]);
		else if (!strcmp(argv[i], "--seed"))
			seed = strtoull(argv[i + 1], NULL, 0);
	}
	log_init("rpc_fuzz", LOG_ERR);
	rng_state = seed ? seed : 1;
	fresh_conn(&conn);
	rpc_reader_init(&reader);
	end = g_get_monotonic_time() + (gint64)(seconds * G_USEC_PER_SEC);
	while (g_get_monotonic_time() < end) {
		for (int i = 0; i < 256; i++, iterations++) {
			GByteArray *b = rng() % 16 ? seed_packet() : noise();
			struct feed f = { b, 0 };
			enum rpc_read rc;

			mutate(b);
			/* Mostly keep the length word honest, so the rest of
			 * the packet gets exercised. */
			if (b->len >= 4 && rng() % 8) {
				b->data[0] = b->len >> 24;
				b->data[1] = b->len >> 16;
				b->data[2] = b->len >> 8;
				b->data[3] = b->len;
			}
			/* The server's reader: a bad length word ends the
			 * client; a good one is read in full. */
			while ((rc = rpc_reader_recv(&reader, RPC_PACKET_MAX, feed_recv, &f)) == RPC_READ_MORE ||
			       rc == RPC_READ_AGAIN)
				;
			if (rc != RPC_READ_PACKET) {
				drv_error_reset();
				refused++;
				fresh_conn(&conn);
			} else {
				/* Framing must hand over exactly the packet. */
				if (reader.len != rpc_msg_length(b->data) || f.pos != reader.len ||
				    memcmp(reader.buf, b->data, reader.len)) {
					fprintf(stderr, "rpc_fuzz: the reader framed %zu bytes wrongly\n",
						reader.len);
					failures++;
				}
				if (rpc_dispatch(&conn, reader.buf, reader.len) < 0 || conn.closing) {
					dropped++;
					fresh_conn(&conn);
				}
			}
			rpc_reader_next(&reader);
			g_byte_array_free(b, TRUE);
		}
	}
	printf("rpc_fuzz: seed %llu: %lu packets, %lu replies, %lu refused by length, %lu connections ended, %lu bad replies\n",
	       (unsigned long long)seed, iterations, replies, refused, dropped, failures);
	rpc_reader_clear(&reader);
	return failures ? 1 : 0;
}
