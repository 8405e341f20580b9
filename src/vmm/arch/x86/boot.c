/* Loading the guest kernel: bzImage through the Linux boot protocol's
 * 64-bit entry, or an ELF vmlinux through its PVH entry point.  Also the
 * boot-time data both paths need: e820 map, command line, initrd, ACPI. */
#include <elf.h>
#include <errno.h>
#include <string.h>

#include "acpi.h"
#include "arch.h"
#include "boot.h"
#include "bootparams.h"
#include "layout.h"
#include "log.h"
#include "smbios.h"
#include "util.h"
#include "vm.h"

static uint16_t get16(const uint8_t *p, size_t off) { uint16_t v; memcpy(&v, p + off, 2); return v; }
static uint32_t get32(const uint8_t *p, size_t off) { uint32_t v; memcpy(&v, p + off, 4); return v; }
static void put16(uint8_t *p, size_t off, uint16_t v) { memcpy(p + off, &v, 2); }
static void put32(uint8_t *p, size_t off, uint32_t v) { memcpy(p + off, &v, 4); }
static void put64(uint8_t *p, size_t off, uint64_t v) { memcpy(p + off, &v, 8); }

#define PTE_P 0x1
#define PTE_W 0x2
#define PTE_PS 0x80

/* 4 GiB identity map with 2 MiB pages: what the 64-bit boot protocol
 * promises (kernel, zero page and command line mapped). */
int setup_page_tables(struct vm *vm)
{
	uint64_t *pml4 = guest_mem_ptr(&vm->mem, X86_PML4_ADDR, 4096);
	uint64_t *pdpt = guest_mem_ptr(&vm->mem, X86_PDPT_ADDR, 4096);
	uint64_t *pd = guest_mem_ptr(&vm->mem, X86_PD_ADDR, 4 * 4096);
	uint64_t *gdt = guest_mem_ptr(&vm->mem, X86_GDT_ADDR, 4 * 8);
	unsigned int i;

	if (!pml4 || !pdpt || !pd || !gdt)
		return -EFAULT;
	memset(pml4, 0, 4096);
	memset(pdpt, 0, 4096);
	pml4[0] = X86_PDPT_ADDR | PTE_P | PTE_W;
	for (i = 0; i < 4; i++)
		pdpt[i] = (X86_PD_ADDR + i * 4096) | PTE_P | PTE_W;
	for (i = 0; i < 4 * 512; i++)
		pd[i] = ((uint64_t)i << 21) | PTE_P | PTE_W | PTE_PS;
	/* GDT as Linux's boot code expects: 0x10 code, 0x18 data.  The code
	 * descriptor matches the mode the kernel is entered in, so a kernel
	 * that reloads CS before its own lgdt keeps the same mode. */
	gdt[0] = 0;
	gdt[1] = 0;
	gdt[2] = vm->entry.mode == BOOT_ENTRY_PVH ?
		 0x00cf9b000000ffffULL :	/* 32-bit code */
		 0x00af9b000000ffffULL;		/* 64-bit code */
	gdt[3] = 0x00cf93000000ffffULL;	/* data */
	return 0;
}

static bool is_bzimage(const uint8_t *k, size_t len)
{
	return len > 0x264 && !memcmp(k + HDR_MAGIC, "HdrS", 4) &&
	       get16(k, HDR_BOOT_FLAG) == 0xAA55;
}

static bool is_elf(const uint8_t *k, size_t len)
{
	return len >= sizeof(Elf64_Ehdr) && !memcmp(k, ELFMAG, SELFMAG);
}

static bool is_elf64_x86(const uint8_t *k)
{
	const Elf64_Ehdr *eh = (const Elf64_Ehdr *)k;

	return k[EI_CLASS] == ELFCLASS64 && k[EI_DATA] == ELFDATA2LSB &&
	       eh->e_machine == EM_X86_64;
}

