/* The seccomp allow-lists of a sandboxed kvmm (sandbox.c), one per kind
 * of thread, each system call with why it is there.  Found with strace -f
 * over the test guest's scenarios and --sandbox-log; anything not listed
 * traps: kvmm says which call and dies of SIGSYS.
 *
 * Three kinds of thread: kvmm has no I/O or console threads of its own --
 * the block layer submits and reaps its io_uring on the main thread, and
 * the sync path runs there too; the kernel's io_uring and KVM workers
 * (iou-wrk, kvm-nx-lpage-recovery) inherit the filter of the thread that
 * made them and never run kvmm's code.  The third is a live migration's
 * copy (migration/live.c), which runs while the guest does.
 *
 * A thread inherits its creator's filter and adds its own, so a vCPU
 * thread runs under both lists: what it does must be in each.  Calls that
 * name a path are listed as failing with EACCES rather than killing: the
 * root is empty anyway, and cleanup paths (unlinking a socket at exit)
 * then fail the ordinary way. */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <linux/kvm.h>
#include <linux/if_tun.h>
#include <linux/seccomp.h>
#include <linux/userfaultfd.h>
#include <seccomp.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>

#include "sandbox.h"

#define PTHREAD_CLONE_FLAGS (CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SYSVSEM | CLONE_SIGHAND | \
			     CLONE_THREAD | CLONE_SETTLS | CLONE_PARENT_SETTID | CLONE_CHILD_CLEARTID)

#define ALLOW(name, why)		{ SCMP_SYS(name), -1, 0, 0, 0, why, 0, 0 }
#define ALLOW_IF(name, arg, val, why)	{ SCMP_SYS(name), arg, 0, val, 0, why, 0, 0 }
#define ALLOW_MASKED(name, arg, mask, val, why) { SCMP_SYS(name), arg, mask, val, 0, why, 0, 0 }
#define FAIL(name, err, why)		{ SCMP_SYS(name), -1, 0, 0, err, why, 0, 0 }
#define IOCTL(req, why)			ALLOW_IF(ioctl, 1, req, why)
#define ALLOW_IF2(name, arg, val, arg2, val2, why) { SCMP_SYS(name), arg, 0, val, 0, why, arg2, val2 }

/* What a vCPU thread asks of KVM: running the guest, and the devices it
 * drives on the guest's accesses.  In both lists, as a vCPU thread runs
 * under both. */
#define VCPU_IOCTLS \
	IOCTL(KVM_RUN, "run the guest"), \
	IOCTL(KVM_GET_REGS, "exit handling (pvm-compat), a crash report"), \
	IOCTL(KVM_SET_REGS, "exit handling (pvm-compat)"), \
	IOCTL(KVM_GET_SREGS, "exit handling (pvm-compat), a crash report"), \
	IOCTL(KVM_SET_SREGS, "exit handling (pvm-compat)"), \
	IOCTL(KVM_GET_FPU, "exit handling (pvm-compat)"), \
	IOCTL(KVM_SET_FPU, "exit handling (pvm-compat)"), \
	IOCTL(KVM_GET_MSRS, "exit handling (pvm-compat)"), \
	IOCTL(KVM_SET_MSRS, "a vCPU's set-up at reset and cpu-add (MTRRs), exit handling (pvm-compat)"), \
	IOCTL(KVM_GET_VCPU_EVENTS, "exit handling (pvm-compat)"), \
	IOCTL(KVM_SET_VCPU_EVENTS, "exit handling (pvm-compat)"), \
	IOCTL(KVM_TRANSLATE, "guest addresses in a crash report"), \
	IOCTL(KVM_IRQ_LINE, "legacy devices raise their interrupt on the guest's access"), \
	IOCTL(KVM_SET_GSI_ROUTING, "the guest programs an MSI-X table entry"), \
	IOCTL(KVM_IRQFD, "the guest enables an MSI-X vector"), \
	IOCTL(KVM_IOEVENTFD, "a virtio driver sets DRIVER_OK or resets"), \
	IOCTL(TUNSETOFFLOAD, "virtio-net feature negotiation")

