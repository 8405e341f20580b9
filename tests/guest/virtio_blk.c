// SPDX-License-Identifier: MIT
/*
 * virtio-blk (virtio spec 5.2): capacity, blk_size, read-only, serial
 * (GET_ID), and on request: a CRC32 of a sector range, a pattern written
 * and flushed and read back, WRITE_ZEROES, DISCARD.  Options, per disk
 * N in bus order: kvmmtest.blkN.{read,write,zeroes,discard}=START+COUNT
 * (512-byte sectors, as virtio-blk counts them); kvmmtest.blkN.wflush=START+COUNT
 * writes, flushes and flushes again, reporting each status (the host's
 * error policies); kvmmtest.blkN.noflush=START+COUNT writes without a
 * flush, after kvmmtest.blkN.wce=0|1 if given (CONFIG_WCE's writeback
 * byte); kvmmtest.blkN.resize=SECS
 * waits for the host to resize the disk; kvmmtest.blkN.bench=MODE runs
 * blk_bench.c's load last.
 */
#include "guest.h"
#include "io.h"
#include "virtio.h"

#define F_SIZE_MAX	1
#define F_SEG_MAX	2
#define F_RO		5
#define F_BLK_SIZE	6
#define F_FLUSH		9
#define F_DISCARD	13
#define F_WRITE_ZEROES	14
#define F_CONFIG_WCE	11

#define CFG_CAPACITY	0
#define CFG_SIZE_MAX	8
#define CFG_SEG_MAX	12
#define CFG_BLK_SIZE	20
#define CFG_MAX_DISCARD	36
#define CFG_MAX_WZ	48
#define CFG_WCE		32

#define T_IN		0
#define T_OUT		1
#define T_FLUSH		4
#define T_GET_ID	8
#define T_DISCARD	11
#define T_WRITE_ZEROES	13

#define S_OK		0
#define S_IOERR		1
#define S_UNSUPP	2

#define SECTOR		512
#define BUF_BYTES	(64 * 1024)
#define DEFAULT_READ	64

struct req_hdr {
	u32 type;
	u32 reserved;
	u64 sector;
};

struct discard_seg {
	u64 sector;
	u32 num_sectors;
	u32 flags;
};

struct blk {
	struct virtio_dev *v;
	struct req_hdr *hdr;
	u8 *status;
	struct discard_seg *seg;
	u8 *buf;
	u32 chunk;	/* bytes per request */
	u64 capacity;
	bool ro;
};

static u8 *shared_buf;

/* The disks driven, for later reads (virtio_blk_read_crc). */
#define BLK_KEPT	4
static struct blk kept[BLK_KEPT];

static const char *status_name(int s)
{
	switch (s) {
	case S_OK:
		return "ok";
	case S_IOERR:
		return "ioerr";
	case S_UNSUPP:
		return "unsupp";
	}
	return "bad";
}

/* One request: header, optional data, status.  The status, or -1. */
static int request(struct blk *b, u32 type, u64 sector, void *data,
		   u32 len, bool data_in)
{
	struct vbuf bufs[3];
	int n = 0;

	b->hdr->type = type;
	b->hdr->reserved = 0;
	b->hdr->sector = sector;
	*b->status = 0xff;
	bufs[n++] = (struct vbuf){ b->hdr, sizeof(*b->hdr), false };
	if (len)
		bufs[n++] = (struct vbuf){ data, len, data_in };
	bufs[n++] = (struct vbuf){ b->status, 1, true };
	if (virtq_transfer(b->v, &b->v->vq[0], bufs, n, NULL) < 0)
		return -1;
	return *b->status;
}

/* request(), waiting up to 120 s: the host may pause the VM on an I/O
 * error and resume it once that is fixed. */