int e820_build(uint64_t mem_size, uint64_t low_end, struct e820_entry *e, unsigned int max)
{
	unsigned int n = 0;

	if (max < 5)
		return -ENOSPC;
	e[n++] = (struct e820_entry){ 0, X86_EBDA_ADDR, E820_RAM };
	e[n++] = (struct e820_entry){ X86_EBDA_ADDR, 0xA0000 - X86_EBDA_ADDR, E820_RESERVED };
	/* 0xE0000-0xFFFFF: ACPI tables and the area legacy scanners search. */
	e[n++] = (struct e820_entry){ X86_ACPI_ADDR, X86_SMBIOS_ADDR + X86_SMBIOS_SIZE - X86_ACPI_ADDR,
				      E820_RESERVED };
	e[n++] = (struct e820_entry){ X86_KERNEL_ADDR, low_end - X86_KERNEL_ADDR, E820_RAM };
	/* The MCFG's ECAM: Linux uses it from its first PCI access only when
	 * the e820 map reserves it, as SeaBIOS does on QEMU's q35. */
	e[n++] = (struct e820_entry){ X86_PCI_ECAM_ADDR, X86_PCI_ECAM_SIZE, E820_RESERVED };
	if (mem_size > low_end) {
		if (max < 6)
			return -ENOSPC;
		e[n++] = (struct e820_entry){ X86_HIGH_RAM_START, mem_size - low_end, E820_RAM };
	}
	return n;
}

/* Where the initrd goes: as high in low memory as the kernel allows,
 * page aligned, above the kernel's own footprint. */
static int initrd_place(struct vm *vm, uint64_t kernel_end, uint64_t addr_max,
			uint64_t *gpa)
{
	uint64_t top = MIN(addr_max + 1, guest_mem_low_end(&vm->mem));
	uint64_t size = vm->initrd_len;

	if (size > top || ALIGN_DOWN(top - size, 4096) < ALIGN_UP(kernel_end, 4096)) {
		pr_err("initrd %s (%llu MiB) does not fit in guest memory below %llu MiB: give the guest more memory with --memory",
		       vm->cfg->initrd, (unsigned long long)(size >> 20),
		       (unsigned long long)(top >> 20));
		return -ENOSPC;
	}
	*gpa = ALIGN_DOWN(top - size, 4096);
	return 0;
}

static int copy_to_guest(struct vm *vm, uint64_t gpa, const void *src, uint64_t len)
{
	void *dst = guest_mem_ptr(&vm->mem, gpa, len);

	if (!dst)
		return -EFAULT;
	memcpy(dst, src, len);
	return 0;
}

static int load_cmdline(struct vm *vm, uint64_t max)
{
	size_t len = strlen(vm->cfg->cmdline);

	if (len >= max || len >= X86_CMDLINE_MAX) {
		pr_err("kernel command line is %zu bytes but this kernel accepts at most %llu: shorten --cmdline",
		       len, (unsigned long long)MIN(max, X86_CMDLINE_MAX) - 1);
		return -E2BIG;
	}
	return copy_to_guest(vm, X86_CMDLINE_ADDR, vm->cfg->cmdline, len + 1);
}

static int64_t load_acpi(struct vm *vm)
{
	struct acpi_platform p = {
		/* The boot set; with vCPU hotplug, the vCPUs present now (after
		 * a reset: the hot-added ones too) are enabled in the MADT. */
		.ncpus = vm->cfg->cpus,
		.max_cpus = vm->cfg->max_cpus > vm->cfg->cpus ? vm->cfg->max_cpus : 0,
		.cpu_hotplug_port = vm->cfg->max_cpus > vm->cfg->cpus ? X86_CPU_HOTPLUG_PORT : 0,
		.cpu_enabled = vm->cpu_present,
		.lapic_addr = X86_LAPIC_ADDR,
		.ioapic_addr = X86_IOAPIC_ADDR,
		.pm1a_evt_port = X86_PM_BASE,
		.pm1a_cnt_port = X86_PM_BASE + 4,
		.pm_tmr_port = X86_PM_BASE + 8,
		.reset_port = X86_RESET_PORT,
		.reset_value = 0x06,
		.sci_irq = X86_SCI_IRQ,
		.s5_slp_typ = X86_S5_SLP_TYP,
		.com1_port = X86_COM1_PORT,
		.com1_irq = X86_COM1_IRQ,
		.rtc_port = X86_RTC_PORT,
		.rtc_irq = X86_RTC_IRQ,
		.i8042_port = X86_I8042_PORT,
		.pci_ecam_addr = X86_PCI_ECAM_ADDR,
		.pci_mmio_base = X86_PCI_MMIO_START,
		.pci_mmio_size = X86_PCI_MMIO_SIZE,
		.pci_conf1_port = X86_PCI_CONF1_PORT,
		.gpe0_port = X86_GPE0_PORT,
		.pci_hotplug_port = X86_PCI_HOTPLUG_PORT,
		.fw_cfg_port = vm->cfg->vmcoreinfo ? X86_FW_CFG_PORT : 0,
	};
	void *buf = guest_mem_ptr(&vm->mem, X86_ACPI_ADDR, X86_ACPI_SIZE);
	int64_t rsdp;

	if (!buf)
		return -EFAULT;
	rsdp = acpi_build(&p, buf, X86_ACPI_ADDR, X86_ACPI_SIZE);
	if (rsdp < 0)
		pr_err("cannot build the ACPI tables: %s", strerror((int)-rsdp));
	return rsdp;
}

