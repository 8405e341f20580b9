/* The RPC server; see server.h. */
/* util.h before GLib: GLib redefines MIN/MAX quietly, util.h does not. */
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <glib-unix.h>

#include "dispatch.h"
#include "error.h"
#include "remote_xdr.h"
#include "remote_host_xdr.h"
#include "remote_job_xdr.h"
#include "remote_migrate_xdr.h"
#include "remote_save_xdr.h"
#include "forward.h"
#include "log.h"
#include "message.h"
#include "reader.h"
#include "server.h"
#include "stream.h"
#include "tls.h"

/* Stop reading a client's calls while this much of its replies waits
 * unread: a client that only writes cannot make us buffer without end. */
#define OUT_HIGH (1024 * 1024)
/* Packets handled per wake-up, so one busy client cannot starve others. */
#define PACKETS_PER_WAKEUP 16
/* CLIENT: the longest packet a client may send before CONNECT_OPEN or on
 * a read-only connection: nothing such a client may call needs more, and
 * anyone may connect to the read-only socket.  Read-write clients get the
 * protocol's 32 MiB. */
#define SMALL_PACKET_MAX (1024 * 1024)
/* After EMFILE (or ENFILE, ENOMEM) from accept, stop accepting for this
 * long, or until a client goes: the listening socket stays readable, and
 * retrying at once would only spin. */
#define ACCEPT_PAUSE_MS 500
/* CLIENT: a TLS client that has not finished its handshake by then is
 * dropped: one that connects and stays silent must not hold a
 * descriptor (and an anonymous slot) for ever. */
#define TLS_HANDSHAKE_MS 10000

struct listener {
	struct rpc_server *srv;
	int fd;
	char *path;
	bool readonly;
	bool inherited;		/* systemd's: its file is not ours to remove */
	struct tls_context *tls;	/* a TLS listener on TCP (path: its address) */
	guint watch;			/* 0 while accepting is suspended */
	unsigned anonymous;		/* its clients that have not opened yet */
};

/* Threads.  The main loop owns sockets, buffers and the client list;
 * every call to the remote program runs on a worker, since handlers may
 * block (fsync, locks held by other calls, a starting guest), so a
 * slow call never stalls another client.  One call per client at a
 * time, in the order it sent them: a client sees its replies in order,
 * and handlers need no locking against their own connection.  Workers
 * never touch a client's buffers: what they send goes through the
 * server's outbox, drained on the main loop.
 *
 * A client is freed on the main loop when its last reference goes: the
 * list's, the running call's, and one per packet in the outbox.  Its
 * event callbacks are removed when it is dropped (under the events lock),
 * so after that nothing new is sent to it. */
struct client {
	struct rpc_conn conn;		/* first: send() finds the client */
	struct rpc_server *srv;
	int refs;			/* atomic; only the main loop drops to 0 */
	bool dead;			/* dropped: socket closed, waits for refs */
	bool busy;			/* a worker runs one of its calls */
	unsigned sides;			/* side calls running beside it */
	bool closing;			/* conn.closing as of the last finished call */
	bool anonymous;			/* counted in listener->anonymous */
	bool prio;			/* its running call is on a priority worker */
	struct tls_session *tls;	/* TLS clients: their session */
	bool handshaking;		/* TLS: not yet through the handshake and check */
	bool hs_want_write;		/* TLS handshake waits for the socket to take data */
	guint hs_timer;			/* TLS: drops it if the handshake takes too long */
	guint pending_idle;		/* TLS: reads decrypted bytes the socket won't signal */
	char *peer;			/* TCP clients: address:port, for log lines */
	struct listener *listener;
	GQueue calls;			/* GBytes calls waiting, main loop only */
	GBytes *running;		/* the call a worker runs (set while busy) */
	int fd;
	guint watch;
	GIOCondition cond;
	struct rpc_reader in;		/* the packet being read */
	GQueue out;			/* GBytes packets to write */
	size_t out_off;			/* bytes of the head already written */
	size_t out_bytes;		/* bytes queued, not yet written */
};

/* What a worker hands back to the main loop: a packet for a client, or
 * (pkt NULL) the end of the client's running call. */
struct outmsg {
	struct client *c;		/* holds a reference */
	GBytes *pkt;
	int rc;				/* rpc_dispatch's, for the end of a call */
	bool side;			/* the end of a side call (below), not the running one */
};

struct rpc_server {
	struct rpc_server_config cfg;
	GPtrArray *listeners;
	GList *clients;
	unsigned nclients;
	unsigned next_id;
	gint64 idle_since;
	guint tick;
	GThread *main_thread;
	GThreadPool *workers;
	GThreadPool *prio_workers;	/* priority calls only, when workers are all busy */
	GThreadPool *side_workers;	/* side calls: a long job's progress and abort */
	unsigned normal_busy;		/* calls handed to workers, not yet ended */
	guint accept_resume;		/* timer re-enabling accept after EMFILE */
	bool accept_suspended;
	bool accept_logged;		/* EMFILE logged once */
	GMutex outbox_lock;
	GQueue outbox;			/* struct outmsg * */
	int outbox_fd;			/* eventfd: the outbox is not empty */
	guint outbox_watch;
};

static void client_drop(struct client *c);
static void client_next_call(struct client *c);
static void client_not_anonymous(struct client *c);
static void listeners_update(struct rpc_server *srv);
static void listener_update(struct listener *l);
static void accept_resume(struct rpc_server *srv);
static gboolean listener_io(gint fd, GIOCondition cond, gpointer data);

/* CLIENT: max_client_requests, the calls a client may have waiting and
 * running; beyond them its socket is not read. */
static bool client_calls_full(const struct client *c)
{
	return c->calls.length + (c->busy ? 1 : 0) + c->sides >= c->srv->cfg.max_client_requests;
}

