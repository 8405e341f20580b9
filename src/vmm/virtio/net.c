/* virtio-net (virtio 1.2, 5.1): one receive/transmit queue pair on a
 * tap device (net/tap.c), no control queue.
 *
 * Frames go between the tap and guest memory without a copy in kvmm:
 * transmit chains are written to the tap with writev() straight from the
 * chain's buffers, and the tap is read with readv() straight into the
 * guest's receive buffers.  Both carry the same 12-byte virtio-net
 * header (TUNSETVNETHDRSZ), so the guest's checksum and segmentation
 * offloads pass through to the host's stack and back (TUNSETOFFLOAD
 * from what the driver accepted).
 *
 * Receive: the tap is watched by the main loop only while the guest has
 * receive buffers posted.  With none left it is not read at all (the
 * tap's own queue holds frames, and drops when it is full, counted by
 * the host's interface) until the guest kicks the receive queue.  With
 * MRG_RXBUF a frame may fill several buffers: chains are popped ahead
 * until they can hold the largest frame the tap may give (or what the
 * guest has posted, once a plain frame fits), and those a frame does not
 * use are kept for the next one.
 *
 * Each pass is bounded (frames per wakeup), and interrupts the guest
 * once at its end, not per frame.  Everything runs on the main thread
 * under the device lock, except the status hook and reset (vCPU thread,
 * also under the lock), which therefore never touch the loop. */
#include <endian.h>
#include <errno.h>
#include <linux/virtio_net.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/uio.h>
#include <unistd.h>
#include <linux/if_tun.h>

#include "config.h"
#include "log.h"
#include "loop.h"
#include "net/tap.h"
#include "util.h"
#include "virtio.h"
#include "virtio/net.h"
#include "vm.h"

/* Feature bits (5.1.3). */


/* struct virtio_net_hdr (5.1.6): flags, gso_type, hdr_len, gso_size,
 * csum_start, csum_offset, num_buffers; 12 bytes in virtio 1.x whatever
 * was negotiated. */
#define NET_HDR_LEN		12
#define NET_HDR_FLAGS		0
#define NET_HDR_NUM_BUFFERS	10

/* The largest frame either way: a 64 KiB segmentation-offload packet
 * and an Ethernet header with a VLAN tag; without offloads, a 1500-byte
 * MTU frame with its tag. */
#define NET_MAX_FRAME		(65536 + 18)
#define NET_PLAIN_FRAME		(1500 + 18)

#define NET_QUEUE_SIZE		256
#define RXQ			0
#define TXQ			1
/* Frames (or chains) one pass may take before the loop runs others. */
#define NET_BUDGET		256
/* Receive chains held at most: the largest frame in buffers of a
 * typical mergeable size (Linux's are 1.5 KiB and up). */
#define RX_HELD			48
#define RX_IOV			1024	/* UIO_MAXIOV */

/* mac[6], status, max_virtqueue_pairs, mtu (5.1.4) */
#define NET_CONFIG_LEN		offsetof(struct virtio_net_config, speed)
#define NET_STATE_VERSION	1

struct net {
	struct virtio_pci *vp;
	struct loop *loop;
	struct tap tap;
	uint8_t mac[6];
	uint16_t mtu;		/* offered with VIRTIO_NET_F_MTU when not 0 */
	bool rx_on;		/* DRIVER_OK seen since the last reset */
	bool watching;		/* the loop polls the tap for input */
	bool tap_dead;		/* the tap went away under us */
	bool link_up;		/* what config status says: until tap_dead */
	bool offload_warned;
	bool big_frames;	/* a frame did not fit: gather for the largest */
	unsigned int offload;	/* TUN_F_* the tap has now */
	/* Receive chains popped but not yet used, oldest first (a ring of
	 * RX_HELD), and the bytes they hold. */
	unsigned int held_first, nheld;
	uint64_t held_room;
	struct virtq_elem *held;
	struct virtq_elem tx;
	struct iovec iov[RX_IOV];
	uint8_t overflow;
	struct virtio_net_stats st;
};

