// SPDX-License-Identifier: MIT
/*
 * The zero page: command line, e820 map, initrd.  Copied early, because
 * the loader's zero page and command line sit in memory we later reuse
 * (the AP trampoline goes below 1 MiB).
 */
#include "guest.h"
#include "bootparam.h"
#include "io.h"

#define LOW_LIMIT	0x100000000ULL
#define INITRD_ADDR_MAX	0x7fffffffULL	/* as advertised in header.S */

char cmdline[CMDLINE_MAX + 1];
struct e820_entry e820[E820_MAX_ZEROPAGE];
int e820_count;
u64 zero_page_addr, initrd_addr, initrd_size, mem_usable, mem_top;
u64 bp_acpi_rsdp;
/* What zero_page_addr points at: BP_SIZE, or the PVH start info's size. */
static u64 zero_page_size;
static u64 cmdline_addr;
static u8 bp[BP_SIZE];

static u32 bp32(int off)
{
	u32 v;

	memcpy(&v, bp + off, 4);
	return v;
}

static u64 bp64(int off)
{
	u64 v;

	memcpy(&v, bp + off, 8);
	return v;
}

/* Only the low 4 GiB is mapped; a pointer beyond it is a loader bug. */
bool mapped(u64 addr, u64 len)
{
	return addr < LOW_LIMIT && len <= LOW_LIMIT - addr;
}

/* Everything the guest uses from bp, copied out of it. */
static void bootparams_parse(void)
{
	cmdline_addr = bp32(BP_CMD_LINE_PTR) |
		       ((u64)bp32(BP_EXT_CMD_LINE_PTR) << 32);
	if (cmdline_addr && !mapped(cmdline_addr, CMDLINE_MAX + 1)) {
		fail("cmdline", "at 0x%lx, above 4 GiB", cmdline_addr);
	} else if (cmdline_addr) {
		const char *src = (const char *)cmdline_addr;
		int i;

		for (i = 0; i < CMDLINE_MAX && src[i]; i++)
			cmdline[i] = src[i];
		cmdline[i] = '\0';
	}

	e820_count = bp[BP_E820_ENTRIES];
	if (e820_count > E820_MAX_ZEROPAGE)
		e820_count = E820_MAX_ZEROPAGE;
	for (int i = 0; i < e820_count; i++) {
		const u8 *e = bp + BP_E820_TABLE + i * E820_ENTRY_SIZE;

		memcpy(&e820[i].base, e, 8);
		memcpy(&e820[i].size, e + 8, 8);
		memcpy(&e820[i].type, e + 16, 4);
	}

	bp_acpi_rsdp = bp64(BP_ACPI_RSDP_ADDR);
	initrd_addr = bp32(BP_RAMDISK_IMAGE) |
		      ((u64)bp32(BP_EXT_RAMDISK_IMAGE) << 32);
	initrd_size = bp32(BP_RAMDISK_SIZE) |
		      ((u64)bp32(BP_EXT_RAMDISK_SIZE) << 32);
}

void bootparams_load(u64 zero_page)
{
	zero_page_addr = zero_page;
	zero_page_size = BP_SIZE;
	if (!mapped(zero_page, BP_SIZE)) {
		fail("zero-page", "at 0x%lx, above 4 GiB", zero_page);
		return;
	}
	memcpy(bp, phys(zero_page), BP_SIZE);
	bootparams_parse();
}

/*
 * A zero page built by the guest itself from another loader's boot info
 * (pvh.c), which lives at addr and is size bytes long.
 */
void bootparams_adopt(const u8 *zp, u64 addr, u64 size)
{
	zero_page_addr = addr;
	zero_page_size = size;
	memcpy(bp, zp, BP_SIZE);
	bootparams_parse();
}

/* Is [base, base+size) entirely inside one entry of this type? */
bool e820_is(u64 base, u64 size, u32 type)
{
	for (int i = 0; i < e820_count; i++)
		if (e820[i].type == type && base >= e820[i].base &&
		    base + size <= e820[i].base + e820[i].size)
			return true;
	return false;
}

bool e820_is_ram(u64 base, u64 size)
{
	return e820_is(base, size, E820_RAM);
}

