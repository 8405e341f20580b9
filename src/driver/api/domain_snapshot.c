/* Domain snapshots (virDomainSnapshot*): external snapshots only.
 *
 * kvmm's qcow2 has no internal snapshots, so a snapshot puts each disk on
 * a new qcow2 overlay (written by the daemon, kvmm/qcow2_create.c) whose
 * backing file is the image the disk had: that image is the disk as the
 * snapshot saw it, and must not change while the snapshot exists.  The
 * snapshot's metadata (domain/snapshot_store.c) keeps the domain's XML
 * as it was, whose disks name those images, and the overlays made.
 *
 * Revert puts each disk on a fresh overlay over the image the snapshot
 * kept, and the domain's definition back to the snapshot's.  Delete
 * removes the metadata only: the overlays stay, the domain may be using
 * them, and merging them down is left to the user (no block commit yet).
 *
 * A running domain is paused by kvmm's save into the memory file (or a
 * pause, disk-only), its disks switched onto their overlays by kvmm's
 * block-overlay, and resumed.  Reverting to such a snapshot starts a new
 * kvmm restoring from the memory file (kvmm --restore).
 *
 * What is not done yet is refused with a libvirt-style error: internal
 * snapshots, reusing existing overlay files, quiescing, transient
 * running domains. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libvirt/libvirt.h>

#include "domain_api.h"
#include "driver.h"
#include "error.h"
#include "handlers.h"
#include "log.h"
#include "conf/snapshot_conf.h"
#include "domain/events.h"
#include "domain/job.h"
#include "domain/snapshot_store.h"
#include "kvmm/monitor.h"
#include "kvmm/process.h"
#include "kvmm/qcow2_create.h"
#include "remote_snapshot_xdr.h"

#define VIR_FROM_THIS VIR_FROM_DOMAIN_SNAPSHOT

/* --- the store's place ------------------------------------------------- */

int snapshots_init(void)
{
	g_autofree char *dir = NULL;

	/* Next to managed save images, as libvirt's qemu driver keeps
	 * its snapshot metadata. */
	if (drv_state.root && drv_state.root[0])
		dir = g_build_filename(drv_state.root, "lib", "kvmm", "snapshot", NULL);
	else if (drv_state.privileged)
		dir = g_strdup("/var/lib/libvirt/kvmm/snapshot");
	else
		dir = g_build_filename(g_get_user_config_dir(), "libvirt", "kvmm", "snapshot", NULL);
	return snapshot_store_init(dir);
}

/* --- helpers -------------------------------------------------------------- */

static char *obj_name(struct domain_obj *obj)
{
	char *name;

	g_mutex_lock(&obj->lock);
	name = g_strdup(obj->def->name);
	g_mutex_unlock(&obj->lock);
	return name;
}

static void no_snapshot(const char *name)
{
	drv_error_report(VIR_ERR_NO_DOMAIN_SNAPSHOT, "no domain snapshot with matching name '%s'",
			 name);
}

static void make_snap(struct domain_obj *obj, const char *name,
		      remote_nonnull_domain_snapshot *out)
{
	out->name = strdup(name);
	if (!out->name)
		g_error("out of memory");
	wire_domain_make(obj, &out->dom);
}

/* The domain of a snapshot a client names (a reference) and its name,
 * checked to exist; NULL after reporting. */
static struct domain_obj *snap_domain(const remote_nonnull_domain_snapshot *s, char **dom)
{
	struct domain_obj *obj = wire_domain_get(&s->dom);
	bool found;

	if (!obj)
		return NULL;
	*dom = obj_name(obj);
	snapshot_store_lock();
	found = snapshot_store_find(*dom, s->name) != NULL;
	snapshot_store_unlock();
	if (!found) {
		no_snapshot(s->name);
		g_clear_pointer(dom, g_free);
		domain_obj_unref(obj);
		return NULL;
	}
	return obj;
}

static bool is_running_state(const struct snapshot_def *s)
{
	return s->state && (!strcmp(s->state, "running") || !strcmp(s->state, "paused"));
}

/* listAllSnapshots' filter groups, as libvirt's (each group: no bit
 * given passes all).  Every snapshot here has metadata and is external. */
static bool snap_matches(GPtrArray *all, const struct snapshot_def *s, unsigned f)
{
	bool leaf = true;

	for (guint i = 0; i < all->len; i++) {
		const struct snapshot_def *c = all->pdata[i];

		if (c->parent && !strcmp(c->parent, s->name))
			leaf = false;
	}
	if ((f & (VIR_DOMAIN_SNAPSHOT_LIST_LEAVES | VIR_DOMAIN_SNAPSHOT_LIST_NO_LEAVES)) &&
	    !((f & VIR_DOMAIN_SNAPSHOT_LIST_LEAVES && leaf) ||
	      (f & VIR_DOMAIN_SNAPSHOT_LIST_NO_LEAVES && !leaf)))
		return false;
	if ((f & (VIR_DOMAIN_SNAPSHOT_LIST_METADATA | VIR_DOMAIN_SNAPSHOT_LIST_NO_METADATA)) &&
	    !(f & VIR_DOMAIN_SNAPSHOT_LIST_METADATA))
		return false;
	if (f & (VIR_DOMAIN_SNAPSHOT_LIST_INACTIVE | VIR_DOMAIN_SNAPSHOT_LIST_ACTIVE |
		 VIR_DOMAIN_SNAPSHOT_LIST_DISK_ONLY)) {
		bool disk = s->state && !strcmp(s->state, "disk-snapshot");
		bool active = is_running_state(s);

		if (!((f & VIR_DOMAIN_SNAPSHOT_LIST_INACTIVE && !disk && !active) ||
		      (f & VIR_DOMAIN_SNAPSHOT_LIST_ACTIVE && active) ||
		      (f & VIR_DOMAIN_SNAPSHOT_LIST_DISK_ONLY && disk)))
			return false;
	}
	if ((f & (VIR_DOMAIN_SNAPSHOT_LIST_INTERNAL | VIR_DOMAIN_SNAPSHOT_LIST_EXTERNAL)) &&
	    !(f & VIR_DOMAIN_SNAPSHOT_LIST_EXTERNAL))
		return false;
	return true;
}

/* Whether S descends from ANCESTOR (DIRECT: is its child). */
static bool descends(GPtrArray *all, const struct snapshot_def *s, const char *ancestor,
		     bool direct)
{
	const char *p = s->parent;

	for (guint depth = 0; p && depth <= all->len; depth++) {
		const struct snapshot_def *ps = NULL;

		if (!strcmp(p, ancestor))
			return true;
		if (direct)
			return false;
		for (guint i = 0; i < all->len; i++)
			if (!strcmp(((struct snapshot_def *)all->pdata[i])->name, p))
				ps = all->pdata[i];
		p = ps ? ps->parent : NULL;
	}
	return false;
}

#define LIST_FILTERS (VIR_DOMAIN_SNAPSHOT_LIST_LEAVES | VIR_DOMAIN_SNAPSHOT_LIST_NO_LEAVES | \
		      VIR_DOMAIN_SNAPSHOT_LIST_METADATA | VIR_DOMAIN_SNAPSHOT_LIST_NO_METADATA | \
		      VIR_DOMAIN_SNAPSHOT_LIST_INACTIVE | VIR_DOMAIN_SNAPSHOT_LIST_ACTIVE | \
		      VIR_DOMAIN_SNAPSHOT_LIST_DISK_ONLY | VIR_DOMAIN_SNAPSHOT_LIST_INTERNAL | \
		      VIR_DOMAIN_SNAPSHOT_LIST_EXTERNAL | VIR_DOMAIN_SNAPSHOT_LIST_TOPOLOGICAL)