static struct net *to_net(struct virtio_pci *vp)
{
	return vp->priv;
}

static bool negotiated(const struct virtio_pci *vp, unsigned int bit)
{
	return vp->driver_features & 1ULL << bit;
}

/* --- transmit ----------------------------------------------------------- */

static void net_transmit(struct virtio_pci *vp)
{
	struct net *n = to_net(vp);
	struct virtq_elem *e = &n->tx;
	unsigned int chains = NET_BUDGET, sent = 0;
	ssize_t w;
	int r = 0;

	/* No kicks while this pass drains the queue; asked for again once
	 * it is empty, then one more look for what came meanwhile. */
	virtio_queue_set_notify(vp, TXQ, false);
again:
	while (chains && (r = virtio_pop(vp, TXQ, e)) > 0) {
		chains--;
		/* GUEST: a frame is the header and 14 to NET_MAX_FRAME bytes
		 * in the device-readable buffers (writable ones are ignored);
		 * anything else is an error on that frame only. */
		if (e->out_len < NET_HDR_LEN + 14 || e->out_len > NET_HDR_LEN + NET_MAX_FRAME) {
			n->st.tx_errors++;
		} else if (n->tap_dead) {
			n->st.tx_drops++;
		} else {
			do
				w = writev(n->tap.fd, e->iov, e->n_out);
			while (w < 0 && errno == EINTR);
			if (w >= 0) {
				n->st.tx_packets++;
				n->st.tx_bytes += e->out_len - NET_HDR_LEN;
			} else if (errno == EINVAL || errno == EFAULT) {
				/* the tap refused the header (GUEST: bad GSO) */
				n->st.tx_errors++;
			} else {
				/* full, or the link is down: gone, as on a wire */
				n->st.tx_drops++;
			}
		}
		sent++;
		if (virtio_push(vp, TXQ, e->head, 0))
			return;		/* broken: the guest must reset it */
	}
	if (chains && !r) {
		virtio_queue_set_notify(vp, TXQ, true);
		if (virtio_queue_has_avail(vp, TXQ)) {
			virtio_queue_set_notify(vp, TXQ, false);
			goto again;
		}
	}
	if (sent)
		virtio_queue_interrupt(vp, TXQ);
	/* Past the budget the device queues its own next pass (kicks are
	 * still off). */
	if (!chains && virtio_queue_live(vp, TXQ))
		virtio_queue_kick(vp, TXQ);
}

/* --- receive ------------------------------------------------------------ */

static struct virtq_elem *held(struct net *n, unsigned int i)
{
	return &n->held[(n->held_first + i) % RX_HELD];
}

/* The bytes a frame may need: with the guest taking segmentation
 * offloads, or once a frame was larger than a plain Ethernet frame (the
 * host raised the tap's MTU), the largest; else a plain frame. */
static uint64_t rx_need(struct net *n)
{
	return NET_HDR_LEN + ((n->offload & (TUN_F_TSO4 | TUN_F_TSO6)) || n->big_frames ?
			      NET_MAX_FRAME : NET_PLAIN_FRAME);
}

/* Pops receive chains until those held can take a frame: one chain
 * without MRG_RXBUF, else as many as rx_need() asks or the ring has.
 * Returns whether a frame can be read now: with mergeable buffers, once
 * a plain frame fits (a larger one may still not: the device cannot
 * size a frame before reading it, and the guest has posted no more), or
 * RX_HELD chains are held. */
