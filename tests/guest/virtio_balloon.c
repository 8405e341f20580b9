// SPDX-License-Identifier: MIT
/*
 * virtio-balloon (virtio spec 5.5): inflateq, deflateq, statsq and
 * reporting_vq.  The balloon's pages come from a pool of RAM the guest
 * does not otherwise use (from 16 MiB, past the image and initrd, up to
 * the end of that e820 RAM range or 3 GiB); it grows down from the pool's
 * top.  Options (kvmmtest.balloonN.*):
 *   touch=MIB       write MIB at the pool's top and free it (the host sees
 *                   it in its RSS; the balloon takes these pages first)
 *   report=on       then report it free (PAGE_REPORTING)
 *   oom=MIB         once the balloon reached a target, need MIB more pool:
 *                   with DEFLATE_ON_OOM the guest deflates what it needs
 *   malformed=KIND  a hostile request first: pfn-outside, pfn-hole,
 *                   count, stats-size (see README.md)
 * Then it serves: follows num_pages on config changes (inflating or
 * deflating, and writing on the pages it got back to use them), answers
 * the statistics queue, until the power button or kvmmtest.balloon.serve
 * seconds (default 120).
 */
#include "guest.h"
#include "io.h"
#include "virtio.h"

#define F_MUST_TELL_HOST	0
#define F_STATS_VQ		1
#define F_DEFLATE_ON_OOM	2
#define F_PAGE_REPORTING	5

#define CC_STATUS	0x14	/* common configuration: device_status */
#define S_NEEDS_RESET	0x40

#define CFG_NUM_PAGES	0
#define CFG_ACTUAL	4

#define PAGE		4096ULL
#define PFNS_PER_REQ	256	/* as Linux */
#define REPORT_CHUNK	(2ULL << 20)
#define REPORT_PER_REQ	16

#define S_SWAP_IN	0
#define S_SWAP_OUT	1
#define S_MAJFLT	2
#define S_MINFLT	3
#define S_MEMFREE	4
#define S_MEMTOT	5
#define S_AVAIL		6
#define S_CACHES	7
#define NSTATS		8

struct stat_entry {
	u16 tag;
	u64 val;
} __attribute__((packed));

static struct {
	struct virtio_dev *v;
	int statsq, reportq;		/* -1: not negotiated */
	u64 pool_lo, pool_hi;		/* guest-physical, 2 MiB aligned */
	u64 used_lo;			/* [pool_lo, used_lo): the guest's own use */
	u32 actual;			/* pages in the balloon: [pool_hi - actual*PAGE, pool_hi) */
	u32 *pfns;
	struct stat_entry *stats;
	u64 stats_seq;
	bool stats_out;			/* the device holds the buffer */
	u64 deflated_used;		/* pages written on after a deflate */
	u64 touched;			/* bytes at the pool's top written once */
} b;

static u64 pool_pages(void)
{
	return (b.pool_hi - b.pool_lo) / PAGE;
}

static bool find_pool(void)
{
	u64 lo = 16ULL << 20;

	if (initrd_size && initrd_addr + initrd_size > lo)
		lo = initrd_addr + initrd_size;
	lo = (lo + (2ULL << 20) - 1) & ~((2ULL << 20) - 1);
	for (int i = 0; i < e820_count; i++) {
		u64 end = e820[i].base + e820[i].size;

		if (e820[i].type != 1 || e820[i].base > lo || end <= lo)
			continue;
		if (end > (3ULL << 30))
			end = 3ULL << 30;
		b.pool_lo = b.used_lo = lo;
		b.pool_hi = end & ~((2ULL << 20) - 1);
		return b.pool_hi > b.pool_lo;
	}
	return false;
}

/* Fills the statistics from what the guest knows of its memory. */
static void stats_fill(void)
{
	u64 total = mem_usable - (u64)b.actual * PAGE;
	u64 free = (pool_pages() - b.actual) * PAGE - (b.used_lo - b.pool_lo);
	u64 vals[NSTATS] = { 0, 0, 0, ++b.stats_seq, free, total, free, 0 };

	for (int i = 0; i < NSTATS; i++) {
		b.stats[i].tag = i;
		b.stats[i].val = vals[i];
	}
	info("balloon-stats dev=%s seq=%lu free=%lu total=%lu avail=%lu",
	     b.v->name, b.stats_seq, free, total, free);
}