static GIOCondition client_wanted(const struct client *c)
{
	GIOCondition cond = G_IO_HUP | G_IO_ERR;

	if (c->handshaking)
		return cond | (c->hs_want_write ? G_IO_OUT : G_IO_IN);
	if (!c->closing && c->out_bytes <= OUT_HIGH && !client_calls_full(c) &&
	    !rpc_fwd_blocked(&c->conn))
		cond |= G_IO_IN;
	if (c->out_bytes > 0)
		cond |= G_IO_OUT;
	return cond;
}

static gboolean client_io(gint fd, GIOCondition cond, gpointer data);
static gboolean client_pending_cb(gpointer data);
static void client_ref(struct client *c);

/* Watches the client's socket for what it now needs.  Safe from inside
 * the client's own callback: GLib allows destroying the source being
 * dispatched. */
static void client_rearm(struct client *c)
{
	GIOCondition want = client_wanted(c);

	/* TLS: records already decrypted make no noise on the socket. */
	if (c->tls && !c->handshaking && (want & G_IO_IN) && !c->pending_idle &&
	    tls_session_pending(c->tls)) {
		client_ref(c);
		c->pending_idle = g_idle_add(client_pending_cb, c);
	}
	if (c->watch && want == c->cond)
		return;
	if (c->watch)
		g_source_remove(c->watch);
	c->cond = want;
	c->watch = g_unix_fd_add(c->fd, want, client_io, c);
}

static void client_ref(struct client *c)
{
	g_atomic_int_inc(&c->refs);
}

/* Main loop only. */
static void client_unref(struct client *c)
{
	if (!g_atomic_int_dec_and_test(&c->refs))
		return;
	g_queue_clear_full(&c->calls, (GDestroyNotify)g_bytes_unref);
	g_queue_clear_full(&c->out, (GDestroyNotify)g_bytes_unref);
	rpc_reader_clear(&c->in);
	g_free(c->peer);
	g_free(c);
}

/* Main loop: queue a packet on the client's socket. */
static void client_queue_out(struct client *c, GBytes *pkt)
{
	if (c->dead) {
		g_bytes_unref(pkt);
		return;
	}
	/* Atomic stores: other clients' workers read it (backlog). */
	__atomic_store_n(&c->out_bytes, c->out_bytes + g_bytes_get_size(pkt), __ATOMIC_RELAXED);
	g_queue_push_tail(&c->out, pkt);
	/* Events reach clients other than the one being served, whose
	 * watch would not otherwise ask for G_IO_OUT. */
	client_rearm(c);
}

/* Workers: hand a packet (or the end of a call) to the main loop. */
static void outbox_post_full(struct client *c, GBytes *pkt, int rc, bool side)
{
	struct rpc_server *srv = c->srv;
	struct outmsg *m = g_new(struct outmsg, 1);
	uint64_t one = 1;
	bool was_empty;

	client_ref(c);
	m->c = c;
	m->pkt = pkt;
	m->rc = rc;
	m->side = side;
	g_mutex_lock(&srv->outbox_lock);
	was_empty = g_queue_is_empty(&srv->outbox);
	g_queue_push_tail(&srv->outbox, m);
	g_mutex_unlock(&srv->outbox_lock);
	if (was_empty && write(srv->outbox_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		pr_warn("cannot wake the main loop: %s", g_strerror(errno));
}

static void outbox_post(struct client *c, GBytes *pkt, int rc)
{
	outbox_post_full(c, pkt, rc, false);
}

static void client_send(struct rpc_conn *conn, GBytes *pkt)
{
	struct client *c = (struct client *)conn;

	if (g_thread_self() == c->srv->main_thread)
		client_queue_out(c, pkt);
	else
		outbox_post(c, pkt, 0);
}

/* Main loop: everything the workers handed over, in the order they did. */
static void outbox_drain(struct rpc_server *srv)
{
	GQueue batch = G_QUEUE_INIT;
	struct outmsg *m;

	g_mutex_lock(&srv->outbox_lock);
	batch = srv->outbox;
	g_queue_init(&srv->outbox);
	g_mutex_unlock(&srv->outbox_lock);
	while ((m = g_queue_pop_head(&batch))) {
		struct client *c = m->c;

		if (m->pkt) {
			client_queue_out(c, m->pkt);
		} else if (m->side) {
			/* The side call's own reference goes with it. */
			c->sides--;
			if (!c->dead)
				client_next_call(c);
			client_unref(c);
		} else {
			/* The call's own reference goes with it. */
			g_bytes_unref(c->running);
			c->running = NULL;
			c->busy = false;
			if (!c->prio)
				srv->normal_busy--;
			c->closing = c->conn.closing;
			if (c->anonymous && c->conn.open)
				client_not_anonymous(c);
			/* The reply is queued: a stream the call opened may
			 * start now (never before its reply). */
			if (c->dead)
				rpc_stream_discard_pending(&c->conn);
			else
				rpc_stream_start_pending(&c->conn);
			if (!c->dead && m->rc < 0)
				client_drop(c);
			else if (!c->dead && c->closing && g_queue_is_empty(&c->out))
				/* Its reply may already be written, and a
				 * closing client is not read: no socket
				 * event would come to end it. */
				client_drop(c);
			else if (!c->dead)
				client_next_call(c);
			client_unref(c);
		}
		client_unref(c);
		g_free(m);
	}
}

static gboolean outbox_io(gint fd, GIOCondition cond, gpointer data)
{
	struct rpc_server *srv = data;
	uint64_t n;

	if (read(fd, &n, sizeof(n)) < 0 && errno != EAGAIN)
		pr_warn("cannot read the outbox eventfd: %s", g_strerror(errno));
	outbox_drain(srv);
	return G_SOURCE_CONTINUE;
}

/* Worker: one call of one client. */
static void worker_run(gpointer data, gpointer user_data)
{
	struct client *c = data;
	GBytes *pkt = c->running;
	size_t len;
	const uint8_t *p = g_bytes_get_data(pkt, &len);
	int rc = rpc_dispatch(&c->conn, p, len);

	outbox_post(c, NULL, rc);
}

/* Side calls: while a client's call runs a long job (a save, a
 * restore, a migration's Perform), its progress and abort must not wait behind it -- virsh save
 * --verbose polls virDomainGetJobInfo, and its Ctrl-C sends
 * virDomainAbortJob, on the connection the save runs on (libvirt serves
 * several calls of a client at once).  Only these, only beside those: a
 * side call shares the client with the running one (conn->call), which
 * a long job does not use. */
static int call_proc(GBytes *call)
{
	size_t len;
	const uint8_t *p = g_bytes_get_data(call, &len);
	struct rpc_header hdr;

	if (rpc_msg_decode_header(p, len, &hdr) < 0) {
		drv_error_reset();
		return -1;
	}
	return hdr.prog == REMOTE_PROGRAM && hdr.type == RPC_CALL ? hdr.proc : -1;
}

static bool is_side_call(const struct client *c, GBytes *call)
{
	static const int jobs[] = {
		REMOTE_PROC_DOMAIN_SAVE, REMOTE_PROC_DOMAIN_SAVE_FLAGS, REMOTE_PROC_DOMAIN_MANAGED_SAVE,
		REMOTE_PROC_DOMAIN_RESTORE, REMOTE_PROC_DOMAIN_RESTORE_FLAGS,
		REMOTE_PROC_DOMAIN_SAVE_PARAMS, REMOTE_PROC_DOMAIN_RESTORE_PARAMS,
		REMOTE_PROC_DOMAIN_MIGRATE_PERFORM3_PARAMS,
	};
	static const int queries[] = {
		REMOTE_PROC_DOMAIN_GET_JOB_INFO, REMOTE_PROC_DOMAIN_GET_JOB_STATS,
		REMOTE_PROC_DOMAIN_ABORT_JOB, REMOTE_PROC_DOMAIN_ABORT_JOB_FLAGS,
	};
	int proc = call_proc(call), running;
	bool query = false;

	if (!c->busy || !c->running || proc < 0)
		return false;
	running = call_proc(c->running);
	/* virsh migrate --timeout suspends the domain on the connection
	 * Perform runs on; the migration's job does the pause.  nova steps
	 * the maximum downtime up there during the migration (and pauses it
	 * to force its completion); speed and downtime are only a table's. */
	if (running == REMOTE_PROC_DOMAIN_MIGRATE_PERFORM3_PARAMS &&
	    (proc == REMOTE_PROC_DOMAIN_SUSPEND ||
	     proc == REMOTE_PROC_DOMAIN_MIGRATE_SET_MAX_DOWNTIME ||
	     proc == REMOTE_PROC_DOMAIN_MIGRATE_GET_MAX_DOWNTIME ||
	     proc == REMOTE_PROC_DOMAIN_MIGRATE_SET_MAX_SPEED ||
	     proc == REMOTE_PROC_DOMAIN_MIGRATE_GET_MAX_SPEED))
		return true;
	/* virsh migrate --postcopy-after-precopy / --timeout-postcopy
	 * switches to post-copy there too. */
	if (proc == REMOTE_PROC_DOMAIN_MIGRATE_START_POST_COPY &&
	    running == REMOTE_PROC_DOMAIN_MIGRATE_PERFORM3_PARAMS)
		return true;
	for (size_t i = 0; i < G_N_ELEMENTS(queries); i++)
		query |= proc == queries[i];
	if (!query)
		return false;
	for (size_t i = 0; i < G_N_ELEMENTS(jobs); i++)
		if (running == jobs[i])
			return true;
	return false;
}

struct side_call {
	struct client *c;		/* holds a reference */
	GBytes *pkt;
};

/* Side worker: one side call. */
static void side_run(gpointer data, gpointer user_data)
{
	struct side_call *sc = data;
	size_t len;
	const uint8_t *p = g_bytes_get_data(sc->pkt, &len);

	rpc_dispatch(&sc->c->conn, p, len);
	outbox_post_full(sc->c, NULL, 0, true);
	g_bytes_unref(sc->pkt);
	g_free(sc);
}

/* Main loop: runs CALL (taken) beside the client's running call. */
static void client_side_call(struct client *c, GBytes *call)
{
	struct side_call *sc = g_new(struct side_call, 1);
	GError *err = NULL;

	client_ref(c);
	sc->c = c;
	sc->pkt = call;
	c->sides++;
	if (!g_thread_pool_push(c->srv->side_workers, sc, &err)) {
		pr_err("cannot run a call of client %u: %s", c->conn.id, err->message);
		g_error_free(err);
		c->sides--;
		g_bytes_unref(call);
		g_free(sc);
		client_unref(c);
	}
}

/* Calls that never wait on a kvmm, a disk or a long job: lookups,
 * lists, state, connection set-up, and destroy (which signals kvmm and
 * waits at most a few seconds for it) -- libvirt's high-priority
 * procedures among those implemented here. */
static bool is_priority(GBytes *call)
{
	static const int procs[] = {
		REMOTE_PROC_AUTH_LIST, REMOTE_PROC_CONNECT_OPEN, REMOTE_PROC_CONNECT_CLOSE,
		REMOTE_PROC_CONNECT_SUPPORTS_FEATURE, REMOTE_PROC_CONNECT_GET_TYPE,
		REMOTE_PROC_CONNECT_GET_VERSION, REMOTE_PROC_CONNECT_GET_LIB_VERSION,
		REMOTE_PROC_CONNECT_GET_HOSTNAME, REMOTE_PROC_CONNECT_GET_URI,
		REMOTE_PROC_CONNECT_LIST_ALL_DOMAINS, REMOTE_PROC_CONNECT_LIST_DOMAINS,
		REMOTE_PROC_CONNECT_NUM_OF_DOMAINS, REMOTE_PROC_CONNECT_LIST_DEFINED_DOMAINS,
		REMOTE_PROC_CONNECT_NUM_OF_DEFINED_DOMAINS, REMOTE_PROC_DOMAIN_LOOKUP_BY_ID,
		REMOTE_PROC_DOMAIN_LOOKUP_BY_NAME, REMOTE_PROC_DOMAIN_LOOKUP_BY_UUID,
		REMOTE_PROC_DOMAIN_GET_STATE, REMOTE_PROC_DOMAIN_GET_INFO,
		REMOTE_PROC_DOMAIN_GET_XML_DESC, REMOTE_PROC_DOMAIN_GET_AUTOSTART,
		REMOTE_PROC_DOMAIN_IS_ACTIVE, REMOTE_PROC_DOMAIN_IS_PERSISTENT,
		REMOTE_PROC_DOMAIN_GET_OS_TYPE, REMOTE_PROC_DOMAIN_GET_MAX_MEMORY,
		REMOTE_PROC_DOMAIN_DESTROY, REMOTE_PROC_DOMAIN_DESTROY_FLAGS,
		REMOTE_PROC_CONNECT_REGISTER_CLOSE_CALLBACK,
		REMOTE_PROC_CONNECT_UNREGISTER_CLOSE_CALLBACK,
	};
	size_t len;
	const uint8_t *p = g_bytes_get_data(call, &len);
	struct rpc_header hdr;

	if (rpc_msg_decode_header(p, len, &hdr) < 0) {
		drv_error_reset();
		return false;
	}
	if (hdr.prog != REMOTE_PROGRAM)
		return false;
	for (size_t i = 0; i < G_N_ELEMENTS(procs); i++)
		if (hdr.proc == procs[i])
			return true;
	return false;
}

/* Main loop: start the client's next waiting call, if it has none
 * running.  The worker sees only c->running, set before it starts. */
static void client_next_call(struct client *c)
{
	GError *err = NULL;

	/* Calls forward.c relays never block: they leave right here, in
	 * their turn, so the client's calls keep their order. */
	while (!c->busy && !c->dead && !g_queue_is_empty(&c->calls)) {
		GBytes *head = g_queue_peek_head(&c->calls);
		size_t len;
		const uint8_t *p = g_bytes_get_data(head, &len);

		if (!rpc_fwd_handles(p, len))
			break;
		g_queue_pop_head(&c->calls);
		rpc_fwd_call(&c->conn, p, len);
		g_bytes_unref(head);
	}
	/* Nor while side calls run: they share the connection's call
	 * record with the running call, which a long job leaves alone and
	 * the next call may not. */
	if (c->busy || c->sides || c->dead || g_queue_is_empty(&c->calls)) {
		if (!c->dead)
			client_rearm(c);
		return;
	}
	c->busy = true;
	c->running = g_queue_pop_head(&c->calls);
	client_ref(c);
	/* A priority call goes to a priority worker only when every worker
	 * is taken (as libvirt's prio_workers): calls stuck on a wedged
	 * kvmm must not keep destroy and lookups waiting. */
	c->prio = c->srv->normal_busy >= c->srv->cfg.max_workers && is_priority(c->running);
	if (!c->prio)
		c->srv->normal_busy++;
	if (!g_thread_pool_push(c->prio ? c->srv->prio_workers : c->srv->workers, c, &err)) {
		pr_err("cannot run a call of client %u: %s", c->conn.id, err->message);
		g_error_free(err);
		g_bytes_unref(c->running);
		c->running = NULL;
		c->busy = false;
		if (!c->prio)
			c->srv->normal_busy--;
		client_unref(c);
		client_drop(c);
		return;
	}
	client_rearm(c);
}

static void client_wake(struct rpc_conn *conn)
{
	struct client *c = (struct client *)conn;

	if (!c->dead)
		client_rearm(c);
}

static size_t client_backlog(const struct rpc_conn *conn)
{
	return __atomic_load_n(&((const struct client *)conn)->out_bytes, __ATOMIC_RELAXED);
}

static ssize_t client_recv(void *opaque, void *buf, size_t len)
{
	struct client *c = opaque;

	return c->tls ? tls_session_recv(c->tls, buf, len) : recv(c->fd, buf, len, 0);
}

/* Reads what is available, dispatching each whole packet.  0, or -1 when
 * the client must go (EOF, error, or a stream we cannot trust). */
static int client_read(struct client *c)
{
	for (int packets = 0; packets < PACKETS_PER_WAKEUP;) {
		const uint8_t *pkt;
		size_t len;
		int rc;

		if (c->closing || c->out_bytes > OUT_HIGH || client_calls_full(c) ||
		    rpc_fwd_blocked(&c->conn))
			return 0;
		/* CLIENT: a client not yet open or read-only gets small
		 * packets only (SMALL_PACKET_MAX). */
		switch (rpc_reader_recv(&c->in, (!c->conn.open || c->conn.readonly) ? SMALL_PACKET_MAX
										: RPC_PACKET_MAX,
					client_recv, c)) {
		case RPC_READ_MORE:
			continue;
		case RPC_READ_AGAIN:
			return 0;
		case RPC_READ_EOF:
			if (c->in.have)
				pr_debug("client %u: disconnected in the middle of a packet (%zu of %zu bytes)",
					 c->conn.id, c->in.have, c->in.len);
			else
				pr_debug("client %u: disconnected", c->conn.id);
			return -1;
		case RPC_READ_ERROR:
			pr_debug("client %u: read: %s", c->conn.id, g_strerror(errno));
			return -1;
		case RPC_READ_BAD_LENGTH:
			/* CLIENT: the length word is checked before a byte of
			 * the body is buffered; a bad one ends the client, as
			 * nothing after it can be framed. */
			pr_warn("client %u (pid %ld): %s: dropping it", c->conn.id,
				(long)c->conn.pid, drv_error_last()->message);
			drv_error_reset();
			return -1;
		case RPC_READ_TOO_BIG:
			pr_warn("client %u (pid %ld): a packet of %zu bytes from a %s client (at most %u): dropping it",
				c->conn.id, (long)c->conn.pid, c->in.len,
				c->conn.open ? "read-only" : "not yet open", SMALL_PACKET_MAX);
			return -1;
		case RPC_READ_PACKET:
			break;
		}
		pkt = c->in.buf;
		len = c->in.len;
		rpc_keepalive_received(&c->conn.keepalive, g_get_monotonic_time());
		if (rpc_dispatch_is_call(pkt, len)) {
			GBytes *call = g_bytes_new(pkt, len);

			if (is_side_call(c, call)) {
				client_side_call(c, call);
			} else {
				g_queue_push_tail(&c->calls, call);
				client_next_call(c);
			}
			rc = 0;
		} else {
			/* Keepalive and packets answered from their
			 * header alone never block: right here. */
			rc = rpc_dispatch(&c->conn, pkt, len);
		}
		rpc_reader_next(&c->in);
		packets++;
		if (rc < 0)
			return -1;
	}
	return 0;
}

/* Writes what the socket takes.  0, or -1 when the client is gone. */
static int client_write(struct client *c)
{
	while (!g_queue_is_empty(&c->out)) {
		GBytes *pkt = g_queue_peek_head(&c->out);
		size_t size;
		const uint8_t *data = g_bytes_get_data(pkt, &size);
		/* TLS: after EAGAIN gnutls wants the same buffer again,
		 * which this is. */
		ssize_t n = c->tls ? tls_session_send(c->tls, data + c->out_off, size - c->out_off)
				   : send(c->fd, data + c->out_off, size - c->out_off,
					  MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return 0;
			pr_debug("client %u: write: %s", c->conn.id, g_strerror(errno));
			return -1;
		}
		c->out_off += n;
		__atomic_store_n(&c->out_bytes, c->out_bytes - n, __ATOMIC_RELAXED);
		if (c->out_off == size) {
			g_bytes_unref(g_queue_pop_head(&c->out));
			c->out_off = 0;
		}
	}
	/* Links to libvirt's daemons that paused for us may read again. */
	if (c->out_bytes <= OUT_HIGH)
		rpc_fwd_resume(&c->conn);
	return 0;
}

/* Main loop: a step of a TLS client's handshake.  Once through it and
 * its certificate check, the client is told with the one byte libvirt's
 * client waits for and may call like any other.  0, or -1: drop it. */
static int client_handshake(struct client *c)
{
	int rc = tls_session_handshake(c->tls, &c->hs_want_write, c->peer);

	if (rc <= 0)
		return rc;
	if (tls_session_check_client(c->tls, c->peer) < 0)
		return -1;
	c->handshaking = false;
	g_source_remove(c->hs_timer);
	c->hs_timer = 0;
	c->conn.keepalive.last_rx = g_get_monotonic_time();
	client_queue_out(c, g_bytes_new_static("\1", 1));
	pr_debug("client %u (%s): TLS session established", c->conn.id, c->peer);
	return 0;
}

static gboolean client_hs_timeout(gpointer data)
{
	struct client *c = data;

	c->hs_timer = 0;
	pr_warn("client %u (%s): no TLS handshake within %d ms: dropping it", c->conn.id, c->peer,
		TLS_HANDSHAKE_MS);
	client_drop(c);
	return G_SOURCE_REMOVE;
}

static gboolean client_io(gint fd, GIOCondition cond, gpointer data)
{
	struct client *c = data;

	if (c->handshaking) {
		if (client_handshake(c) < 0)
			goto drop;
		if (c->handshaking) {
			client_rearm(c);
			return G_SOURCE_CONTINUE;
		}
	}
	if ((cond & G_IO_IN) || ((cond & (G_IO_HUP | G_IO_ERR)) && (c->cond & G_IO_IN))) {
		if (client_read(c) < 0)
			goto drop;
	} else if (cond & (G_IO_HUP | G_IO_ERR)) {
		/* Not reading (replies backed up, or closing) and the peer
		 * hung up: nobody will read what is queued. */
		pr_debug("client %u: hung up", c->conn.id);
		goto drop;
	}
	if (client_write(c) < 0)
		goto drop;
	if (c->closing && !c->busy && g_queue_is_empty(&c->out)) {
		pr_debug("client %u: closed the connection", c->conn.id);
		goto drop;
	}
	client_rearm(c);
	return G_SOURCE_CONTINUE;

drop:
	/* Returning REMOVE destroys this source; client_drop must not. */
	if (c->watch)
		g_source_remove(c->watch);
	c->watch = 0;
	client_drop(c);
	return G_SOURCE_REMOVE;
}

static gboolean client_pending_cb(gpointer data)
{
	struct client *c = data;

	c->pending_idle = 0;
	/* client_io drops the client itself if it must. */
	if (!c->dead)
		client_io(c->fd, G_IO_IN, c);
	client_unref(c);
	return G_SOURCE_REMOVE;
}

static void client_new(struct rpc_server *srv, int fd, struct listener *l)
{
	bool readonly = l->readonly;
	struct client *c = g_new0(struct client, 1);
	struct ucred cred;
	socklen_t len = sizeof(cred);
	struct sockaddr_storage sa;
	socklen_t salen = sizeof(sa);

	c->srv = srv;
	c->refs = 1;		/* the list's */
	g_queue_init(&c->calls);
	c->fd = fd;
	c->conn.id = ++srv->next_id;
	c->conn.readonly = readonly;
	c->conn.send = client_send;
	c->conn.backlog = client_backlog;
	c->conn.wake = client_wake;
	c->conn.keepalive.last_rx = g_get_monotonic_time();
	c->conn.pid = -1;
	c->conn.uid = (uid_t)-1;
	c->conn.gid = (gid_t)-1;
	if (l->tls) {
		/* A TCP peer: no credentials, its address for the logs. */
		char host[NI_MAXHOST] = "?", serv[NI_MAXSERV] = "?";

		if (getpeername(fd, (struct sockaddr *)&sa, &salen) == 0)
			getnameinfo((struct sockaddr *)&sa, salen, host, sizeof(host), serv,
				    sizeof(serv), NI_NUMERICHOST | NI_NUMERICSERV);
		c->peer = g_strdup_printf(strchr(host, ':') ? "[%s]:%s" : "%s:%s", host, serv);
	} else if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) {
		c->conn.pid = cred.pid;
		c->conn.uid = cred.uid;
		c->conn.gid = cred.gid;
	}
	rpc_reader_init(&c->in);
	g_queue_init(&c->out);
	srv->clients = g_list_prepend(srv->clients, c);
	srv->nclients++;
	c->listener = l;
	if (l->tls) {
		c->tls = tls_session_new(l->tls, fd);
		if (!c->tls) {
			srv->clients = g_list_remove(srv->clients, c);
			srv->nclients--;
			close(fd);
			client_unref(c);
			return;
		}
		c->handshaking = true;
		c->hs_timer = g_timeout_add(TLS_HANDSHAKE_MS, client_hs_timeout, c);
	}
	/* Anonymous: on the read-only socket (anyone's) or from the network,
	 * until it opens.  The read-write socket's mode already says who its
	 * peers are. */
	if (l->readonly || l->tls) {
		c->anonymous = true;
		if (++l->anonymous == srv->cfg.max_anonymous_clients)
			pr_warn("%u clients on %s have not opened a connection (max_anonymous_clients): new ones wait",
				l->anonymous, l->path);
		listener_update(l);
	}
	srv->idle_since = 0;
	if (l->tls)
		pr_debug("client %u: connected from %s over TLS", c->conn.id, c->peer);
	else
		pr_debug("client %u: connected (pid %ld, uid %ld, gid %ld)%s", c->conn.id,
			 (long)c->conn.pid, (long)c->conn.uid, (long)c->conn.gid,
			 readonly ? " on the read-only socket" : "");
	client_rearm(c);
}

/* Main loop: the client is gone for everyone; its memory goes with the
 * last reference (a call still running on a worker keeps one). */
static void client_drop(struct client *c)
{
	struct rpc_server *srv = c->srv;

	if (c->dead)
		return;
	/* First: no event may be queued for it once this returns. */
	rpc_conn_gone(&c->conn);
	c->dead = true;
	if (c->watch)
		g_source_remove(c->watch);
	c->watch = 0;
	if (c->hs_timer)
		g_source_remove(c->hs_timer);
	c->hs_timer = 0;
	tls_session_free(c->tls);
	c->tls = NULL;
	close(c->fd);
	c->fd = -1;
	g_queue_clear_full(&c->out, (GDestroyNotify)g_bytes_unref);
	g_queue_init(&c->out);
	__atomic_store_n(&c->out_bytes, 0, __ATOMIC_RELAXED);
	g_queue_clear_full(&c->calls, (GDestroyNotify)g_bytes_unref);
	g_queue_init(&c->calls);
	srv->clients = g_list_remove(srv->clients, c);
	if (--srv->nclients == 0)
		srv->idle_since = g_get_monotonic_time();
	if (c->anonymous)
		client_not_anonymous(c);
	/* A descriptor is free again: accept if EMFILE stopped us. */
	if (srv->accept_suspended)
		accept_resume(srv);
	client_unref(c);
}

/* Whether the listener is watched: not while accepting is suspended
 * (EMFILE) nor while max_anonymous_clients of its clients have not yet
 * opened their connection -- as libvirt, new clients then wait in the
 * listen backlog (the read-only socket's; see client_new). */
static void listener_update(struct listener *l)
{
	struct rpc_server *srv = l->srv;
	bool want = !srv->accept_suspended && l->anonymous < srv->cfg.max_anonymous_clients;

	if (want && !l->watch) {
		l->watch = g_unix_fd_add(l->fd, G_IO_IN, listener_io, l);
	} else if (!want && l->watch) {
		g_source_remove(l->watch);
		l->watch = 0;
	}
}

static void listeners_update(struct rpc_server *srv)
{
	for (guint i = 0; i < srv->listeners->len; i++)
		listener_update(g_ptr_array_index(srv->listeners, i));
}

/* Main loop: C opened its connection (or went before it did). */
static void client_not_anonymous(struct client *c)
{
	struct listener *l = c->listener;

	c->anonymous = false;
	if (l->anonymous-- == c->srv->cfg.max_anonymous_clients)
		pr_info("accepting clients on %s again", l->path);
	listener_update(l);
}

static void accept_resume(struct rpc_server *srv)
{
	srv->accept_suspended = false;
	if (srv->accept_resume)
		g_source_remove(srv->accept_resume);
	srv->accept_resume = 0;
	listeners_update(srv);
}

static gboolean accept_resume_cb(gpointer data)
{
	struct rpc_server *srv = data;

	srv->accept_resume = 0;
	accept_resume(srv);
	return G_SOURCE_REMOVE;
}

static gboolean listener_io(gint fd, GIOCondition cond, gpointer data)
{
	struct listener *l = data;
	struct rpc_server *srv = l->srv;

	for (int i = 0; i < 16 && l->watch; i++) {
		int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (cfd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
				/* The connection stays in the backlog and the
				 * socket readable: stop watching it for a while
				 * (or until a client goes), logging once. */
				if (!srv->accept_logged)
					pr_warn("cannot accept clients on %s: %s; not accepting for %d ms or until a client goes (logged once)",
						l->path, g_strerror(errno), ACCEPT_PAUSE_MS);
				srv->accept_logged = true;
				srv->accept_suspended = true;
				if (!srv->accept_resume)
					srv->accept_resume = g_timeout_add(ACCEPT_PAUSE_MS, accept_resume_cb, srv);
				/* REMOVE below drops this source. */
				l->watch = 0;
				listeners_update(srv);
				return G_SOURCE_REMOVE;
			}
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				pr_warn("cannot accept a client on %s: %s", l->path, g_strerror(errno));
			break;
		}
		if (srv->nclients >= srv->cfg.max_clients) {
			pr_warn("refusing a client on %s: already %u clients (the limit)", l->path,
				srv->nclients);
			close(cfd);
			continue;
		}
		srv->accept_logged = false;
		client_new(srv, cfd, l);
	}
	if (!l->watch)
		return G_SOURCE_REMOVE;	/* max_anonymous_clients reached */
	return G_SOURCE_CONTINUE;
}

