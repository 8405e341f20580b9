/* The virtio 1.x modern PCI transport (virtio 1.2, 4.1): capabilities,
 * common configuration, ISR, notifications, MSI-X; see virtio.h. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "irq.h"
#include "log.h"
#include "loop.h"
#include "pci/pci_devices.h"
#include "virtio.h"
#include "vm.h"

#define VIRTIO_PCI_VENDOR	0x1af4
#define VIRTIO_PCI_DEVICE_BASE	0x1040	/* modern: 0x1040 + device type */
#define VIRTIO_PCI_REVISION	1	/* modern-only device */

/* One BAR holds every structure, each in its own 4 KiB page. */
#define BAR			0
#define COMMON_OFF		0x0000
#define COMMON_LEN		0x38
#define ISR_OFF			0x1000
#define DEVICE_OFF		0x2000
#define DEVICE_MAX		0x1000
#define NOTIFY_OFF		0x3000
#define NOTIFY_MULT		4
#define MSIX_TABLE_OFF		0x4000
#define MSIX_PBA_OFF		0x5000

/* virtio_pci_cap.cfg_type */
#define CAP_COMMON		1
#define CAP_NOTIFY		2
#define CAP_ISR			3
#define CAP_DEVICE		4
#define CAP_PCI_CFG		5
#define PCI_CFG_DATA		16	/* pci_cfg_data, in the capability */

/* Common configuration fields (4.1.4.3). */
#define CC_DFSELECT		0
#define CC_DF			4
#define CC_GFSELECT		8
#define CC_GF			12
#define CC_MSIX_CONFIG		16
#define CC_NUM_QUEUES		18
#define CC_STATUS		20
#define CC_CFG_GENERATION	21
#define CC_Q_SELECT		22
#define CC_Q_SIZE		24
#define CC_Q_MSIX		26
#define CC_Q_ENABLE		28
#define CC_Q_NOTIFY_OFF		30
#define CC_Q_DESC		32
#define CC_Q_DRIVER		40
#define CC_Q_DEVICE		48

#define VIRTIO_STATE_VERSION	1

static uint64_t offered(const struct virtio_pci *vp)
{
	return vp->ops->features | vp->dev_features | 1ULL << VIRTIO_F_VERSION_1 |
	       1ULL << VIRTIO_F_INDIRECT_DESC;
}

static struct virtio_queue *selected(struct virtio_pci *vp)
{
	return vp->queue_select < vp->ops->nqueues ?
	       &vp->queues[vp->queue_select] : NULL;
}

/* KVM delivers the queue's notify writes to its eventfd while the BAR
 * decodes; otherwise the MMIO exit path writes the eventfd itself. */
static void update_ioeventfds(struct virtio_pci *vp)
{
	uint64_t base = pci_bar_addr(&vp->f, BAR);
	bool on = pci_mem_enabled(&vp->f) && base;
	unsigned int i;

	for (i = 0; i < vp->ops->nqueues; i++) {
		struct virtio_queue *q = &vp->queues[i];
		uint64_t addr = base + NOTIFY_OFF + NOTIFY_MULT * i;

		if (q->ioeventfd_addr && (!on || q->ioeventfd_addr != addr)) {
			kvm_ioeventfd(vp->f.dev.vm, q->ioeventfd_addr, 2, q->kick_fd, false);
			q->ioeventfd_addr = 0;
		}
		if (on && !q->ioeventfd_addr) {
			int r = kvm_ioeventfd(vp->f.dev.vm, addr, 2, q->kick_fd, true);

			if (!r)
				q->ioeventfd_addr = addr;
			else
				pr_debug("%s: no ioeventfd for queue %u (%s); kicks take the MMIO exit",
					 vp->ops->name, i, strerror(-r));
		}
	}
}

static void reset_queues(struct virtio_pci *vp)
{
	unsigned int i;

	for (i = 0; i < VIRTIO_MAX_QUEUES; i++) {
		struct virtio_queue *q = &vp->queues[i];

		memset(&q->vq, 0, sizeof(q->vq));
		q->vq.size = vp->ops->queue_size;
		q->msix_vector = VIRTIO_NO_VECTOR;
	}
}

