/* Statistics of running domains, from /proc (proc_stat.c): vCPU info
 * (virsh vcpuinfo), memory (dommemstat), CPU time (cpu-stats --total),
 * and the all-domain statistics (domstats: state, cpu-total, balloon,
 * vcpu, interface and block groups); disks (domblkstat, domblkinfo) and
 * NICs (domifstat).  Nothing is estimated: a figure we
 * cannot measure is not reported, and what cannot be answered at all is
 * refused. */

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <sched.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libvirt/libvirt.h>

#include "domain_api.h"
#include "error.h"
#include "handlers.h"
#include "kvmm/disk_chain.h"
#include "kvmm/monitor.h"
#include "net/netdev.h"
#include "net/nics.h"
#include "kvmm/proc_stat.h"
#include "kvmm/process.h"
#include "remote_stats_xdr.h"

#define VIR_FROM_THIS VIR_FROM_DOMAIN

/* virConnectGetAllDomainStats groups we answer. */
#define GROUPS (VIR_DOMAIN_STATS_STATE | VIR_DOMAIN_STATS_CPU_TOTAL | VIR_DOMAIN_STATS_BALLOON | \
		VIR_DOMAIN_STATS_VCPU | VIR_DOMAIN_STATS_INTERFACE | VIR_DOMAIN_STATS_BLOCK)
#define LIST_FILTERS (VIR_CONNECT_GET_ALL_DOMAINS_STATS_ACTIVE | \
		      VIR_CONNECT_GET_ALL_DOMAINS_STATS_INACTIVE | \
		      VIR_CONNECT_GET_ALL_DOMAINS_STATS_PERSISTENT | \
		      VIR_CONNECT_GET_ALL_DOMAINS_STATS_TRANSIENT | \
		      VIR_CONNECT_GET_ALL_DOMAINS_STATS_RUNNING | \
		      VIR_CONNECT_GET_ALL_DOMAINS_STATS_PAUSED | \
		      VIR_CONNECT_GET_ALL_DOMAINS_STATS_SHUTOFF | \
		      VIR_CONNECT_GET_ALL_DOMAINS_STATS_OTHER)

/* Typed parameters, malloc'ed as xdr_free expects. */
struct params {
	remote_typed_param *v;
	unsigned n, cap;
};

static remote_typed_param *param(struct params *p, int type, const char *fmt, ...)
	G_GNUC_PRINTF(3, 4);
static remote_typed_param *param(struct params *p, int type, const char *fmt, ...)
{
	remote_typed_param *t;
	va_list ap;

	if (p->n == p->cap) {
		p->cap = p->cap ? p->cap * 2 : 16;
		p->v = realloc(p->v, p->cap * sizeof(*p->v));
		if (!p->v)
			g_error("out of memory");
	}
	t = &p->v[p->n++];
	memset(t, 0, sizeof(*t));
	va_start(ap, fmt);
	if (vasprintf(&t->field, fmt, ap) < 0)
		g_error("out of memory");
	va_end(ap);
	t->value.type = type;
	return t;
}

#define ULL(p, val, ...) (param((p), VIR_TYPED_PARAM_ULLONG, __VA_ARGS__)->value.remote_typed_param_value_u.ul = (val))
#define INT(p, val, ...) (param((p), VIR_TYPED_PARAM_INT, __VA_ARGS__)->value.remote_typed_param_value_u.i = (val))
#define UINT(p, val, ...) (param((p), VIR_TYPED_PARAM_UINT, __VA_ARGS__)->value.remote_typed_param_value_u.ui = (val))

/* The running domain's kvmm pid, or 0 after reporting. */
static pid_t running_pid(struct domain_obj *obj)
{
	pid_t pid = process_pid(obj);

	if (!pid)
		drv_error_report(VIR_ERR_OPERATION_INVALID, "domain is not running");
	return pid;
}

