/* virtio-blk (virtio 1.2, 5.2): one request queue onto a raw image file
 * or block device.
 *
 * Reads and writes overlap: a kick pops what the guest made available,
 * queues each read and write on the disk's io_uring and submits them in
 * one go, and returns; the ring's completions land on an eventfd the main
 * loop watches, whose handler gives the chains back and interrupts the
 * guest once per pass.  So up to a queue's worth of requests stay in
 * flight across kicks and the main loop never waits for the disk.  (The
 * main loop rather than a thread per disk: submission is a system call
 * that does not block for O_DIRECT I/O, completion is a ring read, and
 * the queue, rings and counters stay on the one thread that runs every
 * other queue, with no new locking.)  Without io_uring (KVMM_NO_IO_URING=1
 * or none in the kernel) every request runs synchronously with
 * preadv/pwritev within the kick.
 *
 * FLUSH, DISCARD and WRITE_ZEROES are barriers: popping stops until
 * every request before them has completed, so a flush covers every write
 * submitted before it (stricter than 5.2.6.2 asks, which is only the
 * completed ones).  The flush itself goes through the ring; DISCARD and
 * WRITE_ZEROES, rare, run synchronously.  A device reset, and the
 * device's destruction, wait for what is in flight and drop it before
 * the rings go away; a save waits for it and completes it, so nothing of
 * the device's own is left to save, and so does a resize, so that no
 * request checked against the old size runs under the new one. */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <linux/virtio_blk.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <liburing.h>

#include "config.h"
#include "log.h"
#include "loop.h"
#include "util.h"
#include "virtio.h"
#include "virtio/blk.h"
#include "vm.h"

#define BLK_QUEUE_SIZE		256
/* Chains one kick may pop before the device queues itself a new pass,
 * so one guest cannot hold the loop. */
#define BLK_POPS_PER_PASS	BLK_QUEUE_SIZE
#define SECTOR			512ULL
#define BLK_SEG_MAX		(VIRTQ_MAX_SEGS - 2)	/* header and status */
#define BLK_MAX_RANGE		(1U << 22)	/* sectors per DISCARD/WRITE_ZEROES */




#define BLK_WZ_F_UNMAP		1

#define BLK_HDR_LEN		16	/* type, reserved, sector */
#define BLK_SEG_LEN		16	/* sector, num_sectors, flags */
/* Through write_zeroes_may_unmap and its padding (secure erase is not
 * offered). */
#define BLK_CONFIG_LEN		offsetof(struct virtio_blk_config, max_secure_erase_sectors)

struct blk_req {
	struct virtq_elem e;
	uint8_t *status;
	uint32_t used;			/* bytes written into the chain */
	uint32_t type;
	int fd;
	uint64_t off, bytes;
	struct iovec data[VIRTQ_MAX_SEGS];
	unsigned int ndata;
	bool queued;			/* on the ring */
	int64_t res;
	uint64_t start_ns;		/* popped: its time counts from here */
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
	int efd;			/* the ring's completions, in the loop */
	struct virtio_pci *vp;
	struct loop *loop;
	struct blk_stats {
		uint64_t rd_reqs, wr_reqs, flush_reqs, other_reqs;
		uint64_t rd_bytes, wr_bytes, errors;
		uint64_t rd_ns, wr_ns, flush_ns;	/* pop to give-back */
	} stats;
	unsigned int inflight;		/* queued on the ring, not yet reaped */
	struct blk_req *barrier;	/* popped, waiting for inflight == 0 */
	unsigned int nfree;
	struct blk_req *free[BLK_QUEUE_SIZE];
	struct blk_req reqs[BLK_QUEUE_SIZE];
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

/* A read or write is over: a refusal or a short transfer is redone
 * here, and the status and counters set. */
static void finish_rw(struct blk *b, struct blk_req *r)
{
	bool write = r->type == VIRTIO_BLK_T_OUT;

	/* The file system's direct-I/O alignment may be larger than a
	 * sector: do what it refused through the page cache. */
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
		return;
	}
	pr_debug("%s: %s of %llu bytes at %llu: %s", b->path,
		 write ? "write" : "read", (unsigned long long)r->bytes,
		 (unsigned long long)r->off, r->res < 0 ? strerror(-r->res) : "short");
	*r->status = VIRTIO_BLK_S_IOERR;
	r->used = 1;	/* nothing of the data is promised */
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

enum blk_next {
	REQ_DONE,		/* status set: give the chain back */
	REQ_IO,			/* a read or write to start */
	REQ_BARRIER,		/* once nothing is in flight */
};

/* Reads the header of the chain in r->e: what to do with it.  A chain
 * without a status byte is done with r->status NULL. */
static enum blk_next parse(struct blk *b, struct blk_req *r)
{
	struct { uint32_t type, reserved; uint64_t sector; } hdr;
	struct virtq_elem *e = &r->e;
	unsigned int i;
	uint64_t len;