static int request_patient(struct blk *b, u32 type, u64 sector, void *data, u32 len)
{
	struct virtq *q = &b->v->vq[0];
	struct vbuf bufs[3];
	int n = 0, head;
	u32 id, l;

	b->hdr->type = type;
	b->hdr->reserved = 0;
	b->hdr->sector = sector;
	*b->status = 0xff;
	bufs[n++] = (struct vbuf){ b->hdr, sizeof(*b->hdr), false };
	if (len)
		bufs[n++] = (struct vbuf){ data, len, false };
	bufs[n++] = (struct vbuf){ b->status, 1, true };
	head = virtq_add(q, bufs, n);
	if (head < 0)
		return -1;
	virtq_kick(b->v, q);
	if (!virtq_wait(b->v, q, &id, &l, 120000000) || id != (u32)head) {
		fail("virtio-blk-wflush", "dev=%s no completion in 120 s", b->v->name);
		return -1;
	}
	return *b->status;
}

/* Byte i of sector s as written by kvmmtest.blkN.write (README). */
static void fill_pattern(u8 *p, u64 s)
{
	for (int i = 0; i < 8; i++)
		p[i] = s >> (8 * i);
	for (int i = 8; i < SECTOR; i++)
		p[i] = (u8)(s * 37 + i);
}

static bool range_option(int index, const char *what, u64 *start, u64 *count)
{
	char key[32], val[48];
	const char *p;

	snprintf(key, sizeof(key), "kvmmtest.blk%d.%s", index, what);
	if (!cmdline_option(key, val, sizeof(val)))
		return false;
	*start = parse_u64(val, &p);
	*count = *p == '+' ? parse_u64(p + 1, NULL) : 1;
	return true;
}

static bool in_range(struct blk *b, const char *check, u64 start, u64 count)
{
	if (count && start < b->capacity && count <= b->capacity - start)
		return true;
	fail(check, "dev=%s sector=%lu count=%lu beyond capacity %lu",
	     b->v->name, start, count, b->capacity);
	return false;
}

/* CRC32 of sectors [start, start+count) as read; false if a read failed. */
static bool read_crc(struct blk *b, const char *check, u64 start, u64 count,
		     u32 *crc)
{
	*crc = 0;
	for (u64 s = start; s < start + count;) {
		u32 n = b->chunk / SECTOR;
		int st;

		if (n > start + count - s)
			n = start + count - s;
		st = request(b, T_IN, s, b->buf, n * SECTOR, true);
		if (st != S_OK) {
			if (st >= 0)
				fail(check, "dev=%s read sector=%lu status=%s",
				     b->v->name, s, status_name(st));
			return false;
		}
		*crc = crc32(*crc, b->buf, n * SECTOR);
		s += n;
	}
	return true;
}

static void do_read(struct blk *b, u64 start, u64 count)
{
	u32 crc;

	if (in_range(b, "virtio-blk-read", start, count) &&
	    read_crc(b, "virtio-blk-read", start, count, &crc))
		pass("virtio-blk-read", "dev=%s sector=%lu count=%lu crc32=0x%08x",
		     b->v->name, start, count, crc);
}

/*
 * Pattern, FLUSH, read back.  On a read-only disk the write must be
 * refused (IOERR or UNSUPP, 5.2.6.2) and is reported as such.
 */
static void do_write(struct blk *b, u64 start, u64 count)
{
	u32 want = 0, got;
	int st = S_OK;

	if (!in_range(b, "virtio-blk-write", start, count))
		return;
	for (u64 s = start; s < start + count && st == S_OK;) {
		u32 n = b->chunk / SECTOR;

		if (n > start + count - s)
			n = start + count - s;
		for (u32 i = 0; i < n; i++)
			fill_pattern(b->buf + i * SECTOR, s + i);
		want = crc32(want, b->buf, n * SECTOR);
		st = request(b, T_OUT, s, b->buf, n * SECTOR, false);
		s += n;
	}
	if (st < 0)
		return;
	if (b->ro) {
		if (st == S_IOERR || st == S_UNSUPP)
			pass("virtio-blk-ro", "dev=%s write refused status=%s",
			     b->v->name, status_name(st));
		else
			fail("virtio-blk-ro", "dev=%s write to a read-only disk status=%s",
			     b->v->name, status_name(st));
		return;
	}
	if (st != S_OK) {
		fail("virtio-blk-write", "dev=%s status=%s", b->v->name,
		     status_name(st));
		return;
	}
	if (virtio_has(b->v, F_FLUSH)) {
		st = request(b, T_FLUSH, 0, NULL, 0, false);
		if (st == S_OK)
			pass("virtio-blk-flush", "dev=%s", b->v->name);
		else if (st > 0)
			fail("virtio-blk-flush", "dev=%s status=%s", b->v->name,
			     status_name(st));
	}
	if (!read_crc(b, "virtio-blk-write", start, count, &got))
		return;
	if (got != want)
		fail("virtio-blk-write", "dev=%s read back crc32=0x%08x, wrote 0x%08x",
		     b->v->name, got, want);
	else
		pass("virtio-blk-write", "dev=%s sector=%lu count=%lu crc32=0x%08x",
		     b->v->name, start, count, got);
}

/*
 * Pattern, FLUSH, FLUSH again, each status reported whatever it is: the
 * host decides (error policies, a failed flush staying failed).
 */
static void do_wflush(struct blk *b, u64 start, u64 count)
{
	int st = S_OK, fl = -1, fl2 = -1;

	if (!in_range(b, "virtio-blk-wflush", start, count))
		return;
	for (u64 s = start; s < start + count && st == S_OK;) {
		u32 n = b->chunk / SECTOR;

		if (n > start + count - s)
			n = start + count - s;
		for (u32 i = 0; i < n; i++)
			fill_pattern(b->buf + i * SECTOR, s + i);
		st = request_patient(b, T_OUT, s, b->buf, n * SECTOR);
		s += n;
	}
	if (st < 0)
		return;
	fl = request_patient(b, T_FLUSH, 0, NULL, 0);
	if (fl >= 0)
		fl2 = request_patient(b, T_FLUSH, 0, NULL, 0);
	if (fl2 < 0)
		return;
	info("virtio-blk-wflush dev=%s sector=%lu count=%lu write=%s flush=%s reflush=%s",
	     b->v->name, start, count, status_name(st), status_name(fl), status_name(fl2));
}

/* CONFIG_WCE: the writeback byte as the device had it, then set to wce
 * and read back. */
static void set_wce(struct blk *b, u64 wce)
{
	u8 was;

	if (!virtio_has(b->v, F_CONFIG_WCE)) {
		info("virtio-blk-wce dev=%s not offered", b->v->name);
		return;
	}
	was = virtio_cfg8(b->v, CFG_WCE);
	virtio_cfg_write8(b->v, CFG_WCE, (u8)wce);
	info("virtio-blk-wce dev=%s was=%u now=%u", b->v->name, was, virtio_cfg8(b->v, CFG_WCE));
}

/*
 * Pattern and no FLUSH: what the host keeps of a write it said was done
 * (its cache mode, or the writeback byte set with kvmmtest.blkN.wce=).
 */
static void do_noflush(struct blk *b, u64 start, u64 count)
{
	int st = S_OK;

	if (!in_range(b, "virtio-blk-noflush", start, count))
		return;
	for (u64 s = start; s < start + count && st == S_OK;) {
		u32 n = b->chunk / SECTOR;

		if (n > start + count - s)
			n = start + count - s;
		for (u32 i = 0; i < n; i++)
			fill_pattern(b->buf + i * SECTOR, s + i);
		st = request(b, T_OUT, s, b->buf, n * SECTOR, false);
		s += n;
	}
	if (st >= 0)
		info("virtio-blk-noflush dev=%s sector=%lu count=%lu write=%s",
		     b->v->name, start, count, status_name(st));
}

/* DISCARD or WRITE_ZEROES of a range, in pieces the device accepts. */
static void do_segments(struct blk *b, u32 type, const char *check,
			u64 start, u64 count, u32 max)
{
	int st = S_OK;

	if (!in_range(b, check, start, count))
		return;
	if (!max)
		max = 0xffffffff;
	for (u64 s = start; s < start + count && st == S_OK;) {
		u64 n = start + count - s < max ? start + count - s : max;

		b->seg->sector = s;
		b->seg->num_sectors = n;
		b->seg->flags = 0;
		st = request(b, type, 0, b->seg, sizeof(*b->seg), false);
		s += n;
	}
	if (st < 0)
		return;
	if (st != S_OK) {
		fail(check, "dev=%s status=%s", b->v->name, status_name(st));
		return;
	}
	if (type == T_WRITE_ZEROES) {
		u32 got, want = 0;

		memset(b->buf, 0, b->chunk);
		for (u64 s = 0; s < count; s += b->chunk / SECTOR)
			want = crc32(want, b->buf, (count - s < b->chunk / SECTOR ?
					     count - s : b->chunk / SECTOR) * SECTOR);
		if (!read_crc(b, check, start, count, &got))
			return;
		if (got != want) {
			fail(check, "dev=%s range not zero after WRITE_ZEROES",
			     b->v->name);
			return;
		}
	}
	pass(check, "dev=%s sector=%lu count=%lu", b->v->name, start, count);
}

