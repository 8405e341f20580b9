/* The block layer's core: opening and checking an image, cache modes,
 * and the request path from block_start() to the done callback through
 * the format's map and an engine (block.h has the model). */
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "block_int.h"
#include "log.h"
#include "loop.h"
#include "util.h"

const char *block_path(const struct block_dev *bd)
{
	return bd->path;
}

bool block_readonly(const struct block_dev *bd)
{
	return bd->readonly;
}

uint32_t block_blk_size(const struct block_dev *bd)
{
	return bd->blk_size;
}

uint64_t block_size(const struct block_dev *bd)
{
	return bd->size;
}

uint64_t block_syncs(const struct block_dev *bd)
{
	return bd->syncs;
}

void block_set_writethrough(struct block_dev *bd, bool on)
{
	bd->writethrough = on;
}

bool block_dsync(const struct block_dev *bd)
{
	return bd->dsync;
}

unsigned int block_inflight(const struct block_dev *bd)
{
	return bd->inflight;
}

static bool iov_aligned(const struct iovec *iov, unsigned int n)
{
	unsigned int i;

	for (i = 0; i < n; i++)
		if (((uintptr_t)iov[i].iov_base | iov[i].iov_len) & (BLOCK_SECTOR - 1))
			return false;
	return true;
}

/* Nothing to sync: the host's cache is allowed to lose it, or nothing
 * was written. */
static bool flush_is_noop(const struct block_dev *bd)
{
	return bd->cache == DISK_CACHE_UNSAFE || bd->readonly;
}

/* The host failed a read or write: a person needs to know (a full file
 * system, a failing disk). */
static void log_rw_error(struct block_dev *bd, struct block_req *req)
{
	pr_warn("%s: %s of %llu bytes at %llu: %s", bd->path,
		 req->op == BLOCK_WRITE ? "write" : "read", (unsigned long long)req->bytes,
		 (unsigned long long)req->off, req->res < 0 ? strerror(-req->res) : "short");
}

/* An engine's read or write is over: what O_DIRECT refused or a short
 * transfer left is redone here. */
static void redo_rw(struct block_dev *bd, struct block_req *req)
{
	bool write = req->op == BLOCK_WRITE;

	/* The file system's direct-I/O alignment may be larger than a
	 * sector: do what it refused through the page cache. */
	if (req->res == -EINVAL && req->fd != bd->bfd)
		req->res = block_sync_rw(bd->bfd, write, req->iov, req->niov, req->host,
					 req->bytes);
	else if (req->res >= 0 && (uint64_t)req->res < req->bytes)
		req->res = block_sync_rw(req->fd, write, req->iov, req->niov, req->host,
					 req->bytes);	/* short: redo whole */
	if (req->res < 0 || (uint64_t)req->res != req->bytes)
		log_rw_error(bd, req);
}

/* A flush ended with res: once one failed, it and every later one fail
 * (-EIO for those: the first said why). */
static int64_t flush_result(struct block_dev *bd, int64_t res)
{
	if (bd->flush_latched)
		return res < 0 ? res : -EIO;
	if (res < 0) {
		bd->flush_latched = true;
		pr_err("disk %s: flush failed (%s): data the guest wrote may be lost; every later flush of this disk fails until it is reopened",
		       bd->path, strerror((int)-res));
	}
	return res;
}

/* The format's metadata written ahead of a FLUSH. */
static int flush_meta(struct block_dev *bd)
{
	return bd->fmt->flush && !bd->readonly ? bd->fmt->flush(bd) : 0;
}

/* With the guest's write cache off, a write (or discard, zeroing) that
 * succeeded is made durable before it completes: the format's metadata
 * and an fdatasync(), as a FLUSH.  0 or -errno. */
static int write_through(struct block_dev *bd)
{
	int r;

	if (!bd->writethrough || bd->dsync || flush_is_noop(bd))
		return 0;
	r = bd->flush_latched ? -EIO : flush_meta(bd);
	if (!r)
		r = block_sync_flush(bd);
	return (int)flush_result(bd, r);
}

/* req is over: to the caller, durable first if it must be. */
static void to_caller(struct block_dev *bd, struct block_req *req, bool dropped)
{
	if (!dropped && req->op == BLOCK_WRITE && req->res >= 0 &&
	    (uint64_t)req->res == req->bytes) {
		int r = write_through(bd);

		if (r)
			req->res = r;
	}
	bd->done(bd->opaque, req, dropped);
}

