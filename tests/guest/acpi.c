// SPDX-License-Identifier: MIT
/*
 * ACPI tables: find the RSDP, walk the XSDT (or RSDT), verify every
 * checksum, and pull out what the other checks need: CPUs and IOAPICs from
 * the MADT, the PM1 blocks, SCI and reset register from the FADT, and the
 * S5 sleep type from the DSDT.  All read at CPL3 through the identity map.
 */
#include "guest.h"
#include "bootparam.h"
#include "io.h"

#define MAX_MADT_CPUS	256
#define MAX_IOAPICS	8
#define MAX_ISOS	32
#define MAX_TABLE_LEN	(16 << 20)

#define FADT_RESET_REG_SUP	(1 << 10)
#define FADT_HW_REDUCED		(1 << 20)

struct acpi_pm acpi_pm;
struct madt_cpu madt_cpus[MAX_MADT_CPUS];
int madt_cpu_count, cpus_madt;
struct ioapic_desc ioapics[MAX_IOAPICS];
int ioapic_count;
struct iso_desc isos[MAX_ISOS];
int iso_count;
u64 rsdp_addr, xsdt_addr, rsdt_addr;
char acpi_tables[256];

static char bad_sums[128];
static int tables_checked;

static u16 rd16(const u8 *p)
{
	return p[0] | (p[1] << 8);
}

static u32 rd32(const u8 *p)
{
	return rd16(p) | ((u32)rd16(p + 2) << 16);
}

static u64 rd64(const u8 *p)
{
	return rd32(p) | ((u64)rd32(p + 4) << 32);
}

static bool sum_ok(const u8 *p, u32 len)
{
	u8 s = 0;

	while (len--)
		s += *p++;
	return s == 0;
}

static void note_bad(const char *what)
{
	size_t n = strlen(bad_sums);

	snprintf(bad_sums + n, sizeof(bad_sums) - n, "%s%s", n ? "," : "",
		 what);
}

static bool rsdp_at(u64 a)
{
	const u8 *p = phys(a);

	return !memcmp(p, "RSD PTR ", 8) && sum_ok(p, 20);
}

static u64 find_rsdp(const char **how)
{
	u64 ebda = (u64)*(volatile u16 *)phys(0x40e) << 4;

	if (bp_acpi_rsdp) {
		bool pvh = boot_entry == ENTRY_PVH;

		*how = pvh ? "start_info" : "boot_params";
		if (bp_acpi_rsdp < 0x100000000ULL - 36 && rsdp_at(bp_acpi_rsdp))
			return bp_acpi_rsdp;
		fail("acpi-rsdp", "%s=0x%lx is no RSDP",
		     pvh ? "start_info.rsdp_paddr" : "boot_params.acpi_rsdp_addr",
		     bp_acpi_rsdp);
	}
	*how = "ebda";
	if (ebda >= 0x80000 && ebda < 0xa0000)
		for (u64 a = ebda; a < ebda + 1024; a += 16)
			if (rsdp_at(a))
				return a;
	*how = "bios";
	for (u64 a = 0xe0000; a < 0x100000; a += 16)
		if (rsdp_at(a))
			return a;
	return 0;
}

/* Table header sanity, then the checksum; returns the table or NULL. */
static const u8 *table_get(u64 addr, const char *what)
{
	const u8 *t = (const u8 *)addr;
	u32 len;

	if (!addr || addr >= 0x100000000ULL) {
		note_bad(what);
		return NULL;
	}
	len = rd32(t + 4);
	if (len < 36 || len > MAX_TABLE_LEN || addr + len > 0x100000000ULL) {
		note_bad(what);
		return NULL;
	}
	tables_checked++;
	if (!sum_ok(t, len))
		note_bad(what);
	return t;
}

static void madt_add_cpu(u32 id, u32 flags)
{
	if (madt_cpu_count >= MAX_MADT_CPUS)
		return;
	madt_cpus[madt_cpu_count].apic_id = id;
	madt_cpus[madt_cpu_count].enabled = flags & 1;
	madt_cpu_count++;
	if (flags & 1)
		cpus_madt++;
}

