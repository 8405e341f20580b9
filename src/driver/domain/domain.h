/* Domain objects: every domain the daemon knows, indexed by name, UUID and
 * (when running) id; their persistent definitions on disk (through
 * domain_persist.c); and a per-domain job lock so that one change at a time
 * happens to a domain.
 *
 * Locking: one lock guards the index and the name and UUID checks of
 * define/undefine/rename; it is never held across file I/O (a slow disk
 * must not stall every lookup), the domain's job covers that.  Each
 * object has its own lock for its fields.  Objects are reference counted: a lookup returns a
 * reference the caller drops with domain_obj_unref(), so a domain
 * undefined meanwhile stays valid memory until then. */
#ifndef KVMM_DRV_DOMAIN_H
#define KVMM_DRV_DOMAIN_H

#include <stdbool.h>

#include <glib.h>

#include "conf/domain_conf.h"

struct domain_run;
struct domain_jobs;
struct rpc_stream;

struct domain_obj {
	gint refs;
	GMutex lock;			/* the fields below */
	struct domain_def *def;		/* the definition: the live one while it
					 * runs (pty paths, taps, id), else the
					 * persistent one */
	struct domain_def *newdef;	/* while it runs, a persistent definition
					 * defined since it started: the next
					 * start's (libvirt's newDef); NULL when
					 * the run's definition is also the
					 * persistent one */
	struct domain_def *retired;	/* the live definition newdef replaced when
					 * the last run ended; kept until the next
					 * such swap or the end of the object, as
					 * some readers of a running domain's def
					 * (statistics) do not take the lock */
	int id;				/* -1 when not running */
	int state, reason;		/* virDomainState and its reason */
	bool autostart;
	bool removed;			/* undefined: no longer in the index */
	bool persistent;		/* has a definition on disk (else transient:
					 * gone from the index when it stops) */
	bool defining;			/* (list lock) new, file being written:
					 * indexed but hidden from lookups */

	struct domain_run *run;		/* the kvmm process while running (process.c) */
	struct rpc_stream *console;	/* the client attached to the console (console.c) */

	/* The job: one API changing the domain at a time. */
	GCond job_cond;
	const char *job;		/* API name of the holder, NULL when free */
	struct domain_jobs *jobs;	/* long jobs' progress and stats (job.c) */
};

/* Loads every definition under CONFIG_DIR (created if missing); unreadable
 * or invalid files are logged and skipped, never fatal.  Returns -1 only
 * when CONFIG_DIR itself cannot be used. */
int domains_init(const char *config_dir, const char *emulator);
void domains_shutdown(void);
const struct domain_parse_opts *domains_parse_opts(void);
/* When only one of a running domain's two definitions is to change (LIVE
 * xor CONFIG) and it has just one, the next start gets a copy of its own
 * first (libvirt's newDef).  0, or -1 after reporting. */
int domain_split_next_def(struct domain_obj *obj, bool live, bool config);
/* The same, for a run's status XML (its live definition). */
const struct domain_parse_opts *domains_status_parse_opts(void);

/* The one way a domain's state changes, OBJ's lock held: STATE and
 * REASON (virDomainState and its reason); while it runs, its status file
 * rewritten, so a restarted daemon sees what clients saw; and unless
 * EVENT < 0, the lifecycle event EVENT/DETAIL queued -- under the lock, so
 * a domain's events leave in the order its state changed.  A run that
 * ends clears obj->run (and its status file) first. */
void domain_set_state(struct domain_obj *obj, int state, int reason, int event, int detail);

/* Lookups: a new reference, or NULL (nothing reported). */
struct domain_obj *domain_find_by_uuid(const unsigned char uuid[16]);
struct domain_obj *domain_find_by_name(const char *name);
struct domain_obj *domain_find_by_id(int id);
/* By the UUID a client sent with a domain; reports VIR_ERR_NO_DOMAIN
 * naming NAME as libvirt does. */
struct domain_obj *domain_get(const unsigned char uuid[16], const char *name);

struct domain_obj *domain_obj_ref(struct domain_obj *obj);
void domain_obj_unref(struct domain_obj *obj);

/* A snapshot of every domain, each referenced; free with
 * g_ptr_array_unref (the array drops the references). */
GPtrArray *domain_list(void);

/* Defines DEF (taken in every case): a new domain, or a new definition
 * for the domain with the same name and UUID, written to disk before it
 * is visible.  *UPDATED says which (as libvirt's event detail: a
 * transient domain that becomes persistent is added, not updated).  A
 * running domain keeps its live definition: DEF waits in obj->newdef
 * for the next start, as in libvirt.  Returns a reference, or NULL
 * after reporting. */
struct domain_obj *domain_define(struct domain_def *def, bool *updated);

/* Removes OBJ's definition and autostart link, then the object from the
 * index -- or, while it runs, makes it transient (it leaves the index
 * when it stops).  The caller holds the job. */
int domain_undefine(struct domain_obj *obj);

/* A transient domain for DEF (taken in every case), indexed with its job
 * held by the caller (API names the job), nothing written to disk.  A
 * reference, or NULL after reporting (name or uuid taken). */
struct domain_obj *domain_add_transient(struct domain_def *def, const char *api);

/* A transient OBJ that stopped (or never started): out of the index. */
void domain_remove_transient(struct domain_obj *obj);

/* Saves OBJ's persistent definition (after an edit); the caller holds
 * the job and OBJ's lock is not held. */
int domain_save(struct domain_obj *obj);

/* The definition the next start uses (what `dumpxml --inactive` shows):
 * obj->newdef when one waits, else obj->def.  OBJ's lock held. */
struct domain_def *domain_persistent_def(struct domain_obj *obj);

/* OBJ's run ended (obj->lock held, obj->run already cleared): a
 * definition defined while it ran becomes the definition. */
void domain_run_ended_locked(struct domain_obj *obj);

int domain_set_autostart(struct domain_obj *obj, bool autostart);

/* Renames an inactive domain: the new file is written before the old one
 * goes, the autostart link follows.  The caller holds the job. */
int domain_rename(struct domain_obj *obj, const char *new_name);

/* The job lock.  Begin waits up to 30 s for the current holder (libvirt's
 * wait), then fails with VIR_ERR_OPERATION_TIMEOUT; it also fails if the
 * domain was undefined while waiting. */
int domain_job_begin(struct domain_obj *obj, const char *api);
void domain_job_end(struct domain_obj *obj);

#endif
