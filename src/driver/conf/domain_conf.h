/* A domain definition: the subset of libvirt's domain XML that kvmm
 * supports, parsed (domain_parse.c), completed with the defaults libvirt
 * would show and checked (domain_validate.c), and formatted back in libvirt's
 * canonical style (domain_format.c).  What is outside the subset is refused
 * by name when parsing, never dropped.  Pure: no I/O, no daemon state.
 *
 * Enumerations index the value lists of domain_tables.c. */
#ifndef KVMM_DOMAIN_CONF_H
#define KVMM_DOMAIN_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <libxml/tree.h>

#include "domain_tables.h"

enum conf_smbios_mode { SMBIOS_SYSINFO, SMBIOS_EMULATE };
enum conf_cpu_mode { CPU_HOST_PASSTHROUGH, CPU_HOST_MODEL, CPU_MAXIMUM };
enum conf_clock_offset { CLOCK_UTC, CLOCK_LOCALTIME };
enum conf_timer_name { TIMER_RTC, TIMER_PIT, TIMER_HPET, TIMER_LAST };
enum conf_lifecycle { LIFECYCLE_DESTROY, LIFECYCLE_RESTART };
enum conf_disk_type { DISK_FILE, DISK_BLOCK };
enum conf_disk_format { FORMAT_RAW, FORMAT_QCOW2 };
enum conf_disk_cache { CACHE_DEFAULT, CACHE_NONE, CACHE_WRITETHROUGH, CACHE_WRITEBACK,
		       CACHE_DIRECTSYNC, CACHE_UNSAFE };
enum conf_disk_io { IO_DEFAULT, IO_THREADS, IO_NATIVE, IO_URING };
/* <driver error_policy=> (rerror_policy= has no ENOSPACE), as libvirt's. */
enum conf_disk_error_policy { ERRPOL_DEFAULT, ERRPOL_STOP, ERRPOL_REPORT, ERRPOL_IGNORE,
			      ERRPOL_ENOSPACE };
enum conf_disk_discard { DISCARD_DEFAULT, DISCARD_UNMAP, DISCARD_IGNORE };
enum conf_net_type { NET_ETHERNET, NET_BRIDGE, NET_NETWORK };
enum conf_chr_type { CHR_PTY, CHR_FILE, CHR_UNIX };
enum conf_console_target { CONSOLE_SERIAL, CONSOLE_VIRTIO };
enum conf_balloon_model { BALLOON_VIRTIO, BALLOON_NONE };
enum conf_controller_type { CTRL_USB, CTRL_PCI };
/* The <sysinfo type='smbios'> groups with named entries, in libvirt's
 * order; each group's entry names are a table of domain_tables.c. */
enum conf_sysinfo_groups { SYSINFO_BIOS, SYSINFO_SYSTEM, SYSINFO_BASEBOARD, SYSINFO_CHASSIS,
			  SYSINFO_GROUPS };
#define SYSINFO_MAX_ENTRIES 7
#define SYSINFO_SYSTEM_UUID 4	/* <system><entry name='uuid'> */

/* A tristate for optional on/off (yes/no) attributes: absent, or given. */
enum conf_tristate { TRI_ABSENT, TRI_ON, TRI_OFF };

/* kvmm's limit on the layers below one image (KVMM_MAX_BACKING). */
#define DOMAIN_MAX_BACKING 16

/* One layer of a disk's backing chain (<backingStore type='file'>). */
struct domain_backing {
	int format;		/* conf_disk_format */
	char *path;
	unsigned index;		/* live: libvirt's node index; 0 when not running */
};

struct domain_disk {
	int type;		/* conf_disk_type */
	int format;		/* conf_disk_format: <driver type=> */
	unsigned index;		/* live: the image's node index (<source index=>); 0: none */
	/* The backing chain, the image's own backing file first.  The first
	 * nbacking_given layers are the definition's; the rest were read from
	 * the images' headers at start and belong to the run (live only). */
	struct domain_backing *backing; size_t nbacking, nbacking_given;
	bool backing_end;	/* the definition ends the chain: <backingStore/> */
	int cache, io, discard;	/* *_DEFAULT: not given, the VMM's default */
	int error_policy, rerror_policy;	/* conf_disk_error_policy, likewise */
	char *source;		/* <source file=> or <source dev=> */
	char *target;		/* vda, vdb, ... */
	bool readonly;
	bool shareable;		/* <shareable/>: other VMs may open the image too */
	char *serial;
	char *alias;		/* <alias name=>: see domain_def_assign_aliases() */
};

