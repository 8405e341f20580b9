/* SPDX-License-Identifier: MIT */
/*
 * PVH entry (Xen's x86/HVM direct boot ABI), linked into
 * kvmm-testguest-pvh.elf only.  The loader finds us through the ELF note
 * below and enters in flat 32-bit protected mode, paging off, with %ebx =
 * struct hvm_start_info.  We hand that address on in %esi, where the zero
 * page travels on the other paths, and join entry32.S for long mode;
 * pvh.c turns the start info into a zero page later, at CPL3, because CPL0
 * is slow.
 */
#include "layout.h"

#define XEN_ELFNOTE_PHYS32_ENTRY	18

	/*
	 * The descriptor is 8 bytes: QEMU reads a whole u64 from an ELF64
	 * note, and aligns the name by the PT_NOTE's p_align, which pvh.ld
	 * keeps at 4 through this section's alignment.
	 */
	.section ".note.Xen", "a", @note
	.balign	4
	.long	4			/* namesz */
	.long	8			/* descsz */
	.long	XEN_ELFNOTE_PHYS32_ENTRY
	.asciz	"Xen"
	.quad	pvh_entry

	.code32
	.section ".text.pvh", "ax"
	.globl	pvh_entry
pvh_entry:
	cli
	cld
	movl	%ebx, %esi
	movl	$ENTRY_PVH, %ebp
	jmp	entry32_common
