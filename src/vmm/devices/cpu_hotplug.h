/* ACPI CPU hotplug, QEMU's modern register interface (docs/hotplug.md):
 * vCPUs added to and removed from a running guest, up to --max-cpus.
 *
 * The 12 registers at X86_CPU_HOTPLUG_PORT: a CPU selector, the selected
 * CPU's flags (enabled, insert event, remove event; the guest clears the
 * events and asks for an eject there), a command (0: select a CPU with an
 * event, 1/2: _OST event/status, 3: its APIC ID) and the command's data.
 * An add or a removal request sets GPE 2, whose SCI makes the guest run
 * \_GPE._E02 -> CSCN, which notifies the processor devices.
 *
 * Adding creates the vCPU as at boot (KVM_CREATE_VCPU, CPUID, its thread)
 * waiting in the in-kernel LAPIC for the guest's INIT/SIPI.  KVM cannot
 * destroy a vCPU, so an ejected one is parked for good: its thread
 * waits, never to run the guest again, until a reset rebuilds the VM;
 * the same id can only be added again after that. */
#ifndef KVMM_CPU_HOTPLUG_H
#define KVMM_CPU_HOTPLUG_H

#include <stdbool.h>
#include <stddef.h>

struct vm;
struct device;

/* The machine has vCPU hotplug when --max-cpus is above --cpus. */
struct device *cpu_hotplug_create(struct vm *vm, struct device *pm);

/* Main thread.  0, or a negative errno and a message in err. */
int cpu_hotplug_add(struct vm *vm, unsigned int id, char *err, size_t errlen);
/* Asks the guest to give vCPU id back; "cpu-deleted" says when it did. */
int cpu_hotplug_del(struct vm *vm, unsigned int id, char *err, size_t errlen);
/* Whether a removal of vCPU id is pending. */
bool cpu_hotplug_removing(struct vm *vm, unsigned int id);
/* Main thread: acts on the guest's ejects that waited for a live
 * migration's end. */
void cpu_hotplug_kick(struct vm *vm);

#endif