static void parse_madt(const u8 *t)
{
	u32 len = rd32(t + 4);

	lapic_base = rd32(t + 36);
	for (u32 off = 44; off + 2 <= len;) {
		const u8 *e = t + off;
		u8 type = e[0], elen = e[1];

		if (elen < 2 || off + elen > len)
			break;
		if (type == 0 && elen >= 8) {
			madt_add_cpu(e[3], rd32(e + 4));
		} else if (type == 9 && elen >= 16) {
			madt_add_cpu(rd32(e + 4), rd32(e + 8));
		} else if (type == 1 && elen >= 12 &&
			   ioapic_count < MAX_IOAPICS) {
			struct ioapic_desc *io = &ioapics[ioapic_count++];

			io->id = e[2];
			io->addr = rd32(e + 4);
			io->gsi_base = rd32(e + 8);
		} else if (type == 2 && elen >= 10 && iso_count < MAX_ISOS) {
			isos[iso_count].irq = e[3];
			isos[iso_count].gsi = rd32(e + 4);
			isos[iso_count].flags = rd16(e + 8);
			iso_count++;
		} else if (type == 5 && elen >= 12) {
			lapic_base = rd64(e + 4);
		}
		off += elen;
	}

	info("madt lapic=0x%lx ioapics=%d isos=%d", lapic_base, ioapic_count,
	     iso_count);
	for (int i = 0; i < ioapic_count; i++)
		info("ioapic id=%u addr=0x%lx gsi_base=%u", ioapics[i].id,
		     ioapics[i].addr, ioapics[i].gsi_base);
	for (int i = 0; i < iso_count; i++)
		info("iso irq=%u gsi=%u flags=0x%x", isos[i].irq, isos[i].gsi,
		     isos[i].flags);
	info("cpus_madt=%d", cpus_madt);
	if (cpus_madt)
		pass("madt", "cpus=%d", cpus_madt);
	else
		fail("madt", "no enabled local APIC");
}

/* One AML integer: ZeroOp, OneOp, OnesOp or Byte/Word/DWord/QWordPrefix. */
static bool aml_int(const u8 *p, const u8 *end, u64 *v, int *used)
{
	int n;

	if (p >= end)
		return false;
	switch (p[0]) {
	case 0x00:
		*v = 0;
		*used = 1;
		return true;
	case 0x01:
		*v = 1;
		*used = 1;
		return true;
	case 0xff:
		*v = ~0ULL;
		*used = 1;
		return true;
	case 0x0a:
		n = 1;
		break;
	case 0x0b:
		n = 2;
		break;
	case 0x0c:
		n = 4;
		break;
	case 0x0e:
		n = 8;
		break;
	default:
		return false;
	}
	if (p + 1 + n > end)
		return false;
	*v = 0;
	for (int i = n - 1; i >= 0; i--)
		*v = (*v << 8) | p[1 + i];
	*used = 1 + n;
	return true;
}

/* Name(_S5_, Package() { SLP_TYPa, SLP_TYPb, ... }) */
static bool parse_s5(const u8 *t)
{
	u32 len = rd32(t + 4);
	const u8 *end = t + len;

	for (const u8 *p = t + 36; p + 8 < end; p++) {
		u64 a, b = 0;
		int used;

		if (memcmp(p, "_S5_", 4) || p[4] != 0x12)
			continue;
		if (p[-1] != 0x08 && !(p[-1] == '\\' && p[-2] == 0x08))
			continue;
		p += 5;
		p += 1 + (p[0] >> 6);	/* PkgLength */
		p++;			/* NumElements */
		if (!aml_int(p, end, &a, &used))
			return false;
		aml_int(p + used, end, &b, &used);
		acpi_pm.s5_typa = a & 7;
		acpi_pm.s5_typb = b & 7;
		acpi_pm.have_s5 = true;
		return true;
	}
	return false;
}

static void gas_parse(const u8 *p, struct gas *g)
{
	g->space = p[0];
	g->width = p[1];
	g->addr = rd64(p + 4);
}

