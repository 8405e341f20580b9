/* Define, undefine and look up domains. */
#include <stdlib.h>
#include <string.h>

#include <libvirt/libvirt.h>

#include "domain_api.h"
#include "conf/domain_schema.h"
#include "error.h"
#include "domain/events.h"
#include "handlers.h"
#include "log.h"

#define VIR_FROM_THIS VIR_FROM_DOMAIN

/* VIR_DOMAIN_UNDEFINE_* of libvirt 9.0: MANAGED_SAVE 1, SNAPSHOTS_METADATA
 * 2, NVRAM 4, KEEP_NVRAM 8, CHECKPOINTS_METADATA 16, KEEP_TPM 32, TPM 64. */
#define UNDEFINE_FLAGS_KNOWN 0x7fu

static int define(const char *xml, unsigned flags, remote_nonnull_domain *out)
{
	struct domain_def *def;
	struct domain_obj *obj;
	bool updated;

	if (api_check_flags(flags, VIR_DOMAIN_DEFINE_VALIDATE, "virDomainDefineXMLFlags") < 0)
		return -1;
	if ((flags & VIR_DOMAIN_DEFINE_VALIDATE) && domain_schema_validate(xml) < 0)
		return -1;
	/* CLIENT: the XML is any string up to REMOTE_STRING_MAX; the parser
	 * refuses everything outside the subset, and names containing '/',
	 * so a name is always a plain file name inside the config dir. */
	def = domain_def_parse_string(xml, domains_parse_opts());
	if (!def)
		return -1;
	obj = domain_define(def, &updated);
	if (!obj)
		return -1;
	wire_domain_make(obj, out);
	pr_info("domain '%s' %s", out->name, updated ? "redefined" : "defined");
	events_lifecycle_obj(obj, VIR_DOMAIN_EVENT_DEFINED,
			     updated ? VIR_DOMAIN_EVENT_DEFINED_UPDATED : VIR_DOMAIN_EVENT_DEFINED_ADDED);
	domain_obj_unref(obj);
	return 0;
}

int drv_domain_define_xml(struct rpc_conn *conn, void *args, void *ret)
{
	remote_domain_define_xml_args *a = args;
	remote_domain_define_xml_ret *r = ret;

	return define(a->xml, 0, &r->dom);
}

int drv_domain_define_xml_flags(struct rpc_conn *conn, void *args, void *ret)
{
	remote_domain_define_xml_flags_args *a = args;
	remote_domain_define_xml_flags_ret *r = ret;

	return define(a->xml, a->flags, &r->dom);
}

