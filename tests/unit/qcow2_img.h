/* Crafted qcow2 images for the qcow2 unit test and fuzzer, and the block
 * layer opened on them synchronously (KVMM_NO_IO_URING=1). */
#ifndef KVMM_TEST_QCOW2_IMG_H
#define KVMM_TEST_QCOW2_IMG_H

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "block/block.h"
#include "config.h"
#include "loop.h"

/* No main loop (one program each): the synchronous path never reaches
 * it, and a test over an engine polls the block layer itself. */
int loop_add(struct loop *l, int fd, uint32_t events, loop_fn fn, void *opaque)
{
	return 0;
}

void loop_del(struct loop *l, int fd)
{
}

/* Where qi_create puts things, in clusters. */
#define QI_RT		1	/* refcount table, one cluster */
#define QI_RB		2	/* the refcount block for the first clusters */
#define QI_L1		3	/* L1 table, one cluster */

static inline void qi_put(uint8_t *p, uint64_t v, unsigned int bytes)
{
	while (bytes--) {
		p[bytes] = v & 0xff;
		v >>= 8;
	}
}

static inline uint64_t qi_get(const uint8_t *p, unsigned int bytes)
{
	uint64_t v = 0;

	while (bytes--)
		v = v << 8 | *p++;
	return v;
}

/* An empty qcow2 image as qemu-img makes them: header, refcount table,
 * one 16-bit refcount block, L1 (as many clusters as it needs); 0 or
 * -1. */
static inline int qi_create(const char *path, unsigned int cb, unsigned int version,
			    uint64_t size)
{
	uint64_t cs = 1ULL << cb, span = cs * (cs / 8);
	uint32_t l1_size = (size + span - 1) / span;
	uint64_t l1c = ((uint64_t)l1_size * 8 + cs - 1) / cs, n = QI_L1 + (l1c ? l1c : 1);
	uint8_t *img = calloc(n, cs);
	unsigned int i;
	int fd, ok;

	if (!img || n > cs / 2)
		return -1;
	qi_put(img, 0x514649fb, 4);
	qi_put(img + 4, version, 4);
	qi_put(img + 20, cb, 4);
	qi_put(img + 24, size, 8);
	qi_put(img + 36, l1_size, 4);
	qi_put(img + 40, QI_L1 * cs, 8);
	qi_put(img + 48, QI_RT * cs, 8);
	qi_put(img + 56, 1, 4);
	if (version == 3) {
		qi_put(img + 96, 4, 4);
		qi_put(img + 100, 104, 4);
	}
	qi_put(img + QI_RT * cs, QI_RB * cs, 8);
	for (i = 0; i < n; i++)
		qi_put(img + QI_RB * cs + 2 * i, 1, 2);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0) {
		free(img);
		return -1;
	}
	ok = write(fd, img, n * cs) == (ssize_t)(n * cs);
	close(fd);
	free(img);
	return ok ? 0 : -1;
}

/* The fuzzer's images need no syncs. */
static enum disk_cache qi_cache = DISK_CACHE_WRITEBACK;

struct qi_dev {
	struct vm_config cfg;
	struct block_dev *bd;
};

static inline void qi_done(void *opaque, struct block_req *req, bool dropped)
{
}

static inline void qi_ready(void *opaque)
{
}

/* path opened as a qcow2 disk, preadv/pwritev only; NULL if refused. */
static inline struct block_dev *qi_open(struct qi_dev *d, const char *path, bool readonly)
{
	setenv("KVMM_NO_IO_URING", "1", 1);
	memset(&d->cfg, 0, sizeof(d->cfg));
	d->cfg.ndisks = 1;
	d->cfg.disks[0] = (struct disk_config){ .path = (char *)path, .blk_size = 512,
						.readonly = readonly,
						.format = DISK_FORMAT_QCOW2,
						.cache = qi_cache };
	d->bd = block_open(&d->cfg, 0, 16, NULL, qi_done, qi_ready, NULL);
	return d->bd;
}

