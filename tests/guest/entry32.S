/* SPDX-License-Identifier: MIT */
/*
 * 32-bit entry at code32_start (0x100000): flat protected mode, paging off,
 * %esi = zero page.  Enable PAE and long mode on our static page tables and
 * continue in entry64.S.
 */
#include "layout.h"

	.code32
	.section ".text.entry32", "ax"
	.globl	entry32
entry32:
	cli
	cld
	movl	$32, %ebp
	cmpl	$ENTRY16_MAGIC, %edi
	jne	1f
	movl	$16, %ebp
1:
	/* entrypvh.S joins here, with %esi and %ebp already set. */
	.globl	entry32_common
entry32_common:
	/* gdt_ptr holds a 64-bit base; 32-bit lgdt reads its low half. */
	lgdt	gdt_ptr
	movl	$SEL_KDATA, %eax
	movl	%eax, %ds
	movl	%eax, %es
	movl	%eax, %ss

	movl	%cr4, %eax
	orl	$0x20, %eax		/* PAE */
	movl	%eax, %cr4
	movl	$pml4, %eax
	movl	%eax, %cr3
	movl	$0xc0000080, %ecx	/* EFER */
	rdmsr
	orl	$0x100, %eax		/* LME */
	wrmsr
	movl	%cr0, %eax
	orl	$0x80000001, %eax	/* PG | PE */
	movl	%eax, %cr0
	ljmp	$SEL_KCODE64, $start64
