/* virtio-balloon (virtio 1.2, 5.5): the host asks the guest for pages
 * through num_pages; the guest hands PFNs over on the inflate queue (kvmm
 * frees the host memory behind them at once) and takes them back on the
 * deflate queue (they fault back in, zeroed, when touched).  Also the
 * statistics queue (the device keeps the guest's buffer and gives it back
 * every stats_period seconds, as QEMU does, to ask for fresh numbers) and
 * free page reporting (ranges the guest reports free are freed on the host
 * at once).  DEFLATE_ON_OOM is only offered: what it changes is the
 * guest's behaviour.
 *
 * Queues: inflateq 0, deflateq 1, then statsq if STATS_VQ was negotiated,
 * then reporting_vq if PAGE_REPORTING was (FREE_PAGE_HINT, whose queue
 * would come between, is not offered).
 *
 * Accounting: one bit per guest page, set while the page is inflated, so
 * a PFN given twice counts once and a deflate of a page never given
 * counts nothing.  The bitmap is a lazy mapping: a 1 TiB guest reserves
 * 32 MiB of address space and pays only for the parts it touches. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <sys/epoll.h>

#include "config.h"
#include "log.h"
#include "loop.h"
#include "util.h"
#include "virtio.h"
#include "virtio/balloon.h"
#include "vm.h"

#define VIRTIO_BALLOON_F_MUST_TELL_HOST	0
#define VIRTIO_BALLOON_F_STATS_VQ	1
#define VIRTIO_BALLOON_F_DEFLATE_ON_OOM	2
#define VIRTIO_BALLOON_F_FREE_PAGE_HINT	3
#define VIRTIO_BALLOON_F_PAGE_POISON	4
#define VIRTIO_BALLOON_F_REPORTING	5

#define BALLOON_QUEUE_SIZE	128
#define BALLOON_PAGE_SHIFT	12
/* GUEST: PFNs one inflate/deflate chain may carry (Linux sends 256), and
 * chains one pass may take before it lets other work run. */
#define BALLOON_MAX_PFNS	4096
#define BALLOON_BUDGET		64
/* A statistic: le16 tag, le64 value, packed (5.5.6.3). */
#define BALLOON_STAT_SIZE	10
/* GUEST: a stats buffer may carry up to this many (Linux: 10 to 16). */
#define BALLOON_MAX_STATS	64
#define BALLOON_STATE_VERSION	1

enum { Q_INFLATE, Q_DEFLATE, Q_STATS, Q_REPORT, Q_NONE };
/* statsq, when negotiated, is always the third queue. */
#define STATSQ	2

