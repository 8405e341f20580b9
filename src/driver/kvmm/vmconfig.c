/* XML -> VM config; see vmconfig.h.
 *
 * Mapping (docs/domain-xml.md, "What a running domain gets"):
 *   name, os/kernel, os/initrd, os/cmdline -> name, kernel, initrd, cmdline
 *   memory (KiB)                         -> memory (bytes)
 *   memoryBacking: nosharepages, locked, -> ksm false, locked, hugepages
 *   hugepages (page size)                   (bytes); discard: kvmm's way
 *   vcpu                                 -> cpus
 *   serial port 0 pty/file/unix          -> serial {mode, path}; none if absent
 *   <log file append> (serial, console)  -> the chardev's log {path, append}
 *   uuid                                 -> smbios {system {uuid}}, always
 *   <smbios mode='sysinfo'/> + <sysinfo> -> smbios {bios, system (with the
 *                                           domain's UUID), baseboard,
 *                                           chassis, oem_strings}
 *   <features><vmcoreinfo state='on'/>   -> vmcoreinfo (fw_cfg etc/vmcoreinfo)
 *   on_reboot destroy                    -> no_reboot (kvmm exits, the daemon
 *                                           then stops the domain)
 *   disk (file or block), in XML order   -> disks [{path, format, backing,
 *                                           backing_format, readonly, cache,
 *                                           serial, shareable}]:
 *                                           virtio-blk, vda first; io= is how kvmm
 *                                           does I/O anyway (io_uring), discards
 *                                           reach the image; <driver type>
 *                                           is format, the <backingStore>
 *                                           chain (given, or read from the
 *                                           headers at start) backing= and
 *                                           backing_format=, which kvmm
 *                                           checks against the headers
 *   console with target virtio (one)     -> console {mode, path}: virtio-console
 *   rng (/dev/urandom or /dev/random)    -> rng: kvmm's device reads getrandom(),
 *                                           the same pool either path reads
 *   interface (any type), in XML order   -> nets [{fd or tap, mac, mtu}]: virtio-net
 *                                           on the tap the daemon made and opened
 *                                           for it (nics.c), given in struct
 *                                           vmconfig_runtime
 * on_poweroff and on_crash are the daemon's to carry out when kvmm exits.
 * The machine has ACPI, APICs and the host's CPUID whatever the XML says
 * (the parser shows them explicitly); timer tick policies describe what
 * KVM's in-kernel PIT and kvmm's RTC do anyway. */
#include <string.h>

#include <glib.h>
#include <json-c/json.h>
#include <libvirt/libvirt.h>

#include "error.h"
#include "vm_limits.h"
#include "vmconfig.h"

#define VIR_FROM_THIS VIR_FROM_DOMAIN

/* Reports VIR_ERR_CONFIG_UNSUPPORTED and returns -1. */
#define unsupported(...) (drv_error_report(VIR_ERR_CONFIG_UNSUPPORTED, __VA_ARGS__), -1)

