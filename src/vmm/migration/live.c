/* Live migration, the source's side (live.h).
 *
 * The copy runs on a thread of its own: its writes block for as long as
 * the connection makes them, and a thread keeps that off the main loop
 * (devices, the control socket) without making every write a state
 * machine of partial sends.  The thread only reads guest memory, takes
 * dirty bits (KVM's log and kvmm's own bitmap, both atomic) and writes
 * the stream; every VM state change stays on the main thread, which the
 * thread wakes through an eventfd when it is done.  The switchover runs
 * on the main thread too: the vCPUs parked and no device running, the
 * last pages and the state are exactly what the destination must see. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "api.h"
#include "block/block.h"
#include "live.h"
#include "log.h"
#include "loop.h"
#include "migration.h"
#include "devices/cpu_hotplug.h"
#include "pci/hotplug.h"
#include "postcopy.h"
#include "sandbox.h"
#include "util.h"
#include "vm.h"

/* Rounds before the switchover whatever the dirty set (a guest that
 * dirties faster than the link sends never converges). */
#define LIVE_MAX_ROUNDS		30
/* Pages per PAGES section: small enough that a cancel or a bandwidth
 * limit acts within a few ms, large enough to keep writes big. */
#define LIVE_SECTION_PAGES	256
/* Manual protect: the pages protected again (KVM_CLEAR_DIRTY_LOG) just
 * before they are read, 1 MiB at a time. */
#define LIVE_CLEAR_PAGES	256
/* A destination that stops reading during the switchover must not hold
 * the paused VM (and the main loop) for ever. */
#define LIVE_SWITCH_TIMEOUT_S	30
/* Auto-converge, as QEMU's: after two rounds in a row that dirtied more
 * than half of what they sent, the vCPUs are throttled, from 20% up by
 * 10% each round that still does not converge, to 90% at most. */
#define LIVE_THROTTLE_FIRST	20
#define LIVE_THROTTLE_STEP	10
#define LIVE_THROTTLE_MAX	90
#define LIVE_THROTTLE_SLICE_NS	10000000ULL

struct live {
	struct vm *vm;
	pthread_t thread;
	bool thread_running;
	int fd;
	char *uri;
	char *config;		/* the stream's, taken on the main thread */
	int done_fd;			/* eventfd: the thread finished */
	atomic_bool cancel;

	pthread_mutex_t lock;		/* everything below */
	struct live_info info;
	uint64_t t_start;

	/* The thread's result, read by the main thread after the join. */
	int result;
	char err[256];
	struct stream_writer w;
	uint8_t *pending;		/* dirty pages the rounds left to send */
	uint64_t last_kick;		/* throttling: when the vCPUs last were */

	/* Post-copy: after the first round unless it converged, or when
	 * migrate-postcopy asks (go_postcopy, read by the thread). */
	bool postcopy;
	atomic_bool go_postcopy;
	bool switch_postcopy;		/* the rounds ended for a post-copy */
	bool in_postcopy;		/* the destination runs the guest */
	bool lost;			/* a post-copy failed: the guest is lost */
	uint8_t *pc_pending;		/* pages post-copy still sends */
	uint64_t pc_t0, pc_off0;	/* its start: time, stream offset */
};

static struct live the_live = {
	.fd = -1, .done_fd = -1, .lock = PTHREAD_MUTEX_INITIALIZER,
	.info = { .max_downtime_ms = LIVE_DEFAULT_DOWNTIME_MS, .auto_converge = true },
};

const char *live_status_name(enum live_status s)
{
	static const char *const names[] = { "none", "active", "completed", "failed", "cancelled",
					     "postcopy-active" };

	return s <= LIVE_POSTCOPY ? names[s] : "none";
}

static uint64_t ms_since(uint64_t t)
{
	return (now_ns() - t) / 1000000;
}

static uint64_t popcount_bm(const uint8_t *bm, uint64_t npages)
{
	uint64_t i, n = 0;

	for (i = 0; i < (npages + 7) / 8; i++)
		n += __builtin_popcount(bm[i]);
	return n;
}

