/* The VM object: creation, the state machine and its transitions. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "api.h"
#include "block/block.h"
#include "chardev.h"
#include "loop.h"
#include "arch/x86/arch.h"
#include "arch/x86/layout.h"
#include "arch/x86/pvm_compat.h"
#include "devices/devices.h"
#include "irq.h"
#include "log.h"
#include "util.h"
#include "virtio/virtio.h"
#include "vm.h"
#include "migration/live.h"
#include "migration/postcopy.h"

static const char *const state_names[] = {
	[VM_CREATED] = "created", [VM_RUNNING] = "running",
	[VM_PAUSED] = "paused", [VM_SHUTDOWN] = "shutdown",
};

static const char *const reason_names[] = {
	[REASON_NONE] = "none", [REASON_POWEROFF] = "poweroff",
	[REASON_RESET] = "reset", [REASON_CRASH] = "crash",
	[REASON_SIGNAL] = "signal", [REASON_QUIT] = "quit",
	[REASON_USER] = "user", [REASON_BOOT] = "boot",
	[REASON_IO_ERROR] = "io-error",
};

const char *vm_state_name(enum vm_state s)
{
	return state_names[s];
}

const char *vm_reason_name(enum vm_reason r)
{
	return reason_names[r];
}

static int vm_create_vcpus(struct vm *vm)
{
	unsigned int i;
	int r;

	for (i = 0; i < vm->ncpus; i++) {
		if (!vm->cpu_present[i])
			continue;
		r = vcpu_create(vm, &vm->vcpus[i], i);
		if (r)
			return r;
	}
	return 0;
}

static void vm_destroy_vcpus(struct vm *vm)
{
	unsigned int i;

	for (i = 0; i < vm->ncpus; i++)
		vcpu_destroy(&vm->vcpus[i]);
}

/* Output kept for the first client of a unix console socket: the
 * guest's first lines race the client's connect (docs/kvmm.md). */
#define CONSOLE_BACKLOG		(64 * 1024)

/* The virtio console's host end, when the configuration asks for one. */
static int console_open(struct vm *vm, const struct vm_config *cfg, struct loop *loop)
{
	int r;

	if (!cfg->has_console)
		return 0;
	vm->console_backend = calloc(1, sizeof(*vm->console_backend));
	if (!vm->console_backend)
		return -ENOMEM;
	vm->console_backend->what = "virtio console";
	vm->console_backend->backlog_max = CONSOLE_BACKLOG;
	r = chardev_open(vm->console_backend, &cfg->console, loop);
	if (r) {
		free(vm->console_backend);
		vm->console_backend = NULL;
	}
	return r;
}

