/* SPDX-License-Identifier: MIT */
/*
 * Real-mode entry (QEMU -kernel via SeaBIOS/qboot, kvmtool): the loader put
 * the setup sectors at seg:0, filled the header, and jumped to
 * (seg+0x20):0 with DS = ES = SS = seg.  We use seg:0 as the zero page: ask
 * the BIOS for the memory map (loaders on this path leave e820 empty), then
 * go to flat protected mode and jump to code32_start with %esi = zero page,
 * as the 32-bit boot protocol expects.  This runs emulated: keep it short.
 */
#include "layout.h"

#define SMAP	0x534d4150

	.code16
	.section ".setup.text", "ax"
	.globl	entry16
entry16:
	cli
	cld
	movw	%cs, %ax
	subw	$0x20, %ax
	movw	%ax, %ds
	movw	%ax, %es

	/* int 0x15, E820, straight into boot_params.e820_table. */
	movb	$0, 0x1e8
	movw	$0x2d0, %di
	xorl	%ebx, %ebx
1:	movl	$0xe820, %eax
	movl	$SMAP, %edx
	movl	$20, %ecx
	int	$0x15
	jc	2f
	cmpl	$SMAP, %eax
	jne	2f
	/* Some BIOSes (qboot) hand out an empty entry: drop it. */
	movl	8(%di), %eax
	orl	12(%di), %eax
	jz	4f
	addw	$20, %di
	incb	0x1e8
	cmpb	$128, 0x1e8
	jae	2f
4:	testl	%ebx, %ebx
	jnz	1b
2:
	/* Fast A20, only if off; never write bit 0 (that resets). */
	inb	$0x92, %al
	testb	$0x02, %al
	jnz	3f
	orb	$0x02, %al
	andb	$0xfe, %al
	outb	%al, $0x92
3:
	/* Linear address of the zero page, and of our GDT. */
	xorl	%esi, %esi
	movw	%ds, %si
	shll	$4, %esi
	movl	%esi, %eax
	addl	$gdt16, %eax
	movl	%eax, gdt16_ptr + 2
	lgdtl	gdt16_ptr

	/* Honour a loader-modified code32_start. */
	movl	0x214, %eax
	movl	%eax, code32_far

	movl	%cr0, %eax
	orb	$1, %al
	movl	%eax, %cr0

	movw	$SEL_KDATA, %ax
	movw	%ax, %ds
	movw	%ax, %es
	movw	%ax, %ss
	movw	%ax, %fs
	movw	%ax, %gs
	movl	$ENTRY16_MAGIC, %edi
	xorl	%ebp, %ebp
	xorl	%ebx, %ebx
	/* CS still has the real-mode base (seg + 0x200). */
	ljmpl	*%cs:(code32_far - 0x200)

	.balign	8
gdt16:
	.quad	0
	.quad	0
	.quad	0x00cf9a000000ffff	/* 0x10: flat 32-bit code */
	.quad	0x00cf92000000ffff	/* 0x18: flat data */
gdt16_ptr:
	.word	gdt16_ptr - gdt16 - 1
	.long	0
code32_far:
	.long	0
	.word	0x10			/* gdt16 flat 32-bit code */
