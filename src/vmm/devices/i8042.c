/* A minimal i8042 keyboard controller: enough for guests to probe it and
 * for the classic "pulse the reset line" (command 0xFE) reboot to work.
 * No keyboard or mouse is attached. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "devices.h"
#include "device.h"
#include "vm.h"

#define I8042_DATA	0	/* base: 0x60 on a PC */
#define I8042_CMD	4	/* base + 4: 0x64 */

#define STS_OBF		0x01
#define STS_SYS		0x04
#define STS_CMD		0x08
#define STS_UNLOCKED	0x10	/* keyboard not inhibited: there is no key lock */

#define CMD_READ_CTR	0x20
#define CMD_WRITE_CTR	0x60
#define CMD_SELF_TEST	0xAA
#define CMD_KBD_TEST	0xAB
#define CMD_READ_OUTP	0xD0
#define CMD_WRITE_OUTP	0xD1
#define CMD_RESET_CPU	0xFE

struct i8042_state {
	uint32_t version;
	uint8_t status, ctr, outp, out, pending_cmd;
};

struct i8042 {
	struct device dev;
	struct i8042_state s;
};

#define I8042_STATE_VERSION 1

static void i8042_output(struct i8042 *k, uint8_t v)
{
	k->s.out = v;
	k->s.status |= STS_OBF;
}

static void i8042_read(struct device *dev, uint64_t addr, uint8_t *data, unsigned int len)
{
	struct i8042 *k = (struct i8042 *)dev;

	if (addr == I8042_DATA) {
		data[0] = k->s.out;
		k->s.status &= ~STS_OBF;
	} else if (addr == I8042_CMD) {
		data[0] = k->s.status | STS_UNLOCKED;
	} else {
		data[0] = 0xff;
	}
}

static void i8042_command(struct i8042 *k, uint8_t cmd)
{
	k->s.status |= STS_CMD;
	switch (cmd) {
	case CMD_READ_CTR:
		i8042_output(k, k->s.ctr);
		break;
	case CMD_WRITE_CTR:
	case CMD_WRITE_OUTP:
		k->s.pending_cmd = cmd;
		break;
	case CMD_SELF_TEST:
		i8042_output(k, 0x55);
		break;
	case CMD_KBD_TEST:
		i8042_output(k, 0x00);
		break;
	case CMD_READ_OUTP:
		i8042_output(k, k->s.outp);
		break;
	case CMD_RESET_CPU:
		vm_request(k->dev.vm, REASON_RESET, NULL);
		break;
	default:
		break;	/* port enable/disable and the like: nothing to do */
	}
}

static void i8042_write(struct device *dev, uint64_t addr, const uint8_t *data, unsigned int len)
{
	struct i8042 *k = (struct i8042 *)dev;

	if (addr == I8042_CMD) {
		i8042_command(k, data[0]);
	} else if (addr == I8042_DATA) {
		k->s.status &= ~STS_CMD;
		if (k->s.pending_cmd == CMD_WRITE_CTR)
			k->s.ctr = data[0];
		else if (k->s.pending_cmd == CMD_WRITE_OUTP &&
			 !((k->s.outp = data[0]) & 1))
			vm_request(dev->vm, REASON_RESET, NULL);	/* bit 0 low: reset */
		k->s.pending_cmd = 0;
	}
}

static void i8042_reset(struct device *dev)
{
	struct i8042 *k = (struct i8042 *)dev;

	memset(&k->s, 0, sizeof(k->s));
	k->s.version = I8042_STATE_VERSION;
	k->s.status = STS_SYS;
	k->s.outp = 0x01;	/* reset line high (inactive) */
}

static int i8042_save(struct device *dev, struct state_buf *out)
{
	return state_put(out, &((struct i8042 *)dev)->s, sizeof(struct i8042_state));
}

static int i8042_load(struct device *dev, const uint8_t *data, size_t len)
{
	struct i8042_state s;

	if (len != sizeof(s))
		return -EINVAL;
	memcpy(&s, data, sizeof(s));
	if (s.version != I8042_STATE_VERSION)
		return -EINVAL;
	((struct i8042 *)dev)->s = s;
	return 0;
}

static void i8042_destroy(struct device *dev)
{
	free(dev);
}

static const struct device_ops i8042_ops = {
	.name = "i8042",
	.read = i8042_read,
	.write = i8042_write,
	.reset = i8042_reset,
	.save = i8042_save,
	.load = i8042_load,
	.destroy = i8042_destroy,
};

struct device *i8042_create(struct vm *vm, uint16_t port)
{
	struct i8042 *k = calloc(1, sizeof(*k));

	if (!k)
		return NULL;
	device_init(&k->dev, &i8042_ops, vm);
	i8042_reset(&k->dev);
	/* 0x61..0x63 in between belong to the in-kernel PIT/speaker and never
	 * reach us; register the whole span so one device owns both ports. */
	if (bus_register(&vm->pio, port, 5, &k->dev)) {
		free(k);
		return NULL;
	}
	return &k->dev;
}