static int vm_build(struct vm *vm, struct vm_config *cfg, struct loop *loop, bool boot)
{
	unsigned int i;
	int r;

	memset(vm, 0, sizeof(*vm));
	vm->create_ns = now_ns();
	vm->cfg = cfg;
	vm->loop = loop;
	vm->kvm_fd = vm->vm_fd = vm->request_fd = -1;
	vm->ncpus = cfg->max_cpus;
	pthread_mutex_init(&vm->lock, NULL);
	pthread_cond_init(&vm->cond, NULL);

	r = kvm_open(vm);
	if (r)
		return r;
	r = arch_prepare_boot(vm);
	if (r)
		return r;
	if (cfg->max_cpus > vm->max_vcpus) {
		pr_err("%u vCPUs requested but KVM allows at most %u on this host: lower --%s",
		       cfg->max_cpus, vm->max_vcpus, cfg->max_cpus > cfg->cpus ? "max-cpus" : "cpus");
		return -EINVAL;
	}
	vm->vcpus = calloc(vm->ncpus, sizeof(*vm->vcpus));
	vm->cpu_present = calloc(vm->ncpus, sizeof(*vm->cpu_present));
	if (!vm->vcpus || !vm->cpu_present)
		return -ENOMEM;
	for (i = 0; i < vm->ncpus; i++) {
		vm->vcpus[i].fd = -1;
		vm->cpu_present[i] = config_cpu_present(cfg, i);
	}
	vm->request_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (vm->request_fd < 0)
		return -errno;

	r = guest_mem_init_huge(&vm->mem, cfg->memory, cfg->hugepages,
				X86_MMIO_HOLE_START, X86_HIGH_RAM_START);
	if (r && !cfg->hugepages) {
		pr_err("cannot map %llu MiB of guest memory: %s; lower --memory",
		       (unsigned long long)(cfg->memory >> 20), strerror(-r));
		return r;
	}
	if (r)
		return r;	/* guest_mem_init_huge() said why */
	if (cfg->thp)
		guest_mem_use_thp(&vm->mem);
	if (cfg->ksm)
		guest_mem_use_ksm(&vm->mem);
	if (cfg->locked) {
		r = guest_mem_lock(&vm->mem);
		if (r) {
			pr_err("cannot lock %llu MiB of guest memory: %s",
			       (unsigned long long)(cfg->memory >> 20), strerror(-r));
			return r;
		}
	}
	r = kvm_create_vm(vm);
	if (r)
		return r;
	r = irq_init(vm);
	if (r)
		return r;
	vm->serial_backend = calloc(1, sizeof(*vm->serial_backend));
	if (!vm->serial_backend)
		return -ENOMEM;
	r = chardev_open(vm->serial_backend, &cfg->serial, loop);
	if (r) {
		free(vm->serial_backend);
		vm->serial_backend = NULL;
		return r;
	}
	r = console_open(vm, cfg, loop);
	if (r)
		return r;
	r = devices_create(vm);
	if (r)
		return r;
	if (boot) {
		r = arch_load_kernel(vm);
		if (r)
			return r;
	}
	return vm_create_vcpus(vm);
}

int vm_create(struct vm *vm, struct vm_config *cfg, struct loop *loop)
{
	return vm_build(vm, cfg, loop, true);
}

int vm_create_for_restore(struct vm *vm, struct vm_config *cfg, struct loop *loop)
{
	return vm_build(vm, cfg, loop, false);
}

int vm_start(struct vm *vm)
{
	unsigned int i;
	int r;

	/* --paused holds the first boot only (as QEMU's -S): the threads
	 * park before their first KVM_RUN, so "resume" runs the guest from
	 * its first instruction; a reset afterwards runs at once. */
	bool paused = vm->cfg->paused && vm->boots == 0;

	vm->cmd = paused ? VCPU_PARK : VCPU_RUN;
	vm->start_ns = now_ns();
	if (vm->boots == 0)
		pr_info("start: %llu us of setup before the vCPUs run, %llu us of it KVM taking %llu MiB of guest RAM into its memory slots",
			(unsigned long long)((vm->start_ns - vm->create_ns) / 1000),
			(unsigned long long)(vm->slots_ns / 1000),
			(unsigned long long)(vm->mem.size >> 20));
	vm->boots++;
	for (i = 0; i < vm->ncpus; i++) {
		if (!vm->cpu_present[i])
			continue;
		r = vcpu_start(&vm->vcpus[i]);
		if (r)
			return r;
	}
	vm->state = paused ? VM_PAUSED : VM_RUNNING;
	api_event_state(vm->api, vm, REASON_BOOT);
	return 0;
}

static void vm_join_vcpus(struct vm *vm)
{
	unsigned int i;

	pthread_mutex_lock(&vm->lock);
	vm->cmd = VCPU_EXIT;
	pthread_cond_broadcast(&vm->cond);
	for (i = 0; i < vm->ncpus; i++)
		vcpu_kick(&vm->vcpus[i]);
	pthread_mutex_unlock(&vm->lock);
	for (i = 0; i < vm->ncpus; i++)
		vcpu_join(&vm->vcpus[i]);
}

