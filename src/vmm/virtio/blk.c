/* virtio-blk (virtio 1.2, 5.2): one request queue onto a disk of the
 * block layer (block/block.h: the image, its format and the I/O engine).
 * This file parses requests and checks what the guest asks; the block
 * layer does the I/O.
 *
 * Reads and writes overlap: a kick pops what the guest made available,
 * starts each read and write (on io_uring they are queued and submitted
 * in one go at the end of the pass) and returns; completions come back
 * on the main loop, whose handler gives the chains back and interrupts
 * the guest once per pass.  So up to a queue's worth of requests stay in
 * flight across kicks and the main loop never waits for the disk.
 * Without io_uring every request runs within the kick.
 *
 * FLUSH, DISCARD and WRITE_ZEROES are barriers: popping stops until
 * every request before them has completed, so a flush covers every write
 * submitted before it (stricter than 5.2.6.2 asks, which is only the
 * completed ones).  DISCARD and WRITE_ZEROES, rare, run synchronously.
 * A device reset, and the device's destruction, wait for what is in
 * flight and drop it before the rings go away; a save waits for it and
 * completes it, so nothing of the device's own is left to save, and so
 * does a resize, so that no request checked against the old size runs
 * under the new one.
 *
 * Nothing new is popped while the VM is paused: the transport (pci.c)
 * holds a paused VM's notifications and looks at every ready queue on
 * resume and after a load, so a save's rings are left as saved.
 *
 * A host I/O error goes by the disk's error policy (docs/kvmm.md):
 * report fails the request, ignore completes it as done, stop holds it
 * and asks the VM to pause; popping stops while a request is held, and
 * resuming the VM restarts the held ones (virtio_blk_retry), in order.
 *
 * The request counters and their times are kept here, per virtio
 * request kind, from pop to give-back; the block layer counts the syncs
 * it really issues to the host. */
#include <endian.h>
#include <errno.h>
#include <linux/virtio_blk.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "block/block.h"
#include "config.h"
#include "log.h"
#include "util.h"
#include "virtio.h"
#include "virtio/blk.h"
#include "vm.h"

#define BLK_QUEUE_SIZE		256
/* Chains one kick may pop before the device queues itself a new pass,
 * so one guest cannot hold the loop. */
#define BLK_POPS_PER_PASS	BLK_QUEUE_SIZE
#define SECTOR			BLOCK_SECTOR
#define BLK_SEG_MAX		(VIRTQ_MAX_SEGS - 2)	/* header and status */
#define BLK_MAX_RANGE		(1U << 22)	/* sectors per DISCARD/WRITE_ZEROES */
/* Through write_zeroes_may_unmap and its padding (secure erase is not
 * offered). */
#define BLK_CONFIG_LEN		offsetof(struct virtio_blk_config, max_secure_erase_sectors)

_Static_assert(VIRTQ_MAX_SEGS <= BLOCK_MAX_IOV, "a chain's data fits a block request");

struct blk_req {
	struct block_req io;
	struct virtq_elem e;
	uint8_t *status;
	uint32_t used;			/* bytes written into the chain */
	uint32_t type;
	struct iovec data[VIRTQ_MAX_SEGS];
	uint64_t start_ns;		/* popped: its time counts from here */
	bool host_failed;		/* its error is the host's, not the guest's */
	struct blk_req *held_next;	/* on b->held */
};

struct blk {
	struct block_dev *bd;
	struct vm *vm;
	unsigned int index;		/* its disk in vm->cfg */
	char name[16];			/* "disk0": the control socket's */
	enum disk_error_policy werror, rerror;
	char serial[KVMM_DISK_SERIAL_MAX];
	struct virtio_pci *vp;
	struct blk_stats {
		uint64_t rd_reqs, wr_reqs, flush_reqs, other_reqs;
		uint64_t rd_bytes, wr_bytes, errors;
		uint64_t invalid, failed;	/* guest's bad requests, host errors */
		uint64_t rd_ns, wr_ns, flush_ns;	/* pop to give-back */
	} stats;
	unsigned int given;		/* chains given back: a pass interrupts */
	struct blk_req *barrier;	/* popped, waiting for nothing in flight */
	struct blk_req *held, **held_tail;	/* failed under policy stop */
	int io_status;			/* what the held ones met (errno), 0: none */
	uint8_t wce;			/* config writeback: the guest's write cache on */
	unsigned int nfree;
	struct blk_req *free[BLK_QUEUE_SIZE];
	struct blk_req reqs[BLK_QUEUE_SIZE];
};