static gboolean server_tick(gpointer data)
{
	struct rpc_server *srv = data;
	gint64 now = g_get_monotonic_time();
	GList *next;

	for (GList *l = srv->clients; l; l = next) {
		struct client *c = l->data;
		GBytes *ping;

		next = l->next;
		if (c->handshaking)
			continue;	/* no packet may go before the handshake */
		rpc_fwd_tick(&c->conn, now, srv->cfg.keepalive_interval, srv->cfg.keepalive_count);
		switch (rpc_keepalive_tick(&c->conn.keepalive, now, srv->cfg.keepalive_interval,
					   srv->cfg.keepalive_count)) {
		case RPC_KEEPALIVE_NOTHING:
			break;
		case RPC_KEEPALIVE_PING:
			ping = rpc_keepalive_packet(KEEPALIVE_PROC_PING);
			if (ping)
				client_send(&c->conn, ping);
			break;
		case RPC_KEEPALIVE_DEAD:
			pr_warn("client %u (pid %ld): no answer to %u keepalive pings: dropping it",
				c->conn.id, (long)c->conn.pid, srv->cfg.keepalive_count);
			client_drop(c);
			break;
		}
	}
	return G_SOURCE_CONTINUE;
}

struct rpc_server *rpc_server_new(const struct rpc_server_config *cfg)
{
	struct rpc_server *srv = g_new0(struct rpc_server, 1);

