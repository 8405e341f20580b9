/* virtio-net without KVM or a tap: the driver's side done by hand
 * (vdriver.c), and the tap replaced by one end of a datagram socket pair
 * whose other end the test reads and writes as the host would. */
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <linux/if_tun.h>

#include "config.h"
#include "net/tap.h"
#include "pci/pci.h"
#include "unit.h"
#include "util.h"
#include "vdriver.h"
#include "virtio/net.h"
#include "virtio/virtio.h"

/* --- a tap: the device's end of a datagram socket pair --------------- */

static int host = -1;		/* the host's end of the "tap" */
static unsigned int offload, offload_calls;

int tap_open(struct tap *t, const char *name, int fd, unsigned int index)
{
	int sv[2];

	CHECK(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK, 0, sv) == 0);
	t->fd = sv[0];
	host = sv[1];
	t->created = false;
	snprintf(t->name, sizeof(t->name), "%s", name);
	return 0;
}

int tap_set_offload(struct tap *t, unsigned int tun_flags)
{
	offload = tun_flags;
	offload_calls++;
	return 0;
}

void tap_close(struct tap *t)
{
	close(t->fd);
	close(host);
	host = -1;
}

/* --- a hand-driven guest: receiveq (0) and transmitq (1) ------------ */

#define BUF	0x8000ULL
#define BIG	0x20000ULL			/* 128 KiB of buffer space */
#define RXQ	0
#define TXQ	1
#define HDR	12

#define F_CSUM		(1ULL << 0)
#define F_GUEST_CSUM	(1ULL << 1)
#define F_MAC		(1ULL << 5)
#define F_GUEST_TSO4	(1ULL << 7)
#define F_GUEST_TSO6	(1ULL << 8)
#define F_MRG_RXBUF	(1ULL << 15)
#define F_STATUS	(1ULL << 16)
#define F_CTRL_VQ	(1ULL << 17)
#define F_MQ		(1ULL << 22)

static struct vm_config cfg;
static struct virtio_pci *vp;

static struct virtio_net_stats stats(void)
{
	struct virtio_net_stats st;

	CHECK(virtio_net_stats(&vp->f.dev, &st) == 0);
	return st;
}

static unsigned int setup_mtu;	/* the next setup's net mtu (0: none) */

static void setup(void)
{
	static const uint8_t mac[6] = { 0x52, 0x54, 0x00, 0x01, 0x02, 0x03 };

	vd_setup();
	memset(&cfg, 0, sizeof(cfg));
	offload = offload_calls = 0;
	cfg.nnets = 1;
	cfg.nets[0].tap = "tap-unit";
	cfg.nets[0].fd = -1;
	cfg.nets[0].has_mac = true;
	memcpy(cfg.nets[0].mac, mac, 6);
	cfg.nets[0].mtu = setup_mtu;
	vm.cfg = &cfg;
	vp = (struct virtio_pci *)virtio_net_create(&vm, 0, 1, VD_BAR);
	CHECK(vp != NULL);
	/* the tap first, then the two queues' kick eventfds */
	CHECK(nwatch == 3 && watch[0].events == 0);
	cfgw(PCI_COMMAND, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER, 2);
}

static void teardown(void)
{
	vp->f.dev.ops->destroy(&vp->f.dev);
	vd_teardown();
}

/* What the main loop does: runs the queues' kicks (eventfds the MMIO
 * exit path or the device wrote) and, if watched, the tap. */
static void run_loop(void)
{
	int i;

	for (i = 1; i < 3; i++) {
		struct pollfd p = { .fd = watch[i].fd, .events = POLLIN };

		if (poll(&p, 1, 0) == 1)
			watch[i].fn(watch[i].opaque, EPOLLIN);
	}
	if (watch[0].events & EPOLLIN)
		watch[0].fn(watch[0].opaque, EPOLLIN);
}

/* DRIVER_OK with the features, and what the loop does then (the
 * device queued a receive pass). */
static void driver_ok(uint64_t features)
{
	vd_driver_ok(features, 2);
	run_loop();
}

static void kick(unsigned int q)
{
	bw(0x3000 + 4 * q, q, 2);		/* notify (the MMIO exit path) */
	run_loop();
}

/* The host sends a frame: a header (flags given) and len bytes of i*7. */
static void host_send(uint8_t flags, unsigned int len)
{
	uint8_t f[HDR + 4096] = { flags };
	unsigned int i;

	for (i = 0; i < len; i++)
		f[HDR + i] = i * 7;
	CHECK(write(host, f, HDR + len) == HDR + len);
}

static bool frame_ok(const uint8_t *p, unsigned int from, unsigned int len)
{
	unsigned int i;

	for (i = 0; i < len; i++)
		if (p[i] != (uint8_t)((from + i) * 7))
			return false;
	return true;
}

UNIT_TEST(virtio_net_identity_config_and_features)
{
	uint32_t lo, hi;

	setup();
	CHECK_EQ_U64(cfgr(PCI_VENDOR_ID, 4), 0x10411af4);
	CHECK_EQ_U64(cfgr(0x08, 4) >> 8, 0x020000);
	CHECK_EQ_U64(br(18, 2), 2);			/* one queue pair */
	bw(0, 0, 4);
	lo = br(4, 4);
	bw(0, 1, 4);
	hi = br(4, 4);
	CHECK(lo & F_MAC && lo & F_STATUS && lo & F_MRG_RXBUF && lo & F_CSUM);
	CHECK(lo & F_GUEST_CSUM && lo & F_GUEST_TSO4 && lo & F_GUEST_TSO6);
	CHECK(!(lo & F_CTRL_VQ) && !(lo & F_MQ));
	CHECK(hi & 1);					/* VERSION_1 */
	CHECK_EQ_U64(br(0x2000, 4), 0x01005452);	/* mac */
	CHECK_EQ_U64(br(0x2004, 2), 0x0302);
	CHECK_EQ_U64(br(0x2006, 2), 1);			/* LINK_UP */
	/* GUEST: the MAC cannot be written without a control queue */
	bw(0x2000, 0xffffffff, 4);
	CHECK_EQ_U64(br(0x2000, 4), 0x01005452);
	CHECK_EQ_U64(stats().mac[5], 3);
	teardown();
}

/* VIRTIO_NET_F_MTU (bit 3) and the mtu field (config offset 10) only
 * when the configuration gives one (libvirt's <mtu size=>). */
UNIT_TEST(virtio_net_mtu_offered_when_configured)
{
	setup();
	bw(0, 0, 4);
	CHECK(!(br(4, 4) & 1u << 3));
	teardown();
	setup_mtu = 1450;
	setup();
	setup_mtu = 0;
	bw(0, 0, 4);
	CHECK(br(4, 4) & 1u << 3);
	CHECK_EQ_U64(br(0x200A, 2), 1450);
	CHECK_EQ_U64(br(0x2000, 4), 0x01005452);	/* the rest unchanged */
	teardown();
}

UNIT_TEST(virtio_net_transmit_checks_lengths)
{
	uint8_t got[HDR + 200];
	struct virtio_net_stats st;

	setup();
	driver_ok(0);
	/* a header and a 60-byte frame, in two buffers, plus a writable
	 * one that is ignored */
	memset(gm(BUF), 0, HDR);
	memset(gm(BUF + 0x100), 0xab, 60);
	vq_post(TXQ, 0, BUF, HDR, VIRTQ_DESC_F_NEXT, 1);
	vq_post(TXQ, 1, BUF + 0x100, 60, VIRTQ_DESC_F_NEXT, 2);
	vq_post(TXQ, 2, BUF + 0x200, 16, VIRTQ_DESC_F_WRITE, 0);
	/* GUEST: shorter than a header and an Ethernet header */
	vq_post(TXQ, 3, BUF + 0x300, HDR + 13, 0, 0);
	/* GUEST: longer than the largest frame with its header */
	vq_post(TXQ, 4, BIG, HDR + 65536 + 19, 0, 0);
	vq_offer(TXQ, 0);
	vq_offer(TXQ, 3);
	vq_offer(TXQ, 4);
	kick(TXQ);
	CHECK_EQ_U64(read(host, got, sizeof(got)), HDR + 60);
	CHECK(got[HDR] == 0xab && got[HDR + 59] == 0xab);
	CHECK(read(host, got, sizeof(got)) < 0 && errno == EAGAIN);	/* nothing else */
	CHECK_EQ_U64(vq_used_idx(TXQ), 3);
	CHECK_EQ_U64(vq_used_len(TXQ, 0), 0);
	CHECK_EQ_U64(vq_used_id(TXQ, 1), 3);
	CHECK_EQ_U64(vq_used_id(TXQ, 2), 4);
	CHECK_EQ_U64(fired_for(0x42), 1);		/* one interrupt for the pass */
	/* the driver is asked to notify again once the pass is over */
	CHECK_EQ_U64(pci_get(gm(VD_RING(TXQ) + 0x2000), 2), 0);
	st = stats();
	CHECK_EQ_U64(st.tx_packets, 1);
	CHECK_EQ_U64(st.tx_bytes, 60);
	CHECK_EQ_U64(st.tx_errors, 2);
	CHECK(!(br(20, 1) & VIRTIO_STATUS_NEEDS_RESET));
	teardown();
}

/* A frame for the transmit queue at VD_RING(TXQ)'s head: a header and
 * a 60-byte frame of byte v. */
static void post_frame(uint16_t head, uint8_t v)
{
	uint64_t at = BUF + 0x1000 * head;

	memset(gm(at), 0, HDR);
	memset(gm(at + HDR), v, 60);
	vq_post(TXQ, head, at, HDR + 60, 0, 0);
	vq_offer(TXQ, head);
}

/* A paused VM's NIC sends nothing (its state may be saved already);
 * the resume looks at every queue again. */
UNIT_TEST(virtio_net_a_paused_vm_transmits_nothing_until_resumed)
{
	uint8_t got[HDR + 200];

	setup();
	driver_ok(0);
	vm.state = VM_PAUSED;
	post_frame(0, 0xab);
	kick(TXQ);
	CHECK(read(host, got, sizeof(got)) < 0 && errno == EAGAIN);
	CHECK_EQ_U64(vq_used_idx(TXQ), 0);
	vm.state = VM_RUNNING;
	virtio_pci_resume(&vp->f.dev);		/* what a resume calls */
	run_loop();
	CHECK_EQ_U64(read(host, got, sizeof(got)), HDR + 60);
	CHECK(got[HDR] == 0xab);
	CHECK_EQ_U64(vq_used_idx(TXQ), 1);
	teardown();
}

/* The guest notified a frame just before a save paused the VM; the kick
 * still waits in the main loop behind the save.  The saving kvmm's loop,
 * going on after the save, does not send it (the state says it is not
 * sent); the kvmm that loads the state sends it without a new kick. */
