/* ACPI table builder for kvmm's x86 guests (ACPI 6.3 layouts).
 *
 * Produces RSDP, XSDT (+ RSDT when the window is below 4 GiB), FADT, FACS,
 * MADT, DSDT and MCFG describing kvmm's fixed platform: LAPIC + one IOAPIC,
 * ACPI PM1a event/control blocks and PM timer in I/O space, the 0xCF9-style
 * reset register, COM1, RTC and the PCI host bridge with its ECAM. */
#ifndef KVMM_ACPI_H
#define KVMM_ACPI_H

#include <stdbool.h>
#include <stdint.h>

/* LAPIC entries carry 8-bit APIC IDs and 0xFF is the broadcast ID. */
#define ACPI_MAX_CPUS 255

/* The IOAPIC's MADT ID.  0 matches the reset value of the ID register of
 * KVM's in-kernel IOAPIC (and what QEMU advertises); IOAPIC and LAPIC IDs
 * live in separate name spaces on xAPIC systems, so it does not clash with
 * CPU 0. */
#define ACPI_IOAPIC_ID 0

/* Where the VMM's platform devices live; the tables describe them. */
struct acpi_platform {
	unsigned int ncpus;	/* vCPUs, APIC IDs 0..ncpus-1, enabled */
	/* vCPU hotplug (docs/hotplug.md): APIC IDs ncpus..max_cpus-1 are
	 * in the MADT online-capable, not enabled; every processor device
	 * reads its _STA from QEMU's CPU hotplug registers at
	 * cpu_hotplug_port, and GPE 2 scans them.  0 / 0: no hotplug. */
	unsigned int max_cpus;
	uint16_t cpu_hotplug_port;	/* 0xAF00, 12 ports */
	/* With hotplug: which of the max_cpus are enabled in the MADT (the
	 * boot ones, and after a reset the hot-added ones too, as QEMU
	 * rebuilds its tables); NULL: the first ncpus. */
	const bool *cpu_enabled;
	uint32_t lapic_addr;	/* 0xFEE00000 */
	uint32_t ioapic_addr;	/* 0xFEC00000, ID ACPI_IOAPIC_ID, GSI base 0 */
	uint16_t pm1a_evt_port;	/* PM1_STS (2) + PM1_EN (2); 0x600 */
	uint16_t pm1a_cnt_port;	/* PM1_CNT (2); 0x604 */
	uint16_t pm_tmr_port;	/* 4 bytes, 24-bit counter; 0x608 */
	uint16_t reset_port;	/* 1-byte system I/O reset register; 0xCF9 */
	uint8_t reset_value;	/* 0x06 */
	uint8_t sci_irq;	/* 9 */
	uint8_t s5_slp_typ;	/* SLP_TYP for S5 (soft off); 5 */
	uint16_t com1_port;	/* 0x3F8; 0 = no COM1 in the DSDT */
	uint8_t com1_irq;	/* 4 */
	uint16_t rtc_port;	/* 0x70, CMOS RTC (PNP0B00); 0 = none */
	uint8_t rtc_irq;	/* 8 */
	uint16_t i8042_port;	/* 0x60 and +4, IRQ 1 (PNP0303); 0 = none */
	/* PCI segment 0, bus 0 (all 0 = no PCI): ECAM in the MCFG and
	 * reserved by a PNP0C02 device; the host bridge PCI0 in the DSDT
	 * with conf1 at pci_conf1_port and a 32-bit MMIO window. */
	uint64_t pci_ecam_addr;		/* 0xE0000000; 1 MiB for bus 0 */
	uint32_t pci_mmio_base;		/* 0xC0000000 */
	uint32_t pci_mmio_size;		/* 0x20000000 */
	uint16_t pci_conf1_port;	/* 0xCF8, 8 ports */
	/* ACPI PCI hotplug of bus 0 (docs/hotplug.md): the GPE0 block
	 * (status 2 bytes, enable 2 bytes; GPE 1 is the hotplug event)
	 * and the slot registers of QEMU's PIIX4 interface (up, down,
	 * eject).  Both 0 = no hotplug; needs PCI. */
	uint16_t gpe0_port;		/* 0x60C */
	uint16_t pci_hotplug_port;	/* 0xAE00, 0x14 ports */
	/* QEMU's fw_cfg with DMA (QEMU0002, 12 ports); 0 = none. */
	uint16_t fw_cfg_port;		/* 0x510 */
};

/* CMOS index of the century byte, named in the FADT. */
#define ACPI_RTC_CENTURY_INDEX 0x32

/* Builds RSDP, XSDT, FADT (with FACS), MADT and DSDT into the guest-physical
 * window [base, base+size) whose host view is `buf` (buf[0] is guest address
 * `base`). The RSDP is placed at `base` (so base must be 16-byte aligned and,
 * for legacy scanners, kvmm puts the window at 0xE0000). Returns the guest
 * physical address of the RSDP, or a negative errno (-ENOSPC if it does not
 * fit, -EINVAL on bad parameters). Pure function: no I/O, no globals.
 * Bytes of the window past the last table are left untouched; on error
 * the window's contents are unspecified, but nothing past `size` is
 * written.  If the window reaches above 4 GiB, no RSDT is built and the
 * FADT's 32-bit FACS/DSDT pointers are 0 (only the X_ fields are used). */
int64_t acpi_build(const struct acpi_platform *p, void *buf, uint64_t base,
		   uint64_t size);

#endif