	srv->cfg = *cfg;
	srv->listeners = g_ptr_array_new();
	srv->idle_since = g_get_monotonic_time();
	srv->main_thread = g_thread_self();
	g_mutex_init(&srv->outbox_lock);
	g_queue_init(&srv->outbox);
	srv->outbox_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (srv->outbox_fd < 0)
		g_error("cannot create an eventfd: %s", g_strerror(errno));
	srv->outbox_watch = g_unix_fd_add(srv->outbox_fd, G_IO_IN, outbox_io, srv);
	srv->workers = g_thread_pool_new(worker_run, srv, MAX(cfg->max_workers, 1), FALSE, NULL);
	srv->prio_workers = g_thread_pool_new(worker_run, srv, MAX(cfg->prio_workers, 1), FALSE, NULL);
	/* Side calls never block: two threads are plenty. */
	srv->side_workers = g_thread_pool_new(side_run, srv, 2, FALSE, NULL);
	srv->tick = g_timeout_add_seconds(1, server_tick, srv);
	return srv;
}

/* 0 if nothing answers on path (a missing file, or a leftover the dead
 * owner did not remove, which is deleted); -1, logged, otherwise. */
static int clear_stale_socket(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct stat st;
	int fd, rc;

	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : (pr_err("cannot check %s: %s", path, g_strerror(errno)), -1);
	if (!S_ISSOCK(st.st_mode)) {
		pr_err("%s exists and is not a socket: remove it, or use --root DIR", path);
		return -1;
	}
	if (strlen(path) >= sizeof(sa.sun_path)) {
		pr_err("socket path %s is too long: use a path shorter than %zu bytes", path,
		       sizeof(sa.sun_path));
		return -1;
	}
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		pr_err("cannot create a socket: %s", g_strerror(errno));
		return -1;
	}
	rc = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
	close(fd);
	if (rc == 0) {
		pr_err("another daemon is already listening on %s: stop it first, or use --root DIR to run a separate instance",
		       path);
		return -1;
	}
	if (errno != ECONNREFUSED) {
		pr_err("cannot check whether a daemon listens on %s: %s", path, g_strerror(errno));
		return -1;
	}
	pr_info("removing stale socket %s", path);
	if (unlink(path) < 0 && errno != ENOENT) {
		pr_err("cannot remove stale socket %s: %s", path, g_strerror(errno));
		return -1;
	}
	return 0;
}

static struct listener *add_listener(struct rpc_server *srv, int fd, const char *path,
				     bool readonly, bool inherited)
{
	struct listener *l = g_new0(struct listener, 1);

	l->srv = srv;
	l->fd = fd;
	l->path = g_strdup(path);
	l->readonly = readonly;
	l->inherited = inherited;
	g_ptr_array_add(srv->listeners, l);
	listener_update(l);
	pr_info("listening on %s%s%s", path, readonly ? " (read-only)" : "",
		inherited ? " (from systemd)" : "");
	return l;
}

int rpc_server_listen(struct rpc_server *srv, const char *path, gid_t gid, mode_t mode,
		      bool readonly)
{
	mode_t old;
	int fd;

	if (clear_stale_socket(path) < 0)
		return -1;
	/* Create the socket file private, then open it up: nobody may
	 * connect to a read-write socket before its mode is right. */
	old = umask(0177);
	fd = unix_listen(path, 128, readonly ? "read-only socket" : "socket");
	umask(old);
	if (fd < 0)
		return -1;
	/* The group first: the mode may open the socket to it. */
	if (gid != (gid_t)-1 && chown(path, (uid_t)-1, gid) < 0) {
		pr_err("cannot give %s to group %ld: %s", path, (long)gid, g_strerror(errno));
		close(fd);
		unlink(path);
		return -1;
	}
	if (chmod(path, mode) < 0) {
		pr_err("cannot set the mode of %s to %o: %s", path, (unsigned)mode, g_strerror(errno));
		close(fd);
		unlink(path);
		return -1;
	}
	add_listener(srv, fd, path, readonly, false);
	return 0;
}