static void stats_send(u32 len)
{
	struct vbuf buf = { b.stats, len, false };

	if (virtq_add(&b.v->vq[b.statsq], &buf, 1) < 0)
		return;
	virtq_kick(b.v, &b.v->vq[b.statsq]);
	b.stats_out = true;
}

/* The device gave the buffer back: it wants fresh numbers. */
static void stats_poll(void)
{
	u32 id, len;

	if (b.statsq < 0 || !virtq_poll(&b.v->vq[b.statsq], &id, &len))
		return;
	stats_fill();
	stats_send(NSTATS * sizeof(struct stat_entry));
}

/* n PFNs from b.pfns on queue q; false if the device failed us. */
static bool send_pfns(int q, u32 n)
{
	struct vbuf buf = { b.pfns, n * 4, false };

	return n == 0 || virtq_transfer(b.v, &b.v->vq[q], &buf, 1, NULL) == 0;
}

static u64 balloon_page(u32 i)
{
	return b.pool_hi - (u64)(i + 1) * PAGE;
}

static void write_actual(void)
{
	mmio_write32(b.v->device + CFG_ACTUAL, b.actual);
}

/* Grows the balloon to want pages, never into the guest's own use. */
static bool inflate(u32 want)
{
	u64 room = (b.pool_hi - b.used_lo) / PAGE;

	if (want > room)
		want = room;
	while (b.actual < want) {
		u32 n = want - b.actual;

		if (n > PFNS_PER_REQ)
			n = PFNS_PER_REQ;
		for (u32 i = 0; i < n; i++)
			b.pfns[i] = balloon_page(b.actual + i) / PAGE;
		if (!send_pfns(0, n))
			return false;
		b.actual += n;
		write_actual();
	}
	return true;
}

/* Shrinks it to want pages: the pages are the guest's again once the
 * device acknowledged (MUST_TELL_HOST or not, we always tell first). */
static bool deflate(u32 want, bool use)
{
	while (b.actual > want) {
		u32 n = b.actual - want;

		if (n > PFNS_PER_REQ)
			n = PFNS_PER_REQ;
		for (u32 i = 0; i < n; i++)
			b.pfns[i] = balloon_page(b.actual - 1 - i) / PAGE;
		if (!send_pfns(1, n))
			return false;
		b.actual -= n;
		write_actual();
		/* Use the pages again: a write and a read back on each. */
		for (u32 i = 0; use && i < n; i++) {
			volatile u64 *p = (volatile u64 *)(b.pfns[i] * PAGE);

			*p = b.pfns[i] ^ 0x5a5a5a5a5a5aULL;
			if (*p != (b.pfns[i] ^ 0x5a5a5a5a5a5aULL)) {
				fail("balloon-deflate", "dev=%s page 0x%x did not keep a write",
				     b.v->name, b.pfns[i]);
				return false;
			}
			b.deflated_used++;
		}
	}
	return true;
}

static void report_state(const char *why, u32 target)
{
	info("balloon dev=%s why=%s actual=%u target=%u pool=%lu used_again=%lu",
	     b.v->name, why, b.actual, target, pool_pages(), b.deflated_used);
}

/* Writes the top of the pool, where the balloon grows, and frees it
 * again: what a guest's page cache does before the host asks for memory. */
static void touch(u64 mib)
{
	u64 bytes = mib << 20;

	if (bytes > b.pool_hi - b.used_lo)
		bytes = b.pool_hi - b.used_lo;
	for (u64 a = b.pool_hi - bytes; a < b.pool_hi; a += PAGE)
		*(volatile u64 *)a = a;
	b.touched = bytes;
	info("balloon-touch dev=%s mib=%lu", b.v->name, bytes >> 20);
}

/* The touched memory is free: tell the device (5.5.6.7), in 2 MiB
 * blocks as Linux reports them. */
