/* PCI bus 0 without KVM: conf1 and ECAM decoding, the header's writable
 * bits, BAR sizing and moves, the capability walk, BAR dispatch. */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "device.h"
#include "pci/pci.h"
#include "pci/msix.h"
#include "pci/pci_devices.h"
#include "unit.h"

struct probe {
	struct pci_func f;
	uint64_t off;
	int bar, writes, moves;
};

static void probe_bar_read(struct pci_func *f, int bar, uint64_t off,
			   uint8_t *data, unsigned int len)
{
	struct probe *p = (struct probe *)f;

	p->bar = bar;
	p->off = off;
	memset(data, 0xa5, len);
}

static void probe_bar_write(struct pci_func *f, int bar, uint64_t off,
			    const uint8_t *data, unsigned int len)
{
	struct probe *p = (struct probe *)f;

	p->bar = bar;
	p->off = off;
	p->writes++;
}

static void probe_bars_changed(struct pci_func *f)
{
	((struct probe *)f)->moves++;
}

static const struct pci_func_ops probe_pops = {
	.bar_read = probe_bar_read,
	.bar_write = probe_bar_write,
	.bars_changed = probe_bars_changed,
};
static const struct device_ops probe_ops = { .name = "probe" };

static uint32_t cfg_read(struct pci_bus *b, unsigned int slot,
			 unsigned int off, unsigned int len)
{
	uint8_t d[4] = { 0 };

	pci_cfg_access(b, slot, 0, off, d, len, false);
	return pci_get(d, len);
}

static void cfg_write(struct pci_bus *b, unsigned int slot, unsigned int off,
		      uint32_t v, unsigned int len)
{
	uint8_t d[4];

	pci_put(d, v, len);
	pci_cfg_access(b, slot, 0, off, d, len, true);
}

static void probe_setup(struct pci_bus *b, struct probe *p)
{
	pci_bus_init(b);
	memset(p, 0, sizeof(*p));
	pci_func_init(&p->f, &probe_ops, &probe_pops, NULL, 0x1af4, 0x1044,
		      0xff0000, 1);
	CHECK(pci_func_add_bar(&p->f, 0, 0x4000, true, 0) == 0);
	CHECK(pci_func_add_bar(&p->f, 2, 0x1000, false, 0xc0001000) == 0);
	CHECK(pci_func_add_cap(&p->f, PCI_CAP_ID_VNDR, 16) == 0x40);
	CHECK(pci_func_add_cap(&p->f, PCI_CAP_ID_MSIX, 12) == 0x50);
	CHECK(pci_bus_add(b, &p->f, 3) == 0);
}

UNIT_TEST(pci_header_ids_and_absent_functions)
{
	struct pci_bus b;
	struct probe p;

	probe_setup(&b, &p);
	CHECK_EQ_U64(cfg_read(&b, 3, PCI_VENDOR_ID, 4), 0x10441af4);
	CHECK_EQ_U64(cfg_read(&b, 3, PCI_REVISION_ID, 4), 0xff000001);
	CHECK_EQ_U64(cfg_read(&b, 3, PCI_DEVICE_ID, 2), 0x1044);
	CHECK_EQ_U64(cfg_read(&b, 3, PCI_DEVICE_ID + 1, 1), 0x10);
	CHECK_EQ_U64(cfg_read(&b, 4, PCI_VENDOR_ID, 4), 0xffffffff);
	/* functions 1-7 of a populated slot do not exist */
	{
		uint8_t d[4];

		pci_cfg_access(&b, 3, 1, 0, d, 4, false);
		CHECK_EQ_U64(pci_get(d, 4), 0xffffffff);
	}
	/* GUEST: straddling a dword, odd widths, past 4 KiB: all-ones */
	CHECK_EQ_U64(cfg_read(&b, 3, 0x2, 4), 0xffffffff);
	CHECK_EQ_U64(cfg_read(&b, 3, 0x3, 2), 0xffff);
	CHECK_EQ_U64(cfg_read(&b, 99, 0, 4), 0xffffffff);
	CHECK_EQ_U64(cfg_read(&b, 3, 0x1000, 1), 0xff);
	/* read-only identity survives writes */
	cfg_write(&b, 3, PCI_VENDOR_ID, 0, 4);
	CHECK_EQ_U64(cfg_read(&b, 3, PCI_VENDOR_ID, 4), 0x10441af4);
	pci_bus_destroy(&b);
}

