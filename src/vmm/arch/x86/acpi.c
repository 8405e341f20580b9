/* ACPI table builder: layout, RSDP/XSDT/RSDT/FADT/FACS/MADT and checksums.
 * The DSDT's AML comes from the tiny emitter in aml.c.
 *
 * Tables are written field by field at the byte offsets of the ACPI 6.3
 * spec (chapter 5.2) rather than through packed structs, so the offsets can
 * be checked against the spec tables one by one. */
#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "acpi.h"
#include "aml.h"

#define OEM_ID		"KVMM  "	/* 6 bytes */
#define OEM_TABLE_ID	"KVMMVM  "	/* 8 bytes */
#define OEM_REVISION	1
#define CREATOR_ID	"KVMM"
#define CREATOR_REV	1

/* Common system description table header (spec 5.2.6). */
#define SDT_LENGTH	4
#define SDT_REVISION	8
#define SDT_CHECKSUM	9
#define SDT_OEM_ID	10
#define SDT_OEM_TABLE	16
#define SDT_OEM_REV	24
#define SDT_CREATOR	28
#define SDT_CREATOR_REV	32
#define SDT_HDR_LEN	36

/* RSDP (5.2.5.3). */
#define RSDP_CHECKSUM	8
#define RSDP_OEM_ID	9
#define RSDP_REVISION	15
#define RSDP_RSDT	16
#define RSDP_LENGTH	20
#define RSDP_XSDT	24
#define RSDP_XCHECKSUM	32
#define RSDP_V1_LEN	20
#define RSDP_LEN	36

/* FADT (5.2.9), revision 6. */
#define FADT_FIRMWARE_CTRL	36
#define FADT_DSDT		40
#define FADT_PM_PROFILE		45
#define FADT_SCI_INT		46
#define FADT_SMI_CMD		48
#define FADT_PM1A_EVT_BLK	56
#define FADT_PM1A_CNT_BLK	64
#define FADT_PM_TMR_BLK		76
#define FADT_GPE0_BLK		80
#define FADT_PM1_EVT_LEN	88
#define FADT_PM1_CNT_LEN	89
#define FADT_PM_TMR_LEN		91
#define FADT_GPE0_BLK_LEN	92
#define FADT_P_LVL2_LAT		96
#define FADT_P_LVL3_LAT		98
#define FADT_CENTURY		108
#define FADT_IAPC_BOOT_ARCH	109
#define FADT_FLAGS		112
#define FADT_RESET_REG		116
#define FADT_RESET_VALUE	128
#define FADT_MINOR_VERSION	131
#define FADT_X_FIRMWARE_CTRL	132
#define FADT_X_DSDT		140
#define FADT_X_PM1A_EVT_BLK	148
#define FADT_X_PM1A_CNT_BLK	172
#define FADT_X_PM_TMR_BLK	208
#define FADT_X_GPE0_BLK		220
#define FADT_LEN		276

#define FADT_F_WBINVD		(1u << 0)
#define FADT_F_PROC_C1		(1u << 2)
#define FADT_F_SLP_BUTTON	(1u << 5)	/* 1: no fixed sleep button */
#define FADT_F_RESET_REG_SUP	(1u << 10)

#define BOOT_ARCH_8042		(1u << 1)
#define BOOT_ARCH_NO_VGA	(1u << 2)
#define BOOT_ARCH_NO_CMOS_RTC	(1u << 5)

/* Values above 100 / 1000 us tell OSPM that C2 / C3 are not supported. */
#define C2_UNSUPPORTED		101
#define C3_UNSUPPORTED		1001

/* Generic Address Structure (5.2.3.2). */
#define GAS_SYSTEM_IO		1
#define GAS_ACCESS_BYTE		1
#define GAS_ACCESS_WORD		2
#define GAS_ACCESS_DWORD	3

/* FACS (5.2.10). */
#define FACS_LENGTH		4
#define FACS_VERSION		32
#define FACS_LEN		64

/* MADT (5.2.12), revision 5. */
#define MADT_LAPIC_ADDR		36
#define MADT_FLAGS		40
#define MADT_PCAT_COMPAT	(1u << 0)
#define MADT_T_LAPIC		0
#define MADT_T_IOAPIC		1
#define MADT_T_ISO		2
#define MADT_T_LAPIC_NMI	4
#define MADT_LAPIC_LEN		8
#define MADT_IOAPIC_LEN		12
#define MADT_ISO_LEN		10
#define MADT_LAPIC_NMI_LEN	6
#define MADT_LAPIC_ENABLED	(1u << 0)
#define MADT_LAPIC_ONLINE_CAPABLE (1u << 1)	/* ACPI 6.3, MADT revision 5 */
#define MADT_NISO		2

/* MPS INTI flags: polarity in bits 1:0, trigger mode in bits 3:2. */
#define INTI_CONFORMS		0x0
#define INTI_HIGH_LEVEL		0xD

#define ISA_IRQS		16

/* MCFG (PCI Firmware 3.2, 4.1.2): one allocation for segment 0, bus 0. */
#define MCFG_ALLOC		44
#define MCFG_LEN		(MCFG_ALLOC + 16)
#define PCI_ECAM_BUS0_SIZE	0x100000u

