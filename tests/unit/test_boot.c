/* Kernel loading against the Linux boot protocol's offsets: the zero page,
 * e820 map, command line, initrd placement, and the PVH start info. */
#include <elf.h>
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include "arch/x86/arch.h"
#include "arch/x86/boot.h"
#include "arch/x86/bootparams.h"
#include "arch/x86/layout.h"
#include "log.h"
#include "unit.h"
#include "util.h"
#include "vm.h"

static char kpath[64], ipath[64];

static uint64_t rd(const uint8_t *p, size_t off, int n)
{
	uint64_t v = 0;

	memcpy(&v, p + off, n);
	return v;
}

static void write_tmp(char *path, const void *data, size_t len)
{
	int fd;

	strcpy(path, "/tmp/kvmm-unit-XXXXXX");
	fd = mkstemp(path);
	CHECK(fd >= 0 && write(fd, data, len) == (ssize_t)len);
	close(fd);
}

/* A minimal bzImage: 1 setup sector + boot sector, then a payload. */
static uint8_t *make_bzimage(size_t *len, uint16_t version, uint16_t xlf)
{
	size_t n = 3 * 512 + 4096;
	uint8_t *k = calloc(1, n);

	k[HDR_SETUP_SECTS] = 2;
	memcpy(k + HDR_BOOT_FLAG, &(uint16_t){ 0xAA55 }, 2);
	k[HDR_JUMP] = 0xEB;
	k[HDR_JUMP + 1] = 0x66;			/* header ends at 0x268 */
	memcpy(k + HDR_MAGIC, "HdrS", 4);
	memcpy(k + HDR_VERSION, &version, 2);
	k[HDR_LOADFLAGS] = LOADFLAGS_LOADED_HIGH;
	memcpy(k + HDR_INITRD_ADDR_MAX, &(uint32_t){ 0x7fffffff }, 4);
	memcpy(k + HDR_XLOADFLAGS, &xlf, 2);
	memcpy(k + HDR_CMDLINE_SIZE, &(uint32_t){ 2047 }, 4);
	memcpy(k + HDR_INIT_SIZE, &(uint32_t){ 0x10000 }, 4);
	memset(k + 3 * 512, 0x90, 4096);	/* the "kernel" */
	*len = n;
	return k;
}

static struct vm_config cfg;
static struct vm vm;

static int boot(const void *kernel, size_t klen, const void *initrd, size_t ilen,
		uint64_t mem)
{
	int r;

	log_set_level(LOG_ERR + 0);
	memset(&vm, 0, sizeof(vm));
	memset(&cfg, 0, sizeof(cfg));
	write_tmp(kpath, kernel, klen);
	cfg.kernel = kpath;
	cfg.cmdline = "console=ttyS0 hello=world";
	cfg.memory = mem;
	cfg.cpus = 2;
	if (initrd) {
		write_tmp(ipath, initrd, ilen);
		cfg.initrd = ipath;
	}
	vm.cfg = &cfg;
	vm.ncpus = 2;
	r = arch_prepare_boot(&vm);
	if (!r) {
		CHECK(guest_mem_init(&vm.mem, mem, X86_MMIO_HOLE_START, X86_HIGH_RAM_START) == 0);
		r = arch_load_kernel(&vm);
	}
	unlink(kpath);
	if (initrd)
		unlink(ipath);
	return r;
}

static void unboot(void)
{
	guest_mem_destroy(&vm.mem);
	free(vm.kernel);
	free(vm.initrd);
}

