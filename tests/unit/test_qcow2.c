/* The qcow2 format over the block layer's synchronous path, on images
 * crafted here: reads and writes against a model of the disk, what is
 * left in the file at each step (refcounts never below the references:
 * a crash leaks at worst), tables through small caches, a full refcount
 * table, and hostile headers and tables refused without a write. */
#include <errno.h>
#include <stdio.h>

#include "blk_engine.h"
#include "qcow2_img.h"
#include "unit.h"
#include "util.h"

static char path[64];

static void tmp_image(unsigned int cb, unsigned int version, uint64_t size)
{
	int fd;

	strcpy(path, "/tmp/kvmm-unit-qcow2-XXXXXX");
	fd = mkstemp(path);
	CHECK(fd >= 0);
	close(fd);
	CHECK(qi_create(path, cb, version, size) == 0);
}

/* The file as a crash at this point would leave it: no reference without
 * its refcount. */
static void check_file(unsigned int *leaks_out)
{
	uint64_t len;
	uint8_t *f = qi_slurp(path, &len);
	unsigned int leaks, errors;

	CHECK(f != NULL);
	if (!f)
		return;
	CHECK(qi_check(f, len, &leaks, &errors) == 0);
	CHECK_EQ_U64(errors, 0);
	if (leaks_out)
		*leaks_out = leaks;
	free(f);
}

static void fill(uint8_t *b, uint64_t len, uint64_t seed)
{
	uint64_t i;

	for (i = 0; i < len; i++)
		b[i] = (uint8_t)((i >> 9) * 131 + seed * 7 + i);
}

/* Writes at awkward places (partial clusters, across clusters and L2
 * tables), read back at once, after FLUSH and after reopening; the file
 * consistent after each step and without leaks at the end. */
static void roundtrip(unsigned int cb, unsigned int version, uint64_t size)
{
	uint64_t cs = 1ULL << cb, span = cs * (cs / 8);
	struct { uint64_t off, len; } w[] = {
		{ 0, 512 }, { cs - 512, 1024 }, { 3 * cs + 1024, 3 * cs },
		{ span - cs, 2 * cs }, { size - 4096, 4096 }, { cs * 5, cs },
		{ 0, 2 * cs + 512 },
	};
	uint8_t *model = calloc(1, size), *buf = malloc(size);
	struct qi_dev d;
	unsigned int i, leaks = 1;

	tmp_image(cb, version, size);
	CHECK(qi_open(&d, path, false) != NULL);
	if (!d.bd)
		goto out;
	CHECK_EQ_U64(block_size(d.bd), size);
	for (i = 0; i < ARRAY_SIZE(w); i++) {
		if (w[i].off + w[i].len > size)
			continue;	/* across L2 tables: not with 64 KiB clusters */
		fill(model + w[i].off, w[i].len, i + 1);
		memcpy(buf, model + w[i].off, w[i].len);
		CHECK_EQ_U64(qi_io(d.bd, BLOCK_WRITE, w[i].off, buf, w[i].len), w[i].len);
		check_file(NULL);
		memset(buf, 0xee, w[i].len);
		CHECK_EQ_U64(qi_io(d.bd, BLOCK_READ, w[i].off, buf, w[i].len), w[i].len);
		CHECK(!memcmp(buf, model + w[i].off, w[i].len));
		if (i == 3) {
			CHECK_EQ_U64(qi_io(d.bd, BLOCK_FLUSH, 0, NULL, 0), 0);
			check_file(NULL);
		}
	}
	CHECK_EQ_U64(qi_io(d.bd, BLOCK_READ, 0, buf, size), size);
	CHECK(!memcmp(buf, model, size));
	block_close(d.bd);
	check_file(&leaks);
	CHECK_EQ_U64(leaks, 0);
	CHECK(qi_open(&d, path, true) != NULL);
	if (d.bd) {
		memset(buf, 0xee, size);
		CHECK_EQ_U64(qi_io(d.bd, BLOCK_READ, 0, buf, size), size);
		CHECK(!memcmp(buf, model, size));
		block_close(d.bd);
	}
out:
	unlink(path);
	free(model);
	free(buf);
}

UNIT_TEST(qcow2_v3_64k_roundtrip) { roundtrip(16, 3, 64 * MiB); }
UNIT_TEST(qcow2_v2_64k_roundtrip) { roundtrip(16, 2, 64 * MiB); }
UNIT_TEST(qcow2_v3_4k_roundtrip) { roundtrip(12, 3, 8 * MiB); }
UNIT_TEST(qcow2_v2_512b_roundtrip) { roundtrip(9, 2, 1 * MiB); }

/* One table per cache: every L2 table and refcount block leaves it
 * (written back in order) and comes back from the file. */
UNIT_TEST(qcow2_tables_through_small_caches)
{
	setenv("KVMM_QCOW2_CACHE_TABLES", "1", 1);
	roundtrip(9, 3, 1 * MiB);
	roundtrip(12, 2, 8 * MiB);
	unsetenv("KVMM_QCOW2_CACHE_TABLES");
}

/* 512-byte clusters: 64 refcount blocks of 256 clusters each, 8 MiB of
 * file; writes past that fail with ENOSPC and the image stays sound. */
UNIT_TEST(qcow2_full_refcount_table)
{
	uint64_t size = 16 * MiB, off;
	uint8_t *buf = malloc(64 * 1024);
	struct qi_dev d;
	int64_t r = 0;
	unsigned int leaks;

	tmp_image(9, 3, size);
	CHECK(qi_open(&d, path, false) != NULL);
	if (!d.bd)
		goto out;
	for (off = 0; off < size; off += 64 * 1024) {
		fill(buf, 64 * 1024, off);
		r = qi_io(d.bd, BLOCK_WRITE, off, buf, 64 * 1024);
		if (r < 0)
			break;
	}
	CHECK_EQ_U64(r, -ENOSPC);
	CHECK(off > 4 * MiB && off < 8 * MiB);
	block_close(d.bd);
	check_file(&leaks);
	CHECK(qi_open(&d, path, true) != NULL);
	if (d.bd) {
		fill(buf, 64 * 1024, off - 64 * 1024);
		{
			uint8_t *back = malloc(64 * 1024);

			CHECK_EQ_U64(qi_io(d.bd, BLOCK_READ, off - 64 * 1024, back, 64 * 1024), 64 * 1024);
			CHECK(!memcmp(back, buf, 64 * 1024));
			free(back);
		}
		block_close(d.bd);
	}
out:
	unlink(path);
	free(buf);
}

/* Discard of whole clusters: unallocated, reading zeros, refcounts
 * dropped, space given back to the file system. */
UNIT_TEST(qcow2_discard_frees)
{
	uint64_t size = 8 * MiB;
	uint8_t *buf = malloc(size);
	struct qi_dev d;
	struct stat before, after;
	unsigned int leaks = 1;

	tmp_image(16, 3, size);
	CHECK(qi_open(&d, path, false) != NULL);
	if (!d.bd)
		goto out;
	fill(buf, size, 9);
	CHECK_EQ_U64(qi_io(d.bd, BLOCK_WRITE, 0, buf, size), size);
	CHECK_EQ_U64(qi_io(d.bd, BLOCK_FLUSH, 0, NULL, 0), 0);
	CHECK(stat(path, &before) == 0);
	CHECK_EQ_U64(block_discard(d.bd, MiB + 512, 4 * MiB), 0);	/* partial ends kept */
	check_file(NULL);
	CHECK(stat(path, &after) == 0);
	CHECK((uint64_t)after.st_blocks * 512 <= (uint64_t)before.st_blocks * 512 - 3 * MiB);
	memset(buf + MiB + 65536, 0, 4 * MiB - 65536);
	{
		uint8_t *back = malloc(size);

		CHECK_EQ_U64(qi_io(d.bd, BLOCK_READ, 0, back, size), size);
		CHECK(!memcmp(back, buf, size));
		free(back);
	}
	CHECK_EQ_U64(block_write_zeroes(d.bd, 100, 70000), 0);
	block_close(d.bd);
	check_file(&leaks);
	CHECK_EQ_U64(leaks, 0);
out:
	unlink(path);
	free(buf);
}

/* Each patch (offset, bytes, value) makes the image one kvmm refuses to
 * open; the file is left as it was. */
UNIT_TEST(qcow2_bad_headers_refused)
{
	static const struct { unsigned int off, bytes; uint64_t v; } bad[] = {
		{ 0, 4, 0x514649fa }, { 4, 4, 1 }, { 4, 4, 4 }, { 20, 4, 8 }, { 20, 4, 22 },
		{ 20, 4, 63 }, { 24, 8, UINT64_MAX }, { 32, 4, 1 }, { 36, 4, 0 },
		{ 36, 4, 0xffffffff }, { 40, 8, 0x30001 }, { 40, 8, UINT64_MAX - 7 },
		{ 48, 8, 0 }, { 48, 8, 0x10200 }, { 48, 8, 1ULL << 50 }, { 56, 4, 0 },
		{ 56, 4, 0xffffffff }, { 60, 4, 1 }, { 72, 8, 1 }, { 72, 8, 2 }, { 72, 8, 4 },
		{ 72, 8, 8 }, { 72, 8, 16 }, { 72, 8, 1ULL << 63 }, { 96, 4, 7 },
		{ 96, 4, 0xffffffff }, { 100, 4, 8 }, { 100, 4, 105 }, { 100, 4, 1 << 20 },
		{ 8, 8, 8 }, { 8, 8, UINT64_MAX }, { 16, 4, 5000 },
		/* a refcount table entry with reserved bits */
		{ 65536, 8, 0x20001 },
	};
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(bad); i++) {
		uint8_t v[8], *f0, *f1;
		uint64_t l0 = 0, l1 = 1;
		struct qi_dev d;
		int fd;

		tmp_image(16, 3, 64 * MiB);
		if (bad[i].off == 16)	/* a name too long, at a sane place */
			qi_put(v, 200, 8), fd = open(path, O_RDWR), pwrite(fd, v, 8, 8), close(fd);
		qi_put(v, bad[i].v, bad[i].bytes);
		fd = open(path, O_RDWR);
		CHECK(pwrite(fd, v, bad[i].bytes, bad[i].off) == (ssize_t)bad[i].bytes);
		close(fd);
		f0 = qi_slurp(path, &l0);
		if (qi_open(&d, path, false)) {
			printf("  patch %u (offset %u = %#llx) was accepted\n", i, bad[i].off,
			       (unsigned long long)bad[i].v);
			unit_failed = 1;
			block_close(d.bd);
		}
		f1 = qi_slurp(path, &l1);
		CHECK(f0 && f1 && l0 == l1 && !memcmp(f0, f1, l0));
		free(f0);
		free(f1);
		unlink(path);
	}
}

/* An L1 or L2 entry of an image that opened: pointing past the file,
 * unaligned, over the header or the tables, reserved bits set.  Reads
 * and writes through it fail with EIO and nothing is written. */
UNIT_TEST(qcow2_bad_tables_are_io_errors)
{
	const uint64_t cs = 65536, copied = 1ULL << 63;
	static const uint64_t l2e[] = {
		1ULL << 40, 0x50200, 0, 1 * 65536, 3 * 65536, 0x50000 | 0x100, 0x50000 | (1ULL << 57),
	};
	uint8_t buf[4096], v[8];
	unsigned int i, which;

	for (which = 0; which < 2; which++)
		for (i = 0; i < ARRAY_SIZE(l2e); i++) {
			struct qi_dev d;
			uint8_t *f0, *f1;
			uint64_t l0 = 0, l1 = 1;
			int fd;

			tmp_image(16, 3, 64 * MiB);
			CHECK(qi_open(&d, path, false) != NULL);
			if (!d.bd)
				return;
			memset(buf, 0x11, sizeof(buf));
			CHECK_EQ_U64(qi_io(d.bd, BLOCK_WRITE, 0, buf, sizeof(buf)), sizeof(buf));
			block_close(d.bd);	/* L2 at cluster 4, data at 5 */
			fd = open(path, O_RDWR);
			if (which == 0) {
				qi_put(v, copied | l2e[i], 8);
				CHECK(pwrite(fd, v, 8, 4 * cs) == 8);
			} else {
				qi_put(v, copied | (l2e[i] ? l2e[i] : 2 * cs), 8);
				CHECK(pwrite(fd, v, 8, 3 * cs) == 8);
			}
			close(fd);
			f0 = qi_slurp(path, &l0);
			CHECK(qi_open(&d, path, false) != NULL);
			if (d.bd) {
				if (which == 0 && !l2e[i]) {
					/* COPIED alone: unallocated, reads zeros */
					CHECK_EQ_U64(qi_io(d.bd, BLOCK_READ, 0, buf, 512), 512);
				} else {
					CHECK_EQ_U64(qi_io(d.bd, BLOCK_READ, 0, buf, 512), -EIO);
					CHECK_EQ_U64(qi_io(d.bd, BLOCK_WRITE, 0, buf, 512), -EIO);
					CHECK_EQ_U64(block_discard(d.bd, 0, cs), -EIO);
					CHECK_EQ_U64(qi_io(d.bd, BLOCK_FLUSH, 0, NULL, 0), 0);
				}
				block_close(d.bd);
			}
			f1 = qi_slurp(path, &l1);
			if (which == 1 || l2e[i])
				CHECK(f0 && f1 && l0 == l1 && !memcmp(f0, f1, l0));
			free(f0);
			free(f1);
			unlink(path);
		}
}

/* --- what goes to an asynchronous engine -------------------------------- */

static struct block_req *engine_done;

static void engine_req_done(void *opaque, struct block_req *req, bool dropped)
{
	CHECK(!dropped);
	engine_done = req;
}

/* path as a qcow2 disk over the hand-driven engine (blk_engine.h). */
static struct block_dev *open_engine(struct qi_dev *d, bool readonly)
{
	unsetenv("KVMM_NO_IO_URING");
	memset(&d->cfg, 0, sizeof(d->cfg));
	d->cfg.ndisks = 1;
	d->cfg.disks[0] = (struct disk_config){ .path = path, .blk_size = 512,
						.readonly = readonly,
						.format = DISK_FORMAT_QCOW2,
						.cache = DISK_CACHE_WRITEBACK };
	d->bd = block_open(&d->cfg, 0, 64, NULL, engine_req_done, qi_ready, NULL);
	return d->bd;
}

/* Reads [off, off + len) through the engine: the requests it was handed
 * (at most 64, their lengths in bytes[]), then the data, which must be
 * model's. */
static unsigned int engine_read(struct block_dev *bd, uint64_t off, uint64_t len,
				const uint8_t *model, uint64_t *bytes)
{
	uint8_t *buf = malloc(len);
	struct iovec v = { buf, len };
	struct block_req req = { .op = BLOCK_READ, .off = off, .bytes = len, .iov = &v,
				 .niov = 1 };
	unsigned int n, i;

	engine_done = NULL;
	memset(buf, 0xee, len);
	block_start(bd, &req);
	block_submit(bd);
	n = he_held();
	for (i = 0; i < n && i < 64; i++)
		bytes[i] = he_bytes(i);
	block_poll(bd, true);
	CHECK(engine_done == &req);
	CHECK_EQ_U64(req.res, len);
	CHECK(!memcmp(buf, model + off, len));
	free(buf);
	return n;
}

/* A request whose data clusters follow each other in the file goes to
 * the engine whole, also across the end of an L2 table; one over data
 * and clusters that are not (zeros here) sends its data runs and does
 * the rest at once; one over clusters scattered in the file sends a part
 * per run, however many. */
UNIT_TEST(qcow2_runs_merged_for_the_engine)
{
	const uint64_t cs = 4096, span = cs * (cs / 8), size = 8 * MiB;
	uint8_t *model = calloc(1, size);
	uint64_t bytes[64] = { 0 }, i;
	struct qi_dev d;

	CHECK(model != NULL);
	tmp_image(12, 3, size);
	CHECK(qi_open(&d, path, false) != NULL);
	if (!d.bd || !model)
		return;
	/* The second L2 table first, so that the data around the first
	 * table's end is allocated in one piece after it. */
	fill(model + 2 * span - cs, cs, 1);
	CHECK_EQ_U64(qi_io(d.bd, BLOCK_WRITE, 2 * span - cs, model + 2 * span - cs, cs), cs);
	fill(model + span - 2 * cs, 4 * cs, 2);
	CHECK_EQ_U64(qi_io(d.bd, BLOCK_WRITE, span - 2 * cs, model + span - 2 * cs, 4 * cs),
		     4 * cs);
	/* 20 clusters written last to first: each lies before the previous
	 * one in the file. */
	for (i = 20; i--;) {
		fill(model + 3 * span + i * cs, cs, 3 + i);
		CHECK_EQ_U64(qi_io(d.bd, BLOCK_WRITE, 3 * span + i * cs, model + 3 * span + i * cs,
				   cs), cs);
	}
	block_close(d.bd);
	check_file(NULL);

	CHECK(open_engine(&d, false) != NULL);
	if (!d.bd)
		goto out;
	CHECK_EQ_U64(engine_read(d.bd, span - 2 * cs, 4 * cs, model, bytes), 1);
	CHECK_EQ_U64(bytes[0], 4 * cs);
	/* Zeros, the four data clusters, zeros. */
	CHECK_EQ_U64(engine_read(d.bd, span - 3 * cs, 6 * cs, model, bytes), 1);
	CHECK_EQ_U64(bytes[0], 4 * cs);
	/* Half a cluster of zeros before the scattered ones, and after. */
	CHECK_EQ_U64(engine_read(d.bd, 3 * span - cs / 2, 21 * cs, model, bytes), 20);
	for (i = 0; i < 20; i++)
		CHECK_EQ_U64(bytes[i], cs);
	/* Unallocated only: nothing for the engine. */
	CHECK_EQ_U64(engine_read(d.bd, 2 * span, 4 * cs, model, bytes), 0);
	block_close(d.bd);
out:
	unlink(path);
	free(model);
}

/* A write of whole clusters not yet allocated goes to the engine at new
 * clusters; the disk shows it only once it is written (until then: the
 * zeros it showed before), and nothing leaks.  A partial cluster is
 * allocated at once, synchronously.  The file is grown ahead of such
 * writes (sparse) and cut back to the image at close. */
UNIT_TEST(qcow2_allocating_write_on_the_engine)
{
	const uint64_t cs = 65536, size = 64 * MiB;
	uint8_t *model = calloc(1, size), *buf = malloc(4 * cs);
	struct iovec v = { buf, 4 * cs };
	struct block_req req = { .op = BLOCK_WRITE, .off = 8 * cs, .bytes = 4 * cs, .iov = &v,
				 .niov = 1 };
	uint64_t bytes[64] = { 0 };
	unsigned int leaks = 1;
	struct qi_dev d;
	struct stat st;

	CHECK(model && buf);
	tmp_image(16, 3, size);
	CHECK(open_engine(&d, false) != NULL);
	if (!d.bd || !model || !buf)
		return;
	fill(model + 8 * cs, 4 * cs, 9);
	memcpy(buf, model + 8 * cs, 4 * cs);
	engine_done = NULL;
	block_start(d.bd, &req);
	block_submit(d.bd);
	CHECK_EQ_U64(he_held(), 1);
	CHECK_EQ_U64(he_bytes(0), 4 * cs);
	CHECK_EQ_U64(he_host(0) % cs, 0);
	CHECK(engine_done == NULL);
	CHECK(stat(path, &st) == 0 && (uint64_t)st.st_size >= he_host(0) + 4 * cs);
	/* Not written yet: still zeros (the read runs at once). */
	CHECK_EQ_U64(qi_io(d.bd, BLOCK_READ, 8 * cs, buf + 0, cs), cs);
	CHECK(!memcmp(buf, model, cs));
	memcpy(buf, model + 8 * cs, 4 * cs);	/* the write's buffer again */
	block_poll(d.bd, true);
	CHECK(engine_done == &req);
	CHECK_EQ_U64(req.res, 4 * cs);
	CHECK_EQ_U64(engine_read(d.bd, 8 * cs, 4 * cs, model, bytes), 1);
	/* Half a cluster: write_alloc, on this thread. */
	fill(model + 20 * cs, cs / 2, 10);
	memcpy(buf, model + 20 * cs, cs / 2);
	CHECK_EQ_U64(qi_io(d.bd, BLOCK_WRITE, 20 * cs, buf, cs / 2), cs / 2);
	CHECK_EQ_U64(he_held(), 0);
	CHECK_EQ_U64(engine_read(d.bd, 20 * cs, cs, model, bytes), 1);
	CHECK(stat(path, &st) == 0 && (uint64_t)st.st_size >= 16 * MiB);
	block_close(d.bd);
	CHECK(stat(path, &st) == 0 && (uint64_t)st.st_size < 2 * MiB);
	check_file(&leaks);
	CHECK_EQ_U64(leaks, 0);
	CHECK(open_engine(&d, false) != NULL);
	if (d.bd) {
		CHECK_EQ_U64(engine_read(d.bd, 0, size, model, bytes), 2);
		block_close(d.bd);
	}
	unlink(path);
	free(model);
	free(buf);
}

/* An L2 entry whose cluster is one of the image's own: a refcount
 * block, an L2 table, or (compressed, the fuzzer's find) the header, the
 * L1 table's cluster, an L2 table, a data cluster's last sector running
 * into the next L2 table.  Every request over it fails with EIO, none
 * reaches the engine, and the file is left as it was: before, a write over the compressed entry at 0
 * freed "its" cluster -- the header's -- and punched it out of the file
 * at close, and a data entry at a table wrote guest data into it. */
static void entries_over_tables(unsigned int cb)
{
	const uint64_t cs = 1ULL << cb, span = cs * (cs / 8), copied = 1ULL << 63;
	const uint64_t comp = 1ULL << 62;
	const unsigned int x = 62 - (cb - 8);	/* a compressed entry's sector count */
	uint8_t *buf = malloc(cs), v[16];
	unsigned int i;

	for (i = 0; i < 7; i++) {
		struct qi_dev d;
		uint8_t *f0, *f1;
		uint64_t l0 = 0, l1 = 1, l2a, l2b, e = 0;
		int fd;

		/* Two L2 tables, each with a data cluster after it. */
		tmp_image(cb, 3, 2 * span);
		CHECK(qi_open(&d, path, false) != NULL);
		if (!d.bd || !buf)
			return;
		memset(buf, 0x11, cs);
		CHECK_EQ_U64(qi_io(d.bd, BLOCK_WRITE, 0, buf, 512), 512);
		CHECK_EQ_U64(qi_io(d.bd, BLOCK_WRITE, span, buf, 512), 512);
		block_close(d.bd);
		fd = open(path, O_RDWR);
		CHECK(pread(fd, v, 16, QI_L1 * cs) == 16);
		l2a = qi_get(v, 8) & 0x00fffffffffffe00ULL;
		l2b = qi_get(v + 8, 8) & 0x00fffffffffffe00ULL;
		CHECK(l2a && l2b == l2a + 2 * cs);
		switch (i) {
		case 0: e = copied | QI_RB * cs; break;
		case 1: e = copied | l2a; break;
		case 2: e = copied | l2b; break;
		case 3: e = comp; break;
		case 4: e = comp | (QI_L1 * cs + 256); break;
		case 5: e = comp | l2a; break;
		case 6: e = comp | (1ULL << x) | (l2b - 512); break;
		}
		qi_put(v, e, 8);
		CHECK(pwrite(fd, v, 8, l2a) == 8);
		close(fd);
		f0 = qi_slurp(path, &l0);
		CHECK(qi_open(&d, path, false) != NULL);
		if (d.bd) {
			CHECK_EQ_U64(qi_io(d.bd, BLOCK_READ, 0, buf, 512), -EIO);
			CHECK_EQ_U64(qi_io(d.bd, BLOCK_WRITE, 0, buf, 512), -EIO);
			CHECK_EQ_U64(qi_io(d.bd, BLOCK_WRITE, 0, buf, cs), -EIO);
			CHECK_EQ_U64(block_discard(d.bd, 0, cs), -EIO);
			CHECK_EQ_U64(block_write_zeroes(d.bd, 0, cs), -EIO);
			CHECK_EQ_U64(qi_io(d.bd, BLOCK_FLUSH, 0, NULL, 0), 0);
			/* The other table's data is still there. */
			CHECK_EQ_U64(qi_io(d.bd, BLOCK_READ, span, buf, 512), 512);
			CHECK(buf[0] == 0x11 && buf[511] == 0x11);
			block_close(d.bd);
		}
		CHECK(open_engine(&d, false) != NULL);
		if (d.bd) {
			struct iovec iv = { buf, cs };
			struct block_req req = { .op = BLOCK_WRITE, .off = 0, .bytes = cs,
						 .iov = &iv, .niov = 1 };

			engine_done = NULL;
			block_start(d.bd, &req);
			block_submit(d.bd);
			CHECK_EQ_U64(he_held(), 0);
			CHECK(engine_done == &req);
			CHECK_EQ_U64(req.res, -EIO);
			block_close(d.bd);
		}
		f1 = qi_slurp(path, &l1);
		if (!(f0 && f1 && l0 == l1 && !memcmp(f0, f1, l0))) {
			printf("  entry %u (%#llx): the file was written\n", i, (unsigned long long)e);
			unit_failed = 1;
		}
		free(f0);
		free(f1);
		unlink(path);
	}
	free(buf);
}

