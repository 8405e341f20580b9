/* After the parse: the defaults libvirt would show explicitly in dumpxml,
 * then the checks that span several elements.  Values of single attributes
 * are checked while parsing, against domain_tables.c. */
#include <limits.h>
#include <string.h>

#include <glib.h>

#include "domain_conf.h"
#include "error.h"

#define VIR_FROM_THIS VIR_FROM_DOMAIN

static void add_controller(struct domain_def *def, int type, int model)
{
	for (size_t i = 0; i < def->ncontrollers; i++)
		if (def->controllers[i].type == type)
			return;
	def->controllers = g_renew(struct domain_controller, def->controllers, def->ncontrollers + 1);
	def->controllers[def->ncontrollers++] = (struct domain_controller){
		.type = type, .model = model, .implicit = true };
}

static int ctrl_cmp(const void *a, const void *b)
{
	return ((const struct domain_controller *)a)->type - ((const struct domain_controller *)b)->type;
}

static void chr_copy(struct domain_chr *dst, const struct domain_chr *src)
{
	*dst = *src;
	dst->path = g_strdup(src->path);
	dst->log_file = g_strdup(src->log_file);
	dst->alias = g_strdup(src->alias);
}

static bool chr_same_source(const struct domain_chr *a, const struct domain_chr *b)
{
	return a->type == b->type && g_strcmp0(a->path, b->path) == 0 &&
	       g_strcmp0(a->log_file, b->log_file) == 0 && a->log_append == b->log_append;
}

/* libvirt keeps a serial console twice: as <serial> port 0 and as the first
 * <console> (target type 'serial' or none), both describing the same
 * device.  Each is completed from the other; as in libvirt, a console that
 * aliases an existing <serial> is that port, whatever source it gave
 * (nova writes <console type='pty'/> beside a logged <serial type='pty'>),
 * and is formatted back as a copy of it. */
static int serial_console(struct domain_def *def)
{
	struct domain_chr *con0 = def->nconsoles ? &def->consoles[0] : NULL;

	if (con0 && con0->target == CONSOLE_SERIAL) {
		if (!def->nserials) {
			def->serials = g_new0(struct domain_chr, 1);
			chr_copy(&def->serials[0], con0);
			def->serials[0].port = 0;
			def->nserials = 1;
		} else if (!chr_same_source(con0, &def->serials[0])) {
			g_free(con0->path);
			g_free(con0->log_file);
			g_free(con0->alias);
			chr_copy(con0, &def->serials[0]);
			con0->target = CONSOLE_SERIAL;
		}
		con0->port = def->serials[0].port;
		/* One device, one alias: the serial's. */
		g_free(con0->alias);
		con0->alias = g_strdup(def->serials[0].alias);
	} else if (def->nserials) {
		def->consoles = g_renew(struct domain_chr, def->consoles, def->nconsoles + 1);
		memmove(def->consoles + 1, def->consoles, def->nconsoles * sizeof(*def->consoles));
		def->nconsoles++;
		chr_copy(&def->consoles[0], &def->serials[0]);
		def->consoles[0].target = CONSOLE_SERIAL;
	}
	for (size_t i = 1; i < def->nconsoles; i++) {
		if (def->consoles[i].target == CONSOLE_SERIAL) {
			drv_error_report(VIR_ERR_CONFIG_UNSUPPORTED,
					 "only the first <console> can be the serial port in kvmm; use <target type='virtio'/> for more consoles");
			return -1;
		}
		if (def->consoles[i].port < 0)
			def->consoles[i].port = i;
	}
	if (def->nconsoles && def->consoles[0].port < 0)
		def->consoles[0].port = 0;
	return 0;
}

static unsigned long long round_memory(unsigned long long kib)
{
	if (kib > CONF_MAX_MEMORY_KIB)
		return kib;
	return (kib + CONF_MEMORY_ALIGN_KIB - 1) / CONF_MEMORY_ALIGN_KIB * CONF_MEMORY_ALIGN_KIB;
}