int vmconfig_check(const struct domain_def *def)
{
	if (def->ndisks > VM_MAX_DISKS)
		return unsupported("kvmm takes at most %d disks", VM_MAX_DISKS);
	for (size_t i = 0; i < def->ndisks; i++) {
		const struct domain_disk *d = &def->disks[i];

		if (d->discard == DISCARD_IGNORE)
			return unsupported("disk discard='ignore' is not supported by kvmm (it passes discards to the image); use discard='unmap' or leave it out");
		/* kvmm maps qcow2 only in a file, and a chain only below qcow2. */
		if (d->format == FORMAT_QCOW2 && d->type == DISK_BLOCK)
			return unsupported("disk %s: a qcow2 image on a block device is not supported by kvmm; use type='raw' or an image file",
					   d->source);
		for (size_t j = 0; j < d->nbacking; j++) {
			int upper = j ? d->backing[j - 1].format : d->format;

			if (upper == FORMAT_RAW)
				return unsupported("disk %s: raw image %s cannot have a backing store; make it qcow2 or end the chain above it",
						   d->target, j ? d->backing[j - 1].path : d->source);
		}
	}
	if (def->nnets > VM_MAX_NETS)
		return unsupported("kvmm takes at most %d network interfaces", VM_MAX_NETS);
	for (size_t i = 0; i < def->nnets; i++) {
		const struct domain_net *n = &def->nets[i];
		const unsigned char *m = n->mac;
		/* A name from the definition (not one generated for a run). */
		const char *tap = n->ifname && !n->ifname_generated ? n->ifname : NULL;

		if (n->mtu && (n->mtu < VM_NET_MTU_MIN || n->mtu > VM_NET_MTU_MAX))
			return unsupported("interface MTU %u is not supported by kvmm; use %d to %d",
					   n->mtu, VM_NET_MTU_MIN, VM_NET_MTU_MAX);
		/* What kvmm refuses in its "nets" (config.c), refused here. */
		if (!(m[0] | m[1] | m[2] | m[3] | m[4] | m[5]))
			return unsupported("MAC address 00:00:00:00:00:00 cannot be a NIC's in kvmm; give another <mac address=> or leave it out");
		if (tap && !vm_tap_name_valid(tap))
			return unsupported("interface target dev '%s' is not a tap name kvmm can use; use 1 to %d characters without '/', ':' or spaces",
					   tap, VM_TAP_NAME_MAX);
		for (size_t j = 0; j < i; j++) {
			const struct domain_net *o = &def->nets[j];

			if (!memcmp(m, o->mac, 6))
				return unsupported("MAC address %02x:%02x:%02x:%02x:%02x:%02x is given to two interfaces; give each its own",
						   m[0], m[1], m[2], m[3], m[4], m[5]);
			if (tap && o->ifname && !o->ifname_generated && !strcmp(tap, o->ifname))
				return unsupported("interface target dev '%s' is given twice; give each interface its own tap",
						   tap);
		}
	}
	if (def->nrngs > VM_MAX_RNGS)
		return unsupported("kvmm has one rng device; remove all but one <rng> element");
	/* Locked pages cannot be given back to the host: a balloon would
	 * take the guest's memory and free none. */
	if (def->balloon_model == BALLOON_VIRTIO && def->mem_locked)
		return unsupported("<memoryBacking><locked/> with <memballoon model='virtio'> is not supported by kvmm: locked memory cannot be returned to the host; use one or the other");
	/* The guest balloons 4 KiB pages; a huge page goes back to the host
	 * whole or not at all. */
	if (def->balloon_model == BALLOON_VIRTIO && def->hugepage_kib)
		return unsupported("<memoryBacking><hugepages/> with <memballoon model='virtio'> is not supported by kvmm: huge-page-backed memory cannot be returned to the host page by page; use one or the other");
	if (def->hugepage_kib && def->memory_kib % def->hugepage_kib)
		return unsupported("memory size %llu KiB is not a multiple of the %llu KiB huge page size; round it to whole huge pages",
				   def->memory_kib, def->hugepage_kib);
	if (def->balloon_model == BALLOON_VIRTIO && def->balloon_period > VM_BALLOON_PERIOD_MAX)
		return unsupported("memballoon stats period %u is longer than kvmm's %d seconds",
				   def->balloon_period, VM_BALLOON_PERIOD_MAX);
	size_t nvirtio = 0;

	for (size_t i = 0; i < def->nconsoles; i++)
		nvirtio += def->consoles[i].target == CONSOLE_VIRTIO;
	if (nvirtio > VM_MAX_CONSOLES)
		return unsupported("kvmm has one virtio console; remove all but one <console> with <target type='virtio'/>");
	for (size_t i = 0; i < def->nconsoles; i++) {
		const struct domain_chr *c = &def->consoles[i];

		if (c->target != CONSOLE_VIRTIO)
			continue;
		/* kvmm's serial port and console each listen on a socket of
		 * their own. */
		if (c->type == CHR_UNIX && def->nserials && def->serials[0].type == CHR_UNIX &&
		    !g_strcmp0(c->path, def->serials[0].path))
			return unsupported("the serial port and the virtio console cannot listen on the same socket %s; give each its own path",
					   c->path);
	}
	if (def->smbios_sysinfo) {
		for (int g = 0; g < SYSINFO_GROUPS; g++)
			for (int i = 0; i < SYSINFO_MAX_ENTRIES; i++)
				if (def->sysinfo[g][i] && strlen(def->sysinfo[g][i]) > VM_SMBIOS_STRING_MAX)
					return unsupported("sysinfo %s entry '%s' is longer than the %d bytes kvmm puts in an SMBIOS string",
							   conf_sysinfo_groups[g].element,
							   conf_enum_name(conf_sysinfo_groups[g].entries, i),
							   VM_SMBIOS_STRING_MAX);
		if (def->noem_strings > VM_SMBIOS_OEM_STRINGS)
			return unsupported("%zu <oemStrings> entries are more than kvmm's %d", def->noem_strings,
					   VM_SMBIOS_OEM_STRINGS);
		for (size_t i = 0; i < def->noem_strings; i++)
			if (strlen(def->oem_strings[i]) > VM_SMBIOS_STRING_MAX)
				return unsupported("<oemStrings> entry %zu is longer than the %d bytes kvmm puts in an SMBIOS string",
						   i + 1, VM_SMBIOS_STRING_MAX);
	}
	if (def->clock_offset == CLOCK_LOCALTIME)
		return unsupported("clock offset 'localtime' is not supported by kvmm yet; use offset='utc'");
	return 0;
}

