/* Long-running domain jobs; see job.h. */
#include <string.h>

#include <libvirt/libvirt.h>

#include "domain.h"
#include "error.h"
#include "job.h"

#define VIR_FROM_THIS VIR_FROM_DOMAIN

/* OBJ's jobs (obj->jobs, made on first use), under obj->lock. */
struct domain_jobs {
	bool active;
	int operation;
	gint64 started;			/* monotonic, us */
	bool aborted;
	job_abort_fn abort_fn;
	void *abort_opaque;
	job_suspend_fn suspend_fn;
	void *suspend_opaque;
	unsigned aborting;		/* abort or suspend hooks running: job_end
					 * and clearing a hook wait them out */
	GCond abort_done;
	bool has_data;
	uint64_t processed, total;
	bool has_migration;
	struct job_migration mig;
	bool detached;			/* post-copy: runs on without the domain's
					 * job lock (job_detach) */
	bool has_completed;		/* the last finished job's stats below */
	struct job_stats completed;
};

/* libvirt's names of its async jobs, for "operation aborted: save: ..." */
static const char *op_name(int op)
{
	switch (op) {
	case VIR_DOMAIN_JOB_OPERATION_SAVE:
		return "save";
	case VIR_DOMAIN_JOB_OPERATION_RESTORE:
		return "restore";
	case VIR_DOMAIN_JOB_OPERATION_MIGRATION_OUT:
		return "migration out job";
	case VIR_DOMAIN_JOB_OPERATION_MIGRATION_IN:
		return "migration in job";
	case VIR_DOMAIN_JOB_OPERATION_SNAPSHOT:
		return "snapshot";
	case VIR_DOMAIN_JOB_OPERATION_DUMP:
		return "dump";
	default:
		return "job";
	}
}

static struct domain_jobs *jobs_locked(struct domain_obj *obj)
{
	if (!obj->jobs) {
		obj->jobs = g_new0(struct domain_jobs, 1);
		g_cond_init(&obj->jobs->abort_done);
	}
	return obj->jobs;
}

void job_free(struct domain_jobs *jobs)
{
	if (!jobs)
		return;
	g_cond_clear(&jobs->abort_done);
	g_free(jobs);
}

void job_begin_held(struct domain_obj *obj, int operation)
{
	struct domain_jobs *j;

	g_mutex_lock(&obj->lock);
	j = jobs_locked(obj);
	j->active = true;
	j->operation = operation;
	j->started = g_get_monotonic_time();
	j->aborted = false;
	j->abort_fn = NULL;
	j->suspend_fn = NULL;
	j->has_data = false;
	j->processed = j->total = 0;
	j->has_migration = false;
	j->detached = false;
	g_mutex_unlock(&obj->lock);
}

int job_begin(struct domain_obj *obj, const char *api, int operation)
{
	if (domain_job_begin(obj, api) < 0)
		return -1;
	job_begin_held(obj, operation);
	return 0;
}

void job_set_abort(struct domain_obj *obj, job_abort_fn fn, void *opaque)
{
	struct domain_jobs *j;

	g_mutex_lock(&obj->lock);
	j = jobs_locked(obj);
	/* Clearing the hook waits for one running: its opaque may be about
	 * to go away. */
	while (!fn && j->aborting)
		g_cond_wait(&j->abort_done, &obj->lock);
	j->abort_fn = fn;
	j->abort_opaque = opaque;
	g_mutex_unlock(&obj->lock);
}

void job_set_suspend(struct domain_obj *obj, job_suspend_fn fn, void *opaque)
{
	struct domain_jobs *j;

	g_mutex_lock(&obj->lock);
	j = jobs_locked(obj);
	while (!fn && j->aborting)
		g_cond_wait(&j->abort_done, &obj->lock);
	j->suspend_fn = fn;
	j->suspend_opaque = opaque;
	g_mutex_unlock(&obj->lock);
}

int job_suspend(struct domain_obj *obj, bool *handled)
{
	struct domain_jobs *j;
	job_suspend_fn fn;
	void *opaque;
	int rc;

	*handled = false;
	g_mutex_lock(&obj->lock);
	j = obj->jobs;
	if (!j || !j->active || !j->suspend_fn) {
		g_mutex_unlock(&obj->lock);
		return 0;
	}
	fn = j->suspend_fn;
	opaque = j->suspend_opaque;
	j->aborting++;
	g_mutex_unlock(&obj->lock);
	rc = fn(opaque);
	g_mutex_lock(&obj->lock);
	if (--j->aborting == 0)
		g_cond_broadcast(&j->abort_done);
	g_mutex_unlock(&obj->lock);
	*handled = true;
	return rc;
}

void job_progress(struct domain_obj *obj, uint64_t processed, uint64_t total)
{
	struct domain_jobs *j;

	g_mutex_lock(&obj->lock);
	j = jobs_locked(obj);
	j->has_data = true;
	j->processed = processed;
	j->total = MAX(total, processed);
	g_mutex_unlock(&obj->lock);
}

void job_migration_progress(struct domain_obj *obj, const struct job_migration *m)
{
	struct domain_jobs *j;

	g_mutex_lock(&obj->lock);
	j = jobs_locked(obj);
	j->has_migration = true;
	j->mig = *m;
	g_mutex_unlock(&obj->lock);
}

