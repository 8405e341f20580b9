/* Relaying the secondary drivers' procedures to libvirt's daemons; see
 * forward.h. */
/* util.h before GLib: GLib redefines MIN/MAX quietly, util.h does not. */
#include "util.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <glib-unix.h>

#include "driver.h"
#include "error.h"
#include "forward.h"
#include "log.h"
#include "message.h"
#include "proc_names.h"
#include "reader.h"
#include "remote_xdr.h"
#include "reply_error.h"

/* Stop reading the client while this much waits for a daemon, and stop
 * reading a daemon while this much waits for the client: a volume
 * upload or download goes at the pace of the slower side. */
#define LINK_OUT_HIGH (1024 * 1024)
#define CLIENT_BACKLOG_HIGH (1024 * 1024)

/* Procedures only this file uses (libvirt's numbers). */
enum {
	PROC_AUTH_POLKIT = 70,
	PROC_STORAGE_VOL_UPLOAD = 208,
	PROC_STORAGE_VOL_DOWNLOAD = 209,
	PROC_CONNECT_EVENT_CONNECTION_CLOSED = 362,
};

/* Our own calls during the set-up, before any of the client's. */
enum { SERIAL_AUTH_LIST = 0, SERIAL_AUTH_POLKIT = 1, SERIAL_OPEN = 2 };

static const struct family {
	const char *scheme;	/* <scheme>:///system */
	const char *daemon;	/* its modular daemon */
	const char *what;	/* for messages */
	int domain;		/* virErrorDomain of our errors about it */
} families[FWD_NFAMILIES] = {
	[FWD_NETWORK] = { "network", "virtnetworkd", "networks", VIR_FROM_NETWORK },
	[FWD_STORAGE] = { "storage", "virtstoraged", "storage pools and volumes", VIR_FROM_STORAGE },
	[FWD_NODEDEV] = { "nodedev", "virtnodedevd", "node devices", VIR_FROM_NODEDEV },
	[FWD_SECRET] = { "secret", "virtsecretd", "secrets", VIR_FROM_SECRET },
	[FWD_NWFILTER] = { "nwfilter", "virtnwfilterd", "network filters", VIR_FROM_NWFILTER },
	[FWD_INTERFACE] = { "interface", "virtinterfaced", "host interfaces", VIR_FROM_INTERFACE },
};

enum link_state {
	LINK_AUTH,		/* AUTH_LIST sent */
	LINK_POLKIT,		/* AUTH_POLKIT sent */
	LINK_OPENING,		/* CONNECT_OPEN sent */
	LINK_READY,
};

struct link {
	struct rpc_conn *conn;
	enum fwd_family fam;
	enum link_state state;
	int fd;
	char *path;		/* the daemon's socket */
	guint watch;
	GIOCondition cond;
	guint timer;		/* the set-up's deadline */
	GQueue pending;		/* client packets waiting for LINK_READY */
	size_t pending_bytes;
	GQueue out;		/* packets to the daemon */
	size_t out_off;
	size_t out_bytes;
	struct rpc_reader in;	/* the packet being read */
	GHashTable *calls;	/* serial -> proc of calls not answered yet */
	GHashTable *streams;	/* serial -> proc of streams that may be open */
	struct rpc_keepalive ka;
	bool paused;		/* not reading: the client's backlog is high */
};

struct fwd_client {
	struct link *links[FWD_NFAMILIES];
};

static void link_rearm(struct link *l);
static void link_free(struct link *l);

/* What the client sent that the daemon has not taken yet. */
static size_t link_backlog(const struct link *l)
{
	return l->out_bytes + l->pending_bytes;
}

static enum fwd_family proc_family(int proc)
{
	const struct rpc_proc_name *n = rpc_proc_name(proc);

	return n ? rpc_proc_family(n->flags) : FWD_NONE;
}

bool rpc_fwd_handles(const uint8_t *pkt, size_t len)
{
	struct rpc_header hdr;

	if (rpc_msg_decode_header(pkt, len, &hdr) < 0) {
		drv_error_reset();
		return false;
	}
	return proc_family(hdr.proc) != FWD_NONE;
}

/* A packet with an error body for the client: a REPLY to a call, or the
 * STREAM error that ends a stream. */
