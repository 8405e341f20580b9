/* The sandbox's seccomp lists (src/vmm/seccomp_policy.c) applied for real
 * to a forked child: what a guest escape would try dies of SIGSYS with a
 * message naming the call, what kvmm's threads do keeps working, paths
 * fail with EACCES, and --sandbox-log turns death into EPERM.  Without
 * the filter every "dies" case here exits normally and fails. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <linux/kvm.h>
#include <time.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sandbox.h"
#include "unit.h"

/* Runs fn in a child under kind's filter; returns its wait status and
 * what it wrote on stderr. */
static int run_filtered(enum sandbox_thread kind, bool log, int (*fn)(void),
			char *err, size_t errlen)
{
	int pipefd[2], status = -1;
	ssize_t n, got = 0;
	pid_t pid;

	if (pipe(pipefd))
		return -1;
	pid = fork();
	if (pid == 0) {
		dup2(pipefd[1], STDERR_FILENO);
		close(pipefd[0]);
		if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) || sandbox_filters_prepare(log) ||
		    sandbox_filter_apply(kind))
			_exit(99);
		_exit(fn());
	}
	close(pipefd[1]);
	while (got < (ssize_t)errlen - 1 &&
	       (n = read(pipefd[0], err + got, errlen - 1 - got)) > 0)
		got += n;
	err[got] = '\0';
	close(pipefd[0]);
	waitpid(pid, &status, 0);
	return status;
}

static bool killed_by_sigsys(int status)
{
	return WIFSIGNALED(status) && WTERMSIG(status) == SIGSYS;
}

static int do_ptrace(void) { syscall(SYS_ptrace, 0 /* TRACEME */, 0, 0, 0); return 0; }
static int do_mount(void) { syscall(SYS_mount, "none", "/nonexistent", "tmpfs", 0, 0); return 0; }
static int do_execve(void) { syscall(SYS_execve, "/nonexistent", 0, 0); return 0; }
static int do_socket(void) { syscall(SYS_socket, 1 /* AF_UNIX */, 1, 0); return 0; }
static int do_setuid(void) { syscall(SYS_setuid, 0); return 0; }
static int do_unshare(void) { syscall(SYS_unshare, 0x10000000 /* NEWUSER */); return 0; }
static int do_clone_newuser(void)
{
	/* A user namespace would give the child back capabilities. */
	long r = syscall(SYS_clone, 0x10000000 | SIGCHLD, 0, 0, 0, 0);

	if (r == 0)
		_exit(0);
	return 0;
}
static int do_connect(void) { syscall(SYS_connect, 0, 0, 0); return 0; }
static int do_tcgets(void) { syscall(SYS_ioctl, 0, 0x5401 /* TCGETS */, 0); return 0; }
/* Typing into the host's terminal. */
static int do_tiocsti(void) { char c = 'x'; syscall(SYS_ioctl, 0, 0x5412 /* TIOCSTI */, &c); return 0; }

/* New executable memory: where injected code would go. */
static int do_mmap_exec(void)
{
	syscall(SYS_mmap, 0, 4096, 7 /* RWX */, 0x22 /* PRIVATE|ANONYMOUS */, -1, 0);
	return 0;
}
static int do_mprotect_exec(void)
{
	static char page[4096] __attribute__((aligned(4096)));

	syscall(SYS_mprotect, page, 4096, 5 /* R-X */);
	return 0;
}

struct forbidden {
	const char *what;
	int (*fn)(void);
	long nr;
};

static const struct forbidden forbidden[] = {
	{ "ptrace", do_ptrace, SYS_ptrace },
	{ "mount", do_mount, SYS_mount },
	{ "execve", do_execve, SYS_execve },
	{ "socket", do_socket, SYS_socket },
	{ "connect", do_connect, SYS_connect },
	{ "setuid", do_setuid, SYS_setuid },
	{ "unshare", do_unshare, SYS_unshare },
	{ "clone(CLONE_NEWUSER)", do_clone_newuser, SYS_clone },
	{ "ioctl(TIOCSTI)", do_tiocsti, SYS_ioctl },
	{ "mmap(PROT_EXEC)", do_mmap_exec, SYS_mmap },
	{ "mprotect(PROT_EXEC)", do_mprotect_exec, SYS_mprotect },
};

UNIT_TEST(forbidden_calls_kill_with_sigsys_and_say_which)
{
	char err[512], want[64];

	for (int k = 0; k < SANDBOX_THREAD_KINDS; k++) {
		for (size_t i = 0; i < sizeof(forbidden) / sizeof(forbidden[0]); i++) {
			int st = run_filtered(k, false, forbidden[i].fn, err, sizeof(err));

			if (!killed_by_sigsys(st))
				printf("  %s list: %s not killed (status 0x%x)\n",
				       seccomp_policies[k].name, forbidden[i].what, st);
			CHECK(killed_by_sigsys(st));
			snprintf(want, sizeof(want), "system call %ld (%s) is not in the %s",
				 forbidden[i].nr, strtok(strdup(forbidden[i].what), "("),
				 seccomp_policies[k].name);
			if (!strstr(err, want))
				printf("  stderr: %s\n", err);
			CHECK(strstr(err, want) != NULL);
		}
	}
}