/* The names of DOM's snapshots passing FLAGS: under PARENT (NULL: the
 * domain's; ROOTS/DESCENDANTS as the API's), in creation order, which
 * puts parents first (TOPOLOGICAL).  Lock held; a GPtrArray of copies. */
static GPtrArray *collect(const char *dom, const char *parent, unsigned flags)
{
	GPtrArray *all = snapshot_store_list(dom), *out = g_ptr_array_new_with_free_func(g_free);

	for (guint i = 0; i < all->len; i++) {
		const struct snapshot_def *s = all->pdata[i];

		if (!parent && (flags & VIR_DOMAIN_SNAPSHOT_LIST_ROOTS) && s->parent)
			continue;
		if (parent && !descends(all, s, parent,
					!(flags & VIR_DOMAIN_SNAPSHOT_LIST_DESCENDANTS)))
			continue;
		if (snap_matches(all, s, flags))
			g_ptr_array_add(out, g_strdup(s->name));
	}
	return out;
}

/* --- listing and lookups -------------------------------------------------- */

static int list_common(const remote_nonnull_domain *wdom, const char *parent_name,
		       const remote_nonnull_domain_snapshot *wsnap, unsigned flags, const char *api,
		       GPtrArray **names, struct domain_obj **objp)
{
	struct domain_obj *obj;
	g_autofree char *dom = NULL;

	if (api_check_flags(flags, LIST_FILTERS | VIR_DOMAIN_SNAPSHOT_LIST_ROOTS, api) < 0)
		return -1;
	obj = wsnap ? snap_domain(wsnap, &dom) : wire_domain_get(wdom);
	if (!obj)
		return -1;
	if (!dom)
		dom = obj_name(obj);
	snapshot_store_lock();
	*names = collect(dom, parent_name, flags);
	snapshot_store_unlock();
	*objp = obj;
	return 0;
}

static int fill_names(GPtrArray *names, int max, u_int *len, remote_nonnull_string **val)
{
	/* CLIENT: maxnames bounds what is asked; libvirt caps it too. */
	if (max < 0 || max > REMOTE_DOMAIN_SNAPSHOT_LIST_MAX) {
		drv_error_report(VIR_ERR_RPC, "too many remote domain snapshot names: %d > %d", max,
				 REMOTE_DOMAIN_SNAPSHOT_LIST_MAX);
		return -1;
	}
	*len = MIN((guint)max, names->len);
	*val = calloc(*len ? *len : 1, sizeof(**val));
	for (u_int i = 0; i < *len; i++)
		(*val)[i] = strdup(names->pdata[i]);
	return 0;
}

static int fill_snaps(struct domain_obj *obj, GPtrArray *names, int need,
		      u_int *len, remote_nonnull_domain_snapshot **val, int *ret)
{
	*ret = names->len;
	if (!need)
		return 0;
	if (names->len > REMOTE_DOMAIN_SNAPSHOT_LIST_MAX) {
		drv_error_report(VIR_ERR_RPC, "too many snapshots");
		return -1;
	}
	*len = names->len;
	*val = calloc(*len ? *len : 1, sizeof(**val));
	for (u_int i = 0; i < *len; i++)
		make_snap(obj, names->pdata[i], &(*val)[i]);
	return 0;
}

int drv_domain_snapshot_num(struct rpc_conn *conn, void *args, void *ret)
{
	remote_domain_snapshot_num_args *a = args;
	remote_domain_snapshot_num_ret *r = ret;
	g_autoptr(GPtrArray) names = NULL;
	struct domain_obj *obj;

	if (list_common(&a->dom, NULL, NULL, a->flags, "virDomainSnapshotNum", &names, &obj) < 0)
		return -1;
	r->num = names->len;
	domain_obj_unref(obj);
	return 0;
}

int drv_domain_snapshot_list_names(struct rpc_conn *conn, void *args, void *ret)
{
	remote_domain_snapshot_list_names_args *a = args;
	remote_domain_snapshot_list_names_ret *r = ret;
	g_autoptr(GPtrArray) names = NULL;
	struct domain_obj *obj;
	int rc;

	if (list_common(&a->dom, NULL, NULL, a->flags, "virDomainSnapshotListNames", &names,
			&obj) < 0)
		return -1;
	rc = fill_names(names, a->maxnames, &r->names.names_len, &r->names.names_val);
	domain_obj_unref(obj);
	return rc;
}

int drv_domain_list_all_snapshots(struct rpc_conn *conn, void *args, void *ret)
{
	remote_domain_list_all_snapshots_args *a = args;
	remote_domain_list_all_snapshots_ret *r = ret;
	g_autoptr(GPtrArray) names = NULL;
	struct domain_obj *obj;
	int rc;

	if (list_common(&a->dom, NULL, NULL, a->flags, "virDomainListAllSnapshots", &names,
			&obj) < 0)
		return -1;
	rc = fill_snaps(obj, names, a->need_results, &r->snapshots.snapshots_len,
			&r->snapshots.snapshots_val, &r->ret);
	domain_obj_unref(obj);
	return rc;
}

int drv_domain_snapshot_num_children(struct rpc_conn *conn, void *args, void *ret)
{
	remote_domain_snapshot_num_children_args *a = args;
	remote_domain_snapshot_num_children_ret *r = ret;
	g_autoptr(GPtrArray) names = NULL;
	struct domain_obj *obj;

	if (list_common(NULL, a->snap.name, &a->snap, a->flags, "virDomainSnapshotNumChildren",
			&names, &obj) < 0)
		return -1;
	r->num = names->len;
	domain_obj_unref(obj);
	return 0;
}

int drv_domain_snapshot_list_children_names(struct rpc_conn *conn, void *args, void *ret)
{
	remote_domain_snapshot_list_children_names_args *a = args;
	remote_domain_snapshot_list_children_names_ret *r = ret;
	g_autoptr(GPtrArray) names = NULL;
	struct domain_obj *obj;
	int rc;

	if (list_common(NULL, a->snap.name, &a->snap, a->flags,
			"virDomainSnapshotListChildrenNames", &names, &obj) < 0)
		return -1;
	rc = fill_names(names, a->maxnames, &r->names.names_len, &r->names.names_val);
	domain_obj_unref(obj);
	return rc;
}

int drv_domain_snapshot_list_all_children(struct rpc_conn *conn, void *args, void *ret)
{
	remote_domain_snapshot_list_all_children_args *a = args;
	remote_domain_snapshot_list_all_children_ret *r = ret;
	g_autoptr(GPtrArray) names = NULL;
	struct domain_obj *obj;
	int rc;

	if (list_common(NULL, a->snapshot.name, &a->snapshot, a->flags,
			"virDomainSnapshotListAllChildren", &names, &obj) < 0)
		return -1;
	rc = fill_snaps(obj, names, a->need_results, &r->snapshots.snapshots_len,
			&r->snapshots.snapshots_val, &r->ret);
	domain_obj_unref(obj);
	return rc;
}

int drv_domain_snapshot_lookup_by_name(struct rpc_conn *conn, void *args, void *ret)
{
	remote_domain_snapshot_lookup_by_name_args *a = args;
	remote_domain_snapshot_lookup_by_name_ret *r = ret;
	remote_nonnull_domain_snapshot s = { .name = a->name, .dom = a->dom };
	g_autofree char *dom = NULL;
	struct domain_obj *obj;

	if (api_check_flags(a->flags, 0, "virDomainSnapshotLookupByName") < 0)
		return -1;
	obj = snap_domain(&s, &dom);
	if (!obj)
		return -1;
	make_snap(obj, a->name, &r->snap);
	domain_obj_unref(obj);
	return 0;
}