int rpc_server_listen_fd(struct rpc_server *srv, int fd, const char *path, bool readonly)
{
	int fl = fcntl(fd, F_GETFL);

	/* listener_io accepts until EAGAIN; systemd hands sockets over
	 * blocking, and they must not leak into kvmm. */
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 ||
	    fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) {
		pr_err("cannot use the inherited socket %s (fd %d): %s", path, fd, g_strerror(errno));
		return -1;
	}
	add_listener(srv, fd, path, readonly, true);
	return 0;
}

int rpc_server_listen_tls(struct rpc_server *srv, const char *addr, const char *port,
			  struct tls_context *tls)
{
	struct addrinfo hints = {
		.ai_flags = AI_PASSIVE | AI_ADDRCONFIG,
		.ai_socktype = SOCK_STREAM,
	};
	struct addrinfo *res, *ai;
	const char *host = addr && *addr ? addr : NULL;
	int rc, n = 0;

	rc = getaddrinfo(host, port, &hints, &res);
	if (rc) {
		pr_err("cannot listen for TLS on %s port %s: %s", host ? host : "every address",
		       port, gai_strerror(rc));
		return -1;
	}
	for (ai = res; ai; ai = ai->ai_next) {
		char h[NI_MAXHOST] = "?";
		g_autofree char *name = NULL;
		int one = 1, fd;

		getnameinfo(ai->ai_addr, ai->ai_addrlen, h, sizeof(h), NULL, 0, NI_NUMERICHOST);
		name = g_strdup_printf(ai->ai_family == AF_INET6 ? "tls [%s]:%s" : "tls %s:%s", h, port);
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
			    ai->ai_protocol);
		if (fd < 0) {
			pr_err("cannot create a socket for %s: %s", name, g_strerror(errno));
			goto fail;
		}
		/* Every address: IPv4 and IPv6 on sockets of their own. */
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (ai->ai_family == AF_INET6)
			setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 128) < 0) {
			pr_err("cannot listen on %s: %s", name, g_strerror(errno));
			close(fd);
			goto fail;
		}
		add_listener(srv, fd, name, false, false)->tls = tls;
		n++;
	}
	freeaddrinfo(res);
	if (!n) {
		pr_err("no address to listen on for TLS (%s port %s)", host ? host : "every address",
		       port);
		return -1;
	}
	return 0;

