/* Edits of a definition through the API: title, description and element
 * metadata (virsh desc, virsh metadata), and rename. */
#include <stdlib.h>
#include <string.h>

#include <libvirt/libvirt.h>
#include <libxml/parser.h>

#include "domain_api.h"
#include "domain/snapshot_store.h"
#include "error.h"
#include "domain/events.h"
#include "handlers.h"
#include "log.h"

#define VIR_FROM_THIS VIR_FROM_DOMAIN

#define AFFECT_FLAGS (VIR_DOMAIN_AFFECT_LIVE | VIR_DOMAIN_AFFECT_CONFIG)

/* A domain has one definition, live and persistent alike: LIVE needs a
 * running domain, and either flag edits that one definition.  Once it is
 * redefined while running (obj->newdef) there are two, and the flags
 * choose (set_metadata). */
static int check_affect(struct domain_obj *obj, unsigned flags)
{
	if ((flags & VIR_DOMAIN_AFFECT_LIVE) && obj->id < 0) {
		drv_error_report(VIR_ERR_OPERATION_INVALID, "domain is not running");
		return -1;
	}
	return 0;
}

/* The element of the metadata document in namespace URI, or NULL. */
static xmlNodePtr metadata_find(const struct domain_def *def, const char *uri)
{
	xmlNodePtr md = def->metadata ? xmlDocGetRootElement(def->metadata) : NULL;

	for (xmlNodePtr c = md ? md->children : NULL; c; c = c->next)
		if (c->type == XML_ELEMENT_NODE && c->ns && c->ns->href &&
		    !strcmp((const char *)c->ns->href, uri))
			return c;
	return NULL;
}

/* Replaces (or with XML NULL removes) the metadata element in namespace
 * URI, its root given prefix KEY, as libvirt does. */
static int metadata_set_element(struct domain_def *def, const char *xml, const char *key,
				const char *uri)
{
	xmlDocPtr parsed = NULL;
	xmlNodePtr old, copy, md;
	xmlNsPtr ns;

	if (!uri) {
		drv_error_report(VIR_ERR_INVALID_ARG, "uri in virDomainSetMetadata must not be NULL");
		return -1;
	}
	if (xml) {
		if (!key) {
			drv_error_report(VIR_ERR_INVALID_ARG,
					 "key in virDomainSetMetadata must not be NULL");
			return -1;
		}
		/* CLIENT: arbitrary text; libxml2 parses it without network
		 * access or entity expansion. */
		parsed = xmlReadMemory(xml, strlen(xml), "(metadata_xml)", NULL,
				       XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING |
				       XML_PARSE_NOBLANKS);
		if (!parsed || !xmlDocGetRootElement(parsed)) {
			const xmlError *e = xmlGetLastError();

			drv_error_report_full(VIR_FROM_XML, VIR_ERR_XML_DETAIL, "(metadata_xml):%d: %s",
					      e ? e->line : 0,
					      e && e->message ? g_strchomp(e->message) : "not XML");
			if (parsed)
				xmlFreeDoc(parsed);
			return -1;
		}
	}
	while ((old = metadata_find(def, uri))) {
		xmlUnlinkNode(old);
		xmlFreeNode(old);
	}
	if (!parsed)
		return 0;
	if (!def->metadata) {
		def->metadata = xmlNewDoc(BAD_CAST "1.0");
		xmlDocSetRootElement(def->metadata,
				     xmlNewDocNode(def->metadata, NULL, BAD_CAST "metadata", NULL));
	}
	md = xmlDocGetRootElement(def->metadata);
	copy = xmlDocCopyNode(xmlDocGetRootElement(parsed), def->metadata, 1);
	xmlFreeDoc(parsed);
	ns = xmlNewNs(copy, BAD_CAST uri, BAD_CAST key);
	xmlSetNs(copy, ns);
	xmlAddChild(md, copy);
	xmlReconciliateNs(def->metadata, copy);
	return 0;
}

