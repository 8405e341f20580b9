/* Domain XML -> struct domain_def: the document and everything outside
 * <devices> (devices are in domain_parse_devices.c). */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>
#include <libxml/parser.h>

#include "domain_conf.h"
#include "domain_parse.h"
#include "domain_xml.h"
#include "error.h"

#define VIR_FROM_THIS VIR_FROM_DOMAIN

/* libvirt's scaled integers: no unit means the element's default scale;
 * 'b'/'bytes'; K, M, G, T, P, E alone or with 'iB' are powers of 1024, with
 * 'B' powers of 1000 (case-insensitive). */
static int scale_of(const char *unit, unsigned long long def, unsigned long long *scale)
{
	static const char prefixes[] = "kmgtpe";
	const char *p;
	unsigned long long base;

	if (!unit || !*unit) {
		*scale = def;
		return 0;
	}
	if (!g_ascii_strcasecmp(unit, "b") || !g_ascii_strcasecmp(unit, "byte") ||
	    !g_ascii_strcasecmp(unit, "bytes")) {
		*scale = 1;
		return 0;
	}
	p = strchr(prefixes, g_ascii_tolower(unit[0]));
	if (!p || !*p)
		goto bad;
	if (!unit[1] || !g_ascii_strcasecmp(unit + 1, "iB"))
		base = 1024;
	else if ((unit[1] == 'b' || unit[1] == 'B') && !unit[2])
		base = 1000;
	else
		goto bad;
	*scale = 1;
	for (const char *q = prefixes; q <= p; q++)
		*scale *= base;
	return 0;
 bad:
	drv_error_report(VIR_ERR_INVALID_ARG, "unknown suffix '%s'", unit);
	return -1;
}

/* A memory size element (<memory unit='MiB'>512</memory>) in KiB, rounded
 * up as libvirt does. */
int parse_memory(xmlNodePtr node, unsigned long long *kib)
{
	g_autofree char *unit = xml_attr(node, "unit");
	g_autofree char *text = xml_text(node);
	unsigned long long n, scale;
	char *end;

	g_strstrip(text);
	errno = 0;
	n = strtoull(text, &end, 10);
	if (!*text || *end || text[0] == '-' || errno) {
		drv_error_report(VIR_ERR_XML_ERROR, "could not parse element <%s>: invalid value '%s'",
				 (const char *)node->name, text);
		return -1;
	}
	if (scale_of(unit, 1024, &scale) < 0)
		return -1;
	if (n && scale > ~0ULL / n) {
		drv_error_report(VIR_ERR_OVERFLOW, "value too large: %s%s", text, unit ? unit : "");
		return -1;
	}
	*kib = (n * scale + 1023) / 1024;
	return 0;
}

static int parse_uuid(xmlNodePtr root, struct domain_def *def)
{
	xmlNodePtr n = xml_child(root, "uuid");
	g_autofree char *s = NULL;

	if (!n) {
		domain_uuid_generate(def->uuid);
		return 0;
	}
	s = xml_text(n);
	if (domain_uuid_parse(s, def->uuid) < 0) {
		drv_error_report(VIR_ERR_INTERNAL_ERROR, "malformed uuid element");
		return -1;
	}
	return 0;
}

