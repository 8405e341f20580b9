/* The block layer: a disk image (its format, files, locks and cache
 * mode) and the I/O engine beneath it, for the device that shows it to
 * the guest (virtio/blk.c).  Offsets and lengths are the guest disk's, in
 * bytes; the caller checked them against block_size().
 *
 * A read, write or flush goes in with block_start() and comes back
 * through the done callback: at once (the synchronous path, a flush that
 * needs no sync, an engine that failed) or later, from block_poll(), once
 * the engine has finished it.  block_start() only queues on an
 * asynchronous engine; block_submit() hands over what was queued, once
 * per pass.  When the engine has completions the ready callback runs on
 * the main loop; it takes the device's lock and calls block_poll().
 *
 * Files: block.c (open, checks, locking, the request path), raw.c (the
 * raw format), sync_io.c (preadv/pwritev/fdatasync), io_uring.c (the
 * asynchronous engine). */
#ifndef KVMM_BLOCK_H
#define KVMM_BLOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#define BLOCK_SECTOR	512ULL
#define BLOCK_MAX_IOV	256	/* buffers per request */

enum block_op { BLOCK_READ, BLOCK_WRITE, BLOCK_FLUSH };

struct block_req {
	enum block_op op;
	uint64_t off, bytes;		/* READ and WRITE */
	const struct iovec *iov;	/* the caller's, bytes long in all, */
						/* at most BLOCK_MAX_IOV */
	unsigned int niov;
	int64_t res;			/* once done: bytes, 0 (flush) or -errno */
	/* The block layer's own. */
	int fd;
	uint64_t host;			/* where off lands in the file */
	struct block_req *prev, *next;	/* on the engine */
	/* A request the format maps to several runs in the file goes to the
	 * engine as parts, each a block_req of its own. */
	struct block_req *parent;	/* a part's */
	void *parts;			/* a parent's, */
	unsigned int parts_left;	/* not done yet, */
	int64_t parts_err;		/* and their first error */
	/* A part writing clusters the format allocated for it: the format
	 * points its tables at them once the data is written. */
	bool commit;
};

struct block_dev;
struct loop;
struct vm_config;

/* req is done (dropped: cancelled with its rings, res meaningless). */
typedef void block_done_fn(void *opaque, struct block_req *req, bool dropped);
/* The engine has completions for block_poll(); main loop, no lock held. */
typedef void block_ready_fn(void *opaque);

/* Opens disk index of cfg, for at most depth requests in flight; on bad
 * input prints one line and returns NULL.  KVMM_NO_IO_URING=1 (or no
 * io_uring in the kernel): every request runs within block_start(). */
struct block_dev *block_open(const struct vm_config *cfg, unsigned int index,
			     unsigned int depth, struct loop *loop,
			     block_done_fn *done, block_ready_fn *ready, void *opaque);
/* Drops what is in flight (waiting for it) and closes everything. */
void block_close(struct block_dev *bd);

/* The disks' flocks, for a VM that moves to another kvmm (main loop).
 * block_defer_locks(true): disks opened from now on are not locked yet
 * (a migration's destination: the source kvmm still holds them).
 * block_lock_all(false) lets go of every open disk's lock (a save that
 * another kvmm continues); (true) takes those not held, -EBUSY (printed)
 * if another process has one. */
void block_defer_locks(bool on);
int block_lock_all(bool lock);

const char *block_path(const struct block_dev *bd);
bool block_readonly(const struct block_dev *bd);
uint32_t block_blk_size(const struct block_dev *bd);
/* The guest-visible size: whole logical blocks, in bytes. */
uint64_t block_size(const struct block_dev *bd);
/* fdatasync()s (or the engine's equivalent) issued to the host and
 * succeeded, since kvmm started: none with cache=unsafe or read-only. */
uint64_t block_syncs(const struct block_dev *bd);

/* The guest's write cache off (on): each write is durable before it
 * completes (a flush after it), or, on, as the cache mode has it. */
void block_set_writethrough(struct block_dev *bd, bool on);
/* Whether writes are durable once done, whatever the guest asked:
 * cache=writethrough or directsync. */
bool block_dsync(const struct block_dev *bd);

void block_start(struct block_dev *bd, struct block_req *req);
void block_submit(struct block_dev *bd);
/* Requests on the engine, not yet done. */
unsigned int block_inflight(const struct block_dev *bd);
/* Takes the engine's completions: every one in flight if wait. */
void block_poll(struct block_dev *bd, bool wait);
/* Waits for what is in flight and drops it (done(..., true)). */
void block_cancel(struct block_dev *bd);

/* Synchronous, 0 or -errno. */
int block_discard(struct block_dev *bd, uint64_t off, uint64_t len);
int block_write_zeroes(struct block_dev *bd, uint64_t off, uint64_t len);
/* Resizes the image to size bytes (nothing may be in flight); errors
 * write one line into err: read-only, not an image file, size not a
 * positive multiple of the block size, the file system's refusal. */
int block_resize(struct block_dev *bd, uint64_t size, char *err, size_t errlen);

/* Puts disk index of cfg onto overlay, a qcow2 image whose backing file
 * is the disk's image (nothing may be in flight): the image's tables and
 * data are made durable, then overlay is opened (fd, when not -1, is it
 * opened already: overlay is then only its name) with the image's open
 * files as its backing layers, none reopened by path (cfg's entry
 * updated to say so), and *bd becomes the new device, the old one
 * closed; cfg owns fd from then on.  On failure (one line in err: the
 * overlay cannot be opened, names another backing format, has another
 * size) cfg and *bd are as they were, and fd is still the caller's. */
int block_overlay(struct block_dev **bd, struct vm_config *cfg, unsigned int index,
		  const char *overlay, int fd, unsigned int depth, struct loop *loop,
		  char *err, size_t errlen);

/* The part of iov[0..n) from skip, len bytes long, as a new vector. */
unsigned int block_iov_slice(const struct iovec *iov, unsigned int n, uint64_t skip,
			     uint64_t len, struct iovec *out);

#endif
