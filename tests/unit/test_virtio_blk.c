/* virtio-blk's ordering over the block layer, with an I/O engine the
 * test drives by hand (blk_engine.c, linked in place of io_uring): which
 * requests are in flight at each step, and in which order they come
 * back. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "blk_engine.h"
#include "config.h"
#include "unit.h"
#include "util.h"
#include "vdriver.h"
#include "virtio/blk.h"
#include "virtio/virtio.h"
#include "vm.h"

#define HDR(k)		(0x10000ULL + 0x100 * (k))
#define DATA(k)		(0x20000ULL + 0x1000 * (k))
#define STATUS(k)	(0x30000ULL + (k))
#define IMG_SECTORS	64
#define T_OUT		1
#define T_FLUSH		4
#define T_WRITE_ZEROES	13
#define F_FLUSH		(1ULL << 9)
#define F_WRITE_ZEROES	(1ULL << 14)

static struct virtio_pci *vp;
static struct vm_config cfg;
static char img[64];

static void setup(enum disk_cache cache)
{
	static const uint8_t junk[IMG_SECTORS * 512] = { [0 ... IMG_SECTORS * 512 - 1] = 0xee };
	int fd;

	unsetenv("KVMM_NO_IO_URING");	/* the engine, not the synchronous path */
	strcpy(img, "/tmp/kvmm-unit-blk-XXXXXX");
	fd = mkstemp(img);
	CHECK(fd >= 0);
	CHECK(write(fd, junk, sizeof(junk)) == (ssize_t)sizeof(junk));
	close(fd);
	memset(&cfg, 0, sizeof(cfg));
	cfg.ndisks = 1;
	cfg.disks[0] = (struct disk_config){ .path = img, .cache = cache,
					     .blk_size = 512 };
	vd_setup();
	vm.cfg = &cfg;
	vp = (struct virtio_pci *)virtio_blk_create(&vm, 0, 1, VD_BAR);
	CHECK(vp != NULL);
	cfgw(PCI_COMMAND, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER, 2);
	vd_driver_ok(F_FLUSH | F_WRITE_ZEROES, 1);
}

static void teardown(void)
{
	vp->f.dev.ops->destroy(&vp->f.dev);
	vd_teardown();
	unlink(img);
}

/* What the main loop does, until nothing is ready: the queue's kicks
 * and the engine's completions. */
static void run_loop(void)
{
	bool ran = true;
	int i;

	while (ran) {
		ran = false;
		for (i = 0; i < nwatch; i++) {
			struct pollfd p = { .fd = watch[i].fd, .events = POLLIN };

			if (poll(&p, 1, 0) == 1) {
				watch[i].fn(watch[i].opaque, EPOLLIN);
				ran = true;
			}
		}
	}
}

static void header(unsigned int k, uint32_t type, uint64_t sector)
{
	memcpy(gm(HDR(k)), &type, 4);
	memset(gm(HDR(k) + 4), 0, 4);
	memcpy(gm(HDR(k) + 8), &sector, 8);
	*gm(STATUS(k)) = 0xff;
}

/* Request k on descriptors d, d+1, d+2: a write of one sector of fill,
 * or (zeroes) a WRITE_ZEROES segment of one sector. */
static void post_write(uint16_t d, unsigned int k, uint64_t sector, uint8_t fill, bool zeroes)
{
	header(k, zeroes ? T_WRITE_ZEROES : T_OUT, 0);
	if (zeroes) {
		struct { uint64_t sector; uint32_t num, flags; } seg = { sector, 1, 0 };

		memcpy(gm(DATA(k)), &seg, sizeof(seg));
		vq_post(0, d + 1, DATA(k), sizeof(seg), VIRTQ_DESC_F_NEXT, d + 2);
	} else {
		memcpy(gm(HDR(k) + 8), &sector, 8);
		memset(gm(DATA(k)), fill, 512);
		vq_post(0, d + 1, DATA(k), 512, VIRTQ_DESC_F_NEXT, d + 2);
	}
	vq_post(0, d, HDR(k), 16, VIRTQ_DESC_F_NEXT, d + 1);
	vq_post(0, d + 2, STATUS(k), 1, VIRTQ_DESC_F_WRITE, 0);
	vq_offer(0, d);
}

/* Request k on descriptors d, d+1: a FLUSH. */
static void post_flush(uint16_t d, unsigned int k)
{
	header(k, T_FLUSH, 0);
	vq_post(0, d, HDR(k), 16, VIRTQ_DESC_F_NEXT, d + 1);
	vq_post(0, d + 1, STATUS(k), 1, VIRTQ_DESC_F_WRITE, 0);
	vq_offer(0, d);
}

static void kick(void)
{
	bw(0x3000, 0, 2);		/* notify queue 0 (the MMIO exit path) */
	run_loop();
}

static uint8_t sector_byte(uint64_t sector)
{
	uint8_t b = 0;
	int fd = open(img, O_RDONLY);

	CHECK(fd >= 0);
	CHECK(pread(fd, &b, 1, sector * 512) == 1);
	close(fd);
	return b;
}

/* A FLUSH behind writes in flight waits for every one of them: the
 * engine gets it only once both writes came back, in whatever order. */