bool job_aborted(struct domain_obj *obj)
{
	bool r;

	g_mutex_lock(&obj->lock);
	r = obj->jobs && obj->jobs->aborted;
	g_mutex_unlock(&obj->lock);
	return r;
}

static void fill_locked(struct domain_jobs *j, struct job_stats *st)
{
	memset(st, 0, sizeof(*st));
	st->type = VIR_DOMAIN_JOB_UNBOUNDED;
	st->operation = j->operation;
	st->elapsed_ms = (g_get_monotonic_time() - j->started) / 1000;
	st->has_data = j->has_data;
	st->data_total = j->total;
	st->data_processed = j->processed;
	st->data_remaining = j->total - j->processed;
	st->has_migration = j->has_migration;
	st->mig = j->mig;
}

/* The job's end (obj->lock held): its stats kept as the completed
 * job's; true if it was cancelled. */
static bool finish_locked(struct domain_obj *obj, struct domain_jobs *j, int rc, int *op)
{
	bool cancelled;

	while (j->aborting)
		g_cond_wait(&j->abort_done, &obj->lock);
	cancelled = rc < 0 && j->aborted;
	*op = j->operation;
	fill_locked(j, &j->completed);
	j->completed.type = rc == 0 ? VIR_DOMAIN_JOB_COMPLETED
			  : cancelled ? VIR_DOMAIN_JOB_CANCELLED : VIR_DOMAIN_JOB_FAILED;
	/* A finished job's data is all there was. */
	if (rc == 0 && j->has_data) {
		j->completed.data_total = j->processed;
		j->completed.data_remaining = 0;
	}
	j->has_completed = true;
	j->active = false;
	j->detached = false;
	j->abort_fn = NULL;
	j->suspend_fn = NULL;
	return cancelled;
}

void job_end(struct domain_obj *obj, int rc)
{
	bool cancelled;
	int op;

	g_mutex_lock(&obj->lock);
	cancelled = finish_locked(obj, jobs_locked(obj), rc, &op);
	g_mutex_unlock(&obj->lock);
	if (cancelled) {
		/* What failed because of the abort is not the client's news. */
		drv_error_reset();
		drv_error_report(VIR_ERR_OPERATION_ABORTED, "%s: canceled by client", op_name(op));
	}
	domain_job_end(obj);
}

void job_detach(struct domain_obj *obj)
{
	struct domain_jobs *j;

	g_mutex_lock(&obj->lock);
	j = jobs_locked(obj);
	while (j->aborting)
		g_cond_wait(&j->abort_done, &obj->lock);
	j->detached = true;
	j->abort_fn = NULL;
	j->suspend_fn = NULL;
	g_mutex_unlock(&obj->lock);
	domain_job_end(obj);
}

bool job_detached(struct domain_obj *obj)
{
	bool r;

	g_mutex_lock(&obj->lock);
	r = obj->jobs && obj->jobs->active && obj->jobs->detached;
	g_mutex_unlock(&obj->lock);
	return r;
}

void job_end_detached(struct domain_obj *obj, int rc)
{
	int op;

	g_mutex_lock(&obj->lock);
	if (obj->jobs && obj->jobs->active && obj->jobs->detached)
		finish_locked(obj, obj->jobs, rc, &op);
	g_mutex_unlock(&obj->lock);
}

void job_get_stats(struct domain_obj *obj, bool completed, bool keep, struct job_stats *st)
{
	struct domain_jobs *j;

	memset(st, 0, sizeof(*st));
	st->type = VIR_DOMAIN_JOB_NONE;
	g_mutex_lock(&obj->lock);
	j = obj->jobs;
	if (j && completed && j->has_completed) {
		*st = j->completed;
		if (!keep)
			j->has_completed = false;
	} else if (j && !completed && j->active) {
		fill_locked(j, st);
	}
	g_mutex_unlock(&obj->lock);
}

int job_abort(struct domain_obj *obj)
{
	struct domain_jobs *j;
	job_abort_fn fn;
	void *opaque;

	g_mutex_lock(&obj->lock);
	j = obj->jobs;
	if (!j || !j->active) {
		g_mutex_unlock(&obj->lock);
		drv_error_report(VIR_ERR_OPERATION_INVALID, "no job is active on the domain");
		return -1;
	}
	if (j->detached) {
		/* As libvirt's without VIR_DOMAIN_ABORT_JOB_POSTCOPY: the
		 * guest runs on the destination. */
		g_mutex_unlock(&obj->lock);
		drv_error_report(VIR_ERR_OPERATION_INVALID, "cannot abort migration in post-copy mode");
		return -1;
	}
	if (!j->abort_fn) {
		int op = j->operation;

		g_mutex_unlock(&obj->lock);
		drv_error_report(VIR_ERR_OPERATION_INVALID, "cannot abort %s%s", op_name(op),
				 op == VIR_DOMAIN_JOB_OPERATION_RESTORE
					 ? "; use virDomainDestroy instead" : " at this point");
		return -1;
	}
	j->aborted = true;
	fn = j->abort_fn;
	opaque = j->abort_opaque;
	j->aborting++;
	g_mutex_unlock(&obj->lock);
	fn(opaque);
	g_mutex_lock(&obj->lock);
	if (--j->aborting == 0)
		g_cond_broadcast(&j->abort_done);
	g_mutex_unlock(&obj->lock);
	return 0;
}