/* The pages written since the last call: the guest's (KVM) and kvmm's. */
static int take_dirty(struct vm *vm, uint8_t *bm)
{
	int r = kvm_take_dirty(vm, bm);

	guest_mem_take_dirty(&vm->mem, bm);
	return r;
}

static void set_stats(struct live *l, uint64_t remaining)
{
	pthread_mutex_lock(&l->lock);
	l->info.transferred_bytes = l->w.off;
	l->info.remaining_bytes = remaining;
	pthread_mutex_unlock(&l->lock);
}

/* Keeps to bandwidth_mibps (0: no limit) over the whole migration. */
static void set_throttle(struct live *l, unsigned int pct)
{
	__atomic_store_n(&l->vm->throttle_pct, pct, __ATOMIC_RELAXED);
	pthread_mutex_lock(&l->lock);
	l->info.cpu_throttle_pct = pct;
	pthread_mutex_unlock(&l->lock);
}

/* Throttled vCPUs sleep only when they come out of KVM_RUN: out with
 * them every slice. */
static void throttle_kick(struct live *l)
{
	struct vm *vm = l->vm;
	unsigned int i;

	if (!__atomic_load_n(&vm->throttle_pct, __ATOMIC_RELAXED) ||
	    now_ns() - l->last_kick < LIVE_THROTTLE_SLICE_NS)
		return;
	l->last_kick = now_ns();
	for (i = 0; i < vm->ncpus; i++)
		vcpu_kick(&vm->vcpus[i]);
}

static void pace(struct live *l, uint64_t t0, uint64_t sent0)
{
	uint64_t bw, due_ns, el;

	pthread_mutex_lock(&l->lock);
	bw = l->info.bandwidth_mibps;
	pthread_mutex_unlock(&l->lock);
	if (!bw)
		return;
	due_ns = (l->w.off - sent0) * 1000000000ULL / (bw << 20);
	el = now_ns() - t0;
	if (due_ns > el) {
		uint64_t d = MIN(due_ns - el, 100000000ULL);
		struct timespec ts = { d / 1000000000ULL, d % 1000000000ULL };

		nanosleep(&ts, NULL);
	}
}

/* 0 once bm is sent, 1 if migrate-postcopy cut the round short (bm
 * then holds only what is left of it), or -errno. */
static int send_round(struct live *l, uint8_t *bm, uint64_t npages, uint64_t left,
		      uint64_t t0, uint64_t sent0)
{
	uint64_t next = 0, sent, q, end = npages, cleared = 0;
	int r;

	while (next < npages) {
		if (atomic_load(&l->cancel)) {
			snprintf(l->err, sizeof(l->err), "cancelled");
			return -ECANCELED;
		}
		if (atomic_load(&l->go_postcopy)) {
			for (q = 0; q < next; q++)
				bm[q / 8] &= ~(1u << (q % 8));
			return 1;
		}
		/* Manual protect: a chunk's pages are cleared in KVM's log
		 * (protected again) before they are read, never after, so
		 * a write that lands after the read is in the next round. */
		if (l->vm->dirty_manual && next >= cleared) {
			cleared = MIN((next & ~(uint64_t)(LIVE_CLEAR_PAGES - 1)) + LIVE_CLEAR_PAGES,
				      npages);
			r = kvm_clear_dirty(l->vm, bm, next, cleared - next);
			if (r) {
				snprintf(l->err, sizeof(l->err), "KVM_CLEAR_DIRTY_LOG: %s",
					 strerror(-r));
				return r;
			}
			end = cleared;
		}
		r = stream_write_pages(&l->w, l->vm->mem.base, end, bm, &next,
				       LIVE_SECTION_PAGES, &sent);
		if (r) {
			snprintf(l->err, sizeof(l->err), "cannot send guest memory: %s", strerror(-r));
			return r;
		}
		left -= MIN(left, sent);
		set_stats(l, left * STREAM_PAGE_SIZE);
		throttle_kick(l);
		pace(l, t0, sent0);
	}
	return 0;
}