UNIT_TEST(virtio_net_a_kick_pending_at_the_save_is_run_by_the_loaded_device)
{
	struct state_buf sb = { 0 };
	uint8_t got[HDR + 200];

	setup();
	driver_ok(0);
	vm.state = VM_RUNNING;
	post_frame(0, 0x11);
	kick(TXQ);
	CHECK_EQ_U64(read(host, got, sizeof(got)), HDR + 60);
	post_frame(1, 0x22);
	bw(0x3000 + 4 * TXQ, TXQ, 2);		/* notified; the loop has not run it */
	vm.state = VM_PAUSED;			/* the save's pause */
	CHECK(vp->f.dev.ops->save(&vp->f.dev, &sb) == 0);
	run_loop();				/* the kick, after the save */
	CHECK(read(host, got, sizeof(got)) < 0 && errno == EAGAIN);
	CHECK_EQ_U64(vq_used_idx(TXQ), 1);
	/* The state loaded (into the same device: the guest's memory is the
	 * saved one), the VM running. */
	CHECK(vp->f.dev.ops->load(&vp->f.dev, sb.data, sb.len) == 0);
	state_buf_free(&sb);
	vm.state = VM_RUNNING;
	run_loop();
	CHECK_EQ_U64(read(host, got, sizeof(got)), HDR + 60);
	CHECK(got[HDR] == 0x22);
	CHECK(read(host, got, sizeof(got)) < 0 && errno == EAGAIN);
	CHECK_EQ_U64(vq_used_idx(TXQ), 2);
	CHECK_EQ_U64(vq_used_id(TXQ, 1), 1);
	teardown();
}

UNIT_TEST(virtio_net_receive_waits_for_buffers)
{
	struct virtio_net_stats st;
	uint8_t *b;

	setup();
	b = gm(BUF);
	driver_ok(0);
	/* no buffer: the tap is not watched, and a frame waits in it */
	CHECK_EQ_U64(watch[0].events, 0);
	host_send(0x02, 100);			/* DATA_VALID: not negotiated */
	run_loop();
	CHECK_EQ_U64(vq_used_idx(RXQ), 0);
	/* GUEST: a buffer smaller than the header goes back empty; the
	 * next takes the frame whole */
	vq_post(RXQ, 0, BUF + 0x800, HDR - 1, VIRTQ_DESC_F_WRITE, 0);
	vq_post(RXQ, 1, BUF, 1526, VIRTQ_DESC_F_WRITE, 0);
	memset(b, 0xee, HDR);
	vq_offer(RXQ, 0);
	vq_offer(RXQ, 1);
	kick(RXQ);
	CHECK_EQ_U64(vq_used_idx(RXQ), 2);
	CHECK_EQ_U64(vq_used_id(RXQ, 0), 0);
	CHECK_EQ_U64(vq_used_len(RXQ, 0), 0);
	CHECK_EQ_U64(vq_used_id(RXQ, 1), 1);
	CHECK_EQ_U64(vq_used_len(RXQ, 1), HDR + 100);
	CHECK_EQ_U64(b[0], 0);			/* flags cleared without GUEST_CSUM */
	CHECK_EQ_U64(pci_get(b + 10, 2), 1);	/* num_buffers */
	CHECK(frame_ok(b + HDR, 0, 100));
	CHECK_EQ_U64(fired_for(0x41), 1);
	/* used up: watching stops again (the driver is asked for its
	 * refill kick), and the next frame waits */
	CHECK_EQ_U64(watch[0].events, 0);
	CHECK_EQ_U64(pci_get(gm(VD_RING(RXQ) + 0x2000), 2), 0);
	host_send(0, 60);
	run_loop();
	CHECK_EQ_U64(vq_used_idx(RXQ), 2);
	vq_post(RXQ, 2, BUF, 1526, VIRTQ_DESC_F_WRITE, 0);
	vq_offer(RXQ, 2);
	kick(RXQ);
	CHECK_EQ_U64(vq_used_idx(RXQ), 3);
	CHECK_EQ_U64(vq_used_len(RXQ, 2), HDR + 60);
	st = stats();
	CHECK_EQ_U64(st.rx_packets, 2);
	CHECK_EQ_U64(st.rx_bytes, 160);
	CHECK_EQ_U64(st.rx_errors, 1);
	CHECK_EQ_U64(st.rx_drops, 0);
	teardown();
}

