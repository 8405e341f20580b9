/* The KVM-PVM compatibility mode: the one place where kvmm stands in for
 * hardware virtualization on a KVM-PVM host, so that a stock kernel (the
 * Linux test tier) runs there.  Never active on hosts with VMX/SVM.
 *
 * - KVM's instruction emulator runs the guest's CPL0 code here and gives
 *   up on some instructions (KVM_EXIT_INTERNAL_ERROR, emulation failure):
 *   each is decoded at RIP and carried out by its definition, counted.
 * - PVM leaves `syscall` at CPL3, jumping to LSTAR with the user's
 *   privilege: the guest's LSTAR writes are trapped (an MSR filter), LSTAR
 *   points at a user-accessible trampoline page mapped in an unused slot
 *   of the kernel's top-level page table, whose one instruction rings an
 *   MMIO doorbell; on that exit the vCPU enters the kernel's real entry
 *   at CPL0, as the CPU would have.
 * docs/pvm-compat.md. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <linux/kvm.h>

#include "log.h"
#include "pvm_compat.h"
#include "vm.h"

#define MSR_STAR		0xc0000081
#define MSR_LSTAR		0xc0000082
#define MSR_SFMASK		0xc0000084
#define MSR_KERNEL_GS_BASE	0xc0000102
#define MSR_TSC_AUX		0xc0000103

#define RFLAGS_ZF	(1u << 6)
#define RFLAGS_AC	(1u << 18)
#define RFLAGS_ARITH	0x8d5u		/* CF PF AF ZF SF OF */
#define CR0_PG		(1u << 31)

/* Guest-physical pages of the trampoline, in the MMIO hole clear of the
 * PCI windows, ECAM, IOAPIC and LAPIC and in no e820 range: PUD, PMD,
 * PT, code; the doorbell page after them has no memory behind it. */
#define TRAMP_GPA	0xF0000000ULL
#define TRAMP_PAGES	4
#define DOORBELL_GPA	(TRAMP_GPA + TRAMP_PAGES * 0x1000)
/* The top-level slot it is mapped in: Linux's 4-level layout leaves
 * 0xfffffe8000000000-0xfffffeffffffffff an unused hole, above the
 * randomized regions and copied into every process's page table. */
#define TRAMP_PGD_SLOT	509
#define TRAMP_VA	(0xffff000000000000ULL | ((uint64_t)TRAMP_PGD_SLOT << 39))

enum insn {
	I_INT3, I_CLAC, I_STAC, I_POPCNT, I_FPU_NOP, I_FNINIT, I_EMMS,
	I_SWAPGS, I_SYSRET, I_RWFSGSBASE, I_RDPID, I_RDRAND, I_VERW, I_INVPCID,
	I_WBINVD, I_MWAIT, I_MXCSR, I_SERIALIZE, I_SYSCALL, I_NR
};

static const char *const insn_names[I_NR] = {
	[I_INT3] = "int3", [I_CLAC] = "clac", [I_STAC] = "stac", [I_POPCNT] = "popcnt",
	[I_FPU_NOP] = "fwait/fnclex", [I_FNINIT] = "fninit", [I_EMMS] = "emms",
	[I_SWAPGS] = "swapgs", [I_SYSRET] = "sysretq",
	[I_RWFSGSBASE] = "rd/wr fs/gs base", [I_RDPID] = "rdpid", [I_RDRAND] = "rdrand",
	[I_VERW] = "verw", [I_INVPCID] = "invpcid", [I_WBINVD] = "wbinvd/invd",
	[I_MWAIT] = "monitor/mwait", [I_MXCSR] = "ldmxcsr/stmxcsr",
	[I_SERIALIZE] = "serialize", [I_SYSCALL] = "syscall (doorbell)",
};

struct pvm_compat {
	uint8_t *pages;			/* TRAMP_PAGES, host side */
	unsigned int slot;
	uint64_t lstar;			/* the kernel's own entry */
	unsigned long count[I_NR];	/* atomics: vCPU threads */
};

