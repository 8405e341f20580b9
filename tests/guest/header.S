/* SPDX-License-Identifier: MIT */
/*
 * The first 4 KiB of the bzImage: the boot sector and the setup header
 * (Linux boot protocol 2.15).  The area is laid out exactly like the zero
 * page, and everything outside the header is zero, so on the 16-bit path the
 * loaded setup code can itself serve as the zero page: the loader fills the
 * header fields, entry16.S fills the e820 table at 0x2d0.  Real code starts
 * at 0x1000, past every zero-page field.
 */
#include "layout.h"

	.code16
	.section ".setup.header", "a"

	.globl	setup_base
setup_base:
	.org	0x1f1
	.byte	guest_setup_sects	/* setup_sects (linker script) */
	.word	0			/* root_flags */
	.long	guest_syssize		/* syssize, 16-byte units */
	.word	0			/* ram_size (obsolete) */
	.word	0xffff			/* vid_mode: "normal" */
	.word	0			/* root_dev */
	.word	0xaa55			/* boot_flag */

	.org	0x200
	/* Real-mode entry point: hop over the header. */
	.byte	0xeb, hdr_end - hdr_start
hdr_start:
	.ascii	"HdrS"			/* header */
	.word	0x020f			/* version 2.15 */
	.long	0			/* realmode_swtch */
	.word	0			/* start_sys_seg (obsolete) */
	.word	version_str - 0x200	/* kernel_version */
	.byte	0			/* type_of_loader, loader writes */
	.byte	0x01			/* loadflags: LOADED_HIGH */
	.word	0			/* setup_move_size */
	.long	KERNEL_BASE		/* code32_start */
	.long	0			/* ramdisk_image */
	.long	0			/* ramdisk_size */
	.long	0			/* bootsect_kludge */
	.word	0			/* heap_end_ptr */
	.byte	0			/* ext_loader_ver */
	.byte	0			/* ext_loader_type */
	.long	0			/* cmd_line_ptr */
	.long	0x7fffffff		/* initrd_addr_max */
	.long	0x100000		/* kernel_alignment */
	.byte	0			/* relocatable_kernel: no */
	.byte	20			/* min_alignment, log2 */
	.word	0x0001			/* xloadflags: XLF_KERNEL_64 */
	.long	2047			/* cmdline_size (CMDLINE_MAX) */
	.long	0			/* hardware_subarch: PC */
	.quad	0			/* hardware_subarch_data */
	.long	0			/* payload_offset */
	.long	0			/* payload_length */
	.quad	0			/* setup_data */
	.quad	KERNEL_BASE		/* pref_address */
	.long	guest_init_size		/* init_size */
	.long	0			/* handover_offset: no EFI */
	.long	kernel_info - KERNEL_BASE	/* kernel_info_offset */
hdr_end:
	/* 0x26c..0x290 is padding in struct boot_params. */
	jmp	entry16
version_str:
	.asciz	"kvmm-testguest"

	/* e820 table, EDD buffers etc. up to the end of the zero page. */
	.org	0x1000

	/*
	 * Boot protocol 2.15 kernel_info, in the protected-mode part as the
	 * protocol asks.  We accept no setup_data types.
	 */
	.section ".rodata.kernel_info", "a"
	.balign	4
	.globl	kernel_info
kernel_info:
	.ascii	"LToP"
	.long	kernel_info_var - kernel_info	/* size */
	.long	kernel_info_end - kernel_info	/* size_total */
	.long	0				/* setup_type_max */
kernel_info_var:
kernel_info_end:
