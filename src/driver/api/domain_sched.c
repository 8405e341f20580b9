/* The tunables a domain's cgroup carries (kvmm/cgroup.h): virsh schedinfo
 * (virDomainGetSchedulerType, virDomainGet/SetSchedulerParameters[Flags]:
 * cpu_shares, vcpu_period, vcpu_quota) and virsh memtune
 * (virDomainGet/SetMemoryParameters: hard_limit, soft_limit,
 * swap_hard_limit).  Live changes write the run's cgroup, config ones the
 * definition, as libvirt's QEMU driver does; the parameters it has and
 * kvmm does not (emulator_*, global_*, iothread_*, min_guarantee) are
 * refused by name. */
#include <stdlib.h>
#include <string.h>

#include <glib.h>
#include <libvirt/libvirt.h>

#include "domain_api.h"
#include "error.h"
#include "handlers.h"
#include "log.h"
#include "kvmm/cgroup.h"
#include "kvmm/process.h"
#include "remote_sched_xdr.h"

#define VIR_FROM_THIS VIR_FROM_DOMAIN

#define QUOTA_MAX 17592186044415LL	/* libvirt's bound of a CFS quota */

enum { P_SHARES, P_PERIOD, P_QUOTA, P_HARD = 0, P_SOFT, P_SWAP };

struct param_def {
	const char *name;
	int type;
};

static const struct param_def sched_params[] = {
	[P_SHARES] = { VIR_DOMAIN_SCHEDULER_CPU_SHARES, VIR_TYPED_PARAM_ULLONG },
	[P_PERIOD] = { VIR_DOMAIN_SCHEDULER_VCPU_PERIOD, VIR_TYPED_PARAM_ULLONG },
	[P_QUOTA] = { VIR_DOMAIN_SCHEDULER_VCPU_QUOTA, VIR_TYPED_PARAM_LLONG },
};

static const struct param_def mem_params[] = {
	[P_HARD] = { VIR_DOMAIN_MEMORY_HARD_LIMIT, VIR_TYPED_PARAM_ULLONG },
	[P_SOFT] = { VIR_DOMAIN_MEMORY_SOFT_LIMIT, VIR_TYPED_PARAM_ULLONG },
	[P_SWAP] = { VIR_DOMAIN_MEMORY_SWAP_HARD_LIMIT, VIR_TYPED_PARAM_ULLONG },
};

static const char *const type_names[] = {
	[VIR_TYPED_PARAM_INT] = "int", [VIR_TYPED_PARAM_UINT] = "uint",
	[VIR_TYPED_PARAM_LLONG] = "llong", [VIR_TYPED_PARAM_ULLONG] = "ullong",
	[VIR_TYPED_PARAM_DOUBLE] = "double", [VIR_TYPED_PARAM_BOOLEAN] = "boolean",
	[VIR_TYPED_PARAM_STRING] = "string",
};

/* CLIENT: the parameters of a set call, checked as libvirt's
 * virTypedParamsValidate does; VALS[i] gets the value of DEFS[i], SEEN[i]
 * whether it was given.  -1 after reporting. */
static int take_params(const remote_typed_param *p, unsigned n, const struct param_def *defs,
		       size_t ndefs, long long *vals, bool *seen)
{
	for (unsigned i = 0; i < n; i++) {
		size_t k;
		int type = p[i].value.type;

		for (k = 0; k < ndefs && strcmp(p[i].field, defs[k].name); k++)
			;
		if (k == ndefs) {
			drv_error_report(VIR_ERR_ARGUMENT_UNSUPPORTED, "parameter '%s' not supported",
					 p[i].field);
			return -1;
		}
		if (seen[k]) {
			drv_error_report(VIR_ERR_INVALID_ARG, "parameter '%s' occurs multiple times",
					 p[i].field);
			return -1;
		}
		if (type != defs[k].type) {
			drv_error_report(VIR_ERR_INVALID_ARG, "invalid type '%s' for parameter '%s', expected '%s'",
					 type >= 1 && type <= VIR_TYPED_PARAM_STRING ? type_names[type] : "?",
					 p[i].field, type_names[defs[k].type]);
			return -1;
		}
		seen[k] = true;
		vals[k] = type == VIR_TYPED_PARAM_LLONG ? p[i].value.remote_typed_param_value_u.l :
							  (long long)p[i].value.remote_typed_param_value_u.ul;
	}
	return 0;
}

