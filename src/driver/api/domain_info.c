/* What a client asks about one domain: XML, info, state, autostart, the
 * is-* predicates, OS type, memory and vCPU counts. */
#include <stdlib.h>
#include <string.h>

#include <libvirt/libvirt.h>

#include "domain_api.h"
#include "error.h"
#include "handlers.h"
#include "log.h"
#include "kvmm/monitor.h"
#include "kvmm/process.h"

#define VIR_FROM_THIS VIR_FROM_DOMAIN

#define XML_FLAGS (VIR_DOMAIN_XML_SECURE | VIR_DOMAIN_XML_INACTIVE | VIR_DOMAIN_XML_MIGRATABLE)

/* Declares OBJ, the domain the client names (a reference the handler
 * drops), or returns -1 with VIR_ERR_NO_DOMAIN reported. */
#define WITH_DOMAIN(dom, obj)					\
	struct domain_obj *obj = wire_domain_get(dom);		\
	if (!obj)						\
		return -1

static bool is_active(struct domain_obj *obj)
{
	return obj->id >= 0;
}

int drv_domain_get_xml_desc(struct rpc_conn *conn, void *args, void *ret)
{
	remote_domain_flags_args *a = args;
	remote_domain_get_xml_desc_ret *r = ret;
	char *xml;

	/* UPDATE_CPU (4) is refused rather than ignored: it would ask for
	 * the host-model CPU expanded, which the formatter does not do. */
	if (api_check_flags(a->flags, XML_FLAGS, "virDomainGetXMLDesc") < 0)
		return -1;
	WITH_DOMAIN(&a->dom, obj);
	g_mutex_lock(&obj->lock);
	/* INACTIVE: the definition the next start uses, as libvirt's. */
	xml = domain_def_format(a->flags & VIR_DOMAIN_XML_INACTIVE ? domain_persistent_def(obj)
								  : obj->def, a->flags);
	g_mutex_unlock(&obj->lock);
	domain_obj_unref(obj);
	if (!xml)
		return -1;
	/* malloc'ed for xdr_free */
	r->xml = strdup(xml);
	g_free(xml);
	if (!r->xml)
		g_error("out of memory");
	return 0;
}

int drv_domain_get_info(struct rpc_conn *conn, void *args, void *ret)
{
	remote_domain_args *a = args;
	remote_domain_get_info_ret *r = ret;

	g_autofree char *path = NULL;
	struct kvmm_balloon b;
	bool balloon;

	WITH_DOMAIN(&a->dom, obj);
	g_mutex_lock(&obj->lock);
	r->state = obj->state;
	r->maxMem = obj->def->memory_kib;
	r->memory = obj->def->current_memory_kib;
	r->nrVirtCpu = obj->def->vcpus_current;
	balloon = is_active(obj) && obj->def->balloon_model == BALLOON_VIRTIO;
	g_mutex_unlock(&obj->lock);
	/* "Used memory" of a running guest with a balloon is what the guest
	 * keeps (the balloon's actual), as libvirt's qemu driver reports:
	 * after setmem it follows the guest, not the target.  If kvmm cannot
	 * say, the size it was asked for stands in, as there. */
	if (balloon) {
		if ((path = process_api_path(obj)) && monitor_query_balloon(path, &b) == 0)
			r->memory = b.actual / 1024;
		else
			drv_error_reset();
	}
	r->cpuTime = process_cpu_time(obj);	/* 0 when shut off */
	domain_obj_unref(obj);
	return 0;
}

int drv_domain_get_state(struct rpc_conn *conn, void *args, void *ret)
{
	remote_domain_flags_args *a = args;
	remote_domain_get_state_ret *r = ret;

	if (api_check_flags(a->flags, 0, "virDomainGetState") < 0)
		return -1;
	WITH_DOMAIN(&a->dom, obj);
	g_mutex_lock(&obj->lock);
	r->state = obj->state;
	r->reason = obj->reason;
	g_mutex_unlock(&obj->lock);
	domain_obj_unref(obj);
	return 0;
}

int drv_domain_get_autostart(struct rpc_conn *conn, void *args, void *ret)
{
	remote_domain_args *a = args;
	remote_domain_get_autostart_ret *r = ret;

	WITH_DOMAIN(&a->dom, obj);
	r->autostart = obj->autostart;
	domain_obj_unref(obj);
	return 0;
}

int drv_domain_set_autostart(struct rpc_conn *conn, void *args, void *ret)
{
	remote_domain_set_autostart_args *a = args;
	int rc = -1;

	WITH_DOMAIN(&a->dom, obj);
	if (domain_job_begin(obj, "virDomainSetAutostart") == 0) {
		/* CLIENT: any non-zero int means "on", as in libvirt. */
		rc = domain_set_autostart(obj, a->autostart != 0);
		domain_job_end(obj);
	}
	domain_obj_unref(obj);
	return rc;
}