/* Legacy 32-bit I/O block, replaced by its X_ GAS when that is set. */
static void fadt_block(const u8 *t, u32 len, u32 off, u32 xoff, u8 bytes,
		       struct gas *g)
{
	g->space = 1;
	g->width = bytes * 8;
	g->addr = rd32(t + off);
	if (len >= xoff + 12 && rd64(t + xoff + 4)) {
		gas_parse(t + xoff, g);
		if (!g->width)
			g->width = bytes * 8;
	}
}

static const char *space_name(u8 space)
{
	switch (space) {
	case 0:
		return "mem";
	case 1:
		return "io";
	case 2:
		return "pci";
	default:
		return "other";
	}
}

static void parse_fadt(const u8 *t)
{
	u32 len = rd32(t + 4);
	struct acpi_pm *pm = &acpi_pm;
	char reset[48] = "none";
	u64 dsdt = 0;
	const u8 *d;

	if (len < 116) {
		fail("fadt", "too short (%u bytes)", len);
		return;
	}
	pm->have_fadt = true;
	pm->sci = rd16(t + 46);
	pm->smi_cmd = rd32(t + 48);
	pm->acpi_enable = t[52];
	pm->pm1_evt_len = t[88];
	pm->flags = rd32(t + 112);
	pm->hw_reduced = pm->flags & FADT_HW_REDUCED;
	fadt_block(t, len, 56, 148, pm->pm1_evt_len, &pm->pm1a_evt);
	fadt_block(t, len, 60, 160, pm->pm1_evt_len, &pm->pm1b_evt);
	fadt_block(t, len, 64, 172, t[89], &pm->pm1a_cnt);
	fadt_block(t, len, 68, 184, t[89], &pm->pm1b_cnt);
	pm->gpe0_len = t[92];
	fadt_block(t, len, 80, 220, pm->gpe0_len, &pm->gpe0);
	if (len >= 129) {
		gas_parse(t + 116, &pm->reset);
		pm->reset_value = t[128];
	}
	if (len >= 268) {
		gas_parse(t + 244, &pm->sleep_ctl);
		gas_parse(t + 256, &pm->sleep_sts);
	}
	if ((pm->flags & FADT_RESET_REG_SUP) && pm->reset.addr)
		snprintf(reset, sizeof(reset), "%s:0x%lx=0x%x",
			 space_name(pm->reset.space), pm->reset.addr,
			 pm->reset_value);

	if (len >= 148)
		dsdt = rd64(t + 140);
	if (!dsdt)
		dsdt = rd32(t + 40);
	d = table_get(dsdt, "DSDT");
	if (d && !memcmp(d, "DSDT", 4)) {
		if (parse_s5(d))
			pass("dsdt-s5", "slp_typa=%u slp_typb=%u",
			     pm->s5_typa, pm->s5_typb);
		else
			fail("dsdt-s5", "no _S5_ package in DSDT");
	} else {
		fail("dsdt-s5", "no DSDT at 0x%lx", dsdt);
	}

	info("pm1a_evt=0x%lx pm1a_cnt=0x%lx pm1_evt_len=%u sci=%u s5_slp_typ=%u reset=%s",
	     pm->pm1a_evt.addr, pm->pm1a_cnt.addr, pm->pm1_evt_len, pm->sci,
	     pm->s5_typa, reset);
	info("fadt rev=%u len=%u flags=0x%x hw_reduced=%d smi_cmd=0x%x acpi_enable=0x%x dsdt=0x%lx sleep_ctl=%s:0x%lx",
	     t[8], len, pm->flags, pm->hw_reduced, pm->smi_cmd,
	     pm->acpi_enable, dsdt, space_name(pm->sleep_ctl.space),
	     pm->sleep_ctl.addr);
	pass("fadt", NULL);
}

/* Each ECAM window must be reserved in the memory map: Linux only uses
 * MMCONFIG from its first PCI access when it is (SeaBIOS reserves q35's). */