static bool rx_fill(struct virtio_pci *vp, unsigned int *rejected)
{
	struct net *n = to_net(vp);
	bool mrg = negotiated(vp, VIRTIO_NET_F_MRG_RXBUF);
	unsigned int budget = NET_BUDGET;
	struct virtq_elem *e;
	int r;

	while (mrg ? n->held_room < rx_need(n) && n->nheld < RX_HELD : !n->nheld) {
		if (!budget--)
			break;
		e = held(n, n->nheld);
		r = virtio_pop(vp, RXQ, e);
		if (r < 0)
			return false;
		if (!r)
			break;
		/* GUEST: a receive chain must hold at least the header in
		 * writable buffers; one that cannot is returned unused. */
		if (e->in_len < NET_HDR_LEN) {
			n->st.rx_errors++;
			(*rejected)++;
			if (virtio_push(vp, RXQ, e->head, 0))
				return false;
			continue;
		}
		n->nheld++;
		n->held_room += e->in_len;
	}
	if (!mrg)
		return n->nheld > 0;
	return n->nheld == RX_HELD || n->held_room >= NET_HDR_LEN + NET_PLAIN_FRAME;
}

/* The tap was deleted under us (ip link del): it reports errors for
 * ever, so the loop forgets it; transmits are dropped from now on, and
 * the guest sees its link go down (a configuration change). */
static void tap_gone(struct net *n)
{
	if (n->tap_dead)
		return;
	pr_warn("tap '%s' went away; its NIC stays without a link", n->tap.name);
	loop_del(n->loop, n->tap.fd);
	n->tap_dead = true;
	n->watching = false;
	n->link_up = false;
	virtio_config_changed(n->vp);
}

/* Reads one frame into the held chains.  Returns 1 when a frame went
 * to the guest (or was dropped), 0 when the tap had nothing, -1 when
 * the device broke. */
static int rx_one(struct virtio_pci *vp)
{
	struct net *n = to_net(vp);
	unsigned int c, i, niov = 0;
	uint64_t room = 0, left;
	uint8_t b[2];
	ssize_t r;

	for (c = 0; c < n->nheld && niov < RX_IOV - 1; c++) {
		struct virtq_elem *e = held(n, c);

		for (i = e->n_out; i < e->n_out + e->n_in && niov < RX_IOV - 1; i++) {
			n->iov[niov++] = e->iov[i];
			room += e->iov[i].iov_len;
		}
	}
	/* A read returns at most the room given: one byte past the
	 * guest's buffers tells a frame that did not fit. */
	n->iov[niov].iov_base = &n->overflow;
	n->iov[niov++].iov_len = 1;
	do
		r = readv(n->tap.fd, n->iov, niov);
	while (r < 0 && errno == EINTR);
	if (r < 0) {
		if (errno == EAGAIN)
			return 0;
		if (errno == EBADFD || errno == EIO)
			tap_gone(n);
		n->st.rx_errors++;
		return 0;
	}
	/* A frame that did not fit is lost; the buffers stay ours for
	 * the next. */
	if ((uint64_t)r > room || r < NET_HDR_LEN) {
		n->st.rx_drops++;
		n->big_frames = true;
		return 1;
	}
	n->st.rx_packets++;
	n->st.rx_bytes += r - NET_HDR_LEN;
	/* The chains the frame used, in order; num_buffers counts them. */
	left = r;
	for (c = 0; left; c++)
		left -= MIN(left, held(n, c)->in_len);
	b[0] = c;
	b[1] = c >> 8;
	virtq_elem_write(held(n, 0), NET_HDR_NUM_BUFFERS, b, 2);
	/* DATA_VALID and NEEDS_CSUM mean nothing to a driver that did not
	 * take GUEST_CSUM (5.1.6.4). */
	if (!negotiated(vp, VIRTIO_NET_F_GUEST_CSUM))
		virtq_elem_write(held(n, 0), NET_HDR_FLAGS, "", 1);
	left = r;
	for (i = 0; i < c; i++) {
		struct virtq_elem *e = held(n, 0);
		uint32_t len = MIN(left, e->in_len);

		left -= len;
		n->held_room -= e->in_len;
		n->held_first = (n->held_first + 1) % RX_HELD;
		n->nheld--;
		if (virtio_push(vp, RXQ, e->head, len))
			return -1;
	}
	return 1;
}

