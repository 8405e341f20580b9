/* The daemon's kvmm monitor (src/driver/kvmm/monitor.c) against a fake
 * kvmm: a thread on a UNIX socket that sends the greeting, reads one
 * request and answers with recorded lines -- replies a live kvmm gave
 * (docs/api.md), its errors, and broken ones. */
#include <errno.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <glib.h>
#include <glib/gstdio.h>

#include "error.h"
#include "kvmm/monitor.h"
#include "unit.h"

/* Recorded from kvmm 0.1.0 (docs/api.md's commands, a 1 MiB disk). */
#define GREETING "{\"greeting\":{\"name\":\"kvmm\",\"version\":\"0.1.0\",\"api\":1,\"vm\":\"kvmm\"}}\n"
#define STATUS_RUNNING                                                                              \
	"{\"id\":@ID,\"return\":{\"name\":\"kvmm\",\"state\":\"running\",\"vcpus\":1,"             \
	"\"memory\":67108864,\"uptime_ms\":54,\"boots\":1,\"pid\":19793,"                           \
	"\"serial\":{\"mode\":\"pty\",\"path\":\"\\/dev\\/pts\\/0\"},"                              \
	"\"console\":{\"mode\":\"pty\",\"path\":\"\\/dev\\/pts\\/1\"}}}\n"
#define BLOCK_STATS                                                                                 \
	"{\"id\":@ID,\"return\":[{\"device\":\"disk0\",\"path\":\"d.img\",\"rd_operations\":3,"     \
	"\"wr_operations\":5,\"flush_operations\":7,\"other_operations\":1,\"rd_bytes\":1536,"      \
	"\"wr_bytes\":2560,\"errors\":2,\"rd_total_time_ns\":11,\"wr_total_time_ns\":13,"           \
	"\"flush_total_time_ns\":17,\"io_status\":\"nospace\"},"                                     \
	"{\"device\":\"disk1\",\"path\":\"e.img\",\"rd_operations\":0,\"wr_operations\":0,"         \
	"\"flush_operations\":0,\"other_operations\":0,\"rd_bytes\":0,\"wr_bytes\":0,\"errors\":0," \
	"\"rd_total_time_ns\":0,\"wr_total_time_ns\":0,\"flush_total_time_ns\":9007199254740993}]}\n"
#define EV_PAUSED                                                                                   \
	"{\"event\":\"state-changed\",\"data\":{\"state\":\"paused\",\"reason\":\"user\"},"         \
	"\"timestamp\":{\"seconds\":1796587384,\"microseconds\":159160}}\n"
#define EV_RESET                                                                                    \
	"{\"event\":\"reset\",\"data\":{\"boots\":2},"                                              \
	"\"timestamp\":{\"seconds\":1796587384,\"microseconds\":176783}}\n"
#define EV_QUIT                                                                                     \
	"{\"event\":\"state-changed\",\"data\":{\"state\":\"shutdown\",\"reason\":\"quit\","        \
	"\"exit_status\":0},\"timestamp\":{\"seconds\":1796587384,\"microseconds\":659985}}\n"
#define OK "{\"id\":@ID,\"return\":{}}\n"

/* What the fake kvmm does after the request. */
struct fake {
	char dir[64], path[128];
	int lfd;
	GThread *thread;
	const char *reply;	/* sent after the request; @ID becomes its id */
	bool split;		/* sent in two writes, apart */
	bool hang;		/* answers nothing; waits for the client to go */
	bool no_greeting;	/* not kvmm: its first line is something else */
	bool push;		/* an event connection: REPLY follows the
				 * greeting unasked, then waits for the client */
	char request[4096];	/* the line the client sent */
};

static void send_all(int fd, const char *s, size_t len)
{
	while (len) {
		ssize_t n = send(fd, s, len, MSG_NOSIGNAL);

		if (n <= 0)
			return;
		s += n;
		len -= (size_t)n;
	}
}