static bool host_has_hw_virt(void)
{
	struct stat st;
	char line[4096];
	bool found = false;
	FILE *f;

	if (stat("/sys/module/kvm_pvm", &st) == 0)
		return false;
	f = fopen("/proc/cpuinfo", "r");
	if (!f)
		return true;	/* cannot tell: refuse */
	while (!found && fgets(line, sizeof(line), f)) {
		if (strncmp(line, "flags", 5))
			continue;
		found = strstr(line, " vmx") || strstr(line, " svm");
		break;
	}
	fclose(f);
	return found;
}

static int set_msr_filter(struct vm *vm)
{
	static uint8_t deny;	/* bit clear: the guest's write exits to us */
	struct kvm_enable_cap cap = {
		.cap = KVM_CAP_X86_USER_SPACE_MSR,
		.args = { KVM_MSR_EXIT_REASON_FILTER },
	};
	struct kvm_msr_filter filter = {
		.flags = KVM_MSR_FILTER_DEFAULT_ALLOW,
		.ranges = { { .flags = KVM_MSR_FILTER_WRITE, .nmsrs = 1,
			      .base = MSR_LSTAR, .bitmap = &deny } },
	};

	if (ioctl(vm->vm_fd, KVM_ENABLE_CAP, &cap) < 0 ||
	    ioctl(vm->vm_fd, KVM_X86_SET_MSR_FILTER, &filter) < 0)
		return -errno;
	return 0;
}

int pvm_compat_init(struct vm *vm)
{
	struct pvm_compat *pc;
	struct kvm_userspace_memory_region reg;
	uint64_t *pt;
	int r, nslots;
	static const uint8_t code[] = {
		0xc6, 0x05, 0xf9, 0x0f, 0x00, 0x00, 0x00,	/* movb $0, doorbell(%rip) */
		0x0f, 0x0b,					/* ud2: never resumed */
	};

	if (!vm->cfg->pvm_compat)
		return 0;
	if (host_has_hw_virt()) {
		pr_err("--pvm-compat is for KVM-PVM test hosts only: this host has VMX/SVM");
		return -EPERM;
	}
	pc = calloc(1, sizeof(*pc));
	if (!pc)
		return -ENOMEM;
	pc->pages = mmap(NULL, TRAMP_PAGES * 0x1000, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (pc->pages == MAP_FAILED) {
		free(pc);
		return -ENOMEM;
	}
	/* PUD[0] -> PMD, PMD[0] -> PT, PT[0] = code (user, read-only),
	 * PT[1] = doorbell (user, writable). */
	pt = (uint64_t *)pc->pages;
	pt[0] = (TRAMP_GPA + 0x1000) | 0x7;
	pt[512] = (TRAMP_GPA + 0x2000) | 0x7;
	pt[1024] = (TRAMP_GPA + 0x3000) | 0x5;
	pt[1025] = DOORBELL_GPA | 0x7 | 0x10;	/* PCD */
	memcpy(pc->pages + 0x3000, code, sizeof(code));

	nslots = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_NR_MEMSLOTS);
	pc->slot = nslots > 32 ? (unsigned int)nslots - 1 : 31;
	reg = (struct kvm_userspace_memory_region){
		.slot = pc->slot, .guest_phys_addr = TRAMP_GPA,
		.memory_size = TRAMP_PAGES * 0x1000, .userspace_addr = (uintptr_t)pc->pages,
	};
	if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &reg) < 0) {
		r = -errno;
		pr_err("--pvm-compat: cannot map the system-call trampoline: %s", strerror(-r));
		goto fail;
	}
	r = set_msr_filter(vm);
	if (r) {
		pr_err("--pvm-compat: cannot trap the guest's LSTAR writes: %s", strerror(-r));
		goto fail;
	}
	vm->pvm = pc;
	/* At every log level: a domain's log must show its guest ran so. */
	pr_warn("KVM-PVM compatibility mode on: for test hosts without VMX/SVM; "
		"the guest sees a cut-down CPU (docs/pvm-compat.md)");
	return 0;
