/* Split virtqueue walking; the rules are in virtqueue.h. */
#include <errno.h>
#include <stdatomic.h>
#include <stddef.h>
#include <string.h>

#include "virtqueue.h"

struct vdesc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags, next;
};

static uint16_t ld16(const volatile uint8_t *p)
{
	return p[0] | p[1] << 8;
}

static void st16(volatile uint8_t *p, uint16_t v)
{
	p[0] = v;
	p[1] = v >> 8;
}

static void st32(volatile uint8_t *p, uint32_t v)
{
	st16(p, v);
	st16(p + 2, v >> 16);
}

/* Reads a descriptor once; the guest may rewrite it meanwhile. */
static void read_desc(const uint8_t *table, unsigned int i, struct vdesc *d)
{
	uint8_t raw[16];

	memcpy(raw, table + 16 * i, 16);
	__atomic_signal_fence(__ATOMIC_SEQ_CST);
	memcpy(&d->addr, raw, 8);
	memcpy(&d->len, raw + 8, 4);
	d->flags = raw[12] | raw[13] << 8;
	d->next = raw[14] | raw[15] << 8;
}

static uint8_t *ring(const struct guest_memory *mem, uint64_t gpa, uint64_t len)
{
	return guest_mem_ptr(mem, gpa, len);
}

int virtq_check(const struct virtq *q, const struct guest_memory *mem,
		uint16_t max_size)
{
	uint16_t n = q->size;

	/* GUEST: size and ring addresses come from the common config. */
	if (!n || n > max_size || n > VIRTQ_MAX_SIZE || (n & (n - 1)))
		return -EINVAL;
	if ((q->desc & 15) || (q->avail & 1) || (q->used & 3))
		return -EINVAL;
	if (!ring(mem, q->desc, 16ULL * n) || !ring(mem, q->avail, 6 + 2ULL * n) ||
	    !ring(mem, q->used, 6 + 8ULL * n))
		return -EINVAL;
	return 0;
}

static int add_buf(struct virtq_elem *e, const struct guest_memory *mem,
		   const struct vdesc *d)
{
	unsigned int i = e->n_out + e->n_in;
	void *p;

	/* GUEST: a zero-length buffer or one reaching outside guest RAM
	 * breaks the chain; so do writable-then-readable orderings
	 * (2.7.4.2) and chains longer than we can hold. */
	if (!d->len || i == VIRTQ_MAX_SEGS)
		return -EINVAL;
	p = guest_mem_ptr(mem, d->addr, d->len);
	if (!p)
		return -EINVAL;
	if (d->flags & VIRTQ_DESC_F_WRITE) {
		e->n_in++;
		e->in_len += d->len;
	} else {
		if (e->n_in)
			return -EINVAL;
		e->n_out++;
		e->out_len += d->len;
	}
	e->iov[i].iov_base = p;
	e->iov[i].iov_len = d->len;
	return 0;
}

/* Walks an indirect table: its own index space, no nesting. */
static int walk_indirect(struct virtq_elem *e, const struct guest_memory *mem,
			 const struct vdesc *ind)
{
	unsigned int n = ind->len / 16, i = 0, steps;
	const uint8_t *table;
	struct vdesc d;
	int r;

	/* GUEST: the table is whole descriptors, not empty, bounded, in RAM. */
	if (ind->len % 16 || !n || n > VIRTQ_MAX_INDIRECT ||
	    (ind->flags & VIRTQ_DESC_F_NEXT))
		return -EINVAL;
	table = guest_mem_ptr(mem, ind->addr, ind->len);
	if (!table)
		return -EINVAL;
	for (steps = 0; steps < n; steps++) {
		read_desc(table, i, &d);
		if (d.flags & VIRTQ_DESC_F_INDIRECT)
			return -EINVAL;		/* nested indirect */
		r = add_buf(e, mem, &d);
		if (r)
			return r;
		if (!(d.flags & VIRTQ_DESC_F_NEXT))
			return 0;
		/* GUEST: next must stay inside the table */
		if (d.next >= n)
			return -EINVAL;
		i = d.next;
	}
	return -EINVAL;		/* more links than descriptors: a loop */
}

int virtq_pop(struct virtq *q, const struct guest_memory *mem,
	      struct virtq_elem *e)
{
	uint16_t n = q->size, avail_idx, head, i;
	const uint8_t *avail, *desc;
	unsigned int steps;
	struct vdesc d;
	int r;