static gpointer fake_thread(gpointer data)
{
	struct fake *f = data;
	int fd = accept(f->lfd, NULL, NULL);
	size_t got = 0;
	const char *id;
	char c;

	if (fd < 0)
		return NULL;
	if (f->push && !f->split) {
		/* Events in the greeting's segment: the client must not lose
		 * them. */
		g_autofree char *all = g_strconcat(GREETING, f->reply, NULL);

		send_all(fd, all, strlen(all));
		while (read(fd, &c, 1) > 0)
			;
		close(fd);
		return NULL;
	}
	send_all(fd, f->no_greeting ? OK : GREETING, strlen(f->no_greeting ? OK : GREETING));
	while (!f->push && got + 1 < sizeof(f->request) && read(fd, &c, 1) == 1 && c != '\n')
		f->request[got++] = c;
	f->request[got] = '\0';
	if (!f->hang && f->reply) {
		g_autoptr(GString) s = g_string_new(f->reply);

		id = strstr(f->request, "\"id\":");
		g_autofree char *num = g_strdup_printf("%d", id ? atoi(id + 5) : -1);

		g_string_replace(s, "@ID", num, 0);
		if (f->split) {
			/* The reply's second half comes later: the client must
			 * put a line together from several reads. */
			send_all(fd, s->str, s->len / 2);
			g_usleep(20000);
			send_all(fd, s->str + s->len / 2, s->len - s->len / 2);
		} else {
			send_all(fd, s->str, s->len);
		}
	}
	/* Until the client is done: EOF only where the script ends. */
	while ((f->hang || f->push) && read(fd, &c, 1) > 0)
		;
	close(fd);
	return NULL;
}

static void fake_start(struct fake *f)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	g_strlcpy(f->dir, "/tmp/kvmm-monitor-XXXXXX", sizeof(f->dir));
	if (!g_mkdtemp(f->dir))
		abort();
	snprintf(f->path, sizeof(f->path), "%s/api.sock", f->dir);
	g_strlcpy(sa.sun_path, f->path, sizeof(sa.sun_path));
	f->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (f->lfd < 0 || bind(f->lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(f->lfd, 1) < 0)
		abort();
	f->thread = g_thread_new("fake-kvmm", fake_thread, f);
}

static void fake_stop(struct fake *f)
{
	g_thread_join(f->thread);
	close(f->lfd);
	unlink(f->path);
	g_rmdir(f->dir);
}

static int lost_calls, lost_err;

static void on_lost(const char *path, int err)
{
	lost_calls++;
	lost_err = err;
}

static void reset(void)
{
	drv_error_reset();
	lost_calls = 0;
	lost_err = 0;
	monitor_set_lost_handler(on_lost);
	monitor_set_timeout(10000);
}

/* The error reported: CODE, with WORDS in its message. */
static bool reported(int code, const char *words)
{
	const struct drv_error *e = drv_error_last();

	if (!e || e->code != code || !strstr(e->message, words)) {
		printf("  reported: %d '%s'\n", e ? e->code : 0, e ? e->message : "");
		return false;
	}
	return true;
}

UNIT_TEST(each_command_has_its_name_and_no_arguments)
{
	static const struct { int (*fn)(const char *); const char *name; } cmds[] = {
		{ monitor_pause, "pause" },	   { monitor_resume, "resume" },
		{ monitor_powerdown, "power-button" }, { monitor_reboot, "reboot" },
		{ monitor_reset, "reset" },
	};

	for (size_t i = 0; i < G_N_ELEMENTS(cmds); i++) {
		struct fake f = { .reply = OK };
		g_autofree char *want = g_strdup_printf("\"execute\":\"%s\"", cmds[i].name);

		reset();
		fake_start(&f);
		CHECK(cmds[i].fn(f.path) == 0);
		fake_stop(&f);
		CHECK(strstr(f.request, want) != NULL);
		CHECK(!strstr(f.request, "arguments"));
		CHECK(!drv_error_last() && lost_calls == 0);
	}
}

/* monitor_query_status against a fake kvmm answering REPLY. */
static int status_of(const char *reply, bool split, struct kvmm_status *st)
{
	struct fake f = { .reply = reply, .split = split };
	int rc;

	reset();
	fake_start(&f);
	rc = monitor_query_status(f.path, st);
	fake_stop(&f);
	CHECK(strstr(f.request, "\"execute\":\"query-status\"") != NULL);
	return rc;
}

UNIT_TEST(query_status_parses_state_and_ptys)
{
	struct kvmm_status st;

	CHECK(status_of(STATUS_RUNNING, false, &st) == 0);
	CHECK(st.state == KVMM_STATE_RUNNING);
	CHECK_STR(st.serial_pty, "/dev/pts/0");
	CHECK_STR(st.console_pty, "/dev/pts/1");
	kvmm_status_clear(&st);
	CHECK(!st.serial_pty && !st.console_pty);
}

