/* Unit tests for the ACPI table builder (acpi.c) and AML emitter (aml.c). */
#include <errno.h>
#include <stdint.h>

#include "unit.h"
#include "arch/x86/acpi.h"
#include "arch/x86/aml.h"
#include "arch/x86/layout.h"

#define WIN_BASE 0xE0000ULL
#define WIN_SIZE 0x20000ULL
#define GUARD 256

static uint8_t mem[WIN_SIZE + GUARD];

static struct acpi_platform plat(unsigned int ncpus)
{
	struct acpi_platform p = {
		.ncpus = ncpus,
		.lapic_addr = 0xFEE00000, .ioapic_addr = 0xFEC00000,
		.pm1a_evt_port = 0x600, .pm1a_cnt_port = 0x604,
		.pm_tmr_port = 0x608, .reset_port = 0xCF9,
		.reset_value = 0x06, .sci_irq = 9, .s5_slp_typ = 5,
		.com1_port = 0x3F8, .com1_irq = 4,
		.rtc_port = 0x70, .rtc_irq = 8,
		.i8042_port = 0x60,
	};
	return p;
}

static uint64_t le(const uint8_t *p, unsigned int n)
{
	uint64_t v = 0;

	while (n--)
		v = v << 8 | p[n];
	return v;
}

static uint8_t sum8(const uint8_t *p, uint64_t n)
{
	uint8_t s = 0;

	while (n--)
		s += *p++;
	return s;
}

/* Host pointer for [gpa, gpa+len) inside the window, or NULL. */
static const uint8_t *at(uint64_t base, uint64_t gpa, uint64_t len)
{
	if (gpa < base || gpa - base > WIN_SIZE ||
	    len > WIN_SIZE - (gpa - base))
		return NULL;
	return mem + (gpa - base);
}

/* A table at gpa with a sane header: inside the window, right checksum. */
static const uint8_t *sdt_at(uint64_t base, uint64_t gpa, const char *sig)
{
	const uint8_t *t = at(base, gpa, 36);

	CHECK(t != NULL);
	if (!t)
		return NULL;
	CHECK(!memcmp(t, sig, 4));
	CHECK(le(t + 4, 4) >= 36);
	CHECK(at(base, gpa, le(t + 4, 4)) != NULL);
	if (!at(base, gpa, le(t + 4, 4)))
		return NULL;
	CHECK(sum8(t, le(t + 4, 4)) == 0);
	CHECK(!memcmp(t + 10, "KVMM  ", 6));
	CHECK(!memcmp(t + 16, "KVMMVM  ", 8));
	CHECK(!memcmp(t + 28, "KVMM", 4));
	CHECK(gpa % 8 == 0);
	return t;
}

static int64_t build(unsigned int ncpus, uint64_t base)
{
	struct acpi_platform p = plat(ncpus);

	memset(mem, 0xA5, sizeof(mem));
	return acpi_build(&p, mem, base, WIN_SIZE);
}

static const uint8_t *rsdp_of(int64_t r, uint64_t base)
{
	const uint8_t *t = at(base, r, 36);

	CHECK(t != NULL);
	return t;
}

/* Finds the table with signature sig listed in the XSDT. */
static const uint8_t *xsdt_find(uint64_t base, const uint8_t *rsdp,
				const char *sig)
{
	const uint8_t *x = sdt_at(base, le(rsdp + 24, 8), "XSDT");
	uint64_t i, n;

	if (!x)
		return NULL;
	n = (le(x + 4, 4) - 36) / 8;
	for (i = 0; i < n; i++) {
		const uint8_t *t = at(base, le(x + 36 + 8 * i, 8), 36);

		if (t && !memcmp(t, sig, 4))
			return sdt_at(base, le(x + 36 + 8 * i, 8), sig);
	}
	return NULL;
}

static void check_rsdp(unsigned int ncpus)
{
	int64_t r = build(ncpus, WIN_BASE);
	const uint8_t *t;

	CHECK_EQ_U64(r, WIN_BASE);
	t = rsdp_of(r, WIN_BASE);
	if (!t)
		return;
	CHECK(!memcmp(t, "RSD PTR ", 8));
	CHECK(sum8(t, 20) == 0);
	CHECK(sum8(t, 36) == 0);
	CHECK(!memcmp(t + 9, "KVMM  ", 6));
	CHECK_EQ_U64(t[15], 2);
	CHECK_EQ_U64(le(t + 20, 4), 36);
	CHECK(le(t + 24, 8) != 0);
	/* Below 4 GiB an RSDT is provided too, listing the same tables. */
	CHECK(le(t + 16, 4) != 0);
	CHECK(memcmp(mem + WIN_SIZE, "\xA5\xA5\xA5\xA5", 4) == 0);
	/* Alignment padding after the RSDP is zeroed, not left stale. */
	CHECK(!memcmp(t + 36, "\0\0\0\0\0\0\0\0\0\0\0\0", 12));
}

UNIT_TEST(rsdp_1cpu) { check_rsdp(1); }
UNIT_TEST(rsdp_2cpu) { check_rsdp(2); }
UNIT_TEST(rsdp_8cpu) { check_rsdp(8); }

