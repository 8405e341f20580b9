/* What kvmm supports of libvirt's domain XML, as data (see domain_tables.h).
 * The order of each list matches the enum of the same name in
 * domain_conf.h; the first value is the default where the parser has one. */
#include <string.h>

#include <glib.h>

#include "domain_conf.h"
#include "domain_tables.h"
#include "error.h"

#define VIR_FROM_THIS VIR_FROM_DOMAIN

const struct conf_enum conf_domain_type = { "domain type", "type", { "kvm" } };
const struct conf_enum conf_os_type = { "os type", "type", { "hvm" } };
const struct conf_enum conf_arch = { "architecture", "arch", { "x86_64" } };
/* kvmm's machine: i8042, PIT, PIC/IOAPIC, one legacy PCI host bridge and ACPI;
 * the closest of QEMU's names, which tools (virt-install, nova) know. */
const struct conf_enum conf_machine = { "machine type", "machine", { "pc" } };
/* The kernel is loaded directly, so firmware boot order has no effect; 'hd'
 * is what libvirt shows by default and is the only harmless value. */
const struct conf_enum conf_boot_dev = { "boot device", "dev", { "hd" } };
/* 'emulate' (libvirt's default) is the hypervisor's own tables with the
 * domain's UUID: what kvmm gives every guest.  'host' would hand the host's
 * identity to the guest. */
const struct conf_enum conf_smbios_mode = { "smbios mode", "mode", { "sysinfo", "emulate" } };
const struct conf_enum conf_vcpu_placement = { "vcpu placement", "placement", { "static" } };
const struct conf_enum conf_cpu_mode = {
	"cpu mode", "mode", { "host-passthrough", "host-model", "maximum" } };
const struct conf_enum conf_cpu_check = { "cpu check", "check", { "none", "partial", "full" } };
const struct conf_enum conf_on_off = { "value", "state", { "on", "off" } };
const struct conf_enum conf_yes_no = { "value", "present", { "yes", "no" } };
/* kvmm has no VMware backdoor port; 'off' states that truthfully. */
const struct conf_enum conf_vmport_state = { "vmport state", "state", { "off" } };
/* No S3/S4: suspend can only be declared disabled. */
const struct conf_enum conf_pm_enabled = { "guest suspend", "enabled", { "no" } };
const struct conf_enum conf_clock_offset = { "clock offset", "offset", { "utc", "localtime" } };
/* The timers kvmm's machine has (in-kernel PIT, CMOS RTC) plus HPET, which
 * may only be declared absent (see domain_parse.c). */
const struct conf_enum conf_timer_name = { "timer", "name", { "rtc", "pit", "hpet" } };
const struct conf_enum conf_timer_tickpolicy = { "timer tickpolicy", "tickpolicy", { "delay", "catchup" } };
const struct conf_enum conf_lifecycle_action = { "lifecycle action", "action", { "destroy", "restart" } };

const struct conf_enum conf_disk_type = { "disk type", "type", { "file", "block" } };
const struct conf_enum conf_disk_device = { "disk device", "device", { "disk" } };
const struct conf_enum conf_disk_driver = { "disk driver", "name", { "qemu" } };
const struct conf_enum conf_disk_format = { "disk format", "type", { "raw", "qcow2" } };
const struct conf_enum conf_backing_type = { "backing store type", "type", { "file" } };
const struct conf_enum conf_disk_cache = {
	"disk cache mode", "cache",
	{ "default", "none", "writethrough", "writeback", "directsync", "unsafe" } };
const struct conf_enum conf_disk_io = { "disk io mode", "io", { "default", "threads", "native", "io_uring" } };
const struct conf_enum conf_disk_discard = { "disk discard mode", "discard", { "default", "unmap", "ignore" } };
const struct conf_enum conf_disk_error_policy = {
	"disk error policy", "error_policy", { "default", "stop", "report", "ignore", "enospace" } };
const struct conf_enum conf_disk_rerror_policy = {
	"disk read error policy", "rerror_policy", { "default", "stop", "report", "ignore" } };