/* A character device's backend in kvmm's shape: {mode, path}; C NULL: none. */
static json_object *chardev_config(const struct domain_chr *c)
{
	static const char *const modes[] = { [CHR_PTY] = "pty", [CHR_FILE] = "file",
					     [CHR_UNIX] = "unix" };
	json_object *o = json_object_new_object();

	if (!c) {
		json_object_object_add(o, "mode", json_object_new_string("none"));
		return o;
	}
	json_object_object_add(o, "mode", json_object_new_string(modes[c->type]));
	/* A pty's path is allocated by kvmm at start; the one in a live
	 * definition is that of an earlier run. */
	if (c->type != CHR_PTY && c->path)
		json_object_object_add(o, "path", json_object_new_string(c->path));
	if (c->log_file) {
		json_object *log = json_object_new_object();

		json_object_object_add(log, "path", json_object_new_string(c->log_file));
		/* libvirt's default, and QEMU's logappend: off, the file
		 * starts empty with each run. */
		json_object_object_add(log, "append", json_object_new_boolean(c->log_append == TRI_ON));
		json_object_object_add(o, "log", log);
	}
	return o;
}

/* The domain's UUID as the system's, as libvirt's -uuid gives it under
 * QEMU; with <smbios mode='sysinfo'/>, the <sysinfo> entries too, by
 * kvmm's group and field names (the same lists, config.c and
 * domain_tables.c).  Without it libvirt puts no <sysinfo> in the tables. */
static json_object *smbios_config(const struct domain_def *def)
{
	static const char *const groups[SYSINFO_GROUPS] = {
		[SYSINFO_BIOS] = "bios", [SYSINFO_SYSTEM] = "system",
		[SYSINFO_BASEBOARD] = "baseboard", [SYSINFO_CHASSIS] = "chassis" };
	json_object *o = json_object_new_object();
	char uuid[37];

	for (int g = 0; g < SYSINFO_GROUPS; g++) {
		const struct conf_enum *names = conf_sysinfo_groups[g].entries;
		json_object *grp = json_object_new_object();

		for (int i = 0; i < SYSINFO_MAX_ENTRIES; i++) {
			const char *v = def->smbios_sysinfo ? def->sysinfo[g][i] : NULL;

			if (g == SYSINFO_SYSTEM && i == SYSINFO_SYSTEM_UUID)
				continue;
			/* SMBIOS cannot hold an empty string: none is the
			 * same to the guest. */
			if (v && *v)
				json_object_object_add(grp, conf_enum_name(names, i), json_object_new_string(v));
		}
		if (g == SYSINFO_SYSTEM) {
			domain_uuid_format(def->uuid, uuid);
			json_object_object_add(grp, "uuid", json_object_new_string(uuid));
		}
		if (json_object_object_length(grp))
			json_object_object_add(o, groups[g], grp);
		else
			json_object_put(grp);
	}
	if (def->smbios_sysinfo && def->noem_strings) {
		json_object *oem = json_object_new_array();

		for (size_t i = 0; i < def->noem_strings; i++)
			if (*def->oem_strings[i])
				json_object_array_add(oem, json_object_new_string(def->oem_strings[i]));
		json_object_object_add(o, "oem_strings", oem);
	}
	return o;
}