/* SMBIOS tables, always: without "smbios" kvmm's defaults, as QEMU gives
 * every guest its own (Linux, cloud-init and systemd read DMI). */
static int load_smbios(struct vm *vm)
{
	void *buf;
	int64_t r;

	buf = guest_mem_ptr(&vm->mem, X86_SMBIOS_ADDR, X86_SMBIOS_SIZE);
	if (!buf)
		return -EFAULT;
	r = smbios_build(&vm->cfg->smbios, buf, X86_SMBIOS_ADDR, X86_SMBIOS_SIZE);
	if (r < 0) {
		pr_err("cannot build the SMBIOS tables: %s", strerror((int)-r));
		return (int)r;
	}
	return 0;
}

/* The BIOS data area's EBDA pointer, for guests that scan for the RSDP. */
static void set_ebda_pointer(struct vm *vm)
{
	uint8_t *bda = guest_mem_ptr(&vm->mem, 0x40E, 2);

	if (bda)
		put16(bda, 0, X86_EBDA_ADDR >> 4);
}

static int load_bzimage(struct vm *vm, struct boot_entry *entry, int64_t rsdp)
{
	const uint8_t *k = vm->kernel;
	uint8_t *zp = guest_mem_ptr(&vm->mem, X86_ZERO_PAGE_ADDR, BP_SIZE);
	struct e820_entry e820[BP_E820_MAX];
	unsigned int setup_sects = k[HDR_SETUP_SECTS] ? k[HDR_SETUP_SECTS] : 4;
	size_t payload_off = (setup_sects + 1) * 512ULL;
	size_t hdr_end = 0x202 + k[HDR_JUMP + 1];
	uint16_t version = get16(k, HDR_VERSION);
	uint64_t cmdline_max = 256, initrd_max = 0x37FFFFFF, kernel_end, initrd_gpa = 0;
	int i, n, r;

	if (!zp)
		return -EFAULT;
	/* Checked in arch_prepare_boot: payload_off < len, version >= 2.12. */
	if (copy_to_guest(vm, X86_KERNEL_ADDR, k + payload_off, vm->kernel_len - payload_off)) {
		pr_err("kernel %s does not fit in guest memory: give the guest more memory with --memory",
		       vm->cfg->kernel);
		return -ENOSPC;
	}
	kernel_end = X86_KERNEL_ADDR + MAX(vm->kernel_len - payload_off,
					   (uint64_t)get32(k, HDR_INIT_SIZE));
	if (version >= 0x206)
		cmdline_max = get32(k, HDR_CMDLINE_SIZE) + 1ULL;
	if (version >= 0x203)
		initrd_max = get32(k, HDR_INITRD_ADDR_MAX);

	memset(zp, 0, BP_SIZE);
	memcpy(zp + BP_HDR, k + BP_HDR, MIN(hdr_end, BP_SIZE) - BP_HDR);
	zp[HDR_TYPE_OF_LOADER] = LOADER_TYPE_UNDEFINED;
	zp[HDR_LOADFLAGS] |= LOADFLAGS_CAN_USE_HEAP;
	put16(zp, HDR_HEAP_END_PTR, 0xFE00);
	r = load_cmdline(vm, cmdline_max);
	if (r)
		return r;
	put32(zp, HDR_CMD_LINE_PTR, X86_CMDLINE_ADDR);
	if (vm->initrd) {
		r = initrd_place(vm, kernel_end, initrd_max, &initrd_gpa);
		if (r)
			return r;
		copy_to_guest(vm, initrd_gpa, vm->initrd, vm->initrd_len);
		put32(zp, HDR_RAMDISK_IMAGE, (uint32_t)initrd_gpa);
		put32(zp, HDR_RAMDISK_SIZE, (uint32_t)vm->initrd_len);
		put32(zp, BP_EXT_RAMDISK_IMAGE, initrd_gpa >> 32);
		put32(zp, BP_EXT_RAMDISK_SIZE, (uint64_t)vm->initrd_len >> 32);
	}
	put64(zp, BP_ACPI_RSDP_ADDR, rsdp);
	n = e820_build(vm->mem.size, guest_mem_low_end(&vm->mem), e820, BP_E820_MAX);
	if (n < 0)
		return n;
	zp[BP_E820_ENTRIES] = n;
	for (i = 0; i < n; i++) {
		uint8_t *e = zp + BP_E820_TABLE + i * 20;

		put64(e, 0, e820[i].addr);
		put64(e, 8, e820[i].size);
		put32(e, 16, e820[i].type);
	}
	entry->mode = BOOT_ENTRY_64;
	entry->rip = X86_KERNEL_ADDR + 0x200;
	entry->rsi = X86_ZERO_PAGE_ADDR;
	return 0;
}