const struct conf_enum conf_disk_bus = { "disk bus", "bus", { "virtio" } };

const struct conf_enum conf_net_type = { "interface type", "type", { "ethernet", "bridge", "network" } };
const struct conf_enum conf_net_model = { "interface model", "type", { "virtio" } };

const struct conf_enum conf_chr_type = { "character device type", "type", { "pty", "file", "unix" } };
const struct conf_enum conf_unix_mode = { "unix socket mode", "mode", { "bind", "connect" } };
const struct conf_enum conf_serial_target = { "serial target type", "type", { "isa-serial" } };
const struct conf_enum conf_serial_model = { "serial target model", "name", { "isa-serial" } };
const struct conf_enum conf_console_target = { "console target type", "type", { "serial", "virtio" } };

const struct conf_enum conf_rng_model = { "rng model", "model", { "virtio" } };
const struct conf_enum conf_rng_backend = { "rng backend model", "model", { "random" } };
const struct conf_enum conf_rng_source = { "rng source", "backend", { "/dev/urandom", "/dev/random" } };
const struct conf_enum conf_balloon_model = { "memballoon model", "model", { "virtio", "none" } };

/* Only the controllers libvirt shows by default on a 'pc' machine, in the
 * form that describes kvmm truthfully: the root PCI bus and no USB. */
const struct conf_enum conf_controller_type = { "controller type", "type", { "usb", "pci" } };
const struct conf_enum conf_usb_model = { "usb controller model", "model", { "none" } };
const struct conf_enum conf_pci_model = { "pci controller model", "model", { "pci-root" } };

const struct conf_enum conf_sysinfo_type = { "sysinfo type", "type", { "smbios" } };
/* The SMBIOS structures kvmm builds from <sysinfo> (src/vmm/arch/x86/smbios.c):
 * type 0 (bios), 1 (system), 2 (baseBoard), 3 (chassis); the entry names
 * in libvirt's output order. */
const struct conf_enum conf_sysinfo_bios_entry = {
	"sysinfo bios entry", "name", { "vendor", "version", "date", "release" } };
const struct conf_enum conf_sysinfo_entry = {
	"sysinfo system entry", "name",
	{ "manufacturer", "product", "version", "serial", "uuid", "sku", "family" } };
const struct conf_enum conf_sysinfo_baseboard_entry = {
	"sysinfo baseBoard entry", "name",
	{ "manufacturer", "product", "version", "serial", "asset", "location" } };
const struct conf_enum conf_sysinfo_chassis_entry = {
	"sysinfo chassis entry", "name", { "manufacturer", "version", "serial", "asset", "sku" } };
const struct conf_sysinfo_group conf_sysinfo_groups[] = {
	[SYSINFO_BIOS] = { "bios", &conf_sysinfo_bios_entry },
	[SYSINFO_SYSTEM] = { "system", &conf_sysinfo_entry },
	[SYSINFO_BASEBOARD] = { "baseBoard", &conf_sysinfo_baseboard_entry },
	[SYSINFO_CHASSIS] = { "chassis", &conf_sysinfo_chassis_entry },
};

int conf_enum_lookup(const struct conf_enum *e, const char *value)
{
	for (int i = 0; e->values[i]; i++)
		if (strcmp(e->values[i], value) == 0)
			return i;
	return -1;
}

const char *conf_enum_name(const struct conf_enum *e, int index)
{
	return e->values[index];
}

void conf_enum_refuse(const struct conf_enum *e, const char *value)
{
	g_autoptr(GString) hint = g_string_new(NULL);

	if (!e->values[1]) {
		g_string_printf(hint, "use %s='%s'", e->attr, e->values[0]);
	} else {
		g_string_append(hint, "supported: ");
		for (int i = 0; e->values[i]; i++)
			g_string_append_printf(hint, "%s'%s'", i ? ", " : "", e->values[i]);
	}
	drv_error_report(VIR_ERR_CONFIG_UNSUPPORTED, "%s '%s' is not supported by kvmm; %s",
			 e->what, value, hint->str);
}