static void set_text(char **field, const char *value)
{
	g_free(*field);
	*field = value && *value ? g_strdup(value) : NULL;
}

/* One metadata change to DEF; 0, or -1 after reporting. */
static int metadata_set(struct domain_def *def, int type, const char *value, const char *key,
			const char *uri)
{
	switch (type) {
	case VIR_DOMAIN_METADATA_DESCRIPTION:
		set_text(&def->description, value);
		return 0;
	case VIR_DOMAIN_METADATA_TITLE:
		if (value && strchr(value, '\n')) {
			drv_error_report(VIR_ERR_INVALID_ARG, "title can't contain newlines");
			return -1;
		}
		set_text(&def->title, value);
		return 0;
	case VIR_DOMAIN_METADATA_ELEMENT:
		return metadata_set_element(def, value && *value ? value : NULL, key, uri);
	default:
		drv_error_report(VIR_ERR_INVALID_ARG, "unknown metadata type '%d'", type);
		return -1;
	}
}

int drv_domain_set_metadata(struct rpc_conn *conn, void *args, void *ret)
{
	remote_domain_set_metadata_args *a = args;
	const char *value = a->metadata ? *a->metadata : NULL;
	const char *key = a->key ? *a->key : NULL, *uri = a->uri ? *a->uri : NULL;
	int rc = -1;

	if (api_check_flags(a->flags, AFFECT_FLAGS, "virDomainSetMetadata") < 0)
		return -1;
	struct domain_obj *obj = wire_domain_get(&a->dom);
	if (!obj)
		return -1;
	if (domain_job_begin(obj, "virDomainSetMetadata") < 0)
		goto out;
	if (check_affect(obj, a->flags) < 0)
		goto end;
	g_mutex_lock(&obj->lock);
	if (!obj->newdef) {
		rc = metadata_set(obj->def, a->type, value, key, uri);
	} else {
		/* Redefined while running: the live definition and the next
		 * start's are two, and the flags choose as in libvirt
		 * (CURRENT on a running domain is LIVE). */
		rc = 0;
		if (!(a->flags & VIR_DOMAIN_AFFECT_CONFIG) || (a->flags & VIR_DOMAIN_AFFECT_LIVE))
			rc = metadata_set(obj->def, a->type, value, key, uri);
		if (rc == 0 && (a->flags & VIR_DOMAIN_AFFECT_CONFIG))
			rc = metadata_set(obj->newdef, a->type, value, key, uri);
	}
	g_mutex_unlock(&obj->lock);
	/* Saved once changed in memory: a failure to save is reported, and
	 * the next successful save carries the change. */
	if (rc == 0)
		rc = domain_save(obj);
	if (rc == 0)
		events_metadata_change(obj, a->type,
				       a->type == VIR_DOMAIN_METADATA_ELEMENT ? *a->uri : NULL);
end:
	domain_job_end(obj);
out:
	domain_obj_unref(obj);
	return rc;
}

static char *metadata_get(const struct domain_def *def, int type, const char *uri)
{
	xmlNodePtr n;
	xmlBufferPtr b;
	char *s;

	switch (type) {
	case VIR_DOMAIN_METADATA_DESCRIPTION:
		return def->description ? strdup(def->description) : NULL;
	case VIR_DOMAIN_METADATA_TITLE:
		return def->title ? strdup(def->title) : NULL;
	case VIR_DOMAIN_METADATA_ELEMENT:
		if (!uri || !(n = metadata_find(def, uri)))
			return NULL;
		b = xmlBufferCreate();
		xmlNodeDump(b, def->metadata, n, 0, 1);
		s = strdup((const char *)xmlBufferContent(b));
		xmlBufferFree(b);
		return s;
	}
	return NULL;
}