static int predicate(remote_domain_args *a, remote_domain_int_ret *r, int which)
{
	WITH_DOMAIN(&a->dom, obj);
	switch (which) {
	case 0:
		r->value = is_active(obj);
		break;
	case 1:
		r->value = obj->persistent;
		break;
	default:
		/* Defined again since it started: the next start differs. */
		g_mutex_lock(&obj->lock);
		r->value = obj->newdef != NULL;
		g_mutex_unlock(&obj->lock);
		break;
	}
	domain_obj_unref(obj);
	return 0;
}

int drv_domain_is_active(struct rpc_conn *conn, void *args, void *ret)
{
	return predicate(args, ret, 0);
}

int drv_domain_is_persistent(struct rpc_conn *conn, void *args, void *ret)
{
	return predicate(args, ret, 1);
}

int drv_domain_is_updated(struct rpc_conn *conn, void *args, void *ret)
{
	return predicate(args, ret, 2);
}

int drv_domain_has_managed_save_image(struct rpc_conn *conn, void *args, void *ret)
{
	remote_domain_flags_args *a = args;
	remote_domain_int_ret *r = ret;

	if (api_check_flags(a->flags, 0, "virDomainHasManagedSaveImage") < 0)
		return -1;
	WITH_DOMAIN(&a->dom, obj);
	g_mutex_lock(&obj->lock);
	r->value = managed_save_exists_locked(obj);
	g_mutex_unlock(&obj->lock);
	domain_obj_unref(obj);
	return 0;
}

int drv_domain_get_os_type(struct rpc_conn *conn, void *args, void *ret)
{
	remote_domain_args *a = args;
	remote_domain_get_os_type_ret *r = ret;

	WITH_DOMAIN(&a->dom, obj);
	domain_obj_unref(obj);
	r->type = strdup("hvm");	/* the only OS type the parser accepts */
	if (!r->type)
		g_error("out of memory");
	return 0;
}

int drv_domain_get_max_memory(struct rpc_conn *conn, void *args, void *ret)
{
	remote_domain_args *a = args;
	remote_domain_get_max_memory_ret *r = ret;

	WITH_DOMAIN(&a->dom, obj);
	g_mutex_lock(&obj->lock);
	r->memory = obj->def->memory_kib;
	g_mutex_unlock(&obj->lock);
	domain_obj_unref(obj);
	return 0;
}

static int not_running(struct domain_obj *obj)
{
	if (!is_active(obj)) {
		drv_error_report(VIR_ERR_OPERATION_INVALID, "domain is not running");
		return -1;
	}
	return 0;
}

int drv_domain_get_vcpus_flags(struct rpc_conn *conn, void *args, void *ret)
{
	remote_domain_flags_args *a = args;
	remote_domain_int_ret *r = ret;
	unsigned flags = a->flags;
	int rc = 0;

	if (api_check_flags(flags, VIR_DOMAIN_AFFECT_LIVE | VIR_DOMAIN_AFFECT_CONFIG |
			    VIR_DOMAIN_VCPU_MAXIMUM | VIR_DOMAIN_VCPU_GUEST,
			    "virDomainGetVcpusFlags") < 0)
		return -1;
	if ((flags & VIR_DOMAIN_AFFECT_LIVE) && (flags & VIR_DOMAIN_AFFECT_CONFIG)) {
		drv_error_report(VIR_ERR_INVALID_ARG,
				 "Flags 'VIR_DOMAIN_AFFECT_LIVE' and 'VIR_DOMAIN_AFFECT_CONFIG' are mutually exclusive");
		return -1;
	}
	WITH_DOMAIN(&a->dom, obj);
	g_mutex_lock(&obj->lock);
	if (flags & VIR_DOMAIN_VCPU_GUEST) {
		/* libvirt asks the guest agent for this; kvmm has none. */
		drv_error_report(VIR_ERR_ARGUMENT_UNSUPPORTED,
				 "querying vCPUs from the guest is not supported by kvmm (no guest agent)");
		rc = -1;
	} else if ((flags & VIR_DOMAIN_AFFECT_LIVE) && not_running(obj) < 0) {
		rc = -1;
	} else {
		/* Current: the live definition while it runs (its current=
		 * follows setvcpus --live), else the config. */
		const struct domain_def *def = flags & VIR_DOMAIN_AFFECT_CONFIG ?
					       domain_persistent_def(obj) : obj->def;

		r->value = flags & VIR_DOMAIN_VCPU_MAXIMUM ? def->vcpus : def->vcpus_current;
	}
	g_mutex_unlock(&obj->lock);
	domain_obj_unref(obj);
	return rc;
}

int drv_domain_get_max_vcpus(struct rpc_conn *conn, void *args, void *ret)
{
	remote_domain_args *a = args;
	remote_domain_int_ret *r = ret;
	int rc = 0;

	/* libvirt defines this as the running domain's maximum, and fails
	 * for a domain that does not run. */
	WITH_DOMAIN(&a->dom, obj);
	g_mutex_lock(&obj->lock);
	if (not_running(obj) < 0)
		rc = -1;
	else
		r->value = obj->def->vcpus;
	g_mutex_unlock(&obj->lock);
	domain_obj_unref(obj);
	return rc;
}