/* One synchronous request: its result. */
static inline int64_t qi_io(struct block_dev *bd, enum block_op op, uint64_t off, void *buf,
			    uint64_t len)
{
	struct iovec v = { buf, len };
	struct block_req req = { .op = op, .off = off, .bytes = len, .iov = &v, .niov = 1 };

	block_start(bd, &req);
	return req.res;
}

/* What qemu-img check counts, on the image's bytes: references to
 * each cluster (header, tables, data) against its refcount.  *errors:
 * clusters used more than counted, or referenced outside the file;
 * *leaks: counted more than used.  -1 if the header is unreadable. */
static inline int qi_check(const uint8_t *f, uint64_t len, unsigned int *leaks,
			   unsigned int *errors)
{
	unsigned int cb = qi_get(f + 20, 4), version = qi_get(f + 4, 4), order = 4;
	uint64_t cs = 1ULL << cb, nc = (len + cs - 1) / cs, l1_off = qi_get(f + 40, 8);
	uint64_t rt_off = qi_get(f + 48, 8), rt_n = qi_get(f + 56, 4) * cs / 8, i, j;
	uint32_t l1_size = qi_get(f + 36, 4);
	uint32_t *refs;

	*leaks = *errors = 0;
	if (cb < 9 || cb > 21 || l1_off + (uint64_t)l1_size * 8 > len || rt_off + rt_n * 8 > len)
		return -1;
	if (version == 3)
		order = qi_get(f + 96, 4);
	refs = calloc(nc, sizeof(*refs));
	if (!refs)
		return -1;
#define QI_REF(off) do { if ((off) / cs < nc) refs[(off) / cs]++; else (*errors)++; } while (0)
	QI_REF(0);
	for (i = 0; i < rt_n * 8; i += cs)
		QI_REF(rt_off + i);
	for (i = 0; i < rt_n; i++)
		if (qi_get(f + rt_off + 8 * i, 8))
			QI_REF(qi_get(f + rt_off + 8 * i, 8));
	for (i = 0; i < (uint64_t)l1_size * 8; i += cs)
		QI_REF(l1_off + i);
	for (i = 0; i < l1_size; i++) {
		uint64_t l2 = qi_get(f + l1_off + 8 * i, 8) & 0x00fffffffffffe00ULL;

		if (!l2)
			continue;
		QI_REF(l2);
		if (l2 + cs > len)
			continue;
		for (j = 0; j < cs / 8; j++) {
			uint64_t e = qi_get(f + l2 + 8 * j, 8);

			if (!(e & (1ULL << 62)) && (e & 0x00fffffffffffe00ULL))
				QI_REF(e & 0x00fffffffffffe00ULL);
		}
	}
#undef QI_REF
	for (i = 0; i < nc; i++) {
		uint64_t per = cs * 8 >> order, rb = i / per < rt_n ? qi_get(f + rt_off + 8 * (i / per), 8) : 0;
		uint64_t bit = (i % per) << order, rc = 0;

		if (rb && rb + cs <= len) {
			const uint8_t *b = f + rb;

			if (order < 3)
				rc = (b[bit / 8] >> (bit % 8)) & ((1u << (1u << order)) - 1);
			else
				rc = qi_get(b + bit / 8, 1u << (order - 3));
		}
		if (rc < refs[i])
			(*errors)++;
		else if (rc > refs[i])
			(*leaks)++;
	}
	free(refs);
	return 0;
}

static inline uint8_t *qi_slurp(const char *path, uint64_t *len)
{
	int fd = open(path, O_RDONLY);
	struct stat st;
	uint8_t *b;

	if (fd < 0 || fstat(fd, &st)) {
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	b = malloc(st.st_size ? st.st_size : 1);
	if (b && pread(fd, b, st.st_size, 0) != st.st_size) {
		free(b);
		b = NULL;
	}
	close(fd);
	*len = st.st_size;
	return b;
}

#endif