/* Large resource descriptors (ACPI 6.3, 6.4.3). */
#define RES_MEM32_FIXED		0x86
#define RES_DWORD_ADDR		0x87
#define RES_WORD_ADDR		0x88
#define RES_SPACE_MEM		0
#define RES_SPACE_IO		1
#define RES_SPACE_BUS		2
/* Producer, positive decode, minimum and maximum fixed. */
#define RES_PRODUCER_FIXED	0x0C
#define RES_IO_ENTIRE_RANGE	0x03
#define RES_MEM_RW		0x01	/* non-cacheable, read/write */

struct acpi_ctx {
	uint8_t *buf;
	uint64_t base;
	uint64_t size;
	uint64_t off;		/* first free byte of the window */
	int below_4g;		/* 32-bit pointers (and the RSDT) usable */
};

static void put_le(uint8_t *p, uint64_t v, unsigned int n)
{
	unsigned int i;

	for (i = 0; i < n; i++)
		p[i] = v >> (8 * i);
}

static uint8_t sum8(const uint8_t *p, uint64_t len)
{
	uint8_t s = 0;

	while (len--)
		s += *p++;
	return s;
}

/* A 32-bit pointer field, or 0 when the target is above 4 GiB (then only
 * the 64-bit twin is valid). */
static uint32_t addr32(const struct acpi_ctx *c, uint64_t addr)
{
	return c->below_4g ? (uint32_t)addr : 0;
}

/* Reserves len bytes at a guest address aligned to `align` (a power of
 * two) and zeroes them along with the alignment gap before them, so the
 * guest never sees stale bytes between tables.  Returns the window
 * offset, or -ENOSPC (nothing written then). */
static int64_t place(struct acpi_ctx *c, uint64_t len, uint64_t align)
{
	uint64_t gpa = (c->base + c->off + align - 1) & ~(align - 1);
	uint64_t off = gpa - c->base;

	if (off > c->size || len > c->size - off)
		return -ENOSPC;
	memset(c->buf + c->off, 0, off + len - c->off);
	c->off = off + len;
	return off;
}

static void sdt_header(uint8_t *t, const char *sig, uint32_t len,
		       uint8_t rev)
{
	memcpy(t, sig, 4);
	put_le(t + SDT_LENGTH, len, 4);
	t[SDT_REVISION] = rev;
	memcpy(t + SDT_OEM_ID, OEM_ID, 6);
	memcpy(t + SDT_OEM_TABLE, OEM_TABLE_ID, 8);
	put_le(t + SDT_OEM_REV, OEM_REVISION, 4);
	memcpy(t + SDT_CREATOR, CREATOR_ID, 4);
	put_le(t + SDT_CREATOR_REV, CREATOR_REV, 4);
}

/* Must run after the table body is final. */
static void sdt_checksum(uint8_t *t)
{
	uint32_t len = t[4] | t[5] << 8 | t[6] << 16 | (uint32_t)t[7] << 24;

	t[SDT_CHECKSUM] = 0;
	t[SDT_CHECKSUM] = -sum8(t, len);
}

static void gas(uint8_t *p, uint8_t bits, uint8_t access, uint64_t port)
{
	p[0] = GAS_SYSTEM_IO;
	p[1] = bits;
	p[2] = 0;		/* bit offset */
	p[3] = access;
	put_le(p + 4, port, 8);
}

/* I/O port (small item, 7 bytes): 8 bytes. */
static size_t io_port(uint8_t *r, uint16_t port, uint8_t len)
{
	r[0] = 0x47;
	r[1] = 0x01;		/* 16-bit address decode */
	put_le(r + 2, port, 2);	/* minimum base */
	put_le(r + 4, port, 2);	/* maximum base */
	r[6] = 1;		/* alignment */
	r[7] = len;		/* number of ports */
	return 8;
}

/* IRQ (small item, 2 bytes: edge, active high) and the end tag: 5 bytes. */
static size_t irq_end(uint8_t *r, uint8_t irq)
{
	r[0] = 0x22;
	put_le(r + 1, 1u << irq, 2);
	r[3] = 0x79;
	r[4] = 0;		/* 0: checksum not used */
	return 5;
}

static void cpu_name(char name[5], unsigned int i)
{
	static const char hex[] = "0123456789ABCDEF";

	name[0] = 'C';
	name[1] = hex[(i >> 8) & 0xF];
	name[2] = hex[(i >> 4) & 0xF];
	name[3] = hex[i & 0xF];
	name[4] = 0;
}

/* The CPU hotplug methods, over QEMU's modern register block (QEMU's
 * docs/specs/acpi_cpu_hotplug.rst, docs/hotplug.md): CSTA (a CPU's _STA),
 * CEJ0 (its _EJ0), CTFY (Notify the CPU device Arg0 with Arg1) and CSCN,
 * which the GPE 2 handler calls: each CPU with an insert event gets
 * Device Check (1), each with a remove event Eject Request (3), its event
 * cleared.  No Mutex: ACPICA runs a method that never blocks under its
 * interpreter lock, so no other method changes the selector meanwhile. */