static const struct seccomp_rule main_rules[] = {
	/* the event loop */
	ALLOW(epoll_wait, "the main loop waits on every fd"),
	ALLOW(epoll_ctl, "fds come and go: control clients, console clients"),
	ALLOW(read, "eventfds, signalfd, control and console sockets, tap frames, console input"),
	ALLOW(write, "eventfds, control replies and events, tap frames, console and log output, stderr"),
	ALLOW(readv, "tap frames into guest buffers"),
	ALLOW(writev, "tap frames from guest buffers"),
	ALLOW(close, "closing a control or console client, a vCPU at reset"),
	ALLOW(fcntl, "a new client socket made non-blocking"),
	ALLOW(accept4, "control socket and unix console clients"),
	ALLOW_IF(poll, 2, 0, "a pty: does a client hold its slave open (never waits)"),
	ALLOW(recvmsg, "control requests and the descriptors sent with them (getfd)"),
	ALLOW(getrandom, "virtio-rng's entropy"),
	ALLOW(clock_gettime, "timestamps (the vDSO's fallback)"),
	ALLOW(eventfd2, "a virtio queue's notify and irq eventfds, made again when its driver resets it"),
	ALLOW(timerfd_settime, "balloon statistics period"),
	ALLOW(timerfd_gettime, "balloon statistics period"),
	/* disks: the block layer and its engines run on this thread */
	ALLOW(pread64, "disk reads (sync path, qcow2 metadata)"),
	ALLOW(pwrite64, "disk writes (sync path, qcow2 metadata), serial log"),
	ALLOW(preadv, "disk reads (sync path)"),
	ALLOW(pwritev, "disk writes (sync path)"),
	ALLOW(fdatasync, "a guest FLUSH (sync path, qcow2 metadata)"),
	ALLOW(fallocate, "DISCARD and WRITE_ZEROES"),
	ALLOW(ftruncate, "block-resize; a serial log cut back"),
	ALLOW(lseek, "a serial log cut back to its start"),
	ALLOW_IF(newfstatat, 3, AT_EMPTY_PATH, "glibc's fstat: on an fd, never a path"),
	ALLOW(io_uring_enter, "submitting and reaping disk requests"),
	ALLOW(flock, "a disk hot-added by descriptor, locked as at start"),
	ALLOW(fstatfs, "a disk hot-added by descriptor: not a /proc or /sys file"),
	/* No new io_uring instance once confined: a disk hot-added then
	 * uses the synchronous path (block.c falls back on the error). */
	FAIL(io_uring_setup, EPERM, "a hot-added disk uses preadv/pwritev"),
	ALLOW(fsync, "save to a descriptor: the state made durable"),
	/* memory */
	/* W^X: no new executable memory (kvmm loads no code once running) */
	ALLOW_MASKED(mmap, 2, PROT_EXEC, 0, "malloc, a vCPU's kvm_run page at reset"),
	ALLOW(munmap, "free, a vCPU's kvm_run page at reset"),
	ALLOW_MASKED(mprotect, 2, PROT_EXEC, 0, "malloc's arenas"),
	ALLOW(mremap, "realloc"),
	ALLOW(brk, "malloc"),
	ALLOW(madvise, "balloon and reset discard guest RAM; thread stacks freed"),
	/* ioctl: KVM, with the VM built again at reset, and the terminal --
	 * none other (TIOCSTI on a terminal would type into the host). */
	VCPU_IOCTLS,
	IOCTL(KVM_CREATE_VM, "reset: a new VM"),
	IOCTL(KVM_CHECK_EXTENSION, "reset: what the new VM offers"),
	IOCTL(KVM_SET_TSS_ADDR, "reset: the new VM's layout"),
	IOCTL(KVM_SET_IDENTITY_MAP_ADDR, "reset: the new VM's layout"),
	IOCTL(KVM_CREATE_IRQCHIP, "reset: the new VM's interrupt controllers"),
	IOCTL(KVM_CREATE_PIT2, "reset: the new VM's timer"),
	IOCTL(KVM_SET_USER_MEMORY_REGION, "reset: guest RAM into the new VM"),
	IOCTL(KVM_ENABLE_CAP, "reset: the new VM's MSR exits (pvm-compat), its dirty log's manual protect"),
	IOCTL(KVM_X86_SET_MSR_FILTER, "reset: the new VM's MSR exits (pvm-compat)"),
	IOCTL(KVM_CREATE_VCPU, "reset: the new VM's vCPUs"),
	IOCTL(KVM_GET_SUPPORTED_CPUID, "reset: the new vCPUs' CPUID"),
	IOCTL(KVM_SET_CPUID2, "reset: the new vCPUs' CPUID"),
	IOCTL(KVM_GET_CLOCK, "pause keeps the guest's clock"),
	IOCTL(KVM_SET_CLOCK, "resume gives the guest's clock back"),
	/* save (to a descriptor): the paused VM's state, read only */
	IOCTL(KVM_GET_MSR_INDEX_LIST, "save: the MSRs to read"),
	IOCTL(KVM_GET_LAPIC, "save: a vCPU's local APIC; cpu-add"),
	IOCTL(KVM_SET_LAPIC, "cpu-add: a new vCPU into KVM's APIC map"),
	IOCTL(KVM_GET_MP_STATE, "save: a vCPU's run state"),
	IOCTL(KVM_GET_XCRS, "save: a vCPU's XCR0"),
	IOCTL(KVM_GET_DEBUGREGS, "save: a vCPU's debug registers"),
	IOCTL(KVM_GET_XSAVE, "save: a vCPU's extended state"),
	IOCTL(KVM_GET_XSAVE2, "save: a vCPU's extended state (AMX)"),
	IOCTL(KVM_GET_IRQCHIP, "save: the PICs and IOAPIC"),
	IOCTL(KVM_GET_PIT2, "save: the PIT"),
	/* live migration (by descriptor only: no socket, no connect) */
	IOCTL(KVM_GET_DIRTY_LOG, "migrate: the pages the guest wrote (the copy thread inherits it)"),
	IOCTL(KVM_CLEAR_DIRTY_LOG, "migrate: protects a chunk again before it is sent (inherited)"),
	ALLOW_IF2(setsockopt, 1, SOL_SOCKET, 2, SO_SNDTIMEO,
		  "migrate: the switchover's send timeout"),
	ALLOW_IF(shutdown, 1, SHUT_RDWR, "migrate-cancel wakes the copy thread's write"),
	ALLOW_IF(clock_nanosleep, 0, CLOCK_REALTIME,
		 "migrate: the copy thread's bandwidth limit (nanosleep), inherited"),
	ALLOW_IF(clock_nanosleep, 0, CLOCK_MONOTONIC,
		 "migrate: a throttled vCPU's sleep (auto-converge), inherited"),
	IOCTL(UFFDIO_COPY, "post-copy destination: a page placed (its threads inherit it)"),
	IOCTL(UFFDIO_ZEROPAGE, "post-copy destination: a page the source never had"),
	IOCTL(UFFDIO_WAKE, "post-copy destination: a fault on a page placed meanwhile"),
	IOCTL(UFFDIO_UNREGISTER, "post-copy destination: every page in, RAM ordinary again"),
	IOCTL(TUNGETIFF, "a NIC hot-added by descriptor: is it a tap, and which"),
	IOCTL(TUNSETVNETHDRSZ, "a NIC hot-added by descriptor: the virtio-net header's size"),
	IOCTL(TCGETS, "the stdio console's terminal, put back at exit"),
	IOCTL(TCSETS, "the stdio console's terminal, put back at exit"),
	/* threads and signals */
	/* clone3's flags are in memory, out of a filter's reach: glibc falls
	 * back to clone, whose flags must be exactly pthread_create's (no new
	 * namespace, no new process). */
	FAIL(clone3, ENOSYS, "glibc then uses clone"),
	ALLOW_IF(clone, 0, PTHREAD_CLONE_FLAGS, "vCPU threads, started again at reset"),
	ALLOW(set_robust_list, "a new thread's first call (glibc)"),
	ALLOW(rseq, "a new thread's first call (glibc)"),
	ALLOW(futex, "locks and condition variables"),
	ALLOW(rt_sigaction, "the vCPU kick handler"),
	ALLOW(rt_sigprocmask, "glibc around thread creation"),
	ALLOW(rt_sigreturn, "return from a signal handler"),
	ALLOW(tgkill, "kicking a vCPU out of KVM_RUN; the SIGSYS report"),
	ALLOW(getpid, "tgkill's target"),
	ALLOW(gettid, "tgkill's target"),
	ALLOW_IF(seccomp, 0, SECCOMP_SET_MODE_FILTER, "a new vCPU or migration thread adds its own list"),
	ALLOW_IF(prctl, 0, PR_SET_NAME, "a new vCPU or migration thread names itself"),
	ALLOW(exit, "a thread ends"),
	ALLOW(exit_group, "kvmm ends"),
	/* paths: nothing to find in the empty root; fail, do not kill */
	FAIL(openat, EACCES, "no host path is reachable"),
	FAIL(open, EACCES, "no host path is reachable"),
	FAIL(access, EACCES, "no host path is reachable: device-add of a path is refused"),
	FAIL(faccessat, EACCES, "no host path is reachable: device-add of a path is refused"),
	FAIL(faccessat2, EACCES, "no host path is reachable: device-add of a path is refused"),
	FAIL(unlink, EACCES, "sockets left for whoever started kvmm to remove"),
	FAIL(unlinkat, EACCES, "sockets left for whoever started kvmm to remove"),
	FAIL(rename, EACCES, "no log rotation by name: the log is cut back"),
	FAIL(renameat, EACCES, "no log rotation by name: the log is cut back"),
	FAIL(renameat2, EACCES, "no log rotation by name: the log is cut back"),
};

