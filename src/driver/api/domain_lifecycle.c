/* Handlers that change whether and how a domain runs: start (paused,
 * autodestroy), destroy, shutdown, suspend, resume, reset.  Each holds the domain's job, so one
 * change at a time happens to a domain while other domains (and every
 * query) go on. */
#include <libvirt/libvirt.h>

#include "domain/autodestroy.h"
#include "domain/job.h"
#include "domain_api.h"
#include "conf/domain_schema.h"
#include "error.h"
#include "handlers.h"
#include "log.h"
#include "kvmm/monitor.h"
#include "kvmm/process.h"

#define VIR_FROM_THIS VIR_FROM_DOMAIN

/* The start flags kvmm supports; BYPASS_CACHE and RESET_NVRAM (no
 * firmware) are refused rather than ignored. */
#define START_FLAGS (VIR_DOMAIN_START_PAUSED | VIR_DOMAIN_START_AUTODESTROY)
/* virDomainCreateWithFlags also: a managed image is discarded, not restored. */
#define CREATE_FLAGS (START_FLAGS | VIR_DOMAIN_START_FORCE_BOOT)

/* Starts OBJ (its job held) as FLAGS ask; CONN is the caller's, for
 * AUTODESTROY. */
static int start_obj(struct rpc_conn *conn, struct domain_obj *obj, unsigned flags)
{
	bool restored = false;

	/* As libvirt: a managed image is restored (and removed), unless
	 * FORCE_BOOT removes it first. */
	if ((flags & VIR_DOMAIN_START_FORCE_BOOT) && obj->id < 0 && managed_save_remove(obj) < 0)
		return -1;
	if (obj->persistent && obj->id < 0 &&
	    managed_save_start(obj, flags & VIR_DOMAIN_START_PAUSED, &restored) < 0)
		return -1;
	if (!restored && process_start_paused(obj, flags & VIR_DOMAIN_START_PAUSED) < 0)
		return -1;
	if ((flags & VIR_DOMAIN_START_AUTODESTROY) && autodestroy_add(conn, obj) < 0) {
		/* The client went away while its domain was starting. */
		process_destroy(obj, false);
		drv_error_reset();
		drv_error_report(VIR_ERR_OPERATION_FAILED,
				 "the connection closed while the domain started; destroyed (autodestroy)");
		return -1;
	}
	return 0;
}

static int start(struct rpc_conn *conn, const remote_nonnull_domain *dom, unsigned flags,
		 remote_nonnull_domain *out)
{
	struct domain_obj *obj;
	int rc = -1;

	if (api_check_flags(flags, CREATE_FLAGS, "virDomainCreateWithFlags") < 0)
		return -1;
	obj = wire_domain_get(dom);
	if (!obj)
		return -1;
	if (domain_job_begin(obj, "virDomainCreate") == 0) {
		rc = start_obj(conn, obj, flags);
		domain_job_end(obj);
	}
	if (rc == 0 && out)
		wire_domain_make(obj, out);
	domain_obj_unref(obj);
	return rc;
}

/* virsh create: a transient domain, started at once, gone when it stops. */
int drv_domain_create_xml(struct rpc_conn *conn, void *args, void *ret)
{
	remote_domain_define_xml_flags_args *a = args;	/* same body: xml, flags */
	remote_domain_ret *r = ret;
	struct domain_def *def;
	struct domain_obj *obj;
	int rc;

	if (api_check_flags(a->flags, START_FLAGS | VIR_DOMAIN_START_VALIDATE, "virDomainCreateXML") < 0)
		return -1;
	if ((a->flags & VIR_DOMAIN_START_VALIDATE) && domain_schema_validate(a->xml) < 0)
		return -1;
	def = domain_def_parse_string(a->xml, domains_parse_opts());
	if (!def)
		return -1;
	obj = domain_add_transient(def, "virDomainCreateXML");
	if (!obj)
		return -1;
	rc = start_obj(conn, obj, a->flags);
	if (rc < 0)
		domain_remove_transient(obj);
	domain_job_end(obj);
	if (rc == 0) {
		pr_info("domain '%s' created (transient)", obj->def->name);
		wire_domain_make(obj, &r->dom);
	}
	domain_obj_unref(obj);
	return rc;
}

int drv_domain_create(struct rpc_conn *conn, void *args, void *ret)
{
	remote_domain_args *a = args;

	return start(conn, &a->dom, 0, NULL);
}

int drv_domain_create_with_flags(struct rpc_conn *conn, void *args, void *ret)
{
	remote_domain_flags_args *a = args;
	remote_domain_ret *r = ret;

	return start(conn, &a->dom, a->flags, &r->dom);
}

static int destroy(const remote_nonnull_domain *dom, bool graceful)
{
	struct domain_obj *obj = wire_domain_get(dom);
	int rc = -1;

	if (!obj)
		return -1;
	if (domain_job_begin(obj, "virDomainDestroy") == 0) {
		rc = process_destroy(obj, graceful);
		domain_job_end(obj);
	}
	domain_obj_unref(obj);
	return rc;
}

