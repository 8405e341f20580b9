#include <errno.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "log.h"
#include "memory.h"
#include "util.h"

#define HUGEPAGES_SYSFS "/sys/kernel/mm/hugepages/hugepages-%llukB"

static long huge_pool_read(uint64_t page_kib, const char *what)
{
	char path[128];
	long n = -1;
	FILE *f;

	snprintf(path, sizeof(path), HUGEPAGES_SYSFS "/%s", (unsigned long long)page_kib, what);
	f = fopen(path, "re");
	if (!f)
		return -1;
	if (fscanf(f, "%ld", &n) != 1)
		n = -1;
	fclose(f);
	return n;
}

/* Guest RAM from the host's hugetlb pool of huge_size pages, all of it
 * reserved by mmap (no MAP_NORESERVE): a short pool fails the start here,
 * not the guest with SIGBUS later.  The pool is checked first only to
 * say what is missing; mmap's own check is the one that counts. */
static void *map_huge(uint64_t size, uint64_t huge_size)
{
	unsigned long long kib = huge_size / KiB;
	long free_pages = huge_pool_read(kib, "free_hugepages");
	long resv = huge_pool_read(kib, "resv_hugepages");
	uint64_t needed = size / huge_size;
	void *p;

	if (free_pages < 0) {
		pr_err("huge page size %llu KiB is not offered by this host (no " HUGEPAGES_SYSFS "): use one it has",
		       kib, kib);
		errno = EINVAL;
		return MAP_FAILED;
	}
	/* Reserved pages are free but promised to another mapping. */
	if (resv > 0)
		free_pages = resv < free_pages ? free_pages - resv : 0;
	if ((uint64_t)free_pages < needed) {
		pr_err("not enough free %llu KiB huge pages: %llu needed, %ld free; reserve them in " HUGEPAGES_SYSFS "/nr_hugepages",
		       kib, (unsigned long long)needed, free_pages, kib);
		errno = ENOMEM;
		return MAP_FAILED;
	}
	p = mmap(NULL, size, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB |
		 (__builtin_ctzll(huge_size) << MAP_HUGE_SHIFT), -1, 0);
	if (p == MAP_FAILED) {
		int e = errno;

		pr_err("cannot map %llu MiB of guest memory on %llu KiB huge pages: %s; reserve more in " HUGEPAGES_SYSFS "/nr_hugepages",
		       (unsigned long long)(size / MiB), kib, strerror(e), kib);
		errno = e;
	}
	return p;
}