static int parse_identity(xmlNodePtr root, struct domain_def *def)
{
	g_autofree char *type = NULL, *id = NULL;
	xmlNodePtr n;

	type = xml_attr(root, "type");
	if (!type) {
		drv_error_report(VIR_ERR_XML_ERROR, "Missing 'type' attribute in 'domain'");
		return -1;
	}
	if (conf_enum_lookup(&conf_domain_type, type) < 0) {
		conf_enum_refuse(&conf_domain_type, type);
		return -1;
	}
	def->id = -1;
	id = xml_attr(root, "id");
	if (id) {
		char *end;
		long v = strtol(id, &end, 10);
		if (!*id || *end || v < -1 || v > 0x7fffffff) {
			drv_error_report(VIR_ERR_XML_ERROR, "invalid domain id '%s'", id);
			return -1;
		}
		def->id = v;
	}

	n = xml_child(root, "name");
	if (n)
		def->name = xml_text(n);
	if (!def->name || !*g_strstrip(def->name)) {
		drv_error_report(VIR_ERR_NO_NAME, "missing name information");
		return -1;
	}
	if (strchr(def->name, '/')) {
		drv_error_report(VIR_ERR_XML_DETAIL, "invalid char in name: /");
		return -1;
	}
	if (parse_uuid(root, def) < 0)
		return -1;
	if ((n = xml_child(root, "title"))) {
		def->title = xml_text(n);
		if (strchr(def->title, '\n')) {
			drv_error_report(VIR_ERR_XML_ERROR, "Domain title can't contain newlines");
			return -1;
		}
	}
	if ((n = xml_child(root, "description")))
		def->description = xml_text(n);
	return 0;
}

/* Drops the indentation between elements so that the copy is formatted
 * canonically (text inside leaf elements is data and stays). */
static void strip_blanks(xmlNodePtr node)
{
	bool has_elements = false;
	xmlNodePtr c, next;

	for (c = node->children; c; c = c->next)
		has_elements |= c->type == XML_ELEMENT_NODE;
	for (c = node->children; c; c = next) {
		next = c->next;
		if (c->type == XML_ELEMENT_NODE) {
			strip_blanks(c);
		} else if (has_elements && c->type == XML_TEXT_NODE && xmlIsBlankNode(c)) {
			xmlUnlinkNode(c);
			xmlFreeNode(c);
		}
	}
}

/* <metadata> is kept as a copy in a document of its own, so that each child
 * carries its namespace declaration with it when formatted (libvirt's API
 * addresses metadata by namespace URI). */
static int parse_metadata(xmlNodePtr root, struct domain_def *def)
{
	xmlNodePtr md = xml_child(root, "metadata");
	xmlNodePtr copy;

	if (!md)
		return 0;
	for (xmlNodePtr c = md->children; c; c = c->next) {
		if (c->type == XML_ELEMENT_NODE && !c->ns) {
			drv_error_report(VIR_ERR_XML_ERROR,
					 "metadata element <%s> has no namespace; declare one, e.g. <app:%s xmlns:app='https://example.org/app'>",
					 (const char *)c->name, (const char *)c->name);
			return -1;
		}
		if ((c->type == XML_TEXT_NODE || c->type == XML_CDATA_SECTION_NODE) &&
		    !xmlIsBlankNode(c)) {
			drv_error_report(VIR_ERR_XML_ERROR, "unexpected text in <metadata>");
			return -1;
		}
	}
	def->metadata = xmlNewDoc(BAD_CAST "1.0");
	copy = xmlNewDocNode(def->metadata, NULL, BAD_CAST "metadata", NULL);
	xmlDocSetRootElement(def->metadata, copy);
	for (xmlNodePtr c = md->children; c; c = c->next) {
		if (c->type != XML_ELEMENT_NODE)
			continue;
		/* Copied without a parent, so the namespaces it uses are declared
		 * on the copied element itself. */
		xmlNodePtr cc = xmlDocCopyNode(c, def->metadata, 1);
		xmlAddChild(copy, cc);
		xmlReconciliateNs(def->metadata, cc);
		strip_blanks(cc);
	}
	return 0;
}

/* The host's default huge page size in KiB (Hugepagesize in
 * /proc/meminfo); x86's 2 MiB if the kernel does not say. */
static unsigned long long host_hugepage_kib(void)
{
	g_autofree char *text = NULL;
	const char *p;
	unsigned long long kib = 0;

	if (g_file_get_contents("/proc/meminfo", &text, NULL, NULL) &&
	    (p = strstr(text, "\nHugepagesize:")))
		kib = g_ascii_strtoull(p + strlen("\nHugepagesize:"), NULL, 10);
	return kib ? kib : 2048;
}

/* <hugepages>, with at most one <page size=.. unit=..> (a nodeset is left
 * unconsumed: kvmm's guest has one NUMA node, so it is refused by name).
 * A size the host has no pool of is refused here, at define; whether the
 * pool has enough free pages is kvmm's to check at start. */
static int parse_hugepages(xmlNodePtr hp, struct domain_def *def)
{
	xmlNodePtr page = xml_child(hp, "page");
	g_autofree char *dir = NULL;

	def->hugepage_kib = host_hugepage_kib();
	if (page) {
		g_autofree char *size = xml_attr_required(page, "size");
		g_autofree char *unit = xml_attr(page, "unit");
		unsigned long long n, scale;
		char *end;

		if (!size)
			return -1;
		errno = 0;
		n = strtoull(size, &end, 10);
		if (!*size || *end || size[0] == '-' || errno || !n) {
			drv_error_report(VIR_ERR_XML_ERROR, "unable to parse size attribute '%s' of hugepage", size);
			return -1;
		}
		if (scale_of(unit, 1024, &scale) < 0)
			return -1;
		if (scale > ~0ULL / n) {
			drv_error_report(VIR_ERR_OVERFLOW, "value too large: %s%s", size, unit ? unit : "");
			return -1;
		}
		def->hugepage_kib = n * scale / 1024;
		def->hugepage_page = true;
	}
	dir = g_strdup_printf("/sys/kernel/mm/hugepages/hugepages-%llukB", def->hugepage_kib);
	if (!g_file_test(dir, G_FILE_TEST_IS_DIR)) {
		drv_error_report(VIR_ERR_CONFIG_UNSUPPORTED,
				 "hugepage size %llu KiB is not available on this host (no %s)",
				 def->hugepage_kib, dir);
		return -1;
	}
	return 0;
}

/* libvirt's "unlimited" (VIR_DOMAIN_MEMORY_PARAM_UNLIMITED, in KiB): a
 * limit at or above it is no limit. */
#define MEMTUNE_UNLIMITED_KIB 9007199254740991ULL

/* <memtune>: hard_limit, soft_limit, swap_hard_limit; the rest
 * (min_guarantee) is refused by name, as kvmm's cgroups cannot honour it. */
static int parse_memtune(xmlNodePtr root, struct domain_def *def)
{
	static const char *const names[] = { "hard_limit", "soft_limit", "swap_hard_limit" };
	unsigned long long *const vals[] = { &def->mem_hard_limit_kib, &def->mem_soft_limit_kib,
					     &def->mem_swap_hard_limit_kib };
	xmlNodePtr mt = xml_child(root, "memtune"), n;

	if (!mt)
		return 0;
	for (size_t i = 0; i < G_N_ELEMENTS(names); i++) {
		if (!(n = xml_child(mt, names[i])))
			continue;
		if (parse_memory(n, vals[i]) < 0)
			return -1;
		if (*vals[i] >= MEMTUNE_UNLIMITED_KIB)
			*vals[i] = 0;
	}
	return 0;
}

static int parse_ull_text(xmlNodePtr n, long long min, long long max, long long *out)
{
	g_autofree char *text = xml_text(n);
	char *end;

	g_strstrip(text);
	errno = 0;
	*out = strtoll(text, &end, 10);
	if (!*text || *end || errno || *out < min || *out > max) {
		drv_error_report(VIR_ERR_XML_ERROR, "invalid value '%s' for <cputune><%s>", text,
				 (const char *)n->name);
		return -1;
	}
	return 0;
}

/* <cputune>: shares, period, quota (libvirt's ranges); emulator_*,
 * global_*, iothread_* and pinning are refused by name. */