/*
 * The host resizes the disk: a configuration change (4.1.5.3), seen in
 * capacity (read under config_generation) and, with MSI-X, as an
 * interrupt on table entry 0.
 */
static void wait_resize(struct blk *b, u64 secs)
{
	struct virtio_dev *v = b->v;
	u64 start = now_us(), cap = b->capacity;
	u64 before = v->vec_base >= 0 ? irq_count[v->vec_base] : 0, irqs = 0;

	record("event virtio-blk-resize-ready dev=%s capacity=%lu", v->name, cap);
	while (cap == b->capacity && now_us() - start < secs * 1000000) {
		delay_us(1000);
		cap = virtio_cfg64(v, CFG_CAPACITY);
	}
	if (cap == b->capacity) {
		fail("virtio-blk-resize", "dev=%s capacity still %lu after %lu s",
		     v->name, cap, secs);
		return;
	}
	start = now_us();
	while (v->vec_base >= 0 && now_us() - start < 500000 &&
	       !(irqs = irq_count[v->vec_base] - before))
		cpu_relax();
	b->capacity = cap;
	if (v->vec_base >= 0 && !irqs)
		fail("virtio-blk-resize", "dev=%s capacity=%lu but no config interrupt",
		     v->name, cap);
	else
		pass("virtio-blk-resize", "dev=%s capacity=%lu config_interrupts=%lu",
		     v->name, cap, irqs);
}

static void report_config(struct blk *b)
{
	struct virtio_dev *v = b->v;
	char serial[21];
	u32 blk_size = virtio_has(v, F_BLK_SIZE) ?
		       virtio_cfg32(v, CFG_BLK_SIZE) : SECTOR;
	int st;

	memset(b->buf, 0, 20);
	st = request(b, T_GET_ID, 0, b->buf, 20, true);
	if (st == S_OK) {
		int i;

		/* Up to 20 bytes, NUL-terminated only if shorter. */
		for (i = 0; i < 20 && b->buf[i]; i++)
			serial[i] = b->buf[i] > ' ' && b->buf[i] < 127 &&
				    b->buf[i] != '"' ? b->buf[i] : '?';
		serial[i] = '\0';
	} else {
		snprintf(serial, sizeof(serial), "(%s)", status_name(st));
	}
	info("virtio-blk dev=%s capacity=%lu blk_size=%u ro=%d flush=%d discard=%d write_zeroes=%d size_max=%u seg_max=%u serial=\"%s\"",
	     v->name, b->capacity, blk_size, b->ro, virtio_has(v, F_FLUSH),
	     virtio_has(v, F_DISCARD), virtio_has(v, F_WRITE_ZEROES),
	     virtio_has(v, F_SIZE_MAX) ? virtio_cfg32(v, CFG_SIZE_MAX) : 0,
	     virtio_has(v, F_SEG_MAX) ? virtio_cfg32(v, CFG_SEG_MAX) : 0,
	     serial);
	if (st == S_OK)
		pass("virtio-blk", "dev=%s capacity=%lu serial=%s", v->name,
		     b->capacity, serial);
	else if (st > 0)
		pass("virtio-blk", "dev=%s capacity=%lu serial=none", v->name,
		     b->capacity);
}

bool virtio_blk_read_crc(int index, u64 start, u64 count, u32 *crc, u64 *irqs)
{
	struct blk *b = index < BLK_KEPT ? &kept[index] : NULL;

	if (!b || !b->v || b->v->broken || !in_range(b, "virtio-blk-read", start, count))
		return false;
	if (!read_crc(b, "virtio-blk-read", start, count, crc))
		return false;
	*irqs = virtio_interrupts(b->v);
	return true;
}

