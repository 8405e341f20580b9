/* virtio-blk: what the rest of kvmm calls (the device is virtio/blk.c,
 * its images and I/O the block layer's, block/). */
#ifndef KVMM_VIRTIO_BLK_H
#define KVMM_VIRTIO_BLK_H

#include <stddef.h>
#include <stdint.h>

struct device;
struct vm;

/* Opens disk index of vm->cfg; on bad input prints one line and
 * returns NULL. */
struct device *virtio_blk_create(struct vm *vm, unsigned int index,
				 unsigned int slot, uint64_t bar_addr);

/* A disk's counters since kvmm started (they survive guest resets). */
struct virtio_blk_stats {
	const char *path;
	uint64_t rd_reqs, wr_reqs, flush_reqs, other_reqs;
	uint64_t rd_bytes, wr_bytes, errors;
	uint64_t invalid, failed;	/* of errors: the guest's bad requests, */
					/* the host's I/O errors */
	int io_status;			/* errno the held requests met, 0: none */
	uint64_t rd_ns, wr_ns, flush_ns;	/* total time, request by request */
	uint64_t syncs;			/* issued to the host: block_syncs() */
};
/* 0 and *st filled if dev is a virtio-blk device, else -ENODEV. */
int virtio_blk_stats(struct device *dev, struct virtio_blk_stats *st);
/* The VM was resumed: restarts the requests a host I/O error held under
 * error policy stop; the queue is looked at again by the transport's
 * resume (virtio_pci_resume).  -ENODEV if dev is not virtio-blk. */
int virtio_blk_retry(struct device *dev);
/* Resizes the image of the virtio-blk device dev to size bytes and tells
 * the guest (config change).  -ENODEV if dev is not virtio-blk; other
 * errors write one line into err: read-only disk, block device, size
 * not a positive multiple of the block size, ftruncate's failure. */
int virtio_blk_resize(struct device *dev, uint64_t size, char *err, size_t errlen);
/* Puts the disk onto overlay PATH, or FD (not -1) opened already and
 * named PATH (block_overlay), once what is in flight is done: 0, -ENODEV
 * (not a disk), or -errno with one line in err (fd still the caller's). */
int virtio_blk_overlay(struct device *dev, const char *path, int fd, char *err, size_t errlen);

#endif
