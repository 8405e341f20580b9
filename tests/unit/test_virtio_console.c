/* virtio-console without KVM: the driver's side done by hand (vdriver.c),
 * and the chardev replaced by one that records output and lets the test
 * call the device's input callbacks as the main loop would. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "chardev.h"
#include "pci/pci.h"
#include "unit.h"
#include "util.h"
#include "vdriver.h"
#include "virtio/console.h"
#include "virtio/virtio.h"

/* --- a chardev that records ------------------------------------------ */

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

#define BUF	0x8000ULL
#define RXQ	0
#define TXQ	1

static struct virtio_pci *vp;
static struct chardev be;

static void setup(void)
{
	vd_setup();
	memset(&be, 0, sizeof(be));
	accepts = 0;
	out_len = 0;
	vp = (struct virtio_pci *)virtio_console_create(&vm, 1, VD_BAR, &be);
	CHECK(vp != NULL);
	cfgw(PCI_COMMAND, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER, 2);
}

static void teardown(void)
{
	vp->f.dev.ops->destroy(&vp->f.dev);
	vd_teardown();
}

static void driver_ok(void)
{
	vd_driver_ok(0, 2);
}

static void kick(unsigned int q)
{
	bw(0x3000 + 4 * q, q, 2);		/* notify (the MMIO exit path) */
	CHECK(nwatch == 2);
	watch[q].fn(watch[q].opaque, 1);	/* what the main loop does */
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
	vq_post(TXQ, 0, BUF, 6, VIRTQ_DESC_F_NEXT, 1);
	vq_post(TXQ, 1, BUF + 0x100, 6, VIRTQ_DESC_F_NEXT, 2);
	/* a writable buffer in a transmit chain is ignored */
	vq_post(TXQ, 2, BUF + 0x200, 16, VIRTQ_DESC_F_WRITE, 0);
	vq_offer(TXQ, 0);
	kick(TXQ);
	CHECK_EQ_U64(out_len, 12);
	CHECK(!memcmp(out, "hello world\n", 12));
	CHECK_EQ_U64(vq_used_idx(TXQ), 1);
	CHECK_EQ_U64(vq_used_len(TXQ, 0), 0);
	CHECK_EQ_U64(fired_for(0x42), 1);
	CHECK_EQ_U64(accepts, 0);
	teardown();
}

/* Output text at BUF + 0x100 * head, offered on the transmit queue. */
static void post_text(uint16_t head, const char *text)
{
	memcpy(gm(BUF + 0x100 * head), text, strlen(text));
	vq_post(TXQ, head, BUF + 0x100 * head, strlen(text), 0, 0);
	vq_offer(TXQ, head);
}

/* A paused VM's console writes nothing (its state may be saved
 * already); the resume looks at the queue again. */
UNIT_TEST(virtio_console_a_paused_vm_writes_nothing_until_resumed)
{
	setup();
	driver_ok();
	vm.state = VM_PAUSED;
	post_text(0, "paused\n");
	kick(TXQ);
	CHECK_EQ_U64(out_len, 0);
	CHECK_EQ_U64(vq_used_idx(TXQ), 0);
	vm.state = VM_RUNNING;
	virtio_pci_resume(&vp->f.dev);		/* what a resume calls */
	watch[TXQ].fn(watch[TXQ].opaque, 1);	/* what the main loop does */
	CHECK_EQ_U64(out_len, 7);
	CHECK(!memcmp(out, "paused\n", 7));
	CHECK_EQ_U64(vq_used_idx(TXQ), 1);
	teardown();
}

/* Output the guest notified just before a save's pause, its kick still
 * waiting in the loop behind the save: the saving kvmm's loop does not
 * write it; the kvmm that loads the state does, without a new kick. */
