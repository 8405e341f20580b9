/* setvcpus (virDomainSetVcpus, virDomainSetVcpusFlags): a running
 * domain's vCPUs through kvmm's vCPU hotplug (docs/hotplug.md), the
 * definition's current= and maximum for the next start.  vcpucount is
 * virDomainGetVcpusFlags in domain_info.c.  The rules and errors are
 * those of libvirt's QEMU driver. */
#include <glib.h>
#include <libvirt/libvirt.h>

#include "domain_api.h"
#include "error.h"
#include "handlers.h"
#include "log.h"
#include "conf/domain_tables.h"
#include "kvmm/process.h"

#define VIR_FROM_THIS VIR_FROM_DOMAIN

static int set_vcpus(remote_nonnull_domain *dom, unsigned n, unsigned flags, const char *api)
{
	struct domain_obj *obj;
	bool live, config, maximum = flags & VIR_DOMAIN_VCPU_MAXIMUM;
	unsigned live_max = 0, config_max = 0;
	int rc = -1;

	if (api_check_flags(flags, VIR_DOMAIN_AFFECT_LIVE | VIR_DOMAIN_AFFECT_CONFIG |
			    VIR_DOMAIN_VCPU_MAXIMUM | VIR_DOMAIN_VCPU_GUEST, api) < 0)
		return -1;
	if (flags & VIR_DOMAIN_VCPU_GUEST) {
		/* libvirt asks the guest agent for this; kvmm has none. */
		drv_error_report(VIR_ERR_ARGUMENT_UNSUPPORTED, "%s",
				 "setting vCPUs in the guest is not supported by kvmm (no guest agent)");
		return -1;
	}
	/* CLIENT: libvirt's client refuses 0 too; a count kvmm can run. */
	if (n == 0) {
		drv_error_report(VIR_ERR_INVALID_ARG, "%s", "argument unsupported: the vcpu count must be greater than 0");
		return -1;
	}
	if (!(obj = wire_domain_get(dom)))
		return -1;
	if (domain_job_begin(obj, api) < 0)
		goto out;
	if (api_affect(obj, flags, &live, &config, NULL) < 0)
		goto end;
	if (maximum && live) {
		drv_error_report(VIR_ERR_CONFIG_UNSUPPORTED, "%s",
				 "maximum vcpu count of a live domain can't be modified");
		goto end;
	}
	g_mutex_lock(&obj->lock);
	live_max = obj->def->vcpus;
	config_max = domain_persistent_def(obj)->vcpus;
	unsigned sockets = domain_persistent_def(obj)->sockets;
	unsigned long long per_socket = (unsigned long long)domain_persistent_def(obj)->dies *
					domain_persistent_def(obj)->cores * domain_persistent_def(obj)->threads;
	g_mutex_unlock(&obj->lock);
	if (maximum && n > CONF_MAX_VCPUS) {
		drv_error_report(VIR_ERR_INVALID_ARG,
				 "requested vcpus is greater than max allowable vcpus for the domain: %u > %d",
				 n, CONF_MAX_VCPUS);
		goto end;
	}
	if (maximum && sockets && sockets * per_socket != n) {
		drv_error_report(VIR_ERR_INVALID_ARG, "%s",
				 "CPU topology doesn't match the desired vcpu count");
		goto end;
	}
	if (!maximum && live && n > live_max) {
		drv_error_report(VIR_ERR_INVALID_ARG,
				 "requested vcpus is greater than max allowable vcpus for the live domain: %u > %u",
				 n, live_max);
		goto end;
	}
	if (!maximum && config && n > config_max) {
		drv_error_report(VIR_ERR_INVALID_ARG,
				 "requested vcpus is greater than max allowable vcpus for the persistent domain: %u > %u",
				 n, config_max);
		goto end;
	}
	/* kvmm first: the live XML (and status file) follow what it did. */
	if (live && process_set_vcpus(obj, n) < 0)
		goto end;
	if (config) {
		if (domain_split_next_def(obj, live, config) < 0)
			goto end;
		g_mutex_lock(&obj->lock);
		struct domain_def *def = obj->newdef ? obj->newdef : obj->def;

		if (maximum) {
			def->vcpus = n;
			if (def->vcpus_current > n)
				def->vcpus_current = n;
		} else {
			def->vcpus_current = n;
		}
		g_mutex_unlock(&obj->lock);
		if (domain_save(obj) < 0)
			goto end;
	}
	rc = 0;
	pr_info("domain '%s': vcpus%s set to %u (%s%s)", obj->def->name, maximum ? " maximum" : "", n,
		live ? "live" : "", config ? (live ? ", config" : "config") : "");
end:
	domain_job_end(obj);
out:
	domain_obj_unref(obj);
	return rc;
}

int drv_domain_set_vcpus_flags(struct rpc_conn *conn, void *args, void *ret)
{
	remote_domain_set_vcpus_flags_args *a = args;

	return set_vcpus(&a->dom, a->nvcpus, a->flags, "virDomainSetVcpusFlags");
}

/* libvirt's qemu driver: virDomainSetVcpus is the live change. */
int drv_domain_set_vcpus(struct rpc_conn *conn, void *args, void *ret)
{
	remote_domain_set_vcpus_args *a = args;

	return set_vcpus(&a->dom, a->nvcpus, VIR_DOMAIN_AFFECT_LIVE, "virDomainSetVcpus");
}
