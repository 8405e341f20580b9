/* kvmm's control API, daemon side; see monitor.h. */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <stdarg.h>
#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include <fcntl.h>
#include <glib.h>
#include <glib-unix.h>
#include <json-c/json.h>
#include <libvirt/libvirt.h>

#include "error.h"
#include "log.h"
#include "disk_chain.h"
#include "monitor.h"

#define VIR_FROM_THIS VIR_FROM_DOMAIN

/* A command's whole exchange; kvmm answers in microseconds unless the VM
 * is wedged, which this turns into an error instead of a hung worker.
 * virtkvmmd.conf's monitor_timeout sets it. */
static int command_timeout_ms = 10000;
static monitor_lost_fn lost_fn;
/* A sandboxed kvmm opens no path: hot-added disks go as descriptors
 * (taps always do). */
static bool pass_fds;
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

/* A connected socket to PATH, the greeting not read yet: an fd or a
 * negative errno. */
static int open_socket(const char *path, int timeout_ms, gint64 deadline)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd, err;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	/* connect() too is bounded: a kvmm that stopped accepting (SIGSTOP,
	 * wedged) fills its listen backlog, and a UNIX connect then sleeps
	 * until there is room -- for as long as the send timeout allows,
	 * after which it fails with EAGAIN. */
	{
		struct timeval tv = { .tv_sec = timeout_ms / 1000, .tv_usec = timeout_ms % 1000 * 1000 };

		if (setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0) {
			err = -errno;
			close(fd);
			return err;
		}
	}
	while (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		err = errno == EAGAIN ? -ETIMEDOUT : -errno;
		if (err == -EINTR && g_get_monotonic_time() < deadline)
			continue;
		close(fd);
		return err;
	}
	return fd;
}

/* Reads kvmm's greeting from R: 0, or a negative errno (-EPROTO if the
 * first message is something else).  What came after it stays in
 * R->buf. */
static int read_greeting(struct reader *r)
{
	json_object *greeting;
	int err = 0;

	greeting = read_message(r, &err);
	/* KVMM: the first message must be the greeting, or this is not kvmm
	 * (or not a version we speak). */
	if (!greeting || !json_object_object_get_ex(greeting, "greeting", NULL)) {
		json_object_put(greeting);
		return err ? err : -EPROTO;
	}
	json_object_put(greeting);
	return 0;
}

/* monitor_connect, keeping in KEEP (if not NULL) what arrived after the
 * greeting: an event connection must not lose kvmm's first events. */
static int connect_kvmm(const char *path, int timeout_ms, GString *keep)
{
	struct reader r;
	int err;

	r.deadline = g_get_monotonic_time() + (gint64)timeout_ms * 1000;
	r.fd = open_socket(path, timeout_ms, r.deadline);
	if (r.fd < 0)
		return r.fd;
	r.buf = g_string_new(NULL);
	err = read_greeting(&r);
	if (keep)
		g_string_append_len(keep, r.buf->str, r.buf->len);
	g_string_free(r.buf, TRUE);
	if (err) {
		close(r.fd);
		return err;
	}
	return r.fd;
}

void monitor_set_timeout(unsigned ms)
{
	command_timeout_ms = (int)ms;
}

void monitor_set_pass_fds(bool on)
{
	pass_fds = on;
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

/* Commands to one kvmm at a time, at most: a kvmm that stopped answering
 * then holds this many connections (and its listen backlog no more),
 * and further callers wait for a turn within their own deadline. */
#define INFLIGHT_MAX 4
static GMutex inflight_lock;
static GCond inflight_cond;
static GHashTable *inflight;	/* control socket path -> commands running */

static bool inflight_enter(const char *path, gint64 deadline)
{
	int n;

	g_mutex_lock(&inflight_lock);
	if (!inflight)
		inflight = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
	while ((n = GPOINTER_TO_INT(g_hash_table_lookup(inflight, path))) >= INFLIGHT_MAX) {
		if (!g_cond_wait_until(&inflight_cond, &inflight_lock, deadline)) {
			g_mutex_unlock(&inflight_lock);
			return false;
		}
	}
	g_hash_table_replace(inflight, g_strdup(path), GINT_TO_POINTER(n + 1));
	g_mutex_unlock(&inflight_lock);
	return true;
}

static void inflight_leave(const char *path)
{
	int n;

	g_mutex_lock(&inflight_lock);
	n = GPOINTER_TO_INT(g_hash_table_lookup(inflight, path)) - 1;
	if (n > 0)
		g_hash_table_replace(inflight, g_strdup(path), GINT_TO_POINTER(n));
	else
		g_hash_table_remove(inflight, path);
	g_cond_broadcast(&inflight_cond);
	g_mutex_unlock(&inflight_lock);
}

/* Runs COMMAND (with ARGS as its "arguments" unless NULL) on the VM
 * whose control socket is PATH: 0 and (RET not NULL) the "return" value,
 * which the caller puts, or -1 after reporting. */
/* FD >= 0: sent first, on the same connection, with a getfd naming it
 * FDNAME; the command then names it (kvmm keeps it per connection).  A
 * getfd kvmm refused shows as the command's "no descriptor named" error.
 * TIMEOUT_MS bounds the whole exchange. */
static int command_fd(const char *path, const char *command, json_object *args, int fd,
		      const char *fdname, json_object **ret, int timeout_ms);

static int command_ms(const char *path, const char *command, json_object *args, json_object **ret,
		      int timeout_ms)
{
	return command_fd(path, command, args, -1, NULL, ret, timeout_ms);
}

/* Sends LINE with FD attached (SCM_RIGHTS); 0 or -errno. */
static int send_with_fd(int sock, const char *line, int fd)
{
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} cbuf;
	struct iovec iov = { .iov_base = (void *)line, .iov_len = strlen(line) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
			     .msg_control = cbuf.buf, .msg_controllen = sizeof(cbuf.buf) };
	struct cmsghdr *cm;
	ssize_t n;

	memset(&cbuf, 0, sizeof(cbuf));
	cm = CMSG_FIRSTHDR(&mh);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &fd, sizeof(int));
	n = sendmsg(sock, &mh, MSG_NOSIGNAL);
	if (n < 0)
		return -errno;
	/* The rest of a short write goes without the descriptor. */
	if ((size_t)n < iov.iov_len &&
	    send(sock, line + n, iov.iov_len - n, MSG_NOSIGNAL) != (ssize_t)(iov.iov_len - n))
		return errno ? -errno : -EIO;
	return 0;
}

