/* Handlers that add devices to a domain and take them away: virsh
 * attach-device / detach-device (and attach-disk, detach-disk, ...,
 * which build the XML and call these).  --live goes through kvmm's PCI
 * hotplug (process_attach_disk / process_detach_device); --config changes
 * the persistent definition, the next start's.  The rules and errors
 * are those of libvirt's QEMU driver.
 *
 * A device's XML is parsed by the domain parser: for an attach inside the
 * definition it joins (so every check of a definition applies to it), for
 * a detach inside an empty domain (it only names what to remove). */
#include <string.h>

#include <glib.h>
#include <libvirt/libvirt.h>

#include "domain_api.h"
#include "error.h"
#include "handlers.h"
#include "log.h"
#include "vm_limits.h"
#include "kvmm/process.h"
#include "kvmm/vmconfig.h"

#define VIR_FROM_THIS VIR_FROM_DOMAIN

/* The longest device id kvmm takes: PCI_HOTPLUG_ID_MAX of
 * src/vmm/pci/hotplug.h less its NUL. */
#define KVMM_DEVICE_ID_MAX 63

enum dev_kind { DEV_DISK, DEV_NET };

typedef struct domain_def domain_def_t;
G_DEFINE_AUTOPTR_CLEANUP_FUNC(domain_def_t, domain_def_free)

/* CLIENT: one <disk> or <interface> element and nothing else; the parser
 * checks the rest. */
static int device_kind(const char *xml, enum dev_kind *kind)
{
	const char *p = xml;

	while (g_ascii_isspace(*p))
		p++;
	if (g_str_has_prefix(p, "<disk") && (g_ascii_isspace(p[5]) || p[5] == '>' || p[5] == '/'))
		*kind = DEV_DISK;
	else if (g_str_has_prefix(p, "<interface") &&
		 (g_ascii_isspace(p[10]) || p[10] == '>' || p[10] == '/'))
		*kind = DEV_NET;
	else {
		drv_error_report(VIR_ERR_OPERATION_UNSUPPORTED,
				 "only <disk> and <interface> devices can be attached or detached with kvmm");
		return -1;
	}
	return 0;
}

/* XML (a domain's) with DEVICE added as its last device, parsed with
 * OPTS: NULL after reporting.  CLIENT: the result must have exactly one
 * device more than BEFORE, of KIND, and nothing else changed in number. */
static struct domain_def *def_with(const struct domain_def *before, const char *xml, const char *device,
				   enum dev_kind kind, const struct domain_parse_opts *opts)
{
	const char *end = g_strrstr(xml, "</devices>");
	g_autofree char *joined = NULL;
	struct domain_def *def;

	if (end)
		joined = g_strdup_printf("%.*s%s\n%s", (int)(end - xml), xml, device, end);
	else if ((end = g_strrstr(xml, "</domain>")))
		joined = g_strdup_printf("%.*s<devices>%s</devices>\n%s", (int)(end - xml), xml, device, end);
	if (!joined) {
		drv_error_report(VIR_ERR_INTERNAL_ERROR, "%s", "cannot place the device in the definition");
		return NULL;
	}
	if (!(def = domain_def_parse_string(joined, opts)))
		return NULL;
	if (def->ndisks != before->ndisks + (kind == DEV_DISK) ||
	    def->nnets != before->nnets + (kind == DEV_NET) || def->nserials != before->nserials ||
	    def->nconsoles != before->nconsoles || def->nrngs != before->nrngs ||
	    def->ncontrollers != before->ncontrollers) {
		domain_def_free(def);
		drv_error_report(VIR_ERR_XML_ERROR, "%s", "the XML must hold exactly one <disk> or <interface>");
		return NULL;
	}
	return def;
}

/* The device of a detach: a domain holding just it, or NULL. */
static struct domain_def *device_alone(const char *device, enum dev_kind kind)
{
	g_autofree char *xml = g_strdup_printf(
		"<domain type='kvm'><name>device</name><memory unit='KiB'>65536</memory>"
		"<os><type arch='x86_64'>hvm</type><kernel>/kernel</kernel></os><devices>%s</devices></domain>",
		device);
	struct domain_def *def = domain_def_parse_string(xml, domains_parse_opts());

	if (def && (def->ndisks + def->nnets != 1 || (kind == DEV_DISK) != (def->ndisks == 1))) {
		domain_def_free(def);
		drv_error_report(VIR_ERR_XML_ERROR, "%s", "the XML must hold exactly one <disk> or <interface>");
		return NULL;
	}
	return def;
}

