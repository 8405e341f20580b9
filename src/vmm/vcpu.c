/* vCPU threads: the KVM_RUN loop and the dispatch of its exits. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <linux/kvm.h>

#include "arch/x86/arch.h"
#include "arch/x86/pvm_compat.h"
#include "log.h"
#include "pci/pci.h"
#include "sandbox.h"
#include "vm.h"

#define VCPU_KICK_SIGNAL SIGUSR1

static void vcpu_kick_handler(int sig)
{
	(void)sig;	/* only here to interrupt KVM_RUN */
}

int vcpu_create(struct vm *vm, struct vcpu *v, unsigned int id)
{
	static bool handler_installed;
	struct sigaction sa = { .sa_handler = vcpu_kick_handler };
	int r;

	if (!handler_installed) {
		/* No SA_RESTART: KVM_RUN must return EINTR when kicked. */
		sigemptyset(&sa.sa_mask);
		sigaction(VCPU_KICK_SIGNAL, &sa, NULL);
		handler_installed = true;
	}
	memset(v, 0, sizeof(*v));
	v->vm = vm;
	v->id = id;
	v->fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, id);
	if (v->fd < 0) {
		r = -errno;
		pr_err("cannot create vCPU %u: %s", id, strerror(-r));
		return r;
	}
	v->run = mmap(NULL, vm->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, 0);
	if (v->run == MAP_FAILED) {
		r = -errno;
		v->run = NULL;
		close(v->fd);
		v->fd = -1;
		return r;
	}
	return arch_vcpu_init(v);
}

void vcpu_destroy(struct vcpu *v)
{
	if (v->run)
		munmap(v->run, v->vm->run_size);
	if (v->fd >= 0)
		close(v->fd);
	v->run = NULL;
	v->fd = -1;
}

static void vcpu_crash(struct vcpu *v, const char *what)
{
	char where[384], msg[512];

	arch_describe_vcpu(v, where, sizeof(where));
	snprintf(msg, sizeof(msg), "%s on vCPU %u: %s", what, v->id, where);
	vm_request(v->vm, REASON_CRASH, msg);
}

static void vcpu_handle_io(struct vcpu *v)
{
	struct kvm_run *run = v->run;
	bool out = run->io.direction == KVM_EXIT_IO_OUT;
	uint8_t *data = (uint8_t *)run + run->io.data_offset;
	uint32_t i;

	/* GUEST: size and count come from KVM's decode of the guest's
	 * instruction; data stays inside the kvm_run page KVM gave us. */
	for (i = 0; i < run->io.count; i++, data += run->io.size) {
		if (!bus_access(&v->vm->pio, run->io.port, data, run->io.size, out) && !out)
			memset(data, 0xff, run->io.size);
	}
}

static void vcpu_handle_mmio(struct vcpu *v)
{
	struct kvm_run *run = v->run;
	unsigned int len = run->mmio.len;

	if (pvm_compat_mmio(v))
		return;
	/* GUEST: len is at most 8 (the size of run->mmio.data). */
	if (len > sizeof(run->mmio.data))
		len = sizeof(run->mmio.data);
	if (!bus_access(&v->vm->mmio, run->mmio.phys_addr, run->mmio.data, len,
			run->mmio.is_write) &&
	    !(v->vm->pci && pci_mmio_access(v->vm->pci, run->mmio.phys_addr,
					     run->mmio.data, len, run->mmio.is_write)) &&
	    !run->mmio.is_write)
		memset(run->mmio.data, 0xff, len);
}

static void vcpu_handle_system_event(struct vcpu *v)
{
	switch (v->run->system_event.type) {
	case KVM_SYSTEM_EVENT_SHUTDOWN:
		vm_request(v->vm, REASON_POWEROFF, NULL);
		break;
	case KVM_SYSTEM_EVENT_RESET:
		vm_request(v->vm, REASON_RESET, NULL);
		break;
	default:
		vcpu_crash(v, "guest crash event");
		break;
	}
}