static void dsdt_cpu_hotplug(struct aml *a, const struct acpi_platform *p)
{
	static const char *const sel[] = { "CSEL" };
	static const char *const flags[] = { "CPEN", "CINS", "CRMV", "CEJF", "CRSV", "CCMD" };
	static const char *const dat[] = { "CDAT" };
	static const unsigned int bits32[] = { 32 };
	static const unsigned int fbits[] = { 1, 1, 1, 1, 4, 8 };
	unsigned int i;
	char name[5];

	aml_operation_region(a, "PRS0", AML_SPACE_SYSTEM_IO, p->cpu_hotplug_port, 4);
	aml_field(a, "PRS0", AML_FIELD_DWORD_ACC | AML_FIELD_WRITE_ZEROS, sel, bits32, 1);
	aml_operation_region(a, "PRS1", AML_SPACE_SYSTEM_IO, p->cpu_hotplug_port + 4, 2);
	aml_field(a, "PRS1", AML_FIELD_BYTE_ACC | AML_FIELD_WRITE_ZEROS, flags, fbits, 6);
	aml_operation_region(a, "PRS2", AML_SPACE_SYSTEM_IO, p->cpu_hotplug_port + 8, 4);
	aml_field(a, "PRS2", AML_FIELD_DWORD_ACC | AML_FIELD_WRITE_ZEROS, dat, bits32, 1);

	/* CSTA: Store (Arg0, CSEL) If (CPEN) { Return (0x0F) } Return (Zero) */
	aml_method_begin(a, "CSTA", 1);
	aml_store(a);
	aml_arg(a, 0);
	aml_namestring(a, "CSEL");
	aml_if_begin(a);
	aml_namestring(a, "CPEN");
	aml_return(a);
	aml_integer(a, 0x0F);
	aml_end(a);
	aml_return(a);
	aml_integer(a, 0);
	aml_end(a);

	/* CEJ0: Store (Arg0, CSEL) Store (One, CEJF) */
	aml_method_begin(a, "CEJ0", 1);
	aml_store(a);
	aml_arg(a, 0);
	aml_namestring(a, "CSEL");
	aml_store(a);
	aml_integer(a, 1);
	aml_namestring(a, "CEJF");
	aml_end(a);

	/* CTFY: If (LEqual (Arg0, i)) { Notify (Ciii, Arg1) } for each CPU */
	aml_method_begin(a, "CTFY", 2);
	for (i = 0; i < p->max_cpus; i++) {
		cpu_name(name, i);
		aml_if_begin(a);
		aml_lequal(a);
		aml_arg(a, 0);
		aml_integer(a, i);
		aml_notify(a);
		aml_namestring(a, name);
		aml_arg(a, 1);
		aml_end(a);
	}
	aml_end(a);

	/* CSCN: While (One) { Store (Zero, CCMD) Store (CDAT, Local0)
	 *   If (CINS) { CTFY (Local0, One) Store (Local0, CSEL) Store (One, CINS) }
	 *   Else { If (CRMV) { CTFY (Local0, 3) Store (Local0, CSEL) Store (One, CRMV) }
	 *          Else { Break } } }
	 * Command 0 selects a CPU with an event; with none left, the flags
	 * read show none and the loop ends. */
	aml_method_begin(a, "CSCN", 0);
	aml_while_begin(a);
	aml_integer(a, 1);
	aml_store(a);
	aml_integer(a, 0);
	aml_namestring(a, "CCMD");
	aml_store(a);
	aml_namestring(a, "CDAT");
	aml_local(a, 0);
	for (i = 0; i < 2; i++) {
		const char *flag = i ? "CRMV" : "CINS";

		if (i)
			aml_else_begin(a);
		aml_if_begin(a);
		aml_namestring(a, flag);
		aml_namestring(a, "CTFY");
		aml_local(a, 0);
		aml_integer(a, i ? 3 : 1);
		aml_store(a);
		aml_local(a, 0);
		aml_namestring(a, "CSEL");
		aml_store(a);
		aml_integer(a, 1);
		aml_namestring(a, flag);
		aml_end(a);
	}
	aml_else_begin(a);
	aml_break(a);
	aml_end(a);		/* inner Else */
	aml_end(a);		/* outer Else */
	aml_end(a);		/* While */
	aml_end(a);		/* Method */
}

static void dsdt_cpus(struct aml *a, const struct acpi_platform *p)
{
	bool hotplug = p->cpu_hotplug_port != 0;
	unsigned int i, n = hotplug ? p->max_cpus : p->ncpus;
	char name[5];

	if (hotplug)
		dsdt_cpu_hotplug(a, p);
	/* Processor devices (ACPI0007); _UID matches the MADT processor
	 * UID, which is also the APIC ID.  With hotplug, _STA says whether
	 * the CPU is there, _MAT gives Linux its APIC ID (it finds no
	 * enabled MADT entry for a hot-added CPU), and every CPU but the
	 * boot one can be ejected. */
	for (i = 0; i < n; i++) {
		uint8_t mat[MADT_LAPIC_LEN] = { MADT_T_LAPIC, MADT_LAPIC_LEN, i, i,
						MADT_LAPIC_ENABLED, 0, 0, 0 };

		cpu_name(name, i);
		aml_device_begin(a, name);
		aml_name(a, "_HID");
		aml_string(a, "ACPI0007");
		aml_name(a, "_UID");
		aml_integer(a, i);
		if (hotplug) {
			aml_method_begin(a, "_STA", 0);
			aml_return(a);
			aml_namestring(a, "CSTA");
			aml_integer(a, i);
			aml_end(a);
			aml_name(a, "_MAT");
			aml_buffer(a, mat, sizeof(mat));
			if (i) {
				aml_method_begin(a, "_EJ0", 1);
				aml_namestring(a, "CEJ0");
				aml_integer(a, i);
				aml_end(a);
			}
		}
		aml_end(a);
	}
}