static int find_disk(const struct domain_def *def, const char *target)
{
	for (size_t i = 0; i < def->ndisks; i++)
		if (!strcmp(def->disks[i].target, target))
			return (int)i;
	return -1;
}

static int find_net(const struct domain_def *def, const unsigned char mac[6])
{
	for (size_t i = 0; i < def->nnets; i++)
		if (!memcmp(def->nets[i].mac, mac, 6))
			return (int)i;
	return -1;
}

static void mac_text(const unsigned char *m, char out[18])
{
	g_snprintf(out, 18, "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5]);
}

/* CLIENT: a device that collides with one of DEF's: 0, or -1 reported. */
static int check_taken(const struct domain_def *def, const struct domain_def *dev, enum dev_kind kind)
{
	char mac[18];

	if (kind == DEV_DISK && find_disk(def, dev->disks[0].target) >= 0) {
		drv_error_report(VIR_ERR_OPERATION_FAILED, "target %s already exists", dev->disks[0].target);
		return -1;
	}
	if (kind == DEV_NET && find_net(def, dev->nets[0].mac) >= 0) {
		mac_text(dev->nets[0].mac, mac);
		drv_error_report(VIR_ERR_OPERATION_INVALID, "mac %s already exists", mac);
		return -1;
	}
	return 0;
}

/* CLIENT: an image another running domain has open for writing is not
 * given to a second guest, unless both share it (<shareable/>) or read
 * it only. */
static int check_disk_free(struct domain_obj *self, const struct domain_disk *d)
{
	g_autoptr(GPtrArray) all = domain_list();
	g_autofree char *other = NULL;

	for (guint i = 0; i < all->len && !other; i++) {
		struct domain_obj *obj = g_ptr_array_index(all, i);

		if (obj == self)
			continue;
		g_mutex_lock(&obj->lock);
		for (size_t k = 0; obj->id >= 0 && k < obj->def->ndisks && !other; k++) {
			const struct domain_disk *o = &obj->def->disks[k];

			if (o->source && !strcmp(o->source, d->source) && !(o->shareable && d->shareable) &&
			    !(o->readonly && d->readonly))
				other = g_strdup(obj->def->name);
		}
		g_mutex_unlock(&obj->lock);
	}
	if (other) {
		drv_error_report(VIR_ERR_OPERATION_INVALID, "disk source '%s' is in use by domain '%s'",
				 d->source, other);
		return -1;
	}
	return 0;
}

/* LIVE/CONFIG from FLAGS as libvirt resolves them, in the words of its
 * device calls; 0, or -1 reported. */
static int resolve_flags(struct domain_obj *obj, unsigned flags, bool *live, bool *config)
{
	return api_affect(obj, flags, live, config, "cannot modify device on transient domain");
}

/* The persistent definition replaced by NEWDEF (obj->lock held): while
 * the domain runs it is the next start's. */
static void set_persistent_def(struct domain_obj *obj, struct domain_def *newdef)
{
	if (obj->id >= 0) {
		domain_def_free(obj->newdef);
		obj->newdef = newdef;
	} else {
		domain_def_free(obj->retired);
		obj->retired = obj->def;
		obj->def = newdef;
	}
}

static int attach_live(struct domain_obj *obj, const char *device, enum dev_kind kind)
{
	g_autofree char *xml = NULL;
	struct domain_def *newdef, before;
	char **slot;
	int rc = -1;

	/* The counts of the definition formatted, whatever comes after. */
	g_mutex_lock(&obj->lock);
	xml = domain_def_format(obj->def, VIR_DOMAIN_XML_SECURE);
	before = *obj->def;
	g_mutex_unlock(&obj->lock);
	if (!xml || !(newdef = def_with(&before, xml, device, kind, domains_status_parse_opts())))
		return -1;
	/* CLIENT: the status parser keeps any alias; of the device's, only a
	 * user one is kept, as libvirt does.  The others get the run's next
	 * (virtio-diskN by the target, netN the next free), which is also
	 * kvmm's id of the device. */
	slot = kind == DEV_DISK ? &newdef->disks[newdef->ndisks - 1].alias : &newdef->nets[newdef->nnets - 1].alias;
	if (*slot && !domain_alias_is_user(*slot))
		g_clear_pointer(slot, g_free);
	domain_def_assign_aliases(newdef);
	if (strlen(*slot) > KVMM_DEVICE_ID_MAX) {
		drv_error_report(VIR_ERR_CONFIG_UNSUPPORTED,
				 "alias '%s' is too long: kvmm's device ids take at most %d characters",
				 *slot, KVMM_DEVICE_ID_MAX);
		rc = -1;
	} else if (vmconfig_check(newdef) < 0)
		rc = -1;
	else if (kind == DEV_NET)
		rc = process_attach_net(obj, newdef, newdef->nnets - 1);
	else if (check_disk_free(obj, &newdef->disks[newdef->ndisks - 1]) == 0)
		rc = process_attach_disk(obj, newdef, newdef->ndisks - 1);
	if (rc < 0)
		domain_def_free(newdef);
	return rc;
}

/* The persistent definition with DEVICE: a new definition, checked, or
 * NULL after reporting. */
static struct domain_def *config_with(struct domain_obj *obj, const char *device, enum dev_kind kind)
{
	g_autofree char *xml = NULL;
	struct domain_def *newdef, before;

	g_mutex_lock(&obj->lock);
	xml = domain_def_format(domain_persistent_def(obj), VIR_DOMAIN_XML_INACTIVE | VIR_DOMAIN_XML_SECURE);
	before = *domain_persistent_def(obj);
	g_mutex_unlock(&obj->lock);
	if (!xml || !(newdef = def_with(&before, xml, device, kind, domains_parse_opts())))
		return NULL;
	if (vmconfig_check(newdef) < 0) {
		domain_def_free(newdef);
		return NULL;
	}
	return newdef;
}

static int attach(remote_nonnull_domain *dom, const char *device, unsigned flags, const char *api)
{
	g_autoptr(domain_def_t) dev = NULL;
	struct domain_def *newdef = NULL;
	struct domain_obj *obj;
	enum dev_kind kind;
	bool live, config;
	int rc = -1;

	if (api_check_flags(flags, VIR_DOMAIN_AFFECT_LIVE | VIR_DOMAIN_AFFECT_CONFIG, api) < 0 ||
	    device_kind(device, &kind) < 0 || !(dev = device_alone(device, kind)))
		return -1;
	if (!(obj = wire_domain_get(dom)))
		return -1;
	if (domain_job_begin(obj, api) < 0)
		goto out;
	if (resolve_flags(obj, flags, &live, &config) < 0)
		goto end;
	g_mutex_lock(&obj->lock);
	rc = (live ? check_taken(obj->def, dev, kind) : 0) == 0 &&
	     (config ? check_taken(domain_persistent_def(obj), dev, kind) : 0) == 0 ? 0 : -1;
	g_mutex_unlock(&obj->lock);
	/* As libvirt: the persistent definition is checked first, the
	 * guest's device plugged, then the definition saved. */
	if (rc == 0 && config && !(newdef = config_with(obj, device, kind)))
		rc = -1;
	if (rc == 0 && live)
		rc = attach_live(obj, device, kind);
	if (rc == 0 && config) {
		g_mutex_lock(&obj->lock);
		set_persistent_def(obj, newdef);
		g_mutex_unlock(&obj->lock);
		newdef = NULL;
		rc = domain_save(obj);
	}
	domain_def_free(newdef);
end:
	domain_job_end(obj);
out:
	domain_obj_unref(obj);
	return rc;
}

/* What a detach removes: the device DEV of KIND, or (DEV NULL) the disk or
 * NIC whose alias is ALIAS. */
struct target {
	const struct domain_def *dev;
	enum dev_kind kind;
	const char *alias;
};

/* The index of T's disk or NIC in DEF (T->kind set when found by alias),
 * or -1 after reporting it missing. */
static int find_device(const struct domain_def *def, struct target *t)
{
	char mac[18];
	int i;

	if (!t->dev) {
		for (size_t k = 0; k < def->ndisks; k++)
			if (def->disks[k].alias && !strcmp(def->disks[k].alias, t->alias))
				return t->kind = DEV_DISK, (int)k;
		for (size_t k = 0; k < def->nnets; k++)
			if (def->nets[k].alias && !strcmp(def->nets[k].alias, t->alias))
				return t->kind = DEV_NET, (int)k;
		if (domain_def_has_alias(def, t->alias))
			drv_error_report(VIR_ERR_OPERATION_UNSUPPORTED,
					 "device with alias %s cannot be detached: kvmm detaches only <disk> and <interface> devices",
					 t->alias);
		else
			drv_error_report(VIR_ERR_DEVICE_MISSING, "no device found with alias %s", t->alias);
		return -1;
	}
	if (t->kind == DEV_DISK) {
		if ((i = find_disk(def, t->dev->disks[0].target)) < 0)
			drv_error_report(VIR_ERR_DEVICE_MISSING, "disk %s not found", t->dev->disks[0].target);
		return i;
	}
	if ((i = find_net(def, t->dev->nets[0].mac)) < 0) {
		mac_text(t->dev->nets[0].mac, mac);
		drv_error_report(VIR_ERR_DEVICE_MISSING, "no device matching MAC address %s found", mac);
	}
	return i;
}

static int detach_config(struct domain_obj *obj, struct target *t)
{
	g_autofree char *xml = NULL;
	struct domain_def *newdef, *gone;
	int i;

	g_mutex_lock(&obj->lock);
	xml = domain_def_format(domain_persistent_def(obj), VIR_DOMAIN_XML_INACTIVE | VIR_DOMAIN_XML_SECURE);
	g_mutex_unlock(&obj->lock);
	if (!xml || !(newdef = domain_def_parse_string(xml, domains_parse_opts())))
		return -1;
	if ((i = find_device(newdef, t)) < 0) {
		domain_def_free(newdef);
		return -1;
	}
	/* The entry goes to a definition of its own, freed with it. */
	gone = g_new0(struct domain_def, 1);
	if (t->kind == DEV_NET) {
		gone->nets = g_new(struct domain_net, 1);
		gone->nets[0] = newdef->nets[i];
		gone->nnets = 1;
		memmove(&newdef->nets[i], &newdef->nets[i + 1], (newdef->nnets - i - 1) * sizeof(*newdef->nets));
		newdef->nnets--;
	} else {
		gone->disks = g_new(struct domain_disk, 1);
		gone->disks[0] = newdef->disks[i];
		gone->ndisks = 1;
		memmove(&newdef->disks[i], &newdef->disks[i + 1],
			(newdef->ndisks - i - 1) * sizeof(*newdef->disks));
		newdef->ndisks--;
	}
	domain_def_free(gone);
	g_mutex_lock(&obj->lock);
	set_persistent_def(obj, newdef);
	g_mutex_unlock(&obj->lock);
	return domain_save(obj);
}

/* Detaches T from the live and/or persistent definition of DOM as FLAGS
 * say; both are looked up before anything changes. */
static int detach_target(remote_nonnull_domain *dom, struct target *t, unsigned flags, const char *api)
{
	g_autofree char *alias = NULL;
	struct domain_obj *obj;
	bool live, config, removed;
	int i, rc = -1;

	if (!(obj = wire_domain_get(dom)))
		return -1;
	if (domain_job_begin(obj, api) < 0)
		goto out;
	if (resolve_flags(obj, flags, &live, &config) < 0)
		goto end;
	g_mutex_lock(&obj->lock);
	i = live ? find_device(obj->def, t) : 0;
	if (i >= 0 && live)
		alias = g_strdup(t->kind == DEV_DISK ? obj->def->disks[i].alias : obj->def->nets[i].alias);
	if (i >= 0 && config)
		i = find_device(domain_persistent_def(obj), t);
	g_mutex_unlock(&obj->lock);
	if (i < 0)
		goto end;
	if (live && !alias) {
		drv_error_report(VIR_ERR_INTERNAL_ERROR, "%s", "the device has no alias");
		goto end;
	}
	if (live && process_detach_device(obj, alias, &removed) < 0)
		goto end;
	if (live && !removed)
		pr_info("domain '%s': removal of %s asked; the guest has not given it back yet",
			obj->def->name, alias);
	rc = config ? detach_config(obj, t) : 0;
end:
	domain_job_end(obj);
out:
	domain_obj_unref(obj);
	return rc;
}

static int detach(remote_nonnull_domain *dom, const char *device, unsigned flags, const char *api)
{
	g_autoptr(domain_def_t) dev = NULL;
	struct target t = { 0 };

	if (api_check_flags(flags, VIR_DOMAIN_AFFECT_LIVE | VIR_DOMAIN_AFFECT_CONFIG, api) < 0 ||
	    device_kind(device, &t.kind) < 0 || !(dev = device_alone(device, t.kind)))
		return -1;
	t.dev = dev;
	return detach_target(dom, &t, flags, api);
}

int drv_domain_attach_device(struct rpc_conn *conn, void *args, void *ret)
{
	remote_domain_attach_device_args *a = args;

	/* libvirt: the live domain while it runs, else the definition. */
	return attach(&a->dom, a->xml, 0, "virDomainAttachDevice");
}

int drv_domain_attach_device_flags(struct rpc_conn *conn, void *args, void *ret)
{
	remote_domain_attach_device_flags_args *a = args;

	return attach(&a->dom, a->xml, a->flags, "virDomainAttachDeviceFlags");
}

int drv_domain_detach_device(struct rpc_conn *conn, void *args, void *ret)
{
	remote_domain_detach_device_args *a = args;

	return detach(&a->dom, a->xml, 0, "virDomainDetachDevice");
}

int drv_domain_detach_device_flags(struct rpc_conn *conn, void *args, void *ret)
{
	remote_domain_detach_device_flags_args *a = args;

	return detach(&a->dom, a->xml, a->flags, "virDomainDetachDeviceFlags");
}

static bool same_str(const char *a, const char *b)
{
	return a == b || (a && b && !strcmp(a, b));
}

/* Whether the device XML asks for what A already is: update-device is a
 * no-op then.  What the definition may leave out (a generated tap name)
 * counts only where given. */
static bool disk_same(const struct domain_disk *a, const struct domain_disk *b)
{
	if (a->type != b->type || a->format != b->format || !same_str(a->source, b->source) ||
	    a->readonly != b->readonly || a->shareable != b->shareable || !same_str(a->serial, b->serial) ||
	    a->cache != b->cache || a->io != b->io || a->discard != b->discard ||
	    a->error_policy != b->error_policy || a->rerror_policy != b->rerror_policy ||
	    a->nbacking_given != b->nbacking_given || a->backing_end != b->backing_end)
		return false;
	for (size_t i = 0; i < a->nbacking_given; i++)
		if (!same_str(a->backing[i].path, b->backing[i].path) ||
		    a->backing[i].format != b->backing[i].format)
			return false;
	return true;
}

static bool net_same(const struct domain_net *a, const struct domain_net *b)
{
	return a->type == b->type && same_str(a->source, b->source) && a->mtu == b->mtu &&
	       a->managed == b->managed &&
	       (!b->ifname || b->ifname_generated || same_str(a->ifname, b->ifname));
}

int drv_domain_update_device_flags(struct rpc_conn *conn, void *args, void *ret)
{
	remote_domain_update_device_flags_args *a = args;
	const char *api = "virDomainUpdateDeviceFlags";
	g_autoptr(domain_def_t) dev = NULL;
	struct domain_obj *obj;
	enum dev_kind kind;
	bool live, config, same = true;
	int rc = -1;

	if (api_check_flags(a->flags, VIR_DOMAIN_AFFECT_LIVE | VIR_DOMAIN_AFFECT_CONFIG |
			    VIR_DOMAIN_DEVICE_MODIFY_FORCE, api) < 0 ||
	    device_kind(a->xml, &kind) < 0 || !(dev = device_alone(a->xml, kind)))
		return -1;
	if (!(obj = wire_domain_get(&a->dom)))
		return -1;
	if (domain_job_begin(obj, api) < 0)
		goto out;
	if (resolve_flags(obj, a->flags, &live, &config) < 0)
		goto end;
	g_mutex_lock(&obj->lock);
	for (int k = 0; k < 2 && same; k++) {
		const struct domain_def *def = k ? domain_persistent_def(obj) : obj->def;
		struct target t = { .dev = dev, .kind = kind };
		int i;

		if (!(k ? config : live))
			continue;
		if ((i = find_device(def, &t)) < 0) {
			g_mutex_unlock(&obj->lock);
			goto end;
		}
		same = kind == DEV_DISK ? disk_same(&def->disks[i], &dev->disks[0])
					: net_same(&def->nets[i], &dev->nets[0]);
	}
	g_mutex_unlock(&obj->lock);
	/* kvmm has no media to change (no CD-ROM) and cannot change a NIC's
	 * link or a disk in place: only asking for what is there succeeds. */
	if (!same)
		drv_error_report(VIR_ERR_OPERATION_UNSUPPORTED, "%s",
				 "updating a device is not supported by kvmm; detach it and attach the new one");
	else
		rc = 0;
end:
	domain_job_end(obj);
out:
	domain_obj_unref(obj);
	return rc;
}

int drv_domain_detach_device_alias(struct rpc_conn *conn, void *args, void *ret)
{
	remote_domain_detach_device_alias_args *a = args;
	struct target t = { .alias = a->alias };

	if (api_check_flags(a->flags, VIR_DOMAIN_AFFECT_LIVE | VIR_DOMAIN_AFFECT_CONFIG,
			    "virDomainDetachDeviceAlias") < 0)
		return -1;
	/* As libvirt's: the live definition holds every alias, the
	 * persistent one only the user's (ua-). */
	return detach_target(&a->dom, &t, a->flags, "virDomainDetachDeviceAlias");
}