fail:
	munmap(pc->pages, TRAMP_PAGES * 0x1000);
	free(pc);
	return r;
}

void pvm_compat_destroy(struct vm *vm)
{
	if (!vm->pvm)
		return;
	pvm_compat_report(vm);
	munmap(vm->pvm->pages, TRAMP_PAGES * 0x1000);
	free(vm->pvm);
	vm->pvm = NULL;
}

void pvm_compat_report(struct vm *vm)
{
	unsigned int i;

	if (!vm->pvm)
		return;
	for (i = 0; i < I_NR; i++)
		if (vm->pvm->count[i])
			fprintf(stderr, "kvmm: pvm-compat: %s handled %lu times\n", insn_names[i],
				vm->pvm->count[i]);
}

static void count(struct vm *vm, enum insn i)
{
	__atomic_fetch_add(&vm->pvm->count[i], 1, __ATOMIC_RELAXED);
}

/* --- guest state ---------------------------------------------------- */

struct state {
	struct vcpu *v;
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	bool sregs_dirty;
};

/* kvm_regs' fields are __u64 (unsigned long long), not uint64_t. */
static __u64 *gpr(struct state *s, unsigned int n)
{
	struct kvm_regs *r = &s->regs;
	__u64 *map[16] = { &r->rax, &r->rcx, &r->rdx, &r->rbx, &r->rsp, &r->rbp,
			      &r->rsi, &r->rdi, &r->r8, &r->r9, &r->r10, &r->r11,
			      &r->r12, &r->r13, &r->r14, &r->r15 };
	return map[n & 15];
}

/* Host pointer to LEN bytes at a guest linear address, within one page. */
static void *guest_linear(struct state *s, uint64_t la, unsigned int len)
{
	struct kvm_translation tr = { .linear_address = la };

	if ((la & 0xfff) + len > 0x1000)
		return NULL;
	if (!(s->sregs.cr0 & CR0_PG)) {
		tr.physical_address = la;
	} else if (ioctl(s->v->fd, KVM_TRANSLATE, &tr) < 0 || !tr.valid) {
		return NULL;
	}
	return guest_mem_ptr(&s->v->vm->mem, tr.physical_address, len);
}

static int msr_get(struct vcpu *v, uint32_t index, uint64_t *val)
{
	struct { struct kvm_msrs h; struct kvm_msr_entry e; } m = {
		.h.nmsrs = 1, .e.index = index };

	if (ioctl(v->fd, KVM_GET_MSRS, &m) != 1)
		return -EIO;
	*val = m.e.data;
	return 0;
}

static int msr_set(struct vcpu *v, uint32_t index, uint64_t val)
{
	struct { struct kvm_msrs h; struct kvm_msr_entry e; } m = {
		.h.nmsrs = 1, .e.index = index, .e.data = val };

	return ioctl(v->fd, KVM_SET_MSRS, &m) == 1 ? 0 : -EIO;
}

/* --- decoding ------------------------------------------------------- */

struct insn_ctx {
	const uint8_t *b;
	unsigned int len, pos;
	bool opsize, rep, repne, rex_w;
	uint8_t rex;
	int seg;		/* 4 fs, 5 gs, -1 none */
	/* ModRM */
	unsigned int mod, reg, rm;
	uint64_t ea;		/* memory operand's linear address */
};

static bool fetch(struct insn_ctx *c, uint8_t *out)
{
	if (c->pos >= c->len)
		return false;
	*out = c->b[c->pos++];
	return true;
}

static bool fetch32(struct insn_ctx *c, int32_t *out)
{
	if (c->pos + 4 > c->len)
		return false;
	memcpy(out, c->b + c->pos, 4);
	c->pos += 4;
	return true;
}

