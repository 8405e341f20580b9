/* The virtio-pci transport, virtio-rng and virtio-blk without KVM: the
 * driver's side of the handshake done by hand through the PCI bus, with
 * the few kvmm functions the transport calls (MSI routes, ioeventfds, the
 * main loop) replaced by vdriver.c's recorders. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "config.h"
#include "pci/pci.h"
#include "unit.h"
#include "util.h"
#include "vdriver.h"
#include "virtio/blk.h"
#include "virtio/rng.h"
#include "virtio/virtio.h"
#include "vm.h"

/* --- a hand-driven guest ------------------------------------------- */

#define BAR	VD_BAR
#define DESC	0x1000ULL
#define AVAIL	0x2000ULL
#define USED	0x3000ULL
#define BUF	0x8000ULL

static struct virtio_pci *vp;
static uint16_t avail_idx;

static void setup(void)
{
	vd_setup();
	avail_idx = 0;
	vp = (struct virtio_pci *)virtio_rng_create(&vm, 1, BAR);
	CHECK(vp != NULL);
	cfgw(PCI_COMMAND, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER, 2);
}

static void teardown(void)
{
	vp->f.dev.ops->destroy(&vp->f.dev);
	vd_teardown();
}

/* Features accepted?  Leaves the device at ACK|DRIVER(|FEATURES_OK). */
static bool negotiate(uint32_t lo, uint32_t hi)
{
	bw(20, 0, 1);
	bw(20, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER, 1);
	bw(8, 0, 4);
	bw(12, lo, 4);
	bw(8, 1, 4);
	bw(12, hi, 4);
	bw(20, 0x0b, 1);
	return br(20, 1) & VIRTIO_STATUS_FEATURES_OK;
}

static void msix_on(void)
{
	unsigned int cap = find_cap(PCI_CAP_ID_MSIX, 0);

	cfgw(cap + 2, 0x8000, 2);
	/* entry 0: config changes, entry 1: the queue */
	bw(0x4000 + 0, 0xfee00000, 4);
	bw(0x4000 + 8, 0x40, 4);
	bw(0x4000 + 12, 0, 4);
	bw(0x4010 + 0, 0xfee00000, 4);
	bw(0x4010 + 8, 0x41, 4);
	bw(0x4010 + 12, 0, 4);
	bw(16, 0, 2);
}

static void queue_setup(uint16_t size)
{
	bw(22, 0, 2);
	bw(26, 1, 2);
	bw(24, size, 2);
	bw(32, DESC, 4);
	bw(36, 0, 4);
	bw(40, AVAIL, 4);
	bw(44, 0, 4);
	bw(48, USED, 4);
	bw(52, 0, 4);
	bw(28, 1, 2);
}

static void driver_ok(void)
{
	CHECK(negotiate(0, 1));
	msix_on();
	queue_setup(8);
	bw(20, 0x0f, 1);
	CHECK_EQ_U64(br(20, 1), 0x0f);
}

static void post(uint16_t head, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next)
{
	uint8_t *d = gm(DESC + 16 * head);

	memcpy(d, &addr, 8);
	memcpy(d + 8, &len, 4);
	memcpy(d + 12, &flags, 2);
	memcpy(d + 14, &next, 2);
}

/* The loop's watch of queue 0's kicks (blk also has one for its ring). */
static int kick_watch(void)
{
	int i;

	for (i = 0; i < nwatch; i++)
		if (watch[i].opaque == &vp->queues[0])
			return i;
	CHECK(!"no watch on the queue's kick eventfd");
	return 0;
}

static void offer_and_kick(uint16_t head)
{
	uint8_t *a = gm(AVAIL);

	memcpy(a + 4 + 2 * (avail_idx % 8), &head, 2);
	avail_idx++;
	memcpy(a + 2, &avail_idx, 2);
	bw(0x3000, 0, 2);			/* notify queue 0 (MMIO exit path) */
	/* what the main loop does */
	watch[kick_watch()].fn(&vp->queues[0], 1);
}

static uint16_t used_idx(void)
{
	uint16_t v;

	memcpy(&v, gm(USED + 2), 2);
	return v;
}

/* What the main loop does until the device used every chain offered (a
 * blk request on the ring completes later, on its own eventfd). */