static int undefine(const remote_nonnull_domain *dom, unsigned flags)
{
	struct domain_obj *obj;
	bool managed;
	int rc = -1;

	/* Every flag names something to remove along with the definition
	 * (managed save image, snapshot or checkpoint metadata, NVRAM, TPM
	 * state) or to keep.  kvmm domains have none but the managed image
	 * (refused without its flag, as libvirt), and libvirt treats each
	 * flag as a no-op when there is nothing to act on, so all are
	 * accepted; only the contradictory pairs are refused, as libvirt
	 * does. */
	if (api_check_flags(flags, UNDEFINE_FLAGS_KNOWN, "virDomainUndefineFlags") < 0)
		return -1;
	if ((flags & VIR_DOMAIN_UNDEFINE_NVRAM) && (flags & VIR_DOMAIN_UNDEFINE_KEEP_NVRAM)) {
		drv_error_report(VIR_ERR_INVALID_ARG,
				 "Flags 'VIR_DOMAIN_UNDEFINE_NVRAM' and 'VIR_DOMAIN_UNDEFINE_KEEP_NVRAM' are mutually exclusive");
		return -1;
	}
	if ((flags & VIR_DOMAIN_UNDEFINE_TPM) && (flags & VIR_DOMAIN_UNDEFINE_KEEP_TPM)) {
		drv_error_report(VIR_ERR_INVALID_ARG,
				 "Flags 'VIR_DOMAIN_UNDEFINE_TPM' and 'VIR_DOMAIN_UNDEFINE_KEEP_TPM' are mutually exclusive");
		return -1;
	}
	obj = wire_domain_get(dom);
	if (!obj)
		return -1;
	if (domain_job_begin(obj, "virDomainUndefine") < 0)
		goto out;
	g_mutex_lock(&obj->lock);
	managed = obj->persistent && managed_save_exists_locked(obj);
	g_mutex_unlock(&obj->lock);
	if (managed && !(flags & VIR_DOMAIN_UNDEFINE_MANAGED_SAVE)) {
		drv_error_report(VIR_ERR_OPERATION_INVALID,
				 "Refusing to undefine while domain managed save image exists");
		domain_job_end(obj);
		goto out;
	}
	if (snapshots_undefine_check(obj, flags) < 0 ||
	    (managed && managed_save_remove(obj) < 0)) {
		domain_job_end(obj);
		goto out;
	}
	rc = domain_undefine(obj);
	/* Without the flag a running domain keeps its snapshots while it
	 * runs on, transient, as libvirt's. */
	if (rc == 0 && (obj->removed || (flags & VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA)) &&
	    snapshots_forget(obj) < 0) {
		pr_warn("domain '%s': %s", obj->def->name, drv_error_last()->message);
		drv_error_reset();
	}
	domain_job_end(obj);
	if (rc == 0) {
		pr_info("domain '%s' undefined", obj->def->name);
		/* obj is out of the index but still ours: its name and uuid
		 * are those the clients knew. */
		events_lifecycle_obj(obj, VIR_DOMAIN_EVENT_UNDEFINED,
				     VIR_DOMAIN_EVENT_UNDEFINED_REMOVED);
	}
out:
	domain_obj_unref(obj);
	return rc;
}

int drv_domain_undefine(struct rpc_conn *conn, void *args, void *ret)
{
	remote_domain_undefine_args *a = args;

	return undefine(&a->dom, 0);
}

int drv_domain_undefine_flags(struct rpc_conn *conn, void *args, void *ret)
{
	remote_domain_undefine_flags_args *a = args;

	return undefine(&a->dom, a->flags);
}

int drv_domain_lookup_by_name(struct rpc_conn *conn, void *args, void *ret)
{
	remote_domain_lookup_by_name_args *a = args;
	remote_domain_lookup_by_name_ret *r = ret;
	struct domain_obj *obj = domain_find_by_name(a->name);

	if (!obj) {
		drv_error_report(VIR_ERR_NO_DOMAIN, "no domain with matching name '%s'", a->name);
		return -1;
	}
	wire_domain_make(obj, &r->dom);
	domain_obj_unref(obj);
	return 0;
}

int drv_domain_lookup_by_uuid(struct rpc_conn *conn, void *args, void *ret)
{
	remote_domain_lookup_by_uuid_args *a = args;
	remote_domain_lookup_by_uuid_ret *r = ret;
	struct domain_obj *obj = domain_find_by_uuid((const unsigned char *)a->uuid);
	char uuid[37];

	if (!obj) {
		domain_uuid_format((const unsigned char *)a->uuid, uuid);
		drv_error_report(VIR_ERR_NO_DOMAIN, "no domain with matching uuid '%s'", uuid);
		return -1;
	}
	wire_domain_make(obj, &r->dom);
	domain_obj_unref(obj);
	return 0;
}

int drv_domain_lookup_by_id(struct rpc_conn *conn, void *args, void *ret)
{
	remote_domain_lookup_by_id_args *a = args;
	remote_domain_lookup_by_id_ret *r = ret;
	struct domain_obj *obj = domain_find_by_id(a->id);

	/* Only running domains have an id; none runs yet. */
	if (!obj) {
		drv_error_report(VIR_ERR_NO_DOMAIN, "no domain with matching id %d", a->id);
		return -1;
	}
	wire_domain_make(obj, &r->dom);
	domain_obj_unref(obj);
	return 0;
}
