// SPDX-License-Identifier: MIT
/*
 * virtio 1.x PCI transport, modern interface only (virtio spec 4.1): the
 * vendor capabilities, the status handshake, split virtqueues, MSI-X.
 * Completions are found by polling the used ring; MSI-X interrupts are
 * only counted (isr.S), so a host test can see that delivery works
 * without the guest depending on it.
 */
#include "guest.h"
#include "io.h"
#include "virtio.h"

/* Common configuration structure (4.1.4.3). */
#define CC_DFSELECT	0x00
#define CC_DF		0x04
#define CC_GFSELECT	0x08
#define CC_GF		0x0c
#define CC_MSIX_CONFIG	0x10
#define CC_NUM_QUEUES	0x12
#define CC_STATUS	0x14
#define CC_CFG_GEN	0x15
#define CC_Q_SELECT	0x16
#define CC_Q_SIZE	0x18
#define CC_Q_MSIX	0x1a
#define CC_Q_ENABLE	0x1c
#define CC_Q_NOFF	0x1e
#define CC_Q_DESC	0x20
#define CC_Q_DRIVER	0x28
#define CC_Q_DEVICE	0x30

#define CAP_COMMON	1
#define CAP_NOTIFY	2
#define CAP_ISR		3
#define CAP_DEVICE	4

#define S_ACKNOWLEDGE	0x01
#define S_DRIVER	0x02
#define S_DRIVER_OK	0x04
#define S_FEATURES_OK	0x08
#define S_NEEDS_RESET	0x40
#define S_FAILED	0x80

#define NO_VECTOR	0xffff
#define MSIX_ENABLE	0x8000
#define MSIX_FMASK	0x4000
#define MSI_ADDR	0xfee00000u

#define DMA_POOL	(1024 * 1024)
#define MAX_VIRTIO	16

static u8 dma_pool[DMA_POOL] __aligned(4096);
static size_t dma_used;
static int next_vector;	/* next free count-only vector, from 0 */

/* Identity-mapped RAM: a pointer is its own bus address. */
void *dma_alloc(size_t size, size_t align)
{
	size_t at = (dma_used + align - 1) & ~(align - 1);

	if (at + size > DMA_POOL)
		return NULL;
	dma_used = at + size;
	memset(dma_pool + at, 0, size);
	return dma_pool + at;
}

static u8 cc_read8(struct virtio_dev *v, u32 off)
{
	return mmio_read8(v->common + off);
}

static u16 cc_read16(struct virtio_dev *v, u32 off)
{
	return mmio_read16(v->common + off);
}

static void cc_write8(struct virtio_dev *v, u32 off, u8 x)
{
	mmio_write8(v->common + off, x);
}

static void cc_write16(struct virtio_dev *v, u32 off, u16 x)
{
	mmio_write16(v->common + off, x);
}

static void cc_write32(struct virtio_dev *v, u32 off, u32 x)
{
	mmio_write32(v->common + off, x);
}

/* 64-bit fields as two 32-bit halves, which the spec allows (4.1.3.1). */
static void cc_write64(struct virtio_dev *v, u32 off, u64 x)
{
	mmio_write32(v->common + off, (u32)x);
	mmio_write32(v->common + off + 4, x >> 32);
}

bool virtio_has(const struct virtio_dev *v, int feature)
{
	return v->features & (1ULL << feature);
}

/* Device config: the 64-bit read is retried until config_generation holds. */
u8 virtio_cfg8(struct virtio_dev *v, u32 off)
{
	return off < v->device_len ? mmio_read8(v->device + off) : 0;
}

void virtio_cfg_write8(struct virtio_dev *v, u32 off, u8 val)
{
	if (off < v->device_len)
		mmio_write8(v->device + off, val);
}

u16 virtio_cfg16(struct virtio_dev *v, u32 off)
{
	return off + 2 <= v->device_len ? mmio_read16(v->device + off) : 0;
}

u32 virtio_cfg32(struct virtio_dev *v, u32 off)
{
	return off + 4 <= v->device_len ? mmio_read32(v->device + off) : 0;
}

