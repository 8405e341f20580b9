// SPDX-License-Identifier: MIT
/*
 * virtio-blk load for tools/bench/disk: kvmmtest.blkN.bench=MODE keeps
 * qd requests of bs bytes in flight (seqread, seqwrite, or randread at
 * random bs-aligned offsets) until bytes= are done or ms= have passed,
 * and reports the guest's own elapsed time (the calibrated TSC):
 *
 *   KVMMTEST info blk-bench dev=blk0 mode=seqread bs=... qd=... bytes=...
 *   reqs=... ns=... errors=... kicks=...
 *
 * Both VMMs get the same driver: completions are polled with interrupts
 * suppressed (an interrupt costs a CPL0 round trip, emulated on PVM
 * hosts), and every pass over the used ring refills what it reaped and
 * notifies once, skipped while the device says NO_NOTIFY.  Buffers come
 * from RAM past the image (the .bss stays small).  With
 * kvmmtest.blkN.abort=1 the run ends with requests still in flight:
 * the device is reset under them, brought up again and must answer one
 * read with exactly one used entry.
 */
#include "guest.h"
#include "io.h"
#include "virtio.h"

#define SECTOR		512
#define T_IN		0
#define T_OUT		1
#define AVAIL_F_NO_INTERRUPT	1
#define USED_F_NO_NOTIFY	1
#define BENCH_QSIZE	256
#define MAX_QD		(BENCH_QSIZE / 3)	/* header, data, status */
#define STALL_US	10000000ULL
#define MIB		(1024 * 1024ULL)

struct bench_req {
	u32 type;
	u32 reserved;
	u64 sector;
	u8 status;
};

struct bench {
	struct virtio_dev *v;
	struct virtq *q;
	const char *mode;
	bool write, random;
	u32 bs, qd;
	u64 disk_bytes, cursor, rng;
	u8 *bufs;
	struct bench_req *reqs;
	u64 issued, done, errors, kicks;
};

static u8 slot_of[BENCH_QSIZE];

u16 blk_bench_queue_size(int index)
{
	char key[32], val[16];

	snprintf(key, sizeof(key), "kvmmtest.blk%d.bench", index);
	return cmdline_option(key, val, sizeof(val)) ? BENCH_QSIZE : 16;
}

static u64 option(int index, const char *what, u64 dflt)
{
	char key[32], val[24];

	snprintf(key, sizeof(key), "kvmmtest.blk%d.%s", index, what);
	return cmdline_option(key, val, sizeof(val)) ? parse_u64(val, NULL) : dflt;
}

/* size bytes of e820 RAM past the image and the initrd, 2 MiB aligned. */
static u8 *free_ram(u64 size)
{
	u64 floor = ((u64)_end + 2 * MIB - 1) & ~(2 * MIB - 1);

	for (int i = 0; i < e820_count; i++) {
		u64 lo = e820[i].base, hi = e820[i].base + e820[i].size;

		if (e820[i].type != 1)
			continue;
		if (lo < floor)
			lo = floor;
		lo = (lo + 2 * MIB - 1) & ~(2 * MIB - 1);
		if (initrd_size && lo < initrd_addr + initrd_size && initrd_addr < lo + size)
			lo = (initrd_addr + initrd_size + 2 * MIB - 1) & ~(2 * MIB - 1);
		if (lo + size <= hi && mapped(lo, size))
			return (u8 *)lo;
	}
	return NULL;
}

static void notify(struct bench *b)
{
	asm volatile("mfence" : : : "memory");
	if (*(volatile u16 *)b->q->used & USED_F_NO_NOTIFY)
		return;
	mmio_write16(b->q->notify, b->q->index);
	b->kicks++;
}

static u64 next_offset(struct bench *b)
{
	u64 off;

	if (b->random) {
		b->rng ^= b->rng << 13;
		b->rng ^= b->rng >> 7;
		b->rng ^= b->rng << 17;
		return b->rng % (b->disk_bytes / b->bs) * b->bs;
	}
	if (b->cursor + b->bs > b->disk_bytes)
		b->cursor = 0;
	off = b->cursor;
	b->cursor += b->bs;
	return off;
}

static bool issue(struct bench *b, u32 slot)
{
	struct bench_req *r = &b->reqs[slot];
	struct vbuf bufs[3] = {
		{ r, 16, false },
		{ b->bufs + (u64)slot * b->bs, b->bs, !b->write },
		{ &r->status, 1, true },
	};
	int head;

	r->type = b->write ? T_OUT : T_IN;
	r->reserved = 0;
	r->sector = next_offset(b) / SECTOR;
	r->status = 0xff;
	head = virtq_add(b->q, bufs, 3);
	if (head < 0)
		return false;
	slot_of[head] = slot;
	b->issued++;
	return true;
}

/* Reaps what is used; false once nothing has completed for too long. */
static bool reap(struct bench *b, u64 want, u64 until, u64 *last)
{
	u32 id, len, refilled = 0;

	while (virtq_poll(b->q, &id, &len)) {
		u32 slot = id < BENCH_QSIZE ? slot_of[id] : 0;

		if (id >= BENCH_QSIZE || b->reqs[slot].status != 0)
			b->errors++;
		b->done++;
		*last = rdtsc();
		if (b->issued < want && (!until || *last < until) && issue(b, slot))
			refilled++;
	}
	if (refilled)
		notify(b);
	else
		cpu_relax();
	return (rdtsc() - *last) / tsc_khz * 1000 < STALL_US;
}