/* Copies len bytes starting skip bytes into iov[0..n) to buf. */
static bool iov_read(const struct iovec *iov, unsigned int n, uint64_t skip,
		     void *buf, uint64_t len)
{
	struct iovec v[VIRTQ_MAX_SEGS];
	unsigned int i, k = block_iov_slice(iov, n, skip, len, v);
	uint64_t got = 0;

	for (i = 0; i < k; i++) {
		memcpy((uint8_t *)buf + got, v[i].iov_base, v[i].iov_len);
		got += v[i].iov_len;
	}
	return got == len;
}

/* GUEST: a sector range is valid only inside the disk and on whole
 * logical blocks; the sum cannot wrap because count is checked against
 * what is left. */
static bool in_range(const struct blk *b, uint64_t sector, uint64_t count)
{
	uint64_t per_block = block_blk_size(b->bd) / SECTOR;
	uint64_t capacity = block_size(b->bd) / SECTOR;

	return sector <= capacity && count <= capacity - sector &&
	       !(sector % per_block) && !(count % per_block);
}

/* DISCARD and WRITE_ZEROES: one segment (max_*_seg = 1). */
static uint8_t do_ranges(struct blk *b, struct blk_req *r)
{
	struct virtio_blk_discard_write_zeroes seg;
	uint64_t len = r->e.out_len - sizeof(struct virtio_blk_outhdr);
	uint64_t sector;
	uint32_t num, flags;

	/* GUEST: exactly one whole segment; unknown flags and UNMAP on a
	 * discard are unsupported (5.2.6.1). */
	if (len != sizeof(seg) ||
	    !iov_read(r->e.iov, r->e.n_out, sizeof(struct virtio_blk_outhdr), &seg, sizeof(seg)))
		return VIRTIO_BLK_S_UNSUPP;
	sector = le64toh(seg.sector);
	num = le32toh(seg.num_sectors);
	flags = le32toh(seg.flags);
	if (flags & ~VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP ||
	    (r->type == VIRTIO_BLK_T_DISCARD && flags))
		return VIRTIO_BLK_S_UNSUPP;
	if (block_readonly(b->bd) || num > BLK_MAX_RANGE || !in_range(b, sector, num))
		return VIRTIO_BLK_S_IOERR;
	if (r->type == VIRTIO_BLK_T_WRITE_ZEROES)
		r->host_failed = block_write_zeroes(b->bd, sector * SECTOR, num * SECTOR) != 0;
	else
		r->host_failed = block_discard(b->bd, sector * SECTOR, num * SECTOR) != 0;
	if (r->host_failed)
		b->stats.failed++;
	return r->host_failed ? VIRTIO_BLK_S_IOERR : VIRTIO_BLK_S_OK;
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
	struct virtio_blk_outhdr hdr;
	struct virtq_elem *e = &r->e;
	uint64_t len, sector;
	unsigned int i;

	/* GUEST: the header is the first 16 readable bytes, the status the
	 * last writable byte, whatever the descriptors' boundaries. */
	r->status = NULL;
	r->host_failed = false;
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
	r->type = le32toh(hdr.type);
	sector = le64toh(hdr.sector);
	switch (r->type) {
	case VIRTIO_BLK_T_IN:
	case VIRTIO_BLK_T_OUT:
		if (r->type == VIRTIO_BLK_T_IN) {
			b->stats.rd_reqs++;
			len = e->in_len - 1;
			r->io.niov = block_iov_slice(e->iov + e->n_out, e->n_in, 0, len, r->data);
		} else {
			b->stats.wr_reqs++;
			len = e->out_len - sizeof(hdr);
			r->io.niov = block_iov_slice(e->iov, e->n_out, sizeof(hdr), len, r->data);
		}
		/* GUEST: whole sectors inside the disk; no writes on a
		 * read-only disk. */
		if (len % SECTOR || !in_range(b, sector, len / SECTOR) ||
		    (r->type == VIRTIO_BLK_T_OUT && block_readonly(b->bd))) {
			pr_debug("%s: refused %s of %llu bytes at sector %llu",
				 block_path(b->bd), r->type ? "write" : "read",
				 (unsigned long long)len, (unsigned long long)sector);
			*r->status = VIRTIO_BLK_S_IOERR;
			return REQ_DONE;
		}
		if (r->type == VIRTIO_BLK_T_IN)
			r->used += len;
		r->io.op = r->type == VIRTIO_BLK_T_IN ? BLOCK_READ : BLOCK_WRITE;
		r->io.off = sector * SECTOR;
		r->io.bytes = len;
		r->io.iov = r->data;
		return REQ_IO;
	case VIRTIO_BLK_T_FLUSH:
		b->stats.flush_reqs++;
		r->io.op = BLOCK_FLUSH;
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
	b->given++;
	if (!r->status || *r->status != VIRTIO_BLK_S_OK) {
		b->stats.errors++;
		if (!r->host_failed)
			b->stats.invalid++;
	}
	if (r->type == VIRTIO_BLK_T_IN)
		b->stats.rd_ns += ns;
	else if (r->type == VIRTIO_BLK_T_OUT)
		b->stats.wr_ns += ns;
	else if (r->type == VIRTIO_BLK_T_FLUSH)
		b->stats.flush_ns += ns;
	virtio_push(b->vp, 0, r->e.head, r->used);
}

static const char *const op_names[] = {
	[BLOCK_READ] = "read", [BLOCK_WRITE] = "write", [BLOCK_FLUSH] = "flush",
};

/* What the disk's policy does with a host error err (positive errno) on
 * an op: DISK_ERROR_REPORT, _IGNORE or _STOP. */
static enum disk_error_policy error_action(const struct blk *b, enum block_op op, int err)
{
	enum disk_error_policy p = op == BLOCK_READ ? b->rerror : b->werror;

	/* QEMU's defaults: werror=enospc, rerror=report. */
	if (p == DISK_ERROR_DEFAULT)
		p = op == BLOCK_READ ? DISK_ERROR_REPORT : DISK_ERROR_ENOSPACE;
	if (p == DISK_ERROR_ENOSPACE)
		p = err == ENOSPC ? DISK_ERROR_STOP : DISK_ERROR_REPORT;
	return p;
}

/* The block layer is done with r's I/O (or dropped it with the rings). */
static void blk_io_done(void *opaque, struct block_req *io, bool dropped)
{
	struct blk *b = opaque;
	struct blk_req *r = (struct blk_req *)((uint8_t *)io - offsetof(struct blk_req, io));
	int err = 0;

	if (dropped) {
		b->free[b->nfree++] = r;
		return;
	}
	if (io->res < 0)
		err = (int)-io->res;
	else if (io->op != BLOCK_FLUSH && (uint64_t)io->res != io->bytes)
		err = EIO;		/* short, even when redone */
	if (err) {
		enum disk_error_policy act = error_action(b, io->op, err);

		b->stats.failed++;
		vm_io_error(b->vm, b->name, op_names[io->op], err,
			    act == DISK_ERROR_STOP ? "stop" : act == DISK_ERROR_IGNORE ?
			    "ignore" : "report");
		if (act == DISK_ERROR_STOP) {
			/* Kept, chain and all, for virtio_blk_retry. */
			b->io_status = err;
			r->held_next = NULL;
			*b->held_tail = r;
			b->held_tail = &r->held_next;
			return;
		}
		if (act == DISK_ERROR_IGNORE) {
			*r->status = VIRTIO_BLK_S_OK;
			give_back(b, r);
			return;
		}
		r->host_failed = true;
	}
	if (io->op == BLOCK_FLUSH) {
		*r->status = io->res < 0 ? VIRTIO_BLK_S_IOERR : VIRTIO_BLK_S_OK;
	} else if (io->res >= 0 && (uint64_t)io->res == io->bytes) {
		*r->status = VIRTIO_BLK_S_OK;
		if (io->op == BLOCK_WRITE)
			b->stats.wr_bytes += io->bytes;
		else
			b->stats.rd_bytes += io->bytes;
	} else {
		*r->status = VIRTIO_BLK_S_IOERR;
		r->used = 1;	/* nothing of the data is promised */
	}
	give_back(b, r);
}

/* Starts r: in the block layer, or (DISCARD, WRITE_ZEROES) here. */
static void start(struct blk *b, struct blk_req *r)
{
	if (r->type == VIRTIO_BLK_T_DISCARD || r->type == VIRTIO_BLK_T_WRITE_ZEROES) {
		*r->status = do_ranges(b, r);
		give_back(b, r);
		return;
	}
	block_start(b->bd, &r->io);
}

/* Gives back what the engine has completed and starts a parked barrier
 * once nothing before it is in flight; *resume if popping had stopped. */
static void collect(struct blk *b, bool *resume)
{
	*resume = !b->nfree;
	block_poll(b->bd, false);
	if (b->barrier && !block_inflight(b->bd) && !b->held) {
		struct blk_req *r = b->barrier;

		b->barrier = NULL;
		*resume = true;
		start(b, r);
	}
}

static void blk_queue_notify(struct virtio_pci *vp, unsigned int q)
{
	struct blk *b = vp->priv;
	unsigned int pops = 0, given = b->given;
	bool resume;
	int r = 0;

	/* Completions the loop has not seen yet go back with this pass's
	 * interrupt, and a barrier they unblock runs before what follows. */
	collect(b, &resume);
	/* Nothing new while a request is held (the VM is pausing for it):
	 * the resume kicks the queue again. */
	while (!b->barrier && !b->held && b->nfree &&
	       pops < BLK_POPS_PER_PASS) {
		struct blk_req *req = b->free[b->nfree - 1];

		r = virtio_pop(vp, q, &req->e);
		if (r <= 0)
			break;
		b->nfree--;
		pops++;
		switch (parse(b, req)) {
		case REQ_DONE:
			give_back(b, req);
			break;
		case REQ_BARRIER:
			if (block_inflight(b->bd) || b->held) {
				b->barrier = req;	/* collect() starts it */
				break;
			}
			/* fall through */
		case REQ_IO:
			start(b, req);
			break;
		}
	}
	block_submit(b->bd);
	if (b->given != given)
		virtio_queue_interrupt(vp, q);
	if (r > 0 && pops == BLK_POPS_PER_PASS)
		virtio_queue_kick(vp, q);
}

/* Main loop: the engine has completions.  One interrupt for all of them. */
static void blk_ready(void *opaque)
{
	struct blk *b = opaque;
	struct virtio_pci *vp = b->vp;
	unsigned int given;
	bool resume;

	pthread_mutex_lock(&vp->f.dev.lock);
	given = b->given;
	collect(b, &resume);
	block_submit(b->bd);
	if (b->given != given)
		virtio_queue_interrupt(vp, 0);
	/* Popping stopped for the barrier or an empty pool: go on. */
	if (resume)
		virtio_queue_kick(vp, 0);
	pthread_mutex_unlock(&vp->f.dev.lock);
}

/* Waits for and drops what is in flight, and what is held: the rings
 * are going away. */
static void blk_drop_inflight(struct blk *b)
{
	block_cancel(b->bd);
	if (b->barrier)
		b->free[b->nfree++] = b->barrier;
	b->barrier = NULL;
	for (; b->held; b->held = b->held->held_next)
		b->free[b->nfree++] = b->held;
	b->held_tail = &b->held;
	b->io_status = 0;
}

static void blk_config_read(struct virtio_pci *vp, unsigned int off,
			    uint8_t *data, unsigned int len)
{
	struct blk *b = vp->priv;
	uint32_t blk_size = block_blk_size(b->bd);
	struct virtio_blk_config c = {
		.capacity = htole64(block_size(b->bd) / SECTOR),
		.seg_max = htole32(BLK_SEG_MAX),
		.blk_size = htole32(blk_size),
		.max_discard_sectors = htole32(BLK_MAX_RANGE),
		.max_discard_seg = htole32(1),
		.discard_sector_alignment = htole32(blk_size / SECTOR),
		.max_write_zeroes_sectors = htole32(BLK_MAX_RANGE),
		.max_write_zeroes_seg = htole32(1),
		.wce = b->wce,
	};

	/* GUEST: off and len were bounded to config_len by the transport */
	memcpy(data, (uint8_t *)&c + off, len);
}

/* The writeback byte's value at reset: what the cache mode is. */
static uint8_t wce_default(const struct blk *b)
{
	return !block_dsync(b->bd);
}

/* CONFIG_WCE: the guest turns its write cache off (each write durable
 * before it completes) or on. */
static void blk_config_write(struct virtio_pci *vp, unsigned int off,
			     const uint8_t *data, unsigned int len)
{
	struct blk *b = vp->priv;

	/* GUEST: only the writeback byte is writable (5.2.4), and only 0 or
	 * 1 means anything: any other value is on. */
	if (off != offsetof(struct virtio_blk_config, wce) || len != 1)
		return;
	b->wce = !!data[0];
	block_set_writethrough(b->bd, !b->wce);
}

/* GUEST: a reset with requests in flight waits for them (their data may
 * still be landing in guest memory) and drops them with the rings. */
static void blk_reset(struct virtio_pci *vp)
{
	struct blk *b = vp->priv;

	blk_drop_inflight(b);
	b->wce = wce_default(b);
	block_set_writethrough(b->bd, false);
}

/* Completes what is in flight and then a parked barrier (runnable once
 * nothing is before it), with one interrupt for what went back.  Not
 * while requests are held: they wait for the resume. */
static void drain(struct virtio_pci *vp)
{
	struct blk *b = vp->priv;
	unsigned int given = b->given;

	block_poll(b->bd, true);
	if (b->barrier) {
		struct blk_req *r = b->barrier;

		b->barrier = NULL;
		start(b, r);
		block_submit(b->bd);
		block_poll(b->bd, true);
	}
	if (b->given != given)
		virtio_queue_interrupt(vp, 0);
}

/* Completes what is in flight, so nothing of the device's own is left to
 * save. */
static int blk_save(struct virtio_pci *vp, struct state_buf *out)
{
	struct blk *b = vp->priv;

	/* Held requests are the device's own and have no saved form: they
	 * are retried (resume) or dropped (reset) first. */
	if (b->held) {
		pr_err("disk %s: requests are held for an I/O error; resume the VM before saving it",
		       block_path(b->bd));
		return -EBUSY;
	}
	drain(vp);
	return 0;
}

static void blk_free(struct blk *b)
{
	if (!b)
		return;
	if (b->bd) {
		blk_drop_inflight(b);
		block_close(b->bd);
	}
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
		    1ULL << VIRTIO_BLK_F_WRITE_ZEROES | 1ULL << VIRTIO_BLK_F_CONFIG_WCE,
	.config_len = BLK_CONFIG_LEN,
	.config_read = blk_config_read,
	.config_write = blk_config_write,
	.queue_notify = blk_queue_notify,
	.reset = blk_reset,
	.save = blk_save,
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
		.path = block_path(b->bd),
		.rd_reqs = b->stats.rd_reqs, .wr_reqs = b->stats.wr_reqs,
		.flush_reqs = b->stats.flush_reqs, .other_reqs = b->stats.other_reqs,
		.rd_bytes = b->stats.rd_bytes, .wr_bytes = b->stats.wr_bytes,
		.errors = b->stats.errors,
		.invalid = b->stats.invalid, .failed = b->stats.failed,
		.io_status = b->io_status,
		.rd_ns = b->stats.rd_ns, .wr_ns = b->stats.wr_ns,
		.flush_ns = b->stats.flush_ns,
		.syncs = block_syncs(b->bd),
	};
	pthread_mutex_unlock(&dev->lock);
	return 0;
}