int drv_domain_snapshot_get_xml_desc(struct rpc_conn *conn, void *args, void *ret)
{
	remote_domain_snapshot_get_xml_desc_args *a = args;
	remote_domain_snapshot_get_xml_desc_ret *r = ret;
	g_autofree char *dom = NULL, *xml = NULL;
	struct domain_obj *obj;
	struct snapshot_def *s;

	/* SECURE: the domain XML kept has no secrets kvmm knows of. */
	if (api_check_flags(a->flags, VIR_DOMAIN_SNAPSHOT_XML_SECURE,
			    "virDomainSnapshotGetXMLDesc") < 0)
		return -1;
	obj = snap_domain(&a->snap, &dom);
	if (!obj)
		return -1;
	snapshot_store_lock();
	s = snapshot_store_find(dom, a->snap.name);
	xml = s ? snapshot_def_format(s, false) : NULL;
	snapshot_store_unlock();
	domain_obj_unref(obj);
	if (!xml) {
		no_snapshot(a->snap.name);
		return -1;
	}
	r->xml = strdup(xml);
	return 0;
}

int drv_domain_snapshot_current(struct rpc_conn *conn, void *args, void *ret)
{
	remote_domain_snapshot_current_args *a = args;
	remote_domain_snapshot_current_ret *r = ret;
	g_autofree char *dom = NULL, *name = NULL;
	struct domain_obj *obj;
	struct snapshot_def *s;

	if (api_check_flags(a->flags, 0, "virDomainSnapshotCurrent") < 0)
		return -1;
	obj = wire_domain_get(&a->dom);
	if (!obj)
		return -1;
	dom = obj_name(obj);
	snapshot_store_lock();
	s = snapshot_store_current(dom);
	name = s ? g_strdup(s->name) : NULL;
	snapshot_store_unlock();
	if (!name) {
		drv_error_report(VIR_ERR_NO_DOMAIN_SNAPSHOT, "the domain does not have a current snapshot");
		domain_obj_unref(obj);
		return -1;
	}
	make_snap(obj, name, &r->snap);
	domain_obj_unref(obj);
	return 0;
}

int drv_domain_has_current_snapshot(struct rpc_conn *conn, void *args, void *ret)
{
	remote_domain_has_current_snapshot_args *a = args;
	remote_domain_has_current_snapshot_ret *r = ret;
	g_autofree char *dom = NULL;
	struct domain_obj *obj;

	if (api_check_flags(a->flags, 0, "virDomainHasCurrentSnapshot") < 0)
		return -1;
	obj = wire_domain_get(&a->dom);
	if (!obj)
		return -1;
	dom = obj_name(obj);
	snapshot_store_lock();
	r->result = snapshot_store_current(dom) != NULL;
	snapshot_store_unlock();
	domain_obj_unref(obj);
	return 0;
}

int drv_domain_snapshot_get_parent(struct rpc_conn *conn, void *args, void *ret)
{
	remote_domain_snapshot_get_parent_args *a = args;
	remote_domain_snapshot_get_parent_ret *r = ret;
	g_autofree char *dom = NULL, *parent = NULL;
	struct domain_obj *obj;
	struct snapshot_def *s;

	if (api_check_flags(a->flags, 0, "virDomainSnapshotGetParent") < 0)
		return -1;
	obj = snap_domain(&a->snap, &dom);
	if (!obj)
		return -1;
	snapshot_store_lock();
	s = snapshot_store_find(dom, a->snap.name);
	parent = s && s->parent ? g_strdup(s->parent) : NULL;
	snapshot_store_unlock();
	if (!parent) {
		drv_error_report(VIR_ERR_NO_DOMAIN_SNAPSHOT, "snapshot '%s' does not have a parent",
				 a->snap.name);
		domain_obj_unref(obj);
		return -1;
	}
	make_snap(obj, parent, &r->snap);
	domain_obj_unref(obj);
	return 0;
}

int drv_domain_snapshot_is_current(struct rpc_conn *conn, void *args, void *ret)
{
	remote_domain_snapshot_is_current_args *a = args;
	remote_domain_snapshot_is_current_ret *r = ret;
	g_autofree char *dom = NULL;
	struct domain_obj *obj;
	struct snapshot_def *s;

	if (api_check_flags(a->flags, 0, "virDomainSnapshotIsCurrent") < 0)
		return -1;
	obj = snap_domain(&a->snap, &dom);
	if (!obj)
		return -1;
	snapshot_store_lock();
	s = snapshot_store_find(dom, a->snap.name);
	r->current = s && s->current;
	snapshot_store_unlock();
	domain_obj_unref(obj);
	return 0;
}

int drv_domain_snapshot_has_metadata(struct rpc_conn *conn, void *args, void *ret)
{
	remote_domain_snapshot_has_metadata_args *a = args;
	remote_domain_snapshot_has_metadata_ret *r = ret;
	g_autofree char *dom = NULL;
	struct domain_obj *obj;

	if (api_check_flags(a->flags, 0, "virDomainSnapshotHasMetadata") < 0)
		return -1;
	obj = snap_domain(&a->snap, &dom);
	if (!obj)
		return -1;
	r->metadata = 1;	/* a snapshot made without is never known again */
	domain_obj_unref(obj);
	return 0;
}

/* --- the domain's disks onto overlays ---------------------------------- */

/* A copy of DEF (the daemon's parse of its own XML). */
static struct domain_def *def_copy(const struct domain_def *def, char **xml_out)
{
	g_autofree char *xml = domain_def_format(def, VIR_DOMAIN_XML_INACTIVE | VIR_DOMAIN_XML_SECURE);
	struct domain_def *copy;

	if (!xml)
		return NULL;
	copy = domain_def_parse_string(xml, domains_parse_opts());
	if (copy && xml_out)
		*xml_out = g_steal_pointer(&xml);
	return copy;
}

static int disk_by_target(const struct domain_def *def, const char *target)
{
	for (size_t i = 0; i < def->ndisks; i++)
		if (!strcmp(def->disks[i].target, target))
			return (int)i;
	return -1;
}

/* libvirt's default overlay name: the image's, its extension replaced
 * by the snapshot's name (disk.qcow2 -> disk.SNAP), else SNAP appended. */
static char *default_overlay(const char *source, const char *snap)
{
	const char *base = strrchr(source, '/'), *dot = strrchr(source, '.');

	if (dot && (!base || dot > base + 1))
		return g_strdup_printf("%.*s.%s", (int)(dot - source), source, snap);
	return g_strdup_printf("%s.%s", source, snap);
}

/* Puts disk D on OVERLAY, a qcow2 file over D's image.  A chain the
 * definition spells out gets the old image on top; one it leaves to the
 * headers stays so (the overlay's header names its backing and format). */