UNIT_TEST(pci_bar_sizing_reads_back_the_size_mask)
{
	struct pci_bus b;
	struct probe p;

	probe_setup(&b, &p);
	CHECK_EQ_U64(cfg_read(&b, 3, PCI_BAR0, 4), PCI_BAR_MEM64);
	cfg_write(&b, 3, PCI_BAR0, 0xffffffff, 4);
	cfg_write(&b, 3, PCI_BAR0 + 4, 0xffffffff, 4);
	CHECK_EQ_U64(cfg_read(&b, 3, PCI_BAR0, 4), 0xffffc000 | PCI_BAR_MEM64);
	CHECK_EQ_U64(cfg_read(&b, 3, PCI_BAR0 + 4, 4), 0xffffffff);
	cfg_write(&b, 3, PCI_BAR0 + 8, 0xffffffff, 4);
	CHECK_EQ_U64(cfg_read(&b, 3, PCI_BAR0 + 8, 4), 0xfffff000);
	/* unimplemented BARs read 0 whatever is written */
	cfg_write(&b, 3, PCI_BAR0 + 12, 0xffffffff, 4);
	CHECK_EQ_U64(cfg_read(&b, 3, PCI_BAR0 + 12, 4), 0);
	cfg_write(&b, 3, PCI_BAR0, 0x12345678, 4);
	cfg_write(&b, 3, PCI_BAR0 + 4, 0x10, 4);
	CHECK_EQ_U64(pci_bar_addr(&p.f, 0), 0x1012344000ULL);
	CHECK(p.moves >= 4);
	/* bad BAR descriptions are refused */
	CHECK(pci_func_add_bar(&p.f, 5, 0x1000, true, 0) == -EINVAL);
	CHECK(pci_func_add_bar(&p.f, 1, 0x1800, false, 0) == -EINVAL);
	CHECK(pci_func_add_bar(&p.f, 1, 0x1000, false, 0x800) == -EINVAL);
	pci_bus_destroy(&b);
}

UNIT_TEST(pci_capability_list_walks_to_the_end)
{
	struct pci_bus b;
	struct probe p;
	unsigned int off, n = 0;
	uint8_t ids[4];

	probe_setup(&b, &p);
	CHECK(cfg_read(&b, 3, PCI_STATUS, 2) & PCI_STATUS_CAP_LIST);
	for (off = cfg_read(&b, 3, PCI_CAP_PTR, 1); off && n < 4;
	     off = cfg_read(&b, 3, off + 1, 1))
		ids[n++] = cfg_read(&b, 3, off, 1);
	CHECK_EQ_U64(n, 2);
	CHECK_EQ_U64(ids[0], PCI_CAP_ID_VNDR);
	CHECK_EQ_U64(ids[1], PCI_CAP_ID_MSIX);
	/* the list cannot outgrow the 256-byte space */
	CHECK(pci_func_add_cap(&p.f, PCI_CAP_ID_VNDR, 0xb0) == -ENOSPC);
	pci_bus_destroy(&b);
}

UNIT_TEST(pci_bars_decode_only_with_memory_enabled_and_follow_moves)
{
	struct pci_bus b;
	struct probe p;
	uint8_t d[4] = { 0 };

	probe_setup(&b, &p);
	CHECK(!pci_mmio_access(&b, 0xc0001010, d, 4, false));
	cfg_write(&b, 3, PCI_COMMAND, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER, 2);
	CHECK_EQ_U64(cfg_read(&b, 3, PCI_COMMAND, 2), 6);
	CHECK(pci_mmio_access(&b, 0xc0001010, d, 4, false));
	CHECK_EQ_U64(p.bar, 2);
	CHECK_EQ_U64(p.off, 0x10);
	CHECK_EQ_U64(d[0], 0xa5);
	/* GUEST: an access running past the BAR's end is not decoded */
	CHECK(!pci_mmio_access(&b, 0xc0001ffe, d, 4, true));
	/* BAR 0 left at 0 decodes nothing until the guest places it */
	CHECK(!pci_mmio_access(&b, 0x10, d, 4, false));
	cfg_write(&b, 3, PCI_BAR0, 0x00000000, 4);
	cfg_write(&b, 3, PCI_BAR0 + 4, 0x1, 4);
	CHECK(pci_mmio_access(&b, 0x100002000ULL, d, 4, true));
	CHECK_EQ_U64(p.bar, 0);
	CHECK_EQ_U64(p.off, 0x2000);
	CHECK_EQ_U64(p.writes, 1);
	/* moved BAR 2: the old place is dead, the new one answers */
	cfg_write(&b, 3, PCI_BAR0 + 8, 0xd0000000, 4);
	CHECK(!pci_mmio_access(&b, 0xc0001010, d, 4, false));
	CHECK(pci_mmio_access(&b, 0xd0000ffc, d, 4, false));
	cfg_write(&b, 3, PCI_COMMAND, 0, 2);
	CHECK(!pci_mmio_access(&b, 0xd0000ffc, d, 4, false));
	pci_bus_destroy(&b);
}

