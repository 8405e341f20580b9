/* The migration stream over TLS; see migrate_tls.h. */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <glib.h>

#include "error.h"
#include "log.h"
#include "migrate_tls.h"
#include "tls.h"

#define VIR_FROM_THIS VIR_FROM_DOMAIN

/* A peer that connects and never finishes the handshake is dropped. */
#define HANDSHAKE_MS 30000
#define RELAY_BUF (64 * 1024)
/* The destination gives up on a source silent this long (the bound the
 * source has for the destination to take the whole stream).  The source
 * has no such bound: the destination sends nothing until the end. */
#define SOURCE_SILENT_MS 300000

static struct {
	char *dir;
	bool verify;
	bool force;
} conf = { .verify = true };

void migtls_configure(const char *root, const char *cert_dir, bool verify, bool force)
{
	g_free(conf.dir);
	if (cert_dir) {
		conf.dir = g_strdup(cert_dir);
	} else {
		/* libvirt's: its migration directory when there is one,
		 * else the one every QEMU TLS service shares. */
		conf.dir = g_strconcat(root, "/etc/pki/libvirt-migrate", NULL);
		if (!g_file_test(conf.dir, G_FILE_TEST_IS_DIR)) {
			g_free(conf.dir);
			conf.dir = g_strconcat(root, "/etc/pki/qemu", NULL);
		}
	}
	conf.verify = verify;
	conf.force = force;
}

int migtls_check_forced(bool tls)
{
	if (conf.force && !tls) {
		drv_error_report(VIR_ERR_OPERATION_INVALID,
				 "this virtkvmmd instance allows migration only with VIR_MIGRATE_TLS flag (migrate_tls_force)");
		return -1;
	}
	return 0;
}

static int readable(const char *path)
{
	if (access(path, R_OK) < 0) {
		drv_error_report(VIR_ERR_SYSTEM_ERROR,
				 "Unable to access credentials %s: %s (migrate_tls_x509_cert_dir)", path,
				 g_strerror(errno));
		return -1;
	}
	return 0;
}

/* This host's credentials for its role, as QEMU's x509 credentials read
 * them from the directory; NULL after reporting. */
static struct tls_context *load_credentials(bool server)
{
	const char *role = server ? "server" : "client";
	g_autofree char *ca = g_build_filename(conf.dir, "ca-cert.pem", NULL);
	g_autofree char *crl = g_build_filename(conf.dir, "ca-crl.pem", NULL);
	g_autofree char *cert = g_strdup_printf("%s/%s-cert.pem", conf.dir, role);
	g_autofree char *key = g_strdup_printf("%s/%s-key.pem", conf.dir, role);
	g_autofree char *err = NULL;
	struct tls_context *ctx;

	if (readable(ca) < 0 || readable(cert) < 0 || readable(key) < 0)
		return NULL;
	/* The revocation list is optional, as QEMU's. */
	ctx = tls_context_new_peer(ca, access(crl, F_OK) == 0 ? crl : NULL, cert, key, server,
				   server && conf.verify, &err);
	if (!ctx)
		drv_error_report(VIR_ERR_SYSTEM_ERROR, "%s", err);
	return ctx;
}

int migtls_check_credentials(bool server)
{
	struct tls_context *ctx = load_credentials(server);

	if (!ctx)
		return -1;
	tls_context_free(ctx);
	return 0;
}

struct migtls {
	bool server;
	struct tls_context *ctx;
	struct tls_session *s;
	int fd;			/* the TCP connection (the caller's) */
	int local;		/* our end of the socketpair */
	GThread *up;		/* kvmm -> peer */
	GThread *down;		/* peer -> kvmm */
	GMutex lock;
	GCond cond;		/* down_done set */
	bool down_done;		/* the peer -> kvmm direction ended */
	bool failed;		/* the first failure, in err: */
	char err[256];
	bool closed;		/* the peer's close_notify came */
	bool joined;
};