/* 64-bit addressing only: the guest's kernel runs in long mode. */
static bool modrm(struct insn_ctx *c, struct state *s)
{
	uint8_t m, sib;
	int32_t disp = 0;
	int8_t d8;
	uint64_t base = 0;

	if (!fetch(c, &m))
		return false;
	c->mod = m >> 6;
	c->reg = ((m >> 3) & 7) | ((c->rex & 4) << 1);
	c->rm = (m & 7) | ((c->rex & 1) << 3);
	if (c->mod == 3)
		return true;
	if ((m & 7) == 4) {
		unsigned int idx, bas;

		if (!fetch(c, &sib))
			return false;
		idx = ((sib >> 3) & 7) | ((c->rex & 2) << 2);
		bas = (sib & 7) | ((c->rex & 1) << 3);
		if (idx != 4)
			base += *gpr(s, idx) << (sib >> 6);
		if ((sib & 7) == 5 && c->mod == 0) {
			if (!fetch32(c, &disp))
				return false;
		} else {
			base += *gpr(s, bas);
		}
	} else if ((m & 7) == 5 && c->mod == 0) {
		if (!fetch32(c, &disp))
			return false;
		c->ea = -1;	/* RIP-relative: fixed up once the length is known */
	} else {
		base = *gpr(s, c->rm);
	}
	if (c->mod == 1) {
		if (!fetch(c, (uint8_t *)&d8))
			return false;
		disp = d8;
	} else if (c->mod == 2 && !fetch32(c, &disp)) {
		return false;
	}
	if (c->ea == (uint64_t)-1)
		c->ea = disp;	/* + RIP of the next instruction, added by the caller */
	else
		c->ea = base + (int64_t)disp;
	if (c->seg == 4)
		c->ea += s->sregs.fs.base;
	else if (c->seg == 5)
		c->ea += s->sregs.gs.base;
	return true;
}

static bool rip_relative(const struct insn_ctx *c)
{
	return c->mod == 0 && (c->b[c->pos - 5] & 0xc7) == 0x05;
}

/* --- the instructions ----------------------------------------------- */

static int inject_bp(struct state *s)
{
	struct kvm_vcpu_events ev;

	if (ioctl(s->v->fd, KVM_GET_VCPU_EVENTS, &ev) < 0)
		return -errno;
	ev.exception.injected = 1;
	ev.exception.nr = 3;
	ev.exception.has_error_code = 0;
	ev.exception.error_code = 0;
	ev.flags = 0;
	if (ioctl(s->v->fd, KVM_SET_VCPU_EVENTS, &ev) < 0)
		return -errno;
	return 0;
}

static int fpu_update(struct vcpu *v, bool reset)
{
	struct kvm_fpu fpu;

	if (ioctl(v->fd, KVM_GET_FPU, &fpu) < 0)
		return -errno;
	if (reset) {	/* fninit */
		fpu.fcw = 0x37f;
		fpu.fsw = 0;
	}
	fpu.ftwx = 0;	/* all registers empty (emms, fninit) */
	return ioctl(v->fd, KVM_SET_FPU, &fpu) < 0 ? -errno : 0;
}

static int do_popcnt(struct state *s, struct insn_ctx *c)
{
	unsigned int size = c->rex_w ? 8 : c->opsize ? 2 : 4;
	uint64_t src = 0;
	__u64 *dst;

	if (c->mod == 3) {
		src = *gpr(s, c->rm);
	} else {
		void *p = guest_linear(s, c->ea, size);

		if (!p)
			return -EFAULT;
		memcpy(&src, p, size);
	}
	if (size < 8)
		src &= (1ULL << (size * 8)) - 1;
	dst = gpr(s, c->reg);
	if (size == 2)
		*dst = (*dst & ~0xffffULL) | (uint64_t)__builtin_popcountll(src);
	else
		*dst = (uint64_t)__builtin_popcountll(src);
	s->regs.rflags &= ~(uint64_t)RFLAGS_ARITH;
	if (!src)
		s->regs.rflags |= RFLAGS_ZF;
	return 0;
}