static int disk_onto_overlay(struct domain_disk *d, const char *overlay)
{
	if (d->nbacking_given || d->backing_end) {
		struct domain_backing *b;

		if (d->nbacking_given + 1 > DOMAIN_MAX_BACKING) {
			drv_error_report(VIR_ERR_OPERATION_UNSUPPORTED,
					 "disk '%s' has %d backing layers already, kvmm's limit",
					 d->target, DOMAIN_MAX_BACKING);
			return -1;
		}
		b = g_new0(struct domain_backing, d->nbacking_given + 1);
		b[0].format = d->format;
		b[0].path = d->source;
		for (size_t i = 0; i < d->nbacking_given; i++)
			b[i + 1] = d->backing[i];
		for (size_t i = d->nbacking_given; i < d->nbacking; i++)
			g_free(d->backing[i].path);
		g_free(d->backing);
		d->backing = b;
		d->nbacking = d->nbacking_given = d->nbacking_given + 1;
	} else {
		g_free(d->source);
	}
	d->source = g_strdup(overlay);
	d->format = FORMAT_QCOW2;
	d->type = DISK_FILE;
	return 0;
}

/* Creates the overlay FILE over disk D of DEF and puts D on it; the path
 * joins CREATED.  0, or -1 after reporting. */
static int overlay_disk(struct domain_def *def, size_t i, const char *file, GPtrArray *created)
{
	struct domain_disk *d = &def->disks[i];
	uint64_t size;

	if (image_virtual_size(d->source, d->format, &size) < 0 ||
	    qcow2_create_overlay(file, d->source, d->format == FORMAT_QCOW2 ? "qcow2" : "raw",
				 size) < 0)
		return -1;
	g_ptr_array_add(created, g_strdup(file));
	return disk_onto_overlay(d, file);
}

static void unlink_all(GPtrArray *files)
{
	for (guint i = 0; i < files->len; i++)
		unlink(files->pdata[i]);
}

/* Makes NEWDEF the definition of OBJ (shut off; the job held), on disk
 * first.  Takes NEWDEF in every case. */
static int commit_def(struct domain_obj *obj, struct domain_def *newdef)
{
	struct domain_def *old;

	g_mutex_lock(&obj->lock);
	old = obj->def;
	obj->def = newdef;
	g_mutex_unlock(&obj->lock);
	if (domain_save(obj) < 0) {
		g_mutex_lock(&obj->lock);
		obj->def = old;
		g_mutex_unlock(&obj->lock);
		domain_def_free(newdef);
		return -1;
	}
	/* Readers without the lock may still hold the old one. */
	g_mutex_lock(&obj->lock);
	domain_def_free(obj->retired);
	obj->retired = old;
	g_mutex_unlock(&obj->lock);
	return 0;
}

/* --- create ------------------------------------------------------------- */

#define CREATE_FLAGS (VIR_DOMAIN_SNAPSHOT_CREATE_REDEFINE | VIR_DOMAIN_SNAPSHOT_CREATE_CURRENT | \
		      VIR_DOMAIN_SNAPSHOT_CREATE_NO_METADATA | VIR_DOMAIN_SNAPSHOT_CREATE_HALT | \
		      VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY | VIR_DOMAIN_SNAPSHOT_CREATE_REUSE_EXT | \
		      VIR_DOMAIN_SNAPSHOT_CREATE_QUIESCE | VIR_DOMAIN_SNAPSHOT_CREATE_ATOMIC | \
		      VIR_DOMAIN_SNAPSHOT_CREATE_LIVE | VIR_DOMAIN_SNAPSHOT_CREATE_VALIDATE)

static int check_create_flags(unsigned flags)
{
	if (api_check_flags(flags, CREATE_FLAGS, "virDomainSnapshotCreateXML") < 0)
		return -1;
	if (flags & VIR_DOMAIN_SNAPSHOT_CREATE_QUIESCE) {
		drv_error_report(VIR_ERR_OPERATION_UNSUPPORTED,
				 "quiesce requires a guest agent, which kvmm domains do not have");
		return -1;
	}
	if (flags & VIR_DOMAIN_SNAPSHOT_CREATE_REUSE_EXT) {
		drv_error_report(VIR_ERR_ARGUMENT_UNSUPPORTED,
				 "reusing existing overlay files is not supported: virtkvmmd creates them");
		return -1;
	}
	if (flags & VIR_DOMAIN_SNAPSHOT_CREATE_VALIDATE) {
		drv_error_report(VIR_ERR_ARGUMENT_UNSUPPORTED,
				 "validating snapshot XML against the schema is not supported");
		return -1;
	}
	if ((flags & VIR_DOMAIN_SNAPSHOT_CREATE_REDEFINE) &&
	    (flags & ~(VIR_DOMAIN_SNAPSHOT_CREATE_REDEFINE | VIR_DOMAIN_SNAPSHOT_CREATE_CURRENT))) {
		drv_error_report(VIR_ERR_INVALID_ARG,
				 "redefine accepts only the 'current' flag besides itself");
		return -1;
	}
	if ((flags & VIR_DOMAIN_SNAPSHOT_CREATE_CURRENT) &&
	    !(flags & VIR_DOMAIN_SNAPSHOT_CREATE_REDEFINE)) {
		drv_error_report(VIR_ERR_INVALID_ARG, "the 'current' flag requires 'redefine'");
		return -1;
	}
	return 0;
}

/* REDEFINE: metadata only, as given (libvirt's snapshot-create --redefine). */
static int redefine(struct domain_obj *obj, const char *dom, struct snapshot_def *def,
		    unsigned flags)
{
	struct domain_def *d;
	int rc;

	if (!def->name || !def->domain_xml) {
		drv_error_report(VIR_ERR_INVALID_ARG,
				 "a redefined snapshot needs its <name> and its <domain>");
		snapshot_def_free(def);
		return -1;
	}
	/* CLIENT: the domain inside must be this one. */
	d = domain_def_parse_string(def->domain_xml, domains_parse_opts());
	if (!d) {
		snapshot_def_free(def);
		return -1;
	}
	g_mutex_lock(&obj->lock);
	rc = memcmp(d->uuid, obj->def->uuid, 16) ? -1 : 0;
	g_mutex_unlock(&obj->lock);
	domain_def_free(d);
	if (rc < 0) {
		drv_error_report(VIR_ERR_INVALID_ARG, "definition for snapshot %s must use the uuid of domain %s",
				 def->name, dom);
		snapshot_def_free(def);
		return -1;
	}
	snapshot_store_lock();
	if (def->parent && (!strcmp(def->parent, def->name) ||
			    !snapshot_store_find(dom, def->parent))) {
		drv_error_report(VIR_ERR_INVALID_ARG, "parent %s for snapshot %s not found",
				 def->parent, def->name);
		rc = -1;
	} else {
		if (!def->state)
			def->state = g_strdup("shutoff");
		snapshot_normalize_domain(def);
		rc = snapshot_store_add(dom, def, flags & VIR_DOMAIN_SNAPSHOT_CREATE_CURRENT);
		def = NULL;
	}
	snapshot_store_unlock();
	snapshot_def_free(def);
	return rc;
}

/* Fills DEF's disk list for every disk of DOMDEF (libvirt aligns them
 * so): external on an overlay unless the disk says no or is read-only. */
