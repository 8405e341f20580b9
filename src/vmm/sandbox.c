/* kvmm --sandbox, in the spirit of Firecracker's jailer but inside kvmm:
 * once /dev/kvm, the disks, kernel, taps, sockets and logs are open, the
 * process enters a private mount namespace whose root is an empty
 * read-only tmpfs, becomes an unprivileged uid/gid with no capabilities
 * and no_new_privs, and each thread runs under its own seccomp allow-list
 * (seccomp_policy.c).  A guest escape then owns nobody's empty directory. */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <seccomp.h>

#include "config.h"
#include "log.h"
#include "sandbox.h"

/* Compiled before anything is dropped (libseccomp allocates and uses
 * system calls no thread may make later); applied with one system call. */
static struct sock_fprog progs[SANDBOX_THREAD_KINDS];
static bool filters_ready, log_mode;
/* System call names for the SIGSYS report, resolved while malloc and
 * libseccomp may still run (the handler can do neither). */
#define SYSCALL_NAMES 512
static char *syscall_names[SYSCALL_NAMES];
/* The list a thread runs under: a new thread has its creator's until it
 * adds its own. */
static __thread const char *thread_kind = "main";

/* Async-signal-safe decimal. */
static char *put_num(char *p, long n)
{
	char tmp[24];
	int i = 0;

	if (n < 0) {
		*p++ = '-';
		n = -n;
	}
	do
		tmp[i++] = '0' + n % 10;
	while ((n /= 10));
	while (i)
		*p++ = tmp[--i];
	return p;
}

static char *put_str(char *p, const char *s)
{
	while (*s)
		*p++ = *s++;
	return p;
}

/* A system call outside the allow-list (SECCOMP_RET_TRAP): say which,
 * then die of SIGSYS -- or, with --sandbox-log, fail it with EPERM. */
static void on_sigsys(int sig, siginfo_t *si, void *ctx)
{
	ucontext_t *uc = ctx;
	char msg[256], *p = msg;

	(void)sig;
	p = put_str(p, "kvmm: sandbox: system call ");
	p = put_num(p, si->si_syscall);
	if (si->si_syscall >= 0 && si->si_syscall < SYSCALL_NAMES &&
	    syscall_names[si->si_syscall]) {
		p = put_str(p, " (");
		p = put_str(p, syscall_names[si->si_syscall]);
		p = put_str(p, ")");
	}
	p = put_str(p, " is not in the ");
	p = put_str(p, thread_kind);
	p = put_str(p, " threads' allow-list; ");
	p = put_str(p, log_mode ? "it fails with EPERM (--sandbox-log)\n" : "kvmm stops\n");
	if (write(STDERR_FILENO, msg, p - msg) < 0) {
		/* nothing more to do */
	}
	if (log_mode) {
		uc->uc_mcontext.gregs[REG_RAX] = -EPERM;
		return;
	}
	/* SA_RESETHAND made SIGSYS fatal again; it is blocked until this
	 * handler returns, and then kills the whole process. */
	syscall(SYS_tgkill, getpid(), syscall(SYS_gettid), SIGSYS);
}

static int compile(enum sandbox_thread kind, struct sock_fprog *out)
{
	const struct seccomp_policy *pol = &seccomp_policies[kind];
	scmp_filter_ctx ctx;
	unsigned int i;
	int r, fd = -1;
	off_t len;

	ctx = seccomp_init(SCMP_ACT_TRAP);
	if (!ctx)
		return -ENOMEM;
	/* Another ABI's system calls (int 0x80, x32) are never right. */
	r = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);
	for (i = 0; !r && i < pol->nrules; i++) {
		const struct seccomp_rule *rl = &pol->rules[i];
		uint32_t act = rl->err ? SCMP_ACT_ERRNO(rl->err) : SCMP_ACT_ALLOW;

		/* by default the low 32 bits: the kernel ignores the upper
		 * half of an ioctl request */
		struct scmp_arg_cmp c1 = SCMP_CMP(rl->arg, SCMP_CMP_MASKED_EQ,
						  rl->mask ? rl->mask : 0xffffffffu, rl->value);
		struct scmp_arg_cmp c2 = SCMP_CMP(rl->arg2, SCMP_CMP_MASKED_EQ,
						  0xffffffffu, rl->value2);

		if (rl->arg < 0)
			r = seccomp_rule_add(ctx, act, rl->nr, 0);
		else if (rl->arg2 > rl->arg)
			r = seccomp_rule_add(ctx, act, rl->nr, 2, c1, c2);
		else
			r = seccomp_rule_add(ctx, act, rl->nr, 1, c1);
		if (r)
			pr_err("sandbox: %s rule %u (system call %d) refused by libseccomp: %s",
			       pol->name, i, rl->nr, strerror(-r));
	}
	/* libseccomp 2.5 exports to a file only: a memfd, read back. */
	if (!r) {
		fd = memfd_create("kvmm-seccomp", MFD_CLOEXEC);
		r = fd < 0 ? -errno : seccomp_export_bpf(ctx, fd);
	}
	if (!r) {
		len = lseek(fd, 0, SEEK_END);
		out->len = len / sizeof(struct sock_filter);
		out->filter = malloc(len);
		if (len <= 0 || !out->filter)
			r = -ENOMEM;
		else if (pread(fd, out->filter, len, 0) != len)
			r = -EIO;
	}
	if (fd >= 0)
		close(fd);
	seccomp_release(ctx);
	return r;
}

