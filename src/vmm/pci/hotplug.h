/* ACPI PCI hotplug of bus 0, QEMU's PIIX4 interface (docs/hotplug.md):
 * virtio-blk and virtio-net devices added to and removed from a running
 * guest.
 *
 * The registers at X86_PCI_HOTPLUG_PORT: up (slots with a new device;
 * cleared when read), down (slots whose device the host wants back),
 * eject (the guest's _EJ0 writes a slot's bit once it let go of the
 * device), removable slots, and a bus selector that only knows bus 0.  An
 * add or a removal request sets GPE 1, whose SCI makes the guest run
 * \_GPE._E01 -> PCNT, which notifies the slots.
 *
 * Everything but the register accesses runs on the main thread: the eject
 * a vCPU sees is handed over through an eventfd, and the main thread
 * unplugs the function, destroys the device and says "device-deleted". */
#ifndef KVMM_PCI_HOTPLUG_H
#define KVMM_PCI_HOTPLUG_H

#include <stdbool.h>
#include <stddef.h>

struct json_object;
struct vm;
struct device;
struct disk_config;
struct net_config;

#define PCI_HOTPLUG_ID_MAX	64

enum pci_hotplug_kind { PCI_HOTPLUG_BLK, PCI_HOTPLUG_NET };

/* One hot-added device, as query-devices lists it. */
struct pci_hotplug_info {
	char id[PCI_HOTPLUG_ID_MAX];
	enum pci_hotplug_kind kind;
	unsigned int slot;
	const char *backend;		/* the image path or the tap name */
	int removing;			/* removal requested, not yet ejected */
	struct device *dev;
};

/* The register block; pm is the device whose GPE0 block signals. */
struct device *pci_hotplug_create(struct vm *vm, struct device *pm);

/* Main thread.  Plugs a new device into slot (0: the lowest free one),
 * taking over *disk or *net (a parsed configuration; on failure it is
 * freed too), and signals the guest.  0 and *slot_out set, or a negative
 * errno with one line in err: -EEXIST (id or slot taken), -ENOSPC (no
 * free slot, or the disk/NIC limit reached), -EINVAL (bad slot, bad
 * backend). */
int pci_hotplug_add_blk(struct vm *vm, const char *id, unsigned int slot,
			struct disk_config *disk, struct json_object *opts, bool quiet,
			unsigned int *slot_out, char *err, size_t errlen);
int pci_hotplug_add_net(struct vm *vm, const char *id, unsigned int slot,
			struct net_config *net, struct json_object *opts, bool quiet,
			unsigned int *slot_out, char *err, size_t errlen);
/* (opts: the device's keys, kept for pci_hotplug_config; quiet: a
 * restored VM's device, plugged without signalling the guest.) */
/* At creation, before the guest runs: the configuration's "hotplug"
 * devices plugged again at their slots, in its order.  -errno after
 * logging why. */
int pci_hotplug_restore(struct vm *vm);
/* The hot-added devices as the configuration's "hotplug" array, for a
 * save's stream (a new reference; an empty array with none). */
struct json_object *pci_hotplug_config(struct vm *vm);
/* Main thread: acts on the guest's ejects that waited for a live
 * migration's end. */
void pci_hotplug_kick(struct vm *vm);
/* Asks the guest to give back device id (the removal completes when it
 * ejects the slot).  -ENODEV if no hot-added device has that id. */
int pci_hotplug_del(struct vm *vm, const char *id, char *err, size_t errlen);
/* The hot-added devices in slot order; returns how many were written. */
unsigned int pci_hotplug_list(struct vm *vm, struct pci_hotplug_info *out,
			      unsigned int max);

#endif