UNIT_TEST(virtio_net_mergeable_buffers_take_a_frame_in_pieces)
{
	struct state_buf s = { 0 };
	uint8_t *b0, *b1, *b2;
	unsigned int i;

	setup();
	b0 = gm(BUF);
	b1 = gm(BUF + 0x1000);
	b2 = gm(BUF + 0x2000);
	driver_ok(F_MRG_RXBUF | F_GUEST_CSUM);
	CHECK_EQ_U64(offload, TUN_F_CSUM);
	/* four 600-byte buffers: three hold a plain frame's worth */
	for (i = 0; i < 4; i++) {
		vq_post(RXQ, i, BUF + 0x1000 * i, 600, VIRTQ_DESC_F_WRITE, 0);
		vq_offer(RXQ, i);
	}
	kick(RXQ);
	CHECK_EQ_U64(watch[0].events, EPOLLIN);
	/* room, so refill kicks are not needed meanwhile */
	CHECK_EQ_U64(pci_get(gm(VD_RING(RXQ) + 0x2000), 2), VIRTQ_USED_F_NO_NOTIFY);
	host_send(0x02, 1400);
	run_loop();
	CHECK_EQ_U64(vq_used_idx(RXQ), 3);
	CHECK_EQ_U64(vq_used_len(RXQ, 0), 600);
	CHECK_EQ_U64(vq_used_len(RXQ, 1), 600);
	CHECK_EQ_U64(vq_used_len(RXQ, 2), HDR + 1400 - 1200);
	CHECK_EQ_U64(b0[0], 0x02);		/* DATA_VALID passes with GUEST_CSUM */
	CHECK_EQ_U64(pci_get(b0 + 10, 2), 3);	/* num_buffers */
	CHECK(frame_ok(b0 + HDR, 0, 600 - HDR));
	CHECK(frame_ok(b1, 600 - HDR, 600));
	CHECK(frame_ok(b2, 1200 - HDR, 1400 - 1200 + HDR));
	CHECK_EQ_U64(fired_for(0x41), 1);
	/* the fourth is held; it goes back to the ring across save/load
	 * and takes the next frame */
	CHECK(vp->f.dev.ops->save(&vp->f.dev, &s) == 0);
	CHECK(vp->f.dev.ops->load(&vp->f.dev, s.data, s.len) == 0);
	s.data[s.len - 1] ^= 0xff;		/* offloads not the features' */
	CHECK(vp->f.dev.ops->load(&vp->f.dev, s.data, s.len) == -EINVAL);
	s.data[s.len - 1] ^= 0xff;
	CHECK(vp->f.dev.ops->load(&vp->f.dev, s.data, s.len - 1) == -EINVAL);
	CHECK(vp->f.dev.ops->load(&vp->f.dev, s.data, s.len) == 0);
	state_buf_free(&s);
	/* one 600-byte buffer cannot hold a plain frame: the device waits
	 * for more rather than risk dropping one */
	host_send(0, 100);
	run_loop();
	CHECK_EQ_U64(vq_used_idx(RXQ), 3);
	CHECK_EQ_U64(watch[0].events, 0);
	for (i = 4; i < 6; i++) {
		vq_post(RXQ, i, BUF + 0x1000 * i, 600, VIRTQ_DESC_F_WRITE, 0);
		vq_offer(RXQ, i);
	}
	kick(RXQ);
	CHECK_EQ_U64(vq_used_idx(RXQ), 4);
	CHECK_EQ_U64(vq_used_id(RXQ, 3), 3);
	CHECK_EQ_U64(vq_used_len(RXQ, 3), HDR + 100);
	CHECK_EQ_U64(stats().rx_packets, 2);
	/* heads 4 and 5 are held (1200 bytes); with two more a frame larger
	 * than all of them is dropped and counted, the buffers stay, and
	 * the device now gathers for the largest frame, taking what the
	 * ring has once a plain frame fits */
	for (i = 0; i < 2; i++) {
		vq_post(RXQ, i, BUF + 0x1000 * i, 1000, VIRTQ_DESC_F_WRITE, 0);
		vq_offer(RXQ, i);
	}
	kick(RXQ);
	host_send(0, 3000);
	host_send(0, 50);
	run_loop();
	CHECK_EQ_U64(stats().rx_drops, 1);
	CHECK_EQ_U64(vq_used_idx(RXQ), 5);
	CHECK_EQ_U64(vq_used_id(RXQ, 4), 4);
	CHECK_EQ_U64(vq_used_len(RXQ, 4), HDR + 50);
	CHECK_EQ_U64(pci_get(gm(BUF + 0x4000) + 10, 2), 1);
	CHECK(frame_ok(gm(BUF + 0x4000) + HDR, 0, 50));
	/* a guest reset clears the offloads */
	bw(20, 0, 1);
	CHECK_EQ_U64(offload, 0);
	teardown();
}