static const struct seccomp_rule vcpu_rules[] = {
	VCPU_IOCTLS,
	ALLOW(read, "the guest's access to a device reads host state (console input)"),
	ALLOW(write, "serial/console output, eventfds, requests to the main loop, stderr"),
	ALLOW(writev, "serial output to a socket"),
	ALLOW_IF(poll, 2, 0, "serial output to a pty: does a client hold its slave open (never waits)"),
	ALLOW(pwrite64, "serial log; qcow2 metadata on the guest's notify"),
	ALLOW(ftruncate, "a serial log cut back"),
	ALLOW(lseek, "a serial log cut back to its start"),
	ALLOW(getrandom, "virtio-rng's entropy when the guest notifies"),
	ALLOW(io_uring_enter, "a disk request submitted on the guest's notify"),
	ALLOW(preadv, "disk reads (sync path) on the guest's notify"),
	ALLOW(pwritev, "disk writes (sync path) on the guest's notify"),
	ALLOW(pread64, "qcow2 metadata on the guest's notify"),
	ALLOW(fdatasync, "a guest FLUSH on the guest's notify"),
	ALLOW(fallocate, "DISCARD and WRITE_ZEROES on the guest's notify"),
	ALLOW(madvise, "balloon and free page reporting; the thread's stack at exit"),
	ALLOW(futex, "the VM lock and condition variable"),
	ALLOW(clock_gettime, "timestamps (the vDSO's fallback)"),
	ALLOW_IF(clock_nanosleep, 0, CLOCK_MONOTONIC, "auto-converge: the throttled vCPU sleeps"),
	ALLOW_MASKED(mmap, 2, PROT_EXEC, 0, "malloc in the thread's arena"),
	ALLOW(munmap, "free in the thread's arena"),
	ALLOW_MASKED(mprotect, 2, PROT_EXEC, 0, "malloc growing the thread's arena"),
	ALLOW(brk, "malloc"),
	ALLOW(rt_sigreturn, "return from the kick handler"),
	ALLOW(rt_sigprocmask, "glibc at thread exit"),
	ALLOW(tgkill, "the SIGSYS report"),
	ALLOW(getpid, "the SIGSYS report"),
	ALLOW(gettid, "the SIGSYS report"),
	ALLOW(exit, "the thread ends"),
	/* The serial log rotates on the vCPU that wrote past its limit: by
	 * name it fails, and the file is cut back instead (chardev.c).  A
	 * vCPU thread has main's list too, whose EACCES a trap here would
	 * override. */
	FAIL(openat, EACCES, "no host path is reachable"),
	FAIL(rename, EACCES, "no log rotation by name"),
	FAIL(renameat, EACCES, "no log rotation by name"),
	FAIL(renameat2, EACCES, "no log rotation by name"),
	ALLOW(exit_group, "abort() on a broken invariant"),
};