static void check_roots(unsigned int ncpus)
{
	int64_t r = build(ncpus, WIN_BASE);
	const uint8_t *rsdp = rsdp_of(r, WIN_BASE), *x, *rs;
	uint64_t i;

	if (!rsdp)
		return;
	x = sdt_at(WIN_BASE, le(rsdp + 24, 8), "XSDT");
	rs = sdt_at(WIN_BASE, le(rsdp + 16, 4), "RSDT");
	if (!x || !rs)
		return;
	CHECK_EQ_U64(le(x + 4, 4), 36 + 2 * 8);
	CHECK_EQ_U64(le(rs + 4, 4), 36 + 2 * 4);
	for (i = 0; i < 2; i++) {
		const uint8_t *t = at(WIN_BASE, le(x + 36 + 8 * i, 8), 4);

		CHECK(t && (!memcmp(t, "FACP", 4) || !memcmp(t, "APIC", 4)));
		if (t)
			sdt_at(WIN_BASE, le(x + 36 + 8 * i, 8), (const char *)t);
		CHECK_EQ_U64(le(rs + 36 + 4 * i, 4), le(x + 36 + 8 * i, 8));
	}
	CHECK(xsdt_find(WIN_BASE, rsdp, "FACP") != NULL);
	CHECK(xsdt_find(WIN_BASE, rsdp, "APIC") != NULL);
}

UNIT_TEST(xsdt_1cpu) { check_roots(1); }
UNIT_TEST(xsdt_2cpu) { check_roots(2); }
UNIT_TEST(xsdt_8cpu) { check_roots(8); }

static void check_gas(const uint8_t *g, unsigned int bits, uint64_t port)
{
	CHECK_EQ_U64(g[0], 1);		/* system I/O */
	CHECK_EQ_U64(g[1], bits);
	CHECK_EQ_U64(g[2], 0);
	CHECK_EQ_U64(le(g + 4, 8), port);
}

static void check_fadt(unsigned int ncpus)
{
	int64_t r = build(ncpus, WIN_BASE);
	const uint8_t *rsdp = rsdp_of(r, WIN_BASE), *f, *facs, *dsdt;

	if (!rsdp)
		return;
	f = xsdt_find(WIN_BASE, rsdp, "FACP");
	CHECK(f != NULL);
	if (!f)
		return;
	CHECK_EQ_U64(le(f + 4, 4), 276);
	CHECK_EQ_U64(f[8], 6);
	CHECK(f[45] <= 1);				/* PM profile */
	CHECK_EQ_U64(le(f + 46, 2), 9);			/* SCI_INT */
	CHECK_EQ_U64(le(f + 48, 4), 0);			/* SMI_CMD */
	CHECK_EQ_U64(le(f + 56, 4), 0x600);		/* PM1a_EVT_BLK */
	CHECK_EQ_U64(le(f + 60, 4), 0);			/* PM1b_EVT_BLK */
	CHECK_EQ_U64(le(f + 64, 4), 0x604);		/* PM1a_CNT_BLK */
	CHECK_EQ_U64(le(f + 76, 4), 0x608);		/* PM_TMR_BLK */
	CHECK_EQ_U64(f[88], 4);				/* PM1_EVT_LEN */
	CHECK_EQ_U64(f[89], 2);				/* PM1_CNT_LEN */
	CHECK_EQ_U64(f[91], 4);				/* PM_TMR_LEN */
	CHECK_EQ_U64(le(f + 109, 2), 0x6);		/* 8042, no VGA */
	/* WBINVD | PROC_C1 | SLP_BUTTON | RESET_REG_SUP; PWR_BUTTON,
	 * TMR_VAL_EXT and HW_REDUCED_ACPI clear. */
	CHECK_EQ_U64(le(f + 112, 4), 0x425);
	check_gas(f + 116, 8, 0xCF9);			/* RESET_REG */
	CHECK_EQ_U64(f[128], 6);			/* RESET_VALUE */
	check_gas(f + 148, 32, 0x600);			/* X_PM1a_EVT_BLK */
	check_gas(f + 172, 16, 0x604);			/* X_PM1a_CNT_BLK */
	check_gas(f + 208, 32, 0x608);			/* X_PM_TMR_BLK */

	/* FACS: the 32-bit pointer only (5.2.9: at most one of FIRMWARE_CTRL
	 * and X_FIRMWARE_CTRL is non-zero), 64-byte aligned. */
	CHECK(le(f + 36, 4) != 0);
	CHECK_EQ_U64(le(f + 132, 8), 0);
	CHECK_EQ_U64(le(f + 36, 4) % 64, 0);
	facs = at(WIN_BASE, le(f + 36, 4), 64);
	CHECK(facs != NULL);
	if (facs) {
		CHECK(!memcmp(facs, "FACS", 4));
		CHECK_EQ_U64(le(facs + 4, 4), 64);
	}

	/* DSDT / X_DSDT */
	CHECK_EQ_U64(le(f + 40, 4), le(f + 140, 8));
	dsdt = sdt_at(WIN_BASE, le(f + 140, 8), "DSDT");
	CHECK(dsdt != NULL);
	if (dsdt)
		CHECK_EQ_U64(dsdt[8], 2);
}

UNIT_TEST(fadt_1cpu) { check_fadt(1); }
UNIT_TEST(fadt_2cpu) { check_fadt(2); }
UNIT_TEST(fadt_8cpu) { check_fadt(8); }

