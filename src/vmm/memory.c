#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "memory.h"
#include "util.h"

int guest_mem_init(struct guest_memory *m, uint64_t size,
		   uint64_t low_limit, uint64_t high_base)
{
	uint64_t low = MIN(size, low_limit);
	int err;

	memset(m, 0, sizeof(*m));
	m->fd = memfd_create("kvmm-guest-ram", MFD_CLOEXEC);
	if (m->fd < 0)
		return -errno;
	if (ftruncate(m->fd, size) < 0)
		goto fail;
	/* MAP_NORESERVE: the guest's RAM is committed page by page as the
	 * guest touches it, which is what makes overcommit possible. */
	m->base = mmap(NULL, size, PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_NORESERVE, m->fd, 0);
	if (m->base == MAP_FAILED) {
		m->base = NULL;
		goto fail;
	}
	m->size = size;
	m->regions[0] = (struct guest_region){ 0, low, m->base, 0 };
	m->nregions = 1;
	if (size > low) {
		m->regions[1] = (struct guest_region){
			high_base, size - low, m->base + low, low };
		m->nregions = 2;
	}
	/* Guest RAM has no business in a core dump of the VMM. */
	madvise(m->base, size, MADV_DONTDUMP);
	return 0;
fail:
	err = -errno;
	close(m->fd);
	m->fd = -1;
	return err;
}

void guest_mem_destroy(struct guest_memory *m)
{
	if (m->base)
		munmap(m->base, m->size);
	if (m->fd >= 0)
		close(m->fd);
	m->base = NULL;
	m->fd = -1;
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

void guest_mem_discard(struct guest_memory *m)
{
	fallocate(m->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, m->size);
}

uint64_t guest_mem_low_end(const struct guest_memory *m)
{
	return m->regions[0].size;
}