/* Writing 0 to device_status (and power-on). */
static void virtio_reset(struct virtio_pci *vp)
{
	vp->dfselect = vp->gfselect = 0;
	vp->driver_features = 0;
	vp->status = 0;
	vp->isr = 0;
	vp->config_vector = VIRTIO_NO_VECTOR;
	vp->queue_select = 0;
	reset_queues(vp);
	if (vp->ops->reset)
		vp->ops->reset(vp);
}

/* The configuration-change interrupt: ISR bit 1, and the config vector. */
static void config_interrupt(struct virtio_pci *vp)
{
	vp->isr |= 2;
	if (vp->config_vector != VIRTIO_NO_VECTOR)
		msix_notify(&vp->msix, vp->config_vector);
}

void virtio_needs_reset(struct virtio_pci *vp)
{
	if (vp->status & VIRTIO_STATUS_NEEDS_RESET)
		return;
	/* Once per device: a guest must not be able to flood our log. */
	if (!vp->warned)
		pr_warn("%s: the guest broke the virtio rules; device needs a reset",
			vp->ops->name);
	else
		pr_debug("%s: device needs a reset again", vp->ops->name);
	vp->warned = true;
	vp->status |= VIRTIO_STATUS_NEEDS_RESET;
	config_interrupt(vp);
}

void virtio_config_changed(struct virtio_pci *vp)
{
	/* A driver reading a multi-byte field around this sees the
	 * generation move and reads again (4.1.4.3.1). */
	vp->config_generation++;
	config_interrupt(vp);
}

void virtio_queue_interrupt(struct virtio_pci *vp, unsigned int q)
{
	struct virtio_queue *vq = &vp->queues[q];

	if (!virtq_should_notify(&vq->vq, vp->mem))
		return;
	vp->isr |= 1;
	if (vq->msix_vector != VIRTIO_NO_VECTOR)
		msix_notify(&vp->msix, vq->msix_vector);
}

int virtio_pop(struct virtio_pci *vp, unsigned int q, struct virtq_elem *e)
{
	int r = virtq_pop(&vp->queues[q].vq, vp->mem, e);

	if (r < 0) {
		vp->queues[q].vq.ready = false;
		virtio_needs_reset(vp);
	}
	return r;
}

int virtio_push(struct virtio_pci *vp, unsigned int q, uint16_t head, uint32_t len)
{
	struct virtq *vq = &vp->queues[q].vq;

	/* A reset or a broken chain took the queue away meanwhile: the
	 * chain has nowhere to go. */
	if (!vq->ready)
		return 0;
	if (virtq_push(vq, vp->mem, head, len)) {
		virtio_needs_reset(vp);
		return -EFAULT;
	}
	return 0;
}

bool virtio_queue_live(const struct virtio_pci *vp, unsigned int q)
{
	return (vp->status & VIRTIO_STATUS_DRIVER_OK) &&
	       !(vp->status & VIRTIO_STATUS_NEEDS_RESET) && vp->queues[q].vq.ready;
}

bool virtio_queue_ready(const struct virtio_pci *vp, unsigned int q)
{
	return vp->queues[q].vq.ready;
}

void virtio_queue_unpop(struct virtio_pci *vp, unsigned int q, uint16_t n)
{
	vp->queues[q].vq.last_avail -= n;
}

void virtio_queue_set_notify(struct virtio_pci *vp, unsigned int q, bool on)
{
	virtq_set_notify(&vp->queues[q].vq, vp->mem, on);
}

bool virtio_queue_has_avail(const struct virtio_pci *vp, unsigned int q)
{
	return virtq_has_avail(&vp->queues[q].vq, vp->mem);
}