static void check_madt(unsigned int ncpus)
{
	int64_t r = build(ncpus, WIN_BASE);
	const uint8_t *rsdp = rsdp_of(r, WIN_BASE), *m, *e, *end;
	unsigned int nlapic = 0, nioapic = 0, nnmi = 0;
	int irq0 = 0, irq9 = 0;

	if (!rsdp)
		return;
	m = xsdt_find(WIN_BASE, rsdp, "APIC");
	CHECK(m != NULL);
	if (!m)
		return;
	CHECK_EQ_U64(le(m + 36, 4), 0xFEE00000);
	CHECK_EQ_U64(le(m + 40, 4), 1);			/* PCAT_COMPAT */
	end = m + le(m + 4, 4);
	for (e = m + 44; e < end; e += e[1]) {
		CHECK(e[1] >= 2 && e + e[1] <= end);
		if (e[1] < 2 || e + e[1] > end)
			return;
		switch (e[0]) {
		case 0:
			CHECK_EQ_U64(e[1], 8);
			CHECK_EQ_U64(e[2], nlapic);	/* UID */
			CHECK_EQ_U64(e[3], nlapic);	/* APIC ID */
			CHECK_EQ_U64(le(e + 4, 4), 1);	/* enabled */
			nlapic++;
			break;
		case 1:
			CHECK_EQ_U64(e[1], 12);
			CHECK_EQ_U64(e[2], ACPI_IOAPIC_ID);
			CHECK_EQ_U64(le(e + 4, 4), 0xFEC00000);
			CHECK_EQ_U64(le(e + 8, 4), 0);
			nioapic++;
			break;
		case 2:
			CHECK_EQ_U64(e[1], 10);
			CHECK_EQ_U64(e[2], 0);
			if (e[3] == 0) {
				irq0++;
				CHECK_EQ_U64(le(e + 4, 4), 2);
				CHECK_EQ_U64(le(e + 8, 2), 0);
			} else if (e[3] == 9) {
				irq9++;
				CHECK_EQ_U64(le(e + 4, 4), 9);
				CHECK_EQ_U64(le(e + 8, 2), 0xD);
			} else {
				CHECK(!"unexpected override");
			}
			break;
		case 4:
			CHECK_EQ_U64(e[1], 6);
			CHECK_EQ_U64(e[2], 0xFF);
			CHECK_EQ_U64(e[5], 1);		/* LINT1 */
			nnmi++;
			break;
		default:
			CHECK(!"unexpected MADT entry");
		}
	}
	CHECK(e == end);
	CHECK_EQ_U64(nlapic, ncpus);
	CHECK_EQ_U64(nioapic, 1);
	CHECK_EQ_U64(irq0, 1);
	CHECK_EQ_U64(irq9, 1);
	CHECK_EQ_U64(nnmi, 1);
}

UNIT_TEST(madt_1cpu) { check_madt(1); }
UNIT_TEST(madt_2cpu) { check_madt(2); }
UNIT_TEST(madt_8cpu) { check_madt(8); }
UNIT_TEST(madt_255cpu) { check_madt(255); }

static const uint8_t *find(const uint8_t *h, size_t hn, const void *n,
			   size_t nn)
{
	size_t i;

	for (i = 0; i + nn <= hn; i++)
		if (!memcmp(h + i, n, nn))
			return h + i;
	return NULL;
}

static unsigned int count(const uint8_t *h, size_t hn, const char *n)
{
	const uint8_t *p = h, *end = h + hn;
	unsigned int c = 0;

	while ((p = find(p, end - p, n, strlen(n)))) {
		c++;
		p++;
	}
	return c;
}

static void check_dsdt(unsigned int ncpus)
{
	/* Name(_S5_, Package(4){5, 5, 0, 0}) */
	static const uint8_t s5[] = { 0x08, '_', 'S', '5', '_', 0x12, 0x08,
				      0x04, 0x0A, 5, 0x0A, 5, 0x00, 0x00 };
	/* Name(_HID, EisaId("PNP0501")) */
	static const uint8_t com1[] = { 0x08, '_', 'H', 'I', 'D', 0x0C,
					0x41, 0xD0, 0x05, 0x01 };
	/* IO(Decode16, 0x3F8, 0x3F8, 1, 8), IRQNoFlags(){4}, EndTag */
	static const uint8_t crs[] = { 0x47, 0x01, 0xF8, 0x03, 0xF8, 0x03,
				       0x01, 0x08, 0x22, 0x10, 0x00, 0x79,
				       0x00 };
	int64_t r = build(ncpus, WIN_BASE);
	const uint8_t *rsdp = rsdp_of(r, WIN_BASE), *f, *d;
	uint64_t len;

	if (!rsdp)
		return;
	f = xsdt_find(WIN_BASE, rsdp, "FACP");
	if (!f)
		return;
	d = sdt_at(WIN_BASE, le(f + 140, 8), "DSDT");
	if (!d)
		return;
	len = le(d + 4, 4);
	CHECK(find(d + 36, len - 36, s5, sizeof(s5)) != NULL);
	CHECK_EQ_U64(count(d, len, "ACPI0007"), ncpus);
	CHECK(find(d, len, "C000", 4) != NULL);
	CHECK(find(d, len, com1, sizeof(com1)) != NULL);
	CHECK(find(d, len, crs, sizeof(crs)) != NULL);
}

UNIT_TEST(dsdt_1cpu) { check_dsdt(1); }
UNIT_TEST(dsdt_2cpu) { check_dsdt(2); }
UNIT_TEST(dsdt_8cpu) { check_dsdt(8); }
UNIT_TEST(dsdt_255cpu) { check_dsdt(255); }

