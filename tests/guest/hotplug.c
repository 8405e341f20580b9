// SPDX-License-Identifier: MIT
/*
 * ACPI PCI hotplug of bus 0 as QEMU's pc machine and kvmm offer it
 * (kvmmtest.hotplug=SECONDS): GPE 1 of the FADT's GPE0 block says that
 * something changed, QEMU's slot registers at 0xae00 say what.  There is
 * no AML interpreter here, so this does by hand what \_GPE._E01 and the
 * slots' _EJ0 do: read "up" and "down", enumerate and drive each new
 * device, and for each removal request let go of the device and write its
 * slot's bit to the eject register.  The GPE status bit is polled: the
 * SCI would only tell the same thing sooner.
 */
#include "guest.h"
#include "io.h"
#include "pci.h"
#include "virtio.h"

#define HP_UP		0xae00	/* slots added since the last read */
#define HP_DOWN		0xae04	/* slots the host wants back */
#define HP_EJECT	0xae08	/* write: eject these slots */
#define HP_SEL		0xae10	/* bus selector: 0 */
#define HP_GPE		(1 << 1)
#define HP_SLOTS	32

static struct virtio_dev hp_dev[HP_SLOTS];
static bool rogue_added;		/* kvmmtest.hotplug.rogue=added */
static struct pci_dev *hp_pci[HP_SLOTS];
static int hp_index[HP_SLOTS];		/* a disk's blkN number */
static bool reread;			/* kvmmtest.hotplug.reread */

static u8 gpe_read8(u32 off)
{
	struct gas g = acpi_pm.gpe0;

	g.addr += off;
	return gas_read(&g, 8);
}

static void gpe_write8(u32 off, u8 v)
{
	struct gas g = acpi_pm.gpe0;

	g.addr += off;
	gas_write(&g, 8, v);
}

/* Modern virtio PCI IDs only: both VMMs plug modern devices here. */
static int virtio_kind(const struct pci_dev *d)
{
	if (d->vendor != 0x1af4 || d->device < 0x1040 || d->device > 0x107f)
		return 0;
	return d->device - 0x1040;
}

/* The device's number among those of its kind, as virtio_run counts. */
static int kind_index(const struct pci_dev *d, int kind)
{
	int n = 0;

	for (int i = 0; i < pci_count && &pci_devs[i] != d; i++)
		if (virtio_kind(&pci_devs[i]) == kind)
			n++;
	return n;
}

static void rogue_eject(int slot);

static void plug(int slot)
{
	struct pci_dev *d = pci_add_slot(0, slot);
	struct virtio_dev *v = &hp_dev[slot];
	int kind, index;

	if (!d) {
		fail("hotplug-add", "slot=%d reported up but empty", slot);
		return;
	}
	hp_pci[slot] = d;
	kind = virtio_kind(d);
	index = kind_index(d, kind);
	hp_index[slot] = index;
	memset(v, 0, sizeof(*v));
	v->pci = d;
	v->type = kind;
	snprintf(v->name, sizeof(v->name), "%s%d",
		 kind == VIRTIO_ID_BLK ? "blk" : kind == VIRTIO_ID_NET ? "net" : "dev", index);
	if (!pci_enable(d, false)) {
		fail("hotplug-add", "slot=%d dev=%s cannot be enabled", slot, v->name);
		return;
	}
	pass("hotplug-add", "slot=%d dev=%s vendor=%04x device=%04x", slot, v->name,
	     d->vendor, d->device);
	if (rogue_added)
		rogue_eject(slot);
	/* A disk is read (its CRC compared by the host); a NIC with
	 * kvmmtest.netN.ip serves ARP, ping and UDP echo until the host's
	 * QUIT, as a cold-plugged one does. */
	if (kind == VIRTIO_ID_BLK) {
		virtio_blk_run(v, index);
	} else if (kind == VIRTIO_ID_NET) {
		virtio_net_run(v, index);
		virtio_net_serve();
	}
}

