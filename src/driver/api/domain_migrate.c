/* Migration, libvirt's protocol v3 with typed parameters, both sides.
 *
 * Source: Begin (the domain marked as migrating, its XML and our cookie),
 * Perform (a TCP connection to the destination's uri, the VM's state sent
 * over it by transfer_state(), the source left paused), Confirm (stopped
 * as migrated and, with UNDEFINE_SOURCE, undefined; or, cancelled,
 * resumed).  Destination: Prepare (the XML checked, a transient domain
 * holding its job, a port of 49152-49215 listening, a thread accepting the
 * source's connection and starting kvmm --incoming fd:N --paused on it),
 * Finish (waits for that kvmm, resumes it unless PAUSED, makes the domain
 * persistent with PERSIST_DEST; cancelled: everything removed).
 * Peer-to-peer: the source daemon drives the destination's steps itself
 * through libvirt's client library.  OFFLINE moves the definition only.
 *
 * The transfer, transfer_state(), is kvmm's live pre-copy (`migrate`,
 * watched with query-migrate as the source's migration-out job) with
 * --live, else stop-and-copy: kvmm's `save` to the connection (the VM
 * paused first, as libvirt's non-live migration).  With VIR_MIGRATE_TLS
 * the daemons terminate TLS on that connection and kvmm gets a
 * socketpair's end instead (migrate_tls.h).
 *
 * Cookies are ours (libvirt leaves their format to the driver): lines of
 * KEY=VALUE after a first line "virtkvmmd-migration 1" -- name, uuid, the
 * sending host's name and uuid, and the disk paths the XML needs. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <poll.h>
#include <string.h>
#include <sys/eventfd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include "domain_api.h"
#include "error.h"
#include "handlers.h"
#include "host.h"
#include "log.h"
#include "migrate_tls.h"
#include "domain/events.h"
#include "domain/job.h"
#include "kvmm/monitor.h"
#include "kvmm/process.h"
#include "rpc/domain_wire.h"
#include "remote_migrate_xdr.h"

#define VIR_FROM_THIS VIR_FROM_DOMAIN

/* What is accepted; everything else is refused by name or as unknown. */
#define MIGRATE_FLAGS_OK (VIR_MIGRATE_LIVE | VIR_MIGRATE_AUTO_CONVERGE | \
			  VIR_MIGRATE_PEER2PEER | VIR_MIGRATE_PERSIST_DEST | \
			  VIR_MIGRATE_UNDEFINE_SOURCE | VIR_MIGRATE_PAUSED | \
			  VIR_MIGRATE_CHANGE_PROTECTION | VIR_MIGRATE_UNSAFE | \
			  VIR_MIGRATE_OFFLINE | VIR_MIGRATE_ABORT_ON_ERROR | \
			  VIR_MIGRATE_TLS | VIR_MIGRATE_POSTCOPY)
/* libvirt's default port range for migration connections. */
#define PORT_MIN 49152
#define PORT_MAX 49215
/* How long a prepared destination waits for the source's connection. */
#define ACCEPT_TIMEOUT_MS 60000
/* ... and the source to connect to it. */
#define CONNECT_TIMEOUT_MS 30000
/* A mark of Begin that no Perform followed (the client went away) stops
 * blocking new migrations after this long. */
#define BEGIN_STALE_US (120 * G_USEC_PER_SEC)
/* ... and the destination to take the state (kvmm's save deadline). */
#define TRANSFER_TIMEOUT_MS 300000
/* A migration connection whose peer stopped answering (a link cut, a
 * host gone) fails after this long on either side: data unacknowledged
 * (the source's writes) or keepalive probes unanswered (an idle side,
 * such as the destination waiting for the next round).  TCP alone would
 * wait some 15 minutes, or for ever while only reading. */
#define LINK_TIMEOUT_S 30
#define LINK_KEEPALIVE_S 5
#define COOKIE_MAGIC "virtkvmmd-migration 1"
/* libvirt's defaults (QEMU driver): unlimited speed, 300 ms downtime. */
#define SPEED_DEFAULT 8796093022207ULL
#define DOWNTIME_DEFAULT 300ULL

/* --- flags and parameters ---------------------------------------------- */

static int check_flags(unsigned flags, const char *api)
{
	static const struct { unsigned flag; int code; const char *msg; } refused[] = {
		{ VIR_MIGRATE_TUNNELLED, VIR_ERR_ARGUMENT_UNSUPPORTED,
		  "tunnelled migration is not supported by virtkvmmd" },
		{ VIR_MIGRATE_NON_SHARED_DISK, VIR_ERR_ARGUMENT_UNSUPPORTED,
		  "migration of non-shared storage (--copy-storage-all) is not supported: disks must be on storage both hosts share" },
		{ VIR_MIGRATE_NON_SHARED_INC, VIR_ERR_ARGUMENT_UNSUPPORTED,
		  "migration of non-shared storage (--copy-storage-inc) is not supported: disks must be on storage both hosts share" },
		{ VIR_MIGRATE_POSTCOPY_RESUME, VIR_ERR_ARGUMENT_UNSUPPORTED,
		  "resuming a failed post-copy migration is not supported: the guest is lost with it" },
		{ VIR_MIGRATE_COMPRESSED, VIR_ERR_ARGUMENT_UNSUPPORTED,
		  "compressed migration is not supported by this kvmm" },
		{ VIR_MIGRATE_RDMA_PIN_ALL, VIR_ERR_ARGUMENT_UNSUPPORTED,
		  "RDMA migration is not supported by this kvmm" },
		{ VIR_MIGRATE_PARALLEL, VIR_ERR_ARGUMENT_UNSUPPORTED,
		  "parallel migration connections are not supported by this kvmm" },
	};

	for (size_t i = 0; i < G_N_ELEMENTS(refused); i++) {
		if (flags & refused[i].flag) {
			drv_error_report(refused[i].code, "%s", refused[i].msg);
			return -1;
		}
	}
	if (api_check_flags(flags, MIGRATE_FLAGS_OK, api) < 0 ||
	    migtls_check_forced(flags & VIR_MIGRATE_TLS) < 0)
		return -1;
	if ((flags & VIR_MIGRATE_POSTCOPY) &&
	    (!(flags & VIR_MIGRATE_LIVE) || (flags & (VIR_MIGRATE_PAUSED | VIR_MIGRATE_OFFLINE)))) {
		drv_error_report(VIR_ERR_ARGUMENT_UNSUPPORTED,
				 "post-copy migration is not supported with non-live or paused migration");
		return -1;
	}
	if ((flags & VIR_MIGRATE_OFFLINE) && !(flags & VIR_MIGRATE_PERSIST_DEST)) {
		drv_error_report(VIR_ERR_ARGUMENT_UNSUPPORTED,
				 "offline migration requires --persistent (VIR_MIGRATE_PERSIST_DEST)");
		return -1;
	}
	return 0;
}

struct mig_params {
	const char *uri;	/* migrate_uri */
	const char *dname;	/* destination_name */
	const char *dxml;	/* destination_xml */
	const char *pxml;	/* persistent_xml */
	const char *listen;	/* listen_address */
	unsigned long long bandwidth;	/* MiB/s, 0: not given */
};

/* CLIENT: the typed parameters, each known name with its type, once;
 * their strings stay the arguments'. */
static int parse_params(const remote_typed_param *p, unsigned n, struct mig_params *mp)
{
	static const struct { const char *name; int type; size_t off; } known[] = {
		{ VIR_MIGRATE_PARAM_URI, VIR_TYPED_PARAM_STRING, offsetof(struct mig_params, uri) },
		{ VIR_MIGRATE_PARAM_DEST_NAME, VIR_TYPED_PARAM_STRING, offsetof(struct mig_params, dname) },
		{ VIR_MIGRATE_PARAM_DEST_XML, VIR_TYPED_PARAM_STRING, offsetof(struct mig_params, dxml) },
		{ VIR_MIGRATE_PARAM_PERSIST_XML, VIR_TYPED_PARAM_STRING, offsetof(struct mig_params, pxml) },
		{ VIR_MIGRATE_PARAM_LISTEN_ADDRESS, VIR_TYPED_PARAM_STRING,
		  offsetof(struct mig_params, listen) },
		{ VIR_MIGRATE_PARAM_BANDWIDTH, VIR_TYPED_PARAM_ULLONG,
		  offsetof(struct mig_params, bandwidth) },
	};

	memset(mp, 0, sizeof(*mp));
	for (unsigned i = 0; i < n; i++) {
		size_t k;

		for (k = 0; k < G_N_ELEMENTS(known); k++)
			if (!strcmp(p[i].field, known[k].name))
				break;
		if (k == G_N_ELEMENTS(known)) {
			drv_error_report(VIR_ERR_ARGUMENT_UNSUPPORTED,
					 "migration parameter '%s' is not supported by virtkvmmd",
					 p[i].field);
			return -1;
		}
		if (p[i].value.type != known[k].type) {
			drv_error_report(VIR_ERR_INVALID_ARG,
					 "invalid type for migration parameter '%s'", p[i].field);
			return -1;
		}
		if (known[k].type == VIR_TYPED_PARAM_STRING) {
			const char **slot = (const char **)((char *)mp + known[k].off);

			if (*slot) {
				drv_error_report(VIR_ERR_INVALID_ARG,
						 "migration parameter '%s' given twice", p[i].field);
				return -1;
			}
			*slot = p[i].value.remote_typed_param_value_u.s;
		} else {
			mp->bandwidth = p[i].value.remote_typed_param_value_u.ul;
		}
	}
	return 0;
}

/* --- cookies -------------------------------------------------------------- */

static char *cookie_make(const struct domain_def *def)
{
	g_autoptr(GString) c = g_string_new(COOKIE_MAGIC "\n");
	const char *hu = host_uuid(NULL);
	char uuid[37];

	domain_uuid_format(def->uuid, uuid);
	g_string_append_printf(c, "name=%s\nuuid=%s\nhostname=%s\nhostuuid=%s\n", def->name, uuid,
			       g_get_host_name(), hu ? hu : "");
	for (size_t i = 0; i < def->ndisks; i++)
		if (def->disks[i].source)
			g_string_append_printf(c, "disk=%s\n", def->disks[i].source);
	return g_string_free(g_steal_pointer(&c), FALSE);
}

/* The source's cookie after its transfer: the finished job's figures
 * (the destination's --completed job shows them, as libvirt's). */