/* A live migration's copy: reads guest memory, takes KVM's dirty log and
 * writes the stream to the descriptor it was given; every VM change is the
 * main thread's.  It is started only for migrate's fdname when sandboxed,
 * so it never makes a socket or connects. */
static const struct seccomp_rule migration_rules[] = {
	IOCTL(KVM_GET_DIRTY_LOG, "the pages the guest wrote since the last round"),
	IOCTL(KVM_CLEAR_DIRTY_LOG, "manual protect: a chunk's pages protected again right before it is sent"),
	ALLOW(write, "the stream to the connection; the eventfd that says it is done; stderr"),
	ALLOW(read, "post-copy: the other end's messages, the stream's pages, userfaultfd events"),
	ALLOW_IF(poll, 2, 0, "post-copy source: a page asked for? (never waits)"),
	ALLOW(epoll_wait, "post-copy destination: the fault thread waits on the userfaultfd"),
	ALLOW_IF(clock_nanosleep, 0, CLOCK_REALTIME, "the bandwidth limit (nanosleep)"),
	ALLOW(clock_gettime, "rounds timed, bandwidth paced (the vDSO's fallback)"),
	ALLOW(futex, "the statistics' lock"),
	ALLOW_MASKED(mmap, 2, PROT_EXEC, 0, "the dirty bitmaps (malloc in the thread's arena)"),
	ALLOW(munmap, "the dirty bitmaps freed"),
	ALLOW_MASKED(mprotect, 2, PROT_EXEC, 0, "malloc growing the thread's arena"),
	ALLOW(brk, "malloc"),
	ALLOW(madvise, "free; the thread's stack at exit"),
	ALLOW(tgkill, "auto-converge kicks the vCPUs; the SIGSYS report"),
	ALLOW(getpid, "tgkill's target"),
	ALLOW(gettid, "tgkill's target"),
	ALLOW(rt_sigreturn, "return from the SIGSYS report (--sandbox-log)"),
	ALLOW(rt_sigprocmask, "glibc at thread exit"),
	ALLOW(exit, "the thread ends"),
	ALLOW(exit_group, "abort() on a broken invariant"),
	/* The first round's page list reads /proc/self/pagemap by name; it
	 * fails and every non-zero page is sent instead (migration/snapshot.c). */
	IOCTL(UFFDIO_COPY, "post-copy destination: a page from the source placed"),
	IOCTL(UFFDIO_ZEROPAGE, "post-copy destination: a page the source never had"),
	IOCTL(UFFDIO_WAKE, "post-copy destination: a fault on a page placed meanwhile"),
	FAIL(openat, EACCES, "no host path is reachable"),
};

const struct seccomp_policy seccomp_policies[SANDBOX_THREAD_KINDS] = {
	[SANDBOX_THREAD_MAIN] = { "main", main_rules, sizeof(main_rules) / sizeof(main_rules[0]) },
	[SANDBOX_THREAD_VCPU] = { "vcpu", vcpu_rules, sizeof(vcpu_rules) / sizeof(vcpu_rules[0]) },
	[SANDBOX_THREAD_MIGRATION] = { "migration", migration_rules,
				       sizeof(migration_rules) / sizeof(migration_rules[0]) },
};