static int parse_cputune(xmlNodePtr root, struct domain_def *def)
{
	xmlNodePtr ct = xml_child(root, "cputune"), n;
	long long v;

	if (!ct)
		return 0;
	if ((n = xml_child(ct, "shares"))) {
		if (parse_ull_text(n, 0, 262144, &v) < 0)
			return -1;
		def->cpu_shares = v;
	}
	if ((n = xml_child(ct, "period"))) {
		if (parse_ull_text(n, 0, 1000000, &v) < 0)
			return -1;
		if (v && v < 1000) {
			drv_error_report(VIR_ERR_CONFIG_UNSUPPORTED,
					 "Value of cputune 'period' must be in range [1000, 1000000]");
			return -1;
		}
		def->cpu_period = v;
	}
	if ((n = xml_child(ct, "quota"))) {
		if (parse_ull_text(n, LLONG_MIN, 17592186044415LL, &v) < 0)
			return -1;
		if (v > 0 && v < 1000) {
			drv_error_report(VIR_ERR_CONFIG_UNSUPPORTED,
					 "Value of cputune 'quota' must be in range [1000, 17592186044415] or less than 0");
			return -1;
		}
		def->cpu_quota = v < 0 ? -1 : v;
	}
	return 0;
}

static int parse_memory_vcpu(xmlNodePtr root, struct domain_def *def)
{
	xmlNodePtr n;

	if ((n = xml_child(root, "memory")) && parse_memory(n, &def->memory_kib) < 0)
		return -1;
	if ((n = xml_child(root, "currentMemory")) && parse_memory(n, &def->current_memory_kib) < 0)
		return -1;
	/* Of memoryBacking, kvmm has KSM (on unless nosharepages), locked,
	 * discard and hugepages; the rest is refused by name. */
	if ((n = xml_child(root, "memoryBacking"))) {
		def->nosharepages = xml_child(n, "nosharepages") != NULL;
		def->mem_locked = xml_child(n, "locked") != NULL;
		/* Guest RAM is anonymous memory, gone when kvmm exits: what
		 * discard asks of a memory backend is what kvmm always does. */
		def->mem_discard = xml_child(n, "discard") != NULL;
		xmlNodePtr hp = xml_child(n, "hugepages");

		if (hp && parse_hugepages(hp, def) < 0)
			return -1;
	}
	if ((n = xml_child(root, "maxMemory"))) {
		if (parse_memory(n, &def->max_memory_kib) < 0 ||
		    xml_attr_uint(n, "slots", &def->max_memory_slots) < 0)
			return -1;
	}
	if (!def->memory_kib) {
		drv_error_report(VIR_ERR_XML_ERROR,
				 "Memory size must be specified via <memory> or in the <numa> configuration");
		return -1;
	}

	if (parse_memtune(root, def) < 0 || parse_cputune(root, def) < 0)
		return -1;

	def->vcpus = 1;		/* libvirt's default when <vcpu> is absent */
	if ((n = xml_child(root, "vcpu"))) {
		g_autofree char *text = xml_text(n);
		char *end;
		int placement;
		unsigned long v;

		g_strstrip(text);
		errno = 0;
		v = strtoul(text, &end, 10);
		if (!*text || *end || text[0] == '-' || errno || v == 0 || v > 0xffffffffUL) {
			drv_error_report(VIR_ERR_XML_ERROR, "maximum vcpus count must be an integer greater than 0, not '%s'", text);
			return -1;
		}
		def->vcpus = v;
		if (xml_attr_enum(n, "placement", &conf_vcpu_placement, 0, &placement) < 0 ||
		    xml_attr_uint(n, "current", &def->vcpus_current) < 0)
			return -1;
	}
	return 0;
}

