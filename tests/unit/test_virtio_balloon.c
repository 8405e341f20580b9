/* virtio-balloon without KVM: the driver's side done by hand (vdriver.c)
 * on a fake VM of 1 MiB of RAM (PFNs 0 to 0xff). */
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "config.h"
#include "pci/pci.h"
#include "unit.h"
#include "util.h"
#include "vdriver.h"
#include "virtio/balloon.h"
#include "virtio/virtio.h"

#define INFLATEQ	0
#define DEFLATEQ	1
#define STATSQ		2
#define F_STATS		(1ULL << 1)
#define F_OOM		(1ULL << 2)
#define F_REPORTING	(1ULL << 5)
#define PFNS		0x20000ULL	/* where the PFN arrays go */
#define NEEDS_RESET	0x40

static struct virtio_pci *vp;
static struct vm_config cfg;

static void setup(bool deflate_on_oom, bool reporting)
{
	vd_setup();
	memset(&cfg, 0, sizeof(cfg));
	cfg.balloon = (struct balloon_config){ true, deflate_on_oom, reporting, 0 };
	vm.cfg = &cfg;
	vp = (struct virtio_pci *)virtio_balloon_create(&vm, 1, VD_BAR);
	CHECK(vp != NULL);
	cfgw(PCI_COMMAND, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER, 2);
}

static void teardown(void)
{
	vp->f.dev.ops->destroy(&vp->f.dev);
	vd_teardown();
}

/* What the main loop does for the fd. */
static void run_watch(int fd)
{
	int i;

	for (i = 0; i < nwatch; i++)
		if (watch[i].fd == fd) {
			watch[i].fn(watch[i].opaque, 1);
			return;
		}
	CHECK(!"fd not watched");
}

/* The device's own fds, in the order it watches them: 0 the stats
 * timer, 1 the eventfd of `actual` changes. */
static int own_fd(int which)
{
	for (int i = 0; i < nwatch; i++) {
		bool queue = false;

		for (unsigned int q = 0; q < 4; q++)
			queue |= watch[i].fd == vp->queues[q].kick_fd;
		if (!queue && which-- == 0)
			return watch[i].fd;
	}
	CHECK(!"no such fd");
	return -1;
}

static void kick(unsigned int q)
{
	bw(0x3000 + 4 * q, q, 2);		/* notify (the MMIO exit path) */
	run_watch(vp->queues[q].kick_fd);
}

/* One chain of n PFNs (le32) on queue q, head 0. */
static void send_pfns(unsigned int q, const uint32_t *pfns, unsigned int n)
{
	memcpy(gm(PFNS), pfns, 4 * n);
	vq_post(q, 0, PFNS, 4 * n, 0, 0);
	vq_offer(q, 0);
	kick(q);
}

static struct virtio_balloon_info info(void)
{
	struct virtio_balloon_info in;

	CHECK(virtio_balloon_info(&vp->f.dev, &in) == 0);
	return in;
}

static bool resident(uint64_t gpa)
{
	unsigned char v = 0;

	CHECK(mincore(gm(gpa), 4096, &v) == 0);
	return v & 1;
}

static uint8_t status(void)
{
	return br(20, 1);
}

UNIT_TEST(virtio_balloon_identity_features_and_config)
{
	uint64_t n;
	int change_fd;

	setup(false, false);
	CHECK_EQ_U64(cfgr(PCI_VENDOR_ID, 4), 0x10451af4);
	CHECK_EQ_U64(br(18, 2), 4);		/* num_queues */
	bw(0, 0, 4);
	CHECK_EQ_U64(br(4, 4) & 0x3f, F_STATS);	/* no DEFLATE_ON_OOM, no REPORTING */
	teardown();

	setup(true, true);
	bw(0, 0, 4);
	CHECK_EQ_U64(br(4, 4) & 0x3f, F_STATS | F_OOM | F_REPORTING);
	vd_driver_ok(F_STATS | F_OOM | F_REPORTING, 4);
	CHECK_EQ_U64(br(0x2000, 4), 0);		/* num_pages */
	CHECK(virtio_balloon_set_target(&vp->f.dev, 1 * MiB - 64 * 4096) == 0);
	CHECK_EQ_U64(br(0x2000, 4), 64);
	CHECK(fired_for(0x40) == 1);		/* config interrupt */
	CHECK(virtio_balloon_set_target(&vp->f.dev, 1 * MiB + 4096) == -EINVAL);
	/* GUEST: num_pages is the device's; actual the driver's */
	bw(0x2000, 7, 4);
	CHECK_EQ_U64(br(0x2000, 4), 64);
	bw(0x2004, 64, 4);
	CHECK_EQ_U64(br(0x2004, 4), 64);
	CHECK_EQ_U64(info().actual, 64);
	/* the change reaches the main loop through the eventfd */
	change_fd = own_fd(1);
	CHECK(read(change_fd, &n, sizeof(n)) == sizeof(n) && n == 1);
	bw(0x2004, 64, 4);			/* unchanged: no event */
	CHECK(read(change_fd, &n, sizeof(n)) < 0);
	teardown();
}