int drv_domain_get_vcpus(struct rpc_conn *conn, void *args, void *ret)
{
	remote_domain_get_vcpus_args *a = args;
	remote_domain_get_vcpus_ret *r = ret;
	struct domain_obj *obj;
	pid_t pid, *tids;
	unsigned n;
	int rc = -1;

	/* CLIENT: both counts size what we send back; libvirt's limits. */
	if (a->maxinfo < 0 || a->maxinfo > REMOTE_VCPUINFO_MAX || a->maplen < 0 ||
	    (long long)a->maxinfo * a->maplen > REMOTE_CPUMAPS_MAX) {
		drv_error_report(VIR_ERR_RPC, "%s", "vCPU info or map buffer length exceeds maximum");
		return -1;
	}
	if (!(obj = wire_domain_get(&a->dom)))
		return -1;
	if (!(pid = running_pid(obj)))
		goto out;
	/* The guest's vCPUs now (vCPU hotplug), ids from 0. */
	n = MIN(obj->def->vcpus_current, (unsigned)a->maxinfo);
	tids = g_new0(pid_t, obj->def->vcpus);
	proc_vcpu_tids(pid, tids, obj->def->vcpus);
	r->info.info_val = calloc(MAX(n, 1), sizeof(*r->info.info_val));
	r->cpumaps.cpumaps_val = calloc(MAX((size_t)n * a->maplen, 1), 1);
	if (!r->info.info_val || !r->cpumaps.cpumaps_val)
		g_error("out of memory");
	r->info.info_len = n;
	r->cpumaps.cpumaps_len = n * a->maplen;
	for (unsigned i = 0; i < n; i++) {
		remote_vcpu_info *v = &r->info.info_val[i];
		struct proc_times t;
		cpu_set_t set;

		v->number = i;
		v->cpu = -1;
		if (!tids[i] || proc_times(pid, tids[i], &t) < 0) {
			v->state = VIR_VCPU_OFFLINE;
			continue;
		}
		v->state = VIR_VCPU_RUNNING;
		v->cpu_time = t.user_ns + t.system_ns;
		v->cpu = t.cpu;
		if (sched_getaffinity(tids[i], sizeof(set), &set) == 0)
			for (int c = 0; c < a->maplen * 8 && c < CPU_SETSIZE; c++)
				if (CPU_ISSET(c, &set))
					r->cpumaps.cpumaps_val[i * a->maplen + c / 8] |= 1 << (c % 8);
	}
	g_free(tids);
	rc = 0;
out:
	domain_obj_unref(obj);
	return rc;
}

#define STAT(r, max, t, v) do { \
		if ((r)->stats.stats_len < (max)) { \
			(r)->stats.stats_val[(r)->stats.stats_len].tag = (t); \
			(r)->stats.stats_val[(r)->stats.stats_len++].val = (v); \
		} \
	} while (0)

/* dommemstat's balloon figures: without a balloon the guest has all of
 * its memory ("actual"); with one, what kvmm's balloon says (bytes there,
 * KiB here as libvirt's qemu driver gives them) and the statistics the
 * guest gave, in libvirt's tag order. */
static int balloon_stats(struct domain_obj *obj, remote_domain_memory_stats_ret *r,
			 unsigned max)
{
	static const int tags[KVMM_BALLOON_NSTATS] = {
		VIR_DOMAIN_MEMORY_STAT_SWAP_IN, VIR_DOMAIN_MEMORY_STAT_SWAP_OUT,
		VIR_DOMAIN_MEMORY_STAT_MAJOR_FAULT, VIR_DOMAIN_MEMORY_STAT_MINOR_FAULT,
		VIR_DOMAIN_MEMORY_STAT_UNUSED, VIR_DOMAIN_MEMORY_STAT_AVAILABLE,
		VIR_DOMAIN_MEMORY_STAT_USABLE, VIR_DOMAIN_MEMORY_STAT_DISK_CACHES,
		VIR_DOMAIN_MEMORY_STAT_LAST_UPDATE,
	};
	/* Which are sizes (KiB here) rather than counts or a time. */
	static const bool bytes[KVMM_BALLOON_NSTATS] = { 1, 1, 0, 0, 1, 1, 1, 1, 0 };
	g_autofree char *path = NULL;
	struct kvmm_balloon b;
	bool balloon;

	g_mutex_lock(&obj->lock);
	balloon = obj->def->balloon_model == BALLOON_VIRTIO;
	unsigned long long cur = obj->def->current_memory_kib;
	g_mutex_unlock(&obj->lock);
	if (!balloon) {
		STAT(r, max, VIR_DOMAIN_MEMORY_STAT_ACTUAL_BALLOON, cur);
		return 0;
	}
	if (!(path = process_api_path(obj)) || monitor_query_balloon(path, &b) < 0)
		return -1;
	const uint64_t *v = &b.swap_in;

	for (int k = 0; k < KVMM_BALLOON_NSTATS; k++)
		if (b.have & (1u << k))
			STAT(r, max, tags[k], bytes[k] ? v[k] / 1024 : v[k]);
	STAT(r, max, VIR_DOMAIN_MEMORY_STAT_ACTUAL_BALLOON, b.actual / 1024);
	return 0;
}

