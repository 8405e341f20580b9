/* Domain objects, their index and jobs; see domain.h. */
#include <string.h>

#include <libvirt/libvirt.h>

#include "domain.h"
#include "domain_persist.h"
#include "error.h"
#include "events.h"
#include "job.h"
#include "kvmm/process.h"
#include "log.h"

#define VIR_FROM_THIS VIR_FROM_DOMAIN

#define JOB_WAIT_SECONDS 30

static GMutex list_lock;
/* The keys are the index's own copies: a running domain's definition
 * is swapped for its next one when the run ends, under the domain's
 * lock only, while the name and uuid stay the same. */
static GHashTable *by_name;	/* name -> obj (the index's reference) */
static GHashTable *by_uuid;	/* 16 bytes -> same obj, no reference */
static GHashTable *claimed;	/* names being renamed to (owned strings) */
static struct domain_parse_opts parse_opts, status_parse_opts;
static char *emulator_path;

static guint uuid_hash(gconstpointer p)
{
	guint h;

	memcpy(&h, p, sizeof(h));	/* random bytes already */
	return h;
}

static gboolean uuid_equal(gconstpointer a, gconstpointer b)
{
	return memcmp(a, b, 16) == 0;
}

static struct domain_obj *obj_new(struct domain_def *def)
{
	struct domain_obj *obj = g_new0(struct domain_obj, 1);

	obj->refs = 1;
	g_mutex_init(&obj->lock);
	g_cond_init(&obj->job_cond);
	obj->def = def;
	obj->id = -1;
	obj->persistent = true;
	/* What libvirt reports for a domain that never ran. */
	obj->state = VIR_DOMAIN_SHUTOFF;
	obj->reason = VIR_DOMAIN_SHUTOFF_UNKNOWN;
	return obj;
}

void domain_set_state(struct domain_obj *obj, int state, int reason, int event, int detail)
{
	obj->state = state;
	obj->reason = reason;
	if (obj->run)
		process_save_status_locked(obj);
	if (event >= 0)
		events_lifecycle(obj->def->name, obj->def->uuid, obj->id, event, detail);
}

struct domain_obj *domain_obj_ref(struct domain_obj *obj)
{
	g_atomic_int_inc(&obj->refs);
	return obj;
}

void domain_obj_unref(struct domain_obj *obj)
{
	if (!obj || !g_atomic_int_dec_and_test(&obj->refs))
		return;
	domain_def_free(obj->def);
	domain_def_free(obj->newdef);
	domain_def_free(obj->retired);
	g_mutex_clear(&obj->lock);
	g_cond_clear(&obj->job_cond);
	job_free(obj->jobs);
	g_free(obj);
}

static void index_add(struct domain_obj *obj)
{
	g_hash_table_insert(by_name, g_strdup(obj->def->name), obj);
	g_hash_table_insert(by_uuid, g_memdup2(obj->def->uuid, 16), obj);
}

static void index_remove(struct domain_obj *obj)
{
	g_hash_table_remove(by_uuid, obj->def->uuid);
	/* Last: the index's reference goes with it. */
	g_hash_table_remove(by_name, obj->def->name);
}

static void load_one(const char *name, const char *path, const char *xml,
		     const char *read_error, void *opaque)
{
	struct domain_def *def;
	struct domain_obj *old;

	if (!xml) {
		pr_err("skipping domain definition %s: %s", path, read_error);
		return;
	}
	drv_error_reset();
	def = domain_def_parse_string(xml, &parse_opts);
	if (!def) {
		/* Never fatal, never rewritten: the file stays as it is for
		 * its owner to fix, and its name stays taken (see define). */
		pr_err("skipping domain definition %s: %s", path,
		       drv_error_last() ? drv_error_last()->message : "invalid");
		drv_error_reset();
		return;
	}
	if (strcmp(def->name, name) != 0) {
		pr_err("skipping domain definition %s: it defines domain '%s'; the file must be named %s.xml",
		       path, def->name, def->name);
		domain_def_free(def);
		return;
	}
	if ((old = g_hash_table_lookup(by_uuid, def->uuid))) {
		char uuid[37];

		domain_uuid_format(def->uuid, uuid);
		pr_err("skipping domain definition %s: domain '%s' has the same uuid %s", path,
		       old->def->name, uuid);
		domain_def_free(def);
		return;
	}
	old = obj_new(def);
	old->autostart = persist_autostart_get(name);
	index_add(old);
	pr_info("loaded domain '%s' from %s", name, path);
}

int domains_init(const char *config_dir, const char *emulator)
{
	by_name = g_hash_table_new_full(g_str_hash, g_str_equal, g_free,
					(GDestroyNotify)domain_obj_unref);
	by_uuid = g_hash_table_new_full(uuid_hash, uuid_equal, g_free, NULL);
	claimed = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
	emulator_path = g_strdup(emulator);
	parse_opts.default_emulator = emulator_path;
	status_parse_opts = parse_opts;
	status_parse_opts.status = true;
	if (persist_init(config_dir) < 0)
		return -1;
	g_mutex_lock(&list_lock);
	persist_load_all(load_one, NULL);
	pr_info("%u domain definitions in %s", g_hash_table_size(by_name), config_dir);
	g_mutex_unlock(&list_lock);
	return 0;
}

void domains_shutdown(void)
{
	if (!by_name)
		return;
	g_hash_table_destroy(by_uuid);
	g_hash_table_destroy(by_name);
	g_hash_table_destroy(claimed);
	by_uuid = by_name = claimed = NULL;
	g_clear_pointer(&emulator_path, g_free);
}

const struct domain_parse_opts *domains_parse_opts(void)
{
	return &parse_opts;
}

/* When only one of a running domain's two definitions is to change and
 * it has just one, the next start gets a copy of its own first (libvirt's
 * newDef).  0, or -1 after reporting. */
int domain_split_next_def(struct domain_obj *obj, bool live, bool config)
{
	g_autofree char *xml = NULL;
	struct domain_def *copy;

	if (obj->id < 0 || obj->newdef || live == config)
		return 0;
	xml = domain_def_format(obj->def, VIR_DOMAIN_XML_INACTIVE | VIR_DOMAIN_XML_SECURE);
	if (!xml || !(copy = domain_def_parse_string(xml, domains_parse_opts())))
		return -1;
	g_mutex_lock(&obj->lock);
	obj->newdef = copy;
	g_mutex_unlock(&obj->lock);
	return 0;
}

const struct domain_parse_opts *domains_status_parse_opts(void)
{
	return &status_parse_opts;
}

static struct domain_obj *find(GHashTable *t, gconstpointer key)
{
	struct domain_obj *obj = NULL;

	g_mutex_lock(&list_lock);
	if (t && (obj = g_hash_table_lookup(t, key)) && !obj->defining)
		domain_obj_ref(obj);
	else
		obj = NULL;
	g_mutex_unlock(&list_lock);
	return obj;
}

struct domain_obj *domain_find_by_uuid(const unsigned char uuid[16])
{
	return find(by_uuid, uuid);
}

struct domain_obj *domain_find_by_name(const char *name)
{
	return find(by_name, name);
}

struct domain_obj *domain_find_by_id(int id)
{
	GHashTableIter it;
	gpointer v;
	struct domain_obj *found = NULL;

	if (id < 0)
		return NULL;
	g_mutex_lock(&list_lock);
	if (by_name) {
		g_hash_table_iter_init(&it, by_name);
		while (!found && g_hash_table_iter_next(&it, NULL, &v))
			if (((struct domain_obj *)v)->id == id && !((struct domain_obj *)v)->defining)
				found = domain_obj_ref(v);
	}
	g_mutex_unlock(&list_lock);
	return found;
}

struct domain_obj *domain_get(const unsigned char uuid[16], const char *name)
{
	struct domain_obj *obj = domain_find_by_uuid(uuid);
	char s[37];

	if (!obj) {
		domain_uuid_format(uuid, s);
		drv_error_report(VIR_ERR_NO_DOMAIN, "no domain with matching uuid '%s' (%s)", s, name);
	}
	return obj;
}

GPtrArray *domain_list(void)
{
	GPtrArray *a = g_ptr_array_new_with_free_func((GDestroyNotify)domain_obj_unref);
	GHashTableIter it;
	gpointer v;

	g_mutex_lock(&list_lock);
	if (by_name) {
		g_hash_table_iter_init(&it, by_name);
		while (g_hash_table_iter_next(&it, NULL, &v))
			if (!((struct domain_obj *)v)->defining)
				g_ptr_array_add(a, domain_obj_ref(v));
	}
	g_mutex_unlock(&list_lock);
	return a;
}

static char *format_persistent(const struct domain_def *def)
{
	/* What libvirt keeps on disk: the inactive definition, secrets
	 * included. */
	return domain_def_format(def, VIR_DOMAIN_XML_INACTIVE | VIR_DOMAIN_XML_SECURE);
}

/* Checks, under the list lock, whether DEF may be defined: NULL and
 * *EXISTING NULL for a new domain; *EXISTING (referenced) for a
 * redefinition of the same name and uuid; -1 after reporting. */
static int define_check(const struct domain_def *def, struct domain_obj **existing)
{
	struct domain_obj *by_u, *by_n;
	char uuid[37];

	*existing = NULL;
	if (!by_name) {
		drv_error_report(VIR_ERR_INTERNAL_ERROR, "domain definitions are not available");
		return -1;
	}
	by_u = g_hash_table_lookup(by_uuid, def->uuid);
	by_n = g_hash_table_lookup(by_name, def->name);
	/* libvirt's two conflicts, worded as libvirt words them. */
	if (by_u && by_u != by_n) {
		domain_uuid_format(def->uuid, uuid);
		drv_error_report(VIR_ERR_OPERATION_FAILED, "domain '%s' is already defined with uuid %s",
				 by_u->def->name, uuid);
		return -1;
	}
	if (by_n && !by_u) {
		domain_uuid_format(by_n->def->uuid, uuid);
		drv_error_report(VIR_ERR_OPERATION_FAILED, "domain '%s' already exists with uuid %s",
				 def->name, uuid);
		return -1;
	}
	if (!by_n && g_hash_table_contains(claimed, def->name)) {
		drv_error_report(VIR_ERR_OPERATION_FAILED,
				 "domain '%s' cannot be defined: a domain is being renamed to that name",
				 def->name);
		return -1;
	}
	if (!by_n && persist_exists(def->name)) {
		/* A file nobody loaded: corrupt, or dropped in by hand after
		 * start.  Replacing it would destroy what may be the only
		 * copy of someone's definition. */
		g_autofree char *path = persist_path(def->name);

		drv_error_report(VIR_ERR_OPERATION_FAILED,
				 "domain '%s' cannot be defined: %s exists but is not a loaded definition (see the daemon log); fix it and restart virtkvmmd, or move it away",
				 def->name, path);
		return -1;
	}
	if (by_n)
		*existing = domain_obj_ref(by_n);
	return 0;
}

/* A new domain: indexed at once, hidden from lookups and holding its job
 * while its file is written, so a concurrent define of the same name or
 * uuid finds it and waits (or conflicts) instead of racing. */
static struct domain_obj *define_new(struct domain_def *def, const char *api)
{
	struct domain_obj *obj = obj_new(def);
	g_autofree char *xml = NULL;

	obj->defining = true;
	obj->job = api;
	index_add(obj);		/* the index's reference */
	domain_obj_ref(obj);	/* ours */
	g_mutex_unlock(&list_lock);

	xml = format_persistent(def);
	if (xml && persist_write(def->name, xml) == 0) {
		g_mutex_lock(&list_lock);
		obj->defining = false;
		g_mutex_unlock(&list_lock);
		domain_job_end(obj);
		return obj;
	}
	g_mutex_lock(&list_lock);
	obj->removed = true;
	index_remove(obj);
	g_mutex_unlock(&list_lock);
	domain_job_end(obj);
	domain_obj_unref(obj);
	return NULL;
}

/* A new definition for OBJ (same name and uuid), under its job: written
 * first, then swapped in -- or, while OBJ runs, kept for its next start
 * beside the live definition, which the run still uses (its pty paths,
 * taps and devices are the running guest's). */
static int define_replace(struct domain_obj *obj, struct domain_def *def, bool *was_persistent)
{
	g_autofree char *xml = format_persistent(def);

	if (!xml || persist_write(def->name, xml) < 0)
		return -1;
	g_mutex_lock(&obj->lock);
	if (obj->run) {
		domain_def_free(obj->newdef);
		obj->newdef = def;
	} else {
		domain_def_free(obj->def);
		obj->def = def;
	}
	*was_persistent = obj->persistent;
	if (!obj->persistent) {
		/* Defining a transient domain makes it persistent; a
		 * restarted daemon must know it from the status file. */
		obj->persistent = true;
		if (obj->run)
			process_save_status_locked(obj);
	}
	g_mutex_unlock(&obj->lock);
	return 0;
}

struct domain_obj *domain_define(struct domain_def *def, bool *updated)
{
	/* A redefinition waits for the domain's job; what it checked may
	 * have changed meanwhile (undefined, renamed), so it checks again. */
	for (int attempt = 0; attempt < 3; attempt++) {
		struct domain_obj *obj;
		bool same;

		g_mutex_lock(&list_lock);
		if (define_check(def, &obj) < 0) {
			g_mutex_unlock(&list_lock);
			break;
		}
		if (!obj) {
			*updated = false;
			return define_new(def, "virDomainDefineXML");	/* unlocks */
		}
		g_mutex_unlock(&list_lock);

		if (domain_job_begin(obj, "virDomainDefineXML") < 0) {
			if (obj->removed) {
				drv_error_reset();
				domain_obj_unref(obj);
				continue;
			}
			domain_obj_unref(obj);
			break;
		}
		g_mutex_lock(&obj->lock);
		same = !strcmp(obj->def->name, def->name) && !memcmp(obj->def->uuid, def->uuid, 16);
		g_mutex_unlock(&obj->lock);
		if (!same) {
			domain_job_end(obj);
			domain_obj_unref(obj);
			continue;
		}
		if (define_replace(obj, def, updated) < 0) {
			domain_job_end(obj);
			domain_obj_unref(obj);
			break;
		}
		domain_job_end(obj);
		return obj;
	}
	if (!drv_error_last())
		drv_error_report(VIR_ERR_OPERATION_FAILED,
				 "domain '%s' kept changing while being defined; try again", def->name);
	domain_def_free(def);
	return NULL;
}

int domain_undefine(struct domain_obj *obj)
{
	/* The job keeps every other change away; the file goes first, then
	 * the object leaves the index. */
	if (obj->removed) {
		drv_error_report(VIR_ERR_NO_DOMAIN, "no domain with matching name '%s'", obj->def->name);
		return -1;
	}
	if (obj->id >= 0) {
		/* As libvirt: it runs on as a transient domain and leaves
		 * the index when it stops. */
		if (persist_remove(obj->def->name) < 0)
			return -1;
		g_mutex_lock(&obj->lock);
		obj->persistent = false;
		obj->autostart = false;
		/* Nothing is started again: no next definition. */
		g_clear_pointer(&obj->newdef, domain_def_free);
		if (obj->run)
			process_save_status_locked(obj);
		g_mutex_unlock(&obj->lock);
		return 0;
	}
	if (persist_remove(obj->def->name) < 0)
		return -1;
	g_mutex_lock(&list_lock);
	g_mutex_lock(&obj->lock);
	obj->removed = true;
	obj->autostart = false;
	g_mutex_unlock(&obj->lock);
	index_remove(obj);	/* the caller's reference keeps it alive */
	g_mutex_unlock(&list_lock);
	return 0;
}

int domain_save(struct domain_obj *obj)
{
	g_autofree char *xml = NULL;

	g_mutex_lock(&obj->lock);
	xml = format_persistent(domain_persistent_def(obj));
	g_mutex_unlock(&obj->lock);
	if (!xml)
		return -1;
	return persist_write(obj->def->name, xml);
}

struct domain_def *domain_persistent_def(struct domain_obj *obj)
{
	return obj->newdef ? obj->newdef : obj->def;
}

void domain_run_ended_locked(struct domain_obj *obj)
{
	if (!obj->newdef)
		return;
	/* Same name and uuid (define checks them), so the index is
	 * untouched. */
	domain_def_free(obj->retired);
	obj->retired = obj->def;
	obj->def = obj->newdef;
	obj->newdef = NULL;
}

int domain_set_autostart(struct domain_obj *obj, bool autostart)
{
	if (!obj->persistent) {
		drv_error_report(VIR_ERR_OPERATION_INVALID, "cannot set autostart for transient domain");
		return -1;
	}
	if (obj->autostart == autostart)
		return 0;
	if (persist_autostart_set(obj->def->name, autostart) < 0)
		return -1;
	obj->autostart = autostart;
	return 0;
}