static void run_loop_until_used(void)
{
	struct pollfd p[8];
	int i, rounds;

	for (rounds = 0; rounds < 1000 && used_idx() != avail_idx; rounds++) {
		for (i = 0; i < nwatch; i++)
			p[i] = (struct pollfd){ .fd = watch[i].fd, .events = POLLIN };
		if (poll(p, nwatch, 1000) <= 0) {
			CHECK(!"the device never used what was offered");
			return;
		}
		for (i = 0; i < nwatch; i++)
			if (p[i].revents & POLLIN)
				watch[i].fn(watch[i].opaque, EPOLLIN);
	}
}

UNIT_TEST(virtio_pci_identity_and_capabilities)
{
	unsigned int notify;

	setup();
	CHECK_EQ_U64(cfgr(PCI_VENDOR_ID, 4), 0x10441af4);
	CHECK_EQ_U64(cfgr(PCI_REVISION_ID, 1), 1);
	CHECK_EQ_U64(cfgr(PCI_SUBSYS_VENDOR_ID, 2), 0x1af4);
	CHECK(find_cap(PCI_CAP_ID_VNDR, 1) && find_cap(PCI_CAP_ID_VNDR, 3));
	CHECK(!find_cap(PCI_CAP_ID_VNDR, 4));	/* rng: no device config */
	notify = find_cap(PCI_CAP_ID_VNDR, 2);
	CHECK(notify != 0);
	CHECK_EQ_U64(cfgr(notify + 2, 1), 20);
	CHECK_EQ_U64(cfgr(notify + 16, 4), 4);	/* notify_off_multiplier */
	CHECK_EQ_U64(cfgr(find_cap(PCI_CAP_ID_VNDR, 1) + 12, 4), 0x38);
	CHECK_EQ_U64(cfgr(find_cap(PCI_CAP_ID_MSIX, 0) + 2, 2), 1);	/* 2 vectors */
	CHECK_EQ_U64(br(18, 2), 1);		/* num_queues */
	CHECK_EQ_U64(br(24, 2), 256);		/* queue_size: the maximum */
	teardown();
}

UNIT_TEST(virtio_pci_feature_negotiation)
{
	setup();
	bw(0, 0, 4);
	CHECK(br(4, 4) & (1u << VIRTIO_F_INDIRECT_DESC));
	bw(0, 1, 4);
	CHECK_EQ_U64(br(4, 4), 1);		/* VERSION_1 */
	bw(0, 7, 4);
	CHECK_EQ_U64(br(4, 4), 0);
	CHECK(!negotiate(0, 0));		/* no VERSION_1: refused */
	CHECK(!negotiate(0, 1 | 1 << 8));	/* a bit we never offered */
	CHECK(negotiate(1u << VIRTIO_F_INDIRECT_DESC, 1));
	/* features are frozen once accepted */
	bw(8, 1, 4);
	bw(12, 0, 4);
	CHECK_EQ_U64(br(12, 4), 1);
	/* writing 0 resets */
	bw(20, 0, 1);
	CHECK_EQ_U64(br(20, 1), 0);
	bw(8, 1, 4);
	CHECK_EQ_U64(br(12, 4), 0);
	teardown();
}

UNIT_TEST(virtio_rng_fills_a_buffer_and_interrupts)
{
	static const uint8_t zero[64];

	setup();
	driver_ok();
	post(0, BUF, 64, VIRTQ_DESC_F_WRITE, 0);
	offer_and_kick(0);
	CHECK_EQ_U64(used_idx(), 1);
	CHECK_EQ_U64(pci_get(gm(USED + 8), 4), 64);
	CHECK(memcmp(gm(BUF), zero, 64) != 0);
	CHECK_EQ_U64(fired[0], 1);
	CHECK_EQ_U64(route_data[0], 0x41);
	/* a chain without writable buffers completes empty, the next one
	 * is still served in the same kick */
	post(1, BUF, 16, 0, 0);
	post(2, BUF + 0x100, 32, VIRTQ_DESC_F_WRITE, 0);
	{
		uint8_t *a = gm(AVAIL);
		uint16_t h = 1;

		memcpy(a + 4 + 2 * avail_idx, &h, 2);
		avail_idx++;
	}
	offer_and_kick(2);
	CHECK_EQ_U64(used_idx(), 3);
	CHECK_EQ_U64(pci_get(gm(USED + 4 + 8 * 1 + 4), 4), 0);
	CHECK_EQ_U64(pci_get(gm(USED + 4 + 8 * 2 + 4), 4), 32);
	teardown();
}