static void dsdt_isa_device(struct aml *a, const char *name, const char *eisaid,
			    const uint8_t *crs, size_t n)
{
	aml_device_begin(a, name);
	aml_name(a, "_HID");
	aml_eisaid(a, eisaid);
	aml_name(a, "_UID");
	aml_integer(a, 1);
	aml_name(a, "_CRS");
	aml_buffer(a, crs, n);
	aml_end(a);
}

/* An ISA device's _CRS: IO(Decode16, port, port, 1, len),
 * IRQNoFlags(){irq}, EndTag. */
static void dsdt_port_device(struct aml *a, const char *name, const char *eisaid,
			     uint16_t port, uint8_t len, uint8_t irq)
{
	uint8_t crs[16];
	size_t n = io_port(crs, port, len);

	n += irq_end(crs + n, irq);
	dsdt_isa_device(a, name, eisaid, crs, n);
}

/* The PS/2 controller as PCs describe it: data port, command port apart,
 * the keyboard's IRQ.  Without it Linux probes the ports blind. */
static void dsdt_i8042(struct aml *a, uint16_t port)
{
	uint8_t crs[24];
	size_t n = io_port(crs, port, 1);

	n += io_port(crs + n, port + 4, 1);
	n += irq_end(crs + n, 1);
	dsdt_isa_device(a, "KBD", "PNP0303", crs, n);
}

/* WordBusNumber / WordIO: 16 bytes. */
static size_t word_addr(uint8_t *r, uint8_t space, uint8_t flags,
			uint16_t min, uint16_t len)
{
	r[0] = RES_WORD_ADDR;
	put_le(r + 1, 13, 2);
	r[3] = space;
	r[4] = RES_PRODUCER_FIXED;
	r[5] = flags;
	put_le(r + 6, 0, 2);			/* granularity */
	put_le(r + 8, min, 2);
	put_le(r + 10, min + len - 1, 2);
	put_le(r + 12, 0, 2);			/* translation */
	put_le(r + 14, len, 2);
	return 16;
}

/* DWordMemory: 26 bytes. */
static size_t dword_mem(uint8_t *r, uint32_t min, uint32_t len)
{
	r[0] = RES_DWORD_ADDR;
	put_le(r + 1, 23, 2);
	r[3] = RES_SPACE_MEM;
	r[4] = RES_PRODUCER_FIXED;
	r[5] = RES_MEM_RW;
	put_le(r + 6, 0, 4);
	put_le(r + 10, min, 4);
	put_le(r + 14, min + len - 1, 4);
	put_le(r + 18, 0, 4);
	put_le(r + 22, len, 4);
	return 26;
}

#define HOTPLUG_SLOTS	32	/* bus 0; slot 0 is the host bridge */

static void slot_name(char name[5], unsigned int slot)
{
	static const char hex[] = "0123456789ABCDEF";

	name[0] = 'S';
	name[1] = hex[slot >> 4];
	name[2] = hex[slot & 0xF];
	name[3] = 0;
}

/* If (And (reg, bit)) { Notify (slot, code) } */
static void notify_if_set(struct aml *a, const char *reg, unsigned int slot,
			  uint8_t code)
{
	char name[5];

	slot_name(name, slot);
	aml_if_begin(a);
	aml_and(a);
	aml_namestring(a, reg);
	aml_integer(a, 1ULL << slot);
	aml_null_target(a);
	aml_notify(a);
	aml_namestring(a, name);
	aml_integer(a, code);
	aml_end(a);
}

/* ACPI PCI hotplug as QEMU's pc machine does it (docs/hotplug.md): the
 * slot registers as fields of PCI0, one device per slot whose _EJ0 writes
 * its bit to the eject register, and PCNT, which the GPE 1 handler calls:
 * Device Check (1) for each slot in PCIU, Eject Request (3) for each in
 * PCID. */
