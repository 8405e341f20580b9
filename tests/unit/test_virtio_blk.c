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
#define T_IN		0
#define T_OUT		1
#define T_FLUSH		4
#define T_WRITE_ZEROES	13
#define F_FLUSH		(1ULL << 9)
#define F_WRITE_ZEROES	(1ULL << 14)

static struct virtio_pci *vp;
static struct vm_config cfg;
static enum disk_error_policy setup_rerror;	/* the next setup's rerror_policy */
static char img[64];

static void setup_with(enum disk_cache cache, enum disk_error_policy werror)
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
					     .blk_size = 512, .werror = werror,
					     .rerror = setup_rerror };
	vd_setup();
	vm.cfg = &cfg;
	vp = (struct virtio_pci *)virtio_blk_create(&vm, 0, 1, VD_BAR);
	CHECK(vp != NULL);
	cfgw(PCI_COMMAND, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER, 2);
	vd_driver_ok(F_FLUSH | F_WRITE_ZEROES, 1);
}

static void setup(enum disk_cache cache)
{
	setup_with(cache, DISK_ERROR_DEFAULT);
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

/* Request k on descriptors d, d+1, d+2: a read of one sector. */
static void post_read(uint16_t d, unsigned int k, uint64_t sector)
{
	header(k, T_IN, sector);
	vq_post(0, d, HDR(k), 16, VIRTQ_DESC_F_NEXT, d + 1);
	vq_post(0, d + 1, DATA(k), 512, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, d + 2);
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

/* What vm_resume does for a disk: the requests an I/O error held are
 * restarted (devices_resume), then the transport looks at every ready
 * queue again (virtio_pci_resume). */
static void resume(void)
{
	vm.state = VM_RUNNING;
	CHECK(virtio_blk_retry(&vp->f.dev) == 0);
	virtio_pci_resume(&vp->f.dev);
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

/* Error policy stop: a write the host fails with ENOSPC is held, not
 * answered; the disk takes no new requests and a FLUSH behind it waits;
 * the error goes to the VM (vm_io_error) to pause it; a save is refused;
 * the resume starts it again, and then the rest runs. */
UNIT_TEST(virtio_blk_error_policy_stop_holds_and_retries)
{
	struct virtio_blk_stats st;
	struct state_buf sb = { 0 };

	setup(DISK_CACHE_WRITEBACK);		/* default werror: enospace */
	post_write(0, 0, 2, 0x11, false);
	post_write(3, 1, 9, 0x22, false);
	post_flush(6, 2);
	kick();
	CHECK_EQ_U64(he_held(), 2);
	he_fail(0, ENOSPC);
	he_finish(0);				/* the second write */
	run_loop();
	CHECK_EQ_U64(vd_nio_errors, 1);
	CHECK_STR(vd_io_errors[0].device, "disk0");
	CHECK_STR(vd_io_errors[0].op, "write");
	CHECK_STR(vd_io_errors[0].action, "stop");
	CHECK_EQ_U64(vd_io_errors[0].error, ENOSPC);
	CHECK_EQ_U64(vq_used_idx(0), 1);	/* the second write only */
	CHECK_EQ_U64(vq_used_id(0, 0), 3);
	CHECK_EQ_U64(he_held(), 0);		/* the flush waits for the held write */
	CHECK_EQ_U64(*gm(STATUS(0)), 0xff);
	CHECK(virtio_blk_stats(&vp->f.dev, &st) == 0);
	CHECK_EQ_U64(st.failed, 1);
	CHECK_EQ_U64(st.errors, 0);
	CHECK_EQ_U64(st.io_status, ENOSPC);
	post_write(3, 3, 20, 0x33, false);	/* not taken while one is held */
	kick();
	CHECK_EQ_U64(he_held(), 0);
	CHECK(vp->f.dev.ops->save(&vp->f.dev, &sb) == -EBUSY);
	state_buf_free(&sb);

	resume();
	CHECK_EQ_U64(he_held(), 1);		/* the write, again */
	CHECK(he_op(0) == BLOCK_WRITE && he_off(0) == 2 * 512);
	CHECK(virtio_blk_stats(&vp->f.dev, &st) == 0);
	CHECK_EQ_U64(st.io_status, 0);
	he_finish(0);
	run_loop();
	CHECK_EQ_U64(vq_used_idx(0), 2);
	CHECK_EQ_U64(vq_used_id(0, 1), 0);
	CHECK_EQ_U64(*gm(STATUS(0)), 0);
	/* Now the flush, and popping goes on behind it: the third write. */
	CHECK_EQ_U64(he_held(), 2);
	CHECK(he_op(0) == BLOCK_FLUSH);
	CHECK(he_op(1) == BLOCK_WRITE && he_off(1) == 20 * 512);
	he_finish(1);
	he_finish(0);
	run_loop();
	CHECK_EQ_U64(vq_used_idx(0), 4);
	CHECK_EQ_U64(sector_byte(2), 0x11);
	CHECK_EQ_U64(sector_byte(20), 0x33);
	resume();				/* nothing held: nothing to do */
	CHECK_EQ_U64(he_held(), 0);
	CHECK_EQ_U64(vq_used_idx(0), 4);
	teardown();
}

/* A paused VM's disk takes no new request (its state may be saved
 * already): the transport holds the guest's kicks, and the resume looks
 * at the queue again.  Every request notified while paused then runs
 * once: none lost, none run twice for the kicks that were held. */
UNIT_TEST(virtio_blk_a_paused_vm_pops_nothing_until_resumed)
{
	setup(DISK_CACHE_WRITEBACK);
	vm.state = VM_PAUSED;
	post_read(0, 0, 5);
	kick();
	post_read(3, 1, 6);
	kick();
	CHECK_EQ_U64(he_held(), 0);
	CHECK_EQ_U64(vq_used_idx(0), 0);
	resume();
	CHECK_EQ_U64(he_held(), 2);
	CHECK(he_op(0) == BLOCK_READ && he_off(0) == 5 * 512);
	CHECK(he_op(1) == BLOCK_READ && he_off(1) == 6 * 512);
	he_finish(0);
	he_finish(0);
	run_loop();
	CHECK_EQ_U64(vq_used_idx(0), 2);
	CHECK_EQ_U64(*gm(STATUS(0)), 0);
	CHECK_EQ_U64(*gm(STATUS(1)), 0);
	/* A second resume, and the guest's next kick, find nothing new. */
	resume();
	kick();
	CHECK_EQ_U64(he_held(), 0);
	CHECK_EQ_U64(vq_used_idx(0), 2);
	CHECK_EQ_U64(vd_nio_errors, 0);
	teardown();
}

/* A save while one read is in flight and the guest has just notified
 * another, whose kick still waits in the main loop behind the save: the
 * save completes the first; the second is left to the state (the saving
 * kvmm's loop, going on after the save, does not start it); the kvmm
 * that loads the state starts it without a new kick from the guest,
 * which is waiting for it. */
UNIT_TEST(virtio_blk_a_kick_pending_at_the_save_is_run_by_the_loaded_device)
{
	struct state_buf sb = { 0 };

	setup(DISK_CACHE_WRITEBACK);
	vm.state = VM_RUNNING;
	post_read(0, 0, 5);
	kick();
	CHECK_EQ_U64(he_held(), 1);
	post_read(3, 1, 6);
	bw(0x3000, 0, 2);			/* notified; the loop has not run it */
	vm.state = VM_PAUSED;			/* the save's pause */
	CHECK(vp->f.dev.ops->save(&vp->f.dev, &sb) == 0);
	CHECK_EQ_U64(vq_used_idx(0), 1);	/* the read in flight, completed */
	CHECK_EQ_U64(vq_used_id(0, 0), 0);
	run_loop();				/* the kick, after the save */
	CHECK_EQ_U64(he_held(), 0);
	CHECK_EQ_U64(vq_used_idx(0), 1);
	/* The state loaded (here into the same device: the guest's memory
	 * is the saved one), the VM running. */
	CHECK(vp->f.dev.ops->load(&vp->f.dev, sb.data, sb.len) == 0);
	state_buf_free(&sb);
	vm.state = VM_RUNNING;
	run_loop();
	CHECK_EQ_U64(he_held(), 1);
	CHECK(he_op(0) == BLOCK_READ && he_off(0) == 6 * 512);
	he_finish(0);
	run_loop();
	CHECK_EQ_U64(vq_used_idx(0), 2);
	CHECK_EQ_U64(vq_used_id(0, 1), 3);
	CHECK_EQ_U64(*gm(STATUS(1)), 0);
	teardown();
}

/* Error policy report fails the request at once; ignore answers OK;
 * enospace (the default) reports what is not ENOSPC. */
UNIT_TEST(virtio_blk_error_policy_report_and_ignore)
{
	struct virtio_blk_stats st;

	setup_with(DISK_CACHE_WRITEBACK, DISK_ERROR_REPORT);
	post_write(0, 0, 2, 0x11, false);
	kick();
	he_fail(0, ENOSPC);
	run_loop();
	CHECK_EQ_U64(vq_used_idx(0), 1);
	CHECK_EQ_U64(*gm(STATUS(0)), 1);	/* IOERR */
	CHECK_STR(vd_io_errors[0].action, "report");
	CHECK(virtio_blk_stats(&vp->f.dev, &st) == 0);
	CHECK_EQ_U64(st.failed, 1);
	CHECK_EQ_U64(st.invalid, 0);
	CHECK_EQ_U64(st.errors, 1);
	teardown();
	setup_with(DISK_CACHE_WRITEBACK, DISK_ERROR_IGNORE);
	post_write(0, 0, 2, 0x11, false);
	kick();
	he_fail(0, EIO);
	run_loop();
	CHECK_EQ_U64(vq_used_idx(0), 1);
	CHECK_EQ_U64(*gm(STATUS(0)), 0);
	CHECK_STR(vd_io_errors[0].action, "ignore");
	teardown();
	/* The default, enospace: an error other than ENOSPC is reported. */
	setup(DISK_CACHE_WRITEBACK);
	post_write(0, 0, 2, 0x11, false);
	kick();
	he_fail(0, EIO);
	run_loop();
	CHECK_EQ_U64(vq_used_idx(0), 1);
	CHECK_EQ_U64(*gm(STATUS(0)), 1);
	CHECK_STR(vd_io_errors[0].action, "report");
	CHECK_EQ_U64(vd_io_errors[0].error, EIO);
	teardown();
}

/* CONFIG_WCE: the writeback byte (config offset 32) reads 1 on a
 * writeback disk; at 0 a write is synced before it completes (a sync
 * with no FLUSH), back at 1 it is not; a reset makes it 1 again; other
 * config bytes are not writable. */
UNIT_TEST(virtio_blk_config_wce_turns_the_write_cache_off)
{
	struct virtio_blk_stats st;

	setup(DISK_CACHE_WRITEBACK);
	CHECK_EQ_U64(br(0x2000 + 32, 1), 1);
	bw(0x2000, 0x55, 4);			/* capacity: read-only */
	CHECK_EQ_U64(br(0x2000, 4), IMG_SECTORS);
	bw(0x2000 + 32, 0, 1);
	CHECK_EQ_U64(br(0x2000 + 32, 1), 0);
	post_write(0, 0, 2, 0x11, false);
	kick();
	he_finish(0);
	run_loop();
	CHECK_EQ_U64(*gm(STATUS(0)), 0);
	CHECK(virtio_blk_stats(&vp->f.dev, &st) == 0);
	CHECK_EQ_U64(st.flush_reqs, 0);
	CHECK_EQ_U64(st.syncs, 1);
	bw(0x2000 + 32, 1, 1);
	post_write(3, 1, 3, 0x22, false);
	kick();
	he_finish(0);
	run_loop();
	CHECK_EQ_U64(*gm(STATUS(1)), 0);
	CHECK(virtio_blk_stats(&vp->f.dev, &st) == 0);
	CHECK_EQ_U64(st.syncs, 1);
	bw(0x2000 + 32, 0, 1);
	vd_driver_ok(F_FLUSH | F_WRITE_ZEROES, 1);	/* resets the device first */
	CHECK_EQ_U64(br(0x2000 + 32, 1), 1);
	teardown();
}

/* Reads go by rerror_policy: by default (report) even ENOSPC fails the
 * read; with stop it is held and retried like a write. */
UNIT_TEST(virtio_blk_read_error_policy)
{
	struct virtio_blk_stats st;

	setup(DISK_CACHE_WRITEBACK);
	post_read(0, 0, 4);
	kick();
	CHECK_EQ_U64(he_held(), 1);
	he_fail(0, ENOSPC);
	run_loop();
	CHECK_EQ_U64(vq_used_idx(0), 1);
	CHECK_EQ_U64(*gm(STATUS(0)), 1);
	CHECK_STR(vd_io_errors[0].op, "read");
	CHECK_STR(vd_io_errors[0].action, "report");
	teardown();

	setup_rerror = DISK_ERROR_STOP;
	setup(DISK_CACHE_WRITEBACK);
	setup_rerror = DISK_ERROR_DEFAULT;
	post_read(0, 0, 4);
	kick();
	he_fail(0, EIO);
	run_loop();
	CHECK_EQ_U64(vq_used_idx(0), 0);	/* held */
	CHECK_STR(vd_io_errors[0].action, "stop");
	CHECK(virtio_blk_stats(&vp->f.dev, &st) == 0);
	CHECK_EQ_U64(st.io_status, EIO);
	resume();
	CHECK_EQ_U64(he_held(), 1);
	CHECK(he_op(0) == BLOCK_READ);
	he_finish(0);
	run_loop();
	CHECK_EQ_U64(vq_used_idx(0), 1);
	CHECK_EQ_U64(*gm(STATUS(0)), 0);
	CHECK_EQ_U64(*gm(DATA(0)), 0xee);	/* the image's byte */
	teardown();
}