/* The transport, for every device: a paused VM's kick starts nothing
 * (the VM's state may be saved already); the resume runs the queue. */
UNIT_TEST(virtio_rng_a_paused_vm_fills_nothing_until_resumed)
{
	static const uint8_t zero[64];

	setup();
	driver_ok();
	vm.state = VM_PAUSED;
	post(0, BUF, 64, VIRTQ_DESC_F_WRITE, 0);
	offer_and_kick(0);
	CHECK_EQ_U64(used_idx(), 0);
	CHECK(memcmp(gm(BUF), zero, 64) == 0);
	CHECK_EQ_U64(fired[0], 0);
	vm.state = VM_RUNNING;
	virtio_pci_resume(&vp->f.dev);		/* what a resume calls */
	run_loop_until_used();
	CHECK_EQ_U64(used_idx(), 1);
	CHECK(memcmp(gm(BUF), zero, 64) != 0);
	teardown();
}

/* A kick the guest sent just before a save's pause, still waiting in
 * the loop behind the save: the saving kvmm's loop does not run it; the
 * kvmm that loads the state does, without a new kick. */
UNIT_TEST(virtio_rng_a_kick_pending_at_the_save_is_run_by_the_loaded_device)
{
	struct state_buf s = { 0 };
	uint8_t *a;

	setup();
	driver_ok();
	vm.state = VM_RUNNING;
	post(0, BUF, 64, VIRTQ_DESC_F_WRITE, 0);
	a = gm(AVAIL);
	memcpy(a + 4, &(uint16_t){ 0 }, 2);
	avail_idx = 1;
	memcpy(a + 2, &avail_idx, 2);
	bw(0x3000, 0, 2);			/* notified; the loop has not run it */
	vm.state = VM_PAUSED;			/* the save's pause */
	CHECK(vp->f.dev.ops->save(&vp->f.dev, &s) == 0);
	watch[kick_watch()].fn(&vp->queues[0], EPOLLIN);	/* after the save */
	CHECK_EQ_U64(used_idx(), 0);
	/* The state loaded into the same device (the guest's memory is the
	 * saved one), the VM running. */
	CHECK(vp->f.dev.ops->load(&vp->f.dev, s.data, s.len) == 0);
	state_buf_free(&s);
	vm.state = VM_RUNNING;
	run_loop_until_used();
	CHECK_EQ_U64(used_idx(), 1);
	CHECK_EQ_U64(pci_get(gm(USED + 8), 4), 64);
	teardown();
}

UNIT_TEST(virtio_hostile_chain_needs_reset_then_recovers)
{
	setup();
	driver_ok();
	post(0, BUF, 8, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 0);	/* loop */
	offer_and_kick(0);
	CHECK(br(20, 1) & VIRTIO_STATUS_NEEDS_RESET);
	CHECK_EQ_U64(used_idx(), 0);
	/* the config interrupt (entry 0) was the first delivered: route 0 */
	CHECK_EQ_U64(fired[0], 1);
	CHECK_EQ_U64(route_data[0], 0x40);
	CHECK_EQ_U64(br(0x1000, 1) & 2, 2);	/* ISR: config change */
	CHECK_EQ_U64(br(0x1000, 1), 0);		/* read clears */
	/* the driver cannot clear NEEDS_RESET but by resetting */
	bw(20, 0x0f, 1);
	CHECK(br(20, 1) & VIRTIO_STATUS_NEEDS_RESET);
	bw(20, 0, 1);
	memset(gm(AVAIL), 0, 0x20);
	memset(gm(USED), 0, 0x80);
	avail_idx = 0;
	driver_ok();
	post(0, BUF, 64, VIRTQ_DESC_F_WRITE, 0);
	offer_and_kick(0);
	CHECK_EQ_U64(used_idx(), 1);
	teardown();
}

