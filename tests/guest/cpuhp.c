// SPDX-License-Identifier: MIT
/*
 * ACPI CPU hotplug through QEMU's modern register interface (QEMU's
 * docs/specs/acpi_cpu_hotplug.rst), which kvmm implements too
 * (kvmmtest.cpuhp=SECONDS): GPE 2 of the FADT's GPE0 block says that
 * something changed, the registers at 0xaf00 say which CPU and what.
 * There is no AML interpreter here, so this does by hand what
 * \_GPE._E02 and a CPU's _EJ0 do: find each CPU with an event, start an
 * added one with INIT-SIPI-SIPI (as at boot) and show that it takes
 * interrupts and runs, stop a removed one and write its eject bit.
 */
#include "guest.h"
#include "io.h"

#define CPHP_BASE	0xaf00
#define CPHP_SEL	(CPHP_BASE + 0)	/* write: selector; read: data 2 */
#define CPHP_FLAGS	(CPHP_BASE + 4)
#define CPHP_CMD	(CPHP_BASE + 5)
#define CPHP_DATA	(CPHP_BASE + 8)
#define CPHP_F_ENABLED	(1 << 0)
#define CPHP_F_INSERT	(1 << 1)
#define CPHP_F_REMOVE	(1 << 2)
#define CPHP_F_EJECT	(1 << 3)
#define CPHP_CMD_NEXT	0
#define CPHP_CMD_APIC_ID 3
#define CPHP_GPE	(1 << 2)

#define VEC_CPUHP_IPI	(VEC_COUNT_BASE + VEC_COUNT_NUM - 2)	/* count-only */
#define LAPIC_ICR_LO	0x300
#define LAPIC_ICR_HI	0x310
#define ICR_PENDING	(1 << 12)

volatile bool cpuhp_aps;
/* By guest CPU slot (stacks, TSS): boot APs have 1.. in MADT order, added
 * ones the next unused slots, never reused. */
static volatile u64 ap_wakes[MAX_CPUS];
static volatile bool ap_stop[MAX_CPUS], ap_up[MAX_CPUS];
static volatile u32 ap_apic[MAX_CPUS];
static int next_slot;

/* The slot of the running AP with this APIC ID, or -1. */
static int slot_of(u32 apic)
{
	for (int i = 1; i < MAX_CPUS; i++)
		if (ap_up[i] && ap_apic[i] == apic)
			return i;
	return -1;
}

static u8 gpe_read8(u32 off)
{
	struct gas g = acpi_pm.gpe0;

	g.addr += off;
	return gas_read(&g, 8);
}

static void gpe_write8(u32 off, u8 v)
{
	struct gas g = acpi_pm.gpe0;

	g.addr += off;
	gas_write(&g, 8, v);
}

/* An AP with kvmmtest.cpuhp: halted with interrupts on, counting its
 * wake-ups, until told to stop; then offline for good. */
void cpuhp_ap(u32 cpu)
{
	ap_apic[cpu] = lapic_id();
	barrier();
	ap_up[cpu] = true;
	while (!ap_stop[cpu]) {
		wfi();
		ap_wakes[cpu]++;
	}
	ap_up[cpu] = false;
	asm volatile("lock decl %0" : "+m"(cpus_online));
	asm volatile("int $0x80" : : "a"((u64)SYS_HALT));
	for (;;)
		cpu_relax();
}

static void ipi(u32 apic_id)
{
	for (int i = 0; i < 100000 && (lapic_read(LAPIC_ICR_LO) & ICR_PENDING); i++)
		cpu_relax();
	lapic_write(LAPIC_ICR_HI, apic_id << 24);
	lapic_write(LAPIC_ICR_LO, VEC_CPUHP_IPI);	/* fixed, physical */
}

/* Until cond holds or 1 s passed, an IPI every 10 ms: one that lands
 * before the AP halts wakes nothing. */
#define IPI_UNTIL(apic_id, cond) ({					\
	u64 t0_ = now_us();						\
	while (!(cond) && now_us() - t0_ < 1000000) {			\
		ipi(apic_id);						\
		delay_us(10000);					\
	}								\
	(cond);								\
})

static u32 selected_apic_id(void)
{
	outb(CPHP_CMD, CPHP_CMD_APIC_ID);
	return inl(CPHP_DATA);
}

static bool cpu_added(void)
{
	u32 apic = selected_apic_id();
	u64 wakes, irqs;
	int slot;

	outb(CPHP_FLAGS, CPHP_F_INSERT);
	if (slot_of(apic) >= 0 || apic == lapic_id()) {
		info("cpu-online apic_id=%u already online", apic);
		return false;
	}
	slot = next_slot++;
	if (slot >= MAX_CPUS || apic > 0xff) {
		fail("cpu-online", "apic_id=%u: no CPU slot left (the guest has %d)", apic, MAX_CPUS);
		return false;
	}
	if (!smp_start_ap(slot, apic)) {
		fail("cpu-online", "apic_id=%u did not start within 1 s", apic);
		return false;
	}
	pass("cpu-online", "apic_id=%u online=%u", apic, cpus_online);
	mtrr_report(slot);
	/* It runs: each IPI (vector counted) wakes it, and it counts. */
	wakes = ap_wakes[slot];
	irqs = irq_count[VEC_CPUHP_IPI];
	if (!IPI_UNTIL(apic, ap_wakes[slot] > wakes))
		fail("cpu-work", "apic_id=%u took no IPI within 1 s", apic);
	else
		pass("cpu-work", "apic_id=%u wakes=%lu irqs=%lu", apic, ap_wakes[slot],
		     irq_count[VEC_CPUHP_IPI] - irqs);
	return true;
}