UNIT_TEST(vcpu_ioctls_are_kvms_only)
{
	char err[512];

	/* The main thread puts the terminal back at exit; a vCPU never. */
	CHECK(killed_by_sigsys(run_filtered(SANDBOX_THREAD_VCPU, false, do_tcgets,
					    err, sizeof(err))));
	CHECK(!killed_by_sigsys(run_filtered(SANDBOX_THREAD_MAIN, false, do_tcgets,
					     err, sizeof(err))));
}

/* The migration copy's calls, on a descriptor that is none (EBADF): what
 * is allowed fails the ordinary way, the rest kills. */
static int do_dirty_log(void)
{
	if (syscall(SYS_ioctl, -1, KVM_GET_DIRTY_LOG, 0) != -1 || errno != EBADF)
		return 1;
	return syscall(SYS_ioctl, -1, KVM_CLEAR_DIRTY_LOG, 0) == -1 && errno == EBADF ? 0 : 1;
}
static int do_kvm_run(void) { syscall(SYS_ioctl, -1, KVM_RUN, 0); return 0; }
static int do_nanosleep(void)
{
	struct timespec ts = { 0, 1000 };

	return nanosleep(&ts, NULL);
}
static int do_sndtimeo(void)
{
	struct timeval tv = { 1, 0 };

	return setsockopt(-1, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) == -1 &&
	       errno == EBADF ? 0 : 1;
}
static int do_rcvtimeo(void)
{
	struct timeval tv = { 1, 0 };

	setsockopt(-1, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	return 0;
}

static bool exits_0(int st)
{
	return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

UNIT_TEST(migration_thread_takes_the_dirty_log_and_sleeps_but_runs_no_vcpu)
{
	char err[512];

	CHECK(exits_0(run_filtered(SANDBOX_THREAD_MIGRATION, false, do_dirty_log, err, sizeof(err))));
	CHECK(exits_0(run_filtered(SANDBOX_THREAD_MIGRATION, false, do_nanosleep, err, sizeof(err))));
	CHECK(killed_by_sigsys(run_filtered(SANDBOX_THREAD_MIGRATION, false, do_kvm_run,
					    err, sizeof(err))));
	CHECK(strstr(err, "is not in the migration threads' allow-list") != NULL);
	/* The main thread, which the copy inherits from, takes the log for
	 * the switchover; a vCPU thread never does. */
	CHECK(exits_0(run_filtered(SANDBOX_THREAD_MAIN, false, do_dirty_log, err, sizeof(err))));
	CHECK(killed_by_sigsys(run_filtered(SANDBOX_THREAD_VCPU, false, do_dirty_log,
					    err, sizeof(err))));
}

UNIT_TEST(main_thread_sets_only_the_send_timeout)
{
	char err[512];

	CHECK(exits_0(run_filtered(SANDBOX_THREAD_MAIN, false, do_sndtimeo, err, sizeof(err))));
	CHECK(killed_by_sigsys(run_filtered(SANDBOX_THREAD_MAIN, false, do_rcvtimeo,
					    err, sizeof(err))));
	CHECK(killed_by_sigsys(run_filtered(SANDBOX_THREAD_MIGRATION, false, do_sndtimeo,
					    err, sizeof(err))));
}

/* What the threads do all the time: ids for the SIGSYS report, memory,
 * writing on an fd they hold. */
static int allowed_work(void)
{
	void *m;

	if (syscall(SYS_getpid) <= 0 || syscall(SYS_gettid) <= 0)
		return 1;
	m = malloc(1 << 20);	/* mmap, munmap */
	if (!m)
		return 2;
	free(m);
	if (write(STDERR_FILENO, "ok", 2) != 2)
		return 3;
	return 0;
}

UNIT_TEST(allowed_calls_keep_working)
{
	char err[512];

	for (int k = 0; k < SANDBOX_THREAD_KINDS; k++) {
		int st = run_filtered(k, false, allowed_work, err, sizeof(err));

		if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0))
			printf("  %s list: status 0x%x, stderr: %s\n", seccomp_policies[k].name, st, err);
		CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	}
}

static int open_fails_eacces(void)
{
	int fd = open("/etc/passwd", O_RDONLY);

	return fd < 0 && errno == EACCES ? 0 : 1;
}

UNIT_TEST(paths_fail_with_eacces_on_the_main_thread)
{
	char err[512];
	int st = run_filtered(SANDBOX_THREAD_MAIN, false, open_fails_eacces, err, sizeof(err));

	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

static int ptrace_fails_eperm(void)
{
	long r = syscall(SYS_ptrace, 0, 0, 0, 0);

	return r == -1 && errno == EPERM ? 0 : 1;
}

UNIT_TEST(log_mode_fails_forbidden_calls_with_eperm_and_logs_them)
{
	char err[512], want[64];
	int st = run_filtered(SANDBOX_THREAD_VCPU, true, ptrace_fails_eperm, err, sizeof(err));

	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	snprintf(want, sizeof(want), "system call %d (ptrace) is not in the vcpu", SYS_ptrace);
	CHECK(strstr(err, want) != NULL);
	CHECK(strstr(err, "fails with EPERM") != NULL);
}

UNIT_TEST(every_rule_says_why)
{
	for (int k = 0; k < SANDBOX_THREAD_KINDS; k++) {
		CHECK(seccomp_policies[k].nrules > 0);
		for (unsigned int i = 0; i < seccomp_policies[k].nrules; i++) {
			const char *why = seccomp_policies[k].rules[i].why;

			CHECK(why && strlen(why) > 5);
			CHECK(seccomp_policies[k].rules[i].nr >= 0);
		}
	}
}