int drv_domain_memory_stats(struct rpc_conn *conn, void *args, void *ret)
{
	remote_domain_memory_stats_args *a = args;
	remote_domain_memory_stats_ret *r = ret;
	struct domain_obj *obj;
	long long rss;
	pid_t pid;
	int rc = -1;

	if (api_check_flags(a->flags, 0, "virDomainMemoryStats") < 0)
		return -1;
	if (a->maxStats > REMOTE_DOMAIN_MEMORY_STATS_MAX) {
		drv_error_report(VIR_ERR_RPC, "%s", "too many memory stats requested");
		return -1;
	}
	if (!(obj = wire_domain_get(&a->dom)))
		return -1;
	if (!(pid = running_pid(obj)))
		goto out;
	r->stats.stats_val = calloc(KVMM_BALLOON_NSTATS + 2, sizeof(*r->stats.stats_val));
	if (!r->stats.stats_val)
		g_error("out of memory");
	if (balloon_stats(obj, r, a->maxStats) < 0) {
		free(r->stats.stats_val);
		r->stats.stats_val = NULL;
		r->stats.stats_len = 0;
		goto out;
	}
	/* The host pays for what kvmm has resident (guest pages it touched). */
	rss = proc_rss_kib(pid);
	if (rss >= 0 && r->stats.stats_len < a->maxStats) {
		r->stats.stats_val[r->stats.stats_len].tag = VIR_DOMAIN_MEMORY_STAT_RSS;
		r->stats.stats_val[r->stats.stats_len++].val = rss;
	}
	rc = 0;
out:
	domain_obj_unref(obj);
	return rc;
}

int drv_domain_get_cpu_stats(struct rpc_conn *conn, void *args, void *ret)
{
	remote_domain_get_cpu_stats_args *a = args;
	remote_domain_get_cpu_stats_ret *r = ret;
	struct params p = { 0 };
	struct domain_obj *obj;
	struct proc_times t;
	pid_t pid;
	int rc = -1;

	if (api_check_flags(a->flags, 0, "virDomainGetCPUStats") < 0)
		return -1;
	/* Per host CPU, a process's time is not kept anywhere we can read
	 * (libvirt takes it from cgroup cpuacct): refused, not invented. */
	if (a->start_cpu != -1) {
		drv_error_report(VIR_ERR_OPERATION_UNSUPPORTED, "%s",
				 "per-CPU statistics are not available from kvmm; ask for the total (virsh cpu-stats --total)");
		return -1;
	}
	if (a->ncpus != 1 || a->nparams > REMOTE_DOMAIN_CPU_STATS_MAX) {
		drv_error_report(VIR_ERR_INVALID_ARG, "%s", "the domain total needs ncpus 1");
		return -1;
	}
	if (!(obj = wire_domain_get(&a->dom)))
		return -1;
	if (!(pid = running_pid(obj)))
		goto out;
	if (a->nparams == 0) {
		r->nparams = 3;		/* how many the client may ask for */
		rc = 0;
		goto out;
	}
	if (proc_times(pid, -1, &t) < 0) {
		drv_error_report(VIR_ERR_OPERATION_FAILED, "cannot read the CPU time of kvmm (pid %ld)",
				 (long)pid);
		goto out;
	}
	ULL(&p, t.user_ns + t.system_ns, "%s", VIR_DOMAIN_CPU_STATS_CPUTIME);
	if (a->nparams > 1)
		ULL(&p, t.user_ns, "%s", VIR_DOMAIN_CPU_STATS_USERTIME);
	if (a->nparams > 2)
		ULL(&p, t.system_ns, "%s", VIR_DOMAIN_CPU_STATS_SYSTEMTIME);
	r->params.params_val = p.v;
	r->params.params_len = p.n;
	r->nparams = p.n;
	rc = 0;
out:
	domain_obj_unref(obj);
	return rc;
}

static int query_block_stats(struct domain_obj *obj, struct kvmm_blk_stats **stats, size_t *n);