u64 virtio_cfg64(struct virtio_dev *v, u32 off)
{
	u32 lo, hi;
	u8 gen;

	if (off + 8 > v->device_len)
		return 0;
	do {
		gen = cc_read8(v, CC_CFG_GEN);
		lo = mmio_read32(v->device + off);
		hi = mmio_read32(v->device + off + 4);
	} while (gen != cc_read8(v, CC_CFG_GEN));
	return ((u64)hi << 32) | lo;
}

/* Address of a capability's structure inside its BAR, or 0. */
static u64 cap_addr(struct virtio_dev *v, u8 cap, u32 *len)
{
	u8 bar = pci_read8(v->pci, cap + 4);
	u32 off = pci_read32(v->pci, cap + 8);
	const struct pci_bar *b;

	*len = pci_read32(v->pci, cap + 12);
	if (bar > 5)
		return 0;
	b = &v->pci->bar[bar];
	if (!b->size || b->io || off > b->size || *len > b->size - off)
		return 0;
	return b->addr + off;
}

/* The first usable capability of each type wins (4.1.4). */
static bool find_caps(struct virtio_dev *v)
{
	u32 len;

	for (u8 cap = pci_find_cap(v->pci, PCI_CAP_VENDOR, 0); cap;
	     cap = pci_find_cap(v->pci, PCI_CAP_VENDOR, cap)) {
		u8 type = pci_read8(v->pci, cap + 3);
		u64 a = cap_addr(v, cap, &len);

		if (!a)
			continue;
		if (type == CAP_COMMON && !v->common && len >= 0x38) {
			v->common = a;
		} else if (type == CAP_NOTIFY && !v->notify_base) {
			v->notify_base = a;
			v->notify_mult = pci_read32(v->pci, cap + 16);
		} else if (type == CAP_ISR && !v->isr) {
			v->isr = a;
		} else if (type == CAP_DEVICE && !v->device) {
			v->device = a;
			v->device_len = len;
		}
	}
	return v->common && v->notify_base && v->isr;
}

/* Program the MSI-X table: entry 0 config changes, 1.. the queues. */
static void msix_setup(struct virtio_dev *v, int want)
{
	struct pci_dev *d = v->pci;
	u8 cap = pci_find_cap(d, PCI_CAP_MSIX, 0);
	u32 tbl, apic = lapic_id();
	u16 ctrl;
	const struct pci_bar *b;

	v->vec_base = -1;
	if (!cap)
		return;
	ctrl = pci_read16(d, cap + 2);
	tbl = pci_read32(d, cap + 4);
	b = &d->bar[tbl & 7];
	v->msix_size = (ctrl & 0x7ff) + 1;
	if (!b->size || b->io || (tbl & ~7u) + 16ULL * v->msix_size > b->size)
		return;
	v->msix_table = b->addr + (tbl & ~7u);
	v->nvec = want < v->msix_size ? want : v->msix_size;
	if (next_vector + v->nvec > VEC_COUNT_NUM)
		v->nvec = VEC_COUNT_NUM - next_vector;
	if (v->nvec <= 0)
		return;
	v->vec_base = VEC_COUNT_BASE + next_vector;
	next_vector += v->nvec;

	/* Masked as a whole while the table is written (PCI 3.0, 6.8.2). */
	pci_write16(d, cap + 2, ctrl | MSIX_ENABLE | MSIX_FMASK);
	for (int i = 0; i < v->msix_size; i++) {
		u64 e = v->msix_table + 16 * i;

		if (i >= v->nvec) {
			mmio_write32(e + 12, 1);
			continue;
		}
		mmio_write32(e + 0, MSI_ADDR | apic << 12);
		mmio_write32(e + 4, 0);
		mmio_write32(e + 8, v->vec_base + i);	/* fixed, edge */
		mmio_write32(e + 12, 0);
	}
	pci_write16(d, cap + 2, (ctrl | MSIX_ENABLE) & ~MSIX_FMASK);
	pci_write16(d, PCI_COMMAND,
		    pci_read16(d, PCI_COMMAND) | PCI_CMD_INTX_OFF);
}