UNIT_TEST(virtio_net_offloads_follow_the_features)
{
	setup();
	CHECK_EQ_U64(offload, 0);
	driver_ok(F_GUEST_CSUM | F_GUEST_TSO4 | F_GUEST_TSO6 | F_CSUM);
	CHECK_EQ_U64(offload, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6);
	driver_ok(F_GUEST_TSO4);	/* TSO without checksums: none */
	CHECK_EQ_U64(offload, 0);
	driver_ok(F_GUEST_CSUM);
	CHECK_EQ_U64(offload, TUN_F_CSUM);
	vp->f.dev.ops->reset(&vp->f.dev);	/* VM reset */
	CHECK_EQ_U64(offload, 0);
	teardown();
}

UNIT_TEST(virtio_net_hostile_chain_needs_reset_and_counters_survive)
{
	uint8_t got[256];

	setup();
	driver_ok(0);
	memset(gm(BUF), 0, HDR + 60);
	vq_post(TXQ, 0, BUF, HDR + 60, 0, 0);
	vq_offer(TXQ, 0);
	kick(TXQ);
	CHECK_EQ_U64(read(host, got, sizeof(got)), HDR + 60);
	/* a transmit descriptor chained to itself */
	vq_post(TXQ, 1, BUF, HDR + 60, VIRTQ_DESC_F_NEXT, 1);
	vq_offer(TXQ, 1);
	kick(TXQ);
	CHECK(br(20, 1) & VIRTIO_STATUS_NEEDS_RESET);
	CHECK(read(host, got, sizeof(got)) < 0);
	CHECK_EQ_U64(fired_for(0x40), 1);
	/* after a reset it sends again; the counters kept counting */
	driver_ok(0);
	vq_post(TXQ, 0, BUF, HDR + 60, 0, 0);
	vq_offer(TXQ, 0);
	kick(TXQ);
	CHECK_EQ_U64(read(host, got, sizeof(got)), HDR + 60);
	CHECK_EQ_U64(stats().tx_packets, 2);
	teardown();
}

UNIT_TEST(virtio_net_tap_gone_takes_the_link_down)
{
	uint8_t got[256];
	unsigned int gen;

	setup();
	driver_ok(0);
	gen = br(21, 1);
	CHECK_EQ_U64(br(0x2006, 2), 1);
	/* what the loop reports when the interface is deleted under us */
	watch[0].fn(watch[0].opaque, EPOLLERR);
	CHECK_EQ_U64(br(0x2006, 2), 0);			/* LINK_UP gone */
	CHECK(br(21, 1) != gen);			/* config_generation moved */
	CHECK_EQ_U64(fired_for(0x40), 1);		/* config interrupt */
	/* transmits complete, counted as drops; nothing reaches the tap */
	memset(gm(BUF), 0, HDR + 60);
	vq_post(TXQ, 0, BUF, HDR + 60, 0, 0);
	vq_offer(TXQ, 0);
	kick(TXQ);
	CHECK_EQ_U64(vq_used_idx(TXQ), 1);
	CHECK_EQ_U64(stats().tx_drops, 1);
	CHECK(read(host, got, sizeof(got)) < 0);
	CHECK(!(br(20, 1) & VIRTIO_STATUS_NEEDS_RESET));
	teardown();
}