/* An answer's parameters, malloc'ed as xdr_free expects. */
static void put_param(remote_typed_param *t, const struct param_def *d, long long v)
{
	if (!(t->field = strdup(d->name)))
		g_error("out of memory");
	t->value.type = d->type;
	if (d->type == VIR_TYPED_PARAM_LLONG)
		t->value.remote_typed_param_value_u.l = v;
	else
		t->value.remote_typed_param_value_u.ul = (unsigned long long)v;
}

static remote_typed_param *new_params(unsigned n)
{
	remote_typed_param *p = calloc(n ? n : 1, sizeof(*p));

	if (!p)
		g_error("out of memory");
	return p;
}

/* LIVE and CONFIG from FLAGS as libvirt resolves them (CURRENT: live
 * while it runs); a get may name only one.  Under OBJ's lock. */
static int impact(struct domain_obj *obj, unsigned flags, bool get, bool *live, bool *config)
{
	if (get && (flags & VIR_DOMAIN_AFFECT_LIVE) && (flags & VIR_DOMAIN_AFFECT_CONFIG)) {
		drv_error_report(VIR_ERR_INVALID_ARG,
				 "Flags 'VIR_DOMAIN_AFFECT_LIVE' and 'VIR_DOMAIN_AFFECT_CONFIG' are mutually exclusive");
		return -1;
	}
	return api_affect(obj, flags, live, config, NULL);
}

/* ---- schedinfo ---- */

int drv_domain_get_scheduler_type(struct rpc_conn *conn, void *args, void *ret)
{
	remote_domain_get_scheduler_type_args *a = args;
	remote_domain_get_scheduler_type_ret *r = ret;
	struct domain_obj *obj = wire_domain_get(&a->dom);

	if (!obj)
		return -1;
	domain_obj_unref(obj);
	if (!(r->type = strdup("posix")))
		g_error("out of memory");
	r->nparams = G_N_ELEMENTS(sched_params);
	return 0;
}

static int get_sched(const remote_nonnull_domain *dom, int nparams, unsigned flags,
		     remote_typed_param **out, u_int *nout, const char *api)
{
	struct domain_obj *obj;
	long long v[G_N_ELEMENTS(sched_params)];
	bool live, config;
	unsigned n;

	if (api_check_flags(flags, VIR_DOMAIN_AFFECT_LIVE | VIR_DOMAIN_AFFECT_CONFIG |
			    VIR_TYPED_PARAM_STRING_OKAY, api) < 0)
		return -1;
	/* CLIENT: nparams is only how many the caller can take. */
	if (nparams < 0 || nparams > REMOTE_DOMAIN_SCHEDULER_PARAMETERS_MAX) {
		drv_error_report(VIR_ERR_RPC, "nparams %d is out of range", nparams);
		return -1;
	}
	if (!(obj = wire_domain_get(dom)))
		return -1;
	g_mutex_lock(&obj->lock);
	if (impact(obj, flags, true, &live, &config) < 0) {
		g_mutex_unlock(&obj->lock);
		domain_obj_unref(obj);
		return -1;
	}
	{
		const struct domain_def *def = live ? obj->def : domain_persistent_def(obj);

		v[P_SHARES] = def->cpu_shares;
		v[P_PERIOD] = def->cpu_period;
		v[P_QUOTA] = def->cpu_quota;
	}
	g_mutex_unlock(&obj->lock);
	domain_obj_unref(obj);
	/* Live: what the cgroup holds, the kernel's defaults where nothing
	 * was set (the definition keeps only what was). */
	if (live) {
		if (!v[P_SHARES])
			v[P_SHARES] = cgroup_v2() ? 100 : 1024;
		if (!v[P_PERIOD])
			v[P_PERIOD] = 100000;
		if (!v[P_QUOTA])
			v[P_QUOTA] = -1;
	}
	n = MIN((unsigned)nparams, G_N_ELEMENTS(sched_params));
	*out = new_params(n);
	for (unsigned i = 0; i < n; i++)
		put_param(&(*out)[i], &sched_params[i], v[i]);
	*nout = n;
	return 0;
}

int drv_domain_get_scheduler_parameters(struct rpc_conn *conn, void *args, void *ret)
{
	remote_domain_get_scheduler_parameters_args *a = args;
	remote_domain_get_scheduler_parameters_ret *r = ret;

	return get_sched(&a->dom, a->nparams, 0, &r->params.params_val, &r->params.params_len,
			 "virDomainGetSchedulerParameters");
}