static char *cookie_make_stats(struct domain_obj *obj)
{
	g_autoptr(GString) c = NULL;
	struct job_stats st;
	char *base;

	g_mutex_lock(&obj->lock);
	base = cookie_make(obj->def);
	g_mutex_unlock(&obj->lock);
	job_get_stats(obj, true, true, &st);
	if (st.type != VIR_DOMAIN_JOB_COMPLETED || !st.has_data)
		return base;
	c = g_string_new(base);
	g_free(base);
	g_string_append_printf(c, "data=%" G_GUINT64_FORMAT "\n", st.data_processed);
	if (st.has_migration)
		g_string_append_printf(c, "mig=%" G_GUINT64_FORMAT " %" G_GUINT64_FORMAT " %"
				       G_GUINT64_FORMAT " %" G_GUINT64_FORMAT " %" G_GUINT64_FORMAT
				       " %" G_GUINT64_FORMAT " %" G_GUINT64_FORMAT " %"
				       G_GUINT64_FORMAT "\n",
				       st.mig.ram, st.mig.iteration, st.mig.dirty_rate, st.mig.page_size,
				       st.mig.bps, st.mig.downtime_ms, st.mig.setup_ms,
				       st.mig.throttle_pct);
	return g_string_free(g_steal_pointer(&c), FALSE);
}

static void cookie_put(char *cookie, u_int *len, char **val)
{
	/* xdr_free frees it with free(); GLib's allocator is malloc. */
	*len = cookie ? strlen(cookie) : 0;
	*val = cookie;
}

/* CLIENT: a cookie is any bytes.  Ours, or empty; the value of KEY (a
 * new string) or NULL. */
static char *cookie_get(const char *data, u_int len, const char *key)
{
	g_autofree char *text = NULL;
	g_auto(GStrv) lines = NULL;
	size_t klen = strlen(key);

	if (!len || memchr(data, '\0', len))
		return NULL;
	text = g_strndup(data, len);
	lines = g_strsplit(text, "\n", -1);
	if (!lines[0] || strcmp(lines[0], COOKIE_MAGIC) != 0)
		return NULL;
	for (size_t i = 1; lines[i]; i++)
		if (!strncmp(lines[i], key, klen) && lines[i][klen] == '=')
			return g_strdup(lines[i] + klen + 1);
	return NULL;
}

/* CLIENT: the source's figures from its cookie (cookie_make_stats) into
 * the incoming job of OBJ; anything malformed is ignored (they are only
 * shown). */
static void cookie_job_stats(struct domain_obj *obj, const char *data, u_int len)
{
	g_autofree char *d = cookie_get(data, len, "data");
	g_autofree char *m = cookie_get(data, len, "mig");
	struct job_migration jm = { 0 };
	guint64 processed;
	char *end;

	if (!d)
		return;
	processed = g_ascii_strtoull(d, &end, 10);
	if (end == d || *end)
		return;
	job_progress(obj, processed, processed);
	if (m && sscanf(m, "%" G_GUINT64_FORMAT " %" G_GUINT64_FORMAT " %" G_GUINT64_FORMAT " %"
			G_GUINT64_FORMAT " %" G_GUINT64_FORMAT " %" G_GUINT64_FORMAT " %"
			G_GUINT64_FORMAT " %" G_GUINT64_FORMAT,
			&jm.ram, &jm.iteration, &jm.dirty_rate, &jm.page_size, &jm.bps,
			&jm.downtime_ms, &jm.setup_ms, &jm.throttle_pct) == 8 &&
	    jm.throttle_pct <= 100)
		job_migration_progress(obj, &jm);
}

static int cookie_check(const char *data, u_int len)
{
	if (!len)
		return 0;
	if (memchr(data, '\0', len) || len < strlen(COOKIE_MAGIC) ||
	    memcmp(data, COOKIE_MAGIC, strlen(COOKIE_MAGIC)) != 0) {
		drv_error_report(VIR_ERR_INVALID_ARG,
				 "the migration cookie is not virtkvmmd's: is the other side a kvmm host?");
		return -1;
	}
	return 0;
}

/* --- the source's marks ----------------------------------------------------
 * A domain being migrated away carries a mark from Begin to Confirm (or a
 * failed Perform): a second migration of it is refused meanwhile. */

enum out_phase { OUT_BEGUN, OUT_PERFORMING, OUT_PERFORMED };
struct outgoing {
	enum out_phase phase;
	gint64 since;
	bool postcopy_allowed;	/* VIR_MIGRATE_POSTCOPY given */
	bool in_postcopy;	/* switched: the destination runs the guest */
};

static GMutex out_lock;
static GHashTable *out_marks;	/* uuid string -> struct outgoing */

/* HELD: the domain is paused for a migration (a performed one's mark
 * without it is left from a client that went away before Confirm). */
static int mark_begin(const struct domain_def *def, bool held)
{
	char uuid[37];
	struct outgoing *o;

	domain_uuid_format(def->uuid, uuid);
	g_mutex_lock(&out_lock);
	if (!out_marks)
		out_marks = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
	o = g_hash_table_lookup(out_marks, uuid);
	if (o && !(o->phase == OUT_BEGUN && g_get_monotonic_time() - o->since > BEGIN_STALE_US) &&
	    !(o->phase == OUT_PERFORMED && !held)) {
		g_mutex_unlock(&out_lock);
		drv_error_report(VIR_ERR_OPERATION_INVALID,
				 "domain '%s' is already being migrated", def->name);
		return -1;
	}
	o = g_new0(struct outgoing, 1);
	o->phase = OUT_BEGUN;
	o->since = g_get_monotonic_time();
	g_hash_table_replace(out_marks, g_strdup(uuid), o);
	g_mutex_unlock(&out_lock);
	return 0;
}

/* Moves the mark from FROM to TO; -1 (reported) when it is not in FROM. */
static int mark_move(const struct domain_def *def, enum out_phase from, enum out_phase to)
{
	char uuid[37];
	struct outgoing *o;
	int rc = 0;

	domain_uuid_format(def->uuid, uuid);
	g_mutex_lock(&out_lock);
	o = out_marks ? g_hash_table_lookup(out_marks, uuid) : NULL;
	if (!o || o->phase != from) {
		drv_error_report(VIR_ERR_OPERATION_INVALID,
				 "domain '%s' is not in the %s phase of a migration", def->name,
				 from == OUT_BEGUN ? "begin" : from == OUT_PERFORMING ? "perform" : "confirm");
		rc = -1;
	} else {
		o->phase = to;
		o->since = g_get_monotonic_time();
	}
	g_mutex_unlock(&out_lock);
	return rc;
}

/* The mark's post-copy flags: *ALLOWED and *IN (either may be NULL) read,
 * then IN set if SET_IN.  False when there is no mark. */
static bool mark_postcopy(const struct domain_def *def, bool *allowed, bool *in, bool set_in)
{
	char uuid[37];
	struct outgoing *o;

	domain_uuid_format(def->uuid, uuid);
	g_mutex_lock(&out_lock);
	o = out_marks ? g_hash_table_lookup(out_marks, uuid) : NULL;
	if (o) {
		if (set_in)
			o->in_postcopy = true;
		if (allowed)
			*allowed = o->postcopy_allowed;
		if (in)
			*in = o->in_postcopy;
	}
	g_mutex_unlock(&out_lock);
	return o != NULL;
}

static void mark_allow_postcopy(const struct domain_def *def)
{
	char uuid[37];
	struct outgoing *o;

	domain_uuid_format(def->uuid, uuid);
	g_mutex_lock(&out_lock);
	o = out_marks ? g_hash_table_lookup(out_marks, uuid) : NULL;
	if (o)
		o->postcopy_allowed = true;
	g_mutex_unlock(&out_lock);
}

static void mark_clear(const struct domain_def *def)
{
	char uuid[37];

	domain_uuid_format(def->uuid, uuid);
	g_mutex_lock(&out_lock);
	if (out_marks)
		g_hash_table_remove(out_marks, uuid);
	g_mutex_unlock(&out_lock);
}

/* --- the transfer ------------------------------------------------------------ */

static void tunables_get(struct domain_obj *obj, uint64_t *speed, uint64_t *downtime);

/* How often a live migration's progress is read from kvmm. */
#define LIVE_POLL_US (50 * 1000)

/* kvmm's bandwidth for a speed in MiB/s (libvirt's default: no limit). */
static uint64_t live_bandwidth(uint64_t speed)
{
	return speed >= SPEED_DEFAULT ? 0 : speed;
}

/* virDomainAbortJob of a live migration: kvmm's migrate-cancel (the job
 * then sees it cancelled and ends). */
static void live_abort(void *opaque)
{
	const char *path = opaque;

	if (monitor_migrate_cancel(path) < 0) {
		pr_warn("cannot cancel a migration: %s",
			drv_error_last() ? drv_error_last()->message : "?");
		drv_error_reset();
	}
}

/* A live migration's state its hooks share with it. */
struct live_ctx {
	struct domain_obj *obj;
	const char *path;
	gint paused;		/* the guest paused by virDomainSuspend */
	uint64_t iteration;	/* the last round announced */
};

/* virDomainSuspend during a live migration (virsh migrate --timeout):
 * the guest paused, the pre-copy going on until the rest is sent, as
 * libvirt's paused (migration). */
static int live_suspend(void *opaque)
{
	struct live_ctx *c = opaque;

	if (monitor_pause(c->path) < 0)
		return -1;
	g_atomic_int_set(&c->paused, 1);
	process_migrated_paused(c->obj);
	return 0;
}

/* The job's figures from kvmm's query-migrate, and the iteration event
 * for each round begun since the last look (kvmm's `iteration` counts
 * the rounds done; the one after them is under way). */
static void live_progress(struct domain_obj *obj, struct live_ctx *c,
			  const struct kvmm_migrate_info *mi)
{
	struct job_migration m = {
		.ram = mi->total_bytes,
		.iteration = mi->iteration,
		.dirty_rate = mi->dirty_pages_rate,
		.page_size = 4096,
		.setup_ms = mi->setup_ms,
		.downtime_ms = mi->downtime_ms,
		.throttle_pct = mi->cpu_throttle_pct,
		.postcopy_requests = mi->postcopy_requests,
	};
	uint64_t ms = mi->total_ms > mi->setup_ms ? mi->total_ms - mi->setup_ms : 0;

	if (ms)
		m.bps = mi->transferred_bytes * 1000 / ms;
	/* What is left at the speed so far: kvmm switches over once that
	 * fits the maximum downtime. */
	if (m.bps)
		m.expected_downtime_ms = mi->remaining_bytes * 1000 / m.bps;
	job_progress(obj, mi->transferred_bytes, mi->transferred_bytes + mi->remaining_bytes);
	job_migration_progress(obj, &m);
	if (mi->status == KVMM_MIGRATE_ACTIVE)
		while (c->iteration < mi->iteration + 1 && c->iteration < INT_MAX)
			events_migration_iteration(obj, (int)++c->iteration);
}