/* Reset with requests in flight, bring the queue up again, one read. */
static void reset_in_flight(struct bench *b, u64 features)
{
	u64 t, last;
	u32 id, len;

	virtio_reset(b->v);
	if (!virtio_init(b->v, features, 1, BENCH_QSIZE) || !virtio_driver_ok(b->v))
		return;
	b->q = &b->v->vq[0];	/* interrupts on: one read, and they are counted */
	b->write = false;
	b->random = false;
	b->cursor = 0;
	b->issued = b->done = b->errors = 0;
	issue(b, 0);
	notify(b);
	last = rdtsc();
	while (!b->done && reap(b, 1, 0, &last))
		;
	/* Anything more is a completion from before the reset. */
	t = now_us();
	while (now_us() - t < 200000)
		if (virtq_poll(b->q, &id, &len))
			b->done++;
	if (b->done == 1 && !b->errors && virtio_check_status(b->v))
		pass("virtio-blk-bench-reset", "dev=%s read after reset", b->v->name);
	else
		fail("virtio-blk-bench-reset", "dev=%s used=%lu errors=%lu after reset",
		     b->v->name, b->done, b->errors);
}

void blk_bench_run(struct virtio_dev *v, int index, u64 capacity, u32 blk_size,
		   u64 features)
{
	struct bench b = { .v = v, .q = &v->vq[0], .rng = 0x9e3779b97f4a7c15ULL };
	char key[32], mode[16];
	u64 want, until = 0, ms, t0, t1, last;
	bool abort;

	snprintf(key, sizeof(key), "kvmmtest.blk%d.bench", index);
	if (!cmdline_option(key, mode, sizeof(mode)))
		return;
	b.write = !strcmp(mode, "seqwrite");
	b.random = !strcmp(mode, "randread");
	if (!b.write && !b.random && strcmp(mode, "seqread")) {
		fail("virtio-blk-bench", "dev=%s mode=%s: want seqread, seqwrite or randread",
		     v->name, mode);
		return;
	}
	b.mode = mode;
	b.bs = option(index, "bs", b.random ? 4096 : MIB);
	b.qd = option(index, "qd", 16);
	b.disk_bytes = capacity * SECTOR;
	want = option(index, "bytes", b.disk_bytes);
	ms = option(index, "ms", 0);
	abort = option(index, "abort", 0);
	if (b.bs % SECTOR || b.bs % blk_size || !b.bs || b.bs > b.disk_bytes ||
	    !b.qd || b.qd > MAX_QD || v->vq[0].size < 3 * b.qd) {
		fail("virtio-blk-bench", "dev=%s bs=%u qd=%u: want bs a multiple of %u up to the disk's size, qd 1..%d",
		     v->name, b.bs, b.qd, blk_size > SECTOR ? blk_size : SECTOR, MAX_QD);
		return;
	}
	if (b.write && (features & 1ULL << 5)) {	/* VIRTIO_BLK_F_RO */
		fail("virtio-blk-bench", "dev=%s is read-only", v->name);
		return;
	}
	b.bufs = free_ram((u64)b.qd * b.bs);
	b.reqs = dma_alloc(sizeof(*b.reqs) * b.qd, 16);
	if (!b.bufs || !b.reqs) {
		fail("virtio-blk-bench", "dev=%s no room for %u buffers of %u bytes",
		     v->name, b.qd, b.bs);
		return;
	}
	memset(b.bufs, 0x5a, (u64)b.qd * b.bs);
	want = (want + b.bs - 1) / b.bs;	/* requests */

	b.q->avail[0] = AVAIL_F_NO_INTERRUPT;
	t0 = last = rdtsc();
	if (ms)
		until = t0 + ms * tsc_khz;
	for (u32 i = 0; i < b.qd && b.issued < want; i++)
		issue(&b, i);
	notify(&b);
	while (b.done < b.issued) {
		if (!reap(&b, want, until, &last)) {
			fail("virtio-blk-bench", "dev=%s stalled: %lu of %lu requests done",
			     v->name, b.done, b.issued);
			virtio_check_status(v);
			/* Its requests still out, the queue is no use to a
			 * later request (it would reap theirs). */
			v->broken = true;
			return;
		}
		if (abort && b.done >= b.qd)
			break;
	}
	t1 = rdtsc();
	b.q->avail[0] = 0;
	info("blk-bench dev=%s mode=%s bs=%u qd=%u bytes=%lu reqs=%lu ns=%lu errors=%lu kicks=%lu",
	     v->name, mode, b.bs, b.qd, b.done * b.bs, b.done,
	     (t1 - t0) * 1000000 / tsc_khz, b.errors, b.kicks);
	if (b.errors)
		fail("virtio-blk-bench", "dev=%s %lu of %lu requests failed", v->name,
		     b.errors, b.done);
	else
		pass("virtio-blk-bench", "dev=%s mode=%s reqs=%lu", v->name, mode, b.done);
	if (abort)
		reset_in_flight(&b, features);
}