/* libvirt's check of a BIOS date: mm/dd/yy or mm/dd/yyyy. */
static bool bios_date_ok(const char *s)
{
	unsigned month, day, year;
	int n = -1;

	if (sscanf(s, "%2u/%2u/%4u%n", &month, &day, &year, &n) != 3 || s[n] ||
	    !g_ascii_isdigit(s[0]))
		return false;
	return month >= 1 && month <= 12 && day >= 1 && day <= 31 && (year < 100 || year >= 1900);
}

/* SMBIOS type 0 keeps the BIOS release as two bytes: "MAJOR.MINOR". */
static bool bios_release_ok(const char *s)
{
	unsigned major, minor;
	int n = -1;

	return sscanf(s, "%3u.%3u%n", &major, &minor, &n) == 2 && !s[n] && g_ascii_isdigit(s[0]) &&
	       major <= 255 && minor <= 255;
}

static int parse_sysinfo_group(xmlNodePtr n, struct domain_def *def, int g)
{
	const struct conf_sysinfo_group *grp = &conf_sysinfo_groups[g];
	xmlNodePtr node = xml_child(n, grp->element);

	if (!node)
		return 0;
	for (xmlNodePtr e = node->children; e; e = e->next) {
		int which;
		if (!xml_is_element(e, "entry"))
			continue;
		xml_take(e);
		if (xml_attr_enum(e, "name", grp->entries, XML_REQUIRED, &which) < 0)
			return -1;
		if (def->sysinfo[g][which]) {
			drv_error_report(VIR_ERR_XML_ERROR, "sysinfo %s entry '%s' appears twice",
					 grp->element, conf_enum_name(grp->entries, which));
			return -1;
		}
		def->sysinfo[g][which] = xml_text(e);
	}
	return 0;
}

static int parse_sysinfo(xmlNodePtr root, struct domain_def *def)
{
	xmlNodePtr n = xml_child(root, "sysinfo"), oem;
	const char *date, *release;
	int type;

	if (!n)
		return 0;
	if (xml_attr_enum(n, "type", &conf_sysinfo_type, -1, &type) < 0)
		return -1;
	def->has_sysinfo = true;
	for (int g = 0; g < SYSINFO_GROUPS; g++)
		if (parse_sysinfo_group(n, def, g) < 0)
			return -1;
	if ((oem = xml_child(n, "oemStrings"))) {
		for (xmlNodePtr e = oem->children; e; e = e->next) {
			if (!xml_is_element(e, "entry"))
				continue;
			xml_take(e);
			def->oem_strings = g_renew(char *, def->oem_strings, def->noem_strings + 1);
			def->oem_strings[def->noem_strings++] = xml_text(e);
		}
	}
	date = def->sysinfo[SYSINFO_BIOS][2];
	if (date && !bios_date_ok(date)) {
		drv_error_report(VIR_ERR_XML_DETAIL, "Invalid BIOS 'date' format: %s; use mm/dd/yyyy", date);
		return -1;
	}
	release = def->sysinfo[SYSINFO_BIOS][3];
	if (release && !bios_release_ok(release)) {
		drv_error_report(VIR_ERR_XML_DETAIL,
				 "Invalid BIOS 'release' '%s'; use MAJOR.MINOR, each 0 to 255 (SMBIOS keeps two bytes)",
				 release);
		return -1;
	}
	return 0;
}