static void send_error(struct rpc_conn *conn, int proc, unsigned serial, int type, int domain,
		       int code, const char *fmt, ...) __attribute__((format(printf, 7, 8)));
static void send_error(struct rpc_conn *conn, int proc, unsigned serial, int type, int domain,
		       int code, const char *fmt, ...)
{
	struct rpc_header hdr = {
		.prog = REMOTE_PROGRAM, .vers = REMOTE_PROTOCOL_VERSION, .proc = proc,
		.type = type, .serial = serial, .status = RPC_ERROR,
	};
	g_autofree char *detail = NULL, *text = NULL;
	struct rpc_error body;
	GBytes *pkt;
	va_list ap;

	va_start(ap, fmt);
	detail = g_strdup_vprintf(fmt, ap);
	va_end(ap);
	text = rpc_error_text(code, detail);
	memset(&body, 0, sizeof(body));
	body.code = code;
	body.domain = domain;
	body.message = &text;
	body.level = VIR_ERR_ERROR;
	pkt = rpc_msg_encode(&hdr, (xdrproc_t)xdr_rpc_error, &body);
	drv_error_reset();
	if (pkt)
		conn->send(conn, pkt);
}

/* Ends the link: every call still waiting for it (those held back
 * during the set-up included) gets an error reply, so no client waits
 * for an answer that cannot come, and every stream an error; then the
 * socket closes.  The next call opens a new link. */
