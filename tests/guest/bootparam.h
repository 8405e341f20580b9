/* SPDX-License-Identifier: MIT */
/* Offsets into the zero page (struct boot_params), Linux boot protocol. */
#ifndef GUEST_BOOTPARAM_H
#define GUEST_BOOTPARAM_H

#define BP_ACPI_RSDP_ADDR	0x070	/* u64 */
#define BP_EXT_RAMDISK_IMAGE	0x0c0	/* u32 */
#define BP_EXT_RAMDISK_SIZE	0x0c4	/* u32 */
#define BP_EXT_CMD_LINE_PTR	0x0c8	/* u32 */
#define BP_E820_ENTRIES		0x1e8	/* u8 */
#define BP_SETUP_SECTS		0x1f1	/* u8 */
#define BP_BOOT_FLAG		0x1fe	/* u16 */
#define BP_HEADER		0x202	/* "HdrS" */
#define BP_VERSION		0x206	/* u16 */
#define BP_TYPE_OF_LOADER	0x210	/* u8 */
#define BP_LOADFLAGS		0x211	/* u8 */
#define BP_CODE32_START		0x214	/* u32 */
#define BP_RAMDISK_IMAGE	0x218	/* u32 */
#define BP_RAMDISK_SIZE		0x21c	/* u32 */
#define BP_CMD_LINE_PTR		0x228	/* u32 */
#define BP_CMDLINE_SIZE		0x238	/* u32 */
#define BP_E820_TABLE		0x2d0	/* 20-byte entries */
#define BP_SIZE			0x1000

#define E820_MAX_ZEROPAGE	128
#define E820_ENTRY_SIZE		20
#define E820_RAM		1
#define E820_RESERVED		2

#define CMDLINE_MAX		2047	/* advertised in cmdline_size */

#endif