/* The common configuration as the guest sees it, little-endian. */
static void common_image(struct virtio_pci *vp, uint8_t *c)
{
	struct virtio_queue *q = selected(vp);
	uint64_t df = vp->dfselect < 2 ? offered(vp) >> (32 * vp->dfselect) : 0;
	uint64_t gf = vp->gfselect < 2 ? vp->driver_features >> (32 * vp->gfselect) : 0;

	memset(c, 0, COMMON_LEN);
	pci_put(c + CC_DFSELECT, vp->dfselect, 4);
	pci_put(c + CC_DF, (uint32_t)df, 4);
	pci_put(c + CC_GFSELECT, vp->gfselect, 4);
	pci_put(c + CC_GF, (uint32_t)gf, 4);
	pci_put(c + CC_MSIX_CONFIG, vp->config_vector, 2);
	pci_put(c + CC_NUM_QUEUES, vp->ops->nqueues, 2);
	c[CC_STATUS] = vp->status;
	c[CC_CFG_GENERATION] = vp->config_generation;
	pci_put(c + CC_Q_SELECT, vp->queue_select, 2);
	if (!q)
		return;
	pci_put(c + CC_Q_SIZE, q->vq.size, 2);
	pci_put(c + CC_Q_MSIX, q->msix_vector, 2);
	pci_put(c + CC_Q_ENABLE, q->vq.ready, 2);
	pci_put(c + CC_Q_NOTIFY_OFF, vp->queue_select, 2);
	pci_put(c + CC_Q_DESC, (uint32_t)q->vq.desc, 4);
	pci_put(c + CC_Q_DESC + 4, q->vq.desc >> 32, 4);
	pci_put(c + CC_Q_DRIVER, (uint32_t)q->vq.avail, 4);
	pci_put(c + CC_Q_DRIVER + 4, q->vq.avail >> 32, 4);
	pci_put(c + CC_Q_DEVICE, (uint32_t)q->vq.used, 4);
	pci_put(c + CC_Q_DEVICE + 4, q->vq.used >> 32, 4);
}

static uint16_t vector_or_none(struct virtio_pci *vp, uint16_t v)
{
	/* GUEST: a vector past the MSI-X table reads back as NO_VECTOR,
	 * which tells the driver the mapping failed (4.1.5.1.2). */
	return v < vp->msix.nvec ? v : VIRTIO_NO_VECTOR;
}

static void kick_ready_queues(struct virtio_pci *vp);

static void write_status(struct virtio_pci *vp, uint8_t v)
{
	uint64_t f = vp->driver_features;
	uint8_t old;

	if (!v) {
		virtio_reset(vp);
		return;
	}
	/* GUEST: NEEDS_RESET is the device's bit; FEATURES_OK only sticks
	 * when the driver took VERSION_1 and nothing we did not offer. */
	v = (v & ~VIRTIO_STATUS_NEEDS_RESET) | (vp->status & VIRTIO_STATUS_NEEDS_RESET);
	if ((v & VIRTIO_STATUS_FEATURES_OK) && !(vp->status & VIRTIO_STATUS_FEATURES_OK) &&
	    ((f & ~offered(vp)) || !(f & 1ULL << VIRTIO_F_VERSION_1)))
		v &= ~VIRTIO_STATUS_FEATURES_OK;
	old = vp->status;
	vp->status = v;
	if (vp->ops->status && v != old)
		vp->ops->status(vp, old);
	/* GUEST: a driver may fill its queues and notify before DRIVER_OK
	 * (Linux's virtio_balloon primes its stats queue so), and those
	 * kicks were ignored: every ready queue runs once now. */
	if ((v & VIRTIO_STATUS_DRIVER_OK) && !(old & VIRTIO_STATUS_DRIVER_OK) &&
	    !(v & VIRTIO_STATUS_NEEDS_RESET))
		kick_ready_queues(vp);
}

static void enable_queue(struct virtio_pci *vp, struct virtio_queue *q)
{
	if (q->vq.ready)
		return;
	q->vq.indirect = vp->driver_features & 1ULL << VIRTIO_F_INDIRECT_DESC;
	q->vq.last_avail = q->vq.used_idx = 0;
	/* GUEST: size a power of two within our maximum, rings aligned
	 * and inside RAM; else the device needs a reset. */
	if (virtq_check(&q->vq, vp->mem, vp->ops->queue_size)) {
		virtio_needs_reset(vp);
		return;
	}
	q->vq.ready = true;
}

static void set64(uint64_t *field, unsigned int half, uint32_t v)
{
	*field = half ? (*field & 0xffffffffULL) | (uint64_t)v << 32 :
			(*field & ~0xffffffffULL) | v;
}

