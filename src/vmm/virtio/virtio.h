/* virtio devices over the modern PCI transport (virtio 1.x, 4.1).
 *
 * A device (rng, console, later blk, net) is one file with one
 * struct virtio_dev_ops; the transport (virtio/pci.c) owns the PCI
 * function, MSI-X, feature negotiation, device status and the queues.
 *
 * Threads: the guest's queue notifications arrive on one eventfd per
 * queue (KVM_IOEVENTFD on the notify address, or written by the MMIO
 * exit path when the ioeventfd is missing), and the main thread's epoll
 * loop runs the device's queue_notify with the device lock held.
 * Devices whose work blocks (blk's io_uring) may watch the same
 * eventfds from their own I/O thread instead; nothing in the transport
 * assumes which thread calls it.  net watches its tap from the main loop
 * too. */
#ifndef KVMM_VIRTIO_H
#define KVMM_VIRTIO_H

#include <stdbool.h>
#include <stdint.h>

#include "device.h"
#include "pci/msix.h"
#include "pci/pci.h"
#include "virtqueue.h"

#define VIRTIO_MAX_QUEUES	8
#define VIRTIO_NO_VECTOR	0xffff

#define VIRTIO_F_INDIRECT_DESC	28
#define VIRTIO_F_VERSION_1	32

#define VIRTIO_STATUS_ACKNOWLEDGE	1
#define VIRTIO_STATUS_DRIVER		2
#define VIRTIO_STATUS_DRIVER_OK		4
#define VIRTIO_STATUS_FEATURES_OK	8
#define VIRTIO_STATUS_NEEDS_RESET	0x40
#define VIRTIO_STATUS_FAILED		0x80

struct virtio_pci;

struct virtio_dev_ops {
	const char *name;
	uint16_t type;			/* virtio device ID: 4 = entropy */
	uint16_t pci_class;		/* class code (upper 16 bits) */
	unsigned int nqueues;
	uint16_t queue_size;		/* largest, a power of two */
	uint64_t features;		/* beyond VERSION_1 and INDIRECT_DESC */
	unsigned int config_len;	/* device-specific config bytes */
	void (*config_read)(struct virtio_pci *vp, unsigned int off,
			    uint8_t *data, unsigned int len);
	void (*config_write)(struct virtio_pci *vp, unsigned int off,
			     const uint8_t *data, unsigned int len);
	/* Queue q was kicked: consume what is available. */
	void (*queue_notify)(struct virtio_pci *vp, unsigned int q);
	/* The driver changed device_status from old to vp->status (not
	 * to 0: that is reset); optional. */
	void (*status)(struct virtio_pci *vp, uint8_t old);
	/* Device-specific state (the transport saves its own). */
	void (*reset)(struct virtio_pci *vp);
	int (*save)(struct virtio_pci *vp, struct state_buf *out);
	int (*load)(struct virtio_pci *vp, const uint8_t *data, size_t len);
	void (*destroy)(struct virtio_pci *vp);
};

struct virtio_queue {
	struct virtio_pci *vp;
	struct virtq vq;
	uint16_t msix_vector;
	int kick_fd;			/* eventfd the guest's notify lands on */
	uint64_t ioeventfd_addr;	/* 0 when not given to KVM */
};

struct virtio_pci {
	struct pci_func f;
	struct msix msix;
	struct msix_sink sink;
	const struct virtio_dev_ops *ops;
	void *priv;			/* the device's own state */
	uint64_t dev_features;		/* this instance's own (blk's RO) */
	struct guest_memory *mem;

	uint32_t dfselect, gfselect;
	uint64_t driver_features;
	uint8_t status;
	uint8_t config_generation;
	uint8_t isr;
	uint16_t config_vector;
	uint16_t queue_select;
	bool warned;			/* NEEDS_RESET was logged once */
	unsigned int cfg_cap;		/* VIRTIO_PCI_CAP_PCI_CFG offset */
	struct virtio_queue queues[VIRTIO_MAX_QUEUES];
};

/* Creates the function in slot with its BAR at bar_addr (0: the guest
 * places it) and plugs it into vm's PCI bus. */
struct virtio_pci *virtio_pci_create(struct vm *vm, const struct virtio_dev_ops *ops,
				     void *priv, unsigned int slot, uint64_t bar_addr);
/* The BAR's size, for the caller's address allocation. */
#define VIRTIO_PCI_BAR_SIZE	0x8000ULL

/* For devices: the queue was used; interrupt the guest if it wants one. */
void virtio_queue_interrupt(struct virtio_pci *vp, unsigned int q);
/* Queues q's processing again, as a guest notification would (for a
 * device that stopped early to let other work run). */
void virtio_queue_kick(struct virtio_pci *vp, unsigned int q);
/* The guest broke a rule: DEVICE_NEEDS_RESET and a config interrupt. */
void virtio_needs_reset(struct virtio_pci *vp);
/* The device-specific configuration changed (caller holds the device
 * lock): a new config_generation and a config interrupt. */
void virtio_config_changed(struct virtio_pci *vp);
/* Pops the next element of queue q; on a malformed chain sets
 * NEEDS_RESET and returns -EINVAL. */
int virtio_pop(struct virtio_pci *vp, unsigned int q, struct virtq_elem *e);

/* The devices. */
struct device *virtio_rng_create(struct vm *vm, unsigned int slot, uint64_t bar_addr);
struct chardev;
/* Takes backend's input callbacks; the backend outlives the device. */
struct device *virtio_console_create(struct vm *vm, unsigned int slot, uint64_t bar_addr,
				     struct chardev *backend);

struct disk_config;
/* Opens disk index of vm->cfg; on bad input prints one line and
 * returns NULL. */
struct device *virtio_blk_create(struct vm *vm, unsigned int index,
				 unsigned int slot, uint64_t bar_addr);

/* A disk's counters since kvmm started (they survive guest resets). */
struct virtio_blk_stats {
	const char *path;
	uint64_t rd_reqs, wr_reqs, flush_reqs, other_reqs;
	uint64_t rd_bytes, wr_bytes, errors;
	uint64_t rd_ns, wr_ns, flush_ns;	/* total time, request by request */
};
/* 0 and *st filled if dev is a virtio-blk device, else -ENODEV. */
int virtio_blk_stats(struct device *dev, struct virtio_blk_stats *st);
/* Resizes the image of the virtio-blk device dev to size bytes and tells
 * the guest (config change).  -ENODEV if dev is not virtio-blk; other
 * errors write one line into err: read-only disk, block device, size
 * not a positive multiple of the block size, ftruncate's failure. */
int virtio_blk_resize(struct device *dev, uint64_t size, char *err, size_t errlen);

/* Opens (or creates) NIC index's tap of vm->cfg; on bad input prints
 * one line and returns NULL, leaving no tap behind. */
struct device *virtio_net_create(struct vm *vm, unsigned int index,
				 unsigned int slot, uint64_t bar_addr);

/* A NIC's counters since kvmm started (they survive guest resets); rx
 * is what the guest received, tx what it sent. */
struct virtio_net_stats {
	const char *tap;
	uint8_t mac[6];
	uint64_t rx_bytes, rx_packets, rx_errors, rx_drops;
	uint64_t tx_bytes, tx_packets, tx_errors, tx_drops;
};
/* 0 and *st filled if dev is a virtio-net device, else -ENODEV. */
int virtio_net_stats(struct device *dev, struct virtio_net_stats *st);

/* The virtio_pci behind dev, or NULL if dev is not a virtio device. */
struct virtio_pci *virtio_pci_of(struct device *dev);

#endif