static bool cpu_removed(u32 sel)
{
	u32 apic = selected_apic_id();
	u64 t0;
	int slot;

	outb(CPHP_FLAGS, CPHP_F_REMOVE);
	slot = slot_of(apic);
	if (slot >= 0) {
		ap_stop[slot] = true;
		if (!IPI_UNTIL(apic, !ap_up[slot])) {
			fail("cpu-offline", "apic_id=%u did not stop within 1 s", apic);
			return false;
		}
	}
	info("cpu-eject apic_id=%u", apic);
	outl(CPHP_SEL, sel);
	outb(CPHP_FLAGS, CPHP_F_EJECT);
	/* The VMM takes the CPU away now or a little later. */
	t0 = now_us();
	for (;;) {
		outl(CPHP_SEL, sel);
		if (!(inb(CPHP_FLAGS) & CPHP_F_ENABLED))
			break;
		if (now_us() - t0 > 10000000) {
			fail("cpu-offline", "apic_id=%u still enabled 10 s after the eject", apic);
			return false;
		}
		delay_us(1000);
	}
	pass("cpu-offline", "apic_id=%u online=%u", apic, cpus_online);
	return true;
}

/*
 * kvmmtest.cpuhp.rogue=ID: an eject of CPU ID the host never asked for.
 * kvmm ignores it; QEMU would take away any hot-pluggable CPU, so only
 * kvmm's tests use this.
 */
static void rogue_eject(u32 sel)
{
	u8 before, after;

	outl(CPHP_SEL, sel);
	before = inb(CPHP_FLAGS);
	outb(CPHP_FLAGS, CPHP_F_EJECT);
	/* A VMM that honoured it would be done within this. */
	delay_us(200000);
	outl(CPHP_SEL, sel);
	after = inb(CPHP_FLAGS);
	info("cpuhp rogue-eject sel=%u before=0x%x after=0x%x", sel, before, after);
}

void cpuhp_run(void)
{
	char opt[16];
	u64 secs, want_add = 1, want_rm = 0, deadline;
	u64 added = 0, removed = 0;
	u32 half;

	if (!cmdline_option("kvmmtest.cpuhp", opt, sizeof(opt)))
		return;
	secs = parse_u64(opt, NULL) ?: 60;
	if (cmdline_option("kvmmtest.cpuhp.adds", opt, sizeof(opt)))
		want_add = parse_u64(opt, NULL);
	if (cmdline_option("kvmmtest.cpuhp.removals", opt, sizeof(opt)))
		want_rm = parse_u64(opt, NULL);
	if (!acpi_pm.gpe0.addr || acpi_pm.gpe0_len < 2 || acpi_pm.gpe0.space != 1) {
		fail("cpuhp", "no GPE0 block in I/O space in the FADT");
		return;
	}
	/* QEMU's pc machine starts with its legacy interface there; a
	 * write of 0 to the first dword switches to the modern one.  On
	 * kvmm (modern only) it selects CPU 0. */
	outl(CPHP_SEL, 0);
	/* The interface's own probe: command 0 on CPU 0, data 2 reads 0. */
	outl(CPHP_SEL, 0);
	outb(CPHP_CMD, CPHP_CMD_NEXT);
	if (inl(CPHP_SEL) != 0) {
		fail("cpuhp", "no modern CPU hotplug interface at 0x%x", CPHP_BASE);
		return;
	}
	if (cmdline_option("kvmmtest.cpuhp.rogue", opt, sizeof(opt)))
		rogue_eject(parse_u64(opt, NULL));
	next_slot = cpus_online;	/* past the boot APs' */
	half = acpi_pm.gpe0_len / 2;
	gpe_write8(0, CPHP_GPE);		/* write 1 to clear */
	gpe_write8(half, gpe_read8(half) | CPHP_GPE);
	record("event cpuhp-ready online=%u", cpus_online);
	deadline = now_us() + secs * 1000000;
	while ((added < want_add || removed < want_rm) && now_us() < deadline) {
		if (!(gpe_read8(0) & CPHP_GPE)) {
			delay_us(1000);
			continue;
		}
		/* Cleared before the registers are read: an event after
		 * this sets it again and is not lost. */
		gpe_write8(0, CPHP_GPE);
		/* Bounded: a VMM whose events never clear cannot hang us. */
		for (int n = 0; n < 2 * MAX_CPUS; n++) {
			u8 f;
			u32 sel;

			outl(CPHP_SEL, 0);
			outb(CPHP_CMD, CPHP_CMD_NEXT);
			f = inb(CPHP_FLAGS);
			if (!(f & (CPHP_F_INSERT | CPHP_F_REMOVE)))
				break;
			sel = inl(CPHP_DATA);
			info("cpuhp event sel=%u flags=0x%x", sel, f);
			if (f & CPHP_F_INSERT)
				added += cpu_added();
			else
				removed += cpu_removed(sel);
		}
	}
	/* Off again: nothing here serves the SCI for GPEs. */
	gpe_write8(half, gpe_read8(half) & ~CPHP_GPE);
	gpe_write8(0, CPHP_GPE);
	if (added < want_add || removed < want_rm)
		fail("cpuhp", "added=%lu removed=%lu of %lu and %lu within %lu s", added, removed,
		     want_add, want_rm, secs);
	else
		pass("cpuhp", "added=%lu removed=%lu online=%u", added, removed, cpus_online);
}