/* Applies field `off` of the (already patched) image. */
static void common_field(struct virtio_pci *vp, unsigned int off, const uint8_t *c)
{
	struct virtio_queue *q = selected(vp);
	bool live = q && !q->vq.ready;	/* queue fields writable */

	switch (off) {
	case CC_DFSELECT: vp->dfselect = pci_get(c + off, 4); break;
	case CC_GFSELECT: vp->gfselect = pci_get(c + off, 4); break;
	case CC_GF:
		/* GUEST: features are fixed once FEATURES_OK is set */
		if (vp->gfselect < 2 && !(vp->status & VIRTIO_STATUS_FEATURES_OK))
			set64(&vp->driver_features, vp->gfselect, pci_get(c + off, 4));
		break;
	case CC_MSIX_CONFIG:
		vp->config_vector = vector_or_none(vp, pci_get(c + off, 2));
		break;
	case CC_STATUS: write_status(vp, c[off]); break;
	case CC_Q_SELECT: vp->queue_select = pci_get(c + off, 2); break;
	case CC_Q_SIZE: if (live) q->vq.size = pci_get(c + off, 2); break;
	case CC_Q_MSIX:
		if (q)
			q->msix_vector = vector_or_none(vp, pci_get(c + off, 2));
		break;
	case CC_Q_ENABLE:
		/* GUEST: only 1 means anything; disabling needs a reset */
		if (q && pci_get(c + off, 2) == 1)
			enable_queue(vp, q);
		break;
	case CC_Q_DESC: case CC_Q_DESC + 4:
		if (live)
			set64(&q->vq.desc, off & 4, pci_get(c + off, 4));
		break;
	case CC_Q_DRIVER: case CC_Q_DRIVER + 4:
		if (live)
			set64(&q->vq.avail, off & 4, pci_get(c + off, 4));
		break;
	case CC_Q_DEVICE: case CC_Q_DEVICE + 4:
		if (live)
			set64(&q->vq.used, off & 4, pci_get(c + off, 4));
		break;
	}
}

static const uint8_t common_fields[] = {
	CC_DFSELECT, CC_GFSELECT, CC_GF, CC_MSIX_CONFIG, CC_STATUS,
	CC_Q_SELECT, CC_Q_SIZE, CC_Q_MSIX, CC_Q_ENABLE,
	CC_Q_DESC, CC_Q_DESC + 4, CC_Q_DRIVER, CC_Q_DRIVER + 4,
	CC_Q_DEVICE, CC_Q_DEVICE + 4,
};

static unsigned int field_len(unsigned int off)
{
	return off == CC_STATUS ? 1 : off < CC_MSIX_CONFIG || off >= CC_Q_DESC ? 4 : 2;
}

static void common_write(struct virtio_pci *vp, unsigned int off,
			 const uint8_t *data, unsigned int len)
{
	uint8_t c[COMMON_LEN];
	unsigned int i;

	common_image(vp, c);
	memcpy(c + off, data, len);
	/* Every writable field the access overlaps takes its patched
	 * value, so byte, word and dword writes all work. */
	for (i = 0; i < sizeof(common_fields); i++) {
		unsigned int f = common_fields[i];

		if (f < off + len && off < f + field_len(f))
			common_field(vp, f, c);
	}
}

void virtio_queue_kick(struct virtio_pci *vp, unsigned int q)
{
	uint64_t one = 1;

	if (write(vp->queues[q].kick_fd, &one, sizeof(one)) < 0)
		pr_debug("%s: kick eventfd: %s", vp->ops->name, strerror(errno));
}

static void vp_bar_read(struct pci_func *f, int bar, uint64_t off,
			uint8_t *data, unsigned int len)
{
	struct virtio_pci *vp = (struct virtio_pci *)f;
	uint8_t c[COMMON_LEN];

	if (msix_bar_access(&vp->msix, bar, off, data, len, false))
		return;
	if (off < COMMON_LEN && len <= COMMON_LEN - off) {
		common_image(vp, c);
		memcpy(data, c + off, len);
	} else if (off == ISR_OFF) {
		data[0] = vp->isr;	/* reading acknowledges */
		vp->isr = 0;
	} else if (off >= DEVICE_OFF && off - DEVICE_OFF < vp->ops->config_len &&
		   len <= vp->ops->config_len - (off - DEVICE_OFF)) {
		vp->ops->config_read(vp, off - DEVICE_OFF, data, len);
	}
}

