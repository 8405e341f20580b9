// SPDX-License-Identifier: MIT
/*
 * AP bring-up through the xAPIC: INIT, SIPI, SIPI to every enabled MADT
 * entry but ours, one at a time.  Each AP gets its stacks and TSS from us
 * (prepared here at CPL3), runs the trampoline, enters CPL3 and bumps
 * cpus_online.  Timeouts turn a missing CPU into a "fail", not a hang.
 */
#include "guest.h"
#include "io.h"

#define LAPIC_ICR_LO	0x300
#define LAPIC_ICR_HI	0x310
#define ICR_PENDING	(1 << 12)
#define ICR_INIT_ASSERT	0x0000c500
#define ICR_INIT_DEASSERT 0x00008500
#define ICR_STARTUP	0x00004600

#define AP_TIMEOUT_US	1000000

volatile u32 cpus_online = 1;

/* MSR_MTRRdefType as each CPU found it at boot, read by the CPU itself:
 * the firmware's job, or the VMM's when it boots the kernel directly
 * (Linux turns PAT off when the MTRRs are). */
#define MSR_MTRR_DEF_TYPE	0x2ff
#define CPUID_1_EDX_MTRR	(1u << 12)
#define MTRR_NONE		(~0ul)
static u64 mtrr_def_type[MAX_CPUS];

void mtrr_read(int cpu)
{
	u32 a, b, c, d;
	u64 v = SYS_RDMSR;

	cpuid(1, 0, &a, &b, &c, &d);
	if (!(d & CPUID_1_EDX_MTRR)) {
		mtrr_def_type[cpu] = MTRR_NONE;
		return;
	}
	asm volatile("int $0x80" : "+a"(v) : "D"((u64)MSR_MTRR_DEF_TYPE) : "memory");
	mtrr_def_type[cpu] = v;
}

void mtrr_report(int cpu)
{
	if (mtrr_def_type[cpu] == MTRR_NONE)
		info("mtrr cpu=%d def_type=none", cpu);
	else
		info("mtrr cpu=%d def_type=0x%lx", cpu, mtrr_def_type[cpu]);
}

static void icr_send(u32 apic_id, u32 lo)
{
	for (int i = 0; i < 100000 && (lapic_read(LAPIC_ICR_LO) & ICR_PENDING);
	     i++)
		cpu_relax();
	lapic_write(LAPIC_ICR_HI, apic_id << 24);
	lapic_write(LAPIC_ICR_LO, lo);
}

/* A RAM page below 1 MiB (a SIPI vector) that nothing we use lives in. */
static u64 pick_trampoline_page(void)
{
	for (u64 a = 0x1000; a < 0x9f000; a += 0x1000)
		if (e820_is_ram(a, 0x1000))
			return a;
	return 0;
}

static u64 install_trampoline(void)
{
	u64 page = pick_trampoline_page();
	u8 *p = (u8 *)page;
	u16 limit = GDT_FIXED * 8 + 2 * MAX_CPUS * 8 - 1;
	u32 base = (u32)(u64)gdt, far;

	if (!page)
		return 0;
	memcpy(p, tramp_start, tramp_end - tramp_start);
	memcpy(p + (tramp_gdtr - tramp_start), &limit, 2);
	memcpy(p + (tramp_gdtr - tramp_start) + 2, &base, 4);
	memcpy(&far, p + (tramp_far32 - tramp_start), 4);
	far += page;
	memcpy(p + (tramp_far32 - tramp_start), &far, 4);
	return page;
}

static u64 tramp_page;

static bool start_ap(int cpu, u32 apic_id, u64 page)
{
	u32 before = cpus_online;
	u64 t0;

	tss_setup(cpu, (u64)ap_stacks + (2 * cpu + 1) * AP_STACK_SIZE);
	ap_boot_rsp = (u64)ap_stacks + (2 * cpu + 1) * AP_STACK_SIZE;
	ap_boot_tr = SEL_TSS0 + 16 * cpu;
	ap_boot_cpu = cpu;
	barrier();

	icr_send(apic_id, ICR_INIT_ASSERT);
	icr_send(apic_id, ICR_INIT_DEASSERT);
	delay_us(10000);
	icr_send(apic_id, ICR_STARTUP | (page >> 12));
	delay_us(200);
	if (cpus_online == before)
		icr_send(apic_id, ICR_STARTUP | (page >> 12));

	t0 = now_us();
	while (cpus_online == before && now_us() - t0 < AP_TIMEOUT_US)
		cpu_relax();
	return cpus_online != before;
}

void smp_boot(bool enabled)
{
	u32 self = lapic_id();
	char missing[128] = "";
	size_t ml = 0;
	int cpu = 1;
	u64 page, t0;

	info("bsp_apic_id=%u", self);
	mtrr_read(0);
	if (!enabled) {
		info("smp=off cpus_online=%u", cpus_online);
		mtrr_report(0);
		return;
	}
	page = tramp_page = install_trampoline();
	if (!page) {
		fail("smp", "no free page below 1 MiB for the trampoline");
		return;
	}

	t0 = now_us();
	for (int i = 0; i < madt_cpu_count; i++) {
		u32 id = madt_cpus[i].apic_id;

		if (!madt_cpus[i].enabled || id == self)
			continue;
		if (cpu >= MAX_CPUS || id > 0xff || !start_ap(cpu, id, page)) {
			ml += snprintf(missing + ml, sizeof(missing) - ml,
				       "%s%u", ml ? "," : "", id);
			if (ml >= sizeof(missing))
				ml = sizeof(missing) - 1;
			continue;
		}
		cpu++;
	}

	info("cpus_online=%u trampoline=0x%lx smp_ms=%lu", cpus_online, page,
	     (now_us() - t0) / 1000);
	for (int i = 0; i < cpu; i++)
		mtrr_report(i);
	if ((int)cpus_online == cpus_madt)
		pass("smp", "cpus=%u", cpus_online);
	else
		fail("smp", "online=%u madt=%d missing_apic_ids=%s",
		     cpus_online, cpus_madt, missing);
}

/* A CPU added later (cpuhp.c): the same INIT-SIPI-SIPI, into guest CPU
 * slot `cpu`. */
bool smp_start_ap(int cpu, u32 apic_id)
{
	if (!tramp_page)
		tramp_page = install_trampoline();
	return tramp_page && cpu < MAX_CPUS && start_ap(cpu, apic_id, tramp_page);
}
