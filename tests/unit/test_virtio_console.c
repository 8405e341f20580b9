/* virtio-console without KVM: the driver's side done by hand through the
 * PCI bus (as in test_virtio_pci.c), kvmm's KVM and loop glue replaced
 * by recorders, and the chardev replaced by one that records output and
 * lets the test call the device's input callbacks as the main loop
 * would. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "chardev.h"
#include "irq.h"
#include "loop.h"
#include "pci/pci.h"
#include "unit.h"
#include "util.h"
#include "virtio/virtio.h"
#include "vm.h"

/* --- stand-ins for kvmm's KVM, loop and chardev ---------------------- */

static struct { loop_fn fn; void *opaque; } watch[4];
static int nwatch, nroutes, fired[8];
static uint32_t route_data[8];

int loop_add(struct loop *l, int fd, uint32_t events, loop_fn fn, void *opaque)
{
	watch[nwatch].fn = fn;
	watch[nwatch].opaque = opaque;
	nwatch++;
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

static uint8_t out[1024];
static size_t out_len;
static int accepts;

void chardev_write(struct chardev *c, const uint8_t *buf, size_t len)
{
	size_t n = MIN(len, sizeof(out) - out_len);

	memcpy(out + out_len, buf, n);
	out_len += n;
}

void chardev_accept_input(struct chardev *c)
{
	accepts++;
}

/* --- a hand-driven guest: receiveq (0) and transmitq (1) ------------ */

#define BAR	0xC0000000ULL
#define RING(q)	(0x1000ULL + 0x3000ULL * (q))	/* desc; avail +0x1000; used +0x2000 */
#define BUF	0x8000ULL
#define QSIZE	8
#define RXQ	0
#define TXQ	1

static struct vm vm;
static struct virtio_pci *vp;
static struct chardev be;
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

static void setup(void)
{
	memset(&vm, 0, sizeof(vm));
	memset(&be, 0, sizeof(be));
	nwatch = nroutes = accepts = 0;
	out_len = 0;
	memset(fired, 0, sizeof(fired));
	memset(avail_idx, 0, sizeof(avail_idx));
	CHECK(guest_mem_init(&vm.mem, 1 * MiB, 1 * MiB, 4 * GiB) == 0);
	vm.pci = calloc(1, sizeof(*vm.pci));
	pci_bus_init(vm.pci);
	vp = (struct virtio_pci *)virtio_console_create(&vm, 1, BAR, &be);
	CHECK(vp != NULL);
	cfgw(PCI_COMMAND, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER, 2);
}

static void teardown(void)
{
	vp->f.dev.ops->destroy(&vp->f.dev);
	pci_bus_destroy(vm.pci);
	free(vm.pci);
	guest_mem_destroy(&vm.mem);
}

static unsigned int find_cap(uint8_t id, uint8_t vtype)
{
	unsigned int off;

	for (off = cfgr(PCI_CAP_PTR, 1); off; off = cfgr(off + 1, 1))
		if (cfgr(off, 1) == id && (!vtype || cfgr(off + 3, 1) == vtype))
			return off;
	return 0;
}

/* MSI-X entry 0 for configuration changes (data 0x40), entry 1 + q for
 * queue q (0x41, 0x42). */
static int fired_for(uint32_t data)
{
	int i;

	for (i = 0; i < nroutes; i++)
		if (route_data[i] == data)
			return fired[i];
	return 0;
}

/* Resets the device and brings it to DRIVER_OK with both queues. */
static void driver_ok(void)
{
	unsigned int cap = find_cap(PCI_CAP_ID_MSIX, 0), q, e;

	bw(20, 0, 1);
	memset(gm(0x1000), 0, 0x6000);
	memset(avail_idx, 0, sizeof(avail_idx));
	bw(20, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER, 1);
	bw(8, 1, 4);
	bw(12, 1, 4);			/* VERSION_1 */
	bw(20, 0x0b, 1);
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
	CHECK(nwatch == 2);
	watch[q].fn(watch[q].opaque, 1);	/* what the main loop does */
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

static size_t space(void)
{
	return be.input_space(be.opaque);
}

UNIT_TEST(virtio_console_identity_and_config)
{
	unsigned int dev;

	setup();
	CHECK_EQ_U64(cfgr(PCI_VENDOR_ID, 4), 0x10431af4);
	CHECK_EQ_U64(cfgr(0x08, 4) >> 8, 0x078000);
	dev = find_cap(PCI_CAP_ID_VNDR, 4);
	CHECK(dev != 0);
	CHECK_EQ_U64(cfgr(dev + 12, 4), 12);	/* cols, rows, max_nr_ports, emerg_wr */
	CHECK_EQ_U64(br(18, 2), 2);		/* num_queues: port 0's pair */
	bw(0, 0, 4);
	CHECK_EQ_U64(br(4, 4) & 7, 0);		/* no SIZE, MULTIPORT, EMERG_WRITE */
	CHECK_EQ_U64(br(0x2000, 4), 0);		/* cols, rows */
	CHECK_EQ_U64(br(0x2004, 4), 1);		/* max_nr_ports */
	/* GUEST: emerg_wr without EMERG_WRITE, and accesses past the
	 * structure, do nothing */
	bw(0x2008, 'x', 4);
	bw(0x200c, 'y', 4);
	CHECK_EQ_U64(out_len, 0);
	CHECK_EQ_U64(br(0x200a, 4), 0);
	teardown();
}

UNIT_TEST(virtio_console_transmit_reaches_the_backend)
{
	setup();
	driver_ok();
	memcpy(gm(BUF), "hello ", 6);
	memcpy(gm(BUF + 0x100), "world\n", 6);
	post(TXQ, 0, BUF, 6, VIRTQ_DESC_F_NEXT, 1);
	post(TXQ, 1, BUF + 0x100, 6, VIRTQ_DESC_F_NEXT, 2);
	/* a writable buffer in a transmit chain is ignored */
	post(TXQ, 2, BUF + 0x200, 16, VIRTQ_DESC_F_WRITE, 0);
	offer(TXQ, 0);
	kick(TXQ);
	CHECK_EQ_U64(out_len, 12);
	CHECK(!memcmp(out, "hello world\n", 12));
	CHECK_EQ_U64(used_idx(TXQ), 1);
	CHECK_EQ_U64(used_len(TXQ, 0), 0);
	CHECK_EQ_U64(fired_for(0x42), 1);
	CHECK_EQ_U64(accepts, 0);
	teardown();
}

UNIT_TEST(virtio_console_input_waits_for_receive_buffers)
{
	setup();
	/* before the driver is up, and with no buffer: no room, so the
	 * chardev stops reading */
	CHECK_EQ_U64(space(), 0);
	driver_ok();
	CHECK_EQ_U64(space(), 0);
	post(RXQ, 0, BUF, 64, VIRTQ_DESC_F_WRITE, 0);
	offer(RXQ, 0);
	kick(RXQ);
	CHECK_EQ_U64(accepts, 1);		/* reading resumes */
	CHECK_EQ_U64(used_idx(RXQ), 0);
	CHECK_EQ_U64(space(), 64);
	CHECK_EQ_U64(space(), 64);		/* asking twice holds one buffer */
	be.input(be.opaque, (const uint8_t *)"hi\n", 3);
	CHECK_EQ_U64(used_idx(RXQ), 1);
	CHECK_EQ_U64(used_len(RXQ, 0), 3);
	CHECK(!memcmp(gm(BUF), "hi\n", 3));
	CHECK_EQ_U64(fired_for(0x41), 1);
	CHECK_EQ_U64(space(), 0);		/* used up: stop again */
	/* GUEST: a receive chain with nothing writable goes back empty;
	 * the next one takes the input */
	post(RXQ, 1, BUF, 8, 0, 0);
	post(RXQ, 2, BUF + 0x100, 4, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 3);
	post(RXQ, 3, BUF + 0x200, 4, VIRTQ_DESC_F_WRITE, 0);
	offer(RXQ, 1);
	offer(RXQ, 2);
	kick(RXQ);
	CHECK_EQ_U64(space(), 8);
	CHECK_EQ_U64(used_idx(RXQ), 2);
	CHECK_EQ_U64(used_id(RXQ, 1), 1);
	CHECK_EQ_U64(used_len(RXQ, 1), 0);
	be.input(be.opaque, (const uint8_t *)"abcdefg", 7);	/* across two buffers */
	CHECK_EQ_U64(used_idx(RXQ), 3);
	CHECK_EQ_U64(used_id(RXQ, 2), 2);
	CHECK_EQ_U64(used_len(RXQ, 2), 7);
	CHECK(!memcmp(gm(BUF + 0x100), "abcd", 4) && !memcmp(gm(BUF + 0x200), "efg", 3));
	teardown();
}

UNIT_TEST(virtio_console_hostile_chains_need_reset_then_recover)
{
	setup();
	driver_ok();
	/* a receive descriptor chained to itself */
	post(RXQ, 0, BUF, 8, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 0);
	offer(RXQ, 0);
	kick(RXQ);
	CHECK_EQ_U64(space(), 0);
	CHECK(br(20, 1) & VIRTIO_STATUS_NEEDS_RESET);
	CHECK_EQ_U64(used_idx(RXQ), 0);
	CHECK_EQ_U64(fired_for(0x40), 1);	/* configuration interrupt */
	/* input arriving anyway goes nowhere */
	be.input(be.opaque, (const uint8_t *)"x", 1);
	CHECK_EQ_U64(used_idx(RXQ), 0);

	driver_ok();
	/* a transmit buffer outside guest RAM, and a head past the queue */
	post(TXQ, 0, 1ULL << 40, 16, 0, 0);
	offer(TXQ, 0);
	kick(TXQ);
	CHECK(br(20, 1) & VIRTIO_STATUS_NEEDS_RESET);
	CHECK_EQ_U64(out_len, 0);
	driver_ok();
	offer(TXQ, QSIZE + 3);
	kick(TXQ);
	CHECK(br(20, 1) & VIRTIO_STATUS_NEEDS_RESET);
	CHECK_EQ_U64(used_idx(TXQ), 0);

	/* after a reset both directions work again */
	driver_ok();
	memcpy(gm(BUF), "ok\n", 3);
	post(TXQ, 0, BUF, 3, 0, 0);
	offer(TXQ, 0);
	kick(TXQ);
	CHECK_EQ_U64(out_len, 3);
	post(RXQ, 0, BUF + 0x100, 16, VIRTQ_DESC_F_WRITE, 0);
	offer(RXQ, 0);
	kick(RXQ);
	CHECK_EQ_U64(space(), 16);
	be.input(be.opaque, (const uint8_t *)"yes", 3);
	CHECK_EQ_U64(used_len(RXQ, 0), 3);
	CHECK(!(br(20, 1) & VIRTIO_STATUS_NEEDS_RESET));
	teardown();
}

UNIT_TEST(virtio_console_state_round_trip_with_a_held_buffer)
{
	struct state_buf s = { 0 };

	setup();
	driver_ok();
	post(RXQ, 0, BUF, 32, VIRTQ_DESC_F_WRITE, 0);
	offer(RXQ, 0);
	kick(RXQ);
	CHECK_EQ_U64(space(), 32);		/* popped, not used */
	CHECK(vp->f.dev.ops->save(&vp->f.dev, &s) == 0);
	vp->f.dev.ops->reset(&vp->f.dev);
	CHECK_EQ_U64(space(), 0);
	CHECK(vp->f.dev.ops->load(&vp->f.dev, s.data, s.len) == 0);
	/* the held buffer went back on the ring and is taken again */
	CHECK_EQ_U64(space(), 32);
	be.input(be.opaque, (const uint8_t *)"after", 5);
	CHECK_EQ_U64(used_idx(RXQ), 1);
	CHECK_EQ_U64(used_id(RXQ, 0), 0);
	CHECK_EQ_U64(used_len(RXQ, 0), 5);
	/* truncated or corrupted streams are refused */
	CHECK(vp->f.dev.ops->load(&vp->f.dev, s.data, s.len - 1) == -EINVAL);
	s.data[s.len - 1] = 2;
	CHECK(vp->f.dev.ops->load(&vp->f.dev, s.data, s.len) == -EINVAL);
	s.data[s.len - 1] = 1;
	s.data[s.len - 2] = 42;
	CHECK(vp->f.dev.ops->load(&vp->f.dev, s.data, s.len) == -EINVAL);
	state_buf_free(&s);
	teardown();
}
