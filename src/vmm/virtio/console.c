/* virtio-console (virtio 1.2, 5.3): port 0 only, without MULTIPORT, so
 * two queues: receiveq (0) and transmitq (1).  What the guest transmits
 * goes to a chardev (--console); what the chardev gives goes into the
 * guest's receive buffers.
 *
 * Backpressure on input: the chardev asks how much room there is before
 * it reads; with no receive buffer posted the answer is 0 and it stops
 * reading until the guest adds buffers (a receiveq kick), so the host
 * side's own buffer (pty, socket) holds the rest and nothing is lost.
 * Output is never held back: like the serial port, bytes a backend
 * cannot take are dropped rather than stall the guest.
 *
 * Every callback runs on the main thread (queue kicks, chardev input)
 * or a vCPU thread (config, status writes), always under the device
 * lock. */
#include <endian.h>
#include <errno.h>
#include <linux/virtio_console.h>
#include <stdlib.h>
#include <string.h>

#include "chardev.h"
#include "log.h"
#include "util.h"
#include "virtio.h"
#include "virtio/console.h"

#define CONSOLE_QUEUE_SIZE	256
#define RXQ			0	/* receiveq, port 0 */
#define TXQ			1	/* transmitq, port 0 */
/* Bytes one transmit pass may take, so a guest cannot keep the loop
 * busy; the rest waits for a pass the device queues itself.  Chains are
 * counted too: one with no readable byte costs nothing in bytes, and a
 * guest refilling the ring from another vCPU could otherwise keep a pass
 * going for ever. */
#define TX_BUDGET		(256 * 1024)
#define CHAIN_BUDGET		CONSOLE_QUEUE_SIZE

/* struct virtio_console_config: cols, rows, max_nr_ports, emerg_wr.
 * None of the features that give its fields meaning (SIZE, MULTIPORT,
 * EMERG_WRITE) is offered; the structure is there because the device
 * type has one (4.1.4.6). */
/* Through emerg_wr (EMERG_WRITE is not offered: writes are ignored). */
#define CONSOLE_CONFIG_LEN	sizeof(struct virtio_console_config)
#define CONSOLE_STATE_VERSION	1

struct console {
	struct virtio_pci *vp;
	struct chardev *backend;
	/* A receive buffer taken off the ring while the chardev reads
	 * into it: input_space() pops it, input() fills and returns it. */
	bool rx_held;
	struct virtq_elem rx;
	struct virtq_elem tx;
};

static struct console *to_console(struct virtio_pci *vp)
{
	return vp->priv;
}

static void console_used(struct virtio_pci *vp, unsigned int q, uint16_t head,
			 uint32_t len)
{
	if (!virtio_push(vp, q, head, len))
		virtio_queue_interrupt(vp, q);
}

static void console_transmit(struct virtio_pci *vp)
{
	struct console *con = to_console(vp);
	struct virtq_elem *e = &con->tx;
	uint64_t budget = TX_BUDGET;
	unsigned int i, chains = CHAIN_BUDGET;
	int r;

	while (budget && chains && (r = virtio_pop(vp, TXQ, e)) > 0) {
		chains--;
		/* GUEST: only the device-readable buffers are output (each
		 * already checked inside guest RAM by the walker); writable
		 * ones in a transmit chain are ignored and none is written,
		 * so the used length is 0. */
		for (i = 0; i < e->n_out; i++)
			chardev_write(con->backend, e->iov[i].iov_base, e->iov[i].iov_len);
		budget -= MIN(e->out_len, budget);
		console_used(vp, TXQ, e->head, 0);
		if (!virtio_queue_live(vp, TXQ))
			return;
	}
	if (!budget || !chains)
		virtio_queue_kick(vp, TXQ);
}

static void console_queue_notify(struct virtio_pci *vp, unsigned int q)
{
	if (q == TXQ)
		console_transmit(vp);
	else
		/* New receive buffers: let the chardev read again. */
		chardev_accept_input(to_console(vp)->backend);
}

/* Holds a receive buffer if the guest has one; returns its room. */
static size_t rx_room(struct virtio_pci *vp)
{
	struct console *con = to_console(vp);
	unsigned int chains = CHAIN_BUDGET;

	/* GUEST: bounded like a transmit pass; past it the chardev pauses
	 * until the guest's next receiveq kick. */
	while (!con->rx_held && chains-- && virtio_queue_live(vp, RXQ) &&
	       virtio_pop(vp, RXQ, &con->rx) > 0) {
		/* GUEST: a receive chain with nothing writable cannot take
		 * input: give it back empty and look at the next. */
		if (!con->rx.in_len)
			console_used(vp, RXQ, con->rx.head, 0);
		else
			con->rx_held = true;
	}
	return con->rx_held ? (size_t)con->rx.in_len : 0;
}

