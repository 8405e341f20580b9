/* Framing of RPC packets off a byte stream; see reader.h. */
#include <errno.h>

#include <glib.h>

#include "message.h"
#include "reader.h"

/* Read at most this much of a packet ahead of the data actually
 * received, so a length word claiming 32 MiB costs memory only as the
 * bytes arrive. */
#define READ_CHUNK 65536

void rpc_reader_init(struct rpc_reader *r)
{
	r->cap = READ_CHUNK;
	r->buf = g_malloc(r->cap);
	r->have = 0;
	r->len = 0;
}

void rpc_reader_clear(struct rpc_reader *r)
{
	g_free(r->buf);
	r->buf = NULL;
	r->cap = r->have = r->len = 0;
}

enum rpc_read rpc_reader_recv(struct rpc_reader *r, size_t max, rpc_reader_recv_fn recv_fn,
			      void *opaque)
{
	size_t want;
	ssize_t n;

	if (r->have < RPC_LEN_SIZE) {
		want = RPC_LEN_SIZE - r->have;
	} else {
		/* Grow geometrically, but never past twice what has
		 * arrived (plus a chunk) nor past the packet. */
		if (r->cap < MIN(r->len, r->have + READ_CHUNK)) {
			r->cap = MIN(r->len, MAX(r->cap * 2, r->have + READ_CHUNK));
			r->buf = g_realloc(r->buf, r->cap);
		}
		want = MIN(r->len, r->cap) - r->have;
	}
	do
		n = recv_fn(opaque, r->buf + r->have, want);
	while (n < 0 && errno == EINTR);
	if (n == 0)
		return RPC_READ_EOF;
	if (n < 0)
		return errno == EAGAIN || errno == EWOULDBLOCK ? RPC_READ_AGAIN : RPC_READ_ERROR;
	r->have += n;
	if (r->have == RPC_LEN_SIZE && r->len == 0) {
		uint32_t len = rpc_msg_length(r->buf);

		/* CLIENT: (and DAEMON:) the length word is checked before a
		 * byte of the body is buffered; after a bad one nothing can
		 * be framed. */
		if (rpc_msg_check_length(len) < 0) {
			r->len = len;
			return RPC_READ_BAD_LENGTH;
		}
		r->len = len;
		if (len > max)
			return RPC_READ_TOO_BIG;
	}
	return r->len && r->have == r->len ? RPC_READ_PACKET : RPC_READ_MORE;
}

void rpc_reader_next(struct rpc_reader *r)
{
	r->have = 0;
	r->len = 0;
	if (r->cap > READ_CHUNK) {
		/* Do not keep a huge buffer for an idle peer. */
		r->buf = g_realloc(r->buf, READ_CHUNK);
		r->cap = READ_CHUNK;
	}
}
