/* Long-running domain jobs that clients watch and abort: save, managed
 * save and restore today (migration and snapshots later), as libvirt's
 * "async jobs" -- what virDomainGetJobInfo/GetJobStats report and
 * virDomainAbortJob cancels (api/domain_job.c).
 *
 * One per domain at a time.  A job holds the domain's job lock
 * (domain_job_begin) from job_begin to job_end, so every other change to
 * the domain waits for it (then times out as libvirt does: "cannot
 * acquire state change lock"); reading its progress and aborting it take
 * only obj->lock, never the job lock, so they answer while it runs.
 *
 * Use:
 *     if (job_begin(obj, "virDomainSave", VIR_DOMAIN_JOB_OPERATION_SAVE) < 0)
 *             return -1;
 *     job_set_abort(obj, my_abort, ctx);      -- while it can be cancelled
 *     job_progress(obj, done, total);          -- as often as it likes
 *     ... job_set_abort(obj, NULL, NULL);
 *     job_end(obj, rc);                        -- also records the stats
 *
 * The last finished job's statistics stay for `domjobinfo --completed`
 * (VIR_DOMAIN_JOB_STATS_COMPLETED), until read without KEEP_COMPLETED. */
#ifndef KVMM_DRV_JOB_H
#define KVMM_DRV_JOB_H

#include <stdbool.h>
#include <stdint.h>

struct domain_obj;
struct domain_jobs;

/* A job's cancel hook: called from the aborting client's worker, with no
 * lock held; it must only make the job fail soon (the job then ends
 * itself, its end reporting VIR_ERR_OPERATION_ABORTED). */
typedef void (*job_abort_fn)(void *opaque);

/* Takes OBJ's job lock for API (domain_job_begin: may time out) and
 * starts a job of OPERATION (VIR_DOMAIN_JOB_OPERATION_*): 0, or -1
 * after reporting. */
int job_begin(struct domain_obj *obj, const char *api, int operation);
/* As job_begin, for a caller already holding the job lock (a transient
 * domain just added holds it from birth). */
void job_begin_held(struct domain_obj *obj, int operation);
/* The hook virDomainAbortJob calls, or NULL: not abortable (now). */
void job_set_abort(struct domain_obj *obj, job_abort_fn fn, void *opaque);
/* The hook virDomainSuspend calls during the job instead of waiting for
 * its lock (a live migration pauses the guest so that it converges:
 * virsh migrate --timeout), or NULL.  Same rules as the abort hook. */
typedef int (*job_suspend_fn)(void *opaque);
void job_set_suspend(struct domain_obj *obj, job_suspend_fn fn, void *opaque);
/* virDomainSuspend during a job: *HANDLED when the job's hook ran (its
 * result returned: 0, or -1 after reporting); else nothing done. */
int job_suspend(struct domain_obj *obj, bool *handled);
/* Data done and expected so far, in bytes (TOTAL grows to PROCESSED if
 * the estimate was short). */
void job_progress(struct domain_obj *obj, uint64_t processed, uint64_t total);
/* Whether an abort was asked for since job_begin. */
bool job_aborted(struct domain_obj *obj);
/* Ends the job: RC 0 completed, else failed -- or cancelled if aborted,
 * when the error reported is replaced by libvirt's
 * "operation aborted: JOB: canceled by client".  Releases the job lock. */
void job_end(struct domain_obj *obj, int rc);
/* A migration's post-copy: the job (begun by job_begin) runs on, its
 * figures still given, but the domain's job lock is released (Finish
 * and Confirm take it) and it cannot be aborted; job_end_detached ends
 * it (nothing if no detached job runs: a new job replaced it). */
void job_detach(struct domain_obj *obj);
bool job_detached(struct domain_obj *obj);
void job_end_detached(struct domain_obj *obj, int rc);

/* A migration's figures beyond the data counts (libvirt's
 * VIR_DOMAIN_JOB_MEMORY_ITERATION, ..._DIRTY_RATE, ...). */
struct job_migration {
	uint64_t ram;			/* the guest's RAM, bytes */
	uint64_t iteration;		/* memory rounds so far */
	uint64_t dirty_rate;		/* pages/s dirtied in the last round */
	uint64_t page_size;
	uint64_t bps;			/* bytes/s sent on average */
	uint64_t expected_downtime_ms;	/* while it runs */
	uint64_t downtime_ms;		/* once done */
	uint64_t setup_ms;
	uint64_t throttle_pct;		/* auto-converge's vCPU throttle */
	uint64_t postcopy_requests;	/* pages the destination asked for */
};
/* The running migration's figures (kept with its stats when it ends). */
void job_migration_progress(struct domain_obj *obj, const struct job_migration *m);

/* A job's statistics, as GetJobInfo/GetJobStats give them. */
struct job_stats {
	int type;		/* VIR_DOMAIN_JOB_NONE/UNBOUNDED/COMPLETED/FAILED/CANCELLED */
	int operation;		/* VIR_DOMAIN_JOB_OPERATION_* */
	uint64_t elapsed_ms;
	bool has_data;		/* the three below are known */
	uint64_t data_total, data_processed, data_remaining;
	bool has_migration;	/* a migration's: data is its memory, and */
	struct job_migration mig;
};

/* The running job's (type NONE when none), or with COMPLETED the last
 * finished one's (forgotten unless KEEP). */
void job_get_stats(struct domain_obj *obj, bool completed, bool keep, struct job_stats *st);
/* Asks the running job to stop: 0, or -1 after reporting (no job, or
 * one that cannot be cancelled). */
int job_abort(struct domain_obj *obj);

/* For domain.c: frees what OBJ's jobs kept. */
void job_free(struct domain_jobs *jobs);

#endif