UNIT_TEST(virtio_bad_queue_setup_and_disabled_queue)
{
	setup();
	CHECK(negotiate(0, 1));
	msix_on();
	/* a kick on a queue never enabled is ignored */
	bw(20, 0x0f, 1);
	post(0, BUF, 64, VIRTQ_DESC_F_WRITE, 0);
	offer_and_kick(0);
	CHECK_EQ_U64(used_idx(), 0);
	CHECK(!(br(20, 1) & VIRTIO_STATUS_NEEDS_RESET));
	/* a size that is not a power of two */
	bw(20, 0, 1);
	CHECK(negotiate(0, 1));
	queue_setup(6);
	CHECK(br(20, 1) & VIRTIO_STATUS_NEEDS_RESET);
	CHECK_EQ_U64(br(28, 2), 0);		/* not enabled */
	/* rings outside RAM */
	bw(20, 0, 1);
	CHECK(negotiate(0, 1));
	bw(22, 0, 2);
	bw(32, 0, 4);
	bw(36, 0x100, 4);			/* 1 TiB up */
	bw(28, 1, 2);
	CHECK(br(20, 1) & VIRTIO_STATUS_NEEDS_RESET);
	/* vectors past the table read back NO_VECTOR; so do other queues */
	bw(20, 0, 1);
	bw(16, 5, 2);
	CHECK_EQ_U64(br(16, 2), VIRTIO_NO_VECTOR);
	bw(22, 0, 2);
	bw(26, 2, 2);
	CHECK_EQ_U64(br(26, 2), VIRTIO_NO_VECTOR);
	bw(22, 3, 2);
	CHECK_EQ_U64(br(24, 2), 0);
	bw(24, 8, 2);				/* ignored */
	bw(28, 1, 2);
	CHECK_EQ_U64(br(28, 2), 0);
	/* a notify for a queue that does not exist goes nowhere */
	{
		uint8_t d[2] = { 0, 0 };

		CHECK(pci_mmio_access(vm.pci, BAR + 0x3004, d, 2, true));
	}
	teardown();
}

UNIT_TEST(virtio_state_round_trip_and_bar_move)
{
	struct state_buf s = { 0 };

	setup();
	driver_ok();
	post(0, BUF, 64, VIRTQ_DESC_F_WRITE, 0);
	offer_and_kick(0);
	CHECK(vp->f.dev.ops->save(&vp->f.dev, &s) == 0);
	vp->f.dev.ops->reset(&vp->f.dev);
	CHECK(!pci_mem_enabled(&vp->f));
	CHECK(vp->f.dev.ops->load(&vp->f.dev, s.data, s.len) == 0);
	CHECK_EQ_U64(br(20, 1), 0x0f);
	CHECK_EQ_U64(br(28, 2), 1);
	post(1, BUF, 16, VIRTQ_DESC_F_WRITE, 0);
	offer_and_kick(1);
	CHECK_EQ_U64(used_idx(), 2);
	/* truncated or corrupted streams are refused */
	CHECK(vp->f.dev.ops->load(&vp->f.dev, s.data, s.len - 1) == -EINVAL);
	s.data[0] = 42;
	CHECK(vp->f.dev.ops->load(&vp->f.dev, s.data, s.len) == -EINVAL);
	state_buf_free(&s);
	/* the guest moves the BAR: the old address stops answering */
	cfgw(PCI_BAR0, 0xd0000000, 4);
	{
		uint8_t d[1];

		CHECK(!pci_mmio_access(vm.pci, BAR + 20, d, 1, false));
		CHECK(pci_mmio_access(vm.pci, 0xd0000000 + 20, d, 1, false));
	}
	teardown();
}