int virtio_blk_retry(struct device *dev)
{
	struct virtio_pci *vp = virtio_pci_of(dev);
	struct blk_req *r, *next;
	unsigned int given;
	struct blk *b;
	bool resume;

	if (!vp || vp->ops != &blk_ops)
		return -ENODEV;
	pthread_mutex_lock(&dev->lock);
	b = vp->priv;
	r = b->held;
	if (!r) {
		pthread_mutex_unlock(&dev->lock);
		return 0;
	}
	/* What fails again is held again, on a list of its own. */
	b->held = NULL;
	b->held_tail = &b->held;
	b->io_status = 0;
	given = b->given;
	for (; r; r = next) {
		next = r->held_next;
		block_start(b->bd, &r->io);
	}
	block_submit(b->bd);
	collect(b, &resume);
	block_submit(b->bd);
	if (b->given != given)
		virtio_queue_interrupt(vp, 0);
	/* Popping, stopped for the held requests, goes on with the kick
	 * the resume gives every ready queue (virtio_pci_resume). */
	pthread_mutex_unlock(&dev->lock);
	return 0;
}

int virtio_blk_resize(struct device *dev, uint64_t size, char *err, size_t errlen)
{
	struct virtio_pci *vp = virtio_pci_of(dev);
	unsigned int given;
	struct blk *b;
	int r;

	if (!vp || vp->ops != &blk_ops)
		return -ENODEV;
	pthread_mutex_lock(&dev->lock);
	b = vp->priv;
	/* Requests in flight were checked against the old size: they finish
	 * first (new ones wait for the lock), so none straddles the change. */
	given = b->given;
	block_poll(b->bd, true);
	if (b->given != given)
		virtio_queue_interrupt(vp, 0);
	r = block_resize(b->bd, size, err, errlen);
	if (!r)
		virtio_config_changed(vp);
	pthread_mutex_unlock(&dev->lock);
	return r;
}

