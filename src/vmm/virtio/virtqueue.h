/* Split virtqueues (virtio 1.x, 2.7): walking descriptor chains the guest
 * made available and returning them on the used ring.
 *
 * Everything in the rings is guest-controlled and may change under our
 * feet: each field is read once into a local, every index is checked
 * against the queue size, every buffer goes through guest_mem_ptr(), and
 * a chain may not be longer than the queue (or indirect table) it lives
 * in.  A chain that breaks a rule makes virtq_pop() fail with -EINVAL;
 * the transport then puts the device in DEVICE_NEEDS_RESET. */
#ifndef KVMM_VIRTQUEUE_H
#define KVMM_VIRTQUEUE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "memory.h"

#define VIRTQ_MAX_SIZE		256	/* largest queue a device offers */
#define VIRTQ_MAX_SEGS		256	/* buffers per chain, indirect included */
#define VIRTQ_MAX_INDIRECT	256	/* descriptors per indirect table */

#define VIRTQ_DESC_F_NEXT	1
#define VIRTQ_DESC_F_WRITE	2
#define VIRTQ_DESC_F_INDIRECT	4
#define VIRTQ_AVAIL_F_NO_INTERRUPT 1
#define VIRTQ_USED_F_NO_NOTIFY	1

struct virtq {
	uint16_t size;		/* a power of two <= VIRTQ_MAX_SIZE once ready */
	bool ready;
	bool indirect;		/* VIRTIO_F_INDIRECT_DESC negotiated */
	uint64_t desc, avail, used;	/* guest addresses */
	uint16_t last_avail;	/* next avail entry to take */
	uint16_t used_idx;	/* next used entry to fill */
};

/* One chain: the device-readable buffers first (out), then the
 * device-writable ones (in). */
struct virtq_elem {
	uint16_t head;
	unsigned int n_out, n_in;
	struct iovec iov[VIRTQ_MAX_SEGS];	/* out, then in */
	uint64_t out_len, in_len;		/* total bytes */
};

/* Checks size and ring placement before the queue is enabled: 0 or
 * -EINVAL (size not a power of two, 0, above max; rings misaligned or
 * outside guest memory). */
int virtq_check(const struct virtq *q, const struct guest_memory *mem,
		uint16_t max_size);
/* 1 and *e filled, 0 if nothing is available, -EINVAL if the guest broke
 * a rule (the queue must not be used again until reset). */
int virtq_pop(struct virtq *q, const struct guest_memory *mem,
	      struct virtq_elem *e);
/* Returns head to the guest with len bytes written; -EFAULT if the used
 * ring left guest memory. */
int virtq_push(struct virtq *q, const struct guest_memory *mem,
	       uint16_t head, uint32_t len);
/* Whether the driver wants an interrupt now (VIRTQ_AVAIL_F_NO_INTERRUPT). */
bool virtq_should_notify(const struct virtq *q, const struct guest_memory *mem);
/* Asks the driver for notifications (on) or to skip them while the
 * device drains the queue anyway (VIRTQ_USED_F_NO_NOTIFY: a hint only). */
void virtq_set_notify(struct virtq *q, const struct guest_memory *mem, bool on);
/* Whether the driver made entries available that were not popped yet;
 * after virtq_set_notify(q, mem, true), to catch those added before the
 * driver saw the flag. */
bool virtq_has_avail(const struct virtq *q, const struct guest_memory *mem);
/* Copies up to len bytes into the element's writable buffers, from off
 * bytes into them; returns how many fitted. */
uint64_t virtq_elem_write(const struct virtq_elem *e, uint64_t off, const void *src, uint64_t len);

#endif