void vm_destroy(struct vm *vm)
{
	if (!vm->cfg)
		return;		/* never created */
	live_migrate_abort(vm, "kvmm is stopping");
	postcopy_incoming_stop(vm);
	if (vm->vcpus) {
		vm_join_vcpus(vm);
		vm_destroy_vcpus(vm);
		free(vm->vcpus);
		vm->vcpus = NULL;
	}
	free(vm->cpu_present);
	vm->cpu_present = NULL;
	devices_destroy(vm);
	irq_destroy(vm);
	if (vm->serial_backend) {
		chardev_close(vm->serial_backend);
		free(vm->serial_backend);
		vm->serial_backend = NULL;
	}
	if (vm->console_backend) {
		chardev_close(vm->console_backend);
		free(vm->console_backend);
		vm->console_backend = NULL;
	}
	pvm_compat_destroy(vm);
	kvm_destroy_vm(vm);
	guest_mem_destroy(&vm->mem);
	free(vm->restored_pages);
	vm->restored_pages = NULL;
	free(vm->kernel);
	free(vm->initrd);
	vm->kernel = vm->initrd = NULL;
	if (vm->request_fd >= 0)
		close(vm->request_fd);
	if (vm->kvm_fd >= 0)
		close(vm->kvm_fd);
	vm->request_fd = vm->kvm_fd = -1;
}

void vm_request(struct vm *vm, enum vm_reason reason, const char *msg)
{
	uint64_t one = 1;

	pthread_mutex_lock(&vm->lock);
	/* The first request to stop wins (a crash on one vCPU while another
	 * powers off must not be overwritten), and any stop request wins over
	 * a pending reset, or a quit right after a reset would be lost. */
	if (vm->request == REASON_NONE ||
	    (vm->request == REASON_RESET && reason != REASON_RESET)) {
		vm->request = reason;
		snprintf(vm->request_msg, sizeof(vm->request_msg), "%s", msg ? msg : "");
	}
	if (vm->cmd == VCPU_RUN)
		vm->cmd = VCPU_PARK;
	pthread_mutex_unlock(&vm->lock);
	if (write(vm->request_fd, &one, sizeof(one)) < 0)
		pr_debug("request eventfd: %s", strerror(errno));
}

void vm_stop(struct vm *vm, enum vm_reason reason, int status)
{
	if (vm->state == VM_SHUTDOWN)
		return;
	vcpus_park(vm);
	vm->state = VM_SHUTDOWN;
	vm->stop_reason = reason;
	vm->exit_status = status;
	api_event_state(vm->api, vm, reason);
	loop_quit(vm->loop);
}

static int pause_for(struct vm *vm, enum vm_reason reason)
{
	if (vm->state == VM_PAUSED)
		return 0;
	if (vm->state != VM_RUNNING)
		return -EINVAL;
	vcpus_park(vm);
	if (kvm_clock_save(vm))
		pr_debug("KVM_GET_CLOCK failed; the guest clock will jump on resume");
	vm->state = VM_PAUSED;
	api_event_state(vm->api, vm, reason);
	return 0;
}

int vm_pause(struct vm *vm)
{
	return pause_for(vm, REASON_USER);
}

void vm_io_error(struct vm *vm, const char *device, const char *op, int error,
		 const char *action)
{
	uint64_t one = 1;

	pthread_mutex_lock(&vm->lock);
	/* Past the ring's room the events are dropped, never the stop. */
	if (vm->nio_errors < VM_IO_ERRORS_PENDING) {
		struct vm_io_error *e = &vm->io_errors[vm->nio_errors++];

		snprintf(e->device, sizeof(e->device), "%s", device);
		e->op = op;
		e->error = error;
		e->action = action;
	}
	if (!strcmp(action, "stop"))
		vm->io_stop = true;
	pthread_mutex_unlock(&vm->lock);
	if (write(vm->request_fd, &one, sizeof(one)) < 0)
		pr_debug("request eventfd: %s", strerror(errno));
}

/* Main thread: announces the pending host I/O errors and stops the VM
 * if one asked for it. */
static void take_io_errors(struct vm *vm)
{
	struct vm_io_error errs[VM_IO_ERRORS_PENDING];
	unsigned int i, n;
	bool stop;

	pthread_mutex_lock(&vm->lock);
	n = vm->nio_errors;
	memcpy(errs, vm->io_errors, n * sizeof(errs[0]));
	stop = vm->io_stop;
	vm->nio_errors = 0;
	vm->io_stop = false;
	pthread_mutex_unlock(&vm->lock);
	for (i = 0; i < n; i++)
		api_event_block_io_error(vm->api, &errs[i]);
	if (stop && vm->state == VM_RUNNING) {
		pr_warn("VM paused: a disk's error policy is stop; resume retries the failed requests");
		pause_for(vm, REASON_IO_ERROR);
	}
}