static int elf_find_pvh_entry(const uint8_t *k, size_t len, const Elf64_Phdr *ph,
			      uint64_t *entry)
{
	uint64_t off = ph->p_offset, end;

	/* Notes: namesz, descsz, type, name (4-aligned), desc (4-aligned). */
	if (off > len || ph->p_filesz > len - off)
		return -EINVAL;
	end = off + ph->p_filesz;
	while (end - off >= 12) {
		uint32_t namesz = get32(k, off), descsz = get32(k, off + 4);
		uint32_t type = get32(k, off + 8);
		uint64_t name = off + 12, desc = name + ALIGN_UP((uint64_t)namesz, 4);

		if (desc > end || ALIGN_UP((uint64_t)descsz, 4) > end - desc)
			return -EINVAL;
		if (type == XEN_ELFNOTE_PHYS32_ENTRY && namesz == 4 &&
		    !memcmp(k + name, "Xen", 4) && descsz >= 4) {
			*entry = descsz >= 8 ? get32(k, desc) | ((uint64_t)get32(k, desc + 4) << 32) :
					       get32(k, desc);
			return 0;
		}
		off = desc + ALIGN_UP((uint64_t)descsz, 4);
	}
	return -ENOENT;
}

/* Reads the program headers; checks they lie inside the file. */
static const Elf64_Phdr *elf_phdrs(const uint8_t *k, size_t len, unsigned int *n)
{
	const Elf64_Ehdr *eh = (const Elf64_Ehdr *)k;

	if (eh->e_phentsize != sizeof(Elf64_Phdr) || eh->e_phoff > len ||
	    (uint64_t)eh->e_phnum * sizeof(Elf64_Phdr) > len - eh->e_phoff)
		return NULL;
	*n = eh->e_phnum;
	return (const Elf64_Phdr *)(k + eh->e_phoff);
}

int elf_pvh_entry(const uint8_t *k, size_t len, uint64_t *entry)
{
	const Elf64_Phdr *ph;
	unsigned int i, n;

	ph = elf_phdrs(k, len, &n);
	if (!ph)
		return -EINVAL;
	for (i = 0; i < n; i++)
		if (ph[i].p_type == PT_NOTE && !elf_find_pvh_entry(k, len, &ph[i], entry))
			return 0;
	return -ENOENT;
}

