/* SPDX-License-Identifier: MIT */
/* Declarations shared between the test guest's C files. */
#ifndef GUEST_GUEST_H
#define GUEST_GUEST_H

#include "types.h"
#include "layout.h"

/* string.c */
void *memset(void *d, int c, size_t n);
void *memcpy(void *d, const void *s, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
int strncmp(const char *a, const char *b, size_t n);
int strcmp(const char *a, const char *b);
u64 parse_u64(const char *s, const char **end);

/* fmt.c */
int vsnprintf(char *buf, size_t size, const char *fmt, va_list ap);
int snprintf(char *buf, size_t size, const char *fmt, ...) __printf(3, 4);

/* serial.c */
void serial_init(void);
void serial_write(const char *s, size_t n);
void serial_puts(const char *s);
int serial_getc(void);
void serial_rx_irq_enable(void);

/* report.c */
void kprintf(const char *fmt, ...) __printf(1, 2);
void info(const char *fmt, ...) __printf(1, 2);
void pass(const char *check, const char *fmt, ...) __printf(2, 3);
void fail(const char *check, const char *fmt, ...) __printf(2, 3);
void record(const char *fmt, ...) __printf(1, 2);
void report_done(void);
extern int checks_passed, checks_failed;

/* crc32.c */
u32 crc32(u32 crc, const void *buf, size_t len);

/* bootparams.c */
struct e820_entry {
	u64 base;
	u64 size;
	u32 type;
};
extern char cmdline[];
extern struct e820_entry e820[];
extern int e820_count;
extern u64 zero_page_addr, initrd_addr, initrd_size, mem_usable, mem_top;
extern u64 bp_acpi_rsdp;
void bootparams_load(u64 zero_page);
void bootparams_adopt(const u8 *zp, u64 addr, u64 size);
bool mapped(u64 addr, u64 len);
void bootparams_report(void);
bool cmdline_option(const char *key, char *val, size_t len);
bool e820_is(u64 base, u64 size, u32 type);
bool e820_is_ram(u64 base, u64 size);

/* pvh.c */
void pvh_load(u64 start_info);

/* acpi.c */
struct gas {
	u8 space;	/* 0 memory, 1 I/O */
	u8 width;
	u64 addr;
};
struct acpi_pm {
	bool have_fadt;
	bool hw_reduced;
	u32 flags;
	u32 sci;
	u32 smi_cmd;
	u8 acpi_enable;
	struct gas pm1a_evt, pm1b_evt, pm1a_cnt, pm1b_cnt;
	u8 pm1_evt_len;
	struct gas gpe0;	/* status half, then enable half */
	u8 gpe0_len;
	struct gas reset;
	u8 reset_value;
	struct gas sleep_ctl, sleep_sts;
	bool have_s5;
	u8 s5_typa, s5_typb;
};
struct madt_cpu {
	u32 apic_id;
	bool enabled;
};
struct ioapic_desc {
	u64 addr;
	u32 gsi_base;
	u32 count;
	u8 id;
};
struct iso_desc {
	u8 irq;
	u32 gsi;
	u16 flags;
};
extern struct acpi_pm acpi_pm;
extern struct madt_cpu madt_cpus[];
extern int madt_cpu_count, cpus_madt;
extern struct ioapic_desc ioapics[];
extern int ioapic_count;
extern struct iso_desc isos[];
extern int iso_count;
extern u64 rsdp_addr, xsdt_addr, rsdt_addr;
extern char acpi_tables[];
void acpi_init(void);
u64 gas_read(const struct gas *g, int width);
void gas_write(const struct gas *g, int width, u64 v);

/* apic.c */
extern u64 lapic_base;
u32 lapic_read(u32 reg);
void lapic_write(u32 reg, u32 v);
u32 lapic_id(void);
void lapic_enable(void);
void lapic_eoi(void);
void pic_disable(void);
void ioapic_init(void);
u32 isa_irq_to_gsi(u8 irq, bool *level, bool *active_low);
bool ioapic_route(u32 gsi, u8 vector, bool level, bool active_low);

/* timer.c */
extern volatile u64 jiffies;
extern u64 tsc_khz;
void timer_init(void);
u64 now_us(void);
void delay_us(u64 us);
void wfi(void);

/* smp.c */
extern volatile u32 cpus_online;
void smp_boot(bool enabled);

/* pm.c */
extern volatile int pwrbtn_pending;
void pm_power_button_enable(void);
void pm_i8042_check(void);
void sci_interrupt(void);
void pm_poweroff(void);
void pm_reboot(void);
void pm_crash(void) __noreturn;
void pm_emergency_poweroff(void);

/* shell.c */
void shell_run(void) __noreturn;

/* live.c: kvmmtest.action=live (live_aps: the APs run live_ap) */
extern volatile bool live_aps;
void live_run(u64 tick_ms);
void live_ap(void) __noreturn;
/* virtio_blk.c: CRC32 of sectors [start, start+count) of blk N, driven
 * earlier, and the MSI-X interrupts it took; false if there is none */
bool virtio_blk_read_crc(int index, u64 start, u64 count, u32 *crc, u64 *irqs);
/* The crc32 of the first bytes the last read left in disk index's
 * buffer, which is then zeroed (so only the next read fills it again). */
bool virtio_blk_buf_crc(int index, u64 bytes, u32 *crc);

/* fwinfo.c: SMBIOS and fw_cfg, on request (kvmmtest.smbios, kvmmtest.vmcoreinfo) */
void fwinfo_run(void);
/* highmem.c */
void highmem_run(void);
void hotplug_run(void);
/* cpuhp.c: ACPI CPU hotplug (kvmmtest.cpuhp); cpuhp_aps: the APs run
 * cpuhp_ap */
extern volatile bool cpuhp_aps;
void cpuhp_run(void);
void cpuhp_ap(u32 cpu) __noreturn;
/* smp.c */
bool smp_start_ap(int cpu, u32 apic_id);
/* MSR_MTRRdefType: read on (and by) CPU slot `cpu`; reported by the BSP */
void mtrr_read(int cpu);
void mtrr_report(int cpu);

/* cpu.c */
extern u64 gdt[];
void cpl0_main(u64 zero_page, u32 entry) __noreturn;
void ap_cpl0_main(u32 cpu) __noreturn;
void tss_setup(int cpu, u64 rsp0);
void io_bitmap_init(void);
void idt_count_gates_init(void);
void halt_forever(void) __noreturn;
extern char boot_kstack_top[], bsp_ustack_top[], ap_stacks[];
extern volatile u64 irq_count[256];
extern volatile u64 ap_boot_rsp;
extern volatile u16 ap_boot_tr;
extern volatile u32 ap_boot_cpu;

/* main.c */
extern u32 boot_entry;
void user_main(u64 zero_page, u32 entry) __noreturn;
void ap_main(u32 cpu) __noreturn;

/* isr.S, trampoline.S */
void enter_user(void *fn, u64 arg0, u64 arg1, u64 stack_top) __noreturn;
extern char isr_stubs[], isr_timer[], isr_syscall[], isr_ud[], isr_count[];
extern char tramp_start[], tramp_end[], tramp_gdtr[], tramp_far32[];

/* guest.ld */
extern char _bss_start[], _bss_end[], _end[];

#endif
