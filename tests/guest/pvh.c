// SPDX-License-Identifier: MIT
/*
 * PVH boot (Xen's struct hvm_start_info, version 1 for the memory map):
 * turned into a zero page, so that bootparams.c, and everything after it,
 * sees one format whatever the entry.  Runs at CPL3, first thing after
 * .bss is cleared, before anything below 1 MiB is reused.
 */
#include "guest.h"
#include "bootparam.h"
#include "io.h"

#define HVM_START_MAGIC	0x336ec578

/* Layouts from xen/include/public/arch-x86/hvm/start_info.h. */
struct hvm_start_info {
	u32 magic;
	u32 version;
	u32 flags;
	u32 nr_modules;
	u64 modlist_paddr;
	u64 cmdline_paddr;
	u64 rsdp_paddr;
	u64 memmap_paddr;	/* version >= 1 */
	u32 memmap_entries;	/* version >= 1 */
	u32 reserved;
} __packed;

struct hvm_memmap_entry {
	u64 addr;
	u64 size;
	u32 type;		/* e820 types */
	u32 reserved;
} __packed;

struct hvm_modlist_entry {
	u64 paddr;
	u64 size;
	u64 cmdline_paddr;
	u64 reserved;
} __packed;

static u8 zp[BP_SIZE];

static void put32(int off, u32 v)
{
	memcpy(zp + off, &v, 4);
}

/* A 64-bit address or size as a zero page keeps it: low and high halves. */
static void put_split(int lo, int hi, u64 v)
{
	put32(lo, v);
	put32(hi, v >> 32);
}

static void convert_memmap(const struct hvm_start_info *si)
{
	const struct hvm_memmap_entry *map;
	u32 n = si->memmap_entries;

	if (si->version < 1 || !si->memmap_paddr || !n) {
		fail("start-info", "no memory map (version %u)", si->version);
		return;
	}
	if (n > E820_MAX_ZEROPAGE)
		n = E820_MAX_ZEROPAGE;
	if (!mapped(si->memmap_paddr, n * sizeof(struct hvm_memmap_entry))) {
		fail("start-info", "memory map at 0x%lx, above 4 GiB",
		     si->memmap_paddr);
		return;
	}
	map = phys(si->memmap_paddr);
	for (u32 i = 0; i < n; i++) {
		u8 *e = zp + BP_E820_TABLE + i * E820_ENTRY_SIZE;

		memcpy(e, &map[i].addr, 8);
		memcpy(e + 8, &map[i].size, 8);
		memcpy(e + 16, &map[i].type, 4);
	}
	zp[BP_E820_ENTRIES] = n;
}

/* The first module is the initrd, as Linux and QEMU treat it. */
static void convert_initrd(const struct hvm_start_info *si)
{
	struct hvm_modlist_entry mod;

	if (!si->nr_modules || !si->modlist_paddr)
		return;
	if (!mapped(si->modlist_paddr, sizeof(mod))) {
		fail("start-info", "module list at 0x%lx, above 4 GiB",
		     si->modlist_paddr);
		return;
	}
	memcpy(&mod, phys(si->modlist_paddr), sizeof(mod));
	put_split(BP_RAMDISK_IMAGE, BP_EXT_RAMDISK_IMAGE, mod.paddr);
	put_split(BP_RAMDISK_SIZE, BP_EXT_RAMDISK_SIZE, mod.size);
}

void pvh_load(u64 addr)
{
	struct hvm_start_info si;

	if (!mapped(addr, sizeof(si))) {
		fail("start-info", "at 0x%lx, above 4 GiB", addr);
		return;
	}
	memcpy(&si, phys(addr), sizeof(si));
	if (si.magic != HVM_START_MAGIC) {
		fail("start-info", "at 0x%lx: magic 0x%x", addr, si.magic);
		return;
	}
	info("start_info_version=%u start_info_flags=0x%x nr_modules=%u memmap_entries=%u rsdp_paddr=0x%lx",
	     si.version, si.flags, si.nr_modules,
	     si.version >= 1 ? si.memmap_entries : 0, si.rsdp_paddr);

	memset(zp, 0, sizeof(zp));
	put_split(BP_CMD_LINE_PTR, BP_EXT_CMD_LINE_PTR, si.cmdline_paddr);
	/* 0 means "not given": acpi.c then scans EBDA and BIOS area. */
	memcpy(zp + BP_ACPI_RSDP_ADDR, &si.rsdp_paddr, 8);
	convert_memmap(&si);
	convert_initrd(&si);
	bootparams_adopt(zp, addr, sizeof(si));
}