UNIT_TEST(virtio_pci_cfg_window_reaches_the_bar)
{
	unsigned int c;

	setup();
	c = find_cap(PCI_CAP_ID_VNDR, 5);
	CHECK(c != 0);
	if (!c) {
		teardown();
		return;
	}
	CHECK_EQ_U64(cfgr(c + 2, 1), 20);
	/* device_status through the window: write, then read back */
	cfgw(c + 4, 0, 1);
	cfgw(c + 8, 20, 4);
	cfgw(c + 12, 1, 4);
	cfgw(c + 16, VIRTIO_STATUS_ACKNOWLEDGE, 4);
	CHECK_EQ_U64(br(20, 1), VIRTIO_STATUS_ACKNOWLEDGE);
	bw(20, 3, 1);
	CHECK_EQ_U64(cfgr(c + 16, 1), 3);
	/* num_queues as a 16-bit read */
	cfgw(c + 8, 18, 4);
	cfgw(c + 12, 2, 4);
	CHECK_EQ_U64(cfgr(c + 16, 2), 1);
	/* GUEST: odd lengths, misaligned offsets, other BARs, past the
	 * BAR: nothing happens */
	cfgw(c + 8, 20, 4);
	cfgw(c + 12, 3, 4);
	cfgw(c + 16, 0, 4);
	CHECK_EQ_U64(br(20, 1), 3);
	cfgw(c + 8, 19, 4);
	cfgw(c + 12, 2, 4);
	cfgw(c + 16, 0, 4);
	CHECK_EQ_U64(br(20, 1), 3);
	cfgw(c + 4, 2, 1);
	cfgw(c + 8, 20, 4);
	cfgw(c + 12, 1, 4);
	cfgw(c + 16, 0, 4);
	CHECK_EQ_U64(br(20, 1), 3);
	cfgw(c + 4, 0, 1);
	cfgw(c + 8, 0xfffffffc, 4);
	cfgw(c + 12, 4, 4);
	cfgw(c + 16, 0, 4);
	CHECK_EQ_U64(br(20, 1), 3);
	teardown();
}

UNIT_TEST(virtio_rng_shares_the_loop_and_requeues_itself)
{
	uint16_t i;

	setup();
	driver_ok();
	/* three 192 KiB requests: more than one pass may fill */
	for (i = 0; i < 3; i++) {
		uint8_t *a = gm(AVAIL);

		post(i, 0x10000 + i * 0x30000ULL, 0x30000, VIRTQ_DESC_F_WRITE, 0);
		memcpy(a + 4 + 2 * avail_idx, &i, 2);
		avail_idx++;
	}
	avail_idx--;
	offer_and_kick(2);
	CHECK_EQ_U64(used_idx(), 2);
	CHECK_EQ_U64(pci_get(gm(USED + 8), 4), 0x30000);
	CHECK_EQ_U64(pci_get(gm(USED + 16), 4), 0x10000);	/* budget's rest */
	/* the device queued another pass for itself */
	{
		struct pollfd p = { .fd = watch[0].fd, .events = POLLIN };

		CHECK(poll(&p, 1, 0) == 1);
	}
	watch[0].fn(watch[0].opaque, 1);
	CHECK_EQ_U64(used_idx(), 3);
	teardown();
}

/* --- virtio-blk: request parsing against a temporary image ---------- */

#define BLK_HDR		BUF
#define BLK_DATA	(BUF + 0x1000)
#define BLK_STATUS	(BUF + 0x3000)
#define IMG_SECTORS	64

static struct vm_config blk_cfg;
static char img[64];
static uint8_t img_data[IMG_SECTORS * 512];

/* A blk device on a fresh image of known bytes, driven like the rng. */
static void setup_blk(bool readonly, bool sync)
{
	int fd;

	if (sync)
		setenv("KVMM_NO_IO_URING", "1", 1);
	else
		unsetenv("KVMM_NO_IO_URING");
	strcpy(img, "/tmp/kvmm-unit-blk-XXXXXX");
	fd = mkstemp(img);
	CHECK(fd >= 0);
	for (size_t i = 0; i < sizeof(img_data); i++)
		img_data[i] = i * 7 + 3;
	CHECK(write(fd, img_data, sizeof(img_data)) == (ssize_t)sizeof(img_data));
	close(fd);
	memset(&blk_cfg, 0, sizeof(blk_cfg));
	blk_cfg.ndisks = 1;
	blk_cfg.disks[0] = (struct disk_config){ .path = img, .readonly = readonly,
						 .serial = "unit-serial", .blk_size = 512 };
	vd_setup();
	vm.cfg = &blk_cfg;
	avail_idx = 0;
	vp = (struct virtio_pci *)virtio_blk_create(&vm, 0, 1, BAR);
	CHECK(vp != NULL);
	cfgw(PCI_COMMAND, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER, 2);
	driver_ok();
}

static void teardown_blk(void)
{
	teardown();
	unlink(img);
}

/* Posts header (hdr_len bytes of it), data (data_len, device-writable
 * for reads) and a status byte, and kicks. */