int domain_def_postparse(struct domain_def *def, const struct domain_parse_opts *opts)
{
	if (!def->emulator && opts->default_emulator)
		def->emulator = g_strdup(opts->default_emulator);
	/* Node indexes belong to a run, as in libvirt (parsed from status
	 * XML only): there, the chain they number is the run's, read from
	 * the images or not, and the definition is kept apart; elsewhere
	 * (a running domain's dumpxml defined again) they mean nothing. */
	/* So are aliases but the user's, as in libvirt. */
	if (!opts->status)
		domain_def_forget_aliases(def);
	for (size_t i = 0; i < def->ndisks; i++) {
		struct domain_disk *d = &def->disks[i];

		if (opts->status && d->index) {
			d->nbacking_given = 0;
			d->backing_end = false;
			continue;
		}
		d->index = 0;
		for (size_t j = 0; j < d->nbacking; j++)
			d->backing[j].index = 0;
	}
	if (!def->machine)
		def->machine = g_strdup(conf_enum_name(&conf_machine, 0));
	/* kvmm's machine always has ACPI and APICs (CPUs are found through the
	 * MADT): show them rather than let the XML suggest otherwise. */
	def->acpi = def->apic = true;
	/* libvirt's default boot device for hvm; with a <kernel> it is moot. */
	def->boot_hd = true;
	/* The guest sees the host's CPUID: host-passthrough, shown explicitly,
	 * with libvirt's defaults for check= and migratable=. */
	if (def->cpu_check < 0)
		def->cpu_check = def->cpu_mode == CPU_HOST_MODEL ? 1 : 0;
	if (def->cpu_migratable == TRI_ABSENT && def->cpu_mode != CPU_HOST_MODEL)
		def->cpu_migratable = TRI_ON;
	/* kvmm gives a guest whole pages (vm_limits.h): both sizes are
	 * rounded up to them here, right after the parse, so the definition
	 * and dumpxml show what the guest gets and kvmm never refuses the
	 * size at start.  libvirt's qemu driver does the like when a domain
	 * starts (qemuDomainAlignMemorySizes: <memory> up to 1 MiB on x86,
	 * in the live definition only).  Sizes past the maximum are left for
	 * the validator to refuse as given. */
	def->memory_kib = round_memory(def->memory_kib);
	def->current_memory_kib = round_memory(def->current_memory_kib);
	/* As libvirt: no currentMemory means all of it, and it never exceeds
	 * <memory>. */
	if (!def->current_memory_kib || def->current_memory_kib > def->memory_kib)
		def->current_memory_kib = def->memory_kib;
	if (!def->vcpus_current)
		def->vcpus_current = def->vcpus;
	add_controller(def, CTRL_USB, 0);
	add_controller(def, CTRL_PCI, 0);
	qsort(def->controllers, def->ncontrollers, sizeof(*def->controllers), ctrl_cmp);
	if (def->balloon_model < 0)
		/* libvirt adds a virtio balloon by default; kvmm has none
		 * yet, so its default is the honest one. */
		def->balloon_model = BALLOON_NONE;
	return serial_console(def);
}

static int validate_memory_cpus(const struct domain_def *def)
{
	if (def->max_memory_kib) {
		drv_error_report(VIR_ERR_CONFIG_UNSUPPORTED,
				 "<maxMemory> (memory hotplug) is not supported by kvmm; remove it and size <memory>");
		return -1;
	}
	if (def->memory_kib < CONF_MIN_MEMORY_KIB || def->memory_kib > CONF_MAX_MEMORY_KIB) {
		drv_error_report(VIR_ERR_CONFIG_UNSUPPORTED,
				 "memory size %llu KiB is not supported by kvmm; use %llu MiB to %llu TiB",
				 def->memory_kib, CONF_MIN_MEMORY_KIB >> 10, CONF_MAX_MEMORY_KIB >> 30);
		return -1;
	}
	if (def->vcpus > CONF_MAX_VCPUS) {
		drv_error_report(VIR_ERR_CONFIG_UNSUPPORTED,
				 "%u vcpus are not supported by kvmm; the maximum is %d",
				 def->vcpus, CONF_MAX_VCPUS);
		return -1;
	}
	if (def->vcpus_current > def->vcpus) {
		drv_error_report(VIR_ERR_INTERNAL_ERROR,
				 "maxvcpus must not be less than current vcpus (%u < %u)",
				 def->vcpus, def->vcpus_current);
		return -1;
	}
	if (def->sockets &&
	    (unsigned long long)def->sockets * def->dies * def->cores * def->threads != def->vcpus) {
		drv_error_report(VIR_ERR_XML_DETAIL,
				 "Maximum CPUs (%u) do not match the CPU topology (%u sockets x %u dies x %u cores x %u threads)",
				 def->vcpus, def->sockets, def->dies, def->cores, def->threads);
		return -1;
	}
	return 0;
}

/* The value restrictions of libvirt's schema (domaincommon.rng) for what we
 * format: anything we accept must come out valid. */
static bool chars_ok(const char *s, const char *extra)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (!g_ascii_isalnum(*s) && !strchr(extra, *s))
			return false;
	return true;
}

static int check_path(const char *what, const char *path)
{
	if (path && (path[0] != '/' || strpbrk(path, "\r\n"))) {
		drv_error_report(VIR_ERR_XML_ERROR, "%s '%s' must be an absolute path on one line", what, path);
		return -1;
	}
	return 0;
}

static int check_chr(const char *elem, const struct domain_chr *c)
{
	if (c->type != CHR_PTY && check_path(elem, c->path) < 0)
		return -1;
	return check_path("log file", c->log_file);
}

