/* Boot-time layout shared by the kernel loader and the vCPU setup. */
#ifndef KVMM_X86_BOOT_H
#define KVMM_X86_BOOT_H

#include <stddef.h>
#include <stdint.h>

struct vm;

struct e820_entry {
	uint64_t addr, size;
	uint32_t type;
};

/* Fills e[] with the machine's memory map; returns the count or -ENOSPC. */
int e820_build(uint64_t mem_size, uint64_t low_end, struct e820_entry *e,
	       unsigned int max);
/* The PVH entry point of an ELF kernel (0 or -ENOENT / -EINVAL). */
int elf_pvh_entry(const uint8_t *k, size_t len, uint64_t *entry);
/* Identity map of the low 4 GiB for the 64-bit entry. */
int setup_page_tables(struct vm *vm);

#endif
