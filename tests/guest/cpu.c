// SPDX-License-Identifier: MIT
/*
 * Descriptor tables and everything that must run at CPL0.  CPL0 code is
 * emulated instruction by instruction on KVM-PVM, so this file does the
 * minimum and leaves for CPL3 as soon as it can.
 */
#include "guest.h"
#include "io.h"

struct tss {
	u32 reserved0;
	u64 rsp[3];
	u64 reserved1;
	u64 ist[7];
	u64 reserved2;
	u16 reserved3;
	u16 iomap_base;
} __packed;

struct idt_gate {
	u16 off_lo;
	u16 sel;
	u8 ist;
	u8 type;
	u16 off_mid;
	u32 off_hi;
	u32 reserved;
} __packed;

struct dtr {
	u16 limit;
	u64 base;
} __packed;

/* Interrupt frame as built by isr.S. */
struct frame {
	u64 r15, r14, r13, r12, r11, r10, r9, r8;
	u64 rbp, rdi, rsi, rdx, rcx, rbx, rax;
	u64 vector, error;
	u64 rip, cs, rflags, rsp, ss;
};

#define GDT_ENTRIES (GDT_FIXED + 2 * MAX_CPUS)

u64 gdt[GDT_ENTRIES] __aligned(16) = {
	[2] = 0x00af9a000000ffff,	/* 0x10 kernel code, 64-bit */
	[3] = 0x00cf92000000ffff,	/* 0x18 kernel data */
	[4] = 0x00cf9a000000ffff,	/* 0x20 kernel code, 32-bit (APs) */
	[5] = 0x00cff2000000ffff,	/* 0x28 user data */
	[6] = 0x00affa000000ffff,	/* 0x30 user code, 64-bit */
};

struct dtr gdt_ptr = { sizeof(gdt) - 1, (u64)gdt };

/*
 * All TSSs share one I/O permission bitmap that allows every port.  With
 * IOPL=3 real hardware never looks at it, but KVM-PVM runs our CPL3 code
 * with the hardware IOPL at 0, and its emulator then falls back to this
 * bitmap to decide whether an IN/OUT at CPL3 may proceed.
 */
#define IOMAP_BYTES 8192
static struct {
	struct tss tss[MAX_CPUS];
	u8 iomap[IOMAP_BYTES + 1];	/* + the all-ones terminator */
} tss_block __aligned(16) __noclear;

static struct idt_gate idt[256] __aligned(16) __noclear;

struct dtr idt_ptr = { sizeof(idt) - 1, (u64)idt };

/* Interrupts seen by the generic path, per vector (the timer: jiffies). */
volatile u64 irq_count[256];

volatile u64 ap_boot_rsp;
volatile u16 ap_boot_tr;
volatile u32 ap_boot_cpu;

static void set_gate(int vec, void *handler, int dpl)
{
	u64 a = (u64)handler;

	idt[vec].off_lo = a & 0xffff;
	idt[vec].sel = SEL_KCODE64;
	idt[vec].ist = 0;
	idt[vec].type = 0x8e | (dpl << 5);	/* present interrupt gate */
	idt[vec].off_mid = (a >> 16) & 0xffff;
	idt[vec].off_hi = a >> 32;
	idt[vec].reserved = 0;
}

static void idt_init(void)
{
	for (int i = 0; i < 256; i++)
		set_gate(i, isr_stubs + 16 * i, 0);
	set_gate(6, isr_ud, 0);
	set_gate(VEC_TIMER, isr_timer, 0);
	set_gate(VEC_SYSCALL, isr_syscall, 3);
}

/* Also used by the BSP at CPL3 to prepare the APs' TSSs. */
void tss_setup(int cpu, u64 rsp0)
{
	u64 base = (u64)&tss_block.tss[cpu];
	u16 iomap = (u64)tss_block.iomap - base;
	u64 limit = iomap + IOMAP_BYTES;

	memset(&tss_block.tss[cpu], 0, sizeof(struct tss));
	tss_block.tss[cpu].rsp[0] = rsp0;
	tss_block.tss[cpu].iomap_base = iomap;
	gdt[GDT_FIXED + 2 * cpu] = (limit & 0xffff) |
				   ((base & 0xffffff) << 16) |
				   (0x89ULL << 40) |	/* present, 64-bit TSS */
				   (((limit >> 16) & 0xf) << 48) |
				   (((base >> 24) & 0xff) << 56);
	gdt[GDT_FIXED + 2 * cpu + 1] = base >> 32;
}