int guest_mem_init_huge(struct guest_memory *m, uint64_t size, uint64_t huge_size,
			uint64_t low_limit, uint64_t high_base)
{
	uint64_t low = MIN(size, low_limit);

	memset(m, 0, sizeof(*m));
	if (huge_size)
		m->base = map_huge(size, huge_size);
	else
		/* MAP_NORESERVE: the guest's RAM is committed page by page as
		 * the guest touches it, which is what makes overcommit
		 * possible. */
		m->base = mmap(NULL, size, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (m->base == MAP_FAILED) {
		m->base = NULL;
		return -errno;
	}
	m->size = size;
	m->page_size = huge_size;
	m->regions[0] = (struct guest_region){ 0, low, m->base };
	m->nregions = 1;
	if (size > low) {
		m->regions[1] = (struct guest_region){
			high_base, size - low, m->base + low };
		m->nregions = 2;
	}
	/* Guest RAM has no business in a core dump of the VMM. */
	madvise(m->base, size, MADV_DONTDUMP);
	return 0;
}

int guest_mem_init(struct guest_memory *m, uint64_t size,
		   uint64_t low_limit, uint64_t high_base)
{
	return guest_mem_init_huge(m, size, 0, low_limit, high_base);
}

void guest_mem_use_thp(struct guest_memory *m)
{
	/* Transparent huge pages where the host offers them (THP "madvise"
	 * is Debian's default): fewer TLB misses for the guest, and a
	 * device's O_DIRECT I/O on guest buffers is built from 2 MiB
	 * segments, so a 1 MiB request is not split at the disk's segment
	 * limit (254 x 4 KiB on virtio disks).  The price: each 2 MiB block
	 * the guest touches is committed whole. */
	madvise(m->base, m->size, MADV_HUGEPAGE);
}

void guest_mem_use_ksm(struct guest_memory *m)
{
	/* KSM merges identical pages of guests (zeroed pages, shared
	 * libraries) when the host runs ksmd (/sys/kernel/mm/ksm/run): less
	 * host memory, for ksmd's scanning CPU and a copy on the guest's
	 * next write.  Without ksmd running this costs nothing. */
	madvise(m->base, m->size, MADV_MERGEABLE);
}

int guest_mem_lock(struct guest_memory *m)
{
	/* Never swapped, never faulted in late: the whole size is resident
	 * from here on, the footprint of a guest that touched everything. */
	return mlock(m->base, m->size) ? -errno : 0;
}

void guest_mem_destroy(struct guest_memory *m)
{
	if (m->base)
		munmap(m->base, m->size);
	m->base = NULL;
	atomic_store(&m->dirty, NULL);
	free(m->dirty_buf);
	m->dirty_buf = NULL;
}

void *guest_mem_ptr(const struct guest_memory *m, uint64_t gpa, uint64_t len)
{
	unsigned int i;

	for (i = 0; i < m->nregions; i++) {
		const struct guest_region *r = &m->regions[i];

		/* GUEST: written so that neither gpa+len nor the region end
		 * can overflow: the range must sit wholly inside one region. */
		if (gpa >= r->gpa && gpa - r->gpa <= r->size &&
		    len <= r->size - (gpa - r->gpa))
			return r->hva + (gpa - r->gpa);
	}
	return NULL;
}

/* Zeros [p, p+len) and frees its pages.  Private anonymous pages read
 * back as zeros once dropped; pages mapped from a restored stream would
 * read the file again, so fresh anonymous memory replaces them. */
static int mem_zap(struct guest_memory *m, void *p, uint64_t len)
{
	if (m->file_backed)
		return mmap(p, len, PROT_READ | PROT_WRITE,
			    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED,
			    -1, 0) == MAP_FAILED ? -errno : 0;
	return madvise(p, len, MADV_DONTNEED) ? -errno : 0;
}

void guest_mem_discard(struct guest_memory *m)
{
	mem_zap(m, m->base, m->size);
}

int guest_mem_release(struct guest_memory *m, void *hva, uint64_t len)
{
	uintptr_t start = ((uintptr_t)hva + 4095) & ~(uintptr_t)4095;
	uintptr_t end = ((uintptr_t)hva + len) & ~(uintptr_t)4095;
	int r;

	/* Only ever guest RAM, whatever the caller computed. */
	if ((uint8_t *)hva < m->base || len > m->size ||
	    (uint8_t *)hva - m->base > (ptrdiff_t)(m->size - len))
		return -EINVAL;
	if (end <= start)
		return 0;
	/* config.c keeps the balloon from huge pages. */
	if (m->page_size)
		return -EOPNOTSUPP;
	/* The mapping is private and anonymous: MADV_DONTNEED frees the
	 * pages now (RSS drops at once) and later reads see zeros.
	 * MADV_FREE would leave them counted until the host runs short, and
	 * MADV_REMOVE is for shared or file-backed memory only. */
	r = mem_zap(m, (void *)start, end - start);
	/* The pages now read as zeros: a migration must send them again. */
	guest_mem_mark(m, (void *)start, end - start);
	return r;
}

void guest_mem_mark(const struct guest_memory *m, const void *hva, uint64_t len)
{
	uint64_t *bm = atomic_load(&m->dirty);
	uint64_t off, p, last;

	if (!bm || !len || (const uint8_t *)hva < m->base ||
	    (uint64_t)((const uint8_t *)hva - m->base) >= m->size)
		return;
	off = (const uint8_t *)hva - m->base;
	len = MIN(len, m->size - off);
	last = (off + len - 1) / 4096;
	for (p = off / 4096; p <= last; p++)
		__atomic_fetch_or(&bm[p / 64], 1ULL << (p % 64), __ATOMIC_RELEASE);
}

void guest_mem_mark_gpa(const struct guest_memory *m, uint64_t gpa, uint64_t len)
{
	unsigned int i;

	if (!atomic_load(&m->dirty))
		return;
	for (i = 0; i < m->nregions; i++) {
		const struct guest_region *r = &m->regions[i];

		if (gpa >= r->gpa && gpa - r->gpa < r->size) {
			guest_mem_mark(m, r->hva + (gpa - r->gpa), MIN(len, r->size - (gpa - r->gpa)));
			return;
		}
	}
}

int guest_mem_track(struct guest_memory *m, bool on)
{
	size_t words = (m->size / 4096 + 63) / 64;

	if (!on) {
		atomic_store(&m->dirty, NULL);
		return 0;
	}
	if (!m->dirty_buf)
		m->dirty_buf = calloc(words, sizeof(uint64_t));
	if (!m->dirty_buf)
		return -ENOMEM;
	memset(m->dirty_buf, 0, words * sizeof(uint64_t));
	atomic_store(&m->dirty, m->dirty_buf);
	return 0;
}

void guest_mem_take_dirty(struct guest_memory *m, uint8_t *out)
{
	uint64_t *bm = atomic_load(&m->dirty), npages = m->size / 4096, i, w;

	if (!bm)
		return;
	for (i = 0; i < (npages + 63) / 64; i++) {
		if (!__atomic_load_n(&bm[i], __ATOMIC_RELAXED))
			continue;
		w = __atomic_exchange_n(&bm[i], 0, __ATOMIC_ACQUIRE);
		/* Little-endian: word i's bit b is byte 8i + b/8's bit b%8. */
		for (; w; w &= w - 1) {
			uint64_t p = i * 64 + __builtin_ctzll(w);

			if (p < npages)
				out[p / 8] |= 1u << (p % 8);
		}
	}
}

uint64_t guest_mem_low_end(const struct guest_memory *m)
{
	return m->regions[0].size;
}
