/* kvmm processes of running domains; see process.h. */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <linux/magic.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <glib.h>
#include <glib-unix.h>
#include <libvirt/libvirt.h>

#include "domain/domain_persist.h"
#include "error.h"
#include "domain/events.h"
#include "cgroup.h"
#include "disk_chain.h"
#include "log.h"
#include "monitor.h"
#include "net/nics.h"
#include "proc_stat.h"
#include "process.h"
#include "domain/status.h"
#include "net/netdev.h"
#include "testpoint.h"
#include "vm_limits.h"
#include "vmconfig.h"

#define VIR_FROM_THIS VIR_FROM_DOMAIN

/* kvmm's exit statuses (docs/kvmm.md). */
#define KVMM_EXIT_POWEROFF	0
#define KVMM_EXIT_ERROR		1
#define KVMM_EXIT_RESET		2
#define KVMM_EXIT_CRASH		3
#define KVMM_EXIT_SIGNAL	4

/* From exec to a control socket that answers: kvmm needs milliseconds;
 * the margin is for a loaded host. */
#define START_TIMEOUT_MS 30000
/* destroy: SIGTERM, then SIGKILL after this long. */
#define TERM_GRACE_MS 5000
#define LOG_TAIL_BYTES 4096

struct domain_run {
	pid_t pid;
	int pidfd;
	bool child;		/* ours to reap (else adopted from a previous daemon) */
	guint watch;
	char *api_path, *config_path, *log_path, *status_path;
	char *cgroup;		/* its cgroup (cgroup.h), "" for none */
	gint64 started;		/* Unix time */
	bool destroying;	/* the daemon asked it to stop */
	bool saved;		/* ... after saving it (virDomainSave) */
	bool migrated;		/* ... after migrating it away */
	bool from_snapshot;	/* ... to revert to a snapshot */
	/* Adopted processes are not our children: their exit status comes
	 * from kvmm's last state-changed event. */
	struct monitor_watch *events;
	int exit_hint;		/* -1: none seen */
	bool draining;		/* events dispatched with obj->lock held */
	struct nic_taps taps;	/* the NICs' taps, removed with the run */
	struct domain_obj *obj;	/* whose run this is (no reference: it owns us) */
	guint64 serial;		/* tells this run from a later one of the domain */
	/* query-status's cpu_hotplug, fixed for kvmm's life, once known
	 * (obj->lock): setvcpus then asks kvmm one thing less. */
	bool cpu_hotplug_known, cpu_hotplug;
	/* The vCPU ids kvmm has (present or being removed), once known
	 * (obj->lock): from the start config, cpu-add's answers and the
	 * cpu-deleted events, so that a removal needs no query-cpus.
	 * Unknown after a restore, an incoming migration or an adoption
	 * until query-cpus is asked. */
	bool cpus_known;
	guint64 cpu_gen;	/* cpu-deleted events seen */
	bool *cpu_ids;		/* ncpu_ids entries, the domain's maximum */
	unsigned ncpu_ids;
};

static char *state_dir, *log_dir;
/* This instance's tap mark: "virtkvmmd " and a digest of its state
 * directory, so that two instances (system, session, --root) on one host
 * never sweep each other's taps; a domain's taps add its UUID. */
static char *tap_mark;
static gint next_id;		/* ids: 1, 2, ... for this daemon's life */
static gint nrunning;
static guint64 run_serial;	/* atomic: runs of every domain draw from it */

static void on_monitor_lost(const char *api_path, int err);

void process_init(const char *sdir, const char *ldir)
{
	g_autofree char *digest = g_compute_checksum_for_string(G_CHECKSUM_SHA256, sdir, -1);

	state_dir = g_strdup(sdir);
	log_dir = g_strdup(ldir);
	tap_mark = g_strdup_printf("virtkvmmd %.16s ", digest);
	monitor_set_lost_handler(on_monitor_lost);
}

unsigned process_count(void)
{
	return g_atomic_int_get(&nrunning);
}

static int pidfd_open(pid_t pid)
{
	return (int)syscall(SYS_pidfd_open, pid, 0);
}

static int pidfd_send_signal(int pidfd, int sig)
{
	return (int)syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0);
}

static void run_free(struct domain_run *r)
{
	if (!r)
		return;
	if (r->pidfd >= 0)
		close(r->pidfd);
	if (r->api_path)
		unlink(r->api_path);
	if (r->config_path)
		unlink(r->config_path);
	if (r->status_path)
		unlink(r->status_path);
	/* Tests kill the daemon here: taps no record names any more. */
	if (r->taps.n)
		test_crash_point("run-unrecorded");
	monitor_watch_free(r->events);
	/* Every end of a run -- stop, crash, failed start, a kvmm found dead
	 * at adoption -- comes through here: the taps go with it. */
	nics_remove(&r->taps);
	cgroup_remove(r->cgroup);	/* its processes are gone */
	g_free(r->cgroup);
	g_free(r->api_path);
	g_free(r->config_path);
	g_free(r->status_path);
	g_free(r->log_path);
	g_free(r->cpu_ids);
	g_free(r);
}

/* A line in the domain's log, with libvirt's timestamp style. */
static void log_line(const char *path, const char *fmt, ...) G_GNUC_PRINTF(2, 3);
static void log_line(const char *path, const char *fmt, ...)
{
	g_autoptr(GDateTime) now = g_date_time_new_now_utc();
	g_autofree char *ts = g_date_time_format(now, "%Y-%m-%d %H:%M:%S.%f");
	g_autofree char *msg = NULL;
	va_list ap;
	FILE *f = fopen(path, "ae");

	if (!f)
		return;
	va_start(ap, fmt);
	msg = g_strdup_vprintf(fmt, ap);
	va_end(ap);
	/* %f is microseconds; libvirt shows milliseconds. */
	fprintf(f, "%.23s+0000: %s\n", ts, msg);
	fclose(f);
}

/* The last line kvmm wrote to the log after OFFSET: its own reason for
 * failing, which becomes the error a user sees. */
static char *log_last_line(const char *path, off_t offset)
{
	g_autofree char *text = NULL;
	gsize len;
	char *end, *start;

	if (!g_file_get_contents(path, &text, &len, NULL) || (gsize)offset >= len)
		return NULL;
	start = text + MAX((gsize)offset, len > LOG_TAIL_BYTES ? len - LOG_TAIL_BYTES : 0);
	end = text + len;
	while (end > start && (end[-1] == '\n' || end[-1] == ' '))
		end--;
	*end = '\0';
	if ((char *)memrchr(start, '\n', end - start))
		start = (char *)memrchr(start, '\n', end - start) + 1;
	return *start ? g_strdup(start) : NULL;
}

static const char *exit_text(int status, char *buf, size_t len)
{
	if (WIFSIGNALED(status))
		snprintf(buf, len, "killed by signal %d (%s)", WTERMSIG(status), strsignal(WTERMSIG(status)));
	else
		snprintf(buf, len, "exit status %d", WEXITSTATUS(status));
	return buf;
}

/* The sandbox's account when virtkvmmd.conf names none: a system user
 * and group of its own, which the install makes (the Debian package's
 * postinst, tools/install-deps), as libvirt's libvirt-qemu. */
#define SANDBOX_ACCOUNT "kvmm"

static struct {
	bool on;
	char uid[16], gid[16];		/* "": not set, SANDBOX_ACCOUNT's */
} sandbox;

/* SANDBOX_ACCOUNT's UID (GROUP false) or GID (GROUP true) into ID, as
 * kvmm's --uid/--gid take it.  The two lookups differ only in their
 * types; the buffer, the checks and the error are the same.  0, or -1
 * after reporting. */
static int sandbox_account_id(bool group, char id[16])
{
	char buf[4096];
	struct passwd pw, *pwp = NULL;
	struct group gr, *grp = NULL;
	const char *kind = group ? "group" : "user";
	unsigned num = 0;
	bool found;
	int err;

	if (group) {
		err = getgrnam_r(SANDBOX_ACCOUNT, &gr, buf, sizeof(buf), &grp);
		found = grp != NULL;
		if (found)
			num = gr.gr_gid;
	} else {
		err = getpwnam_r(SANDBOX_ACCOUNT, &pw, buf, sizeof(buf), &pwp);
		found = pwp != NULL;
		if (found)
			num = pw.pw_uid;
	}
	if (!found || num == 0) {
		drv_error_report(VIR_ERR_OPERATION_FAILED,
				 "virtkvmmd.conf: %s is not set and its default, the "
				 "system %s '" SANDBOX_ACCOUNT "', %s: create it "
				 "(adduser --system --group " SANDBOX_ACCOUNT "), or set "
				 "%s, or sandbox = 0",
				 kind, kind,
				 found ? "is root" : err ? g_strerror(err) : "does not exist",
				 group ? "group" : "user and group");
		return -1;
	}
	snprintf(id, 16, "%u", num);
	return 0;
}

/* UID and GID as kvmm's --uid/--gid take them: the configured ones, or
 * SANDBOX_ACCOUNT's, looked up at each start so that an account made
 * after the daemon started serves.  A missing account fails the start:
 * never kvmm's own default (nobody, which other daemons share), let
 * alone root.  0, or -1 after reporting. */
static int sandbox_ids(char uid[16], char gid[16])
{
	if (sandbox.uid[0])
		g_strlcpy(uid, sandbox.uid, 16);
	else if (sandbox_account_id(false, uid) < 0)
		return -1;
	if (sandbox.gid[0])
		g_strlcpy(gid, sandbox.gid, 16);
	else if (sandbox_account_id(true, gid) < 0)
		return -1;
	return 0;
}

void process_set_sandbox(bool on, uid_t uid, gid_t gid)
{
	sandbox.on = on;
	sandbox.uid[0] = sandbox.gid[0] = '\0';
	if (uid != (uid_t)-1)
		snprintf(sandbox.uid, sizeof(sandbox.uid), "%u", (unsigned)uid);
	if (gid != (gid_t)-1)
		snprintf(sandbox.gid, sizeof(sandbox.gid), "%u", (unsigned)gid);
	monitor_set_pass_fds(on);
}

static bool pvm_compat;

void process_set_pvm_compat(bool on)
{
	pvm_compat = on;
}

/* The descriptors kvmm inherits (its taps) are numbered from here: 0-2
 * are its stdio, 3 the gate while it waits. */
#define INHERITED_FD_BASE 4
#define INHERITED_FD_MAX VM_MAX_NETS

/* Forks the process that becomes kvmm, its output appended to LOGFD.  It
 * waits, before exec, for a byte on *GATE (the caller's end of a socket
 * pair, which it keeps; open_gate sends it): the run is recorded in its
 * status file first, so that no kvmm ever runs that a restarted daemon
 * would not know of.  The byte brings the descriptors kvmm inherits (its
 * taps, opened after the fork), which land at INHERITED_FD_BASE onwards in
 * the order sent.  If the daemon dies before it sends the byte, the child
 * reads EOF and exits without becoming kvmm.  The pid, or -1 after
 * reporting. */
/* INFD >= 0: the stream to restore from, inherited as descriptor
 * SPAWN_IN_FD, past the taps' numbers (RESTORE then is "fd:12", given to --incoming). */
