/* struct domain_def -> domain XML, in libvirt's canonical style: two-space
 * indentation, single-quoted attributes, elements in the order libvirt's
 * formatter writes them, and defaults written out as dumpxml shows them.
 * Every document produced validates against libvirt's domain.rng
 * (tests/driver/test_xml2xml.py checks each golden with virt-xml-validate). */
#include <stdarg.h>
#include <string.h>

#include <glib.h>
#include <libvirt/libvirt.h>
#include <libxml/tree.h>

#include "domain_conf.h"
#include "error.h"

#define VIR_FROM_THIS VIR_FROM_DOMAIN

struct out {
	GString *s;
	int depth;
	unsigned flags;
};

static void indent(struct out *o)
{
	for (int i = 0; i < o->depth; i++)
		g_string_append(o->s, "  ");
}

/* libvirt escapes the same five characters in text and attributes. */
static void escape(GString *s, const char *v)
{
	for (; *v; v++) {
		switch (*v) {
		case '<': g_string_append(s, "&lt;"); break;
		case '>': g_string_append(s, "&gt;"); break;
		case '&': g_string_append(s, "&amp;"); break;
		case '\'': g_string_append(s, "&apos;"); break;
		case '"': g_string_append(s, "&quot;"); break;
		default: g_string_append_c(s, *v);
		}
	}
}

/* Indentation, "<NAME" and the ATTRS (name/value pairs up to a NULL name;
 * pairs whose value is NULL are skipped), without closing the tag. */
static void start_tag(struct out *o, const char *name, va_list ap)
{
	const char *k, *v;

	indent(o);
	g_string_append_printf(o->s, "<%s", name);
	while ((k = va_arg(ap, const char *))) {
		v = va_arg(ap, const char *);
		if (!v)
			continue;
		g_string_append_printf(o->s, " %s='", k);
		escape(o->s, v);
		g_string_append_c(o->s, '\'');
	}
}

/* One line: <NAME ATTRS...>TEXT</NAME>, or <NAME ATTRS.../> when TEXT is
 * NULL. */
static void line(struct out *o, const char *name, const char *text, ...)
{
	va_list ap;

	va_start(ap, text);
	start_tag(o, name, ap);
	va_end(ap);
	if (text) {
		g_string_append_c(o->s, '>');
		escape(o->s, text);
		g_string_append_printf(o->s, "</%s>\n", name);
	} else {
		g_string_append(o->s, "/>\n");
	}
}

/* Opening tag of an element with children; close with close(). */
static void open_(struct out *o, const char *name, ...)
{
	va_list ap;

	va_start(ap, name);
	start_tag(o, name, ap);
	va_end(ap);
	g_string_append(o->s, ">\n");
	o->depth++;
}

static void close_(struct out *o, const char *name)
{
	o->depth--;
	indent(o);
	g_string_append_printf(o->s, "</%s>\n", name);
}

static const char *tri(int v, const char *on, const char *off)
{
	return v == TRI_ON ? on : v == TRI_OFF ? off : NULL;
}

#define U(buf, v) (g_snprintf(buf, sizeof(buf), "%llu", (unsigned long long)(v)), buf)

/* A device's alias is shown live; inactive, only a user alias (the run's
 * are not the definition's). */
static bool show_alias(const struct out *o, const char *alias)
{
	return alias && (!(o->flags & VIR_DOMAIN_XML_INACTIVE) || domain_alias_is_user(alias));
}

static void format_alias(struct out *o, const char *alias)
{
	if (show_alias(o, alias))
		line(o, "alias", NULL, "name", alias, NULL);
}

static void format_metadata(struct out *o, const struct domain_def *def)
{
	xmlNodePtr md = def->metadata ? xmlDocGetRootElement(def->metadata) : NULL;

	if (!md || !md->children) {
		if (md)
			line(o, "metadata", NULL, NULL);
		return;
	}
	open_(o, "metadata", NULL);
	for (xmlNodePtr c = md->children; c; c = c->next) {
		xmlBufferPtr b = xmlBufferCreate();
		indent(o);
		xmlNodeDump(b, def->metadata, c, o->depth, 1);
		g_string_append_len(o->s, (const char *)xmlBufferContent(b), xmlBufferLength(b));
		g_string_append_c(o->s, '\n');
		xmlBufferFree(b);
	}
	close_(o, "metadata");
}