UNIT_TEST(pci_reset_and_state_round_trip)
{
	struct pci_bus b;
	struct probe p;
	struct state_buf s = { 0 };

	probe_setup(&b, &p);
	cfg_write(&b, 3, PCI_COMMAND, PCI_COMMAND_MEMORY, 2);
	cfg_write(&b, 3, PCI_BAR0 + 8, 0xd0000000, 4);
	CHECK(pci_func_save(&p.f, &s) == 0);
	CHECK_EQ_U64(s.len, PCI_STATE_LEN);
	pci_func_reset(&p.f);
	CHECK_EQ_U64(pci_bar_addr(&p.f, 2), 0xc0001000);
	CHECK(!pci_mem_enabled(&p.f));
	/* a stream cannot change read-only identity */
	s.data[1 + PCI_VENDOR_ID] = 0x42;
	CHECK(pci_func_load(&p.f, s.data, s.len) == 0);
	CHECK_EQ_U64(pci_bar_addr(&p.f, 2), 0xd0000000);
	CHECK(pci_mem_enabled(&p.f));
	CHECK_EQ_U64(cfg_read(&b, 3, PCI_VENDOR_ID, 2), 0x1af4);
	s.data[0] = 99;
	CHECK(pci_func_load(&p.f, s.data, s.len) == -EINVAL);
	state_buf_free(&s);
	pci_bus_destroy(&b);
}

struct resetreg {
	struct device dev;
	uint8_t v;
	int writes;
};

static void rr_read(struct device *dev, uint64_t a, uint8_t *d, unsigned int l)
{
	d[0] = ((struct resetreg *)dev)->v;
}

static void rr_write(struct device *dev, uint64_t a, const uint8_t *d, unsigned int l)
{
	((struct resetreg *)dev)->v = d[0];
	((struct resetreg *)dev)->writes++;
}

static const struct device_ops rr_ops = { .name = "rr", .read = rr_read, .write = rr_write };

UNIT_TEST(pci_conf1_and_ecam_reach_the_same_space)
{
	struct pci_bus b;
	struct probe p;
	struct bus pio = { 0 }, mmio = { 0 };
	struct resetreg rr = { 0 };
	struct device *c1, *ec, *hb;
	uint8_t d[8];

	probe_setup(&b, &p);
	device_init(&rr.dev, &rr_ops, NULL);
	hb = pci_host_bridge_create(NULL, &b);
	c1 = pci_conf1_create(NULL, &b, &pio, 0xcf8, &rr.dev);
	ec = pci_ecam_create(NULL, &b, &mmio, 0xe0000000);
	CHECK(hb && c1 && ec);
	/* conf1: address, then data at 0xCFC + byte offset */
	pci_put(d, 0x80000000 | 3 << 11 | 0x00, 4);
	CHECK(bus_access(&pio, 0xcf8, d, 4, true));
	CHECK(bus_access(&pio, 0xcfc, d, 4, false));
	CHECK_EQ_U64(pci_get(d, 4), 0x10441af4);
	CHECK(bus_access(&pio, 0xcfe, d, 2, false));
	CHECK_EQ_U64(pci_get(d, 2), 0x1044);
	CHECK(bus_access(&pio, 0xcf8, d, 4, false));
	CHECK_EQ_U64(pci_get(d, 4), 0x80000000 | 3 << 11);
	/* the host bridge at 00:00.0 */
	pci_put(d, 0x80000008, 4);
	bus_access(&pio, 0xcf8, d, 4, true);
	bus_access(&pio, 0xcfc, d, 4, false);
	CHECK_EQ_U64(pci_get(d, 4) >> 8, 0x060000);
	/* bus 1 and the enable bit clear: nothing answers */
	pci_put(d, 0x80010000, 4);
	bus_access(&pio, 0xcf8, d, 4, true);
	bus_access(&pio, 0xcfc, d, 4, false);
	CHECK_EQ_U64(pci_get(d, 4), 0xffffffff);
	pci_put(d, 3 << 11, 4);
	bus_access(&pio, 0xcf8, d, 4, true);
	bus_access(&pio, 0xcfc, d, 4, false);
	CHECK_EQ_U64(pci_get(d, 4), 0xffffffff);
	/* 0xCF9 bytes go to the reset register */
	d[0] = 0x02;
	CHECK(bus_access(&pio, 0xcf9, d, 1, true));
	CHECK_EQ_U64(rr.writes, 1);
	d[0] = 0;
	bus_access(&pio, 0xcf9, d, 1, false);
	CHECK_EQ_U64(d[0], 0x02);
	/* ECAM: slot 3 at 3 << 15, extended space reachable, 8-byte split */
	CHECK(bus_access(&mmio, 0xe0000000 + (3 << 15), d, 4, false));
	CHECK_EQ_U64(pci_get(d, 4), 0x10441af4);
	CHECK(bus_access(&mmio, 0xe0000000 + (3 << 15) + 0x100, d, 4, false));
	CHECK_EQ_U64(pci_get(d, 4), 0);
	CHECK(bus_access(&mmio, 0xe0000000 + (3 << 15), d, 8, false));
	CHECK_EQ_U64(pci_get(d, 4), 0x10441af4);
	CHECK_EQ_U64(pci_get(d + 4, 4), (uint32_t)PCI_STATUS_CAP_LIST << 16);
	CHECK(!bus_access(&mmio, 0xe0100000, d, 4, false));
	c1->ops->destroy(c1);
	ec->ops->destroy(ec);
	hb->ops->destroy(hb);
	pci_bus_destroy(&b);
}

