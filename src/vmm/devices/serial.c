/* 16550A UART (the PC's COM ports).  Transmit is immediate, so the
 * transmitter always reads as empty; receive has a FIFO fed by the
 * chardev backend from the main loop. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "chardev.h"
#include "devices.h"
#include "device.h"
#include "vm.h"

#define UART_RBR 0	/* DLAB=0 read */
#define UART_THR 0	/* DLAB=0 write */
#define UART_IER 1
#define UART_IIR 2	/* read */
#define UART_FCR 2	/* write */
#define UART_LCR 3
#define UART_MCR 4
#define UART_LSR 5
#define UART_MSR 6
#define UART_SCR 7

#define IER_RDI		0x01
#define IER_THRI	0x02
#define IER_RLSI	0x04
#define IER_MSI		0x08
#define IIR_NONE	0x01
#define IIR_THRI	0x02
#define IIR_RDI		0x04
#define IIR_FIFO	0xc0
#define FCR_ENABLE	0x01
#define FCR_CLEAR_RX	0x02
#define LCR_DLAB	0x80
#define MCR_LOOP	0x10
#define LSR_DR		0x01
#define LSR_THRE	0x20
#define LSR_TEMT	0x40
#define MSR_CTS		0x10
#define MSR_DSR		0x20
#define MSR_DCD		0x80

#define RX_FIFO_SIZE 64

struct serial_state {
	uint32_t version;
	uint8_t ier, lcr, mcr, scr, fcr, dll, dlm;
	uint8_t thr_ipending;	/* THRE interrupt latched, cleared by IIR read */
	uint32_t rx_head, rx_count;
	uint8_t rx[RX_FIFO_SIZE];
};

struct serial {
	struct device dev;
	uint16_t port;
	unsigned int irq;
	struct chardev *backend;
	struct serial_state s;
	int irq_level;
};

#define SERIAL_STATE_VERSION 1

static struct serial *to_serial(struct device *dev)
{
	return (struct serial *)dev;
}

static uint8_t serial_iir(struct serial *u)
{
	uint8_t fifo = (u->s.fcr & FCR_ENABLE) ? IIR_FIFO : 0;

	if ((u->s.ier & IER_RDI) && u->s.rx_count)
		return IIR_RDI | fifo;
	if ((u->s.ier & IER_THRI) && u->s.thr_ipending)
		return IIR_THRI | fifo;
	return IIR_NONE | fifo;
}

static void serial_update_irq(struct serial *u)
{
	int level = !(serial_iir(u) & IIR_NONE);

	if (level != u->irq_level) {
		u->irq_level = level;
		kvm_irq_line(u->dev.vm, u->irq, level);
	}
}

static uint8_t serial_rx_pop(struct serial *u)
{
	uint8_t c;
	bool was_full = u->s.rx_count == RX_FIFO_SIZE;

	if (!u->s.rx_count)
		return 0;
	c = u->s.rx[u->s.rx_head];
	u->s.rx_head = (u->s.rx_head + 1) % RX_FIFO_SIZE;
	u->s.rx_count--;
	if (was_full && u->backend)
		chardev_accept_input(u->backend);
	return c;
}

static void serial_rx_push(struct serial *u, const uint8_t *buf, size_t len)
{
	while (len-- && u->s.rx_count < RX_FIFO_SIZE) {
		u->s.rx[(u->s.rx_head + u->s.rx_count) % RX_FIFO_SIZE] = *buf++;
		u->s.rx_count++;
	}
}

static void serial_read(struct device *dev, uint64_t addr, uint8_t *data, unsigned int len)
{
	struct serial *u = to_serial(dev);
	bool dlab = u->s.lcr & LCR_DLAB;
	uint8_t v = 0, iir;

	switch (addr) {
	case UART_RBR:
		v = dlab ? u->s.dll : serial_rx_pop(u);
		break;
	case UART_IER:
		v = dlab ? u->s.dlm : u->s.ier;
		break;
	case UART_IIR:
		iir = serial_iir(u);
		/* Reading IIR acknowledges a THRE interrupt it reports. */
		if ((iir & 0x0f) == IIR_THRI)
			u->s.thr_ipending = 0;
		v = iir;
		break;
	case UART_LCR:
		v = u->s.lcr;
		break;
	case UART_MCR:
		v = u->s.mcr;
		break;
	case UART_LSR:
		v = LSR_THRE | LSR_TEMT | (u->s.rx_count ? LSR_DR : 0);
		break;
	case UART_MSR:
		/* In loopback the modem inputs mirror the outputs; drivers
		 * probe for a UART this way. */
		if (u->s.mcr & MCR_LOOP)
			v = (u->s.mcr & 0x0f) << 4;
		else
			v = MSR_DCD | MSR_DSR | MSR_CTS;
		break;
	case UART_SCR:
		v = u->s.scr;
		break;
	}
	/* GUEST: wider accesses read the byte register, upper bytes 0. */
	data[0] = v;
	serial_update_irq(u);
}

