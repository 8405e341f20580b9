/* virtio-blk (virtio 1.2, 5.2): one request queue onto a raw image file
 * or block device.
 *
 * Requests run on the main loop thread, in batches: a kick pops up to
 * BLK_BATCH chains, submits their reads and writes together (io_uring,
 * or preadv/pwritev when io_uring is unavailable or KVMM_NO_IO_URING=1)
 * and waits for them before completing the batch.  FLUSH, DISCARD and
 * WRITE_ZEROES first finish what the batch already holds, so they cover
 * every write submitted before them.  Nothing is in flight between two
 * kicks, which keeps reset, save and load trivial. */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <liburing.h>

#include "config.h"
#include "log.h"
#include "util.h"
#include "virtio.h"
#include "vm.h"

#define BLK_QUEUE_SIZE		256
#define BLK_BATCH		16
/* Batches one kick may run before the device queues itself a new pass,
 * so one guest cannot hold the loop. */
#define BLK_BATCHES_PER_PASS	8
#define SECTOR			512ULL
#define BLK_SEG_MAX		(VIRTQ_MAX_SEGS - 2)	/* header and status */
#define BLK_MAX_RANGE		(1U << 22)	/* sectors per DISCARD/WRITE_ZEROES */

#define VIRTIO_BLK_F_SEG_MAX		2
#define VIRTIO_BLK_F_RO			5
#define VIRTIO_BLK_F_BLK_SIZE		6
#define VIRTIO_BLK_F_FLUSH		9
#define VIRTIO_BLK_F_DISCARD		13
#define VIRTIO_BLK_F_WRITE_ZEROES	14

#define VIRTIO_BLK_T_IN			0
#define VIRTIO_BLK_T_OUT		1
#define VIRTIO_BLK_T_FLUSH		4
#define VIRTIO_BLK_T_GET_ID		8
#define VIRTIO_BLK_T_DISCARD		11
#define VIRTIO_BLK_T_WRITE_ZEROES	13

#define VIRTIO_BLK_S_OK		0
#define VIRTIO_BLK_S_IOERR	1
#define VIRTIO_BLK_S_UNSUPP	2

#define BLK_WZ_F_UNMAP		1

#define BLK_HDR_LEN		16	/* type, reserved, sector */
#define BLK_SEG_LEN		16	/* sector, num_sectors, flags */
#define BLK_CONFIG_LEN		60	/* through write_zeroes_may_unmap */

struct blk_req {
	struct virtq_elem e;
	uint8_t *status;
	uint32_t used;			/* bytes written into the chain */
	uint32_t type;
	bool io;			/* a read or write waiting in the batch */
	int fd;
	uint64_t off, bytes;
	struct iovec data[VIRTQ_MAX_SEGS];
	unsigned int ndata;
	int64_t res;
};

struct blk {
	const char *path;
	int fd;				/* O_DIRECT with cache=none when possible */
	int bfd;			/* buffered: fd itself unless fd is O_DIRECT */
	bool direct, readonly;
	enum disk_cache cache;
	uint32_t blk_size;		/* bytes; requests are aligned to it */
	uint64_t capacity;		/* sectors */
	char serial[KVMM_DISK_SERIAL_MAX];
	bool uring;
	struct io_uring ring;
	struct blk_stats {
		uint64_t rd_reqs, wr_reqs, flush_reqs, other_reqs;
		uint64_t rd_bytes, wr_bytes, errors;
	} stats;
	unsigned int nreqs;
	struct blk_req reqs[BLK_BATCH];
};

/* Copies len bytes starting skip bytes into iov[0..n) to buf. */
static bool iov_read(const struct iovec *iov, unsigned int n, uint64_t skip,
		     void *buf, uint64_t len)
{
	unsigned int i;

	for (i = 0; i < n && len; i++) {
		uint64_t take;

		if (skip >= iov[i].iov_len) {
			skip -= iov[i].iov_len;
			continue;
		}
		take = MIN(iov[i].iov_len - skip, len);
		memcpy(buf, (uint8_t *)iov[i].iov_base + skip, take);
		buf = (uint8_t *)buf + take;
		len -= take;
		skip = 0;
	}
	return !len;
}