UNIT_TEST(virtio_balloon_inflate_frees_pages_and_counts_each_once)
{
	/* GUEST: a repeated PFN counts once; PFNs past RAM and in the
	 * 32-bit hole are skipped and counted */
	uint32_t in[] = { 0x50, 0x50, 0x51, 0x100, 0xC0000, 0xffffffff };
	uint32_t out[] = { 0x50, 0x60 };

	setup(false, false);
	vd_driver_ok(F_STATS, 3);
	memset(gm(0x50000), 0xaa, 0x2000);
	CHECK(resident(0x50000) && resident(0x51000));
	send_pfns(INFLATEQ, in, ARRAY_SIZE(in));
	CHECK_EQ_U64(vq_used_idx(INFLATEQ), 1);
	CHECK_EQ_U64(info().inflated, 2);
	CHECK_EQ_U64(info().bad_pfns, 3);
	CHECK(!resident(0x50000) && !resident(0x51000));
	CHECK_EQ_U64(gm(0x50000)[0], 0);	/* gives zeros when touched again */
	CHECK(!(status() & NEEDS_RESET));
	/* deflate: 0x60 was never given, so only 0x50 counts */
	send_pfns(DEFLATEQ, out, ARRAY_SIZE(out));
	CHECK_EQ_U64(vq_used_idx(DEFLATEQ), 1);
	CHECK_EQ_U64(info().inflated, 1);
	/* a reset forgets what was given */
	bw(20, 0, 1);
	CHECK_EQ_U64(info().inflated, 0);
	teardown();
}

/* Pages are freed a run of neighbours at a time, in whichever order the
 * guest lists them (top down, as Linux and the test guest do, or up):
 * exactly the pages given, never a neighbour of a run. */
UNIT_TEST(virtio_balloon_inflate_runs_free_exactly_the_pages_given)
{
	/* GUEST: top down 0x45..0x43, a repeat, a PFN past RAM inside the
	 * run, up 0x47..0x48, then 0x46 joining nothing, 0x4a alone */
	uint32_t in[] = { 0x45, 0x44, 0x44, 0xffffffff, 0x43, 0x47, 0x48, 0x46, 0x4a };
	uint64_t pfn;

	setup(false, false);
	vd_driver_ok(F_STATS, 3);
	memset(gm(0x42000), 0xaa, 0x9000);
	send_pfns(INFLATEQ, in, ARRAY_SIZE(in));
	CHECK_EQ_U64(vq_used_idx(INFLATEQ), 1);
	CHECK_EQ_U64(info().inflated, 7);
	CHECK_EQ_U64(info().bad_pfns, 1);
	for (pfn = 0x42; pfn <= 0x4a; pfn++) {
		bool given = pfn != 0x42 && pfn != 0x49;

		CHECK(resident(pfn << 12) == !given);
		CHECK_EQ_U64(gm(pfn << 12)[0], given ? 0 : 0xaa);
	}
	CHECK(!(status() & NEEDS_RESET));
	teardown();
}

/* A paused VM's balloon frees nothing (its state may be saved already,
 * with those pages' contents); the resume looks at the queues again. */
UNIT_TEST(virtio_balloon_a_paused_vm_frees_nothing_until_resumed)
{
	uint32_t in[] = { 0x50 };

	setup(false, false);
	vd_driver_ok(F_STATS, 3);
	memset(gm(0x50000), 0xaa, 0x1000);
	vm.state = VM_PAUSED;
	send_pfns(INFLATEQ, in, ARRAY_SIZE(in));
	CHECK_EQ_U64(vq_used_idx(INFLATEQ), 0);
	CHECK_EQ_U64(info().inflated, 0);
	CHECK_EQ_U64(gm(0x50000)[0], 0xaa);
	vm.state = VM_RUNNING;
	virtio_pci_resume(&vp->f.dev);		/* what a resume calls */
	run_watch(vp->queues[INFLATEQ].kick_fd);
	CHECK_EQ_U64(vq_used_idx(INFLATEQ), 1);
	CHECK_EQ_U64(info().inflated, 1);
	CHECK_EQ_U64(gm(0x50000)[0], 0);
	teardown();
}