	/* GUEST: the header is the first 16 readable bytes, the status the
	 * last writable byte, whatever the descriptors' boundaries. */
	r->status = NULL;
	r->type = UINT32_MAX;		/* no header read: no timed type */
	r->start_ns = now_ns();
	for (i = e->n_out + e->n_in; i > e->n_out; i--) {
		if (e->iov[i - 1].iov_len) {
			r->status = (uint8_t *)e->iov[i - 1].iov_base + e->iov[i - 1].iov_len - 1;
			break;
		}
	}
	r->used = 1;
	if (!r->status) {
		r->used = 0;
		return REQ_DONE;
	}
	if (!iov_read(e->iov, e->n_out, 0, &hdr, sizeof(hdr))) {
		*r->status = VIRTIO_BLK_S_IOERR;
		return REQ_DONE;
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
			return REQ_DONE;
		}
		if (hdr.type == VIRTIO_BLK_T_IN)
			r->used += len;
		r->off = hdr.sector * SECTOR;
		r->bytes = len;
		r->fd = b->direct && !iov_aligned(r->data, r->ndata) ? b->bfd : b->fd;
		return REQ_IO;
	case VIRTIO_BLK_T_FLUSH:
		b->stats.flush_reqs++;
		return REQ_BARRIER;
	case VIRTIO_BLK_T_GET_ID:
		b->stats.other_reqs++;
		/* GUEST: at most the buffer's room, less the status byte. */
		len = MIN(e->in_len - 1, sizeof(b->serial));
		r->used += virtq_elem_write(e, 0, b->serial, len);
		*r->status = VIRTIO_BLK_S_OK;
		return REQ_DONE;
	case VIRTIO_BLK_T_DISCARD:
	case VIRTIO_BLK_T_WRITE_ZEROES:
		b->stats.other_reqs++;
		return REQ_BARRIER;
	}
	b->stats.other_reqs++;
	*r->status = VIRTIO_BLK_S_UNSUPP;
	return REQ_DONE;
}

/* Gives r's chain back (unless the queue broke meanwhile) and r back
 * to the pool. */
static void give_back(struct blk *b, struct blk_req *r)
{
	uint64_t ns = now_ns() - r->start_ns;

	b->free[b->nfree++] = r;
	if (!r->status || *r->status != VIRTIO_BLK_S_OK)
		b->stats.errors++;
	if (r->type == VIRTIO_BLK_T_IN)
		b->stats.rd_ns += ns;
	else if (r->type == VIRTIO_BLK_T_OUT)
		b->stats.wr_ns += ns;
	else if (r->type == VIRTIO_BLK_T_FLUSH)
		b->stats.flush_ns += ns;
	virtio_push(b->vp, 0, r->e.head, r->used);
}

/* Runs r on this thread, now. */
static void run_sync(struct blk *b, struct blk_req *r)
{
	switch (r->type) {
	case VIRTIO_BLK_T_FLUSH:
		*r->status = do_flush(b) ? VIRTIO_BLK_S_IOERR : VIRTIO_BLK_S_OK;
		break;
	case VIRTIO_BLK_T_DISCARD:
	case VIRTIO_BLK_T_WRITE_ZEROES:
		*r->status = do_ranges(b, r);
		break;
	default:
		r->res = sync_rw(r->fd, r->type == VIRTIO_BLK_T_OUT, r->data,
				 r->ndata, r->off, r->bytes);
		finish_rw(b, r);
	}
}

/* The ring's result for r. */
static void finish(struct blk *b, struct blk_req *r)
{
	r->queued = false;
	if (r->type == VIRTIO_BLK_T_FLUSH)
		*r->status = r->res < 0 ? VIRTIO_BLK_S_IOERR : VIRTIO_BLK_S_OK;
	else
		finish_rw(b, r);
}

/* Puts r on the ring (submitted by submit()); false if it is full. */
static bool queue_sqe(struct blk *b, struct blk_req *r)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&b->ring);

	if (!sqe)
		return false;
	if (r->type == VIRTIO_BLK_T_FLUSH)
		io_uring_prep_fsync(sqe, b->fd, IORING_FSYNC_DATASYNC);
	else if (r->type == VIRTIO_BLK_T_OUT)
		io_uring_prep_writev(sqe, r->fd, r->data, r->ndata, r->off);
	else
		io_uring_prep_readv(sqe, r->fd, r->data, r->ndata, r->off);
	io_uring_sqe_set_data(sqe, r);
	r->queued = true;
	b->inflight++;
	return true;
}

