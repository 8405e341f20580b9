/* The KVM-PVM compatibility mode (--pvm-compat): stands in for what
 * hardware virtualization does, so a stock kernel runs on a KVM-PVM test
 * host.  Every hook returns at once when the mode is off.
 * docs/pvm-compat.md says what it changes in the guest. */
#ifndef KVMM_X86_PVM_COMPAT_H
#define KVMM_X86_PVM_COMPAT_H

#include <stdbool.h>

struct vm;
struct vcpu;

/* After KVM_CREATE_VM: refuses (-EPERM) on hosts with VMX/SVM, else sets
 * up the system-call path.  0 with the mode off. */
int pvm_compat_init(struct vm *vm);
void pvm_compat_destroy(struct vm *vm);
/* Exit hooks on the vCPU thread: true when the exit was the mode's and
 * was handled (the vCPU may run on). */
bool pvm_compat_emulation_failure(struct vcpu *v);
bool pvm_compat_mmio(struct vcpu *v);
bool pvm_compat_wrmsr(struct vcpu *v);
/* The per-instruction counts, on stderr (at exit). */
void pvm_compat_report(struct vm *vm);

#endif