/* The block group: each disk's name and source, and while it runs,
 * kvmm's counters. */
static void block_params(struct domain_obj *obj, pid_t pid, struct params *p)
{
	g_autofree struct kvmm_blk_stats *all = NULL;
	size_t n = 0;

	if (pid)
		query_block_stats(obj, &all, &n);
	drv_error_reset();	/* no counters is not the caller's error */
	UINT(p, obj->def->ndisks, "block.count");
	for (size_t i = 0; i < obj->def->ndisks; i++) {
		const struct kvmm_blk_stats *d = i < n ? &all[i] : NULL;
		remote_typed_param *t;

		t = param(p, VIR_TYPED_PARAM_STRING, "block.%zu.name", i);
		t->value.remote_typed_param_value_u.s = strdup(obj->def->disks[i].target);
		t = param(p, VIR_TYPED_PARAM_STRING, "block.%zu.path", i);
		t->value.remote_typed_param_value_u.s = strdup(obj->def->disks[i].source);
		if (!d)
			continue;
		ULL(p, d->rd_reqs, "block.%zu.rd.reqs", i);
		ULL(p, d->rd_bytes, "block.%zu.rd.bytes", i);
		ULL(p, d->wr_reqs, "block.%zu.wr.reqs", i);
		ULL(p, d->wr_bytes, "block.%zu.wr.bytes", i);
		ULL(p, d->fl_reqs, "block.%zu.fl.reqs", i);
		ULL(p, d->rd_time_ns, "block.%zu.rd.times", i);
		ULL(p, d->wr_time_ns, "block.%zu.wr.times", i);
		ULL(p, d->fl_time_ns, "block.%zu.fl.times", i);
	}
}

/* A NIC's counters as the guest sees them: the host's view of its tap,
 * swapped (what the host receives, the guest sent), as libvirt does for
 * taps.  The tap's counters, not kvmm's: they are what libvirt reports, and
 * they count every frame that crossed, including those the host dropped. */
static int nic_stats(const char *tap, struct netdev_stats *guest)
{
	struct netdev_stats host;

	if (netdev_stats(tap, &host) < 0)
		return -1;
	*guest = (struct netdev_stats){ host.tx_bytes, host.tx_packets, host.tx_errs, host.tx_drop,
					host.rx_bytes, host.rx_packets, host.rx_errs, host.rx_drop };
	return 0;
}

/* The interface group: each NIC's tap and counters while it runs (none
 * while shut off: there is no tap then). */
static void net_params(struct domain_obj *obj, pid_t pid, struct params *p)
{
	g_auto(GStrv) taps = NULL;
	unsigned n = 0;

	g_mutex_lock(&obj->lock);
	if (pid) {
		taps = g_new0(char *, obj->def->nnets + 1);
		for (size_t i = 0; i < obj->def->nnets; i++)
			if (obj->def->nets[i].ifname)
				taps[n++] = g_strdup(obj->def->nets[i].ifname);
	}
	g_mutex_unlock(&obj->lock);
	UINT(p, n, "net.count");
	for (unsigned i = 0; i < n; i++) {
		struct netdev_stats st;
		remote_typed_param *t;

		t = param(p, VIR_TYPED_PARAM_STRING, "net.%u.name", i);
		t->value.remote_typed_param_value_u.s = strdup(taps[i]);
		if (nic_stats(taps[i], &st) < 0) {
			drv_error_reset();
			continue;
		}
		ULL(p, st.rx_bytes, "net.%u.rx.bytes", i);
		ULL(p, st.rx_packets, "net.%u.rx.pkts", i);
		ULL(p, st.rx_errs, "net.%u.rx.errs", i);
		ULL(p, st.rx_drop, "net.%u.rx.drop", i);
		ULL(p, st.tx_bytes, "net.%u.tx.bytes", i);
		ULL(p, st.tx_packets, "net.%u.tx.pkts", i);
		ULL(p, st.tx_errs, "net.%u.tx.errs", i);
		ULL(p, st.tx_drop, "net.%u.tx.drop", i);
	}
}

/* domstats' balloon group: with a balloon, kvmm's figures (actual as
 * balloon.current) and the guest's statistics under libvirt's names;
 * without, the definition's size. */
