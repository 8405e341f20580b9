/* The values of libvirt's domain XML that kvmm supports, as data.
 *
 * Each choice (an attribute or element whose value is one of a fixed set)
 * is one struct conf_enum.  The parser accepts exactly the values listed and
 * refuses every other one by name; `virsh domcapabilities` will be generated
 * from the same lists, so what it advertises is what the parser accepts.
 * Add a value here only when the VMM (or the translator) really does it. */
#ifndef KVMM_DOMAIN_TABLES_H
#define KVMM_DOMAIN_TABLES_H

#include <stddef.h>

#include "vm_limits.h"

#define CONF_ENUM_MAX 8

struct conf_enum {
	const char *what;	/* in messages: "disk bus" */
	const char *attr;	/* in hints: "bus" -> "use bus='virtio'" */
	/* Supported spellings; the index is the value of the matching enum in
	 * domain_conf.h.  NULL-terminated. */
	const char *values[CONF_ENUM_MAX + 1];
};

/* Index of VALUE in E, or -1. */
int conf_enum_lookup(const struct conf_enum *e, const char *value);
const char *conf_enum_name(const struct conf_enum *e, int index);

/* Reports VIR_ERR_CONFIG_UNSUPPORTED for VALUE, naming the supported values:
 * "disk bus 'ide' is not supported by kvmm; use bus='virtio'". */
void conf_enum_refuse(const struct conf_enum *e, const char *value);

extern const struct conf_enum conf_domain_type;
extern const struct conf_enum conf_os_type;
extern const struct conf_enum conf_arch;
extern const struct conf_enum conf_machine;
extern const struct conf_enum conf_boot_dev;
extern const struct conf_enum conf_smbios_mode;
extern const struct conf_enum conf_vcpu_placement;
extern const struct conf_enum conf_cpu_mode;
extern const struct conf_enum conf_cpu_check;
extern const struct conf_enum conf_on_off;
extern const struct conf_enum conf_yes_no;
extern const struct conf_enum conf_vmport_state;
extern const struct conf_enum conf_pm_enabled;
extern const struct conf_enum conf_clock_offset;
extern const struct conf_enum conf_timer_name;
extern const struct conf_enum conf_timer_tickpolicy;
extern const struct conf_enum conf_lifecycle_action;
extern const struct conf_enum conf_disk_type;
extern const struct conf_enum conf_disk_device;
extern const struct conf_enum conf_disk_driver;
extern const struct conf_enum conf_disk_format;
extern const struct conf_enum conf_backing_type;
extern const struct conf_enum conf_disk_cache;
extern const struct conf_enum conf_disk_io;
extern const struct conf_enum conf_disk_discard;
extern const struct conf_enum conf_disk_error_policy;
extern const struct conf_enum conf_disk_rerror_policy;
extern const struct conf_enum conf_disk_bus;
extern const struct conf_enum conf_net_type;
extern const struct conf_enum conf_net_model;
extern const struct conf_enum conf_chr_type;
extern const struct conf_enum conf_unix_mode;
extern const struct conf_enum conf_serial_target;
extern const struct conf_enum conf_serial_model;
extern const struct conf_enum conf_console_target;
extern const struct conf_enum conf_rng_model;
extern const struct conf_enum conf_rng_backend;
extern const struct conf_enum conf_rng_source;
extern const struct conf_enum conf_balloon_model;
extern const struct conf_enum conf_controller_type;
extern const struct conf_enum conf_usb_model;
extern const struct conf_enum conf_pci_model;
extern const struct conf_enum conf_sysinfo_type;
extern const struct conf_enum conf_sysinfo_bios_entry;
extern const struct conf_enum conf_sysinfo_entry;
extern const struct conf_enum conf_sysinfo_baseboard_entry;
extern const struct conf_enum conf_sysinfo_chassis_entry;
/* The element of each sysinfo group and its entry names, indexed by
 * enum conf_sysinfo_group. */
struct conf_sysinfo_group {
	const char *element;		/* "baseBoard" */
	const struct conf_enum *entries;
};
extern const struct conf_sysinfo_group conf_sysinfo_groups[];

/* Limits the validator enforces (and domcapabilities will report): kvmm's,
 * from the one header both sides read, in the XML's units. */
#define CONF_MAX_VCPUS VM_MAX_CPUS
#define CONF_MIN_MEMORY_KIB (VM_MIN_MEMORY / 1024)
#define CONF_MAX_MEMORY_KIB (VM_MAX_MEMORY / 1024)
#define CONF_MEMORY_ALIGN_KIB (VM_MEMORY_ALIGN / 1024)	/* <memory> is rounded up to it */
#define CONF_SERIAL_PORTS VM_MAX_SERIALS		/* COM1 only */

#endif