/* Runs req on this thread, now. */
static void run_sync(struct block_dev *bd, struct block_req *req)
{
	bool write = req->op == BLOCK_WRITE;
	uint64_t done, host, run;

	if (req->op == BLOCK_FLUSH) {
		req->res = bd->flush_latched ? -EIO : flush_meta(bd);
		if (!req->res)
			req->res = flush_is_noop(bd) ? 0 : block_sync_flush(bd);
		req->res = flush_result(bd, req->res);
		return;
	}
	/* Clusters allocated for it already: where they are. */
	if (req->commit) {
		req->res = block_sync_rw(req->fd, write, req->iov, req->niov, req->host, req->bytes);
		if (req->res == -EINVAL && req->fd != bd->bfd)
			req->res = block_sync_rw(bd->bfd, write, req->iov, req->niov, req->host,
						 req->bytes);
		if (req->res < 0)
			log_rw_error(bd, req);
		return;
	}
	/* Run by run as the format maps them (raw: one). */
	req->res = req->bytes;
	for (done = 0; done < req->bytes; done += run) {
		struct iovec v[BLOCK_MAX_IOV];
		unsigned int k;
		int64_t n;
		int r = bd->fmt->map(bd, req->off + done, req->bytes - done, write, &host, &run);

		if (r < 0) {
			req->res = r;
			break;
		}
		k = block_iov_slice(req->iov, req->niov, done, run, v);
		if (r == BLOCK_MAP_SELF) {
			r = bd->fmt->rw(bd, write, v, k, req->off + done, run);
			if (r) {
				req->res = r;
				break;
			}
			continue;
		}
		n = block_sync_rw(req->fd, write, v, k, host, run);
		if (n == -EINVAL && req->fd != bd->bfd)	/* as in redo_rw */
			n = block_sync_rw(bd->bfd, write, v, k, host, run);
		if (n < 0) {
			req->res = n;
			break;
		}
	}
	if (req->res < 0)
		log_rw_error(bd, req);
}

static void unlink_req(struct block_dev *bd, struct block_req *req)
{
	if (req->prev)
		req->prev->next = req->next;
	else
		bd->queued = req->next;
	if (req->next)
		req->next->prev = req->prev;
	bd->inflight--;
}

/* req is over: to the caller, or, for a part, into its parent, which is
 * over with its last part (the parts are freed with it). */
static void finish(struct block_dev *bd, struct block_req *req, bool dropped)
{
	struct block_req *parent = req->parent;

	if (!parent) {
		to_caller(bd, req, dropped);
		return;
	}
	if (!dropped && req->commit && req->res >= 0 && (uint64_t)req->res == req->bytes) {
		int r = bd->fmt->commit(bd, req->off, req->bytes, req->host);

		if (r)
			req->res = r;	/* the clusters leak */
	}
	if (!dropped && req->res < 0 && !parent->parts_err)
		parent->parts_err = req->res;
	if (--parent->parts_left)
		return;
	parent->res = parent->parts_err ? parent->parts_err : (int64_t)parent->bytes;
	free(parent->parts);
	parent->parts = NULL;
	to_caller(bd, parent, dropped);
}

void block_complete(struct block_dev *bd, struct block_req *req)
{
	unlink_req(bd, req);
	if (bd->dropping) {
		finish(bd, req, true);
		return;
	}
	if (req->op == BLOCK_FLUSH) {
		if (req->res >= 0)
			bd->syncs++;
		req->res = flush_result(bd, req->res);
	} else {
		redo_rw(bd, req);
	}
	finish(bd, req, false);
}

/* The engine misbehaved: close it and redo what it held here, or drop
 * it; the synchronous path from now on. */
static void engine_fail(struct block_dev *bd, int err)
{
	pr_warn("%s: %s failed (%s), using preadv/pwritev from now on", bd->path,
		bd->engine->name, strerror(-err));
	loop_del(bd->loop, bd->efd);
	bd->engine->exit(bd);
	bd->engine = NULL;
	while (bd->queued) {
		struct block_req *req = bd->queued;

		unlink_req(bd, req);
		if (bd->dropping) {
			finish(bd, req, true);
			continue;
		}
		run_sync(bd, req);
		finish(bd, req, false);
	}
}