/* The part of iov[0..n) from skip, len bytes long, as a new vector. */
static unsigned int iov_slice(const struct iovec *iov, unsigned int n, uint64_t skip,
			      uint64_t len, struct iovec *out)
{
	unsigned int i, k = 0;

	for (i = 0; i < n && len; i++) {
		uint64_t take;

		if (skip >= iov[i].iov_len) {
			skip -= iov[i].iov_len;
			continue;
		}
		take = MIN(iov[i].iov_len - skip, len);
		if (take) {
			out[k].iov_base = (uint8_t *)iov[i].iov_base + skip;
			out[k++].iov_len = take;
		}
		len -= take;
		skip = 0;
	}
	return k;
}

static bool iov_aligned(const struct iovec *iov, unsigned int n)
{
	unsigned int i;

	for (i = 0; i < n; i++)
		if (((uintptr_t)iov[i].iov_base | iov[i].iov_len) & (SECTOR - 1))
			return false;
	return true;
}

/* GUEST: a sector range is valid only inside the disk and on whole
 * logical blocks; the sum cannot wrap because count is checked against
 * what is left. */
static bool in_range(const struct blk *b, uint64_t sector, uint64_t count)
{
	uint64_t per_block = b->blk_size / SECTOR;

	return sector <= b->capacity && count <= b->capacity - sector &&
	       !(sector % per_block) && !(count % per_block);
}

/* Whole transfer or -errno: the fallback path and O_DIRECT retries. */
static int64_t sync_rw(int fd, bool write, struct iovec *iov, unsigned int n,
		       uint64_t off, uint64_t bytes)
{
	uint64_t done = 0;

	while (done < bytes) {
		struct iovec v[VIRTQ_MAX_SEGS];
		unsigned int k = iov_slice(iov, n, done, bytes - done, v);
		ssize_t r = write ? pwritev(fd, v, k, off + done) : preadv(fd, v, k, off + done);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			return -EIO;	/* the file shrank under us */
		done += r;
	}
	return done;
}

#define NOT_DONE	INT64_MIN

/* Runs the batch's reads and writes: together through io_uring, or one
 * after the other. */
static void run_io(struct blk *b)
{
	unsigned int i, queued = 0;
	int s = 0;

	for (i = 0; i < b->nreqs; i++) {
		struct blk_req *r = &b->reqs[i];
		struct io_uring_sqe *sqe;

		if (!r->io)
			continue;
		r->res = NOT_DONE;
		sqe = b->uring ? io_uring_get_sqe(&b->ring) : NULL;
		if (!sqe)
			continue;	/* done synchronously below */
		if (r->type == VIRTIO_BLK_T_OUT)
			io_uring_prep_writev(sqe, r->fd, r->data, r->ndata, r->off);
		else
			io_uring_prep_readv(sqe, r->fd, r->data, r->ndata, r->off);
		io_uring_sqe_set_data(sqe, r);
		queued++;
	}
	if (queued) {
		s = io_uring_submit_and_wait(&b->ring, queued);
		if (s < 0)
			s = 0;
	}
	/* Only what the kernel took can complete. */
	for (i = 0; i < (unsigned int)s; ) {
		struct io_uring_cqe *cqe;
		int w = io_uring_wait_cqe(&b->ring, &cqe);

		if (w == -EINTR)
			continue;
		if (w < 0)
			break;
		((struct blk_req *)io_uring_cqe_get_data(cqe))->res = cqe->res;
		io_uring_cqe_seen(&b->ring, cqe);
		i++;
	}
	if ((unsigned int)s != queued || i != queued) {
		/* The ring misbehaved: drop it (and any SQE it did not take,
		 * whose iovecs will be reused) and go on without it. */
		pr_warn("%s: io_uring failed, using preadv/pwritev from now on", b->path);
		io_uring_queue_exit(&b->ring);
		b->uring = false;
	}
	for (i = 0; i < b->nreqs; i++) {
		struct blk_req *r = &b->reqs[i];

		if (r->io && r->res == NOT_DONE)
			r->res = sync_rw(r->fd, r->type == VIRTIO_BLK_T_OUT, r->data,
					 r->ndata, r->off, r->bytes);
	}
	for (i = 0; i < b->nreqs; i++) {
		struct blk_req *r = &b->reqs[i];
		bool write = r->type == VIRTIO_BLK_T_OUT;

		if (!r->io)
			continue;
		r->io = false;
		/* The file system's direct-I/O alignment may be larger than
		 * a sector: do what it refused through the page cache. */
		if (r->res == -EINVAL && r->fd != b->bfd)
			r->res = sync_rw(b->bfd, write, r->data, r->ndata, r->off, r->bytes);
		else if (r->res >= 0 && (uint64_t)r->res < r->bytes)
			r->res = sync_rw(r->fd, write, r->data, r->ndata,
					 r->off, r->bytes);	/* short: redo whole */
		if (r->res >= 0 && (uint64_t)r->res == r->bytes) {
			*r->status = VIRTIO_BLK_S_OK;
			if (write)
				b->stats.wr_bytes += r->bytes;
			else
				b->stats.rd_bytes += r->bytes;
		} else {
			pr_debug("%s: %s of %llu bytes at %llu: %s", b->path,
				 write ? "write" : "read", (unsigned long long)r->bytes,
				 (unsigned long long)r->off,
				 r->res < 0 ? strerror(-r->res) : "short");
			*r->status = VIRTIO_BLK_S_IOERR;
			r->used = 1;	/* nothing of the data is promised */
		}
	}
}

static int do_flush(struct blk *b)
{
	if (b->cache == DISK_CACHE_UNSAFE || b->readonly)
		return 0;
	return fdatasync(b->fd) ? -errno : 0;
}

/* Zeroes through the page cache when the file system cannot. */
static int write_zeroes(struct blk *b, uint64_t off, uint64_t len)
{
	static const uint8_t zero[64 * 1024];

	if (!fallocate(b->bfd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, off, len))
		return 0;
	while (len) {
		ssize_t r = pwrite(b->bfd, zero, MIN(len, sizeof(zero)), off);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return r < 0 ? -errno : -EIO;
		off += r;
		len -= r;
	}
	return 0;
}

/* DISCARD and WRITE_ZEROES: one segment (max_*_seg = 1). */
static uint8_t do_ranges(struct blk *b, struct blk_req *r)
{
	struct { uint64_t sector; uint32_t num; uint32_t flags; } seg;
	uint64_t len = r->e.out_len - BLK_HDR_LEN;

	/* GUEST: exactly one whole segment; unknown flags and UNMAP on a
	 * discard are unsupported (5.2.6.1). */
	if (len != BLK_SEG_LEN ||
	    !iov_read(r->e.iov, r->e.n_out, BLK_HDR_LEN, &seg, sizeof(seg)))
		return VIRTIO_BLK_S_UNSUPP;
	if (seg.flags & ~BLK_WZ_F_UNMAP ||
	    (r->type == VIRTIO_BLK_T_DISCARD && seg.flags))
		return VIRTIO_BLK_S_UNSUPP;
	if (b->readonly || seg.num > BLK_MAX_RANGE || !in_range(b, seg.sector, seg.num))
		return VIRTIO_BLK_S_IOERR;
	if (r->type == VIRTIO_BLK_T_WRITE_ZEROES)
		return write_zeroes(b, seg.sector * SECTOR, seg.num * SECTOR) ?
		       VIRTIO_BLK_S_IOERR : VIRTIO_BLK_S_OK;
	/* A discard is a hint: a file system without holes keeps the data. */
	if (fallocate(b->bfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
		      seg.sector * SECTOR, seg.num * SECTOR) &&
	    errno != EOPNOTSUPP)
		return VIRTIO_BLK_S_IOERR;
	return VIRTIO_BLK_S_OK;
}

/* Reads the header of the chain in r->e and either queues its I/O in
 * the batch or does it now; false if the chain has no status byte. */
static bool parse(struct blk *b, struct blk_req *r)
{
	struct { uint32_t type, reserved; uint64_t sector; } hdr;
	struct virtq_elem *e = &r->e;
	unsigned int i;
	uint64_t len;

	/* GUEST: the header is the first 16 readable bytes, the status the
	 * last writable byte, whatever the descriptors' boundaries. */
	r->status = NULL;
	for (i = e->n_out + e->n_in; i > e->n_out; i--) {
		if (e->iov[i - 1].iov_len) {
			r->status = (uint8_t *)e->iov[i - 1].iov_base + e->iov[i - 1].iov_len - 1;
			break;
		}
	}
	if (!r->status)
		return false;
	r->used = 1;
	r->io = false;
	if (!iov_read(e->iov, e->n_out, 0, &hdr, sizeof(hdr))) {
		*r->status = VIRTIO_BLK_S_IOERR;
		return true;
	}
	r->type = hdr.type;
	switch (hdr.type) {
	case VIRTIO_BLK_T_IN:
	case VIRTIO_BLK_T_OUT:
		if (hdr.type == VIRTIO_BLK_T_IN) {
			b->stats.rd_reqs++;
			len = e->in_len - 1;
			r->ndata = iov_slice(e->iov + e->n_out, e->n_in, 0, len, r->data);
		} else {
			b->stats.wr_reqs++;
			len = e->out_len - BLK_HDR_LEN;
			r->ndata = iov_slice(e->iov, e->n_out, BLK_HDR_LEN, len, r->data);
		}
		/* GUEST: whole sectors inside the disk; no writes on a
		 * read-only disk. */
		if (len % SECTOR || !in_range(b, hdr.sector, len / SECTOR) ||
		    (hdr.type == VIRTIO_BLK_T_OUT && b->readonly)) {
			pr_debug("%s: refused %s of %llu bytes at sector %llu",
				 b->path, hdr.type ? "write" : "read",
				 (unsigned long long)len, (unsigned long long)hdr.sector);
			*r->status = VIRTIO_BLK_S_IOERR;
			return true;
		}
		if (hdr.type == VIRTIO_BLK_T_IN)
			r->used += len;
		r->off = hdr.sector * SECTOR;
		r->bytes = len;
		r->fd = b->direct && !iov_aligned(r->data, r->ndata) ? b->bfd : b->fd;
		r->io = true;
		return true;
	case VIRTIO_BLK_T_FLUSH:
		b->stats.flush_reqs++;
		run_io(b);
		*r->status = do_flush(b) ? VIRTIO_BLK_S_IOERR : VIRTIO_BLK_S_OK;
		return true;
	case VIRTIO_BLK_T_GET_ID:
		b->stats.other_reqs++;
		/* GUEST: at most the buffer's room, less the status byte. */
		len = MIN(e->in_len - 1, sizeof(b->serial));
		r->used += virtq_elem_write(e, b->serial, len);
		*r->status = VIRTIO_BLK_S_OK;
		return true;
	case VIRTIO_BLK_T_DISCARD:
	case VIRTIO_BLK_T_WRITE_ZEROES:
		b->stats.other_reqs++;
		run_io(b);
		*r->status = do_ranges(b, r);
		return true;
	}
	b->stats.other_reqs++;
	*r->status = VIRTIO_BLK_S_UNSUPP;
	return true;
}

/* Runs the batch's I/O and gives every chain back. */
static int complete(struct virtio_pci *vp, struct blk *b, unsigned int q)
{
	unsigned int i;
	int r = 0;

	run_io(b);
	for (i = 0; i < b->nreqs && !r; i++) {
		if (b->reqs[i].status && *b->reqs[i].status != VIRTIO_BLK_S_OK)
			b->stats.errors++;
		r = virtq_push(&vp->queues[q].vq, vp->mem, b->reqs[i].e.head,
			       b->reqs[i].used);
	}
	b->nreqs = 0;
	if (r) {
		virtio_needs_reset(vp);
		return r;
	}
	if (i)
		virtio_queue_interrupt(vp, q);
	return 0;
}

static void blk_queue_notify(struct virtio_pci *vp, unsigned int q)
{
	struct blk *b = vp->priv;
	unsigned int batches = 0;
	int r = 1;

	while (r > 0 && batches++ < BLK_BATCHES_PER_PASS) {
		while (b->nreqs < BLK_BATCH) {
			struct blk_req *req = &b->reqs[b->nreqs];

			r = virtio_pop(vp, q, &req->e);
			if (r <= 0)
				break;
			if (!parse(b, req)) {
				/* GUEST: no writable byte for a status: give
				 * the chain back untouched. */
				req->status = NULL;
				req->used = 0;
				b->stats.errors++;
			}
			b->nreqs++;
		}
		if (r < 0) {
			b->nreqs = 0;	/* the device needs a reset */
			return;
		}
		if (complete(vp, b, q))
			return;
	}
	if (r > 0)
		virtio_queue_kick(vp, q);
}

static void put32(uint8_t *p, uint32_t v)
{
	memcpy(p, &v, 4);
}

static void blk_config_read(struct virtio_pci *vp, unsigned int off,
			    uint8_t *data, unsigned int len)
{
	struct blk *b = vp->priv;
	uint8_t cfg[BLK_CONFIG_LEN] = { 0 };

	memcpy(cfg, &b->capacity, 8);
	put32(cfg + 12, BLK_SEG_MAX);
	put32(cfg + 20, b->blk_size);
	put32(cfg + 36, BLK_MAX_RANGE);		/* max_discard_sectors */
	put32(cfg + 40, 1);			/* max_discard_seg */
	put32(cfg + 44, b->blk_size / SECTOR);	/* discard_sector_alignment */
	put32(cfg + 48, BLK_MAX_RANGE);		/* max_write_zeroes_sectors */
	put32(cfg + 52, 1);			/* max_write_zeroes_seg */
	/* The transport checked off + len <= config_len. */
	memcpy(data, cfg + off, len);
}

/* Requests never outlive a kick: nothing to drop on reset, nothing of
 * the device's own to save. */
static void blk_reset(struct virtio_pci *vp)
{
}

static int blk_save(struct virtio_pci *vp, struct state_buf *out)
{
	return 0;
}

static int blk_load(struct virtio_pci *vp, const uint8_t *data, size_t len)
{
	return len ? -EINVAL : 0;
}

static void blk_free(struct blk *b)
{
	if (!b)
		return;
	if (b->uring)
		io_uring_queue_exit(&b->ring);
	if (b->bfd >= 0 && b->bfd != b->fd)
		close(b->bfd);
	if (b->fd >= 0)
		close(b->fd);
	free(b);
}

static void blk_destroy(struct virtio_pci *vp)
{
	blk_free(vp->priv);
	vp->priv = NULL;
}

static const struct virtio_dev_ops blk_ops = {
	.name = "virtio-blk",
	.type = 2,			/* block device */
	.pci_class = 0x0100,		/* mass storage: SCSI, as QEMU's */
	.nqueues = 1,
	.queue_size = BLK_QUEUE_SIZE,
	.features = 1ULL << VIRTIO_BLK_F_SEG_MAX | 1ULL << VIRTIO_BLK_F_BLK_SIZE |
		    1ULL << VIRTIO_BLK_F_FLUSH | 1ULL << VIRTIO_BLK_F_DISCARD |
		    1ULL << VIRTIO_BLK_F_WRITE_ZEROES,
	.config_len = BLK_CONFIG_LEN,
	.config_read = blk_config_read,
	.queue_notify = blk_queue_notify,
	.reset = blk_reset,
	.save = blk_save,
	.load = blk_load,
	.destroy = blk_destroy,
};

int virtio_blk_stats(struct device *dev, struct virtio_blk_stats *st)
{
	struct virtio_pci *vp = virtio_pci_of(dev);
	struct blk *b;

	if (!vp || vp->ops != &blk_ops)
		return -ENODEV;
	pthread_mutex_lock(&dev->lock);
	b = vp->priv;
	*st = (struct virtio_blk_stats){
		.path = b->path,
		.rd_reqs = b->stats.rd_reqs, .wr_reqs = b->stats.wr_reqs,
		.flush_reqs = b->stats.flush_reqs, .other_reqs = b->stats.other_reqs,
		.rd_bytes = b->stats.rd_bytes, .wr_bytes = b->stats.wr_bytes,
		.errors = b->stats.errors,
	};
	pthread_mutex_unlock(&dev->lock);
	return 0;
}

int virtio_blk_resize(struct device *dev, uint64_t size, char *err, size_t errlen)
{
	struct virtio_pci *vp = virtio_pci_of(dev);
	struct stat st;
	struct blk *b;
	int r = 0;

	if (!vp || vp->ops != &blk_ops)
		return -ENODEV;
	pthread_mutex_lock(&dev->lock);
	b = vp->priv;
	if (b->readonly) {
		snprintf(err, errlen, "disk %s is read-only", b->path);
		r = -EROFS;
	} else if (fstat(b->bfd, &st) || !S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "disk %s is not an image file: kvmm resizes image files only",
			 b->path);
		r = -ENOTSUP;
	} else if (!size || size % b->blk_size || size > (uint64_t)INT64_MAX) {
		snprintf(err, errlen, "size %llu is not valid: give a positive multiple of the block size (%u bytes)",
			 (unsigned long long)size, b->blk_size);
		r = -EINVAL;
	} else if (ftruncate(b->bfd, (off_t)size)) {
		r = -errno;
		snprintf(err, errlen, "cannot resize disk %s: %s", b->path, strerror(-r));
	} else {
		/* Requests run under this lock, so none straddles the change. */
		b->capacity = size / SECTOR;
		virtio_config_changed(vp);
	}
	pthread_mutex_unlock(&dev->lock);
	return r;
}