UNIT_TEST(bzimage_zero_page_follows_the_boot_protocol)
{
	size_t len;
	uint8_t *k = make_bzimage(&len, 0x20F, XLF_KERNEL_64);
	uint8_t initrd[10000];
	uint8_t *zp;

	memset(initrd, 0xab, sizeof(initrd));
	CHECK(boot(k, len, initrd, sizeof(initrd), 256 * MiB) == 0);
	zp = guest_mem_ptr(&vm.mem, X86_ZERO_PAGE_ADDR, BP_SIZE);
	CHECK(!memcmp(zp + HDR_MAGIC, "HdrS", 4));
	CHECK_EQ_U64(zp[HDR_TYPE_OF_LOADER], 0xFF);
	CHECK(zp[HDR_LOADFLAGS] & LOADFLAGS_CAN_USE_HEAP);
	CHECK_EQ_U64(rd(zp, HDR_CMD_LINE_PTR, 4), X86_CMDLINE_ADDR);
	CHECK_STR((char *)guest_mem_ptr(&vm.mem, X86_CMDLINE_ADDR, 1), "console=ttyS0 hello=world");
	CHECK_EQ_U64(rd(zp, HDR_RAMDISK_SIZE, 4), sizeof(initrd));
	/* initrd: page aligned, at the top of RAM, intact */
	CHECK_EQ_U64(rd(zp, HDR_RAMDISK_IMAGE, 4) % 4096, 0);
	CHECK(rd(zp, HDR_RAMDISK_IMAGE, 4) + sizeof(initrd) <= 256 * MiB);
	CHECK(rd(zp, HDR_RAMDISK_IMAGE, 4) + sizeof(initrd) > 256 * MiB - 4096);
	CHECK(!memcmp(guest_mem_ptr(&vm.mem, rd(zp, HDR_RAMDISK_IMAGE, 4), sizeof(initrd)),
		      initrd, sizeof(initrd)));
	CHECK_EQ_U64(rd(zp, BP_ACPI_RSDP_ADDR, 8), X86_ACPI_ADDR);
	/* the payload sits at 1 MiB; entry is its 64-bit entry point */
	CHECK_EQ_U64(*(uint8_t *)guest_mem_ptr(&vm.mem, X86_KERNEL_ADDR, 1), 0x90);
	CHECK(vm.entry.mode == BOOT_ENTRY_64);
	CHECK_EQ_U64(vm.entry.rip, 0x100200);
	CHECK_EQ_U64(vm.entry.rsi, X86_ZERO_PAGE_ADDR);
	unboot();
	free(k);
}

UNIT_TEST(e820_describes_low_and_high_memory)
{
	size_t len;
	uint8_t *k = make_bzimage(&len, 0x20F, XLF_KERNEL_64);
	uint8_t *zp, *e;
	uint64_t usable = 0;
	unsigned int i, n;

	CHECK(boot(k, len, NULL, 0, 4 * GiB) == 0);
	zp = guest_mem_ptr(&vm.mem, X86_ZERO_PAGE_ADDR, BP_SIZE);
	n = zp[BP_E820_ENTRIES];
	CHECK_EQ_U64(n, 6);
	for (i = 0; i < n; i++) {
		e = zp + BP_E820_TABLE + i * 20;
		if (rd(e, 16, 4) == E820_RAM)
			usable += rd(e, 8, 8);
		if (i)	/* sorted, no overlap */
			CHECK(rd(e, 0, 8) >= rd(e - 20, 0, 8) + rd(e - 20, 8, 8));
	}
	/* all RAM but the EBDA and the 0xA0000-0xFFFFF hole */
	CHECK_EQ_U64(usable, 4 * GiB - (0x100000 - X86_EBDA_ADDR));
	/* the ECAM is reserved, between low and high RAM */
	e = zp + BP_E820_TABLE + 4 * 20;
	CHECK_EQ_U64(rd(e, 0, 8), X86_PCI_ECAM_ADDR);
	CHECK_EQ_U64(rd(e, 8, 8), X86_PCI_ECAM_SIZE);
	CHECK_EQ_U64(rd(e, 16, 4), E820_RESERVED);
	e = zp + BP_E820_TABLE + 5 * 20;
	CHECK_EQ_U64(rd(e, 0, 8), X86_HIGH_RAM_START);
	CHECK_EQ_U64(rd(e, 8, 8), 1 * GiB);
	CHECK_EQ_U64(rd(zp, HDR_RAMDISK_IMAGE, 4), 0);
	unboot();
	free(k);
}

