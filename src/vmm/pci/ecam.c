/* PCIe enhanced configuration access (ECAM) for bus 0: 4 KiB per
 * function at base + (device << 15 | function << 12), described to the
 * guest by the ACPI MCFG table. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "pci.h"
#include "pci_devices.h"

struct ecam {
	struct device dev;
	struct pci_bus *bus;
};

static void ecam_access(struct device *dev, uint64_t off, uint8_t *data,
			unsigned int len, bool is_write)
{
	struct ecam *e = (struct ecam *)dev;

	/* GUEST: off < the 1 MiB of bus 0 (the MMIO bus checked it); the
	 * width and alignment are checked by pci_cfg_access.  8-byte
	 * accesses are split, as a root complex does. */
	if (len == 8 && !(off & 7)) {
		pci_cfg_access(e->bus, (off >> 15) & 0x1f, (off >> 12) & 7,
			       off & 0xfff, data, 4, is_write);
		off += 4;
		data += 4;
		len = 4;
	}
	pci_cfg_access(e->bus, (off >> 15) & 0x1f, (off >> 12) & 7,
		       off & 0xfff, data, len, is_write);
}

static void ecam_read(struct device *dev, uint64_t off, uint8_t *data, unsigned int len)
{
	ecam_access(dev, off, data, len, false);
}

static void ecam_write(struct device *dev, uint64_t off, const uint8_t *data, unsigned int len)
{
	uint8_t buf[8];

	memcpy(buf, data, len);
	ecam_access(dev, off, buf, len, true);
}

/* No state of its own: the configuration spaces belong to the functions. */
static int ecam_save(struct device *dev, struct state_buf *out)
{
	return 0;
}

static int ecam_load(struct device *dev, const uint8_t *data, size_t len)
{
	return len ? -EINVAL : 0;
}

static void ecam_destroy(struct device *dev)
{
	free(dev);
}

static const struct device_ops ecam_ops = {
	.name = "pci-ecam",
	.read = ecam_read,
	.write = ecam_write,
	.save = ecam_save,
	.load = ecam_load,
	.destroy = ecam_destroy,
};

struct device *pci_ecam_create(struct vm *vm, struct pci_bus *bus,
			       struct bus *mmio, uint64_t base)
{
	struct ecam *e = calloc(1, sizeof(*e));

	if (!e)
		return NULL;
	device_init(&e->dev, &ecam_ops, vm);
	e->bus = bus;
	if (bus_register(mmio, base, PCI_ECAM_BUS_SIZE, &e->dev)) {
		free(e);
		return NULL;
	}
	return &e->dev;
}