static void balloon_group(struct domain_obj *obj, pid_t pid, struct params *p)
{
	static const char *const names[KVMM_BALLOON_NSTATS] = {
		"balloon.swap_in", "balloon.swap_out", "balloon.major_fault",
		"balloon.minor_fault", "balloon.unused", "balloon.available", "balloon.usable",
		"balloon.disk_caches", "balloon.last-update",
	};
	static const bool bytes[KVMM_BALLOON_NSTATS] = { 1, 1, 0, 0, 1, 1, 1, 1, 0 };
	g_autofree char *path = NULL;
	struct kvmm_balloon b;
	bool have = false;

	g_mutex_lock(&obj->lock);
	unsigned long long cur = obj->def->current_memory_kib, max = obj->def->memory_kib;
	bool balloon = obj->def->balloon_model == BALLOON_VIRTIO;
	g_mutex_unlock(&obj->lock);
	if (pid && balloon) {
		/* A statistic that cannot be read is left out, not an error. */
		have = (path = process_api_path(obj)) && monitor_query_balloon(path, &b) == 0;
		if (!have)
			drv_error_reset();
	}
	ULL(p, have ? b.actual / 1024 : cur, "balloon.current");
	ULL(p, max, "balloon.maximum");
	if (have) {
		const uint64_t *v = &b.swap_in;

		for (int k = 0; k < KVMM_BALLOON_NSTATS; k++)
			if (b.have & (1u << k))
				ULL(p, bytes[k] ? v[k] / 1024 : v[k], "%s", names[k]);
	}
	if (pid) {
		long long rss = proc_rss_kib(pid);

		if (rss >= 0)
			ULL(p, rss, "balloon.rss");
	}
}

/* One domain's record for GET_ALL_DOMAIN_STATS. */
static void domain_record(struct domain_obj *obj, unsigned groups, remote_domain_stats_record *rec)
{
	struct params p = { 0 };
	pid_t pid = process_pid(obj);
	int state, reason;
	unsigned vcpus, vcpus_max;

	g_mutex_lock(&obj->lock);
	state = obj->state;
	reason = obj->reason;
	vcpus = obj->def->vcpus_current;
	vcpus_max = obj->def->vcpus;
	g_mutex_unlock(&obj->lock);
	wire_domain_make(obj, &rec->dom);
	if (groups & VIR_DOMAIN_STATS_STATE) {
		INT(&p, state, "state.state");
		INT(&p, reason, "state.reason");
	}
	if ((groups & VIR_DOMAIN_STATS_CPU_TOTAL) && pid) {
		struct proc_times t;

		if (proc_times(pid, -1, &t) == 0) {
			ULL(&p, t.user_ns + t.system_ns, "cpu.time");
			ULL(&p, t.user_ns, "cpu.user");
			ULL(&p, t.system_ns, "cpu.system");
		}
	}
	if (groups & VIR_DOMAIN_STATS_BALLOON)
		balloon_group(obj, pid, &p);
	if (groups & VIR_DOMAIN_STATS_VCPU) {
		UINT(&p, vcpus, "vcpu.current");
		UINT(&p, vcpus_max, "vcpu.maximum");
		if (pid) {
			pid_t *tids = g_new0(pid_t, vcpus);

			proc_vcpu_tids(pid, tids, vcpus);
			for (unsigned i = 0; i < vcpus; i++) {
				struct proc_times t;

				if (!tids[i] || proc_times(pid, tids[i], &t) < 0)
					continue;
				INT(&p, VIR_VCPU_RUNNING, "vcpu.%u.state", i);
				ULL(&p, t.user_ns + t.system_ns, "vcpu.%u.time", i);
			}
			g_free(tids);
		}
	}
	if (groups & VIR_DOMAIN_STATS_INTERFACE)
		net_params(obj, pid, &p);
	if (groups & VIR_DOMAIN_STATS_BLOCK)
		block_params(obj, pid, &p);
	rec->params.params_val = p.v;
	rec->params.params_len = p.n;
}

