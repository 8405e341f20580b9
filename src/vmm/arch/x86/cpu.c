/* x86 machine and vCPU set-up: in-kernel irqchip and PIT, the boot
 * vCPU's entry state (64-bit Linux boot protocol or 32-bit PVH), CPUID. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include <linux/kvm.h>

#include "arch.h"
#include "boot.h"
#include "devices/fw_cfg.h"
#include "layout.h"
#include "log.h"
#include "pvm_compat.h"
#include "util.h"
#include "vm.h"

#define CR0_PE (1u << 0)
#define CR0_ET (1u << 4)
#define CR0_NE (1u << 5)
#define CR0_PG (1u << 31)
#define CR4_PAE (1u << 5)
#define EFER_LME (1u << 8)
#define EFER_LMA (1u << 10)
#define MSR_MTRR_DEF_TYPE	0x2ff
#define MTRR_DEF_TYPE_E		(1u << 11)
#define MTRR_TYPE_WB		6


int arch_vm_init(struct vm *vm)
{
	struct kvm_pit_config pit = { .flags = KVM_PIT_SPEAKER_DUMMY };
	uint64_t idmap = X86_IDMAP_ADDR;

	if (ioctl(vm->vm_fd, KVM_SET_TSS_ADDR, (unsigned long)X86_TSS_ADDR) < 0 ||
	    ioctl(vm->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &idmap) < 0) {
		pr_err("cannot set KVM's TSS/identity-map pages: %s", strerror(errno));
		return -errno;
	}
	if (ioctl(vm->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0) {
		pr_err("cannot create the in-kernel interrupt controller: %s", strerror(errno));
		return -errno;
	}
	if (ioctl(vm->vm_fd, KVM_CREATE_PIT2, &pit) < 0) {
		pr_err("cannot create the in-kernel PIT: %s", strerror(errno));
		return -errno;
	}
	return pvm_compat_init(vm);
}

static void seg_flat(struct kvm_segment *s, uint16_t sel, uint8_t type, bool code64)
{
	*s = (struct kvm_segment){
		.base = 0, .limit = 0xffffffff, .selector = sel, .type = type,
		.present = 1, .dpl = 0, .db = !code64, .s = 1, .l = code64, .g = 1,
	};
}

static int vcpu_set_entry_state(struct vcpu *v)
{
	const struct boot_entry *e = &v->vm->entry;
	struct kvm_sregs sregs;
	struct kvm_regs regs = { .rflags = 0x2 };
	struct kvm_fpu fpu = { .fcw = 0x37f, .mxcsr = 0x1f80 };

	if (ioctl(v->fd, KVM_GET_SREGS, &sregs) < 0)
		return -errno;
	sregs.gdt.base = X86_GDT_ADDR;
	sregs.gdt.limit = 4 * 8 - 1;
	if (e->mode == BOOT_ENTRY_64) {
		seg_flat(&sregs.cs, 0x10, 0xb, true);
		seg_flat(&sregs.ds, 0x18, 0x3, false);
		sregs.cr3 = X86_PML4_ADDR;
		sregs.cr4 = CR4_PAE;
		sregs.cr0 = CR0_PE | CR0_PG | CR0_ET | CR0_NE;
		sregs.efer = EFER_LME | EFER_LMA;
	} else {
		/* PVH: flat 32-bit protected mode, paging off. */
		seg_flat(&sregs.cs, 0x10, 0xb, false);
		seg_flat(&sregs.ds, 0x18, 0x3, false);
		sregs.cr0 = CR0_PE | CR0_ET | CR0_NE;
		sregs.cr4 = 0;
		sregs.efer = 0;
	}
	sregs.es = sregs.fs = sregs.gs = sregs.ss = sregs.ds;
	sregs.tr = (struct kvm_segment){ .limit = 0x67, .type = 0xb, .present = 1,
					 .selector = 0 };
	regs.rip = e->rip;
	regs.rsi = e->rsi;
	regs.rbx = e->rbx;
	if (ioctl(v->fd, KVM_SET_SREGS, &sregs) < 0 ||
	    ioctl(v->fd, KVM_SET_REGS, &regs) < 0 ||
	    ioctl(v->fd, KVM_SET_FPU, &fpu) < 0)
		return -errno;
	return 0;
}

/* Host-supported CPUID with this vCPU's APIC ID and the VM's topology:
 * every vCPU a core of one package. */