static void serial_write(struct device *dev, uint64_t addr, const uint8_t *data, unsigned int len)
{
	struct serial *u = to_serial(dev);
	bool dlab = u->s.lcr & LCR_DLAB;
	uint8_t v = data[0];

	switch (addr) {
	case UART_THR:
		if (dlab) {
			u->s.dll = v;
		} else if (u->s.mcr & MCR_LOOP) {
			serial_rx_push(u, &v, 1);
		} else {
			if (u->backend)
				chardev_write(u->backend, &v, 1);
			u->s.thr_ipending = 1;
		}
		break;
	case UART_IER:
		if (dlab) {
			u->s.dlm = v;
		} else {
			/* Enabling THRI with an empty transmitter raises it. */
			if (!(u->s.ier & IER_THRI) && (v & IER_THRI))
				u->s.thr_ipending = 1;
			u->s.ier = v & 0x0f;
		}
		break;
	case UART_FCR:
		if (v & FCR_CLEAR_RX) {
			u->s.rx_count = 0;
			if (u->backend)
				chardev_accept_input(u->backend);
		}
		u->s.fcr = v & 0xc9;
		break;
	case UART_LCR:
		u->s.lcr = v;
		break;
	case UART_MCR:
		u->s.mcr = v & 0x1f;
		break;
	case UART_SCR:
		u->s.scr = v;
		break;
	}
	serial_update_irq(u);
}

static void serial_reset(struct device *dev)
{
	struct serial *u = to_serial(dev);

	memset(&u->s, 0, sizeof(u->s));
	u->s.version = SERIAL_STATE_VERSION;
	u->irq_level = 0;	/* the KVM irqchip is rebuilt on reset */
}

static int serial_save(struct device *dev, struct state_buf *out)
{
	return state_put(out, &to_serial(dev)->s, sizeof(struct serial_state));
}

static int serial_load(struct device *dev, const uint8_t *data, size_t len)
{
	struct serial *u = to_serial(dev);
	struct serial_state s;

	if (len != sizeof(s))
		return -EINVAL;
	memcpy(&s, data, sizeof(s));
	/* The record comes from a file or a peer: check before use. */
	if (s.version != SERIAL_STATE_VERSION || s.rx_head >= RX_FIFO_SIZE ||
	    s.rx_count > RX_FIFO_SIZE)
		return -EINVAL;
	u->s = s;
	serial_update_irq(u);
	return 0;
}

static void serial_destroy(struct device *dev)
{
	free(to_serial(dev));
}

static const struct device_ops serial_ops = {
	.name = "serial",
	.read = serial_read,
	.write = serial_write,
	.reset = serial_reset,
	.save = serial_save,
	.load = serial_load,
	.destroy = serial_destroy,
};

static size_t serial_input_space(void *opaque)
{
	struct serial *u = opaque;
	size_t n;

	pthread_mutex_lock(&u->dev.lock);
	n = RX_FIFO_SIZE - u->s.rx_count;
	pthread_mutex_unlock(&u->dev.lock);
	return n;
}

static void serial_input(void *opaque, const uint8_t *buf, size_t len)
{
	struct serial *u = opaque;

	pthread_mutex_lock(&u->dev.lock);
	serial_rx_push(u, buf, len);
	serial_update_irq(u);
	pthread_mutex_unlock(&u->dev.lock);
}

struct device *serial_create(struct vm *vm, uint16_t port, unsigned int irq,
			     struct chardev *backend)
{
	struct serial *u = calloc(1, sizeof(*u));

	if (!u)
		return NULL;
	device_init(&u->dev, &serial_ops, vm);
	u->port = port;
	u->irq = irq;
	u->backend = backend;
	serial_reset(&u->dev);
	if (bus_register(&vm->pio, port, 8, &u->dev)) {
		free(u);
		return NULL;
	}
	if (backend) {
		backend->input_space = serial_input_space;
		backend->input = serial_input;
		backend->opaque = u;
	}
	return &u->dev;
}
