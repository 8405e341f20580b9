/* Snapshot metadata on disk and in memory; see snapshot_store.h. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <glib.h>
#include <glib/gstdio.h>
#include <libvirt/libvirt.h>

#include "error.h"
#include "log.h"
#include "domain.h"
#include "snapshot_store.h"

#define VIR_FROM_THIS VIR_FROM_DOMAIN_SNAPSHOT

static GMutex store_lock;
static char *store_dir;
/* domain name -> GPtrArray of struct snapshot_def, creation order */
static GHashTable *domains;

void snapshot_store_lock(void)
{
	g_mutex_lock(&store_lock);
}

void snapshot_store_unlock(void)
{
	g_mutex_unlock(&store_lock);
}

static GPtrArray *list_of(const char *dom, bool create)
{
	GPtrArray *a = g_hash_table_lookup(domains, dom);

	if (!a && create) {
		a = g_ptr_array_new_with_free_func((GDestroyNotify)snapshot_def_free);
		g_hash_table_insert(domains, g_strdup(dom), a);
	}
	return a;
}

static void load_domain(const char *dom)
{
	g_autofree char *dir = g_build_filename(store_dir, dom, NULL);
	GDir *d = g_dir_open(dir, 0, NULL);
	const char *f;

	if (!d)
		return;
	while ((f = g_dir_read_name(d))) {
		g_autofree char *path = g_build_filename(dir, f, NULL);
		g_autofree char *xml = NULL;
		g_autoptr(GError) err = NULL;
		struct snapshot_def *def;

		/* A .new left by a crash lost to the rename: the old file (or
		 * none) is the metadata. */
		if (g_str_has_suffix(f, ".xml.new")) {
			unlink(path);
			continue;
		}
		if (!g_str_has_suffix(f, ".xml"))
			continue;
		if (!g_file_get_contents(path, &xml, NULL, &err)) {
			pr_warn("snapshot metadata %s: %s: skipped", path, err->message);
			continue;
		}
		def = snapshot_def_parse(xml, true);
		if (!def || !def->name) {
			pr_warn("snapshot metadata %s: %s: skipped", path,
				drv_error_last() ? drv_error_last()->message : "no name");
			drv_error_reset();
			snapshot_def_free(def);
			continue;
		}
		snapshot_normalize_domain(def);
		g_ptr_array_add(list_of(dom, true), def);
	}
	g_dir_close(d);
	/* Creation order: parents before children, as listings show them. */
	if (list_of(dom, false)) {
		GPtrArray *a = list_of(dom, false);

		for (guint i = 1; i < a->len; i++)
			for (guint j = i; j > 0; j--) {
				struct snapshot_def *x = a->pdata[j - 1], *y = a->pdata[j];

				if (x->creation < y->creation ||
				    (x->creation == y->creation && strcmp(x->name, y->name) <= 0))
					break;
				a->pdata[j - 1] = y;
				a->pdata[j] = x;
			}
	}
}

void snapshot_normalize_domain(struct snapshot_def *def)
{
	struct domain_def *d;
	char *xml;

	if (!def->domain_xml)
		return;
	d = domain_def_parse_string(def->domain_xml, domains_parse_opts());
	xml = d ? domain_def_format(d, VIR_DOMAIN_XML_INACTIVE | VIR_DOMAIN_XML_SECURE) : NULL;
	domain_def_free(d);
	if (xml) {
		g_free(def->domain_xml);
		def->domain_xml = xml;
	} else {
		/* kept as written: revert reports what is wrong with it */
		drv_error_reset();
	}
}

int snapshot_store_init(const char *dir)
{
	GDir *d;
	const char *f;

	store_dir = g_strdup(dir);
	domains = g_hash_table_new_full(g_str_hash, g_str_equal, g_free,
					(GDestroyNotify)g_ptr_array_unref);
	if (g_mkdir_with_parents(dir, 0700) < 0) {
		drv_error_report(VIR_ERR_SYSTEM_ERROR, "cannot create snapshot directory '%s': %s",
				 dir, g_strerror(errno));
		return -1;
	}
	d = g_dir_open(dir, 0, NULL);
	if (!d)
		return 0;
	while ((f = g_dir_read_name(d)))
		load_domain(f);
	g_dir_close(d);
	return 0;
}

GPtrArray *snapshot_store_list(const char *dom)
{
	return list_of(dom, true);
}

struct snapshot_def *snapshot_store_find(const char *dom, const char *name)
{
	GPtrArray *a = list_of(dom, false);

	for (guint i = 0; a && i < a->len; i++) {
		struct snapshot_def *s = a->pdata[i];

		if (!strcmp(s->name, name))
			return s;
	}
	return NULL;
}

struct snapshot_def *snapshot_store_current(const char *dom)
{
	GPtrArray *a = list_of(dom, false);

	for (guint i = 0; a && i < a->len; i++)
		if (((struct snapshot_def *)a->pdata[i])->current)
			return a->pdata[i];
	return NULL;
}

unsigned snapshot_store_count(const char *dom)
{
	GPtrArray *a;
	unsigned n;

	snapshot_store_lock();
	a = list_of(dom, false);
	n = a ? a->len : 0;
	snapshot_store_unlock();
	return n;
}

char *snapshot_store_dir(const char *dom)
{
	char *dir = g_build_filename(store_dir, dom, NULL);

	g_mkdir_with_parents(dir, 0700);
	return dir;
}

static char *file_of(const char *dom, const char *name)
{
	g_autofree char *f = g_strconcat(name, ".xml", NULL);

	return g_build_filename(store_dir, dom, f, NULL);
}

int snapshot_store_write(const char *dom, struct snapshot_def *def)
{
	g_autofree char *dir = snapshot_store_dir(dom);
	g_autofree char *path = file_of(dom, def->name);
	g_autofree char *tmp = g_strconcat(path, ".new", NULL);
	g_autofree char *xml = snapshot_def_format(def, true);
	g_autoptr(GError) err = NULL;

	if (!g_file_set_contents_full(tmp, xml, -1, G_FILE_SET_CONTENTS_DURABLE, 0600, &err) ||
	    rename(tmp, path) < 0) {
		drv_error_report(VIR_ERR_OPERATION_FAILED, "cannot write snapshot metadata '%s': %s",
				 path, err ? err->message : g_strerror(errno));
		unlink(tmp);
		return -1;
	}
	return 0;
}

int snapshot_store_add(const char *dom, struct snapshot_def *def, bool current)
{
	GPtrArray *a = list_of(dom, true);
	struct snapshot_def *old = snapshot_store_find(dom, def->name);
	struct snapshot_def *cur = snapshot_store_current(dom);

	def->current = current || (old && old->current && cur == old);
	if (snapshot_store_write(dom, def) < 0) {
		snapshot_def_free(def);
		return -1;
	}
	if (old)
		g_ptr_array_remove(a, old);
	g_ptr_array_add(a, def);
	if (current && cur && cur != old) {
		cur->current = false;
		if (snapshot_store_write(dom, cur) < 0)
			return -1;
	}
	return 0;
}

int snapshot_store_set_current(const char *dom, const char *name)
{
	struct snapshot_def *cur = snapshot_store_current(dom);
	struct snapshot_def *next = name ? snapshot_store_find(dom, name) : NULL;

	if (cur == next)
		return 0;
	if (cur) {
		cur->current = false;
		if (snapshot_store_write(dom, cur) < 0)
			return -1;
	}
	if (next) {
		next->current = true;
		if (snapshot_store_write(dom, next) < 0)
			return -1;
	}
	return 0;
}

int snapshot_store_remove(const char *dom, const char *name)
{
	GPtrArray *a = list_of(dom, false);
	struct snapshot_def *s = snapshot_store_find(dom, name);
	g_autofree char *path = file_of(dom, name);

	if (!s)
		return 0;
	if (unlink(path) < 0 && errno != ENOENT) {
		drv_error_report(VIR_ERR_SYSTEM_ERROR, "cannot remove snapshot metadata '%s': %s",
				 path, g_strerror(errno));
		return -1;
	}
	g_ptr_array_remove(a, s);
	return 0;
}

int snapshot_store_remove_all(const char *dom)
{
	GPtrArray *a = list_of(dom, false);
	g_autofree char *dir = g_build_filename(store_dir, dom, NULL);

	while (a && a->len)
		if (snapshot_store_remove(dom, ((struct snapshot_def *)a->pdata[0])->name) < 0)
			return -1;
	g_hash_table_remove(domains, dom);
	rmdir(dir);
	return 0;
}