/* <sysinfo type='smbios'>: the groups in libvirt's order, entries in each
 * group's table order, then <oemStrings>. */
static void format_sysinfo(struct out *o, const struct domain_def *def)
{
	bool any = def->noem_strings > 0;

	for (int g = 0; g < SYSINFO_GROUPS; g++)
		for (int i = 0; i < SYSINFO_MAX_ENTRIES; i++)
			any |= def->sysinfo[g][i] != NULL;
	if (!any) {
		line(o, "sysinfo", NULL, "type", "smbios", NULL);
		return;
	}
	open_(o, "sysinfo", "type", "smbios", NULL);
	for (int g = 0; g < SYSINFO_GROUPS; g++) {
		const struct conf_sysinfo_group *grp = &conf_sysinfo_groups[g];
		bool group = false;

		for (int i = 0; i < SYSINFO_MAX_ENTRIES; i++)
			group |= def->sysinfo[g][i] != NULL;
		if (!group)
			continue;
		open_(o, grp->element, NULL);
		for (int i = 0; i < SYSINFO_MAX_ENTRIES; i++)
			if (def->sysinfo[g][i])
				line(o, "entry", def->sysinfo[g][i], "name",
				     conf_enum_name(grp->entries, i), NULL);
		close_(o, grp->element);
	}
	if (def->noem_strings) {
		open_(o, "oemStrings", NULL);
		for (size_t i = 0; i < def->noem_strings; i++)
			line(o, "entry", def->oem_strings[i], NULL);
		close_(o, "oemStrings");
	}
	close_(o, "sysinfo");
}

static void format_general(struct out *o, const struct domain_def *def)
{
	char uuid[37], b1[32], b2[32];

	line(o, "name", def->name, NULL);
	domain_uuid_format(def->uuid, uuid);
	line(o, "uuid", uuid, NULL);
	if (def->title)
		line(o, "title", def->title, NULL);
	if (def->description)
		line(o, "description", def->description, NULL);
	format_metadata(o, def);
	line(o, "memory", U(b1, def->memory_kib), "unit", "KiB", NULL);
	line(o, "currentMemory", U(b1, def->current_memory_kib), "unit", "KiB", NULL);
	if (def->mem_hard_limit_kib || def->mem_soft_limit_kib || def->mem_swap_hard_limit_kib) {
		open_(o, "memtune", NULL);
		if (def->mem_hard_limit_kib)
			line(o, "hard_limit", U(b1, def->mem_hard_limit_kib), "unit", "KiB", NULL);
		if (def->mem_soft_limit_kib)
			line(o, "soft_limit", U(b1, def->mem_soft_limit_kib), "unit", "KiB", NULL);
		if (def->mem_swap_hard_limit_kib)
			line(o, "swap_hard_limit", U(b1, def->mem_swap_hard_limit_kib), "unit", "KiB", NULL);
		close_(o, "memtune");
	}
	if (def->nosharepages || def->mem_locked || def->mem_discard || def->hugepage_kib) {
		open_(o, "memoryBacking", NULL);
		if (def->hugepage_page) {
			open_(o, "hugepages", NULL);
			line(o, "page", NULL, "size", U(b1, def->hugepage_kib), "unit", "KiB", NULL);
			close_(o, "hugepages");
		} else if (def->hugepage_kib) {
			line(o, "hugepages", NULL, NULL);
		}
		if (def->nosharepages)
			line(o, "nosharepages", NULL, NULL);
		if (def->mem_locked)
			line(o, "locked", NULL, NULL);
		if (def->mem_discard)
			line(o, "discard", NULL, NULL);
		close_(o, "memoryBacking");
	}
	line(o, "vcpu", U(b1, def->vcpus), "placement", "static",
	     "current", def->vcpus_current != def->vcpus ? U(b2, def->vcpus_current) : NULL, NULL);
	if (def->cpu_shares || def->cpu_period || def->cpu_quota) {
		open_(o, "cputune", NULL);
		if (def->cpu_shares)
			line(o, "shares", U(b1, def->cpu_shares), NULL);
		if (def->cpu_period)
			line(o, "period", U(b1, def->cpu_period), NULL);
		if (def->cpu_quota) {
			g_snprintf(b1, sizeof(b1), "%lld", def->cpu_quota);
			line(o, "quota", b1, NULL);
		}
		close_(o, "cputune");
	}
	if (def->has_sysinfo)
		format_sysinfo(o, def);
}