UNIT_TEST(page_tables_identity_map_4g)
{
	size_t len;
	uint8_t *k = make_bzimage(&len, 0x20F, XLF_KERNEL_64);
	uint64_t *pml4, *pd;

	CHECK(boot(k, len, NULL, 0, 64 * MiB) == 0);
	pml4 = guest_mem_ptr(&vm.mem, X86_PML4_ADDR, 4096);
	pd = guest_mem_ptr(&vm.mem, X86_PD_ADDR, 4 * 4096);
	CHECK_EQ_U64(pml4[0] & ~0xfffULL, X86_PDPT_ADDR);
	CHECK_EQ_U64(pd[2047] & ~0xfffULL, 4 * GiB - 2 * MiB);
	CHECK(pd[0] & 0x80);
	unboot();
	free(k);
}

UNIT_TEST(non_kernel_files_are_refused)
{
	char junk[4096] = "this is not a kernel";

	CHECK(boot(junk, sizeof(junk), NULL, 0, 64 * MiB) == -ENOEXEC);
	free(vm.kernel);
}

UNIT_TEST(bzimage_without_64bit_entry_is_refused)
{
	size_t len;
	uint8_t *k = make_bzimage(&len, 0x20A, 0);

	CHECK(boot(k, len, NULL, 0, 64 * MiB) == -ENOEXEC);
	free(vm.kernel);
	free(k);
}

UNIT_TEST(initrd_larger_than_memory_is_refused)
{
	size_t len;
	uint8_t *k = make_bzimage(&len, 0x20F, XLF_KERNEL_64);
	uint8_t *big = calloc(1, 40 * MiB);

	CHECK(boot(k, len, big, 40 * MiB, 32 * MiB) == -ENOSPC);
	free(vm.kernel);
	free(vm.initrd);
	free(big);
	free(k);
}

UNIT_TEST(command_line_longer_than_kernel_allows_is_refused)
{
	size_t len;
	uint8_t *k = make_bzimage(&len, 0x20F, XLF_KERNEL_64);
	char *longcmd = malloc(4000);

	memset(longcmd, 'x', 3999);
	longcmd[3999] = 0;
	memset(&vm, 0, sizeof(vm));
	memset(&cfg, 0, sizeof(cfg));
	write_tmp(kpath, k, len);
	cfg.kernel = kpath;
	cfg.cmdline = longcmd;
	cfg.memory = 64 * MiB;
	cfg.cpus = 1;
	vm.cfg = &cfg;
	vm.ncpus = 1;
	CHECK(arch_prepare_boot(&vm) == 0);
	CHECK(guest_mem_init(&vm.mem, cfg.memory, X86_MMIO_HOLE_START, X86_HIGH_RAM_START) == 0);
	CHECK(arch_load_kernel(&vm) == -E2BIG);
	unlink(kpath);
	unboot();
	free(longcmd);
	free(k);
}

/* An ELF64 x86-64 image with one PT_LOAD at `paddr` and a Xen
 * PHYS32_ENTRY note pointing at `entry`. */
static void make_pvh_elf(uint8_t *img, uint64_t paddr, uint32_t entry)
{
	Elf64_Ehdr *eh = (Elf64_Ehdr *)img;
	Elf64_Phdr *ph = (Elf64_Phdr *)(img + sizeof(*eh));
	uint8_t *note = img + 512;

	memset(img, 0, 8192);
	memcpy(eh->e_ident, ELFMAG, SELFMAG);
	eh->e_ident[EI_CLASS] = ELFCLASS64;
	eh->e_ident[EI_DATA] = ELFDATA2LSB;
	eh->e_machine = EM_X86_64;
	eh->e_phoff = sizeof(*eh);
	eh->e_phentsize = sizeof(*ph);
	eh->e_phnum = 2;
	ph[0] = (Elf64_Phdr){ .p_type = PT_LOAD, .p_offset = 4096, .p_paddr = paddr,
			      .p_filesz = 4096, .p_memsz = 8192 };
	ph[1] = (Elf64_Phdr){ .p_type = PT_NOTE, .p_offset = 512, .p_filesz = 20 };
	memcpy(note, &(uint32_t){ 4 }, 4);
	memcpy(note + 4, &(uint32_t){ 4 }, 4);
	memcpy(note + 8, &(uint32_t){ XEN_ELFNOTE_PHYS32_ENTRY }, 4);
	memcpy(note + 12, "Xen", 4);
	memcpy(note + 16, &entry, 4);
	memset(img + 4096, 0xcc, 4096);
}