void block_submit(struct block_dev *bd)
{
	int r;

	if (!bd->engine || !bd->inflight)
		return;
	r = bd->engine->submit(bd);
	if (r < 0)
		engine_fail(bd, r);
}

void block_poll(struct block_dev *bd, bool wait)
{
	int r;

	if (!bd->engine || !bd->inflight)
		return;
	r = bd->engine->reap(bd, wait);
	if (r < 0)
		engine_fail(bd, r);
}

void block_cancel(struct block_dev *bd)
{
	bd->dropping = true;
	block_poll(bd, true);
	bd->dropping = false;
}

/* Hands req to the engine; false if it cannot take it. */
static bool queue(struct block_dev *bd, struct block_req *req)
{
	int r = bd->engine->queue(bd, req);

	if (r == -EAGAIN) {
		block_submit(bd);	/* full: make room */
		r = bd->engine ? bd->engine->queue(bd, req) : -EIO;
	}
	if (r)
		return false;
	req->prev = NULL;
	req->next = bd->queued;
	if (bd->queued)
		bd->queued->prev = req;
	bd->queued = req;
	bd->inflight++;
	return true;
}

/* Runs of a request, at most (a 1 MiB request on 4 KiB clusters
 * scattered over the file has 256); more run synchronously. */
#define BLOCK_MAX_PARTS	256

/* One run of a request as the format maps it: data at host, or the
 * format's own (self). */
struct seg {
	uint64_t off, len, host;
	bool self, commit;
};

/* The runs of req from its first (run bytes, self or data at req->host)
 * on, data runs that follow each other in the file merged into one (the
 * format's map stops at its table boundaries; the file need not); 0 if
 * there are too many or the map fails (the synchronous path then says
 * why). */
static unsigned int map_segs(struct block_dev *bd, struct block_req *req, bool self,
			     uint64_t run, struct seg *seg)
{
	bool write = req->op == BLOCK_WRITE;
	unsigned int n = 1;
	uint64_t done;

	seg[0] = (struct seg){ .off = 0, .len = run, .host = req->host, .self = self };
	for (done = run; done < req->bytes; done += run) {
		struct seg *prev = &seg[n - 1];
		uint64_t host = 0;
		int r = bd->fmt->map(bd, req->off + done, req->bytes - done, write, &host, &run);

		if (r < 0)
			return 0;
		self = r == BLOCK_MAP_SELF;
		if (!self && !prev->self && prev->host + prev->len == host) {
			prev->len += run;
			continue;
		}
		if (n == BLOCK_MAX_PARTS)
			return 0;
		seg[n++] = (struct seg){ .off = done, .len = run, .host = host, .self = self };
	}
	return n;
}

/* req maps to several runs in the file (the first, run bytes long, is
 * the format's own if self, else data at req->host).  The format's runs
 * are done here first, then each data run goes to the engine as a part,
 * with its slice of the caller's iovec.  False if nothing was done: the
 * request then runs synchronously. */
static bool start_parts(struct block_dev *bd, struct block_req *req, bool self, uint64_t run)
{
	bool write = req->op == BLOCK_WRITE;
	struct seg seg[BLOCK_MAX_PARTS];
	unsigned int n = map_segs(bd, req, self, run, seg), ndata = 0, i, k;
	struct block_req *parts;
	struct iovec *iov;

	/* A write's runs the format only needs to allocate for go to the
	 * engine too, at their new clusters. */
	for (i = 0; write && bd->fmt->alloc && i < n; i++) {
		int r;

		if (!seg[i].self)
			continue;
		r = bd->fmt->alloc(bd, req->off + seg[i].off, seg[i].len, &seg[i].host);
		if (r < 0) {
			req->res = r;	/* what was allocated before leaks */
			log_rw_error(bd, req);
			to_caller(bd, req, false);
			return true;
		}
		if (!r)
			seg[i].self = false, seg[i].commit = true;
	}
	for (i = 0; i < n; i++)
		ndata += !seg[i].self;
	if (!ndata)
		return false;	/* the format's alone: the synchronous path */
	if (n == 1 && !seg[0].commit) {
		/* One run in the file after all. */
		req->host = seg[0].host;
		return queue(bd, req);
	}
	/* Each part's slice takes at most one buffer more than its share. */
	parts = calloc(1, ndata * sizeof(*parts) + (req->niov + ndata) * sizeof(*iov));
	if (!parts)
		return false;
	iov = (struct iovec *)(parts + ndata);
	for (i = 0; i < n; i++) {
		struct iovec v[BLOCK_MAX_IOV];
		unsigned int nv;
		int r;

		if (!seg[i].self)
			continue;
		nv = block_iov_slice(req->iov, req->niov, seg[i].off, seg[i].len, v);
		r = bd->fmt->rw(bd, write, v, nv, req->off + seg[i].off, seg[i].len);
		if (r) {
			/* Nothing went to the engine: over now, as the
			 * synchronous path would end it. */
			free(parts);
			req->res = r;
			log_rw_error(bd, req);
			to_caller(bd, req, false);
			return true;
		}
	}
	req->parts = parts;
	req->parts_left = ndata;
	req->parts_err = 0;
	for (i = 0, k = 0; i < n; i++) {
		struct block_req *p;

		if (seg[i].self)
			continue;
		p = &parts[k++];
		*p = (struct block_req){ .op = req->op, .off = req->off + seg[i].off,
					 .bytes = seg[i].len, .iov = iov, .fd = req->fd,
					 .host = seg[i].host, .parent = req,
					 .commit = seg[i].commit };
		p->niov = block_iov_slice(req->iov, req->niov, seg[i].off, seg[i].len, iov);
		iov += p->niov;
		if (!queue(bd, p)) {
			run_sync(bd, p);
			finish(bd, p, false);
		}
	}
	return true;
}