static void report_free(void)
{
	u64 lo = b.pool_hi - b.touched, hi = b.pool_hi - (u64)b.actual * PAGE, sent = 0;
	struct vbuf bufs[REPORT_PER_REQ];

	if (b.reportq < 0) {
		info("balloon-report dev=%s not negotiated", b.v->name);
		return;
	}
	while (lo < hi) {
		int n = 0;

		for (; n < REPORT_PER_REQ && lo < hi; n++, lo += REPORT_CHUNK) {
			/* Device-writable, as Linux adds them: the pages are
			 * given over, nothing is read from them. */
			bufs[n] = (struct vbuf){ (void *)lo, REPORT_CHUNK, true };
		}
		if (virtq_transfer(b.v, &b.v->vq[b.reportq], bufs, n, NULL) < 0)
			return;
		sent += (u64)n * REPORT_CHUNK;
	}
	pass("balloon-report", "dev=%s mib=%lu", b.v->name, sent >> 20);
}

/* A request the device must refuse without harm to anything else. */
static void malformed(const char *kind)
{
	struct virtio_dev *v = b.v;
	const char *outcome;
	struct vbuf buf;
	u32 id, len, n = 1;

	if (!strcmp(kind, "pfn-outside")) {
		b.pfns[0] = (mem_top + (64ULL << 30)) / PAGE;
	} else if (!strcmp(kind, "pfn-hole")) {
		b.pfns[0] = 0xd0000000ULL / PAGE;
	} else if (!strcmp(kind, "count")) {
		n = 4097;	/* past the 4096 a chain may carry on kvmm */
		for (u32 i = 0; i < n; i++)
			b.pfns[i] = b.pool_lo / PAGE;
	} else if (!strcmp(kind, "stats-size")) {
		if (b.statsq < 0 || !b.stats_out) {
			fail("balloon-malformed", "dev=%s no stats queue", v->name);
			return;
		}
		/* Once the device gives the buffer back, send 7 bytes. */
		u64 start = now_us();

		while (!virtq_poll(&v->vq[b.statsq], &id, &len) && now_us() - start < 30000000)
			cpu_relax();
		b.stats_out = false;
		stats_fill();
		stats_send(7);
		info("virtio-malformed dev=%s kind=%s outcome=sent", v->name, kind);
		return;
	} else {
		fail("balloon-malformed", "dev=%s unknown kind %s", v->name, kind);
		return;
	}
	buf = (struct vbuf){ b.pfns, n * 4, false };
	if (virtq_add(&v->vq[0], &buf, 1) < 0)
		return;
	virtq_kick(v, &v->vq[0]);
	/* Not virtq_wait: NEEDS_RESET is an expected outcome here, not a
	 * failure to report. */
	outcome = "ignored";
	for (u64 start = now_us(); now_us() - start < 2000000; delay_us(1000)) {
		if (virtq_poll(&v->vq[0], &id, &len)) {
			outcome = "completed";
			break;
		}
		if (mmio_read8(v->common + CC_STATUS) & S_NEEDS_RESET) {
			outcome = "needs-reset";
			v->broken = true;
			break;
		}
	}
	info("virtio-malformed dev=%s kind=%s outcome=%s", v->name, kind, outcome);
}

static bool setup(void)
{
	struct virtio_dev *v = b.v;
	u64 want = 1ULL << F_STATS_VQ | 1ULL << F_DEFLATE_ON_OOM | 1ULL << F_PAGE_REPORTING;
	int nq = 2;

	/* Offered features decide the queues: peek first (5.5.2). */
	if (!virtio_init(v, want, 2, 32))
		return false;
	b.statsq = virtio_has(v, F_STATS_VQ) ? nq++ : -1;
	b.reportq = virtio_has(v, F_PAGE_REPORTING) ? nq++ : -1;
	if (nq > 2) {
		u64 f = v->features;

		virtio_reset(v);
		if (!virtio_init(v, f, nq, 32))
			return false;
	}
	if (!virtio_driver_ok(v))
		return false;
	b.stats_out = false;
	info("balloon dev=%s stats=%d reporting=%d deflate_on_oom=%d pool_mib=%lu",
	     v->name, b.statsq >= 0, b.reportq >= 0, virtio_has(v, F_DEFLATE_ON_OOM),
	     (u64)(pool_pages() * PAGE >> 20));
	if (b.statsq >= 0) {
		stats_fill();
		stats_send(NSTATS * sizeof(struct stat_entry));
	}
	return true;
}