int drv_domain_destroy(struct rpc_conn *conn, void *args, void *ret)
{
	return destroy(&((remote_domain_args *)args)->dom, false);
}

int drv_domain_destroy_flags(struct rpc_conn *conn, void *args, void *ret)
{
	remote_domain_flags_args *a = args;

	if (api_check_flags(a->flags, VIR_DOMAIN_DESTROY_GRACEFUL, "virDomainDestroyFlags") < 0)
		return -1;
	return destroy(&a->dom, a->flags & VIR_DOMAIN_DESTROY_GRACEFUL);
}

/* Runs COMMAND on the running domain under its job; then, on success and
 * unless STATE < 0, the domain's state becomes STATE/REASON with the event
 * EVENT/DETAIL. */
static int vm_command(const remote_nonnull_domain *dom, const char *api,
		      int (*command)(const char *path), int state, int reason, int event, int detail)
{
	struct domain_obj *obj = wire_domain_get(dom);
	g_autofree char *path = NULL;
	int rc = -1;

	if (!obj)
		return -1;
	if (domain_job_begin(obj, api) < 0)
		goto out;
	path = process_api_path(obj);
	if (path && state >= 0 && obj->state == state) {
		/* As libvirt: suspending a paused domain does nothing;
		 * resuming a running one is an error. */
		if (state == VIR_DOMAIN_PAUSED)
			rc = 0;
		else
			drv_error_report(VIR_ERR_OPERATION_INVALID, "domain is not paused");
	} else if (path && command(path) == 0) {
		g_mutex_lock(&obj->lock);
		/* Unless kvmm ended meanwhile: shut off is the newer state. */
		if (state >= 0 && obj->run)
			domain_set_state(obj, state, reason, event, detail);
		g_mutex_unlock(&obj->lock);
		rc = 0;
	}
	domain_job_end(obj);
out:
	domain_obj_unref(obj);
	return rc;
}

int drv_domain_shutdown(struct rpc_conn *conn, void *args, void *ret)
{
	/* The guest decides: it powers off (an event and shut off, reason
	 * shutdown, follow when kvmm exits) or ignores the button. */
	return vm_command(&((remote_domain_args *)args)->dom, "virDomainShutdown", monitor_powerdown,
			  -1, 0, -1, 0);
}

int drv_domain_shutdown_flags(struct rpc_conn *conn, void *args, void *ret)
{
	remote_domain_flags_args *a = args;

	/* The ACPI power button is the one way kvmm has; DEFAULT picks it. */
	if (api_check_flags(a->flags, VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN, "virDomainShutdownFlags") < 0)
		return -1;
	return vm_command(&a->dom, "virDomainShutdown", monitor_powerdown, -1, 0, -1, 0);
}

int drv_domain_suspend(struct rpc_conn *conn, void *args, void *ret)
{
	struct domain_obj *obj = wire_domain_get(&((remote_domain_args *)args)->dom);
	bool handled;
	int rc;

	if (!obj)
		return -1;
	/* A live migration holds the job lock; it pauses the guest itself
	 * (virsh migrate --timeout). */
	rc = job_suspend(obj, &handled);
	domain_obj_unref(obj);
	if (handled)
		return rc;
	return vm_command(&((remote_domain_args *)args)->dom, "virDomainSuspend", monitor_pause,
			  VIR_DOMAIN_PAUSED, VIR_DOMAIN_PAUSED_USER,
			  VIR_DOMAIN_EVENT_SUSPENDED, VIR_DOMAIN_EVENT_SUSPENDED_PAUSED);
}

int drv_domain_resume(struct rpc_conn *conn, void *args, void *ret)
{
	return vm_command(&((remote_domain_args *)args)->dom, "virDomainResume", monitor_resume,
			  VIR_DOMAIN_RUNNING, VIR_DOMAIN_RUNNING_UNPAUSED,
			  VIR_DOMAIN_EVENT_RESUMED, VIR_DOMAIN_EVENT_RESUMED_UNPAUSED);
}

int drv_domain_reboot(struct rpc_conn *conn, void *args, void *ret)
{
	remote_domain_flags_args *a = args;

	/* The ACPI power button is kvmm's one way (DEFAULT picks it); the
	 * guest shuts down and kvmm starts it again, same process and id. */
	if (api_check_flags(a->flags, VIR_DOMAIN_REBOOT_ACPI_POWER_BTN, "virDomainReboot") < 0)
		return -1;
	return vm_command(&a->dom, "virDomainReboot", monitor_reboot, -1, 0, -1, 0);
}

int drv_domain_reset(struct rpc_conn *conn, void *args, void *ret)
{
	remote_domain_flags_args *a = args;

	if (api_check_flags(a->flags, 0, "virDomainReset") < 0)
		return -1;
	return vm_command(&a->dom, "virDomainReset", monitor_reset, -1, 0, -1, 0);
}