/* The ring misbehaved: close it (the kernel cancels what it still holds)
 * and redo what was in flight here, or just drop it; preadv/pwritev from
 * now on.  Returns the chains given back. */
static unsigned int uring_fail(struct blk *b, bool complete)
{
	unsigned int i, n = 0;

	pr_warn("%s: io_uring failed, using preadv/pwritev from now on", b->path);
	loop_del(b->loop, b->efd);
	io_uring_queue_exit(&b->ring);
	b->uring = false;
	b->inflight = 0;
	for (i = 0; i < BLK_QUEUE_SIZE; i++) {
		struct blk_req *r = &b->reqs[i];

		if (!r->queued)
			continue;
		r->queued = false;
		if (complete) {
			run_sync(b, r);
			give_back(b, r);
			n++;
		} else {
			b->free[b->nfree++] = r;
		}
	}
	return n;
}

static unsigned int submit(struct blk *b)
{
	int r;

	if (!b->uring)
		return 0;
	do
		r = io_uring_submit(&b->ring);
	while (r == -EINTR);
	return r < 0 ? uring_fail(b, true) : 0;
}

/* Takes the ring's completions (waiting for every one if wait) and gives
 * their chains back, or just drops them; returns the chains given back. */
static unsigned int reap(struct blk *b, bool wait, bool complete)
{
	unsigned int n = 0;

	while (b->uring && b->inflight) {
		struct io_uring_cqe *cqe;
		struct blk_req *r;
		int w = wait ? io_uring_wait_cqe(&b->ring, &cqe) :
			       io_uring_peek_cqe(&b->ring, &cqe);

		if (w == -EINTR)
			continue;
		if (w == -EAGAIN && !wait)
			break;
		if (w < 0)
			return n + uring_fail(b, complete);
		r = io_uring_cqe_get_data(cqe);
		r->res = cqe->res;
		io_uring_cqe_seen(&b->ring, cqe);
		b->inflight--;
		if (!complete) {
			r->queued = false;
			b->free[b->nfree++] = r;
			continue;
		}
		finish(b, r);
		give_back(b, r);
		n++;
	}
	return n;
}

/* Starts r: on the ring, or here and now; returns the chains given back. */
static unsigned int start(struct blk *b, struct blk_req *r)
{
	bool flush = r->type == VIRTIO_BLK_T_FLUSH;

	if (b->uring && (r->type == VIRTIO_BLK_T_IN || r->type == VIRTIO_BLK_T_OUT ||
			 (flush && b->cache != DISK_CACHE_UNSAFE && !b->readonly))) {
		if (queue_sqe(b, r))
			return 0;
		submit(b);	/* full: make room */
		if (b->uring && queue_sqe(b, r))
			return 0;
	}
	run_sync(b, r);
	give_back(b, r);
	return 1;
}

/* Gives back what the ring has completed and starts a parked barrier
 * once nothing before it is in flight; *resume if popping had stopped. */
static unsigned int collect(struct blk *b, bool *resume)
{
	unsigned int done;

	*resume = !b->nfree;
	done = reap(b, false, true);
	if (b->barrier && !b->inflight) {
		struct blk_req *r = b->barrier;

		b->barrier = NULL;
		*resume = true;
		done += start(b, r);
	}
	return done;
}

static void blk_queue_notify(struct virtio_pci *vp, unsigned int q)
{
	struct blk *b = vp->priv;
	unsigned int pops = 0, done;
	bool resume;
	int r = 0;

	/* Completions the loop has not seen yet go back with this pass's
	 * interrupt, and a barrier they unblock runs before what follows. */
	done = collect(b, &resume);
	while (!b->barrier && b->nfree && pops < BLK_POPS_PER_PASS) {
		struct blk_req *req = b->free[b->nfree - 1];

		r = virtio_pop(vp, q, &req->e);
		if (r <= 0)
			break;
		b->nfree--;
		pops++;
		switch (parse(b, req)) {
		case REQ_DONE:
			give_back(b, req);
			done++;
			break;
		case REQ_BARRIER:
			if (b->inflight) {
				b->barrier = req;	/* blk_completed starts it */
				break;
			}
			/* fall through */
		case REQ_IO:
			done += start(b, req);
			break;
		}
	}
	done += submit(b);
	if (done)
		virtio_queue_interrupt(vp, q);
	if (r > 0 && pops == BLK_POPS_PER_PASS)
		virtio_queue_kick(vp, q);
}

