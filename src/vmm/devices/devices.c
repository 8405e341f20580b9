/* The platform devices of the x86 machine, created in this order. */
#include <errno.h>
#include <stdlib.h>

#include "arch/x86/layout.h"
#include "chardev.h"
#include "devices.h"
#include "fw_cfg.h"
#include "device.h"
#include "log.h"
#include "pci/hotplug.h"
#include "cpu_hotplug.h"
#include "pci/pci.h"
#include "pci/pci_devices.h"
#include "virtio/balloon.h"
#include "virtio/blk.h"
#include "virtio/console.h"
#include "virtio/net.h"
#include "virtio/rng.h"
#include "virtio/virtio.h"
#include "vm.h"

void devices_add(struct vm *vm, struct device *dev)
{
	struct device **p = &vm->devices;

	while (*p)
		p = &(*p)->next;
	*p = dev;
}

/* Bus 0 with its host bridge, reached through conf1 (which also carries
 * the reset register at 0xCF9) and ECAM. */
static int pci_devices_create(struct vm *vm, struct device *reset)
{
	uint64_t bar = X86_PCI_MMIO_START;
	unsigned int slot = 1;
	struct device *dev;
	unsigned int i;

	vm->pci = calloc(1, sizeof(*vm->pci));
	if (!vm->pci)
		goto fail;
	pci_bus_init(vm->pci);
	dev = pci_conf1_create(vm, vm->pci, &vm->pio, X86_PCI_CONF1_PORT, reset);
	if (!dev)
		goto fail;
	devices_add(vm, dev);
	dev = pci_ecam_create(vm, vm->pci, &vm->mmio, X86_PCI_ECAM_ADDR);
	if (!dev)
		goto fail;
	devices_add(vm, dev);
	dev = pci_host_bridge_create(vm, vm->pci);
	if (!dev)
		goto fail;
	devices_add(vm, dev);
	/* virtio devices from slot 1, BARs placed one after another at the
	 * start of the window (the guest may move them). */
	if (vm->cfg->rng) {
		dev = virtio_rng_create(vm, slot, bar);
		if (!dev)
			goto fail;
		devices_add(vm, dev);
		slot++;
		bar += VIRTIO_PCI_BAR_SIZE;
	}
	for (i = 0; i < vm->cfg->ndisks; i++) {
		/* A disk that cannot be used has said why, in one line. */
		dev = virtio_blk_create(vm, i, slot, bar);
		if (!dev)
			return -EINVAL;
		devices_add(vm, dev);
		slot++;
		bar += VIRTIO_PCI_BAR_SIZE;
	}
	if (vm->console_backend) {
		dev = virtio_console_create(vm, slot, bar, vm->console_backend);
		if (!dev)
			goto fail;
		devices_add(vm, dev);
		slot++;
		bar += VIRTIO_PCI_BAR_SIZE;
	}
	if (vm->cfg->balloon.present) {
		dev = virtio_balloon_create(vm, slot, bar);
		if (!dev)
			goto fail;
		devices_add(vm, dev);
		slot++;
		bar += VIRTIO_PCI_BAR_SIZE;
	}
	/* NICs last, so adding them moves no other device's slot. */
	for (i = 0; i < vm->cfg->nnets; i++) {
		/* A tap that cannot be used has said why, in one line. */
		dev = virtio_net_create(vm, i, slot, bar);
		if (!dev)
			return -EINVAL;
		devices_add(vm, dev);
		slot++;
		bar += VIRTIO_PCI_BAR_SIZE;
	}
	/* The free slots take hot-added devices (docs/hotplug.md). */
	dev = pci_hotplug_create(vm, (struct device *)vm->pm);
	if (!dev)
		goto fail;
	devices_add(vm, dev);
	/* A restored VM's hot-added devices, back at their slots. */
	return pci_hotplug_restore(vm);
fail:
	pr_err("cannot create the PCI bus");
	return -ENOMEM;
}

int devices_create(struct vm *vm)
{
	struct device *dev, *reset;

	dev = serial_create(vm, X86_COM1_PORT, X86_COM1_IRQ, vm->serial_backend);
	if (!dev)
		goto fail;
	devices_add(vm, dev);
	dev = acpi_pm_create(vm, X86_PM_BASE, X86_SCI_IRQ, X86_S5_SLP_TYP);
	if (!dev)
		goto fail;
	devices_add(vm, dev);
	vm->pm = (struct acpi_pm *)dev;
	/* Only with room for more vCPUs: otherwise the machine stays as it
	 * was (docs/hotplug.md). */
	if (vm->cfg->max_cpus > vm->cfg->cpus) {
		dev = cpu_hotplug_create(vm, (struct device *)vm->pm);
		if (!dev)
			goto fail;
		devices_add(vm, dev);
	}
	reset = sysreset_create(vm, 0);
	if (!reset)
		goto fail;
	devices_add(vm, reset);
	dev = i8042_create(vm, X86_I8042_PORT);
	if (!dev)
		goto fail;
	devices_add(vm, dev);
	dev = rtc_create(vm, X86_RTC_PORT);
	if (!dev)
		goto fail;
	devices_add(vm, dev);
	/* Only for vmcoreinfo: without it the machine stays as it was. */
	if (vm->cfg->vmcoreinfo) {
		dev = fw_cfg_create(vm, X86_FW_CFG_PORT);
		if (!dev)
			goto fail;
		devices_add(vm, dev);
	}
	return pci_devices_create(vm, reset);
fail:
	pr_err("cannot create the platform devices");
	return -ENOMEM;
}

void devices_reset(struct vm *vm)
{
	struct device *d;

	for (d = vm->devices; d; d = d->next) {
		pthread_mutex_lock(&d->lock);
		if (d->ops->reset)
			d->ops->reset(d);
		pthread_mutex_unlock(&d->lock);
	}
}

void devices_resume(struct vm *vm)
{
	struct device *d;

	for (d = vm->devices; d; d = d->next)
		virtio_blk_retry(d);	/* -ENODEV for the others */
}

void devices_destroy(struct vm *vm)
{
	struct device *d, *next;

	for (d = vm->devices; d; d = next) {
		next = d->next;
		d->ops->destroy(d);
	}
	vm->devices = NULL;
	vm->pm = NULL;
	if (vm->pci) {
		pci_bus_destroy(vm->pci);
		free(vm->pci);
		vm->pci = NULL;
	}
}