static void *live_thread(void *opaque)
{
	struct live *l = opaque;
	struct vm *vm = l->vm;
	uint64_t npages = vm->mem.size / STREAM_PAGE_SIZE, count, t0, round_t0, round_bytes;
	uint64_t one = 1, bw, downtime, iteration = 0;
	unsigned int behind = 0, throttle = 0;
	bool converge;
	size_t bmlen = (npages + 7) / 8;
	uint8_t *bm, *next;
	int r;

	pthread_setname_np(pthread_self(), "migration");
	r = sandbox_thread_enter(SANDBOX_THREAD_MIGRATION);
	if (r) {
		l->result = r;
		snprintf(l->err, sizeof(l->err), "cannot confine the migration thread: %s",
			 strerror(-r));
		goto out;
	}
	if (l->fd < 0) {
		l->fd = migration_connect(l->uri, l->err, sizeof(l->err));
		if (l->fd < 0) {
			l->result = l->fd;
			goto out;
		}
	}
	stream_writer_init(&l->w, l->fd);
	t0 = now_ns();
	r = migration_write_prologue(vm, &l->w, l->config, l->err, sizeof(l->err));
	if (r) {
		l->result = r;
		goto out;
	}
	/* Round 0: every page the guest has touched.  The dirty log was
	 * turned on before: whatever is written from here on is in it. */
	bm = migration_touched_pages(vm, &count);
	if (!bm) {
		l->result = -ENOMEM;
		snprintf(l->err, sizeof(l->err), "out of memory for the page bitmap");
		goto out;
	}
	pthread_mutex_lock(&l->lock);
	l->info.setup_ms = ms_since(l->t_start);
	pthread_mutex_unlock(&l->lock);
	for (;;) {
		round_t0 = now_ns();
		round_bytes = l->w.off;
		r = send_round(l, bm, npages, count, t0, 0);
		if (r == 1) {
			l->switch_postcopy = true;
			break;
		}
		if (r) {
			free(bm);
			l->result = r;
			goto out;
		}
		next = calloc(1, bmlen + 1);
		if (!next) {
			free(bm);
			l->result = -ENOMEM;
			snprintf(l->err, sizeof(l->err), "out of memory for the page bitmap");
			goto out;
		}
		r = take_dirty(vm, next);
		free(bm);
		bm = next;
		if (r) {
			free(bm);
			l->result = r;
			snprintf(l->err, sizeof(l->err), "KVM_GET_DIRTY_LOG: %s", strerror(-r));
			goto out;
		}
		count = popcount_bm(bm, npages);
		round_bytes = l->w.off - round_bytes;
		iteration++;
		/* The link's speed as this round saw it, bytes/s; at least
		 * 1 MiB/s: a round of a few pages measures nothing useful. */
		bw = (uint64_t)((double)round_bytes * 1e9 / MAX(now_ns() - round_t0, 1));
		bw = MAX(bw, 1ULL << 20);
		pthread_mutex_lock(&l->lock);
		l->info.iteration = iteration;
		l->info.remaining_bytes = count * STREAM_PAGE_SIZE;
		l->info.dirty_pages_rate = (uint64_t)((double)count * 1e9 / MAX(now_ns() - round_t0, 1));
		l->info.transferred_bytes = l->w.off;
		downtime = l->info.max_downtime_ms;
		converge = l->info.auto_converge;
		pthread_mutex_unlock(&l->lock);
		if (count * STREAM_PAGE_SIZE * 1000 / bw <= downtime)
			break;
		/* Not converged: post-copy sends the rest after the switch. */
		if (l->postcopy || atomic_load(&l->go_postcopy)) {
			l->switch_postcopy = true;
			break;
		}
		if (iteration >= LIVE_MAX_ROUNDS)
			break;
		/* Round 0 sends what was touched before: only later rounds
		 * say whether the guest outruns the link. */
		behind = iteration >= 2 && count * STREAM_PAGE_SIZE > round_bytes / 2 ? behind + 1 : 0;
		if (converge && behind >= 2 && throttle < LIVE_THROTTLE_MAX) {
			throttle = throttle ? MIN(throttle + LIVE_THROTTLE_STEP, LIVE_THROTTLE_MAX) :
				   LIVE_THROTTLE_FIRST;
			set_throttle(l, throttle);
		} else if (!converge && throttle) {
			throttle = 0;
			set_throttle(l, 0);
		}
	}
	/* What is left goes with the state, once the VM is paused. */
	l->pending = bm;
	l->result = 0;
out:
	if (write(l->done_fd, &one, sizeof(one)) < 0)
		pr_debug("migration eventfd: %s", strerror(errno));
	return NULL;
}

