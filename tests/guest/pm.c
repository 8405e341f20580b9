// SPDX-License-Identifier: MIT
/*
 * ACPI power management: S5 poweroff, reset, the fixed power button and
 * its SCI, and the deliberate triple fault; and the PS/2 controller's
 * status, whose reset line is one of the ways to reboot.
 */
#include "guest.h"
#include "io.h"

#define PM1_PWRBTN	(1 << 8)	/* PWRBTN_STS / PWRBTN_EN */
#define PM1_SCI_EN	(1 << 0)
#define PM1_SLP_TYP(x)	((x) << 10)
#define PM1_SLP_TYP_MASK (7 << 10)
#define PM1_SLP_EN	(1 << 13)
#define SLEEP_CTL_TYP(x) (((x) & 7) << 2)
#define SLEEP_CTL_EN	(1 << 5)

volatile int pwrbtn_pending;

#define I8042_STATUS		0x64
#define I8042_STS_UNLOCKED	(1 << 4)	/* keyboard not inhibited */

/* The PS/2 controller's status as Linux's i8042 reads it at probe: with
 * the keyboard inhibit (key lock) bit showing, Linux warns. */
void pm_i8042_check(void)
{
	u8 st = inb(I8042_STATUS);

	if (st & I8042_STS_UNLOCKED)
		pass("i8042", "status=0x%x", st);
	else
		fail("i8042", "status=0x%x: keyboard inhibited (key lock)", st);
}

/* PM1_EN is the second half of the PM1 event block. */
static struct gas pm1_en(void)
{
	struct gas g = acpi_pm.pm1a_evt;

	g.addr += acpi_pm.pm1_evt_len / 2;
	return g;
}

static bool have_pm1(void)
{
	return acpi_pm.have_fadt && acpi_pm.pm1a_evt.addr &&
	       acpi_pm.pm1a_cnt.addr;
}

static void s5(void)
{
	struct acpi_pm *pm = &acpi_pm;

	if (pm->hw_reduced && pm->sleep_ctl.addr) {
		gas_write(&pm->sleep_ctl, 8,
			  SLEEP_CTL_TYP(pm->s5_typa) | SLEEP_CTL_EN);
		return;
	}
	if (!pm->pm1a_cnt.addr)
		return;
	if (pm->pm1b_cnt.addr) {
		u16 v = gas_read(&pm->pm1b_cnt, 16) & ~PM1_SLP_TYP_MASK;

		gas_write(&pm->pm1b_cnt, 16,
			  v | PM1_SLP_TYP(pm->s5_typb) | PM1_SLP_EN);
	}
	u16 v = gas_read(&pm->pm1a_cnt, 16) & ~(PM1_SLP_TYP_MASK | PM1_SLP_EN);

	gas_write(&pm->pm1a_cnt, 16, v | PM1_SLP_TYP(pm->s5_typa) | PM1_SLP_EN);
}

void pm_poweroff(void)
{
	record("action poweroff");
	if (!acpi_pm.have_s5)
		fail("poweroff", "no _S5_ sleep type, trying SLP_TYP=0");
	s5();
	delay_us(1000000);
	fail("poweroff", "still running 1 s after S5 request");
}

/* From the CPL0 exception handler: no records, no waiting. */
void pm_emergency_poweroff(void)
{
	s5();
}

void pm_reboot(void)
{
	struct acpi_pm *pm = &acpi_pm;

	record("action reboot");
	if ((pm->flags & (1 << 10)) && pm->reset.addr &&
	    (pm->reset.space == 0 || pm->reset.space == 1)) {
		gas_write(&pm->reset, 8, pm->reset_value);
		delay_us(500000);
	}
	outb(0xcf9, 0x06);
	delay_us(500000);
	outb(0x64, 0xfe);
	delay_us(500000);
	fail("reboot", "still running after RESET_REG, 0xcf9 and 0x64");
}

void pm_crash(void)
{
	record("action crash");
	asm volatile("int $0x80" : : "a"((u64)SYS_CRASH) : "memory");
	fail("crash", "still running after the triple fault");
	asm volatile("int $0x80" : : "a"((u64)SYS_HALT) : "memory");
	for (;;)
		;
}

/* Runs at CPL0 from the SCI vector: acknowledge, flag, nothing more. */
void sci_interrupt(void)
{
	u16 sts = gas_read(&acpi_pm.pm1a_evt, 16);

	if (sts & PM1_PWRBTN)
		pwrbtn_pending = 1;
	if (sts)
		gas_write(&acpi_pm.pm1a_evt, 16, sts);	/* write-1-to-clear */
}

void pm_power_button_enable(void)
{
	struct acpi_pm *pm = &acpi_pm;
	struct gas en;
	bool level, low;
	u32 gsi;
	u64 t0;

	if (!have_pm1()) {
		fail("power-button", "no PM1 event/control blocks (hw_reduced=%d)",
		     pm->hw_reduced);
		return;
	}
	/* Switch to ACPI mode if the firmware left us in legacy mode. */
	if (!(gas_read(&pm->pm1a_cnt, 16) & PM1_SCI_EN) && pm->smi_cmd &&
	    pm->acpi_enable) {
		outb(pm->smi_cmd, pm->acpi_enable);
		t0 = now_us();
		while (!(gas_read(&pm->pm1a_cnt, 16) & PM1_SCI_EN) &&
		       now_us() - t0 < 1000000)
			cpu_relax();
	}

	/* The SCI: ISO flags if any, else ACPI's default, level/active-low. */
	gsi = pm->sci;
	level = true;
	low = true;
	for (int i = 0; i < iso_count; i++) {
		if (isos[i].irq != pm->sci)
			continue;
		gsi = isos[i].gsi;
		if (isos[i].flags & 3)
			low = (isos[i].flags & 3) == 3;
		if ((isos[i].flags >> 2) & 3)
			level = ((isos[i].flags >> 2) & 3) == 3;
	}

	gas_write(&pm->pm1a_evt, 16, PM1_PWRBTN);
	en = pm1_en();
	gas_write(&en, 16, gas_read(&en, 16) | PM1_PWRBTN);
	if (!ioapic_route(gsi, VEC_SCI, level, low)) {
		fail("power-button", "SCI GSI %u not on any IOAPIC", gsi);
		return;
	}
	info("sci_gsi=%u sci_trigger=%s sci_polarity=%s sci_en=%d", gsi,
	     level ? "level" : "edge", low ? "low" : "high",
	     (int)(gas_read(&pm->pm1a_cnt, 16) & PM1_SCI_EN));
	pass("power-button", "armed");
}