/* Live pre-copy of OBJ to FD (the job held): kvmm's `migrate`, watched
 * until it completes (the VM then paused by kvmm) or ends otherwise (the
 * VM runs on); migrate-setspeed and migrate-setmaxdowntime given on the
 * way reach kvmm at once. */
static int live_out(struct domain_obj *obj, int fd, uint64_t bandwidth, unsigned flags,
		    bool *postcopy)
{
	g_autofree char *path = process_api_path(obj);
	struct kvmm_migrate_params p;
	struct kvmm_migrate_info mi;
	struct live_ctx ctx = { 0 };
	uint64_t speed, downtime, speed_now, downtime_now;
	int rc = -1;

	if (!path)
		return -1;
	/* The migration's own bandwidth wins over the domain's speed until
	 * migrate-setspeed changes that during it. */
	tunables_get(obj, &speed, &downtime);
	p.max_downtime_ms = MAX(downtime, 1);
	p.bandwidth_mibps = live_bandwidth(bandwidth ? bandwidth : speed);
	p.auto_converge = flags & VIR_MIGRATE_AUTO_CONVERGE;
	if (monitor_migrate(path, fd, &p) < 0)
		return -1;
	ctx.obj = obj;
	ctx.path = path;
	job_set_abort(obj, live_abort, path);
	job_set_suspend(obj, live_suspend, &ctx);
	for (;;) {
		if (monitor_query_migrate(path, &mi) < 0) {
			/* Unknown progress: stop it rather than let it finish unseen. */
			live_abort(path);
			break;
		}
		live_progress(obj, &ctx, &mi);
		if (mi.status == KVMM_MIGRATE_COMPLETED) {
			rc = 0;
			break;
		}
		if (mi.status == KVMM_MIGRATE_POSTCOPY) {
			/* As libvirt's Perform, done at the switch: Finish lets
			 * the destination run, Confirm waits for the last page. */
			*postcopy = true;
			rc = 0;
			break;
		}
		if (mi.status == KVMM_MIGRATE_FAILED) {
			drv_error_report(VIR_ERR_OPERATION_FAILED, "migration failed: %s",
					 mi.error[0] ? mi.error : "kvmm gave no reason");
			break;
		}
		if (mi.status != KVMM_MIGRATE_ACTIVE) {
			/* Cancelled (an abort: job_end says so), or gone. */
			drv_error_report(VIR_ERR_OPERATION_FAILED, "migration: job unexpectedly %s",
					 mi.status == KVMM_MIGRATE_CANCELLED ? "canceled" : "ended");
			break;
		}
		tunables_get(obj, &speed_now, &downtime_now);
		if (speed_now != speed || downtime_now != downtime) {
			if (speed_now != speed)
				p.bandwidth_mibps = live_bandwidth(speed_now);
			p.max_downtime_ms = MAX(downtime_now, 1);
			speed = speed_now;
			downtime = downtime_now;
			if (monitor_migrate_set_params(path, &p) < 0) {
				pr_warn("domain '%s': cannot change the migration's parameters: %s",
					obj->def->name, drv_error_last()->message);
				drv_error_reset();
			}
		}
		g_usleep(LIVE_POLL_US);
	}
	job_set_abort(obj, NULL, NULL);
	job_set_suspend(obj, NULL, NULL);
	if (rc == 0)
		process_migrated_paused(obj);
	if (rc == 0 && *postcopy) {
		mark_postcopy(obj->def, NULL, NULL, true);
		g_mutex_lock(&obj->lock);
		if (obj->run)
			domain_set_state(obj, VIR_DOMAIN_PAUSED, VIR_DOMAIN_PAUSED_POSTCOPY,
					 VIR_DOMAIN_EVENT_SUSPENDED, VIR_DOMAIN_EVENT_SUSPENDED_POSTCOPY);
		g_mutex_unlock(&obj->lock);
	} else if (rc < 0 && g_atomic_int_get(&ctx.paused)) {
		/* The first error is the client's; the resume's only logged. */
		const struct drv_error *e = drv_error_last();
		struct drv_error keep = e ? *e : (struct drv_error){ 0 };

		if (process_resume_as(obj, VIR_DOMAIN_RUNNING_MIGRATION_CANCELED,
				      VIR_DOMAIN_EVENT_RESUMED_MIGRATED) < 0)
			pr_warn("domain '%s': cannot resume it after a failed migration: %s",
				obj->def->name, drv_error_last()->message);
		drv_error_reset();
		drv_error_report_full(keep.domain, keep.code, "%s", keep.message);
	}
	return rc;
}

/* Sends OBJ's state (active, its job held) to the connected socket FD --
 * LIVE: pre-copy while the guest runs, else stop-and-copy -- and waits
 * until the destination has it all: kvmm there closes the connection once
 * it read the stream (an end with data unread, a reset, is a kvmm that
 * gave up; over TLS, TLS (migtls_wait) says how it ended).  The source is
 * left paused; on failure it is as before.  The one place a VM's state
 * leaves. */
static int transfer_state(struct domain_obj *obj, int fd, struct migtls *tls, bool live,
			  uint64_t bandwidth, unsigned flags)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	char buf[256];
	ssize_t n;
	bool was_running, postcopy = false;

	g_mutex_lock(&obj->lock);
	was_running = obj->state == VIR_DOMAIN_RUNNING;
	g_mutex_unlock(&obj->lock);
	if (live ? live_out(obj, fd, bandwidth, flags, &postcopy) < 0 :
	    process_migrate_out(obj, fd) < 0)
		return -1;
	/* Post-copy: kvmm keeps its own copy of the connection until the
	 * destination has every page; Confirm waits for that. */
	if (postcopy)
		return 0;
	shutdown(fd, SHUT_WR);
	for (;;) {
		int r = poll(&p, 1, TRANSFER_TIMEOUT_MS);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			drv_error_report(VIR_ERR_OPERATION_TIMEOUT,
					 "the destination did not take the domain's state within %d s",
					 TRANSFER_TIMEOUT_MS / 1000);
			break;
		}
		/* CLIENT (the destination host): it sends nothing; whatever comes is
		 * read and dropped until the end. */
		n = read(fd, buf, sizeof(buf));
		if (n == 0) {
			if (!tls || migtls_wait(tls) == 0)
				return 0;
			break;
		}
		if (n < 0 && errno != EINTR) {
			drv_error_report(VIR_ERR_OPERATION_FAILED,
					 "the migration connection failed: %s", g_strerror(errno));
			break;
		}
	}
	/* The state went out but may not have arrived: the source runs on. */
	if (was_running &&
	    process_resume_as(obj, VIR_DOMAIN_RUNNING_MIGRATION_CANCELED,
			      VIR_DOMAIN_EVENT_RESUMED_MIGRATED) < 0)
		pr_warn("domain '%s': cannot resume it after a failed migration", obj->def->name);
	return -1;
}

/* CLIENT: tcp://HOST[:PORT], tcp:HOST[:PORT] or HOST[:PORT] (an IPv6
 * HOST in brackets): *HOST (g_free) and *PORT (0: none). */
static int parse_tcp_uri(const char *uri, char **host, int *port)
{
	const char *s = uri, *end;
	char *colon;

	if (g_str_has_prefix(s, "tcp://"))
		s += 6;
	else if (g_str_has_prefix(s, "tcp:"))
		s += 4;
	else if (strstr(s, "://"))
		goto bad;
	end = s + strcspn(s, "/?");
	if (*end && strcmp(end, "/") != 0)
		goto bad;
	if (*s == '[') {
		const char *rb = memchr(s, ']', end - s);

		if (!rb)
			goto bad;
		*host = g_strndup(s + 1, rb - s - 1);
		s = rb + 1;
		colon = *s == ':' ? (char *)s : NULL;
	} else {
		colon = memchr(s, ':', end - s);
		*host = g_strndup(s, colon ? colon - s : end - s);
	}
	*port = 0;
	if (colon) {
		char *num = g_strndup(colon + 1, end - colon - 1), *e;
		long v = strtol(num, &e, 10);
		bool ok = *num && !*e && v > 0 && v < 65536;

		g_free(num);
		if (!ok) {
			g_free(*host);
			goto bad;
		}
		*port = (int)v;
	}
	if (!**host) {
		g_free(*host);
		goto bad;
	}
	return 0;
bad:
	*host = NULL;
	drv_error_report(VIR_ERR_INVALID_ARG,
			 "invalid migration URI '%s': kvmm migrates over tcp://HOST:PORT", uri);
	return -1;
}

/* FD (a migration's TCP connection) fails within LINK_TIMEOUT_S of its
 * peer going silent.  The options are the socket's, so the kvmm that gets
 * FD keeps them. */
static void link_watch(int fd)
{
	int one = 1, idle = LINK_KEEPALIVE_S, cnt = LINK_TIMEOUT_S / LINK_KEEPALIVE_S;
	unsigned int user_ms = LINK_TIMEOUT_S * 1000;

	if (setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one)) < 0 ||
	    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle)) < 0 ||
	    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &idle, sizeof(idle)) < 0 ||
	    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt)) < 0 ||
	    setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_ms, sizeof(user_ms)) < 0)
		pr_warn("migration connection: cannot set its timeouts: %s", g_strerror(errno));
}

/* A TCP connection to URI's host and port, or -1 after reporting;
 * *HOST_OUT (g_free) the host. */