int vm_resume(struct vm *vm)
{
	struct device *d;

	if (vm->state == VM_RUNNING)
		return 0;
	if (vm->state != VM_PAUSED)
		return -EINVAL;
	if (live_migrate_guest_lost(vm))
		return -EPERM;
	/* Disks a migration let go of, or never took (its destination). */
	if (block_lock_all(true))
		return -EBUSY;
	if (kvm_clock_restore(vm))
		pr_debug("KVM_SET_CLOCK failed");
	vm->state = VM_RUNNING;
	vcpus_unpark(vm);
	api_event_state(vm->api, vm, REASON_USER);
	devices_resume(vm);
	/* Kicks that came while the VM was paused started nothing. */
	for (d = vm->devices; d; d = d->next)
		virtio_pci_resume(d);
	return 0;
}

/* A reset rebuilds the KVM side from scratch (new VM fd, irqchip, vCPUs)
 * rather than resetting each piece of in-kernel state by hand: it is the
 * only way to be sure nothing of the old boot survives. */
int vm_reset(struct vm *vm)
{
	int r;

	/* The migration reads the KVM VM this replaces. */
	live_migrate_abort(vm, "the guest was reset during the migration");
	vm_join_vcpus(vm);
	vm_destroy_vcpus(vm);
	kvm_destroy_vm(vm);
	vm->clock_saved = false;
	vm->reboot_on_poweroff = false;	/* whatever reset it, it rebooted */
	guest_mem_discard(&vm->mem);
	free(vm->restored_pages);	/* all zeros now */
	vm->restored_pages = NULL;
	devices_reset(vm);
	r = kvm_create_vm(vm);
	if (!r)
		r = irq_attach(vm);
	if (!r)
		r = arch_load_kernel(vm);
	if (!r)
		r = vm_create_vcpus(vm);
	if (r) {
		vm_request(vm, REASON_CRASH, "the VM could not be rebuilt after a reset");
		return r;
	}
	pthread_mutex_lock(&vm->lock);
	vm->request = REASON_NONE;
	pthread_mutex_unlock(&vm->lock);
	api_event_reset(vm->api, vm);
	return vm_start(vm);
}

void vm_handle_request(struct vm *vm)
{
	enum vm_reason req;
	char msg[sizeof(vm->request_msg)];
	uint64_t n;

	if (read(vm->request_fd, &n, sizeof(n)) < 0 && errno != EAGAIN)
		pr_debug("request eventfd: %s", strerror(errno));
	pthread_mutex_lock(&vm->lock);
	req = vm->request;
	memcpy(msg, vm->request_msg, sizeof(msg));
	pthread_mutex_unlock(&vm->lock);
	if (vm->state == VM_SHUTDOWN)
		return;
	take_io_errors(vm);
	if (req == REASON_POWEROFF && vm->reboot_on_poweroff) {
		pr_info("guest powered off after a reboot request");
		req = REASON_RESET;
	}

	switch (req) {
	case REASON_NONE:
		break;
	case REASON_POWEROFF:
		pr_info("guest powered off");
		vm_stop(vm, REASON_POWEROFF, KVMM_EXIT_POWEROFF);
		break;
	case REASON_RESET:
		if (vm->cfg->no_reboot) {
			pr_info("guest reset; exiting because of --no-reboot");
			vm_stop(vm, REASON_RESET, KVMM_EXIT_REBOOT);
		} else {
			pr_info("guest reset; rebooting");
			if (vm_reset(vm))
				vm_stop(vm, REASON_CRASH, KVMM_EXIT_CRASH);
		}
		break;
	case REASON_CRASH:
		pr_err("%s", msg);
		vm_stop(vm, REASON_CRASH, KVMM_EXIT_CRASH);
		break;
	default:
		vm_stop(vm, req, KVMM_EXIT_POWEROFF);
		break;
	}
}
