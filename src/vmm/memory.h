/* Guest RAM: one anonymous mapping, committed lazily (MAP_NORESERVE;
 * pages cost host memory only once touched), with huge pages if the host
 * gives them, split into regions around the 32-bit MMIO
 * hole.  Every access from the VMM to guest memory goes through
 * guest_mem_ptr(), which bounds-checks the whole range. */
#ifndef KVMM_MEMORY_H
#define KVMM_MEMORY_H

#include <stdbool.h>
#include <stdint.h>

#define GUEST_MEM_MAX_REGIONS 2
#define GUEST_MEM_LAZY_REGION 1	/* the RAM above the hole */

struct guest_region {
	uint64_t gpa;
	uint64_t size;
	uint8_t *hva;
};

/* Called when [gpa, gpa+len) of a region given to KVM lazily is about to
 * be used by the VMM: the owner registers its chunks first. */
typedef void (*guest_mem_fault_fn)(void *opaque, uint64_t gpa, uint64_t len);

struct guest_memory {
	uint8_t *base;		/* host mapping of all of it */
	uint64_t size;		/* total RAM */
	unsigned int nregions;
	struct guest_region regions[GUEST_MEM_MAX_REGIONS];
	/* The RAM above the hole reaches KVM in chunks of lazy_chunk bytes
	 * as the guest (or a device) first uses them (kvm.c), so that a VM
	 * pays KVM's per-page bookkeeping only for memory in use: starting
	 * is flat in the configured size.  lazy_chunk 0: nothing lazy. */
	uint64_t lazy_chunk;
	uint64_t *lazy_present;	/* bit per chunk: registered (atomic) */
	guest_mem_fault_fn lazy_fault;
	void *lazy_opaque;
};

/* low_limit: end of the RAM below the MMIO hole; RAM above it moves to
 * high_base.  Returns 0 or -errno. */
int guest_mem_init(struct guest_memory *m, uint64_t size,
		   uint64_t low_limit, uint64_t high_base);
void guest_mem_destroy(struct guest_memory *m);
/* Makes the lazy region's chunks chunk bytes each, all absent, reported
 * to fault(opaque, ...) when the VMM touches them; again after a new KVM
 * VM (all absent again).  0 or -ENOMEM. */
int guest_mem_set_lazy(struct guest_memory *m, uint64_t chunk,
		       guest_mem_fault_fn fault, void *opaque);
/* Asks for transparent huge pages behind all of the guest's RAM. */
void guest_mem_use_thp(struct guest_memory *m);

/* Host pointer for [gpa, gpa+len) if it lies entirely inside one RAM
 * region, else NULL.  The range's lazy chunks are registered first. */
void *guest_mem_ptr(const struct guest_memory *m, uint64_t gpa, uint64_t len);

/* Gives all guest pages back to the host (used at reset): the guest then
 * starts from zeroed memory, as after power-on. */
void guest_mem_discard(struct guest_memory *m);

/* Returns [hva, hva+len) of guest RAM to the host now (the balloon, free
 * page reporting): the host's pages are freed at once and the guest reads
 * zeros there when it touches them again, which faults fresh pages in.
 * The range is shrunk to whole host pages.  0 or -errno. */
int guest_mem_release(struct guest_memory *m, void *hva, uint64_t len);

/* End of the RAM below the hole (the "low memory" top). */
uint64_t guest_mem_low_end(const struct guest_memory *m);

#endif