/* Main loop: the ring has completions.  One interrupt for all of them. */
static void blk_completed(void *opaque, uint32_t events)
{
	struct blk *b = opaque;
	struct virtio_pci *vp = b->vp;
	unsigned int done;
	bool resume;
	uint64_t n;

	if (read(b->efd, &n, sizeof(n)) < 0 && errno != EAGAIN)
		return;
	pthread_mutex_lock(&vp->f.dev.lock);
	done = collect(b, &resume);
	done += submit(b);
	if (done)
		virtio_queue_interrupt(vp, 0);
	/* Popping stopped for the barrier or an empty pool: go on. */
	if (resume)
		virtio_queue_kick(vp, 0);
	pthread_mutex_unlock(&vp->f.dev.lock);
}

/* Waits for and drops what is in flight: the rings are going away. */
static void blk_drop_inflight(struct blk *b)
{
	reap(b, true, false);
	if (b->barrier)
		b->free[b->nfree++] = b->barrier;
	b->barrier = NULL;
}

static void blk_config_read(struct virtio_pci *vp, unsigned int off,
			    uint8_t *data, unsigned int len)
{
	struct blk *b = vp->priv;
	struct virtio_blk_config c = {
		.capacity = htole64(b->capacity),
		.seg_max = htole32(BLK_SEG_MAX),
		.blk_size = htole32(b->blk_size),
		.max_discard_sectors = htole32(BLK_MAX_RANGE),
		.max_discard_seg = htole32(1),
		.discard_sector_alignment = htole32(b->blk_size / SECTOR),
		.max_write_zeroes_sectors = htole32(BLK_MAX_RANGE),
		.max_write_zeroes_seg = htole32(1),
	};

	/* GUEST: off and len were bounded to config_len by the transport */
	memcpy(data, (uint8_t *)&c + off, len);
}

/* GUEST: a reset with requests in flight waits for them (their data may
 * still be landing in guest memory) and drops them with the rings. */
static void blk_reset(struct virtio_pci *vp)
{
	blk_drop_inflight(vp->priv);
}

/* Completes what is in flight, so nothing of the device's own is left to
 * save.  A parked barrier is then runnable: it runs here too. */
static int blk_save(struct virtio_pci *vp, struct state_buf *out)
{
	struct blk *b = vp->priv;
	unsigned int done = reap(b, true, true);

	if (b->barrier) {
		struct blk_req *r = b->barrier;

		b->barrier = NULL;
		done += start(b, r);
		done += submit(b);
		done += reap(b, true, true);
	}
	if (done)
		virtio_queue_interrupt(vp, 0);
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
	if (b->uring) {
		blk_drop_inflight(b);
		if (b->loop)
			loop_del(b->loop, b->efd);
		io_uring_queue_exit(&b->ring);
	}
	if (b->efd >= 0)
		close(b->efd);
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
		.rd_ns = b->stats.rd_ns, .wr_ns = b->stats.wr_ns,
		.flush_ns = b->stats.flush_ns,
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
	/* Requests in flight were checked against the old size: they finish
	 * first (new ones wait for the lock), so none straddles the change. */
	if (reap(b, true, true))
		virtio_queue_interrupt(vp, 0);
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
	unsigned int i;
	int r;

	if (!b) {
		pr_err("cannot create disk %s: out of memory", d->path);
		return NULL;
	}
	b->fd = b->bfd = b->efd = -1;
	for (i = 0; i < BLK_QUEUE_SIZE; i++)
		b->free[b->nfree++] = &b->reqs[i];
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
		/* One entry per chain the queue can hold: never full. */
		r = io_uring_queue_init(BLK_QUEUE_SIZE, &b->ring, 0);
		if (!r) {
			b->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
			r = b->efd < 0 ? -errno : io_uring_register_eventfd(&b->ring, b->efd);
			if (r)
				io_uring_queue_exit(&b->ring);
		}
		if (r)
			pr_info("disk %s: no io_uring (%s), using preadv/pwritev",
				d->path, strerror(-r));
		b->uring = !r;
	}
	/* The loop runs only once the device is complete (b->vp set). */
	if (b->uring) {
		r = loop_add(vm->loop, b->efd, EPOLLIN, blk_completed, b);
		if (r) {
			pr_err("cannot create disk %s: %s", d->path, strerror(-r));
			blk_free(b);
			return NULL;
		}
		b->loop = vm->loop;
	}
	vp = virtio_pci_create(vm, &blk_ops, b, slot, bar_addr);
	if (!vp)
		return NULL;	/* destroy freed b */
	b->vp = vp;
	if (d->readonly)
		vp->dev_features = 1ULL << VIRTIO_BLK_F_RO;
	return &vp->f.dev;
}
