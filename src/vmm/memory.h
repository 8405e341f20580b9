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

struct guest_region {
	uint64_t gpa;
	uint64_t size;
	uint8_t *hva;
};

struct guest_memory {
	uint8_t *base;		/* host mapping of all of it */
	uint64_t size;		/* total RAM */
	uint64_t page_size;	/* hugetlb page size; 0: normal pages */
	unsigned int nregions;
	struct guest_region regions[GUEST_MEM_MAX_REGIONS];
	/* Parts are private mappings of a restored state stream: dropping
	 * a page there would read the file again, not zeros. */
	bool file_backed;
	/* While a live migration runs: one bit per 4 KiB page of RAM (the
	 * regions back to back, as the state stream counts them), set by
	 * every write kvmm itself makes into guest memory, after it made it;
	 * KVM's dirty log sees only the guest's own writes.  NULL otherwise. */
	uint64_t *_Atomic dirty;
	uint64_t *dirty_buf;	/* its memory, kept until destroy: a vCPU
				 * thread may still hold the pointer */
};

/* low_limit: end of the RAM below the MMIO hole; RAM above it moves to
 * high_base.  Returns 0 or -errno. */
int guest_mem_init(struct guest_memory *m, uint64_t size,
		   uint64_t low_limit, uint64_t high_base);
/* The same with huge_size (if not 0): all of it taken now from the host's
 * hugetlb pages of that size (size a multiple of it), a failure reported
 * on stderr here. */
int guest_mem_init_huge(struct guest_memory *m, uint64_t size, uint64_t huge_size,
			uint64_t low_limit, uint64_t high_base);
void guest_mem_destroy(struct guest_memory *m);
/* Asks for transparent huge pages behind all of the guest's RAM. */
void guest_mem_use_thp(struct guest_memory *m);
/* Offers guest RAM to KSM (same-page merging). */
void guest_mem_use_ksm(struct guest_memory *m);
/* Locks guest RAM in host memory, all of it committed now: 0 or -errno. */
int guest_mem_lock(struct guest_memory *m);

/* Host pointer for [gpa, gpa+len) if it lies entirely inside one RAM
 * region, else NULL. */
void *guest_mem_ptr(const struct guest_memory *m, uint64_t gpa, uint64_t len);

/* Marks [hva, hva+len) written by kvmm (nothing outside guest RAM, and
 * nothing while no migration tracks writes).  Called after the write:
 * a migration that took the bit before it sends the page again. */
void guest_mem_mark(const struct guest_memory *m, const void *hva, uint64_t len);
/* The same for guest-physical [gpa, gpa+len). */
void guest_mem_mark_gpa(const struct guest_memory *m, uint64_t gpa, uint64_t len);
/* Starts (a zeroed bitmap) or stops tracking kvmm's own writes. */
int guest_mem_track(struct guest_memory *m, bool on);
/* ORs the pages marked since the last call into out (bit p of byte p/8
 * = page p) and clears them: each bit is taken once, atomically. */
void guest_mem_take_dirty(struct guest_memory *m, uint8_t *out);

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