int drv_domain_get_scheduler_parameters_flags(struct rpc_conn *conn, void *args, void *ret)
{
	remote_domain_get_scheduler_parameters_flags_args *a = args;
	remote_domain_get_scheduler_parameters_flags_ret *r = ret;

	return get_sched(&a->dom, a->nparams, a->flags, &r->params.params_val,
			 &r->params.params_len, "virDomainGetSchedulerParametersFlags");
}

/* Applies VALS (those SEEN) to DEF's cputune or memtune. */
static void set_sched_fields(struct domain_def *def, const long long *v, const bool *seen)
{
	if (seen[P_SHARES])
		def->cpu_shares = v[P_SHARES];
	if (seen[P_PERIOD])
		def->cpu_period = v[P_PERIOD];
	if (seen[P_QUOTA])
		def->cpu_quota = v[P_QUOTA] < 0 ? -1 : v[P_QUOTA];
}

static void set_mem_fields(struct domain_def *def, const long long *v, const bool *seen)
{
	unsigned long long *f[] = { &def->mem_hard_limit_kib, &def->mem_soft_limit_kib,
				    &def->mem_swap_hard_limit_kib };

	for (size_t i = 0; i < G_N_ELEMENTS(f); i++)
		if (seen[i])
			*f[i] = (unsigned long long)v[i] >= VIR_DOMAIN_MEMORY_PARAM_UNLIMITED ? 0 : v[i];
}

static int check_memtune(const struct domain_def *def)
{
	if (def->mem_hard_limit_kib && def->mem_swap_hard_limit_kib &&
	    def->mem_hard_limit_kib > def->mem_swap_hard_limit_kib) {
		drv_error_report(VIR_ERR_INVALID_ARG, "%s",
				 "memory hard_limit tuning value must be less than or equal to swap_hard_limit");
		return -1;
	}
	return 0;
}

/* A set call: the values checked, then the live cgroup (the live
 * definition follows it only when the write succeeded), then the next
 * start's definition.  MEMORY: memtune, else cputune. */
static int set_tunables(const remote_nonnull_domain *dom, const remote_typed_param *p, unsigned n,
			unsigned flags, bool memory, const char *api)
{
	const struct param_def *defs = memory ? mem_params : sched_params;
	size_t ndefs = memory ? G_N_ELEMENTS(mem_params) : G_N_ELEMENTS(sched_params);
	void (*set_fields)(struct domain_def *, const long long *, const bool *) =
		memory ? set_mem_fields : set_sched_fields;
	long long v[3] = { 0 };
	bool seen[3] = { 0 }, live, config;
	struct domain_obj *obj;
	int rc = -1;

	if (api_check_flags(flags, VIR_DOMAIN_AFFECT_LIVE | VIR_DOMAIN_AFFECT_CONFIG, api) < 0 ||
	    take_params(p, n, defs, ndefs, v, seen) < 0)
		return -1;
	if (!memory) {
		/* CLIENT: libvirt's ranges. */
		if (seen[P_PERIOD] && (v[P_PERIOD] < 1000 || v[P_PERIOD] > 1000000)) {
			drv_error_report(VIR_ERR_INVALID_ARG,
					 "value of 'vcpu_period' is out of range [1000, 1000000]");
			return -1;
		}
		if (seen[P_QUOTA] && ((v[P_QUOTA] >= 0 && v[P_QUOTA] < 1000) || v[P_QUOTA] > QUOTA_MAX)) {
			drv_error_report(VIR_ERR_INVALID_ARG,
					 "value of 'vcpu_quota' is out of range [1000, 17592186044415]");
			return -1;
		}
		if (seen[P_SHARES] && (v[P_SHARES] < 2 || v[P_SHARES] > 262144)) {
			drv_error_report(VIR_ERR_INVALID_ARG,
					 "value of 'cpu_shares' is out of range [2, 262144]");
			return -1;
		}
	}
	if (!(obj = wire_domain_get(dom)))
		return -1;
	if (domain_job_begin(obj, api) < 0)
		goto out;
	g_mutex_lock(&obj->lock);
	rc = impact(obj, flags, false, &live, &config);
	g_mutex_unlock(&obj->lock);
	if (rc < 0 || (rc = domain_split_next_def(obj, live, config)) < 0)
		goto end;
	rc = -1;
	g_mutex_lock(&obj->lock);
	if (live) {
		/* A copy first: the definition changes only with the cgroup. */
		struct domain_def want = *obj->def;
		const char *path = process_cgroup_locked(obj);

		set_fields(&want, v, seen);
		if ((memory && check_memtune(&want) < 0) ||
		    (memory ? cgroup_set_memory(path, &want) : cgroup_set_cpu(path, &want)) < 0) {
			g_mutex_unlock(&obj->lock);
			goto end;
		}
		set_fields(obj->def, v, seen);
		process_save_status_locked(obj);	/* a restarted daemon shows them */
	}
	if (config) {
		struct domain_def *def = domain_persistent_def(obj);
		struct domain_def want = *def;

		set_fields(&want, v, seen);
		if (memory && check_memtune(&want) < 0) {
			g_mutex_unlock(&obj->lock);
			goto end;
		}
		set_fields(def, v, seen);
	}
	g_mutex_unlock(&obj->lock);
	rc = config ? domain_save(obj) : 0;
	if (rc == 0)
		pr_info("domain '%s': %s changed (%s%s)", obj->def->name, memory ? "memtune" : "cputune",
			live ? "live" : "", config ? (live ? ", config" : "config") : "");
end:
	domain_job_end(obj);
out:
	domain_obj_unref(obj);
	return rc;
}