static int connect_uri(const char *uri, char **host_out)
{
	g_autofree char *host = NULL;
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res = NULL, *ai;
	char portstr[8];
	int port, fd = -1, err = 0, rc;

	if (parse_tcp_uri(uri, &host, &port) < 0)
		return -1;
	if (!port) {
		drv_error_report(VIR_ERR_INVALID_ARG, "migration URI '%s' has no port", uri);
		return -1;
	}
	snprintf(portstr, sizeof(portstr), "%d", port);
	rc = getaddrinfo(host, portstr, &hints, &res);
	if (rc) {
		drv_error_report(VIR_ERR_OPERATION_FAILED, "cannot resolve '%s': %s", host,
				 gai_strerror(rc));
		return -1;
	}
	for (ai = res; ai; ai = ai->ai_next) {
		struct pollfd p;
		socklen_t len = sizeof(err);

		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		if (fd < 0) {
			err = errno;
			continue;
		}
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
			break;
		err = errno;
		if (err == EINPROGRESS) {
			p = (struct pollfd){ .fd = fd, .events = POLLOUT };
			if (poll(&p, 1, CONNECT_TIMEOUT_MS) == 1 &&
			    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0)
				break;
			if (!err)
				err = ETIMEDOUT;
		}
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0) {
		drv_error_report(VIR_ERR_OPERATION_FAILED,
				 "cannot connect to the migration destination %s: %s", uri,
				 g_strerror(err));
		return -1;
	}
	/* kvmm writes with plain blocking writes. */
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	link_watch(fd);
	*host_out = g_steal_pointer(&host);
	return fd;
}

/* --- source: Begin, Perform, Confirm ----------------------------------------- */

/* The definition a migration sends: the user's DXML (the same domain) or
 * OBJ's own, without what only a run has.  NULL after reporting. */
static char *migration_xml(struct domain_obj *obj, const char *dxml, bool offline)
{
	char *xml;

	if (dxml) {
		struct domain_def *d = domain_def_parse_string(dxml, domains_parse_opts());
		bool same;

		if (!d)
			return NULL;
		g_mutex_lock(&obj->lock);
		same = !memcmp(d->uuid, obj->def->uuid, 16) && !strcmp(d->name, obj->def->name);
		g_mutex_unlock(&obj->lock);
		domain_def_free(d);
		if (!same) {
			drv_error_report(VIR_ERR_INVALID_ARG,
					 "the destination XML is not domain '%s''s (name and uuid must stay)",
					 obj->def->name);
			return NULL;
		}
		return g_strdup(dxml);
	}
	g_mutex_lock(&obj->lock);
	xml = domain_def_format(offline ? domain_persistent_def(obj) : obj->def,
				VIR_DOMAIN_XML_INACTIVE | VIR_DOMAIN_XML_SECURE);
	g_mutex_unlock(&obj->lock);
	return xml;
}

static int check_dname(struct domain_obj *obj, const char *dname)
{
	if (dname && strcmp(dname, obj->def->name) != 0) {
		drv_error_report(VIR_ERR_ARGUMENT_UNSUPPORTED,
				 "renaming domain '%s' to '%s' on migration is not supported",
				 obj->def->name, dname);
		return -1;
	}
	return 0;
}

/* Begin on OBJ: *XML and *COOKIE (g_free), the domain marked. */
static int begin(struct domain_obj *obj, const struct mig_params *mp, unsigned flags,
		 char **xml, char **cookie)
{
	bool offline = flags & VIR_MIGRATE_OFFLINE;
	bool active, persistent, held;

	g_mutex_lock(&obj->lock);
	active = obj->id >= 0;
	persistent = obj->persistent;
	held = obj->state == VIR_DOMAIN_PAUSED && obj->reason == VIR_DOMAIN_PAUSED_MIGRATION;
	g_mutex_unlock(&obj->lock);
	if (check_dname(obj, mp->dname) < 0)
		return -1;
	if (!offline && !active) {
		drv_error_report(VIR_ERR_OPERATION_INVALID,
				 "domain is not running (migrate it with --offline --persistent)");
		return -1;
	}
	if (offline && !persistent) {
		drv_error_report(VIR_ERR_OPERATION_INVALID,
				 "cannot migrate a transient domain offline");
		return -1;
	}
	/* Refused before anything is marked: no certificates, no start. */
	if (!offline && (flags & VIR_MIGRATE_TLS) && migtls_check_credentials(false) < 0)
		return -1;
	if (mark_begin(obj->def, held) < 0)
		return -1;
	*xml = migration_xml(obj, mp->dxml, offline);
	if (!*xml) {
		mark_clear(obj->def);
		return -1;
	}
	g_mutex_lock(&obj->lock);
	*cookie = cookie_make(obj->def);
	g_mutex_unlock(&obj->lock);
	return 0;
}

int drv_domain_migrate_begin3_params(struct rpc_conn *conn, void *args, void *ret)
{
	remote_domain_migrate_begin3_params_args *a = args;
	remote_domain_migrate_begin3_params_ret *r = ret;
	struct mig_params mp;
	struct domain_obj *obj;
	char *xml = NULL, *cookie = NULL;
	int rc;

	if (check_flags(a->flags, "virDomainMigrateBegin3Params") < 0 ||
	    parse_params(a->params.params_val, a->params.params_len, &mp) < 0)
		return -1;
	obj = wire_domain_get(&a->dom);
	if (!obj)
		return -1;
	rc = begin(obj, &mp, a->flags, &xml, &cookie);
	domain_obj_unref(obj);
	if (rc < 0)
		return -1;
	r->xml = xml;
	cookie_put(cookie, &r->cookie_out.cookie_out_len, &r->cookie_out.cookie_out_val);
	return 0;
}

/* Perform's transfer on the source: OBJ's state to URI.  The mark moves
 * to "performed", or is gone on failure (the client then skips Confirm;
 * the source runs on). */
static int perform(struct domain_obj *obj, const char *uri, const struct mig_params *mp,
		   unsigned flags)
{
	g_autofree char *host = NULL;
	struct migtls *tls = NULL;
	int fd, plain, rc = -1;

	if (mark_move(obj->def, OUT_BEGUN, OUT_PERFORMING) < 0)
		return -1;
	if (flags & VIR_MIGRATE_OFFLINE) {
		rc = 0;
		goto out;
	}
	if (!uri) {
		drv_error_report(VIR_ERR_INVALID_ARG, "no migration URI: the destination gave none");
		goto out;
	}
	fd = connect_uri(uri, &host);
	if (fd < 0)
		goto out;
	plain = fd;
	/* The handshake before the job: a destination not trusted (or not
	 * trusting us) leaves the domain as it was. */
	if ((flags & VIR_MIGRATE_TLS) && !(tls = migtls_client(fd, host, &plain))) {
		close(fd);
		goto out;
	}
	if (flags & VIR_MIGRATE_POSTCOPY)
		mark_allow_postcopy(obj->def);
	/* A job clients watch (domjobinfo) and abort (domjobabort). */
	if (job_begin(obj, "virDomainMigratePerform3Params",
		      VIR_DOMAIN_JOB_OPERATION_MIGRATION_OUT) == 0) {
		if (obj->id < 0)
			drv_error_report(VIR_ERR_OPERATION_INVALID, "domain is not running");
		else
			rc = transfer_state(obj, plain, tls, flags & VIR_MIGRATE_LIVE, mp->bandwidth,
					    flags);
		bool in_postcopy = false;

		if (rc == 0)
			mark_postcopy(obj->def, NULL, &in_postcopy, false);
		/* Post-copy: the job lasts until Confirm saw the last page
		 * go, without the job lock Finish and Confirm take. */
		if (in_postcopy)
			job_detach(obj);
		else
			job_end(obj, rc);
	}
	if (tls) {
		/* kvmm's error is the client's (a broken pipe, say); the
		 * connection's own reason is logged. */
		g_autofree char *why = rc < 0 ? migtls_failure(tls) : NULL;
		bool in_postcopy = false;

		if (why)
			pr_warn("domain '%s': the migration's TLS connection failed: %s",
				obj->def->name, why);
		close(plain);
		if (rc == 0)
			mark_postcopy(obj->def, NULL, &in_postcopy, false);
		if (in_postcopy) {
			/* kvmm sends pages until Confirm sees it done. */
			migtls_release(tls, fd, obj->def->name);
			fd = -1;
		} else {
			migtls_free(tls);
		}
	}
	if (fd >= 0)
		close(fd);
out:
	if (rc == 0)
		mark_move(obj->def, OUT_PERFORMING, OUT_PERFORMED);
	else
		mark_clear(obj->def);
	return rc;
}

/* Confirm after a post-copy switch: until kvmm has sent the last page.
 * A failure then loses the guest: paused here for good (libvirt's
 * paused/post-copy failed), the error reported. */
static int postcopy_wait(struct domain_obj *obj)
{
	g_autofree char *path = process_api_path(obj);
	struct kvmm_migrate_info mi;
	struct live_ctx ctx = { .obj = obj, .path = path };

	if (!path) {
		job_end_detached(obj, -1);
		return -1;
	}
	for (;;) {
		if (monitor_query_migrate(path, &mi) < 0) {
			job_end_detached(obj, -1);
			return -1;
		}
		/* The job's figures, while post-copy runs and as it ended. */
		if (job_detached(obj))
			live_progress(obj, &ctx, &mi);
		if (mi.status != KVMM_MIGRATE_POSTCOPY)
			break;
		g_usleep(LIVE_POLL_US);
	}
	job_end_detached(obj, mi.status == KVMM_MIGRATE_COMPLETED ? 0 : -1);
	if (mi.status == KVMM_MIGRATE_COMPLETED)
		return 0;
	g_mutex_lock(&obj->lock);
	if (obj->run)
		domain_set_state(obj, VIR_DOMAIN_PAUSED, VIR_DOMAIN_PAUSED_POSTCOPY_FAILED,
				 VIR_DOMAIN_EVENT_SUSPENDED, VIR_DOMAIN_EVENT_SUSPENDED_POSTCOPY_FAILED);
	g_mutex_unlock(&obj->lock);
	drv_error_report(VIR_ERR_OPERATION_FAILED, "post-copy migration failed: %s",
			 mi.error[0] ? mi.error : "kvmm gave no reason");
	return -1;
}

/* Confirm on the source: the destination has it (stop ours, undefine
 * with UNDEFINE_SOURCE) or not (CANCELLED: resume ours). */
