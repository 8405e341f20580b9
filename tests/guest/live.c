// SPDX-License-Identifier: MIT
/*
 * kvmmtest.action=live: a guest that keeps going, for save and restore
 * (and migration) tests to watch from outside.  Every tick_ms of its own
 * clock (the TSC) it prints
 *
 *   KVMMTEST live n=<tick> us=<now_us> blk0=0x<crc32 of sectors 0-7> blk_irqs=<n> mem=<ok|bad|none> ap_irqs=<n>
 *
 * so a host test sees the tick count go on by one, the clock never go
 * back, the disk still read (its MSI-X interrupts still counted); a line
 * typed on COM1 (serial interrupt through the IOAPIC) comes back as
 * `KVMMTEST live-echo line="..."`, and the power button powers off.
 * Each tick also sends an IPI to the other CPUs, which wait for it with
 * interrupts on (live_ap): ap_irqs= counts those that arrived.
 * kvmmtest.live.touch=MIB first writes MIB of RAM from 16 MiB up (one
 * word a page), for benchmarks that need memory touched; with
 * kvmmtest.live.check=on each tick reads it back (mem=ok).
 * kvmmtest.live.dirty=on (with check=on) rewrites them all each tick
 * with the tick's generation after checking the last one (gen=), so a
 * live migration always has pages to copy again; and reads the disk
 * every other tick, checking on the tick after that what the read put
 * in memory is still there (blkmem=ok), then zeroing it: a tick later
 * only the device's next write fills it, so a migration that missed
 * that page shows zeros (blkmem=bad).
 */
#include "guest.h"
#include "io.h"

#define LIVE_LINE_MAX	64
#define VEC_LIVE_IPI	(VEC_COUNT_BASE + VEC_COUNT_NUM - 1)	/* count-only */
#define LAPIC_ICR_LO	0x300
#define LAPIC_ICR_HI	0x310
#define ICR_ALL_BUT_SELF (3u << 18)

volatile bool live_aps;

/* An AP in action=live: halted with interrupts on, woken by each IPI
 * (counted by the vector's stub), forever. */
void live_ap(void)
{
	for (;;)
		wfi();
}
#define TOUCH_BASE	(16ULL << 20)

static u64 touched_mib, gen;
static bool check_touched, dirty;

static u64 pattern(u64 a)
{
	return a | 1 | gen << 40;
}

/* "ok" if every touched page still holds what touch() wrote (with
 * kvmmtest.live.check=on: reading them all costs each tick). */
static const char *touched_check(void)
{
	if (!check_touched)
		return "none";
	for (u64 a = TOUCH_BASE; a < TOUCH_BASE + (touched_mib << 20); a += 4096)
		if (*(volatile u64 *)a != pattern(a))
			return "bad";
	if (dirty) {
		gen++;
		for (u64 a = TOUCH_BASE; a < TOUCH_BASE + (touched_mib << 20); a += 4096)
			*(volatile u64 *)a = pattern(a);
	}
	return touched_mib ? "ok" : "none";
}

static void touch(void)
{
	char opt[16];
	u64 mib, a;

	if (!cmdline_option("kvmmtest.live.touch", opt, sizeof(opt)))
		return;
	mib = parse_u64(opt, NULL);
	if (!mib || !e820_is_ram(TOUCH_BASE, mib << 20)) {
		fail("live-touch", "mib=%lu not in RAM from 16 MiB", mib);
		return;
	}
	for (a = TOUCH_BASE; a < TOUCH_BASE + (mib << 20); a += 4096)
		*(volatile u64 *)a = a | 1;
	touched_mib = mib;
	check_touched = cmdline_option("kvmmtest.live.check", opt, sizeof(opt)) &&
			!strcmp(opt, "on");
	dirty = check_touched && cmdline_option("kvmmtest.live.dirty", opt, sizeof(opt)) &&
		!strcmp(opt, "on");
	info("live-touch mib=%lu", mib);
}

void live_run(u64 tick_ms)
{
	u64 next = now_us() + tick_ms * 1000, n = 0, irqs = 0;
	char line[LIVE_LINE_MAX + 1], blk[24];
	const char *blkmem = "none";
	int len = 0, c;
	bool level, low, have_prev = false;
	u32 crc, prev = 0, now;

	touch();
	idt_count_gates_init();
	ioapic_route(isa_irq_to_gsi(4, &level, &low), VEC_COM1, level, low);
	serial_rx_irq_enable();
	for (;;) {
		if (pwrbtn_pending) {
			record("event power-button");
			pm_poweroff();
			return;
		}
		c = serial_getc();
		if (c == '\r' || c == '\n') {
			line[len] = '\0';
			if (len)
				record("live-echo line=\"%s\"", line);
			len = 0;
		} else if (c >= 0x20 && c < 0x7f && len < LIVE_LINE_MAX) {
			line[len++] = c;
		}
		if (c >= 0)
			continue;
		if (now_us() < next) {
			wfi();
			continue;
		}
		/* dirty=on: one tick reads, the next checks the buffer and
		 * zeroes it, a tick before the next read fills it again. */
		if (dirty && have_prev) {
			if (virtio_blk_buf_crc(0, 8 * 512, &now))
				blkmem = now == prev ? "ok" : "bad";
			have_prev = false;
		} else if (virtio_blk_read_crc(0, 0, 8, &crc, &irqs)) {
			snprintf(blk, sizeof(blk), "0x%08x", crc);
			prev = crc;
			have_prev = true;
		} else {
			snprintf(blk, sizeof(blk), "none");
		}
		record("live n=%lu us=%lu blk0=%s blk_irqs=%lu mem=%s ap_irqs=%lu gen=%lu blkmem=%s",
		       ++n, now_us(), blk, irqs, touched_check(), irq_count[VEC_LIVE_IPI], gen,
		       blkmem);
		lapic_write(LAPIC_ICR_HI, 0);
		lapic_write(LAPIC_ICR_LO, ICR_ALL_BUT_SELF | VEC_LIVE_IPI);
		next += tick_ms * 1000;
	}
}