static uint32_t get_le32(const uint8_t *p)
{
	return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put_le32(uint8_t *p, uint32_t v)
{
	p[0] = v;
	p[1] = v >> 8;
	p[2] = v >> 16;
	p[3] = v >> 24;
}

const char *const balloon_stat_names[BALLOON_S_NR] = {
	"swap_in", "swap_out", "major_faults", "minor_faults", "free_memory",
	"total_memory", "available_memory", "disk_caches", "hugetlb_allocations",
	"hugetlb_failures",
};

struct balloon {
	struct virtio_pci *vp;
	uint32_t num_pages, actual;
	uint64_t *bitmap;		/* bit per page of guest RAM: inflated */
	size_t bitmap_len;
	uint64_t inflated, reported, bad_pfns, bad_stats;
	bool stats_held;		/* the guest's stats buffer, kept */
	uint16_t stats_head;
	unsigned int stats_period;
	int timer_fd;			/* every stats_period: give the buffer back */
	int change_fd;			/* eventfd: actual changed (vCPU -> main) */
	bool has_stats;
	uint64_t stats_valid, stats[BALLOON_S_NR], last_update;
	balloon_change_fn listener;
	void *listener_opaque;
};

static struct balloon *to_balloon(struct virtio_pci *vp)
{
	return vp->priv;
}

static bool negotiated(const struct virtio_pci *vp, unsigned int bit)
{
	return vp->driver_features & (1ULL << bit);
}

/* What queue q is for, given the features the driver took. */
static int queue_role(const struct virtio_pci *vp, unsigned int q)
{
	unsigned int next = 2;

	if (q < 2)
		return q;
	if (negotiated(vp, VIRTIO_BALLOON_F_STATS_VQ) && q == next++)
		return Q_STATS;
	if (negotiated(vp, VIRTIO_BALLOON_F_REPORTING) && q == next)
		return Q_REPORT;
	return Q_NONE;
}

static bool page_test_and_set(struct balloon *b, uint64_t page, bool set)
{
	uint64_t mask = 1ULL << (page % 64), *w = &b->bitmap[page / 64];
	bool was = *w & mask;

	if (set)
		*w |= mask;
	else
		*w &= ~mask;
	return was;
}

/* Frees the host pages of [start, end) of guest RAM (host addresses). */
static void release(struct virtio_pci *vp, uint8_t *start, uint8_t *end)
{
	int r;

	if (end <= start)
		return;
	r = guest_mem_release(vp->mem, start, end - start);
	if (r)
		pr_warn("%s: cannot release %zu bytes of guest RAM: %s", vp->ops->name,
			(size_t)(end - start), strerror(-r));
}

/* One inflate or deflate chain: le32 PFNs in its readable buffers. */
static int balloon_pfns(struct virtio_pci *vp, const struct virtq_elem *e, bool inflate)
{
	struct balloon *b = to_balloon(vp);
	uint8_t *run = NULL, *run_end = NULL;
	uint8_t part[4];
	unsigned int have = 0, i;

	/* GUEST: whole PFNs only, and a bounded number of them. */
	if (e->out_len % 4 || e->out_len / 4 > BALLOON_MAX_PFNS) {
		pr_warn("%s: %s chain of %llu bytes refused (whole le32 PFNs, at most %u)",
			vp->ops->name, inflate ? "inflate" : "deflate",
			(unsigned long long)e->out_len, BALLOON_MAX_PFNS);
		return -EINVAL;
	}
	for (i = 0; i < e->n_out; i++) {
		const uint8_t *p = e->iov[i].iov_base;
		size_t k;

		for (k = 0; k < e->iov[i].iov_len; k++) {
			uint32_t pfn;
			uint8_t *hva;
			uint64_t page;

			/* A PFN may straddle two buffers. */
			part[have++] = p[k];
			if (have < 4)
				continue;
			have = 0;
			pfn = get_le32(part);
			/* GUEST: the page must be guest RAM, all of it: not
			 * the PCI hole, not past the end.  Anything else is
			 * skipped and counted; host memory outside the guest
			 * is never touched. */
			hva = guest_mem_ptr(vp->mem, (uint64_t)pfn << BALLOON_PAGE_SHIFT,
					    BALLOON_PAGE_SIZE);
			if (!hva) {
				if (!b->bad_pfns++)
					pr_warn("%s: guest gave PFN 0x%x outside its RAM; ignored",
						vp->ops->name, pfn);
				continue;
			}
			page = (hva - vp->mem->base) >> BALLOON_PAGE_SHIFT;
			if (inflate) {
				if (!page_test_and_set(b, page, true))
					b->inflated++;
				/* One madvise per run of adjacent pages,
				 * given in either order (Linux and the test
				 * guest hand them out top down). */
				if (hva == run_end) {
					run_end += BALLOON_PAGE_SIZE;
				} else if (run && hva + BALLOON_PAGE_SIZE == run) {
					run = hva;
				} else {
					release(vp, run, run_end);
					run = hva;
					run_end = hva + BALLOON_PAGE_SIZE;
				}
			} else if (page_test_and_set(b, page, false)) {
				/* Nothing to do for the memory: the page
				 * faults back in when the guest touches it. */
				b->inflated--;
			}
		}
	}
	release(vp, run, run_end);
	return 0;
}

static void stats_return(struct virtio_pci *vp)
{
	struct balloon *b = to_balloon(vp);

	if (!b->stats_held)
		return;
	b->stats_held = false;
	if (!virtio_push(vp, STATSQ, b->stats_head, 0))
		virtio_queue_interrupt(vp, STATSQ);
}

static void balloon_stats(struct virtio_pci *vp, const struct virtq_elem *e)
{
	struct balloon *b = to_balloon(vp);
	uint8_t buf[BALLOON_MAX_STATS * BALLOON_STAT_SIZE];
	uint64_t len = 0, off;
	unsigned int i;

	/* A second buffer while one is held: the first goes back. */
	stats_return(vp);
	b->stats_held = true;
	b->stats_head = e->head;
	/* GUEST: a whole number of statistics, at least one and at most
	 * BALLOON_MAX_STATS; anything else is refused (counted, the numbers
	 * kept as they were) and the buffer asked for again next period. */
	if (!e->out_len || e->out_len % BALLOON_STAT_SIZE || e->out_len > sizeof(buf)) {
		if (!b->bad_stats++)
			pr_warn("%s: statistics buffer of %llu bytes refused (a multiple of %u, at most %zu)",
				vp->ops->name, (unsigned long long)e->out_len, BALLOON_STAT_SIZE,
				sizeof(buf));
		return;
	}
	for (i = 0; i < e->n_out; i++) {
		memcpy(buf + len, e->iov[i].iov_base, e->iov[i].iov_len);
		len += e->iov[i].iov_len;
	}
	for (off = 0; off < len; off += BALLOON_STAT_SIZE) {
		uint16_t tag = buf[off] | buf[off + 1] << 8;
		uint64_t v = 0;
		int k;

		for (k = 7; k >= 0; k--)
			v = v << 8 | buf[off + 2 + k];
		/* Tags this device does not know are skipped (5.5.6.3). */
		if (tag < BALLOON_S_NR) {
			b->stats[tag] = v;
			b->stats_valid |= 1ULL << tag;
		}
	}
	b->has_stats = true;
	b->last_update = time(NULL);
}

/* Free page reporting: every buffer of the chain is a free range. */
static void balloon_report(struct virtio_pci *vp, const struct virtq_elem *e)
{
	struct balloon *b = to_balloon(vp);
	unsigned int i;

	/* GUEST: the ranges are guest RAM (virtio_pop mapped each one). */
	for (i = 0; i < e->n_out + e->n_in; i++) {
		release(vp, e->iov[i].iov_base, (uint8_t *)e->iov[i].iov_base + e->iov[i].iov_len);
		b->reported += e->iov[i].iov_len;
	}
}

static void balloon_queue_notify(struct virtio_pci *vp, unsigned int q)
{
	static __thread struct virtq_elem e;
	int role = queue_role(vp, q), budget = BALLOON_BUDGET;
	int r;

	/* GUEST: a queue the negotiated features do not give a role. */
	if (role == Q_NONE)
		return;
	while (budget-- && (r = virtio_pop(vp, q, &e)) > 0) {
		if (role == Q_STATS) {
			balloon_stats(vp, &e);
			continue;
		}
		if (role == Q_REPORT) {
			balloon_report(vp, &e);
		} else if (balloon_pfns(vp, &e, role == Q_INFLATE)) {
			virtio_needs_reset(vp);
			return;
		}
		if (virtio_push(vp, q, e.head, 0))
			return;
		virtio_queue_interrupt(vp, q);
	}
	if (budget < 0)
		virtio_queue_kick(vp, q);
}

static void balloon_config_read(struct virtio_pci *vp, unsigned int off,
				uint8_t *data, unsigned int len)
{
	struct balloon *b = to_balloon(vp);
	uint8_t c[8];

	put_le32(c, b->num_pages);
	put_le32(c + 4, b->actual);
	memcpy(data, c + off, len);
}

/* GUEST: only `actual` is the driver's to write; num_pages is ours. */
static void balloon_config_write(struct virtio_pci *vp, unsigned int off,
				 const uint8_t *data, unsigned int len)
{
	struct balloon *b = to_balloon(vp);
	uint64_t one = 1;
	uint8_t c[8];
	uint32_t old = b->actual;

	put_le32(c + 4, b->actual);
	memcpy(c + off, data, len);
	b->actual = get_le32(c + 4);
	/* Events go out from the main thread; this may be a vCPU's. */
	if (b->actual != old && write(b->change_fd, &one, sizeof(one)) < 0)
		pr_debug("%s: change eventfd: %s", vp->ops->name, strerror(errno));
}

static void on_change(void *opaque, uint32_t events)
{
	struct virtio_pci *vp = opaque;
	struct balloon *b = to_balloon(vp);
	uint64_t n, actual;
	balloon_change_fn fn;
	void *fn_opaque;

	if (read(b->change_fd, &n, sizeof(n)) < 0)
		return;
	pthread_mutex_lock(&vp->f.dev.lock);
	actual = vp->mem->size - MIN((uint64_t)b->actual * BALLOON_PAGE_SIZE, vp->mem->size);
	fn = b->listener;
	fn_opaque = b->listener_opaque;
	pthread_mutex_unlock(&vp->f.dev.lock);
	pr_debug("%s: the guest now has %llu MiB", vp->ops->name,
		 (unsigned long long)(actual >> 20));
	if (fn)
		fn(fn_opaque, actual);
}

static void on_timer(void *opaque, uint32_t events)
{
	struct virtio_pci *vp = opaque;
	uint64_t n;

	if (read(to_balloon(vp)->timer_fd, &n, sizeof(n)) < 0)
		return;
	pthread_mutex_lock(&vp->f.dev.lock);
	if (virtio_queue_live(vp, STATSQ))
		stats_return(vp);
	pthread_mutex_unlock(&vp->f.dev.lock);
}

static int arm_timer(struct balloon *b)
{
	struct itimerspec its = { 0 };

	its.it_value.tv_sec = its.it_interval.tv_sec = b->stats_period;
	return timerfd_settime(b->timer_fd, 0, &its, NULL) ? -errno : 0;
}

/* The guest forgot everything: no pages given, no buffer held.  The
 * target is the host's and stays; the RAM itself was discarded by the
 * VM's reset. */
static void balloon_reset(struct virtio_pci *vp)
{
	struct balloon *b = to_balloon(vp);
	uint64_t one = 1;

	b->stats_held = false;
	if (b->inflated)
		madvise(b->bitmap, b->bitmap_len, MADV_DONTNEED);
	b->inflated = 0;
	if (b->actual) {
		b->actual = 0;
		if (write(b->change_fd, &one, sizeof(one)) < 0)
			pr_debug("%s: change eventfd: %s", vp->ops->name, strerror(errno));
	}
}

struct balloon_state {
	uint8_t version;
	uint8_t stats_held;
	uint8_t pad[2];
	uint32_t num_pages, actual, stats_period;
};

static int balloon_save(struct virtio_pci *vp, struct state_buf *out)
{
	struct balloon *b = to_balloon(vp);
	struct balloon_state s = {
		.version = BALLOON_STATE_VERSION, .stats_held = b->stats_held,
		.num_pages = b->num_pages, .actual = b->actual, .stats_period = b->stats_period,
	};

	return state_put(out, &s, sizeof(s));
}

/* The inflated bitmap is not saved: the pages read back as zeros in the
 * saved RAM like any other, and the count restarts from the guest's own
 * `actual`.  A held stats buffer goes back on the ring, as the console's
 * receive buffer does. */
static int balloon_load(struct virtio_pci *vp, const uint8_t *data, size_t len)
{
	struct balloon *b = to_balloon(vp);
	struct balloon_state s;

	if (len != sizeof(s))
		return -EINVAL;
	memcpy(&s, data, sizeof(s));
	/* GUEST: the stream is as untrusted as the guest that made it */
	if (s.version != BALLOON_STATE_VERSION || s.stats_held > 1 ||
	    (uint64_t)s.num_pages * BALLOON_PAGE_SIZE > vp->mem->size ||
	    s.stats_period > 24 * 3600)
		return -EINVAL;
	b->num_pages = s.num_pages;
	b->actual = s.actual;
	b->stats_period = s.stats_period;
	b->stats_held = false;
	if (s.stats_held) {
		if (!virtio_queue_ready(vp, STATSQ))
			return -EINVAL;
		virtio_queue_unpop(vp, STATSQ, 1);
	}
	return arm_timer(b);
}

static void balloon_destroy(struct virtio_pci *vp)
{
	struct balloon *b = to_balloon(vp);
	struct vm *vm = vp->f.dev.vm;

	if (!b)
		return;
	if (b->timer_fd >= 0) {
		loop_del(vm->loop, b->timer_fd);
		close(b->timer_fd);
	}
	if (b->change_fd >= 0) {
		loop_del(vm->loop, b->change_fd);
		close(b->change_fd);
	}
	if (b->bitmap)
		munmap(b->bitmap, b->bitmap_len);
	free(b);
	vp->priv = NULL;
}

static const struct virtio_dev_ops balloon_ops = {
	.name = "virtio-balloon",
	.type = 5,			/* memory balloon */
	.pci_class = 0x0500,		/* memory controller: RAM (as QEMU) */
	.nqueues = 4,
	.queue_size = BALLOON_QUEUE_SIZE,
	.features = 1ULL << VIRTIO_BALLOON_F_STATS_VQ,
	.config_len = 8,		/* num_pages, actual */
	.config_read = balloon_config_read,
	.config_write = balloon_config_write,
	.queue_notify = balloon_queue_notify,
	.reset = balloon_reset,
	.save = balloon_save,
	.load = balloon_load,
	.destroy = balloon_destroy,
};

struct device *virtio_balloon_create(struct vm *vm, unsigned int slot, uint64_t bar_addr)
{
	const struct balloon_config *bc = &vm->cfg->balloon;
	struct balloon *b = calloc(1, sizeof(*b));
	struct virtio_pci *vp;

	if (!b)
		return NULL;
	b->timer_fd = b->change_fd = -1;
	b->stats_period = bc->stats_period;
	b->bitmap_len = ALIGN_UP((vm->mem.size / BALLOON_PAGE_SIZE + 63) / 64 * 8, 4096);
	b->bitmap = mmap(NULL, b->bitmap_len, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	b->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	b->change_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	vp = b->bitmap != MAP_FAILED && b->timer_fd >= 0 && b->change_fd >= 0 ?
		virtio_pci_create(vm, &balloon_ops, b, slot, bar_addr) : NULL;
	if (!vp) {
		if (b->bitmap != MAP_FAILED)
			munmap(b->bitmap, b->bitmap_len);
		if (b->timer_fd >= 0)
			close(b->timer_fd);
		if (b->change_fd >= 0)
			close(b->change_fd);
		free(b);
		return NULL;
	}
	b->vp = vp;
	if (bc->deflate_on_oom)
		vp->dev_features |= 1ULL << VIRTIO_BALLOON_F_DEFLATE_ON_OOM;
	if (bc->free_page_reporting)
		vp->dev_features |= 1ULL << VIRTIO_BALLOON_F_REPORTING;
	if (loop_add(vm->loop, b->timer_fd, EPOLLIN, on_timer, vp) ||
	    loop_add(vm->loop, b->change_fd, EPOLLIN, on_change, vp) || arm_timer(b)) {
		vp->f.dev.ops->destroy(&vp->f.dev);
		return NULL;
	}
	return &vp->f.dev;
}

int virtio_balloon_info(struct device *dev, struct virtio_balloon_info *info)
{
	struct virtio_pci *vp = virtio_pci_of(dev);
	struct balloon *b;

	if (!vp || vp->ops != &balloon_ops)
		return -ENODEV;
	b = to_balloon(vp);
	pthread_mutex_lock(&dev->lock);
	*info = (struct virtio_balloon_info){
		.memory = vp->mem->size, .num_pages = b->num_pages, .actual = b->actual,
		.inflated = b->inflated, .reported = b->reported, .bad_pfns = b->bad_pfns,
		.bad_stats = b->bad_stats,
		.deflate_on_oom = vp->dev_features & (1ULL << VIRTIO_BALLOON_F_DEFLATE_ON_OOM),
		.free_page_reporting = vp->dev_features & (1ULL << VIRTIO_BALLOON_F_REPORTING),
		.stats_period = b->stats_period, .has_stats = b->has_stats,
		.stats_valid = b->stats_valid, .last_update = b->last_update,
	};
	memcpy(info->stats, b->stats, sizeof(b->stats));
	pthread_mutex_unlock(&dev->lock);
	return 0;
}

int virtio_balloon_set_target(struct device *dev, uint64_t target)
{
	struct virtio_pci *vp = virtio_pci_of(dev);
	struct balloon *b;

	if (!vp || vp->ops != &balloon_ops)
		return -ENODEV;
	if (target > vp->mem->size)
		return -EINVAL;
	b = to_balloon(vp);
	pthread_mutex_lock(&dev->lock);
	b->num_pages = (vp->mem->size - target) / BALLOON_PAGE_SIZE;
	virtio_config_changed(vp);
	pthread_mutex_unlock(&dev->lock);
	return 0;
}

int virtio_balloon_set_stats_period(struct device *dev, unsigned int seconds)
{
	struct virtio_pci *vp = virtio_pci_of(dev);
	int r;

	if (!vp || vp->ops != &balloon_ops)
		return -ENODEV;
	pthread_mutex_lock(&dev->lock);
	to_balloon(vp)->stats_period = seconds;
	r = arm_timer(to_balloon(vp));
	pthread_mutex_unlock(&dev->lock);
	return r;
}

void virtio_balloon_set_listener(struct device *dev, balloon_change_fn fn, void *opaque)
{
	struct virtio_pci *vp = virtio_pci_of(dev);

	if (!vp || vp->ops != &balloon_ops)
		return;
	pthread_mutex_lock(&dev->lock);
	to_balloon(vp)->listener = fn;
	to_balloon(vp)->listener_opaque = opaque;
	pthread_mutex_unlock(&dev->lock);
}