UNIT_TEST(dsdt_s5_value)
{
	struct acpi_platform p = plat(2);
	static const uint8_t s5[] = { 0x08, '_', 'S', '5', '_', 0x12, 0x08,
				      0x04, 0x0A, 7, 0x0A, 7, 0x00, 0x00 };

	p.s5_slp_typ = 7;
	memset(mem, 0, sizeof(mem));
	CHECK_EQ_U64(acpi_build(&p, mem, WIN_BASE, WIN_SIZE), WIN_BASE);
	CHECK(find(mem, WIN_SIZE, s5, sizeof(s5)) != NULL);
}

UNIT_TEST(dsdt_and_fadt_describe_the_rtc)
{
	struct acpi_platform p = plat(2);
	/* Name(_HID, EisaId("PNP0B00")) */
	static const uint8_t pnp0b00[] = { 0x08, '_', 'H', 'I', 'D', 0x0C,
					   0x41, 0xD0, 0x0B, 0x00 };
	/* IO(Decode16, 0x70, 0x70, 1, 2), IRQNoFlags(){8}, EndTag */
	static const uint8_t crs[] = { 0x47, 0x01, 0x70, 0x00, 0x70, 0x00,
				       0x01, 0x02, 0x22, 0x00, 0x01, 0x79, 0x00 };
	const uint8_t *rsdp, *f;

	memset(mem, 0, sizeof(mem));
	CHECK_EQ_U64(acpi_build(&p, mem, WIN_BASE, WIN_SIZE), WIN_BASE);
	CHECK(find(mem, WIN_SIZE, pnp0b00, sizeof(pnp0b00)) != NULL);
	CHECK(find(mem, WIN_SIZE, crs, sizeof(crs)) != NULL);
	rsdp = rsdp_of(WIN_BASE, WIN_BASE);
	f = rsdp ? xsdt_find(WIN_BASE, rsdp, "FACP") : NULL;
	CHECK(f != NULL);
	if (!f)
		return;
	CHECK_EQ_U64(f[108], 0x32);			/* CENTURY */
	CHECK_EQ_U64(le(f + 109, 2) & (1u << 5), 0);	/* CMOS RTC present */

	p.rtc_port = 0;
	memset(mem, 0, sizeof(mem));
	CHECK_EQ_U64(acpi_build(&p, mem, WIN_BASE, WIN_SIZE), WIN_BASE);
	CHECK(find(mem, WIN_SIZE, pnp0b00, sizeof(pnp0b00)) == NULL);
	f = xsdt_find(WIN_BASE, rsdp_of(WIN_BASE, WIN_BASE), "FACP");
	CHECK(f && f[108] == 0 && (le(f + 109, 2) & (1u << 5)));
}

UNIT_TEST(dsdt_and_fadt_describe_the_ps2_controller)
{
	struct acpi_platform p = plat(2);
	/* Name(_HID, EisaId("PNP0303")) */
	static const uint8_t pnp0303[] = { 0x08, '_', 'H', 'I', 'D', 0x0C,
					   0x41, 0xD0, 0x03, 0x03 };
	/* IO(Decode16, 0x60, 0x60, 1, 1), IO(Decode16, 0x64, 0x64, 1, 1),
	 * IRQNoFlags(){1}, EndTag */
	static const uint8_t crs[] = { 0x47, 0x01, 0x60, 0x00, 0x60, 0x00, 0x01, 0x01,
				       0x47, 0x01, 0x64, 0x00, 0x64, 0x00, 0x01, 0x01,
				       0x22, 0x02, 0x00, 0x79, 0x00 };
	const uint8_t *f;

	memset(mem, 0, sizeof(mem));
	CHECK_EQ_U64(acpi_build(&p, mem, WIN_BASE, WIN_SIZE), WIN_BASE);
	CHECK(find(mem, WIN_SIZE, pnp0303, sizeof(pnp0303)) != NULL);
	CHECK(find(mem, WIN_SIZE, crs, sizeof(crs)) != NULL);
	f = xsdt_find(WIN_BASE, rsdp_of(WIN_BASE, WIN_BASE), "FACP");
	CHECK(f && (le(f + 109, 2) & (1u << 1)));	/* 8042 */

	p.i8042_port = 0;
	memset(mem, 0, sizeof(mem));
	CHECK_EQ_U64(acpi_build(&p, mem, WIN_BASE, WIN_SIZE), WIN_BASE);
	CHECK(find(mem, WIN_SIZE, pnp0303, sizeof(pnp0303)) == NULL);
	f = xsdt_find(WIN_BASE, rsdp_of(WIN_BASE, WIN_BASE), "FACP");
	CHECK(f && !(le(f + 109, 2) & (1u << 1)));
}

UNIT_TEST(dsdt_no_com1)
{
	struct acpi_platform p = plat(2);
	static const uint8_t pnp0501[] = { 0x0C, 0x41, 0xD0, 0x05, 0x01 };

	p.com1_port = 0;
	memset(mem, 0, sizeof(mem));
	CHECK_EQ_U64(acpi_build(&p, mem, WIN_BASE, WIN_SIZE), WIN_BASE);
	CHECK(find(mem, WIN_SIZE, pnp0501, sizeof(pnp0501)) == NULL);
	CHECK_EQ_U64(count(mem, WIN_SIZE, "ACPI0007"), 2);
}