static void dsdt_pci_hotplug(struct aml *a, uint16_t port)
{
	static const char *const ud[] = { "PCIU", "PCID" };
	static const char *const ej[] = { "B0EJ" };
	static const unsigned int bits[] = { 32, 32 };
	unsigned int s;
	char name[5];

	aml_operation_region(a, "PCST", AML_SPACE_SYSTEM_IO, port, 8);
	aml_field(a, "PCST", AML_FIELD_DWORD_ACC | AML_FIELD_WRITE_ZEROS, ud, bits, 2);
	aml_operation_region(a, "SEJ", AML_SPACE_SYSTEM_IO, port + 8, 4);
	aml_field(a, "SEJ", AML_FIELD_DWORD_ACC | AML_FIELD_WRITE_ZEROS, ej, bits, 1);
	for (s = 1; s < HOTPLUG_SLOTS; s++) {
		slot_name(name, s);
		aml_device_begin(a, name);
		aml_name(a, "_ADR");
		aml_integer(a, (uint64_t)s << 16);
		aml_name(a, "_SUN");
		aml_integer(a, s);
		aml_method_begin(a, "_EJ0", 1);
		aml_store(a);
		aml_integer(a, 1ULL << s);
		aml_namestring(a, "B0EJ");
		aml_end(a);
		aml_end(a);
	}
	aml_method_begin(a, "PCNT", 0);
	for (s = 1; s < HOTPLUG_SLOTS; s++) {
		notify_if_set(a, "PCIU", s, 1);
		notify_if_set(a, "PCID", s, 3);
	}
	aml_end(a);
}

/* \_GPE._E01: the PCI hotplug GPE's handler; _E02: the CPU hotplug one's. */
static void dsdt_gpe(struct aml *a, const struct acpi_platform *p)
{
	aml_scope_begin(a, "_GPE");
	if (p->pci_hotplug_port) {
		aml_method_begin(a, "_E01", 0);
		aml_namestring(a, "\\_SB.PCI0.PCNT");
		aml_end(a);
	}
	if (p->cpu_hotplug_port) {
		aml_method_begin(a, "_E02", 0);
		aml_namestring(a, "\\_SB.CSCN");
		aml_end(a);
	}
	aml_end(a);
}

/* PCI0: the host bridge of segment 0.  Its _CRS hands the OS bus 0, the
 * I/O ports around conf1 and the 32-bit BAR window; ISA devices stay
 * outside it, directly under \_SB. */
static void dsdt_pci(struct aml *a, const struct acpi_platform *p)
{
	uint8_t crs[128];
	size_t n = 0;
	uint16_t c1 = p->pci_conf1_port;

	n += word_addr(crs + n, RES_SPACE_BUS, 0, 0, 1);
	crs[n++] = 0x47;			/* IO(Decode16): conf1 itself */
	crs[n++] = 0x01;
	put_le(crs + n, c1, 2);
	put_le(crs + n + 2, c1, 2);
	crs[n + 4] = 1;
	crs[n + 5] = 8;
	n += 6;
	n += word_addr(crs + n, RES_SPACE_IO, RES_IO_ENTIRE_RANGE, 0, c1);
	n += word_addr(crs + n, RES_SPACE_IO, RES_IO_ENTIRE_RANGE, c1 + 8,
		       0x10000 - (c1 + 8));
	n += dword_mem(crs + n, p->pci_mmio_base, p->pci_mmio_size);
	crs[n++] = 0x79;
	crs[n++] = 0;

	aml_device_begin(a, "PCI0");
	aml_name(a, "_HID");
	aml_eisaid(a, "PNP0A08");		/* PCI Express root bridge */
	aml_name(a, "_CID");
	aml_eisaid(a, "PNP0A03");		/* ... compatible with PCI */
	aml_name(a, "_SEG");
	aml_integer(a, 0);
	aml_name(a, "_BBN");
	aml_integer(a, 0);
	aml_name(a, "_UID");
	aml_integer(a, 0);
	aml_name(a, "_CRS");
	aml_buffer(a, crs, n);
	if (p->pci_hotplug_port)
		dsdt_pci_hotplug(a, p->pci_hotplug_port);
	aml_end(a);

	/* Motherboard resources: Linux only trusts the MCFG's ECAM area
	 * when firmware also reserves it here (or in the e820 map). */
	n = 0;
	crs[n++] = RES_MEM32_FIXED;
	put_le(crs + n, 9, 2);
	crs[n + 2] = 1;				/* read/write */
	put_le(crs + n + 3, p->pci_ecam_addr, 4);
	put_le(crs + n + 7, PCI_ECAM_BUS0_SIZE, 4);
	n += 11;
	crs[n++] = 0x79;
	crs[n++] = 0;
	aml_device_begin(a, "PRES");
	aml_name(a, "_HID");
	aml_eisaid(a, "PNP0C02");
	aml_name(a, "_UID");
	aml_integer(a, 1);
	aml_name(a, "_CRS");
	aml_buffer(a, crs, n);
	aml_end(a);
}

static void build_mcfg(const struct acpi_platform *p, uint8_t *t)
{
	uint8_t *e = t + MCFG_ALLOC;

	sdt_header(t, "MCFG", MCFG_LEN, 1);
	put_le(e, p->pci_ecam_addr, 8);
	put_le(e + 8, 0, 2);		/* segment */
	e[10] = 0;			/* start bus */
	e[11] = 0;			/* end bus */
	sdt_checksum(t);
}

/* fw_cfg as QEMU describes it: Device (FWCF) { _HID "QEMU0002", _STA 0x0B
 * (present, enabled, not shown in UI), _CRS IO (Decode16, port, port, 1,
 * 12) }; Linux's qemu_fw_cfg driver binds to it. */
static void dsdt_fw_cfg(struct aml *a, uint16_t port)
{
	uint8_t crs[10];

	crs[0] = 0x47;		/* small item: I/O port, 7 bytes */
	crs[1] = 0x01;		/* 16-bit address decode */
	put_le(crs + 2, port, 2);
	put_le(crs + 4, port, 2);
	crs[6] = 1;
	crs[7] = 0x0C;		/* selector, data, DMA */
	crs[8] = 0x79;		/* end tag */
	crs[9] = 0;
	aml_device_begin(a, "FWCF");
	aml_name(a, "_HID");
	aml_string(a, "QEMU0002");
	aml_name(a, "_STA");
	aml_integer(a, 0x0B);
	aml_name(a, "_CRS");
	aml_buffer(a, crs, sizeof(crs));
	aml_end(a);
}

/* The DSDT takes whatever room is left, so it is placed last. */
static int64_t build_dsdt(struct acpi_ctx *c, const struct acpi_platform *p)
{
	int64_t off = place(c, SDT_HDR_LEN, 16);
	int64_t len;
	struct aml a;

	if (off < 0)
		return off;
	aml_init(&a, c->buf + c->off, c->size - c->off);

	/* SLP_TYPa, SLP_TYPb, reserved, reserved */
	aml_name(&a, "_S5");
	aml_package_begin(&a, 4);
	aml_integer(&a, p->s5_slp_typ);
	aml_integer(&a, p->s5_slp_typ);
	aml_integer(&a, 0);
	aml_integer(&a, 0);
	aml_end(&a);

	/* _SB_ rather than \_SB_: same object at the DSDT root, and
	 * it is what iasl emits, so a disassemble/recompile round trip
	 * reproduces the AML byte for byte. */
	aml_scope_begin(&a, "_SB");
	dsdt_cpus(&a, p);
	if (p->com1_port)
		dsdt_port_device(&a, "COM1", "PNP0501", p->com1_port, 8, p->com1_irq);
	if (p->rtc_port)
		dsdt_port_device(&a, "RTC", "PNP0B00", p->rtc_port, 2, p->rtc_irq);
	if (p->i8042_port)
		dsdt_i8042(&a, p->i8042_port);
	if (p->pci_ecam_addr)
		dsdt_pci(&a, p);
	if (p->fw_cfg_port)
		dsdt_fw_cfg(&a, p->fw_cfg_port);
	aml_end(&a);
	if ((p->pci_ecam_addr && p->pci_hotplug_port) || p->cpu_hotplug_port)
		dsdt_gpe(&a, p);

	len = aml_finish(&a);
	if (len < 0)
		return len;
	c->off += len;
	/* Revision 2: 64-bit AML integers. */
	sdt_header(c->buf + off, "DSDT", SDT_HDR_LEN + len, 2);
	sdt_checksum(c->buf + off);
	return off;
}

static void build_facs(uint8_t *t)
{
	memcpy(t, "FACS", 4);
	put_le(t + FACS_LENGTH, FACS_LEN, 4);
	t[FACS_VERSION] = 2;
	/* No checksum; hardware signature, waking vectors, global lock
	 * and flags stay zero (no S4BIOS, no 64-bit wake). */
}

static void build_fadt(const struct acpi_ctx *c, const struct acpi_platform *p,
		       uint8_t *t, uint64_t facs, uint64_t dsdt)
{
	uint32_t flags = FADT_F_WBINVD | FADT_F_PROC_C1 | FADT_F_SLP_BUTTON |
			 FADT_F_RESET_REG_SUP;

	sdt_header(t, "FACP", FADT_LEN, 6);
	put_le(t + FADT_FIRMWARE_CTRL, addr32(c, c->base + facs), 4);
	put_le(t + FADT_DSDT, addr32(c, c->base + dsdt), 4);
	t[FADT_PM_PROFILE] = 0;		/* unspecified */
	put_le(t + FADT_SCI_INT, p->sci_irq, 2);
	/* SMI_CMD = 0: there is no SMM to hand ACPI over, the platform is
	 * always in ACPI mode and the guest must find SCI_EN already set in
	 * PM1_CNT (the VMM's PM1 emulation reports it that way). */
	put_le(t + FADT_SMI_CMD, 0, 4);
	put_le(t + FADT_PM1A_EVT_BLK, p->pm1a_evt_port, 4);
	put_le(t + FADT_PM1A_CNT_BLK, p->pm1a_cnt_port, 4);
	put_le(t + FADT_PM_TMR_BLK, p->pm_tmr_port, 4);
	t[FADT_PM1_EVT_LEN] = 4;
	t[FADT_PM1_CNT_LEN] = 2;
	t[FADT_PM_TMR_LEN] = 4;
	put_le(t + FADT_P_LVL2_LAT, C2_UNSUPPORTED, 2);
	put_le(t + FADT_P_LVL3_LAT, C3_UNSUPPORTED, 2);
	put_le(t + FADT_IAPC_BOOT_ARCH, (p->i8042_port ? BOOT_ARCH_8042 : 0) | BOOT_ARCH_NO_VGA |
	       (p->rtc_port ? 0 : BOOT_ARCH_NO_CMOS_RTC), 2);
	t[FADT_CENTURY] = p->rtc_port ? ACPI_RTC_CENTURY_INDEX : 0;
	/* TMR_VAL_EXT = 0: 24-bit PM timer; PWR_BUTTON = 0: the power
	 * button is the fixed-feature one (PM1 PWRBTN_STS/EN). */
	put_le(t + FADT_FLAGS, flags, 4);
	gas(t + FADT_RESET_REG, 8, GAS_ACCESS_BYTE, p->reset_port);
	t[FADT_RESET_VALUE] = p->reset_value;
	t[FADT_MINOR_VERSION] = 3;	/* ACPI 6.3 */
	/* At most one of FIRMWARE_CTRL and X_FIRMWARE_CTRL may be non-zero
	 * (5.2.9; Linux lists the FACS twice otherwise): the 64-bit one
	 * only where the tables are above 4 GiB. */
	if (!c->below_4g)
		put_le(t + FADT_X_FIRMWARE_CTRL, c->base + facs, 8);
	put_le(t + FADT_X_DSDT, c->base + dsdt, 8);
	gas(t + FADT_X_PM1A_EVT_BLK, 32, GAS_ACCESS_WORD, p->pm1a_evt_port);
	gas(t + FADT_X_PM1A_CNT_BLK, 16, GAS_ACCESS_WORD, p->pm1a_cnt_port);
	gas(t + FADT_X_PM_TMR_BLK, 32, GAS_ACCESS_DWORD, p->pm_tmr_port);
	if (p->gpe0_port) {
		put_le(t + FADT_GPE0_BLK, p->gpe0_port, 4);
		t[FADT_GPE0_BLK_LEN] = 4;
		gas(t + FADT_X_GPE0_BLK, 32, GAS_ACCESS_BYTE, p->gpe0_port);
	}
	sdt_checksum(t);
}

