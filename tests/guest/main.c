// SPDX-License-Identifier: MIT
/*
 * CPL3 main program: the checks, in order, then the action chosen by
 * kvmmtest.action= (poweroff, reboot, crash, wait, prompt).
 */
#include "guest.h"
#include "io.h"
#include "virtio.h"

#define DEFAULT_TICK_MS	250

u32 boot_entry;

static void ticks_forever(u64 tick_ms)
{
	u64 next = now_us() + tick_ms * 1000;
	u64 n = 0;

	for (;;) {
		while (now_us() < next && !pwrbtn_pending)
			wfi();
		if (pwrbtn_pending) {
			record("event power-button");
			pm_poweroff();
			asm volatile("int $0x80" : : "a"((u64)SYS_HALT));
		}
		record("tick %lu", ++n);
		next += tick_ms * 1000;
	}
}

void user_main(u64 zero_page, u32 entry)
{
	char action[16] = "poweroff", opt[16];
	u64 tick_ms = DEFAULT_TICK_MS;
	bool smp = true;

	memset(_bss_start, 0, _bss_end - _bss_start);
	io_bitmap_init();
	boot_entry = entry;
	if (entry == ENTRY_PVH)
		pvh_load(zero_page);
	else
		bootparams_load(zero_page);

	cmdline_option("kvmmtest.action", action, sizeof(action));
	if (cmdline_option("kvmmtest.tick_ms", opt, sizeof(opt)))
		tick_ms = parse_u64(opt, NULL) ?: DEFAULT_TICK_MS;
	if (cmdline_option("kvmmtest.smp", opt, sizeof(opt)))
		smp = strcmp(opt, "off") != 0;

	bootparams_report();
	acpi_init();
	pm_i8042_check();
	lapic_enable();
	ioapic_init();
	timer_init();
	live_aps = !strcmp(action, "live");
	cpuhp_aps = cmdline_option("kvmmtest.cpuhp", opt, sizeof(opt));
	smp_boot(smp);
	virtio_run();
	hotplug_run();
	cpuhp_run();
	fwinfo_run();
	highmem_run();

	if (!strcmp(action, "wait") || !strcmp(action, "prompt") || !strcmp(action, "live"))
		pm_power_button_enable();
	report_done();

	if (!strcmp(action, "poweroff")) {
		pm_poweroff();
	} else if (!strcmp(action, "reboot")) {
		pm_reboot();
	} else if (!strcmp(action, "crash")) {
		pm_crash();
	} else if (!strcmp(action, "wait")) {
		ticks_forever(tick_ms);
	} else if (!strcmp(action, "prompt")) {
		shell_run();
	} else if (!strcmp(action, "live")) {
		live_run(tick_ms);
	} else {
		fail("action", "unknown kvmmtest.action=%s", action);
		pm_poweroff();
	}
	asm volatile("int $0x80" : : "a"((u64)SYS_HALT));
	for (;;)
		;
}

/*
 * APs: enable the local APIC, check in, and park with interrupts off:
 * nothing is routed to them.  (Early on, APs parked in sti; hlt twice left
 * QEMU hanging at poweroff on KVM-PVM; not reproducible since, but cli; hlt
 * is all they need anyway.)
 */
void ap_main(u32 cpu)
{
	lapic_enable();
	mtrr_read(cpu);
	asm volatile("lock incl %0" : "+m"(cpus_online));
	if (live_aps)
		live_ap();
	if (cpuhp_aps)
		cpuhp_ap(cpu);
	asm volatile("int $0x80" : : "a"((u64)SYS_HALT));
	for (;;)
		cpu_relax();
}
