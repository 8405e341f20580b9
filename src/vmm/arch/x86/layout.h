/* Guest-physical layout of an x86 kvmm machine.  Low RAM runs from 0 to
 * 3 GiB at most; the rest of RAM is mapped from 4 GiB up, leaving a 1 GiB
 * hole for MMIO (PCI BARs, ECAM, IOAPIC, LAPIC). */
#ifndef KVMM_X86_LAYOUT_H
#define KVMM_X86_LAYOUT_H

#define X86_GDT_ADDR		0x500ULL
#define X86_PVH_INFO_ADDR	0x6000ULL	/* hvm_start_info + memmap */
#define X86_ZERO_PAGE_ADDR	0x7000ULL	/* struct boot_params */
#define X86_PML4_ADDR		0x9000ULL
#define X86_PDPT_ADDR		0xA000ULL
#define X86_PD_ADDR		0xB000ULL	/* 4 pages: 4 GiB in 2 MiB pages */
#define X86_CMDLINE_ADDR	0x20000ULL
#define X86_CMDLINE_MAX		0x10000ULL
#define X86_EBDA_ADDR		0x9FC00ULL
#define X86_ACPI_ADDR		0xE0000ULL	/* RSDP here, where legacy scanners look */
#define X86_ACPI_SIZE		0x10000ULL
/* SMBIOS entry points and tables: Linux's dmi_scan looks for the anchors
 * in 0xF0000-0xFFFFF when it has no EFI.  e820 reserves both windows. */
#define X86_SMBIOS_ADDR		0xF0000ULL
#define X86_SMBIOS_SIZE		0x10000ULL
#define X86_KERNEL_ADDR		0x100000ULL

#define X86_MMIO_HOLE_START	0xC0000000ULL
#define X86_HIGH_RAM_START	0x100000000ULL
/* PCI: the 32-bit BAR window starts the hole, ECAM for bus 0 follows it;
 * both stay clear of the IOAPIC and LAPIC pages above. */
#define X86_PCI_MMIO_START	0xC0000000ULL
#define X86_PCI_MMIO_SIZE	0x20000000ULL
#define X86_PCI_ECAM_ADDR	0xE0000000ULL
#define X86_PCI_ECAM_SIZE	0x100000ULL	/* bus 0 only */
#define X86_IOAPIC_ADDR		0xFEC00000ULL
#define X86_LAPIC_ADDR		0xFEE00000ULL
#define X86_IDMAP_ADDR		0xFFFBC000ULL	/* KVM's private pages (Intel) */
#define X86_TSS_ADDR		0xFFFBD000ULL

/* Legacy I/O ports. */
#define X86_COM1_PORT		0x3F8
#define X86_COM1_IRQ		4
#define X86_PM_BASE		0x600		/* PM1a_EVT 0x600, PM1a_CNT 0x604, PM_TMR 0x608 */
#define X86_GPE0_PORT		0x60C		/* GPE0_STS 0x60C, GPE0_EN 0x60E */
#define X86_PCI_HOTPLUG_PORT	0xAE00		/* QEMU's PIIX4 PCI hotplug registers */
#define X86_CPU_HOTPLUG_PORT	0xAF00		/* QEMU's PIIX4 CPU hotplug registers (modern) */
#define X86_PCI_CONF1_PORT	0xCF8		/* 0xCF8-0xCFF; 0xCF9 is the reset register */
#define X86_RESET_PORT		0xCF9
#define X86_RTC_PORT		0x70
#define X86_I8042_PORT		0x60		/* data 0x60, status/command 0x64 */
#define X86_FW_CFG_PORT		0x510		/* 0x510-0x51B: selector, data, DMA (QEMU's) */
#define X86_RTC_IRQ		8
#define X86_SCI_IRQ		9
/* SLP_TYP for soft-off: the PM device and the DSDT's \_S5 share it. */
#define X86_S5_SLP_TYP		5

#endif