static int confirm(struct domain_obj *obj, unsigned flags, bool cancelled)
{
	bool offline = flags & VIR_MIGRATE_OFFLINE;
	int rc = 0;

	if (domain_job_begin(obj, "virDomainMigrateConfirm3Params") < 0)
		return -1;
	if (cancelled) {
		g_mutex_lock(&obj->lock);
		bool ours = obj->id >= 0 && obj->state == VIR_DOMAIN_PAUSED &&
			    obj->reason == VIR_DOMAIN_PAUSED_MIGRATION;
		g_mutex_unlock(&obj->lock);
		if (ours)
			rc = process_resume_as(obj, VIR_DOMAIN_RUNNING_MIGRATION_CANCELED,
					       VIR_DOMAIN_EVENT_RESUMED_MIGRATED);
		if (rc == 0)
			pr_info("domain '%s': migration cancelled, the source runs on", obj->def->name);
	} else {
		bool in_postcopy = false;

		mark_postcopy(obj->def, NULL, &in_postcopy, false);
		if (in_postcopy)
			rc = postcopy_wait(obj);
		if (rc == 0 && !offline && obj->id >= 0)
			rc = process_stop_migrated(obj);
		if (rc == 0 && (flags & VIR_MIGRATE_UNDEFINE_SOURCE) && obj->persistent &&
		    !obj->removed) {
			rc = domain_undefine(obj);
			if (rc == 0)
				events_lifecycle_obj(obj, VIR_DOMAIN_EVENT_UNDEFINED,
						     VIR_DOMAIN_EVENT_UNDEFINED_REMOVED);
		}
		if (rc == 0)
			pr_info("domain '%s' migrated away", obj->def->name);
	}
	/* A post-copy's job ends with Confirm, whatever it found. */
	job_end_detached(obj, cancelled ? -1 : rc);
	domain_job_end(obj);
	mark_clear(obj->def);
	return rc;
}

static int perform_p2p(struct domain_obj *obj, const char *dconnuri, const struct mig_params *mp,
		       const remote_typed_param *params, unsigned nparams, unsigned flags);

int drv_domain_migrate_perform3_params(struct rpc_conn *conn, void *args, void *ret)
{
	remote_domain_migrate_perform3_params_args *a = args;
	struct mig_params mp;
	struct domain_obj *obj;
	int rc;

	if (check_flags(a->flags, "virDomainMigratePerform3Params") < 0 ||
	    parse_params(a->params.params_val, a->params.params_len, &mp) < 0)
		return -1;
	obj = wire_domain_get(&a->dom);
	if (!obj)
		return -1;
	if (a->dconnuri || (a->flags & VIR_MIGRATE_PEER2PEER)) {
		if (!a->dconnuri || !(a->flags & VIR_MIGRATE_PEER2PEER)) {
			drv_error_report(VIR_ERR_INVALID_ARG,
					 "peer-to-peer migration needs both the flag and a destination URI");
			rc = -1;
		} else {
			/* The reply's cookie stays empty: the client refuses one. */
			rc = perform_p2p(obj, *a->dconnuri, &mp, a->params.params_val,
					 a->params.params_len, a->flags);
		}
		domain_obj_unref(obj);
		return rc;
	}
	if (cookie_check(a->cookie_in.cookie_in_val, a->cookie_in.cookie_in_len) < 0) {
		domain_obj_unref(obj);
		return -1;
	}
	rc = perform(obj, mp.uri, &mp, a->flags);
	if (rc == 0) {
		remote_domain_migrate_perform3_params_ret *r = ret;
		char *cookie = cookie_make_stats(obj);

		cookie_put(cookie, &r->cookie_out.cookie_out_len, &r->cookie_out.cookie_out_val);
	}
	domain_obj_unref(obj);
	return rc;
}

int drv_domain_migrate_confirm3_params(struct rpc_conn *conn, void *args, void *ret)
{
	remote_domain_migrate_confirm3_params_args *a = args;
	struct mig_params mp;
	struct domain_obj *obj;
	int rc;

	/* Confirm cleans up: even after refused flags it must run, so only
	 * its parameters are checked. */
	if (parse_params(a->params.params_val, a->params.params_len, &mp) < 0)
		return -1;
	obj = wire_domain_get(&a->dom);
	if (!obj)
		return -1;
	rc = confirm(obj, a->flags, a->cancelled != 0);
	domain_obj_unref(obj);
	return rc;
}

/* --- destination: Prepare, Finish ------------------------------------------- */

struct incoming {
	char uuid[37];
	struct rpc_conn *conn;		/* whose Prepare (compared only: it goes
					 * before its calls' incomings do) */
	struct domain_obj *obj;		/* its job held: transient, or */
	bool took_over;			/* a defined one with the migrated def */
	bool offline;
	bool tls;			/* VIR_MIGRATE_TLS: the daemons relay */
	bool postcopy;			/* VIR_MIGRATE_POSTCOPY */
	int lfd;			/* listening socket, -1 once closed */
	int cfd;			/* the source's connection while kvmm reads it */
	int cancel_fd;			/* eventfd: Finish(cancelled) wakes the thread */
	GMutex lock;
	GCond cond;
	bool done;			/* the thread's result is in: */
	int rc;
	struct drv_error err;
};

static GMutex in_lock;
static GHashTable *in_table;	/* uuid string -> struct incoming */

static void incoming_free(struct incoming *in)
{
	if (in->lfd >= 0)
		close(in->lfd);
	if (in->cancel_fd >= 0)
		close(in->cancel_fd);
	g_mutex_clear(&in->lock);
	g_cond_clear(&in->cond);
	g_free(in);
}

/* Prepare on a domain defined here (OBJ, inactive): its job taken, DEF
 * (taken on success) its definition for the run, its own kept in
 * obj->newdef for the next start.  -1 after reporting. */
static int take_over(struct domain_obj *obj, struct domain_def *def)
{
	if (memcmp(obj->def->uuid, def->uuid, 16) != 0 || strcmp(obj->def->name, def->name) != 0) {
		drv_error_report(VIR_ERR_OPERATION_INVALID,
				 "domain '%s' is defined on the destination with another %s",
				 obj->def->name,
				 strcmp(obj->def->name, def->name) ? "name" : "uuid");
		return -1;
	}
	if (domain_job_begin(obj, "virDomainMigratePrepare3Params") < 0)
		return -1;
	g_mutex_lock(&obj->lock);
	if (obj->id >= 0 || obj->newdef) {
		g_mutex_unlock(&obj->lock);
		domain_job_end(obj);
		drv_error_report(VIR_ERR_OPERATION_INVALID,
				 "domain '%s' is already active on the destination", def->name);
		return -1;
	}
	obj->newdef = obj->def;
	obj->def = def;
	g_mutex_unlock(&obj->lock);
	job_begin_held(obj, VIR_DOMAIN_JOB_OPERATION_MIGRATION_IN);
	return 0;
}

/* Removes what Prepare made for IN (taken out of the table): a kvmm that
 * runs, the transient domain (or a defined one's own definition back),
 * the job. */
static void incoming_remove(struct incoming *in)
{
	struct domain_obj *obj = in->obj;

	if (obj->id >= 0 && process_destroy(obj, false) < 0)
		pr_warn("domain '%s': cannot stop the incoming kvmm", obj->def->name);
	/* A run's end removes a transient domain itself, and puts a
	 * defined one's definition back. */
	g_mutex_lock(&obj->lock);
	if (in->took_over && obj->id < 0)
		domain_run_ended_locked(obj);
	g_mutex_unlock(&obj->lock);
	if (!in->took_over && !obj->removed && !obj->persistent && obj->id < 0)
		domain_remove_transient(obj);
	job_end(obj, -1);
	domain_obj_unref(obj);
	incoming_free(in);
}

/* Takes the incoming migration of UUID out of the table, or NULL. */
static struct incoming *incoming_take(const char *uuid)
{
	struct incoming *in = NULL;

	g_mutex_lock(&in_lock);
	if (in_table && uuid) {
		in = g_hash_table_lookup(in_table, uuid);
		if (in)
			g_hash_table_steal(in_table, uuid);
	}
	g_mutex_unlock(&in_lock);
	return in;
}

static void incoming_done(struct incoming *in, int rc)
{
	g_mutex_lock(&in->lock);
	in->rc = rc;
	if (rc < 0 && drv_error_last())
		in->err = *drv_error_last();
	in->done = true;
	g_cond_broadcast(&in->cond);
	g_mutex_unlock(&in->lock);
	drv_error_reset();
}

/* Cancels IN (taken out of the table): its thread woken if it still
 * waits for the source, a kvmm still reading cut off; returns once the
 * thread is done. */
static void incoming_cancel(struct incoming *in)
{
	uint64_t one = 1;

	if (in->offline)
		return;
	if (in->cancel_fd >= 0 && write(in->cancel_fd, &one, sizeof(one)) < 0)
		pr_warn("cannot wake the incoming migration: %s", g_strerror(errno));
	g_mutex_lock(&in->lock);
	if (in->cfd >= 0)
		shutdown(in->cfd, SHUT_RDWR);
	while (!in->done)
		g_cond_wait(&in->cond, &in->lock);
	g_mutex_unlock(&in->lock);
}

static gpointer conn_gone_thread(gpointer data)
{
	GPtrArray *gone = data;

	for (guint i = 0; i < gone->len; i++) {
		struct incoming *in = g_ptr_array_index(gone, i);

		pr_info("domain '%s': the client of its incoming migration went away; removed",
			in->obj->def->name);
		incoming_cancel(in);
		incoming_remove(in);
	}
	drv_error_reset();
	g_ptr_array_unref(gone);
	return NULL;
}

void migrate_conn_gone(struct rpc_conn *conn)
{
	GPtrArray *gone = g_ptr_array_new();
	GHashTableIter it;
	gpointer key, value;

	g_mutex_lock(&in_lock);
	if (in_table) {
		g_hash_table_iter_init(&it, in_table);
		while (g_hash_table_iter_next(&it, &key, &value)) {
			if (((struct incoming *)value)->conn == conn) {
				g_ptr_array_add(gone, value);
				g_hash_table_iter_steal(&it);
			}
		}
	}
	g_mutex_unlock(&in_lock);
	/* Stopping a kvmm blocks: not on the main loop. */
	if (gone->len)
		g_thread_unref(g_thread_new("migrate-gone", conn_gone_thread, gone));
	else
		g_ptr_array_unref(gone);
}

static bool incoming_in_postcopy(struct domain_obj *obj);