UNIT_TEST(query_status_paused_without_ptys)
{
	struct kvmm_status st;

	CHECK(status_of("{\"id\":@ID,\"return\":{\"state\":\"paused\",\"serial\":"
			"{\"mode\":\"unix\",\"path\":\"/tmp/s\"},\"console\":{\"mode\":\"pty\"}}}\n",
			false, &st) == 0);
	CHECK(st.state == KVMM_STATE_PAUSED);
	/* a unix socket is no pty; a pty without a path is no use */
	CHECK(!st.serial_pty && !st.console_pty);
	kvmm_status_clear(&st);
}

UNIT_TEST(query_status_mistyped_keys)
{
	struct kvmm_status st;

	CHECK(status_of("{\"id\":@ID,\"return\":{\"state\":7,\"serial\":"
			"{\"mode\":\"pty\",\"path\":5},\"console\":\"pty\"}}\n", false, &st) == 0);
	CHECK(st.state == KVMM_STATE_UNKNOWN);
	CHECK(!st.serial_pty && !st.console_pty);
}

UNIT_TEST(query_status_not_an_object)
{
	struct kvmm_status st;

	CHECK(status_of("{\"id\":@ID,\"return\":[\"running\"]}\n", false, &st) < 0);
	CHECK(reported(VIR_ERR_OPERATION_FAILED, "malformed"));
	CHECK(lost_calls == 0);
	CHECK(!st.serial_pty && !st.console_pty);
}

UNIT_TEST(reply_split_across_reads)
{
	struct kvmm_status st;

	CHECK(status_of(STATUS_RUNNING, true, &st) == 0);
	CHECK(st.state == KVMM_STATE_RUNNING);
	CHECK_STR(st.serial_pty, "/dev/pts/0");
	kvmm_status_clear(&st);
}

UNIT_TEST(events_and_other_ids_before_the_reply_are_skipped)
{
	struct kvmm_status st;

	CHECK(status_of(EV_PAUSED "{\"id\":\"other\",\"return\":{\"state\":\"shutdown\"}}\n"
			"{\"id\":-5,\"return\":{\"state\":\"shutdown\"}}\n" EV_RESET STATUS_RUNNING,
			false, &st) == 0);
	CHECK(st.state == KVMM_STATE_RUNNING);
	kvmm_status_clear(&st);
}

/* monitor_block_stats against a fake kvmm answering REPLY. */
static int block_stats_of(const char *reply, struct kvmm_blk_stats **s, size_t *n)
{
	struct fake f = { .reply = reply };
	int rc;

	reset();
	fake_start(&f);
	rc = monitor_block_stats(f.path, s, n);
	fake_stop(&f);
	CHECK(strstr(f.request, "\"execute\":\"query-block-stats\"") != NULL);
	return rc;
}

UNIT_TEST(block_stats_parses_every_counter)
{
	struct kvmm_blk_stats *s = NULL;
	size_t n = 0;

	CHECK(block_stats_of(BLOCK_STATS, &s, &n) == 0);
	CHECK_EQ_U64(n, 2);
	if (n != 2)
		return;
	CHECK_EQ_U64(s[0].rd_reqs, 3);
	CHECK_EQ_U64(s[0].wr_reqs, 5);
	CHECK_EQ_U64(s[0].fl_reqs, 7);
	CHECK_EQ_U64(s[0].rd_bytes, 1536);
	CHECK_EQ_U64(s[0].wr_bytes, 2560);
	CHECK_EQ_U64(s[0].errors, 2);
	CHECK_EQ_U64(s[0].rd_time_ns, 11);
	CHECK_EQ_U64(s[0].wr_time_ns, 13);
	CHECK_EQ_U64(s[0].fl_time_ns, 17);
	/* beyond a double's 53 bits: read as an integer */
	CHECK_EQ_U64(s[1].fl_time_ns, 9007199254740993ULL);
	CHECK_EQ_U64(s[1].rd_reqs, 0);
	/* io_status: given, or absent (ok) */
	CHECK(s[0].io_status == KVMM_IO_NOSPACE && s[1].io_status == KVMM_IO_OK);
	g_free(s);
}

UNIT_TEST(block_stats_no_disks)
{
	struct kvmm_blk_stats *s = NULL;
	size_t n = 1;

	CHECK(block_stats_of("{\"id\":@ID,\"return\":[]}\n", &s, &n) == 0);
	CHECK_EQ_U64(n, 0);
	g_free(s);
}