static void blk_post(uint32_t type, uint64_t sector, uint32_t hdr_len,
		     uint32_t data_len, bool data_in)
{
	uint16_t head = (avail_idx * 3) % 8, d = (head + 1) % 8, s = (head + 2) % 8;

	memcpy(gm(BLK_HDR), &type, 4);
	memset(gm(BLK_HDR + 4), 0, 4);
	memcpy(gm(BLK_HDR + 8), &sector, 8);
	*gm(BLK_STATUS) = 0xee;
	if (data_len) {
		post(head, BLK_HDR, hdr_len, VIRTQ_DESC_F_NEXT, d);
		post(d, BLK_DATA, data_len, VIRTQ_DESC_F_NEXT | (data_in ? VIRTQ_DESC_F_WRITE : 0), s);
	} else {
		post(head, BLK_HDR, hdr_len, VIRTQ_DESC_F_NEXT, s);
	}
	post(s, BLK_STATUS, 1, VIRTQ_DESC_F_WRITE, 0);
	offer_and_kick(head);
}

/* blk_post, then the loop until it is used: the status, *used the length. */
static int blk_req(uint32_t type, uint64_t sector, uint32_t hdr_len,
		   uint32_t data_len, bool data_in, uint32_t *used)
{
	uint16_t slot = avail_idx % 8;

	blk_post(type, sector, hdr_len, data_len, data_in);
	run_loop_until_used();
	CHECK_EQ_U64(used_idx(), avail_idx);
	*used = pci_get(gm(USED + 4 + 8 * slot + 4), 4);
	return *gm(BLK_STATUS);
}

static void blk_requests_are_checked(bool sync)
{
	uint8_t back[1024];
	uint32_t used;
	int fd;

	setup_blk(false, sync);
	/* config: capacity, seg_max, blk_size */
	CHECK_EQ_U64(br(0x2000, 4), IMG_SECTORS);
	CHECK_EQ_U64(br(0x2000 + 12, 4), 254);
	CHECK_EQ_U64(br(0x2000 + 20, 4), 512);
	/* IN: two sectors from sector 3 */
	CHECK_EQ_U64(blk_req(0, 3, 16, 1024, true, &used), 0);
	CHECK_EQ_U64(used, 1025);
	CHECK(!memcmp(gm(BLK_DATA), img_data + 3 * 512, 1024));
	/* GUEST: past the end, a partial sector, a short header → IOERR */
	CHECK_EQ_U64(blk_req(0, IMG_SECTORS - 1, 16, 1024, true, &used), 1);
	CHECK_EQ_U64(used, 1);
	CHECK_EQ_U64(blk_req(0, ~0ULL, 16, 512, true, &used), 1);
	CHECK_EQ_U64(blk_req(0, 0, 16, 500, true, &used), 1);
	CHECK_EQ_U64(blk_req(0, 0, 8, 512, true, &used), 1);
	/* OUT then FLUSH: the bytes are in the file */
	memset(gm(BLK_DATA), 0x5a, 1024);
	CHECK_EQ_U64(blk_req(1, 10, 16, 1024, false, &used), 0);
	CHECK_EQ_U64(used, 1);
	CHECK_EQ_U64(blk_req(4, 0, 16, 0, false, &used), 0);
	fd = open(img, O_RDONLY);
	CHECK(pread(fd, back, sizeof(back), 10 * 512) == (ssize_t)sizeof(back));
	close(fd);
	CHECK(!memcmp(back, gm(BLK_DATA), sizeof(back)));
	/* GET_ID: the serial, NUL-padded to 20 bytes */
	CHECK_EQ_U64(blk_req(8, 0, 16, 20, true, &used), 0);
	CHECK_EQ_U64(used, 21);
	CHECK(!memcmp(gm(BLK_DATA), "unit-serial\0\0\0\0\0\0\0\0", 20));
	/* unknown type → UNSUPP */
	CHECK_EQ_U64(blk_req(99, 0, 16, 0, false, &used), 2);
	/* DISCARD with UNMAP → UNSUPP; WRITE_ZEROES zeroes */
	{
		struct { uint64_t sector; uint32_t num, flags; } seg = { 20, 2, 1 };

		memcpy(gm(BLK_DATA), &seg, 16);
		CHECK_EQ_U64(blk_req(11, 0, 16, 16, false, &used), 2);
		CHECK_EQ_U64(blk_req(13, 0, 16, 16, false, &used), 0);
		seg.sector = IMG_SECTORS - 1;
		memcpy(gm(BLK_DATA), &seg, 16);
		CHECK_EQ_U64(blk_req(13, 0, 16, 16, false, &used), 1);
	}
	CHECK_EQ_U64(blk_req(0, 20, 16, 1024, true, &used), 0);
	for (int i = 0; i < 1024; i++)
		CHECK_EQ_U64(*gm(BLK_DATA + i), 0);
	CHECK_EQ_U64(br(20, 1), 0x0f);		/* never NEEDS_RESET */
	teardown_blk();
}

