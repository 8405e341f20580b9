/* SPDX-License-Identifier: MIT */
/*
 * AP start-up.  smp.c copies tramp_start..tramp_end to a page below 1 MiB,
 * patches in the GDT pointer and the far pointer to tramp32, and sends
 * INIT-SIPI-SIPI.  Real mode -> protected mode -> long mode on the shared
 * static page tables, then ap_entry64 picks up the stack and TSS the BSP
 * prepared.  All of this is emulated: as few instructions as possible.
 */
#include "layout.h"

	.section ".rodata.trampoline", "a"
	.code16
	.globl	tramp_start
tramp_start:
	cli
	movw	%cs, %ax
	movw	%ax, %ds
	lgdtl	tramp_gdtr - tramp_start
	movl	%cr0, %eax
	orb	$1, %al
	movl	%eax, %cr0
	ljmpl	*(tramp_far32 - tramp_start)

	.code32
tramp32:
	movl	$SEL_KDATA, %eax
	movl	%eax, %ds
	movl	%eax, %es
	movl	%eax, %ss
	movl	%cr4, %eax
	orl	$0x20, %eax		/* PAE */
	movl	%eax, %cr4
	movl	$pml4, %eax
	movl	%eax, %cr3
	movl	$0xc0000080, %ecx	/* EFER.LME */
	rdmsr
	orl	$0x100, %eax
	wrmsr
	movl	%cr0, %eax
	orl	$0x80000001, %eax
	movl	%eax, %cr0
	ljmp	$SEL_KCODE64, $ap_entry64

	.balign	8
	.globl	tramp_gdtr
tramp_gdtr:
	.word	0			/* patched: GDT limit */
	.long	0			/* patched: GDT base */
	.balign	4
	.globl	tramp_far32
tramp_far32:
	.long	tramp32 - tramp_start	/* patched: + page address */
	.word	SEL_KCODE32
	.globl	tramp_end
tramp_end:

	.code64
	.text
	.globl	ap_entry64
ap_entry64:
	movl	$SEL_KDATA, %eax
	movl	%eax, %ds
	movl	%eax, %es
	movl	%eax, %ss
	xorl	%eax, %eax
	movl	%eax, %fs
	movl	%eax, %gs
	movq	ap_boot_rsp(%rip), %rsp
	lidt	idt_ptr(%rip)
	movw	ap_boot_tr(%rip), %ax
	ltr	%ax
	movl	ap_boot_cpu(%rip), %edi
	call	ap_cpl0_main
1:	hlt
	jmp	1b
