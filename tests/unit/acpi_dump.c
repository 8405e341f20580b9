/* Builds kvmm's ACPI tables for a given vCPU count and writes each one to
 * OUTDIR/<sig>.dat (rsdp, xsdt, rsdt, facp, facs, apic, dsdt) so the test
 * suite can feed them to `iasl -d`.
 *
 * Usage: acpi_dump OUTDIR NCPUS [fw_cfg | max=M] (fw_cfg: with vmcoreinfo's
 * device; max=M: vCPU hotplug up to M CPUs) */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "arch/x86/acpi.h"

#define WIN_BASE 0xE0000ULL
#define WIN_SIZE 0x20000ULL

static uint8_t win[WIN_SIZE];

static uint64_t le(const uint8_t *p, unsigned int n)
{
	uint64_t v = 0;

	while (n--)
		v = v << 8 | p[n];
	return v;
}

/* Host view of `len` bytes at guest address gpa, or NULL if outside. */
static const uint8_t *at(uint64_t gpa, uint64_t len)
{
	if (gpa < WIN_BASE || gpa - WIN_BASE > WIN_SIZE ||
	    len > WIN_SIZE - (gpa - WIN_BASE))
		return NULL;
	return win + (gpa - WIN_BASE);
}

static int dump(const char *dir, const char *sig, const uint8_t *p,
		uint64_t len)
{
	char path[4096], name[5];
	FILE *f;
	int i;

	for (i = 0; i < 4; i++)
		name[i] = (sig[i] >= 'A' && sig[i] <= 'Z') ?
			  sig[i] - 'A' + 'a' : sig[i];
	name[4] = 0;
	snprintf(path, sizeof(path), "%s/%s.dat", dir, name);
	f = fopen(path, "wb");
	if (!f || fwrite(p, 1, len, f) != len || fclose(f)) {
		fprintf(stderr, "acpi_dump: %s: %s\n", path, strerror(errno));
		return -1;
	}
	return 0;
}

/* Dumps the SDT at gpa (length from its header). */
static const uint8_t *dump_sdt(const char *dir, uint64_t gpa)
{
	const uint8_t *t = at(gpa, 8);

	if (!t || !at(gpa, le(t + 4, 4))) {
		fprintf(stderr, "acpi_dump: bad table at 0x%llx\n",
			(unsigned long long)gpa);
		return NULL;
	}
	if (dump(dir, (const char *)t, t, le(t + 4, 4)))
		return NULL;
	return t;
}

static int dump_fadt_children(const char *dir, const uint8_t *fadt)
{
	/* FACS: X_FIRMWARE_CTRL, or FIRMWARE_CTRL when that is the one set */
	uint64_t facs = le(fadt + 132, 8) ? le(fadt + 132, 8) : le(fadt + 36, 4);

	if (!dump_sdt(dir, facs))
		return -1;
	if (!dump_sdt(dir, le(fadt + 140, 8)))	/* X_DSDT */
		return -1;
	return 0;
}

/* Dumps the XSDT and every table it lists (plus FACS and DSDT). */
static int dump_xsdt(const char *dir, uint64_t gpa)
{
	const uint8_t *t = dump_sdt(dir, gpa);
	uint64_t i, n;

	if (!t)
		return -1;
	n = (le(t + 4, 4) - 36) / 8;
	for (i = 0; i < n; i++) {
		const uint8_t *s = dump_sdt(dir, le(t + 36 + i * 8, 8));

		if (!s)
			return -1;
		if (!memcmp(s, "FACP", 4) && dump_fadt_children(dir, s))
			return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct acpi_platform p = {
		.lapic_addr = 0xFEE00000, .ioapic_addr = 0xFEC00000,
		.pm1a_evt_port = 0x600, .pm1a_cnt_port = 0x604,
		.pm_tmr_port = 0x608, .reset_port = 0xCF9,
		.reset_value = 0x06, .sci_irq = 9, .s5_slp_typ = 5,
		.com1_port = 0x3F8, .com1_irq = 4,
		.rtc_port = 0x70, .rtc_irq = 8,
		.i8042_port = 0x60,
		.pci_ecam_addr = 0xE0000000, .pci_mmio_base = 0xC0000000,
		.pci_mmio_size = 0x20000000, .pci_conf1_port = 0xCF8,
		.gpe0_port = 0x60C, .pci_hotplug_port = 0xAE00,
	};
	const uint8_t *rsdp;
	int64_t r;

	if (argc != 3 && !(argc == 4 && (!strcmp(argv[3], "fw_cfg") || !strncmp(argv[3], "max=", 4)))) {
		fprintf(stderr, "usage: acpi_dump OUTDIR NCPUS [fw_cfg | max=M]\n");
		return 2;
	}
	p.ncpus = strtoul(argv[2], NULL, 0);
	if (argc == 4 && !strcmp(argv[3], "fw_cfg")) {
		p.fw_cfg_port = 0x510;	/* kvmm's with "vmcoreinfo" */
	} else if (argc == 4) {
		p.max_cpus = strtoul(argv[3] + 4, NULL, 0);
		p.cpu_hotplug_port = 0xAF00;	/* kvmm's with --max-cpus */
	}
	r = acpi_build(&p, win, WIN_BASE, WIN_SIZE);
	if (r < 0) {
		fprintf(stderr, "acpi_dump: acpi_build: %s\n", strerror(-r));
		return 1;
	}
	rsdp = at(r, 36);
	if (!rsdp || dump(argv[1], "RSDP", rsdp, 36))
		return 1;
	/* The RSDT lists the same tables as the XSDT: dump it alone. */
	if (le(rsdp + 16, 4) && !dump_sdt(argv[1], le(rsdp + 16, 4)))
		return 1;
	if (dump_xsdt(argv[1], le(rsdp + 24, 8)))
		return 1;
	return 0;
}