static bool unplug(int slot)
{
	struct pci_dev *d = hp_pci[slot];
	struct virtio_dev *v = &hp_dev[slot];
	struct pci_dev probe = { .bus = 0, .dev = slot };
	u64 t0;

	/* kvmmtest.hotplug.reread: a disk read once more on the queue it
	 * has used since it was added (across a save and restore, say),
	 * its CRC for the host to compare. */
	if (d && reread && v->type == VIRTIO_ID_BLK) {
		u32 crc;
		u64 irqs;

		if (virtio_blk_read_crc(hp_index[slot], 0, 64, &crc, &irqs))
			pass("hotplug-reread", "slot=%d dev=%s sectors=64 crc32=%08x", slot, v->name, crc);
		else
			fail("hotplug-reread", "slot=%d dev=%s read failed", slot, v->name);
	}
	if (d) {
		/* Let go first: no DMA, no interrupts, no decoding. */
		if (v->common)
			virtio_reset(v);
		pci_write16(d, PCI_COMMAND, 0);
		pci_forget(d);
		hp_pci[slot] = NULL;
	}
	info("hotplug eject slot=%d dev=%s", slot, d ? v->name : "unknown");
	outl(HP_SEL, 0);
	outl(HP_EJECT, 1u << slot);
	/* The VMM takes the device away now or a little later. */
	t0 = now_us();
	while ((pci_read32(&probe, PCI_VENDOR) & 0xffff) != 0xffff) {
		if (now_us() - t0 > 10000000) {
			fail("hotplug-eject", "slot=%d still present 10 s after the eject", slot);
			return false;
		}
		delay_us(1000);
	}
	pass("hotplug-eject", "slot=%d dev=%s", slot, d ? v->name : "unknown");
	return true;
}

/*
 * kvmmtest.hotplug.rogue=SLOT or =added (each added device, before it is
 * driven): an eject the host never asked for.  kvmm ignores it; QEMU would take away any
 * hotpluggable device, so only kvmm's tests use this.
 */
static void rogue_eject(int slot)
{
	struct pci_dev probe = { .bus = 0, .dev = slot };
	u32 before = pci_read32(&probe, PCI_VENDOR), after;

	outl(HP_SEL, 0);
	outl(HP_EJECT, 1u << slot);
	/* A VMM that honoured it would be done within this. */
	delay_us(200000);
	after = pci_read32(&probe, PCI_VENDOR);
	info("hotplug rogue-eject slot=%d before=%08x after=%08x", slot, before, after);
}

void hotplug_run(void)
{
	char opt[16];
	u64 secs, want = 1, deadline;
	int added = 0, removed = 0;
	u32 half;

	if (!cmdline_option("kvmmtest.hotplug", opt, sizeof(opt)))
		return;
	secs = parse_u64(opt, NULL) ?: 60;
	if (cmdline_option("kvmmtest.hotplug.removals", opt, sizeof(opt)))
		want = parse_u64(opt, NULL);
	if (!acpi_pm.gpe0.addr || acpi_pm.gpe0_len < 2 || acpi_pm.gpe0.space != 1) {
		fail("hotplug", "no GPE0 block in I/O space in the FADT");
		return;
	}
	reread = cmdline_option("kvmmtest.hotplug.reread", opt, sizeof(opt));
	if (cmdline_option("kvmmtest.hotplug.rogue", opt, sizeof(opt))) {
		if (!strcmp(opt, "added"))
			rogue_added = true;
		else
			rogue_eject(parse_u64(opt, NULL));
	}
	half = acpi_pm.gpe0_len / 2;
	gpe_write8(0, HP_GPE);			/* write 1 to clear */
	gpe_write8(half, gpe_read8(half) | HP_GPE);
	record("event hotplug-ready gpe0=0x%lx len=%u", acpi_pm.gpe0.addr, acpi_pm.gpe0_len);
	deadline = now_us() + secs * 1000000;
	while ((u64)removed < want && now_us() < deadline) {
		u32 up, down;

		if (!(gpe_read8(0) & HP_GPE)) {
			delay_us(1000);
			continue;
		}
		/* Cleared before the registers are read: an event after
		 * this sets it again and is not lost. */
		gpe_write8(0, HP_GPE);
		outl(HP_SEL, 0);
		up = inl(HP_UP);
		down = inl(HP_DOWN);
		info("hotplug gpe up=0x%x down=0x%x", up, down);
		for (int s = 1; s < HP_SLOTS; s++) {
			if (up & (1u << s)) {
				plug(s);
				added++;
			}
		}
		for (int s = 1; s < HP_SLOTS; s++)
			if ((down & (1u << s)) && unplug(s))
				removed++;
	}
	/* Off again: nothing here serves the SCI for GPEs. */
	gpe_write8(half, gpe_read8(half) & ~HP_GPE);
	gpe_write8(0, HP_GPE);
	if ((u64)removed < want)
		fail("hotplug", "added=%d removed=%d of %lu within %lu s", added, removed,
		     want, secs);
	else
		pass("hotplug", "added=%d removed=%d", added, removed);
}