/* A fake interrupt sink: records routes and deliveries. */
struct sink_log {
	int nalloc, fired[8];
	uint64_t addr[8];
	uint32_t data[8];
};

static int sink_alloc(void *o)
{
	struct sink_log *l = o;

	return l->nalloc < 8 ? l->nalloc++ : -ENOSPC;
}

static void sink_route(void *o, unsigned int id, uint64_t addr, uint32_t data)
{
	struct sink_log *l = o;

	l->addr[id] = addr;
	l->data[id] = data;
}

static void sink_fire(void *o, unsigned int id)
{
	((struct sink_log *)o)->fired[id]++;
}

static void msix_setup(struct pci_bus *b, struct probe *p, struct msix *m,
		       struct msix_sink *s, struct sink_log *log)
{
	memset(log, 0, sizeof(*log));
	*s = (struct msix_sink){ sink_alloc, sink_route, sink_fire, log };
	pci_bus_init(b);
	memset(p, 0, sizeof(*p));
	pci_func_init(&p->f, &probe_ops, NULL, NULL, 0x1af4, 0x1044, 0xff0000, 1);
	CHECK(pci_func_add_bar(&p->f, 0, 0x4000, true, 0) == 0);
	CHECK(msix_init(m, &p->f, s, 4, 0, 0x2000, 0x3000) == 0);
	CHECK(pci_bus_add(b, &p->f, 1) == 0);
}

static void table_write(struct msix *m, unsigned int v, unsigned int word, uint32_t val)
{
	uint8_t d[4];

	pci_put(d, val, 4);
	CHECK(msix_bar_access(m, 0, 0x2000 + v * 16 + word * 4, d, 4, true));
}

static uint32_t bar_read32(struct msix *m, uint64_t off)
{
	uint8_t d[4] = { 0 };

	msix_bar_access(m, 0, off, d, 4, false);
	return pci_get(d, 4);
}

UNIT_TEST(msix_capability_and_table_layout)
{
	struct pci_bus b;
	struct probe p;
	struct msix m;
	struct msix_sink s;
	struct sink_log log;

	msix_setup(&b, &p, &m, &s, &log);
	CHECK_EQ_U64(m.cap, 0x40);
	CHECK_EQ_U64(cfg_read(&b, 1, 0x40, 1), PCI_CAP_ID_MSIX);
	CHECK_EQ_U64(cfg_read(&b, 1, 0x42, 2), 3);		/* N-1 */
	CHECK_EQ_U64(cfg_read(&b, 1, 0x44, 4), 0x2000);	/* BIR 0 */
	CHECK_EQ_U64(cfg_read(&b, 1, 0x48, 4), 0x3000);
	/* the table size is read-only */
	cfg_write(&b, 1, 0x42, 0xffff, 2);
	CHECK_EQ_U64(cfg_read(&b, 1, 0x42, 2), 0xc003);
	/* vectors start masked */
	CHECK_EQ_U64(bar_read32(&m, 0x2000 + 12), 1);
	CHECK_EQ_U64(bar_read32(&m, 0x2000 + 3 * 16 + 12), 1);
	/* GUEST: odd widths and misaligned words are ignored */
	{
		uint8_t d[2] = { 0, 0 };

		CHECK(msix_bar_access(&m, 0, 0x200c, d, 2, true));
		CHECK_EQ_U64(bar_read32(&m, 0x200c), 1);
		CHECK(msix_bar_access(&m, 0, 0x2002, d, 4, true) == true);
	}
	CHECK(!msix_bar_access(&m, 0, 0x1000, NULL, 4, false));
	/* bad layouts are refused */
	CHECK(msix_init(&m, &p.f, &s, 4, 0, 0x3ff8, 0x3000) == -EINVAL);
	CHECK(msix_init(&m, &p.f, &s, 65, 0, 0, 0x3000) == -EINVAL);
	CHECK(msix_init(&m, &p.f, &s, 4, 0, 0x2000, 0x2010) == -EINVAL);
	pci_bus_destroy(&b);
}