static int command_fd(const char *path, const char *command, json_object *args, int fd,
		      const char *fdname, json_object **ret, int timeout_ms)
{
	static gint next_id;
	int id = g_atomic_int_add(&next_id, 1) + 1;
	g_autofree char *line = g_strdup_printf("{\"id\":%d,\"execute\":\"%s\"%s%s}\n", id, command,
						args ? ",\"arguments\":" : "",
						args ? json_object_to_json_string_ext(args, JSON_C_TO_STRING_PLAIN) : "");
	struct reader r = { .deadline = g_get_monotonic_time() + timeout_ms * 1000LL };
	int err = 0, rc = -1;

	/* Tests count the exchanges in the debug log. */
	pr_debug("kvmm %s <- %s", path, command);
	if (!inflight_enter(path, r.deadline)) {
		lost(path, -ETIMEDOUT, "kvmm on %s did not answer: %d commands already wait for it",
		     path, INFLIGHT_MAX);
		return -1;
	}
	/* The request goes right behind the connect, before the greeting
	 * is read: kvmm reads it after greeting, and each command costs one
	 * exchange with kvmm instead of two (on a loaded host every wake-up
	 * of kvmm's main thread waits for a CPU).  The greeting is still
	 * checked before any answer is taken. */
	r.fd = open_socket(path, MAX((r.deadline - g_get_monotonic_time()) / 1000, 1), r.deadline);
	if (r.fd < 0) {
		inflight_leave(path);
		lost(path, r.fd, "cannot reach kvmm on %s: %s", path, g_strerror(-r.fd));
		return -1;
	}
	r.buf = g_string_new(NULL);
	if (fd >= 0) {
		json_object *ga = json_object_new_object();
		g_autofree char *gl = NULL;

		json_object_object_add(ga, "fdname", json_object_new_string(fdname));
		gl = g_strdup_printf("{\"id\":\"getfd\",\"execute\":\"getfd\",\"arguments\":%s}\n",
				     json_object_to_json_string_ext(ga, JSON_C_TO_STRING_PLAIN));
		json_object_put(ga);
		err = send_with_fd(r.fd, gl, fd);
		if (err) {
			lost(path, err, "cannot send '%s' its descriptor: %s", command, g_strerror(-err));
			goto out;
		}
	}
	if (send(r.fd, line, strlen(line), MSG_NOSIGNAL) != (ssize_t)strlen(line)) {
		err = -errno;
		lost(path, err, "cannot send '%s' to kvmm: %s", command, g_strerror(-err));
		goto out;
	}
	err = read_greeting(&r);
	if (err) {
		lost(path, err, "cannot reach kvmm on %s: %s", path,
		     err == -EPIPE ? "it closed the connection" : g_strerror(-err));
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
		if (!json_object_object_get_ex(msg, "id", &v) || !json_object_is_type(v, json_type_int) ||
		    json_object_get_int(v) != id) {
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
	inflight_leave(path);
	return rc;
}

static int command(const char *path, const char *command, json_object *args, json_object **ret)
{
	return command_ms(path, command, args, ret, command_timeout_ms);
}

/* KVMM: a reply of the wrong shape; reported, -1. */
static int malformed(const char *command, const char *fmt, ...) G_GNUC_PRINTF(2, 3);
static int malformed(const char *command, const char *fmt, ...)
{
	g_autofree char *msg = NULL;
	va_list ap;

	va_start(ap, fmt);
	msg = g_strdup_vprintf(fmt, ap);
	va_end(ap);
	drv_error_report(VIR_ERR_OPERATION_FAILED, "kvmm's reply to '%s' is malformed: %s", command,
			 msg);
	return -1;
}

int monitor_pause(const char *path)
{
	return command(path, "pause", NULL, NULL);
}

int monitor_save(const char *path, int fd)
{
	json_object *args = json_object_new_object();
	int rc;

	json_object_object_add(args, "fdname", json_object_new_string("save"));
	/* Writing the guest's RAM takes seconds on a loaded host; the
	 * deadline still catches a kvmm that stopped answering. */
	rc = command_fd(path, "save", args, fd, "save", NULL,
			MAX(command_timeout_ms, MONITOR_SAVE_TIMEOUT_MS));
	json_object_put(args);
	return rc;
}

int monitor_resume(const char *path)
{
	return command(path, "resume", NULL, NULL);
}

int monitor_powerdown(const char *path)
{
	return command(path, "power-button", NULL, NULL);
}

int monitor_reboot(const char *path)
{
	return command(path, "reboot", NULL, NULL);
}

int monitor_reset(const char *path)
{
	return command(path, "reset", NULL, NULL);
}

/* KVMM: a state is one of a few strings; others are a newer kvmm's. */
static enum kvmm_run_state parse_state(json_object *v)
{
	const char *s = json_object_is_type(v, json_type_string) ? json_object_get_string(v) : "";

	return !strcmp(s, "running")  ? KVMM_STATE_RUNNING
	       : !strcmp(s, "paused")   ? KVMM_STATE_PAUSED
	       : !strcmp(s, "shutdown") ? KVMM_STATE_SHUTDOWN
					: KVMM_STATE_UNKNOWN;
}

/* The pty path of query-status' member NAME ("serial", "console"), when
 * that device is on a pty. */
static char *pty_of(json_object *status, const char *name)
{
	json_object *v, *mode, *p;

	/* KVMM: anything but {"mode":"pty","path":STRING} is not a pty. */
	if (json_object_object_get_ex(status, name, &v) && json_object_object_get_ex(v, "mode", &mode) &&
	    json_object_is_type(mode, json_type_string) && !strcmp(json_object_get_string(mode), "pty") &&
	    json_object_object_get_ex(v, "path", &p) && json_object_is_type(p, json_type_string))
		return g_strdup(json_object_get_string(p));
	return NULL;
}

int monitor_query_status(const char *path, struct kvmm_status *st)
{
	json_object *q = NULL, *v = NULL;

	memset(st, 0, sizeof(*st));
	if (command(path, "query-status", NULL, &q) < 0)
		return -1;
	if (!json_object_is_type(q, json_type_object)) {
		json_object_put(q);
		return malformed("query-status", "not an object");
	}
	json_object_object_get_ex(q, "state", &v);
	st->state = parse_state(v);
	st->serial_pty = pty_of(q, "serial");
	st->console_pty = pty_of(q, "console");
	/* KVMM: absent (an older kvmm) is no vCPU hotplug. */
	st->cpu_hotplug = json_object_object_get_ex(q, "cpu_hotplug", &v) &&
			  json_object_is_type(v, json_type_boolean) && json_object_get_boolean(v);
	/* KVMM: a count within kvmm's limit, else not said. */
	if (json_object_object_get_ex(q, "vcpus", &v) && json_object_is_type(v, json_type_int) &&
	    json_object_get_int64(v) > 0 && json_object_get_int64(v) <= 254)
		st->vcpus = (unsigned)json_object_get_int64(v);
	json_object_put(q);
	return 0;
}

void kvmm_status_clear(struct kvmm_status *st)
{
	g_clear_pointer(&st->serial_pty, g_free);
	g_clear_pointer(&st->console_pty, g_free);
}

/* KVMM: a counter is a non-negative integer. */
static bool get_counter(json_object *o, const char *key, uint64_t *out)
{
	json_object *v;

	if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_int) ||
	    json_object_get_int64(v) < 0)
		return false;
	*out = (uint64_t)json_object_get_int64(v);
	return true;
}