static void format_machine(struct out *o, const struct domain_def *def)
{
	char b1[16], b2[16], b3[16], b4[16];

	open_(o, "os", NULL);
	line(o, "type", "hvm", "arch", "x86_64", "machine", def->machine, NULL);
	if (def->kernel)
		line(o, "kernel", def->kernel, NULL);
	if (def->initrd)
		line(o, "initrd", def->initrd, NULL);
	if (def->cmdline)
		line(o, "cmdline", def->cmdline, NULL);
	if (def->boot_hd)
		line(o, "boot", NULL, "dev", "hd", NULL);
	if (def->smbios_sysinfo)
		line(o, "smbios", NULL, "mode", "sysinfo", NULL);
	else if (def->smbios_emulate)
		line(o, "smbios", NULL, "mode", "emulate", NULL);
	close_(o, "os");

	open_(o, "features", NULL);
	if (def->acpi)
		line(o, "acpi", NULL, NULL);
	if (def->apic)
		line(o, "apic", NULL, NULL);
	if (def->vmport_off)
		line(o, "vmport", NULL, "state", "off", NULL);
	if (def->vmcoreinfo != TRI_ABSENT)
		line(o, "vmcoreinfo", NULL, "state", tri(def->vmcoreinfo, "on", "off"), NULL);
	close_(o, "features");

	const char *mode = conf_enum_name(&conf_cpu_mode, def->cpu_mode);
	const char *check = conf_enum_name(&conf_cpu_check, def->cpu_check);
	const char *mig = tri(def->cpu_migratable, "on", "off");
	if (def->sockets) {
		open_(o, "cpu", "mode", mode, "check", check, "migratable", mig, NULL);
		line(o, "topology", NULL, "sockets", U(b1, def->sockets), "dies", U(b2, def->dies),
		     "cores", U(b3, def->cores), "threads", U(b4, def->threads), NULL);
		close_(o, "cpu");
	} else {
		line(o, "cpu", NULL, "mode", mode, "check", check, "migratable", mig, NULL);
	}

	const char *offset = conf_enum_name(&conf_clock_offset, def->clock_offset);
	if (!def->ntimers) {
		line(o, "clock", NULL, "offset", offset, NULL);
	} else {
		open_(o, "clock", "offset", offset, NULL);
		for (int i = 0; i < def->ntimers; i++) {
			const struct domain_timer *t = &def->timers[def->timer_order[i]];
			line(o, "timer", NULL, "name", conf_enum_name(&conf_timer_name, def->timer_order[i]),
			     "present", tri(t->present, "yes", "no"),
			     "tickpolicy", t->tickpolicy >= 0 ? conf_enum_name(&conf_timer_tickpolicy, t->tickpolicy) : NULL,
			     NULL);
		}
		close_(o, "clock");
	}
	line(o, "on_poweroff", conf_enum_name(&conf_lifecycle_action, def->on_poweroff), NULL);
	line(o, "on_reboot", conf_enum_name(&conf_lifecycle_action, def->on_reboot), NULL);
	line(o, "on_crash", conf_enum_name(&conf_lifecycle_action, def->on_crash), NULL);
	if (def->pm_suspend_to_mem_off || def->pm_suspend_to_disk_off) {
		open_(o, "pm", NULL);
		if (def->pm_suspend_to_mem_off)
			line(o, "suspend-to-mem", NULL, "enabled", "no", NULL);
		if (def->pm_suspend_to_disk_off)
			line(o, "suspend-to-disk", NULL, "enabled", "no", NULL);
		close_(o, "pm");
	}
}

/* The backing chain below D from layer I on, nested as libvirt writes it.
 * Live, each layer has its index and a complete chain ends with an empty
 * <backingStore/>; inactive, only the definition's layers are shown. */
static void format_backing(struct out *o, const struct domain_disk *d, size_t i, bool live)
{
	size_t n = live ? d->nbacking : d->nbacking_given;
	char idx[16];

	if (i == n) {
		/* A running disk's chain is complete: kvmm opened all of it. */
		if (d->backing_end || (live && d->index))
			line(o, "backingStore", NULL, NULL);
		return;
	}
	open_(o, "backingStore", "type", "file",
	      "index", live && d->backing[i].index ? U(idx, d->backing[i].index) : NULL, NULL);
	line(o, "format", NULL, "type", conf_enum_name(&conf_disk_format, d->backing[i].format), NULL);
	line(o, "source", NULL, "file", d->backing[i].path, NULL);
	format_backing(o, d, i + 1, live);
	close_(o, "backingStore");
}

