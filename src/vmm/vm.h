/* The VM object and its state machine:
 *
 *   created --start--> running <--pause/resume--> paused
 *      running/paused --poweroff|quit|crash|signal|reset(no-reboot)--> shutdown
 *      running --reset--> running (same process, fresh KVM VM, kernel reloaded)
 *
 * vCPU threads never change the state themselves: they post a request
 * (vm_request) and the main thread acts on it, so every transition
 * happens in one place. */
#ifndef KVMM_VM_H
#define KVMM_VM_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "device.h"
#include "memory.h"

/* Exit statuses of the kvmm process (documented in docs/kvmm.md). */
enum {
	KVMM_EXIT_POWEROFF = 0,	/* guest powered off, or quit requested */
	KVMM_EXIT_ERROR = 1,	/* bad configuration or start-up failure */
	KVMM_EXIT_REBOOT = 2,	/* guest reset with --no-reboot */
	KVMM_EXIT_CRASH = 3,	/* triple fault or KVM internal error */
	KVMM_EXIT_SIGNAL = 4,	/* stopped by SIGTERM / SIGINT / SIGHUP */
};

enum vm_state { VM_CREATED, VM_RUNNING, VM_PAUSED, VM_SHUTDOWN };

/* Why the VM stopped (or reset); named in events. */
enum vm_reason {
	REASON_NONE,
	REASON_POWEROFF,	/* guest ACPI S5 */
	REASON_RESET,		/* guest reset request */
	REASON_CRASH,
	REASON_SIGNAL,
	REASON_QUIT,		/* control socket "quit" or console escape */
	REASON_USER,		/* pause/resume/reset from the control socket */
	REASON_BOOT,
	REASON_IO_ERROR,	/* a disk's error policy stopped it */
};

/* A host I/O error a disk met, for the block-io-error event. */
struct vm_io_error {
	char device[16];	/* "disk0" */
	const char *op;		/* "read", "write", "flush" */
	int error;		/* positive errno */
	const char *action;	/* "stop", "report", "ignore" */
};

#define VM_IO_ERRORS_PENDING	16

enum vcpu_cmd { VCPU_RUN, VCPU_PARK, VCPU_EXIT };

/* How the boot vCPU enters the kernel (set by arch_load_kernel). */
enum boot_entry_mode { BOOT_ENTRY_64, BOOT_ENTRY_PVH };
struct boot_entry {
	enum boot_entry_mode mode;
	uint64_t rip, rsi, rbx;
};

struct vcpu {
	struct vm *vm;
	unsigned int id;
	int fd;
	struct kvm_run *run;
	pthread_t thread;
	bool thread_started;
	bool parked;
	/* The last exit was port I/O or MMIO: KVM finishes the instruction
	 * only on the next KVM_RUN, so one runs before parking (a saved
	 * state must not miss it). */
	bool io_pending;
	uint64_t throttled_at;	/* auto-converge: when it last slept */
	/* The guest ejected it (vCPU hotplug): its thread stays parked until
	 * a reset, as KVM cannot destroy a vCPU. */
	bool unplugged;
};

struct loop;
struct api;
struct chardev;
struct acpi_pm;
struct pci_bus;
struct irq_routes;
struct pvm_compat;

struct vm {
	struct vm_config *cfg;
	int kvm_fd;
	int vm_fd;
	int run_size;
	unsigned int max_vcpus;
	/* KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 on: KVM_GET_DIRTY_LOG leaves
	 * the pages writable, kvm_clear_dirty protects them (kvm.c). */
	bool dirty_manual;

	struct guest_memory mem;
	uint8_t *kernel, *initrd;	/* image files, read once at start */
	size_t kernel_len, initrd_len;
	struct boot_entry entry;
	struct bus pio, mmio;
	struct device *devices;		/* creation order */
	struct chardev *serial_backend;
	struct chardev *console_backend;	/* the virtio console's, if any */
	struct acpi_pm *pm;
	struct irq_routes *irq;		/* MSI routes and their irqfds */
	struct pci_bus *pci;		/* bus 0; its BARs take MMIO the bus above does not */
	struct pvm_compat *pvm;		/* --pvm-compat's state, NULL when off */

	unsigned int ncpus;		/* vCPU slots: --max-cpus */
	struct vcpu *vcpus;
	/* Main thread: the slots the guest has a vCPU in (the boot set and
	 * the hot-added ones, less the ejected). */
	bool *cpu_present;

	pthread_mutex_t lock;		/* state, cmd, request, parked flags */
	pthread_cond_t cond;
	enum vm_state state;
	enum vcpu_cmd cmd;
	/* Main loop: a "reboot" was asked for, so the guest's next poweroff
	 * resets it instead (libvirt's reboot by ACPI, as QEMU's fake
	 * reboot). */
	bool reboot_on_poweroff;
	enum vm_reason request;		/* posted by vm_request, taken by main */
	char request_msg[512];
	int request_fd;			/* eventfd: wakes the main loop */
	/* Host I/O errors not yet announced, and whether one asked for a
	 * stop (vm_io_error; taken by main). */
	struct vm_io_error io_errors[VM_IO_ERRORS_PENDING];
	unsigned int nio_errors;
	bool io_stop;

