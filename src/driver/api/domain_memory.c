/* Handlers that change a domain's memory: setmem (virDomainSetMemory,
 * virDomainSetMemoryFlags) through kvmm's balloon, setmaxmem
 * (virDomainSetMaxMemory, for the next boot), dommemstat --period
 * (virDomainSetMemoryStatsPeriod).  The rules and errors are
 * those of libvirt's QEMU driver. */
#include <glib.h>
#include <libvirt/libvirt.h>

#include "domain_api.h"
#include "error.h"
#include "handlers.h"
#include "log.h"
#include "vm_limits.h"
#include "kvmm/monitor.h"
#include "kvmm/process.h"

#define VIR_FROM_THIS VIR_FROM_DOMAIN

static int set_memory(remote_nonnull_domain *dom, unsigned long long kib, unsigned flags,
		      const char *api)
{
	struct domain_obj *obj;
	g_autofree char *path = NULL;
	bool live, config, maximum = flags & VIR_DOMAIN_MEM_MAXIMUM;
	int rc = -1;

	if (api_check_flags(flags, VIR_DOMAIN_AFFECT_LIVE | VIR_DOMAIN_AFFECT_CONFIG |
			    VIR_DOMAIN_MEM_MAXIMUM, api) < 0)
		return -1;
	if (!(obj = wire_domain_get(dom)))
		return -1;
	if (domain_job_begin(obj, api) < 0)
		goto out;
	if (api_affect(obj, flags, &live, &config, NULL) < 0)
		goto end;
	if (maximum && live) {
		drv_error_report(VIR_ERR_OPERATION_INVALID,
				 "cannot resize the maximum memory on an active domain");
		goto end;
	}
	/* CLIENT: a size kvmm can give a guest.  The floor is kvmm's smallest
	 * guest: a balloon asked to leave less would starve any guest. */
	if (kib < VM_MIN_MEMORY / 1024) {
		drv_error_report(VIR_ERR_INVALID_ARG, "memory %llu KiB is below kvmm's minimum of %llu KiB",
				 kib, VM_MIN_MEMORY / 1024);
		goto end;
	}
	if (maximum && kib > VM_MAX_MEMORY / 1024) {
		drv_error_report(VIR_ERR_INVALID_ARG, "memory %llu KiB is above kvmm's maximum of %llu KiB",
				 kib, VM_MAX_MEMORY / 1024);
		goto end;
	}
	if (!maximum) {
		g_mutex_lock(&obj->lock);
		bool over = (live && kib > obj->def->memory_kib) ||
			    (config && kib > (obj->newdef ? obj->newdef : obj->def)->memory_kib);
		bool no_balloon = live && obj->def->balloon_model != BALLOON_VIRTIO;
		g_mutex_unlock(&obj->lock);
		if (over) {
			drv_error_report(VIR_ERR_INVALID_ARG, "cannot set memory higher than max memory");
			goto end;
		}
		if (no_balloon) {
			drv_error_report(VIR_ERR_OPERATION_INVALID,
					 "Unable to change memory of active domain without the balloon device and guest OS balloon driver");
			goto end;
		}
	}
	if (live) {
		if (!(path = process_api_path(obj)) || monitor_balloon_set(path, kib * 1024, -1) < 0)
			goto end;
	}
	if (domain_split_next_def(obj, live, config) < 0)
		goto end;
	g_mutex_lock(&obj->lock);
	if (live) {
		obj->def->current_memory_kib = kib;
		/* A restarted daemon reports the target from the status file. */
		if (obj->run)
			process_save_status_locked(obj);
	}
	if (config) {
		struct domain_def *def = obj->newdef ? obj->newdef : obj->def;

		if (maximum) {
			def->memory_kib = kib;
			if (def->current_memory_kib > kib)
				def->current_memory_kib = kib;
		} else {
			def->current_memory_kib = kib;
		}
	}
	g_mutex_unlock(&obj->lock);
	rc = domain_save(obj);
	if (rc == 0)
		pr_info("domain '%s': memory%s set to %llu KiB (%s%s)", obj->def->name,
			maximum ? " maximum" : "", kib, live ? "live" : "",
			config ? (live ? ", config" : "config") : "");
end:
	domain_job_end(obj);
out:
	domain_obj_unref(obj);
	return rc;
}

int drv_domain_set_memory_flags(struct rpc_conn *conn, void *args, void *ret)
{
	remote_domain_set_memory_flags_args *a = args;

	return set_memory(&a->dom, a->memory, a->flags, "virDomainSetMemoryFlags");
}

/* libvirt's qemu driver: virDomainSetMemory is the live change. */
int drv_domain_set_memory(struct rpc_conn *conn, void *args, void *ret)
{
	remote_domain_set_memory_args *a = args;

	return set_memory(&a->dom, a->memory, VIR_DOMAIN_AFFECT_LIVE, "virDomainSetMemory");
}

/* ... and virDomainSetMaxMemory the maximum of the current definition. */
int drv_domain_set_max_memory(struct rpc_conn *conn, void *args, void *ret)
{
	remote_domain_set_max_memory_args *a = args;

	return set_memory(&a->dom, a->memory, VIR_DOMAIN_MEM_MAXIMUM, "virDomainSetMaxMemory");
}

int drv_domain_set_memory_stats_period(struct rpc_conn *conn, void *args, void *ret)
{
	remote_domain_set_memory_stats_period_args *a = args;
	const char *api = "virDomainSetMemoryStatsPeriod";
	g_autofree char *path = NULL;
	struct domain_obj *obj;
	bool live, config;
	int rc = -1;

	if (api_check_flags(a->flags, VIR_DOMAIN_AFFECT_LIVE | VIR_DOMAIN_AFFECT_CONFIG, api) < 0)
		return -1;
	/* CLIENT: kvmm polls at most daily. */
	if (a->period < 0 || a->period > VM_BALLOON_PERIOD_MAX) {
		drv_error_report(VIR_ERR_INVALID_ARG, "invalid stats period '%d' (kvmm takes 0 to %d)",
				 a->period, VM_BALLOON_PERIOD_MAX);
		return -1;
	}
	if (!(obj = wire_domain_get(&a->dom)))
		return -1;
	if (domain_job_begin(obj, api) < 0)
		goto out;
	if (api_affect(obj, a->flags, &live, &config, NULL) < 0)
		goto end;
	g_mutex_lock(&obj->lock);
	bool live_none = live && obj->def->balloon_model != BALLOON_VIRTIO;
	bool config_none = config &&
		(obj->newdef ? obj->newdef : obj->def)->balloon_model != BALLOON_VIRTIO;
	g_mutex_unlock(&obj->lock);
	if (live_none || config_none) {
		drv_error_report(VIR_ERR_OPERATION_INVALID,
				 "No memory balloon device configured, can not set the collection period");
		goto end;
	}
	if (live && (!(path = process_api_path(obj)) ||
		     monitor_balloon_set(path, 0, a->period) < 0))
		goto end;
	if (domain_split_next_def(obj, live, config) < 0)
		goto end;
	g_mutex_lock(&obj->lock);
	if (live) {
		obj->def->balloon_period = (unsigned)a->period;
		if (obj->run)
			process_save_status_locked(obj);
	}
	if (config)
		(obj->newdef ? obj->newdef : obj->def)->balloon_period = (unsigned)a->period;
	g_mutex_unlock(&obj->lock);
	rc = domain_save(obj);
end:
	domain_job_end(obj);
out:
	domain_obj_unref(obj);
	return rc;
}