bool virtio_blk_buf_crc(int index, u64 bytes, u32 *crc)
{
	struct blk *b = index < BLK_KEPT ? &kept[index] : NULL;

	if (!b || !b->v || !b->buf || bytes > BUF_BYTES)
		return false;
	*crc = crc32(0, b->buf, bytes);
	memset(b->buf, 0, bytes);
	return true;
}

void virtio_blk_run(struct virtio_dev *v, int index)
{
	u64 wanted = 1ULL << F_SIZE_MAX | 1ULL << F_SEG_MAX | 1ULL << F_RO |
		     1ULL << F_BLK_SIZE | 1ULL << F_FLUSH | 1ULL << F_DISCARD |
		     1ULL << F_WRITE_ZEROES | 1ULL << F_CONFIG_WCE;
	struct blk b = { .v = v };
	u64 start, count;
	char key[32], val[16];

	if (!virtio_init(v, wanted, 1, blk_bench_queue_size(index)))
		return;
	if (!shared_buf)
		shared_buf = dma_alloc(BUF_BYTES, 4096);
	b.buf = shared_buf;
	b.hdr = dma_alloc(sizeof(*b.hdr), 16);
	b.status = dma_alloc(1, 1);
	b.seg = dma_alloc(sizeof(*b.seg), 16);
	if (!b.buf || !b.hdr || !b.status || !b.seg) {
		fail("virtio-blk", "dev=%s out of DMA memory", v->name);
		return;
	}
	b.chunk = BUF_BYTES;
	if (virtio_has(v, F_SIZE_MAX) && virtio_cfg32(v, CFG_SIZE_MAX) >= SECTOR &&
	    virtio_cfg32(v, CFG_SIZE_MAX) < b.chunk)
		b.chunk = virtio_cfg32(v, CFG_SIZE_MAX) & ~(SECTOR - 1);
	b.capacity = virtio_cfg64(v, CFG_CAPACITY);
	b.ro = virtio_has(v, F_RO);
	if (!virtio_driver_ok(v))
		return;

	report_config(&b);
	if (index < BLK_KEPT)
		kept[index] = b;
	if (!range_option(index, "read", &start, &count)) {
		start = 0;
		count = b.capacity < DEFAULT_READ ? b.capacity : DEFAULT_READ;
	}
	if (count)
		do_read(&b, start, count);
	if (range_option(index, "write", &start, &count))
		do_write(&b, start, count);
	snprintf(key, sizeof(key), "kvmmtest.blk%d.wce", index);
	if (cmdline_option(key, val, sizeof(val)))
		set_wce(&b, parse_u64(val, NULL));
	if (range_option(index, "wflush", &start, &count))
		do_wflush(&b, start, count);
	if (range_option(index, "noflush", &start, &count))
		do_noflush(&b, start, count);
	if (range_option(index, "zeroes", &start, &count)) {
		if (virtio_has(v, F_WRITE_ZEROES))
			do_segments(&b, T_WRITE_ZEROES, "virtio-blk-write-zeroes",
				    start, count, virtio_cfg32(v, CFG_MAX_WZ));
		else
			info("virtio-blk-write-zeroes dev=%s not offered", v->name);
	}
	if (range_option(index, "discard", &start, &count)) {
		if (virtio_has(v, F_DISCARD))
			do_segments(&b, T_DISCARD, "virtio-blk-discard", start,
				    count, virtio_cfg32(v, CFG_MAX_DISCARD));
		else
			info("virtio-blk-discard dev=%s not offered", v->name);
	}
	snprintf(key, sizeof(key), "kvmmtest.blk%d.resize", index);
	if (cmdline_option(key, val, sizeof(val)))
		wait_resize(&b, parse_u64(val, NULL) ?: 10);
	blk_bench_run(v, index, b.capacity, virtio_has(v, F_BLK_SIZE) ?
		      virtio_cfg32(v, CFG_BLK_SIZE) : SECTOR, v->features);
	virtio_report_interrupts(v, true);
}