static int do_swapgs(struct state *s)
{
	uint64_t kgs;

	if (msr_get(s->v, MSR_KERNEL_GS_BASE, &kgs) ||
	    msr_set(s->v, MSR_KERNEL_GS_BASE, s->sregs.gs.base))
		return -EIO;
	s->sregs.gs.base = kgs;
	s->sregs_dirty = true;
	return 0;
}

static void seg64(struct kvm_segment *sg, uint16_t sel, bool code, unsigned int dpl)
{
	*sg = (struct kvm_segment){
		.base = 0, .limit = 0xffffffff, .selector = sel, .type = code ? 0xb : 0x3,
		.present = 1, .dpl = dpl, .db = !code, .s = 1, .l = code, .g = 1,
	};
}

static int do_sysret(struct state *s)
{
	uint64_t star;
	uint16_t base;

	if (msr_get(s->v, MSR_STAR, &star))
		return -EIO;
	base = (star >> 48) & 0xffff;
	/* 64-bit SYSRET: CS = STAR[63:48] + 16, SS = + 8, both RPL 3. */
	s->regs.rip = s->regs.rcx;
	s->regs.rflags = (s->regs.r11 & 0x3c7fd7) | 0x2;
	seg64(&s->sregs.cs, (base + 16) | 3, true, 3);
	seg64(&s->sregs.ss, (base + 8) | 3, false, 3);
	s->sregs_dirty = true;
	return 1;	/* RIP set */
}

/* Returns 1 with RIP already set, 0 to advance past the instruction,
 * -errno to report the failure. */