static int parse_os(xmlNodePtr root, struct domain_def *def)
{
	xmlNodePtr os = xml_child(root, "os"), n;
	int v;

	if (!os) {
		drv_error_report(VIR_ERR_XML_ERROR, "an os <type> must be specified");
		return -1;
	}
	if (!(n = xml_child(os, "type"))) {
		drv_error_report(VIR_ERR_XML_ERROR, "an os <type> must be specified");
		return -1;
	}
	if (xml_text_enum(n, &conf_os_type, &v) < 0 ||
	    xml_attr_enum(n, "arch", &conf_arch, 0, &v) < 0)
		return -1;
	def->machine = xml_attr(n, "machine");
	if (def->machine && conf_enum_lookup(&conf_machine, def->machine) < 0) {
		conf_enum_refuse(&conf_machine, def->machine);
		return -1;
	}
	if ((n = xml_child(os, "kernel")))
		def->kernel = xml_text(n);
	if ((n = xml_child(os, "initrd")))
		def->initrd = xml_text(n);
	if ((n = xml_child(os, "cmdline")))
		def->cmdline = xml_text(n);
	if ((n = xml_child(os, "boot"))) {
		if (xml_attr_enum(n, "dev", &conf_boot_dev, -1, &v) < 0)
			return -1;
		def->boot_hd = true;
	}
	if ((n = xml_child(os, "smbios"))) {
		if (xml_attr_enum(n, "mode", &conf_smbios_mode, -1, &v) < 0)
			return -1;
		def->smbios_sysinfo = v == SMBIOS_SYSINFO;
		def->smbios_emulate = v == SMBIOS_EMULATE;
	}
	return 0;
}

static int parse_features(xmlNodePtr root, struct domain_def *def)
{
	xmlNodePtr f = xml_child(root, "features"), n;
	int v;

	if (!f)
		return 0;
	def->acpi = xml_child(f, "acpi") != NULL;
	def->apic = xml_child(f, "apic") != NULL;
	if ((n = xml_child(f, "vmport"))) {
		if (xml_attr_enum(n, "state", &conf_vmport_state, -1, &v) < 0)
			return -1;
		def->vmport_off = true;
	}
	/* nova always asks for it: the guest kernel's VMCOREINFO note, found
	 * through kvmm's fw_cfg file etc/vmcoreinfo, for crash dumps. */
	if ((n = xml_child(f, "vmcoreinfo"))) {
		if (xml_attr_enum(n, "state", &conf_on_off, 0, &v) < 0)
			return -1;
		def->vmcoreinfo = v == 0 ? TRI_ON : TRI_OFF;
	}
	return 0;
}

static int parse_cpu(xmlNodePtr root, struct domain_def *def)
{
	xmlNodePtr cpu = xml_child(root, "cpu"), n;
	g_autofree char *mode = NULL, *match = NULL;
	int mig;

	def->cpu_check = -1;
	if (!cpu)
		return 0;
	mode = xml_attr(cpu, "mode");
	if (!mode || !strcmp(mode, "custom")) {
		drv_error_report(VIR_ERR_CONFIG_UNSUPPORTED,
				 "cpu mode 'custom' is not supported by kvmm (the guest sees the host CPU); use mode='host-passthrough', 'host-model' or 'maximum'");
		return -1;
	}
	if ((def->cpu_mode = conf_enum_lookup(&conf_cpu_mode, mode)) < 0) {
		conf_enum_refuse(&conf_cpu_mode, mode);
		return -1;
	}
	/* libvirt reads match='...' only in custom mode; outside it the
	 * attribute has no meaning (nova writes match='exact' with host-model). */
	match = xml_attr(cpu, "match");
	if (xml_attr_enum(cpu, "check", &conf_cpu_check, XML_OPTIONAL, &def->cpu_check) < 0 ||
	    xml_attr_enum(cpu, "migratable", &conf_on_off, XML_OPTIONAL, &mig) < 0)
		return -1;
	def->cpu_migratable = mig == 0 ? TRI_ON : mig == 1 ? TRI_OFF : TRI_ABSENT;
	if (def->cpu_migratable != TRI_ABSENT && def->cpu_mode == CPU_HOST_MODEL) {
		drv_error_report(VIR_ERR_XML_ERROR,
				 "attribute 'migratable' is only allowed with cpu mode 'host-passthrough' or 'maximum'");
		return -1;
	}
	if ((n = xml_child(cpu, "topology"))) {
		def->sockets = def->dies = def->cores = def->threads = 1;
		if (xml_attr_uint(n, "sockets", &def->sockets) < 0 ||
		    xml_attr_uint(n, "dies", &def->dies) < 0 ||
		    xml_attr_uint(n, "cores", &def->cores) < 0 ||
		    xml_attr_uint(n, "threads", &def->threads) < 0)
			return -1;
		if (!def->sockets || !def->dies || !def->cores || !def->threads) {
			drv_error_report(VIR_ERR_XML_ERROR, "CPU topology values must be greater than 0");
			return -1;
		}
	}
	return 0;
}