/* Bytes actually used by the tables for ncpus. */
static uint64_t used_size(unsigned int ncpus)
{
	uint64_t i;

	build(ncpus, WIN_BASE);
	for (i = WIN_SIZE; i > 0 && mem[i - 1] == 0xA5; i--)
		;
	return i;
}

static void check_enospc(unsigned int ncpus)
{
	struct acpi_platform p = plat(ncpus);
	uint64_t need = used_size(ncpus), size, i;

	CHECK(need > 36 && need < WIN_SIZE);
	for (size = 0; size < need; size++) {
		int64_t r;

		memset(mem, 0xA5, sizeof(mem));
		r = acpi_build(&p, mem, WIN_BASE, size);
		CHECK_EQ_U64(r, (uint64_t)-ENOSPC);
		for (i = size; i < size + GUARD; i++) {
			if (mem[i] != 0xA5) {
				CHECK(!"wrote past size");
				return;
			}
		}
	}
	memset(mem, 0xA5, sizeof(mem));
	CHECK_EQ_U64(acpi_build(&p, mem, WIN_BASE, need), WIN_BASE);
	for (i = need; i < need + GUARD; i++)
		CHECK(mem[i] == 0xA5);
}

UNIT_TEST(enospc_1cpu) { check_enospc(1); }
UNIT_TEST(enospc_8cpu) { check_enospc(8); }

UNIT_TEST(einval)
{
	struct acpi_platform p = plat(2);

	CHECK_EQ_U64(acpi_build(NULL, mem, WIN_BASE, WIN_SIZE),
		     (uint64_t)-EINVAL);
	CHECK_EQ_U64(acpi_build(&p, NULL, WIN_BASE, WIN_SIZE),
		     (uint64_t)-EINVAL);
	CHECK_EQ_U64(acpi_build(&p, mem, WIN_BASE + 8, WIN_SIZE),
		     (uint64_t)-EINVAL);
	p.ncpus = 0;
	CHECK_EQ_U64(acpi_build(&p, mem, WIN_BASE, WIN_SIZE),
		     (uint64_t)-EINVAL);
	p.ncpus = ACPI_MAX_CPUS + 1;
	CHECK_EQ_U64(acpi_build(&p, mem, WIN_BASE, WIN_SIZE),
		     (uint64_t)-EINVAL);
	p = plat(2);
	p.sci_irq = 16;
	CHECK_EQ_U64(acpi_build(&p, mem, WIN_BASE, WIN_SIZE),
		     (uint64_t)-EINVAL);
	p = plat(2);
	p.s5_slp_typ = 8;
	CHECK_EQ_U64(acpi_build(&p, mem, WIN_BASE, WIN_SIZE),
		     (uint64_t)-EINVAL);
}

/* Above 4 GiB there is no RSDT and 32-bit pointers are zero. */
UNIT_TEST(window_above_4g)
{
	uint64_t base = 0x100000000ULL;
	int64_t r = build(2, base);
	const uint8_t *rsdp = rsdp_of(r, base), *f;

	CHECK_EQ_U64(r, base);
	if (!rsdp)
		return;
	CHECK(sum8(rsdp, 20) == 0 && sum8(rsdp, 36) == 0);
	CHECK_EQ_U64(le(rsdp + 16, 4), 0);
	f = xsdt_find(base, rsdp, "FACP");
	CHECK(f != NULL);
	if (!f)
		return;
	CHECK_EQ_U64(le(f + 36, 4), 0);
	CHECK_EQ_U64(le(f + 40, 4), 0);
	CHECK(sdt_at(base, le(f + 140, 8), "DSDT") != NULL);
	CHECK(at(base, le(f + 132, 8), 64) != NULL);
}

/* --- AML emitter --- */

static uint8_t abuf[8192];

UNIT_TEST(aml_integers)
{
	static const uint8_t want[] = {
		0x00, 0x01, 0x0A, 0x02, 0x0B, 0x34, 0x12,
		0x0C, 0x78, 0x56, 0x34, 0x12,
		0x0E, 1, 0, 0, 0, 1, 0, 0, 0,
	};
	struct aml a;

	aml_init(&a, abuf, sizeof(abuf));
	aml_integer(&a, 0);
	aml_integer(&a, 1);
	aml_integer(&a, 2);
	aml_integer(&a, 0x1234);
	aml_integer(&a, 0x12345678);
	aml_integer(&a, 0x100000001ULL);
	CHECK_EQ_U64(aml_finish(&a), sizeof(want));
	CHECK(!memcmp(abuf, want, sizeof(want)));
}

UNIT_TEST(aml_names)
{
	static const uint8_t want[] = {
		'_', 'S', '5', '_',
		'\\', '_', 'S', 'B', '_',
		0x2E, '_', 'S', 'B', '_', 'C', 'O', 'M', '1',
		'\\', 0x2F, 3, 'A', '_', '_', '_', 'B', 'C', '_', '_',
		'D', '1', '2', '_',
	};
	struct aml a;

	aml_init(&a, abuf, sizeof(abuf));
	aml_namestring(&a, "_S5");
	aml_namestring(&a, "\\_SB_");
	aml_namestring(&a, "_SB.COM1");
	aml_namestring(&a, "\\A.BC.D12");
	CHECK_EQ_U64(aml_finish(&a), sizeof(want));
	CHECK(!memcmp(abuf, want, sizeof(want)));

	aml_init(&a, abuf, sizeof(abuf));
	aml_namestring(&a, "1ABC");
	CHECK_EQ_U64(aml_finish(&a), (uint64_t)-EINVAL);
	aml_init(&a, abuf, sizeof(abuf));
	aml_namestring(&a, "ABCDE");
	CHECK_EQ_U64(aml_finish(&a), (uint64_t)-EINVAL);
	aml_init(&a, abuf, sizeof(abuf));
	aml_namestring(&a, "ab");
	CHECK_EQ_U64(aml_finish(&a), (uint64_t)-EINVAL);
}