static int align_disks(struct snapshot_def *def, const struct domain_def *domdef)
{
	struct snapshot_disk *out = g_new0(struct snapshot_disk, domdef->ndisks + 1);
	int rc = 0;

	for (size_t i = 0; i < def->ndisks; i++)
		if (disk_by_target(domdef, def->disks[i].name) < 0) {
			drv_error_report(VIR_ERR_CONFIG_UNSUPPORTED, "no disk named '%s'",
					 def->disks[i].name);
			rc = -1;
		}
	for (size_t i = 0; rc == 0 && i < domdef->ndisks; i++) {
		const struct domain_disk *dk = &domdef->disks[i];
		struct snapshot_disk *g = NULL;

		for (size_t j = 0; j < def->ndisks; j++)
			if (!strcmp(def->disks[j].name, dk->target))
				g = &def->disks[j];
		out[i].name = g_strdup(dk->target);
		out[i].snapshot = g ? g->snapshot : SNAP_LOC_DEFAULT;
		if (out[i].snapshot == SNAP_LOC_DEFAULT)
			out[i].snapshot = dk->readonly ? SNAP_LOC_NO : SNAP_LOC_EXTERNAL;
		if (out[i].snapshot == SNAP_LOC_INTERNAL) {
			drv_error_report(VIR_ERR_OPERATION_UNSUPPORTED,
					 "disk '%s': internal snapshots are not supported by kvmm (its qcow2 has none); use snapshot='external'",
					 dk->target);
			rc = -1;
		} else if (out[i].snapshot == SNAP_LOC_MANUAL) {
			drv_error_report(VIR_ERR_OPERATION_UNSUPPORTED,
					 "disk '%s': manual snapshots are not supported", dk->target);
			rc = -1;
		} else if (out[i].snapshot == SNAP_LOC_EXTERNAL) {
			if (g && g->driver && strcmp(g->driver, "qcow2") != 0) {
				drv_error_report(VIR_ERR_CONFIG_UNSUPPORTED,
						 "disk '%s': external snapshot format '%s' is not supported, only 'qcow2'",
						 dk->target, g->driver);
				rc = -1;
			} else if (g && g->file) {
				out[i].file = g_strdup(g->file);
			} else if (dk->type == DISK_BLOCK) {
				drv_error_report(VIR_ERR_CONFIG_UNSUPPORTED,
						 "cannot generate external snapshot name for disk '%s' on a block device: give <source file=>",
						 dk->target);
				rc = -1;
			} else {
				out[i].file = default_overlay(dk->source, def->name);
			}
			out[i].driver = g_strdup("qcow2");
		}
	}
	/* CLIENT: two disks onto one file would share an overlay. */
	for (size_t i = 0; rc == 0 && i < domdef->ndisks; i++)
		for (size_t j = 0; j < i; j++)
			if (out[i].file && out[j].file && !strcmp(out[i].file, out[j].file)) {
				drv_error_report(VIR_ERR_CONFIG_UNSUPPORTED,
						 "disks '%s' and '%s' would share the overlay '%s'",
						 out[j].name, out[i].name, out[i].file);
				rc = -1;
				break;
			}
	for (size_t i = 0; i < def->ndisks; i++) {
		g_free(def->disks[i].name);
		g_free(def->disks[i].file);
		g_free(def->disks[i].driver);
	}
	g_free(def->disks);
	def->disks = out;
	def->ndisks = domdef->ndisks;
	return rc;
}

/* A snapshot of OBJ (shut off; the job held): overlays, the definition
 * onto them, then the metadata.  All or nothing: what was made is
 * removed again on failure (so ATOMIC is what every create does). */
static int create_offline(struct domain_obj *obj, const char *dom, struct snapshot_def *def,
			  unsigned flags)
{
	g_autoptr(GPtrArray) created = g_ptr_array_new_with_free_func(g_free);
	g_autofree char *domxml = NULL;
	struct domain_def *newdef;
	struct snapshot_def *cur;

	if (def->memory == SNAP_LOC_INTERNAL || def->memory == SNAP_LOC_EXTERNAL) {
		drv_error_report(VIR_ERR_CONFIG_UNSUPPORTED,
				 "memory state cannot be saved with offline or disk-only snapshot");
		goto fail;
	}
	g_mutex_lock(&obj->lock);
	newdef = def_copy(obj->def, &domxml);
	g_mutex_unlock(&obj->lock);
	if (!newdef)
		goto fail;
	if (align_disks(def, newdef) < 0) {
		domain_def_free(newdef);
		goto fail;
	}
	for (size_t i = 0; i < def->ndisks; i++)
		if (def->disks[i].snapshot == SNAP_LOC_EXTERNAL &&
		    overlay_disk(newdef, i, def->disks[i].file, created) < 0) {
			domain_def_free(newdef);
			goto undo;
		}
	if (commit_def(obj, newdef) < 0)
		goto undo;
	def->memory = SNAP_LOC_NO;
	def->state = g_strdup((flags & VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY) ? "disk-snapshot"
									  : "shutoff");
	def->domain_xml = g_steal_pointer(&domxml);
	def->creation = g_get_real_time() / G_USEC_PER_SEC;
	if (flags & VIR_DOMAIN_SNAPSHOT_CREATE_NO_METADATA) {
		snapshot_def_free(def);
		return 0;
	}
	snapshot_store_lock();
	cur = snapshot_store_current(dom);
	def->parent = cur ? g_strdup(cur->name) : NULL;
	/* The overlays are in use now: a metadata write that fails leaves
	 * them (and the definition on them) in place, as libvirt does. */
	if (snapshot_store_add(dom, def, true) < 0) {
		snapshot_store_unlock();
		return -1;
	}
	snapshot_store_unlock();
	return 0;
undo:
	unlink_all(created);
fail:
	snapshot_def_free(def);
	return -1;
}

/* The memory file of snapshot NAME by default: next to its metadata. */
/* kvmm's state stream into FILE: written through FILE.new, a descriptor
 * the daemon opens (0600) and hands kvmm, fsynced and renamed; the VM is
 * left paused.  On failure nothing is left and a VM that WAS_RUNNING runs
 * on. */
static int save_memory(const char *api, const char *file, bool was_running)
{
	g_autofree char *tmp = g_strdup_printf("%s.new", file);
	const char *failed = NULL;
	int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600), err;

	if (fd < 0) {
		drv_error_report(VIR_ERR_OPERATION_FAILED, "cannot create the memory file '%s': %s",
				 tmp, g_strerror(errno));
		return -1;
	}
	if (monitor_save(api, fd) < 0) {
		close(fd);
		unlink(tmp);
		return -1;
	}
	if (fsync(fd) < 0)
		failed = "write";
	if (close(fd) < 0 && !failed)
		failed = "write";
	if (!failed && rename(tmp, file) < 0)
		failed = "rename";
	if (!failed)
		return 0;
	err = errno;
	unlink(tmp);
	/* kvmm saved and paused: the snapshot is not taken, the guest goes on. */
	if (was_running && monitor_resume(api) < 0)
		pr_warn("cannot resume the guest after a failed snapshot: %s",
			drv_error_last() ? drv_error_last()->message : "?");
	drv_error_report(VIR_ERR_OPERATION_FAILED, "cannot %s the memory file '%s': %s", failed,
			 file, g_strerror(err));
	return -1;
}

static char *default_memory_file(const char *dom, const char *name)
{
	g_autofree char *dir = snapshot_store_dir(dom);
	g_autofree char *file = g_strconcat(name, ".mem", NULL);

	return g_build_filename(dir, file, NULL);
}

/* Disk D of a running domain's live definition onto OVERLAY: the image
 * it had becomes the first layer of its chain, keeping its node index;
 * the overlay gets the next one. */