static int load_elf_segments(struct vm *vm, uint64_t *end)
{
	const Elf64_Phdr *ph;
	unsigned int i, n = 0;
	uint8_t *dst;

	ph = elf_phdrs(vm->kernel, vm->kernel_len, &n);
	*end = 0;
	for (i = 0; i < n; i++) {
		if (ph[i].p_type != PT_LOAD)
			continue;
		/* Below 1 MiB live kvmm's own boot data (GDT, page tables,
		 * start info, command line, ACPI tables). */
		if (ph[i].p_paddr < X86_KERNEL_ADDR) {
			pr_err("kernel %s has a segment at 0x%llx, below 1 MiB where kvmm keeps its boot data: link the kernel at 1 MiB or above",
			       vm->cfg->kernel, (unsigned long long)ph[i].p_paddr);
			return -ENOEXEC;
		}
		dst = guest_mem_ptr(&vm->mem, ph[i].p_paddr, ph[i].p_memsz);
		if (!dst || ph[i].p_filesz > ph[i].p_memsz ||
		    ph[i].p_offset > vm->kernel_len ||
		    ph[i].p_filesz > vm->kernel_len - ph[i].p_offset) {
			pr_err("kernel %s has a segment at 0x%llx that does not fit in guest memory: give the guest more memory with --memory",
			       vm->cfg->kernel, (unsigned long long)ph[i].p_paddr);
			return -ENOSPC;
		}
		memcpy(dst, vm->kernel + ph[i].p_offset, ph[i].p_filesz);
		memset(dst + ph[i].p_filesz, 0, ph[i].p_memsz - ph[i].p_filesz);
		*end = MAX(*end, ph[i].p_paddr + ph[i].p_memsz);
	}
	return 0;
}

/* struct hvm_start_info, its memory map and one module (the initrd). */
static int load_pvh(struct vm *vm, struct boot_entry *entry, int64_t rsdp)
{
	struct e820_entry e820[16];
	uint8_t *si = guest_mem_ptr(&vm->mem, X86_PVH_INFO_ADDR, 0x1000);
	uint64_t kernel_end, initrd_gpa, pvh_entry = 0;
	int i, n, r;

	if (!si)
		return -EFAULT;
	elf_pvh_entry(vm->kernel, vm->kernel_len, &pvh_entry);
	r = load_elf_segments(vm, &kernel_end);
	/* The entry runs in 32-bit mode: it must be below 4 GiB and land
	 * in what was just loaded. */
	if (!r && (pvh_entry < X86_KERNEL_ADDR || pvh_entry >= kernel_end ||
		   pvh_entry >= (1ULL << 32))) {
		pr_err("kernel %s has its PVH entry point at 0x%llx, outside its loaded segments or above 4 GiB",
		       vm->cfg->kernel, (unsigned long long)pvh_entry);
		r = -ENOEXEC;
	}
	if (!r)
		r = load_cmdline(vm, X86_CMDLINE_MAX);
	if (r)
		return r;
	memset(si, 0, 0x1000);
	put32(si, 0, PVH_START_MAGIC);
	put32(si, 4, 1);			/* version */
	put64(si, 16, 0);			/* modlist_paddr, below */
	put64(si, 24, X86_CMDLINE_ADDR);
	put64(si, 32, rsdp);
	n = e820_build(vm->mem.size, guest_mem_low_end(&vm->mem), e820, 16);
	if (n < 0)
		return n;
	put64(si, 40, X86_PVH_INFO_ADDR + 64);	/* memmap_paddr */
	put32(si, 48, n);
	for (i = 0; i < n; i++) {
		put64(si, 64 + i * 24, e820[i].addr);
		put64(si, 64 + i * 24 + 8, e820[i].size);
		put32(si, 64 + i * 24 + 16, e820[i].type);
	}
	if (vm->initrd) {
		uint64_t mod = X86_PVH_INFO_ADDR + 64 + 16 * 24;

		r = initrd_place(vm, kernel_end, X86_MMIO_HOLE_START - 1, &initrd_gpa);
		if (r)
			return r;
		copy_to_guest(vm, initrd_gpa, vm->initrd, vm->initrd_len);
		put32(si, 12, 1);		/* nr_modules */
		put64(si, 16, mod);
		put64(si + (mod - X86_PVH_INFO_ADDR), 0, initrd_gpa);
		put64(si + (mod - X86_PVH_INFO_ADDR), 8, vm->initrd_len);
	}
	entry->mode = BOOT_ENTRY_PVH;
	entry->rip = pvh_entry;
	entry->rbx = X86_PVH_INFO_ADDR;
	return 0;
}