int drv_domain_get_metadata(struct rpc_conn *conn, void *args, void *ret)
{
	remote_domain_get_metadata_args *a = args;
	remote_domain_get_metadata_ret *r = ret;
	int rc = 0;

	if (api_check_flags(a->flags, AFFECT_FLAGS, "virDomainGetMetadata") < 0)
		return -1;
	if (a->type < VIR_DOMAIN_METADATA_DESCRIPTION || a->type > VIR_DOMAIN_METADATA_ELEMENT) {
		drv_error_report(VIR_ERR_INVALID_ARG, "unknown metadata type '%d'", a->type);
		return -1;
	}
	struct domain_obj *obj = wire_domain_get(&a->dom);
	if (!obj)
		return -1;
	g_mutex_lock(&obj->lock);
	if (check_affect(obj, a->flags) < 0) {
		rc = -1;
	} else if (!(r->metadata = metadata_get(a->flags & VIR_DOMAIN_AFFECT_CONFIG
						? domain_persistent_def(obj) : obj->def,
						a->type, a->uri ? *a->uri : NULL))) {
		/* virsh turns this code into "No description" / "No title". */
		drv_error_report(VIR_ERR_NO_DOMAIN_METADATA, "Requested metadata element is not present");
		rc = -1;
	}
	g_mutex_unlock(&obj->lock);
	domain_obj_unref(obj);
	return rc;
}

static bool has_managed_save(struct domain_obj *obj)
{
	bool has;

	g_mutex_lock(&obj->lock);
	has = managed_save_exists_locked(obj);
	g_mutex_unlock(&obj->lock);
	return has;
}

int drv_domain_rename(struct rpc_conn *conn, void *args, void *ret)
{
	remote_domain_rename_args *a = args;
	remote_domain_rename_ret *r = ret;
	const char *new_name = a->new_name ? *a->new_name : NULL;
	g_autofree char *old_name = NULL;
	int rc = -1;

	if (api_check_flags(a->flags, 0, "virDomainRename") < 0)
		return -1;
	/* CLIENT: the new name becomes a file name: the same rules as a
	 * <name> in a definition. */
	if (!new_name || !*new_name) {
		drv_error_report(VIR_ERR_INVALID_ARG, "new domain name must not be empty");
		return -1;
	}
	if (strchr(new_name, '/') || strchr(new_name, '\n')) {
		drv_error_report(VIR_ERR_XML_DETAIL, "invalid char in name: %s",
				 strchr(new_name, '/') ? "/" : "newline");
		return -1;
	}
	struct domain_obj *obj = wire_domain_get(&a->dom);
	if (!obj)
		return -1;
	if (domain_job_begin(obj, "virDomainRename") < 0)
		goto out;
	old_name = g_strdup(obj->def->name);
	if (obj->id >= 0)
		drv_error_report(VIR_ERR_OPERATION_INVALID, "cannot rename active domain");
	else if (!strcmp(old_name, new_name))
		drv_error_report(VIR_ERR_OPERATION_INVALID, "Can't rename domain to itself");
	else if (snapshot_store_count(old_name) > 0)
		/* Their metadata is filed under the domain's name. */
		drv_error_report(VIR_ERR_OPERATION_INVALID, "cannot rename domain with snapshots");
	else if (has_managed_save(obj))
		/* The image is named after the domain (libvirt's rule too). */
		drv_error_report(VIR_ERR_OPERATION_INVALID,
				 "domain with a managed saved state can't be renamed");
	else
		rc = domain_rename(obj, new_name);
	domain_job_end(obj);
	if (rc == 0) {
		pr_info("domain '%s' renamed to '%s'", old_name, new_name);
		/* As libvirt: the old name goes, then the new one comes. */
		events_lifecycle(old_name, obj->def->uuid, obj->id, VIR_DOMAIN_EVENT_UNDEFINED,
				 VIR_DOMAIN_EVENT_UNDEFINED_RENAMED);
		events_lifecycle_obj(obj, VIR_DOMAIN_EVENT_DEFINED, VIR_DOMAIN_EVENT_DEFINED_RENAMED);
	}
out:
	domain_obj_unref(obj);
	r->retcode = rc;
	return rc;
}