UNIT_TEST(virtio_blk_requests_are_checked_io_uring)
{
	blk_requests_are_checked(false);
}

UNIT_TEST(virtio_blk_requests_are_checked_sync)
{
	blk_requests_are_checked(true);
}

UNIT_TEST(virtio_blk_read_only_refuses_writes)
{
	uint32_t used;

	setup_blk(true, false);
	CHECK(br(4, 4) & (1u << 5));		/* VIRTIO_BLK_F_RO offered */
	memset(gm(BLK_DATA), 0x11, 512);
	CHECK_EQ_U64(blk_req(1, 0, 16, 512, false, &used), 1);
	CHECK_EQ_U64(blk_req(0, 0, 16, 512, true, &used), 0);
	CHECK(!memcmp(gm(BLK_DATA), img_data, 512));
	teardown_blk();
}

/* On the ring, requests outlive the kick: a save completes them, a
 * reset waits for them and drops them with the rings. */
UNIT_TEST(virtio_blk_save_and_reset_with_requests_in_flight)
{
	struct state_buf st = { 0 };
	char err[128];
	uint32_t used;

	setup_blk(false, false);
	CHECK(nwatch == 2);			/* the ring's completions */
	blk_post(0, 5, 16, 1024, true);
	CHECK_EQ_U64(used_idx(), 0);		/* not before the loop reaps */
	CHECK(vp->f.dev.ops->save(&vp->f.dev, &st) == 0);
	CHECK_EQ_U64(used_idx(), 1);
	CHECK_EQ_U64(*gm(BLK_STATUS), 0);
	CHECK(!memcmp(gm(BLK_DATA), img_data + 5 * 512, 1024));
	state_buf_free(&st);
	/* A FLUSH behind a write waits for it, then goes on the ring too. */
	memset(gm(BLK_DATA), 0x5a, 512);
	blk_post(1, 2, 16, 512, false);
	blk_post(4, 0, 16, 0, false);
	run_loop_until_used();
	CHECK_EQ_U64(used_idx(), 3);
	CHECK_EQ_U64(*gm(BLK_STATUS), 0);
	memset(gm(BLK_DATA), 0, 512);
	CHECK_EQ_U64(blk_req(0, 2, 16, 512, true, &used), 0);
	CHECK(gm(BLK_DATA)[0] == 0x5a && !memcmp(gm(BLK_DATA), gm(BLK_DATA) + 1, 511));
	/* A resize lets what is in flight finish first. */
	blk_post(0, 3, 16, 512, true);
	CHECK_EQ_U64(used_idx(), 4);
	CHECK(virtio_blk_resize(&vp->f.dev, 2 * IMG_SECTORS * 512, err, sizeof(err)) == 0);
	CHECK_EQ_U64(used_idx(), 5);
	CHECK(!memcmp(gm(BLK_DATA), img_data + 3 * 512, 512));
	/* The driver resets the device under a read and sets it up again:
	 * only the new request is used, however late the old one ends. */
	blk_post(0, 7, 16, 1024, true);
	bw(20, 0, 1);
	memset(gm(AVAIL), 0, 0x1000);
	memset(gm(USED), 0, 0x1000);
	avail_idx = 0;
	driver_ok();
	CHECK_EQ_U64(blk_req(0, 9, 16, 512, true, &used), 0);
	CHECK(!memcmp(gm(BLK_DATA), img_data + 9 * 512, 512));
	usleep(20000);
	watch[!kick_watch()].fn(watch[!kick_watch()].opaque, EPOLLIN);
	CHECK_EQ_U64(used_idx(), 1);
	teardown_blk();
}