/* Returns false when the vCPU must stop running guest code. */
static bool vcpu_handle_exit(struct vcpu *v)
{
	struct kvm_run *run = v->run;
	char what[96];

	switch (run->exit_reason) {
	case KVM_EXIT_IO:
		vcpu_handle_io(v);
		v->io_pending = true;
		return true;
	case KVM_EXIT_MMIO:
		vcpu_handle_mmio(v);
		v->io_pending = true;
		return true;
	case KVM_EXIT_INTR:
		return true;
	case KVM_EXIT_SYSTEM_EVENT:
		vcpu_handle_system_event(v);
		return false;
	case KVM_EXIT_SHUTDOWN:
		vcpu_crash(v, "guest triple fault");
		return false;
	case KVM_EXIT_X86_WRMSR:
		if (pvm_compat_wrmsr(v))
			return true;
		vcpu_crash(v, "unexpected MSR write exit");
		return false;
	case KVM_EXIT_INTERNAL_ERROR:
		if (pvm_compat_emulation_failure(v))
			return true;
		snprintf(what, sizeof(what), "KVM internal error (%s, suberror %u)",
			 run->internal.suberror == KVM_INTERNAL_ERROR_EMULATION ?
			 "instruction emulation failed" : "unexpected",
			 run->internal.suberror);
		vcpu_crash(v, what);
		return false;
	case KVM_EXIT_FAIL_ENTRY:
		snprintf(what, sizeof(what), "KVM entry failure (reason 0x%llx)",
			 (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
		vcpu_crash(v, what);
		return false;
	default:
		snprintf(what, sizeof(what), "unexpected KVM exit %u", run->exit_reason);
		vcpu_crash(v, what);
		return false;
	}
}

/* Waits while the VM wants its vCPUs parked; false once told to exit. */
static bool vcpu_wait_runnable(struct vcpu *v)
{
	struct vm *vm = v->vm;
	bool run;

	pthread_mutex_lock(&vm->lock);
	while (vm->cmd == VCPU_PARK || (vm->cmd == VCPU_RUN && v->unplugged)) {
		if (v->io_pending) {
			/* With immediate_exit set, KVM_RUN completes the
			 * instruction and returns EINTR without running on. */
			v->io_pending = false;
			v->run->immediate_exit = 1;
			pthread_mutex_unlock(&vm->lock);
			if (ioctl(v->fd, KVM_RUN, 0) == 0)
				vcpu_handle_exit(v);	/* may set io_pending again */
			pthread_mutex_lock(&vm->lock);
			continue;
		}
		if (!v->parked) {
			v->parked = true;
			pthread_cond_broadcast(&vm->cond);
		}
		pthread_cond_wait(&vm->cond, &vm->lock);
	}
	v->parked = false;
	run = vm->cmd == VCPU_RUN;
	if (run)
		v->run->immediate_exit = 0;
	pthread_mutex_unlock(&vm->lock);
	return run;
}

/* Auto-converge: sleeps throttle_pct of each 10 ms slice (10 ms of
 * running, then pct / (100 - pct) of that asleep), cut short when the VM
 * wants its vCPUs parked (a kick interrupts the sleep; the command is
 * read again). */
static void vcpu_throttle(struct vcpu *v)
{
	unsigned int pct = __atomic_load_n(&v->vm->throttle_pct, __ATOMIC_RELAXED);
	struct timespec until;
	uint64_t ns;

	if (!pct || pct > 99)
		return;
	/* Once a slice: every port or MMIO exit comes through here too. */
	clock_gettime(CLOCK_MONOTONIC, &until);
	ns = (uint64_t)until.tv_sec * 1000000000ULL + until.tv_nsec;
	if (ns - v->throttled_at < 10000000ULL)
		return;
	ns = 10000000ULL * pct / (100 - pct);
	until.tv_nsec += ns % 1000000000ULL;
	until.tv_sec += ns / 1000000000ULL + until.tv_nsec / 1000000000;
	until.tv_nsec %= 1000000000;
	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &until, NULL) == EINTR)
		if (__atomic_load_n(&v->vm->cmd, __ATOMIC_RELAXED) != VCPU_RUN ||
		    !__atomic_load_n(&v->vm->throttle_pct, __ATOMIC_RELAXED))
			break;
	clock_gettime(CLOCK_MONOTONIC, &until);
	v->throttled_at = (uint64_t)until.tv_sec * 1000000000ULL + until.tv_nsec;
}

static void *vcpu_thread(void *arg)
{
	struct vcpu *v = arg;
	char name[16];

	snprintf(name, sizeof(name), "vcpu%u", v->id);
	pthread_setname_np(pthread_self(), name);
	if (sandbox_thread_enter(SANDBOX_THREAD_VCPU)) {
		vm_request(v->vm, REASON_CRASH, "a vCPU thread could not enter the sandbox");
		return NULL;
	}
	while (vcpu_wait_runnable(v)) {
		vcpu_throttle(v);
		if (ioctl(v->fd, KVM_RUN, 0) < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			snprintf(name, sizeof(name), "KVM_RUN");
			pr_err("vCPU %u: KVM_RUN failed: %s", v->id, strerror(errno));
			vm_request(v->vm, REASON_CRASH, "KVM_RUN failed");
			continue;
		}
		if (!vcpu_handle_exit(v))
			continue;	/* the request parked us; loop to wait */
	}
	return NULL;
}

int vcpu_start(struct vcpu *v)
{
	int r = pthread_create(&v->thread, NULL, vcpu_thread, v);

	if (r) {
		pr_err("cannot start vCPU %u thread: %s", v->id, strerror(r));
		return -r;
	}
	v->thread_started = true;
	return 0;
}

void vcpu_kick(struct vcpu *v)
{
	if (!v->thread_started)
		return;
	v->run->immediate_exit = 1;
	pthread_kill(v->thread, VCPU_KICK_SIGNAL);
}

void vcpu_join(struct vcpu *v)
{
	if (v->thread_started)
		pthread_join(v->thread, NULL);
	v->thread_started = false;
}

/* Stops every vCPU outside KVM_RUN and waits until they all are. */
void vcpus_park(struct vm *vm)
{
	unsigned int i;
	bool all;

	pthread_mutex_lock(&vm->lock);
	if (vm->cmd == VCPU_RUN)
		vm->cmd = VCPU_PARK;
	for (i = 0; i < vm->ncpus; i++)
		vcpu_kick(&vm->vcpus[i]);
	for (;;) {
		all = true;
		for (i = 0; i < vm->ncpus; i++)
			if (vm->vcpus[i].thread_started && !vm->vcpus[i].parked)
				all = false;
		if (all || vm->cmd != VCPU_PARK)
			break;
		pthread_cond_wait(&vm->cond, &vm->lock);
	}
	pthread_mutex_unlock(&vm->lock);
}

/* Main thread: the vCPU the guest ejected stops for good (until a
 * reset); returns once its thread is out of KVM_RUN. */
void vcpu_unplug(struct vcpu *v)
{
	struct vm *vm = v->vm;

	pthread_mutex_lock(&vm->lock);
	v->unplugged = true;
	vcpu_kick(v);
	while (v->thread_started && !v->parked && vm->cmd != VCPU_EXIT)
		pthread_cond_wait(&vm->cond, &vm->lock);
	pthread_mutex_unlock(&vm->lock);
}

void vcpus_unpark(struct vm *vm)
{
	pthread_mutex_lock(&vm->lock);
	vm->cmd = VCPU_RUN;
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
}
