/* The hooks shared code calls into the x86 machine. */
#ifndef KVMM_X86_ARCH_H
#define KVMM_X86_ARCH_H

#include <stddef.h>

struct vm;
struct vcpu;

/* VM-wide state: TSS, in-kernel irqchip and PIT. */
int arch_vm_init(struct vm *vm);
/* Reads and checks the kernel and initrd files before anything else is
 * created, so bad input fails early and leaves nothing behind. */
int arch_prepare_boot(struct vm *vm);
/* Kernel, initrd, command line, boot parameters, ACPI tables. */
int arch_load_kernel(struct vm *vm);
/* Registers, CPUID and MSRs of a freshly created vCPU. */
int arch_vcpu_init(struct vcpu *v);
/* After arch_vcpu_init, for a vCPU added to a VM that already ran. */
int arch_vcpu_hotadd(struct vcpu *v);
/* A one-line description of where the vCPU is: RIP and instruction bytes. */
void arch_describe_vcpu(struct vcpu *v, char *buf, size_t len);

#endif