	uint64_t start_ns;		/* for uptime */
	/* Where the start's time goes (-v): KVM's memory slots grow with
	 * the configured RAM on shadow-paging hosts, the rest must not. */
	uint64_t create_ns;		/* vm_create began */
	uint64_t slots_ns;		/* spent in KVM_SET_USER_MEMORY_REGION */
	unsigned int boots;
	enum vm_reason stop_reason;
	int exit_status;
	bool clock_saved;
	uint8_t clock_data[48];		/* struct kvm_clock_data while paused */
	/* The configuration as JSON, for the state stream (main.c owns it). */
	const char *config_json;
	/* Pages a restore mapped from its stream (bitmap), which a later
	 * save must carry even if the guest never touched them since. */
	uint8_t *restored_pages;
	/* A live migration's auto-converge: the share (0-99) of each 10 ms
	 * the vCPUs sleep before entering the guest (vcpu.c), kicked out of
	 * KVM_RUN by the migration thread every 10 ms meanwhile. */
	unsigned int throttle_pct;	/* __atomic */

	struct loop *loop;
	struct api *api;
};

int vm_create(struct vm *vm, struct vm_config *cfg, struct loop *loop);
/* For a restore: the same VM, its memory left for the stream to fill
 * (no kernel, tables or boot registers written). */
int vm_create_for_restore(struct vm *vm, struct vm_config *cfg, struct loop *loop);
int vm_start(struct vm *vm);
void vm_destroy(struct vm *vm);

/* From any thread: ask the main thread to stop or reset the VM. */
void vm_request(struct vm *vm, enum vm_reason reason, const char *msg);
/* From any thread, a device's lock held or not: a disk met a host I/O
 * error and its policy chose action; the main thread announces it
 * (block-io-error) and, for "stop", pauses the VM (reason io-error). */
void vm_io_error(struct vm *vm, const char *device, const char *op, int error,
		 const char *action);
/* Main thread: act on a posted request. */
void vm_handle_request(struct vm *vm);

int vm_pause(struct vm *vm);
int vm_resume(struct vm *vm);
int vm_reset(struct vm *vm);
void vm_stop(struct vm *vm, enum vm_reason reason, int status);

const char *vm_state_name(enum vm_state s);
const char *vm_reason_name(enum vm_reason r);

/* kvm.c: the VM-level ioctls. */
int kvm_open(struct vm *vm);
int kvm_create_vm(struct vm *vm);
void kvm_destroy_vm(struct vm *vm);
int kvm_irq_line(struct vm *vm, unsigned int gsi, int level);
int kvm_clock_save(struct vm *vm);
/* MSI routes (GSI -> address/data) set on top of the irqchip's defaults;
 * unused entries are skipped. */
struct kvm_msi_route {
	bool used;
	unsigned int gsi;
	uint64_t addr;
	uint32_t data;
};
int kvm_set_msi_routes(struct vm *vm, const struct kvm_msi_route *r,
		       unsigned int n);
int kvm_irqfd(struct vm *vm, int fd, unsigned int gsi, bool assign);
/* Any-value ioeventfd on an MMIO address of len bytes. */
int kvm_ioeventfd(struct vm *vm, uint64_t addr, unsigned int len, int fd,
		  bool assign);
int kvm_clock_restore(struct vm *vm);
/* KVM's dirty log on the RAM slots (live migration): on or off, 0 or
 * -errno.  kvm_take_dirty ORs the pages the guest wrote since the last
 * call into out (bit p of byte p/8 = page p, the regions back to back);
 * without vm->dirty_manual it also clears and write-protects them in
 * KVM, with it they stay dirty until kvm_clear_dirty(bm, first, n)
 * clears and protects the pages of [first, first + n) set in bm, which
 * the caller does right before it reads them. */
int kvm_dirty_log(struct vm *vm, bool on);
int kvm_take_dirty(struct vm *vm, uint8_t *out);
int kvm_clear_dirty(struct vm *vm, const uint8_t *bm, uint64_t first, uint64_t n);

/* vcpu.c */
int vcpu_create(struct vm *vm, struct vcpu *v, unsigned int id);
int vcpu_start(struct vcpu *v);
void vcpu_kick(struct vcpu *v);
void vcpu_join(struct vcpu *v);
void vcpu_destroy(struct vcpu *v);
void vcpus_park(struct vm *vm);
void vcpus_unpark(struct vm *vm);
void vcpu_unplug(struct vcpu *v);

#endif