static int vcpu_set_cpuid(struct vcpu *v)
{
	unsigned int nent = 256, i, ncpus = v->vm->ncpus, shift = 0;
	struct kvm_cpuid2 *c;
	int r = 0;

	while ((1u << shift) < ncpus)
		shift++;
	c = calloc(1, sizeof(*c) + nent * sizeof(c->entries[0]));
	if (!c)
		return -ENOMEM;
	c->nent = nent;
	if (ioctl(v->vm->kvm_fd, KVM_GET_SUPPORTED_CPUID, c) < 0) {
		r = -errno;
		goto out;
	}
	for (i = 0; i < c->nent; i++) {
		struct kvm_cpuid_entry2 *e = &c->entries[i];

		switch (e->function) {
		case 1:
			e->ebx = (e->ebx & 0xffff) | (v->id << 24) |
				 (MIN(ncpus, 255u) << 16);
			e->ecx |= 1u << 31;			/* hypervisor */
			if (ncpus > 1)
				e->edx |= 1u << 28;		/* HTT */
			break;
		case 0xb:
		case 0x1f:
			e->edx = v->id;
			if (e->index == 0) {
				e->eax = 0;
				e->ebx = 1;
				e->ecx = (1 << 8) | 0;		/* SMT level */
			} else if (e->index == 1) {
				e->eax = shift;
				e->ebx = ncpus;
				e->ecx = (2 << 8) | 1;		/* core level */
			} else {
				e->eax = e->ebx = 0;
				e->ecx = e->index;
			}
			break;
		}
	}
	if (ioctl(v->fd, KVM_SET_CPUID2, c) < 0)
		r = -errno;
out:
	free(c);
	return r;
}

/* With no firmware to enable the MTRRs, every vCPU starts as firmware
 * leaves a PC: MTRRs on, RAM write-back by default.  Linux turns PAT off
 * (no write-combining) when it finds them disabled; the MMIO holes need
 * no range, as drivers map them uncached through PAT. */
static int vcpu_set_mtrr(struct vcpu *v)
{
	struct {
		struct kvm_msrs h;
		struct kvm_msr_entry e;
	} m = { .h.nmsrs = 1, .e.index = MSR_MTRR_DEF_TYPE,
		.e.data = MTRR_DEF_TYPE_E | MTRR_TYPE_WB };
	int r = ioctl(v->fd, KVM_SET_MSRS, &m);

	if (r < 0)
		return -errno;
	return r == 1 ? 0 : -EINVAL;
}

int arch_vcpu_init(struct vcpu *v)
{
	int r = vcpu_set_cpuid(v);

	if (r) {
		pr_err("cannot set CPUID of vCPU %u: %s", v->id, strerror(-r));
		return r;
	}
	r = vcpu_set_mtrr(v);
	if (r) {
		pr_err("cannot enable the MTRRs of vCPU %u: %s", v->id, strerror(-r));
		return r;
	}
	/* Application processors wait for INIT/SIPI in the in-kernel LAPIC. */
	if (v->id != 0)
		return 0;
	r = vcpu_set_entry_state(v);
	if (r)
		pr_err("cannot set the boot vCPU's registers: %s", strerror(-r));
	return r;
}

/* KVM builds its map of APIC IDs (which vCPU an IPI goes to) when the
 * LAPIC's state is set, and a vCPU created once the others ran is not in
 * it yet on some hosts: the guest's INIT/SIPI would find no one.  Setting
 * the LAPIC's own state back rebuilds the map, as QEMU's register sync of
 * a new vCPU does. */
int arch_vcpu_hotadd(struct vcpu *v)
{
	struct kvm_lapic_state lapic;

	if (ioctl(v->fd, KVM_GET_LAPIC, &lapic) < 0 ||
	    ioctl(v->fd, KVM_SET_LAPIC, &lapic) < 0) {
		pr_err("cannot set the LAPIC of vCPU %u: %s", v->id, strerror(errno));
		return -errno;
	}
	return 0;
}

void arch_describe_vcpu(struct vcpu *v, char *buf, size_t len)
{
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kvm_translation tr;
	char bytes[64] = "";
	const uint8_t *code;
	unsigned int i, n = 0;
	uint64_t note;
	uint32_t note_size;

	if (ioctl(v->fd, KVM_GET_REGS, &regs) < 0 ||
	    ioctl(v->fd, KVM_GET_SREGS, &sregs) < 0) {
		snprintf(buf, len, "registers unavailable (%s)", strerror(errno));
		return;
	}
	tr = (struct kvm_translation){ .linear_address = sregs.cs.base + regs.rip };
	if (!(sregs.cr0 & CR0_PG))
		tr.physical_address = tr.linear_address, tr.valid = 1;
	else if (ioctl(v->fd, KVM_TRANSLATE, &tr) < 0)
		tr.valid = 0;
	code = tr.valid ? guest_mem_ptr(&v->vm->mem, tr.physical_address, 8) : NULL;
	for (i = 0; code && i < 8; i++)
		n += snprintf(bytes + n, sizeof(bytes) - n, "%s%02x", i ? " " : "", code[i]);
	n = snprintf(buf, len, "RIP 0x%llx (CS 0x%x, CPL %u), instruction bytes [%s], RSP 0x%llx, CR0 0x%llx",
		     (unsigned long long)regs.rip, sregs.cs.selector, sregs.cs.selector & 3,
		     code ? bytes : "unreadable", (unsigned long long)regs.rsp,
		     (unsigned long long)sregs.cr0);
	/* What a dump of the guest needs to be read: the kernel's own
	 * description of itself, where it said it is (fw_cfg vmcoreinfo). */
	if (fw_cfg_vmcoreinfo(v->vm, &note, &note_size) && n < len)
		snprintf(buf + n, len - n, ", VMCOREINFO note at 0x%llx (%u bytes)",
			 (unsigned long long)note, note_size);
}