static void set_status(struct virtio_dev *v, u8 bits)
{
	cc_write8(v, CC_STATUS, cc_read8(v, CC_STATUS) | bits);
}

static bool setup_queue(struct virtio_dev *v, int i, u16 want)
{
	struct virtq *q = &v->vq[i];
	u16 size, vec;

	cc_write16(v, CC_Q_SELECT, i);
	size = cc_read16(v, CC_Q_SIZE);
	if (!size || (size & (size - 1))) {
		fail("virtio-queue", "dev=%s queue=%d size=%u (need a power of 2)",
		     v->name, i, size);
		return false;
	}
	if (size > want)
		size = want;
	cc_write16(v, CC_Q_SIZE, size);
	q->index = i;
	q->size = size;
	q->desc = dma_alloc(16 * size, 16);
	q->avail = dma_alloc(6 + 2 * size, 2);
	q->used = dma_alloc(6 + 8 * size, 4);
	if (!q->desc || !q->avail || !q->used) {
		fail("virtio-queue", "dev=%s out of DMA memory", v->name);
		return false;
	}
	for (u16 d = 0; d < size; d++)
		q->desc[d].next = d + 1;
	q->free_head = 0;
	q->num_free = size;
	q->vector = -1;
	if (v->vec_base >= 0) {
		vec = v->nvec > 1 ? (1 + i < v->nvec ? 1 + i : v->nvec - 1) : 0;
		cc_write16(v, CC_Q_MSIX, vec);
		if (cc_read16(v, CC_Q_MSIX) == vec)
			q->vector = vec;
		else
			info("virtio dev=%s queue=%d msix refused", v->name, i);
	}
	cc_write64(v, CC_Q_DESC, (u64)q->desc);
	cc_write64(v, CC_Q_DRIVER, (u64)q->avail);
	cc_write64(v, CC_Q_DEVICE, (u64)q->used);
	q->notify = v->notify_base +
		    (u64)cc_read16(v, CC_Q_NOFF) * v->notify_mult;
	cc_write16(v, CC_Q_ENABLE, 1);
	return true;
}

/*
 * 3.1.1 up to, not including, DRIVER_OK: reset, ACKNOWLEDGE, DRIVER,
 * features (VERSION_1 required), FEATURES_OK, MSI-X, queues.
 */
bool virtio_init(struct virtio_dev *v, u64 wanted, int nqueues, u16 qsize)
{
	u64 offered;
	u16 msix;

	if (!find_caps(v)) {
		fail("virtio", "dev=%s missing common/notify/ISR capability",
		     v->name);
		return false;
	}
	cc_write8(v, CC_STATUS, 0);
	for (int i = 0; i < 100000 && cc_read8(v, CC_STATUS); i++)
		cpu_relax();
	set_status(v, S_ACKNOWLEDGE);
	set_status(v, S_DRIVER);

	cc_write32(v, CC_DFSELECT, 0);
	offered = mmio_read32(v->common + CC_DF);
	cc_write32(v, CC_DFSELECT, 1);
	offered |= (u64)mmio_read32(v->common + CC_DF) << 32;
	v->num_queues = cc_read16(v, CC_NUM_QUEUES);
	info("virtio dev=%s bdf=%02x:%02x.%x offered=0x%lx num_queues=%u",
	     v->name, v->pci->bus, v->pci->dev, v->pci->fn, offered,
	     v->num_queues);
	if (!(offered & (1ULL << VIRTIO_F_VERSION_1))) {
		fail("virtio", "dev=%s does not offer VIRTIO_F_VERSION_1", v->name);
		set_status(v, S_FAILED);
		return false;
	}
	v->features = offered & (wanted | 1ULL << VIRTIO_F_VERSION_1);
	cc_write32(v, CC_GFSELECT, 0);
	cc_write32(v, CC_GF, (u32)v->features);
	cc_write32(v, CC_GFSELECT, 1);
	cc_write32(v, CC_GF, v->features >> 32);
	set_status(v, S_FEATURES_OK);
	if (!(cc_read8(v, CC_STATUS) & S_FEATURES_OK)) {
		fail("virtio", "dev=%s refused features 0x%lx", v->name,
		     v->features);
		set_status(v, S_FAILED);
		return false;
	}

	if (nqueues > v->num_queues || nqueues > VIRTIO_MAX_QUEUES) {
		fail("virtio", "dev=%s has %u queues, need %d", v->name,
		     v->num_queues, nqueues);
		set_status(v, S_FAILED);
		return false;
	}
	msix_setup(v, 1 + nqueues);
	if (v->vec_base >= 0) {
		cc_write16(v, CC_MSIX_CONFIG, 0);
		msix = cc_read16(v, CC_MSIX_CONFIG);
		if (msix == NO_VECTOR)
			info("virtio dev=%s config msix refused", v->name);
	}
	for (int i = 0; i < nqueues; i++)
		if (!setup_queue(v, i, qsize)) {
			set_status(v, S_FAILED);
			return false;
		}
	v->nvq = nqueues;
	info("virtio dev=%s features=0x%lx queues=%d queue_size=%u msix_table=%u vectors=%d vector_base=0x%x",
	     v->name, v->features, nqueues, v->vq[0].size, v->msix_size,
	     v->nvec, v->vec_base < 0 ? 0 : v->vec_base);
	return true;
}