static json_object *disk_config(const struct domain_disk *d)
{
	json_object *o = json_object_new_object();

	json_object_object_add(o, "path", json_object_new_string(d->source));
	if (d->format == FORMAT_QCOW2)
		json_object_object_add(o, "format", json_object_new_string("qcow2"));
	if (d->nbacking) {
		json_object *paths = json_object_new_array(), *formats = json_object_new_array();

		for (size_t i = 0; i < d->nbacking; i++) {
			json_object_array_add(paths, json_object_new_string(d->backing[i].path));
			json_object_array_add(formats, json_object_new_string(
				conf_enum_name(&conf_disk_format, d->backing[i].format)));
		}
		json_object_object_add(o, "backing", paths);
		json_object_object_add(o, "backing_format", formats);
	}
	if (d->readonly)
		json_object_object_add(o, "readonly", json_object_new_boolean(true));
	/* Every libvirt mode is one of kvmm's, by the same name. */
	if (d->cache != CACHE_DEFAULT)
		json_object_object_add(o, "cache", json_object_new_string(
			conf_enum_name(&conf_disk_cache, d->cache)));
	/* Not given: kvmm's defaults, QEMU's (libvirt leaves them to it). */
	if (d->error_policy)
		json_object_object_add(o, "error_policy", json_object_new_string(
			conf_enum_name(&conf_disk_error_policy, d->error_policy)));
	if (d->rerror_policy)
		json_object_object_add(o, "rerror_policy", json_object_new_string(
			conf_enum_name(&conf_disk_rerror_policy, d->rerror_policy)));
	/* virtio-blk's ID holds 20 bytes: the guest reads the first 20, as
	 * under QEMU (nova gives a Cinder volume's 36-character id). */
	if (d->serial)
		json_object_object_add(o, "serial", json_object_new_string_len(
			d->serial, (int)MIN(strlen(d->serial), VM_DISK_SERIAL_MAX)));
	if (d->shareable)
		json_object_object_add(o, "shareable", json_object_new_boolean(true));
	return o;
}

/* TAP by name, or (FD >= 0) as the descriptor kvmm inherits. */
static json_object *net_config(const struct domain_net *n, const char *tap, int fd)
{
	json_object *o = json_object_new_object();
	const unsigned char *m = n->mac;
	char mac[18];

	g_snprintf(mac, sizeof(mac), "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5]);
	if (fd >= 0)
		json_object_object_add(o, "fd", json_object_new_int(fd));
	else
		json_object_object_add(o, "tap", json_object_new_string(tap));
	json_object_object_add(o, "mac", json_object_new_string(mac));
	if (n->mtu)
		json_object_object_add(o, "mtu", json_object_new_int((int)n->mtu));
	return o;
}

static char *to_text(json_object *o)
{
	char *out = g_strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));

	json_object_put(o);
	return out;
}

char *vmconfig_disk_json(const struct domain_disk *d)
{
	return to_text(disk_config(d));
}

char *vmconfig_net_json(const struct domain_net *n, const char *tap)
{
	return to_text(net_config(n, tap, -1));
}