#define SPAWN_IN_FD 12
G_STATIC_ASSERT(SPAWN_IN_FD == INHERITED_FD_BASE + INHERITED_FD_MAX);
static pid_t spawn(const char *emulator, const char *config, const char *restore, int infd,
		   int logfd, int *gate)
{
	/* Built before the fork: the child only execs. */
	char *argv[12] = { (char *)emulator, "--config", (char *)config };
	int argc = 3;
	char uid[16], gid[16];
	int devnull;
	union {
		char buf[CMSG_SPACE(sizeof(int) * INHERITED_FD_MAX)];
		struct cmsghdr align;
	} cbuf;
	char go = 0;
	struct iovec iov = { .iov_base = &go, .iov_len = 1 };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
			     .msg_control = cbuf.buf, .msg_controllen = sizeof(cbuf.buf) };

	*gate = -1;
	if (sandbox.on) {
		if (sandbox_ids(uid, gid) < 0)
			return -1;
		argv[argc++] = "--sandbox";
		argv[argc++] = "--uid";
		argv[argc++] = uid;
		argv[argc++] = "--gid";
		argv[argc++] = gid;
	}
	if (restore) {
		/* The stream's VM with this run's host side laid over; an
		 * inherited connection is a migration's, whose stream kvmm
		 * reads with --incoming (the same reader as --restore FILE,
		 * for a live pre-copy's rounds and a stop-and-copy's save
		 * alike). */
		argv[argc++] = infd >= 0 ? "--incoming" : "--restore";
		argv[argc++] = (char *)restore;
	}
	argv[argc] = NULL;
	int sv[2];
	pid_t pid;

	devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (devnull < 0) {
		drv_error_report(VIR_ERR_SYSTEM_ERROR, "cannot open /dev/null: %s", g_strerror(errno));
		return -1;
	}
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
		drv_error_report(VIR_ERR_SYSTEM_ERROR, "cannot create a socket pair: %s", g_strerror(errno));
		close(devnull);
		return -1;
	}
	pid = fork();
	if (pid == 0) {
		ssize_t n;

		/* Only async-signal-safe calls from here: other threads may
		 * have held locks at fork time.  A session of its own, so the
		 * VM outlives the daemon and its terminal signals. */
		setsid();
		if (dup2(devnull, 0) < 0 || dup2(logfd, 1) < 0 || dup2(logfd, 2) < 0 ||
		    dup2(sv[1], 3) < 0 || (infd >= 0 && dup2(infd, SPAWN_IN_FD) < 0))
			_exit(127);
		/* dup2() onto itself keeps close-on-exec: a connection the
		 * daemon accepted on SPAWN_IN_FD would not reach kvmm. */
		if (infd == SPAWN_IN_FD && fcntl(SPAWN_IN_FD, F_SETFD, 0) < 0)
			_exit(127);
		/* Nothing else of the daemon's: above all no end of another
		 * start's gate, which would keep its EOF away. */
		if (infd >= 0) {
			syscall(SYS_close_range, INHERITED_FD_BASE, SPAWN_IN_FD - 1, 0);
			syscall(SYS_close_range, SPAWN_IN_FD + 1, ~0U, 0);
		} else {
			syscall(SYS_close_range, INHERITED_FD_BASE, ~0U, 0);
		}
		/* Without MSG_CMSG_CLOEXEC: they are for kvmm.  Each lands on
		 * the lowest free number, so in order from INHERITED_FD_BASE
		 * (at most INHERITED_FD_MAX: below SPAWN_IN_FD). */
		do
			n = recvmsg(3, &mh, 0);
		while (n < 0 && errno == EINTR);
		if (n != 1 || go != 'g' || (mh.msg_flags & MSG_CTRUNC))
			_exit(126);
		close(3);
		sigset_t none;
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		execv(emulator, argv);
		static const char msg[] = "virtkvmmd: cannot execute the emulator\n";
		if (write(2, msg, sizeof(msg) - 1) < 0)
			_exit(127);
		_exit(127);
	}
	close(devnull);
	close(sv[1]);
	if (pid < 0) {
		drv_error_report(VIR_ERR_SYSTEM_ERROR, "cannot fork: %s", g_strerror(errno));
		close(sv[0]);
		return -1;
	}
	*gate = sv[0];
	return pid;
}

/* Lets the child spawn() holds become kvmm, handing it FDS[0..N-1]
 * (INHERITED_FD_BASE onwards).  0, or -1 after reporting. */
static int open_gate(int gate, const int *fds, size_t n)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * INHERITED_FD_MAX)];
		struct cmsghdr align;
	} cbuf;
	char go = 'g';
	struct iovec iov = { .iov_base = &go, .iov_len = 1 };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	ssize_t r;

	if (n > INHERITED_FD_MAX) {
		drv_error_report(VIR_ERR_INTERNAL_ERROR, "%zu descriptors for kvmm: at most %d", n,
				 INHERITED_FD_MAX);
		return -1;
	}
	if (n) {
		struct cmsghdr *cm;

		memset(&cbuf, 0, sizeof(cbuf));
		mh.msg_control = cbuf.buf;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * n);
		cm = CMSG_FIRSTHDR(&mh);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int) * n);
		memcpy(CMSG_DATA(cm), fds, sizeof(int) * n);
	}
	do
		r = sendmsg(gate, &mh, MSG_NOSIGNAL);
	while (r < 0 && errno == EINTR);
	if (r != 1) {
		drv_error_report(VIR_ERR_SYSTEM_ERROR, "cannot start kvmm: %s",
				 g_strerror(r < 0 ? errno : EIO));
		return -1;
	}
	return 0;
}

/* What an exit means to libvirt: the STOPPED event detail and the shutoff
 * reason. */
static void exit_reason(const struct domain_run *r, int status, bool known, int *detail,
			int *reason)
{
	int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;

	if (r->saved) {
		*detail = VIR_DOMAIN_EVENT_STOPPED_SAVED;
		*reason = VIR_DOMAIN_SHUTOFF_SAVED;
	} else if (r->migrated) {
		*detail = VIR_DOMAIN_EVENT_STOPPED_MIGRATED;
		*reason = VIR_DOMAIN_SHUTOFF_MIGRATED;
	} else if (r->destroying && r->from_snapshot) {
		*detail = VIR_DOMAIN_EVENT_STOPPED_FROM_SNAPSHOT;
		*reason = VIR_DOMAIN_SHUTOFF_FROM_SNAPSHOT;
	} else if (r->destroying) {
		*detail = VIR_DOMAIN_EVENT_STOPPED_DESTROYED;
		*reason = VIR_DOMAIN_SHUTOFF_DESTROYED;
	} else if (known && (code == KVMM_EXIT_POWEROFF || code == KVMM_EXIT_RESET)) {
		/* The guest powered off, or reset with on_reboot=destroy. */
		*detail = VIR_DOMAIN_EVENT_STOPPED_SHUTDOWN;
		*reason = VIR_DOMAIN_SHUTOFF_SHUTDOWN;
	} else if (known && code == KVMM_EXIT_ERROR) {
		*detail = VIR_DOMAIN_EVENT_STOPPED_FAILED;
		*reason = VIR_DOMAIN_SHUTOFF_FAILED;
	} else {
		/* Guest crash (exit 3), a signal nobody here sent, SIGKILL. */
		*detail = VIR_DOMAIN_EVENT_STOPPED_CRASHED;
		*reason = VIR_DOMAIN_SHUTOFF_CRASHED;
	}
}

/* The ptys kvmm allocated -- COM1's and the virtio console's -- show in
 * the live definition (serial port 0 and the serial console; the virtio
 * console), as libvirt shows QEMU's; NULL clears them.  obj->lock held. */
static void set_pty_paths(struct domain_obj *obj, const char *serial, const char *console)
{
	struct domain_def *def = obj->def;

	if (def->nserials && def->serials[0].type == CHR_PTY) {
		g_free(def->serials[0].path);
		def->serials[0].path = g_strdup(serial);
	}
	for (size_t i = 0; i < def->nconsoles; i++) {
		struct domain_chr *c = &def->consoles[i];

		if (c->type != CHR_PTY)
			continue;
		g_free(c->path);
		c->path = g_strdup(c->target == CONSOLE_SERIAL ? serial : console);
	}
}

/* Asks kvmm where COM1 and the virtio console are, and what it is doing
 * (worker or start-up; obj->lock not held).  Failure leaves ST empty:
 * the domain runs on without pty paths. */
static void query_status(const char *api_path, struct kvmm_status *st)
{
	if (monitor_query_status(api_path, st) < 0)
		drv_error_reset();
}

static gpointer restart_thread(gpointer data);

/* Main loop: OBJ's kvmm exited. */
static gboolean on_exit_cb(gint fd, GIOCondition cond, gpointer data)
{
	struct domain_obj *obj = data;
	struct domain_run *r;
	int status = 0, detail, reason;
	bool known = false, restart = false;
	char text[96];

	g_mutex_lock(&obj->lock);
	r = obj->run;
	if (r->child && waitpid(r->pid, &status, WNOHANG) == r->pid) {
		known = true;
	} else if (!r->child) {
		r->draining = true;
		monitor_watch_drain(r->events);
		r->draining = false;
		if (r->exit_hint >= 0) {
			status = W_EXITCODE(r->exit_hint, 0);
			known = true;
		}
	}
	exit_reason(r, status, known, &detail, &reason);
	restart = !r->destroying && known &&
		  ((WEXITSTATUS(status) == KVMM_EXIT_POWEROFF && obj->def->on_poweroff == LIFECYCLE_RESTART) ||
		   (WEXITSTATUS(status) == KVMM_EXIT_CRASH && obj->def->on_crash == LIFECYCLE_RESTART));
	obj->run = NULL;
	obj->id = obj->def->id = -1;
	set_pty_paths(obj, NULL, NULL);
	nics_forget(obj->def);
	disk_chain_forget(obj->def);
	domain_def_forget_aliases(obj->def);
	/* A definition defined while it ran is the next start's: it takes
	 * over now, before the event, as libvirt's does. */
	domain_run_ended_locked(obj);
	log_line(r->log_path, "kvmm (pid %ld) ended: %s", (long)r->pid,
		 known ? exit_text(status, text, sizeof(text)) : "exit status unknown (adopted, no final event)");
	pr_info("domain '%s' stopped (kvmm pid %ld, %s)", obj->def->name, (long)r->pid,
		known ? exit_text(status, text, sizeof(text)) : "exit status unknown");
	r->watch = 0;
	/* Its files and taps go before the event: a client that sees the
	 * domain stopped finds nothing of the run left. */
	run_free(r);
	domain_set_state(obj, VIR_DOMAIN_SHUTOFF, reason, VIR_DOMAIN_EVENT_STOPPED, detail);
	g_cond_broadcast(&obj->job_cond);
	g_mutex_unlock(&obj->lock);
	g_atomic_int_dec_and_test(&nrunning);
	/* A transient domain is gone once stopped, restart or not. */
	if (!obj->persistent) {
		domain_remove_transient(obj);
		restart = false;
	}
	if (restart)
		g_thread_unref(g_thread_new("restart", restart_thread, domain_obj_ref(obj)));
	domain_obj_unref(obj);	/* the watch's */
	return G_SOURCE_REMOVE;
}

/* on_poweroff / on_crash = restart: start it again, as its own job. */
static gpointer restart_thread(gpointer data)
{
	struct domain_obj *obj = data;

	if (domain_job_begin(obj, "on_poweroff/on_crash restart") == 0) {
		if (obj->id < 0 && process_start(obj) < 0)
			pr_warn("domain '%s' could not be restarted: %s", obj->def->name,
				drv_error_last() ? drv_error_last()->message : "?");
		domain_job_end(obj);
	}
	drv_error_reset();
	domain_obj_unref(obj);
	return NULL;
}

void process_save_status_locked(struct domain_obj *obj)
{
	struct domain_run *r = obj->run;
	struct domain_status st = {
		.state = obj->state, .reason = obj->reason, .pid = r->pid, .id = obj->id,
		.started = r->started, .monitor_path = r->api_path, .config_path = r->config_path,
		.log_path = r->log_path, .transient = !obj->persistent, .taps = r->taps,
		.cgroup = r->cgroup,
	};
	g_autofree char *live = domain_def_format(obj->def, VIR_DOMAIN_XML_SECURE);

	if (!live || status_write(r->status_path, &st, live) < 0) {
		pr_warn("domain '%s': %s", obj->def->name,
			drv_error_last() ? drv_error_last()->message : "cannot write its status");
		drv_error_reset();
	}
}

/* A disk of R's domain met a host I/O error (main loop): libvirt's
 * IO_ERROR events, and with action stop the domain is paused for it
 * (kvmm paused the VM), as libvirt's qemu driver does on QEMU's
 * BLOCK_IO_ERROR. */
