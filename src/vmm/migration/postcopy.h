/* Post-copy live migration (docs/state-stream.md "Post-copy"): the
 * source pauses, sends the devices' state and, in the memory section's
 * place, the bitmap of the pages it has not sent yet; the destination runs
 * the guest at once and pulls each of those pages when first touched,
 * through a userfaultfd over guest RAM, while the source pushes the rest.
 *
 * After END the connection carries PAGES sections from the source (then
 * an END of index 1: all sent) and, the other way, 16-byte messages from
 * the destination: type (u32), zero (u32), page (u64), little-endian. */
#ifndef KVMM_POSTCOPY_H
#define KVMM_POSTCOPY_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "stream.h"

struct vm;

#define POSTCOPY_MSG_LEN	16
#define POSTCOPY_REQ		1	/* send this page first */
#define POSTCOPY_DONE		2	/* every page arrived: the source may go */

/* --- source (on live migration's thread) --- */

struct postcopy_source {
	struct stream_writer *w;
	const uint8_t *base;		/* guest RAM, paused */
	uint64_t npages;
	uint8_t *pending;		/* pages not sent yet: cleared as sent */
	atomic_bool *cancel;
	/* Progress, called after each section the source pushes of its own
	 * accord (not those asked for): bytes still to send, and the time
	 * to keep to a bandwidth limit. */
	void (*progress)(void *opaque, uint64_t remaining_bytes, uint64_t requests);
	void *opaque;
	uint64_t requests;		/* pages the destination asked for */
};

/* Sends every pending page, those the destination asks for first, then
 * END and waits for its DONE.  0 or -errno with err set. */
int postcopy_source_run(struct postcopy_source *ps, char *err, size_t errlen);

/* --- destination --- */

/* The POSTCOPY section's payload (read and crc-checked) for vm: guest RAM
 * registered with a userfaultfd, the pages still to come dropped (an
 * earlier round's copy of them is stale).  fd, the connection, is taken
 * (closed on failure too).  Called before any thread runs: opening the
 * userfaultfd needs the privileges a sandbox drops.  0 or -errno, err set. */
int postcopy_incoming_prepare(struct vm *vm, int fd, const uint8_t *payload, uint64_t len,
			      char *err, size_t errlen);
/* Whether a prepare is waiting for postcopy_incoming_start. */
bool postcopy_incoming_pending(void);
/* Starts the fault and receive threads; before the first vCPU runs and
 * after sandbox_enter (they confine themselves).  Events and the end are
 * reported on vm's main loop.  0 or -errno. */
int postcopy_incoming_start(struct vm *vm);
/* While pages still come: status for query-migrate ("postcopy-active",
 * then "completed" or "failed"), NULL if this kvmm had none. */
const char *postcopy_incoming_status(uint64_t *remaining_bytes, char *error, size_t errlen);
/* True once a post-copy failed here: the guest's memory is incomplete,
 * it must not run again. */
bool postcopy_incoming_lost(void);
/* kvmm stops: the threads end, the connection closes. */
void postcopy_incoming_stop(struct vm *vm);

#endif