	if (!q->ready)
		return 0;
	avail = ring(mem, q->avail, 6 + 2ULL * n);
	desc = ring(mem, q->desc, 16ULL * n);
	if (!avail || !desc)
		return -EINVAL;
	avail_idx = ld16(avail + 2);
	/* GUEST: the driver cannot have more than a queue's worth of
	 * entries outstanding. */
	if ((uint16_t)(avail_idx - q->last_avail) > n)
		return -EINVAL;
	if (avail_idx == q->last_avail)
		return 0;
	/* Ring entries are read only after the index that covers them. */
	__atomic_thread_fence(__ATOMIC_ACQUIRE);
	head = ld16(avail + 4 + 2 * (q->last_avail % n));
	/* GUEST: head is a descriptor index */
	if (head >= n)
		return -EINVAL;
	/* The totals live after the (large) iov array: clear them too, or
	 * an element reused across pops would add up. */
	memset(e, 0, offsetof(struct virtq_elem, iov));
	e->out_len = e->in_len = 0;
	e->head = head;
	i = head;
	for (steps = 0; steps < n; steps++) {
		read_desc(desc, i, &d);
		if (d.flags & VIRTQ_DESC_F_INDIRECT) {
			/* GUEST: only if negotiated, and only as the whole
			 * chain's last element */
			if (!q->indirect)
				return -EINVAL;
			r = walk_indirect(e, mem, &d);
			if (r)
				return r;
			break;
		}
		r = add_buf(e, mem, &d);
		if (r)
			return r;
		if (!(d.flags & VIRTQ_DESC_F_NEXT))
			break;
		/* GUEST: next is a descriptor index */
		if (d.next >= n)
			return -EINVAL;
		i = d.next;
	}
	/* GUEST: a chain longer than the queue loops */
	if (steps == n)
		return -EINVAL;
	q->last_avail++;
	return 1;
}

/* While a live migration tracks kvmm's writes: the device-writable
 * buffers of head's chain, which the device has filled by the time it
 * pushes.  The chain is walked again rather than kept from the pop;
 * GUEST: with the pop's bounds (steps, indices, no nesting) and every
 * range checked by guest_mem_mark_gpa.  A driver that rewrote an
 * in-flight chain (virtio 1.x 2.7.13 forbids it) hides only its own
 * buffers from the migration. */
static void mark_chain(const struct virtq *q, const struct guest_memory *mem, uint16_t head)
{
	const uint8_t *desc = ring(mem, q->desc, 16ULL * q->size), *table;
	unsigned int i = head, steps, k, n;
	struct vdesc d, t;

	if (!desc || head >= q->size)
		return;
	for (steps = 0; steps < q->size; steps++) {
		read_desc(desc, i, &d);
		if (d.flags & VIRTQ_DESC_F_INDIRECT) {
			n = d.len / 16;
			table = n && n <= VIRTQ_MAX_INDIRECT ? guest_mem_ptr(mem, d.addr, 16ULL * n) : NULL;
			for (k = 0; table && k < n; k++) {
				read_desc(table, k, &t);
				if (t.flags & VIRTQ_DESC_F_WRITE)
					guest_mem_mark_gpa(mem, t.addr, t.len);
			}
			return;
		}
		if (d.flags & VIRTQ_DESC_F_WRITE)
			guest_mem_mark_gpa(mem, d.addr, d.len);
		if (!(d.flags & VIRTQ_DESC_F_NEXT) || d.next >= q->size)
			return;
		i = d.next;
	}
}

int virtq_push(struct virtq *q, const struct guest_memory *mem,
	       uint16_t head, uint32_t len)
{
	uint16_t n = q->size;
	uint8_t *used = ring(mem, q->used, 6 + 8ULL * n);

	if (!used)
		return -EFAULT;
	st32(used + 4 + 8 * (q->used_idx % n), head);
	st32(used + 8 + 8 * (q->used_idx % n), len);
	q->used_idx++;
	/* The entry must be visible before the index that publishes it. */
	__atomic_thread_fence(__ATOMIC_RELEASE);
	st16(used + 2, q->used_idx);
	if (atomic_load(&mem->dirty)) {
		mark_chain(q, mem, head);
		guest_mem_mark(mem, used, 6 + 8ULL * n);
	}
	return 0;
}

bool virtq_should_notify(const struct virtq *q, const struct guest_memory *mem)
{
	const uint8_t *avail = ring(mem, q->avail, 2);

	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	return !avail || !(ld16(avail) & VIRTQ_AVAIL_F_NO_INTERRUPT);
}

void virtq_set_notify(struct virtq *q, const struct guest_memory *mem, bool on)
{
	uint8_t *used = ring(mem, q->used, 2);

	if (!q->ready || !used)
		return;
	st16(used, on ? 0 : VIRTQ_USED_F_NO_NOTIFY);
	guest_mem_mark(mem, used, 2);
	/* The flag must be visible before the avail index is read again. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
}

bool virtq_has_avail(const struct virtq *q, const struct guest_memory *mem)
{
	const uint8_t *avail = ring(mem, q->avail, 4);

	return q->ready && avail && ld16(avail + 2) != q->last_avail;
}

uint64_t virtq_elem_write(const struct virtq_elem *e, uint64_t off, const void *src, uint64_t len)
{
	const uint8_t *s = src;
	uint64_t done = 0;
	unsigned int i;

	for (i = e->n_out; i < e->n_out + e->n_in && done < len; i++) {
		uint64_t n = e->iov[i].iov_len;

		if (off >= n) {
			off -= n;
			continue;
		}
		n -= off;
		if (n > len - done)
			n = len - done;
		memcpy((uint8_t *)e->iov[i].iov_base + off, s + done, n);
		done += n;
		off = 0;
	}
	return done;
}