static void vp_bar_write(struct pci_func *f, int bar, uint64_t off,
			 const uint8_t *data, unsigned int len)
{
	struct virtio_pci *vp = (struct virtio_pci *)f;

	if (msix_bar_access(&vp->msix, bar, off, (uint8_t *)data, len, true))
		return;
	/* GUEST: accesses are bounded to the structure they start in */
	if (off < COMMON_LEN && len <= COMMON_LEN - off) {
		common_write(vp, off, data, len);
	} else if (off >= NOTIFY_OFF &&
		   off < NOTIFY_OFF + NOTIFY_MULT * vp->ops->nqueues) {
		/* The exit path (no ioeventfd, or an odd width): the queue
		 * is processed on the same thread as ioeventfd kicks. */
		virtio_queue_kick(vp, (off - NOTIFY_OFF) / NOTIFY_MULT);
	} else if (off >= DEVICE_OFF && off - DEVICE_OFF < vp->ops->config_len &&
		   len <= vp->ops->config_len - (off - DEVICE_OFF) &&
		   vp->ops->config_write) {
		vp->ops->config_write(vp, off - DEVICE_OFF, data, len);
	}
}

static void vp_bar_read(struct pci_func *f, int bar, uint64_t off,
			uint8_t *data, unsigned int len);
static void vp_bar_write(struct pci_func *f, int bar, uint64_t off,
			 const uint8_t *data, unsigned int len);

/* VIRTIO_PCI_CAP_PCI_CFG (4.1.4.9): a window through configuration
 * space onto the BAR, for drivers that cannot map it.  Returns the
 * length of the access it describes, or 0 if the guest's bar, offset
 * and length do not make one. */
static unsigned int cfg_window(struct virtio_pci *vp, uint64_t *off)
{
	const uint8_t *c = vp->f.cfg + vp->cfg_cap;
	unsigned int len = pci_get(c + 12, 4);

	/* GUEST: BAR 0 only, 1/2/4 bytes, aligned, inside the BAR */
	*off = pci_get(c + 8, 4);
	if (c[4] != BAR || (len != 1 && len != 2 && len != 4) || (*off & (len - 1)) ||
	    *off + len > VIRTIO_PCI_BAR_SIZE)
		return 0;
	return len;
}

static bool touches_cfg_data(struct virtio_pci *vp, unsigned int off, unsigned int len)
{
	unsigned int d = vp->cfg_cap + PCI_CFG_DATA;

	return vp->cfg_cap && off < d + 4 && off + len > d;
}

static void vp_cfg_read(struct pci_func *f, unsigned int off, unsigned int len)
{
	struct virtio_pci *vp = (struct virtio_pci *)f;
	uint64_t boff;
	unsigned int n;

	if (!touches_cfg_data(vp, off, len) || !(n = cfg_window(vp, &boff)))
		return;
	memset(f->cfg + vp->cfg_cap + PCI_CFG_DATA, 0, 4);
	vp_bar_read(f, BAR, boff, f->cfg + vp->cfg_cap + PCI_CFG_DATA, n);
}

static void vp_cfg_written(struct pci_func *f, unsigned int off, unsigned int len)
{
	struct virtio_pci *vp = (struct virtio_pci *)f;
	uint64_t boff;
	unsigned int n;

	msix_cfg_written(&vp->msix, off, len);
	if (touches_cfg_data(vp, off, len) && (n = cfg_window(vp, &boff)))
		vp_bar_write(f, BAR, boff, f->cfg + vp->cfg_cap + PCI_CFG_DATA, n);
}

static void vp_bars_changed(struct pci_func *f)
{
	update_ioeventfds((struct virtio_pci *)f);
}

static const struct pci_func_ops virtio_pci_func_ops = {
	.bar_read = vp_bar_read,
	.bar_write = vp_bar_write,
	.cfg_read = vp_cfg_read,
	.cfg_written = vp_cfg_written,
	.bars_changed = vp_bars_changed,
};

