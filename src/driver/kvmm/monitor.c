/* kvmm's control API, daemon side; see monitor.h. */
#include <errno.h>
#include <stdarg.h>
#include <poll.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <fcntl.h>
#include <glib.h>
#include <glib-unix.h>
#include <libvirt/libvirt.h>

#include "error.h"
#include "log.h"
#include "monitor.h"

#define VIR_FROM_THIS VIR_FROM_DOMAIN

/* A command's whole exchange; kvmm answers in microseconds unless the VM
 * is wedged, which this turns into an error instead of a hung worker.
 * virtkvmmd.conf's monitor_timeout sets it. */
static int command_timeout_ms = 10000;
static monitor_lost_fn lost_fn;
/* KVMM: a line longer than this is not something kvmm sends. */
#define LINE_MAX_BYTES (1024 * 1024)

struct reader {
	int fd;
	gint64 deadline;	/* monotonic µs */
	GString *buf;
};

/* The next line from kvmm, parsed: a new object, or NULL with *ERR set to
 * a negative errno (-ETIMEDOUT, -EPIPE on EOF, -EPROTO on bad JSON). */
static json_object *read_message(struct reader *r, int *err)
{
	for (;;) {
		char *nl = memchr(r->buf->str, '\n', r->buf->len);
		char chunk[4096];
		struct pollfd p = { .fd = r->fd, .events = POLLIN };
		gint64 left;
		ssize_t n;

		if (nl) {
			json_object *o;

			*nl = '\0';
			o = json_tokener_parse(r->buf->str);
			g_string_erase(r->buf, 0, nl - r->buf->str + 1);
			if (!o || !json_object_is_type(o, json_type_object)) {
				json_object_put(o);
				*err = -EPROTO;
				return NULL;
			}
			return o;
		}
		if (r->buf->len > LINE_MAX_BYTES) {
			*err = -EPROTO;
			return NULL;
		}
		left = (r->deadline - g_get_monotonic_time()) / 1000;
		if (left <= 0) {
			*err = -ETIMEDOUT;
			return NULL;
		}
		n = poll(&p, 1, (int)left);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			*err = n < 0 ? -errno : -ETIMEDOUT;
			return NULL;
		}
		n = read(r->fd, chunk, sizeof(chunk));
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n <= 0) {
			*err = n < 0 ? -errno : -EPIPE;
			return NULL;
		}
		g_string_append_len(r->buf, chunk, n);
	}
}

/* monitor_connect, keeping in KEEP (if not NULL) what arrived after the
 * greeting: an event connection must not lose kvmm's first events. */
static int connect_kvmm(const char *path, int timeout_ms, GString *keep)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct reader r;
	json_object *greeting;
	int fd, err = 0;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		err = -errno;
		close(fd);
		return err;
	}
	r.fd = fd;
	r.deadline = g_get_monotonic_time() + (gint64)timeout_ms * 1000;
	r.buf = g_string_new(NULL);
	greeting = read_message(&r, &err);
	if (keep)
		g_string_append_len(keep, r.buf->str, r.buf->len);
	g_string_free(r.buf, TRUE);
	/* KVMM: the first message must be the greeting, or this is not kvmm
	 * (or not a version we speak). */
	if (!greeting || !json_object_object_get_ex(greeting, "greeting", NULL)) {
		json_object_put(greeting);
		close(fd);
		return err ? err : -EPROTO;
	}
	json_object_put(greeting);
	return fd;
}

void monitor_set_timeout(unsigned ms)
{
	command_timeout_ms = (int)ms;
}

void monitor_set_lost_handler(monitor_lost_fn fn)
{
	lost_fn = fn;
}

/* A command got no usable answer: report it (a timeout as such) and let
 * the handler judge whether control of a live VM is lost. */
static void lost(const char *path, int err, const char *fmt, ...) G_GNUC_PRINTF(3, 4);
static void lost(const char *path, int err, const char *fmt, ...)
{
	g_autofree char *msg = NULL;
	va_list ap;

	va_start(ap, fmt);
	msg = g_strdup_vprintf(fmt, ap);
	va_end(ap);
	drv_error_report(err == -ETIMEDOUT ? VIR_ERR_OPERATION_TIMEOUT : VIR_ERR_OPERATION_FAILED,
			 "%s", msg);
	if (lost_fn)
		lost_fn(path, err);
}

int monitor_connect(const char *path, int timeout_ms)
{
	return connect_kvmm(path, timeout_ms, NULL);
}

static int report_kvmm_error(const char *command, json_object *error)
{
	json_object *code = NULL, *msg = NULL;
	const char *c, *m;

	json_object_object_get_ex(error, "code", &code);
	json_object_object_get_ex(error, "message", &msg);
	c = code ? json_object_get_string(code) : "";
	m = msg ? json_object_get_string(msg) : "unknown error";
	drv_error_report(!strcmp(c, "InvalidState")	  ? VIR_ERR_OPERATION_INVALID
			 : !strcmp(c, "InvalidArgument") ? VIR_ERR_INVALID_ARG
							  : VIR_ERR_OPERATION_FAILED,
			 "kvmm refused '%s': %s", command, m);
	return -1;
}