static void link_fail(struct link *l, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void link_fail(struct link *l, int code, const char *fmt, ...)
{
	const struct family *f = &families[l->fam];
	struct rpc_conn *conn = l->conn;
	g_autofree char *why = NULL;
	GHashTableIter it;
	gpointer k, v;
	va_list ap;

	va_start(ap, fmt);
	why = g_strdup_vprintf(fmt, ap);
	va_end(ap);
	pr_warn("client %u: %s (%s): %s", l->conn->id, f->what, l->path ? l->path : f->daemon, why);
	g_hash_table_iter_init(&it, l->calls);
	while (g_hash_table_iter_next(&it, &k, &v))
		send_error(l->conn, GPOINTER_TO_INT(v), GPOINTER_TO_UINT(k), RPC_REPLY, f->domain, code,
			   "%s", why);
	g_hash_table_iter_init(&it, l->streams);
	while (g_hash_table_iter_next(&it, &k, &v))
		send_error(l->conn, GPOINTER_TO_INT(v), GPOINTER_TO_UINT(k), RPC_STREAM, f->domain, code,
			   "%s", why);
	l->conn->fwd->links[l->fam] = NULL;
	link_free(l);
	/* The client may have stopped being read for this link's sake. */
	if (conn->wake)
		conn->wake(conn);
}

static void link_free(struct link *l)
{
	if (l->watch)
		g_source_remove(l->watch);
	if (l->timer)
		g_source_remove(l->timer);
	if (l->fd >= 0)
		close(l->fd);
	g_queue_clear_full(&l->pending, (GDestroyNotify)g_bytes_unref);
	g_queue_clear_full(&l->out, (GDestroyNotify)g_bytes_unref);
	g_hash_table_destroy(l->calls);
	g_hash_table_destroy(l->streams);
	rpc_reader_clear(&l->in);
	g_free(l->path);
	g_free(l);
}

static void link_queue(struct link *l, GBytes *pkt)
{
	l->out_bytes += g_bytes_get_size(pkt);
	g_queue_push_tail(&l->out, pkt);
	link_rearm(l);
}

static int link_call(struct link *l, int proc, unsigned serial, xdrproc_t filter, void *args)
{
	struct rpc_header hdr = {
		.prog = REMOTE_PROGRAM, .vers = REMOTE_PROTOCOL_VERSION, .proc = proc,
		.type = RPC_CALL, .serial = serial, .status = RPC_OK,
	};
	GBytes *pkt = rpc_msg_encode(&hdr, filter, args);

	drv_error_reset();
	if (!pkt)
		return -1;
	link_queue(l, pkt);
	return 0;
}

static int send_open(struct link *l)
{
	g_autofree char *uri = g_strdup_printf("%s:///%s", families[l->fam].scheme,
					       drv_state.privileged ? "system" : "session");
	remote_connect_open_args a = { .name = &uri, .flags = l->conn->readonly ? VIR_CONNECT_RO : 0 };

	l->state = LINK_OPENING;
	return link_call(l, REMOTE_PROC_CONNECT_OPEN, SERIAL_OPEN, (xdrproc_t)xdr_remote_connect_open_args,
			 &a);
}

/* The daemon's error reply, as text. */
static char *reply_message(const uint8_t *pkt, size_t len)
{
	struct rpc_error e;
	char *s;

	memset(&e, 0, sizeof(e));
	if (rpc_msg_decode_body(pkt, len, (xdrproc_t)xdr_rpc_error, &e) < 0) {
		drv_error_reset();
		return g_strdup("an error reply that cannot be decoded");
	}
	s = g_strdup(e.message && *e.message ? *e.message : "unknown error");
	xdr_free((xdrproc_t)xdr_rpc_error, (char *)&e);
	return s;
}

/* A reply to one of our set-up calls.  0, or -1 once the link is gone. */
static int setup_reply(struct link *l, const struct rpc_header *hdr, const uint8_t *pkt, size_t len)
{
	const struct family *f = &families[l->fam];
	remote_auth_list_ret auth;
	bool none = false, polkit = false;

	/* DAEMON: a reply that is not the one expected ends the link. */
	if (hdr->status != RPC_OK && l->state == LINK_OPENING) {
		g_autofree char *m = reply_message(pkt, len);

		/* Typically a libvirtd built or started without that
		 * driver: "no connection driver available for ...". */
		link_fail(l, VIR_ERR_NO_CONNECT,
			  "%s:///%s: the daemon on %s does not serve it (%s); start %s, or libvirtd with its %s driver",
			  f->scheme, drv_state.privileged ? "system" : "session", l->path, m, f->daemon,
			  f->scheme);
		return -1;
	}
	if (hdr->status != RPC_OK) {
		g_autofree char *m = reply_message(pkt, len);

		link_fail(l, VIR_ERR_OPERATION_FAILED, "%s refused the connection: %s", l->path, m);
		return -1;
	}
	switch (l->state) {
	case LINK_AUTH:
		if (hdr->proc != REMOTE_PROC_AUTH_LIST)
			break;
		memset(&auth, 0, sizeof(auth));
		if (rpc_msg_decode_body(pkt, len, (xdrproc_t)xdr_remote_auth_list_ret, &auth) < 0) {
			drv_error_reset();
			break;
		}
		for (u_int i = 0; i < auth.types.types_len; i++) {
			none |= auth.types.types_val[i] == REMOTE_AUTH_NONE;
			polkit |= auth.types.types_val[i] == REMOTE_AUTH_POLKIT;
		}
		none |= auth.types.types_len == 0;
		xdr_free((xdrproc_t)xdr_remote_auth_list_ret, (char *)&auth);
		if (none) {
			send_open(l);
		} else if (polkit) {
			/* libvirt's daemons grant root (and the owner of a
			 * session daemon) without asking polkit. */
			l->state = LINK_POLKIT;
			link_call(l, PROC_AUTH_POLKIT, SERIAL_AUTH_POLKIT, (xdrproc_t)rpc_xdr_void,
				  NULL);
		} else {
			link_fail(l, VIR_ERR_AUTH_FAILED,
				  "%s asks for SASL authentication, which virtkvmmd does not do; allow %s without authentication (auth_unix_rw/auth_unix_ro)",
				  l->path, f->daemon);
			return -1;
		}
		return 0;
	case LINK_POLKIT:
		if (hdr->proc != PROC_AUTH_POLKIT)
			break;
		send_open(l);
		return 0;
	case LINK_OPENING:
		if (hdr->proc != REMOTE_PROC_CONNECT_OPEN)
			break;
		l->state = LINK_READY;
		g_source_remove(l->timer);
		l->timer = 0;
		pr_debug("client %u: %s through %s", l->conn->id, f->what, l->path);
		while (!g_queue_is_empty(&l->pending))
			link_queue(l, g_queue_pop_head(&l->pending));
		l->pending_bytes = 0;
		return 0;
	case LINK_READY:
		break;
	}
	link_fail(l, VIR_ERR_RPC, "unexpected reply (procedure %d) while connecting", hdr->proc);
	return -1;
}

/* Stream procedures: a successful reply opens a stream. */
static bool opens_stream(int proc)
{
	return proc == PROC_STORAGE_VOL_UPLOAD || proc == PROC_STORAGE_VOL_DOWNLOAD;
}

/* One whole packet from the daemon.  0, or -1 once the link is gone. */
static int link_packet(struct link *l, const uint8_t *pkt, size_t len)
{
	struct rpc_header hdr;

	if (rpc_msg_decode_header(pkt, len, &hdr) < 0) {
		g_autofree char *m = g_strdup(drv_error_last()->message);

		drv_error_reset();
		link_fail(l, VIR_ERR_RPC, "%s", m);
		return -1;
	}
	rpc_keepalive_received(&l->ka, g_get_monotonic_time());
	if (hdr.prog == KEEPALIVE_PROGRAM) {
		if (hdr.type == RPC_MESSAGE && hdr.proc == KEEPALIVE_PROC_PING) {
			GBytes *pong = rpc_keepalive_packet(KEEPALIVE_PROC_PONG);

			if (pong)
				link_queue(l, pong);
		}
		return 0;
	}
	/* DAEMON: only the remote program goes to the client; the client
	 * library checks each reply against its own calls. */
	if (hdr.prog != REMOTE_PROGRAM || hdr.vers != REMOTE_PROTOCOL_VERSION)
		return 0;
	if (l->state != LINK_READY) {
		return hdr.type == RPC_REPLY ? setup_reply(l, &hdr, pkt, len) : 0;
	}
	switch (hdr.type) {
	case RPC_REPLY:
		if (!g_hash_table_remove(l->calls, GUINT_TO_POINTER(hdr.serial)))
			return 0;	/* not a call of this client's */
		if (opens_stream(hdr.proc) && hdr.status == RPC_OK)
			g_hash_table_insert(l->streams, GUINT_TO_POINTER(hdr.serial),
					    GINT_TO_POINTER(hdr.proc));
		break;
	case RPC_MESSAGE:
		/* Events; the close-callback event is ours to send, not
		 * the secondary daemon's (we never registered one there). */
		if (hdr.proc == PROC_CONNECT_EVENT_CONNECTION_CLOSED)
			return 0;
		break;
	case RPC_STREAM:
	case RPC_STREAM_HOLE:
		if (hdr.status == RPC_ERROR || (hdr.status == RPC_OK && hdr.type == RPC_STREAM))
			/* The daemon's last word on it (an error, or the end
			 * of data / the answer to the client's finish): a
			 * failing link owes it nothing more. */
			g_hash_table_remove(l->streams, GUINT_TO_POINTER(hdr.serial));
		break;
	default:
		return 0;
	}
	l->conn->send(l->conn, g_bytes_new(pkt, len));
	return 0;
}

static ssize_t link_recv(void *opaque, void *buf, size_t len)
{
	struct link *l = opaque;

	return recv(l->fd, buf, len, 0);
}

/* Reads what the daemon sent.  0, or -1 once the link is gone. */
static int link_read(struct link *l)
{
	for (int packets = 0; packets < 16; packets++) {
		if (l->paused)
			return 0;
		switch (rpc_reader_recv(&l->in, RPC_PACKET_MAX, link_recv, l)) {
		case RPC_READ_MORE:
			/* A partial read counts against the wakeup's budget
			 * too: a daemon trickling bytes cannot hold the loop. */
			continue;
		case RPC_READ_AGAIN:
			return 0;
		case RPC_READ_EOF:
			link_fail(l, VIR_ERR_RPC, "the daemon closed the connection");
			return -1;
		case RPC_READ_ERROR:
			link_fail(l, VIR_ERR_SYSTEM_ERROR, "cannot read from the daemon: %s",
				  g_strerror(errno));
			return -1;
		case RPC_READ_BAD_LENGTH:
		case RPC_READ_TOO_BIG:
			/* DAEMON: framed like any peer's. */
			drv_error_reset();
			link_fail(l, VIR_ERR_RPC, "the daemon sent a packet of length %u",
				  (unsigned)l->in.len);
			return -1;
		case RPC_READ_PACKET:
			break;
		}
		if (link_packet(l, l->in.buf, l->in.len) < 0)
			return -1;
		rpc_reader_next(&l->in);
		/* The client stopped reading: so do we. */
		if (l->conn->backlog && l->conn->backlog(l->conn) > CLIENT_BACKLOG_HIGH)
			l->paused = true;
	}
	return 0;
}

/* Writes what the socket takes.  0, or -1 once the link is gone. */
static int link_write(struct link *l)
{
	bool was_high = link_backlog(l) > LINK_OUT_HIGH;

	while (!g_queue_is_empty(&l->out)) {
		GBytes *pkt = g_queue_peek_head(&l->out);
		size_t size;
		const uint8_t *data = g_bytes_get_data(pkt, &size);
		ssize_t n = send(l->fd, data + l->out_off, size - l->out_off,
				 MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			link_fail(l, VIR_ERR_SYSTEM_ERROR, "cannot write to the daemon: %s",
				  g_strerror(errno));
			return -1;
		}
		l->out_off += n;
		l->out_bytes -= n;
		if (l->out_off == size) {
			g_bytes_unref(g_queue_pop_head(&l->out));
			l->out_off = 0;
		}
	}
	/* The client's reading paused on us: it may go on. */
	if (was_high && link_backlog(l) <= LINK_OUT_HIGH && l->conn->wake)
		l->conn->wake(l->conn);
	return 0;
}

static gboolean link_io(gint fd, GIOCondition cond, gpointer data)
{
	struct link *l = data;

	(void)fd;
	if ((cond & G_IO_IN) || ((cond & (G_IO_HUP | G_IO_ERR)) && !l->paused)) {
		if (link_read(l) < 0)
			return G_SOURCE_REMOVE;	/* link_free removed the source */
	} else if (cond & (G_IO_HUP | G_IO_ERR)) {
		link_fail(l, VIR_ERR_RPC, "the daemon closed the connection");
		return G_SOURCE_REMOVE;
	}
	if (link_write(l) < 0)
		return G_SOURCE_REMOVE;
	link_rearm(l);
	return G_SOURCE_CONTINUE;
}

static void link_rearm(struct link *l)
{
	GIOCondition want = G_IO_HUP | G_IO_ERR;

	if (!l->paused)
		want |= G_IO_IN;
	if (l->out_bytes)
		want |= G_IO_OUT;
	if (l->watch && want == l->cond)
		return;
	if (l->watch)
		g_source_remove(l->watch);
	l->cond = want;
	l->watch = g_unix_fd_add(l->fd, want, link_io, l);
}

static gboolean setup_timeout(gpointer data)
{
	struct link *l = data;

	l->timer = 0;
	link_fail(l, VIR_ERR_OPERATION_TIMEOUT, "%s did not answer within %d seconds", l->path,
		  FWD_OPEN_TIMEOUT);
	return G_SOURCE_REMOVE;
}

/* The sockets the client library would try for this family, in its
 * order: the modular daemon's, then libvirtd's. */
static void socket_paths(enum fwd_family fam, bool readonly, char *paths[2])
{
	const char *ro = readonly && drv_state.privileged ? "-ro" : "";
	g_autofree char *dir = NULL;

	if (drv_state.privileged) {
		dir = g_strdup("/run/libvirt");
	} else {
		const char *xdg = g_getenv("XDG_RUNTIME_DIR");

		dir = xdg && *xdg ? g_build_filename(xdg, "libvirt", NULL)
				  : g_build_filename(g_get_home_dir(), ".cache", "libvirt", NULL);
	}
	paths[0] = g_strdup_printf("%s/%s-sock%s", dir, families[fam].daemon, ro);
	paths[1] = g_strdup_printf("%s/libvirt-sock%s", dir, ro);
}

/* Whether a connect error means nobody serves that socket. */
static bool absent(int err)
{
	return err == ENOENT || err == ECONNREFUSED || err == ENOTDIR;
}

/* A connected socket to the family's daemon, or -1 with *err the reason
 * and *path the socket that failed: the last one tried when nobody
 * serves either (*tried lists them), else the one that refused us. */
static int connect_daemon(enum fwd_family fam, bool readonly, char **path, GString *tried,
			  int *err)
{
	char *paths[2];
	int fd = -1;

	socket_paths(fam, readonly, paths);
	*err = ENOENT;
	for (int i = 0; i < 2 && fd < 0; i++) {
		struct sockaddr_un sa = { .sun_family = AF_UNIX };

		g_string_append_printf(tried, "%s%s", i ? " nor " : "", paths[i]);
		g_free(*path);
		*path = g_strdup(paths[i]);
		if (strlen(paths[i]) >= sizeof(sa.sun_path)) {
			*err = ENAMETOOLONG;
			break;
		}
		strcpy(sa.sun_path, paths[i]);
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			*err = errno;
			break;
		}
		/* A UNIX connect completes at once, or fails (EAGAIN: the
		 * daemon's backlog is full, i.e. it does not accept). */
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
			*err = errno;
			close(fd);
			fd = -1;
			if (!absent(*err))
				break;	/* there, but not for us: say so */
		}
	}
	g_free(paths[0]);
	g_free(paths[1]);
	return fd;
}