/* Main loop: a queue was kicked. */
static void queue_kicked(void *opaque, uint32_t events)
{
	struct virtio_queue *q = opaque;
	struct virtio_pci *vp = q->vp;
	unsigned int i = q - vp->queues;
	uint64_t n;

	if (read(q->kick_fd, &n, sizeof(n)) < 0)
		return;
	pthread_mutex_lock(&vp->f.dev.lock);
	/* GUEST: kicks on a queue that is not enabled, before DRIVER_OK
	 * or after the device broke are ignored.  A paused VM's kick is
	 * dropped too: its state may be saved already, with this kick's
	 * chains still available; taking them now would do work the state
	 * says never started.  The resume (or a load of that state) runs
	 * every ready queue once instead (virtio_pci_resume). */
	if (vp->f.dev.vm->state != VM_PAUSED && q->vq.ready &&
	    (vp->status & VIRTIO_STATUS_DRIVER_OK) &&
	    !(vp->status & VIRTIO_STATUS_NEEDS_RESET))
		vp->ops->queue_notify(vp, i);
	pthread_mutex_unlock(&vp->f.dev.lock);
}

/* Queues every ready queue's processing, as a guest notification would:
 * nothing was taken off them while the VM was paused. */
static void kick_ready_queues(struct virtio_pci *vp)
{
	unsigned int i;

	for (i = 0; i < vp->ops->nqueues; i++)
		if (vp->queues[i].vq.ready)
			virtio_queue_kick(vp, i);
}

void virtio_pci_resume(struct device *dev)
{
	struct virtio_pci *vp = virtio_pci_of(dev);

	if (!vp)
		return;
	pthread_mutex_lock(&dev->lock);
	kick_ready_queues(vp);
	pthread_mutex_unlock(&dev->lock);
}

static int msi_alloc(void *opaque)
{
	return irq_msi_alloc(opaque);
}

static void msi_route(void *opaque, unsigned int id, uint64_t addr, uint32_t data)
{
	if (irq_msi_route(opaque, id, addr, data))
		pr_warn("cannot route MSI %u to 0x%llx", id, (unsigned long long)addr);
}

static void msi_fire(void *opaque, unsigned int id)
{
	irq_msi_fire(opaque, id);
}

/* --- the struct device side: VM reset, state, destroy --------------- */

static void vp_reset(struct device *dev)
{
	struct virtio_pci *vp = (struct virtio_pci *)dev;

	pci_func_reset(&vp->f);
	msix_reset(&vp->msix);
	/* The old KVM VM took its ioeventfds with it. */
	update_ioeventfds(vp);
	virtio_reset(vp);
	vp->config_generation = 0;
}

struct vp_state {
	uint8_t version, status, config_generation, isr;
	uint32_t dfselect, gfselect;
	uint64_t driver_features;
	uint16_t config_vector, queue_select;
	struct {
		uint64_t desc, avail, used;
		uint16_t size, msix_vector, last_avail, used_idx;
		uint8_t ready;
	} q[VIRTIO_MAX_QUEUES];
};

static int vp_save(struct device *dev, struct state_buf *out)
{
	struct virtio_pci *vp = (struct virtio_pci *)dev;
	struct state_buf own = { 0 };
	struct vp_state s;
	unsigned int i;
	int r = 0;

	/* The device's own record first: its hook completes what is in
	 * flight (virtio-blk), which moves used indices and may raise
	 * interrupts; the transport's state is taken after that. */
	if (vp->ops->save)
		r = vp->ops->save(vp, &own);
	if (r) {
		state_buf_free(&own);
		return r;
	}
	memset(&s, 0, sizeof(s));
	s.version = VIRTIO_STATE_VERSION;
	s.status = vp->status;
	s.config_generation = vp->config_generation;
	s.isr = vp->isr;
	s.dfselect = vp->dfselect;
	s.gfselect = vp->gfselect;
	s.driver_features = vp->driver_features;
	s.config_vector = vp->config_vector;
	s.queue_select = vp->queue_select;
	for (i = 0; i < VIRTIO_MAX_QUEUES; i++) {
		const struct virtio_queue *q = &vp->queues[i];

		s.q[i].desc = q->vq.desc;
		s.q[i].avail = q->vq.avail;
		s.q[i].used = q->vq.used;
		s.q[i].size = q->vq.size;
		s.q[i].msix_vector = q->msix_vector;
		s.q[i].last_avail = q->vq.last_avail;
		s.q[i].used_idx = q->vq.used_idx;
		s.q[i].ready = q->vq.ready;
	}
	r = pci_func_save(&vp->f, out);
	if (!r)
		r = msix_save(&vp->msix, out);
	if (!r)
		r = state_put(out, &s, sizeof(s));
	if (!r && own.len)
		r = state_put(out, own.data, own.len);
	state_buf_free(&own);
	return r;
}