UNIT_TEST(virtio_blk_flush_waits_for_the_writes_before_it)
{
	struct virtio_blk_stats st;

	setup(DISK_CACHE_WRITEBACK);
	post_write(0, 0, 2, 0x11, false);
	post_write(3, 1, 9, 0x22, false);
	post_flush(6, 2);
	kick();
	CHECK_EQ_U64(he_held(), 2);		/* the writes; the flush waits */
	CHECK(he_op(0) == BLOCK_WRITE && he_op(1) == BLOCK_WRITE);
	CHECK_EQ_U64(vq_used_idx(0), 0);
	he_finish(1);				/* the second write first */
	run_loop();
	CHECK_EQ_U64(vq_used_idx(0), 1);
	CHECK_EQ_U64(vq_used_id(0, 0), 3);
	CHECK_EQ_U64(he_held(), 1);		/* still no flush */
	CHECK(he_op(0) == BLOCK_WRITE);
	he_finish(0);
	run_loop();
	CHECK_EQ_U64(vq_used_idx(0), 2);
	CHECK_EQ_U64(vq_used_id(0, 1), 0);
	CHECK_EQ_U64(he_held(), 1);		/* now the flush */
	CHECK(he_op(0) == BLOCK_FLUSH);
	CHECK_EQ_U64(*gm(STATUS(2)), 0xff);
	he_finish(0);
	run_loop();
	CHECK_EQ_U64(vq_used_idx(0), 3);
	CHECK_EQ_U64(vq_used_id(0, 2), 6);
	CHECK_EQ_U64(*gm(STATUS(0)), 0);
	CHECK_EQ_U64(*gm(STATUS(1)), 0);
	CHECK_EQ_U64(*gm(STATUS(2)), 0);
	CHECK(virtio_blk_stats(&vp->f.dev, &st) == 0);
	CHECK_EQ_U64(st.flush_reqs, 1);
	CHECK_EQ_U64(st.syncs, 1);
	CHECK_EQ_U64(sector_byte(2), 0x11);
	CHECK_EQ_U64(sector_byte(9), 0x22);
	teardown();
}

/* WRITE_ZEROES is a barrier too: a write in flight to the same sector
 * lands first, and the zeroes after it. */
UNIT_TEST(virtio_blk_write_zeroes_waits_for_the_writes_before_it)
{
	setup(DISK_CACHE_WRITEBACK);
	post_write(0, 0, 5, 0x33, false);
	post_write(3, 1, 5, 0, true);
	kick();
	CHECK_EQ_U64(he_held(), 1);
	CHECK_EQ_U64(vq_used_idx(0), 0);	/* the zeroes wait */
	CHECK_EQ_U64(sector_byte(5), 0xee);
	he_finish(0);
	run_loop();
	CHECK_EQ_U64(vq_used_idx(0), 2);
	CHECK_EQ_U64(vq_used_id(0, 0), 0);
	CHECK_EQ_U64(vq_used_id(0, 1), 3);
	CHECK_EQ_U64(*gm(STATUS(0)), 0);
	CHECK_EQ_U64(*gm(STATUS(1)), 0);
	CHECK_EQ_U64(sector_byte(5), 0);
	teardown();
}

/* The engine fails: what it held runs here and completes, and the disk
 * goes on without it. */
UNIT_TEST(virtio_blk_engine_failure_falls_back_to_synchronous_io)
{
	struct virtio_blk_stats st;

	setup(DISK_CACHE_WRITEBACK);
	he_submit_error = -EIO;
	post_write(0, 0, 3, 0x44, false);
	post_write(3, 1, 4, 0x55, false);
	kick();
	CHECK_EQ_U64(he_held(), 0);
	CHECK_EQ_U64(vq_used_idx(0), 2);
	CHECK_EQ_U64(*gm(STATUS(0)), 0);
	CHECK_EQ_U64(*gm(STATUS(1)), 0);
	CHECK_EQ_U64(sector_byte(3), 0x44);
	CHECK_EQ_U64(sector_byte(4), 0x55);
	post_flush(6, 2);
	kick();
	CHECK_EQ_U64(he_held(), 0);		/* synchronous from now on */
	CHECK_EQ_U64(vq_used_idx(0), 3);
	CHECK_EQ_U64(*gm(STATUS(2)), 0);
	CHECK(virtio_blk_stats(&vp->f.dev, &st) == 0);
	CHECK_EQ_U64(st.syncs, 1);
	CHECK_EQ_U64(st.wr_bytes, 1024);
	teardown();
}

/* With cache=unsafe a FLUSH completes at once, without the engine and
 * without a sync. */
UNIT_TEST(virtio_blk_unsafe_flush_issues_no_sync)
{
	struct virtio_blk_stats st;

	setup(DISK_CACHE_UNSAFE);
	post_flush(0, 0);
	kick();
	CHECK_EQ_U64(he_held(), 0);
	CHECK_EQ_U64(vq_used_idx(0), 1);
	CHECK_EQ_U64(*gm(STATUS(0)), 0);
	CHECK(virtio_blk_stats(&vp->f.dev, &st) == 0);
	CHECK_EQ_U64(st.flush_reqs, 1);
	CHECK_EQ_U64(st.syncs, 0);
	teardown();
}
