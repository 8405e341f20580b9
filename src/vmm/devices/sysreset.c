/* The chipset reset control register (port 0xCF9 on PC chipsets): the
 * FADT's RESET_REG points here, so writing 0x06 (full reset) reboots. */
#include <errno.h>
#include <stdlib.h>

#include "devices.h"
#include "device.h"
#include "vm.h"

#define RST_CPU		0x04	/* the edge that performs the reset */

struct sysreset {
	struct device dev;
	uint8_t value;
};

static void sysreset_read(struct device *dev, uint64_t addr, uint8_t *data, unsigned int len)
{
	data[0] = ((struct sysreset *)dev)->value;
}

static void sysreset_write(struct device *dev, uint64_t addr, const uint8_t *data, unsigned int len)
{
	struct sysreset *r = (struct sysreset *)dev;

	r->value = data[0] & 0x0e;
	if (data[0] & RST_CPU)
		vm_request(dev->vm, REASON_RESET, NULL);
}

static void sysreset_reset(struct device *dev)
{
	((struct sysreset *)dev)->value = 0;
}

static int sysreset_save(struct device *dev, struct state_buf *out)
{
	return state_put(out, &((struct sysreset *)dev)->value, 1);
}

static int sysreset_load(struct device *dev, const uint8_t *data, size_t len)
{
	if (len != 1)
		return -EINVAL;
	((struct sysreset *)dev)->value = data[0] & 0x0e;
	return 0;
}

static void sysreset_destroy(struct device *dev)
{
	free(dev);
}

static const struct device_ops sysreset_ops = {
	.name = "sysreset",
	.read = sysreset_read,
	.write = sysreset_write,
	.reset = sysreset_reset,
	.save = sysreset_save,
	.load = sysreset_load,
	.destroy = sysreset_destroy,
};

struct device *sysreset_create(struct vm *vm, uint16_t port)
{
	struct sysreset *r = calloc(1, sizeof(*r));

	if (!r)
		return NULL;
	device_init(&r->dev, &sysreset_ops, vm);
	/* port 0: another device (PCI conf1, which shares 0xCF8-0xCFF)
	 * forwards the register's accesses. */
	if (port && bus_register(&vm->pio, port, 1, &r->dev)) {
		free(r);
		return NULL;
	}
	return &r->dev;
}