static void parse_mcfg(const u8 *t)
{
	u32 len = rd32(t + 4);

	for (u32 off = 44; off + 16 <= len; off += 16) {
		const u8 *e = t + off;
		u64 base = rd64(e) + ((u64)e[10] << 20);
		u64 size = ((u64)(e[11] - e[10]) + 1) << 20;

		if (e[11] < e[10])
			fail("mcfg-reserved", "buses %u-%u", e[10], e[11]);
		else if (e820_is(base, size, E820_RESERVED))
			pass("mcfg-reserved", "ecam=0x%lx size=0x%lx", base, size);
		else
			fail("mcfg-reserved", "ecam=0x%lx size=0x%lx is not reserved in e820",
			     base, size);
	}
}

void acpi_init(void)
{
	const char *how;
	const u8 *rsdp, *root, *madt = NULL, *fadt = NULL, *mcfg = NULL;
	u32 n, esize;
	size_t tl = 0;
	char oem[7] = "";

	rsdp_addr = find_rsdp(&how);
	if (!rsdp_addr) {
		fail("acpi-rsdp", "no RSDP (boot_params, EBDA, BIOS area)");
		return;
	}
	rsdp = (const u8 *)rsdp_addr;
	if (!sum_ok(rsdp, 20))
		note_bad("RSDP");
	rsdt_addr = rd32(rsdp + 16);
	if (rsdp[15] >= 2) {
		if (!sum_ok(rsdp, 36))
			note_bad("RSDP-ext");
		xsdt_addr = rd64(rsdp + 24);
	}

	if (xsdt_addr) {
		root = table_get(xsdt_addr, "XSDT");
		esize = 8;
	} else {
		root = table_get(rsdt_addr, "RSDT");
		esize = 4;
	}
	if (!root) {
		fail("acpi-checksums", "bad root table (%s)", bad_sums);
		return;
	}
	n = (rd32(root + 4) - 36) / esize;
	for (u32 i = 0; i < n; i++) {
		const u8 *e = root + 36 + i * esize;
		u64 a = esize == 8 ? rd64(e) : rd32(e);
		char sig[5] = "????";
		const u8 *t;

		if (a && a < 0x100000000ULL)
			memcpy(sig, (const void *)a, 4);
		t = table_get(a, sig);
		tl += snprintf(acpi_tables + tl, sizeof(acpi_tables) - tl,
			       "%s%s", tl ? "," : "", sig);
		if (tl >= sizeof(acpi_tables))
			tl = sizeof(acpi_tables) - 1;
		if (t && !memcmp(sig, "APIC", 4) && !madt)
			madt = t;
		if (t && !memcmp(sig, "FACP", 4) && !fadt)
			fadt = t;
		if (t && !memcmp(sig, "MCFG", 4) && !mcfg)
			mcfg = t;
	}
	memcpy(oem, rsdp + 9, 6);
	for (int i = 5; i >= 0 && (oem[i] == ' ' || !oem[i]); i--)
		oem[i] = '\0';
	info("rsdp=0x%lx rev=%u found=%s oem=%s xsdt=0x%lx rsdt=0x%lx tables=%s",
	     rsdp_addr, rsdp[15], how, oem, xsdt_addr, rsdt_addr,
	     acpi_tables);

	if (madt)
		parse_madt(madt);
	else
		fail("madt", "no APIC table");
	if (fadt)
		parse_fadt(fadt);
	else
		fail("fadt", "no FACP table");

	if (mcfg)
		parse_mcfg(mcfg);

	if (bad_sums[0])
		fail("acpi-checksums", "bad=%s", bad_sums);
	else
		pass("acpi-checksums", "tables=%d", tables_checked);
}

u64 gas_read(const struct gas *g, int width)
{
	if (g->space == 1) {
		if (width == 8)
			return inb(g->addr);
		if (width == 16)
			return inw(g->addr);
		return inl(g->addr);
	}
	if (width == 8)
		return mmio_read8(g->addr);
	if (width == 16)
		return mmio_read16(g->addr);
	return mmio_read32(g->addr);
}

void gas_write(const struct gas *g, int width, u64 v)
{
	if (g->space == 1) {
		if (width == 8)
			outb(g->addr, v);
		else if (width == 16)
			outw(g->addr, v);
		else
			outl(g->addr, v);
		return;
	}
	if (width == 8)
		mmio_write8(g->addr, v);
	else if (width == 16)
		mmio_write16(g->addr, v);
	else
		mmio_write32(g->addr, v);
}
