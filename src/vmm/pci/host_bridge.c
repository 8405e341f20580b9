/* The host bridge at 00:00.0: a type-0 function with the host-bridge
 * class and no BARs, which is what Linux expects to find at slot 0. */
#include <errno.h>
#include <stdlib.h>

#include "pci.h"
#include "pci_devices.h"

#define HOST_BRIDGE_VENDOR	0x1b36	/* Red Hat, Inc.: the virtual-device ID space */
#define HOST_BRIDGE_DEVICE	0x0008	/* "PCIe host bridge" in that space */
#define CLASS_HOST_BRIDGE	0x060000

static void host_bridge_reset(struct device *dev)
{
	pci_func_reset((struct pci_func *)dev);
}

static int host_bridge_save(struct device *dev, struct state_buf *out)
{
	return pci_func_save((struct pci_func *)dev, out);
}

static int host_bridge_load(struct device *dev, const uint8_t *data, size_t len)
{
	if (len != PCI_STATE_LEN)
		return -EINVAL;
	return pci_func_load((struct pci_func *)dev, data, len);
}

static void host_bridge_destroy(struct device *dev)
{
	free(dev);
}

static const struct device_ops host_bridge_ops = {
	.name = "pci-host-bridge",
	.reset = host_bridge_reset,
	.save = host_bridge_save,
	.load = host_bridge_load,
	.destroy = host_bridge_destroy,
};

struct device *pci_host_bridge_create(struct vm *vm, struct pci_bus *bus)
{
	struct pci_func *f = calloc(1, sizeof(*f));

	if (!f)
		return NULL;
	pci_func_init(f, &host_bridge_ops, NULL, vm, HOST_BRIDGE_VENDOR,
		      HOST_BRIDGE_DEVICE, CLASS_HOST_BRIDGE, 0);
	if (pci_bus_add(bus, f, 0)) {
		free(f);
		return NULL;
	}
	return &f->dev;
}