/*
 * Count-only gates for device interrupts (MSI-X).  Set at CPL3, like the
 * I/O bitmap: the IDT is in user-accessible memory, and 48 gates would
 * cost a millisecond of emulated CPL0 code.
 */
void idt_count_gates_init(void)
{
	for (int i = 0; i < VEC_COUNT_NUM; i++)
		set_gate(VEC_COUNT_BASE + i, isr_count + 32 * i, 0);
}

static void put_dec(char *p, u32 v)
{
	p[0] = '0' + v / 10;
	p[1] = '0' + v % 10;
}

/* First thing at CPL3, before any port I/O there (8 KiB: too slow at CPL0). */
void io_bitmap_init(void)
{
	memset(tss_block.iomap, 0, IOMAP_BYTES);
	tss_block.iomap[IOMAP_BYTES] = 0xff;
}

/* zero_page: the zero page, or for ENTRY_PVH the hvm_start_info. */
void cpl0_main(u64 zero_page, u32 entry)
{
	char boot[] = "KVMMTEST boot v1 entry=NN\r\n";

	/* First thing the host sees; everything else can wait. */
	serial_init();
	if (entry == ENTRY_PVH) {
		serial_puts("KVMMTEST boot v1 entry=pvh\r\n");
	} else {
		put_dec(boot + 23, entry);
		serial_puts(boot);
	}

	idt_init();
	tss_setup(0, (u64)boot_kstack_top);
	asm volatile("lidt %0" : : "m"(idt_ptr));
	asm volatile("ltr %w0" : : "r"(SEL_TSS0));
	/* CPL3 always runs with interrupts on (PVM forces it): mask first. */
	pic_disable();
	enter_user(user_main, zero_page, entry, (u64)bsp_ustack_top);
}

void ap_cpl0_main(u32 cpu)
{
	u64 top = (u64)ap_stacks + (2 * cpu + 2) * AP_STACK_SIZE;

	enter_user(ap_main, cpu, 0, top);
}

static void exception(struct frame *f)
{
	char buf[256];
	u64 cr2;
	int n;

	asm volatile("mov %%cr2, %0" : "=r"(cr2));
	n = snprintf(buf, sizeof(buf),
		     "KVMMTEST fail exception vector=%lu error=0x%lx rip=0x%lx cs=0x%lx rsp=0x%lx cr2=0x%lx\r\n",
		     f->vector, f->error, f->rip, f->cs, f->rsp, cr2);
	serial_write(buf, n);
	pm_emergency_poweroff();
	halt_forever();
}

void halt_forever(void)
{
	for (;;)
		asm volatile("cli; hlt");
}

static void syscall(struct frame *f)
{
	switch (f->rax) {
	case SYS_CRASH: {
		struct dtr none = { 0, 0 };

		/* No IDT: the #UD becomes #GP, #DF, then a triple fault. */
		asm volatile("lidt %0; ud2" : : "m"(none));
		break;
	}
	case SYS_HALT:
		halt_forever();
	case SYS_FLUSH_TLB: {
		u64 cr3;

		asm volatile("mov %%cr3, %0; mov %0, %%cr3" : "=r"(cr3) : : "memory");
		break;
	}
	case SYS_WRMSR:
		asm volatile("wrmsr" : : "c"((u32)f->rdi), "a"((u32)f->rsi),
			     "d"((u32)(f->rsi >> 32)) : "memory");
		break;
	case SYS_RDMSR: {
		u32 lo, hi;

		asm volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"((u32)f->rdi));
		f->rax = (u64)hi << 32 | lo;
		break;
	}
	}
}

void interrupt_dispatch(struct frame *f);

void interrupt_dispatch(struct frame *f)
{
	u64 v = f->vector;

	irq_count[v]++;
	if (v < 32) {
		exception(f);
	} else if (v == VEC_SYSCALL) {
		syscall(f);
	} else if (v == VEC_SCI) {
		sci_interrupt();
		lapic_eoi();
	} else if (v >= PIC_VECTOR_BASE && v < PIC_VECTOR_BASE + 16) {
		/* Spurious IRQ 7/15 from the masked 8259s: no EOI. */
	} else if (v != VEC_SPURIOUS) {
		/* COM1 and anything unexpected: CPL3 polls the device. */
		lapic_eoi();
	}
}