/* The guest needs mib of the pool beyond what it uses: with
 * DEFLATE_ON_OOM it takes pages back from the balloon (5.5.6.1). */
static void oom(u64 mib)
{
	u64 need = mib << 20, free_top = b.pool_hi - (u64)b.actual * PAGE;
	u32 before = b.actual;

	if (b.used_lo + need <= free_top) {
		b.used_lo += need;
		info("balloon-oom dev=%s deflated=0 fits=1", b.v->name);
		return;
	}
	if (!virtio_has(b.v, F_DEFLATE_ON_OOM)) {
		info("balloon-oom dev=%s deflated=0 fits=0 actual=%u", b.v->name, b.actual);
		return;
	}
	u64 over = (b.used_lo + need - free_top) / PAGE;
	if (!deflate(over >= b.actual ? 0 : b.actual - over, true))
		return;
	b.used_lo += need;
	pass("balloon-oom", "dev=%s deflated=%u actual=%u", b.v->name, before - b.actual,
	     b.actual);
}

/* Follows num_pages: read once at start and again on each configuration
 * interrupt (MSI-X entry 0), or every tick without MSI-X.  Sleeps in
 * between (wfi): a completion, a config change, the power button or the
 * tick wakes it. */
static void serve(u64 oom_mib)
{
	struct virtio_dev *v = b.v;
	char opt[16];
	u64 secs = 120, start = now_us();
	u32 target = 0;
	u64 seen = ~0ULL;

	if (cmdline_option("kvmmtest.balloon.serve", opt, sizeof(opt)))
		secs = parse_u64(opt, NULL);
	pm_power_button_enable();
	record("event balloon-ready dev=%s", v->name);
	while (now_us() - start < secs * 1000000 && !pwrbtn_pending && !v->broken) {
		u64 cfg_irqs = v->vec_base >= 0 ? irq_count[v->vec_base] : seen + 1;

		stats_poll();
		if (cfg_irqs != seen) {
			u32 want = virtio_cfg32(v, CFG_NUM_PAGES);
			bool ok;

			seen = cfg_irqs;
			ok = want > b.actual ? inflate(want) : deflate(want, true);
			if (want != target || !ok) {
				target = want;
				report_state(ok ? "target" : "failed", target);
			}
			if (oom_mib && b.actual && b.actual >= target) {
				oom(oom_mib);
				oom_mib = 0;
				report_state("oom", target);
			}
			continue;	/* a change may have come meanwhile */
		}
		wfi();
	}
	report_state("end", target);
	if (pwrbtn_pending)
		record("event power-button");
}

void virtio_balloon_run(struct virtio_dev *v, int index)
{
	char key[40], opt[24];
	u64 oom_mib = 0;

	memset(&b, 0, sizeof(b));
	b.v = v;
	b.statsq = b.reportq = -1;
	if (!find_pool()) {
		fail("balloon", "dev=%s no RAM above 16 MiB for the balloon", v->name);
		return;
	}
	b.pfns = dma_alloc(4 * 4097, 4096);
	b.stats = dma_alloc(NSTATS * sizeof(struct stat_entry), 16);
	if (!b.pfns || !b.stats || !setup())
		return;

	snprintf(key, sizeof(key), "kvmmtest.balloon%d.malformed", index);
	if (cmdline_option(key, opt, sizeof(opt))) {
		malformed(opt);
		if (v->broken) {
			/* The device refused it: a reset makes it usable. */
			virtio_reset(v);
			if (!setup())
				return;
		}
	}
	snprintf(key, sizeof(key), "kvmmtest.balloon%d.touch", index);
	if (cmdline_option(key, opt, sizeof(opt)))
		touch(parse_u64(opt, NULL));
	snprintf(key, sizeof(key), "kvmmtest.balloon%d.report", index);
	if (cmdline_option(key, opt, sizeof(opt)) && !strcmp(opt, "on"))
		report_free();
	snprintf(key, sizeof(key), "kvmmtest.balloon%d.oom", index);
	if (cmdline_option(key, opt, sizeof(opt)))
		oom_mib = parse_u64(opt, NULL);
	serve(oom_mib);
	virtio_report_interrupts(v, true);
}