UNIT_TEST(block_stats_missing_mistyped_or_negative_counter)
{
	static const struct { const char *reply, *words; } cases[] = {
		{ "{\"id\":@ID,\"return\":{\"disk0\":{}}}\n", "not a list" },
		{ "{\"id\":@ID,\"return\":[{\"rd_operations\":1}]}\n", "disk 0 has no counter 'rd_bytes'" },
		{ "{\"id\":@ID,\"return\":[{\"rd_operations\":\"1\"}]}\n",
		  "disk 0 has no counter 'rd_operations'" },
		{ "{\"id\":@ID,\"return\":[{\"rd_operations\":-1}]}\n",
		  "disk 0 has no counter 'rd_operations'" },
		{ "{\"id\":@ID,\"return\":[7]}\n", "disk 0 has no counter" },
	};

	for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
		struct kvmm_blk_stats *s = (void *)1;
		size_t n = 1;

		CHECK(block_stats_of(cases[i].reply, &s, &n) < 0);
		CHECK(reported(VIR_ERR_OPERATION_FAILED, cases[i].words));
		CHECK(s == NULL && n == 0);
		/* kvmm answered: control is not lost */
		CHECK(lost_calls == 0);
	}
}

UNIT_TEST(block_resize_names_the_disk_and_size)
{
	struct fake f = { .reply = OK };

	reset();
	fake_start(&f);
	CHECK(monitor_block_resize(f.path, 2, 2097152) == 0);
	fake_stop(&f);
	CHECK(strstr(f.request, "\"execute\":\"block-resize\"") != NULL);
	CHECK(strstr(f.request, "\"arguments\":{\"device\":\"disk2\",\"size\":2097152}") != NULL);
}

UNIT_TEST(kvmm_errors_map_to_libvirt_codes)
{
	static const struct { const char *reply; int code; const char *words; } cases[] = {
		{ "{\"id\":@ID,\"error\":{\"code\":\"InvalidState\",\"message\":\"the VM is not paused\"}}\n",
		  VIR_ERR_OPERATION_INVALID, "kvmm refused 'block-resize': the VM is not paused" },
		{ "{\"id\":@ID,\"error\":{\"code\":\"InvalidArgument\",\"message\":\"no disk 'disk9': "
		  "name it as query-block-stats does (disk0, ...) or by its path\"}}\n",
		  VIR_ERR_INVALID_ARG, "no disk 'disk9'" },
		{ "{\"id\":@ID,\"error\":{\"code\":\"CommandNotFound\",\"message\":\"unknown command "
		  "'frob'; query-commands lists them\"}}\n",
		  VIR_ERR_OPERATION_FAILED, "unknown command 'frob'" },
		/* KVMM: an error without code or message is still an error */
		{ "{\"id\":@ID,\"error\":{}}\n", VIR_ERR_OPERATION_FAILED, "unknown error" },
	};

	for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
		struct fake f = { .reply = cases[i].reply };

		reset();
		fake_start(&f);
		CHECK(monitor_block_resize(f.path, 9, 4096) < 0);
		fake_stop(&f);
		CHECK(reported(cases[i].code, cases[i].words));
		/* kvmm answered: control is not lost */
		CHECK(lost_calls == 0);
	}
}

UNIT_TEST(broken_answers_are_a_lost_monitor)
{
	static const struct { const char *reply; bool no_greeting; int err; const char *words; } cases[] = {
		{ "{\"id\":@ID,\"return\":{\n", false, -EPROTO, "no answer from kvmm to 'pause'" },
		{ "[1,2]\n", false, -EPROTO, "no answer from kvmm to 'pause'" },
		{ "{\"id\":@ID}\n", false, -EPROTO, "neither return nor error" },
		/* EOF mid-reply */
		{ "{\"id\":@ID,\"ret", false, -EPIPE, "it closed the connection" },
		/* not kvmm: the first line is no greeting */
		{ OK, true, -EPROTO, "cannot reach kvmm" },
	};

	for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
		struct fake f = { .reply = cases[i].reply, .no_greeting = cases[i].no_greeting };

		reset();
		fake_start(&f);
		CHECK(monitor_pause(f.path) < 0);
		fake_stop(&f);
		CHECK(reported(VIR_ERR_OPERATION_FAILED, cases[i].words));
		CHECK(lost_calls == 1);
		CHECK(lost_err == cases[i].err);
	}
}