static void format_disk(struct out *o, const struct domain_disk *d)
{
	/* 'default' (the VMM's choice) is shown as no attribute, as libvirt does. */
	const char *cache = d->cache ? conf_enum_name(&conf_disk_cache, d->cache) : NULL;
	const char *io = d->io ? conf_enum_name(&conf_disk_io, d->io) : NULL;
	const char *discard = d->discard ? conf_enum_name(&conf_disk_discard, d->discard) : NULL;
	const char *werr = d->error_policy ?
			   conf_enum_name(&conf_disk_error_policy, d->error_policy) : NULL;
	const char *rerr = d->rerror_policy ?
			   conf_enum_name(&conf_disk_rerror_policy, d->rerror_policy) : NULL;
	bool live = !(o->flags & VIR_DOMAIN_XML_INACTIVE);
	char idx[16];

	open_(o, "disk", "type", conf_enum_name(&conf_disk_type, d->type), "device", "disk", NULL);
	/* libvirt's attribute order. */
	line(o, "driver", NULL, "name", "qemu", "type", conf_enum_name(&conf_disk_format, d->format),
	     "cache", cache, "error_policy", werr, "rerror_policy", rerr, "io", io,
	     "discard", discard, NULL);
	line(o, "source", NULL, d->type == DISK_FILE ? "file" : "dev", d->source,
	     "index", live && d->index ? U(idx, d->index) : NULL, NULL);
	format_backing(o, d, 0, live);
	line(o, "target", NULL, "dev", d->target, "bus", "virtio", NULL);
	if (d->readonly)
		line(o, "readonly", NULL, NULL);
	if (d->shareable)
		line(o, "shareable", NULL, NULL);
	if (d->serial)
		line(o, "serial", d->serial, NULL);
	format_alias(o, d->alias);
	close_(o, "disk");
}