static int execute(struct state *s, struct insn_ctx *c, enum insn *what)
{
	struct vm *vm = s->v->vm;
	uint8_t op, op2, op3;

	for (;;) {
		if (!fetch(c, &op))
			return -EINVAL;
		if (op == 0x66)
			c->opsize = true;
		else if (op == 0xf3)
			c->rep = true;
		else if (op == 0xf2)
			c->repne = true;
		else if (op == 0x64)
			c->seg = 4;
		else if (op == 0x65)
			c->seg = 5;
		else if (op == 0xf0 || op == 0x2e || op == 0x36 || op == 0x3e || op == 0x26)
			continue;
		else
			break;
	}
	if ((op & 0xf0) == 0x40) {
		c->rex = op;
		c->rex_w = op & 8;
		if (!fetch(c, &op))
			return -EINVAL;
	}
	switch (op) {
	case 0xcc:
		*what = I_INT3;
		s->regs.rip += c->pos;
		return inject_bp(s) ?: 1;
	case 0x9b:
		*what = I_FPU_NOP;
		return 0;
	case 0xdb:
		if (!fetch(c, &op2))
			return -EINVAL;
		if (op2 == 0xe2) {		/* fnclex */
			*what = I_FPU_NOP;
			return 0;
		}
		if (op2 == 0xe3) {
			*what = I_FNINIT;
			return fpu_update(s->v, true);
		}
		return -ENOSYS;
	case 0x0f:
		break;
	default:
		return -ENOSYS;
	}
	if (!fetch(c, &op2))
		return -EINVAL;
	switch (op2) {
	case 0x01:
		if (!fetch(c, &op3))
			return -EINVAL;
		switch (op3) {
		case 0xca:
			*what = I_CLAC;
			s->regs.rflags &= ~(uint64_t)RFLAGS_AC;
			return 0;
		case 0xcb:
			*what = I_STAC;
			s->regs.rflags |= RFLAGS_AC;
			return 0;
		case 0xf8:
			*what = I_SWAPGS;
			return do_swapgs(s);
		case 0xe8:
			*what = I_SERIALIZE;
			return 0;
		case 0xc8:
		case 0xc9:
			*what = I_MWAIT;	/* a wake-up may come early: fine */
			return 0;
		}
		return -ENOSYS;
	case 0x07:
		if (!c->rex_w)
			return -ENOSYS;
		*what = I_SYSRET;
		return do_sysret(s);
	case 0x08:
	case 0x09:
		*what = I_WBINVD;	/* guest RAM is host memory: coherent */
		return 0;
	case 0x77:
		*what = I_EMMS;
		return fpu_update(s->v, false);
	case 0x00:
		if (!modrm(c, s) || (c->reg & 7) != 5)
			return -ENOSYS;
		*what = I_VERW;		/* a buffer-clearing idiom; ZF unused */
		return 0;
	case 0xb8:
		if (!c->rep || !modrm(c, s))
			return -ENOSYS;
		if (c->mod != 3 && rip_relative(c))
			c->ea += s->regs.rip + c->pos;
		*what = I_POPCNT;
		return do_popcnt(s, c);
	case 0xae:
		if (!modrm(c, s))
			return -EINVAL;
		if (c->rep && c->mod == 3 && (c->reg & 7) < 4) {
			__u64 *r = gpr(s, c->rm);
			__u64 *base = (c->reg & 1) ? &s->sregs.gs.base : &s->sregs.fs.base;

			*what = I_RWFSGSBASE;
			if (c->reg & 2) {
				*base = c->rex_w ? *r : (uint32_t)*r;
				s->sregs_dirty = true;
			} else {
				*r = c->rex_w ? *base : (uint32_t)*base;
			}
			return 0;
		}
		if (!c->rep && c->mod != 3 && ((c->reg & 7) == 2 || (c->reg & 7) == 3)) {
			struct kvm_fpu fpu;
			void *p;

			if (rip_relative(c))
				c->ea += s->regs.rip + c->pos;
			p = guest_linear(s, c->ea, 4);
			if (!p || ioctl(s->v->fd, KVM_GET_FPU, &fpu) < 0)
				return -EFAULT;
			*what = I_MXCSR;
			if ((c->reg & 7) == 3) {
				memcpy(p, &fpu.mxcsr, 4);
				return 0;
			}
			memcpy(&fpu.mxcsr, p, 4);
			return ioctl(s->v->fd, KVM_SET_FPU, &fpu) < 0 ? -errno : 0;
		}
		return -ENOSYS;
	case 0xc7:
		if (!modrm(c, s) || c->mod != 3)
			return -ENOSYS;
		if ((c->reg & 7) == 7 && c->rep) {
			uint64_t aux;

			*what = I_RDPID;
			if (msr_get(s->v, MSR_TSC_AUX, &aux))
				return -EIO;
			*gpr(s, c->rm) = (uint32_t)aux;
			return 0;
		}
		if ((c->reg & 7) == 6) {
			uint64_t val = 0;
			__u64 *dst = gpr(s, c->rm);

			*what = I_RDRAND;
			if (getentropy(&val, sizeof(val)))
				return -EIO;
			if (c->rex_w)
				*dst = val;
			else if (c->opsize)
				*dst = (*dst & ~0xffffULL) | (val & 0xffff);
			else
				*dst = (uint32_t)val;
			s->regs.rflags = (s->regs.rflags & ~(uint64_t)RFLAGS_ARITH) | 1;	/* CF: valid */
			return 0;
		}
		return -ENOSYS;
	case 0x38:
		if (!fetch(c, &op3) || op3 != 0x82 || !c->opsize || !modrm(c, s))
			return -ENOSYS;
		/* invpcid: any type is covered by a full flush, which
		 * KVM_SET_SREGS does when it resets the MMU context. */
		*what = I_INVPCID;
		s->sregs_dirty = true;
		return 0;
	}
	(void)vm;
	return -ENOSYS;
}