/* An inflate the guest notified just before a save's pause, its kick
 * still waiting in the loop behind the save: the saving kvmm's loop does
 * not free the pages; the kvmm that loads the state does, unasked. */
UNIT_TEST(virtio_balloon_a_kick_pending_at_the_save_is_run_by_the_loaded_device)
{
	struct state_buf sb = { 0 };
	uint32_t in[] = { 0x50 };

	setup(false, false);
	vd_driver_ok(F_STATS, 3);
	memset(gm(0x50000), 0xaa, 0x1000);
	vm.state = VM_RUNNING;
	memcpy(gm(PFNS), in, sizeof(in));
	vq_post(INFLATEQ, 0, PFNS, sizeof(in), 0, 0);
	vq_offer(INFLATEQ, 0);
	bw(0x3000 + 4 * INFLATEQ, INFLATEQ, 2);	/* notified; the loop has not run it */
	vm.state = VM_PAUSED;			/* the save's pause */
	CHECK(vp->f.dev.ops->save(&vp->f.dev, &sb) == 0);
	run_watch(vp->queues[INFLATEQ].kick_fd);	/* the kick, after the save */
	CHECK_EQ_U64(vq_used_idx(INFLATEQ), 0);
	CHECK_EQ_U64(gm(0x50000)[0], 0xaa);
	/* The state loaded (into the same device: the guest's memory is the
	 * saved one), the VM running. */
	CHECK(vp->f.dev.ops->load(&vp->f.dev, sb.data, sb.len) == 0);
	state_buf_free(&sb);
	vm.state = VM_RUNNING;
	run_watch(vp->queues[INFLATEQ].kick_fd);
	CHECK_EQ_U64(vq_used_idx(INFLATEQ), 1);
	CHECK_EQ_U64(info().inflated, 1);
	CHECK_EQ_U64(gm(0x50000)[0], 0);
	teardown();
}

UNIT_TEST(virtio_balloon_malformed_pfn_chains_need_reset)
{
	static uint32_t many[4097];

	setup(false, false);
	vd_driver_ok(F_STATS, 3);
	/* GUEST: a PFN array that is not whole le32s */
	vq_post(INFLATEQ, 0, PFNS, 6, 0, 0);
	vq_offer(INFLATEQ, 0);
	kick(INFLATEQ);
	CHECK(status() & NEEDS_RESET);
	CHECK_EQ_U64(vq_used_idx(INFLATEQ), 0);
	/* GUEST: more PFNs than a chain may carry */
	vd_driver_ok(F_STATS, 3);
	for (unsigned int i = 0; i < ARRAY_SIZE(many); i++)
		many[i] = 0x40;
	memcpy(gm(PFNS), many, sizeof(many));
	vq_post(DEFLATEQ, 0, PFNS, sizeof(many), 0, 0);
	vq_offer(DEFLATEQ, 0);
	kick(DEFLATEQ);
	CHECK(status() & NEEDS_RESET);
	CHECK_EQ_U64(info().inflated, 0);
	/* after a reset the device works again */
	vd_driver_ok(F_STATS, 3);
	send_pfns(INFLATEQ, many, 4096);
	CHECK_EQ_U64(vq_used_idx(INFLATEQ), 1);
	CHECK_EQ_U64(info().inflated, 1);
	teardown();
}

/* n statistics: tag i, value 1000 + i. */
static void post_stats(uint16_t head, unsigned int n, uint32_t len)
{
	uint8_t *p = gm(0x30000 + 0x100 * head);

	for (unsigned int i = 0; i < n; i++) {
		uint64_t v = 1000 + i;
		uint16_t tag = i;

		memcpy(p + 10 * i, &tag, 2);
		memcpy(p + 10 * i + 2, &v, 8);
	}
	vq_post(STATSQ, head, 0x30000 + 0x100 * head, len, 0, 0);
	vq_offer(STATSQ, head);
	kick(STATSQ);
}

