// SPDX-License-Identifier: MIT
/*
 * PCI through configuration mechanism #1 (0xcf8/0xcfc; the TSS I/O bitmap
 * allows them).  Bus 0 is scanned, and the secondary bus of any bridge the
 * firmware has already numbered; we never number bridges ourselves.
 * Memory BARs left at 0 get an address from a free 32-bit window.
 */
#include "guest.h"
#include "io.h"
#include "bootparam.h"
#include "pci.h"

#define CONFIG_ADDR	0xcf8
#define CONFIG_DATA	0xcfc
#define MMIO_WINDOW_END	0xfec00000ULL	/* IOAPIC, LAPIC, flash above */
#define BAR_MIN		0x1000		/* keep BARs in their own pages */

struct pci_dev pci_devs[PCI_MAX_FUNCS];
int pci_count;

static void select_reg(u8 bus, u8 dev, u8 fn, u16 off)
{
	outl(CONFIG_ADDR, 0x80000000u | bus << 16 | dev << 11 | fn << 8 |
			  (off & 0xfc));
}

static u32 cfg_read32(u8 bus, u8 dev, u8 fn, u16 off)
{
	select_reg(bus, dev, fn, off);
	return inl(CONFIG_DATA);
}

u32 pci_read32(const struct pci_dev *d, u16 off)
{
	return cfg_read32(d->bus, d->dev, d->fn, off);
}

u16 pci_read16(const struct pci_dev *d, u16 off)
{
	select_reg(d->bus, d->dev, d->fn, off);
	return inw(CONFIG_DATA + (off & 2));
}

u8 pci_read8(const struct pci_dev *d, u16 off)
{
	select_reg(d->bus, d->dev, d->fn, off);
	return inb(CONFIG_DATA + (off & 3));
}

void pci_write32(const struct pci_dev *d, u16 off, u32 v)
{
	select_reg(d->bus, d->dev, d->fn, off);
	outl(CONFIG_DATA, v);
}

void pci_write16(const struct pci_dev *d, u16 off, u16 v)
{
	select_reg(d->bus, d->dev, d->fn, off);
	outw(CONFIG_DATA + (off & 2), v);
}

void pci_write8(const struct pci_dev *d, u16 off, u8 v)
{
	select_reg(d->bus, d->dev, d->fn, off);
	outb(CONFIG_DATA + (off & 3), v);
}

/*
 * Size every BAR (decoding off while all-ones is written), keep addresses.
 * Host bridges keep decoding, as Linux does: some route RAM or the
 * configuration ports themselves.
 */
static void probe_bars(struct pci_dev *d)
{
	int nbars = (d->header & 0x7f) == 0 ? 6 : (d->header & 0x7f) == 1 ? 2 : 0;
	u16 cmd = pci_read16(d, PCI_COMMAND);
	bool host_bridge = (d->class >> 8) == 0x0600;

	if (!host_bridge)
		pci_write16(d, PCI_COMMAND, cmd & ~(PCI_CMD_IO | PCI_CMD_MEM));
	for (int i = 0; i < nbars; i++) {
		struct pci_bar *b = &d->bar[i];
		u16 off = PCI_BAR0 + 4 * i;
		u32 lo = pci_read32(d, off), szlo, hi = 0, szhi = 0;
		u64 mask;

		pci_write32(d, off, 0xffffffff);
		szlo = pci_read32(d, off);
		pci_write32(d, off, lo);
		if (!szlo)
			continue;
		if (lo & 1) {
			b->io = true;
			b->addr = lo & ~3u;
			b->size = (u16)~(szlo & ~3u) + 1;
			continue;
		}
		b->prefetch = lo & 8;
		b->is64 = ((lo >> 1) & 3) == 2;
		if (b->is64 && i < nbars - 1) {
			hi = pci_read32(d, off + 4);
			pci_write32(d, off + 4, 0xffffffff);
			szhi = pci_read32(d, off + 4);
			pci_write32(d, off + 4, hi);
		}
		mask = ((u64)szhi << 32) | (szlo & ~0xfu);
		if (!b->is64)
			mask |= 0xffffffff00000000ULL;
		b->size = ~mask + 1;
		b->addr = ((u64)hi << 32) | (lo & ~0xfu);
		if (b->is64)
			i++;	/* the upper half is not a BAR of its own */
	}
	if (!host_bridge)
		pci_write16(d, PCI_COMMAND, cmd);
}

static void report(const struct pci_dev *d)
{
	char bars[256];
	size_t n = 0;

	bars[0] = '\0';
	for (int i = 0; i < 6; i++) {
		const struct pci_bar *b = &d->bar[i];

		if (!b->size || n >= sizeof(bars) - 64)
			continue;
		n += snprintf(bars + n, sizeof(bars) - n,
			      " bar%d=%s:0x%lx+0x%lx", i,
			      b->io ? "io" : b->is64 ? "mem64" : "mem32",
			      b->addr, b->size);
	}
	info("pci bdf=%02x:%02x.%x vendor=%04x device=%04x class=%06x header=%02x%s",
	     d->bus, d->dev, d->fn, d->vendor, d->device, d->class,
	     d->header & 0x7f, bars);
}