UNIT_TEST(aml_eisaid)
{
	static const uint8_t want[] = { 0x0C, 0x41, 0xD0, 0x05, 0x01,
					0x0C, 0x41, 0xD0, 0x0A, 0x03 };
	struct aml a;

	aml_init(&a, abuf, sizeof(abuf));
	aml_eisaid(&a, "PNP0501");
	aml_eisaid(&a, "PNP0A03");
	CHECK_EQ_U64(aml_finish(&a), sizeof(want));
	CHECK(!memcmp(abuf, want, sizeof(want)));
}

/* The hotplug statements, byte for byte as the ACPI spec (20.2.5) encodes
 * them: Method(_EJ0, 1) { Store(0x04, B0EJ) }, If (And(PCIU, 0x04, Zero))
 * { Notify(S02, 3) }, an operation region and its field list. */
UNIT_TEST(aml_methods)
{
	static const uint8_t want[] = {
		0x14, 0x0D, '_', 'E', 'J', '0', 0x01,
		0x70, 0x0A, 0x04, 'B', '0', 'E', 'J',
		0xA0, 0x10, 0x7B, 'P', 'C', 'I', 'U', 0x0A, 0x04, 0x00,
		0x86, 'S', '0', '2', '_', 0x0A, 0x03,
		0x5B, 0x80, 'P', 'C', 'S', 'T', 0x01, 0x0B, 0x00, 0xAE, 0x0A, 0x08,
		0x5B, 0x81, 0x10, 'P', 'C', 'S', 'T', 0x43,
		'P', 'C', 'I', 'U', 32, 'P', 'C', 'I', 'D', 32,
		0x69,
	};
	static const char *const names[] = { "PCIU", "PCID" };
	static const unsigned int bits[] = { 32, 32 };
	struct aml a;

	aml_init(&a, abuf, sizeof(abuf));
	aml_method_begin(&a, "_EJ0", 1);
	aml_store(&a);
	aml_integer(&a, 4);
	aml_namestring(&a, "B0EJ");
	aml_end(&a);
	aml_if_begin(&a);
	aml_and(&a);
	aml_namestring(&a, "PCIU");
	aml_integer(&a, 4);
	aml_null_target(&a);
	aml_notify(&a);
	aml_namestring(&a, "S02");
	aml_integer(&a, 3);
	aml_end(&a);
	aml_operation_region(&a, "PCST", AML_SPACE_SYSTEM_IO, 0xAE00, 8);
	aml_field(&a, "PCST", AML_FIELD_DWORD_ACC | AML_FIELD_WRITE_ZEROS, names, bits, 2);
	aml_arg(&a, 1);
	CHECK_EQ_U64(aml_finish(&a), sizeof(want));
	CHECK(!memcmp(abuf, want, sizeof(want)));

	/* Out-of-range arguments and field widths are refused. */
	aml_init(&a, abuf, sizeof(abuf));
	aml_method_begin(&a, "M", 8);
	CHECK_EQ_U64(aml_finish(&a), (uint64_t)-EINVAL);
	aml_init(&a, abuf, sizeof(abuf));
	aml_arg(&a, 7);
	CHECK_EQ_U64(aml_finish(&a), (uint64_t)-EINVAL);
	aml_init(&a, abuf, sizeof(abuf));
	aml_field(&a, "PCST", 0, names, (const unsigned int[]){ 0, 1 }, 2);
	CHECK_EQ_U64(aml_finish(&a), (uint64_t)-EINVAL);
}

/* Package(1) whose body (NumElements + n bytes) is 1 + n long. */
static int64_t pkg_with(size_t n)
{
	static uint8_t junk[8192];
	struct aml a;

	aml_init(&a, abuf, sizeof(abuf));
	aml_package_begin(&a, 1);
	aml_bytes(&a, junk, n);
	aml_end(&a);
	return aml_finish(&a);
}

UNIT_TEST(aml_pkglength)
{
	/* body 62 + 1 pkglen byte = 63: one byte */
	CHECK_EQ_U64(pkg_with(61), 1 + 1 + 62);
	CHECK_EQ_U64(abuf[1], 63);
	CHECK_EQ_U64(abuf[2], 1);
	/* body 63 + 2 = 65: two bytes, 0x41 -> lead 0x41, next 0x04 */
	CHECK_EQ_U64(pkg_with(62), 1 + 2 + 63);
	CHECK_EQ_U64(abuf[1], 0x40 | (65 & 0xF));
	CHECK_EQ_U64(abuf[2], 65 >> 4);
	CHECK_EQ_U64(abuf[3], 1);
	/* body 4093 + 2 = 4095: still two bytes */
	CHECK_EQ_U64(pkg_with(4092), 1 + 2 + 4093);
	CHECK_EQ_U64(abuf[1], 0x40 | 0xF);
	CHECK_EQ_U64(abuf[2], 0xFF);
	/* body 4094 + 3 = 4097 = 0x1001: three bytes */
	CHECK_EQ_U64(pkg_with(4093), 1 + 3 + 4094);
	CHECK_EQ_U64(abuf[1], 0x80 | 0x1);
	CHECK_EQ_U64(abuf[2], 0x00);
	CHECK_EQ_U64(abuf[3], 0x01);
	CHECK_EQ_U64(abuf[4], 1);
}