UNIT_TEST(msix_masking_sets_pending_and_unmasking_delivers)
{
	struct pci_bus b;
	struct probe p;
	struct msix m;
	struct msix_sink s;
	struct sink_log log;

	msix_setup(&b, &p, &m, &s, &log);
	msix_notify(&m, 1);				/* MSI-X off: dropped */
	CHECK_EQ_U64(bar_read32(&m, 0x3000), 0);
	/* enable with the function masked, program vector 1 */
	cfg_write(&b, 1, 0x42, 0xc000, 2);
	msix_cfg_written(&m, 0x42, 2);
	table_write(&m, 1, 0, 0xfee00000);
	table_write(&m, 1, 1, 0);
	table_write(&m, 1, 2, 0x41);
	table_write(&m, 1, 3, 0);			/* vector unmasked */
	msix_notify(&m, 1);
	CHECK_EQ_U64(log.nalloc, 0);
	CHECK_EQ_U64(bar_read32(&m, 0x3000), 2);	/* pending */
	cfg_write(&b, 1, 0x42, 0x8000, 2);		/* function unmasked */
	msix_cfg_written(&m, 0x42, 2);
	CHECK_EQ_U64(bar_read32(&m, 0x3000), 0);
	CHECK_EQ_U64(log.fired[0], 1);
	CHECK_EQ_U64(log.addr[0], 0xfee00000);
	CHECK_EQ_U64(log.data[0], 0x41);
	/* per-vector mask */
	table_write(&m, 1, 3, 1);
	msix_notify(&m, 1);
	CHECK_EQ_U64(log.fired[0], 1);
	CHECK_EQ_U64(bar_read32(&m, 0x3000), 2);
	table_write(&m, 1, 2, 0x42);			/* new data while masked */
	table_write(&m, 1, 3, 0);
	CHECK_EQ_U64(log.fired[0], 2);
	CHECK_EQ_U64(log.data[0], 0x42);
	/* out-of-range vectors are dropped; the PBA ignores writes */
	msix_notify(&m, 4);
	msix_notify(&m, 1000);
	{
		uint8_t d[4] = { 0xff, 0xff, 0xff, 0xff };

		msix_bar_access(&m, 0, 0x3000, d, 4, true);
	}
	CHECK_EQ_U64(bar_read32(&m, 0x3000), 0);
	pci_bus_destroy(&b);
}

UNIT_TEST(msix_reset_masks_and_state_round_trips)
{
	struct pci_bus b;
	struct probe p;
	struct msix m;
	struct msix_sink s;
	struct sink_log log;
	struct state_buf st = { 0 };

	msix_setup(&b, &p, &m, &s, &log);
	cfg_write(&b, 1, 0x42, 0xc000, 2);
	table_write(&m, 2, 2, 0x55);
	table_write(&m, 2, 3, 0);
	msix_notify(&m, 2);
	CHECK(msix_save(&m, &st) == 0);
	msix_reset(&m);
	CHECK_EQ_U64(bar_read32(&m, 0x2000 + 2 * 16 + 12), 1);
	CHECK_EQ_U64(bar_read32(&m, 0x3000), 0);
	CHECK_EQ_U64(msix_load(&m, st.data, st.len), st.len);
	CHECK_EQ_U64(bar_read32(&m, 0x2000 + 2 * 16 + 8), 0x55);
	CHECK_EQ_U64(bar_read32(&m, 0x3000), 4);
	CHECK(msix_load(&m, st.data, st.len - 1) == -EINVAL);
	state_buf_free(&st);
	pci_bus_destroy(&b);
}
