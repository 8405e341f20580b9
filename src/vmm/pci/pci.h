/* PCI bus 0: configuration space of each function, BARs and capabilities.
 *
 * A function is a struct device (its lock guards its state) plus a 4 KiB
 * configuration space and a mask of the bits the guest may write.  BAR
 * sizing needs no code of its own: a BAR's writable bits are exactly its
 * address bits, so writing all-ones reads back the size mask.
 *
 * BARs move at the guest's will (Linux may reassign them), so they are not
 * on the VM's fixed MMIO bus, whose ranges are set before any vCPU runs
 * and read without a lock.  Instead an MMIO exit no fixed range claims
 * falls through to pci_mmio_access(), which looks the address up in the
 * decoding BARs under the bus's rwlock: vCPUs take it shared for BAR
 * accesses, configuration writes take it exclusive while they change a
 * BAR or the command register.  Lock order: bus rwlock, then a function's
 * device lock.  Exits for RAM never get here, so the cost is only paid by
 * MMIO that no fixed device claims. */
#ifndef KVMM_PCI_H
#define KVMM_PCI_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "device.h"

#define PCI_CFG_SIZE		4096	/* PCIe extended configuration space */
#define PCI_MAX_DEVICES		32	/* bus 0, function 0 of each slot */
#define PCI_NUM_BARS		6

/* Type-0 header offsets (PCI Local Bus 3.0, 6.1). */
#define PCI_VENDOR_ID		0x00
#define PCI_DEVICE_ID		0x02
#define PCI_COMMAND		0x04
#define PCI_STATUS		0x06
#define PCI_REVISION_ID		0x08
#define PCI_CLASS_PROG		0x09
#define PCI_HEADER_TYPE		0x0e
#define PCI_BAR0		0x10
#define PCI_SUBSYS_VENDOR_ID	0x2c
#define PCI_SUBSYS_ID		0x2e
#define PCI_CAP_PTR		0x34
#define PCI_INTERRUPT_LINE	0x3c
#define PCI_INTERRUPT_PIN	0x3d

#define PCI_COMMAND_IO		0x0001
#define PCI_COMMAND_MEMORY	0x0002
#define PCI_COMMAND_MASTER	0x0004
#define PCI_COMMAND_INTX_DISABLE 0x0400
#define PCI_STATUS_CAP_LIST	0x0010

#define PCI_BAR_MEM64		0x04
#define PCI_BAR_PREFETCH	0x08

#define PCI_CAP_ID_VNDR		0x09
#define PCI_CAP_ID_MSIX		0x11

struct pci_func;
struct pci_bus;

/* What a function adds to the generic header handling.  Called with the
 * function's device lock held. */
struct pci_func_ops {
	/* Access to a memory BAR; off is relative to the BAR's start and
	 * the access lies wholly inside the BAR. */
	void (*bar_read)(struct pci_func *f, int bar, uint64_t off,
			 uint8_t *data, unsigned int len);
	void (*bar_write)(struct pci_func *f, int bar, uint64_t off,
			  const uint8_t *data, unsigned int len);
	/* Before a configuration read of [off, off+len): a chance to
	 * refresh bytes that are windows onto something else. */
	void (*cfg_read)(struct pci_func *f, unsigned int off, unsigned int len);
	/* After a configuration write at [off, off+len) was applied. */
	void (*cfg_written)(struct pci_func *f, unsigned int off, unsigned int len);
	/* A BAR moved or memory decoding was switched (ioeventfds follow). */
	void (*bars_changed)(struct pci_func *f);
};

struct pci_bar {
	uint64_t size;		/* 0: not implemented */
	bool mem64;
};

struct pci_func {
	struct device dev;
	const struct pci_func_ops *pops;
	struct pci_bus *bus;
	unsigned int slot;
	uint8_t cfg[PCI_CFG_SIZE];
	uint8_t wmask[PCI_CFG_SIZE];	/* bits the guest may change */
	uint8_t reset_cfg[PCI_CFG_SIZE];	/* power-on contents */
	struct pci_bar bars[PCI_NUM_BARS];
	uint8_t cap_last;		/* offset of the last capability, 0 if none */
	uint16_t cap_end;		/* first free byte for a new capability */
};

struct pci_bus {
	pthread_rwlock_t lock;		/* BAR placement and decoding */
	struct pci_func *slots[PCI_MAX_DEVICES];
};

void pci_bus_init(struct pci_bus *bus);
void pci_bus_destroy(struct pci_bus *bus);

/* Fills in the header of a type-0 function; BARs and capabilities are
 * added afterwards, then pci_bus_add() plugs it into a slot. */
void pci_func_init(struct pci_func *f, const struct device_ops *ops,
		   const struct pci_func_ops *pops, struct vm *vm,
		   uint16_t vendor, uint16_t device, uint32_t class_code,
		   uint8_t revision);
/* size: a power of two >= 16; mem64 BARs take two slots.  The BAR starts
 * at addr (0 = left for the guest to place). -EINVAL if bad. */
int pci_func_add_bar(struct pci_func *f, int bar, uint64_t size, bool mem64,
		     uint64_t addr);
/* Appends a capability of len bytes (id and next pointer included) and
 * returns its offset, or a negative errno. */
int pci_func_add_cap(struct pci_func *f, uint8_t id, unsigned int len);
int pci_bus_add(struct pci_bus *bus, struct pci_func *f, unsigned int slot);
/* Unplugs slot's function (hot removal): once this returns no vCPU
 * reaches it through configuration space or its BARs.  Returns it, or
 * NULL if the slot was empty. */
struct pci_func *pci_bus_remove(struct pci_bus *bus, unsigned int slot);

/* The current guest address of a BAR (0 if unassigned). */
uint64_t pci_bar_addr(const struct pci_func *f, int bar);
bool pci_mem_enabled(const struct pci_func *f);

/* Configuration access for bus 0, from conf1 or ECAM: slot, function,
 * register offset.  Accesses must be 1, 2 or 4 bytes and not cross a
 * dword; anything else, other buses, absent functions: reads all-ones,
 * writes dropped. */
void pci_cfg_access(struct pci_bus *bus, unsigned int slot, unsigned int fn,
		    unsigned int off, uint8_t *data, unsigned int len,
		    bool is_write);

/* An MMIO access no fixed device claimed: false if no BAR decodes addr. */
bool pci_mmio_access(struct pci_bus *bus, uint64_t addr, uint8_t *data,
		     unsigned int len, bool is_write);

/* Back to the power-on header: the guest-writable part of the config
 * space (command, BARs, capability control words) cleared. */
void pci_func_reset(struct pci_func *f);
/* Save/load the configuration space (the writable state is all in it). */
int pci_func_save(struct pci_func *f, struct state_buf *out);
int pci_func_load(struct pci_func *f, const uint8_t *data, size_t len);

static inline uint32_t pci_get(const uint8_t *p, unsigned int len)
{
	uint32_t v = 0;
	unsigned int i;

	for (i = 0; i < len; i++)
		v |= (uint32_t)p[i] << (8 * i);
	return v;
}

static inline void pci_put(uint8_t *p, uint32_t v, unsigned int len)
{
	unsigned int i;

	for (i = 0; i < len; i++)
		p[i] = v >> (8 * i);
}

#endif
