/* Live migration, the source's side (docs/state-stream.md, docs/api.md
 * "migrate"): pre-copy over a connection with KVM's dirty log plus the
 * pages kvmm itself wrote, then a short pause for the rest and the
 * state.  One migration at a time per process.  Everything here but the
 * sender thread runs on the main thread. */
#ifndef KVMM_LIVE_H
#define KVMM_LIVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct vm;

enum live_status { LIVE_NONE, LIVE_ACTIVE, LIVE_COMPLETED, LIVE_FAILED, LIVE_CANCELLED,
		   LIVE_POSTCOPY /* the destination runs, pulling the pages it lacks */ };

struct live_info {
	enum live_status status;
	uint64_t total_bytes;		/* guest RAM */
	uint64_t transferred_bytes;	/* stream bytes written */
	uint64_t remaining_bytes;	/* dirty pages not yet sent */
	uint64_t iteration;		/* rounds done */
	uint64_t dirty_pages_rate;	/* pages/s dirtied in the last round */
	uint64_t setup_ms, total_ms, downtime_ms;
	uint64_t max_downtime_ms, bandwidth_mibps;
	bool auto_converge;		/* throttle vCPUs when rounds do not converge */
	unsigned int cpu_throttle_pct;	/* the throttle now (0: none) */
	bool postcopy;			/* the switchover was a post-copy's */
	uint64_t postcopy_requests;	/* pages the destination asked for */
	char error[256];
};

#define LIVE_DEFAULT_DOWNTIME_MS 300

/* Starts a migration to uri (tcp:HOST:PORT, unix:PATH) or, fd >= 0, to
 * that descriptor (taken, uri then only names it).  Answers at once; the
 * rest runs on a thread.  postcopy: after the first round, unless it
 * converged, switch to post-copy (migration/postcopy.h).  0 or -errno
 * with err set. */
int live_migrate_start(struct vm *vm, const char *uri, int fd, uint64_t max_downtime_ms,
		       uint64_t bandwidth_mibps, bool auto_converge, bool postcopy,
		       char *err, size_t errlen);
/* A running pre-copy switches to post-copy at its next section. */
int live_migrate_start_postcopy(struct vm *vm, char *err, size_t errlen);
/* A post-copy failed (this end either side): the guest must not run. */
bool live_migrate_guest_lost(struct vm *vm);
/* Stops the copy before switchover: the VM runs on.  -EINVAL if none,
 * -EBUSY in post-copy (the destination runs the guest already). */
int live_migrate_cancel(struct vm *vm);
void live_migrate_set_params(struct vm *vm, const uint64_t *max_downtime_ms,
			     const uint64_t *bandwidth_mibps, const bool *auto_converge);
void live_migrate_info(struct vm *vm, struct live_info *out);
bool live_migrate_active(struct vm *vm);
/* The VM is about to be reset or destroyed: a running migration fails
 * now (thread joined, dirty log off), with why as its error. */
void live_migrate_abort(struct vm *vm, const char *why);
const char *live_status_name(enum live_status s);

#endif
