// SPDX-License-Identifier: MIT
/*
 * Time: the TSC, calibrated against PIT channel 2 (fallback: CPUID), and
 * the LAPIC timer as a periodic 100 Hz tick that wakes wait loops.
 */
#include "guest.h"
#include "io.h"

#define TICK_MS		10
#define LAPIC_LVT_TIMER	0x320
#define LAPIC_TMICT	0x380
#define LAPIC_TMCCT	0x390
#define LAPIC_TDCR	0x3e0
#define LVT_MASKED	(1 << 16)
#define LVT_PERIODIC	(1 << 17)

#define PIT_HZ		1193182
#define PIT_MS		10

volatile u64 jiffies;
u64 tsc_khz;
static bool ticking;
static const char *tsc_source = "guess";

/*
 * PIT channel 0 counts down at 1.193182 MHz whatever its gate; read it
 * with latch commands (channel 2 would need port 0x61, which not every
 * machine has).  Its IRQ 0 stays masked.  Every access is a VM exit, so
 * the TSC is read right after each sample and the window is 10 ms.
 */
static u16 pit_count(u64 *tsc)
{
	u8 lo, hi;

	outb(0x43, 0x00);	/* latch channel 0 */
	lo = inb(0x40);
	hi = inb(0x40);
	*tsc = rdtsc();
	return lo | (hi << 8);
}

static u64 pit_calibrate(void)
{
	u32 want = PIT_HZ * PIT_MS / 1000, ticks = 0;
	u64 t0, t1;
	u16 c0, c;
	int i;

	outb(0x43, 0x30);	/* channel 0, lo/hi byte, mode 0 */
	outb(0x40, 0xff);
	outb(0x40, 0xff);
	c0 = pit_count(&t0);
	for (i = 0; i < 20000 && ticks < want; i++) {
		c = pit_count(&t1);
		if (i == 0 && c == c0)
			return 0;	/* not counting: no PIT */
		ticks = (u16)(c0 - c);
	}
	if (ticks < want)
		return 0;
	return (t1 - t0) * PIT_HZ / ticks / 1000;
}

static u64 cpuid_tsc_khz(const char **src)
{
	u32 a, b, c, d, max;

	cpuid(0, 0, &max, &b, &c, &d);
	if (max >= 0x15) {
		cpuid(0x15, 0, &a, &b, &c, &d);
		if (a && b && c) {
			*src = "cpuid15";
			return (u64)c * b / a / 1000;
		}
	}
	cpuid(0x40000000, 0, &max, &b, &c, &d);
	if (max >= 0x40000010 && max < 0x40000100) {
		cpuid(0x40000010, 0, &a, &b, &c, &d);
		if (a) {
			*src = "hypervisor";
			return a;
		}
	}
	return 0;
}

static bool plausible(u64 khz)
{
	return khz >= 100000 && khz <= 20000000;
}

u64 now_us(void)
{
	return rdtsc() * 1000 / tsc_khz;
}

void delay_us(u64 us)
{
	u64 end = rdtsc() + us * tsc_khz / 1000;

	while (rdtsc() < end)
		cpu_relax();
}

/*
 * Sleep until the next interrupt (int $0x80 -> sti; hlt at CPL0).  Without
 * a working tick nothing might ever wake us, so then just pause a little.
 */
void wfi(void)
{
	if (!ticking) {
		delay_us(1000);
		return;
	}
	asm volatile("int $0x80" : : "a"((u64)SYS_WAIT) : "memory");
}

void timer_init(void)
{
	u32 per_ms, start;
	u64 t0, j0, ms;

	tsc_khz = pit_calibrate();
	tsc_source = "pit";
	if (!plausible(tsc_khz))
		tsc_khz = cpuid_tsc_khz(&tsc_source);
	if (!plausible(tsc_khz)) {
		tsc_khz = 2000000;
		tsc_source = "guess";
	}

	/* LAPIC timer, divide by 16, counted against the TSC. */
	lapic_write(LAPIC_TDCR, 0x3);
	lapic_write(LAPIC_LVT_TIMER, LVT_MASKED);
	lapic_write(LAPIC_TMICT, 0xffffffff);
	delay_us(10000);
	per_ms = (0xffffffff - lapic_read(LAPIC_TMCCT)) / 10;
	lapic_write(LAPIC_TMICT, 0);
	info("tsc_khz=%lu tsc_source=%s lapic_timer_khz=%u", tsc_khz,
	     tsc_source, per_ms);
	if (!per_ms) {
		fail("timer", "LAPIC timer does not count");
		return;
	}

	lapic_write(LAPIC_LVT_TIMER, VEC_TIMER | LVT_PERIODIC);
	lapic_write(LAPIC_TMICT, per_ms * TICK_MS);

	/* Five ticks should take ~50 ms of TSC time; spin, hlt may not wake. */
	t0 = now_us();
	j0 = jiffies;
	while (jiffies - j0 < 5 && now_us() - t0 < 2000000)
		cpu_relax();
	ms = (now_us() - t0) / 1000;
	start = jiffies - j0;
	ticking = start > 0;
	if (start < 5)
		fail("timer", "%u LAPIC timer interrupts in %lu ms", start, ms);
	else if (ms < 25 || ms > 1000)	/* generous: CI hosts are busy */
		fail("timer", "5 ticks of %d ms took %lu ms", TICK_MS, ms);
	else
		pass("timer", "lapic period_ms=%d 5_ticks_ms=%lu", TICK_MS,
		     ms);
}