/* The stats list filters are libvirt's listAllDomains filters, bit for bit. */
G_STATIC_ASSERT((unsigned)VIR_CONNECT_GET_ALL_DOMAINS_STATS_ACTIVE == (unsigned)VIR_CONNECT_LIST_DOMAINS_ACTIVE &&
		(unsigned)VIR_CONNECT_GET_ALL_DOMAINS_STATS_INACTIVE == (unsigned)VIR_CONNECT_LIST_DOMAINS_INACTIVE &&
		(unsigned)VIR_CONNECT_GET_ALL_DOMAINS_STATS_PERSISTENT == (unsigned)VIR_CONNECT_LIST_DOMAINS_PERSISTENT &&
		(unsigned)VIR_CONNECT_GET_ALL_DOMAINS_STATS_TRANSIENT == (unsigned)VIR_CONNECT_LIST_DOMAINS_TRANSIENT &&
		(unsigned)VIR_CONNECT_GET_ALL_DOMAINS_STATS_RUNNING == (unsigned)VIR_CONNECT_LIST_DOMAINS_RUNNING &&
		(unsigned)VIR_CONNECT_GET_ALL_DOMAINS_STATS_PAUSED == (unsigned)VIR_CONNECT_LIST_DOMAINS_PAUSED &&
		(unsigned)VIR_CONNECT_GET_ALL_DOMAINS_STATS_SHUTOFF == (unsigned)VIR_CONNECT_LIST_DOMAINS_SHUTOFF &&
		(unsigned)VIR_CONNECT_GET_ALL_DOMAINS_STATS_OTHER == (unsigned)VIR_CONNECT_LIST_DOMAINS_OTHER);

int drv_connect_get_all_domain_stats(struct rpc_conn *conn, void *args, void *ret)
{
	remote_connect_get_all_domain_stats_args *a = args;
	remote_connect_get_all_domain_stats_ret *r = ret;
	unsigned groups = a->stats ? a->stats : GROUPS;
	g_autoptr(GPtrArray) objs = g_ptr_array_new_with_free_func((GDestroyNotify)domain_obj_unref);

	if (api_check_flags(a->flags, LIST_FILTERS | VIR_CONNECT_GET_ALL_DOMAINS_STATS_ENFORCE_STATS |
			    VIR_CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT | VIR_CONNECT_GET_ALL_DOMAINS_STATS_BACKING,
			    "virConnectGetAllDomainStats") < 0)
		return -1;
	/* Groups we cannot answer: an error if the client insists, else
	 * left out, as libvirt does. */
	if ((a->stats & ~GROUPS) && (a->flags & VIR_CONNECT_GET_ALL_DOMAINS_STATS_ENFORCE_STATS)) {
		drv_error_report(VIR_ERR_ARGUMENT_UNSUPPORTED, "Stats types bits 0x%x are not supported by kvmm",
				 a->stats & ~GROUPS);
		return -1;
	}
	groups &= GROUPS;
	if (a->doms.doms_len) {
		/* Named domains: filters do not apply, as in libvirt. */
		for (unsigned i = 0; i < a->doms.doms_len; i++) {
			struct domain_obj *obj = wire_domain_get(&a->doms.doms_val[i]);

			if (!obj)
				return -1;
			g_ptr_array_add(objs, obj);
		}
	} else {
		g_autoptr(GPtrArray) all = domain_list();

		for (guint i = 0; i < all->len; i++) {
			struct domain_obj *obj = g_ptr_array_index(all, i);

			if (list_domain_matches(obj, a->flags & LIST_FILTERS))
				g_ptr_array_add(objs, domain_obj_ref(obj));
		}
	}
	r->retStats.retStats_val = calloc(MAX(objs->len, 1), sizeof(*r->retStats.retStats_val));
	if (!r->retStats.retStats_val)
		g_error("out of memory");
	r->retStats.retStats_len = objs->len;
	for (guint i = 0; i < objs->len; i++)
		domain_record(g_ptr_array_index(objs, i), groups, &r->retStats.retStats_val[i]);
	return 0;
}

/* api_disk_index, reporting a disk that is not there; -1 after reporting. */
static int disk_index(const struct domain_def *def, const char *name)
{
	int i = api_disk_index(def, name);

	if (i < 0)
		drv_error_report(VIR_ERR_INVALID_ARG, "invalid path: %s", name);
	return i;
}

/* kvmm's counters of every disk, in disk order: 0, or -1 after
 * reporting. */
static int query_block_stats(struct domain_obj *obj, struct kvmm_blk_stats **stats, size_t *n)
{
	g_autofree char *api = process_api_path(obj);

	*stats = NULL;
	*n = 0;
	return api ? monitor_block_stats(api, stats, n) : -1;
}