int monitor_block_stats(const char *path, struct kvmm_blk_stats **stats, size_t *n)
{
	json_object *all = NULL;
	struct kvmm_blk_stats *s;
	size_t len;

	*stats = NULL;
	*n = 0;
	if (command(path, "query-block-stats", NULL, &all) < 0)
		return -1;
	if (!json_object_is_type(all, json_type_array)) {
		json_object_put(all);
		return malformed("query-block-stats", "not a list");
	}
	len = json_object_array_length(all);
	s = g_new0(struct kvmm_blk_stats, MAX(len, 1));
	for (size_t i = 0; i < len; i++) {
		static const struct { const char *key; size_t off; } keys[] = {
			{ "rd_operations", offsetof(struct kvmm_blk_stats, rd_reqs) },
			{ "rd_bytes", offsetof(struct kvmm_blk_stats, rd_bytes) },
			{ "rd_total_time_ns", offsetof(struct kvmm_blk_stats, rd_time_ns) },
			{ "wr_operations", offsetof(struct kvmm_blk_stats, wr_reqs) },
			{ "wr_bytes", offsetof(struct kvmm_blk_stats, wr_bytes) },
			{ "wr_total_time_ns", offsetof(struct kvmm_blk_stats, wr_time_ns) },
			{ "flush_operations", offsetof(struct kvmm_blk_stats, fl_reqs) },
			{ "flush_total_time_ns", offsetof(struct kvmm_blk_stats, fl_time_ns) },
			{ "errors", offsetof(struct kvmm_blk_stats, errors) },
		};
		json_object *d = json_object_array_get_idx(all, i), *v;
		const char *io;

		for (size_t k = 0; k < G_N_ELEMENTS(keys); k++) {
			if (!get_counter(d, keys[k].key, (uint64_t *)((char *)&s[i] + keys[k].off))) {
				json_object_put(all);
				g_free(s);
				return malformed("query-block-stats", "disk %zu has no counter '%s'", i,
						 keys[k].key);
			}
		}
		/* KVMM: absent or unknown (an older or newer kvmm) is not an
		 * error it says it has. */
		io = json_object_object_get_ex(d, "io_status", &v) &&
		     json_object_is_type(v, json_type_string) ? json_object_get_string(v) : "ok";
		s[i].io_status = !strcmp(io, "nospace") ? KVMM_IO_NOSPACE :
				 !strcmp(io, "failed") ? KVMM_IO_FAILED : KVMM_IO_OK;
	}
	json_object_put(all);
	*stats = s;
	*n = len;
	return 0;
}