static int parse_timer(xmlNodePtr t, struct domain_def *def)
{
	struct domain_timer *timer;
	int name, present;

	if (xml_attr_enum(t, "name", &conf_timer_name, XML_REQUIRED, &name) < 0)
		return -1;
	timer = &def->timers[name];
	if (timer->given) {
		drv_error_report(VIR_ERR_XML_ERROR, "timer '%s' appears twice in <clock>",
				 conf_enum_name(&conf_timer_name, name));
		return -1;
	}
	timer->given = true;
	def->timer_order[def->ntimers++] = name;
	if (xml_attr_enum(t, "present", &conf_yes_no, XML_OPTIONAL, &present) < 0)
		return -1;
	timer->present = present == 0 ? TRI_ON : present == 1 ? TRI_OFF : TRI_ABSENT;
	timer->tickpolicy = -1;
	/* kvmm has no HPET: it can only be declared absent.  The PIT and RTC
	 * are always there. */
	if (name == TIMER_HPET && timer->present != TRI_OFF) {
		drv_error_report(VIR_ERR_CONFIG_UNSUPPORTED,
				 "timer 'hpet' is not supported by kvmm; use present='no' or remove the timer");
		return -1;
	}
	if (name != TIMER_HPET) {
		if (timer->present == TRI_OFF) {
			drv_error_report(VIR_ERR_CONFIG_UNSUPPORTED,
					 "timer '%s' cannot be removed in kvmm; drop present='no'",
					 conf_enum_name(&conf_timer_name, name));
			return -1;
		}
		if (xml_attr_enum(t, "tickpolicy", &conf_timer_tickpolicy, XML_OPTIONAL,
				  &timer->tickpolicy) < 0)
			return -1;
	}
	return 0;
}

static int parse_clock(xmlNodePtr root, struct domain_def *def)
{
	xmlNodePtr clock = xml_child(root, "clock");

	if (!clock)
		return 0;
	if (xml_attr_enum(clock, "offset", &conf_clock_offset, CLOCK_UTC, &def->clock_offset) < 0)
		return -1;
	for (xmlNodePtr t = clock->children; t; t = t->next) {
		if (!xml_is_element(t, "timer"))
			continue;
		xml_take(t);
		if (parse_timer(t, def) < 0)
			return -1;
	}
	return 0;
}

static int parse_lifecycle(xmlNodePtr root, const char *name, int def, int *out)
{
	xmlNodePtr n = xml_child(root, name);

	*out = def;
	return n ? xml_text_enum(n, &conf_lifecycle_action, out) : 0;
}

static int parse_pm(xmlNodePtr root, struct domain_def *def)
{
	xmlNodePtr pm = xml_child(root, "pm"), n;
	int v;

	if (!pm)
		return 0;
	if ((n = xml_child(pm, "suspend-to-mem"))) {
		if (xml_attr_enum(n, "enabled", &conf_pm_enabled, XML_REQUIRED, &v) < 0)
			return -1;
		def->pm_suspend_to_mem_off = true;
	}
	if ((n = xml_child(pm, "suspend-to-disk"))) {
		if (xml_attr_enum(n, "enabled", &conf_pm_enabled, XML_REQUIRED, &v) < 0)
			return -1;
		def->pm_suspend_to_disk_off = true;
	}
	return 0;
}

static struct domain_def *parse_root(xmlNodePtr root)
{
	struct domain_def *def = g_new0(struct domain_def, 1);