int arch_prepare_boot(struct vm *vm)
{
	const char *path = vm->cfg->kernel;
	uint64_t entry;
	size_t off;
	int r;

	r = read_file(path, &vm->kernel, &vm->kernel_len);
	if (r) {
		pr_err("cannot read kernel %s: %s; check the --kernel path", path,
		       r == -EINVAL ? "not a regular file" : strerror(-r));
		return r;
	}
	if (is_bzimage(vm->kernel, vm->kernel_len)) {
		off = ((vm->kernel[HDR_SETUP_SECTS] ? vm->kernel[HDR_SETUP_SECTS] : 4) + 1) * 512ULL;
		if (get16(vm->kernel, HDR_VERSION) < 0x20C ||
		    !(get16(vm->kernel, HDR_XLOADFLAGS) & XLF_KERNEL_64)) {
			pr_err("kernel %s is a bzImage without the 64-bit entry point (boot protocol 2.12+): use a 64-bit x86 kernel",
			       path);
			return -ENOEXEC;
		}
		if (off >= vm->kernel_len) {
			pr_err("kernel %s is truncated: its setup header says the payload starts at %zu bytes",
			       path, off);
			return -ENOEXEC;
		}
	} else if (is_elf(vm->kernel, vm->kernel_len)) {
		if (!is_elf64_x86(vm->kernel)) {
			pr_err("kernel %s is an ELF file but not a 64-bit x86 one: give --kernel an x86_64 vmlinux or bzImage",
			       path);
			return -ENOEXEC;
		}
		if (elf_pvh_entry(vm->kernel, vm->kernel_len, &entry)) {
			pr_err("kernel %s is an ELF file without a PVH entry point (XEN_ELFNOTE_PHYS32_ENTRY): build it with CONFIG_PVH=y or use its bzImage",
			       path);
			return -ENOEXEC;
		}
	} else {
		pr_err("kernel %s is neither a bzImage nor an ELF vmlinux: give --kernel a Linux kernel image",
		       path);
		return -ENOEXEC;
	}
	if (!vm->cfg->initrd)
		return 0;
	r = read_file(vm->cfg->initrd, &vm->initrd, &vm->initrd_len);
	if (r) {
		pr_err("cannot read initrd %s: %s; check the --initrd path", vm->cfg->initrd,
		       r == -EINVAL ? "not a regular file" : strerror(-r));
		return r;
	}
	/* The initrd lives in low memory, above the kernel: a rough early
	 * check so the error comes before anything is created. */
	if (vm->initrd_len + X86_KERNEL_ADDR + vm->kernel_len >
	    MIN(vm->cfg->memory, X86_MMIO_HOLE_START)) {
		pr_err("initrd %s (%zu MiB) does not fit in guest memory (%llu MiB): give the guest more memory with --memory",
		       vm->cfg->initrd, vm->initrd_len >> 20,
		       (unsigned long long)(vm->cfg->memory >> 20));
		return -ENOSPC;
	}
	return 0;
}

int arch_load_kernel(struct vm *vm)
{
	int64_t rsdp;
	int r;

	rsdp = load_acpi(vm);
	if (rsdp < 0)
		return (int)rsdp;
	r = load_smbios(vm);
	if (r)
		return r;
	set_ebda_pointer(vm);
	if (is_bzimage(vm->kernel, vm->kernel_len))
		r = load_bzimage(vm, &vm->entry, rsdp);
	else
		r = load_pvh(vm, &vm->entry, rsdp);
	if (r)
		return r;
	return setup_page_tables(vm);
}