int monitor_block_resize(const char *path, unsigned disk, uint64_t bytes)
{
	json_object *args = json_object_new_object();
	g_autofree char *dev = g_strdup_printf("disk%u", disk);	/* kvmm's name for it */
	int rc;

	json_object_object_add(args, "device", json_object_new_string(dev));
	json_object_object_add(args, "size", json_object_new_int64((int64_t)bytes));
	rc = command(path, "block-resize", args, NULL);
	json_object_put(args);
	return rc;
}

int monitor_block_overlay(const char *path, const char *image, const char *overlay, bool dsync)
{
	json_object *args;
	int rc, fd;

	/* Opened here, sandboxed or not (a sandboxed kvmm opens no path), as
	 * kvmm would open it (block.c): O_DSYNC where the cache mode needs
	 * it, no O_DIRECT (one descriptor serves aligned and unaligned I/O). */
	fd = open(overlay, O_RDWR | O_CLOEXEC | O_NOCTTY | (dsync ? O_DSYNC : 0));
	if (fd < 0) {
		drv_error_report(VIR_ERR_SYSTEM_ERROR, "cannot open overlay '%s': %s", overlay,
				 g_strerror(errno));
		return -1;
	}
	args = json_object_new_object();
	json_object_object_add(args, "device", json_object_new_string(image));
	json_object_object_add(args, "fdname", json_object_new_string("overlay"));
	/* Only its name: the disk's for the next snapshot's block-overlay. */
	json_object_object_add(args, "path", json_object_new_string(overlay));
	rc = command_fd(path, "block-overlay", args, fd, "overlay", NULL, command_timeout_ms);
	json_object_put(args);
	close(fd);
	return rc;
}

int monitor_balloon_set(const char *path, uint64_t target, int stats_period)
{
	json_object *args = json_object_new_object();
	int rc;

	if (target)
		json_object_object_add(args, "target", json_object_new_int64((int64_t)target));
	if (stats_period >= 0)
		json_object_object_add(args, "stats_period", json_object_new_int(stats_period));
	rc = command(path, "balloon-set", args, NULL);
	json_object_put(args);
	return rc;
}

int monitor_query_balloon(const char *path, struct kvmm_balloon *b)
{
	static const struct { const char *key; size_t off; } stats[] = {
		{ "swap_in", offsetof(struct kvmm_balloon, swap_in) },
		{ "swap_out", offsetof(struct kvmm_balloon, swap_out) },
		{ "major_faults", offsetof(struct kvmm_balloon, major_faults) },
		{ "minor_faults", offsetof(struct kvmm_balloon, minor_faults) },
		{ "free_memory", offsetof(struct kvmm_balloon, free_memory) },
		{ "total_memory", offsetof(struct kvmm_balloon, total_memory) },
		{ "available_memory", offsetof(struct kvmm_balloon, available_memory) },
		{ "disk_caches", offsetof(struct kvmm_balloon, disk_caches) },
		{ "last_update", offsetof(struct kvmm_balloon, last_update) },
	};
	json_object *o = NULL, *st;

	memset(b, 0, sizeof(*b));
	if (command(path, "query-balloon", NULL, &o) < 0)
		return -1;
	/* KVMM: the sizes are required; each statistic only once the guest
	 * gave it. */
	if (!get_counter(o, "memory", &b->memory) || !get_counter(o, "target", &b->target) ||
	    !get_counter(o, "actual", &b->actual)) {
		json_object_put(o);
		return malformed("query-balloon", "no memory, target or actual");
	}
	if (json_object_object_get_ex(o, "stats", &st) && json_object_is_type(st, json_type_object))
		for (size_t k = 0; k < G_N_ELEMENTS(stats); k++)
			if (get_counter(st, stats[k].key, (uint64_t *)((char *)b + stats[k].off)))
				b->have |= 1u << k;
	json_object_put(o);
	return 0;
}