static void emit(struct live *l)
{
	struct live_info i;

	live_migrate_info(l->vm, &i);
	api_event_migration(l->vm->api, live_status_name(i.status), i.status == LIVE_FAILED ? i.error : NULL);
}

/* The rounds are over: the switchover's bitmap is what they left plus
 * whatever was written until now (vCPUs parked, devices' hooks run). */
static uint8_t *final_pages(struct vm *vm, void *opaque, uint64_t *count)
{
	struct live *l = opaque;
	uint8_t *bm = l->pending;

	l->pending = NULL;
	if (!bm || take_dirty(vm, bm)) {
		free(bm);
		return NULL;
	}
	*count = popcount_bm(bm, vm->mem.size / STREAM_PAGE_SIZE);
	pr_debug("migration: %llu pages left for the switchover", (unsigned long long)*count);
	return bm;
}

/* Back to no migration: dirty log and kvmm's bitmap off, connection
 * closed; status and error set, the event sent. */
static void finish(struct live *l, enum live_status st, const char *why)
{
	set_throttle(l, 0);
	if (kvm_dirty_log(l->vm, false))
		pr_warn("migration: cannot turn KVM's dirty log off: %s", strerror(errno));
	guest_mem_track(&l->vm->mem, false);
	if (l->fd >= 0)
		close(l->fd);
	l->fd = -1;
	free(l->pending);
	l->pending = NULL;
	if (l->done_fd >= 0) {
		loop_del(l->vm->loop, l->done_fd);
		close(l->done_fd);
		l->done_fd = -1;
	}
	free(l->uri);
	l->uri = NULL;
	free(l->config);
	l->config = NULL;
	pthread_mutex_lock(&l->lock);
	l->info.status = st;
	l->info.total_ms = ms_since(l->t_start);
	snprintf(l->info.error, sizeof(l->info.error), "%s", why ? why : "");
	pthread_mutex_unlock(&l->lock);
	if (st == LIVE_FAILED)
		pr_warn("migration failed: %s", why);
	emit(l);
	/* The guest's ejects waited for the migration's end; a completed
	 * one's destination acts on them (they are in the stream), and
	 * this VM, paused, is only to be quit. */
	if (st != LIVE_COMPLETED) {
		pci_hotplug_kick(l->vm);
		cpu_hotplug_kick(l->vm);
	}
}

