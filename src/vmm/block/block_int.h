/* Inside the block layer: the image and the tables its formats and I/O
 * engines fill in. */
#ifndef KVMM_BLOCK_INT_H
#define KVMM_BLOCK_INT_H

#include "block.h"
#include "config.h"

/* A disk format: how guest offsets land in the image file.  Raw maps
 * them one to one; a format with its own metadata (qcow2) reads it in
 * open, maps (allocating for writes) in map, and may split a request
 * there: map answers how much of it is contiguous in the file. */
struct block_format {
	const char *name;
	/* The file is open and locked, file_size its length: the guest-visible
	 * size in bytes (before rounding down to whole blocks), or -errno
	 * after printing why. */
	int (*open)(struct block_dev *bd, const struct disk_config *d, uint64_t file_size,
		    uint64_t *size);
	/* Where [off, off + len) of the disk starts in the file, and how many
	 * of its bytes follow there (*run, 1..len); or BLOCK_MAP_SELF: the
	 * first *run bytes are not plain data in the file (zeros, a backing
	 * file's, to allocate), the format's rw does them. */
	int (*map)(struct block_dev *bd, uint64_t off, uint64_t len, bool write,
		   uint64_t *host, uint64_t *run);
	/* For a write of a run map answered BLOCK_MAP_SELF for (NULL: none
	 * is): new clusters in the file for all of it at *host, 0, if that is
	 * all the run needs (whole clusters, nothing in them to keep);
	 * commit then points the tables at them once the data is written
	 * there.  1 if the run is not such (rw does it), or -errno. */
	int (*alloc)(struct block_dev *bd, uint64_t off, uint64_t len, uint64_t *host);
	int (*commit)(struct block_dev *bd, uint64_t off, uint64_t len, uint64_t host);
	/* Synchronous I/O of a run map answered BLOCK_MAP_SELF for:
	 * 0 or -errno. */
	int (*rw)(struct block_dev *bd, bool write, const struct iovec *iov, unsigned int n,
		  uint64_t off, uint64_t len);
	/* Before a FLUSH goes to the host: the format's metadata written, so
	 * the FLUSH makes it durable with the data (NULL: nothing kept). */
	int (*flush)(struct block_dev *bd);
	int (*discard)(struct block_dev *bd, uint64_t off, uint64_t len);
	int (*write_zeroes)(struct block_dev *bd, uint64_t off, uint64_t len);
	/* The new guest-visible size, on an image file (not a block
	 * device). */
	int (*resize)(struct block_dev *bd, uint64_t size);
	void (*close)(struct block_dev *bd);
};

/* An asynchronous I/O engine.  Every request it takes comes back through
 * block_complete(), from reap; a negative return from submit or reap
 * means the engine is broken: the layer closes it and runs what it held
 * synchronously. */
struct block_engine {
	const char *name;
	/* depth requests at most; completions signalled on efd. */
	int (*init)(struct block_dev *bd, unsigned int depth, int efd);
	/* Queues req (READ or WRITE at req->host of req->fd, or FLUSH of
	 * bd->fd); -EAGAIN if full until the next submit. */
	int (*queue)(struct block_dev *bd, struct block_req *req);
	int (*submit)(struct block_dev *bd);
	/* Completes what has finished; waits while inflight if wait. */
	int (*reap)(struct block_dev *bd, bool wait);
	/* The kernel cancels what it still holds. */
	void (*exit)(struct block_dev *bd);
};

struct block_dev {
	const char *path;
	int fd;				/* O_DIRECT with cache=none when possible */
	int bfd;			/* buffered: fd itself unless fd is O_DIRECT */
	bool direct, readonly, blkdev;
	enum disk_cache cache;
	uint32_t blk_size;
	uint64_t size;			/* bytes, whole blocks */
	const struct block_format *fmt;
	void *fmt_priv;
	const struct block_engine *engine;	/* NULL: synchronous */
	void *engine_priv;
	int efd;			/* the engine's completions, in the loop */
	struct loop *loop;
	unsigned int inflight;
	struct block_req *queued;	/* on the engine */
	bool dropping;
	uint64_t syncs;
	/* A flush failed: the host may have dropped written pages, and a
	 * later fdatasync() would not say so again, so every later flush
	 * fails until the disk is reopened. */
	bool flush_latched;
	/* Each write is followed by a flush before it completes (the guest
	 * turned its write cache off); not needed on O_DSYNC files. */
	bool writethrough, dsync;
	block_done_fn *done;
	block_ready_fn *ready;
	void *opaque;
	/* Its flock: LOCK_SH or LOCK_EX; unlocked while another kvmm takes
	 * the VM over (a migration), taken again at resume. */
	int lock_mode;
	bool unlocked;
	struct block_dev *next_open;	/* every open disk (main loop) */
	/* While an overlay opens (block_overlay): the device it goes over,
	 * whose open files become its backing layers (none reopened by path:
	 * a sandboxed kvmm could not). */
	const struct block_dev *below;
};

#define BLOCK_MAP_SELF	1

extern const struct block_format block_raw;
extern const struct block_format block_qcow2;
/* io_uring.c's; the unit tests link an engine of their own under this
 * name instead. */
extern const struct block_engine block_async_engine;

/* An engine's request is over, req->res set. */
void block_complete(struct block_dev *bd, struct block_req *req);

/* sync_io.c: whole transfer or -errno, and fdatasync. */
int64_t block_sync_rw(int fd, bool write, const struct iovec *iov, unsigned int n,
		      uint64_t off, uint64_t bytes);
int block_sync_flush(struct block_dev *bd);

#endif