static json_object *migrate_args(const struct kvmm_migrate_params *p)
{
	json_object *args = json_object_new_object();

	json_object_object_add(args, "max-downtime-ms",
			       json_object_new_int64((int64_t)MIN(p->max_downtime_ms, INT64_MAX)));
	json_object_object_add(args, "bandwidth-mibps",
			       json_object_new_int64((int64_t)MIN(p->bandwidth_mibps, INT64_MAX)));
	json_object_object_add(args, "auto-converge", json_object_new_boolean(p->auto_converge));
	return args;
}

int monitor_migrate(const char *path, int fd, const struct kvmm_migrate_params *p)
{
	json_object *args = migrate_args(p);
	int rc;

	json_object_object_add(args, "fdname", json_object_new_string("migrate"));
	rc = command_fd(path, "migrate", args, fd, "migrate", NULL, command_timeout_ms);
	json_object_put(args);
	return rc;
}

int monitor_migrate_cancel(const char *path)
{
	return command(path, "migrate-cancel", NULL, NULL);
}

int monitor_migrate_postcopy(const char *path)
{
	return command(path, "migrate-postcopy", NULL, NULL);
}

int monitor_migrate_set_params(const char *path, const struct kvmm_migrate_params *p)
{
	json_object *args = migrate_args(p);
	int rc = command(path, "migrate-set-params", args, NULL);

	json_object_put(args);
	return rc;
}

int monitor_query_migrate(const char *path, struct kvmm_migrate_info *mi)
{
	static const struct { const char *key; size_t off; } counters[] = {
		{ "total-bytes", offsetof(struct kvmm_migrate_info, total_bytes) },
		{ "transferred-bytes", offsetof(struct kvmm_migrate_info, transferred_bytes) },
		{ "remaining-bytes", offsetof(struct kvmm_migrate_info, remaining_bytes) },
		{ "iteration", offsetof(struct kvmm_migrate_info, iteration) },
		{ "dirty-pages-rate", offsetof(struct kvmm_migrate_info, dirty_pages_rate) },
		{ "setup-ms", offsetof(struct kvmm_migrate_info, setup_ms) },
		{ "total-ms", offsetof(struct kvmm_migrate_info, total_ms) },
		{ "downtime-ms", offsetof(struct kvmm_migrate_info, downtime_ms) },
		{ "cpu-throttle-percent", offsetof(struct kvmm_migrate_info, cpu_throttle_pct) },
		{ "postcopy-requests", offsetof(struct kvmm_migrate_info, postcopy_requests) },
	};
	json_object *o = NULL, *v;
	const char *s;

	memset(mi, 0, sizeof(*mi));
	if (command(path, "query-migrate", NULL, &o) < 0)
		return -1;
	/* KVMM: a status is one of a few strings; the counters are optional
	 * (0 when missing). */
	if (!json_object_object_get_ex(o, "status", &v) || !json_object_is_type(v, json_type_string)) {
		json_object_put(o);
		return malformed("query-migrate", "no status");
	}
	s = json_object_get_string(v);
	mi->status = !strcmp(s, "active")      ? KVMM_MIGRATE_ACTIVE
		     : !strcmp(s, "completed") ? KVMM_MIGRATE_COMPLETED
		     : !strcmp(s, "failed")    ? KVMM_MIGRATE_FAILED
		     : !strcmp(s, "cancelled") ? KVMM_MIGRATE_CANCELLED
		     : !strcmp(s, "postcopy-active") ? KVMM_MIGRATE_POSTCOPY
					       : KVMM_MIGRATE_NONE;
	for (size_t k = 0; k < G_N_ELEMENTS(counters); k++)
		get_counter(o, counters[k].key, (uint64_t *)((char *)mi + counters[k].off));
	if (json_object_object_get_ex(o, "error", &v) && json_object_is_type(v, json_type_string))
		g_strlcpy(mi->error, json_object_get_string(v), sizeof(mi->error));
	json_object_put(o);
	return 0;
}

/* KVMM: a device id as device-add takes it, and fits struct
 * kvmm_hot_device / monitor_event. */
static bool id_ok(const char *id)
{
	return id && *id && strlen(id) < 64;
}

static int backing_refused(const char *src)
{
	drv_error_report(VIR_ERR_OPERATION_UNSUPPORTED,
			 "disk '%s' has a backing chain: a sandboxed guest cannot open it (set sandbox = 0 in virtkvmmd.conf to hot-add it)",
			 src);
	return -1;
}