UNIT_TEST(nobody_listening)
{
	reset();
	CHECK(monitor_pause("/nonexistent/kvmm-monitor/api.sock") < 0);
	CHECK(reported(VIR_ERR_OPERATION_FAILED, "cannot reach kvmm"));
	CHECK(lost_calls == 1 && lost_err == -ENOENT);
}

UNIT_TEST(silent_peer_times_out)
{
	struct fake f = { .hang = true };
	gint64 t0;

	reset();
	monitor_set_timeout(300);
	fake_start(&f);
	t0 = g_get_monotonic_time();
	CHECK(monitor_pause(f.path) < 0);
	/* bounded: the deadline, not the peer, ends it */
	CHECK(g_get_monotonic_time() - t0 < 10 * G_USEC_PER_SEC);
	fake_stop(&f);
	CHECK(reported(VIR_ERR_OPERATION_TIMEOUT, "no answer from kvmm to 'pause'"));
	CHECK(lost_calls == 1 && lost_err == -ETIMEDOUT);
	monitor_set_timeout(10000);
}

/* --- events ------------------------------------------------------------- */

struct seen {
	struct monitor_event ev[8];
	int n;
};

static void on_event(const struct monitor_event *ev, void *opaque)
{
	struct seen *s = opaque;

	if (s->n < (int)G_N_ELEMENTS(s->ev))
		s->ev[s->n] = *ev;
	s->n++;
}

static gboolean give_up(gpointer data)
{
	*(bool *)data = true;
	return G_SOURCE_REMOVE;
}

/* A watch on a fake kvmm that pushes EVENTS after the greeting; returns
 * once WANT events came (or 10 s passed). */
static void watch(const char *events, bool split, struct seen *s, int want)
{
	struct fake f = { .reply = events, .split = split, .push = true };
	struct monitor_watch *w;
	bool timed_out = false;
	guint timer;

	reset();
	fake_start(&f);
	w = monitor_watch_new(f.path, on_event, s);
	CHECK(w != NULL);
	timer = g_timeout_add(10000, give_up, &timed_out);
	while (w && s->n < want && !timed_out)
		g_main_context_iteration(NULL, TRUE);
	if (!timed_out)
		g_source_remove(timer);
	CHECK(!timed_out);
	monitor_watch_free(w);	/* the fake sees EOF and ends */
	fake_stop(&f);
}

/* As kvmm sent them, with a newer kvmm's event, garbage and a
 * state-changed of the wrong shape between. */
#define EVENTS EV_PAUSED "{\"event\":\"balloon-changed\",\"data\":{}}\n" "not json\n" \
	"[\"event\"]\n" "{\"event\":5}\n" EV_RESET \
	"{\"event\":\"state-changed\",\"data\":{\"state\":\"hibernating\",\"exit_status\":\"0\"}}\n" \
	"{\"event\":\"state-changed\"}\n" EV_QUIT

static void check_events(const struct seen *s)
{
	CHECK(s->n == 5);
	if (s->n != 5)
		return;
	CHECK(s->ev[0].kind == MONITOR_EVENT_STATE_CHANGED);
	CHECK(s->ev[0].state == KVMM_STATE_PAUSED && s->ev[0].exit_status == -1);
	CHECK(s->ev[1].kind == MONITOR_EVENT_RESET);
	/* an unknown state, a mistyped exit status: delivered as unknown */
	CHECK(s->ev[2].kind == MONITOR_EVENT_STATE_CHANGED);
	CHECK(s->ev[2].state == KVMM_STATE_UNKNOWN && s->ev[2].exit_status == -1);
	CHECK(s->ev[3].kind == MONITOR_EVENT_STATE_CHANGED);
	CHECK(s->ev[3].state == KVMM_STATE_UNKNOWN && s->ev[3].exit_status == -1);
	CHECK(s->ev[4].kind == MONITOR_EVENT_STATE_CHANGED);
	CHECK(s->ev[4].state == KVMM_STATE_SHUTDOWN && s->ev[4].exit_status == 0);
}

UNIT_TEST(events_with_the_greeting)
{
	struct seen s = { 0 };

	watch(EVENTS, false, &s, 5);
	check_events(&s);
}

