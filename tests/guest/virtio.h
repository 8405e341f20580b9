/* SPDX-License-Identifier: MIT */
/*
 * virtio 1.x over PCI, modern transport only (virtio.c), and the device
 * drivers built on it (virtio_*.c).
 */
#ifndef GUEST_VIRTIO_H
#define GUEST_VIRTIO_H

#include "types.h"
#include "pci.h"

#define VIRTIO_ID_NET		1
#define VIRTIO_ID_BLK		2
#define VIRTIO_ID_CONSOLE	3
#define VIRTIO_ID_RNG		4
#define VIRTIO_ID_BALLOON	5

#define VIRTIO_F_VERSION_1	32

#define VIRTQ_DESC_F_NEXT	1
#define VIRTQ_DESC_F_WRITE	2

#define VIRTIO_MAX_QUEUES	4
#define VIRTQ_MAX_SIZE		128	/* net_bench.c's rings; others use 8-32 */

struct virtq_desc {
	u64 addr;
	u32 len;
	u16 flags;
	u16 next;
};

struct virtq_used_elem {
	u32 id;
	u32 len;
};

struct virtq {
	u16 index, size;
	u16 free_head, num_free;
	u16 avail_idx;		/* next free slot in the avail ring */
	u16 last_used;		/* next used entry to consume */
	volatile struct virtq_desc *desc;
	volatile u16 *avail;	/* flags, idx, ring[size], used_event */
	volatile u8 *used;	/* flags, idx, ring[size], avail_event */
	u64 notify;		/* where to write the queue index */
	int vector;		/* MSI-X table entry, -1 none */
	u64 completed;
};

struct virtio_dev {
	struct pci_dev *pci;
	u16 type;		/* VIRTIO_ID_* */
	char name[16];		/* "blk0", "net1": type and index per type */
	u64 common, isr, device, notify_base;
	u32 notify_mult, device_len;
	u64 features;		/* negotiated */
	u16 num_queues;		/* as the device reports */
	struct virtq vq[VIRTIO_MAX_QUEUES];
	int nvq;
	/* MSI-X: table entry i raises IDT vector vec_base + i. */
	u64 msix_table;
	u16 msix_size;
	int vec_base, nvec;
	bool broken;		/* failed or NEEDS_RESET: stop using it */
};

/* A buffer of a descriptor chain: device-readable unless `write`. */
struct vbuf {
	void *addr;
	u32 len;
	bool write;
};

/* virtio.c: transport */
void *dma_alloc(size_t size, size_t align);
bool virtio_init(struct virtio_dev *v, u64 wanted, int nqueues, u16 qsize);
bool virtio_driver_ok(struct virtio_dev *v);
u8 virtio_cfg8(struct virtio_dev *v, u32 off);
void virtio_cfg_write8(struct virtio_dev *v, u32 off, u8 val);
u16 virtio_cfg16(struct virtio_dev *v, u32 off);
u32 virtio_cfg32(struct virtio_dev *v, u32 off);
u64 virtio_cfg64(struct virtio_dev *v, u32 off);
bool virtio_has(const struct virtio_dev *v, int feature);
int virtq_add(struct virtq *q, const struct vbuf *bufs, int n);
void virtq_kick(struct virtio_dev *v, struct virtq *q);
bool virtq_poll(struct virtq *q, u32 *id, u32 *len);
bool virtq_wait(struct virtio_dev *v, struct virtq *q, u32 *id, u32 *len,
		u64 timeout_us);
int virtq_transfer(struct virtio_dev *v, struct virtq *q,
		   const struct vbuf *bufs, int n, u32 *len);
bool virtio_check_status(struct virtio_dev *v);
u64 virtio_interrupts(const struct virtio_dev *v);
const char *virtq_malformed(struct virtio_dev *v, struct virtq *q,
			    const char *kind, u8 *status);
void virtio_reset(struct virtio_dev *v);
void virtio_report_interrupts(struct virtio_dev *v, bool expected);
void virtio_run(void);

/* virtio_*.c: drivers, each given a device that is ready to initialise */
void virtio_rng_run(struct virtio_dev *v, int index);
void virtio_blk_run(struct virtio_dev *v, int index);
void virtio_console_run(struct virtio_dev *v, int index);
void virtio_net_run(struct virtio_dev *v, int index);
void virtio_balloon_run(struct virtio_dev *v, int index);
void virtio_net_serve(void);
/* blk_bench.c: the queue size blk N wants, and its load (if asked for) */
u16 blk_bench_queue_size(int index);
void blk_bench_run(struct virtio_dev *v, int index, u64 capacity, u32 blk_size,
		   u64 features);

#endif