UNIT_TEST(qcow2_entries_over_tables_are_corrupt_512b) { entries_over_tables(9); }
UNIT_TEST(qcow2_entries_over_tables_are_corrupt_64k) { entries_over_tables(16); }

/* A disk opened read-only refuses writes itself, with EROFS and before
 * anything reaches the format or the file (opened O_RDONLY: a write
 * there would fail with EBADF after the format had allocated for it):
 * partial and whole clusters, allocated or not, on the synchronous path
 * and on an engine; discard and zeroing too.  Reads and flushes work,
 * and the file is left as it was. */
UNIT_TEST(qcow2_readonly_refuses_writes)
{
	const uint64_t cs = 65536;
	uint8_t *buf = malloc(4 * cs), *f0, *f1;
	struct iovec v = { buf, 4 * cs };
	struct block_req req = { .op = BLOCK_WRITE, .off = 8 * cs, .bytes = 4 * cs, .iov = &v,
				 .niov = 1 };
	uint64_t l0 = 0, l1 = 1;
	struct qi_dev d;

	tmp_image(16, 3, 64 * MiB);
	CHECK(buf && qi_open(&d, path, false) != NULL);
	if (!d.bd || !buf)
		return;
	memset(buf, 0x22, cs);
	CHECK_EQ_U64(qi_io(d.bd, BLOCK_WRITE, 0, buf, cs), cs);
	block_close(d.bd);
	f0 = qi_slurp(path, &l0);

	CHECK(qi_open(&d, path, true) != NULL);
	if (d.bd) {
		memset(buf, 0x33, 4 * cs);
		CHECK_EQ_U64(qi_io(d.bd, BLOCK_WRITE, 0, buf, 512), -EROFS);	/* allocated */
		CHECK_EQ_U64(qi_io(d.bd, BLOCK_WRITE, 4 * cs, buf, 512), -EROFS);
		CHECK_EQ_U64(qi_io(d.bd, BLOCK_WRITE, 8 * cs, buf, 4 * cs), -EROFS);
		CHECK_EQ_U64(block_discard(d.bd, 0, cs), -EROFS);
		CHECK_EQ_U64(block_write_zeroes(d.bd, 0, cs), -EROFS);
		CHECK_EQ_U64(qi_io(d.bd, BLOCK_FLUSH, 0, NULL, 0), 0);
		CHECK_EQ_U64(qi_io(d.bd, BLOCK_READ, 0, buf, cs), cs);
		CHECK(buf[0] == 0x22 && buf[cs - 1] == 0x22);
		block_close(d.bd);
	}
	CHECK(open_engine(&d, true) != NULL);
	if (d.bd) {
		memset(buf, 0x33, 4 * cs);
		engine_done = NULL;
		block_start(d.bd, &req);
		block_submit(d.bd);
		CHECK_EQ_U64(he_held(), 0);
		CHECK(engine_done == &req);
		CHECK_EQ_U64(req.res, -EROFS);
		block_close(d.bd);
	}
	f1 = qi_slurp(path, &l1);
	CHECK(f0 && f1 && l0 == l1 && !memcmp(f0, f1, l0));
	free(f0);
	free(f1);
	unlink(path);
	free(buf);
}
