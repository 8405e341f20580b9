// SPDX-License-Identifier: MIT
/*
 * kvmmtest.action=prompt: a tiny interactive shell on COM1.  Input is
 * interrupt-driven (IRQ 4 wakes the wait syscall); the power button still
 * works.
 */
#include "guest.h"
#include "io.h"

#define LINE_MAX	80

static void cmd_info(void)
{
	kprintf("cpus: madt=%d online=%u\r\n", cpus_madt, cpus_online);
	kprintf("memory: usable=%lu MiB top=0x%lx e820 entries=%d\r\n",
		mem_usable >> 20, mem_top, e820_count);
	kprintf("cmdline: %s\r\n", cmdline);
	kprintf("acpi: rsdp=0x%lx tables=%s\r\n", rsdp_addr, acpi_tables);
	kprintf("acpi: pm1a_evt=0x%lx pm1a_cnt=0x%lx sci=%u s5=%u\r\n",
		acpi_pm.pm1a_evt.addr, acpi_pm.pm1a_cnt.addr, acpi_pm.sci,
		acpi_pm.s5_typa);
	if (boot_entry == ENTRY_PVH)
		kprintf("boot: entry=pvh tsc_khz=%lu\r\n", tsc_khz);
	else
		kprintf("boot: entry=%u tsc_khz=%lu\r\n", boot_entry, tsc_khz);
}

/* MSR_MTRRdefType of this (the boot) CPU, set first if a value is
 * given: how a test sees it carried across a save and restore. */
static void cmd_mtrr(const char *arg)
{
	u64 v = SYS_RDMSR;

	if (*arg)
		asm volatile("int $0x80" : : "a"((u64)SYS_WRMSR), "D"(0x2fful),
			     "S"(parse_u64(arg, NULL)) : "memory");
	asm volatile("int $0x80" : "+a"(v) : "D"(0x2fful) : "memory");
	kprintf("mtrr: def_type=0x%lx\r\n", v);
}

static void run(const char *line)
{
	if (!line[0])
		return;
	if (!strcmp(line, "help"))
		kprintf("commands: help info ticks mtrr [VALUE] poweroff reboot\r\n");
	else if (!strcmp(line, "info"))
		cmd_info();
	else if (!strcmp(line, "ticks"))
		kprintf("ticks: %lu (%d ms each); interrupts: com1=%lu sci=%lu\r\n",
			jiffies, 10, irq_count[VEC_COM1], irq_count[VEC_SCI]);
	else if (!strcmp(line, "mtrr") || !strncmp(line, "mtrr ", 5))
		cmd_mtrr(line[4] ? line + 5 : "");
	else if (!strcmp(line, "poweroff"))
		pm_poweroff();
	else if (!strcmp(line, "reboot"))
		pm_reboot();
	else
		kprintf("unknown command: %s (try help)\r\n", line);
}

void shell_run(void)
{
	bool level, low;
	char line[LINE_MAX + 1];
	int len = 0, c;
	u32 gsi = isa_irq_to_gsi(4, &level, &low);

	ioapic_route(gsi, VEC_COM1, level, low);
	serial_rx_irq_enable();
	kprintf("\r\nkvmm test guest shell; type 'help'.\r\nkvmm-testguest> ");
	for (;;) {
		if (pwrbtn_pending) {
			kprintf("\r\n");
			record("event power-button");
			pm_poweroff();
		}
		c = serial_getc();
		if (c < 0) {
			wfi();
			continue;
		}
		if (c == '\r' || c == '\n') {
			kprintf("\r\n");
			line[len] = '\0';
			run(line);
			len = 0;
			kprintf("kvmm-testguest> ");
		} else if (c == 0x7f || c == 0x08) {
			if (len) {
				len--;
				kprintf("\b \b");
			}
		} else if (c >= 0x20 && c < 0x7f && len < LINE_MAX) {
			line[len++] = c;
			kprintf("%c", c);
		}
	}
}
