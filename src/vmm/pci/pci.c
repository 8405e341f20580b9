/* PCI bus 0: the generic type-0 configuration space, BARs, capability
 * list and the dispatch of BAR accesses (see pci.h for the locking). */
#include <errno.h>
#include <string.h>

#include "pci.h"

#define PCI_STATE_VERSION 1

void pci_bus_init(struct pci_bus *bus)
{
	memset(bus, 0, sizeof(*bus));
	pthread_rwlock_init(&bus->lock, NULL);
}

void pci_bus_destroy(struct pci_bus *bus)
{
	pthread_rwlock_destroy(&bus->lock);
}

void pci_func_init(struct pci_func *f, const struct device_ops *ops,
		   const struct pci_func_ops *pops, struct vm *vm,
		   uint16_t vendor, uint16_t device, uint32_t class_code,
		   uint8_t revision)
{
	device_init(&f->dev, ops, vm);
	f->pops = pops;
	memset(f->cfg, 0, sizeof(f->cfg));
	memset(f->wmask, 0, sizeof(f->wmask));
	memset(f->bars, 0, sizeof(f->bars));
	pci_put(f->cfg + PCI_VENDOR_ID, vendor, 2);
	pci_put(f->cfg + PCI_DEVICE_ID, device, 2);
	f->cfg[PCI_REVISION_ID] = revision;
	pci_put(f->cfg + PCI_CLASS_PROG, class_code, 3);
	/* I/O space, memory space, bus master and INTx disable; nothing
	 * here drives INTx, so the bit is only remembered. */
	pci_put(f->wmask + PCI_COMMAND, PCI_COMMAND_IO | PCI_COMMAND_MEMORY |
		PCI_COMMAND_MASTER | PCI_COMMAND_INTX_DISABLE, 2);
	f->wmask[PCI_INTERRUPT_LINE] = 0xff;	/* scratch for the OS */
	f->cap_last = 0;
	f->cap_end = 0x40;
}

int pci_func_add_bar(struct pci_func *f, int bar, uint64_t size, bool mem64,
		     uint64_t addr)
{
	uint64_t mask = ~(size - 1);
	unsigned int off = PCI_BAR0 + 4 * bar;

	if (bar < 0 || bar + (mem64 ? 1 : 0) >= PCI_NUM_BARS || size < 16 ||
	    (size & (size - 1)) || (addr & (size - 1)) ||
	    (!mem64 && (size > (1ULL << 31) || addr >> 32)))
		return -EINVAL;
	f->bars[bar] = (struct pci_bar){ .size = size, .mem64 = mem64 };
	pci_put(f->cfg + off, (uint32_t)addr | (mem64 ? PCI_BAR_MEM64 : 0), 4);
	pci_put(f->wmask + off, (uint32_t)mask & ~0xfu, 4);
	if (mem64) {
		pci_put(f->cfg + off + 4, addr >> 32, 4);
		pci_put(f->wmask + off + 4, mask >> 32, 4);
	}
	return 0;
}

int pci_func_add_cap(struct pci_func *f, uint8_t id, unsigned int len)
{
	unsigned int off = (f->cap_end + 3) & ~3u;

	/* The standard capability list lives in the first 256 bytes. */
	if (len < 2 || off + len > 0x100)
		return -ENOSPC;
	f->cfg[off] = id;
	f->cfg[off + 1] = 0;
	if (f->cap_last)
		f->cfg[f->cap_last + 1] = off;
	else
		f->cfg[PCI_CAP_PTR] = off;
	pci_put(f->cfg + PCI_STATUS,
		pci_get(f->cfg + PCI_STATUS, 2) | PCI_STATUS_CAP_LIST, 2);
	f->cap_last = off;
	f->cap_end = off + len;
	return off;
}

int pci_bus_add(struct pci_bus *bus, struct pci_func *f, unsigned int slot)
{
	int r = 0;

	if (slot >= PCI_MAX_DEVICES)
		return -EEXIST;
	f->bus = bus;
	f->slot = slot;
	memcpy(f->reset_cfg, f->cfg, sizeof(f->cfg));
	/* Exclusive: a hot-added function appears while vCPUs scan. */
	pthread_rwlock_wrlock(&bus->lock);
	if (bus->slots[slot])
		r = -EEXIST;
	else
		bus->slots[slot] = f;
	pthread_rwlock_unlock(&bus->lock);
	return r;
}

struct pci_func *pci_bus_remove(struct pci_bus *bus, unsigned int slot)
{
	struct pci_func *f;

	if (slot >= PCI_MAX_DEVICES)
		return NULL;
	pthread_rwlock_wrlock(&bus->lock);
	f = bus->slots[slot];
	bus->slots[slot] = NULL;
	pthread_rwlock_unlock(&bus->lock);
	return f;
}

uint64_t pci_bar_addr(const struct pci_func *f, int bar)
{
	const uint8_t *p = f->cfg + PCI_BAR0 + 4 * bar;
	uint64_t addr = pci_get(p, 4) & ~0xfu;

	if (f->bars[bar].mem64)
		addr |= (uint64_t)pci_get(p + 4, 4) << 32;
	return addr;
}

bool pci_mem_enabled(const struct pci_func *f)
{
	return f->cfg[PCI_COMMAND] & PCI_COMMAND_MEMORY;
}