int sandbox_filters_prepare(bool log)
{
	struct sigaction sa = { .sa_sigaction = on_sigsys };
	int k, r;

	log_mode = log;
	for (k = 0; k < SYSCALL_NAMES; k++)
		if (!syscall_names[k])
			syscall_names[k] = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, k);
	for (k = 0; k < SANDBOX_THREAD_KINDS; k++) {
		r = compile(k, &progs[k]);
		if (r) {
			pr_err("sandbox: cannot build the %s threads' seccomp filter: %s",
			       seccomp_policies[k].name, strerror(-r));
			return r;
		}
	}
	sa.sa_flags = SA_SIGINFO | (log ? 0 : SA_RESETHAND);
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGSYS, &sa, NULL))
		return -errno;
	filters_ready = true;
	return 0;
}

int sandbox_filter_apply(enum sandbox_thread kind)
{
	thread_kind = seccomp_policies[kind].name;
	/* No TSYNC: each thread installs its own list (threads also inherit
	 * their creator's, so a vCPU thread has main's and its own). */
	if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &progs[kind])) {
		pr_err("sandbox: cannot install the %s thread's seccomp filter: %s",
		       seccomp_policies[kind].name, strerror(errno));
		return -errno;
	}
	return 0;
}

int sandbox_thread_enter(enum sandbox_thread kind)
{
	return filters_ready ? sandbox_filter_apply(kind) : 0;
}

/* A private mount namespace whose root is an empty read-only tmpfs: the
 * old root is detached, so no host path resolves any more. */
static int empty_root(void)
{
	const char *at = "/tmp";	/* any directory: mounts here are private */

	if (unshare(CLONE_NEWNS)) {
		pr_err("sandbox: cannot enter a new mount namespace: %s; kvmm --sandbox must start as root",
		       strerror(errno));
		return -errno;
	}
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) ||
	    mount("kvmm-sandbox", at, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
		  "size=4k,nr_inodes=1,mode=0555") ||
	    chdir(at) || syscall(SYS_pivot_root, ".", ".") ||
	    umount2(".", MNT_DETACH) || chdir("/")) {
		pr_err("sandbox: cannot make an empty root: %s", strerror(errno));
		return -errno;
	}
	return 0;
}

static int drop_privileges(const struct sandbox_config *sb)
{
	struct __user_cap_header_struct hdr = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct data[2] = { { 0 } };
	uid_t uid = sb->uid;
	gid_t gid = sb->gid;
	int cap;

	/* The bounding set needs CAP_SETPCAP, which setresuid takes away. */
	for (cap = 0; cap <= CAP_LAST_CAP; cap++) {
		if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) && errno != EINVAL) {
			pr_err("sandbox: cannot drop capability %d from the bounding set: %s",
			       cap, strerror(errno));
			return -errno;
		}
	}
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) && errno != EINVAL) {
		pr_err("sandbox: cannot clear the ambient capabilities: %s", strerror(errno));
		return -errno;
	}
	if (setgroups(0, NULL) || setresgid(gid, gid, gid) || setresuid(uid, uid, uid)) {
		pr_err("sandbox: cannot become uid %u gid %u: %s", (unsigned int)uid,
		       (unsigned int)gid, strerror(errno));
		return -errno;
	}
	/* Leaving uid 0 cleared permitted and effective; inheritable too. */
	if (syscall(SYS_capset, &hdr, data)) {
		pr_err("sandbox: cannot clear the capabilities: %s", strerror(errno));
		return -errno;
	}
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)) {
		pr_err("sandbox: cannot set no_new_privs: %s", strerror(errno));
		return -errno;
	}
	pr_info("sandbox: running as uid %u gid %u, no capabilities", (unsigned int)uid,
		(unsigned int)gid);
	return 0;
}

int sandbox_enter(const struct sandbox_config *sb)
{
	struct sandbox_config resolved = *sb;
	struct passwd *pw;
	struct group *gr;
	int r;

	/* nobody/nogroup are looked up while /etc is still there. */
	if (!resolved.has_uid) {
		resolved.uid = (pw = getpwnam("nobody")) ? pw->pw_uid : 65534;
		resolved.has_uid = true;
	}
	if (!resolved.has_gid) {
		resolved.gid = (gr = getgrnam("nogroup")) ? gr->gr_gid : 65534;
		resolved.has_gid = true;
	}
	if (geteuid() != 0) {
		pr_err("sandbox: kvmm --sandbox must start as root (it then drops to uid %u)",
		       resolved.uid);
		return -EPERM;
	}
	r = sandbox_filters_prepare(sb->log);
	if (!r)
		r = empty_root();
	if (!r)
		r = drop_privileges(&resolved);
	if (!r)
		r = sandbox_filter_apply(SANDBOX_THREAD_MAIN);
	return r;
}