/* Thread: accepts the source's connection, then runs kvmm on it. */
static gpointer incoming_thread(gpointer data)
{
	struct incoming *in = data;
	struct pollfd p[2] = { { .fd = in->lfd, .events = POLLIN },
			       { .fd = in->cancel_fd, .events = POLLIN } };
	int r, fd, rc;

	do
		r = poll(p, 2, ACCEPT_TIMEOUT_MS);
	while (r < 0 && errno == EINTR);
	if (r <= 0 || (p[1].revents & POLLIN)) {
		if (r == 0) {
			/* Nobody came: unless Finish took it meanwhile, the
			 * preparation is ours to undo. */
			struct incoming *mine = incoming_take(in->uuid);

			if (mine) {
				pr_warn("domain '%s': no migration connection within %d s; removed",
					in->obj->def->name, ACCEPT_TIMEOUT_MS / 1000);
				incoming_remove(mine);
				return NULL;
			}
		}
		drv_error_report(VIR_ERR_OPERATION_ABORTED, "the incoming migration was %s",
				 r == 0 ? "not started by the source in time" : "cancelled");
		incoming_done(in, -1);
		return NULL;
	}
	fd = accept4(in->lfd, NULL, NULL, SOCK_CLOEXEC);
	close(in->lfd);
	in->lfd = -1;
	if (fd < 0) {
		drv_error_report(VIR_ERR_SYSTEM_ERROR, "cannot accept the migration connection: %s",
				 g_strerror(errno));
		incoming_done(in, -1);
		return NULL;
	}
	/* kvmm there only reads: a source gone silent would hold it. */
	link_watch(fd);
	g_mutex_lock(&in->lock);
	in->cfd = fd;
	g_mutex_unlock(&in->lock);
	if (in->tls) {
		/* kvmm reads the plaintext the relay writes; a cancel cuts
		 * the TCP connection (cfd), and so the relay. */
		int plain;
		struct migtls *tls = migtls_server(fd, &plain);

		if (!tls) {
			pr_warn("domain '%s': incoming migration refused: %s", in->obj->def->name,
				drv_error_last()->message);
			rc = -1;
		} else {
			rc = process_start_incoming(in->obj, plain);
			close(plain);
			if (rc == 0 && in->postcopy && incoming_in_postcopy(in->obj)) {
				/* kvmm runs the guest and pulls the pages
				 * still missing over the stream: the relay
				 * lives on, out of a cancel's reach (Finish
				 * resumes the guest next). */
				g_mutex_lock(&in->lock);
				in->cfd = -1;
				g_mutex_unlock(&in->lock);
				migtls_release(tls, fd, in->obj->def->name);
				fd = -1;
			} else {
				/* Both ends of the stream ended as they
				 * should.  Waited for even after a kvmm
				 * that failed: a stream it read whole ends
				 * cleanly for the source (which then learns
				 * of the failure from Finish, as without
				 * TLS), not as a cut. */
				if (migtls_wait(tls) < 0)
					rc = -1;
				migtls_free(tls);
			}
		}
	} else {
		rc = process_start_incoming(in->obj, fd);
	}
	g_mutex_lock(&in->lock);
	in->cfd = -1;
	g_mutex_unlock(&in->lock);
	/* kvmm has its own copy (closed once read); ours closing lets the
	 * source see the end. */
	if (fd >= 0)
		close(fd);
	incoming_done(in, rc);
	return NULL;
}

/* A socket listening on HOST (NULL: every address) at the first free port
 * of libvirt's range, or PORT; *BOUND the port.  -1 after reporting. */
static int listen_port(const char *host, int port, int *bound)
{
	int err = EADDRINUSE;

	for (int p = port ? port : PORT_MIN; p <= (port ? port : PORT_MAX); p++) {
		struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE,
					  .ai_family = host ? AF_UNSPEC : AF_INET6 };
		struct addrinfo *res = NULL;
		char ps[8];
		int fd, one = 1, rc;

		snprintf(ps, sizeof(ps), "%d", p);
		rc = getaddrinfo(host, ps, &hints, &res);
		if (rc && !host) {
			hints.ai_family = AF_INET;
			rc = getaddrinfo(host, ps, &hints, &res);
		}
		if (rc) {
			drv_error_report(VIR_ERR_INVALID_ARG, "cannot use listen address '%s': %s",
					 host ? host : "*", gai_strerror(rc));
			return -1;
		}
		fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd >= 0) {
			setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
			if (bind(fd, res->ai_addr, res->ai_addrlen) == 0 && listen(fd, 1) == 0) {
				freeaddrinfo(res);
				*bound = p;
				return fd;
			}
			err = errno;
			close(fd);
		} else {
			err = errno;
		}
		freeaddrinfo(res);
		if (err != EADDRINUSE)
			break;
	}
	drv_error_report(VIR_ERR_OPERATION_FAILED, "cannot listen for the migration on %s port %s: %s",
			 host ? host : "*", port ? "given" : "49152-49215", g_strerror(err));
	return -1;
}

/* CLIENT: every file the definition needs must exist here: the storage
 * is shared, not copied. */
static int check_files(const struct domain_def *def)
{
	for (size_t i = 0; i < def->ndisks; i++) {
		const struct domain_disk *d = &def->disks[i];

		if (d->source && access(d->source, F_OK) < 0) {
			drv_error_report(VIR_ERR_OPERATION_INVALID,
					 "disk '%s' of domain '%s': '%s' is not on this host (%s); migration needs storage both hosts share",
					 d->target, def->name, d->source, g_strerror(errno));
			return -1;
		}
	}
	if ((def->kernel && access(def->kernel, R_OK) < 0) ||
	    (def->initrd && access(def->initrd, R_OK) < 0)) {
		drv_error_report(VIR_ERR_OPERATION_INVALID,
				 "the kernel or initrd of domain '%s' is not on this host (%s)",
				 def->name, g_strerror(errno));
		return -1;
	}
	return 0;
}

/* Prepare: IN for the domain of DXML, with a port listening unless
 * offline; *URI_OUT (g_free) where the source is to connect. */
static int prepare(struct rpc_conn *conn, const struct mig_params *mp, const char *cookie,
		   u_int cookielen, unsigned flags, char **uri_out, char **cookie_out)
{
	g_autofree char *uri_host = NULL, *cuuid = NULL;
	struct domain_def *def;
	struct domain_obj *obj;
	struct incoming *in;
	int uri_port = 0, port = 0;
	bool offline = flags & VIR_MIGRATE_OFFLINE, took_over = false;

	*uri_out = NULL;
	if (!mp->dxml) {
		drv_error_report(VIR_ERR_INVALID_ARG, "no domain XML given for the incoming migration");
		return -1;
	}
	if (cookie_check(cookie, cookielen) < 0)
		return -1;
	if (!offline && (flags & VIR_MIGRATE_TLS) && migtls_check_credentials(true) < 0)
		return -1;
	if (mp->uri && parse_tcp_uri(mp->uri, &uri_host, &uri_port) < 0)
		return -1;
	def = domain_def_parse_string(mp->dxml, domains_parse_opts());
	if (!def)
		return -1;
	cuuid = cookie_get(cookie, cookielen, "uuid");
	if (cuuid) {
		char uuid[37];

		domain_uuid_format(def->uuid, uuid);
		if (strcmp(cuuid, uuid) != 0) {
			drv_error_report(VIR_ERR_INVALID_ARG,
					 "the migration cookie and the XML name different domains");
			goto fail_def;
		}
	}
	if (mp->dname && strcmp(mp->dname, def->name) != 0) {
		drv_error_report(VIR_ERR_ARGUMENT_UNSUPPORTED,
				 "renaming domain '%s' to '%s' on migration is not supported", def->name,
				 mp->dname);
		goto fail_def;
	}
	if (check_files(def) < 0)
		goto fail_def;
	obj = domain_find_by_uuid(def->uuid);
	if (!obj)
		obj = domain_find_by_name(def->name);
	if (obj) {
		/* Defined here already (say, it left this host before
		 * without --undefinesource): the run gets the migrated
		 * definition, the one here stays the next start's, as a
		 * definition changed while a domain runs. */
		if (take_over(obj, def) < 0) {
			domain_obj_unref(obj);
			goto fail_def;
		}
		took_over = true;
	} else {
		obj = domain_add_transient(def, "virDomainMigratePrepare3Params");
		if (!obj)
			return -1;
		job_begin_held(obj, VIR_DOMAIN_JOB_OPERATION_MIGRATION_IN);
	}
	in = g_new0(struct incoming, 1);
	in->took_over = took_over;
	in->conn = conn;
	domain_uuid_format(obj->def->uuid, in->uuid);
	in->obj = obj;
	in->offline = offline;
	in->tls = flags & VIR_MIGRATE_TLS;
	in->postcopy = flags & VIR_MIGRATE_POSTCOPY;
	in->lfd = in->cfd = in->cancel_fd = -1;
	g_mutex_init(&in->lock);
	g_cond_init(&in->cond);
	if (!offline) {
		const char *bind_host = mp->listen ? mp->listen : uri_host;

		in->cancel_fd = eventfd(0, EFD_CLOEXEC);
		in->lfd = in->cancel_fd < 0 ? -1 : listen_port(bind_host, uri_port, &port);
		if (in->lfd < 0) {
			if (in->cancel_fd < 0)
				drv_error_report(VIR_ERR_SYSTEM_ERROR, "eventfd: %s", g_strerror(errno));
			incoming_remove(in);
			return -1;
		}
		{
			const char *h = uri_host ? uri_host
				      : mp->listen && strcmp(mp->listen, "0.0.0.0") && strcmp(mp->listen, "::")
				      ? mp->listen : g_get_host_name();

			*uri_out = strchr(h, ':') ? g_strdup_printf("tcp://[%s]:%d", h, port)
						  : g_strdup_printf("tcp://%s:%d", h, port);
		}
	}
	g_mutex_lock(&in_lock);
	if (!in_table)
		in_table = g_hash_table_new(g_str_hash, g_str_equal);
	g_hash_table_insert(in_table, in->uuid, in);
	g_mutex_unlock(&in_lock);
	if (!offline)
		g_thread_unref(g_thread_new("migrate-in", incoming_thread, in));
	*cookie_out = cookie_make(obj->def);
	pr_info("domain '%s': incoming migration prepared%s%s", obj->def->name,
		*uri_out ? " on " : " (offline)", *uri_out ? *uri_out : "");
	return 0;

fail_def:
	domain_def_free(def);
	return -1;
}