static unsigned int madt_cpus(const struct acpi_platform *p)
{
	return p->cpu_hotplug_port ? p->max_cpus : p->ncpus;
}

static uint64_t madt_len(unsigned int ncpus)
{
	return SDT_HDR_LEN + 8 + (uint64_t)ncpus * MADT_LAPIC_LEN +
	       MADT_IOAPIC_LEN + MADT_NISO * MADT_ISO_LEN + MADT_LAPIC_NMI_LEN;
}

static uint8_t *madt_iso(uint8_t *e, uint8_t irq, uint32_t gsi,
			 uint16_t flags)
{
	e[0] = MADT_T_ISO;
	e[1] = MADT_ISO_LEN;
	e[2] = 0;			/* bus: ISA */
	e[3] = irq;
	put_le(e + 4, gsi, 4);
	put_le(e + 8, flags, 2);
	return e + MADT_ISO_LEN;
}

static void build_madt(const struct acpi_platform *p, uint8_t *t)
{
	uint8_t *e = t + SDT_HDR_LEN + 8;
	unsigned int i;

	sdt_header(t, "APIC", madt_len(madt_cpus(p)), 5);
	put_le(t + MADT_LAPIC_ADDR, p->lapic_addr, 4);
	/* Dual 8259s present: the OS must mask them when using APICs. */
	put_le(t + MADT_FLAGS, MADT_PCAT_COMPAT, 4);

	/* A CPU that may be hot-added is online-capable, not enabled: the
	 * OS counts it as possible and starts it once _STA says so; one
	 * hot-added before a reset is enabled, for the new boot. */
	for (i = 0; i < madt_cpus(p); i++, e += MADT_LAPIC_LEN) {
		e[0] = MADT_T_LAPIC;
		e[1] = MADT_LAPIC_LEN;
		e[2] = i;		/* ACPI processor UID */
		e[3] = i;		/* APIC ID */
		bool on = p->cpu_hotplug_port && p->cpu_enabled ? p->cpu_enabled[i] : i < p->ncpus;

		put_le(e + 4, on ? MADT_LAPIC_ENABLED : MADT_LAPIC_ONLINE_CAPABLE, 4);
	}

	e[0] = MADT_T_IOAPIC;
	e[1] = MADT_IOAPIC_LEN;
	e[2] = ACPI_IOAPIC_ID;
	put_le(e + 4, p->ioapic_addr, 4);
	put_le(e + 8, 0, 4);		/* GSI base */
	e += MADT_IOAPIC_LEN;

	/* The PIT is wired to IOAPIC pin 2, as on real chipsets. */
	e = madt_iso(e, 0, 2, INTI_CONFORMS);
	/* The VMM holds the SCI line high while an event is pending. */
	e = madt_iso(e, p->sci_irq, p->sci_irq, INTI_HIGH_LEVEL);

	e[0] = MADT_T_LAPIC_NMI;
	e[1] = MADT_LAPIC_NMI_LEN;
	e[2] = 0xFF;			/* all processors */
	put_le(e + 3, INTI_CONFORMS, 2);
	e[5] = 1;			/* LINT1 */

	sdt_checksum(t);
}

/* XSDT (64-bit entries) or RSDT (32-bit entries) listing FADT, MADT and
 * the MCFG when there is PCI. */
static void build_sdt(const struct acpi_ctx *c, uint8_t *t, const char *sig,
		      unsigned int width, const uint64_t *tables,
		      unsigned int n)
{
	unsigned int i;

	sdt_header(t, sig, SDT_HDR_LEN + width * n, 1);
	for (i = 0; i < n; i++)
		put_le(t + SDT_HDR_LEN + width * i, c->base + tables[i], width);
	sdt_checksum(t);
}