static int vp_load(struct device *dev, const uint8_t *data, size_t len)
{
	struct virtio_pci *vp = (struct virtio_pci *)dev;
	struct vp_state s;
	unsigned int i;
	int n;

	if (len < PCI_STATE_LEN || pci_func_load(&vp->f, data, PCI_STATE_LEN))
		return -EINVAL;
	data += PCI_STATE_LEN;
	len -= PCI_STATE_LEN;
	n = msix_load(&vp->msix, data, len);
	if (n < 0 || len - n < sizeof(s))
		return -EINVAL;
	memcpy(&s, data + n, sizeof(s));
	data += n + sizeof(s);
	len -= n + sizeof(s);
	if (s.version != VIRTIO_STATE_VERSION)
		return -EINVAL;
	vp->status = s.status;
	vp->config_generation = s.config_generation;
	vp->isr = s.isr;
	vp->dfselect = s.dfselect;
	vp->gfselect = s.gfselect;
	vp->driver_features = s.driver_features & offered(vp);
	vp->config_vector = vector_or_none(vp, s.config_vector);
	vp->queue_select = s.queue_select;
	for (i = 0; i < VIRTIO_MAX_QUEUES; i++) {
		struct virtio_queue *q = &vp->queues[i];

		q->vq.desc = s.q[i].desc;
		q->vq.avail = s.q[i].avail;
		q->vq.used = s.q[i].used;
		q->vq.size = s.q[i].size;
		q->vq.last_avail = s.q[i].last_avail;
		q->vq.used_idx = s.q[i].used_idx;
		q->vq.indirect = vp->driver_features & 1ULL << VIRTIO_F_INDIRECT_DESC;
		q->msix_vector = vector_or_none(vp, s.q[i].msix_vector);
		/* A stream is as untrusted as the guest that produced it. */
		q->vq.ready = s.q[i].ready && i < vp->ops->nqueues &&
			      !virtq_check(&q->vq, vp->mem, vp->ops->queue_size);
		if (s.q[i].ready && !q->vq.ready)
			return -EINVAL;
	}
	update_ioeventfds(vp);
	/* The saving kvmm may have had kicks pending that it never ran (a
	 * paused VM's are dropped): every ready queue is looked at once the
	 * loop runs, after the guest's memory is in place. */
	kick_ready_queues(vp);
	if (vp->ops->load)
		return vp->ops->load(vp, data, len);
	return len ? -EINVAL : 0;
}

static void vp_destroy(struct device *dev)
{
	struct virtio_pci *vp = (struct virtio_pci *)dev;
	unsigned int i;

	if (vp->ops->destroy)
		vp->ops->destroy(vp);
	/* A hot-removed device leaves nothing in KVM or the route table. */
	for (i = 0; vp->msix.f && i < MSIX_MAX_VECTORS; i++)
		if (vp->msix.route[i] >= 0)
			irq_msi_free(vp->f.dev.vm, vp->msix.route[i]);
	for (i = 0; i < vp->ops->nqueues; i++) {
		if (vp->queues[i].kick_fd < 0)
			continue;
		if (vp->queues[i].ioeventfd_addr)
			kvm_ioeventfd(vp->f.dev.vm, vp->queues[i].ioeventfd_addr, 2,
				      vp->queues[i].kick_fd, false);
		loop_del(vp->f.dev.vm->loop, vp->queues[i].kick_fd);
		close(vp->queues[i].kick_fd);
	}
	free(vp);
}

static const struct device_ops virtio_pci_ops = {
	.name = "virtio-pci",
	.reset = vp_reset,
	.save = vp_save,
	.load = vp_load,
	.destroy = vp_destroy,
};

struct virtio_pci *virtio_pci_of(struct device *dev)
{
	return dev->ops == &virtio_pci_ops ? (struct virtio_pci *)dev : NULL;
}

/* Returns the capability's offset (0 if there was no room, which the
 * fixed layout rules out). */