static void on_block_io_error(struct domain_run *r, const struct monitor_event *ev)
{
	static const int actions[] = {
		[KVMM_IO_ACTION_REPORT] = VIR_DOMAIN_EVENT_IO_ERROR_REPORT,
		[KVMM_IO_ACTION_IGNORE] = VIR_DOMAIN_EVENT_IO_ERROR_NONE,
		[KVMM_IO_ACTION_STOP] = VIR_DOMAIN_EVENT_IO_ERROR_PAUSE,
	};
	struct domain_obj *obj = r->obj;
	g_autofree char *path = NULL, *dev = NULL;
	bool paused = false;

	if (!r->draining)
		g_mutex_lock(&obj->lock);
	/* KVMM: its disk numbers are the XML's order; another is not ours. */
	if (ev->disk < obj->def->ndisks) {
		path = g_strdup(obj->def->disks[ev->disk].source);
		dev = g_strdup(obj->def->disks[ev->disk].target);
	}
	if (path && ev->io_action == KVMM_IO_ACTION_STOP && obj->run == r &&
	    obj->state == VIR_DOMAIN_RUNNING) {
		domain_set_state(obj, VIR_DOMAIN_PAUSED, VIR_DOMAIN_PAUSED_IOERROR, -1, 0);
		paused = true;
	}
	if (!r->draining)
		g_mutex_unlock(&obj->lock);
	if (!path)
		return;
	pr_warn("domain '%s': I/O error on disk %s (%s)%s", obj->def->name, dev, path,
		paused ? ": paused by its error policy" : "");
	events_io_error(obj, path, dev, actions[ev->io_action], ev->io_nospace ? "enospc" : "");
	if (paused)
		events_lifecycle_obj(obj, VIR_DOMAIN_EVENT_SUSPENDED, VIR_DOMAIN_EVENT_SUSPENDED_IOERROR);
}

static void on_device_deleted(struct domain_run *r, const struct monitor_event *ev);
static void on_cpu_deleted(struct domain_run *r, const struct monitor_event *ev);
static void on_migration(struct domain_run *r, const struct monitor_event *ev);

static void on_kvmm_event(const struct monitor_event *ev, void *opaque)
{
	struct domain_run *r = opaque;

	if (ev->kind == MONITOR_EVENT_STATE_CHANGED && ev->exit_status >= 0)
		r->exit_hint = ev->exit_status;
	else if (ev->kind == MONITOR_EVENT_RESET && r->obj)
		events_reboot(r->obj);
	else if (ev->kind == MONITOR_EVENT_BALLOON_CHANGE && r->obj)
		events_balloon_change(r->obj, ev->balloon_actual / 1024);
	else if (ev->kind == MONITOR_EVENT_BLOCK_IO_ERROR && r->obj)
		on_block_io_error(r, ev);
	else if (ev->kind == MONITOR_EVENT_DEVICE_DELETED && r->obj)
		on_device_deleted(r, ev);
	else if (ev->kind == MONITOR_EVENT_CPU_DELETED && r->obj)
		on_cpu_deleted(r, ev);
	else if (ev->kind == MONITOR_EVENT_MIGRATION && r->obj)
		on_migration(r, ev);
}

/* A command to the kvmm behind API_PATH got no answer (worker).  If that
 * kvmm still runs and nobody is stopping it, the daemon has lost control
 * of it: a control-error event, as libvirt raises for a broken monitor. */
static void on_monitor_lost(const char *api_path, int err)
{
	g_autoptr(GPtrArray) all = domain_list();

	for (guint i = 0; i < all->len; i++) {
		struct domain_obj *obj = g_ptr_array_index(all, i);
		struct pollfd p = { .fd = -1, .events = POLLIN };
		pid_t pid = 0;

		g_mutex_lock(&obj->lock);
		if (obj->run && !obj->run->destroying && !strcmp(obj->run->api_path, api_path)) {
			p.fd = dup(obj->run->pidfd);
			pid = obj->run->pid;
		}
		g_mutex_unlock(&obj->lock);
		if (p.fd < 0)
			continue;
		/* EOF or a refused connection may be kvmm on its way out: give
		 * its exit a moment to show before calling it a loss. */
		if (poll(&p, 1, err == -ETIMEDOUT || err == -EPROTO ? 0 : 1000) == 0) {
			pr_warn("domain '%s': lost control of kvmm (pid %ld): %s", obj->def->name,
				(long)pid, g_strerror(-err));
			events_control_error(obj);
		}
		close(p.fd);
		return;
	}
}

/* Waits until kvmm answers on its control socket.  0, or -1 after
 * reporting (its exit, with its last words, or a timeout).  Woken by
 * kvmm's exit or by a file created in the socket's directory (inotify),
 * not by a poll period: a restore takes kvmm a few ms, a period's
 * rounding would be a good part of it. */