UNIT_TEST(virtio_console_a_kick_pending_at_the_save_is_run_by_the_loaded_device)
{
	struct state_buf sb = { 0 };

	setup();
	driver_ok();
	vm.state = VM_RUNNING;
	post_text(0, "one\n");
	kick(TXQ);
	CHECK_EQ_U64(out_len, 4);
	post_text(1, "two\n");
	bw(0x3000 + 4 * TXQ, TXQ, 2);		/* notified; the loop has not run it */
	vm.state = VM_PAUSED;			/* the save's pause */
	CHECK(vp->f.dev.ops->save(&vp->f.dev, &sb) == 0);
	watch[TXQ].fn(watch[TXQ].opaque, 1);	/* the kick, after the save */
	CHECK_EQ_U64(out_len, 4);
	CHECK_EQ_U64(vq_used_idx(TXQ), 1);
	/* The state loaded (into the same device: the guest's memory is the
	 * saved one), the VM running. */
	CHECK(vp->f.dev.ops->load(&vp->f.dev, sb.data, sb.len) == 0);
	state_buf_free(&sb);
	vm.state = VM_RUNNING;
	watch[TXQ].fn(watch[TXQ].opaque, 1);
	CHECK_EQ_U64(out_len, 8);
	CHECK(!memcmp(out, "one\ntwo\n", 8));
	CHECK_EQ_U64(vq_used_idx(TXQ), 2);
	CHECK_EQ_U64(vq_used_id(TXQ, 1), 1);
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
	vq_post(RXQ, 0, BUF, 64, VIRTQ_DESC_F_WRITE, 0);
	vq_offer(RXQ, 0);
	kick(RXQ);
	CHECK_EQ_U64(accepts, 1);		/* reading resumes */
	CHECK_EQ_U64(vq_used_idx(RXQ), 0);
	CHECK_EQ_U64(space(), 64);
	CHECK_EQ_U64(space(), 64);		/* asking twice holds one buffer */
	be.input(be.opaque, (const uint8_t *)"hi\n", 3);
	CHECK_EQ_U64(vq_used_idx(RXQ), 1);
	CHECK_EQ_U64(vq_used_len(RXQ, 0), 3);
	CHECK(!memcmp(gm(BUF), "hi\n", 3));
	CHECK_EQ_U64(fired_for(0x41), 1);
	CHECK_EQ_U64(space(), 0);		/* used up: stop again */
	/* GUEST: a receive chain with nothing writable goes back empty;
	 * the next one takes the input */
	vq_post(RXQ, 1, BUF, 8, 0, 0);
	vq_post(RXQ, 2, BUF + 0x100, 4, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 3);
	vq_post(RXQ, 3, BUF + 0x200, 4, VIRTQ_DESC_F_WRITE, 0);
	vq_offer(RXQ, 1);
	vq_offer(RXQ, 2);
	kick(RXQ);
	CHECK_EQ_U64(space(), 8);
	CHECK_EQ_U64(vq_used_idx(RXQ), 2);
	CHECK_EQ_U64(vq_used_id(RXQ, 1), 1);
	CHECK_EQ_U64(vq_used_len(RXQ, 1), 0);
	be.input(be.opaque, (const uint8_t *)"abcdefg", 7);	/* across two buffers */
	CHECK_EQ_U64(vq_used_idx(RXQ), 3);
	CHECK_EQ_U64(vq_used_id(RXQ, 2), 2);
	CHECK_EQ_U64(vq_used_len(RXQ, 2), 7);
	CHECK(!memcmp(gm(BUF + 0x100), "abcd", 4) && !memcmp(gm(BUF + 0x200), "efg", 3));
	teardown();
}

UNIT_TEST(virtio_console_hostile_chains_need_reset_then_recover)
{
	setup();
	driver_ok();
	/* a receive descriptor chained to itself */
	vq_post(RXQ, 0, BUF, 8, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 0);
	vq_offer(RXQ, 0);
	kick(RXQ);
	CHECK_EQ_U64(space(), 0);
	CHECK(br(20, 1) & VIRTIO_STATUS_NEEDS_RESET);
	CHECK_EQ_U64(vq_used_idx(RXQ), 0);
	CHECK_EQ_U64(fired_for(0x40), 1);	/* configuration interrupt */
	/* input arriving anyway goes nowhere */
	be.input(be.opaque, (const uint8_t *)"x", 1);
	CHECK_EQ_U64(vq_used_idx(RXQ), 0);

	driver_ok();
	/* a transmit buffer outside guest RAM, and a head past the queue */
	vq_post(TXQ, 0, 1ULL << 40, 16, 0, 0);
	vq_offer(TXQ, 0);
	kick(TXQ);
	CHECK(br(20, 1) & VIRTIO_STATUS_NEEDS_RESET);
	CHECK_EQ_U64(out_len, 0);
	driver_ok();
	vq_offer(TXQ, VD_QSIZE + 3);
	kick(TXQ);
	CHECK(br(20, 1) & VIRTIO_STATUS_NEEDS_RESET);
	CHECK_EQ_U64(vq_used_idx(TXQ), 0);

	/* after a reset both directions work again */
	driver_ok();
	memcpy(gm(BUF), "ok\n", 3);
	vq_post(TXQ, 0, BUF, 3, 0, 0);
	vq_offer(TXQ, 0);
	kick(TXQ);
	CHECK_EQ_U64(out_len, 3);
	vq_post(RXQ, 0, BUF + 0x100, 16, VIRTQ_DESC_F_WRITE, 0);
	vq_offer(RXQ, 0);
	kick(RXQ);
	CHECK_EQ_U64(space(), 16);
	be.input(be.opaque, (const uint8_t *)"yes", 3);
	CHECK_EQ_U64(vq_used_len(RXQ, 0), 3);
	CHECK(!(br(20, 1) & VIRTIO_STATUS_NEEDS_RESET));
	teardown();
}

UNIT_TEST(virtio_console_state_round_trip_with_a_held_buffer)
{
	struct state_buf s = { 0 };

	setup();
	driver_ok();
	vq_post(RXQ, 0, BUF, 32, VIRTQ_DESC_F_WRITE, 0);
	vq_offer(RXQ, 0);
	kick(RXQ);
	CHECK_EQ_U64(space(), 32);		/* popped, not used */
	CHECK(vp->f.dev.ops->save(&vp->f.dev, &s) == 0);
	vp->f.dev.ops->reset(&vp->f.dev);
	CHECK_EQ_U64(space(), 0);
	CHECK(vp->f.dev.ops->load(&vp->f.dev, s.data, s.len) == 0);
	/* the held buffer went back on the ring and is taken again */
	CHECK_EQ_U64(space(), 32);
	be.input(be.opaque, (const uint8_t *)"after", 5);
	CHECK_EQ_U64(vq_used_idx(RXQ), 1);
	CHECK_EQ_U64(vq_used_id(RXQ, 0), 0);
	CHECK_EQ_U64(vq_used_len(RXQ, 0), 5);
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