UNIT_TEST(aml_nesting)
{
	struct aml a;
	uint8_t small[8];

	aml_init(&a, abuf, sizeof(abuf));
	aml_scope_begin(&a, "_SB");
	CHECK_EQ_U64(aml_finish(&a), (uint64_t)-EINVAL);	/* unclosed */
	aml_init(&a, abuf, sizeof(abuf));
	aml_end(&a);
	CHECK_EQ_U64(aml_finish(&a), (uint64_t)-EINVAL);
	/* Device(ABCD){}: 5B 82 05 'ABCD' needs 7 bytes */
	aml_init(&a, small, 6);
	aml_device_begin(&a, "ABCD");
	aml_end(&a);
	CHECK_EQ_U64(aml_finish(&a), (uint64_t)-ENOSPC);
	aml_init(&a, small, 7);
	aml_device_begin(&a, "ABCD");
	aml_end(&a);
	CHECK_EQ_U64(aml_finish(&a), 7);
	CHECK(!memcmp(small, "\x5B\x82\x05" "ABCD", 7));
}

static struct acpi_platform plat_pci(unsigned int ncpus)
{
	struct acpi_platform p = plat(ncpus);

	p.pci_ecam_addr = 0xE0000000;
	p.pci_mmio_base = 0xC0000000;
	p.pci_mmio_size = 0x20000000;
	p.pci_conf1_port = 0xCF8;
	return p;
}

UNIT_TEST(mcfg_describes_ecam_for_bus_0)
{
	struct acpi_platform p = plat_pci(2);
	const uint8_t *rsdp, *m, *x, *rs;

	memset(mem, 0xA5, sizeof(mem));
	CHECK_EQ_U64(acpi_build(&p, mem, WIN_BASE, WIN_SIZE), WIN_BASE);
	rsdp = rsdp_of(WIN_BASE, WIN_BASE);
	m = rsdp ? xsdt_find(WIN_BASE, rsdp, "MCFG") : NULL;
	CHECK(m != NULL);
	if (!m)
		return;
	CHECK_EQ_U64(le(m + 4, 4), 60);
	CHECK_EQ_U64(m[8], 1);
	CHECK_EQ_U64(le(m + 36, 8), 0);			/* reserved */
	CHECK_EQ_U64(le(m + 44, 8), 0xE0000000);
	CHECK_EQ_U64(le(m + 52, 2), 0);			/* segment */
	CHECK_EQ_U64(m[54], 0);				/* start bus */
	CHECK_EQ_U64(m[55], 0);				/* end bus */
	/* XSDT and RSDT both list FACP, APIC, MCFG */
	x = sdt_at(WIN_BASE, le(rsdp + 24, 8), "XSDT");
	rs = sdt_at(WIN_BASE, le(rsdp + 16, 4), "RSDT");
	CHECK(x && le(x + 4, 4) == 36 + 3 * 8);
	CHECK(rs && le(rs + 4, 4) == 36 + 3 * 4);
	if (x && rs)
		CHECK_EQ_U64(le(rs + 36 + 8, 4), le(x + 36 + 16, 8));
	CHECK(memcmp(mem + WIN_SIZE, "\xA5\xA5\xA5\xA5", 4) == 0);

	/* no PCI: no MCFG, no PCI0 */
	CHECK_EQ_U64(build(2, WIN_BASE), WIN_BASE);
	CHECK(xsdt_find(WIN_BASE, rsdp_of(WIN_BASE, WIN_BASE), "MCFG") == NULL);
}

UNIT_TEST(dsdt_pci0_host_bridge_and_ecam_reservation)
{
	struct acpi_platform p = plat_pci(2);
	/* Name(_HID, EisaId("PNP0A08")), Name(_CID, EisaId("PNP0A03")) */
	static const uint8_t hid[] = { 0x08, '_', 'H', 'I', 'D', 0x0C,
				       0x41, 0xD0, 0x0A, 0x08,
				       0x08, '_', 'C', 'I', 'D', 0x0C,
				       0x41, 0xD0, 0x0A, 0x03 };
	static const uint8_t pnp0c02[] = { 0x0C, 0x41, 0xD0, 0x0C, 0x02 };
	/* Memory32Fixed(ReadWrite, 0xE0000000, 0x100000) */
	static const uint8_t ecam[] = { 0x86, 0x09, 0x00, 0x01,
					0x00, 0x00, 0x00, 0xE0,
					0x00, 0x00, 0x10, 0x00 };
	/* DWordMemory window 0xC0000000-0xDFFFFFFF */
	static const uint8_t win[] = { 0x87, 0x17, 0x00, 0x00, 0x0C, 0x01,
				       0, 0, 0, 0, 0x00, 0x00, 0x00, 0xC0,
				       0xFF, 0xFF, 0xFF, 0xDF };
	/* WordBusNumber 0..0 */
	static const uint8_t busn[] = { 0x88, 0x0D, 0x00, 0x02, 0x0C, 0x00,
					0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x00 };

	memset(mem, 0, sizeof(mem));
	CHECK_EQ_U64(acpi_build(&p, mem, WIN_BASE, WIN_SIZE), WIN_BASE);
	CHECK(find(mem, WIN_SIZE, hid, sizeof(hid)) != NULL);
	CHECK(find(mem, WIN_SIZE, pnp0c02, sizeof(pnp0c02)) != NULL);
	CHECK(find(mem, WIN_SIZE, ecam, sizeof(ecam)) != NULL);
	CHECK(find(mem, WIN_SIZE, win, sizeof(win)) != NULL);
	CHECK(find(mem, WIN_SIZE, busn, sizeof(busn)) != NULL);
	CHECK(find(mem, WIN_SIZE, "PCI0", 4) != NULL);

	memset(mem, 0, sizeof(mem));
	CHECK_EQ_U64(build(2, WIN_BASE), WIN_BASE);
	CHECK(find(mem, WIN_SIZE, hid, sizeof(hid)) == NULL);
	CHECK(find(mem, WIN_SIZE, pnp0c02, sizeof(pnp0c02)) == NULL);
}

