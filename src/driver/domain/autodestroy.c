/* Domains destroyed with the connection that started them; see
 * autodestroy.h. */
#include <glib.h>

#include "autodestroy.h"
#include "error.h"
#include "log.h"
#include "kvmm/process.h"

struct entry {
	struct rpc_conn *conn;
	struct domain_obj *obj;		/* a reference */
	int id;				/* the run it was started as */
};

/* Lock order: this lock, then a domain's lock. */
static GMutex lock;
static GPtrArray *entries;		/* struct entry * */
static bool stopping;

static void entry_free(struct entry *e)
{
	domain_obj_unref(e->obj);
	g_free(e);
}

/* Whether E's run is still the one it was registered for. */
static bool entry_current(struct entry *e)
{
	bool cur;

	g_mutex_lock(&e->obj->lock);
	cur = e->obj->id == e->id;
	g_mutex_unlock(&e->obj->lock);
	return cur;
}

int autodestroy_add(struct rpc_conn *conn, struct domain_obj *obj)
{
	struct entry *e;
	int rc = 0;

	g_mutex_lock(&lock);
	if (!entries)
		entries = g_ptr_array_new_with_free_func((GDestroyNotify)entry_free);
	/* Runs that ended otherwise (destroy, shutdown) are forgotten here,
	 * so a long-lived connection does not grow the list. */
	for (guint i = 0; i < entries->len;) {
		if (!entry_current(g_ptr_array_index(entries, i)))
			g_ptr_array_remove_index_fast(entries, i);
		else
			i++;
	}
	/* conn->gone is set before autodestroy_conn_gone takes the lock:
	 * either it is seen here, or that call finds the entry. */
	if (conn->gone) {
		rc = -1;
	} else {
		e = g_new0(struct entry, 1);
		e->conn = conn;
		e->obj = domain_obj_ref(obj);
		g_mutex_lock(&obj->lock);
		e->id = obj->id;
		g_mutex_unlock(&obj->lock);
		g_ptr_array_add(entries, e);
	}
	g_mutex_unlock(&lock);
	return rc;
}

static gpointer destroy_thread(gpointer data)
{
	GPtrArray *todo = data;

	for (guint i = 0; i < todo->len; i++) {
		struct entry *e = g_ptr_array_index(todo, i);

		if (domain_job_begin(e->obj, "autodestroy") < 0) {
			pr_warn("autodestroy of domain '%s': %s", e->obj->def->name,
				drv_error_last() ? drv_error_last()->message : "?");
			drv_error_reset();
			continue;
		}
		if (entry_current(e)) {
			pr_info("domain '%s': its connection closed; destroying it (autodestroy)",
				e->obj->def->name);
			if (process_destroy(e->obj, false) < 0)
				pr_warn("autodestroy of domain '%s': %s", e->obj->def->name,
					drv_error_last() ? drv_error_last()->message : "?");
			drv_error_reset();
		}
		domain_job_end(e->obj);
	}
	g_ptr_array_unref(todo);
	return NULL;
}

void autodestroy_conn_gone(struct rpc_conn *conn)
{
	GPtrArray *todo = NULL;

	g_mutex_lock(&lock);
	for (guint i = 0; entries && i < entries->len;) {
		struct entry *e = g_ptr_array_index(entries, i);

		if (e->conn != conn) {
			i++;
			continue;
		}
		if (!todo)
			todo = g_ptr_array_new_with_free_func((GDestroyNotify)entry_free);
		g_ptr_array_add(todo, g_ptr_array_steal_index(entries, i));
	}
	if (todo && stopping) {
		g_ptr_array_unref(todo);
		todo = NULL;
	}
	g_mutex_unlock(&lock);
	/* Off the main loop: a destroy waits for the main loop to see kvmm
	 * exit. */
	if (todo)
		g_thread_unref(g_thread_new("autodestroy", destroy_thread, todo));
}

void autodestroy_stop(void)
{
	g_mutex_lock(&lock);
	stopping = true;
	g_mutex_unlock(&lock);
}