/* chardev: how many bytes the guest can take now (0 pauses reading). */
static size_t console_input_space(void *opaque)
{
	struct virtio_pci *vp = opaque;
	size_t n;

	pthread_mutex_lock(&vp->f.dev.lock);
	n = rx_room(vp);
	pthread_mutex_unlock(&vp->f.dev.lock);
	return n;
}

/* chardev: bytes read from the backend, at most what input_space() said.
 * Each read goes to the guest at once in the held buffer, so a short
 * line is not kept waiting for the buffer to fill. */
static void console_input(void *opaque, const uint8_t *buf, size_t len)
{
	struct virtio_pci *vp = opaque;
	struct console *con = to_console(vp);
	uint64_t n;

	pthread_mutex_lock(&vp->f.dev.lock);
	/* A reset between the two calls dropped the buffer (and the
	 * input with it, as a reset does); else it is still ours. */
	if (con->rx_held || rx_room(vp)) {
		n = virtq_elem_write(&con->rx, 0, buf, len);
		if (n < len)
			pr_debug("virtio-console: %zu input bytes dropped", len - (size_t)n);
		con->rx_held = false;
		console_used(vp, RXQ, con->rx.head, n);
	}
	pthread_mutex_unlock(&vp->f.dev.lock);
}

static void console_config_read(struct virtio_pci *vp, unsigned int off,
				uint8_t *data, unsigned int len)
{
	struct virtio_console_config c = {
		.max_nr_ports = htole32(1),	/* port 0 alone */
	};

	/* GUEST: off and len were bounded to config_len by the transport */
	memcpy(data, (uint8_t *)&c + off, len);
}

/* Writes (emerg_wr) mean nothing without EMERG_WRITE: ignored. */
static void console_config_write(struct virtio_pci *vp, unsigned int off,
				 const uint8_t *data, unsigned int len)
{
}

static void console_reset(struct virtio_pci *vp)
{
	/* The held buffer belonged to the queue the reset forgot. */
	to_console(vp)->rx_held = false;
}

struct console_state {
	uint8_t version;
	uint8_t rx_held;
};

static int console_save(struct virtio_pci *vp, struct state_buf *out)
{
	struct console_state s = { CONSOLE_STATE_VERSION, to_console(vp)->rx_held };

	return state_put(out, &s, sizeof(s));
}

/* A held receive buffer is not saved: it was popped but not used, so
 * it goes back on the ring (the avail index steps back) and is popped
 * again after the load. */
static int console_load(struct virtio_pci *vp, const uint8_t *data, size_t len)
{
	struct console *con = to_console(vp);
	struct console_state s;

	if (len != sizeof(s))
		return -EINVAL;
	memcpy(&s, data, sizeof(s));
	/* GUEST: the stream is as untrusted as the guest that made it */
	if (s.version != CONSOLE_STATE_VERSION || s.rx_held > 1)
		return -EINVAL;
	con->rx_held = false;
	if (s.rx_held) {
		if (!virtio_queue_ready(vp, RXQ))
			return -EINVAL;
		virtio_queue_unpop(vp, RXQ, 1);
	}
	return 0;
}

static void console_destroy(struct virtio_pci *vp)
{
	struct console *con = to_console(vp);

	if (con && con->backend && con->backend->opaque == vp) {
		con->backend->input_space = NULL;
		con->backend->input = NULL;
		con->backend->opaque = NULL;
	}
	free(con);
	vp->priv = NULL;
}

static const struct virtio_dev_ops console_ops = {
	.name = "virtio-console",
	.type = 3,			/* console */
	.pci_class = 0x0780,		/* simple communication controller, other */
	.nqueues = 2,
	.queue_size = CONSOLE_QUEUE_SIZE,
	.config_len = CONSOLE_CONFIG_LEN,
	.config_read = console_config_read,
	.config_write = console_config_write,
	.queue_notify = console_queue_notify,
	.reset = console_reset,
	.save = console_save,
	.load = console_load,
	.destroy = console_destroy,
};

struct device *virtio_console_create(struct vm *vm, unsigned int slot, uint64_t bar_addr,
				     struct chardev *backend)
{
	struct console *con = calloc(1, sizeof(*con));
	struct virtio_pci *vp;

	if (!con)
		return NULL;
	con->backend = backend;
	vp = virtio_pci_create(vm, &console_ops, con, slot, bar_addr);
	if (!vp)
		return NULL;	/* the transport's destroy freed con */
	con->vp = vp;
	backend->input_space = console_input_space;
	backend->input = console_input;
	backend->opaque = vp;
	return &vp->f.dev;
}
