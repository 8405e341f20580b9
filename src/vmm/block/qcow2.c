/* The qcow2 format (versions 2 and 3): the disk through L1/L2 tables,
 * clusters allocated as the guest writes them, refcounts, and a backing
 * chain the configuration names layer by layer.
 *
 * Every field of the image is GUEST data (a guest may have written the
 * image, or a backing file whose bytes a qcow2 layer parses): offsets
 * are checked against the file and the image's own tables before use; a
 * bad one is an I/O error on the request, never an access outside the
 * file or over its header and tables.
 *
 * Caches: L2 tables and refcount blocks are kept by their index in the
 * L1 and refcount tables (a lookup is an array access), up to
 * Q2_L2_CACHE and Q2_RB_CACHE bytes per image: 32 MiB of L2 tables map
 * 256 GiB of disk with 64 KiB clusters, 16 GiB with 4 KiB ones.  Both are
 * write-back; the ordering that keeps a crash harmless (leaked clusters
 * at worst) is in meta_flush().  New clusters are taken at the end of
 * the file; freed ones are punched out of it and not reused. */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <linux/falloc.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "block_int.h"
#include "log.h"
#include "util.h"

#define Q2_MAGIC		0x514649fbU	/* "QFI\xfb" */
#define Q2_L2_CACHE		(32u << 20)
#define Q2_RB_CACHE		(4u << 20)
#define Q2_MAX_L1_BYTES		(32u << 20)
#define Q2_GROW_AHEAD		(16ULL << 20)
#define Q2_MAX_RT_BYTES		(8u << 20)

#define Q2_INCOMPAT_DIRTY	(1ULL << 0)
#define Q2_INCOMPAT_CORRUPT	(1ULL << 1)
#define Q2_INCOMPAT_DATA_FILE	(1ULL << 2)
#define Q2_INCOMPAT_COMPRESSION	(1ULL << 3)
#define Q2_INCOMPAT_EXTL2	(1ULL << 4)

#define Q2_EXT_END		0x00000000U
#define Q2_EXT_BACKING_FMT	0xe2792acaU
#define Q2_EXT_DATA_FILE	0x44415441U

#define Q2_COPIED		(1ULL << 63)
#define Q2_COMPRESSED		(1ULL << 62)
#define Q2_ZERO			1ULL
#define Q2_OFF_MASK		0x00fffffffffffe00ULL
/* Bits that must be clear in an L1 entry and a standard L2 entry. */
#define Q2_L1_RESERVED		0x7f000000000001ffULL
#define Q2_L2_RESERVED		0x3f000000000001feULL

enum q2_kind { Q2_UNALLOC, Q2_ZEROES, Q2_COMPRESSED_C, Q2_DATA };

/* Host cluster offsets, sorted, each once. */
struct q2set {
	uint64_t *v;
	size_t n, cap;
};

struct q2img {
	char *path;
	int fd;			/* metadata and the synchronous path */
	int dfd;		/* O_DIRECT (cache=none) for new clusters' data, or -1 */
	bool own_fd;		/* a backing layer's, closed with it */
	bool raw, readonly, nosync;
	uint64_t size;		/* the disk it shows */
	uint64_t file_end;	/* the file's size: nothing of the image lies past it */
	uint64_t grown;		/* the file's size set ahead of file_end */
	/* qcow2 only */
	uint32_t version;
	unsigned int cb;	/* cluster_bits */
	uint64_t cs;		/* cluster size */
	unsigned int l2_bits;	/* log2 of the entries in an L2 table */
	uint64_t *l1;		/* big-endian, as on disk */
	uint32_t l1_size;
	uint64_t l1_off;
	bool l1_dirty;
	uint64_t **l2;		/* by L1 index; big-endian tables */
	uint8_t *l2_dirty;
	unsigned int l2_loaded, l2_cap, l2_ndirty, l2_hand;
	uint64_t *rt;		/* refcount table, big-endian */
	uint32_t rt_size;
	uint64_t rt_off;
	bool rt_dirty;
	uint8_t **rb;		/* refcount blocks by refcount table index */
	uint8_t *rb_dirty;
	unsigned int rb_loaded, rb_cap, rb_ndirty, rb_hand;
	unsigned int refcount_order, rb_bits;	/* log2 of the entries in a block */
	/* Where the L1 table's entries put L2 tables and the refcount
	 * table's put refcount blocks (tables are never freed): no data
	 * may lie there. */
	struct q2set l2s, rbs;
	uint64_t *pending;	/* clusters to free once the L2 tables are durable */
	size_t npending, pending_cap;
	bool logged;		/* one corruption message per image */
	uint64_t autoclear;	/* the header's autoclear feature bits */
	struct q2img *backing;
};

static void q2_free(struct q2img *img);

/* GUEST: the image contradicts itself; one line, then -EIO. */
static int corrupt(struct q2img *img, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	if (!img->logged) {
		va_start(ap, fmt);
		vsnprintf(msg, sizeof(msg), fmt, ap);
		va_end(ap);
		pr_err("qcow2 image %s is corrupt: %s; the guest gets an I/O error (qemu-img check tells more)",
		       img->path, msg);
		img->logged = true;
	}
	return -EIO;
}

static int pread_all(int fd, void *buf, uint64_t len, uint64_t off)
{
	struct iovec v = { buf, len };
	int64_t r = block_sync_rw(fd, false, &v, 1, off, len);

	return r < 0 ? (int)r : 0;
}

static int pwrite_all(int fd, const void *buf, uint64_t len, uint64_t off)
{
	struct iovec v = { (void *)buf, len };
	int64_t r = block_sync_rw(fd, true, &v, 1, off, len);

	return r < 0 ? (int)r : 0;
}

static int sync_img(struct q2img *img)
{
	if (img->nosync)
		return 0;
	return fdatasync(img->fd) ? -errno : 0;
}

static uint64_t nentries(const struct q2img *img)
{
	return 1ULL << img->l2_bits;
}

/* The first index of s whose offset is off or more. */
static size_t set_lower(const struct q2set *s, uint64_t off)
{
	size_t lo = 0, hi = s->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (s->v[mid] < off)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Whether one of the clusters of s overlaps [off, off + len). */
static bool set_hits(const struct q2img *img, const struct q2set *s, uint64_t off,
		     uint64_t len)
{
	size_t i = set_lower(s, off >= img->cs ? off - img->cs + 1 : 0);

	return i < s->n && s->v[i] < off + len;
}

static int set_add(struct q2set *s, uint64_t off)
{
	size_t i = set_lower(s, off);

	if (i < s->n && s->v[i] == off)
		return 0;
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 64;
		uint64_t *v = realloc(s->v, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		s->v = v;
		s->cap = cap;
	}
	memmove(s->v + i + 1, s->v + i, (s->n - i) * sizeof(*s->v));
	s->v[i] = off;
	s->n++;
	return 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* s from a big-endian table of n entries: their offsets, but 0. */
static int set_build(struct q2set *s, const uint64_t *tab, uint64_t n)
{
	uint64_t i;
	size_t k;

	s->v = malloc((n ? n : 1) * sizeof(*s->v));
	if (!s->v)
		return -ENOMEM;
	s->cap = n ? n : 1;
	for (i = 0; i < n; i++)
		if (be64toh(tab[i]) & Q2_OFF_MASK)
			s->v[s->n++] = be64toh(tab[i]) & Q2_OFF_MASK;
	qsort(s->v, s->n, sizeof(*s->v), cmp_u64);
	for (i = k = 0; i < s->n; i++)
		if (!k || s->v[k - 1] != s->v[i])
			s->v[k++] = s->v[i];
	s->n = k;
	return 0;
}

/* A host range the image's data may not cover: the header and the
 * tables kvmm knows where to find (whole clusters: a compressed
 * cluster's bytes are not aligned). */
static bool over_meta(const struct q2img *img, uint64_t off, uint64_t len)
{
	uint64_t l1_end = ALIGN_UP(img->l1_off + (uint64_t)img->l1_size * 8, img->cs);
	uint64_t rt_end = img->rt_off + (uint64_t)img->rt_size * 8;

	return off < img->cs || (off < l1_end && off + len > img->l1_off) ||
	       (off < rt_end && off + len > img->rt_off);
}

/* over_meta, or over an L2 table or a refcount block. */
static bool over_tables(const struct q2img *img, uint64_t off, uint64_t len)
{
	return over_meta(img, off, len) || set_hits(img, &img->l2s, off, len) ||
	       set_hits(img, &img->rbs, off, len);
}

/* GUEST: a cluster offset from a table: aligned, inside the file, not
 * over the header or the tables. */
static int check_cluster(struct q2img *img, uint64_t off, const char *what)
{
	if (off & (img->cs - 1))
		return corrupt(img, "%s at %#llx is not cluster-aligned", what, (unsigned long long)off);
	if (off > img->file_end || img->file_end - off < img->cs)
		return corrupt(img, "%s at %#llx is past the end of the file", what,
			       (unsigned long long)off);
	if (over_meta(img, off, img->cs))
		return corrupt(img, "%s at %#llx overlaps the image's header or tables", what,
			       (unsigned long long)off);
	return 0;
}

/* Where a compressed cluster's bytes lie in the file: [*from, *end),
 * cut at the file's end (its last sector may run past it). */
static void comp_range(const struct q2img *img, uint64_t e, uint64_t *from, uint64_t *end)
{
	unsigned int x = 62 - (img->cb - 8);
	uint64_t sectors = ((e & ~Q2_COPIED & ~Q2_COMPRESSED) >> x) + 1;

	*from = e & ((1ULL << x) - 1);
	*end = *from + sectors * 512 - (*from & 511);
	if (*end > img->file_end)
		*end = img->file_end;
}

/* GUEST: a data cluster from an L2 entry: check_cluster's, and none of
 * the L2 tables or refcount blocks either -- written as data, or freed
 * (punched out of the file) when the guest writes over it. */
static int check_data(struct q2img *img, uint64_t e)
{
	uint64_t off, end;
	int r;

	if (e & Q2_COMPRESSED) {
		comp_range(img, e, &off, &end);
		if (off >= img->file_end)
			return corrupt(img, "a compressed cluster at %#llx is past the end of the file",
				       (unsigned long long)off);
	} else {
		off = e & Q2_OFF_MASK;
		r = check_cluster(img, off, "a data cluster");
		if (r)
			return r;
		end = off + img->cs;
	}
	if (over_tables(img, off, end - off))
		return corrupt(img, "%s at %#llx overlaps the image's header or tables",
			       e & Q2_COMPRESSED ? "a compressed cluster" : "a data cluster",
			       (unsigned long long)off);
	return 0;
}

/* --- refcounts ---------------------------------------------------------- */

static uint64_t rc_get(const struct q2img *img, const uint8_t *b, uint64_t i)
{
	unsigned int bits = 1u << img->refcount_order;
	uint64_t v = 0;
	unsigned int k;

	if (bits < 8)
		return (b[i * bits / 8] >> (i * bits % 8)) & ((1u << bits) - 1);
	for (k = 0; k < bits / 8; k++)
		v = v << 8 | b[i * bits / 8 + k];
	return v;
}

static void rc_set(const struct q2img *img, uint8_t *b, uint64_t i, uint64_t v)
{
	unsigned int bits = 1u << img->refcount_order;
	unsigned int k;

	if (bits < 8) {
		uint8_t mask = ((1u << bits) - 1) << (i * bits % 8);

		b[i * bits / 8] = (b[i * bits / 8] & ~mask) | ((v << (i * bits % 8)) & mask);
		return;
	}
	for (k = bits / 8; k--; v >>= 8)
		b[i * bits / 8 + k] = v & 0xff;
}

static int write_refblocks(struct q2img *img, bool *wrote)
{
	uint32_t i;
	int r;

	for (i = 0; img->rb_ndirty && i < img->rt_size; i++) {
		if (!img->rb_dirty[i])
			continue;
		r = pwrite_all(img->fd, img->rb[i], img->cs, be64toh(img->rt[i]) & Q2_OFF_MASK);
		if (r)
			return r;
		img->rb_dirty[i] = 0;
		img->rb_ndirty--;
		*wrote = true;
	}
	return 0;
}

/* The refcount block of table index i; NULL with *err = 0 if there is
 * none. */
static uint8_t *rb_get(struct q2img *img, uint32_t i, int *err)
{
	uint64_t off = be64toh(img->rt[i]);
	uint8_t *b;

	*err = 0;
	if (img->rb[i])
		return img->rb[i];
	if (!off)
		return NULL;
	/* GUEST: the table's entry (reserved bits checked at open). */
	*err = check_cluster(img, off, "a refcount block");
	if (!*err && set_hits(img, &img->l2s, off, img->cs))
		*err = corrupt(img, "refcount table entry %u points at an L2 table", i);
	if (*err)
		return NULL;
	while (img->rb_loaded >= img->rb_cap) {
		uint32_t h = img->rb_hand++ % img->rt_size;

		if (!img->rb[h])
			continue;
		if (img->rb_dirty[h]) {
			*err = pwrite_all(img->fd, img->rb[h], img->cs, be64toh(img->rt[h]) & Q2_OFF_MASK);
			if (*err)
				return NULL;
			img->rb_dirty[h] = 0;
			img->rb_ndirty--;
		}
		free(img->rb[h]);
		img->rb[h] = NULL;
		img->rb_loaded--;
	}
	b = malloc(img->cs);
	if (!b) {
		*err = -ENOMEM;
		return NULL;
	}
	*err = pread_all(img->fd, b, img->cs, off);
	if (*err) {
		free(b);
		return NULL;
	}
	img->rb[i] = b;
	img->rb_loaded++;
	return b;
}

static void rb_mark(struct q2img *img, uint32_t i)
{
	if (!img->rb_dirty[i]) {
		img->rb_dirty[i] = 1;
		img->rb_ndirty++;
	}
}

/* n new clusters, contiguous, at the end of the file, each with
 * refcount 1 (in the cache); *host is the first.  A refcount block
 * missing for them is made in the cluster where they would have
 * started, and they start after it. */
static int alloc_clusters(struct q2img *img, uint64_t n, uint64_t *host)
{
	uint64_t end = ALIGN_UP(img->file_end, img->cs), c, first;
	int r;

again:
	first = end >> img->cb;
	for (c = first; c < first + n; c++) {
		uint64_t i = c >> img->rb_bits;

		if (i >= img->rt_size) {
			if (!img->logged)
				pr_err("qcow2 image %s: its refcount table is full and kvmm does not grow it; qemu-img convert makes a larger one",
				       img->path);
			img->logged = true;
			return -ENOSPC;
		}
		if (!img->rt[i]) {
			/* The new block goes at the head of the range (nothing
			 * skipped), counted in its own block or in first's,
			 * which exists: the loop passed it. */
			uint64_t fi = first >> img->rb_bits;
			uint8_t *b = calloc(1, img->cs), *fb;

			if (!b || set_add(&img->rbs, first << img->cb)) {
				free(b);
				return -ENOMEM;
			}
			img->rb[i] = b;
			img->rb_loaded++;
			img->rt[i] = htobe64(first << img->cb);
			img->rt_dirty = true;
			rb_mark(img, i);
			fb = fi == i ? b : rb_get(img, fi, &r);
			if (!fb)
				return r ? r : -EIO;
			rc_set(img, fb, first & ((1ULL << img->rb_bits) - 1), 1);
			rb_mark(img, fi);
			end = (first + 1) << img->cb;
			img->file_end = end;
			goto again;
		}
	}
	for (c = first; c < first + n; c++) {
		uint32_t i = c >> img->rb_bits;
		uint8_t *b = rb_get(img, i, &r);

		if (!b)
			return r ? r : -EIO;
		rc_set(img, b, c & ((1ULL << img->rb_bits) - 1), 1);
		rb_mark(img, i);
	}
	/* The file grows as they are written: data at once, tables before
	 * anything points at them. */
	end = (first + n) << img->cb;
	img->file_end = end;
	*host = first << img->cb;
	return 0;
}

/* Drops one reference to the cluster at off; punched out of the file at
 * zero. */
static int unref_cluster(struct q2img *img, uint64_t off)
{
	uint64_t c = off >> img->cb, v;
	uint32_t i = c >> img->rb_bits;
	uint8_t *b;
	int r;

	if (i >= img->rt_size)
		return corrupt(img, "cluster %#llx has no refcount", (unsigned long long)off);
	/* The last line before a hole is punched: never into the header or
	 * a table, whatever a table said was freed. */
	if (over_tables(img, off, img->cs))
		return corrupt(img, "cluster %#llx is freed but is the image's header or a table",
			       (unsigned long long)off);
	b = rb_get(img, i, &r);
	if (!b)
		return r ? r : corrupt(img, "cluster %#llx has no refcount block", (unsigned long long)off);
	v = rc_get(img, b, c & ((1ULL << img->rb_bits) - 1));
	if (!v)
		return corrupt(img, "cluster %#llx is in use with refcount 0", (unsigned long long)off);
	rc_set(img, b, c & ((1ULL << img->rb_bits) - 1), v - 1);
	rb_mark(img, i);
	if (v == 1)
		fallocate(img->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, img->cs);
	return 0;
}

/* The host clusters an L2 entry holds, for freeing once nothing points
 * at them. */
static int pend_free(struct q2img *img, uint64_t e)
{
	uint64_t from, to, c;

	if (e & Q2_COMPRESSED) {
		comp_range(img, e, &from, &to);
		/* Past the file's end: nothing of it to free (a cluster
		 * allocated there later is not this entry's). */
		if (from >= to)
			return 0;
		to--;
	} else {
		from = e & Q2_OFF_MASK;
		if (!from)
			return 0;
		to = from;
	}
	for (c = from >> img->cb; c <= to >> img->cb; c++) {
		if (img->npending == img->pending_cap) {
			size_t cap = img->pending_cap ? img->pending_cap * 2 : 64;
			uint64_t *p = realloc(img->pending, cap * sizeof(*p));

			if (!p)
				return -ENOMEM;	/* a leak at worst */
			img->pending = p;
			img->pending_cap = cap;
		}
		img->pending[img->npending++] = c << img->cb;
	}
	return 0;
}

/* --- L1 / L2 ---------------------------------------------------------- */

static void l2_mark(struct q2img *img, uint32_t i)
{
	if (!img->l2_dirty[i]) {
		img->l2_dirty[i] = 1;
		img->l2_ndirty++;
	}
}

/* Metadata to the file, in the order that keeps a crash at any point
 * harmless: refcounts first (a cluster counted but not yet used is a
 * leak), then the L2 tables, then the L1 table that points at new ones,
 * each step durable before the next; clusters given up are counted down
 * only once no table points at them. */
static int meta_flush(struct q2img *img)
{
	bool wrote = false;
	uint32_t i;
	size_t k;
	int r;

	if (img->raw || img->readonly)
		return 0;
	r = write_refblocks(img, &wrote);
	if (!r && img->rt_dirty) {
		if (wrote && (r = sync_img(img)))
			return r;
		r = pwrite_all(img->fd, img->rt, (uint64_t)img->rt_size * 8, img->rt_off);
		img->rt_dirty = r != 0;
		wrote = true;
	}
	if (r)
		return r;
	if (img->l2_ndirty || img->l1_dirty || img->npending) {
		if (wrote && (r = sync_img(img)))
			return r;
		wrote = false;
		for (i = 0; img->l2_ndirty && i < img->l1_size; i++) {
			if (!img->l2_dirty[i])
				continue;
			r = pwrite_all(img->fd, img->l2[i], img->cs, be64toh(img->l1[i]) & Q2_OFF_MASK);
			if (r)
				return r;
			img->l2_dirty[i] = 0;
			img->l2_ndirty--;
			wrote = true;
		}
	}
	if (img->l1_dirty) {
		if (wrote && (r = sync_img(img)))
			return r;
		r = pwrite_all(img->fd, img->l1, (uint64_t)img->l1_size * 8, img->l1_off);
		if (r)
			return r;
		img->l1_dirty = false;
		wrote = true;
	}
	if (img->npending) {
		if (wrote && (r = sync_img(img)))
			return r;
		for (k = 0; k < img->npending; k++)
			unref_cluster(img, img->pending[k]);	/* a failure leaks */
		img->npending = 0;
		wrote = false;
		r = write_refblocks(img, &wrote);
	}
	return r;
}

/* The L2 table of L1 index i: NULL with *err = 0 if unallocated (and not
 * alloc). */
static uint64_t *l2_get(struct q2img *img, uint32_t i, bool alloc, int *err)
{
	uint64_t e = be64toh(img->l1[i]), off = e & Q2_OFF_MASK;
	uint64_t *t;

	*err = 0;
	if (img->l2[i])
		return img->l2[i];
	if (!off && !alloc)
		return NULL;
	/* GUEST: the L1 entry. */
	if (off && (e & Q2_L1_RESERVED)) {
		*err = corrupt(img, "L1 entry %u has reserved bits set", i);
		return NULL;
	}
	if (off && (*err = check_cluster(img, off, "an L2 table")))
		return NULL;
	if (off && set_hits(img, &img->rbs, off, img->cs)) {
		*err = corrupt(img, "L1 entry %u points at a refcount block", i);
		return NULL;
	}
	while (img->l2_loaded >= img->l2_cap) {
		uint32_t h = img->l2_hand++ % img->l1_size;

		if (!img->l2[h])
			continue;
		if (img->l2_dirty[h]) {
			/* Its new entries' refcounts go first (meta_flush). */
			bool wrote = false;

			*err = write_refblocks(img, &wrote);
			if (!*err && img->rt_dirty) {
				*err = sync_img(img);
				if (!*err)
					*err = pwrite_all(img->fd, img->rt, (uint64_t)img->rt_size * 8,
							  img->rt_off);
				img->rt_dirty = *err != 0;
				wrote = true;
			}
			if (!*err && wrote)
				*err = sync_img(img);
			if (!*err)
				*err = pwrite_all(img->fd, img->l2[h], img->cs,
						  be64toh(img->l1[h]) & Q2_OFF_MASK);
			if (*err)
				return NULL;
			img->l2_dirty[h] = 0;
			img->l2_ndirty--;
		}
		free(img->l2[h]);
		img->l2[h] = NULL;
		img->l2_loaded--;
	}
	if (!off) {
		*err = alloc_clusters(img, 1, &off);
		if (*err)
			return NULL;
		t = calloc(1, img->cs);
		if (!t || set_add(&img->l2s, off)) {
			free(t);
			*err = -ENOMEM;	/* the cluster leaks */
			return NULL;
		}
		img->l1[i] = htobe64(off | Q2_COPIED);
		img->l1_dirty = true;
		img->l2[i] = t;
		img->l2_loaded++;
		l2_mark(img, i);
		return t;
	}
	t = malloc(img->cs);
	if (!t) {
		*err = -ENOMEM;
		return NULL;
	}
	*err = pread_all(img->fd, t, img->cs, off);
	if (*err) {
		free(t);
		return NULL;
	}
	img->l2[i] = t;
	img->l2_loaded++;
	return t;
}

/* GUEST: what an L2 entry says, checked. */
static int classify(struct q2img *img, uint64_t e, enum q2_kind *kind)
{
	if (e & Q2_COMPRESSED) {
		*kind = Q2_COMPRESSED_C;
		return check_data(img, e);
	}
	if (e & Q2_L2_RESERVED)
		return corrupt(img, "an L2 entry (%#llx) has reserved bits set", (unsigned long long)e);
	if (e & Q2_ZERO) {
		if (img->version < 3)
			return corrupt(img, "a version 2 image has a zero cluster");
		*kind = Q2_ZEROES;
		return 0;
	}
	if (!(e & Q2_OFF_MASK)) {
		*kind = Q2_UNALLOC;
		return 0;
	}
	*kind = Q2_DATA;
	return check_data(img, e);
}

/* Where disk offset off is, for [off, off + len): *host and *run of
 * contiguous data clusters (0), or the *run of clusters that are not
 * (BLOCK_MAP_SELF); for a write, clusters shared or compressed are not
 * data to write in place.  Stays within one L2 table. */
static int q2_map_img(struct q2img *img, uint64_t off, uint64_t len, bool write,
		      uint64_t *host, uint64_t *run)
{
	uint64_t vc = off >> img->cb, in = off & (img->cs - 1);
	uint32_t l1i = vc >> img->l2_bits;
	uint64_t l2i = vc & (nentries(img) - 1), k, got, first = 0;
	uint64_t *t;
	enum q2_kind kind;
	bool data0 = false;
	int r;

	t = l2_get(img, l1i, false, &r);
	if (r)
		return r;
	if (!t) {
		*run = MIN(len, ((nentries(img) - l2i) << img->cb) - in);
		return BLOCK_MAP_SELF;
	}
	got = img->cs - in;
	for (k = l2i; k < nentries(img); k++) {
		uint64_t e = be64toh(t[k]);
		bool data;

		r = classify(img, e, &kind);
		if (r)
			return r;
		data = kind == Q2_DATA && (!write || (e & Q2_COPIED));
		if (k == l2i) {
			data0 = data;
			first = e & Q2_OFF_MASK;
		} else if (got >= len || data != data0 ||
			   (data && (e & Q2_OFF_MASK) != first + ((k - l2i) << img->cb))) {
			break;
		} else {
			got += img->cs;
		}
	}
	*run = MIN(got, len);
	if (!data0)
		return BLOCK_MAP_SELF;
	*host = first + in;
	return 0;
}

static int inflate_cluster(struct q2img *img, uint64_t e, uint8_t *out)
{
	unsigned int x = 62 - (img->cb - 8);
	uint64_t off = e & ((1ULL << x) - 1);
	uint64_t clen = (((e & ~Q2_COPIED & ~Q2_COMPRESSED) >> x) + 1) * 512 - (off & 511);
	z_stream z = { 0 };
	uint8_t *in;
	int r;

	/* GUEST: the compressed run lies in the file, after the header. */
	if (off < img->cs || off >= img->file_end)
		return corrupt(img, "a compressed cluster at %#llx is outside the file",
			       (unsigned long long)off);
	clen = MIN(clen, img->file_end - off);
	in = malloc(clen);
	if (!in)
		return -ENOMEM;
	r = pread_all(img->fd, in, clen, off);
	if (!r) {
		if (inflateInit2(&z, -12) != Z_OK) {
			free(in);
			return -ENOMEM;
		}
		z.next_in = in;
		z.avail_in = clen;
		z.next_out = out;
		z.avail_out = img->cs;
		r = inflate(&z, Z_FINISH);
		r = (r == Z_STREAM_END || r == Z_OK || r == Z_BUF_ERROR) && !z.avail_out ? 0 :
		    corrupt(img, "a compressed cluster at %#llx does not inflate to a cluster",
			    (unsigned long long)off);
		inflateEnd(&z);
	}
	free(in);
	return r;
}

/* [off, off + len) of the disk img shows, into buf. */
static int img_read(struct q2img *img, uint64_t off, uint8_t *buf, uint64_t len)
{
	uint64_t past = off < img->size ? img->size - off : 0;

	/* Past the disk's end (a shorter backing file): zeros. */
	if (len > past) {
		memset(buf + past, 0, len - past);
		len = past;
	}
	if (img->raw) {
		uint64_t have = off < img->file_end ? MIN(len, img->file_end - off) : 0;

		memset(buf + have, 0, len - have);
		return have ? pread_all(img->fd, buf, have, off) : 0;
	}
	while (len) {
		uint64_t host, run, vc = off >> img->cb, in = off & (img->cs - 1);
		int r = q2_map_img(img, off, len, false, &host, &run);

		if (r < 0)
			return r;
		if (!r) {
			r = pread_all(img->fd, buf, run, host);
		} else {
			uint64_t *t, e = 0;
			enum q2_kind kind = Q2_UNALLOC;

			run = MIN(len, img->cs - in);	/* one cluster at a time */
			t = l2_get(img, vc >> img->l2_bits, false, &r);
			if (r)
				return r;
			if (t) {
				e = be64toh(t[vc & (nentries(img) - 1)]);
				r = classify(img, e, &kind);
				if (r)
					return r;
			}
			if (kind == Q2_ZEROES || (kind == Q2_UNALLOC && !img->backing)) {
				memset(buf, 0, run);
			} else if (kind == Q2_UNALLOC) {
				r = img_read(img->backing, off, buf, run);
			} else if (kind == Q2_COMPRESSED_C) {
				uint8_t *c = malloc(img->cs);

				r = c ? inflate_cluster(img, e, c) : -ENOMEM;
				if (!r)
					memcpy(buf, c + in, run);
				free(c);
			} else {
				r = pread_all(img->fd, buf, run, (e & Q2_OFF_MASK) + in);
			}
		}
		if (r)
			return r;
		off += run;
		buf += run;
		len -= run;
	}
	return 0;
}

static bool iov_direct(const struct iovec *v, unsigned int n)
{
	unsigned int i;

	for (i = 0; i < n; i++)
		if (((uintptr_t)v[i].iov_base | v[i].iov_len) & (BLOCK_SECTOR - 1))
			return false;
	return true;
}

/* A write over clusters that are not data to write in place: new
 * clusters for the whole of them, what the write leaves of the first
 * and last copied in from what the disk showed there, then the L2
 * entries.  [off, off + len) lies within one L2 table. */
static int write_alloc(struct q2img *img, const struct iovec *iov, unsigned int n,
		       uint64_t off, uint64_t len)
{
	uint64_t first = off >> img->cb, last = (off + len - 1) >> img->cb;
	uint64_t head = off & (img->cs - 1), tail = ((last + 1) << img->cb) - (off + len);
	uint64_t nc = last - first + 1, host, k, l2i = first & (nentries(img) - 1);
	uint32_t l1i = first >> img->l2_bits;
	struct iovec v[BLOCK_MAX_IOV + 2];
	uint8_t *hb = NULL, *tb = NULL;
	unsigned int nv = 0, i;
	uint64_t *t;
	int64_t w;
	int r;

	t = l2_get(img, l1i, true, &r);
	if (!t)
		return r ? r : -EIO;
	/* GUEST: what the new clusters replace is freed: it must be data. */
	for (k = 0; k < nc; k++) {
		enum q2_kind kind;

		r = classify(img, be64toh(t[l2i + k]), &kind);
		if (r)
			return r;
	}
	r = -ENOMEM;
	if ((head && posix_memalign((void **)&hb, 4096, head)) ||
	    (tail && posix_memalign((void **)&tb, 4096, tail)))
		goto out;
	if ((head && (r = img_read(img, first << img->cb, hb, head))) ||
	    (tail && (r = img_read(img, off + len, tb, tail))))
		goto out;
	r = alloc_clusters(img, nc, &host);
	if (r)
		goto out;
	if (head)
		v[nv++] = (struct iovec){ hb, head };
	for (i = 0; i < n; i++)
		v[nv++] = iov[i];
	if (tail)
		v[nv++] = (struct iovec){ tb, tail };
	/* cache=none: new clusters bypass the page cache too, where the
	 * guest's buffers allow it. */
	w = -EINVAL;
	if (img->dfd >= 0 && iov_direct(v, nv))
		w = block_sync_rw(img->dfd, true, v, nv, host, nc << img->cb);
	if (w == -EINVAL)
		w = block_sync_rw(img->fd, true, v, nv, host, nc << img->cb);
	if (w < 0) {
		r = w;	/* the clusters leak */
		goto out;
	}
	t = l2_get(img, l1i, true, &r);
	if (!t)
		goto out;
	for (k = 0; k < nc; k++) {
		uint64_t old = be64toh(t[l2i + k]);

		if (old & (Q2_COMPRESSED | Q2_OFF_MASK))
			pend_free(img, old);
		t[l2i + k] = htobe64((host + (k << img->cb)) | Q2_COPIED);
	}
	l2_mark(img, l1i);
	r = 0;
out:
	free(hb);
	free(tb);
	return r;
}

static struct q2img *img_of(struct block_dev *bd)
{
	return bd->fmt_priv;
}

static int q2_map(struct block_dev *bd, uint64_t off, uint64_t len, bool write,
		  uint64_t *host, uint64_t *run)
{
	return q2_map_img(img_of(bd), off, len, write, host, run);
}

/* A write of whole clusters [off, off + len), within one L2 table, over
 * clusters unallocated or zero: new ones for the engine to write at
 * *host (0), the L2 entries left for q2_commit; else 1 (write_alloc
 * does it: a partial cluster's rest to copy, data to move). */
static int q2_alloc(struct block_dev *bd, uint64_t off, uint64_t len, uint64_t *host)
{
	struct q2img *img = img_of(bd);
	uint64_t first = off >> img->cb, nc = len >> img->cb, k;
	uint64_t l2i = first & (nentries(img) - 1);
	uint32_t l1i = first >> img->l2_bits;
	enum q2_kind kind;
	uint64_t *t;
	int r;

	if (img->readonly)
		return -EROFS;
	if (!len || ((off | len) & (img->cs - 1)) || l2i + nc > nentries(img))
		return 1;
	t = l2_get(img, l1i, true, &r);
	if (!t)
		return r ? r : -EIO;
	for (k = 0; k < nc; k++) {
		r = classify(img, be64toh(t[l2i + k]), &kind);
		if (r)
			return r;
		if (kind != Q2_UNALLOC && kind != Q2_ZEROES)
			return 1;
	}
	r = alloc_clusters(img, nc, host);
	/* The file's size ahead of the clusters the engine writes: a direct
	 * write past the end of a file is one the file system serializes
	 * (ext4: exclusive inode lock, done before io_uring gets on).  The
	 * tail is a hole, cut off at close. */
	if (!r && img->file_end > img->grown) {
		uint64_t to = ALIGN_UP(img->file_end, Q2_GROW_AHEAD);

		if (!ftruncate(img->fd, to))
			img->grown = to;
	}
	return r;
}

/* q2_alloc's clusters at host hold the write's data now: the L2 entries
 * point at them (what they held before is freed once that is durable,
 * as in write_alloc). */
static int q2_commit(struct block_dev *bd, uint64_t off, uint64_t len, uint64_t host)
{
	struct q2img *img = img_of(bd);
	uint64_t first = off >> img->cb, nc = len >> img->cb, k;
	uint64_t l2i = first & (nentries(img) - 1);
	uint32_t l1i = first >> img->l2_bits;
	uint64_t *t;
	int r;

	t = l2_get(img, l1i, true, &r);
	if (!t)
		return r ? r : -EIO;
	for (k = 0; k < nc; k++) {
		uint64_t old = be64toh(t[l2i + k]);
		enum q2_kind kind;

		/* GUEST: a table reloaded from the file since q2_alloc. */
		r = classify(img, old, &kind);
		if (r)
			return r;
		if (old & (Q2_COMPRESSED | Q2_OFF_MASK))
			pend_free(img, old);
		t[l2i + k] = htobe64((host + (k << img->cb)) | Q2_COPIED);
	}
	l2_mark(img, l1i);
	return 0;
}

/* 1 if [off, off + len) reads as zeros without reading the file (an
 * empty image's common case), 0 if not, or -errno. */
static int all_zero(struct q2img *img, uint64_t off, uint64_t len)
{
	uint64_t vc, last = (off + len - 1) >> img->cb;
	enum q2_kind kind;
	int r;

	for (vc = off >> img->cb; vc <= last; vc++) {
		uint64_t *t = l2_get(img, vc >> img->l2_bits, false, &r);

		if (r)
			return r;
		if (!t) {
			if (img->backing)
				return 0;
			continue;
		}
		r = classify(img, be64toh(t[vc & (nentries(img) - 1)]), &kind);
		if (r)
			return r;
		if (kind != Q2_ZEROES && (kind != Q2_UNALLOC || img->backing))
			return 0;
	}
	return 1;
}

static int q2_rw(struct block_dev *bd, bool write, const struct iovec *iov, unsigned int n,
		 uint64_t off, uint64_t len)
{
	struct q2img *img = img_of(bd);
	uint8_t *buf;
	uint64_t done = 0;
	unsigned int i;
	int r;

	if (write)	/* block_start refused it already */
		return img->readonly ? -EROFS : write_alloc(img, iov, n, off, len);
	r = all_zero(img, off, len);
	if (r < 0)
		return r;
	if (r) {
		for (i = 0; i < n; i++)
			memset(iov[i].iov_base, 0, iov[i].iov_len);
		return 0;
	}
	buf = malloc(len);
	if (!buf)
		return -ENOMEM;
	r = img_read(img, off, buf, len);
	for (i = 0; !r && i < n; done += iov[i++].iov_len)
		memcpy(iov[i].iov_base, buf + done, iov[i].iov_len);
	free(buf);
	return r;
}

/* A write of iov through map, for write_zeroes's partial clusters. */
static int write_range(struct block_dev *bd, const struct iovec *iov, unsigned int n,
		       uint64_t off, uint64_t len)
{
	uint64_t done, host, run;

	for (done = 0; done < len; done += run) {
		struct iovec v[BLOCK_MAX_IOV];
		unsigned int k;
		int r = q2_map(bd, off + done, len - done, true, &host, &run);

		if (r < 0)
			return r;
		k = block_iov_slice(iov, n, done, run, v);
		if (r == BLOCK_MAP_SELF)
			r = q2_rw(bd, true, v, k, off + done, run);
		else
			r = block_sync_rw(bd->bfd, true, v, k, host, run) < 0 ? -EIO : 0;
		if (r)
			return r;
	}
	return 0;
}

static int write_zero_bytes(struct block_dev *bd, uint64_t off, uint64_t len)
{
	static const uint8_t zero[64 * 1024];
	struct iovec v = { (void *)zero, 0 };
	int r = 0;

	while (len && !r) {
		v.iov_len = MIN(len, sizeof(zero));
		r = write_range(bd, &v, 1, off, v.iov_len);
		off += v.iov_len;
		len -= v.iov_len;
	}
	return r;
}

/* Whole clusters in [off, off + len) become unallocated (reading as
 * zeros, or the backing file's: then, for zeroes or where v3 allows it,
 * zero clusters); the rest is written with zeros if zeroes, else left
 * (a discard is a hint). */
static int drop_range(struct block_dev *bd, uint64_t off, uint64_t len, bool zeroes)
{
	struct q2img *img = img_of(bd);
	uint64_t start = ALIGN_UP(off, img->cs), end = ALIGN_DOWN(off + len, img->cs), c;
	bool can = !img->backing || img->version >= 3;
	uint64_t newe = img->backing ? Q2_ZERO : 0;
	enum q2_kind kind;
	int r = 0;

	if (start >= end || !can) {
		if (!zeroes)
			return 0;
		return write_zero_bytes(bd, off, len);
	}
	if (zeroes && off < start && (r = write_zero_bytes(bd, off, start - off)))
		return r;
	if (zeroes && end < off + len && (r = write_zero_bytes(bd, end, off + len - end)))
		return r;
	for (c = start >> img->cb; c < end >> img->cb; c++) {
		uint32_t l1i = c >> img->l2_bits;
		uint64_t *t = l2_get(img, l1i, newe != 0, &r), old;

		if (r)
			return r;
		if (!t)
			continue;
		old = be64toh(t[c & (nentries(img) - 1)]);
		if (old == newe)
			continue;
		/* GUEST: what is freed must be data. */
		r = classify(img, old, &kind);
		if (r)
			return r;
		if (old & (Q2_COMPRESSED | Q2_OFF_MASK))
			pend_free(img, old);
		t[c & (nentries(img) - 1)] = htobe64(newe);
		l2_mark(img, l1i);
	}
	/* The clusters freed are counted down after the tables are durable. */
	return meta_flush(img);
}

static int q2_discard(struct block_dev *bd, uint64_t off, uint64_t len)
{
	return drop_range(bd, off, len, false);
}

static int q2_write_zeroes(struct block_dev *bd, uint64_t off, uint64_t len)
{
	return drop_range(bd, off, len, true);
}

static int q2_flush(struct block_dev *bd)
{
	return meta_flush(img_of(bd));
}

static int write_header_field(struct q2img *img, uint64_t off, uint64_t v, unsigned int bytes)
{
	uint8_t b[8];
	unsigned int k;

	for (k = bytes; k--; v >>= 8)
		b[k] = v & 0xff;
	return pwrite_all(img->fd, b, bytes, off);
}

static int grow_l1(struct q2img *img, uint32_t need)
{
	uint64_t old_bytes = ALIGN_UP((uint64_t)img->l1_size * 8, img->cs);
	uint64_t new_bytes = ALIGN_UP((uint64_t)need * 8, img->cs), host = img->l1_off, c;
	uint64_t *l1 = calloc(need, 8), **l2 = calloc(need, sizeof(*l2));
	uint8_t *dirty = calloc(need, 1);
	int r = -ENOMEM;

	if (!l1 || !l2 || !dirty)
		goto fail;
	memcpy(l1, img->l1, (uint64_t)img->l1_size * 8);
	memcpy(l2, img->l2, (uint64_t)img->l1_size * sizeof(*l2));
	memcpy(dirty, img->l2_dirty, img->l1_size);
	if ((uint64_t)need * 8 > old_bytes) {
		r = alloc_clusters(img, new_bytes >> img->cb, &host);
		if (r)
			goto fail;
	}
	r = pwrite_all(img->fd, l1, (uint64_t)need * 8, host);
	if (!r)
		r = meta_flush(img);	/* the new table's refcounts */
	if (!r)
		r = sync_img(img);
	if (!r)
		r = write_header_field(img, 40, host, 8);
	if (!r)
		r = write_header_field(img, 36, need, 4);
	if (!r)
		r = sync_img(img);
	if (r)
		goto fail;
	if (host != img->l1_off)
		for (c = 0; c < old_bytes; c += img->cs)
			pend_free(img, (img->l1_off + c) | Q2_COPIED);
	free(img->l1);
	free(img->l2);
	free(img->l2_dirty);
	img->l1 = l1;
	img->l2 = l2;
	img->l2_dirty = dirty;
	img->l1_off = host;
	img->l1_size = need;
	return meta_flush(img);
fail:
	free(l1);
	free(l2);
	free(dirty);
	return r;
}

/* Grows the disk: a larger L1 table if it needs one (moved to the end of
 * the file when it outgrows its clusters), then the header's size. */
static int q2_resize(struct block_dev *bd, uint64_t size)
{
	struct q2img *img = img_of(bd);
	uint64_t span = img->cs << img->l2_bits, need = (size + span - 1) / span;
	int r;

	if (size < img->size) {
		pr_err("qcow2 image %s: kvmm grows qcow2 images only", img->path);
		return -ENOTSUP;
	}
	if (need * 8 > Q2_MAX_L1_BYTES)
		return -EFBIG;
	r = meta_flush(img);
	if (!r && need > img->l1_size)
		r = grow_l1(img, need);
	if (!r)
		r = write_header_field(img, 24, size, 8);
	if (!r)
		r = sync_img(img);
	if (!r)
		img->size = size;
	return r;
}

/* --- open --------------------------------------------------------------- */

static uint64_t get_be(const uint8_t *p, unsigned int bytes)
{
	uint64_t v = 0;

	while (bytes--)
		v = v << 8 | *p++;
	return v;
}

/* The header of img (its fd, path and file_end set) and its tables;
 * *backing and *backing_fmt what it names ("" if nothing).  Prints why
 * not and returns -errno. */
static int parse_header(struct q2img *img, char *backing, size_t blen, char *backing_fmt,
			size_t flen)
{
	uint8_t h[4096];
	uint64_t incompat = 0, autoclear = 0, hlen = 72, boff, bsize, need, span, ext;
	uint32_t nb_snap, rt_clusters;
	const char *tables;
	uint64_t i;
	int r;

	backing[0] = backing_fmt[0] = '\0';
	if (img->file_end < 72) {
		pr_err("disk %s is not a qcow2 image: it is too short; check format=", img->path);
		return -EINVAL;
	}
	memset(h, 0, sizeof(h));
	r = pread_all(img->fd, h, MIN(sizeof(h), img->file_end), 0);
	if (r) {
		pr_err("cannot read disk %s: %s", img->path, strerror(-r));
		return r;
	}
	if (get_be(h, 4) != Q2_MAGIC) {
		pr_err("disk %s is not a qcow2 image (no QFI magic); check format=", img->path);
		return -EINVAL;
	}
	img->version = get_be(h + 4, 4);
	if (img->version != 2 && img->version != 3) {
		pr_err("qcow2 image %s has version %u: kvmm reads versions 2 and 3", img->path,
		       img->version);
		return -ENOTSUP;
	}
	img->cb = get_be(h + 20, 4);
	if (img->cb < 9 || img->cb > 21) {
		pr_err("qcow2 image %s: cluster_bits %u is out of range (9 to 21)", img->path, img->cb);
		return -EINVAL;
	}
	img->cs = 1ULL << img->cb;
	img->l2_bits = img->cb - 3;
	img->size = get_be(h + 24, 8);
	if (get_be(h + 32, 4)) {
		pr_err("qcow2 image %s is encrypted: kvmm does not support encrypted qcow2", img->path);
		return -ENOTSUP;
	}
	img->l1_size = get_be(h + 36, 4);
	img->l1_off = get_be(h + 40, 8);
	img->rt_off = get_be(h + 48, 8);
	rt_clusters = get_be(h + 56, 4);
	nb_snap = get_be(h + 60, 4);
	img->refcount_order = 4;
	if (img->version == 3) {
		incompat = get_be(h + 72, 8);
		autoclear = get_be(h + 88, 8);
		img->refcount_order = get_be(h + 96, 4);
		hlen = get_be(h + 100, 4);
		if (hlen < 104 || hlen > img->cs || hlen > sizeof(h) || hlen % 8) {
			pr_err("qcow2 image %s: header_length %llu is not valid", img->path,
			       (unsigned long long)hlen);
			return -EINVAL;
		}
		if (img->refcount_order > 6) {
			pr_err("qcow2 image %s: refcount_order %u is out of range (0 to 6)", img->path,
			       img->refcount_order);
			return -EINVAL;
		}
	}
	if (incompat & Q2_INCOMPAT_DATA_FILE) {
		pr_err("qcow2 image %s keeps its data in an external data file: kvmm does not support that", img->path);
		return -ENOTSUP;
	}
	if (incompat & Q2_INCOMPAT_COMPRESSION) {
		pr_err("qcow2 image %s uses a compression type other than zlib: kvmm does not support it", img->path);
		return -ENOTSUP;
	}
	if (incompat & Q2_INCOMPAT_EXTL2) {
		pr_err("qcow2 image %s has extended L2 entries (subclusters): kvmm does not support them", img->path);
		return -ENOTSUP;
	}
	if (incompat & ~(Q2_INCOMPAT_DIRTY | Q2_INCOMPAT_CORRUPT)) {
		pr_err("qcow2 image %s has incompatible features %#llx kvmm does not know", img->path,
		       (unsigned long long)incompat);
		return -ENOTSUP;
	}
	if (!img->readonly && (incompat & Q2_INCOMPAT_DIRTY)) {
		pr_err("qcow2 image %s is dirty (lazy refcounts not written back): run qemu-img check -r all on it, or give readonly=on",
		       img->path);
		return -EINVAL;
	}
	if (!img->readonly && (incompat & Q2_INCOMPAT_CORRUPT)) {
		pr_err("qcow2 image %s is marked corrupt: repair it (qemu-img check -r all), or give readonly=on",
		       img->path);
		return -EINVAL;
	}
	if (!img->readonly && nb_snap) {
		pr_err("qcow2 image %s has %u internal snapshots: kvmm writes images without them only; give readonly=on",
		       img->path, nb_snap);
		return -ENOTSUP;
	}
	span = img->cs << img->l2_bits;
	need = img->size / span + !!(img->size % span);
	if ((uint64_t)img->l1_size * 8 > Q2_MAX_L1_BYTES || need > img->l1_size) {
		pr_err("qcow2 image %s: its L1 table (%u entries) does not fit its size %llu",
		       img->path, img->l1_size, (unsigned long long)img->size);
		return -EINVAL;
	}
	if (img->l1_size && ((img->l1_off & (img->cs - 1)) || !img->l1_off || img->l1_off > img->file_end ||
			     img->file_end - img->l1_off < (uint64_t)img->l1_size * 8)) {
		pr_err("qcow2 image %s: its L1 table offset %#llx is not valid", img->path,
		       (unsigned long long)img->l1_off);
		return -EINVAL;
	}
	if (!rt_clusters || (uint64_t)rt_clusters << img->cb > Q2_MAX_RT_BYTES ||
	    (img->rt_off & (img->cs - 1)) || !img->rt_off || img->rt_off > img->file_end ||
	    img->file_end - img->rt_off < (uint64_t)rt_clusters << img->cb) {
		pr_err("qcow2 image %s: its refcount table (%#llx, %u clusters) is not valid",
		       img->path, (unsigned long long)img->rt_off, rt_clusters);
		return -EINVAL;
	}
	img->rt_size = ((uint64_t)rt_clusters << img->cb) / 8;
	if (img->l1_size && img->l1_off < img->rt_off + ((uint64_t)rt_clusters << img->cb) &&
	    img->rt_off < img->l1_off + (uint64_t)img->l1_size * 8) {
		pr_err("qcow2 image %s: its L1 and refcount tables overlap", img->path);
		return -EINVAL;
	}
	img->rb_bits = img->cb + 3 - img->refcount_order;
	/* The backing file's name, and the header extensions. */
	boff = get_be(h + 8, 8);
	bsize = get_be(h + 16, 4);
	if (boff) {
		if (bsize == 0 || bsize > 1023 || bsize >= blen || boff < hlen ||
		    boff + bsize > MIN(img->cs, sizeof(h))) {
			pr_err("qcow2 image %s: its backing file name (offset %llu, %llu bytes) is not valid",
			       img->path, (unsigned long long)boff, (unsigned long long)bsize);
			return -EINVAL;
		}
		memcpy(backing, h + boff, bsize);
		backing[bsize] = '\0';
		if (strlen(backing) != bsize) {
			pr_err("qcow2 image %s: its backing file name holds a NUL", img->path);
			return -EINVAL;
		}
	}
	for (ext = hlen; ext + 8 <= MIN(img->cs, sizeof(h));) {
		uint32_t type = get_be(h + ext, 4), len = get_be(h + ext + 4, 4);

		if (type == Q2_EXT_END)
			break;
		if (len > MIN(img->cs, sizeof(h)) - ext - 8) {
			pr_err("qcow2 image %s: a header extension runs past the header", img->path);
			return -EINVAL;
		}
		if (type == Q2_EXT_DATA_FILE) {
			pr_err("qcow2 image %s names an external data file: kvmm does not support that", img->path);
			return -ENOTSUP;
		}
		if (type == Q2_EXT_BACKING_FMT && len < flen) {
			memcpy(backing_fmt, h + ext + 8, len);
			backing_fmt[len] = '\0';
		}
		ext += 8 + ALIGN_UP((uint64_t)len, 8);
	}
	img->autoclear = autoclear;
	img->l1 = calloc(img->l1_size ? img->l1_size : 1, 8);
	img->l2 = calloc(img->l1_size ? img->l1_size : 1, sizeof(*img->l2));
	img->l2_dirty = calloc(img->l1_size ? img->l1_size : 1, 1);
	img->rt = malloc((uint64_t)img->rt_size * 8);
	img->rb = calloc(img->rt_size, sizeof(*img->rb));
	img->rb_dirty = calloc(img->rt_size, 1);
	if (!img->l1 || !img->l2 || !img->l2_dirty || !img->rt || !img->rb || !img->rb_dirty) {
		pr_err("cannot open disk %s: out of memory", img->path);
		return -ENOMEM;
	}
	r = pread_all(img->fd, img->l1, (uint64_t)img->l1_size * 8, img->l1_off);
	if (!r)
		r = pread_all(img->fd, img->rt, (uint64_t)img->rt_size * 8, img->rt_off);
	if (r) {
		pr_err("cannot read disk %s: %s", img->path, strerror(-r));
		return r;
	}
	for (i = 0; i < img->rt_size; i++)
		if (be64toh(img->rt[i]) & 0x1ff) {
			pr_err("qcow2 image %s: refcount table entry %llu is not valid", img->path,
			       (unsigned long long)i);
			return -EINVAL;
		}
	if (set_build(&img->l2s, img->l1, img->l1_size) ||
	    set_build(&img->rbs, img->rt, img->rt_size)) {
		pr_err("cannot open disk %s: out of memory", img->path);
		return -ENOMEM;
	}
	img->l2_cap = MAX(16u, MIN(img->l1_size, Q2_L2_CACHE >> img->cb));
	img->rb_cap = MAX(4u, MIN(img->rt_size, Q2_RB_CACHE >> img->cb));
	/* The unit tests' way to make tables leave the caches. */
	tables = getenv("KVMM_QCOW2_CACHE_TABLES");
	if (tables && atoi(tables) > 0)
		img->l2_cap = img->rb_cap = atoi(tables);
	return 0;
}

static void q2_free(struct q2img *img)
{
	uint32_t i;

	if (!img)
		return;
	q2_free(img->backing);
	for (i = 0; img->l2 && i < img->l1_size; i++)
		free(img->l2[i]);
	for (i = 0; img->rb && i < img->rt_size; i++)
		free(img->rb[i]);
	free(img->l1);
	free(img->l2);
	free(img->l2_dirty);
	free(img->rt);
	free(img->rb);
	free(img->rb_dirty);
	free(img->pending);
	free(img->l2s.v);
	free(img->rbs.v);
	if (img->own_fd && img->fd >= 0)
		close(img->fd);
	free(img->path);
	free(img);
}

/* The layers below top, as d names them: each the one its upper layer's
 * header names (relative to that layer's directory), in the format d
 * gives, locked shared, none twice.  The first nreuse layers are open
 * already (reuse[depth], an overlay's image and its chain): those are
 * used as they are, whatever name a header gives, and no path is opened
 * or looked at for them (a sandboxed kvmm can do neither). */
static int open_chain(struct q2img *top, const struct disk_config *d, const char *name,
		      const char *name_fmt, struct stat *seen, const int *reuse,
		      unsigned int nreuse)
{
	struct q2img *upper = top;
	char backing[1024], bfmt[32], nbuf[1024], nfmt[32];
	unsigned int depth;
	int r;

	snprintf(nbuf, sizeof(nbuf), "%s", name);
	snprintf(nfmt, sizeof(nfmt), "%s", name_fmt);
	for (depth = 0;; depth++) {
		enum disk_format fmt = depth < d->nbacking_format ? d->backing_format[depth] :
								   DISK_FORMAT_RAW;
		struct q2img *img;
		struct stat st, want;
		char *dir, *full;
		unsigned int k;

		if (!nbuf[0]) {
			if (depth < d->nbacking) {
				pr_err("disk %s: %s has no backing file, but backing= names %s", d->path,
				       upper->path, d->backing[depth]);
				return -EINVAL;
			}
			return 0;
		}
		if (depth >= d->nbacking) {
			pr_err("disk %s: %s names backing file '%s', which the configuration does not allow: add it to backing=",
			       d->path, upper->path, nbuf);
			return -EPERM;
		}
		/* Open already: the layers under the first were checked when
		 * the disk opened; the first is checked against the name the
		 * overlay's header gives -- unless the overlay came as a
		 * descriptor, whose sender vouches for it (kvmm, confined,
		 * may look at no path), and nothing named is opened anyway. */
		if (depth < nreuse && fstat(reuse[depth], &want))
			return -errno;
		if (depth < nreuse && (depth > 0 || d->has_fd))
			goto checked;
		/* The name as the image gives it, relative to its directory. */
		dir = strdup(upper->path);
		if (!dir)
			return -ENOMEM;
		if (nbuf[0] == '/')
			full = strdup(nbuf);
		else if (asprintf(&full, "%s/%s", dirname(dir), nbuf) < 0)
			full = NULL;
		free(dir);
		if (!full)
			return -ENOMEM;
		r = stat(full, &st);
		free(full);
		if (depth >= nreuse && stat(d->backing[depth], &want)) {
			pr_err("cannot open backing file %s of disk %s: %s", d->backing[depth], d->path,
			       strerror(errno));
			return -errno;
		}
		/* Before open: a FIFO would wait there for a writer. */
		if (!S_ISREG(want.st_mode) && !S_ISBLK(want.st_mode)) {
			pr_err("backing file %s of disk %s is not a regular file or a block device: give backing= an image",
			       d->backing[depth], d->path);
			return -EINVAL;
		}
		if (r || st.st_dev != want.st_dev || st.st_ino != want.st_ino) {
			pr_err("disk %s: %s names backing file '%s', not %s as backing= says",
			       d->path, upper->path, nbuf, d->backing[depth]);
			return -EPERM;
		}
checked:
		if (nfmt[0] && strcmp(nfmt, disk_format_name(fmt))) {
			pr_err("disk %s: %s says its backing file %s is %s, but backing_format= says %s",
			       d->path, upper->path, d->backing[depth], nfmt, disk_format_name(fmt));
			return -EINVAL;
		}
		for (k = 0; k <= depth; k++)
			if (seen[k].st_dev == want.st_dev && seen[k].st_ino == want.st_ino) {
				pr_err("disk %s: its backing chain loops at %s", d->path, d->backing[depth]);
				return -ELOOP;
			}
		seen[depth + 1] = want;
		img = calloc(1, sizeof(*img));
		if (!img)
			return -ENOMEM;
		upper->backing = img;
		img->own_fd = true;
		img->dfd = -1;
		img->readonly = img->nosync = true;
		img->raw = fmt == DISK_FORMAT_RAW;
		img->path = strdup(d->backing[depth]);
		img->fd = depth < nreuse ? fcntl(reuse[depth], F_DUPFD_CLOEXEC, 3) :
					   open(d->backing[depth], O_RDONLY | O_CLOEXEC);
		if (!img->path || img->fd < 0 || fstat(img->fd, &st)) {
			pr_err("cannot open backing file %s of disk %s: %s", d->backing[depth], d->path,
			       strerror(errno ? errno : ENOMEM));
			return -EIO;
		}
		if (file_refused(img->fd, FILE_OK_BLK)) {
			pr_err("backing file %s of disk %s is not a regular file or a block device (it is %s): give backing= an image",
			       d->backing[depth], d->path, file_refused(img->fd, FILE_OK_BLK));
			return -EINVAL;
		}
		if (flock(img->fd, LOCK_SH | LOCK_NB)) {
			pr_err("backing file %s of disk %s is being written by another process",
			       d->backing[depth], d->path);
			return -EBUSY;
		}
		img->file_end = lseek(img->fd, 0, SEEK_END);
		if (img->raw) {
			img->size = img->file_end;
			nbuf[0] = '\0';
		} else {
			r = parse_header(img, backing, sizeof(backing), bfmt, sizeof(bfmt));
			if (r)
				return r;
			memcpy(nbuf, backing, sizeof(nbuf));
			memcpy(nfmt, bfmt, sizeof(nfmt));
		}
		upper = img;
	}
}

static int q2_open(struct block_dev *bd, const struct disk_config *d, uint64_t file_size,
		   uint64_t *size)
{
	struct q2img *img = calloc(1, sizeof(*img));
	struct stat seen[KVMM_MAX_BACKING + 1];
	char backing[1024], bfmt[32];
	int reuse[KVMM_MAX_BACKING];
	unsigned int nreuse = 0;
	int r;

	if (!img || !(img->path = strdup(d->path))) {
		free(img);
		pr_err("cannot open disk %s: out of memory", d->path);
		return -ENOMEM;
	}
	bd->fmt_priv = img;
	img->fd = bd->bfd;
	img->dfd = bd->direct ? bd->fd : -1;
	img->readonly = bd->readonly;
	img->nosync = bd->cache == DISK_CACHE_UNSAFE;
	img->file_end = file_size;
	if (bd->blkdev) {
		pr_err("disk %s: kvmm takes qcow2 images in files only", d->path);
		r = -ENOTSUP;
		goto fail;
	}
	r = parse_header(img, backing, sizeof(backing), bfmt, sizeof(bfmt));
	if (r)
		goto fail;
	if (fstat(img->fd, &seen[0])) {
		r = -errno;
		goto fail;
	}
	/* An overlay over a running disk: that disk's files, as open. */
	if (bd->below) {
		const struct q2img *l;

		reuse[nreuse++] = bd->below->bfd;
		if (bd->below->fmt == &block_qcow2)
			for (l = bd->below->fmt_priv; l && (l = l->backing) &&
			     nreuse < KVMM_MAX_BACKING;)
				reuse[nreuse++] = l->fd;
	}
	r = open_chain(img, d, backing, bfmt, seen, reuse, nreuse);
	if (r)
		goto fail;
	/* Autoclear features kvmm does not keep (bitmaps) are dropped once
	 * it may write, as the format asks; nothing is written before the
	 * whole chain is accepted. */
	if (!img->readonly && img->autoclear) {
		r = write_header_field(img, 88, 0, 8);
		if (!r)
			r = sync_img(img);
		if (r) {
			pr_err("cannot write disk %s: %s", img->path, strerror(-r));
			goto fail;
		}
	}
	*size = img->size;
	return 0;
fail:
	q2_free(img);
	bd->fmt_priv = NULL;
	return r;
}

static void q2_close(struct block_dev *bd)
{
	struct q2img *img = img_of(bd);

	if (!img)
		return;
	/* What the guest wrote stays mapped after kvmm ends. */
	if (!img->readonly && (meta_flush(img) || sync_img(img)))
		pr_err("qcow2 image %s: its tables could not be written back; qemu-img check -r leaks repairs it",
		       img->path);
	/* Nothing of the image lies in what q2_alloc grew ahead. */
	else if (img->grown > img->file_end && ftruncate(img->fd, img->file_end))
		pr_warn("qcow2 image %s: cannot cut its unused tail: %s", img->path, strerror(errno));
	q2_free(img);
	bd->fmt_priv = NULL;
}

const struct block_format block_qcow2 = {
	.name = "qcow2",
	.open = q2_open,
	.map = q2_map,
	.alloc = q2_alloc,
	.commit = q2_commit,
	.rw = q2_rw,
	.flush = q2_flush,
	.discard = q2_discard,
	.write_zeroes = q2_write_zeroes,
	.resize = q2_resize,
	.close = q2_close,
};
