/* SPDX-License-Identifier: MIT */
/*
 * Constants shared by the assembly and C parts: selectors, vectors,
 * syscall numbers, CPU limit.  Keep this file assembler-safe.
 */
#ifndef GUEST_LAYOUT_H
#define GUEST_LAYOUT_H

#define KERNEL_BASE	0x100000

/* GDT selectors; 0x10/0x18 match the boot protocol's __BOOT_CS/__BOOT_DS. */
#define SEL_KCODE64	0x10
#define SEL_KDATA	0x18
#define SEL_KCODE32	0x20
#define SEL_UDATA	0x2b	/* GDT index 5, RPL 3 */
#define SEL_UCODE64	0x33	/* GDT index 6, RPL 3 */
#define SEL_TSS0	0x38	/* 16-byte TSS descriptors from here on */
#define GDT_FIXED	7

#define MAX_CPUS	64
#define KSTACK_SIZE	16384	/* BSP CPL0 stack */
#define USTACK_SIZE	65536	/* BSP CPL3 stack */
#define AP_STACK_SIZE	4096	/* per AP, for each of CPL0 and CPL3 */

/* Vectors: legacy PIC parked at 0x30-0x3f, everything else above. */
#define PIC_VECTOR_BASE	0x30
#define VEC_TIMER	0x40
#define VEC_SCI		0x41
#define VEC_COM1	0x42
/* Count-only vectors (MSI-X): a tiny stub each, see isr.S. */
#define VEC_COUNT_BASE	0x50
#define VEC_COUNT_NUM	48
#define VEC_SYSCALL	0x80
#define VEC_SPURIOUS	0xff

/* int $0x80 services, number in %rax. */
#define SYS_WAIT	0	/* sti; hlt; cli; return */
#define SYS_CRASH	1	/* triple fault */
#define SYS_HALT	2	/* stop this CPU for good */
#define SYS_FLUSH_TLB	3	/* reload CR3 (mmio.c changed a present entry) */
#define SYS_WRMSR	4	/* wrmsr: %rdi = MSR, %rsi = value */
#define SYS_RDMSR	5	/* rdmsr: %rdi = MSR, value returned in %rax */

/* Set in %edi by the real-mode stub so the 32-bit entry can tell. */
#define ENTRY16_MAGIC	0x4b564d10

/*
 * The entry path as handed to cpl0_main(): 16, 32 and 64 name themselves;
 * PVH takes the note type of its ELF note (XEN_ELFNOTE_PHYS32_ENTRY).
 */
#define ENTRY_PVH	18

/*
 * RFLAGS for CPL3: IOPL=3, IF=1 and the always-one bit 1.  Interrupts stay
 * on at CPL3: KVM-PVM forces IF=1 in user mode and traps cli/sti there.
 */
#define USER_RFLAGS	0x3202

#endif