/* A hot-added disk's image opened for a sandboxed kvmm, as kvmm would
 * open its path (block.c): read-only or read-write, O_DSYNC for the cache
 * modes that need it; O_DIRECT is not used (one descriptor serves aligned
 * and unaligned I/O).  A backing chain kvmm would open by path is
 * refused.  The descriptor, or -1 after reporting. */
static int open_image(json_object *args, const char *id)
{
	json_object *v;
	const char *src, *cache = "";
	bool ro = false;
	int fd, flags;

	if (!json_object_object_get_ex(args, "path", &v) || !json_object_is_type(v, json_type_string)) {
		drv_error_report(VIR_ERR_INTERNAL_ERROR, "bad device-add arguments for '%s'", id);
		return -1;
	}
	src = json_object_get_string(v);
	if (json_object_object_get_ex(args, "backing", NULL))
		return backing_refused(src);
	if (json_object_object_get_ex(args, "readonly", &v))
		ro = json_object_get_boolean(v);
	if (json_object_object_get_ex(args, "cache", &v) && json_object_is_type(v, json_type_string))
		cache = json_object_get_string(v);
	flags = (ro ? O_RDONLY : O_RDWR) | O_CLOEXEC | O_NOCTTY;
	if (!ro && (!strcmp(cache, "writethrough") || !strcmp(cache, "directsync")))
		flags |= O_DSYNC;
	fd = open(src, flags);
	if (fd < 0) {
		drv_error_report(VIR_ERR_SYSTEM_ERROR, "cannot open disk image '%s': %s", src,
				 g_strerror(errno));
		return -1;
	}
	/* A chain the definition does not give, only the image's header
	 * names: kvmm would go for it by path. */
	if (json_object_object_get_ex(args, "format", &v) && json_object_is_type(v, json_type_string) &&
	    !strcmp(json_object_get_string(v), "qcow2") && disk_chain_qcow2_has_backing(fd)) {
		close(fd);
		return backing_refused(src);
	}
	return fd;
}

/* TAP_FD >= 0: a NIC's tap, sent in place of its name. */
static int device_add(const char *path, const char *type, const char *id, const char *keys_json,
		      int tap_fd, unsigned *slot)
{
	json_object *args = json_tokener_parse(keys_json), *ret = NULL, *v;
	int rc, fd = -1;

	if (!args || !json_object_is_type(args, json_type_object) || !id_ok(id)) {
		json_object_put(args);
		drv_error_report(VIR_ERR_INTERNAL_ERROR, "bad device-add arguments for '%s'", id ? id : "");
		return -1;
	}
	json_object_object_add(args, "type", json_object_new_string(type));
	json_object_object_add(args, "id", json_object_new_string(id));
	if (tap_fd >= 0) {
		json_object_object_del(args, "tap");
		json_object_object_add(args, "fdname", json_object_new_string(id));
	} else if (pass_fds) {
		fd = open_image(args, id);
		if (fd < 0) {
			json_object_put(args);
			return -1;
		}
		json_object_object_add(args, "fdname", json_object_new_string(id));
	}
	rc = command_fd(path, "device-add", args, tap_fd >= 0 ? tap_fd : fd, id, &ret,
			command_timeout_ms);
	if (fd >= 0)
		close(fd);
	json_object_put(args);
	if (rc < 0)
		return -1;
	/* KVMM: the slot it took, 1-31. */
	if (!json_object_object_get_ex(ret, "slot", &v) || !json_object_is_type(v, json_type_int) ||
	    json_object_get_int(v) < 1 || json_object_get_int(v) > 31) {
		json_object_put(ret);
		return malformed("device-add", "no slot 1-31");
	}
	*slot = (unsigned)json_object_get_int(v);
	json_object_put(ret);
	return 0;
}

int monitor_device_add_disk(const char *path, const char *id, const char *keys_json, unsigned *slot)
{
	return device_add(path, "blk", id, keys_json, -1, slot);
}

int monitor_device_add_net(const char *path, const char *id, const char *keys_json, int tap_fd,
			   unsigned *slot)
{
	return device_add(path, "net", id, keys_json, tap_fd, slot);
}

int monitor_device_del(const char *path, const char *id)
{
	json_object *args = json_object_new_object();
	int rc;

	json_object_object_add(args, "id", json_object_new_string(id));
	rc = command(path, "device-del", args, NULL);
	json_object_put(args);
	return rc;
}

static int cpu_command(const char *path, const char *cmd, unsigned id)
{
	json_object *args = json_object_new_object();
	int rc;

	json_object_object_add(args, "id", json_object_new_int((int)id));
	rc = command(path, cmd, args, NULL);
	json_object_put(args);
	return rc;
}

int monitor_cpu_add(const char *path, unsigned id)
{
	return cpu_command(path, "cpu-add", id);
}

int monitor_cpu_del(const char *path, unsigned id)
{
	return cpu_command(path, "cpu-del", id);
}