void block_start(struct block_dev *bd, struct block_req *req)
{
	uint64_t run = 0;
	int r;

	req->parent = NULL;
	req->commit = false;
	/* Its file is open read-only: refused here, before a format
	 * allocates for it or anything reaches the file. */
	if (req->op == BLOCK_WRITE && bd->readonly) {
		req->res = -EROFS;
		bd->done(bd->opaque, req, false);
		return;
	}
	/* O_DIRECT takes sector-aligned buffers only. */
	req->fd = req->op != BLOCK_FLUSH && bd->direct && iov_aligned(req->iov, req->niov) ?
		  bd->fd : bd->bfd;
	if (req->op == BLOCK_FLUSH) {
		r = bd->flush_latched ? -EIO : flush_meta(bd);
		if (r) {
			req->res = flush_result(bd, r);
			bd->done(bd->opaque, req, false);
			return;
		}
		if (bd->engine && !flush_is_noop(bd) && queue(bd, req))
			return;
		req->res = flush_result(bd, flush_is_noop(bd) ? 0 : block_sync_flush(bd));
		bd->done(bd->opaque, req, false);
		return;
	} else if (bd->engine) {
		r = bd->fmt->map(bd, req->off, req->bytes, req->op == BLOCK_WRITE, &req->host, &run);
		if (!r && run == req->bytes && queue(bd, req))
			return;
		if (r >= 0 && (run < req->bytes || (r == BLOCK_MAP_SELF && bd->fmt->alloc &&
						     req->op == BLOCK_WRITE)) &&
		    start_parts(bd, req, r == BLOCK_MAP_SELF, run))
			return;
	}
	run_sync(bd, req);
	to_caller(bd, req, false);
}

int block_discard(struct block_dev *bd, uint64_t off, uint64_t len)
{
	int r = bd->readonly ? -EROFS : bd->fmt->discard(bd, off, len);

	return r ? r : write_through(bd);
}

int block_write_zeroes(struct block_dev *bd, uint64_t off, uint64_t len)
{
	int r = bd->readonly ? -EROFS : bd->fmt->write_zeroes(bd, off, len);

	return r ? r : write_through(bd);
}

int block_resize(struct block_dev *bd, uint64_t size, char *err, size_t errlen)
{
	int r;

	if (bd->readonly) {
		snprintf(err, errlen, "disk %s is read-only", bd->path);
		return -EROFS;
	}
	if (bd->blkdev) {
		snprintf(err, errlen, "disk %s is not an image file: kvmm resizes image files only",
			 bd->path);
		return -ENOTSUP;
	}
	if (!size || size % bd->blk_size || size > (uint64_t)INT64_MAX) {
		snprintf(err, errlen, "size %llu is not valid: give a positive multiple of the block size (%u bytes)",
			 (unsigned long long)size, bd->blk_size);
		return -EINVAL;
	}
	r = bd->fmt->resize(bd, size);
	if (r)
		snprintf(err, errlen, "cannot resize disk %s: %s", bd->path, strerror(-r));
	else
		bd->size = size;
	return r;
}