struct domain_net {
	int type;		/* conf_net_type */
	unsigned char mac[6];
	char *source;		/* bridge or network name; NULL for ethernet */
	char *ifname;		/* <target dev=> */
	bool ifname_generated;	/* libvirt's reserved 'vnet' prefix: not kept in inactive XML */
	int managed;		/* conf_tristate: <target managed=> */
	unsigned mtu;		/* 0: not given */
	char *alias;
};

struct domain_chr {
	int type;		/* conf_chr_type */
	char *path;		/* file, unix socket; for pty the live /dev/pts/N */
	int unix_mode;		/* 0 bind, 1 connect */
	char *log_file;		/* <log file=> (nova's console log) */
	int log_append;		/* conf_tristate */
	int port;		/* target port */
	int target;		/* consoles: conf_console_target */
	char *alias;
};

struct domain_controller {
	int type;		/* conf_controller_type */
	int model;		/* index into conf_usb_model / conf_pci_model */
	bool implicit;		/* added by the parser, omitted in migratable XML */
	char *alias;
};

struct domain_timer {
	bool given;
	int present;		/* conf_tristate */
	int tickpolicy;		/* -1: not given */
};

struct domain_def {
	int id;			/* -1 when not running (live-only) */
	char *name;
	unsigned char uuid[16];
	char *title;
	char *description;
	xmlDocPtr metadata;	/* <metadata> copy, each child carrying its namespace */

	unsigned long long memory_kib;		/* <memory> */
	unsigned long long current_memory_kib;	/* <currentMemory> */
	unsigned long long max_memory_kib;	/* <maxMemory>, 0 when absent */
	unsigned max_memory_slots;

	/* <memtune>, KiB; 0: not given (libvirt's "unlimited" is not kept). */
	unsigned long long mem_hard_limit_kib, mem_soft_limit_kib, mem_swap_hard_limit_kib;

	unsigned vcpus;		/* maximum */
	/* <cputune>: applied to the run's cgroup; 0: not given. */
	unsigned long long cpu_shares;
	unsigned long long cpu_period;	/* microseconds */
	long long cpu_quota;		/* microseconds; -1: unlimited */
	unsigned vcpus_current;

	/* <sysinfo type='smbios'>: [group][entry], NULL where not given; the
	 * groups and entry names are the tables of conf_sysinfo_groups. */
	char *sysinfo[SYSINFO_GROUPS][SYSINFO_MAX_ENTRIES];
	char **oem_strings; size_t noem_strings;	/* <oemStrings> */
	bool has_sysinfo;

	char *machine;
	char *kernel, *initrd, *cmdline;
	bool boot_hd;		/* <boot dev='hd'/> */
	bool smbios_sysinfo;	/* <smbios mode='sysinfo'/> */
	/* <smbios mode='emulate'/>: kept to be shown; the same VM as no <smbios>. */
	bool smbios_emulate;

	bool acpi, apic;
	bool vmport_off;
	int vmcoreinfo;		/* conf_tristate: <vmcoreinfo state=> */

	int cpu_mode;		/* conf_cpu_mode */
	int cpu_check;		/* index in conf_cpu_check */
	int cpu_migratable;	/* conf_tristate */
	unsigned sockets, dies, cores, threads;	/* 0: no <topology> */

	int clock_offset;
	struct domain_timer timers[TIMER_LAST];
	int timer_order[TIMER_LAST], ntimers;	/* as given, for a faithful round trip */

	int on_poweroff, on_reboot, on_crash;	/* conf_lifecycle */
	bool pm_suspend_to_mem_off, pm_suspend_to_disk_off;