/* The first failure is kept; either way both directions stop. */
static void relay_fail(struct migtls *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void relay_fail(struct migtls *t, const char *fmt, ...)
{
	va_list ap;

	g_mutex_lock(&t->lock);
	if (!t->failed) {
		t->failed = true;
		va_start(ap, fmt);
		g_vsnprintf(t->err, sizeof(t->err), fmt, ap);
		va_end(ap);
	}
	g_mutex_unlock(&t->lock);
	/* A cut without close_notify: the peer sees an error, not an end. */
	shutdown(t->fd, SHUT_RDWR);
	shutdown(t->local, SHUT_RDWR);
}

static gpointer relay_up(gpointer data)
{
	struct migtls *t = data;
	g_autofree char *buf = g_malloc(RELAY_BUF);

	for (;;) {
		ssize_t n = read(t->local, buf, RELAY_BUF), off = 0;

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			relay_fail(t, "%s kvmm's end of the stream: %s",
				   t->server ? "the destination" : "the source", g_strerror(errno));
			return NULL;
		}
		if (n == 0) {
			bool ok;

			g_mutex_lock(&t->lock);
			/* The destination's kvmm closes its end once it read
			 * the stream, which may be before the source's
			 * close_notify comes: the end is confirmed after it.
			 * If kvmm gave up instead, the source's next bytes
			 * find no reader and that direction fails. */
			while (t->server && !t->down_done)
				g_cond_wait(&t->cond, &t->lock);
			ok = !t->failed && (!t->server || t->closed);
			g_mutex_unlock(&t->lock);
			if (!ok) {
				relay_fail(t, "the destination's kvmm closed the stream before its end");
				return NULL;
			}
			tls_session_bye(t->s);
			shutdown(t->fd, SHUT_WR);
			return NULL;
		}
		while (off < n) {
			ssize_t r = tls_session_send(t->s, buf + off, n - off);

			if (r < 0 && errno == EAGAIN)
				continue;
			if (r < 0) {
				enum tls_failure kind;
				g_autofree char *why = tls_session_error(t->s, TLS_OP_SEND, &kind);

				relay_fail(t, "sending to the %s: %s",
					   t->server ? "source" : "destination", why);
				return NULL;
			}
			off += r;
		}
	}
}

static void relay_down_loop(struct migtls *t);

static gpointer relay_down(gpointer data)
{
	struct migtls *t = data;

	relay_down_loop(t);
	g_mutex_lock(&t->lock);
	t->down_done = true;
	g_cond_broadcast(&t->cond);
	g_mutex_unlock(&t->lock);
	return NULL;
}

static void relay_down_loop(struct migtls *t)
{
	g_autofree char *buf = g_malloc(RELAY_BUF);

	for (;;) {
		/* CLIENT (the other host): bytes for kvmm, which checks the
		 * stream; this end only moves them. */
		ssize_t n = tls_session_recv(t->s, buf, RELAY_BUF), off = 0;

		if (n < 0 && errno == EAGAIN)
			continue;
		if (n == 0) {
			g_mutex_lock(&t->lock);
			t->closed = true;
			g_mutex_unlock(&t->lock);
			shutdown(t->local, SHUT_WR);
			return;
		}
		if (n < 0) {
			enum tls_failure kind;
			g_autofree char *why = tls_session_error(t->s, TLS_OP_RECV, &kind);

			relay_fail(t, "receiving from the %s: %s",
				   t->server ? "source" : "destination",
				   kind == TLS_FAIL_CUT ? "the connection was cut" : why);
			return;
		}
		while (off < n) {
			ssize_t w = send(t->local, buf + off, n - off, MSG_NOSIGNAL);

			if (w < 0 && errno == EINTR)
				continue;
			if (w < 0) {
				relay_fail(t, "%s kvmm stopped reading the stream: %s",
					   t->server ? "the destination" : "the source", g_strerror(errno));
				return;
			}
			off += w;
		}
	}
}

/* The handshake's failure (of OP: the handshake itself or the
 * confirmation byte), as libvirt's TLS code words it. */
static void report_handshake(struct migtls *t, enum tls_op op, const char *host)
{
	const char *peer = t->server ? "source" : "destination";
	enum tls_failure kind;
	g_autofree char *why = tls_session_error(t->s, op, &kind);

	if (kind == TLS_FAIL_UNVERIFIED)
		drv_error_report(VIR_ERR_AUTH_FAILED,
				 "Unable to verify TLS peer (the migration %s%s%s): %s", peer,
				 host ? " " : "", host ? host : "", why);
	else if (kind == TLS_FAIL_REFUSED)
		drv_error_report(VIR_ERR_AUTH_FAILED,
				 "TLS handshake with the migration %s failed: it refused us: %s", peer,
				 why);
	else
		drv_error_report(VIR_ERR_AUTH_FAILED, "TLS handshake with the migration %s failed: %s",
				 peer, kind == TLS_FAIL_TIMEOUT ? "timed out" : why);
}

static struct migtls *start(int fd, bool server, const char *host, int *plain)
{
	struct migtls *t = g_new0(struct migtls, 1);
	g_autofree char *err = NULL;
	int sv[2];
	ssize_t rc;

