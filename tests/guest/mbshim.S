/* SPDX-License-Identifier: MIT */
/*
 * Test loader, not part of the guest: a Multiboot (v1) kernel that QEMU's
 * -kernel can start in flat 32-bit mode, which then boots the test guest
 * bzImage (its first module) through the boot protocol's 32-bit entry at
 * code32_start, or its 64-bit entry at load address + 0x200 (module
 * argument "entry=64").  Lets the two entries kvmm-like loaders use be
 * exercised under QEMU too.
 */
#define MB_MAGIC	0x1badb002
#define MB_FLAGS	0x00000003	/* page-aligned modules, memory map */

	.section ".multiboot", "a"
	.balign	4
	.long	MB_MAGIC
	.long	MB_FLAGS
	.long	-(MB_MAGIC + MB_FLAGS)

	.text
	.code32
	.globl	_start
_start:
	cli
	cld
	movl	$shim_stack_top, %esp
	pushl	%ebx			/* multiboot info */
	pushl	%eax			/* multiboot magic */
	call	shim_main
1:	hlt
	jmp	1b

	/* shim_enter32(zero_page, entry): the 32-bit boot protocol state. */
	.globl	shim_enter32
shim_enter32:
	movl	4(%esp), %esi
	movl	8(%esp), %ecx
	lgdt	gdt32_ptr
	ljmp	$0x10, $1f
1:	movl	$0x18, %eax
	movl	%eax, %ds
	movl	%eax, %es
	movl	%eax, %ss
	movl	%eax, %fs
	movl	%eax, %gs
	xorl	%ebx, %ebx
	xorl	%ebp, %ebp
	xorl	%edi, %edi
	jmp	*%ecx

	/* shim_enter64(zero_page, entry, pml4): the 64-bit boot protocol state. */
	.globl	shim_enter64
shim_enter64:
	movl	4(%esp), %esi
	movl	8(%esp), %edi
	movl	12(%esp), %eax
	movl	%eax, %cr3
	movl	%cr4, %eax
	orl	$0x20, %eax		/* PAE */
	movl	%eax, %cr4
	movl	$0xc0000080, %ecx	/* EFER.LME */
	rdmsr
	orl	$0x100, %eax
	wrmsr
	lgdt	gdt64_ptr
	movl	%cr0, %eax
	orl	$0x80000001, %eax
	movl	%eax, %cr0
	ljmp	$0x10, $2f
	.code64
2:	movl	$0x18, %eax
	movl	%eax, %ds
	movl	%eax, %es
	movl	%eax, %ss
	movl	%esi, %esi
	movl	%edi, %eax
	xorl	%edi, %edi
	jmp	*%rax
	.code32

	.section ".rodata"
	.balign	8
gdt32:
	.quad	0, 0
	.quad	0x00cf9a000000ffff	/* 0x10: flat 32-bit code */
	.quad	0x00cf92000000ffff	/* 0x18: flat data */
gdt32_ptr:
	.word	gdt32_ptr - gdt32 - 1
	.long	gdt32
	.balign	8
gdt64:
	.quad	0, 0
	.quad	0x00af9a000000ffff	/* 0x10: 64-bit code */
	.quad	0x00cf92000000ffff	/* 0x18: flat data */
gdt64_ptr:
	.word	gdt64_ptr - gdt64 - 1
	.long	gdt64

	.section ".bss"
	.balign	16
	.skip	8192
shim_stack_top:
