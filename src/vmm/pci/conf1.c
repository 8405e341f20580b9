/* Configuration mechanism #1: the address register at 0xCF8 (dword
 * accesses only) and the data window 0xCFC-0xCFF (any width inside it).
 * The chipset reset register shares the range at 0xCF9 as a single byte,
 * so byte accesses there are handed to it, as PC chipsets do. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "pci.h"
#include "pci_devices.h"

#define CONF1_ENABLE	0x80000000u

struct conf1 {
	struct device dev;
	struct pci_bus *bus;
	struct device *reset;	/* the 0xCF9 register */
	uint32_t addr;
};

static bool conf1_reset_port(struct conf1 *c, uint64_t off, unsigned int len)
{
	return off == 1 && len == 1 && c->reset;
}

static void conf1_forward(struct conf1 *c, uint8_t *data, bool is_write)
{
	pthread_mutex_lock(&c->reset->lock);
	if (is_write)
		c->reset->ops->write(c->reset, 0, data, 1);
	else
		c->reset->ops->read(c->reset, 0, data, 1);
	pthread_mutex_unlock(&c->reset->lock);
}

static void conf1_data(struct conf1 *c, uint64_t off, uint8_t *data,
		       unsigned int len, bool is_write)
{
	uint32_t a = c->addr;

	/* GUEST: bus, slot, function and register come from the guest's
	 * address register; pci_cfg_access checks them. */
	if (!(a & CONF1_ENABLE) || ((a >> 16) & 0xff) != 0) {
		if (!is_write)
			memset(data, 0xff, len);
		return;
	}
	pci_cfg_access(c->bus, (a >> 11) & 0x1f, (a >> 8) & 7,
		       (a & 0xfc) + (off - 4), data, len, is_write);
}

static void conf1_read(struct device *dev, uint64_t off, uint8_t *data, unsigned int len)
{
	struct conf1 *c = (struct conf1 *)dev;

	if (conf1_reset_port(c, off, len))
		conf1_forward(c, data, false);
	else if (off == 0 && len == 4)
		pci_put(data, c->addr, 4);
	else if (off >= 4)
		conf1_data(c, off, data, len, false);
	else
		memset(data, 0xff, len);
}

static void conf1_write(struct device *dev, uint64_t off, const uint8_t *data, unsigned int len)
{
	struct conf1 *c = (struct conf1 *)dev;
	uint8_t buf[4];

	memcpy(buf, data, len);
	if (conf1_reset_port(c, off, len))
		conf1_forward(c, buf, true);
	else if (off == 0 && len == 4)
		c->addr = pci_get(data, 4) & 0x80fffffcu;
	else if (off >= 4)
		conf1_data(c, off, buf, len, true);
}

static void conf1_dev_reset(struct device *dev)
{
	((struct conf1 *)dev)->addr = 0;
}

static int conf1_save(struct device *dev, struct state_buf *out)
{
	uint8_t b[4];

	pci_put(b, ((struct conf1 *)dev)->addr, 4);
	return state_put(out, b, 4);
}

static int conf1_load(struct device *dev, const uint8_t *data, size_t len)
{
	if (len != 4)
		return -EINVAL;
	((struct conf1 *)dev)->addr = pci_get(data, 4) & 0x80fffffcu;
	return 0;
}

static void conf1_destroy(struct device *dev)
{
	free(dev);
}

static const struct device_ops conf1_ops = {
	.name = "pci-conf1",
	.read = conf1_read,
	.write = conf1_write,
	.reset = conf1_dev_reset,
	.save = conf1_save,
	.load = conf1_load,
	.destroy = conf1_destroy,
};

struct device *pci_conf1_create(struct vm *vm, struct pci_bus *bus,
				struct bus *pio, uint16_t port,
				struct device *reset)
{
	struct conf1 *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	device_init(&c->dev, &conf1_ops, vm);
	c->bus = bus;
	c->reset = reset;
	if (bus_register(pio, port, 8, &c->dev)) {
		free(c);
		return NULL;
	}
	return &c->dev;
}