static void live_disk_onto_overlay(struct domain_def *def, struct domain_disk *d,
				   const char *overlay)
{
	struct domain_backing *b = g_new0(struct domain_backing, d->nbacking + 1);
	unsigned top = 0;

	for (size_t i = 0; i < def->ndisks; i++) {
		top = MAX(top, def->disks[i].index);
		for (size_t j = 0; j < def->disks[i].nbacking; j++)
			top = MAX(top, def->disks[i].backing[j].index);
	}
	b[0].format = d->format;
	b[0].path = d->source;
	b[0].index = d->index;
	memcpy(b + 1, d->backing, d->nbacking * sizeof(*b));
	g_free(d->backing);
	d->backing = b;
	d->nbacking++;
	/* A chain the definition spells out keeps doing so. */
	if (d->nbacking_given || d->backing_end)
		d->nbacking_given++;
	d->source = g_strdup(overlay);
	d->format = FORMAT_QCOW2;
	d->type = DISK_FILE;
	d->index = d->index ? top + 1 : 0;
}

/* The live definition of OBJ with the first N external disks of SNAP on
 * their overlays, in place of the old one (kept as retired for readers
 * without the lock, as hotplug does), and the status file rewritten. */
static void live_onto_overlays(struct domain_obj *obj, const struct snapshot_def *snap, size_t n)
{
	g_autofree char *xml = NULL;
	struct domain_def *copy;

	g_mutex_lock(&obj->lock);
	xml = domain_def_format(obj->def, VIR_DOMAIN_XML_SECURE);
	copy = xml ? domain_def_parse_string(xml, domains_status_parse_opts()) : NULL;
	if (!copy) {
		g_mutex_unlock(&obj->lock);
		pr_warn("domain '%s': its live definition does not parse again: %s",
			obj->def->name, drv_error_last() ? drv_error_last()->message : "?");
		drv_error_reset();
		return;
	}
	for (size_t i = 0, done = 0; i < snap->ndisks && done < n; i++) {
		int k;

		if (snap->disks[i].snapshot != SNAP_LOC_EXTERNAL)
			continue;
		done++;
		k = disk_by_target(copy, snap->disks[i].name);
		if (k >= 0)
			live_disk_onto_overlay(copy, &copy->disks[k], snap->disks[i].file);
	}
	domain_def_free(obj->retired);
	obj->retired = obj->def;
	obj->def = copy;
	process_save_status_locked(obj);
	g_mutex_unlock(&obj->lock);
}

/* A snapshot of a running OBJ (the job held), as libvirt's external
 * snapshots: the VM paused -- by kvmm's save into the memory file, or
 * a pause for a disk-only one --, every disk switched onto its overlay
 * (kvmm's block-overlay) while it is, then resumed if it ran (or
 * stopped, HALT).  The overlays are all made before the first switch,
 * so only kvmm failing a switch can stop it part-way: the disks switched
 * so far stay on their overlays (the definition says so), nothing is
 * recorded. */
static int create_running(struct domain_obj *obj, const char *dom, struct snapshot_def *def,
			  unsigned flags)
{
	g_autoptr(GPtrArray) created = g_ptr_array_new_with_free_func(g_free);
	g_autofree char *domxml = NULL, *memfile = NULL, *api = NULL;
	struct domain_def *copy;
	bool disk_only, paused, persistent, pending;
	struct snapshot_def *cur;
	size_t switched = 0;
	int rc = -1;

	if (def->memory == SNAP_LOC_INTERNAL) {
		drv_error_report(VIR_ERR_OPERATION_UNSUPPORTED,
				 "internal snapshots are not supported by kvmm (its qcow2 has none); use snapshot='external'");
		goto fail;
	}
	disk_only = (flags & VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY) || def->memory == SNAP_LOC_NO;
	if (disk_only && def->memory == SNAP_LOC_EXTERNAL) {
		drv_error_report(VIR_ERR_INVALID_ARG,
				 "disk-only snapshot requested but memory snapshot is 'external'");
		goto fail;
	}
	g_mutex_lock(&obj->lock);
	paused = obj->state == VIR_DOMAIN_PAUSED;
	persistent = obj->persistent;
	pending = obj->newdef != NULL;
	g_mutex_unlock(&obj->lock);
	/* Metadata outliving a transient domain, and a definition waiting
	 * for the next start that would keep the old disks, are not handled. */
	if (!persistent || pending) {
		drv_error_report(VIR_ERR_OPERATION_UNSUPPORTED,
				 !persistent ? "snapshots of a running transient domain are not supported"
					     : "the domain has a new definition waiting for its next start: snapshot it after that start");
		goto fail;
	}
	if (!disk_only) {
		memfile = def->memory_file ? g_strdup(def->memory_file)
					   : default_memory_file(dom, def->name);
		/* CLIENT: kvmm renames its stream over whatever is there. */
		if (access(memfile, F_OK) == 0) {
			drv_error_report(VIR_ERR_OPERATION_INVALID,
					 "the memory file '%s' already exists", memfile);
			goto fail;
		}
	}
	api = process_api_path(obj);
	if (!api)
		goto fail;
	g_mutex_lock(&obj->lock);
	copy = def_copy(obj->def, &domxml);
	g_mutex_unlock(&obj->lock);
	if (!copy)
		goto fail;
	if (align_disks(def, copy) < 0) {
		domain_def_free(copy);
		goto fail;
	}
	/* Every overlay made before the guest is stopped; each is over the
	 * image the disk has now (the top of its chain). */
	for (size_t i = 0; i < def->ndisks; i++)
		if (def->disks[i].snapshot == SNAP_LOC_EXTERNAL &&
		    overlay_disk(copy, i, def->disks[i].file, created) < 0) {
			domain_def_free(copy);
			goto undo;
		}
	domain_def_free(copy);
	if (disk_only ? monitor_pause(api) : save_memory(api, memfile, !paused))
		goto undo;
	g_mutex_lock(&obj->lock);
	domain_set_state(obj, VIR_DOMAIN_PAUSED, VIR_DOMAIN_PAUSED_SNAPSHOT,
			 paused ? -1 : VIR_DOMAIN_EVENT_SUSPENDED, VIR_DOMAIN_EVENT_SUSPENDED_PAUSED);
	g_mutex_unlock(&obj->lock);
	for (size_t i = 0; i < def->ndisks; i++) {
		struct snapshot_disk *sd = &def->disks[i];
		g_autofree char *image = NULL;
		bool dsync = false;
		int k;

		if (sd->snapshot != SNAP_LOC_EXTERNAL)
			continue;
		g_mutex_lock(&obj->lock);
		k = disk_by_target(obj->def, sd->name);
		image = k >= 0 ? g_strdup(obj->def->disks[k].source) : NULL;
		if (k >= 0)
			dsync = obj->def->disks[k].cache == CACHE_WRITETHROUGH ||
				obj->def->disks[k].cache == CACHE_DIRECTSYNC;
		g_mutex_unlock(&obj->lock);
		if (!image || monitor_block_overlay(api, image, sd->file, dsync) < 0)
			break;
		switched++;
	}
	if (switched)
		live_onto_overlays(obj, def, switched);
	rc = switched == created->len ? 0 : -1;
	/* The persistent definition is the run's: the overlays from now on. */
	if (switched && domain_save(obj) < 0)
		rc = -1;
	if (flags & VIR_DOMAIN_SNAPSHOT_CREATE_HALT && rc == 0) {
		process_destroy_for_snapshot(obj);
	} else if (!paused) {
		if (monitor_resume(api) == 0) {
			g_mutex_lock(&obj->lock);
			domain_set_state(obj, VIR_DOMAIN_RUNNING, VIR_DOMAIN_RUNNING_UNPAUSED,
					 VIR_DOMAIN_EVENT_RESUMED, VIR_DOMAIN_EVENT_RESUMED_UNPAUSED);
			g_mutex_unlock(&obj->lock);
		} else {
			pr_warn("domain '%s': not resumed after the snapshot: %s", dom,
				drv_error_last() ? drv_error_last()->message : "?");
		}
	} else {
		g_mutex_lock(&obj->lock);
		domain_set_state(obj, VIR_DOMAIN_PAUSED, VIR_DOMAIN_PAUSED_USER, -1, 0);
		g_mutex_unlock(&obj->lock);
	}
	if (rc < 0) {
		/* Overlays not switched to are nobody's. */
		for (guint i = switched; i < created->len; i++)
			unlink(created->pdata[i]);
		if (memfile)
			unlink(memfile);
		goto fail;
	}
	def->state = g_strdup(disk_only ? "disk-snapshot" : paused ? "paused" : "running");
	def->memory = disk_only ? SNAP_LOC_NO : SNAP_LOC_EXTERNAL;
	g_free(def->memory_file);
	def->memory_file = g_steal_pointer(&memfile);
	def->domain_xml = g_steal_pointer(&domxml);
	def->creation = g_get_real_time() / G_USEC_PER_SEC;
	if (flags & VIR_DOMAIN_SNAPSHOT_CREATE_NO_METADATA) {
		snapshot_def_free(def);
		return 0;
	}
	snapshot_store_lock();
	cur = snapshot_store_current(dom);
	def->parent = cur ? g_strdup(cur->name) : NULL;
	rc = snapshot_store_add(dom, def, true);
	snapshot_store_unlock();
	return rc;
undo:
	unlink_all(created);
fail:
	snapshot_def_free(def);
	return -1;
}

