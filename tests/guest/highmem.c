// SPDX-License-Identifier: MIT
/*
 * kvmmtest.highmem=on: RAM above 4 GiB is really there.  The first and
 * last 2 MiB above 4 GiB and one in the middle of that e820 range are
 * mapped (as mmio.c maps BARs), written and read back.  kvmm gives that
 * RAM to KVM only as it is first used, so this is also its first use.
 */
#include "guest.h"
#include "io.h"
#include "pci.h"

#define PAGE_2M	0x200000ULL

static bool check_block(u64 a)
{
	volatile u64 *p = phys(a);

	if (!map_mmio(a, PAGE_2M))
		return false;
	for (u64 off = 0; off < PAGE_2M / 8; off += 4096 / 8)
		p[off] = a + off * 8;
	for (u64 off = 0; off < PAGE_2M / 8; off += 4096 / 8)
		if (p[off] != a + off * 8)
			return false;
	return true;
}

void highmem_run(void)
{
	char opt[8];
	u64 lo = 0, hi = 0;
	int n = 0;

	if (!cmdline_option("kvmmtest.highmem", opt, sizeof(opt)) || strcmp(opt, "on"))
		return;
	for (int i = 0; i < e820_count; i++)
		if (e820[i].type == 1 && e820[i].base >= (4ULL << 30) && e820[i].size >= PAGE_2M) {
			lo = e820[i].base;
			hi = (e820[i].base + e820[i].size) & ~(PAGE_2M - 1);
			break;
		}
	if (!lo) {
		fail("highmem", "no RAM above 4 GiB in the e820 map");
		return;
	}
	u64 at[3] = { lo, (lo + (hi - lo) / 2) & ~(PAGE_2M - 1), hi - PAGE_2M };

	for (int i = 0; i < 3; i++) {
		if (!check_block(at[i])) {
			fail("highmem", "RAM at 0x%lx did not keep what was written", at[i]);
			return;
		}
		n++;
	}
	pass("highmem", "blocks=%d first=0x%lx last=0x%lx", n, at[0], at[2]);
}
