/* Offsets in a bzImage's setup header and in struct boot_params (the
 * "zero page"), from the Linux x86 boot protocol (Documentation/arch/x86/
 * boot.rst, zero-page.rst).  Byte offsets rather than a packed struct so
 * each field access is explicit and bounds-checkable. */
#ifndef KVMM_X86_BOOTPARAMS_H
#define KVMM_X86_BOOTPARAMS_H

/* struct boot_params */
#define BP_ACPI_RSDP_ADDR	0x070	/* u64, protocol 2.14+ */
#define BP_EXT_RAMDISK_IMAGE	0x0C0	/* u32 */
#define BP_EXT_RAMDISK_SIZE	0x0C4	/* u32 */
#define BP_EXT_CMD_LINE_PTR	0x0C8	/* u32 */
#define BP_E820_ENTRIES		0x1E8	/* u8 */
#define BP_HDR			0x1F1	/* struct setup_header starts here */
#define BP_E820_TABLE		0x2D0	/* 128 x struct boot_e820_entry */
#define BP_E820_MAX		128
#define BP_SIZE			0x1000

/* struct setup_header, at the same offsets in the file and the zero page */
#define HDR_SETUP_SECTS		0x1F1	/* u8 */
#define HDR_BOOT_FLAG		0x1FE	/* u16, 0xAA55 */
#define HDR_JUMP		0x200	/* u16; byte 0x201 = header length - 0x202 + 0x200 */
#define HDR_MAGIC		0x202	/* "HdrS" */
#define HDR_VERSION		0x206	/* u16 */
#define HDR_TYPE_OF_LOADER	0x210	/* u8 */
#define HDR_LOADFLAGS		0x211	/* u8 */
#define HDR_CODE32_START	0x214	/* u32 */
#define HDR_RAMDISK_IMAGE	0x218	/* u32 */
#define HDR_RAMDISK_SIZE	0x21C	/* u32 */
#define HDR_HEAP_END_PTR	0x224	/* u16 */
#define HDR_CMD_LINE_PTR	0x228	/* u32 */
#define HDR_INITRD_ADDR_MAX	0x22C	/* u32 */
#define HDR_XLOADFLAGS		0x236	/* u16 */
#define HDR_CMDLINE_SIZE	0x238	/* u32 */
#define HDR_INIT_SIZE		0x260	/* u32 */

#define LOADFLAGS_LOADED_HIGH	0x01
#define LOADFLAGS_CAN_USE_HEAP	0x80
#define XLF_KERNEL_64		0x01
#define LOADER_TYPE_UNDEFINED	0xFF

#define E820_RAM		1
#define E820_RESERVED		2
#define E820_ACPI		3

/* PVH boot ABI (xen/include/public/arch-x86/hvm/start_info.h) */
#define PVH_START_MAGIC		0x336ec578
#define XEN_ELFNOTE_PHYS32_ENTRY 18

#endif