static void scan_bus(u8 bus, int depth)
{
	for (u8 dev = 0; dev < 32; dev++) {
		for (u8 fn = 0; fn < 8; fn++) {
			u32 id = cfg_read32(bus, dev, fn, PCI_VENDOR);
			struct pci_dev *d;

			if ((id & 0xffff) == 0xffff || (id & 0xffff) == 0) {
				if (fn == 0)
					break;
				continue;
			}
			if (pci_count == PCI_MAX_FUNCS)
				return;
			d = &pci_devs[pci_count++];
			memset(d, 0, sizeof(*d));
			d->bus = bus;
			d->dev = dev;
			d->fn = fn;
			d->vendor = id & 0xffff;
			d->device = id >> 16;
			d->class = pci_read32(d, PCI_CLASS_REV) >> 8;
			d->header = pci_read8(d, PCI_HEADER_TYPE);
			if ((d->header & 0x7f) == 0)
				d->subsys = pci_read16(d, PCI_SUBSYS_ID);
			probe_bars(d);
			report(d);
			if ((d->header & 0x7f) == 1 && depth < 4) {
				u8 sec = pci_read8(d, PCI_SECONDARY);

				if (sec > bus)	/* numbered by firmware */
					scan_bus(sec, depth + 1);
			}
			/* Functions 1-7 exist only on multi-function devices. */
			if (fn == 0 && !(d->header & 0x80))
				break;
		}
	}
}

struct pci_dev *pci_add_slot(u8 bus, u8 dev)
{
	u32 id = cfg_read32(bus, dev, 0, PCI_VENDOR);
	struct pci_dev *d;

	if ((id & 0xffff) == 0xffff || (id & 0xffff) == 0 || pci_count == PCI_MAX_FUNCS)
		return NULL;
	d = &pci_devs[pci_count++];
	memset(d, 0, sizeof(*d));
	d->bus = bus;
	d->dev = dev;
	d->vendor = id & 0xffff;
	d->device = id >> 16;
	d->class = pci_read32(d, PCI_CLASS_REV) >> 8;
	d->header = pci_read8(d, PCI_HEADER_TYPE);
	if ((d->header & 0x7f) == 0)
		d->subsys = pci_read16(d, PCI_SUBSYS_ID);
	probe_bars(d);
	report(d);
	return d;
}

void pci_forget(struct pci_dev *d)
{
	memset(d->bar, 0, sizeof(d->bar));
	d->vendor = 0xffff;
}

void pci_scan(void)
{
	pci_count = 0;
	scan_bus(0, 0);
	if (pci_count)
		pass("pci", "functions=%d", pci_count);
	else
		fail("pci", "no function found on bus 0");
}

u8 pci_find_cap(const struct pci_dev *d, u8 id, u8 after)
{
	u8 off;
	int guard = 48;	/* a looping list must not hang us */

	if (!(pci_read16(d, PCI_STATUS) & PCI_STATUS_CAPS))
		return 0;
	off = after ? pci_read8(d, after + 1) : pci_read8(d, PCI_CAP_PTR);
	for (; off >= 0x40 && guard--; off = pci_read8(d, off + 1)) {
		off &= 0xfc;
		if (pci_read8(d, off) == id)
			return off;
	}
	return 0;
}

static bool overlaps(u64 a, u64 alen, u64 b, u64 blen)
{
	return a < b + blen && b < a + alen;
}

/* What occupies [base, base+size): an e820 entry or another BAR.  */
static u64 busy_until(u64 base, u64 size)
{
	for (int i = 0; i < e820_count; i++)
		if (overlaps(base, size, e820[i].base, e820[i].size))
			return e820[i].base + e820[i].size;
	for (int i = 0; i < pci_count; i++)
		for (int j = 0; j < 6; j++) {
			const struct pci_bar *b = &pci_devs[i].bar[j];

			if (b->size && !b->io && b->addr &&
			    overlaps(base, size, b->addr, b->size))
				return b->addr + b->size;
		}
	return 0;
}

/* First fit, naturally aligned, above low RAM and below the APIC area. */
static u64 alloc_window(u64 size)
{
	u64 base = 0, end;

	if (size < BAR_MIN)
		size = BAR_MIN;
	for (int i = 0; i < e820_count; i++)
		if (e820[i].type == E820_RAM &&
		    e820[i].base + e820[i].size <= MMIO_WINDOW_END &&
		    e820[i].base + e820[i].size > base)
			base = e820[i].base + e820[i].size;
	for (;;) {
		base = (base + size - 1) & ~(size - 1);
		if (base + size > MMIO_WINDOW_END)
			return 0;
		end = busy_until(base, size);
		if (!end)
			return base;
		base = end;
	}
}

bool pci_enable(struct pci_dev *d, bool reassign)
{
	u16 cmd = pci_read16(d, PCI_COMMAND);

	/* No decoding while a BAR moves. */
	pci_write16(d, PCI_COMMAND, cmd & ~PCI_CMD_MEM);
	for (int i = 0; i < 6; i++) {
		struct pci_bar *b = &d->bar[i];
		u16 off = PCI_BAR0 + 4 * i;

		if (!b->size || b->io)
			continue;
		if (reassign)
			b->addr = 0;
		if (!b->addr) {
			b->addr = alloc_window(b->size);
			if (!b->addr) {
				fail("pci-bar", "bdf=%02x:%02x.%x bar%d size=0x%lx: no free window",
				     d->bus, d->dev, d->fn, i, b->size);
				return false;
			}
			b->assigned = true;
			pci_write32(d, off, (u32)b->addr);
			if (b->is64)
				pci_write32(d, off + 4, b->addr >> 32);
			info("pci-bar bdf=%02x:%02x.%x bar%d=0x%lx+0x%lx assigned=guest",
			     d->bus, d->dev, d->fn, i, b->addr, b->size);
		}
		if (!map_mmio(b->addr, b->size)) {
			fail("pci-bar", "bdf=%02x:%02x.%x bar%d=0x%lx: cannot map",
			     d->bus, d->dev, d->fn, i, b->addr);
			return false;
		}
	}
	pci_write16(d, PCI_COMMAND, cmd | PCI_CMD_MEM | PCI_CMD_MASTER);
	return true;
}