int monitor_query_cpus(const char *path, struct kvmm_cpu **cpus, size_t *n)
{
	json_object *all = NULL, *d, *v;
	struct kvmm_cpu *out;
	size_t len;

	if (command(path, "query-cpus", NULL, &all) < 0)
		return -1;
	if (!json_object_is_type(all, json_type_array)) {
		json_object_put(all);
		return malformed("query-cpus", "not an array");
	}
	len = json_object_array_length(all);
	out = g_new0(struct kvmm_cpu, len ? len : 1);
	for (size_t i = 0; i < len; i++) {
		const char *s;

		d = json_object_array_get_idx(all, i);
		/* KVMM: each entry needs an id and a state we know. */
		if (!json_object_object_get_ex(d, "id", &v) || !json_object_is_type(v, json_type_int) ||
		    json_object_get_int(v) < 0)
			goto bad;
		out[i].id = (unsigned)json_object_get_int(v);
		if (!json_object_object_get_ex(d, "state", &v) || !json_object_is_type(v, json_type_string))
			goto bad;
		s = json_object_get_string(v);
		if (!strcmp(s, "present"))
			out[i].state = KVMM_CPU_PRESENT;
		else if (!strcmp(s, "removing"))
			out[i].state = KVMM_CPU_REMOVING;
		else if (!strcmp(s, "ejected"))
			out[i].state = KVMM_CPU_EJECTED;
		else
			goto bad;
	}
	json_object_put(all);
	*cpus = out;
	*n = len;
	return 0;
bad:
	g_free(out);
	json_object_put(all);
	return malformed("query-cpus", "an entry without a vCPU id or a known state");
}

int monitor_query_devices(const char *path, struct kvmm_hot_device **devs, size_t *n)
{
	json_object *all = NULL, *d, *v;
	struct kvmm_hot_device *out;
	size_t len;

	if (command(path, "query-devices", NULL, &all) < 0)
		return -1;
	if (!json_object_is_type(all, json_type_array)) {
		json_object_put(all);
		return malformed("query-devices", "not an array");
	}
	len = json_object_array_length(all);
	out = g_new0(struct kvmm_hot_device, len ? len : 1);
	for (size_t i = 0; i < len; i++) {
		const char *s;

		d = json_object_array_get_idx(all, i);
		/* KVMM: each entry needs its id, type and slot. */
		if (!json_object_object_get_ex(d, "id", &v) || !json_object_is_type(v, json_type_string) ||
		    !id_ok(json_object_get_string(v)))
			goto bad;
		g_strlcpy(out[i].id, json_object_get_string(v), sizeof(out[i].id));
		if (!json_object_object_get_ex(d, "type", &v) || !json_object_is_type(v, json_type_string))
			goto bad;
		s = json_object_get_string(v);
		if (strcmp(s, "blk") && strcmp(s, "net"))
			goto bad;
		out[i].net = !strcmp(s, "net");
		if (!json_object_object_get_ex(d, "slot", &v) || !json_object_is_type(v, json_type_int))
			goto bad;
		out[i].slot = (unsigned)json_object_get_int(v);
		out[i].removing = json_object_object_get_ex(d, "state", &v) &&
				  json_object_is_type(v, json_type_string) &&
				  !strcmp(json_object_get_string(v), "removing");
	}
	json_object_put(all);
	*devs = out;
	*n = len;
	return 0;
bad:
	g_free(out);
	json_object_put(all);
	return malformed("query-devices", "an entry without id, type or slot");
}

struct monitor_watch {
	int fd;
	guint source;
	GString *buf;
	char *path;		/* for the log */
	monitor_event_fn fn;
	void *opaque;
};

/* KVMM: an event this daemon knows, parsed into EV; false for the rest
 * (clients ignore events they do not know). */