static int validate_paths(const struct domain_def *def)
{
	if (check_path("kernel", def->kernel) < 0 || check_path("initrd", def->initrd) < 0 ||
	    check_path("emulator", def->emulator) < 0)
		return -1;
	for (size_t i = 0; i < def->ndisks; i++) {
		if (check_path("disk source", def->disks[i].source) < 0)
			return -1;
		for (size_t j = 0; j < def->disks[i].nbacking; j++)
			if (check_path("backing store source", def->disks[i].backing[j].path) < 0)
				return -1;
	}
	for (size_t i = 0; i < def->nserials; i++)
		if (check_chr("serial source path", &def->serials[i]) < 0)
			return -1;
	for (size_t i = 0; i < def->nconsoles; i++)
		if (check_chr("console source path", &def->consoles[i]) < 0)
			return -1;
	return 0;
}

/* The longest name whose files fit NAME_MAX: the longest is the
 * definition's temporary file, ".NAME.xml.new-XXXXXX" (domain_persist.c);
 * NAME.xml, the autostart link, NAME.log and the status file (a UUID) are
 * shorter. */
#define NAME_LEN_MAX (NAME_MAX - (sizeof(".") - 1) - (sizeof(".xml.new-XXXXXX") - 1))

static int validate_names(const struct domain_def *def)
{
	if (strpbrk(def->name, "\r\n") || (def->title && strpbrk(def->title, "\r\n"))) {
		drv_error_report(VIR_ERR_XML_ERROR, "domain name and title can't contain newlines");
		return -1;
	}
	/* CLIENT: refused here, not as a failed file creation at define. */
	if (strlen(def->name) > NAME_LEN_MAX) {
		drv_error_report(VIR_ERR_XML_ERROR,
				 "domain name is %zu bytes long; it names files, so at most %zu",
				 strlen(def->name), (size_t)NAME_LEN_MAX);
		return -1;
	}
	for (size_t i = 0; i < def->ndisks; i++) {
		const struct domain_disk *d = &def->disks[i];
		if (d->serial && !chars_ok(d->serial, "_.+- ")) {
			drv_error_report(VIR_ERR_XML_ERROR,
					 "disk serial '%s' may contain only letters, digits, spaces and '_.+-'", d->serial);
			return -1;
		}
	}
	for (size_t i = 0; i < def->nnets; i++) {
		const struct domain_net *n = &def->nets[i];
		if (n->ifname && !chars_ok(n->ifname, "_.-\\:/")) {
			drv_error_report(VIR_ERR_XML_ERROR, "invalid interface target dev '%s'", n->ifname);
			return -1;
		}
		if (n->type == NET_BRIDGE && !chars_ok(n->source, "_.-\\:/ ")) {
			drv_error_report(VIR_ERR_XML_ERROR, "invalid bridge name '%s'", n->source);
			return -1;
		}
	}
	return 0;
}

static int validate_devices(const struct domain_def *def)
{
	for (size_t i = 0; i < def->ndisks; i++) {
		const char *t = def->disks[i].target;
		if (!g_str_has_prefix(t, "vd") || !chars_ok(t + 2, "_")) {
			drv_error_report(VIR_ERR_XML_ERROR,
					 "disk target '%s' does not name a virtio disk; use dev='vda', 'vdb', ...", t);
			return -1;
		}
		for (size_t j = 0; j < i; j++) {
			if (!strcmp(def->disks[j].target, t)) {
				drv_error_report(VIR_ERR_XML_ERROR, "target '%s' duplicated for disk sources '%s' and '%s'",
						 t, def->disks[j].source, def->disks[i].source);
				return -1;
			}
		}
	}
	if (def->nserials > CONF_SERIAL_PORTS || (def->nserials && def->serials[0].port != 0)) {
		const struct domain_chr *c = &def->serials[def->nserials > 1 ? 1 : 0];
		drv_error_report(VIR_ERR_CONFIG_UNSUPPORTED,
				 "serial port %d is not supported by kvmm; it has one serial port (COM1), port 0",
				 c->port);
		return -1;
	}
	return 0;
}

int domain_def_validate(const struct domain_def *def)
{
	if (domain_def_check_aliases(def) < 0)
		return -1;
	if (!def->kernel || !*def->kernel) {
		drv_error_report(VIR_ERR_CONFIG_UNSUPPORTED,
				 "kvmm boots a kernel directly: add <kernel> to <os> (firmware, disk and network boot are not supported)");
		return -1;
	}
	if (def->smbios_sysinfo && !def->has_sysinfo) {
		drv_error_report(VIR_ERR_XML_ERROR, "Domain requires <sysinfo> element if <smbios mode='sysinfo'/> is used");
		return -1;
	}
	if (def->sysinfo[SYSINFO_SYSTEM][SYSINFO_SYSTEM_UUID]) {
		unsigned char u[16];
		if (domain_uuid_parse(def->sysinfo[SYSINFO_SYSTEM][SYSINFO_SYSTEM_UUID], u) < 0 ||
		    memcmp(u, def->uuid, 16)) {
			drv_error_report(VIR_ERR_CONFIG_UNSUPPORTED,
					 "UUID mismatch between <uuid> and <sysinfo>");
			return -1;
		}
	}
	if (validate_memory_cpus(def) < 0 || validate_devices(def) < 0 ||
	    validate_paths(def) < 0 || validate_names(def) < 0)
		return -1;
	return 0;
}
