/* The PCI platform pieces: host bridge, conf1 ports, ECAM window. */
#ifndef KVMM_PCI_DEVICES_H
#define KVMM_PCI_DEVICES_H

#include <stdint.h>

#include "device.h"

struct pci_bus;

/* ECAM bytes per bus: 32 devices x 8 functions x 4 KiB. */
#define PCI_ECAM_BUS_SIZE	0x100000ULL
/* A function's saved state: version byte + configuration space. */
#define PCI_STATE_LEN		(1 + 4096)

struct device *pci_host_bridge_create(struct vm *vm, struct pci_bus *bus);
/* reset: the device answering byte accesses at port+1 (0xCF9), or NULL. */
struct device *pci_conf1_create(struct vm *vm, struct pci_bus *bus,
				struct bus *pio, uint16_t port,
				struct device *reset);
struct device *pci_ecam_create(struct vm *vm, struct pci_bus *bus,
			       struct bus *mmio, uint64_t base);

#endif
