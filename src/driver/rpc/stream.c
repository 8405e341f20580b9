/* libvirt RPC streams; see stream.h. */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include <glib-unix.h>

#include "error.h"
#include "log.h"
#include "message.h"
#include "remote_xdr.h"
#include "stream.h"

#define VIR_FROM_THIS VIR_FROM_STREAMS

/* libvirtd's chunk size for stream data. */
#define CHUNK 262120
/* A client that does not read its console output loses it past this
 * much queued, rather than growing our memory. */
#define BACKLOG_MAX (4 * 1024 * 1024)

struct rpc_stream {
	gint refs;			/* the client's list (or pending), kicks */
	struct rpc_conn *conn;		/* NULL once the client is gone */
	int proc;
	unsigned serial;
	int fd;				/* -1 once released */
	guint watch;
	bool warned;
	rpc_stream_released_fn released;
	void *opaque;
};

static void stream_unref(struct rpc_stream *s)
{
	if (g_atomic_int_dec_and_test(&s->refs))
		g_free(s);
}

static void send_packet(struct rpc_stream *s, int status, const void *data, size_t len)
{
	struct rpc_header hdr = {
		.prog = REMOTE_PROGRAM, .vers = REMOTE_PROTOCOL_VERSION, .proc = s->proc,
		.type = RPC_STREAM, .serial = s->serial, .status = status,
	};
	GBytes *pkt;

	if (!s->conn)
		return;
	pkt = rpc_msg_encode_raw(&hdr, data, len);
	if (pkt)
		s->conn->send(s->conn, pkt);
	drv_error_reset();
}

/* Lets go of the fd and tells the owner, once. */
static void release(struct rpc_stream *s)
{
	if (s->fd < 0)
		return;
	if (s->watch)
		g_source_remove(s->watch);
	s->watch = 0;
	close(s->fd);
	s->fd = -1;
	if (s->released)
		s->released(s, s->opaque);
}

static gboolean stream_io(gint fd, GIOCondition cond, gpointer data)
{
	struct rpc_stream *s = data;
	static char buf[CHUNK];		/* main loop only */
	ssize_t n = read(fd, buf, sizeof(buf));

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return G_SOURCE_CONTINUE;
	if (n <= 0) {
		/* End of data (a pty reads EIO once its master is gone):
		 * a zero-length CONTINUE; the client then finishes. */
		send_packet(s, RPC_CONTINUE, NULL, 0);
		s->watch = 0;
		release(s);
		return G_SOURCE_REMOVE;
	}
	if (s->conn && s->conn->backlog && s->conn->backlog(s->conn) > BACKLOG_MAX) {
		if (!s->warned)
			pr_warn("client %u does not read its stream: dropping output", s->conn->id);
		s->warned = true;
		return G_SOURCE_CONTINUE;
	}
	s->warned = false;
	send_packet(s, RPC_CONTINUE, buf, n);
	return G_SOURCE_CONTINUE;
}

struct rpc_stream *rpc_stream_open(struct rpc_conn *conn, int fd, rpc_stream_released_fn released,
				   void *opaque)
{
	struct rpc_stream *s = g_new0(struct rpc_stream, 1);

	s->refs = 1;
	s->conn = conn;
	s->proc = conn->call.proc;
	s->serial = conn->call.serial;
	s->fd = fd;
	s->released = released;
	s->opaque = opaque;
	g_assert(!conn->pending_stream);	/* one stream per call */
	conn->pending_stream = s;
	return s;
}

static gboolean kick_cb(gpointer data)
{
	struct rpc_stream *s = data;

	if (s->fd >= 0) {
		send_packet(s, RPC_CONTINUE, NULL, 0);
		release(s);
	}
	stream_unref(s);
	return G_SOURCE_REMOVE;
}

void rpc_stream_kick(struct rpc_stream *s)
{
	g_atomic_int_inc(&s->refs);
	g_idle_add(kick_cb, s);
}

void rpc_stream_start_pending(struct rpc_conn *conn)
{
	struct rpc_stream *s = conn->pending_stream;

	if (!s)
		return;
	conn->pending_stream = NULL;
	conn->streams = g_list_append(conn->streams, s);
	if (s->fd >= 0)
		s->watch = g_unix_fd_add(s->fd, G_IO_IN | G_IO_HUP | G_IO_ERR, stream_io, s);
}

void rpc_stream_input(struct rpc_conn *conn, const struct rpc_header *hdr, const uint8_t *pkt,
		      size_t len)
{
	size_t off = RPC_LEN_SIZE + RPC_HEADER_SIZE;
	struct rpc_stream *s = NULL;

	/* CLIENT: the pair (proc, serial) must name one of its own open
	 * streams; anything else is ignored, as libvirtd does. */
	for (GList *l = conn->streams; l; l = l->next) {
		struct rpc_stream *c = l->data;

		if (c->proc == hdr->proc && c->serial == hdr->serial) {
			s = c;
			break;
		}
	}
	if (!s)
		return;
	if (hdr->status == RPC_CONTINUE) {
		/* Console input: what the pty does not take now is lost, as
		 * on a serial line whose receiver is not reading. */
		if (s->fd >= 0 && len > off && write(s->fd, pkt + off, len - off) < 0 &&
		    errno != EAGAIN)
			pr_debug("client %u: stream write: %s", conn->id, g_strerror(errno));
		return;
	}
	/* OK (finish) or ERROR (abort): both get an empty OK. */
	send_packet(s, RPC_OK, NULL, 0);
	release(s);
	conn->streams = g_list_remove(conn->streams, s);
	s->conn = NULL;
	stream_unref(s);
}

void rpc_stream_discard_pending(struct rpc_conn *conn)
{
	struct rpc_stream *s = conn->pending_stream;

	if (!s)
		return;
	conn->pending_stream = NULL;
	s->conn = NULL;
	release(s);
	stream_unref(s);
}

void rpc_streams_close_all(struct rpc_conn *conn)
{
	while (conn->streams) {
		struct rpc_stream *s = conn->streams->data;

		conn->streams = g_list_delete_link(conn->streams, conn->streams);
		s->conn = NULL;
		release(s);
		stream_unref(s);
	}
}
