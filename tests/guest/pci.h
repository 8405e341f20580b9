/* SPDX-License-Identifier: MIT */
/* PCI configuration access, enumeration, BARs and capabilities (pci.c). */
#ifndef GUEST_PCI_H
#define GUEST_PCI_H

#include "types.h"

#define PCI_MAX_FUNCS	64

#define PCI_VENDOR	0x00
#define PCI_COMMAND	0x04
#define PCI_STATUS	0x06
#define PCI_CLASS_REV	0x08
#define PCI_HEADER_TYPE	0x0e
#define PCI_BAR0	0x10
#define PCI_SUBSYS_ID	0x2e
#define PCI_CAP_PTR	0x34
#define PCI_SECONDARY	0x19	/* type 1 header */

#define PCI_CMD_IO	0x0001
#define PCI_CMD_MEM	0x0002
#define PCI_CMD_MASTER	0x0004
#define PCI_CMD_INTX_OFF 0x0400
#define PCI_STATUS_CAPS	0x0010

#define PCI_CAP_MSIX	0x11
#define PCI_CAP_VENDOR	0x09

struct pci_bar {
	u64 addr;
	u64 size;	/* 0: not implemented */
	bool io, is64, prefetch;
	bool assigned;	/* by us: firmware/VMM left it at 0 */
};

struct pci_dev {
	u8 bus, dev, fn;
	u16 vendor, device, subsys;
	u32 class;	/* class << 16 | subclass << 8 | prog-if */
	u8 header;
	struct pci_bar bar[6];
};

extern struct pci_dev pci_devs[PCI_MAX_FUNCS];
extern int pci_count;

u8 pci_read8(const struct pci_dev *d, u16 off);
u16 pci_read16(const struct pci_dev *d, u16 off);
u32 pci_read32(const struct pci_dev *d, u16 off);
void pci_write8(const struct pci_dev *d, u16 off, u8 v);
void pci_write16(const struct pci_dev *d, u16 off, u16 v);
void pci_write32(const struct pci_dev *d, u16 off, u32 v);

void pci_scan(void);
/* Function 0 of a slot that just got a device (hotplug): probed,
 * reported and appended to pci_devs; NULL if the slot is empty. */
struct pci_dev *pci_add_slot(u8 bus, u8 dev);
/* The device was ejected: its BARs no longer take address space. */
void pci_forget(struct pci_dev *d);
/* Offset of the next capability with this id after `after` (0: first). */
u8 pci_find_cap(const struct pci_dev *d, u8 id, u8 after);
/*
 * Memory space, bus mastering, BARs mapped: ready for a driver.  Memory
 * BARs at 0 get an address; with reassign, all of them do (a test of
 * that path under firmware that assigns everything).
 */
bool pci_enable(struct pci_dev *d, bool reassign);

/* pagetables.c: MMIO mapped user-accessible and uncached, any address. */
bool map_mmio(u64 addr, u64 len);

#endif