static bool parse_event(json_object *o, struct monitor_event *ev)
{
	json_object *name = NULL, *data = NULL, *v;
	const char *s;

	if (!json_object_is_type(o, json_type_object) || !json_object_object_get_ex(o, "event", &name) ||
	    !json_object_is_type(name, json_type_string))
		return false;
	s = json_object_get_string(name);
	json_object_object_get_ex(o, "data", &data);
	memset(ev, 0, sizeof(*ev));
	ev->exit_status = -1;
	if (!strcmp(s, "reset")) {
		ev->kind = MONITOR_EVENT_RESET;
		return true;
	}
	if (!strcmp(s, "balloon-change")) {
		ev->kind = MONITOR_EVENT_BALLOON_CHANGE;
		/* KVMM: without its size the event says nothing. */
		return json_object_is_type(data, json_type_object) &&
		       get_counter(data, "actual", &ev->balloon_actual);
	}
	if (!strcmp(s, "block-io-error")) {
		const char *dev, *act, *err;
		char *end;
		unsigned long n;

		ev->kind = MONITOR_EVENT_BLOCK_IO_ERROR;
		/* KVMM: without the disk "diskN" and a known action it says
		 * nothing the daemon can act on. */
		if (!json_object_is_type(data, json_type_object) ||
		    !json_object_object_get_ex(data, "device", &v) || !json_object_is_type(v, json_type_string))
			return false;
		dev = json_object_get_string(v);
		if (strncmp(dev, "disk", 4) || !g_ascii_isdigit(dev[4]))
			return false;
		n = strtoul(dev + 4, &end, 10);
		if (*end || n > UINT_MAX)
			return false;
		ev->disk = (unsigned)n;
		if (!json_object_object_get_ex(data, "action", &v) || !json_object_is_type(v, json_type_string))
			return false;
		act = json_object_get_string(v);
		if (!strcmp(act, "stop"))
			ev->io_action = KVMM_IO_ACTION_STOP;
		else if (!strcmp(act, "report"))
			ev->io_action = KVMM_IO_ACTION_REPORT;
		else if (!strcmp(act, "ignore"))
			ev->io_action = KVMM_IO_ACTION_IGNORE;
		else
			return false;
		err = json_object_object_get_ex(data, "error", &v) && json_object_is_type(v, json_type_string) ?
		      json_object_get_string(v) : "";
		ev->io_nospace = !strcmp(err, "ENOSPC");
		return true;
	}
	if (!strcmp(s, "device-deleted")) {
		ev->kind = MONITOR_EVENT_DEVICE_DELETED;
		/* KVMM: without the id the daemon cannot tell which device left. */
		if (!json_object_is_type(data, json_type_object) ||
		    !json_object_object_get_ex(data, "id", &v) || !json_object_is_type(v, json_type_string) ||
		    !id_ok(json_object_get_string(v)))
			return false;
		g_strlcpy(ev->device_id, json_object_get_string(v), sizeof(ev->device_id));
		if (json_object_object_get_ex(data, "slot", &v) && json_object_is_type(v, json_type_int))
			ev->slot = (unsigned)json_object_get_int(v);
		return true;
	}
	if (!strcmp(s, "cpu-deleted")) {
		ev->kind = MONITOR_EVENT_CPU_DELETED;
		/* KVMM: without the id the daemon cannot tell which vCPU left. */
		if (!json_object_is_type(data, json_type_object) ||
		    !json_object_object_get_ex(data, "id", &v) || !json_object_is_type(v, json_type_int) ||
		    json_object_get_int(v) < 0)
			return false;
		ev->cpu_id = (unsigned)json_object_get_int(v);
		return true;
	}
	if (!strcmp(s, "migration-status")) {
		const char *st;

		ev->kind = MONITOR_EVENT_MIGRATION;
		/* KVMM: only the statuses the daemon acts on are delivered. */
		if (!json_object_is_type(data, json_type_object) ||
		    !json_object_object_get_ex(data, "status", &v) || !json_object_is_type(v, json_type_string))
			return false;
		st = json_object_get_string(v);
		ev->migration = !strcmp(st, "completed") ? KVMM_MIGRATE_COMPLETED :
				!strcmp(st, "failed") ? KVMM_MIGRATE_FAILED : KVMM_MIGRATE_NONE;
		return ev->migration != KVMM_MIGRATE_NONE;
	}
	if (strcmp(s, "state-changed"))
		return false;
	ev->kind = MONITOR_EVENT_STATE_CHANGED;
	if (!json_object_is_type(data, json_type_object))
		return true;
	if (json_object_object_get_ex(data, "state", &v))
		ev->state = parse_state(v);
	if (json_object_object_get_ex(data, "exit_status", &v) && json_object_is_type(v, json_type_int))
		ev->exit_status = json_object_get_int(v);
	return true;
}

static void dispatch_lines(struct monitor_watch *w)
{
	char *nl;

	while ((nl = memchr(w->buf->str, '\n', w->buf->len))) {
		struct monitor_event ev;
		json_object *o;

		*nl = '\0';
		pr_debug("kvmm %s: %s", w->path, w->buf->str);
		o = json_tokener_parse(w->buf->str);
		g_string_erase(w->buf, 0, nl - w->buf->str + 1);
		/* This connection sends no commands: only events are for it. */
		if (parse_event(o, &ev))
			w->fn(&ev, w->opaque);
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

struct monitor_watch *monitor_watch_connect(const char *path)
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
	w->path = g_strdup(path);
	return w;
}

void monitor_watch_start(struct monitor_watch *w, monitor_event_fn fn, void *opaque)
{
	w->fn = fn;
	w->opaque = opaque;
	w->source = g_unix_fd_add(w->fd, G_IO_IN | G_IO_HUP | G_IO_ERR, watch_io, w);
	/* Events that came with the greeting: the socket will not wake us
	 * for them again. */
	if (w->buf->len)
		dispatch_lines(w);
}

struct monitor_watch *monitor_watch_new(const char *path, monitor_event_fn fn, void *opaque)
{
	struct monitor_watch *w = monitor_watch_connect(path);

	if (w)
		monitor_watch_start(w, fn, opaque);
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
	g_free(w->path);
	g_free(w);
}