/* The client's link for fam, opening it if needed; NULL once the client
 * has had its error reply. */
static struct link *link_get(struct rpc_conn *conn, enum fwd_family fam,
			     const struct rpc_header *call)
{
	const struct family *f = &families[fam];
	struct fwd_client *fc = conn->fwd;
	g_autoptr(GString) tried = g_string_new(NULL);
	struct link *l;
	char *path = NULL;
	int fd, err;

	if (!fc)
		fc = conn->fwd = g_new0(struct fwd_client, 1);
	if (fc->links[fam])
		return fc->links[fam];
	fd = connect_daemon(fam, conn->readonly, &path, tried, &err);
	if (fd < 0 && absent(err)) {
		/* Named so that a person knows what to start. */
		send_error(conn, call->proc, call->serial, RPC_REPLY, f->domain, VIR_ERR_NO_CONNECT,
			   "%s:///%s: virtkvmmd hands %s to libvirt's %s driver, which is not running on this host (neither %s answers: %s); start %s (or libvirtd), e.g. systemctl start %s.socket",
			   f->scheme, drv_state.privileged ? "system" : "session", f->what, f->scheme,
			   tried->str, g_strerror(err), f->daemon, f->daemon);
		g_free(path);
		return NULL;
	}
	if (fd < 0) {
		send_error(conn, call->proc, call->serial, RPC_REPLY, f->domain, VIR_ERR_SYSTEM_ERROR,
			   "cannot connect to libvirt's %s driver at %s: %s", f->scheme, path,
			   g_strerror(err));
		g_free(path);
		return NULL;
	}
	l = g_new0(struct link, 1);
	l->conn = conn;
	l->fam = fam;
	l->fd = fd;
	l->path = path;
	g_queue_init(&l->pending);
	g_queue_init(&l->out);
	rpc_reader_init(&l->in);
	l->calls = g_hash_table_new(NULL, NULL);
	l->streams = g_hash_table_new(NULL, NULL);
	l->ka.enabled = true;
	l->ka.last_rx = g_get_monotonic_time();
	l->state = LINK_AUTH;
	fc->links[fam] = l;
	l->timer = g_timeout_add_seconds(FWD_OPEN_TIMEOUT, setup_timeout, l);
	link_call(l, REMOTE_PROC_AUTH_LIST, SERIAL_AUTH_LIST, (xdrproc_t)rpc_xdr_void, NULL);
	return l;
}

