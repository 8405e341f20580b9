/* SPDX-License-Identifier: MIT */
/*
 * 64-bit entry at load address + 0x200 (the linker script pins it there):
 * long mode, low 4 GiB identity-mapped by the loader, %rsi = zero page.
 * Also the continuation of entry32.S.  Switch to our GDT, page tables and
 * stack, then hand over to cpl0_main().
 */
#include "layout.h"

	.code64
	.section ".text.entry64", "ax"
	.globl	entry64
entry64:
	cli
	cld
	movl	$64, %ebp
	jmp	1f

	.globl	start64
start64:
	/* From entry32.S: only the low halves are defined. */
	movl	%esi, %esi
	movl	%ebp, %ebp
1:
	leaq	boot_kstack_top(%rip), %rsp
	lgdt	gdt_ptr(%rip)
	pushq	$SEL_KCODE64
	leaq	2f(%rip), %rax
	pushq	%rax
	lretq
2:
	movl	$SEL_KDATA, %eax
	movl	%eax, %ds
	movl	%eax, %es
	movl	%eax, %ss
	xorl	%eax, %eax
	movl	%eax, %fs
	movl	%eax, %gs

	leaq	pml4(%rip), %rax
	movq	%rax, %cr3
	/* Our CPL0 code lives in user pages: SMEP/SMAP must be off. */
	movq	%cr4, %rax
	andq	$~((1 << 20) | (1 << 21)), %rax
	movq	%rax, %cr4

	movq	%rsi, %rdi
	movl	%ebp, %esi
	call	cpl0_main
3:	hlt
	jmp	3b

	/* Stacks are never cleared, so they live outside .bss proper. */
	.section ".bss.stack", "aw", @nobits
	.balign	4096
boot_kstack:
	.skip	KSTACK_SIZE
	.globl	boot_kstack_top
boot_kstack_top:
bsp_ustack:
	.skip	USTACK_SIZE
	.globl	bsp_ustack_top
bsp_ustack_top:
	.globl	ap_stacks
ap_stacks:
	.skip	MAX_CPUS * AP_STACK_SIZE * 2