	if (!xml_is_element(root, "domain")) {
		drv_error_report(VIR_ERR_XML_ERROR, "unexpected root element <%s>, expecting <domain>",
				 (const char *)root->name);
		goto error;
	}
	/* Document order of the identifiers generated (uuid, then MACs in
	 * device order) is fixed, so seeded tests get stable output. */
	if (parse_identity(root, def) < 0 ||
	    parse_metadata(root, def) < 0 ||
	    parse_memory_vcpu(root, def) < 0 ||
	    parse_sysinfo(root, def) < 0 ||
	    parse_os(root, def) < 0 ||
	    parse_features(root, def) < 0 ||
	    parse_cpu(root, def) < 0 ||
	    parse_clock(root, def) < 0 ||
	    parse_lifecycle(root, "on_poweroff", LIFECYCLE_DESTROY, &def->on_poweroff) < 0 ||
	    parse_lifecycle(root, "on_reboot", LIFECYCLE_RESTART, &def->on_reboot) < 0 ||
	    parse_lifecycle(root, "on_crash", LIFECYCLE_DESTROY, &def->on_crash) < 0 ||
	    parse_pm(root, def) < 0 ||
	    parse_devices(root, def) < 0 ||
	    xml_refuse_unconsumed(root) < 0)
		goto error;
	return def;
 error:
	domain_def_free(def);
	return NULL;
}

/* libxml2 goes on after some errors; like libvirt, report the first one. */
struct first_error {
	int line;
	char *message;
};

static void keep_first_error(void *data, xmlErrorPtr err)
{
	xmlParserCtxtPtr ctxt = data;
	struct first_error *first = ctxt->_private;

	if (!first->message && err->level >= XML_ERR_ERROR) {
		first->line = err->line;
		first->message = g_strstrip(g_strdup(err->message ? err->message : "malformed XML"));
	}
}

/* Malformed XML is reported as libvirt does: VIR_ERR_XML_DETAIL from
 * VIR_FROM_XML, "(domain_definition):LINE: libxml2's message". */
static xmlDocPtr read_xml(const char *xml)
{
	struct first_error first = { 0, NULL };
	xmlParserCtxtPtr ctxt = xmlNewParserCtxt();
	xmlDocPtr doc;

	if (!ctxt) {
		drv_error_report_full(VIR_FROM_XML, VIR_ERR_NO_MEMORY, "out of memory");
		return NULL;
	}
	ctxt->_private = &first;
	ctxt->sax->serror = keep_first_error;
	/* No network, no entity expansion, no messages on stderr. */
	doc = xmlCtxtReadMemory(ctxt, xml, strlen(xml), "domain_definition", NULL,
				XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
	if (!doc || !ctxt->wellFormed) {
		drv_error_report_full(VIR_FROM_XML, VIR_ERR_XML_DETAIL, "(domain_definition):%d: %s",
				      first.line, first.message ? first.message : "malformed XML");
		if (doc)
			xmlFreeDoc(doc);
		doc = NULL;
	} else if (!xmlDocGetRootElement(doc)) {
		drv_error_report_full(VIR_FROM_XML, VIR_ERR_XML_ERROR, "missing root element");
		xmlFreeDoc(doc);
		doc = NULL;
	}
	g_free(first.message);
	xmlFreeParserCtxt(ctxt);
	return doc;
}

struct domain_def *domain_def_parse_string(const char *xml, const struct domain_parse_opts *opts)
{
	static const struct domain_parse_opts none;
	xmlDocPtr doc = read_xml(xml);
	struct domain_def *def;

	if (!doc)
		return NULL;
	def = parse_root(xmlDocGetRootElement(doc));
	xmlFreeDoc(doc);
	if (def && (domain_def_postparse(def, opts ? opts : &none) < 0 ||
		    domain_def_validate(def) < 0)) {
		domain_def_free(def);
		def = NULL;
	}
	return def;
}
