/* XML -> VM config; see vmconfig.h.
 *
 * Mapping (docs/domain-xml.md, "What a running domain gets"):
 *   name, os/kernel, os/initrd, os/cmdline -> name, kernel, initrd, cmdline
 *   memory (KiB)                         -> memory (bytes)
 *   vcpu                                 -> cpus
 *   serial port 0 pty/file/unix          -> serial {mode, path}; none if absent
 *   on_reboot destroy                    -> no_reboot (kvmm exits, the daemon
 *                                           then stops the domain)
 *   disk (file or block), in XML order   -> disks [{path, readonly, cache, serial}]:
 *                                           virtio-blk, vda first; io= is how kvmm
 *                                           does I/O anyway (io_uring), discards
 *                                           reach the image
 *   console with target virtio (one)     -> console {mode, path}: virtio-console
 *   rng (/dev/urandom or /dev/random)    -> rng: kvmm's device reads getrandom(),
 *                                           the same pool either path reads
 *   interface (any type), in XML order   -> nets [{tap, mac}]: virtio-net on the
 *                                           tap the daemon made for it (nics.c),
 *                                           named in struct vmconfig_runtime
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

		/* kvmm writes through the page cache or around it, and
		 * flushes on request: no mode that flushes every write. */
		if (d->cache == CACHE_WRITETHROUGH || d->cache == CACHE_DIRECTSYNC)
			return unsupported("disk cache mode '%s' is not supported by kvmm yet; use cache='none', 'writeback' or 'unsafe'",
					   conf_enum_name(&conf_disk_cache, d->cache));
		if (d->discard == DISCARD_IGNORE)
			return unsupported("disk discard='ignore' is not supported by kvmm (it passes discards to the image); use discard='unmap' or leave it out");
		if (d->serial && strlen(d->serial) > VM_DISK_SERIAL_MAX)
			return unsupported("a disk serial longer than %d characters is not supported by virtio-blk",
					   VM_DISK_SERIAL_MAX);
	}
	if (def->nnets > VM_MAX_NETS)
		return unsupported("kvmm takes at most %d network interfaces", VM_MAX_NETS);
	for (size_t i = 0; i < def->nnets; i++) {
		const struct domain_net *n = &def->nets[i];
		const unsigned char *m = n->mac;
		/* A name from the definition (not one generated for a run). */
		const char *tap = n->ifname && !n->ifname_generated ? n->ifname : NULL;

		if (n->mtu)
			return unsupported("interface <mtu> is not supported by kvmm yet; remove <mtu>");
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
	if (def->balloon_model == BALLOON_VIRTIO)
		return unsupported("memballoon model 'virtio' is not supported by kvmm yet; use <memballoon model='none'/>");
	size_t nvirtio = 0;

	for (size_t i = 0; i < def->nconsoles; i++)
		nvirtio += def->consoles[i].target == CONSOLE_VIRTIO;
	if (nvirtio > VM_MAX_CONSOLES)
		return unsupported("kvmm has one virtio console; remove all but one <console> with <target type='virtio'/>");
	for (size_t i = 0; i < def->nconsoles; i++) {
		const struct domain_chr *c = &def->consoles[i];

		if (c->target != CONSOLE_VIRTIO)
			continue;
		if (c->log_file)
			return unsupported("console <log file> is not supported by kvmm yet; remove <log>");
		/* kvmm's serial port and console each listen on a socket of
		 * their own. */
		if (c->type == CHR_UNIX && def->nserials && def->serials[0].type == CHR_UNIX &&
		    !g_strcmp0(c->path, def->serials[0].path))
			return unsupported("the serial port and the virtio console cannot listen on the same socket %s; give each its own path",
					   c->path);
	}
	if (def->clock_offset == CLOCK_LOCALTIME)
		return unsupported("clock offset 'localtime' is not supported by kvmm yet; use offset='utc'");
	if (def->smbios_sysinfo)
		return unsupported("SMBIOS tables (<smbios mode='sysinfo'/>) are not supported by kvmm yet; remove it");
	if (def->nserials && def->serials[0].log_file)
		return unsupported("serial <log file> is not supported by kvmm yet; remove <log>");
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
	return o;
}

static json_object *disk_config(const struct domain_disk *d)
{
	json_object *o = json_object_new_object();

	json_object_object_add(o, "path", json_object_new_string(d->source));
	if (d->readonly)
		json_object_object_add(o, "readonly", json_object_new_boolean(true));
	if (d->cache == CACHE_NONE || d->cache == CACHE_WRITEBACK || d->cache == CACHE_UNSAFE)
		json_object_object_add(o, "cache", json_object_new_string(
			conf_enum_name(&conf_disk_cache, d->cache)));
	if (d->serial)
		json_object_object_add(o, "serial", json_object_new_string(d->serial));
	return o;
}

static json_object *net_config(const struct domain_net *n, const char *tap)
{
	json_object *o = json_object_new_object();
	const unsigned char *m = n->mac;
	char mac[18];

	g_snprintf(mac, sizeof(mac), "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5]);
	json_object_object_add(o, "tap", json_object_new_string(tap));
	json_object_object_add(o, "mac", json_object_new_string(mac));
	return o;
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
	json_object_object_add(o, "cpus", json_object_new_int((int)def->vcpus));
	json_object_object_add(o, "serial", chardev_config(def->nserials ? &def->serials[0] : NULL));
	if (def->ndisks) {
		json_object *disks = json_object_new_array();

		for (size_t i = 0; i < def->ndisks; i++)
			json_object_array_add(disks, disk_config(&def->disks[i]));
		json_object_object_add(o, "disks", disks);
	}
	for (size_t i = 0; i < def->nconsoles; i++)
		if (def->consoles[i].target == CONSOLE_VIRTIO)
			json_object_object_add(o, "console", chardev_config(&def->consoles[i]));
	if (def->nnets) {
		json_object *nets = json_object_new_array();

		for (size_t i = 0; i < def->nnets; i++)
			json_object_array_add(nets, net_config(&def->nets[i], rt->taps[i]));
		json_object_object_add(o, "nets", nets);
	}
	if (rt && rt->api_socket)
		json_object_object_add(o, "api_socket", json_object_new_string(rt->api_socket));
	if (rt && rt->paused)
		json_object_object_add(o, "paused", json_object_new_boolean(true));
	json_object_object_add(o, "no_reboot", json_object_new_boolean(def->on_reboot == LIFECYCLE_DESTROY));
	if (def->nrngs)
		json_object_object_add(o, "rng", json_object_new_boolean(true));
	out = g_strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY |
						      JSON_C_TO_STRING_SPACED |
						      JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(o);
	return out;
}
