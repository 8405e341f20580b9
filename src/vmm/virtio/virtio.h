/* virtio devices over the modern PCI transport (virtio 1.x, 4.1).
 *
 * A device (rng, console, blk, net) is one file with one struct
 * virtio_dev_ops and its own header for the rest of kvmm (virtio/rng.h,
 * ...); this header is the transport only.  The transport (virtio/pci.c)
 * owns the PCI function, MSI-X, feature negotiation, device status and
 * the queues.
 *
 * Threads: the guest's queue notifications arrive on one eventfd per
 * queue (KVM_IOEVENTFD on the notify address, or written by the MMIO
 * exit path when the ioeventfd is missing), and the main thread's epoll
 * loop runs the device's queue_notify with the device lock held.
 * Devices whose work blocks (blk's io_uring) may watch the same
 * eventfds from their own I/O thread instead; nothing in the transport
 * assumes which thread calls it.  net watches its tap from the main loop
 * too.
 *
 * A paused VM's queue notifications are dropped (its state may be saved
 * with those chains still available); a resume and a load process every
 * ready queue once, so no notification is lost and none is run by a kvmm
 * whose saved state says it never was. */
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
/* Gives chain head of queue q back with len bytes written.  If the used
 * ring is out of reach the device is put in NEEDS_RESET and -EFAULT
 * returned; if the queue is no longer ready (reset, broken) the chain is
 * dropped and 0 returned. */
int virtio_push(struct virtio_pci *vp, unsigned int q, uint16_t head, uint32_t len);
/* Whether queue q may be used now: the driver is up and nothing broke. */
bool virtio_queue_live(const struct virtio_pci *vp, unsigned int q);
/* Whether the driver enabled queue q (and nothing broke it since). */
bool virtio_queue_ready(const struct virtio_pci *vp, unsigned int q);
/* The last n chains popped from queue q are available again: for a
 * load, whose device held them when it was saved. */
void virtio_queue_unpop(struct virtio_pci *vp, unsigned int q, uint16_t n);
/* virtq_set_notify and virtq_has_avail on queue q. */
void virtio_queue_set_notify(struct virtio_pci *vp, unsigned int q, bool on);
bool virtio_queue_has_avail(const struct virtio_pci *vp, unsigned int q);

/* The virtio_pci behind dev, or NULL if dev is not a virtio device. */
struct virtio_pci *virtio_pci_of(struct device *dev);
/* The VM was resumed: kicks every ready queue of dev once (a paused
 * VM's notifications are dropped).  Nothing if dev is not virtio. */
void virtio_pci_resume(struct device *dev);

#endif
