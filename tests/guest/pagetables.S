/* SPDX-License-Identifier: MIT */
/*
 * Static page tables: the low 4 GiB identity-mapped with 2 MiB pages, all of
 * it user-accessible so that almost everything (LAPIC and IOAPIC MMIO too)
 * can run at CPL3.  Building them at run time would cost thousands of
 * emulated CPL0 instructions; here the assembler does it.  3-4 GiB (MMIO)
 * is mapped uncached.
 */
#define PTE_P	0x01
#define PTE_RW	0x02
#define PTE_US	0x04
#define PTE_PWT	0x08
#define PTE_PCD	0x10
#define PTE_PS	0x80
#define TABLE	(PTE_P | PTE_RW | PTE_US)
#define BIG	(PTE_P | PTE_RW | PTE_US | PTE_PS)

	.section ".data.pagetables", "aw"
	.balign	4096
	.globl	pml4
pml4:
	.quad	pdpt + TABLE
	.fill	511, 8, 0
pdpt:
	.quad	pd + TABLE
	.quad	pd + 0x1000 + TABLE
	.quad	pd + 0x2000 + TABLE
	.quad	pd + 0x3000 + TABLE
	.fill	508, 8, 0
pd:
	.set	n, 0
	.rept	1536
	.quad	(n << 21) + BIG
	.set	n, n + 1
	.endr
	.rept	512
	.quad	(n << 21) + BIG + PTE_PWT + PTE_PCD
	.set	n, n + 1
	.endr