bool virtio_driver_ok(struct virtio_dev *v)
{
	set_status(v, S_DRIVER_OK);
	return virtio_check_status(v);
}

/* NEEDS_RESET or FAILED: the device gave up; say so once and stop. */
bool virtio_check_status(struct virtio_dev *v)
{
	u8 s;

	if (v->broken)
		return false;
	s = cc_read8(v, CC_STATUS);
	if (s & (S_NEEDS_RESET | S_FAILED)) {
		fail("virtio-needs-reset", "dev=%s status=0x%02x", v->name, s);
		v->broken = true;
		return false;
	}
	return true;
}

/* Chain n buffers and publish them; returns the head descriptor or -1. */
int virtq_add(struct virtq *q, const struct vbuf *bufs, int n)
{
	u16 head = q->free_head, d = head;

	if (n <= 0 || n > q->num_free)
		return -1;
	for (int i = 0; i < n; i++) {
		q->desc[d].addr = (u64)bufs[i].addr;
		q->desc[d].len = bufs[i].len;
		q->desc[d].flags = (bufs[i].write ? VIRTQ_DESC_F_WRITE : 0) |
				   (i + 1 < n ? VIRTQ_DESC_F_NEXT : 0);
		if (i + 1 < n)
			d = q->desc[d].next;
	}
	q->free_head = q->desc[d].next;
	q->num_free -= n;
	q->avail[2 + q->avail_idx % q->size] = head;
	barrier();	/* x86 keeps stores in order; gcc must too */
	q->avail[1] = ++q->avail_idx;
	return head;
}

void virtq_kick(struct virtio_dev *v, struct virtq *q)
{
	asm volatile("mfence" : : : "memory");
	mmio_write16(q->notify, q->index);
}

/* One used element, if any; its chain goes back on the free list. */
bool virtq_poll(struct virtq *q, u32 *id, u32 *len)
{
	volatile u16 *used_idx = (volatile u16 *)(q->used + 2);
	volatile struct virtq_used_elem *e;
	u16 d, n = 1;

	if (*used_idx == q->last_used)
		return false;
	barrier();
	e = (volatile struct virtq_used_elem *)(q->used + 4) +
	    q->last_used % q->size;
	*id = e->id;
	*len = e->len;
	q->last_used++;
	q->completed++;
	if (*id >= q->size)
		return true;	/* a device bug; the chain is lost */
	for (d = *id; q->desc[d].flags & VIRTQ_DESC_F_NEXT; n++)
		d = q->desc[d].next;
	q->desc[d].next = q->free_head;
	q->free_head = *id;
	q->num_free += n;
	return true;
}

bool virtq_wait(struct virtio_dev *v, struct virtq *q, u32 *id, u32 *len,
		u64 timeout_us)
{
	u64 start = now_us(), check = start;

	while (!virtq_poll(q, id, len)) {
		u64 t = now_us();

		if (t - start > timeout_us)
			return false;
		if (t - check > 10000) {	/* every 10 ms: given up? */
			check = t;
			if (!virtio_check_status(v))
				return false;
		}
		cpu_relax();
	}
	return true;
}