int domain_rename(struct domain_obj *obj, const char *new_name)
{
	g_autofree char *old_name = NULL;
	g_autofree char *xml = NULL;
	struct domain_def *copy;
	int rc = -1;

	/* Claim the new name (nobody else may define or rename to it),
	 * write its file without the list lock, then switch the index. */
	g_mutex_lock(&list_lock);
	if (g_hash_table_contains(by_name, new_name) || g_hash_table_contains(claimed, new_name)) {
		drv_error_report(VIR_ERR_OPERATION_INVALID, "domain with name '%s' already exists",
				 new_name);
		g_mutex_unlock(&list_lock);
		return -1;
	}
	if (persist_exists(new_name)) {
		g_autofree char *path = persist_path(new_name);

		drv_error_report(VIR_ERR_OPERATION_FAILED,
				 "cannot rename to '%s': %s exists but is not a loaded definition (see the daemon log)",
				 new_name, path);
		g_mutex_unlock(&list_lock);
		return -1;
	}
	g_hash_table_add(claimed, g_strdup(new_name));
	g_mutex_unlock(&list_lock);

	g_mutex_lock(&obj->lock);
	copy = obj->def;
	old_name = g_strdup(copy->name);
	/* Format the definition as it will be, without changing it yet. */
	{
		char *keep = copy->name;

		copy->name = (char *)new_name;
		xml = format_persistent(copy);
		copy->name = keep;
	}
	g_mutex_unlock(&obj->lock);
	/* New file first: a crash in between leaves two definitions with
	 * one uuid, and the loader keeps the first, rather than none. */
	if (xml && persist_write(new_name, xml) == 0) {
		g_mutex_lock(&list_lock);
		g_mutex_lock(&obj->lock);
		domain_obj_ref(obj);	/* for the new by_name entry */
		g_hash_table_remove(by_name, old_name);
		g_free(obj->def->name);
		obj->def->name = g_strdup(new_name);
		g_hash_table_insert(by_name, g_strdup(new_name), obj);
		g_mutex_unlock(&obj->lock);
		g_hash_table_remove(claimed, new_name);
		g_mutex_unlock(&list_lock);
		if (obj->autostart && persist_autostart_set(new_name, true) < 0)
			pr_warn("domain '%s' renamed to '%s' but its autostart link could not follow",
				old_name, new_name);
		drv_error_reset();
		persist_remove(old_name);
		drv_error_reset();
		rc = 0;
	} else {
		g_mutex_lock(&list_lock);
		g_hash_table_remove(claimed, new_name);
		g_mutex_unlock(&list_lock);
	}
	return rc;
}

int domain_job_begin(struct domain_obj *obj, const char *api)
{
	gint64 deadline = g_get_monotonic_time() + JOB_WAIT_SECONDS * G_TIME_SPAN_SECOND;
	int rc = 0;

	g_mutex_lock(&obj->lock);
	while (obj->job) {
		if (!g_cond_wait_until(&obj->job_cond, &obj->lock, deadline)) {
			drv_error_report(VIR_ERR_OPERATION_TIMEOUT,
					 "cannot acquire state change lock (held by %s)", obj->job);
			rc = -1;
			goto out;
		}
	}
	if (obj->removed) {
		drv_error_report(VIR_ERR_NO_DOMAIN, "no domain with matching name '%s'", obj->def->name);
		rc = -1;
		goto out;
	}
	obj->job = api;
out:
	g_mutex_unlock(&obj->lock);
	return rc;
}

void domain_job_end(struct domain_obj *obj)
{
	g_mutex_lock(&obj->lock);
	obj->job = NULL;
	g_cond_signal(&obj->job_cond);
	g_mutex_unlock(&obj->lock);
}

struct domain_obj *domain_add_transient(struct domain_def *def, const char *api)
{
	struct domain_obj *obj;

	g_mutex_lock(&list_lock);
	if (!by_name) {
		drv_error_report(VIR_ERR_INTERNAL_ERROR, "domain definitions are not available");
		goto fail;
	}
	if ((obj = g_hash_table_lookup(by_uuid, def->uuid)) ||
	    (obj = g_hash_table_lookup(by_name, def->name))) {
		char uuid[37];

		domain_uuid_format(obj->def->uuid, uuid);
		/* libvirt would run a defined, inactive domain with this
		 * definition for once; kvmm asks for virsh start. */
		drv_error_report(VIR_ERR_OPERATION_FAILED,
				 obj->id >= 0 ? "domain '%s' is already active (uuid %s)"
					      : "domain '%s' is already defined (uuid %s); start it with virsh start",
				 obj->def->name, uuid);
		goto fail;
	}
	if (g_hash_table_contains(claimed, def->name)) {
		drv_error_report(VIR_ERR_OPERATION_FAILED,
				 "domain '%s' cannot be created: a domain is being renamed to that name",
				 def->name);
		goto fail;
	}
	obj = obj_new(def);
	obj->persistent = false;
	obj->job = api;
	index_add(obj);
	domain_obj_ref(obj);
	g_mutex_unlock(&list_lock);
	return obj;
fail:
	g_mutex_unlock(&list_lock);
	domain_def_free(def);
	return NULL;
}

void domain_remove_transient(struct domain_obj *obj)
{
	g_mutex_lock(&list_lock);
	if (!obj->removed && !obj->persistent) {
		obj->removed = true;
		index_remove(obj);
	}
	g_mutex_unlock(&list_lock);
}