static void format_net(struct out *o, const struct domain_net *n)
{
	static const char *const source_attr[] = { NULL, "bridge", "network" };
	const unsigned char *m = n->mac;
	char mac[18], mtu[16];
	bool ifname = n->ifname && !(n->ifname_generated && (o->flags & VIR_DOMAIN_XML_INACTIVE));

	g_snprintf(mac, sizeof(mac), "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5]);
	open_(o, "interface", "type", conf_enum_name(&conf_net_type, n->type), NULL);
	line(o, "mac", NULL, "address", mac, NULL);
	if (n->source)
		line(o, "source", NULL, source_attr[n->type], n->source, NULL);
	if (ifname || n->managed != TRI_ABSENT)
		line(o, "target", NULL, "dev", ifname ? n->ifname : NULL,
		     "managed", tri(n->managed, "yes", "no"), NULL);
	line(o, "model", NULL, "type", "virtio", NULL);
	if (n->mtu)
		line(o, "mtu", NULL, "size", U(mtu, n->mtu), NULL);
	format_alias(o, n->alias);
	close_(o, "interface");
}

/* <serial> or <console>: source, log, then the target. */
static void format_chr(struct out *o, const char *elem, const struct domain_chr *c, bool serial)
{
	const char *type = conf_enum_name(&conf_chr_type, c->type);
	char port[16];

	/* libvirt's legacy tty= on a live pty console, which `virsh
	 * ttyconsole` reads. */
	if (!serial && c->type == CHR_PTY && c->path && !(o->flags & VIR_DOMAIN_XML_INACTIVE))
		open_(o, elem, "type", type, "tty", c->path, NULL);
	else
		open_(o, elem, "type", type, NULL);
	if (c->type == CHR_FILE)
		line(o, "source", NULL, "path", c->path, NULL);
	else if (c->type == CHR_UNIX)
		line(o, "source", NULL, "mode", "bind", "path", c->path, NULL);
	else if (c->path && !(o->flags & VIR_DOMAIN_XML_INACTIVE))
		line(o, "source", NULL, "path", c->path, NULL);	/* the live pty */
	if (c->log_file)
		line(o, "log", NULL, "file", c->log_file, "append", tri(c->log_append, "on", "off"), NULL);
	U(port, c->port);
	if (serial) {
		open_(o, "target", "type", "isa-serial", "port", port, NULL);
		line(o, "model", NULL, "name", "isa-serial", NULL);
		close_(o, "target");
	} else {
		line(o, "target", NULL, "type", conf_enum_name(&conf_console_target, c->target),
		     "port", port, NULL);
	}
	format_alias(o, c->alias);
	close_(o, elem);
}

static void format_devices(struct out *o, const struct domain_def *def)
{
	char period[16];

	open_(o, "devices", NULL);
	if (def->emulator)
		line(o, "emulator", def->emulator, NULL);
	for (size_t i = 0; i < def->ndisks; i++)
		format_disk(o, &def->disks[i]);
	for (size_t i = 0; i < def->ncontrollers; i++) {
		const struct domain_controller *c = &def->controllers[i];
		if (c->implicit && (o->flags & VIR_DOMAIN_XML_MIGRATABLE))
			continue;	/* libvirt's destination adds its own defaults */
		const char *type = conf_enum_name(&conf_controller_type, c->type);
		const char *model = c->type == CTRL_USB ? conf_enum_name(&conf_usb_model, c->model)
							: conf_enum_name(&conf_pci_model, c->model);
		if (show_alias(o, c->alias)) {
			open_(o, "controller", "type", type, "index", "0", "model", model, NULL);
			format_alias(o, c->alias);
			close_(o, "controller");
		} else {
			line(o, "controller", NULL, "type", type, "index", "0", "model", model, NULL);
		}
	}
	for (size_t i = 0; i < def->nnets; i++)
		format_net(o, &def->nets[i]);
	for (size_t i = 0; i < def->nserials; i++)
		format_chr(o, "serial", &def->serials[i], true);
	for (size_t i = 0; i < def->nconsoles; i++)
		format_chr(o, "console", &def->consoles[i], false);
	if (def->balloon_model == BALLOON_VIRTIO) {
		const char *deflate = tri(def->balloon_autodeflate, "on", "off");
		const char *reporting = tri(def->balloon_free_page_reporting, "on", "off");

		if (def->balloon_period || show_alias(o, def->balloon_alias)) {
			open_(o, "memballoon", "model", "virtio", "autodeflate", deflate,
			      "freePageReporting", reporting, NULL);
			if (def->balloon_period)
				line(o, "stats", NULL, "period", U(period, def->balloon_period), NULL);
			format_alias(o, def->balloon_alias);
			close_(o, "memballoon");
		} else {
			line(o, "memballoon", NULL, "model", "virtio", "autodeflate", deflate,
			     "freePageReporting", reporting, NULL);
		}
	} else {
		line(o, "memballoon", NULL, "model", conf_enum_name(&conf_balloon_model, def->balloon_model), NULL);
	}
	for (size_t i = 0; i < def->nrngs; i++) {
		open_(o, "rng", "model", "virtio", NULL);
		line(o, "backend", conf_enum_name(&conf_rng_source, def->rngs[i].source), "model", "random", NULL);
		format_alias(o, def->rngs[i].alias);
		close_(o, "rng");
	}
	close_(o, "devices");
}

char *domain_def_format(const struct domain_def *def, unsigned int flags)
{
	const unsigned supported = VIR_DOMAIN_XML_SECURE | VIR_DOMAIN_XML_INACTIVE |
				   VIR_DOMAIN_XML_MIGRATABLE;
	struct out o = { .s = NULL, .depth = 0, .flags = flags };
	char id[16];

	/* SECURE is accepted: nothing kvmm supports is secret, so the secure
	 * and normal documents are the same. */
	if (flags & ~supported) {
		drv_error_report(VIR_ERR_INVALID_ARG, "unsupported flags (0x%x) in function %s",
				 flags & ~supported, __func__);
		return NULL;
	}
	o.s = g_string_new(NULL);
	open_(&o, "domain", "type", "kvm",
	      "id", def->id >= 0 && !(flags & VIR_DOMAIN_XML_INACTIVE) ? U(id, def->id) : NULL, NULL);
	format_general(&o, def);
	format_machine(&o, def);
	format_devices(&o, def);
	close_(&o, "domain");
	return g_string_free(o.s, FALSE);
}
