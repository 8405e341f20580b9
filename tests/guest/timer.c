// SPDX-License-Identifier: MIT
/*
 * Time: the TSC, at the frequency the hypervisor reports (CPUID leaf
 * 0x40000010, kvmclock's scale) or the CPU enumerates (CPUID 0x15, 0x16),
 * else calibrated against the PIT; and the LAPIC timer as a periodic
 * 100 Hz tick that wakes wait loops.  Reported frequencies come first:
 * a PIT window measured while the host deschedules the vCPU is wrong
 * (several times over with dozens of guests starting at once).
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
static u64 tsc_base;	/* the TSC at timer_init: now_us() counts from there */
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

#define KVM_CPUID_SIGNATURE	0x40000000
#define KVM_CPUID_FEATURES	0x40000001
#define KVM_FEATURE_CLOCKSOURCE2 (1 << 3)
#define MSR_KVM_SYSTEM_TIME_NEW	0x4b564d01

/* KVM's per-vCPU time info (kvmclock), as the hypervisor writes it. */
struct pvclock_vcpu_time_info {
	u32 version;		/* odd while an update is in progress */
	u32 pad0;
	u64 tsc_timestamp;
	u64 system_time;
	u32 tsc_to_system_mul;
	s8 tsc_shift;
	u8 flags;
	u8 pad[2];
} __packed;

/* Must not cross a page: aligned to its (power-of-2) size. */
static volatile struct pvclock_vcpu_time_info kvmclock __aligned(32);

static void wrmsr(u32 msr, u64 v)
{
	asm volatile("int $0x80" : : "a"((u64)SYS_WRMSR), "D"((u64)msr), "S"(v)
		     : "memory");
}

/*
 * kvmclock converts TSC ticks to ns as ((delta << shift) * mul) >> 32
 * (a right shift for negative shifts), so the TSC runs at
 * 10^6 * 2^32 / mul kHz, shifted the other way.  The MSR is enabled
 * only for this read and then turned off again, so that the hypervisor
 * stops writing into guest memory.
 */
static u64 kvmclock_tsc_khz(void)
{
	u32 a, b, c, d, version = 0, mul = 0;
	s8 shift = 0;
	u64 khz;
	int i;

	cpuid(KVM_CPUID_SIGNATURE, 0, &a, &b, &c, &d);
	if (b != 0x4b4d564b || c != 0x564b4d56 || d != 0x4d)	/* "KVMKVMKVM" */
		return 0;
	if (a && a < KVM_CPUID_FEATURES)
		return 0;
	cpuid(KVM_CPUID_FEATURES, 0, &a, &b, &c, &d);
	if (!(a & KVM_FEATURE_CLOCKSOURCE2))
		return 0;
	wrmsr(MSR_KVM_SYSTEM_TIME_NEW, (u64)(uintptr_t)&kvmclock | 1);
	for (i = 0; i < 100000; i++) {
		version = kvmclock.version;
		asm volatile("" : : : "memory");
		mul = kvmclock.tsc_to_system_mul;
		shift = kvmclock.tsc_shift;
		asm volatile("" : : : "memory");
		if (version && !(version & 1) && kvmclock.version == version)
			break;
		mul = 0;
		cpu_relax();
	}
	wrmsr(MSR_KVM_SYSTEM_TIME_NEW, 0);
	/* GUEST: the hypervisor's numbers; plausible() judges the result. */
	if (!mul || shift < -31 || shift > 31)
		return 0;
	khz = (1000000ULL << 32) / mul;
	return shift < 0 ? khz << -shift : khz >> shift;
}

/* What CPUID tells: the hypervisor's leaf, then the CPU's own. */
static u64 cpuid_tsc_khz(const char **src)
{
	u32 a, b, c, d, max;

	cpuid(0x40000000, 0, &max, &b, &c, &d);
	if (max >= 0x40000010 && max < 0x40000100) {
		cpuid(0x40000010, 0, &a, &b, &c, &d);
		if (a) {
			*src = "hypervisor";
			return a;
		}
	}
	cpuid(0, 0, &max, &b, &c, &d);
	if (max >= 0x15) {
		cpuid(0x15, 0, &a, &b, &c, &d);
		if (a && b && c) {
			*src = "cpuid15";
			return (u64)c * b / a / 1000;
		}
	}
	if (max >= 0x16) {
		cpuid(0x16, 0, &a, &b, &c, &d);
		if (a & 0xffff) {
			*src = "cpuid16";	/* base MHz: the TSC's on Intel */
			return (u64)(a & 0xffff) * 1000;
		}
	}
	return 0;
}

static bool plausible(u64 khz)
{
	return khz >= 100000 && khz <= 20000000;
}

/*
 * From tsc_base, not from 0: a guest's TSC may count from the host's boot
 * (KVM-PVM does not offset it), and TSC * 1000 overflows 64 bits after
 * ~80 days at 2.6 GHz.
 */
u64 now_us(void)
{
	return (rdtsc() - tsc_base) * 1000 / tsc_khz;
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

	tsc_base = rdtsc();
	tsc_khz = kvmclock_tsc_khz();
	tsc_source = "kvmclock";
	if (!plausible(tsc_khz))
		tsc_khz = cpuid_tsc_khz(&tsc_source);
	if (!plausible(tsc_khz)) {
		tsc_khz = pit_calibrate();
		tsc_source = "pit";
	}
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