static void set_watch(struct net *n, bool on)
{
	if (n->watching == on || n->tap_dead)
		return;	/* a dead tap is not watched at all */
	if (loop_mod(n->loop, n->tap.fd, on ? EPOLLIN : 0))
		pr_warn("tap '%s': cannot %s watching it", n->tap.name, on ? "start" : "stop");
	n->watching = on;
}

/* One receive pass on the main thread: frames from the tap into the
 * guest while it has buffers, at most NET_BUDGET, one interrupt. */
static void net_receive(struct virtio_pci *vp)
{
	struct net *n = to_net(vp);
	unsigned int frames = 0, budget = NET_BUDGET;
	bool room = false, live;
	int r = 0;

	while (n->rx_on && !n->tap_dead && virtio_queue_live(vp, RXQ) && budget--) {
		room = rx_fill(vp, &frames);
		if (!room || !virtio_queue_live(vp, RXQ))
			break;
		r = rx_one(vp);
		if (r <= 0)
			break;
		frames++;
	}
	live = n->rx_on && !n->tap_dead && virtio_queue_live(vp, RXQ) && r >= 0;
	if (live && !room) {
		/* Out of buffers: ask for the guest's kick when it adds some,
		 * then look once more for those it added before it saw that. */
		virtio_queue_set_notify(vp, RXQ, true);
		if (virtio_queue_has_avail(vp, RXQ))
			room = rx_fill(vp, &frames) && virtio_queue_live(vp, RXQ);
	}
	/* While there is room the tap's input drives the queue: refill
	 * kicks would only cost the guest exits. */
	if (live && room)
		virtio_queue_set_notify(vp, RXQ, false);
	if (frames)
		virtio_queue_interrupt(vp, RXQ);
	/* Poll the tap only while a frame has somewhere to go: without
	 * buffers the guest's next receiveq kick starts it again.  Past
	 * the budget, level-triggered epoll brings us back. */
	set_watch(n, live && room);
}

/* Main loop: the tap has input (or an error). */
static void tap_ready(void *opaque, uint32_t events)
{
	struct net *n = opaque;
	struct virtio_pci *vp = n->vp;

	pthread_mutex_lock(&vp->f.dev.lock);
	if (events & (EPOLLERR | EPOLLHUP))
		tap_gone(n);
	else
		net_receive(vp);
	pthread_mutex_unlock(&vp->f.dev.lock);
}

static void net_queue_notify(struct virtio_pci *vp, unsigned int q)
{
	struct net *n = to_net(vp);

	if (q == TXQ)
		net_transmit(vp);
	else if (!n->watching)
		net_receive(vp);	/* new buffers: read again */
	/* else the loop reads when a frame comes: a kick per refill
	 * would cost a read that finds nothing */
}

/* --- negotiation, config, reset, state --------------------------------- */

/* The tap's offloads: what the guest accepted for its receive side. */
static unsigned int tun_offload(const struct virtio_pci *vp)
{
	unsigned int f = 0;

	if (!negotiated(vp, VIRTIO_NET_F_GUEST_CSUM))
		return 0;
	f |= TUN_F_CSUM;
	if (negotiated(vp, VIRTIO_NET_F_GUEST_TSO4))
		f |= TUN_F_TSO4;
	if (negotiated(vp, VIRTIO_NET_F_GUEST_TSO6))
		f |= TUN_F_TSO6;
	if ((f & (TUN_F_TSO4 | TUN_F_TSO6)) && negotiated(vp, VIRTIO_NET_F_GUEST_ECN))
		f |= TUN_F_TSO_ECN;
	return f;
}

static void apply_offload(struct net *n, unsigned int f)
{
	int r;

	if (f == n->offload || n->tap_dead)
		return;
	r = tap_set_offload(&n->tap, f);
	if (!r)
		n->offload = f;
	else if (!n->offload_warned)	/* once: the guest may retry for ever */
		pr_warn("tap '%s': cannot set offloads 0x%x: %s; the guest's offloads stay off",
			n->tap.name, f, strerror(-r));
	n->offload_warned |= r != 0;
}