UNIT_TEST(events_split_across_reads)
{
	struct seen s = { 0 };

	watch(EVENTS, true, &s, 5);
	check_events(&s);
}

UNIT_TEST(watch_without_kvmm)
{
	struct seen s = { 0 };

	reset();
	CHECK(monitor_watch_new("/nonexistent/kvmm-monitor/api.sock", on_event, &s) == NULL);
}

/* block-io-error as kvmm sends it, and shapes the daemon cannot act on
 * (no disk, a disk name not diskN, an unknown action): not delivered. */
#define IO_EVENTS \
	"{\"event\":\"block-io-error\",\"data\":{\"device\":\"disk2\",\"op\":\"write\",\"error\":\"ENOSPC\",\"message\":\"No space left on device\",\"action\":\"stop\"}}\n" \
	"{\"event\":\"block-io-error\",\"data\":{\"action\":\"stop\"}}\n" \
	"{\"event\":\"block-io-error\",\"data\":{\"device\":\"vda\",\"action\":\"stop\"}}\n" \
	"{\"event\":\"block-io-error\",\"data\":{\"device\":\"disk1x\",\"action\":\"stop\"}}\n" \
	"{\"event\":\"block-io-error\",\"data\":{\"device\":\"disk0\",\"error\":\"EIO\",\"action\":\"retry\"}}\n" \
	"{\"event\":\"block-io-error\",\"data\":{\"device\":\"disk0\",\"op\":\"read\",\"error\":\"EIO\",\"action\":\"report\"}}\n" \
	"{\"event\":\"block-io-error\",\"data\":{\"device\":\"disk1\",\"op\":\"flush\",\"action\":\"ignore\"}}\n" \
	EV_QUIT

UNIT_TEST(block_io_error_events)
{
	struct seen s = { 0 };

	watch(IO_EVENTS, false, &s, 4);
	CHECK(s.n == 4);
	if (s.n != 4)
		return;
	CHECK(s.ev[0].kind == MONITOR_EVENT_BLOCK_IO_ERROR);
	CHECK(s.ev[0].disk == 2 && s.ev[0].io_action == KVMM_IO_ACTION_STOP && s.ev[0].io_nospace);
	CHECK(s.ev[1].kind == MONITOR_EVENT_BLOCK_IO_ERROR);
	CHECK(s.ev[1].disk == 0 && s.ev[1].io_action == KVMM_IO_ACTION_REPORT && !s.ev[1].io_nospace);
	CHECK(s.ev[2].kind == MONITOR_EVENT_BLOCK_IO_ERROR);
	CHECK(s.ev[2].disk == 1 && s.ev[2].io_action == KVMM_IO_ACTION_IGNORE && !s.ev[2].io_nospace);
	CHECK(s.ev[3].kind == MONITOR_EVENT_STATE_CHANGED);
}

/* device-deleted as kvmm sends it, and shapes without a usable id: not
 * delivered. */
#define DEVICE_EVENTS \
	"{\"event\":\"device-deleted\",\"data\":{\"id\":\"virtio-disk1\",\"slot\":5}}\n" \
	"{\"event\":\"device-deleted\",\"data\":{\"slot\":6}}\n" \
	"{\"event\":\"device-deleted\",\"data\":{\"id\":7,\"slot\":6}}\n" \
	"{\"event\":\"device-deleted\",\"data\":{\"id\":\"\",\"slot\":6}}\n" \
	"{\"event\":\"device-deleted\",\"data\":{\"id\":\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}}\n" \
	"{\"event\":\"device-deleted\"}\n" \
	"{\"event\":\"device-deleted\",\"data\":{\"id\":\"net-525400123499\",\"slot\":2}}\n" \
	EV_QUIT

UNIT_TEST(device_deleted_events)
{
	struct seen s = { 0 };

	watch(DEVICE_EVENTS, false, &s, 3);
	CHECK(s.n == 3);
	if (s.n != 3)
		return;
	CHECK(s.ev[0].kind == MONITOR_EVENT_DEVICE_DELETED);
	CHECK(!strcmp(s.ev[0].device_id, "virtio-disk1") && s.ev[0].slot == 5);
	CHECK(s.ev[1].kind == MONITOR_EVENT_DEVICE_DELETED);
	CHECK(!strcmp(s.ev[1].device_id, "net-525400123499") && s.ev[1].slot == 2);
	CHECK(s.ev[2].kind == MONITOR_EVENT_STATE_CHANGED);
}