int drv_domain_migrate_prepare3_params(struct rpc_conn *conn, void *args, void *ret)
{
	remote_domain_migrate_prepare3_params_args *a = args;
	remote_domain_migrate_prepare3_params_ret *r = ret;
	struct mig_params mp;
	char *uri = NULL, *cookie = NULL;

	if (check_flags(a->flags, "virDomainMigratePrepare3Params") < 0 ||
	    parse_params(a->params.params_val, a->params.params_len, &mp) < 0)
		return -1;
	if (prepare(conn, &mp, a->cookie_in.cookie_in_val, a->cookie_in.cookie_in_len, a->flags, &uri,
		    &cookie) < 0)
		return -1;
	if (uri) {
		r->uri_out = malloc(sizeof(*r->uri_out));
		if (!r->uri_out) {
			g_free(uri);
			g_free(cookie);
			drv_error_report(VIR_ERR_NO_MEMORY, "out of memory");
			return -1;
		}
		*r->uri_out = uri;
	}
	cookie_put(cookie, &r->cookie_out.cookie_out_len, &r->cookie_out.cookie_out_val);
	return 0;
}

/* Finish: the incoming domain of UUID (or, without one, named DNAME)
 * runs (or, PAUSED, stays paused) and with PERSIST_DEST is defined; or,
 * CANCELLED or failed, everything Prepare made is gone.  A reference to
 * the domain, or NULL after reporting. */
/* Whether the destination's kvmm is still pulling pages (post-copy). */
static bool incoming_in_postcopy(struct domain_obj *obj)
{
	g_autofree char *path = process_api_path(obj);
	struct kvmm_migrate_info mi;

	if (!path || monitor_query_migrate(path, &mi) < 0) {
		drv_error_reset();
		return false;
	}
	return mi.status == KVMM_MIGRATE_POSTCOPY;
}

static struct domain_obj *finish(const char *uuid, const struct mig_params *mp, unsigned flags,
				 bool cancelled, const char *cookie, u_int cookielen)
{
	struct incoming *in = NULL;
	struct domain_obj *obj;
	g_autofree char *by_name = NULL;

	if (!uuid && mp->dname) {
		obj = domain_find_by_name(mp->dname);
		if (obj) {
			char u[37];

			domain_uuid_format(obj->def->uuid, u);
			by_name = g_strdup(u);
			domain_obj_unref(obj);
		}
		uuid = by_name;
	}
	in = incoming_take(uuid);
	if (!in) {
		drv_error_report(VIR_ERR_NO_DOMAIN, "no incoming migration of domain '%s' here",
				 mp->dname ? mp->dname : uuid ? uuid : "?");
		return NULL;
	}
	obj = in->obj;
	if (cancelled)
		incoming_cancel(in);
	if (!in->offline) {
		g_mutex_lock(&in->lock);
		while (!in->done)
			g_cond_wait(&in->cond, &in->lock);
		g_mutex_unlock(&in->lock);
	}
	if (cancelled || (!in->offline && in->rc < 0)) {
		if (cancelled)
			drv_error_report(VIR_ERR_OPERATION_ABORTED,
					 "migration of domain '%s' cancelled by the source",
					 obj->def->name);
		else
			drv_error_report_full(in->err.domain, in->err.code, "%s", in->err.message);
		pr_info("domain '%s': incoming migration %s; removed", obj->def->name,
			cancelled ? "cancelled" : "failed");
		incoming_remove(in);
		return NULL;
	}
	if (!in->offline) {
		bool postcopy = (flags & VIR_MIGRATE_POSTCOPY) && incoming_in_postcopy(obj);
		int rc = flags & VIR_MIGRATE_PAUSED ? 0
			 : process_resume_as(obj,
					     postcopy ? VIR_DOMAIN_RUNNING_POSTCOPY : VIR_DOMAIN_RUNNING_MIGRATED,
					     postcopy ? VIR_DOMAIN_EVENT_RESUMED_POSTCOPY :
							VIR_DOMAIN_EVENT_RESUMED_MIGRATED);

		if (rc == 0 && (flags & VIR_MIGRATE_PAUSED)) {
			/* As libvirt: what was the migration's pause is the
			 * user's now. */
			g_mutex_lock(&obj->lock);
			if (obj->run)
				domain_set_state(obj, VIR_DOMAIN_PAUSED, VIR_DOMAIN_PAUSED_USER,
						 VIR_DOMAIN_EVENT_SUSPENDED, VIR_DOMAIN_EVENT_SUSPENDED_PAUSED);
			g_mutex_unlock(&obj->lock);
		}
		if (rc < 0) {
			incoming_remove(in);
			return NULL;
		}
	}
	if (flags & VIR_MIGRATE_PERSIST_DEST) {
		struct domain_def *def;
		struct domain_obj *defined;
		bool updated;

		if (!mp->pxml) {
			g_autofree char *x = NULL;

			g_mutex_lock(&obj->lock);
			x = domain_def_format(obj->def, VIR_DOMAIN_XML_INACTIVE | VIR_DOMAIN_XML_SECURE);
			g_mutex_unlock(&obj->lock);
			def = x ? domain_def_parse_string(x, domains_parse_opts()) : NULL;
		} else {
			def = domain_def_parse_string(mp->pxml, domains_parse_opts());
		}
		/* Offline nothing runs: a definition that was here is the
		 * one to replace. */
		if (in->offline && in->took_over) {
			g_mutex_lock(&obj->lock);
			domain_run_ended_locked(obj);
			g_mutex_unlock(&obj->lock);
		}
		/* Defining takes the job. */
		cookie_job_stats(obj, cookie, cookielen);
		job_end(obj, 0);
		defined = def ? domain_define(def, &updated) : NULL;
		if (!defined) {
			/* The domain runs here now: keep it, and say why it
			 * is not (newly) persistent. */
			pr_warn("domain '%s': migrated but not made persistent: %s", obj->def->name,
				drv_error_last() ? drv_error_last()->message : "?");
			if (in->offline) {
				/* Nothing came but the definition: nothing stays. */
				if (!in->took_over)
					domain_remove_transient(obj);
				domain_obj_unref(in->obj);
				incoming_free(in);
				return NULL;
			}
			drv_error_reset();
		} else {
			events_lifecycle_obj(defined, VIR_DOMAIN_EVENT_DEFINED,
					     updated ? VIR_DOMAIN_EVENT_DEFINED_UPDATED
						     : VIR_DOMAIN_EVENT_DEFINED_ADDED);
			domain_obj_unref(defined);
		}
	} else {
		cookie_job_stats(obj, cookie, cookielen);
		job_end(obj, 0);
	}
	pr_info("domain '%s' migrated here%s", obj->def->name, in->offline ? " (offline)" : "");
	domain_obj_ref(obj);
	/* The table's reference goes; the domain stays. */
	domain_obj_unref(in->obj);
	incoming_free(in);
	return obj;
}

int drv_domain_migrate_finish3_params(struct rpc_conn *conn, void *args, void *ret)
{
	remote_domain_migrate_finish3_params_args *a = args;
	remote_domain_migrate_finish3_params_ret *r = ret;
	g_autofree char *uuid = NULL;
	struct mig_params mp;
	struct domain_obj *obj;

	if (parse_params(a->params.params_val, a->params.params_len, &mp) < 0)
		return -1;
	uuid = cookie_get(a->cookie_in.cookie_in_val, a->cookie_in.cookie_in_len, "uuid");
	obj = finish(uuid, &mp, a->flags, a->cancelled != 0, a->cookie_in.cookie_in_val,
		     a->cookie_in.cookie_in_len);
	if (!obj)
		return -1;
	wire_domain_make(obj, &r->dom);
	domain_obj_unref(obj);
	return 0;
}

/* --- peer-to-peer: this daemon drives the destination ---------------------- */

/* libvirt's migration steps on a connection, exported by libvirt.so for
 * its own daemons (libvirt_internal.h), not in its public headers. */
int virDomainMigratePrepare3Params(virConnectPtr dconn, virTypedParameterPtr params, int nparams,
				   const char *cookiein, int cookieinlen, char **cookieout,
				   int *cookieoutlen, char **uri_out, unsigned int flags);
virDomainPtr virDomainMigrateFinish3Params(virConnectPtr dconn, virTypedParameterPtr params,
					   int nparams, const char *cookiein, int cookieinlen,
					   char **cookieout, int *cookieoutlen, unsigned int flags,
					   int cancelled);
int virConnectSupportsFeature(virConnectPtr conn, int feature);

bool migrate_p2p_supported(void)
{
	return true;
}

static void quiet(void *opaque, virErrorPtr err)
{
	(void)opaque;
	(void)err;
}

/* The peer's last error, as ours (CODE when it has none). */
static void report_peer(int code, const char *what)
{
	virErrorPtr e = virGetLastError();

	if (e && e->message)
		drv_error_report_full(e->domain, e->code ? e->code : code, "%s", e->message);
	else
		drv_error_report(code, "%s failed on the destination", what);
}

/* The parameters the destination gets: the user's, the XML Begin chose
 * and, unless NULL, URI as migrate_uri.  -1 when out of memory. */
static int p2p_params(const remote_typed_param *params, unsigned nparams, const char *xml,
		      const char *uri, virTypedParameterPtr *tp, int *ntp)
{
	int maxtp = 0;

	for (unsigned i = 0; i < nparams; i++) {
		const remote_typed_param *p = &params[i];

		if (!strcmp(p->field, VIR_MIGRATE_PARAM_DEST_XML) ||
		    (uri && !strcmp(p->field, VIR_MIGRATE_PARAM_URI)))
			continue;
		if ((p->value.type == VIR_TYPED_PARAM_STRING &&
		     virTypedParamsAddString(tp, ntp, &maxtp, p->field,
					     p->value.remote_typed_param_value_u.s) < 0) ||
		    (p->value.type == VIR_TYPED_PARAM_ULLONG &&
		     virTypedParamsAddULLong(tp, ntp, &maxtp, p->field,
					     p->value.remote_typed_param_value_u.ul) < 0))
			return -1;
	}
	if (virTypedParamsAddString(tp, ntp, &maxtp, VIR_MIGRATE_PARAM_DEST_XML, xml) < 0 ||
	    (uri && virTypedParamsAddString(tp, ntp, &maxtp, VIR_MIGRATE_PARAM_URI, uri) < 0))
		return -1;
	return 0;
}