/* A client packet for the link: straight out, or after the set-up. */
static void link_forward(struct link *l, const uint8_t *pkt, size_t len)
{
	GBytes *b = g_bytes_new(pkt, len);

	if (l->state == LINK_READY) {
		link_queue(l, b);
	} else {
		l->pending_bytes += len;
		g_queue_push_tail(&l->pending, b);
	}
}

void rpc_fwd_call(struct rpc_conn *conn, const uint8_t *pkt, size_t len)
{
	struct rpc_header hdr;
	enum fwd_family fam;
	struct link *l;

	if (rpc_msg_decode_header(pkt, len, &hdr) < 0) {
		drv_error_reset();
		return;
	}
	fam = proc_family(hdr.proc);
	/* CLIENT: as for our own procedures, nothing before CONNECT_OPEN
	 * (the open decides read-only and which daemon mode). */
	if (!__atomic_load_n(&conn->open, __ATOMIC_ACQUIRE)) {
		send_error(conn, hdr.proc, hdr.serial, RPC_REPLY, VIR_FROM_REMOTE,
			   VIR_ERR_INTERNAL_ERROR, "connection not open");
		return;
	}
	pr_debug("client %u: forwarding %s (%d) serial %u to libvirt's %s driver", conn->id,
		 rpc_proc_name(hdr.proc)->api ? rpc_proc_name(hdr.proc)->api : "?", hdr.proc,
		 hdr.serial, families[fam].scheme);
	l = link_get(conn, fam, &hdr);
	if (!l)
		return;
	g_hash_table_insert(l->calls, GUINT_TO_POINTER(hdr.serial), GINT_TO_POINTER(hdr.proc));
	link_forward(l, pkt, len);
}