/* vCPU thread: features settle at FEATURES_OK, receiving starts at
 * DRIVER_OK (on the main thread, through the kick the transport gives
 * every ready queue then). */
static void net_status(struct virtio_pci *vp, uint8_t old)
{
	struct net *n = to_net(vp);
	uint8_t now = vp->status;

	if ((now & VIRTIO_STATUS_FEATURES_OK) && !(old & VIRTIO_STATUS_FEATURES_OK))
		apply_offload(n, tun_offload(vp));
	if ((now & VIRTIO_STATUS_DRIVER_OK) && !(old & VIRTIO_STATUS_DRIVER_OK))
		n->rx_on = true;
}

static void net_config_read(struct virtio_pci *vp, unsigned int off,
			    uint8_t *data, unsigned int len)
{
	struct virtio_net_config c = {
		.status = htole16(to_net(vp)->link_up ? VIRTIO_NET_S_LINK_UP : 0),
		.max_virtqueue_pairs = htole16(1),	/* means nothing without MQ */
	};

	memcpy(c.mac, to_net(vp)->mac, sizeof(c.mac));
	c.mtu = htole16(to_net(vp)->mtu);
	/* GUEST: off and len were bounded to config_len by the transport */
	memcpy(data, (uint8_t *)&c + off, len);
}

/* Read-only in virtio 1.x: the MAC changes only through the control
 * queue, which is not offered. */
static void net_config_write(struct virtio_pci *vp, unsigned int off,
			     const uint8_t *data, unsigned int len)
{
}

/* Guest or VM reset: held buffers belonged to the forgotten queue; the
 * tap's offloads go back to none.  The loop stops watching the tap at
 * its next wakeup (the loop is not ours to touch from here). */
static void net_reset(struct virtio_pci *vp)
{
	struct net *n = to_net(vp);

	if (!n)
		return;		/* the transport's first reset, before priv */
	n->rx_on = false;
	n->big_frames = false;
	n->nheld = n->held_first = 0;
	n->held_room = 0;
	apply_offload(n, 0);
}

struct net_state {
	uint8_t version;
	uint8_t rx_on;
	uint8_t mac[6];
	uint16_t nheld;
	uint8_t link_up;
	uint32_t offload;
};

static int net_save(struct virtio_pci *vp, struct state_buf *out)
{
	struct net *n = to_net(vp);
	struct net_state s;

	memset(&s, 0, sizeof(s));
	s.version = NET_STATE_VERSION;
	s.rx_on = n->rx_on;
	memcpy(s.mac, n->mac, 6);
	s.nheld = n->nheld;
	s.link_up = n->link_up;
	s.offload = n->offload;
	return state_put(out, &s, sizeof(s));
}

/* Held receive chains are not saved: they were popped but not used, so
 * the avail index steps back over them and they are popped again.  The
 * offloads follow the loaded features, and receiving restarts. */
static int net_load(struct virtio_pci *vp, const uint8_t *data, size_t len)
{
	struct net *n = to_net(vp);
	struct net_state s;

	if (len != sizeof(s))
		return -EINVAL;
	memcpy(&s, data, sizeof(s));
	/* GUEST: the stream is as untrusted as the guest that made it */
	if (s.version != NET_STATE_VERSION || s.rx_on > 1 || s.link_up > 1 || s.nheld > RX_HELD ||
	    (s.nheld && !virtio_queue_ready(vp, RXQ)) || (s.mac[0] & 1) ||
	    s.offload != tun_offload(vp))
		return -EINVAL;
	memcpy(n->mac, s.mac, 6);
	n->link_up = s.link_up && !n->tap_dead;	/* this side's tap decides */
	virtio_queue_unpop(vp, RXQ, s.nheld);
	n->nheld = n->held_first = 0;
	n->held_room = 0;
	apply_offload(n, s.offload);
	/* Receiving resumes through the queue kicks the transport's load
	 * makes (net_receive does nothing while rx_on is off). */
	n->rx_on = s.rx_on;
	return 0;
}

