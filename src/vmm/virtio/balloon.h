/* virtio-balloon: what the rest of kvmm calls (the device is
 * virtio/balloon.c). */
#ifndef KVMM_VIRTIO_BALLOON_H
#define KVMM_VIRTIO_BALLOON_H

#include <stdbool.h>
#include <stdint.h>

struct device;
struct vm;

#define BALLOON_PAGE_SIZE	4096ULL

/* The guest's memory statistics (virtio 1.2, 5.5.6.3), by tag. */
enum balloon_stat {
	BALLOON_S_SWAP_IN, BALLOON_S_SWAP_OUT, BALLOON_S_MAJFLT, BALLOON_S_MINFLT,
	BALLOON_S_MEMFREE, BALLOON_S_MEMTOT, BALLOON_S_AVAIL, BALLOON_S_CACHES,
	BALLOON_S_HTLB_PGALLOC, BALLOON_S_HTLB_PGFAIL, BALLOON_S_NR
};
extern const char *const balloon_stat_names[BALLOON_S_NR];

struct virtio_balloon_info {
	uint64_t memory;		/* the guest's configured RAM, bytes */
	uint32_t num_pages;		/* the target: pages asked of the guest */
	uint32_t actual;		/* pages the guest says it gave */
	uint64_t inflated;		/* pages the host holds as given (deduplicated) */
	uint64_t reported;		/* bytes the guest reported free, in all */
	uint64_t bad_pfns;		/* PFNs outside guest RAM, ignored */
	uint64_t bad_stats;		/* stats buffers refused */
	bool deflate_on_oom, free_page_reporting;	/* offered */
	unsigned int stats_period;	/* seconds; 0: not polled */
	bool has_stats;			/* the guest sent statistics */
	uint64_t stats_valid;		/* bit per balloon_stat the guest gave */
	uint64_t stats[BALLOON_S_NR];
	uint64_t last_update;		/* CLOCK_REALTIME seconds of the last stats */
};

/* Called on the main thread when the guest's `actual` changed. */
typedef void (*balloon_change_fn)(void *opaque, uint64_t actual_bytes);

struct device *virtio_balloon_create(struct vm *vm, unsigned int slot, uint64_t bar_addr);
/* 0 and *info if dev is the balloon, else -ENODEV. */
int virtio_balloon_info(struct device *dev, struct virtio_balloon_info *info);
/* Asks the guest to give back pages so that it keeps target bytes:
 * -EINVAL if target is above its RAM or below the device's floor. */
int virtio_balloon_set_target(struct device *dev, uint64_t target);
/* Statistics polling interval in seconds (0 stops it). */
int virtio_balloon_set_stats_period(struct device *dev, unsigned int seconds);
void virtio_balloon_set_listener(struct device *dev, balloon_change_fn fn, void *opaque);

#endif
