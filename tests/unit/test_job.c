/* The daemon's long-job bookkeeping (src/driver/domain/job.c) on a
 * transient domain object: no kvmm, no RPC. */
#include <glib.h>
#include <glib/gstdio.h>
#include <libvirt/libvirt.h>

#include "domain/domain.h"
#include "domain/job.h"
#include "error.h"
#include "unit.h"

static char *dir;

/* The definitions' directory domains_init made (it holds autostart/). */
__attribute__((destructor)) static void remove_dir(void)
{
	if (dir) {
		g_autofree char *autostart = g_build_filename(dir, "autostart", NULL);

		g_rmdir(autostart);
		g_rmdir(dir);
	}
}

static struct domain_obj *new_obj(void)
{
	struct domain_def *def;

	if (!dir) {
		dir = g_dir_make_tmp("kvmm-job-XXXXXX", NULL);
		if (!dir || domains_init(dir, "/bin/true") < 0)
			return NULL;
	}
	def = domain_def_parse_string("<domain type='kvm'><name>j</name><memory>65536</memory>"
				      "<os><type>hvm</type><kernel>/k</kernel></os></domain>",
				      domains_parse_opts());
	if (!def)
		return NULL;
	/* Held from birth, as a restore's transient domain. */
	return domain_add_transient(def, "test");
}

static void drop(struct domain_obj *obj)
{
	domain_remove_transient(obj);
	domain_obj_unref(obj);
}

static int calls;

static void count_abort(void *opaque)
{
	calls += *(int *)opaque;
}

UNIT_TEST(progress_and_completed_stats)
{
	struct domain_obj *obj = new_obj();
	struct job_stats st;

	CHECK(obj);
	if (!obj)
		return;
	job_get_stats(obj, false, false, &st);
	CHECK(st.type == VIR_DOMAIN_JOB_NONE);
	job_begin_held(obj, VIR_DOMAIN_JOB_OPERATION_SAVE);
	job_get_stats(obj, false, false, &st);
	CHECK(st.type == VIR_DOMAIN_JOB_UNBOUNDED && st.operation == VIR_DOMAIN_JOB_OPERATION_SAVE);
	CHECK(!st.has_data);
	job_progress(obj, 100, 1000);
	job_get_stats(obj, false, false, &st);
	CHECK(st.has_data && st.data_processed == 100 && st.data_total == 1000 &&
	      st.data_remaining == 900);
	/* An estimate that was short grows to what was done. */
	job_progress(obj, 1500, 1000);
	job_get_stats(obj, false, false, &st);
	CHECK(st.data_total == 1500 && st.data_remaining == 0);
	job_end(obj, 0);
	CHECK(!obj->job);	/* the domain's job lock let go too */
	job_get_stats(obj, false, false, &st);
	CHECK(st.type == VIR_DOMAIN_JOB_NONE);
	/* KEEP leaves it for the next reader; without, it is gone. */
	job_get_stats(obj, true, true, &st);
	CHECK(st.type == VIR_DOMAIN_JOB_COMPLETED && st.data_processed == 1500);
	job_get_stats(obj, true, false, &st);
	CHECK(st.type == VIR_DOMAIN_JOB_COMPLETED);
	job_get_stats(obj, true, false, &st);
	CHECK(st.type == VIR_DOMAIN_JOB_NONE);
	drop(obj);
}

UNIT_TEST(abort_runs_the_hook_and_the_end_says_cancelled)
{
	struct domain_obj *obj = new_obj();
	struct job_stats st;
	int one = 1;

	CHECK(obj);
	if (!obj)
		return;
	/* No job (the hold new_obj's object was born with let go): libvirt's words. */
	domain_job_end(obj);
	drv_error_reset();
	CHECK(job_abort(obj) < 0);
	CHECK(drv_error_last() && drv_error_last()->code == VIR_ERR_OPERATION_INVALID &&
	      strstr(drv_error_last()->message, "no job is active on the domain"));
	drv_error_reset();
	CHECK(job_begin(obj, "test", VIR_DOMAIN_JOB_OPERATION_SAVE) == 0);
	/* Not (yet) abortable. */
	CHECK(job_abort(obj) < 0 && drv_error_last()->code == VIR_ERR_OPERATION_INVALID);
	CHECK(!job_aborted(obj));
	drv_error_reset();
	calls = 0;
	job_set_abort(obj, count_abort, &one);
	CHECK(job_abort(obj) == 0 && calls == 1 && job_aborted(obj));
	job_set_abort(obj, NULL, NULL);
	/* The failure the abort caused is reported as the abort. */
	drv_error_report_full(VIR_FROM_DOMAIN, VIR_ERR_OPERATION_FAILED, "broken pipe");
	job_end(obj, -1);
	CHECK(drv_error_last() && drv_error_last()->code == VIR_ERR_OPERATION_ABORTED &&
	      !strcmp(drv_error_last()->message, "save: canceled by client"));
	drv_error_reset();
	job_get_stats(obj, true, false, &st);
	CHECK(st.type == VIR_DOMAIN_JOB_CANCELLED);
	/* A failure without an abort is a failure, its error kept. */
	CHECK(job_begin(obj, "test", VIR_DOMAIN_JOB_OPERATION_RESTORE) == 0);
	CHECK(!job_aborted(obj));
	CHECK(job_abort(obj) < 0 && strstr(drv_error_last()->message, "cannot abort restore"));
	drv_error_reset();
	drv_error_report_full(VIR_FROM_DOMAIN, VIR_ERR_OPERATION_FAILED, "truncated");
	job_end(obj, -1);
	CHECK(!strcmp(drv_error_last()->message, "truncated"));
	drv_error_reset();
	job_get_stats(obj, true, false, &st);
	CHECK(st.type == VIR_DOMAIN_JOB_FAILED && st.operation == VIR_DOMAIN_JOB_OPERATION_RESTORE);
	drop(obj);
}