	*plain = -1;
	t->server = server;
	t->fd = fd;
	t->local = -1;
	g_mutex_init(&t->lock);
	g_cond_init(&t->cond);
	t->ctx = load_credentials(server);
	if (!t->ctx)
		goto fail;
	t->s = tls_session_new_peer(t->ctx, fd, host, &err);
	if (!t->s) {
		drv_error_report(VIR_ERR_SYSTEM_ERROR, "%s", err);
		goto fail;
	}
	if (tls_session_handshake_wait(t->s, HANDSHAKE_MS) < 0) {
		report_handshake(t, TLS_OP_HANDSHAKE, host);
		goto fail;
	}
	/* In TLS 1.3 the client is done before the server has checked its
	 * certificate: the destination says it took it with one byte, as
	 * libvirt's RPC server does, so a refused source learns it here
	 * and not half-way through the stream. */
	tls_session_set_timeout(t->s, HANDSHAKE_MS);
	if (server) {
		do
			rc = tls_session_send(t->s, "\1", 1);
		while (rc < 0 && errno == EAGAIN);
		if (rc < 0) {
			report_handshake(t, TLS_OP_SEND, host);
			goto fail;
		}
	} else {
		char ok = 0;

		do
			rc = tls_session_recv(t->s, &ok, 1);
		while (rc < 0 && errno == EAGAIN);
		if (rc < 0) {
			report_handshake(t, TLS_OP_RECV, host);
			goto fail;
		}
		/* CLIENT (the destination): the byte, or its refusal. */
		if (rc == 0 || ok != 1) {
			drv_error_report(VIR_ERR_AUTH_FAILED,
					 "TLS handshake with the migration destination failed: %s",
					 rc == 0 ? "it closed the connection" : "no confirmation");
			goto fail;
		}
	}
	tls_session_set_timeout(t->s, server ? SOURCE_SILENT_MS : 0);
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
		drv_error_report(VIR_ERR_SYSTEM_ERROR, "socketpair: %s", g_strerror(errno));
		goto fail;
	}
	t->local = sv[0];
	*plain = sv[1];
	t->up = g_thread_new("migtls-up", relay_up, t);
	t->down = g_thread_new("migtls-down", relay_down, t);
	pr_info("migration stream: TLS %s with %s", tls_session_protocol(t->s),
		server ? "the source" : host);
	return t;
fail:
	t->joined = true;
	migtls_free(t);
	return NULL;
}

struct migtls *migtls_client(int fd, const char *host, int *plain)
{
	return start(fd, false, host, plain);
}

struct migtls *migtls_server(int fd, int *plain)
{
	return start(fd, true, NULL, plain);
}

static void join(struct migtls *t)
{
	if (t->joined)
		return;
	g_thread_join(t->up);
	g_thread_join(t->down);
	t->joined = true;
}

int migtls_wait(struct migtls *t)
{
	join(t);
	if (t->failed || !t->closed) {
		drv_error_report(VIR_ERR_OPERATION_FAILED, "the migration's TLS connection failed: %s",
				 t->failed ? t->err : "no close_notify from the peer");
		return -1;
	}
	return 0;
}

char *migtls_failure(struct migtls *t)
{
	char *why;

	g_mutex_lock(&t->lock);
	why = t->failed ? g_strdup(t->err) : NULL;
	g_mutex_unlock(&t->lock);
	return why;
}

void migtls_free(struct migtls *t)
{
	if (!t)
		return;
	if (!t->joined) {
		shutdown(t->fd, SHUT_RDWR);
		shutdown(t->local, SHUT_RDWR);
		join(t);
	}
	if (t->local >= 0)
		close(t->local);
	tls_session_free(t->s);
	tls_context_free(t->ctx);
	g_mutex_clear(&t->lock);
	g_cond_clear(&t->cond);
	g_free(t);
}

struct release {
	struct migtls *t;
	int fd;
	char *name;
};

static gpointer release_thread(gpointer data)
{
	struct release *r = data;

	if (migtls_wait(r->t) < 0) {
		pr_warn("domain '%s': after post-copy: %s", r->name, drv_error_last()->message);
		drv_error_reset();
	} else {
		pr_info("domain '%s': the post-copy migration's TLS stream ended", r->name);
	}
	migtls_free(r->t);
	close(r->fd);
	g_free(r->name);
	g_free(r);
	return NULL;
}

void migtls_release(struct migtls *t, int fd, const char *name)
{
	struct release *r = g_new0(struct release, 1);

	r->t = t;
	r->fd = fd;
	r->name = g_strdup(name);
	g_thread_unref(g_thread_new("migtls-postcopy", release_thread, r));
}
