/* virtio-net without KVM or a tap: the driver's side done by hand through
 * the PCI bus (as in test_virtio_console.c), kvmm's KVM and loop glue
 * replaced by recorders, and the tap by one end of a datagram socket pair
 * whose other end the test reads and writes as the host would. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <linux/if_tun.h>

#include "config.h"
#include "irq.h"
#include "loop.h"
#include "net/tap.h"
#include "pci/pci.h"
#include "unit.h"
#include "util.h"
#include "virtio/virtio.h"
#include "vm.h"

/* --- stand-ins for kvmm's KVM, loop and tap --------------------------- */

static struct { int fd; loop_fn fn; void *opaque; uint32_t events; } watch[4];
static int nwatch, nroutes, fired[8];
static uint32_t route_data[8];
static int host = -1;		/* the host's end of the "tap" */
static unsigned int offload, offload_calls;

int loop_add(struct loop *l, int fd, uint32_t events, loop_fn fn, void *opaque)
{
	watch[nwatch].fd = fd;
	watch[nwatch].fn = fn;
	watch[nwatch].opaque = opaque;
	watch[nwatch].events = events;
	nwatch++;
	return 0;
}

int loop_mod(struct loop *l, int fd, uint32_t events)
{
	int i;

	for (i = 0; i < nwatch; i++)
		if (watch[i].fd == fd)
			watch[i].events = events;
	return 0;
}

void loop_del(struct loop *l, int fd)
{
}

int irq_msi_alloc(struct vm *vm)
{
	return nroutes < 8 ? nroutes++ : -ENOSPC;
}

int irq_msi_route(struct vm *vm, unsigned int id, uint64_t addr, uint32_t data)
{
	route_data[id] = data;
	return 0;
}

void irq_msi_fire(struct vm *vm, unsigned int id)
{
	fired[id]++;
}

int kvm_ioeventfd(struct vm *vm, uint64_t addr, unsigned int len, int fd, bool assign)
{
	return assign ? -ENOSYS : 0;
}

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

#define BAR	0xC0000000ULL
#define RING(q)	(0x1000ULL + 0x3000ULL * (q))	/* desc; avail +0x1000; used +0x2000 */
#define BUF	0x8000ULL
#define BIG	0x20000ULL			/* 128 KiB of buffer space */
#define QSIZE	8
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

static struct vm vm;
static struct vm_config cfg;
static struct virtio_pci *vp;
static uint16_t avail_idx[2];

static void cfgw(unsigned int off, uint32_t v, unsigned int len)
{
	uint8_t d[4];

	pci_put(d, v, len);
	pci_cfg_access(vm.pci, 1, 0, off, d, len, true);
}

static uint32_t cfgr(unsigned int off, unsigned int len)
{
	uint8_t d[4];

	pci_cfg_access(vm.pci, 1, 0, off, d, len, false);
	return pci_get(d, len);
}

static void bw(uint64_t off, uint32_t v, unsigned int len)
{
	uint8_t d[4];

	pci_put(d, v, len);
	CHECK(pci_mmio_access(vm.pci, BAR + off, d, len, true));
}

static uint32_t br(uint64_t off, unsigned int len)
{
	uint8_t d[4] = { 0 };

	CHECK(pci_mmio_access(vm.pci, BAR + off, d, len, false));
	return pci_get(d, len);
}

static uint8_t *gm(uint64_t gpa)
{
	return guest_mem_ptr(&vm.mem, gpa, 1);
}

static struct virtio_net_stats stats(void)
{
	struct virtio_net_stats st;

	CHECK(virtio_net_stats(&vp->f.dev, &st) == 0);
	return st;
}

static void setup(void)
{
	static const uint8_t mac[6] = { 0x52, 0x54, 0x00, 0x01, 0x02, 0x03 };

	memset(&vm, 0, sizeof(vm));
	memset(&cfg, 0, sizeof(cfg));
	nwatch = nroutes = 0;
	offload = offload_calls = 0;
	memset(fired, 0, sizeof(fired));
	memset(avail_idx, 0, sizeof(avail_idx));
	cfg.nnets = 1;
	cfg.nets[0].tap = "tap-unit";
	cfg.nets[0].fd = -1;
	cfg.nets[0].has_mac = true;
	memcpy(cfg.nets[0].mac, mac, 6);
	vm.cfg = &cfg;
	CHECK(guest_mem_init(&vm.mem, 1 * MiB, 1 * MiB, 4 * GiB) == 0);
	vm.pci = calloc(1, sizeof(*vm.pci));
	pci_bus_init(vm.pci);
	vp = (struct virtio_pci *)virtio_net_create(&vm, 0, 1, BAR);
	CHECK(vp != NULL);
	/* the tap first, then the two queues' kick eventfds */
	CHECK(nwatch == 3 && watch[0].events == 0);
	cfgw(PCI_COMMAND, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER, 2);
}