static unsigned int add_cap(struct pci_func *f, uint8_t type, uint32_t off,
			    uint32_t len, int extra)
{
	int cap = pci_func_add_cap(f, PCI_CAP_ID_VNDR, 16 + extra);

	if (cap < 0)
		return 0;
	f->cfg[cap + 2] = 16 + extra;	/* cap_len */
	f->cfg[cap + 3] = type;
	f->cfg[cap + 4] = BAR;
	pci_put(f->cfg + cap + 8, off, 4);
	pci_put(f->cfg + cap + 12, len, 4);
	if (extra && type == CAP_NOTIFY)
		pci_put(f->cfg + cap + 16, NOTIFY_MULT, 4);
	return cap;
}

struct virtio_pci *virtio_pci_create(struct vm *vm, const struct virtio_dev_ops *ops,
				     void *priv, unsigned int slot, uint64_t bar_addr)
{
	struct virtio_pci *vp = calloc(1, sizeof(*vp));
	unsigned int i;

	if (!vp)
		return NULL;
	if (ops->nqueues > VIRTIO_MAX_QUEUES || ops->config_len > DEVICE_MAX) {
		free(vp);
		return NULL;
	}
	vp->ops = ops;
	vp->priv = priv;
	vp->mem = &vm->mem;
	vp->sink = (struct msix_sink){ msi_alloc, msi_route, msi_fire, vm };
	for (i = 0; i < VIRTIO_MAX_QUEUES; i++) {
		vp->queues[i].kick_fd = -1;
		vp->queues[i].vp = vp;
	}
	pci_func_init(&vp->f, &virtio_pci_ops, &virtio_pci_func_ops, vm,
		      VIRTIO_PCI_VENDOR, VIRTIO_PCI_DEVICE_BASE + ops->type,
		      (uint32_t)ops->pci_class << 8, VIRTIO_PCI_REVISION);
	pci_put(vp->f.cfg + PCI_SUBSYS_VENDOR_ID, VIRTIO_PCI_VENDOR, 2);
	pci_put(vp->f.cfg + PCI_SUBSYS_ID, 0x40, 2);
	if (pci_func_add_bar(&vp->f, BAR, VIRTIO_PCI_BAR_SIZE, false, bar_addr))
		goto fail;
	add_cap(&vp->f, CAP_COMMON, COMMON_OFF, COMMON_LEN, 0);
	add_cap(&vp->f, CAP_NOTIFY, NOTIFY_OFF, NOTIFY_MULT * ops->nqueues, 4);
	add_cap(&vp->f, CAP_ISR, ISR_OFF, 1, 0);
	if (ops->config_len)
		add_cap(&vp->f, CAP_DEVICE, DEVICE_OFF, ops->config_len, 0);
	vp->cfg_cap = add_cap(&vp->f, CAP_PCI_CFG, 0, 0, 4);
	if (vp->cfg_cap) {
		/* bar, offset, length and data are the driver's to write */
		vp->f.wmask[vp->cfg_cap + 4] = 0xff;
		memset(vp->f.wmask + vp->cfg_cap + 8, 0xff, 8);
		memset(vp->f.wmask + vp->cfg_cap + PCI_CFG_DATA, 0xff, 4);
	}
	/* One vector for configuration changes, one per queue. */
	if (msix_init(&vp->msix, &vp->f, &vp->sink, ops->nqueues + 1, BAR,
		      MSIX_TABLE_OFF, MSIX_PBA_OFF))
		goto fail;
	for (i = 0; i < ops->nqueues; i++) {
		vp->queues[i].kick_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (vp->queues[i].kick_fd < 0 ||
		    loop_add(vm->loop, vp->queues[i].kick_fd, EPOLLIN,
			     queue_kicked, &vp->queues[i])) {
			if (vp->queues[i].kick_fd >= 0)
				close(vp->queues[i].kick_fd);
			vp->queues[i].kick_fd = -1;
			goto fail;
		}
	}
	virtio_reset(vp);
	if (pci_bus_add(vm->pci, &vp->f, slot))
		goto fail;
	return vp;
fail:
	pr_err("cannot create the %s device", ops->name);
	vp->ops = ops;
	vp_destroy(&vp->f.dev);
	return NULL;
}