static int wait_ready(struct domain_run *r, off_t log_start, int timeout_ms)
{
	gint64 deadline = g_get_monotonic_time() + timeout_ms * 1000LL;
	g_autofree char *dir = g_path_get_dirname(r->api_path);
	int ino = inotify_init1(IN_CLOEXEC | IN_NONBLOCK), rc = -1;

	/* Without inotify, the period it replaced. */
	if (ino >= 0 && inotify_add_watch(ino, dir, IN_CREATE | IN_MOVED_TO) < 0) {
		close(ino);
		ino = -1;
	}
	for (;;) {
		struct pollfd p[2] = { { .fd = r->pidfd, .events = POLLIN },
				       { .fd = ino, .events = POLLIN } };
		char ev[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
		int fd, wait_ms;

		if (poll(p, 1, 0) > 0) {
			g_autofree char *why = log_last_line(r->log_path, log_start);
			int status = 0;
			char text[96];

			waitpid(r->pid, &status, 0);
			r->child = false;
			drv_error_report(VIR_ERR_OPERATION_FAILED, "kvmm exited while starting (%s): %s",
					 exit_text(status, text, sizeof(text)),
					 why ? why : "no message; see the domain log");
			break;
		}
		/* Events so far are for what this connect sees. */
		while (ino >= 0 && read(ino, ev, sizeof(ev)) > 0)
			;
		fd = monitor_connect(r->api_path, 1000);
		if (fd >= 0) {
			close(fd);
			rc = 0;
			break;
		}
		if (g_get_monotonic_time() > deadline) {
			drv_error_report(VIR_ERR_OPERATION_TIMEOUT,
					 "kvmm did not open its control socket %s within %d s: %s",
					 r->api_path, timeout_ms / 1000, g_strerror(-fd));
			break;
		}
		/* No socket yet: its creation wakes us.  Refused: bound, not
		 * yet listening, which no event shows: a short retry. */
		wait_ms = ino >= 0 && fd == -ENOENT ? 1000 : fd == -ECONNREFUSED ? 1 : 5;
		poll(p, ino >= 0 ? 2 : 1, wait_ms);
	}
	if (ino >= 0)
		close(ino);
	return rc;
}

int process_start(struct domain_obj *obj)
{
	return process_start_paused(obj, false);
}

/* Writes the status record of a run that is starting: libvirt's paused
 * (starting up), which a restarted daemon ends (kills its kvmm, removes
 * its taps and files) instead of adopting, as libvirt does with a VM it
 * was still starting.  DURABLE for the last one before kvmm runs: the
 * record of a run is on disk before the run is.  The domain itself shows nothing of it (still shut
 * off): obj->run is not set until kvmm answers.  -1 after reporting. */
static int record_starting(struct domain_obj *obj, struct domain_run *r, int id, bool durable)
{
	struct domain_status st = {
		.state = VIR_DOMAIN_PAUSED, .reason = VIR_DOMAIN_PAUSED_STARTING_UP, .pid = r->pid,
		.id = id, .monitor_path = r->api_path, .config_path = r->config_path,
		.log_path = r->log_path, .taps = r->taps, .cgroup = r->cgroup, .durable = durable,
	};
	g_autofree char *live = NULL;

	g_mutex_lock(&obj->lock);
	st.transient = !obj->persistent;
	live = domain_def_format(obj->def, VIR_DOMAIN_XML_SECURE);
	g_mutex_unlock(&obj->lock);
	if (!live)
		return -1;
	return status_write(r->status_path, &st, live);
}

/* What kind of file ST is, for a message. */
static const char *file_kind(const struct stat *st)
{
	return S_ISFIFO(st->st_mode) ? "a FIFO" : S_ISSOCK(st->st_mode) ? "a socket"
	       : S_ISDIR(st->st_mode) ? "a directory" : S_ISCHR(st->st_mode) ? "a character device"
	       : S_ISBLK(st->st_mode) ? "a block device" : "not a regular file";
}

/* CLIENT: a path of the definition that kvmm opens must be a regular file
 * (or, where BLOCK_OK, a block device): a FIFO, a socket, a directory or
 * a file of /proc or /sys would block kvmm or the daemon, or hand a guest
 * something of the host's.  A path that does not exist is kvmm's to
 * report (or to create, for an output).  0, or -1 after reporting. */
static int check_source(const char *what, const char *path, bool block_ok)
{
	struct stat st;
	struct statfs fs;

	if (!path || stat(path, &st) < 0)
		return 0;
	if (!S_ISREG(st.st_mode) && !(block_ok && S_ISBLK(st.st_mode))) {
		drv_error_report(VIR_ERR_CONFIG_UNSUPPORTED, "%s '%s' is %s; kvmm needs a regular file%s",
				 what, path, file_kind(&st), block_ok ? " or a block device" : "");
		return -1;
	}
	if (statfs(path, &fs) == 0 && (fs.f_type == PROC_SUPER_MAGIC || fs.f_type == SYSFS_MAGIC)) {
		drv_error_report(VIR_ERR_CONFIG_UNSUPPORTED, "%s '%s' is in %s, not a file kvmm may use",
				 what, path, fs.f_type == PROC_SUPER_MAGIC ? "/proc" : "/sys");
		return -1;
	}
	return 0;
}

/* The files DEF gives kvmm; obj->lock held (stat only: never blocks on a
 * FIFO). */
static int check_sources(const struct domain_def *def)
{
	if (check_source("kernel", def->kernel, false) < 0 ||
	    check_source("initrd", def->initrd, false) < 0)
		return -1;
	for (size_t i = 0; i < def->ndisks; i++) {
		if (check_source("disk source", def->disks[i].source, true) < 0)
			return -1;
		for (size_t j = 0; j < def->disks[i].nbacking; j++)
			if (check_source("backing store", def->disks[i].backing[j].path, false) < 0)
				return -1;
	}
	for (size_t i = 0; i < def->nserials + def->nconsoles; i++) {
		const struct domain_chr *c = i < def->nserials ? &def->serials[i]
							       : &def->consoles[i - def->nserials];

		if ((c->type == CHR_FILE && check_source("serial output", c->path, false) < 0) ||
		    check_source("serial log", c->log_file, false) < 0)
			return -1;
	}
	return 0;
}

static void set_live_vcpus_locked(struct domain_obj *obj, unsigned n);

/* Starts OBJ, booting it or (RESTORE) continuing the VM saved in that
 * state stream (SNAPSHOT: a snapshot's, reverted to), or (INFD >= 0) in
 * the stream kvmm reads from INFD, an incoming migration's connection:
 * paused (migration), event STARTED/MIGRATED; kvmm answers once it has
 * read it all. */
static int start_run(struct domain_obj *obj, bool paused, const char *restore, int infd,
		     bool snapshot)
{
	struct domain_run *r = g_new0(struct domain_run, 1);
	g_autofree char *conf = NULL, *name = NULL, *emulator = NULL;
	struct kvmm_status ks;
	struct vmconfig_runtime rt = { 0 };
	char uuid[37];
	off_t log_start;
	int logfd = -1, gate = -1, id, rc;
	/* The taps opened for kvmm, and the numbers they get in it. */
	int tapfds[INHERITED_FD_MAX], tapnums[INHERITED_FD_MAX];
	size_t ntapfds = 0;
	struct stat st;

	r->pidfd = -1;
	r->exit_hint = -1;
	g_mutex_lock(&obj->lock);
	if (obj->id >= 0) {
		g_mutex_unlock(&obj->lock);
		drv_error_report(VIR_ERR_OPERATION_INVALID, "domain is already running");
		g_free(r);
		return -1;
	}
	domain_uuid_format(obj->def->uuid, uuid);
	name = g_strdup(obj->def->name);
	emulator = g_strdup(obj->def->emulator);
	r->api_path = g_strdup_printf("%s/%s.sock", state_dir, uuid);
	rt.api_socket = r->api_path;
	rt.paused = paused;
	/* Every start_run alike: a restore's or migration's kvmm checks the
	 * stream was saved in the same mode. */
	rt.pvm_compat = pvm_compat;
	rc = vmconfig_check(obj->def);
	/* The chains kvmm is to open, as the live XML shows them; their
	 * files are checked with the others. */
	if (rc == 0)
		rc = disk_chain_prepare(obj->def);
	if (rc == 0 && (rc = check_sources(obj->def)) < 0)
		disk_chain_forget(obj->def);
	g_mutex_unlock(&obj->lock);
	if (rc < 0) {
		g_free(r->api_path);
		g_free(r);
		return -1;
	}
	if (!emulator || access(emulator, X_OK) < 0) {
		drv_error_report(VIR_ERR_CONFIG_UNSUPPORTED, "cannot execute the emulator '%s': %s",
				 emulator ? emulator : "(none)", g_strerror(errno));
		goto fail;
	}
	if (g_mkdir_with_parents(state_dir, 0700) < 0 || g_mkdir_with_parents(log_dir, 0700) < 0) {
		drv_error_report(VIR_ERR_SYSTEM_ERROR, "cannot create %s or %s: %s", state_dir, log_dir,
				 g_strerror(errno));
		goto fail;
	}
	/* A socket left by a kvmm that died with the host would make kvmm
	 * refuse to start. */
	unlink(r->api_path);
	r->config_path = g_strdup_printf("%s/%s.json", state_dir, uuid);
	r->status_path = g_strdup_printf("%s/%s.xml", state_dir, uuid);
	r->log_path = g_strdup_printf("%s/%s.log", log_dir, name);
	logfd = open(r->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (logfd < 0) {
		drv_error_report(VIR_ERR_SYSTEM_ERROR, "cannot open the domain log %s: %s", r->log_path,
				 g_strerror(errno));
		goto fail;
	}
	/* Crash-consistent: the process first (held before exec), then its
	 * record, then what outlives us (taps, files), then kvmm runs.  A
	 * daemon killed anywhere in between leaves a record the next one
	 * cleans up after, or a child that exits by itself -- and taps the
	 * record does not name yet, which it finds by their mark. */
	id = g_atomic_int_add(&next_id, 1) + 1;
	if (infd >= 0)
		restore = "fd:" G_STRINGIFY(SPAWN_IN_FD);
	r->pid = spawn(emulator, r->config_path, restore, infd, logfd, &gate);
	if (r->pid < 0)
		goto fail;
	r->child = true;
	r->pidfd = pidfd_open(r->pid);
	if (r->pidfd < 0) {
		drv_error_report(VIR_ERR_SYSTEM_ERROR, "pidfd_open: %s", g_strerror(errno));
		goto fail;
	}
	/* Still held before exec: no guest instruction runs outside it. */
	g_mutex_lock(&obj->lock);
	r->cgroup = cgroup_create(uuid, obj->def, r->pid);
	g_mutex_unlock(&obj->lock);
	if (!r->cgroup || record_starting(obj, r, id, false) < 0)
		goto fail;
	/* The NICs' taps, outside the lock (a network driver may be asked);
	 * our job keeps the definition as it is. */
	/* kvmm is handed its taps open: it needs no CAP_NET_ADMIN, no
	 * /dev/net/tun, and works confined. */
	if (obj->def->nnets > INHERITED_FD_MAX) {
		drv_error_report(VIR_ERR_CONFIG_UNSUPPORTED, "kvmm takes at most %d interfaces",
				 INHERITED_FD_MAX);
		goto fail;
	}
	{
		g_autofree char *mark = g_strconcat(tap_mark, uuid, NULL);

		if (nics_create(obj->def, &r->taps, mark, tapfds) < 0)
			goto fail;
	}
	ntapfds = r->taps.n;
	if (nics_open(&r->taps, tapfds) < 0)
		goto fail;
	for (size_t i = 0; i < ntapfds; i++)
		tapnums[i] = INHERITED_FD_BASE + (int)i;
	g_mutex_lock(&obj->lock);
	rt.taps = r->taps.names;
	rt.tap_fds = tapnums;
	/* A saved VM's hot-added devices get their aliases as kvmm ids
	 * (detach names them so); the run's aliases come first then. */
	if (restore || infd >= 0) {
		domain_def_assign_aliases(obj->def);
		rt.ids = true;
	}
	conf = vmconfig_from_def(obj->def, &rt);
	if (conf) {
		nics_show(obj->def, &r->taps);
		domain_def_assign_aliases(obj->def);	/* the run's, in its status file */
	}
	g_mutex_unlock(&obj->lock);
	if (!conf || record_starting(obj, r, id, true) < 0)
		goto fail;
	/* kvmm's input, read once when it runs; no fsync: after a host crash
	 * there is no kvmm to read it, and a half-written one is never run
	 * (the record above ends a run still starting). */
	{
		g_autoptr(GError) err = NULL;

		if (!g_file_set_contents_full(r->config_path, conf, -1, G_FILE_SET_CONTENTS_NONE,
					      0600, &err)) {
			drv_error_report(VIR_ERR_SYSTEM_ERROR, "cannot write %s: %s", r->config_path,
					 err->message);
			goto fail;
		}
	}
	log_line(r->log_path, "starting up: %s --config %s%s%s", emulator, r->config_path,
		 !restore ? "" : infd >= 0 ? " --incoming " : " --restore ", restore ? restore : "");
	if (write(logfd, conf, strlen(conf)) < 0 || write(logfd, "\n", 1) < 0)
		pr_warn("cannot write to %s: %s", r->log_path, g_strerror(errno));
	log_start = fstat(logfd, &st) == 0 ? st.st_size : 0;
	close(logfd);
	logfd = -1;
	if (open_gate(gate, tapfds, ntapfds) < 0)
		goto fail;
	close(gate);
	gate = -1;
	/* kvmm has its own copies now. */
	while (ntapfds)
		close(tapfds[--ntapfds]);
	/* An incoming kvmm answers once the whole stream came: as long as
	 * a save may take. */
	if (wait_ready(r, log_start, infd >= 0 ? MONITOR_SAVE_TIMEOUT_MS : START_TIMEOUT_MS) < 0)
		goto fail;

	/* <currentMemory> below <memory>: the balloon asks for the rest
	 * from the start, as libvirt's qemu driver sets it up (a restored
	 * balloon's target is in the stream). */
	if (!restore && obj->def->balloon_model == BALLOON_VIRTIO &&
	    obj->def->current_memory_kib < obj->def->memory_kib &&
	    monitor_balloon_set(r->api_path, obj->def->current_memory_kib * 1024, -1) < 0)
		goto fail;
	query_status(r->api_path, &ks);
	/* kvmm's events (guest resets become reboot events), set up before
	 * the run is published: the main loop may end it at once. */
	r->obj = obj;
	r->events = monitor_watch_new(r->api_path, on_kvmm_event, r);
	g_mutex_lock(&obj->lock);
	set_pty_paths(obj, ks.serial_pty, ks.console_pty);
	kvmm_status_clear(&ks);
	obj->id = obj->def->id = id;
	obj->run = r;
	r->obj = obj;
	/* A restored VM has the vCPUs its stream had (hot-added ones too):
	 * kvmm's count is the live one. */
	if ((restore || infd >= 0) && ks.vcpus && ks.vcpus <= obj->def->vcpus)
		set_live_vcpus_locked(obj, ks.vcpus);
	/* A fresh start has vCPUs 0 to current-1 (vmconfig's "cpus"); a
	 * stream's ids are not known here. */
	r->ncpu_ids = obj->def->vcpus;
	r->cpu_ids = g_new0(bool, r->ncpu_ids ? r->ncpu_ids : 1);
	if (!restore && infd < 0) {
		for (unsigned i = 0; i < obj->def->vcpus_current && i < r->ncpu_ids; i++)
			r->cpu_ids[i] = true;
		r->cpus_known = true;
		/* kvmm has CPU hotplug when it has more vCPUs to add. */
		r->cpu_hotplug_known = true;
		r->cpu_hotplug = obj->def->vcpus_current < obj->def->vcpus;
	}
	r->serial = __atomic_add_fetch(&run_serial, 1, __ATOMIC_RELAXED);
	r->started = g_get_real_time() / G_USEC_PER_SEC;
	log_line(r->log_path, "running: kvmm pid %ld, domain id %d", (long)r->pid, id);
	pr_info("domain '%s' started (id %d, kvmm pid %ld)", name, id, (long)r->pid);
	if (infd >= 0)
		/* As libvirt's incoming domain: paused until Finish resumes it. */
		domain_set_state(obj, VIR_DOMAIN_PAUSED, VIR_DOMAIN_PAUSED_MIGRATION,
				 VIR_DOMAIN_EVENT_STARTED, VIR_DOMAIN_EVENT_STARTED_MIGRATED);
	else if (snapshot)
		domain_set_state(obj, VIR_DOMAIN_RUNNING, VIR_DOMAIN_RUNNING_FROM_SNAPSHOT,
				 VIR_DOMAIN_EVENT_STARTED, VIR_DOMAIN_EVENT_STARTED_FROM_SNAPSHOT);
	else if (restore)
		domain_set_state(obj, VIR_DOMAIN_RUNNING, VIR_DOMAIN_RUNNING_RESTORED,
				 VIR_DOMAIN_EVENT_STARTED, VIR_DOMAIN_EVENT_STARTED_RESTORED);
	else
		domain_set_state(obj, VIR_DOMAIN_RUNNING, VIR_DOMAIN_RUNNING_BOOTED,
				 VIR_DOMAIN_EVENT_STARTED, VIR_DOMAIN_EVENT_STARTED_BOOTED);
	/* As libvirt's QEMU driver: started, then suspended. */
	if (paused && infd < 0)
		domain_set_state(obj, VIR_DOMAIN_PAUSED,
				 snapshot ? VIR_DOMAIN_PAUSED_FROM_SNAPSHOT : VIR_DOMAIN_PAUSED_USER,
				 VIR_DOMAIN_EVENT_SUSPENDED,
				 snapshot ? VIR_DOMAIN_EVENT_SUSPENDED_FROM_SNAPSHOT
					  : VIR_DOMAIN_EVENT_SUSPENDED_PAUSED);
	g_mutex_unlock(&obj->lock);
	g_atomic_int_inc(&nrunning);
	r->watch = g_unix_fd_add(r->pidfd, G_IO_IN, on_exit_cb, domain_obj_ref(obj));
	return 0;

fail:
	nics_release(&r->taps, tapfds, ntapfds);
	if (gate >= 0)
		close(gate);	/* a child still held before exec exits */
	if (logfd >= 0)
		close(logfd);
	if (r->pid > 0 && r->child) {
		if (r->pidfd >= 0)
			pidfd_send_signal(r->pidfd, SIGKILL);
		else
			kill(r->pid, SIGKILL);
		waitpid(r->pid, NULL, 0);
	}
	if (r->log_path)
		log_line(r->log_path, "start failed: %s",
			 drv_error_last() ? drv_error_last()->message : "?");
	g_mutex_lock(&obj->lock);
	nics_forget(obj->def);
	disk_chain_forget(obj->def);
	domain_def_forget_aliases(obj->def);
	g_mutex_unlock(&obj->lock);
	run_free(r);
	return -1;
}

int process_start_paused(struct domain_obj *obj, bool paused)
{
	return start_run(obj, paused, NULL, -1, false);
}

int process_restore(struct domain_obj *obj, const char *file, bool paused)
{
	return start_run(obj, paused, file, -1, false);
}

int process_start_incoming(struct domain_obj *obj, int fd)
{
	return start_run(obj, true, NULL, fd, false);
}

int process_restore_snapshot(struct domain_obj *obj, const char *file, bool paused)
{
	return start_run(obj, paused, file, -1, true);
}

/* Stops OBJ's kvmm (SIGTERM, SIGKILL after TERM_GRACE_MS unless GRACEFUL);
 * SAVED: its VM was saved, the domain stops as such. */
static int stop_run(struct domain_obj *obj, bool graceful, bool saved, bool migrated)
{
	gint64 deadline = g_get_monotonic_time() + TERM_GRACE_MS * 1000LL;
	bool killed = false;
	int rc = 0;

	g_mutex_lock(&obj->lock);
	if (!obj->run) {
		g_mutex_unlock(&obj->lock);
		drv_error_report(VIR_ERR_OPERATION_INVALID, "domain is not running");
		return -1;
	}
	obj->run->destroying = true;
	obj->run->saved = saved;
	obj->run->migrated = migrated;
	log_line(obj->run->log_path, "%s requested%s", saved ? "stop after save" : "destroy",
		 graceful ? " (graceful)" : "");
	pidfd_send_signal(obj->run->pidfd, SIGTERM);
	/* The main loop notices the exit (pidfd) and clears obj->run. */
	while (obj->run) {
		if (!g_cond_wait_until(&obj->job_cond, &obj->lock, deadline) && obj->run) {
			if (graceful || killed) {
				obj->run->destroying = false;
				obj->run->saved = false;
				obj->run->migrated = false;
				drv_error_report(VIR_ERR_OPERATION_TIMEOUT,
						 "kvmm (pid %ld) did not stop within %d s",
						 (long)obj->run->pid, TERM_GRACE_MS / 1000 * (killed ? 2 : 1));
				rc = -1;
				break;
			}
			pidfd_send_signal(obj->run->pidfd, SIGKILL);
			killed = true;
			deadline = g_get_monotonic_time() + TERM_GRACE_MS * 1000LL;
		}
	}
	g_mutex_unlock(&obj->lock);
	return rc;
}

int process_destroy(struct domain_obj *obj, bool graceful)
{
	return stop_run(obj, graceful, false, false);
}

int process_destroy_for_snapshot(struct domain_obj *obj)
{
	g_mutex_lock(&obj->lock);
	if (obj->run)
		obj->run->from_snapshot = true;
	g_mutex_unlock(&obj->lock);
	return stop_run(obj, false, false, false);
}

int process_save_stream(struct domain_obj *obj, int fd)
{
	g_autofree char *path = process_api_path(obj);

	return path ? monitor_save(path, fd) : -1;
}

int process_save_finish(struct domain_obj *obj)
{
	/* The VM is paused and whole in its image: this kvmm's part is over. */
	return stop_run(obj, false, true, false);
}

void process_save_abandon(struct domain_obj *obj)
{
	g_autofree char *path = process_api_path(obj);
	bool running;

	g_mutex_lock(&obj->lock);
	running = obj->state == VIR_DOMAIN_RUNNING;
	g_mutex_unlock(&obj->lock);
	/* kvmm's save left it paused; the domain never was, for clients. */
	if (path && running && monitor_resume(path) < 0) {
		pr_warn("domain '%s': cannot resume it after a failed save: %s", obj->def->name,
			drv_error_last() ? drv_error_last()->message : "?");
		drv_error_reset();
	}
}

void process_migrated_paused(struct domain_obj *obj)
{
	/* A domain the user paused stays paused by the user. */
	g_mutex_lock(&obj->lock);
	if (obj->run && obj->state == VIR_DOMAIN_RUNNING)
		domain_set_state(obj, VIR_DOMAIN_PAUSED, VIR_DOMAIN_PAUSED_MIGRATION,
				 VIR_DOMAIN_EVENT_SUSPENDED, VIR_DOMAIN_EVENT_SUSPENDED_MIGRATED);
	g_mutex_unlock(&obj->lock);
}

int process_migrate_out(struct domain_obj *obj, int fd)
{
	g_autofree char *path = process_api_path(obj);

	if (!path || monitor_save(path, fd) < 0)
		return -1;
	process_migrated_paused(obj);
	return 0;
}

int process_stop_migrated(struct domain_obj *obj)
{
	return stop_run(obj, false, false, true);
}

int process_resume_as(struct domain_obj *obj, int reason, int detail)
{
	g_autofree char *path = process_api_path(obj);

	if (!path || monitor_resume(path) < 0)
		return -1;
	g_mutex_lock(&obj->lock);
	if (obj->run)
		domain_set_state(obj, VIR_DOMAIN_RUNNING, reason, VIR_DOMAIN_EVENT_RESUMED, detail);
	g_mutex_unlock(&obj->lock);
	return 0;
}

pid_t process_pid(struct domain_obj *obj)
{
	pid_t pid;

	g_mutex_lock(&obj->lock);
	pid = obj->run ? obj->run->pid : 0;
	g_mutex_unlock(&obj->lock);
	return pid;
}

uint64_t process_cpu_time(struct domain_obj *obj)
{
	struct proc_times t;
	pid_t pid = process_pid(obj);

	if (!pid || proc_times(pid, -1, &t) < 0)
		return 0;
	return t.user_ns + t.system_ns;
}

char *process_api_path(struct domain_obj *obj)
{
	char *path = NULL;

	g_mutex_lock(&obj->lock);
	if (obj->run)
		path = g_strdup(obj->run->api_path);
	g_mutex_unlock(&obj->lock);
	if (!path)
		drv_error_report(VIR_ERR_OPERATION_INVALID, "domain is not running");
	return path;
}

const char *process_cgroup_locked(struct domain_obj *obj)
{
	return obj->run && obj->run->cgroup ? obj->run->cgroup : "";
}

/* The argument after "--config" in a NUL-separated command line (its
 * copy in CMD), or NULL.  An emulator may be a wrapper, so any position. */
static const char *config_arg(const char *cmd, gsize len)
{
	for (const char *a = cmd; a < cmd + len; a += strlen(a) + 1)
		if (!strcmp(a, "--config") && a + 9 < cmd + len)
			return a + 9;
	return NULL;
}

/* PID's command line (NUL-separated, NUL-terminated), or NULL. */
static char *read_cmdline(pid_t pid, gsize *len)
{
	g_autofree char *path = g_strdup_printf("/proc/%ld/cmdline", (long)pid);
	char *cmd = NULL;

	if (!g_file_get_contents(path, &cmd, len, NULL) || !*len || cmd[*len - 1]) {
		g_free(cmd);
		return NULL;
	}
	return cmd;
}

/* Whether PID is the kvmm started with CONFIG (a pid can be reused). */
static bool is_our_kvmm(pid_t pid, const char *config)
{
	gsize len;
	g_autofree char *cmd = read_cmdline(pid, &len);
	const char *arg = cmd ? config_arg(cmd, len) : NULL;

	return arg && !strcmp(arg, config);
}

/* A pidfd for PID if it is the kvmm of CONFIG, else -1.  Opened before
 * the check, so the process checked is the one the pidfd holds. */
static int open_our_kvmm(pid_t pid, const char *config)
{
	int fd = pidfd_open(pid);
	struct pollfd p = { .fd = fd, .events = POLLIN };

	if (fd < 0)
		return -1;
	if (!is_our_kvmm(pid, config) || poll(&p, 1, 0) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* A kvmm found dead may still be on its way out: its main thread a
 * zombie (no command line any more) while its other threads exit, the
 * taps still open.  Wait (bounded) until the whole process is gone, so
 * its taps can be removed.  A live process that took the pid has a
 * command line and is not waited for. */
static void wait_exited(pid_t pid)
{
	struct pollfd p = { .fd = pidfd_open(pid), .events = POLLIN };
	gsize len;
	g_autofree char *cmd = NULL;

	if (p.fd < 0)
		return;
	cmd = read_cmdline(pid, &len);
	if (!cmd)
		poll(&p, 1, TERM_GRACE_MS);
	close(p.fd);
}

/* SIGKILL through PIDFD and wait (bounded) for the process to go: its
 * taps and files may be removed only once it no longer uses them. */
static void kill_and_wait(int pidfd)
{
	struct pollfd p = { .fd = pidfd, .events = POLLIN };

	pidfd_send_signal(pidfd, SIGKILL);
	if (poll(&p, 1, TERM_GRACE_MS) <= 0)
		pr_warn("a killed kvmm has not exited within %d s", TERM_GRACE_MS / 1000);
}

/* Taps of this instance (by their mark) that no running domain uses:
 * the daemon was killed between making a tap and the record that names
 * it, or between removing a run's record and its taps.  Taps of other
 * managers (libvirtd's vnetN among them) and of other instances carry no
 * such mark and are left alone; one something holds cannot be removed
 * (netdev_tap_delete cannot attach to it). */
static void sweep_orphan_taps(void)
{
	g_autoptr(GHashTable) in_use = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
	g_autoptr(GPtrArray) all = domain_list();
	g_autoptr(GPtrArray) ours = netdev_marked(tap_mark);

	if (!ours)
		return;
	for (guint i = 0; i < all->len; i++) {
		struct domain_obj *obj = g_ptr_array_index(all, i);

		g_mutex_lock(&obj->lock);
		for (size_t k = 0; obj->run && k < obj->run->taps.n; k++)
			if (obj->run->taps.names[k])
				g_hash_table_add(in_use, g_strdup(obj->run->taps.names[k]));
		g_mutex_unlock(&obj->lock);
	}
	for (guint i = 0; i < ours->len; i++) {
		const char *name = g_ptr_array_index(ours, i);

		if (g_hash_table_contains(in_use, name))
			continue;
		pr_warn("removing tap '%s': made by this daemon for a run that is not running", name);
		netdev_tap_delete(name);
	}
}

/* Worker of an adopted run: connect the event connection and ask kvmm
 * what it is doing, off the start-up path -- a stopped or wedged kvmm
 * must not delay the daemon, nor be taken for a dead one.  Until kvmm
 * answers the domain keeps the state its status file recorded; a kvmm
 * that does not answer gets a control-error event, and is tried again
 * until it answers or its run ends. */
struct adopt_job {
	struct domain_obj *obj;
	guint64 serial;
	char *api_path;
};

/* obj->lock held: OBJ still has the run JOB was made for. */
static struct domain_run *job_run(struct adopt_job *job)
{
	struct domain_run *r = job->obj->run;

	return r && r->serial == job->serial ? r : NULL;
}

static gpointer adopt_thread(gpointer data)
{
	struct adopt_job *job = data;
	struct domain_obj *obj = job->obj;
	bool complained = false;
	struct kvmm_status ks;
	int before, before_reason;

	for (;;) {
		struct monitor_watch *w = monitor_watch_connect(job->api_path);
		struct domain_run *r;
		struct pollfd p = { .fd = -1, .events = POLLIN };

		g_mutex_lock(&obj->lock);
		r = job_run(job);
		if (r && w) {
			/* Under the lock: the run cannot end (and free r)
			 * before its watch is in place. */
			r->events = w;
			monitor_watch_start(w, on_kvmm_event, r);
		} else if (r) {
			p.fd = dup(r->pidfd);
		}
		g_mutex_unlock(&obj->lock);
		if (!r) {
			monitor_watch_free(w);
			goto out;
		}
		if (w)
			break;
		if (!complained) {
			pr_warn("domain '%s': its kvmm does not answer on %s; keeping it, trying again",
				obj->def->name, job->api_path);
			events_control_error(obj);
			complained = true;
		}
		/* Until its exit or a second passes. */
		if (p.fd >= 0) {
			poll(&p, 1, 1000);
			close(p.fd);
		}
	}
	g_mutex_lock(&obj->lock);
	before = obj->state;
	before_reason = obj->reason;
	g_mutex_unlock(&obj->lock);
	if (monitor_query_status(job->api_path, &ks) < 0) {
		drv_error_reset();
		goto out;
	}
	g_mutex_lock(&obj->lock);
	/* kvmm knows best whether it is paused, unless the state changed
	 * while we asked (a suspend or an event, which the watch now
	 * delivers): then the answer may be older than the state. */
	if (job_run(job) && obj->state == before && obj->reason == before_reason) {
		if (ks.state == KVMM_STATE_PAUSED && obj->state != VIR_DOMAIN_PAUSED)
			domain_set_state(obj, VIR_DOMAIN_PAUSED, VIR_DOMAIN_PAUSED_USER,
					 VIR_DOMAIN_EVENT_SUSPENDED, VIR_DOMAIN_EVENT_SUSPENDED_PAUSED);
		else if (ks.state == KVMM_STATE_RUNNING && obj->state != VIR_DOMAIN_RUNNING)
			domain_set_state(obj, VIR_DOMAIN_RUNNING, VIR_DOMAIN_RUNNING_UNPAUSED,
					 VIR_DOMAIN_EVENT_RESUMED, VIR_DOMAIN_EVENT_RESUMED_UNPAUSED);
	}
	if (job_run(job))
		set_pty_paths(obj, ks.serial_pty, ks.console_pty);
	g_mutex_unlock(&obj->lock);
	kvmm_status_clear(&ks);
	if (complained)
		pr_info("domain '%s': its kvmm answers again", obj->def->name);
out:
	g_free(job->api_path);
	domain_obj_unref(obj);
	g_free(job);
	return NULL;
}

/* The run's definition is the status file's LIVE_XML: a persistent
 * domain redefined while it ran keeps running what it was started with,
 * and the definition on disk waits for its next start.  When both say
 * the same, the one on disk serves for both (obj->lock held). */
static void adopt_pty_paths(struct domain_obj *obj, const struct domain_def *live)
{
	const char *serial = NULL, *console = NULL;

	if (live->nserials && live->serials[0].type == CHR_PTY)
		serial = live->serials[0].path;
	for (size_t i = 0; i < live->nconsoles; i++)
		if (live->consoles[i].type == CHR_PTY && live->consoles[i].target == CONSOLE_VIRTIO)
			console = live->consoles[i].path;
	set_pty_paths(obj, serial, console);
}

static void adopt_live_def(struct domain_obj *obj, const char *live_xml)
{
	struct domain_def *live;
	g_autofree char *a = NULL, *b = NULL;

	if (!obj->persistent || !live_xml || obj->newdef)
		return;
	live = domain_def_parse_string(live_xml, domains_status_parse_opts());
	if (!live) {
		pr_warn("domain '%s': the live definition in its status file does not parse (%s); using the persistent one",
			obj->def->name, drv_error_last() ? drv_error_last()->message : "?");
		drv_error_reset();
		return;
	}
	a = domain_def_format(live, VIR_DOMAIN_XML_INACTIVE | VIR_DOMAIN_XML_SECURE);
	b = domain_def_format(obj->def, VIR_DOMAIN_XML_INACTIVE | VIR_DOMAIN_XML_SECURE);
	if (a && b && strcmp(a, b) != 0) {
		obj->newdef = obj->def;
		obj->def = live;
	} else {
		/* What only the run has, and the inactive XML leaves out: its
		 * chains, and its ptys (until kvmm itself is asked), so the
		 * live XML has them as soon as the domain is adopted. */
		if (a && b) {
			disk_chain_adopt(obj->def, live);
			adopt_pty_paths(obj, live);
		}
		domain_def_free(live);
	}
	drv_error_reset();
}

/* One status file: adopt its kvmm, or clean up after it.  Never waits on
 * kvmm: only /proc and a pidfd decide. */
static void adopt_one(const char *path)
{
	struct domain_status st;
	g_autofree char *why = NULL;
	struct domain_obj *obj;
	struct domain_run *r;
	struct adopt_job *job;
	bool starting;

	if (status_read(path, &st, &why) < 0) {
		pr_err("ignoring status file %s: %s", path, why);
		return;
	}
	obj = domain_find_by_uuid(st.uuid);
	if (!obj && st.live_xml) {
		/* A transient domain: its live definition is all there is.  So
		 * it is for one whose persistent definition went while it ran
		 * (an undefine the daemon died in before the status file said
		 * transient): it runs on, transient, as after that undefine. */
		struct domain_def *def = domain_def_parse_string(st.live_xml, domains_status_parse_opts());

		if (def && (obj = domain_add_transient(def, "adopt")))
			domain_job_end(obj);
		drv_error_reset();
	}
	if (!obj) {
		pr_err("status file %s: no such domain defined; leaving its kvmm (pid %ld) alone",
		       path, (long)st.pid);
		status_clear(&st);
		return;
	}
	r = g_new0(struct domain_run, 1);
	r->pid = st.pid;
	r->exit_hint = -1;
	r->api_path = st.monitor_path;
	r->config_path = st.config_path;
	r->log_path = st.log_path;
	r->status_path = g_strdup(path);
	r->started = st.started;
	r->taps = st.taps;
	memset(&st.taps, 0, sizeof(st.taps));
	r->cgroup = g_steal_pointer(&st.cgroup);
	r->pidfd = open_our_kvmm(st.pid, st.config_path);
	/* A run still starting when the daemon died: its client got no
	 * answer, and what it left is ended, as libvirt kills a VM it was
	 * starting (a child still held before exec exits by itself). */
	starting = st.state == VIR_DOMAIN_PAUSED && st.reason == VIR_DOMAIN_PAUSED_STARTING_UP;
	if (starting || r->pidfd < 0) {
		if (starting) {
			pr_warn("domain '%s': it was starting when the daemon stopped; %s", obj->def->name,
				r->pidfd >= 0 ? "killing its kvmm" : "cleaning up");
			log_line(r->log_path, "start interrupted by the daemon's end%s",
				 r->pidfd >= 0 ? ": kvmm killed" : "");
		} else {
			/* It died while nobody watched (or its pid went to
			 * another process): shut off, as libvirt reports a
			 * vanished VM. */
			pr_warn("domain '%s': its kvmm (pid %ld) is gone; shut off (crashed)",
				obj->def->name, (long)st.pid);
			log_line(r->log_path, "kvmm (pid %ld) was gone when the daemon started",
				 (long)st.pid);
		}
		if (r->pidfd >= 0)
			kill_and_wait(r->pidfd);
		else
			wait_exited(r->pid);
		g_mutex_lock(&obj->lock);
		if (!starting)
			domain_set_state(obj, VIR_DOMAIN_SHUTOFF, VIR_DOMAIN_SHUTOFF_CRASHED, -1, 0);
		g_mutex_unlock(&obj->lock);
		run_free(r);
		if (!obj->persistent)
			domain_remove_transient(obj);
		g_free(st.live_xml);	/* the paths went with r */
		domain_obj_unref(obj);
		return;
	}
	g_mutex_lock(&obj->lock);
	adopt_live_def(obj, st.live_xml);
	obj->id = obj->def->id = st.id;
	nics_show(obj->def, &r->taps);
	/* The status file's, or (its live definition was the persistent
	 * one) the same names made again. */
	domain_def_assign_aliases(obj->def);
	obj->run = r;
	r->obj = obj;
	r->serial = __atomic_add_fetch(&run_serial, 1, __ATOMIC_RELAXED);
	/* No event: no client was there to miss one.  The recorded state
	 * until kvmm says otherwise (adopt_thread). */
	domain_set_state(obj, st.state, st.reason, -1, 0);
	job = g_new0(struct adopt_job, 1);
	job->obj = domain_obj_ref(obj);
	job->serial = r->serial;
	job->api_path = g_strdup(r->api_path);
	g_mutex_unlock(&obj->lock);
	/* Ids stay unique across the restart. */
	while (g_atomic_int_get(&next_id) < st.id)
		g_atomic_int_set(&next_id, st.id);
	g_atomic_int_inc(&nrunning);
	r->watch = g_unix_fd_add(r->pidfd, G_IO_IN, on_exit_cb, domain_obj_ref(obj));
	log_line(r->log_path, "re-adopted by a new daemon: kvmm pid %ld, domain id %d", (long)r->pid,
		 st.id);
	pr_info("domain '%s' is running (id %d, kvmm pid %ld): adopted", obj->def->name, st.id,
		(long)r->pid);
	g_thread_unref(g_thread_new("adopt", adopt_thread, job));
	g_free(st.live_xml);
	domain_obj_unref(obj);
}

/* The UUID a file of STATE_DIR belongs to ("UUID.xml", "UUID.json",
 * "UUID.sock", and their temporary "UUID.xml.XXXXXX"), or NULL. */
static char *file_uuid(const char *name)
{
	unsigned char uuid[16];
	g_autofree char *head = g_strndup(name, 36);

	if (strlen(name) < 37 || name[36] != '.' || domain_uuid_parse(head, uuid) < 0)
		return NULL;
	return g_steal_pointer(&head);
}

/* After adoption: every kvmm of this instance that no run owns is killed
 * (one started by a daemon that died before recording it), and every
 * file no run owns is removed -- configurations, sockets, half-written
 * temporary files.  A status file that could not be read stays (it was
 * reported), and so do the files of its run. */
static void sweep(void)
{
	g_autoptr(GHashTable) owned = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
	g_autoptr(GDir) d = g_dir_open(state_dir, 0, NULL);
	g_autoptr(GDir) proc = NULL;
	g_autofree char *prefix = g_strconcat(state_dir, "/", NULL);
	const char *name;

	if (!d)
		return;
	/* Owned: UUIDs with a status file still there (adopted, or unreadable). */
	while ((name = g_dir_read_name(d))) {
		char *uuid = file_uuid(name);

		if (uuid && !strcmp(name + 36, ".xml"))
			g_hash_table_add(owned, uuid);
		else
			g_free(uuid);
	}
	g_dir_rewind(d);
	while ((name = g_dir_read_name(d))) {
		g_autofree char *uuid = file_uuid(name);
		g_autofree char *path = NULL;

		if (!uuid || (g_hash_table_contains(owned, uuid) && !strchr(name + 37, '.')))
			continue;
		path = g_build_filename(state_dir, name, NULL);
		pr_info("removing %s: no run of this daemon owns it", path);
		if (unlink(path) < 0 && errno != ENOENT)
			pr_warn("cannot remove %s: %s", path, g_strerror(errno));
	}
	proc = g_dir_open("/proc", 0, NULL);
	while (proc && (name = g_dir_read_name(proc))) {
		g_autofree char *cmd = NULL, *uuid = NULL;
		const char *arg;
		gsize len;
		long pid;
		int fd;

		if (!g_ascii_isdigit(*name))
			continue;
		pid = strtol(name, NULL, 10);
		/* "EMULATOR --config STATE_DIR/UUID.json" */
		if (!(cmd = read_cmdline((pid_t)pid, &len)) || !(arg = config_arg(cmd, len)) ||
		    !g_str_has_prefix(arg, prefix) || !g_str_has_suffix(arg, ".json") ||
		    !(uuid = file_uuid(arg + strlen(prefix))) || g_hash_table_contains(owned, uuid))
			continue;
		fd = open_our_kvmm((pid_t)pid, arg);
		if (fd < 0)
			continue;
		pr_warn("killing kvmm (pid %ld) of %s: no run of this daemon owns it", pid, arg);
		kill_and_wait(fd);
		close(fd);
	}
	sweep_orphan_taps();
	cgroup_sweep(owned);
}

void process_adopt_all(void)
{
	g_autoptr(GDir) d = g_dir_open(state_dir, 0, NULL);
	const char *name;

	if (!d)
		return;
	while ((name = g_dir_read_name(d))) {
		g_autofree char *path = NULL;

		if (!g_str_has_suffix(name, ".xml"))
			continue;
		path = g_build_filename(state_dir, name, NULL);
		adopt_one(path);
	}
	sweep();
}

static gpointer autostart_thread(gpointer data)
{
	GPtrArray *todo = data;

	for (guint i = 0; i < todo->len; i++) {
		struct domain_obj *obj = g_ptr_array_index(todo, i);

		if (domain_job_begin(obj, "autostart") < 0) {
			drv_error_reset();
			continue;
		}
		if (obj->id < 0) {
			if (process_start(obj) == 0)
				pr_info("domain '%s' autostarted", obj->def->name);
			else
				pr_err("cannot autostart domain '%s': %s", obj->def->name,
				       drv_error_last() ? drv_error_last()->message : "?");
			drv_error_reset();
		}
		domain_job_end(obj);
	}
	g_ptr_array_unref(todo);
	return NULL;
}

void process_autostart_all(void)
{
	g_autofree char *marker = g_build_filename(state_dir, "autostarted", NULL);
	g_autoptr(GPtrArray) all = NULL;
	GPtrArray *todo;
	int fd;

	/* Once per host boot, as libvirt: the runtime directory is on tmpfs,
	 * so the marker goes with a reboot, and a daemon that restarts does
	 * not start again what a user has since shut down. */
	if (g_mkdir_with_parents(state_dir, 0700) < 0)
		return;
	fd = open(marker, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		if (errno != EEXIST)
			pr_warn("cannot create %s: %s; not autostarting", marker, g_strerror(errno));
		return;
	}
	close(fd);
	all = domain_list();
	todo = g_ptr_array_new_with_free_func((GDestroyNotify)domain_obj_unref);
	for (guint i = 0; i < all->len; i++) {
		struct domain_obj *obj = g_ptr_array_index(all, i);

		if (obj->autostart && obj->id < 0)
			g_ptr_array_add(todo, domain_obj_ref(obj));
	}
	if (!todo->len) {
		g_ptr_array_unref(todo);
		return;
	}
	/* Off the main loop: a slow start must not delay serving clients. */
	g_thread_unref(g_thread_new("autostart", autostart_thread, todo));
}

/* When OBJ's live definition is also its persistent one, a copy of the
 * persistent part (as split off by virsh setmem --live): the live one is
 * about to change alone.  NULL when there is nothing to split or after
 * reporting (*ERR set). */
static struct domain_def *persistent_copy_locked(struct domain_obj *obj, bool *err)
{
	g_autofree char *xml = NULL;
	struct domain_def *copy;

	*err = false;
	if (obj->persistent && !obj->newdef)
		xml = domain_def_format(obj->def, VIR_DOMAIN_XML_INACTIVE | VIR_DOMAIN_XML_SECURE);
	if (!xml)
		return NULL;
	if (!(copy = domain_def_parse_string(xml, domains_parse_opts())))
		*err = true;
	return copy;
}

static struct domain_def *persistent_copy(struct domain_obj *obj, bool *err)
{
	struct domain_def *copy;

	g_mutex_lock(&obj->lock);
	copy = persistent_copy_locked(obj, err);
	g_mutex_unlock(&obj->lock);
	return copy;
}

/* Puts NEWDEF in place of OBJ's live definition (obj->lock held), PERSIST
 * (from persistent_copy, or NULL) as the persistent one if it has none of
 * its own yet; the old live one is kept as retired, for readers without
 * the lock. */
static void swap_live_def(struct domain_obj *obj, struct domain_def *newdef, struct domain_def *persist)
{
	if (persist && obj->persistent && !obj->newdef)
		obj->newdef = persist;
	else
		domain_def_free(persist);
	domain_def_free(obj->retired);
	obj->retired = obj->def;
	obj->def = newdef;
}

/* OBJ's live definition as it is now (obj->lock held) with disk or NIC
 * IDX of NEWDEF moved to its end: a removal the guest completed while the
 * device was being added is not undone.  NEWDEF is freed; NULL (after
 * reporting) only if the live definition does not parse again. */
static struct domain_def *live_with_locked(struct domain_obj *obj, struct domain_def *newdef, bool net,
					   size_t idx)
{
	g_autofree char *xml = domain_def_format(obj->def, VIR_DOMAIN_XML_SECURE);
	struct domain_def *copy = xml ? domain_def_parse_string(xml, domains_status_parse_opts()) : NULL;

	if (!copy) {
		domain_def_free(newdef);
		return NULL;
	}
	if (net) {
		copy->nets = g_renew(struct domain_net, copy->nets, copy->nnets + 1);
		copy->nets[copy->nnets++] = newdef->nets[idx];
		memset(&newdef->nets[idx], 0, sizeof(newdef->nets[idx]));
	} else {
		copy->disks = g_renew(struct domain_disk, copy->disks, copy->ndisks + 1);
		copy->disks[copy->ndisks++] = newdef->disks[idx];
		memset(&newdef->disks[idx], 0, sizeof(newdef->disks[idx]));
	}
	domain_def_free(newdef);
	return copy;
}

int process_attach_disk(struct domain_obj *obj, struct domain_def *newdef, size_t idx)
{
	struct domain_disk *d = &newdef->disks[idx];
	g_autofree char *api = NULL, *keys = NULL, *alias = g_strdup(d->alias);
	g_autofree char *target = g_strdup(d->target), *source = g_strdup(d->source);
	struct domain_def *persist;
	bool err;
	unsigned slot;

	if (!alias) {
		drv_error_report(VIR_ERR_INTERNAL_ERROR, "%s", "the disk has no alias");
		return -1;
	}
	if (!(api = process_api_path(obj)))
		return -1;
	if (check_source("disk source", d->source, true) < 0)
		return -1;
	for (size_t j = 0; j < d->nbacking; j++)
		if (check_source("backing store", d->backing[j].path, false) < 0)
			return -1;
	/* A missing image is refused here, before kvmm is asked. */
	if (access(d->source, F_OK) < 0) {
		drv_error_report(VIR_ERR_SYSTEM_ERROR, "Cannot access storage file '%s': %s", d->source,
				 g_strerror(errno));
		return -1;
	}
	persist = persistent_copy(obj, &err);
	if (err)
		return -1;
	keys = vmconfig_disk_json(d);
	if (monitor_device_add_disk(api, alias, keys, &slot) < 0) {
		domain_def_free(persist);
		return -1;
	}
	g_mutex_lock(&obj->lock);
	if (obj->run && !strcmp(obj->run->api_path, api)) {
		if ((newdef = live_with_locked(obj, newdef, false, idx))) {
			swap_live_def(obj, newdef, persist);
			process_save_status_locked(obj);
		} else {
			pr_warn("domain '%s': disk %s is attached but not in the live XML: %s",
				obj->def->name, target, drv_error_last() ? drv_error_last()->message : "?");
			drv_error_reset();
			domain_def_free(persist);
		}
	} else {
		domain_def_free(newdef);
		domain_def_free(persist);
	}
	g_mutex_unlock(&obj->lock);
	pr_info("domain '%s': disk %s (%s) attached in slot %u", obj->def->name, target, source, slot);
	events_device_added(obj, alias);
	return 0;
}

int process_attach_net(struct domain_obj *obj, struct domain_def *newdef, size_t idx)
{
	struct domain_net *n = &newdef->nets[idx];
	g_autofree char *api = NULL, *keys = NULL, *alias = g_strdup(n->alias), *mark = NULL;
	struct domain_def one = { .nets = n, .nnets = 1 };
	struct nic_taps t = { 0 };
	struct domain_run *r;
	struct domain_def *persist;
	bool err;
	char uuid[37];
	unsigned slot;
	int tapfd = -1;

	if (!alias) {
		drv_error_report(VIR_ERR_INTERNAL_ERROR, "%s", "the interface has no alias");
		return -1;
	}
	if (!(api = process_api_path(obj)))
		return -1;
	persist = persistent_copy(obj, &err);
	if (err)
		return -1;
	domain_uuid_format(newdef->uuid, uuid);
	mark = g_strconcat(tap_mark, uuid, NULL);
	/* The tap first, marked as at start: a daemon killed before the
	 * status names it leaves it to the next one's sweep. */
	if (nics_create(&one, &t, mark, &tapfd) < 0) {
		domain_def_free(persist);
		return -1;
	}
	keys = vmconfig_net_json(n, t.names[0]);
	/* Handed to kvmm as at start. */
	if (nics_open(&t, &tapfd) < 0 || monitor_device_add_net(api, alias, keys, tapfd, &slot) < 0) {
		nics_release(&t, &tapfd, 1);
		nics_remove(&t);
		domain_def_free(persist);
		return -1;
	}
	close(tapfd);
	g_mutex_lock(&obj->lock);
	r = obj->run;
	if (r && !strcmp(r->api_path, api)) {
		size_t k = r->taps.n;

		/* The run's taps stay in the order of the live XML's NICs. */
		r->taps.names = g_renew(char *, r->taps.names, k + 1);
		r->taps.owned = g_renew(bool, r->taps.owned, k + 1);
		r->taps.names[k] = t.names[0];
		r->taps.owned[k] = t.owned[0];
		r->taps.n = k + 1;
		g_free(t.names);
		g_free(t.owned);
		memset(&t, 0, sizeof(t));
		if ((newdef = live_with_locked(obj, newdef, true, idx))) {
			nics_show(newdef, &r->taps);
			swap_live_def(obj, newdef, persist);
		} else {
			pr_warn("domain '%s': interface %s is attached but not in the live XML: %s",
				obj->def->name, alias, drv_error_last() ? drv_error_last()->message : "?");
			drv_error_reset();
			domain_def_free(persist);
		}
		/* The status names the tap either way: it goes with the run. */
		process_save_status_locked(obj);
	} else {
		domain_def_free(newdef);
		domain_def_free(persist);
		n = NULL;
	}
	g_mutex_unlock(&obj->lock);
	nics_remove(&t);
	if (!n)
		return 0;
	pr_info("domain '%s': interface %s attached in slot %u", obj->def->name, alias, slot);
	events_device_added(obj, alias);
	return 0;
}

/* The index of the disk or NIC with kvmm id ID (its alias) in DEF, *NET
 * set for a NIC; -1 when none has it. */
static int find_alias(const struct domain_def *def, const char *id, bool *net)
{
	for (size_t i = 0; i < def->ndisks; i++)
		if (def->disks[i].alias && !strcmp(def->disks[i].alias, id))
			return *net = false, (int)i;
	for (size_t i = 0; i < def->nnets; i++)
		if (def->nets[i].alias && !strcmp(def->nets[i].alias, id))
			return *net = true, (int)i;
	return -1;
}

/* DEF without its disk or NIC number I: a new definition, or NULL after
 * reporting. */
static struct domain_def *def_without(const struct domain_def *def, int i, bool net)
{
	g_autofree char *xml = domain_def_format(def, VIR_DOMAIN_XML_SECURE);
	struct domain_def *copy = xml ? domain_def_parse_string(xml, domains_status_parse_opts()) : NULL;
	struct domain_def *gone;

	if (!copy)
		return NULL;
	/* The entry goes to a definition of its own, freed with it. */
	gone = g_new0(struct domain_def, 1);
	if (net) {
		gone->nets = g_new(struct domain_net, 1);
		gone->nets[0] = copy->nets[i];
		gone->nnets = 1;
		memmove(&copy->nets[i], &copy->nets[i + 1], (copy->nnets - i - 1) * sizeof(*copy->nets));
		copy->nnets--;
	} else {
		gone->disks = g_new(struct domain_disk, 1);
		gone->disks[0] = copy->disks[i];
		gone->ndisks = 1;
		memmove(&copy->disks[i], &copy->disks[i + 1], (copy->ndisks - i - 1) * sizeof(*copy->disks));
		copy->ndisks--;
	}
	domain_def_free(gone);
	return copy;
}

/* kvmm freed a hot-added device the guest ejected (main loop): it leaves
 * the live XML and the status file, then DEVICE_REMOVED. */
static void on_device_deleted(struct domain_run *r, const struct monitor_event *ev)
{
	struct domain_obj *obj = r->obj;
	struct domain_def *copy = NULL;
	bool net = false, known = false;
	int i;

	if (!r->draining)
		g_mutex_lock(&obj->lock);
	/* KVMM: an id that is none of ours is ignored. */
	if (obj->run == r && (i = find_alias(obj->def, ev->device_id, &net)) >= 0) {
		known = true;
		copy = def_without(obj->def, i, net);
		if (copy && net && (size_t)i < r->taps.n) {
			struct nic_taps gone = { .n = 1, .names = g_new(char *, 1), .owned = g_new(bool, 1) };

			/* Its tap, which kvmm has closed. */
			gone.names[0] = r->taps.names[i];
			gone.owned[0] = r->taps.owned[i];
			memmove(&r->taps.names[i], &r->taps.names[i + 1], (r->taps.n - i - 1) * sizeof(char *));
			memmove(&r->taps.owned[i], &r->taps.owned[i + 1], (r->taps.n - i - 1) * sizeof(bool));
			r->taps.n--;
			nics_remove(&gone);
		}
		if (copy) {
			bool err;
			/* The live definition changes alone (a definition adopted
			 * after a restart may also be the persistent one). */
			struct domain_def *persist = persistent_copy_locked(obj, &err);

			if (err) {
				pr_warn("domain '%s': %s", obj->def->name,
					drv_error_last() ? drv_error_last()->message : "?");
				drv_error_reset();
			}
			swap_live_def(obj, copy, persist);
			process_save_status_locked(obj);
		} else {
			pr_warn("domain '%s': cannot drop device %s from its live XML: %s", obj->def->name,
				ev->device_id, drv_error_last() ? drv_error_last()->message : "?");
			drv_error_reset();
		}
		g_cond_broadcast(&obj->job_cond);
	}
	if (!r->draining)
		g_mutex_unlock(&obj->lock);
	if (!known)
		return;
	pr_info("domain '%s': device %s removed from slot %u", obj->def->name, ev->device_id, ev->slot);
	events_device_removed(obj, ev->device_id);
}

int process_detach_device(struct domain_obj *obj, const char *alias, bool *removed)
{
	g_autofree char *api = NULL;
	g_autofree struct kvmm_hot_device *devs = NULL;
	size_t n = 0;
	bool hot = false, net = false;
	gint64 deadline;

	*removed = false;
	if (!(api = process_api_path(obj)) || monitor_query_devices(api, &devs, &n) < 0)
		return -1;
	for (size_t i = 0; i < n; i++)
		hot |= !strcmp(devs[i].id, alias);
	if (!hot) {
		drv_error_report(VIR_ERR_OPERATION_UNSUPPORTED,
				 "device %s was plugged in at start; kvmm can only detach devices attached while the domain runs",
				 alias);
		return -1;
	}
	if (monitor_device_del(api, alias) < 0)
		return -1;
	/* As libvirt's qemu driver: the guest has a few seconds to give the
	 * device back; after that the removal is pending and the event says
	 * when it happened. */
	deadline = g_get_monotonic_time() + 5 * G_TIME_SPAN_SECOND;
	g_mutex_lock(&obj->lock);
	while (obj->def && find_alias(obj->def, alias, &net) >= 0 && obj->id >= 0)
		if (!g_cond_wait_until(&obj->job_cond, &obj->lock, deadline))
			break;
	*removed = find_alias(obj->def, alias, &net) < 0;
	g_mutex_unlock(&obj->lock);
	return 0;
}

/* OBJ's live definition with current= N vCPUs, in place (obj->lock
 * held), and the status file. */
static void set_live_vcpus_locked(struct domain_obj *obj, unsigned n)
{
	g_autofree char *xml = NULL;
	struct domain_def *copy = NULL, *persist;
	bool err;

	if (obj->def->vcpus_current == n)
		return;
	xml = domain_def_format(obj->def, VIR_DOMAIN_XML_SECURE);
	if (xml)
		copy = domain_def_parse_string(xml, domains_status_parse_opts());
	if (!copy) {
		pr_warn("domain '%s': cannot set its live vCPUs to %u: %s", obj->def->name, n,
			drv_error_last() ? drv_error_last()->message : "?");
		drv_error_reset();
		return;
	}
	copy->vcpus_current = n;
	/* The live definition changes alone (a definition adopted after a
	 * restart may also be the persistent one). */
	persist = persistent_copy_locked(obj, &err);
	if (err) {
		pr_warn("domain '%s': %s", obj->def->name, drv_error_last() ? drv_error_last()->message : "?");
		drv_error_reset();
	}
	swap_live_def(obj, copy, persist);
	process_save_status_locked(obj);
}

/* kvmm says the guest ejected a vCPU (main loop): one fewer in the live
 * XML. */
static void on_cpu_deleted(struct domain_run *r, const struct monitor_event *ev)
{
	struct domain_obj *obj = r->obj;

	if (!r->draining)
		g_mutex_lock(&obj->lock);
	if (obj->run == r) {
		r->cpu_gen++;
		if (ev->cpu_id < r->ncpu_ids)
			r->cpu_ids[ev->cpu_id] = false;
	}
	if (obj->run == r && obj->def->vcpus_current > 1) {
		pr_info("domain '%s': vCPU %u removed", obj->def->name, ev->cpu_id);
		set_live_vcpus_locked(obj, obj->def->vcpus_current - 1);
		g_cond_broadcast(&obj->job_cond);
	}
	if (!r->draining)
		g_mutex_unlock(&obj->lock);
}

/* The destination of a post-copy (running, reason post-copy): the last
 * page came (running, migrated, as a pre-copy's would be), or the link
 * broke and kvmm paused the guest, lost (as libvirt's post-copy failed). */
static void on_migration(struct domain_run *r, const struct monitor_event *ev)
{
	struct domain_obj *obj = r->obj;

	if (!r->draining)
		g_mutex_lock(&obj->lock);
	if (obj->run == r && obj->state == VIR_DOMAIN_RUNNING &&
	    obj->reason == VIR_DOMAIN_RUNNING_POSTCOPY) {
		if (ev->migration == KVMM_MIGRATE_COMPLETED) {
			domain_set_state(obj, VIR_DOMAIN_RUNNING, VIR_DOMAIN_RUNNING_MIGRATED, -1, 0);
		} else {
			pr_warn("domain '%s': post-copy failed: the guest is lost", obj->def->name);
			domain_set_state(obj, VIR_DOMAIN_PAUSED, VIR_DOMAIN_PAUSED_POSTCOPY_FAILED,
					 VIR_DOMAIN_EVENT_SUSPENDED,
					 VIR_DOMAIN_EVENT_SUSPENDED_POSTCOPY_FAILED);
		}
	}
	if (!r->draining)
		g_mutex_unlock(&obj->lock);
}

/* The vCPUs kvmm lists in STATE (present counts removing ones too). */
static unsigned count_cpus(const struct kvmm_cpu *cpus, size_t n, enum kvmm_cpu_state state)
{
	unsigned c = 0;

	for (size_t i = 0; i < n; i++)
		c += state == KVMM_CPU_PRESENT ? cpus[i].state != KVMM_CPU_EJECTED : cpus[i].state == state;
	return c;
}

static bool listed(const struct kvmm_cpu *cpus, size_t n, unsigned id)
{
	for (size_t i = 0; i < n; i++)
		if (cpus[i].id == id)
			return true;
	return false;
}

/* RUN (obj->run when kvmm was asked) has vCPU hotplug or not. */
static void remember_cpu_hotplug(struct domain_obj *obj, struct domain_run *run, bool hotplug)
{
	g_mutex_lock(&obj->lock);
	if (run && obj->run == run) {
		run->cpu_hotplug_known = true;
		run->cpu_hotplug = hotplug;
	}
	g_mutex_unlock(&obj->lock);
}

/* RUN's vCPU ids from query-cpus's answer, unless a cpu-deleted event
 * came while it was asked (GEN changed): the answer may predate it. */
static void remember_cpus(struct domain_obj *obj, struct domain_run *run, guint64 gen,
			  const struct kvmm_cpu *cpus, size_t n)
{
	g_mutex_lock(&obj->lock);
	if (run && obj->run == run) {
		/* An adopted run has none yet. */
		if (!run->cpu_ids) {
			run->ncpu_ids = obj->def->vcpus;
			run->cpu_ids = g_new0(bool, run->ncpu_ids ? run->ncpu_ids : 1);
		}
		run->cpus_known = run->cpu_gen == gen;
		memset(run->cpu_ids, 0, run->ncpu_ids * sizeof(*run->cpu_ids));
		/* KVMM: an id beyond the domain's maximum is not ours. */
		for (size_t i = 0; i < n; i++)
			if (cpus[i].state != KVMM_CPU_EJECTED && cpus[i].id < run->ncpu_ids)
				run->cpu_ids[cpus[i].id] = true;
	}
	g_mutex_unlock(&obj->lock);
}

/* RUN's vCPU ID is there (cpu-add) or, after a failed cpu-del, not
 * known any more. */
static void remember_cpu(struct domain_obj *obj, struct domain_run *run, unsigned id, bool added)
{
	g_mutex_lock(&obj->lock);
	if (run && obj->run == run) {
		if (!added)
			run->cpus_known = false;
		else if (id < run->ncpu_ids)
			run->cpu_ids[id] = true;
	}
	g_mutex_unlock(&obj->lock);
}

/* The removal from the ids the daemon keeps: cpu-del alone, no
 * query-cpus.  0 asked, 1 to be done from kvmm's query-cpus (ids not
 * known, or a cpu-del failed: its error comes again from there). */
static int del_known_vcpus(struct domain_obj *obj, const char *api, unsigned want)
{
	g_autofree unsigned *ids = NULL;
	struct domain_run *run;
	unsigned have = 0, nids = 0;

	g_mutex_lock(&obj->lock);
	run = obj->run;
	if (!run || !run->cpus_known || !run->cpu_hotplug_known || !run->cpu_hotplug) {
		g_mutex_unlock(&obj->lock);
		return 1;
	}
	ids = g_new(unsigned, run->ncpu_ids + 1);
	for (unsigned id = 0; id < run->ncpu_ids; id++)
		if (run->cpu_ids[id]) {
			ids[nids++] = id;
			have++;
		}
	g_mutex_unlock(&obj->lock);
	if (want > have)
		return 1;
	/* Highest ids first; vCPU 0 never goes. */
	for (unsigned i = nids; i-- > 0 && have > want;) {
		if (ids[i] == 0)
			continue;
		if (monitor_cpu_del(api, ids[i]) < 0) {
			/* Maybe the kept ids were wrong: kvmm's own then. */
			remember_cpu(obj, run, ids[i], false);
			drv_error_reset();
			return 1;
		}
		have--;
	}
	return 0;
}

int process_set_vcpus(struct domain_obj *obj, unsigned want)
{
	g_autofree char *api = NULL;
	g_autofree struct kvmm_cpu *cpus = NULL;
	struct kvmm_status st;
	struct domain_run *run;
	size_t n = 0;
	unsigned have, max;
	guint64 gen;
	gint64 deadline;
	bool done;
	int rc;

	if (!(api = process_api_path(obj)))
		return -1;
	g_mutex_lock(&obj->lock);
	run = obj->run;
	rc = run && want < obj->def->vcpus_current ? 1 : 2;
	g_mutex_unlock(&obj->lock);
	/* A removal is one exchange with kvmm when the ids are known. */
	if (rc == 1)
		rc = del_known_vcpus(obj, api, want);
	if (rc == 0)
		goto wait;
	g_mutex_lock(&obj->lock);
	run = obj->run;
	gen = run ? run->cpu_gen : 0;
	g_mutex_unlock(&obj->lock);
	if (monitor_query_cpus(api, &cpus, &n) < 0)
		return -1;
	remember_cpus(obj, run, gen, cpus, n);
	g_mutex_lock(&obj->lock);
	max = obj->def->vcpus;
	g_mutex_unlock(&obj->lock);
	have = count_cpus(cpus, n, KVMM_CPU_PRESENT);
	/* Started with all its vCPUs, kvmm has no CPU hotplug to use.  Such
	 * a VM has its maximum, which the caller checked WANT against: an
	 * add needs no query-status (one exchange with kvmm less), nor does
	 * a run whose answer is known. */
	if (want <= have) {
		bool known, hotplug;

		g_mutex_lock(&obj->lock);
		known = run && obj->run == run && run->cpu_hotplug_known;
		hotplug = known && run->cpu_hotplug;
		g_mutex_unlock(&obj->lock);
		if (!known) {
			if (monitor_query_status(api, &st) < 0)
				return -1;
			kvmm_status_clear(&st);
			hotplug = st.cpu_hotplug;
			remember_cpu_hotplug(obj, run, hotplug);
		}
		if (!hotplug) {
			drv_error_report(VIR_ERR_OPERATION_UNSUPPORTED, "%s",
					 "vcpu hotplug needs a domain started with <vcpu current='N'> below its maximum");
			return -1;
		}
	}
	if (want > have) {
		/* The lowest ids kvmm does not list: an ejected one cannot
		 * take a vCPU again before the guest's next reset. */
		for (unsigned id = 0; id < max && have < want; id++) {
			if (listed(cpus, n, id))
				continue;
			if (monitor_cpu_add(api, id) < 0)
				break;
			remember_cpu(obj, run, id, true);
			have++;
		}
		if (have > count_cpus(cpus, n, KVMM_CPU_PRESENT))
			remember_cpu_hotplug(obj, run, true);
		if (have < want && !drv_error_last())
			drv_error_report(VIR_ERR_OPERATION_FAILED,
					 "only %u vCPUs can be plugged in: the ids of the vCPUs the guest removed can be used again after its next reset",
					 have);
		g_mutex_lock(&obj->lock);
		if (obj->run)
			set_live_vcpus_locked(obj, have);
		g_mutex_unlock(&obj->lock);
		return have == want ? 0 : -1;
	}
	/* Highest ids first; vCPU 0 never goes. */
	for (size_t i = n; i-- > 0 && have > want;) {
		if (cpus[i].state == KVMM_CPU_EJECTED || cpus[i].id == 0)
			continue;
		if (monitor_cpu_del(api, cpus[i].id) < 0)
			return -1;
		have--;
	}
wait:
	/* As libvirt's qemu driver: the guest has a few seconds to eject
	 * them; each cpu-deleted event takes one off the live XML. */
	deadline = g_get_monotonic_time() + 5 * G_TIME_SPAN_SECOND;
	g_mutex_lock(&obj->lock);
	while (obj->run && obj->def->vcpus_current > want)
		if (!g_cond_wait_until(&obj->job_cond, &obj->lock, deadline))
			break;
	done = !obj->run || obj->def->vcpus_current <= want;
	g_mutex_unlock(&obj->lock);
	if (!done) {
		drv_error_report(VIR_ERR_OPERATION_TIMEOUT, "%s",
				 "vcpu unplug request timed out. Unplug result must be manually inspected in the domain");
		return -1;
	}
	return 0;
}