int drv_domain_set_scheduler_parameters(struct rpc_conn *conn, void *args, void *ret)
{
	remote_domain_set_scheduler_parameters_args *a = args;

	return set_tunables(&a->dom, a->params.params_val, a->params.params_len, 0, false,
			    "virDomainSetSchedulerParameters");
}

int drv_domain_set_scheduler_parameters_flags(struct rpc_conn *conn, void *args, void *ret)
{
	remote_domain_set_scheduler_parameters_flags_args *a = args;

	return set_tunables(&a->dom, a->params.params_val, a->params.params_len, a->flags, false,
			    "virDomainSetSchedulerParametersFlags");
}

/* ---- memtune ---- */

int drv_domain_set_memory_parameters(struct rpc_conn *conn, void *args, void *ret)
{
	remote_domain_set_memory_parameters_args *a = args;

	return set_tunables(&a->dom, a->params.params_val, a->params.params_len, a->flags, true,
			    "virDomainSetMemoryParameters");
}

int drv_domain_get_memory_parameters(struct rpc_conn *conn, void *args, void *ret)
{
	remote_domain_get_memory_parameters_args *a = args;
	remote_domain_get_memory_parameters_ret *r = ret;
	struct domain_obj *obj;
	long long v[G_N_ELEMENTS(mem_params)];
	bool live, config;
	unsigned n;

	if (api_check_flags(a->flags, VIR_DOMAIN_AFFECT_LIVE | VIR_DOMAIN_AFFECT_CONFIG |
			    VIR_TYPED_PARAM_STRING_OKAY, "virDomainGetMemoryParameters") < 0)
		return -1;
	/* CLIENT: nparams is only how many the caller can take. */
	if (a->nparams < 0 || a->nparams > REMOTE_DOMAIN_MEMORY_PARAMETERS_MAX) {
		drv_error_report(VIR_ERR_RPC, "nparams %d is out of range", a->nparams);
		return -1;
	}
	if (!(obj = wire_domain_get(&a->dom)))
		return -1;
	g_mutex_lock(&obj->lock);
	if (impact(obj, a->flags, true, &live, &config) < 0) {
		g_mutex_unlock(&obj->lock);
		domain_obj_unref(obj);
		return -1;
	}
	{
		const struct domain_def *def = live ? obj->def : domain_persistent_def(obj);
		const unsigned long long f[] = { def->mem_hard_limit_kib, def->mem_soft_limit_kib,
						 def->mem_swap_hard_limit_kib };

		for (size_t i = 0; i < G_N_ELEMENTS(f); i++)
			v[i] = f[i] ? (long long)f[i] : (long long)VIR_DOMAIN_MEMORY_PARAM_UNLIMITED;
	}
	g_mutex_unlock(&obj->lock);
	domain_obj_unref(obj);
	if (a->nparams == 0) {		/* the caller asks how many */
		r->nparams = G_N_ELEMENTS(mem_params);
		return 0;
	}
	n = MIN((unsigned)a->nparams, G_N_ELEMENTS(mem_params));
	r->params.params_val = new_params(n);
	for (unsigned i = 0; i < n; i++)
		put_param(&r->params.params_val[i], &mem_params[i], v[i]);
	r->params.params_len = n;
	r->nparams = n;
	return 0;
}