/* Disk I's counters among N from kvmm; NULL after reporting. */
static const struct kvmm_blk_stats *disk_stats(const struct kvmm_blk_stats *all, size_t n, int i)
{
	if ((size_t)i >= n) {
		drv_error_report(VIR_ERR_OPERATION_FAILED, "kvmm reports no disk %d", i);
		return NULL;
	}
	return &all[i];
}

int drv_domain_block_stats(struct rpc_conn *conn, void *args, void *ret)
{
	remote_domain_block_stats_args *a = args;
	remote_domain_block_stats_ret *r = ret;
	g_autofree struct kvmm_blk_stats *all = NULL;
	const struct kvmm_blk_stats *d;
	struct domain_obj *obj;
	size_t n;
	int i, rc = -1;

	if (!(obj = wire_domain_get(&a->dom)))
		return -1;
	if (!running_pid(obj) || (i = disk_index(obj->def, a->path)) < 0 ||
	    query_block_stats(obj, &all, &n) < 0 || !(d = disk_stats(all, n, i)))
		goto out;
	r->rd_req = (int64_t)d->rd_reqs;
	r->rd_bytes = (int64_t)d->rd_bytes;
	r->wr_req = (int64_t)d->wr_reqs;
	r->wr_bytes = (int64_t)d->wr_bytes;
	r->errs = (int64_t)d->errors;
	rc = 0;
out:
	domain_obj_unref(obj);
	return rc;
}

/* virsh domblkstat's first choice: every counter kvmm keeps, as
 * libvirt's named typed parameters. */
int drv_domain_block_stats_flags(struct rpc_conn *conn, void *args, void *ret)
{
#define F(name) offsetof(struct kvmm_blk_stats, name)
	static const struct { const char *field; size_t off; } map[] = {
		{ VIR_DOMAIN_BLOCK_STATS_READ_REQ, F(rd_reqs) },
		{ VIR_DOMAIN_BLOCK_STATS_READ_BYTES, F(rd_bytes) },
		{ VIR_DOMAIN_BLOCK_STATS_READ_TOTAL_TIMES, F(rd_time_ns) },
		{ VIR_DOMAIN_BLOCK_STATS_WRITE_REQ, F(wr_reqs) },
		{ VIR_DOMAIN_BLOCK_STATS_WRITE_BYTES, F(wr_bytes) },
		{ VIR_DOMAIN_BLOCK_STATS_WRITE_TOTAL_TIMES, F(wr_time_ns) },
		{ VIR_DOMAIN_BLOCK_STATS_FLUSH_REQ, F(fl_reqs) },
		{ VIR_DOMAIN_BLOCK_STATS_FLUSH_TOTAL_TIMES, F(fl_time_ns) },
		{ VIR_DOMAIN_BLOCK_STATS_ERRS, F(errors) },
	};
#undef F
	remote_domain_block_stats_flags_args *a = args;
	remote_domain_block_stats_flags_ret *r = ret;
	g_autofree struct kvmm_blk_stats *all = NULL;
	const struct kvmm_blk_stats *d;
	struct params p = { 0 };
	struct domain_obj *obj;
	size_t n;
	int i, rc = -1;

	if (api_check_flags(a->flags, VIR_TYPED_PARAM_STRING_OKAY, "virDomainBlockStatsFlags") < 0)
		return -1;
	/* CLIENT: nparams is only a count of what the caller can take. */
	if (a->nparams < 0 || a->nparams > REMOTE_DOMAIN_BLOCK_STATS_PARAMETERS_MAX) {
		drv_error_report(VIR_ERR_RPC, "nparams %d is out of range", a->nparams);
		return -1;
	}
	if (!(obj = wire_domain_get(&a->dom)))
		return -1;
	if (!running_pid(obj) || (i = disk_index(obj->def, a->path)) < 0)
		goto out;
	if (a->nparams == 0) {		/* the caller asks how many */
		r->nparams = G_N_ELEMENTS(map);
		rc = 0;
		goto out;
	}
	if (query_block_stats(obj, &all, &n) < 0 || !(d = disk_stats(all, n, i)))
		goto out;
	for (size_t k = 0; k < G_N_ELEMENTS(map) && p.n < (unsigned)a->nparams; k++)
		param(&p, VIR_TYPED_PARAM_LLONG, "%s", map[k].field)->value.remote_typed_param_value_u.l =
			(int64_t)*(const uint64_t *)((const char *)d + map[k].off);
	r->params.params_val = p.v;
	r->params.params_len = p.n;
	r->nparams = p.n;
	rc = 0;
out:
	domain_obj_unref(obj);
	return rc;
}