int drv_domain_snapshot_create_xml(struct rpc_conn *conn, void *args, void *ret)
{
	remote_domain_snapshot_create_xml_args *a = args;
	remote_domain_snapshot_create_xml_ret *r = ret;
	g_autofree char *dom = NULL, *name = NULL;
	struct snapshot_def *def;
	struct domain_obj *obj;
	int rc = -1;

	if (check_create_flags(a->flags) < 0)
		return -1;
	def = snapshot_def_parse(a->xml_desc, false);
	if (!def)
		return -1;
	obj = wire_domain_get(&a->dom);
	if (!obj) {
		snapshot_def_free(def);
		return -1;
	}
	/* A job as libvirt's: domjobinfo names it while it runs and keeps
	 * its outcome for --completed. */
	if (job_begin(obj, "virDomainSnapshotCreateXML", VIR_DOMAIN_JOB_OPERATION_SNAPSHOT) < 0) {
		snapshot_def_free(def);
		domain_obj_unref(obj);
		return -1;
	}
	dom = obj_name(obj);
	if (!def->name)
		def->name = g_strdup_printf("%lld", (long long)(g_get_real_time() / G_USEC_PER_SEC));
	name = g_strdup(def->name);
	if (a->flags & VIR_DOMAIN_SNAPSHOT_CREATE_REDEFINE) {
		rc = redefine(obj, dom, def, a->flags);
		goto out;
	}
	snapshot_store_lock();
	rc = snapshot_store_find(dom, name) ? -1 : 0;
	snapshot_store_unlock();
	if (rc < 0) {
		drv_error_report(VIR_ERR_OPERATION_INVALID, "domain snapshot '%s' already exists", name);
		snapshot_def_free(def);
		goto out;
	}
	if (def->parent || def->state || def->creation || def->domain_xml) {
		drv_error_report(VIR_ERR_INVALID_ARG,
				 "<parent>, <state>, <creationTime> and <domain> are only for redefine");
		snapshot_def_free(def);
		rc = -1;
		goto out;
	}
	g_mutex_lock(&obj->lock);
	rc = obj->id >= 0;
	g_mutex_unlock(&obj->lock);
	rc = rc ? create_running(obj, dom, def, a->flags) : create_offline(obj, dom, def, a->flags);
out:
	job_end(obj, rc);
	if (rc == 0) {
		pr_info("domain '%s': snapshot '%s' %s", dom, name,
			a->flags & VIR_DOMAIN_SNAPSHOT_CREATE_REDEFINE ? "redefined" : "created");
		make_snap(obj, name, &r->snap);
	}
	domain_obj_unref(obj);
	return rc;
}

/* --- revert ------------------------------------------------------------- */

/* A fresh overlay name next to the snapshot's own: FILE-1, FILE-2, ... */
static char *fresh_overlay(const char *file)
{
	for (unsigned n = 1;; n++) {
		char *p = g_strdup_printf("%s-%u", file, n);

		if (access(p, F_OK) < 0 && errno == ENOENT)
			return p;
		g_free(p);
	}
}

#define REVERT_FLAGS (VIR_DOMAIN_SNAPSHOT_REVERT_RUNNING | VIR_DOMAIN_SNAPSHOT_REVERT_PAUSED | \
		      VIR_DOMAIN_SNAPSHOT_REVERT_FORCE)

static int revert(struct domain_obj *obj, const char *dom, const char *name, unsigned flags)
{
	g_autoptr(GPtrArray) created = g_ptr_array_new_with_free_func(g_free);
	struct snapshot_def *s = NULL;
	struct domain_def *newdef;
	bool running, memory;
	int rc = -1;

	snapshot_store_lock();
	if (snapshot_store_find(dom, name)) {
		g_autofree char *xml = snapshot_def_format(snapshot_store_find(dom, name), true);

		s = snapshot_def_parse(xml, true);	/* a copy */
	}
	snapshot_store_unlock();
	if (!s) {
		if (!drv_error_last())
			no_snapshot(name);
		return -1;
	}
	memory = s->memory == SNAP_LOC_EXTERNAL && s->memory_file;
	if (is_running_state(s) && !memory) {
		drv_error_report(VIR_ERR_OPERATION_UNSUPPORTED,
				 "snapshot '%s' of a running domain has no memory file to revert to",
				 name);
		goto out;
	}
	if (memory && access(s->memory_file, R_OK) < 0) {
		drv_error_report(VIR_ERR_OPERATION_INVALID,
				 "cannot read the memory file '%s' of snapshot '%s': %s",
				 s->memory_file, name, g_strerror(errno));
		goto out;
	}
	if (!s->domain_xml) {
		drv_error_report(VIR_ERR_SNAPSHOT_REVERT_RISKY,
				 "snapshot '%s' lacks domain '%s' rollback info", name, dom);
		goto out;
	}
	newdef = domain_def_parse_string(s->domain_xml, domains_parse_opts());
	if (!newdef)
		goto out;
	for (size_t i = 0; i < s->ndisks; i++) {
		const struct snapshot_disk *d = &s->disks[i];
		g_autofree char *file = NULL;
		int idx;

		if (d->snapshot != SNAP_LOC_EXTERNAL || !d->file)
			continue;
		idx = disk_by_target(newdef, d->name);
		if (idx < 0) {
			drv_error_report(VIR_ERR_INTERNAL_ERROR,
					 "snapshot '%s' names disk '%s', which its domain lacks", name,
					 d->name);
			domain_def_free(newdef);
			goto undo;
		}
		file = fresh_overlay(d->file);
		if (overlay_disk(newdef, idx, file, created) < 0) {
			domain_def_free(newdef);
			goto undo;
		}
	}
	/* The current run ends first: its disks are about to be left. */
	g_mutex_lock(&obj->lock);
	running = obj->id >= 0;
	g_mutex_unlock(&obj->lock);
	if (running && process_destroy_for_snapshot(obj) < 0) {
		domain_def_free(newdef);
		goto undo;
	}
	if (commit_def(obj, newdef) < 0)
		goto undo;
	snapshot_store_lock();
	rc = snapshot_store_set_current(dom, name);
	snapshot_store_unlock();
	if (rc < 0)
		goto out;
	if (memory) {
		bool paused = (flags & VIR_DOMAIN_SNAPSHOT_REVERT_PAUSED) ||
			      (!(flags & VIR_DOMAIN_SNAPSHOT_REVERT_RUNNING) &&
			       s->state && !strcmp(s->state, "paused"));

		rc = process_restore_snapshot(obj, s->memory_file, paused);
		goto out;
	}
	g_mutex_lock(&obj->lock);
	domain_set_state(obj, VIR_DOMAIN_SHUTOFF, VIR_DOMAIN_SHUTOFF_FROM_SNAPSHOT,
			 VIR_DOMAIN_EVENT_DEFINED, VIR_DOMAIN_EVENT_DEFINED_FROM_SNAPSHOT);
	g_mutex_unlock(&obj->lock);
	if (flags & (VIR_DOMAIN_SNAPSHOT_REVERT_RUNNING | VIR_DOMAIN_SNAPSHOT_REVERT_PAUSED))
		rc = process_start_paused(obj, flags & VIR_DOMAIN_SNAPSHOT_REVERT_PAUSED);
	goto out;
undo:
	unlink_all(created);
out:
	snapshot_def_free(s);
	return rc;
}