char *vmconfig_from_def(const struct domain_def *def, const struct vmconfig_runtime *rt)
{
	json_object *o;
	char *out;

	if (vmconfig_check(def) < 0)
		return NULL;
	if (def->nnets && (!rt || !rt->taps)) {
		drv_error_report(VIR_ERR_INTERNAL_ERROR, "%s", "no taps for the domain's interfaces");
		return NULL;
	}
	o = json_object_new_object();
	json_object_object_add(o, "name", json_object_new_string(def->name));
	json_object_object_add(o, "kernel", json_object_new_string(def->kernel));
	if (def->initrd)
		json_object_object_add(o, "initrd", json_object_new_string(def->initrd));
	json_object_object_add(o, "cmdline", json_object_new_string(def->cmdline ? def->cmdline : ""));
	json_object_object_add(o, "memory", json_object_new_int64((int64_t)def->memory_kib * 1024));
	/* <vcpu current='N'>M</vcpu>: N at boot, M with hot-added ones. */
	json_object_object_add(o, "cpus", json_object_new_int((int)def->vcpus_current));
	if (def->vcpus_current != def->vcpus)
		json_object_object_add(o, "max_cpus", json_object_new_int((int)def->vcpus));
	json_object_object_add(o, "serial", chardev_config(def->nserials ? &def->serials[0] : NULL));
	if (def->ndisks) {
		json_object *disks = json_object_new_array();

		for (size_t i = 0; i < def->ndisks; i++) {
			json_object *d = disk_config(&def->disks[i]);

			if (rt && rt->ids && def->disks[i].alias)
				json_object_object_add(d, "id", json_object_new_string(def->disks[i].alias));
			json_object_array_add(disks, d);
		}
		json_object_object_add(o, "disks", disks);
	}
	for (size_t i = 0; i < def->nconsoles; i++)
		if (def->consoles[i].target == CONSOLE_VIRTIO)
			json_object_object_add(o, "console", chardev_config(&def->consoles[i]));
	if (def->nnets) {
		json_object *nets = json_object_new_array();

		for (size_t i = 0; i < def->nnets; i++) {
			json_object *n = net_config(&def->nets[i], rt->taps[i],
						    rt->tap_fds ? rt->tap_fds[i] : -1);

			if (rt->ids && def->nets[i].alias)
				json_object_object_add(n, "id", json_object_new_string(def->nets[i].alias));
			json_object_array_add(nets, n);
		}
		json_object_object_add(o, "nets", nets);
	}
	if (rt && rt->api_socket)
		json_object_object_add(o, "api_socket", json_object_new_string(rt->api_socket));
	if (rt && rt->paused)
		json_object_object_add(o, "paused", json_object_new_boolean(true));
	json_object_object_add(o, "no_reboot", json_object_new_boolean(def->on_reboot == LIFECYCLE_DESTROY));
	if (def->nrngs)
		json_object_object_add(o, "rng", json_object_new_boolean(true));
	if (def->nosharepages)
		json_object_object_add(o, "ksm", json_object_new_boolean(false));
	if (def->mem_locked)
		json_object_object_add(o, "locked", json_object_new_boolean(true));
	if (def->hugepage_kib)
		json_object_object_add(o, "hugepages", json_object_new_int64(def->hugepage_kib * 1024));
	if (def->balloon_model == BALLOON_VIRTIO) {
		json_object *b = json_object_new_object();

		json_object_object_add(b, "deflate_on_oom",
				       json_object_new_boolean(def->balloon_autodeflate == TRI_ON));
		json_object_object_add(b, "free_page_reporting",
				       json_object_new_boolean(def->balloon_free_page_reporting == TRI_ON));
		json_object_object_add(b, "stats_period", json_object_new_int64(def->balloon_period));
		json_object_object_add(o, "balloon", b);
	}
	json_object_object_add(o, "smbios", smbios_config(def));
	if (def->vmcoreinfo == TRI_ON)
		json_object_object_add(o, "vmcoreinfo", json_object_new_boolean(true));
	/* A restore's keys are laid over the stream's: false said outright,
	 * so a VM saved in the mode never comes back in it under a daemon
	 * without the key (kvmm refuses the mismatch). */
	if (rt && (rt->pvm_compat || rt->ids))
		json_object_object_add(o, "pvm_compat", json_object_new_boolean(rt->pvm_compat));
	out = g_strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY |
						      JSON_C_TO_STRING_SPACED |
						      JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(o);
	return out;
}