UNIT_TEST(virtio_balloon_stats_are_held_and_asked_for_again)
{
	struct pollfd pfd;
	struct virtio_balloon_info in;
	int timer_fd;

	setup(false, false);
	timer_fd = own_fd(0);
	vd_driver_ok(F_STATS, 3);
	post_stats(0, 8, 80);
	CHECK_EQ_U64(vq_used_idx(STATSQ), 0);	/* kept */
	in = info();
	CHECK(in.has_stats && in.stats_valid == 0xff);
	CHECK_EQ_U64(in.stats[BALLOON_S_MEMFREE], 1004);
	CHECK_EQ_U64(in.stats[BALLOON_S_CACHES], 1007);
	/* GUEST: a size that is no whole number of statistics is refused:
	 * counted, the numbers kept; the first buffer goes back */
	post_stats(1, 2, 17);
	CHECK_EQ_U64(vq_used_idx(STATSQ), 1);
	CHECK_EQ_U64(vq_used_id(STATSQ, 0), 0);
	CHECK_EQ_U64(info().bad_stats, 1);
	CHECK_EQ_U64(info().stats[BALLOON_S_MEMFREE], 1004);
	/* the period elapses: the held buffer is given back */
	CHECK(virtio_balloon_set_stats_period(&vp->f.dev, 1) == 0);
	pfd = (struct pollfd){ .fd = timer_fd, .events = POLLIN };
	CHECK(poll(&pfd, 1, 10000) == 1);
	run_watch(timer_fd);
	CHECK_EQ_U64(vq_used_idx(STATSQ), 2);
	CHECK_EQ_U64(vq_used_id(STATSQ, 1), 1);
	CHECK_EQ_U64(vq_used_len(STATSQ, 1), 0);
	/* GUEST: unknown tags are skipped */
	post_stats(2, 12, 120);
	CHECK_EQ_U64(info().stats_valid, (1ULL << BALLOON_S_NR) - 1);
	teardown();
}

UNIT_TEST(virtio_balloon_stats_offered_before_driver_ok_are_taken_at_driver_ok)
{
	/* GUEST: Linux's virtio_balloon fills its stats queue and kicks it
	 * before it sets DRIVER_OK; that kick is ignored, and the buffer is
	 * taken once DRIVER_OK comes (else no statistics ever arrive). */
	setup(false, false);
	vd_driver_setup(F_STATS, 3);
	post_stats(0, 8, 80);
	CHECK(!info().has_stats);
	bw(20, 0x0f, 1);
	run_watch(vp->queues[STATSQ].kick_fd);
	CHECK(info().has_stats && info().stats_valid == 0xff);
	CHECK_EQ_U64(info().stats[BALLOON_S_MEMFREE], 1004);
	CHECK_EQ_U64(vq_used_idx(STATSQ), 0);	/* kept, to be asked for again */
	teardown();
}

UNIT_TEST(virtio_balloon_reported_ranges_are_discarded)
{
	/* the reporting queue follows statsq when both are negotiated, and
	 * takes its place when stats are not */
	for (unsigned int q = 2; q <= 3; q++) {
		setup(false, true);
		vd_driver_ok(q == 3 ? F_STATS | F_REPORTING : F_REPORTING, q + 1);
		memset(gm(0x80000), 0x55, 0x4000);
		vq_post(q, 0, 0x80000, 0x2000, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1);
		vq_post(q, 1, 0x82000, 0x2000, VIRTQ_DESC_F_WRITE, 0);
		vq_offer(q, 0);
		kick(q);
		CHECK_EQ_U64(vq_used_idx(q), 1);
		CHECK_EQ_U64(info().reported, 0x4000);
		CHECK(!resident(0x80000) && !resident(0x83000));
		CHECK_EQ_U64(gm(0x83fff)[0], 0);
		CHECK_EQ_U64(info().inflated, 0);
		teardown();
	}
}

UNIT_TEST(virtio_balloon_state_round_trip_with_a_held_stats_buffer)
{
	struct state_buf s = { 0 };

	setup(true, false);
	vd_driver_ok(F_STATS | F_OOM, 3);
	CHECK(virtio_balloon_set_target(&vp->f.dev, 1 * MiB - 16 * 4096) == 0);
	bw(0x2004, 16, 4);
	post_stats(0, 8, 80);
	CHECK(vp->f.dev.ops->save(&vp->f.dev, &s) == 0);
	vp->f.dev.ops->reset(&vp->f.dev);
	CHECK(vp->f.dev.ops->load(&vp->f.dev, s.data, s.len) == 0);
	CHECK_EQ_U64(br(0x2000, 4), 16);
	CHECK_EQ_U64(br(0x2004, 4), 16);
	/* the held buffer went back on the ring and is taken again */
	kick(STATSQ);
	CHECK_EQ_U64(vq_used_idx(STATSQ), 0);
	CHECK(info().has_stats);
	/* GUEST: truncated or corrupted streams are refused */
	CHECK(vp->f.dev.ops->load(&vp->f.dev, s.data, s.len - 1) == -EINVAL);
	s.data[0] = 9;
	CHECK(vp->f.dev.ops->load(&vp->f.dev, s.data, s.len) == -EINVAL);
	state_buf_free(&s);
	teardown();
}