UNIT_TEST(pci_parameters_are_checked)
{
	struct acpi_platform p = plat_pci(1);

	p.pci_ecam_addr = 0xE0001000;		/* not 1 MiB aligned */
	CHECK_EQ_U64(acpi_build(&p, mem, WIN_BASE, WIN_SIZE), -EINVAL);
	p = plat_pci(1);
	p.pci_mmio_size = 0;
	CHECK_EQ_U64(acpi_build(&p, mem, WIN_BASE, WIN_SIZE), -EINVAL);
	p = plat_pci(1);
	p.pci_mmio_base = 0xF0000000;
	p.pci_mmio_size = 0x20000000;		/* past 4 GiB */
	CHECK_EQ_U64(acpi_build(&p, mem, WIN_BASE, WIN_SIZE), -EINVAL);
	p = plat_pci(1);
	p.pci_conf1_port = 0xFFFC;
	CHECK_EQ_U64(acpi_build(&p, mem, WIN_BASE, WIN_SIZE), -EINVAL);
}

UNIT_TEST(pci_tables_fit_with_255_cpus)
{
	struct acpi_platform p = plat_pci(255);
	const uint8_t *rsdp;

	memset(mem, 0xA5, sizeof(mem));
	CHECK_EQ_U64(acpi_build(&p, mem, WIN_BASE, WIN_SIZE), WIN_BASE);
	rsdp = rsdp_of(WIN_BASE, WIN_BASE);
	CHECK(rsdp && xsdt_find(WIN_BASE, rsdp, "MCFG") != NULL);
	CHECK(rsdp && xsdt_find(WIN_BASE, rsdp, "DSDT") == NULL);
}

/* kvmm's ACPI window is the 64 KiB below the SMBIOS one (layout.h): the
 * largest machine's tables fit it. */
UNIT_TEST(tables_fit_kvmm_window_with_254_cpus)
{
	struct acpi_platform p = plat_pci(254);
	uint64_t i;

	memset(mem, 0xA5, sizeof(mem));
	CHECK_EQ_U64(acpi_build(&p, mem, X86_ACPI_ADDR, X86_ACPI_SIZE), X86_ACPI_ADDR);
	for (i = WIN_SIZE; i > 0 && mem[i - 1] == 0xA5; i--)
		;
	CHECK(i <= X86_ACPI_SIZE);
	CHECK_EQ_U64(X86_ACPI_ADDR + X86_ACPI_SIZE, X86_SMBIOS_ADDR);
	printf("  254 CPUs: %llu of %llu bytes\n", (unsigned long long)i,
	       (unsigned long long)X86_ACPI_SIZE);
}

/* vmcoreinfo's fw_cfg: Device (FWCF) with _HID "QEMU0002" (Linux's
 * qemu_fw_cfg binds to it), _STA 0x0B and 12 I/O ports at 0x510; none
 * without it. */
UNIT_TEST(dsdt_fw_cfg_device)
{
	struct acpi_platform p = plat_pci(2);
	static const uint8_t crs[] = { 0x47, 0x01, 0x10, 0x05, 0x10, 0x05, 0x01, 0x0C, 0x79, 0x00 };
	static const uint8_t sta[] = { '_', 'S', 'T', 'A', 0x0A, 0x0B };

	memset(mem, 0, sizeof(mem));
	CHECK_EQ_U64(acpi_build(&p, mem, WIN_BASE, WIN_SIZE), WIN_BASE);
	CHECK(find(mem, WIN_SIZE, "FWCF", 4) == NULL);
	CHECK(find(mem, WIN_SIZE, "QEMU0002", 8) == NULL);
	p.fw_cfg_port = 0x510;
	memset(mem, 0, sizeof(mem));
	CHECK_EQ_U64(acpi_build(&p, mem, WIN_BASE, WIN_SIZE), WIN_BASE);
	CHECK(find(mem, WIN_SIZE, "FWCF", 4) != NULL);
	CHECK(find(mem, WIN_SIZE, "QEMU0002", 9) != NULL);	/* with its NUL */
	CHECK(find(mem, WIN_SIZE, crs, sizeof(crs)) != NULL);
	CHECK(find(mem, WIN_SIZE, sta, sizeof(sta)) != NULL);
}