static void switchover(struct live *l)
{
	struct vm *vm = l->vm;
	struct timeval tv = { LIVE_SWITCH_TIMEOUT_S, 0 };
	bool was_running = vm->state == VM_RUNNING;
	uint64_t t0 = now_ns();
	char err[512];
	int r;

	vm_pause(vm);
	pr_debug("migration: paused in %llu us", (unsigned long long)(now_ns() - t0) / 1000);
	setsockopt(l->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	r = migration_write_state(vm, &l->w, final_pages, l, NULL, err, sizeof(err));
	pr_debug("migration: state sent %llu us after the pause began",
		 (unsigned long long)(now_ns() - t0) / 1000);
	pthread_mutex_lock(&l->lock);
	l->info.downtime_ms = ms_since(t0);
	l->info.transferred_bytes = l->w.off;
	l->info.remaining_bytes = 0;
	pthread_mutex_unlock(&l->lock);
	if (r) {
		/* Not switched: the destination has no END, and this VM goes
		 * on where it stopped. */
		finish(l, LIVE_FAILED, err);
		if (was_running)
			vm_resume(vm);
		return;
	}
	/* Completed: the destination runs the guest now and takes the
	 * disks' locks; this one stays paused for whoever started the
	 * migration to end it (a resume takes the locks back). */
	block_lock_all(false);
	finish(l, LIVE_COMPLETED, NULL);
}

/* The bandwidth limit holds for the pages post-copy pushes, not for
 * those the destination waits on. */
static void pc_progress(void *opaque, uint64_t remaining, uint64_t requests)
{
	struct live *l = opaque;

	set_stats(l, remaining);
	pthread_mutex_lock(&l->lock);
	l->info.postcopy_requests = requests;
	pthread_mutex_unlock(&l->lock);
	pace(l, l->pc_t0, l->pc_off0);
}

/* The destination runs the guest: the pages it lacks, until it has them
 * all. */
static void *postcopy_thread(void *opaque)
{
	struct live *l = opaque;
	struct postcopy_source ps = {
		.w = &l->w, .base = l->vm->mem.base, .npages = l->vm->mem.size / STREAM_PAGE_SIZE,
		.pending = l->pc_pending, .cancel = &l->cancel, .progress = pc_progress, .opaque = l,
	};
	uint64_t one = 1;

	pthread_setname_np(pthread_self(), "migration");
	l->result = sandbox_thread_enter(SANDBOX_THREAD_MIGRATION);
	if (l->result)
		snprintf(l->err, sizeof(l->err), "cannot confine the migration thread: %s",
			 strerror(-l->result));
	else
		l->result = postcopy_source_run(&ps, l->err, sizeof(l->err));
	pthread_mutex_lock(&l->lock);
	l->info.postcopy_requests = ps.requests;
	pthread_mutex_unlock(&l->lock);
	if (write(l->done_fd, &one, sizeof(one)) < 0)
		pr_debug("migration eventfd: %s", strerror(errno));
	return NULL;
}

/* The switchover's bitmap, kept for the post-copy thread. */
static uint8_t *postcopy_pages(struct vm *vm, void *opaque, uint64_t *count)
{
	struct live *l = opaque;
	size_t bmlen = (vm->mem.size / STREAM_PAGE_SIZE + 7) / 8;
	uint8_t *bm = final_pages(vm, opaque, count);

	if (bm) {
		l->pc_pending = malloc(bmlen);
		if (!l->pc_pending) {
			free(bm);
			return NULL;
		}
		memcpy(l->pc_pending, bm, bmlen);
	}
	return bm;
}

static void postcopy_switchover(struct live *l)
{
	struct vm *vm = l->vm;
	struct timeval tv = { LIVE_SWITCH_TIMEOUT_S, 0 };
	bool was_running = vm->state == VM_RUNNING;
	uint64_t t0 = now_ns();
	char err[512];
	int r;

	vm_pause(vm);
	/* The destination takes the disks as soon as it has the state. */
	block_lock_all(false);
	setsockopt(l->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	r = migration_write_state_postcopy(vm, &l->w, postcopy_pages, l, err, sizeof(err));
	pthread_mutex_lock(&l->lock);
	l->info.downtime_ms = ms_since(t0);
	l->info.transferred_bytes = l->w.off;
	pthread_mutex_unlock(&l->lock);
	if (r) {
		/* No END went: the destination never ran it. */
		free(l->pc_pending);
		l->pc_pending = NULL;
		if (block_lock_all(true))
			pr_warn("migration: cannot take the disks' locks back");
		finish(l, LIVE_FAILED, err);
		if (was_running)
			vm_resume(vm);
		return;
	}
	l->in_postcopy = true;
	l->pc_t0 = now_ns();
	l->pc_off0 = l->w.off;
	pthread_mutex_lock(&l->lock);
	l->info.status = LIVE_POSTCOPY;
	l->info.postcopy = true;
	pthread_mutex_unlock(&l->lock);
	emit(l);
	r = -pthread_create(&l->thread, NULL, postcopy_thread, l);
	if (r) {
		l->lost = true;
		snprintf(err, sizeof(err), "cannot start the post-copy thread: %s; the guest is lost",
			 strerror(-r));
		finish(l, LIVE_FAILED, err);
		return;
	}
	l->thread_running = true;
}

static void join(struct live *l)
{
	if (l->thread_running) {
		pthread_join(l->thread, NULL);
		l->thread_running = false;
	}
}

static void on_done(void *opaque, uint32_t events)
{
	struct live *l = opaque;
	uint64_t n;

	if (read(l->done_fd, &n, sizeof(n)) < 0)
		return;
	join(l);
	if (l->in_postcopy) {
		char why[400];

		l->in_postcopy = false;
		free(l->pc_pending);
		l->pc_pending = NULL;
		if (!l->result) {
			finish(l, LIVE_COMPLETED, NULL);
			return;
		}
		/* Neither side has the whole guest any more. */
		l->lost = true;
		snprintf(why, sizeof(why), "post-copy failed: %s; the guest is lost", l->err);
		finish(l, LIVE_FAILED, why);
	} else if (atomic_load(&l->cancel)) {
		finish(l, LIVE_CANCELLED, NULL);
	} else if (l->result) {
		finish(l, LIVE_FAILED, l->err);
	} else if (l->switch_postcopy) {
		postcopy_switchover(l);
	} else {
		switchover(l);
	}
}

int live_migrate_start(struct vm *vm, const char *uri, int fd, uint64_t max_downtime_ms,
		       uint64_t bandwidth_mibps, bool auto_converge, bool postcopy,
		       char *err, size_t errlen)
{
	struct live *l = &the_live;
	int r;

	if (l->info.status == LIVE_ACTIVE) {
		snprintf(err, errlen, "a migration is already running: migrate-cancel stops it");
		r = -EBUSY;
		goto fail;
	}
	if (vm->state != VM_RUNNING && vm->state != VM_PAUSED) {
		snprintf(err, errlen, "the VM is not running");
		r = -EINVAL;
		goto fail;
	}
	if (vm->cfg->sandbox.enabled && fd < 0) {
		/* tcp: and unix: need socket() and connect(), which the
		 * sandbox's lists do not have: refused here rather than killed. */
		snprintf(err, errlen, "a sandboxed kvmm cannot connect to %s: give migrate an "
			 "fdname (a connected socket passed with getfd)", uri);
		r = -EOPNOTSUPP;
		goto fail;
	}
	if (vm->cfg->pvm_compat) {
		/* Its instruction emulation writes guest memory kvmm does not
		 * track yet. */
		snprintf(err, errlen, "live migration is not supported with --pvm-compat");
		r = -EOPNOTSUPP;
		goto fail;
	}
	if (postcopy && vm->mem.page_size) {
		snprintf(err, errlen, "post-copy needs guest RAM of ordinary pages (no hugepages)");
		r = -EOPNOTSUPP;
		goto fail;
	}
	if (live_migrate_guest_lost(vm)) {
		snprintf(err, errlen, "a post-copy migration of this guest failed: it cannot migrate again");
		r = -EINVAL;
		goto fail;
	}
	pthread_mutex_lock(&l->lock);
	memset(&l->info, 0, sizeof(l->info));
	pthread_mutex_unlock(&l->lock);
	l->postcopy = postcopy;
	atomic_store(&l->go_postcopy, false);
	l->switch_postcopy = false;
	l->in_postcopy = false;
	l->vm = vm;
	l->fd = fd;
	l->uri = strdup(uri);
	/* The device and vCPU sets stay as they are until the migration
	 * ends: adds are refused, the guest's ejects wait. */
	l->config = migration_stream_config(vm);
	l->result = 0;
	l->err[0] = '\0';
	l->pending = NULL;
	atomic_store(&l->cancel, false);
	l->t_start = now_ns();
	l->info.total_bytes = vm->mem.size;
	l->info.max_downtime_ms = max_downtime_ms;
	l->info.bandwidth_mibps = bandwidth_mibps;
	l->info.auto_converge = auto_converge;
	l->last_kick = 0;
	l->done_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (!l->uri || !l->config || l->done_fd < 0) {
		r = -ENOMEM;
		snprintf(err, errlen, "cannot set up the migration: %s", strerror(errno));
		goto undo;
	}
	/* Before the thread's first look at memory: every write from here
	 * on is in one of the two logs. */
	r = guest_mem_track(&vm->mem, true);
	if (!r)
		r = kvm_dirty_log(vm, true);
	if (r) {
		snprintf(err, errlen, "cannot turn KVM's dirty log on: %s", strerror(-r));
		goto undo;
	}
	r = loop_add(vm->loop, l->done_fd, EPOLLIN, on_done, l);
	if (!r)
		r = -pthread_create(&l->thread, NULL, live_thread, l);
	if (r) {
		snprintf(err, errlen, "cannot start the migration thread: %s", strerror(-r));
		goto undo;
	}
	l->thread_running = true;
	l->info.status = LIVE_ACTIVE;
	emit(l);
	return 0;
undo:
	kvm_dirty_log(vm, false);
	guest_mem_track(&vm->mem, false);
	if (l->done_fd >= 0) {
		loop_del(vm->loop, l->done_fd);
		close(l->done_fd);
	}
	l->done_fd = -1;
	free(l->uri);
	l->uri = NULL;
	free(l->config);
	l->config = NULL;
	l->fd = -1;
fail:
	if (fd >= 0)
		close(fd);
	return r;
}

/* Wakes a thread blocked writing: its next write fails at once. */
static void stop_thread(struct live *l)
{
	atomic_store(&l->cancel, true);
	if (l->fd >= 0)
		shutdown(l->fd, SHUT_RDWR);
}

int live_migrate_cancel(struct vm *vm)
{
	struct live *l = &the_live;

	if (l->info.status == LIVE_POSTCOPY)
		return -EBUSY;
	if (l->info.status != LIVE_ACTIVE || !l->thread_running)
		return -EINVAL;
	/* on_done reports it cancelled once the thread is out. */
	stop_thread(l);
	return 0;
}

void live_migrate_abort(struct vm *vm, const char *why)
{
	struct live *l = &the_live;

	if (l->vm != vm || (l->info.status != LIVE_ACTIVE && l->info.status != LIVE_POSTCOPY))
		return;
	stop_thread(l);
	join(l);
	if (l->in_postcopy) {
		l->in_postcopy = false;
		l->lost = true;
	}
	free(l->pc_pending);
	l->pc_pending = NULL;
	finish(l, LIVE_FAILED, why);
}

void live_migrate_set_params(struct vm *vm, const uint64_t *max_downtime_ms,
			     const uint64_t *bandwidth_mibps, const bool *auto_converge)
{
	struct live *l = &the_live;

	pthread_mutex_lock(&l->lock);
	if (auto_converge)
		l->info.auto_converge = *auto_converge;
	if (max_downtime_ms)
		l->info.max_downtime_ms = *max_downtime_ms;
	if (bandwidth_mibps)
		l->info.bandwidth_mibps = *bandwidth_mibps;
	pthread_mutex_unlock(&l->lock);
}

void live_migrate_info(struct vm *vm, struct live_info *out)
{
	struct live *l = &the_live;

	pthread_mutex_lock(&l->lock);
	*out = l->info;
	if (out->status == LIVE_ACTIVE || out->status == LIVE_POSTCOPY)
		out->total_ms = ms_since(l->t_start);
	pthread_mutex_unlock(&l->lock);
}

bool live_migrate_active(struct vm *vm)
{
	return the_live.info.status == LIVE_ACTIVE || the_live.info.status == LIVE_POSTCOPY;
}

int live_migrate_start_postcopy(struct vm *vm, char *err, size_t errlen)
{
	struct live *l = &the_live;

	if (l->info.status == LIVE_POSTCOPY) {
		snprintf(err, errlen, "the migration is in post-copy already");
		return -EALREADY;
	}
	if (l->info.status != LIVE_ACTIVE) {
		snprintf(err, errlen, "no migration is running");
		return -EINVAL;
	}
	if (vm->mem.page_size) {
		snprintf(err, errlen, "post-copy needs guest RAM of ordinary pages (no hugepages)");
		return -EOPNOTSUPP;
	}
	atomic_store(&l->go_postcopy, true);
	return 0;
}

bool live_migrate_guest_lost(struct vm *vm)
{
	return the_live.lost || postcopy_incoming_lost();
}