int monitor_command(const char *path, const char *command, json_object **ret)
{
	return monitor_command_args(path, command, NULL, ret);
}

int monitor_command_args(const char *path, const char *command, json_object *args,
			 json_object **ret)
{
	static gint next_id;
	int id = g_atomic_int_add(&next_id, 1) + 1;
	g_autofree char *line = g_strdup_printf("{\"id\":%d,\"execute\":\"%s\"%s%s}\n", id, command,
						args ? ",\"arguments\":" : "",
						args ? json_object_to_json_string_ext(args, JSON_C_TO_STRING_PLAIN) : "");
	struct reader r = { .deadline = g_get_monotonic_time() + command_timeout_ms * 1000LL };
	int err = 0, rc = -1;

	r.fd = monitor_connect(path, command_timeout_ms);
	if (r.fd < 0) {
		lost(path, r.fd, "cannot reach kvmm on %s: %s", path, g_strerror(-r.fd));
		return -1;
	}
	r.buf = g_string_new(NULL);
	if (send(r.fd, line, strlen(line), MSG_NOSIGNAL) != (ssize_t)strlen(line)) {
		err = -errno;
		lost(path, err, "cannot send '%s' to kvmm: %s", command, g_strerror(-err));
		goto out;
	}
	for (;;) {
		json_object *msg = read_message(&r, &err), *v;

		if (!msg) {
			lost(path, err, "no answer from kvmm to '%s': %s", command,
			     err == -EPIPE ? "it closed the connection" : g_strerror(-err));
			goto out;
		}
		/* Events and other clients' traffic are not ours. */
		if (!json_object_object_get_ex(msg, "id", &v) || json_object_get_int(v) != id) {
			json_object_put(msg);
			continue;
		}
		if (json_object_object_get_ex(msg, "error", &v)) {
			report_kvmm_error(command, v);
		} else if (json_object_object_get_ex(msg, "return", &v)) {
			if (ret)
				*ret = json_object_get(v);
			rc = 0;
		} else {
			lost(path, -EPROTO, "kvmm's answer to '%s' has neither return nor error",
			     command);
		}
		json_object_put(msg);
		break;
	}
out:
	g_string_free(r.buf, TRUE);
	close(r.fd);
	return rc;
}

struct monitor_watch {
	int fd;
	guint source;
	GString *buf;
	monitor_event_fn fn;
	void *opaque;
};

static void dispatch_lines(struct monitor_watch *w)
{
	char *nl;

	while ((nl = memchr(w->buf->str, '\n', w->buf->len))) {
		json_object *o, *ev = NULL, *data = NULL;

		*nl = '\0';
		o = json_tokener_parse(w->buf->str);
		g_string_erase(w->buf, 0, nl - w->buf->str + 1);
		/* KVMM: anything but an object with a string "event" is not
		 * for this connection (it sends no commands). */
		if (o && json_object_object_get_ex(o, "event", &ev) &&
		    json_object_is_type(ev, json_type_string)) {
			json_object_object_get_ex(o, "data", &data);
			w->fn(json_object_get_string(ev), data, w->opaque);
		}
		json_object_put(o);
	}
}

/* Reads what is there.  false at EOF or error. */
static bool watch_read(struct monitor_watch *w)
{
	for (;;) {
		char chunk[4096];
		ssize_t n = read(w->fd, chunk, sizeof(chunk));

		if (n > 0) {
			g_string_append_len(w->buf, chunk, n);
			if (w->buf->len > LINE_MAX_BYTES)
				return false;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		/* Before dispatching: the callbacks may change errno. */
		bool more = n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);

		dispatch_lines(w);
		return more;
	}
}

static gboolean watch_io(gint fd, GIOCondition cond, gpointer data)
{
	struct monitor_watch *w = data;

	if (watch_read(w))
		return G_SOURCE_CONTINUE;
	w->source = 0;
	return G_SOURCE_REMOVE;
}

struct monitor_watch *monitor_watch_new(const char *path, monitor_event_fn fn, void *opaque)
{
	struct monitor_watch *w;
	GString *buf = g_string_new(NULL);
	int fd = connect_kvmm(path, command_timeout_ms, buf);

	if (fd < 0) {
		g_string_free(buf, TRUE);
		return NULL;
	}
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	w = g_new0(struct monitor_watch, 1);
	w->fd = fd;
	w->buf = buf;
	w->fn = fn;
	w->opaque = opaque;
	w->source = g_unix_fd_add(fd, G_IO_IN | G_IO_HUP | G_IO_ERR, watch_io, w);
	/* Events that came with the greeting: the socket will not wake us
	 * for them again. */
	if (w->buf->len)
		dispatch_lines(w);
	return w;
}

void monitor_watch_drain(struct monitor_watch *w)
{
	if (w && w->source && !watch_read(w)) {
		g_source_remove(w->source);
		w->source = 0;
	}
}

void monitor_watch_free(struct monitor_watch *w)
{
	if (!w)
		return;
	if (w->source)
		g_source_remove(w->source);
	close(w->fd);
	g_string_free(w->buf, TRUE);
	g_free(w);
}
