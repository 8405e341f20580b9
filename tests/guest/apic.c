// SPDX-License-Identifier: MIT
/*
 * Interrupt controllers: the xAPIC (MMIO, never x2APIC), the IOAPICs found
 * in the MADT, and the legacy 8259 pair, which we park and mask.  All MMIO
 * here is done at CPL3 (the pages are user-accessible).
 */
#include "guest.h"
#include "io.h"

#define LAPIC_ID	0x020
#define LAPIC_TPR	0x080
#define LAPIC_EOI	0x0b0
#define LAPIC_SVR	0x0f0
#define SVR_ENABLE	0x100

#define IOAPIC_REGSEL	0x00
#define IOAPIC_WIN	0x10
#define IOAPIC_VER	0x01
#define IOAPIC_REDTBL	0x10

#define RTE_MASKED	(1 << 16)
#define RTE_LEVEL	(1 << 15)
#define RTE_ACTIVE_LOW	(1 << 13)

/* Read by the timer stub in isr.S. */
u64 lapic_base = 0xfee00000;

u32 lapic_read(u32 reg)
{
	return mmio_read32(lapic_base + reg);
}

void lapic_write(u32 reg, u32 v)
{
	mmio_write32(lapic_base + reg, v);
}

u32 lapic_id(void)
{
	return lapic_read(LAPIC_ID) >> 24;
}

void lapic_enable(void)
{
	lapic_write(LAPIC_TPR, 0);
	lapic_write(LAPIC_SVR, SVR_ENABLE | VEC_SPURIOUS);
}

void lapic_eoi(void)
{
	lapic_write(LAPIC_EOI, 0);
}

/* Remap the 8259s away from the exception vectors, then mask them. */
void pic_disable(void)
{
	outb(0x20, 0x11);
	outb(0xa0, 0x11);
	outb(0x21, PIC_VECTOR_BASE);
	outb(0xa1, PIC_VECTOR_BASE + 8);
	outb(0x21, 4);
	outb(0xa1, 2);
	outb(0x21, 1);
	outb(0xa1, 1);
	outb(0x21, 0xff);
	outb(0xa1, 0xff);
}

static u32 ioapic_read(const struct ioapic_desc *io, u32 reg)
{
	mmio_write32(io->addr + IOAPIC_REGSEL, reg);
	return mmio_read32(io->addr + IOAPIC_WIN);
}

static void ioapic_write(const struct ioapic_desc *io, u32 reg, u32 v)
{
	mmio_write32(io->addr + IOAPIC_REGSEL, reg);
	mmio_write32(io->addr + IOAPIC_WIN, v);
}

void ioapic_init(void)
{
	for (int i = 0; i < ioapic_count; i++) {
		struct ioapic_desc *io = &ioapics[i];
		u32 ver = ioapic_read(io, IOAPIC_VER);

		io->count = ((ver >> 16) & 0xff) + 1;
		for (u32 pin = 0; pin < io->count; pin++) {
			ioapic_write(io, IOAPIC_REDTBL + 2 * pin + 1, 0);
			ioapic_write(io, IOAPIC_REDTBL + 2 * pin, RTE_MASKED);
		}
		info("ioapic id=%u version=0x%x pins=%u", io->id, ver & 0xff,
		     io->count);
	}
}

/*
 * ISA IRQ to GSI through the MADT's interrupt source overrides.  ISA
 * defaults are edge/active-high; "conforms" (0) in an override keeps them.
 */
u32 isa_irq_to_gsi(u8 irq, bool *level, bool *active_low)
{
	*level = false;
	*active_low = false;
	for (int i = 0; i < iso_count; i++) {
		if (isos[i].irq != irq)
			continue;
		*active_low = (isos[i].flags & 3) == 3;
		*level = ((isos[i].flags >> 2) & 3) == 3;
		return isos[i].gsi;
	}
	return irq;
}

/* Unmask gsi, delivered to the BSP (fixed, physical destination). */
bool ioapic_route(u32 gsi, u8 vector, bool level, bool active_low)
{
	for (int i = 0; i < ioapic_count; i++) {
		struct ioapic_desc *io = &ioapics[i];
		u32 pin = gsi - io->gsi_base, lo = vector;

		if (gsi < io->gsi_base || pin >= io->count)
			continue;
		if (level)
			lo |= RTE_LEVEL;
		if (active_low)
			lo |= RTE_ACTIVE_LOW;
		ioapic_write(io, IOAPIC_REDTBL + 2 * pin + 1, lapic_id() << 24);
		ioapic_write(io, IOAPIC_REDTBL + 2 * pin, lo);
		return true;
	}
	return false;
}
