/* virDomainGetJobInfo / GetJobStats / AbortJob: a domain's long job
 * (domain/job.h) watched and cancelled.  None takes the domain's job
 * lock, which the job itself holds. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libvirt/libvirt.h>

#include "domain_api.h"
#include "domain/job.h"
#include "error.h"
#include "handlers.h"
#include "remote_job_xdr.h"

#define VIR_FROM_THIS VIR_FROM_DOMAIN

/* The running job's (or with COMPLETED the last one's) stats of DOM: 0,
 * or -1 after reporting (as libvirt: no running job of a domain that is
 * not running is an error, a forgotten completed job is type NONE). */
static int stats(const remote_nonnull_domain *dom, bool completed, bool keep,
		 struct job_stats *st)
{
	struct domain_obj *obj = wire_domain_get(dom);
	bool active;

	if (!obj)
		return -1;
	job_get_stats(obj, completed, keep, st);
	g_mutex_lock(&obj->lock);
	active = obj->id >= 0;
	g_mutex_unlock(&obj->lock);
	domain_obj_unref(obj);
	if (!completed && st->type == VIR_DOMAIN_JOB_NONE && !active) {
		drv_error_report(VIR_ERR_OPERATION_INVALID, "domain is not running");
		return -1;
	}
	/* As libvirt's QEMU driver: the source has the figures of a
	 * migration under way; the destination has them once it is done
	 * (COMPLETED). */
	if (!completed && st->type == VIR_DOMAIN_JOB_UNBOUNDED &&
	    st->operation == VIR_DOMAIN_JOB_OPERATION_MIGRATION_IN) {
		drv_error_report(VIR_ERR_OPERATION_UNSUPPORTED,
				 "migration statistics are available only on the source host");
		return -1;
	}
	return 0;
}

int drv_domain_get_job_info(struct rpc_conn *conn, void *args, void *ret)
{
	remote_domain_get_job_info_args *a = args;
	remote_domain_get_job_info_ret *r = ret;
	struct job_stats st;

	if (stats(&a->dom, false, false, &st) < 0)
		return -1;
	r->type = st.type;
	r->timeElapsed = st.elapsed_ms;
	r->dataTotal = st.data_total;
	r->dataProcessed = st.data_processed;
	r->dataRemaining = st.data_remaining;
	return 0;
}

/* Typed parameters, malloc'ed as xdr_free expects. */
static remote_typed_param *param(remote_domain_get_job_stats_ret *r, const char *field, int type)
{
	remote_typed_param *t = &r->params.params_val[r->params.params_len++];

	t->field = strdup(field);
	if (!t->field)
		abort();
	t->value.type = type;
	return t;
}

#define ULL(r, f, v) (param((r), (f), VIR_TYPED_PARAM_ULLONG)->value.remote_typed_param_value_u.ul = (v))

int drv_domain_get_job_stats(struct rpc_conn *conn, void *args, void *ret)
{
	remote_domain_get_job_stats_args *a = args;
	remote_domain_get_job_stats_ret *r = ret;
	struct job_stats st;

	if (api_check_flags(a->flags, VIR_DOMAIN_JOB_STATS_COMPLETED |
				      VIR_DOMAIN_JOB_STATS_KEEP_COMPLETED, "virDomainGetJobStats") < 0)
		return -1;
	if (stats(&a->dom, a->flags & VIR_DOMAIN_JOB_STATS_COMPLETED,
		  a->flags & VIR_DOMAIN_JOB_STATS_KEEP_COMPLETED, &st) < 0)
		return -1;
	r->type = st.type;
	if (st.type == VIR_DOMAIN_JOB_NONE)
		return 0;
	r->params.params_val = calloc(24, sizeof(remote_typed_param));
	if (!r->params.params_val)
		abort();
	param(r, VIR_DOMAIN_JOB_OPERATION, VIR_TYPED_PARAM_INT)->value.remote_typed_param_value_u.i =
		st.operation;
	ULL(r, VIR_DOMAIN_JOB_TIME_ELAPSED, st.elapsed_ms);
	if (st.has_data) {
		ULL(r, VIR_DOMAIN_JOB_DATA_TOTAL, st.data_total);
		ULL(r, VIR_DOMAIN_JOB_DATA_PROCESSED, st.data_processed);
		ULL(r, VIR_DOMAIN_JOB_DATA_REMAINING, st.data_remaining);
	}
	if (st.has_data && st.has_migration) {
		/* All a migration sends is memory (the disks are shared); its
		 * total is the guest's RAM, as libvirt's, the data's what is
		 * sent plus what is left. */
		ULL(r, VIR_DOMAIN_JOB_MEMORY_TOTAL, st.mig.ram);
		ULL(r, VIR_DOMAIN_JOB_MEMORY_PROCESSED, st.data_processed);
		ULL(r, VIR_DOMAIN_JOB_MEMORY_REMAINING, st.data_remaining);
		ULL(r, VIR_DOMAIN_JOB_MEMORY_ITERATION, st.mig.iteration);
		ULL(r, VIR_DOMAIN_JOB_MEMORY_POSTCOPY_REQS, st.mig.postcopy_requests);
		ULL(r, VIR_DOMAIN_JOB_MEMORY_DIRTY_RATE, st.mig.dirty_rate);
		ULL(r, VIR_DOMAIN_JOB_MEMORY_PAGE_SIZE, st.mig.page_size);
		ULL(r, VIR_DOMAIN_JOB_MEMORY_BPS, st.mig.bps);
		ULL(r, VIR_DOMAIN_JOB_SETUP_TIME, st.mig.setup_ms);
		param(r, VIR_DOMAIN_JOB_AUTO_CONVERGE_THROTTLE, VIR_TYPED_PARAM_INT)
			->value.remote_typed_param_value_u.i = (int)st.mig.throttle_pct;
		if (st.type == VIR_DOMAIN_JOB_UNBOUNDED)
			ULL(r, VIR_DOMAIN_JOB_DOWNTIME, st.mig.expected_downtime_ms);
		else if (st.type == VIR_DOMAIN_JOB_COMPLETED)
			ULL(r, VIR_DOMAIN_JOB_DOWNTIME, st.mig.downtime_ms);
	}
	if (st.type != VIR_DOMAIN_JOB_UNBOUNDED)
		param(r, VIR_DOMAIN_JOB_SUCCESS, VIR_TYPED_PARAM_BOOLEAN)
			->value.remote_typed_param_value_u.b = st.type == VIR_DOMAIN_JOB_COMPLETED;
	return 0;
}

static int abort_job(const remote_nonnull_domain *dom)
{
	struct domain_obj *obj = wire_domain_get(dom);
	int rc;

	if (!obj)
		return -1;
	rc = job_abort(obj);
	domain_obj_unref(obj);
	return rc;
}

int drv_domain_abort_job(struct rpc_conn *conn, void *args, void *ret)
{
	return abort_job(&((remote_domain_abort_job_args *)args)->dom);
}

int drv_domain_abort_job_flags(struct rpc_conn *conn, void *args, void *ret)
{
	remote_domain_abort_job_flags_args *a = args;

	/* POSTCOPY (libvirt pauses a post-copy with it): kvmm's post-copy
	 * cannot be paused, the flag is refused as unknown. */
	if (api_check_flags(a->flags, 0, "virDomainAbortJobFlags") < 0)
		return -1;
	return abort_job(&a->dom);
}