int drv_domain_revert_to_snapshot(struct rpc_conn *conn, void *args, void *ret)
{
	remote_domain_revert_to_snapshot_args *a = args;
	g_autofree char *dom = NULL;
	struct domain_obj *obj;
	int rc = -1;

	if (api_check_flags(a->flags, REVERT_FLAGS, "virDomainRevertToSnapshot") < 0)
		return -1;
	if ((a->flags & VIR_DOMAIN_SNAPSHOT_REVERT_RUNNING) &&
	    (a->flags & VIR_DOMAIN_SNAPSHOT_REVERT_PAUSED)) {
		drv_error_report(VIR_ERR_INVALID_ARG,
				 "flags 'running' and 'paused' are mutually exclusive");
		return -1;
	}
	obj = snap_domain(&a->snap, &dom);
	if (!obj)
		return -1;
	if (job_begin(obj, "virDomainRevertToSnapshot", VIR_DOMAIN_JOB_OPERATION_SNAPSHOT_REVERT) == 0) {
		rc = revert(obj, dom, a->snap.name, a->flags);
		job_end(obj, rc);
	}
	if (rc == 0)
		pr_info("domain '%s' reverted to snapshot '%s'", dom, a->snap.name);
	domain_obj_unref(obj);
	return rc;
}

/* --- delete ------------------------------------------------------------- */

#define DELETE_FLAGS (VIR_DOMAIN_SNAPSHOT_DELETE_CHILDREN | \
		      VIR_DOMAIN_SNAPSHOT_DELETE_METADATA_ONLY | \
		      VIR_DOMAIN_SNAPSHOT_DELETE_CHILDREN_ONLY)

/* Lock held: removes NAME's metadata (and, unless METADATA_ONLY, its
 * memory file); its children go to its parent. */
static int discard_one(const char *dom, const char *name, bool metadata_only)
{
	struct snapshot_def *s = snapshot_store_find(dom, name);
	GPtrArray *all = snapshot_store_list(dom);
	g_autofree char *parent = NULL;
	bool was_current;

	if (!s)
		return 0;
	parent = g_strdup(s->parent);
	was_current = s->current;
	if (!metadata_only && s->memory_file && unlink(s->memory_file) < 0 && errno != ENOENT) {
		drv_error_report(VIR_ERR_SYSTEM_ERROR, "cannot remove the memory file '%s': %s",
				 s->memory_file, g_strerror(errno));
		return -1;
	}
	for (guint i = 0; i < all->len; i++) {
		struct snapshot_def *c = all->pdata[i];

		if (c->parent && !strcmp(c->parent, name)) {
			g_free(c->parent);
			c->parent = g_strdup(parent);
			if (snapshot_store_write(dom, c) < 0)
				return -1;
		}
	}
	if (snapshot_store_remove(dom, name) < 0)
		return -1;
	/* As libvirt: the current snapshot's parent becomes current. */
	if (was_current && parent)
		return snapshot_store_set_current(dom, parent);
	return 0;
}

int drv_domain_snapshot_delete(struct rpc_conn *conn, void *args, void *ret)
{
	remote_domain_snapshot_delete_args *a = args;
	g_autofree char *dom = NULL;
	struct domain_obj *obj;
	bool meta = a->flags & VIR_DOMAIN_SNAPSHOT_DELETE_METADATA_ONLY;
	int rc = -1;

	if (api_check_flags(a->flags, DELETE_FLAGS, "virDomainSnapshotDelete") < 0)
		return -1;
	if ((a->flags & VIR_DOMAIN_SNAPSHOT_DELETE_CHILDREN) &&
	    (a->flags & VIR_DOMAIN_SNAPSHOT_DELETE_CHILDREN_ONLY)) {
		drv_error_report(VIR_ERR_INVALID_ARG,
				 "flags 'children' and 'children-only' are mutually exclusive");
		return -1;
	}
	obj = snap_domain(&a->snap, &dom);
	if (!obj)
		return -1;
	if (domain_job_begin(obj, "virDomainSnapshotDelete") == 0) {
		g_autoptr(GPtrArray) kids = NULL;

		snapshot_store_lock();
		rc = 0;
		if (a->flags & (VIR_DOMAIN_SNAPSHOT_DELETE_CHILDREN |
				VIR_DOMAIN_SNAPSHOT_DELETE_CHILDREN_ONLY)) {
			/* Leaves first, so that no child is ever reparented
			 * onto a snapshot about to go. */
			kids = collect(dom, a->snap.name, VIR_DOMAIN_SNAPSHOT_LIST_DESCENDANTS);
			for (guint i = kids->len; rc == 0 && i > 0; i--)
				rc = discard_one(dom, kids->pdata[i - 1], meta);
			/* A current descendant handed "current" up to its
			 * parent each time: the snapshot kept has it now. */
		}
		if (rc == 0 && !(a->flags & VIR_DOMAIN_SNAPSHOT_DELETE_CHILDREN_ONLY))
			rc = discard_one(dom, a->snap.name, meta);
		snapshot_store_unlock();
		domain_job_end(obj);
	}
	if (rc == 0)
		pr_info("domain '%s': snapshot '%s' deleted", dom, a->snap.name);
	domain_obj_unref(obj);
	return rc;
}

/* --- undefine ------------------------------------------------------------ */

int snapshots_undefine_check(struct domain_obj *obj, unsigned flags)
{
	g_autofree char *dom = obj_name(obj);
	unsigned n;
	bool active;

	g_mutex_lock(&obj->lock);
	active = obj->id >= 0;
	g_mutex_unlock(&obj->lock);
	n = snapshot_store_count(dom);
	if (!active && n && !(flags & VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA)) {
		drv_error_report_full(VIR_FROM_DOMAIN, VIR_ERR_OPERATION_INVALID,
				      "cannot delete inactive domain with %u snapshots", n);
		return -1;
	}
	return 0;
}

int snapshots_forget(struct domain_obj *obj)
{
	g_autofree char *dom = obj_name(obj);
	int rc;

	snapshot_store_lock();
	rc = snapshot_store_remove_all(dom);
	snapshot_store_unlock();
	return rc;
}