/* A write that touches the command register or a BAR changes what the
 * function decodes. */
static bool touches_decoding(unsigned int off, unsigned int len)
{
	return (off < PCI_COMMAND + 2 && off + len > PCI_COMMAND) ||
	       (off < PCI_BAR0 + 4 * PCI_NUM_BARS && off + len > PCI_BAR0);
}

static void cfg_write(struct pci_func *f, unsigned int off,
		      const uint8_t *data, unsigned int len)
{
	unsigned int i;

	for (i = 0; i < len; i++)
		f->cfg[off + i] = (f->cfg[off + i] & ~f->wmask[off + i]) |
				  (data[i] & f->wmask[off + i]);
	if (f->pops && f->pops->cfg_written)
		f->pops->cfg_written(f, off, len);
}

void pci_cfg_access(struct pci_bus *bus, unsigned int slot, unsigned int fn,
		    unsigned int off, uint8_t *data, unsigned int len,
		    bool is_write)
{
	struct pci_func *f;
	bool remap = is_write && touches_decoding(off, len);

	/* The bus lock also keeps a hot-removed function from going away
	 * under this access (pci_bus_remove takes it exclusive). */
	if (remap)
		pthread_rwlock_wrlock(&bus->lock);
	else
		pthread_rwlock_rdlock(&bus->lock);
	/* GUEST: slot, function and offset come from the guest's address;
	 * only function 0 of a populated slot exists, and an access must
	 * be 1, 2 or 4 bytes inside one aligned dword of the 4 KiB space. */
	f = slot < PCI_MAX_DEVICES && fn == 0 ? bus->slots[slot] : NULL;
	if (!f || (len != 1 && len != 2 && len != 4) || off >= PCI_CFG_SIZE ||
	    (off & 3) + len > 4) {
		if (!is_write)
			memset(data, 0xff, len);
		goto out;
	}
	pthread_mutex_lock(&f->dev.lock);
	if (!is_write) {
		if (f->pops && f->pops->cfg_read)
			f->pops->cfg_read(f, off, len);
		memcpy(data, f->cfg + off, len);
	} else {
		cfg_write(f, off, data, len);
		if (remap && f->pops && f->pops->bars_changed)
			f->pops->bars_changed(f);
	}
	pthread_mutex_unlock(&f->dev.lock);
out:
	pthread_rwlock_unlock(&bus->lock);
}

/* The BAR of f that decodes [addr, addr+len), or -1. */
static int bar_lookup(const struct pci_func *f, uint64_t addr, unsigned int len,
		      uint64_t *off)
{
	int i;

	if (!pci_mem_enabled(f))
		return -1;
	for (i = 0; i < PCI_NUM_BARS; i++) {
		uint64_t base = pci_bar_addr(f, i), size = f->bars[i].size;

		/* An unassigned BAR (0) decodes nothing: address 0 is RAM. */
		if (size && base && addr >= base && addr - base < size &&
		    len <= size - (addr - base)) {
			*off = addr - base;
			return i;
		}
		if (f->bars[i].mem64)
			i++;
	}
	return -1;
}

bool pci_mmio_access(struct pci_bus *bus, uint64_t addr, uint8_t *data,
		     unsigned int len, bool is_write)
{
	bool found = false;
	unsigned int s;

	pthread_rwlock_rdlock(&bus->lock);
	for (s = 0; s < PCI_MAX_DEVICES && !found; s++) {
		struct pci_func *f = bus->slots[s];
		uint64_t off;
		int bar;

		if (!f)
			continue;
		/* The BAR registers only change under the write lock, so
		 * reading them here without the function's lock is safe. */
		bar = bar_lookup(f, addr, len, &off);
		if (bar < 0)
			continue;
		found = true;
		pthread_mutex_lock(&f->dev.lock);
		if (is_write) {
			if (f->pops && f->pops->bar_write)
				f->pops->bar_write(f, bar, off, data, len);
		} else {
			memset(data, 0, len);
			if (f->pops && f->pops->bar_read)
				f->pops->bar_read(f, bar, off, data, len);
		}
		pthread_mutex_unlock(&f->dev.lock);
	}
	pthread_rwlock_unlock(&bus->lock);
	return found;
}

void pci_func_reset(struct pci_func *f)
{
	memcpy(f->cfg, f->reset_cfg, sizeof(f->cfg));
}

int pci_func_save(struct pci_func *f, struct state_buf *out)
{
	uint8_t v = PCI_STATE_VERSION;
	int r = state_put(out, &v, 1);

	return r ? r : state_put(out, f->cfg, sizeof(f->cfg));
}

int pci_func_load(struct pci_func *f, const uint8_t *data, size_t len)
{
	unsigned int i;

	if (len < 1 + PCI_CFG_SIZE || data[0] != PCI_STATE_VERSION)
		return -EINVAL;
	/* Only the bits the guest could have written are taken from the
	 * stream: identity and capability layout stay this build's. */
	for (i = 0; i < PCI_CFG_SIZE; i++)
		f->cfg[i] = (f->reset_cfg[i] & ~f->wmask[i]) |
			    (data[1 + i] & f->wmask[i]);
	return 0;
}