/* Synchronous request: 0 and the used length, or -1 (reported). */
int virtq_transfer(struct virtio_dev *v, struct virtq *q,
		   const struct vbuf *bufs, int n, u32 *len)
{
	u32 id, l;
	int head;

	if (v->broken)
		return -1;
	head = virtq_add(q, bufs, n);
	if (head < 0) {
		fail("virtio", "dev=%s queue=%u full", v->name, q->index);
		return -1;
	}
	virtq_kick(v, q);
	if (!virtq_wait(v, q, &id, &l, 5000000)) {
		if (!v->broken)
			fail("virtio", "dev=%s queue=%u no completion in 5 s",
			     v->name, q->index);
		return -1;
	}
	if (id != (u32)head) {
		fail("virtio", "dev=%s queue=%u used id %u, expected %d",
		     v->name, q->index, id, head);
		return -1;
	}
	if (len)
		*len = l;
	return 0;
}

/*
 * A hostile request (DESIGN.md: a guest's bad descriptors must break its
 * own device, never the VMM): head = an avail entry past the queue,
 * next = a chain link past the queue, loop = a descriptor chained to
 * itself, addr = a buffer far outside RAM.  Returns what the device did:
 * "needs-reset" (what 2.1.2 asks for), "completed" or "ignored".
 */
const char *virtq_malformed(struct virtio_dev *v, struct virtq *q,
			    const char *kind, u8 *status)
{
	u16 d = q->free_head;
	u16 head = d;
	u64 start = now_us();
	volatile u16 *used_idx = (volatile u16 *)(q->used + 2);
	u16 before = *used_idx;

	q->desc[d].addr = (u64)q->desc;	/* harmless if it were used */
	q->desc[d].len = 16;
	q->desc[d].flags = VIRTQ_DESC_F_WRITE;
	if (!strcmp(kind, "head"))
		head = q->size;
	else if (!strcmp(kind, "next")) {
		q->desc[d].flags |= VIRTQ_DESC_F_NEXT;
		q->desc[d].next = q->size;
	} else if (!strcmp(kind, "loop")) {
		q->desc[d].flags |= VIRTQ_DESC_F_NEXT;
		q->desc[d].next = d;
	} else if (!strcmp(kind, "addr")) {
		q->desc[d].addr = 1ULL << 45;
	} else {
		return NULL;
	}
	q->avail[2 + q->avail_idx % q->size] = head;
	barrier();
	q->avail[1] = ++q->avail_idx;
	virtq_kick(v, q);
	while (now_us() - start < 1000000) {
		*status = cc_read8(v, CC_STATUS);
		if (*status & S_NEEDS_RESET)
			return "needs-reset";
		if (*used_idx != before)
			return "completed";
		delay_us(1000);
	}
	return "ignored";
}

/* Back to a fresh device: reset, forget the queues, keep the caps. */
void virtio_reset(struct virtio_dev *v)
{
	cc_write8(v, CC_STATUS, 0);
	for (int i = 0; i < 100000 && cc_read8(v, CC_STATUS); i++)
		cpu_relax();
	memset(v->vq, 0, sizeof(v->vq));
	v->nvq = 0;
	v->broken = false;
	v->features = 0;
}

u64 virtio_interrupts(const struct virtio_dev *v)
{
	u64 n = 0;

	for (int i = 0; v->vec_base >= 0 && i < v->nvec; i++)
		n += irq_count[v->vec_base + i];
	return n;
}

/*
 * After the device completed work: interrupts may trail the used ring
 * (we poll), so allow them 500 ms to show up.
 */