int virtio_blk_overlay(struct device *dev, const char *path, int fd, char *err, size_t errlen)
{
	struct virtio_pci *vp = virtio_pci_of(dev);
	struct blk *b;
	int r;

	if (!vp || vp->ops != &blk_ops)
		return -ENODEV;
	pthread_mutex_lock(&dev->lock);
	b = vp->priv;
	if (b->held) {
		snprintf(err, errlen, "disk %s: requests are held for an I/O error; resume the VM first",
			 block_path(b->bd));
		pthread_mutex_unlock(&dev->lock);
		return -EBUSY;
	}
	/* What is in flight finishes on the old image (new requests wait
	 * for the lock), a parked barrier with it. */
	drain(vp);
	r = block_overlay(&b->bd, b->vm->cfg, b->index, path, fd, BLK_QUEUE_SIZE, b->vm->loop,
			  err, errlen);
	pthread_mutex_unlock(&dev->lock);
	return r;
}

struct device *virtio_blk_create(struct vm *vm, unsigned int index,
				 unsigned int slot, uint64_t bar_addr)
{
	const struct disk_config *d = &vm->cfg->disks[index];
	struct virtio_pci *vp;
	struct blk *b = calloc(1, sizeof(*b));
	unsigned int i;

	if (!b) {
		pr_err("cannot create disk %s: out of memory", d->path);
		return NULL;
	}
	for (i = 0; i < BLK_QUEUE_SIZE; i++)
		b->free[b->nfree++] = &b->reqs[i];
	b->vm = vm;
	b->index = index;
	snprintf(b->name, sizeof(b->name), "disk%u", index);
	b->werror = d->werror;
	b->rerror = d->rerror;
	b->held_tail = &b->held;
	if (d->serial)
		memcpy(b->serial, d->serial, strnlen(d->serial, sizeof(b->serial)));
	/* The loop runs only once the device is complete (b->vp set). */
	b->bd = block_open(vm->cfg, index, BLK_QUEUE_SIZE, vm->loop, blk_io_done, blk_ready, b);
	if (!b->bd) {
		blk_free(b);
		return NULL;
	}
	b->wce = wce_default(b);
	vp = virtio_pci_create(vm, &blk_ops, b, slot, bar_addr);
	if (!vp)
		return NULL;	/* destroy freed b */
	b->vp = vp;
	if (d->readonly)
		vp->dev_features = 1ULL << VIRTIO_BLK_F_RO;
	return &vp->f.dev;
}