UNIT_TEST(elf_pvh_kernel_gets_start_info)
{
	uint8_t img[8192];
	uint8_t *si;
	uint64_t *gdt;

	make_pvh_elf(img, 0x200000, 0x200040);
	CHECK(boot(img, sizeof(img), "rd", 2, 64 * MiB) == 0);
	CHECK(vm.entry.mode == BOOT_ENTRY_PVH);
	CHECK_EQ_U64(vm.entry.rip, 0x200040);
	CHECK_EQ_U64(vm.entry.rbx, X86_PVH_INFO_ADDR);
	si = guest_mem_ptr(&vm.mem, X86_PVH_INFO_ADDR, 4096);
	CHECK_EQ_U64(rd(si, 0, 4), PVH_START_MAGIC);
	CHECK_EQ_U64(rd(si, 12, 4), 1);			/* one module */
	CHECK_EQ_U64(rd(si, 24, 8), X86_CMDLINE_ADDR);
	CHECK_EQ_U64(rd(si, 32, 8), X86_ACPI_ADDR);
	CHECK_EQ_U64(rd(si, 48, 4), 5);			/* e820 entries */
	CHECK_EQ_U64(*(uint8_t *)guest_mem_ptr(&vm.mem, 0x200000, 1), 0xcc);
	CHECK_EQ_U64(*(uint8_t *)guest_mem_ptr(&vm.mem, 0x201000, 1), 0);	/* bss */
	/* entered in 32-bit mode: the GDT's 0x10 is a 32-bit code segment */
	gdt = guest_mem_ptr(&vm.mem, X86_GDT_ADDR, 32);
	CHECK_EQ_U64(gdt[2], 0x00cf9b000000ffffULL);
	unboot();
}

UNIT_TEST(elf_segment_below_1mib_is_refused)
{
	uint8_t img[8192];

	make_pvh_elf(img, 0x8000, 0x8000);
	CHECK(boot(img, sizeof(img), NULL, 0, 64 * MiB) == -ENOEXEC);
	unboot();
}

UNIT_TEST(pvh_entry_outside_the_kernel_is_refused)
{
	uint8_t img[8192];

	make_pvh_elf(img, 0x200000, 0x400000);
	CHECK(boot(img, sizeof(img), NULL, 0, 64 * MiB) == -ENOEXEC);
	unboot();
}

UNIT_TEST(elf_for_another_machine_is_refused)
{
	uint8_t img[8192];

	make_pvh_elf(img, 0x200000, 0x200040);
	((Elf64_Ehdr *)img)->e_machine = EM_AARCH64;
	CHECK(boot(img, sizeof(img), NULL, 0, 64 * MiB) == -ENOEXEC);
	free(vm.kernel);
	make_pvh_elf(img, 0x200000, 0x200040);
	img[EI_CLASS] = ELFCLASS32;
	CHECK(boot(img, sizeof(img), NULL, 0, 64 * MiB) == -ENOEXEC);
	free(vm.kernel);
}

UNIT_TEST(elf_without_pvh_note_is_refused)
{
	uint8_t img[4096] = { 0 };
	Elf64_Ehdr *eh = (Elf64_Ehdr *)img;

	memcpy(eh->e_ident, ELFMAG, SELFMAG);
	eh->e_ident[EI_CLASS] = ELFCLASS64;
	eh->e_ident[EI_DATA] = ELFDATA2LSB;
	eh->e_machine = EM_X86_64;
	eh->e_phoff = sizeof(*eh);
	eh->e_phentsize = sizeof(Elf64_Phdr);
	CHECK(boot(img, sizeof(img), NULL, 0, 64 * MiB) == -ENOEXEC);
	free(vm.kernel);
}