void virtio_report_interrupts(struct virtio_dev *v, bool expected)
{
	u64 done = 0, start = now_us();

	for (int i = 0; i < v->nvq; i++)
		done += v->vq[i].completed;
	if (v->vec_base < 0) {
		info("virtio-msix dev=%s none completions=%lu", v->name, done);
		return;
	}
	while (expected && done && !virtio_interrupts(v) &&
	       now_us() - start < 500000)
		cpu_relax();
	if (!expected || !done)
		info("virtio-msix dev=%s interrupts=%lu completions=%lu",
		     v->name, virtio_interrupts(v), done);
	else if (virtio_interrupts(v))
		pass("virtio-msix", "dev=%s interrupts=%lu completions=%lu",
		     v->name, virtio_interrupts(v), done);
	else
		fail("virtio-msix", "dev=%s interrupts=0 completions=%lu",
		     v->name, done);
}

/* Modern (0x1040 + id) and transitional (0x1000-0x103f, subsystem id). */
static u16 virtio_type(const struct pci_dev *d)
{
	if (d->vendor != 0x1af4)
		return 0;
	if (d->device >= 0x1040 && d->device <= 0x107f)
		return d->device - 0x1040;
	if (d->device >= 0x1000 && d->device <= 0x103f)
		return d->subsys;
	return 0;
}

static const char *type_name(u16 type)
{
	switch (type) {
	case VIRTIO_ID_NET:
		return "net";
	case VIRTIO_ID_BLK:
		return "blk";
	case VIRTIO_ID_CONSOLE:
		return "console";
	case VIRTIO_ID_RNG:
		return "rng";
	case VIRTIO_ID_BALLOON:
		return "balloon";
	}
	return NULL;
}

/* Is `name` in the comma-separated list (or is the list "all")? */
static bool listed(const char *list, const char *name)
{
	size_t n = strlen(name);

	if (!strcmp(list, "all"))
		return true;
	for (const char *p = list; *p;) {
		if (!strncmp(p, name, n) && (p[n] == ',' || !p[n]))
			return true;
		while (*p && *p != ',')
			p++;
		if (*p)
			p++;
	}
	return false;
}

/*
 * kvmmtest.pci=on scans and reports; kvmmtest.virtio=LIST also drives
 * the virtio devices of the listed kinds, in bus order;
 * kvmmtest.pci=reassign moves their memory BARs to addresses of our own.
 */
void virtio_run(void)
{
	static struct virtio_dev devs[MAX_VIRTIO];
	char list[64] = "", opt[16] = "";
	int nd = 0, count[8] = { 0 };

	cmdline_option("kvmmtest.virtio", list, sizeof(list));
	cmdline_option("kvmmtest.pci", opt, sizeof(opt));
	if (!list[0] && strcmp(opt, "on") && strcmp(opt, "reassign"))
		return;
	pci_scan();
	if (!list[0])
		return;
	idt_count_gates_init();
	for (int i = 0; i < pci_count && nd < MAX_VIRTIO; i++) {
		struct pci_dev *d = &pci_devs[i];
		u16 type = virtio_type(d);
		const char *name = type_name(type);
		struct virtio_dev *v;
		int index;

		if (!name || !listed(list, name))
			continue;
		index = count[type]++;
		v = &devs[nd++];
		memset(v, 0, sizeof(*v));
		v->pci = d;
		v->type = type;
		snprintf(v->name, sizeof(v->name), "%s%d", name, index);
		if (!pci_enable(d, !strcmp(opt, "reassign")))
			continue;
		switch (type) {
		case VIRTIO_ID_RNG:
			virtio_rng_run(v, index);
			break;
		case VIRTIO_ID_BLK:
			virtio_blk_run(v, index);
			break;
		case VIRTIO_ID_CONSOLE:
			virtio_console_run(v, index);
			break;
		case VIRTIO_ID_NET:
			virtio_net_run(v, index);
			break;
		case VIRTIO_ID_BALLOON:
			virtio_balloon_run(v, index);
			break;
		}
	}
	info("virtio-summary devices=%d rng=%d blk=%d console=%d net=%d balloon=%d", nd,
	     count[VIRTIO_ID_RNG], count[VIRTIO_ID_BLK],
	     count[VIRTIO_ID_CONSOLE], count[VIRTIO_ID_NET], count[VIRTIO_ID_BALLOON]);
	virtio_net_serve();
}