/* Opens the image, with O_DIRECT for cache=none when the file system
 * takes it.  Prints why not and returns -errno. */
static int blk_open(struct blk *b, const struct disk_config *d)
{
	int flags = (d->readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC;

	if (d->cache == DISK_CACHE_NONE) {
		b->fd = open(d->path, flags | O_DIRECT);
		if (b->fd >= 0) {
			b->direct = true;
			b->bfd = open(d->path, flags);
			if (b->bfd < 0)
				goto fail;
			return 0;
		}
		if (errno != EINVAL)
			goto fail;
		pr_warn("disk %s: the file system refuses O_DIRECT; cache=none goes through the page cache",
			d->path);
	}
	b->fd = b->bfd = open(d->path, flags);
	if (b->fd >= 0)
		return 0;
fail:
	pr_err("cannot open disk %s: %s; check the --disk path and its permissions",
	       d->path, strerror(errno));
	return -errno;
}

/* GUEST-visible size, and the checks a person needs before boot: the
 * right kind of file, not given twice for writing, not in use. */
static int blk_check(struct blk *b, const struct vm_config *cfg, unsigned int index)
{
	const struct disk_config *d = &cfg->disks[index];
	struct stat st, other;
	uint64_t size;
	unsigned int i;

	if (fstat(b->fd, &st))
		return -errno;
	if (S_ISBLK(st.st_mode)) {
		if (ioctl(b->fd, BLKGETSIZE64, &size)) {
			pr_err("cannot read the size of disk %s: %s", d->path, strerror(errno));
			return -errno;
		}
	} else if (S_ISREG(st.st_mode)) {
		size = st.st_size;
	} else {
		pr_err("disk %s is not a regular file or a block device: give --disk path= an image",
		       d->path);
		return -EINVAL;
	}
	for (i = 0; i < index; i++) {
		if (stat(cfg->disks[i].path, &other) || other.st_dev != st.st_dev ||
		    other.st_ino != st.st_ino)
			continue;
		if (!d->readonly || !cfg->disks[i].readonly) {
			pr_err("disk %s is given twice and is writable: give it once, or readonly=on each time",
			       d->path);
			return -EINVAL;
		}
	}
	/* Another kvmm (or anyone honouring flock) writing it too would
	 * corrupt it under the guest. */
	if (flock(b->fd, (d->readonly ? LOCK_SH : LOCK_EX) | LOCK_NB)) {
		pr_err("disk %s is in use by another process: stop it, or give readonly=on to both",
		       d->path);
		return -EBUSY;
	}
	/* A partial last block is out of the guest's reach. */
	b->capacity = size / b->blk_size * (b->blk_size / SECTOR);
	return 0;
}

struct device *virtio_blk_create(struct vm *vm, unsigned int index,
				 unsigned int slot, uint64_t bar_addr)
{
	const struct disk_config *d = &vm->cfg->disks[index];
	const char *no_uring = getenv("KVMM_NO_IO_URING");
	struct virtio_pci *vp;
	struct blk *b = calloc(1, sizeof(*b));
	int r;

	if (!b) {
		pr_err("cannot create disk %s: out of memory", d->path);
		return NULL;
	}
	b->fd = b->bfd = -1;
	b->path = d->path;
	b->readonly = d->readonly;
	b->cache = d->cache;
	b->blk_size = d->blk_size ? d->blk_size : SECTOR;
	if (d->serial)
		memcpy(b->serial, d->serial, strnlen(d->serial, sizeof(b->serial)));
	if (blk_open(b, d) || blk_check(b, vm->cfg, index)) {
		blk_free(b);
		return NULL;
	}
	if (no_uring && !strcmp(no_uring, "1")) {
		pr_info("disk %s: KVMM_NO_IO_URING=1, using preadv/pwritev", d->path);
	} else {
		r = io_uring_queue_init(BLK_BATCH * 2, &b->ring, 0);
		if (r)
			pr_info("disk %s: no io_uring (%s), using preadv/pwritev",
				d->path, strerror(-r));
		b->uring = !r;
	}
	vp = virtio_pci_create(vm, &blk_ops, b, slot, bar_addr);
	if (!vp)
		return NULL;	/* destroy freed b */
	if (d->readonly)
		vp->dev_features = 1ULL << VIRTIO_BLK_F_RO;
	return &vp->f.dev;
}