/* Opens the image, with O_DIRECT for cache=none and directsync when the
 * file system takes it, and O_DSYNC for writethrough and directsync (on
 * both files: what O_DIRECT refuses goes through the other).  Prints why
 * not and returns -errno. */
static int open_files(struct block_dev *bd, const struct disk_config *d)
{
	/* O_NONBLOCK: a FIFO must be refused (check_file), not wait for a
	 * writer; check_file clears it before any I/O. */
	int flags = (d->readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC | O_NONBLOCK;

	/* The guest is told a write is done only once it is durable. */
	bd->dsync = !d->readonly &&
		    (d->cache == DISK_CACHE_WRITETHROUGH || d->cache == DISK_CACHE_DIRECTSYNC);
	if (bd->dsync)
		flags |= O_DSYNC;
	if (d->has_fd) {
		/* Opened by whoever passed it, with the flags it chose;
		 * kvmm keeps its own copy, as the configuration's is freed
		 * with the disk. */
		int fl = fcntl(d->fd, F_GETFL);

		/* CLIENT: O_DSYNC cannot be added to an open file: a write
		 * the guest is told is durable must be. */
		if (fl >= 0 && bd->dsync && !(fl & O_DSYNC)) {
			pr_err("disk %s: cache=%s needs its descriptor opened with O_DSYNC",
			       d->path, disk_cache_name(d->cache));
			return -EINVAL;
		}
		/* One file for aligned and unaligned I/O: without O_DIRECT. */
		if (fl >= 0 && (fl & O_DIRECT) && fcntl(d->fd, F_SETFL, fl & ~O_DIRECT) == 0)
			pr_warn("disk %s: its descriptor's O_DIRECT is dropped; cache=%s goes through the page cache",
				d->path, disk_cache_name(d->cache));
		bd->fd = bd->bfd = fcntl(d->fd, F_DUPFD_CLOEXEC, 3);
		if (bd->fd >= 0)
			return 0;
		pr_err("disk %s: cannot duplicate its descriptor: %s", d->path, strerror(errno));
		return -errno;
	}
	if (d->cache == DISK_CACHE_NONE || d->cache == DISK_CACHE_DIRECTSYNC) {
		bd->fd = open(d->path, flags | O_DIRECT);
		if (bd->fd >= 0) {
			bd->direct = true;
			bd->bfd = open(d->path, flags);
			if (bd->bfd < 0)
				goto fail;
			return 0;
		}
		if (errno != EINVAL)
			goto fail;
		pr_warn("disk %s: the file system refuses O_DIRECT; cache=%s goes through the page cache",
			d->path, disk_cache_name(d->cache));
	}
	bd->fd = bd->bfd = open(d->path, flags);
	if (bd->fd >= 0)
		return 0;
fail:
	if (errno == ENXIO) {
		pr_err("disk %s is not a regular file or a block device (it is a socket or a FIFO): give --disk path= an image",
		       d->path);
		return -EINVAL;
	}
	pr_err("cannot open disk %s: %s; check the --disk path and its permissions",
	       d->path, strerror(errno));
	return -errno;
}

static bool defer_locks;
static struct block_dev *open_disks;

void block_defer_locks(bool on)
{
	defer_locks = on;
}

int block_lock_all(bool lock)
{
	struct block_dev *bd;

	for (bd = open_disks; bd; bd = bd->next_open) {
		if (!lock) {
			if (!bd->unlocked && bd->fd >= 0)
				flock(bd->fd, LOCK_UN);
			bd->unlocked = true;
			continue;
		}
		if (!bd->unlocked)
			continue;
		if (flock(bd->fd, bd->lock_mode | LOCK_NB)) {
			pr_err("disk %s is in use by another process: the VM cannot run here while it is",
			       bd->path);
			return -EBUSY;
		}
		bd->unlocked = false;
	}
	return 0;
}

/* The file's size, and the checks a person needs before boot: the right
 * kind of file, not given twice for writing, not in use. */
static int check_file(struct block_dev *bd, const struct vm_config *cfg, unsigned int index,
		      uint64_t *file_size)
{
	const struct disk_config *d = &cfg->disks[index];
	struct stat st, other;
	unsigned int i;

	if (fstat(bd->fd, &st))
		return -errno;
	if (S_ISBLK(st.st_mode)) {
		bd->blkdev = true;
		if (ioctl(bd->fd, BLKGETSIZE64, file_size)) {
			pr_err("cannot read the size of disk %s: %s", d->path, strerror(errno));
			return -errno;
		}
	} else if (S_ISREG(st.st_mode) && !file_refused(bd->fd, 0)) {
		*file_size = st.st_size;
	} else {
		pr_err("disk %s is not a regular file or a block device (it is %s): give --disk path= an image",
		       d->path, file_refused(bd->fd, FILE_OK_BLK));
		return -EINVAL;
	}
	/* io_uring would answer EAGAIN instead of waiting on an O_NONBLOCK fd. */
	if (fcntl(bd->fd, F_SETFL, fcntl(bd->fd, F_GETFL) & ~O_NONBLOCK) ||
	    (bd->bfd != bd->fd && fcntl(bd->bfd, F_SETFL, fcntl(bd->bfd, F_GETFL) & ~O_NONBLOCK)))
		return -errno;
	/* A passed descriptor (a sandboxed kvmm, which may stat no path):
	 * the exclusive flock below still refuses an image written twice. */
	for (i = 0; i < index && !d->has_fd; i++) {
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
	 * corrupt it under the guest -- unless each says it shares it
	 * (libvirt's <shareable/>: a cluster file system's disk). */
	bd->lock_mode = d->readonly || d->shareable ? LOCK_SH : LOCK_EX;
	if (defer_locks) {
		/* A migration's destination: the source still holds it. */
		bd->unlocked = true;
		return 0;
	}
	if (flock(bd->fd, bd->lock_mode | LOCK_NB)) {
		pr_err("disk %s is in use by another process: stop it, or give readonly=on or shareable=on to both",
		       d->path);
		return -EBUSY;
	}
	return 0;
}

/* Main loop: the engine has completions. */
static void engine_ready(void *opaque, uint32_t events)
{
	struct block_dev *bd = opaque;
	uint64_t n;

	if (read(bd->efd, &n, sizeof(n)) < 0 && errno != EAGAIN)
		return;
	bd->ready(bd->opaque);
}

/* The asynchronous engine if there is one, else the synchronous path;
 * -errno (printed) if the loop cannot watch it. */
static int start_engine(struct block_dev *bd, unsigned int depth, struct loop *loop)
{
	const char *no_uring = getenv("KVMM_NO_IO_URING");
	int r;

	if (no_uring && !strcmp(no_uring, "1")) {
		pr_info("disk %s: KVMM_NO_IO_URING=1, using preadv/pwritev", bd->path);
		return 0;
	}
	bd->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	r = bd->efd < 0 ? -errno : block_async_engine.init(bd, depth, bd->efd);
	if (r) {
		pr_info("disk %s: no %s (%s), using preadv/pwritev", bd->path,
			block_async_engine.name, strerror(-r));
		return 0;
	}
	r = loop_add(loop, bd->efd, EPOLLIN, engine_ready, bd);
	if (r) {
		block_async_engine.exit(bd);
		pr_err("cannot create disk %s: %s", bd->path, strerror(-r));
		return r;
	}
	bd->engine = &block_async_engine;
	bd->loop = loop;
	return 0;
}

void block_close(struct block_dev *bd)
{
	struct block_dev **p;

	if (!bd)
		return;
	for (p = &open_disks; *p; p = &(*p)->next_open) {
		if (*p == bd) {
			*p = bd->next_open;
			break;
		}
	}
	if (bd->engine) {
		block_cancel(bd);
		loop_del(bd->loop, bd->efd);
		bd->engine->exit(bd);
	}
	if (bd->fmt)
		bd->fmt->close(bd);
	if (bd->efd >= 0)
		close(bd->efd);
	if (bd->bfd >= 0 && bd->bfd != bd->fd)
		close(bd->bfd);
	if (bd->fd >= 0)
		close(bd->fd);
	free(bd);
}

static struct block_dev *open_dev(const struct vm_config *cfg, unsigned int index,
				  const struct block_dev *below, unsigned int depth,
				  struct loop *loop, block_done_fn *done,
				  block_ready_fn *ready, void *opaque)
{
	const struct disk_config *d = &cfg->disks[index];
	struct block_dev *bd = calloc(1, sizeof(*bd));
	uint64_t file_size, size;

	if (!bd) {
		pr_err("cannot open disk %s: out of memory", d->path);
		return NULL;
	}
	bd->fd = bd->bfd = bd->efd = -1;
	bd->path = d->path;
	bd->readonly = d->readonly;
	bd->cache = d->cache;
	bd->blk_size = d->blk_size ? d->blk_size : BLOCK_SECTOR;
	bd->done = done;
	bd->ready = ready;
	bd->opaque = opaque;
	bd->below = below;
	if (open_files(bd, d) || check_file(bd, cfg, index, &file_size))
		goto fail;
	bd->fmt = d->format == DISK_FORMAT_QCOW2 ? &block_qcow2 : &block_raw;
	if (bd->fmt->open(bd, d, file_size, &size)) {
		bd->fmt = NULL;
		goto fail;
	}
	/* A partial last block is out of the guest's reach. */
	bd->size = size / bd->blk_size * bd->blk_size;
	bd->below = NULL;
	if (start_engine(bd, depth, loop))
		goto fail;
	bd->next_open = open_disks;
	open_disks = bd;
	return bd;
fail:
	bd->below = NULL;
	block_close(bd);
	return NULL;
}

struct block_dev *block_open(const struct vm_config *cfg, unsigned int index,
			     unsigned int depth, struct loop *loop,
			     block_done_fn *done, block_ready_fn *ready, void *opaque)
{
	return open_dev(cfg, index, NULL, depth, loop, done, ready, opaque);
}

int block_overlay(struct block_dev **bdp, struct vm_config *cfg, unsigned int index,
		  const char *overlay, int fd, unsigned int depth, struct loop *loop,
		  char *err, size_t errlen)
{
	struct disk_config *d = &cfg->disks[index], saved = *d;
	struct block_dev *old = *bdp, *nb;
	char *path;
	int r;

	if (old->readonly) {
		snprintf(err, errlen, "disk %s is read-only: it takes no overlay", old->path);
		return -EINVAL;
	}
	if (d->nbacking >= KVMM_MAX_BACKING) {
		snprintf(err, errlen, "disk %s has %u backing files already, kvmm's limit", old->path,
			 d->nbacking);
		return -EINVAL;
	}
	/* The image becomes a backing file another open reads: everything
	 * written to it must be in the file first. */
	r = flush_meta(old);
	if (!r && old->cache != DISK_CACHE_UNSAFE && fdatasync(old->bfd))
		r = -errno;
	if (r) {
		snprintf(err, errlen, "cannot write disk %s out before the overlay: %s", old->path,
			 strerror(-r));
		return r;
	}
	path = strdup(overlay);
	if (!path) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	/* Shared while the overlay opens it as its backing file (which
	 * takes a shared lock), as it will stay read-only from now on. */
	flock(old->fd, LOCK_SH | LOCK_NB);
	memmove(d->backing + 1, d->backing, d->nbacking * sizeof(d->backing[0]));
	memmove(d->backing_format + 1, d->backing_format,
		d->nbacking_format * sizeof(d->backing_format[0]));
	d->backing[0] = saved.path;
	d->backing_format[0] = saved.format;
	d->nbacking++;
	d->nbacking_format++;
	d->path = path;
	d->format = DISK_FORMAT_QCOW2;
	/* Opened by the caller (a sandboxed kvmm opens no path). */
	d->has_fd = fd >= 0;
	d->fd = fd;
	nb = open_dev(cfg, index, old, depth, loop, old->done, old->ready, old->opaque);
	if (nb && nb->size != old->size) {
		snprintf(err, errlen, "overlay %s has %llu bytes, disk %s %llu: the guest's disk cannot change size",
			 overlay, (unsigned long long)nb->size, old->path,
			 (unsigned long long)old->size);
		block_close(nb);
		nb = NULL;
		r = -EINVAL;
	} else if (!nb) {
		snprintf(err, errlen, "cannot open overlay %s over disk %s (kvmm's log says why)",
			 overlay, old->path);
		r = -EINVAL;
	}
	if (!nb) {
		*d = saved;
		free(path);
		if (!saved.readonly && !saved.shareable)
			flock(old->fd, LOCK_EX | LOCK_NB);
		return r;
	}
	nb->writethrough = old->writethrough;
	/* The old path lives on as the first backing file's name; the
	 * old descriptor's file stays open in the new device's chain. */
	if (saved.has_fd && saved.fd >= 0)
		close(saved.fd);
	block_close(old);
	*bdp = nb;
	return 0;
}