fail:
	freeaddrinfo(res);
	return -1;
}

int rpc_server_listen_tls_fd(struct rpc_server *srv, int fd, struct tls_context *tls)
{
	struct sockaddr_storage sa;
	socklen_t len = sizeof(sa);
	char h[NI_MAXHOST] = "?", serv[NI_MAXSERV] = "?";
	g_autofree char *name = NULL;
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 ||
	    fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) {
		pr_err("cannot use the inherited TLS socket (fd %d): %s", fd, g_strerror(errno));
		return -1;
	}
	if (getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
		getnameinfo((struct sockaddr *)&sa, len, h, sizeof(h), serv, sizeof(serv),
			    NI_NUMERICHOST | NI_NUMERICSERV);
	name = g_strdup_printf(strchr(h, ':') ? "tls [%s]:%s" : "tls %s:%s", h, serv);
	add_listener(srv, fd, name, false, true)->tls = tls;
	return 0;
}

unsigned rpc_server_nclients(const struct rpc_server *srv)
{
	return srv->nclients;
}

gint64 rpc_server_idle_since(const struct rpc_server *srv)
{
	return srv->nclients ? 0 : srv->idle_since;
}

void rpc_server_free(struct rpc_server *srv)
{
	if (!srv)
		return;
	/* Let the calls handed to workers finish (a client has at most one),
	 * then deliver what they produced to whoever is still there. */
	/* Calls not started yet are dropped (immediate): at most each
	 * running one's monitor_timeout, never a queue of them, delays the
	 * exit. */
	g_thread_pool_free(srv->workers, TRUE, TRUE);
	g_thread_pool_free(srv->prio_workers, TRUE, TRUE);
	g_thread_pool_free(srv->side_workers, FALSE, TRUE);
	outbox_drain(srv);
	while (srv->clients)
		client_drop(srv->clients->data);
	for (guint i = 0; i < srv->listeners->len; i++) {
		struct listener *l = g_ptr_array_index(srv->listeners, i);

		if (l->watch)
			g_source_remove(l->watch);
		close(l->fd);
		/* systemd keeps listening on its sockets (and starts the
		 * daemon again on the next client). */
		if (!l->inherited && !l->tls && unlink(l->path) < 0 && errno != ENOENT)
			pr_warn("cannot remove socket %s: %s", l->path, g_strerror(errno));
		g_free(l->path);
		g_free(l);
	}
	g_ptr_array_free(srv->listeners, TRUE);
	g_source_remove(srv->tick);
	if (srv->accept_resume)
		g_source_remove(srv->accept_resume);
	g_source_remove(srv->outbox_watch);
	close(srv->outbox_fd);
	g_mutex_clear(&srv->outbox_lock);
	g_free(srv);
}