static int perform_p2p(struct domain_obj *obj, const char *dconnuri, const struct mig_params *mp,
		       const remote_typed_param *params, unsigned nparams, unsigned flags)
{
	static gsize once;
	virConnectPtr dconn;
	virTypedParameterPtr tp = NULL;
	int ntp = 0, maxtp = 0, cookie2len = 0, cookie4len = 0, rc = -1;
	char *xml = NULL, *cookie1 = NULL, *cookie2 = NULL, *cookie4 = NULL, *uri_out = NULL;
	g_autofree char *cookie3 = NULL;
	virDomainPtr ddom;
	bool cancelled;

	if (g_once_init_enter(&once)) {
		/* Errors are read from virGetLastError, not printed. */
		virSetErrorFunc(NULL, quiet);
		/* libvirt's event loop is GLib's default context, the one
		 * the daemon's main loop runs: the client library's
		 * keepalive timer and socket watches run there, answering
		 * the destination's pings while a long copy leaves the
		 * connection idle and sending ours. */
		if (virEventRegisterDefaultImpl() < 0)
			pr_warn("cannot register libvirt's event loop: peer-to-peer migrations will not notice a dead link");
		g_once_init_leave(&once, 1);
	}
	if (begin(obj, mp, flags, &xml, &cookie1) < 0)
		return -1;
	dconn = virConnectOpen(dconnuri);
	if (!dconn) {
		report_peer(VIR_ERR_OPERATION_FAILED, "connecting");
		mark_clear(obj->def);
		goto out;
	}
	/* A cut link would leave Prepare, Finish and the destination's
	 * side of it hanging for TCP's 15 minutes: keepalive ends the
	 * connection within LINK_TIMEOUT_S as on the migration connection
	 * (libvirt's QEMU driver does the same, its keepalive_interval and
	 * _count from qemu.conf, 5 and 5). */
	if (virConnectSetKeepAlive(dconn, LINK_KEEPALIVE_S,
				   LINK_TIMEOUT_S / LINK_KEEPALIVE_S - 1) < 0) {
		report_peer(VIR_ERR_OPERATION_FAILED, "keepalive");
		mark_clear(obj->def);
		goto out;
	}
	if (virConnectSupportsFeature(dconn, 13) != 1) {
		drv_error_report(VIR_ERR_ARGUMENT_UNSUPPORTED,
				 "the destination %s does not support migration with parameters",
				 dconnuri);
		mark_clear(obj->def);
		goto out;
	}
	if (p2p_params(params, nparams, xml, NULL, &tp, &ntp) < 0)
		goto nomem;
	if (virDomainMigratePrepare3Params(dconn, tp, ntp, cookie1, strlen(cookie1), &cookie2,
					   &cookie2len, &uri_out, flags) < 0) {
		report_peer(VIR_ERR_OPERATION_FAILED, "Prepare");
		mark_clear(obj->def);
		goto out;
	}
	/* Where the destination listens (as the client library does in
	 * the managed case), else what the user gave. */
	virTypedParamsFree(tp, ntp);
	tp = NULL;
	ntp = 0;
	if (p2p_params(params, nparams, xml, uri_out ? uri_out : mp->uri, &tp, &ntp) < 0)
		goto nomem_prepared;
	maxtp = ntp;
	rc = perform(obj, uri_out ? uri_out : mp->uri, mp, flags);
	cancelled = rc < 0;
	if (!mp->dname &&
	    virTypedParamsAddString(&tp, &ntp, &maxtp, VIR_MIGRATE_PARAM_DEST_NAME,
				    obj->def->name) < 0)
		cancelled = true;
	/* The first error stays: Finish's, when cancelled, only says so. */
	cookie3 = cookie_make_stats(obj);
	ddom = virDomainMigrateFinish3Params(dconn, tp, ntp, cookie3, strlen(cookie3), &cookie4,
					     &cookie4len, flags, cancelled);
	if (!ddom) {
		if (!cancelled)
			report_peer(VIR_ERR_OPERATION_FAILED, "Finish");
		rc = -1;
	} else {
		virDomainFree(ddom);
	}
	if (!cancelled) {
		/* The source's end: stopped if the destination runs it,
		 * else resumed. */
		const struct drv_error *e = drv_error_last();
		struct drv_error keep = e ? *e : (struct drv_error){ 0 };

		drv_error_reset();
		if (confirm(obj, flags, ddom == NULL) < 0 && ddom)
			rc = -1;
		else if (!ddom)
			drv_error_report_full(keep.domain, keep.code, "%s", keep.message);
	}
	goto out;

nomem_prepared:
	/* What Prepare made there goes. */
	ddom = virDomainMigrateFinish3Params(dconn, tp, ntp, NULL, 0, &cookie4, &cookie4len, flags, 1);
	if (ddom)
		virDomainFree(ddom);
nomem:
	drv_error_report(VIR_ERR_NO_MEMORY, "out of memory");
	mark_clear(obj->def);
	rc = -1;
out:
	if (dconn)
		virConnectClose(dconn);
	virTypedParamsFree(tp, ntp);
	g_free(xml);
	g_free(cookie1);
	free(cookie2);
	free(cookie4);
	free(uri_out);
	return rc;
}

/* --- speed and downtime, kept per domain for the live mode --------------- */

struct tunables {
	uint64_t speed, downtime;
};

static GMutex tun_lock;
static GHashTable *tun_table;	/* uuid string -> struct tunables */

static struct tunables *tunables_locked(struct domain_obj *obj)
{
	char uuid[37];
	struct tunables *t;

	domain_uuid_format(obj->def->uuid, uuid);
	if (!tun_table)
		tun_table = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
	t = g_hash_table_lookup(tun_table, uuid);
	if (!t) {
		t = g_new(struct tunables, 1);
		t->speed = SPEED_DEFAULT;
		t->downtime = DOWNTIME_DEFAULT;
		g_hash_table_insert(tun_table, g_strdup(uuid), t);
	}
	return t;
}

static void tunables_get(struct domain_obj *obj, uint64_t *speed, uint64_t *downtime)
{
	struct tunables *t;

	g_mutex_lock(&tun_lock);
	t = tunables_locked(obj);
	*speed = t->speed;
	*downtime = t->downtime;
	g_mutex_unlock(&tun_lock);
}

/* Sets (SET) or reads the speed (SPEED) or downtime of DOM into *VAL. */
static int tunable(const remote_nonnull_domain *dom, bool speed, bool set, uint64_t *val)
{
	struct domain_obj *obj = wire_domain_get(dom);
	struct tunables *t;

	if (!obj)
		return -1;
	if (set && speed && *val > SPEED_DEFAULT) {
		drv_error_report(VIR_ERR_OVERFLOW, "bandwidth must be at most %llu MiB/s", SPEED_DEFAULT);
		domain_obj_unref(obj);
		return -1;
	}
	g_mutex_lock(&tun_lock);
	t = tunables_locked(obj);
	if (set && speed)
		t->speed = *val;
	else if (set)
		t->downtime = *val;
	else
		*val = speed ? t->speed : t->downtime;
	g_mutex_unlock(&tun_lock);
	domain_obj_unref(obj);
	return 0;
}

int drv_domain_migrate_set_max_speed(struct rpc_conn *conn, void *args, void *ret)
{
	remote_domain_migrate_set_max_speed_args *a = args;

	if (a->flags & VIR_DOMAIN_MIGRATE_MAX_SPEED_POSTCOPY) {
		drv_error_report(VIR_ERR_ARGUMENT_UNSUPPORTED,
				 "a separate post-copy speed is not supported: the migration's speed holds for post-copy's pushed pages too");
		return -1;
	}
	if (api_check_flags(a->flags, 0, "virDomainMigrateSetMaxSpeed") < 0)
		return -1;
	return tunable(&a->dom, true, true, &a->bandwidth);
}

int drv_domain_migrate_get_max_speed(struct rpc_conn *conn, void *args, void *ret)
{
	remote_domain_migrate_get_max_speed_args *a = args;
	remote_domain_migrate_get_max_speed_ret *r = ret;

	if (a->flags & VIR_DOMAIN_MIGRATE_MAX_SPEED_POSTCOPY) {
		drv_error_report(VIR_ERR_ARGUMENT_UNSUPPORTED,
				 "a separate post-copy speed is not supported: the migration's speed holds for post-copy's pushed pages too");
		return -1;
	}
	if (api_check_flags(a->flags, 0, "virDomainMigrateGetMaxSpeed") < 0)
		return -1;
	return tunable(&a->dom, true, false, &r->bandwidth);
}

int drv_domain_migrate_set_max_downtime(struct rpc_conn *conn, void *args, void *ret)
{
	remote_domain_migrate_set_max_downtime_args *a = args;

	if (api_check_flags(a->flags, 0, "virDomainMigrateSetMaxDowntime") < 0)
		return -1;
	return tunable(&a->dom, false, true, &a->downtime);
}

int drv_domain_migrate_get_max_downtime(struct rpc_conn *conn, void *args, void *ret)
{
	remote_domain_migrate_get_max_downtime_args *a = args;
	remote_domain_migrate_get_max_downtime_ret *r = ret;

	if (api_check_flags(a->flags, 0, "virDomainMigrateGetMaxDowntime") < 0)
		return -1;
	return tunable(&a->dom, false, false, &r->downtime);
}

/* virDomainMigrateStartPostCopy: the running pre-copy of a migration
 * started with VIR_MIGRATE_POSTCOPY switches to post-copy. */
int drv_domain_migrate_start_post_copy(struct rpc_conn *conn, void *args, void *ret)
{
	remote_domain_migrate_start_post_copy_args *a = args;
	struct domain_obj *obj;
	g_autofree char *path = NULL;
	bool allowed = false, in = false;
	int rc = -1;

	if (api_check_flags(a->flags, 0, "virDomainMigrateStartPostCopy") < 0)
		return -1;
	obj = wire_domain_get(&a->dom);
	if (!obj)
		return -1;
	if (!mark_postcopy(obj->def, &allowed, &in, false) || obj->id < 0) {
		drv_error_report(VIR_ERR_OPERATION_INVALID,
				 "post-copy can only be started while outgoing migration is in progress");
	} else if (!allowed) {
		drv_error_report(VIR_ERR_ARGUMENT_UNSUPPORTED,
				 "switching to post-copy requires migration to be started with the VIR_MIGRATE_POSTCOPY flag");
	} else if (in) {
		drv_error_report(VIR_ERR_OPERATION_INVALID, "post-copy already started");
	} else if ((path = process_api_path(obj))) {
		rc = monitor_migrate_postcopy(path);
	}
	domain_obj_unref(obj);
	return rc;
}