	char *emulator;
	struct domain_disk *disks; size_t ndisks;
	struct domain_controller *controllers; size_t ncontrollers;
	struct domain_net *nets; size_t nnets;
	struct domain_chr *serials; size_t nserials;
	struct domain_chr *consoles; size_t nconsoles;
	bool nosharepages;	/* <memoryBacking><nosharepages/>: no KSM */
	bool mem_locked;	/* <memoryBacking><locked/>: mlock */
	bool mem_discard;	/* <memoryBacking><discard/>: kvmm's way anyway */
	/* <memoryBacking><hugepages>: the page size in KiB (the host's
	 * default when no <page> names one), 0 without hugepages. */
	unsigned long long hugepage_kib;
	bool hugepage_page;	/* ... given as <page size=...> */
	int balloon_model;	/* conf_balloon_model */
	unsigned balloon_period;	/* <stats period=>, 0: not given */
	int balloon_autodeflate;	/* TRI_*: autodeflate= */
	int balloon_free_page_reporting;	/* TRI_*: freePageReporting= */
	char *balloon_alias;
	struct domain_rng { int source; char *alias; } *rngs; size_t nrngs;
};

/* Options of a parse; the daemon fills them from its configuration. */
struct domain_parse_opts {
	const char *default_emulator;	/* when <emulator> is absent; may be NULL */
	bool status;		/* a run's status XML: the disks' node indexes
				 * and the chains they number are the run's */
};

/* Parses, completes and validates XML.  On failure reports the error
 * (drv_error_report) and returns NULL. */
struct domain_def *domain_def_parse_string(const char *xml, const struct domain_parse_opts *opts);
void domain_def_free(struct domain_def *def);

/* Formats DEF; FLAGS are libvirt's VIR_DOMAIN_XML_SECURE, _INACTIVE and
 * _MIGRATABLE (others are refused).  Returns a g_malloc'ed string, or NULL
 * after reporting. */
char *domain_def_format(const struct domain_def *def, unsigned int flags);

/* Device aliases (<alias name=>), as libvirt's: a user alias ('ua-' then
 * letters, digits, '_' or '-') belongs to the definition and shows in
 * inactive XML too; the others belong to a run, assigned when it starts
 * (the names libvirt's qemu driver gives: virtio-disk0, net0, serial0,
 * console1, usb, pci.0, balloon0, rng0), kept in its status file and shown
 * in live XML only. */
bool domain_alias_is_user(const char *alias);
/* Whether ALIAS may be given in XML: a user alias, or (STATUS: a run's
 * status file) any name libvirt's schema allows. */
bool domain_alias_valid(const char *alias, bool status);
/* Gives every device without an alias the run's; the same definition
 * always gets the same names (an adopted run's are made again alike). */
void domain_def_assign_aliases(struct domain_def *def);
/* Drops the run's aliases, keeping the user's. */
void domain_def_forget_aliases(struct domain_def *def);
/* Whether any device of DEF has ALIAS. */
bool domain_def_has_alias(const struct domain_def *def, const char *alias);
/* Refuses a user alias given twice, as libvirt does. */
int domain_def_check_aliases(const struct domain_def *def);

/* Random bytes for generated UUIDs and MAC addresses.  The default reads
 * getrandom(2); tests install a seeded source to get stable output. */
typedef void (*domain_random_fn)(unsigned char *buf, size_t len);
void domain_conf_set_random(domain_random_fn fn);
void domain_random_bytes(unsigned char *buf, size_t len);

/* UUID text <-> bytes, as libvirt spells them (32 hex digits, dashes
 * optional on input; lowercase 8-4-4-4-12 on output). */
int domain_uuid_parse(const char *s, unsigned char uuid[16]);
void domain_uuid_format(const unsigned char uuid[16], char out[37]);
void domain_uuid_generate(unsigned char uuid[16]);
int domain_mac_parse(const char *s, unsigned char mac[6]);
void domain_mac_generate(unsigned char mac[6]);

/* Internal, between the parse and validate files: defaults libvirt would
 * make explicit, then the checks that span several elements. */
int domain_def_postparse(struct domain_def *def, const struct domain_parse_opts *opts);
int domain_def_validate(const struct domain_def *def);

#endif