static bool overlaps(u64 a, u64 alen, u64 b, u64 blen)
{
	return a < b + blen && b < a + alen;
}

/*
 * The loader must put its data in RAM, outside [load address, + init_size),
 * and the initrd below initrd_addr_max (a bzImage header field: PVH has no
 * such limit).
 */
static void check_layout(void)
{
	u64 kbase = KERNEL_BASE, klen = (u64)_end - KERNEL_BASE;
	u64 clen = strlen(cmdline) + 1;

	if (!e820_is_ram(kbase, klen))
		fail("layout", "kernel 0x%lx-0x%lx not in e820 RAM", kbase,
		     kbase + klen);
	else if (overlaps(zero_page_addr, zero_page_size, kbase, klen))
		fail("layout", "zero page 0x%lx inside the kernel",
		     zero_page_addr);
	else if (cmdline_addr && overlaps(cmdline_addr, clen, kbase, klen))
		fail("layout", "cmdline 0x%lx inside the kernel", cmdline_addr);
	else if (initrd_size && overlaps(initrd_addr, initrd_size, kbase, klen))
		fail("layout", "initrd 0x%lx inside the kernel", initrd_addr);
	else if (initrd_size && !e820_is_ram(initrd_addr, initrd_size))
		fail("layout", "initrd 0x%lx-0x%lx not in e820 RAM",
		     initrd_addr, initrd_addr + initrd_size);
	else if (initrd_size && boot_entry != ENTRY_PVH &&
		 initrd_addr + initrd_size - 1 > INITRD_ADDR_MAX)
		fail("layout", "initrd ends at 0x%lx, above initrd_addr_max",
		     initrd_addr + initrd_size);
	else
		pass("layout", "kernel=0x%lx-0x%lx zero_page=0x%lx", kbase,
		     kbase + klen, zero_page_addr);
}

void bootparams_report(void)
{
	info("cmdline=\"%s\"", cmdline);
	if (boot_entry == ENTRY_PVH)
		info("boot_protocol=pvh start_info=0x%lx cmdline_addr=0x%lx",
		     zero_page_addr, cmdline_addr);
	else
		info("boot_protocol=0x%x loader=0x%x zero_page=0x%lx cmdline_addr=0x%lx",
		     *(u16 *)(bp + BP_VERSION), bp[BP_TYPE_OF_LOADER],
		     zero_page_addr, cmdline_addr);

	mem_usable = 0;
	mem_top = 0;
	for (int i = 0; i < e820_count; i++) {
		info("e820 %d base=0x%lx size=0x%lx type=%u", i, e820[i].base,
		     e820[i].size, e820[i].type);
		if (e820[i].type != E820_RAM)
			continue;
		mem_usable += e820[i].size;
		if (e820[i].base + e820[i].size > mem_top)
			mem_top = e820[i].base + e820[i].size;
	}
	info("mem_usable=%lu", mem_usable);
	info("mem_top=0x%lx", mem_top);
	if (e820_count)
		pass("e820", "entries=%d", e820_count);
	else
		fail("e820", "empty memory map");

	if (!initrd_addr || !initrd_size) {
		info("initrd=none");
	} else if (!mapped(initrd_addr, initrd_size)) {
		info("initrd_size=%lu initrd_addr=0x%lx", initrd_size,
		     initrd_addr);
		fail("initrd", "above 4 GiB, not mapped");
	} else {
		u32 crc = crc32(0, phys(initrd_addr), initrd_size);

		info("initrd_size=%lu initrd_crc32=0x%08x initrd_addr=0x%lx",
		     initrd_size, crc, initrd_addr);
	}
	check_layout();
}

/* Finds "key=value" as a whole word; copies value into val. */
bool cmdline_option(const char *key, char *val, size_t len)
{
	size_t klen = strlen(key);
	const char *p = cmdline;

	while (*p) {
		const char *word = p;

		while (*p && *p != ' ')
			p++;
		if ((size_t)(p - word) > klen && !strncmp(word, key, klen) &&
		    word[klen] == '=') {
			size_t n = p - word - klen - 1;

			if (n >= len)
				n = len - 1;
			memcpy(val, word + klen + 1, n);
			val[n] = '\0';
			return true;
		}
		while (*p == ' ')
			p++;
	}
	return false;
}