int drv_domain_get_block_info(struct rpc_conn *conn, void *args, void *ret)
{
	remote_domain_get_block_info_args *a = args;
	remote_domain_get_block_info_ret *r = ret;
	g_autofree char *path = NULL;
	struct domain_obj *obj;
	struct stat st;
	bool qcow2 = false;
	int i, fd, rc = -1;

	if (api_check_flags(a->flags, 0, "virDomainGetBlockInfo") < 0)
		return -1;
	if (!(obj = wire_domain_get(&a->dom)))
		return -1;
	g_mutex_lock(&obj->lock);
	i = disk_index(obj->def, a->path);
	if (i >= 0) {
		path = g_strdup(obj->def->disks[i].source);
		qcow2 = obj->def->disks[i].format == FORMAT_QCOW2;
	}
	g_mutex_unlock(&obj->lock);
	if (!path)
		goto out;
	/* Raw images: capacity is the size; allocation what the host holds.
	 * qcow2 images: capacity is the disk's size in the header.
	 * CLIENT: a read-only caller chooses when this runs, on whatever the
	 * definition names: only a regular file or a block device is opened,
	 * without blocking (O_NONBLOCK: a FIFO would wait for a writer), and
	 * what was opened is checked again. */
	if (stat(path, &st) < 0) {
		drv_error_report(VIR_ERR_OPERATION_FAILED, "cannot stat disk source '%s': %s", path,
				 g_strerror(errno));
		goto out;
	}
	fd = S_ISREG(st.st_mode) || S_ISBLK(st.st_mode)
		     ? open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC) : -1;
	if (fd >= 0 && (fstat(fd, &st) < 0 || !(S_ISREG(st.st_mode) || S_ISBLK(st.st_mode)))) {
		close(fd);
		fd = -1;
		errno = EINVAL;
	}
	if (fd < 0) {
		if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
			drv_error_report(VIR_ERR_OPERATION_FAILED,
					 "disk source '%s' is not a regular file or a block device", path);
		else
			drv_error_report(VIR_ERR_OPERATION_FAILED, "cannot open disk source '%s': %s",
					 path, g_strerror(errno));
		goto out;
	}
	if (S_ISBLK(st.st_mode)) {
		uint64_t size = 0;

		ioctl(fd, BLKGETSIZE64, &size);
		r->capacity = r->physical = r->allocation = size;
	} else {
		r->capacity = r->physical = st.st_size;
		r->allocation = (uint64_t)st.st_blocks * 512;
		if (qcow2)
			disk_chain_qcow2_size(fd, &r->capacity);
	}
	close(fd);
	rc = 0;
out:
	domain_obj_unref(obj);
	return rc;
}

int drv_domain_interface_stats(struct rpc_conn *conn, void *args, void *ret)
{
	remote_domain_interface_stats_args *a = args;
	remote_domain_interface_stats_ret *r = ret;
	g_autofree char *tap = NULL;
	struct domain_obj *obj;
	struct netdev_stats st;
	int i, rc = -1;

	if (!(obj = wire_domain_get(&a->dom)))
		return -1;
	if (!running_pid(obj))
		goto out;
	g_mutex_lock(&obj->lock);
	i = nics_find(obj->def, a->device);
	if (i >= 0)
		tap = g_strdup(obj->def->nets[i].ifname);
	g_mutex_unlock(&obj->lock);
	if (i < 0)
		goto out;
	if (!tap || nic_stats(tap, &st) < 0) {
		drv_error_report(VIR_ERR_OPERATION_FAILED, "interface '%s' has no tap to count", a->device);
		goto out;
	}
	r->rx_bytes = (int64_t)st.rx_bytes;
	r->rx_packets = (int64_t)st.rx_packets;
	r->rx_errs = (int64_t)st.rx_errs;
	r->rx_drop = (int64_t)st.rx_drop;
	r->tx_bytes = (int64_t)st.tx_bytes;
	r->tx_packets = (int64_t)st.tx_packets;
	r->tx_errs = (int64_t)st.tx_errs;
	r->tx_drop = (int64_t)st.tx_drop;
	rc = 0;
out:
	domain_obj_unref(obj);
	return rc;
}
