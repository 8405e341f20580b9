// SPDX-License-Identifier: MIT
/*
 * Mapping device MMIO (PCI BARs) at CPL3.  The static page tables map the
 * low 4 GiB, cacheable below 3 GiB; a BAR may sit anywhere, 64-bit ones
 * far above 4 GiB.  The tables live in user-accessible memory, so CPL3
 * edits them: 2 MiB pages, uncached, tables taken from a small pool.
 * Turning a present page uncached needs a TLB flush, which is CPL0's
 * (SYS_FLUSH_TLB); filling a not-present entry needs none.
 */
#include "guest.h"
#include "io.h"
#include "pci.h"

#define PTE_P		0x01ULL
#define PTE_RW		0x02ULL
#define PTE_US		0x04ULL
#define PTE_PWT		0x08ULL
#define PTE_PCD		0x10ULL
#define PTE_PS		0x80ULL
#define PTE_ADDR	0x000ffffffffff000ULL
#define TABLE		(PTE_P | PTE_RW | PTE_US)
#define PAGE_2M		0x200000ULL
#define POOL_TABLES	16

extern u64 pml4[512];

static u64 pool[POOL_TABLES][512] __aligned(4096);
static int pool_used;

/* The table an entry points to, made (empty) if absent; NULL if a leaf. */
static u64 *next_table(u64 *entry)
{
	if (!(*entry & PTE_P)) {
		u64 *t;

		if (pool_used == POOL_TABLES)
			return NULL;
		t = pool[pool_used++];
		memset(t, 0, 4096);
		barrier();
		*entry = (u64)t | TABLE;
		return t;
	}
	if (*entry & PTE_PS)
		return NULL;
	return phys(*entry & PTE_ADDR);
}

bool map_mmio(u64 addr, u64 len)
{
	bool flush = false;

	if (!len || addr + len < addr || addr + len > (1ULL << 46))
		return false;
	for (u64 a = addr & ~(PAGE_2M - 1); a < addr + len; a += PAGE_2M) {
		u64 *pdpt = next_table(&pml4[(a >> 39) & 511]);
		u64 *pd = pdpt ? next_table(&pdpt[(a >> 30) & 511]) : NULL;
		u64 want = a | TABLE | PTE_PS | PTE_PWT | PTE_PCD, *e;

		if (!pd)
			return false;
		e = &pd[(a >> 21) & 511];
		if (*e == want)
			continue;
		if (*e & PTE_P)
			flush = true;
		*e = want;
	}
	if (flush)
		asm volatile("int $0x80" : : "a"((u64)SYS_FLUSH_TLB) : "memory");
	return true;
}