static void build_rsdp(const struct acpi_ctx *c, uint8_t *t, int64_t rsdt,
		       uint64_t xsdt)
{

	memcpy(t, "RSD PTR ", 8);
	memcpy(t + RSDP_OEM_ID, OEM_ID, 6);
	t[RSDP_REVISION] = 2;
	put_le(t + RSDP_RSDT, rsdt < 0 ? 0 : c->base + rsdt, 4);
	put_le(t + RSDP_LENGTH, RSDP_LEN, 4);
	put_le(t + RSDP_XSDT, c->base + xsdt, 8);
	/* The v1 checksum covers the first 20 bytes, the extended one
	 * the whole structure (including the v1 checksum). */
	t[RSDP_CHECKSUM] = -sum8(t, RSDP_V1_LEN);
	t[RSDP_XCHECKSUM] = -sum8(t, RSDP_LEN);
}

static int check_platform(const struct acpi_platform *p)
{
	if (p->ncpus < 1 || p->ncpus > ACPI_MAX_CPUS)
		return -EINVAL;
	/* SCI and COM1 are ISA IRQs; IRQ 0 and 2 belong to the PIT/8259. */
	if (p->sci_irq >= ISA_IRQS || p->sci_irq == 0 || p->sci_irq == 2)
		return -EINVAL;
	if (p->rtc_port && p->rtc_irq >= ISA_IRQS)
		return -EINVAL;
	if (p->com1_port && p->com1_irq >= ISA_IRQS)
		return -EINVAL;
	if (p->s5_slp_typ > 7)		/* SLP_TYP is a 3-bit field */
		return -EINVAL;
	if (!p->pm1a_evt_port || !p->pm1a_cnt_port || !p->pm_tmr_port ||
	    !p->reset_port)
		return -EINVAL;
	/* Hotplug (of PCI slots, of CPUs) is signalled by a GPE. */
	if (!!p->gpe0_port != (p->pci_hotplug_port || p->cpu_hotplug_port) ||
	    (p->pci_hotplug_port && !p->pci_ecam_addr))
		return -EINVAL;
	if (p->cpu_hotplug_port && (p->max_cpus < p->ncpus || p->max_cpus > ACPI_MAX_CPUS))
		return -EINVAL;
	/* The window is a 32-bit range; conf1 needs room for 8 ports
	 * with I/O left on both sides of it. */
	if (p->pci_ecam_addr &&
	    (!p->pci_mmio_size || p->pci_ecam_addr % PCI_ECAM_BUS0_SIZE ||
	     (uint64_t)p->pci_mmio_base + p->pci_mmio_size > (1ULL << 32) ||
	     p->pci_conf1_port < 0x100 || p->pci_conf1_port > 0xfff0))
		return -EINVAL;
	return 0;
}

int64_t acpi_build(const struct acpi_platform *p, void *buf, uint64_t base,
		   uint64_t size)
{
	struct acpi_ctx c = { .buf = buf, .base = base, .size = size };
	uint8_t *win = buf;
	int64_t rsdp, xsdt, rsdt = -1, fadt, facs, madt, mcfg = 0, dsdt;
	uint64_t tables[3];
	unsigned int ntables = p && p->pci_ecam_addr ? 3 : 2;
	int err;

	if (!p || !buf || base % 16 || base + size < base)
		return -EINVAL;
	err = check_platform(p);
	if (err)
		return err;
	c.below_4g = base + size <= (1ULL << 32);

	rsdp = place(&c, RSDP_LEN, 16);
	xsdt = place(&c, SDT_HDR_LEN + 8 * ntables, 16);
	if (c.below_4g)
		rsdt = place(&c, SDT_HDR_LEN + 4 * ntables, 16);
	fadt = place(&c, FADT_LEN, 16);
	facs = place(&c, FACS_LEN, 64);		/* FACS must be 64-aligned */
	madt = place(&c, madt_len(madt_cpus(p)), 16);
	if (ntables == 3)
		mcfg = place(&c, MCFG_LEN, 16);
	if (rsdp < 0 || xsdt < 0 || fadt < 0 || facs < 0 || madt < 0 || mcfg < 0 ||
	    (c.below_4g && rsdt < 0))
		return -ENOSPC;
	dsdt = build_dsdt(&c, p);
	if (dsdt < 0)
		return dsdt;

	/* Host pointers come from `win`, not c.buf: GCC 12 with UBSan
	 * cannot prove c.buf non-NULL once &c escapes and warns. */
	build_facs(win + facs);
	build_fadt(&c, p, win + fadt, facs, dsdt);
	build_madt(p, win + madt);
	tables[0] = fadt;
	tables[1] = madt;
	if (ntables == 3) {
		build_mcfg(p, win + mcfg);
		tables[2] = mcfg;
	}
	build_sdt(&c, win + xsdt, "XSDT", 8, tables, ntables);
	if (rsdt >= 0)
		build_sdt(&c, win + rsdt, "RSDT", 4, tables, ntables);
	build_rsdp(&c, win + rsdp, rsdt, xsdt);
	return base + rsdp;
}