static void teardown(void)
{
	vp->f.dev.ops->destroy(&vp->f.dev);
	pci_bus_destroy(vm.pci);
	free(vm.pci);
	guest_mem_destroy(&vm.mem);
}

static int fired_for(uint32_t data)
{
	int i;

	for (i = 0; i < nroutes; i++)
		if (route_data[i] == data)
			return fired[i];
	return 0;
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

/* Resets the device and brings it to DRIVER_OK with both queues and
 * the given features (VERSION_1 added). */
static void driver_ok(uint64_t features)
{
	unsigned int cap = 0, off, q, e;

	for (off = cfgr(PCI_CAP_PTR, 1); off; off = cfgr(off + 1, 1))
		if (cfgr(off, 1) == PCI_CAP_ID_MSIX)
			cap = off;
	bw(20, 0, 1);
	memset(gm(0x1000), 0, 0x6000);
	memset(avail_idx, 0, sizeof(avail_idx));
	bw(20, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER, 1);
	bw(8, 0, 4);
	bw(12, (uint32_t)features, 4);
	bw(8, 1, 4);
	bw(12, 1 | (uint32_t)(features >> 32), 4);	/* VERSION_1 */
	bw(20, 0x0b, 1);
	CHECK_EQ_U64(br(20, 1), 0x0b);
	cfgw(cap + 2, 0x8000, 2);
	for (e = 0; e < 3; e++) {
		bw(0x4000 + 16 * e, 0xfee00000, 4);
		bw(0x4000 + 16 * e + 8, 0x40 + e, 4);
		bw(0x4000 + 16 * e + 12, 0, 4);
	}
	bw(16, 0, 2);
	for (q = 0; q < 2; q++) {
		bw(22, q, 2);
		bw(26, 1 + q, 2);
		bw(24, QSIZE, 2);
		bw(32, RING(q), 4);
		bw(36, 0, 4);
		bw(40, RING(q) + 0x1000, 4);
		bw(44, 0, 4);
		bw(48, RING(q) + 0x2000, 4);
		bw(52, 0, 4);
		bw(28, 1, 2);
	}
	bw(20, 0x0f, 1);
	CHECK_EQ_U64(br(20, 1), 0x0f);
	run_loop();			/* DRIVER_OK queued a receive pass */
}

static void post(unsigned int q, uint16_t head, uint64_t addr, uint32_t len,
		 uint16_t flags, uint16_t next)
{
	uint8_t *d = gm(RING(q) + 16 * head);

	memcpy(d, &addr, 8);
	memcpy(d + 8, &len, 4);
	memcpy(d + 12, &flags, 2);
	memcpy(d + 14, &next, 2);
}

static void offer(unsigned int q, uint16_t head)
{
	uint8_t *a = gm(RING(q) + 0x1000);

	memcpy(a + 4 + 2 * (avail_idx[q] % QSIZE), &head, 2);
	avail_idx[q]++;
	memcpy(a + 2, &avail_idx[q], 2);
}

static void kick(unsigned int q)
{
	bw(0x3000 + 4 * q, q, 2);		/* notify (the MMIO exit path) */
	run_loop();
}

static uint16_t used_idx(unsigned int q)
{
	return pci_get(gm(RING(q) + 0x2002), 2);
}

static uint32_t used_len(unsigned int q, unsigned int i)
{
	return pci_get(gm(RING(q) + 0x2004 + 8 * i + 4), 4);
}

static uint32_t used_id(unsigned int q, unsigned int i)
{
	return pci_get(gm(RING(q) + 0x2004 + 8 * i), 4);
}

/* The host sends a frame: a header (flags given) and len bytes of i*7. */
static void host_send(uint8_t flags, unsigned int len)
{
	uint8_t f[HDR + 2048] = { flags };
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
	post(TXQ, 0, BUF, HDR, VIRTQ_DESC_F_NEXT, 1);
	post(TXQ, 1, BUF + 0x100, 60, VIRTQ_DESC_F_NEXT, 2);
	post(TXQ, 2, BUF + 0x200, 16, VIRTQ_DESC_F_WRITE, 0);
	/* GUEST: shorter than a header and an Ethernet header */
	post(TXQ, 3, BUF + 0x300, HDR + 13, 0, 0);
	/* GUEST: longer than the largest frame with its header */
	post(TXQ, 4, BIG, HDR + 65536 + 19, 0, 0);
	offer(TXQ, 0);
	offer(TXQ, 3);
	offer(TXQ, 4);
	kick(TXQ);
	CHECK_EQ_U64(read(host, got, sizeof(got)), HDR + 60);
	CHECK(got[HDR] == 0xab && got[HDR + 59] == 0xab);
	CHECK(read(host, got, sizeof(got)) < 0 && errno == EAGAIN);	/* nothing else */
	CHECK_EQ_U64(used_idx(TXQ), 3);
	CHECK_EQ_U64(used_len(TXQ, 0), 0);
	CHECK_EQ_U64(used_id(TXQ, 1), 3);
	CHECK_EQ_U64(used_id(TXQ, 2), 4);
	CHECK_EQ_U64(fired_for(0x42), 1);		/* one interrupt for the pass */
	st = stats();
	CHECK_EQ_U64(st.tx_packets, 1);
	CHECK_EQ_U64(st.tx_bytes, 60);
	CHECK_EQ_U64(st.tx_errors, 2);
	CHECK(!(br(20, 1) & VIRTIO_STATUS_NEEDS_RESET));
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
	CHECK_EQ_U64(used_idx(RXQ), 0);
	/* GUEST: a buffer smaller than the header goes back empty; the
	 * next takes the frame whole */
	post(RXQ, 0, BUF + 0x800, HDR - 1, VIRTQ_DESC_F_WRITE, 0);
	post(RXQ, 1, BUF, 1526, VIRTQ_DESC_F_WRITE, 0);
	memset(b, 0xee, HDR);
	offer(RXQ, 0);
	offer(RXQ, 1);
	kick(RXQ);
	CHECK_EQ_U64(used_idx(RXQ), 2);
	CHECK_EQ_U64(used_id(RXQ, 0), 0);
	CHECK_EQ_U64(used_len(RXQ, 0), 0);
	CHECK_EQ_U64(used_id(RXQ, 1), 1);
	CHECK_EQ_U64(used_len(RXQ, 1), HDR + 100);
	CHECK_EQ_U64(b[0], 0);			/* flags cleared without GUEST_CSUM */
	CHECK_EQ_U64(pci_get(b + 10, 2), 1);	/* num_buffers */
	CHECK(frame_ok(b + HDR, 0, 100));
	CHECK_EQ_U64(fired_for(0x41), 1);
	/* used up: watching stops again, and the next frame waits */
	CHECK_EQ_U64(watch[0].events, 0);
	host_send(0, 60);
	run_loop();
	CHECK_EQ_U64(used_idx(RXQ), 2);
	post(RXQ, 2, BUF, 1526, VIRTQ_DESC_F_WRITE, 0);
	offer(RXQ, 2);
	kick(RXQ);
	CHECK_EQ_U64(used_idx(RXQ), 3);
	CHECK_EQ_U64(used_len(RXQ, 2), HDR + 60);
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
		post(RXQ, i, BUF + 0x1000 * i, 600, VIRTQ_DESC_F_WRITE, 0);
		offer(RXQ, i);
	}
	kick(RXQ);
	CHECK_EQ_U64(watch[0].events, EPOLLIN);
	host_send(0x02, 1400);
	run_loop();
	CHECK_EQ_U64(used_idx(RXQ), 3);
	CHECK_EQ_U64(used_len(RXQ, 0), 600);
	CHECK_EQ_U64(used_len(RXQ, 1), 600);
	CHECK_EQ_U64(used_len(RXQ, 2), HDR + 1400 - 1200);
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
	CHECK_EQ_U64(used_idx(RXQ), 3);
	CHECK_EQ_U64(watch[0].events, 0);
	for (i = 4; i < 6; i++) {
		post(RXQ, i, BUF + 0x1000 * i, 600, VIRTQ_DESC_F_WRITE, 0);
		offer(RXQ, i);
	}
	kick(RXQ);
	CHECK_EQ_U64(used_idx(RXQ), 4);
	CHECK_EQ_U64(used_id(RXQ, 3), 3);
	CHECK_EQ_U64(used_len(RXQ, 3), HDR + 100);
	CHECK_EQ_U64(stats().rx_packets, 2);
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
	post(TXQ, 0, BUF, HDR + 60, 0, 0);
	offer(TXQ, 0);
	kick(TXQ);
	CHECK_EQ_U64(read(host, got, sizeof(got)), HDR + 60);
	/* a transmit descriptor chained to itself */
	post(TXQ, 1, BUF, HDR + 60, VIRTQ_DESC_F_NEXT, 1);
	offer(TXQ, 1);
	kick(TXQ);
	CHECK(br(20, 1) & VIRTIO_STATUS_NEEDS_RESET);
	CHECK(read(host, got, sizeof(got)) < 0);
	CHECK_EQ_U64(fired_for(0x40), 1);
	/* after a reset it sends again; the counters kept counting */
	driver_ok(0);
	post(TXQ, 0, BUF, HDR + 60, 0, 0);
	offer(TXQ, 0);
	kick(TXQ);
	CHECK_EQ_U64(read(host, got, sizeof(got)), HDR + 60);
	CHECK_EQ_U64(stats().tx_packets, 2);
	teardown();
}