static void net_destroy(struct virtio_pci *vp)
{
	struct net *n = to_net(vp);

	if (!n)
		return;
	if (n->tap.fd >= 0)
		loop_del(n->loop, n->tap.fd);
	tap_close(&n->tap);
	free(n->held);
	free(n);
	vp->priv = NULL;
}

static const struct virtio_dev_ops net_ops = {
	.name = "virtio-net",
	.type = 1,			/* network card */
	.pci_class = 0x0200,		/* network controller, Ethernet */
	.nqueues = 2,
	.queue_size = NET_QUEUE_SIZE,
	.features = 1ULL << VIRTIO_NET_F_CSUM | 1ULL << VIRTIO_NET_F_GUEST_CSUM |
		    1ULL << VIRTIO_NET_F_MAC | 1ULL << VIRTIO_NET_F_GUEST_TSO4 |
		    1ULL << VIRTIO_NET_F_GUEST_TSO6 | 1ULL << VIRTIO_NET_F_GUEST_ECN |
		    1ULL << VIRTIO_NET_F_HOST_TSO4 | 1ULL << VIRTIO_NET_F_HOST_TSO6 |
		    1ULL << VIRTIO_NET_F_HOST_ECN | 1ULL << VIRTIO_NET_F_MRG_RXBUF |
		    1ULL << VIRTIO_NET_F_STATUS,
	.config_len = NET_CONFIG_LEN,
	.config_read = net_config_read,
	.config_write = net_config_write,
	.queue_notify = net_queue_notify,
	.status = net_status,
	.reset = net_reset,
	.save = net_save,
	.load = net_load,
	.destroy = net_destroy,
};

int virtio_net_stats(struct device *dev, struct virtio_net_stats *st)
{
	struct virtio_pci *vp = virtio_pci_of(dev);

	if (!vp || vp->ops != &net_ops)
		return -ENODEV;
	pthread_mutex_lock(&dev->lock);
	*st = to_net(vp)->st;
	pthread_mutex_unlock(&dev->lock);
	return 0;
}

struct device *virtio_net_create(struct vm *vm, unsigned int index,
				 unsigned int slot, uint64_t bar_addr)
{
	const struct net_config *nc = &vm->cfg->nets[index];
	struct virtio_pci *vp;
	struct net *n = calloc(1, sizeof(*n));

	if (n)
		n->held = calloc(RX_HELD, sizeof(*n->held));
	if (!n || !n->held) {
		pr_err("cannot create NIC %u: out of memory", index);
		if (n)
			free(n);
		if (!nc->tap && nc->fd >= 0)
			close(nc->fd);	/* given to the NIC, as tap_open takes it */
		return NULL;
	}
	n->loop = vm->loop;
	if (tap_open(&n->tap, nc->tap, nc->fd, index)) {
		free(n->held);
		free(n);
		return NULL;
	}
	/* Watched with no events until the driver posts buffers. */
	if (loop_add(vm->loop, n->tap.fd, 0, tap_ready, n)) {
		pr_err("cannot watch tap '%s'", n->tap.name);
		tap_close(&n->tap);
		free(n->held);
		free(n);
		return NULL;
	}
	if (nc->has_mac) {
		memcpy(n->mac, nc->mac, 6);
	} else {
		/* 52:54:00 with three random bytes, as QEMU's NICs */
		n->mac[0] = 0x52;
		n->mac[1] = 0x54;
		if (getrandom(n->mac + 3, 3, 0) != 3)
			n->mac[5] = index + 1;
	}
	n->mtu = nc->mtu;
	n->st.tap = n->tap.name;
	n->link_up = true;
	memcpy(n->st.mac, n->mac, 6);
	vp = virtio_pci_create(vm, &net_ops, n, slot, bar_addr);
	if (!vp)
		return NULL;	/* the transport's destroy closed the tap */
	n->vp = vp;
	if (n->mtu)
		vp->dev_features |= 1ULL << VIRTIO_NET_F_MTU;
	return &vp->f.dev;
}