bool rpc_fwd_stream(struct rpc_conn *conn, const struct rpc_header *hdr, const uint8_t *pkt,
		    size_t len)
{
	enum fwd_family fam = proc_family(hdr->proc);
	struct fwd_client *fc = conn->fwd;

	if (fam == FWD_NONE)
		return false;
	/* CLIENT: stream packets go only to a link the client opened; the
	 * daemon checks they name one of its streams. */
	if (fc && fc->links[fam])
		link_forward(fc->links[fam], pkt, len);
	return true;
}

bool rpc_fwd_blocked(const struct rpc_conn *conn)
{
	const struct fwd_client *fc = conn->fwd;

	if (!fc)
		return false;
	for (int i = 0; i < FWD_NFAMILIES; i++)
		if (fc->links[i] && link_backlog(fc->links[i]) > LINK_OUT_HIGH)
			return true;
	return false;
}

void rpc_fwd_resume(struct rpc_conn *conn)
{
	struct fwd_client *fc = conn->fwd;

	if (!fc)
		return;
	for (int i = 0; i < FWD_NFAMILIES; i++) {
		struct link *l = fc->links[i];

		if (l && l->paused) {
			l->paused = false;
			link_rearm(l);
		}
	}
}

void rpc_fwd_tick(struct rpc_conn *conn, gint64 now, unsigned interval, unsigned count)
{
	struct fwd_client *fc = conn->fwd;

	if (!fc)
		return;
	/* Clients may go without keepalive (interval 0, or -1 in the
	 * configuration); links may not, or a stopped daemon would hold its
	 * callers for ever.  And at least one ping: a daemon busy with a
	 * long call still answers pings. */
	if (interval == 0 || interval == UINT_MAX) {
		interval = FWD_KEEPALIVE_INTERVAL;
		count = FWD_KEEPALIVE_COUNT;
	}
	count = MAX(count, 1);
	for (int i = 0; i < FWD_NFAMILIES; i++) {
		struct link *l = fc->links[i];
		GBytes *ping;

		if (!l || l->state != LINK_READY)
			continue;
		/* An idle link owes us nothing: only silence while calls
		 * or streams wait counts. */
		if (!g_hash_table_size(l->calls) && !g_hash_table_size(l->streams)) {
			rpc_keepalive_received(&l->ka, now);
			continue;
		}
		switch (rpc_keepalive_tick(&l->ka, now, interval, count)) {
		case RPC_KEEPALIVE_NOTHING:
			break;
		case RPC_KEEPALIVE_PING:
			ping = rpc_keepalive_packet(KEEPALIVE_PROC_PING);
			if (ping)
				link_queue(l, ping);
			break;
		case RPC_KEEPALIVE_DEAD:
			link_fail(l, VIR_ERR_OPERATION_TIMEOUT,
				  "%s stopped answering (no answer to %u keepalive pings)", l->path,
				  count);
			break;
		}
	}
}

void rpc_fwd_conn_gone(struct rpc_conn *conn)
{
	struct fwd_client *fc = conn->fwd;

	if (!fc)
		return;
	for (int i = 0; i < FWD_NFAMILIES; i++)
		if (fc->links[i]) {
			pr_debug("client %u: closing its connection to %s", conn->id,
				 fc->links[i]->path);
			link_free(fc->links[i]);
		}
	g_free(fc);
	conn->fwd = NULL;
}