bool pvm_compat_emulation_failure(struct vcpu *v)
{
	struct kvm_run *run = v->run;
	struct state s = { .v = v };
	struct insn_ctx c = { .seg = -1 };
	enum insn what = I_NR;
	uint8_t bytes[16];
	const uint8_t *p;
	unsigned int n;
	int r;

	if (!v->vm->pvm || run->internal.suberror != KVM_INTERNAL_ERROR_EMULATION)
		return false;
	if (ioctl(v->fd, KVM_GET_REGS, &s.regs) < 0 || ioctl(v->fd, KVM_GET_SREGS, &s.sregs) < 0)
		return false;
	/* GUEST: the instruction bytes are the guest's; decoding stops at
	 * 15 bytes and at the end of the page it starts in. */
	n = 0x1000 - ((s.sregs.cs.base + s.regs.rip) & 0xfff);
	if (n > 15)
		n = 15;
	p = guest_linear(&s, s.sregs.cs.base + s.regs.rip, n);
	if (!p)
		return false;
	memcpy(bytes, p, n);
	c.b = bytes;
	c.len = n;
	r = execute(&s, &c, &what);
	if (r < 0) {
		pr_err("pvm-compat: cannot stand in for the instruction at RIP 0x%llx (%02x %02x %02x %02x): %s",
		       (unsigned long long)s.regs.rip, bytes[0], bytes[1], bytes[2], bytes[3],
		       strerror(-r));
		return false;
	}
	if (r == 0)
		s.regs.rip += c.pos;
	if ((s.sregs_dirty && ioctl(v->fd, KVM_SET_SREGS, &s.sregs) < 0) ||
	    ioctl(v->fd, KVM_SET_REGS, &s.regs) < 0)
		return false;
	count(v->vm, what);
	return true;
}

/* The guest's LSTAR write: keep its entry, give the CPU the trampoline's,
 * and make sure the page table it runs on maps the trampoline. */
bool pvm_compat_wrmsr(struct vcpu *v)
{
	struct kvm_run *run = v->run;
	struct state s = { .v = v };
	uint64_t *pgd, want = TRAMP_GPA | 0x7;

	if (!v->vm->pvm || run->msr.index != MSR_LSTAR)
		return false;
	if (ioctl(v->fd, KVM_GET_SREGS, &s.sregs) < 0)
		return false;
	/* GUEST: CR3 is the guest's; the slot must be empty or ours. */
	pgd = guest_mem_ptr(&v->vm->mem, s.sregs.cr3 & 0x000ffffffffff000ULL, 0x1000);
	if (!pgd || (pgd[TRAMP_PGD_SLOT] && pgd[TRAMP_PGD_SLOT] != want)) {
		pr_err("pvm-compat: the guest's page table at 0x%llx is not one the trampoline fits in",
		       (unsigned long long)s.sregs.cr3);
		return false;
	}
	pgd[TRAMP_PGD_SLOT] = want;
	v->vm->pvm->lstar = run->msr.data;
	run->msr.error = 0;
	return msr_set(v, MSR_LSTAR, TRAMP_VA) == 0;
}

/* The trampoline's doorbell: the guest's CPL3 code executed `syscall`
 * (RCX and R11 already hold its return address and RFLAGS); enter the
 * kernel's entry at CPL0 as SYSCALL would have. */
bool pvm_compat_mmio(struct vcpu *v)
{
	struct kvm_run *run = v->run;
	struct state s = { .v = v };
	uint64_t star, sfmask;
	uint16_t sel;

	if (!v->vm->pvm || run->mmio.phys_addr != DOORBELL_GPA)
		return false;
	if (ioctl(v->fd, KVM_GET_REGS, &s.regs) < 0 || ioctl(v->fd, KVM_GET_SREGS, &s.sregs) < 0 ||
	    msr_get(v, MSR_STAR, &star) || msr_get(v, MSR_SFMASK, &sfmask))
		return false;
	sel = (star >> 32) & 0xfffc;
	seg64(&s.sregs.cs, sel, true, 0);
	seg64(&s.sregs.ss, sel + 8, false, 0);
	s.regs.rip = v->vm->pvm->lstar;
	s.regs.rflags = (s.regs.r11 & ~sfmask) | 0x2;
	if (ioctl(v->fd, KVM_SET_SREGS, &s.sregs) < 0 || ioctl(v->fd, KVM_SET_REGS, &s.regs) < 0)
		return false;
	count(v->vm, I_SYSCALL);
	return true;
}
