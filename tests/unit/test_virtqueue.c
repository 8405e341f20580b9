/* The split virtqueue walker against a fake guest memory (real guest RAM
 * from memory.c, no KVM) fed well-formed and hostile chains. */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "memory.h"
#include "unit.h"
#include "util.h"
#include "virtio/virtqueue.h"

#define QSZ	8
#define DESC	0x1000ULL
#define AVAIL	0x2000ULL
#define USED	0x3000ULL
#define BUF	0x10000ULL
#define MEMSZ	(1 * MiB)

struct fake {
	struct guest_memory m;
	struct virtq q;
	uint16_t avail_idx;
};

static uint8_t *g(struct fake *f, uint64_t gpa)
{
	return guest_mem_ptr(&f->m, gpa, 1);
}

static void set_desc(struct fake *f, uint64_t table, unsigned int i, uint64_t addr,
		     uint32_t len, uint16_t flags, uint16_t next)
{
	uint8_t *d = g(f, table + 16 * i);

	memcpy(d, &addr, 8);
	memcpy(d + 8, &len, 4);
	memcpy(d + 12, &flags, 2);
	memcpy(d + 14, &next, 2);
}

static void offer(struct fake *f, uint16_t head)
{
	uint8_t *a = g(f, AVAIL);

	memcpy(a + 4 + 2 * (f->avail_idx % f->q.size), &head, 2);
	f->avail_idx++;
	memcpy(a + 2, &f->avail_idx, 2);
}

static void setup(struct fake *f)
{
	memset(f, 0, sizeof(*f));
	CHECK(guest_mem_init(&f->m, MEMSZ, MEMSZ, 4 * GiB) == 0);
	f->q = (struct virtq){ .size = QSZ, .desc = DESC, .avail = AVAIL,
			       .used = USED, .ready = true, .indirect = true };
	CHECK(virtq_check(&f->q, &f->m, 256) == 0);
}

UNIT_TEST(vq_pops_a_chain_and_pushes_it_back)
{
	static struct virtq_elem e;
	struct fake f;
	uint16_t idx;
	uint32_t id, len;

	setup(&f);
	CHECK(virtq_pop(&f.q, &f.m, &e) == 0);		/* empty */
	set_desc(&f, DESC, 3, BUF, 16, VIRTQ_DESC_F_NEXT, 5);
	set_desc(&f, DESC, 5, BUF + 0x100, 64, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 6);
	set_desc(&f, DESC, 6, BUF + 0x200, 32, VIRTQ_DESC_F_WRITE, 0);
	offer(&f, 3);
	CHECK(virtq_pop(&f.q, &f.m, &e) == 1);
	CHECK_EQ_U64(e.head, 3);
	CHECK_EQ_U64(e.n_out, 1);
	CHECK_EQ_U64(e.n_in, 2);
	CHECK_EQ_U64(e.out_len, 16);
	CHECK_EQ_U64(e.in_len, 96);
	CHECK(e.iov[1].iov_base == g(&f, BUF + 0x100));
	CHECK_EQ_U64(virtq_elem_write(&e, 0, "0123456789abcdef0123456789abcdef"
				      "0123456789abcdef0123456789abcdef0123", 68), 68);
	CHECK(!memcmp(g(&f, BUF + 0x200), "0123", 4));
	/* from an offset, across the buffers' boundary, cut at their end */
	CHECK_EQ_U64(virtq_elem_write(&e, 62, "wxyz", 4), 4);
	CHECK(!memcmp(g(&f, BUF + 0x100 + 62), "wx", 2));
	CHECK(!memcmp(g(&f, BUF + 0x200), "yz23", 4));
	CHECK_EQ_U64(virtq_elem_write(&e, 94, "ABCD", 4), 2);
	CHECK(!memcmp(g(&f, BUF + 0x200 + 30), "AB", 2));
	CHECK(virtq_pop(&f.q, &f.m, &e) == 0);
	CHECK(virtq_push(&f.q, &f.m, 3, 68) == 0);
	memcpy(&idx, g(&f, USED + 2), 2);
	memcpy(&id, g(&f, USED + 4), 4);
	memcpy(&len, g(&f, USED + 8), 4);
	CHECK_EQ_U64(idx, 1);
	CHECK_EQ_U64(id, 3);
	CHECK_EQ_U64(len, 68);
	/* the no-interrupt hint */
	CHECK(virtq_should_notify(&f.q, &f.m));
	g(&f, AVAIL)[0] = VIRTQ_AVAIL_F_NO_INTERRUPT;
	CHECK(!virtq_should_notify(&f.q, &f.m));
	guest_mem_destroy(&f.m);
}

UNIT_TEST(vq_indirect_table)
{
	static struct virtq_elem e;
	struct fake f;

	setup(&f);
	set_desc(&f, BUF, 0, BUF + 0x1000, 8, VIRTQ_DESC_F_NEXT, 2);
	set_desc(&f, BUF, 2, BUF + 0x2000, 512, VIRTQ_DESC_F_WRITE, 0);
	set_desc(&f, DESC, 0, BUF, 3 * 16, VIRTQ_DESC_F_INDIRECT, 0);
	offer(&f, 0);
	CHECK(virtq_pop(&f.q, &f.m, &e) == 1);
	CHECK_EQ_U64(e.n_out, 1);
	CHECK_EQ_U64(e.n_in, 1);
	CHECK_EQ_U64(e.in_len, 512);
	/* not negotiated: refused */
	f.q.indirect = false;
	offer(&f, 0);
	CHECK(virtq_pop(&f.q, &f.m, &e) == -EINVAL);
	guest_mem_destroy(&f.m);
}

/* Each hostile case on a fresh queue: the pop fails, nothing crashes. */
static void hostile(void (*make)(struct fake *f))
{
	static struct virtq_elem e;
	struct fake f;

	setup(&f);
	make(&f);
	CHECK(virtq_pop(&f.q, &f.m, &e) == -EINVAL);
	guest_mem_destroy(&f.m);
}

static void bad_head(struct fake *f) { offer(f, QSZ); }
static void bad_next(struct fake *f)
{
	set_desc(f, DESC, 0, BUF, 8, VIRTQ_DESC_F_NEXT, QSZ + 100);
	offer(f, 0);
}
static void self_loop(struct fake *f)
{
	set_desc(f, DESC, 0, BUF, 8, VIRTQ_DESC_F_NEXT, 0);
	offer(f, 0);
}
static void long_loop(struct fake *f)
{
	unsigned int i;

	for (i = 0; i < QSZ; i++)
		set_desc(f, DESC, i, BUF, 8, VIRTQ_DESC_F_NEXT, (i + 1) % QSZ);
	offer(f, 0);
}
static void outside_memory(struct fake *f)
{
	set_desc(f, DESC, 0, 32ULL << 40, 8, 0, 0);	/* 32 TiB */
	offer(f, 0);
}
static void straddles_end(struct fake *f)
{
	set_desc(f, DESC, 0, MEMSZ - 4, 8, 0, 0);
	offer(f, 0);
}
static void wrapping_addr(struct fake *f)
{
	set_desc(f, DESC, 0, UINT64_MAX - 3, 8, 0, 0);
	offer(f, 0);
}
static void zero_len(struct fake *f)
{
	set_desc(f, DESC, 0, BUF, 0, 0, 0);
	offer(f, 0);
}
static void huge_len(struct fake *f)
{
	set_desc(f, DESC, 0, BUF, UINT32_MAX, VIRTQ_DESC_F_WRITE, 0);
	offer(f, 0);
}
static void read_after_write(struct fake *f)
{
	set_desc(f, DESC, 0, BUF, 8, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1);
	set_desc(f, DESC, 1, BUF, 8, 0, 0);
	offer(f, 0);
}
static void too_many_avail(struct fake *f)
{
	uint16_t idx = QSZ + 1;

	memcpy(g(f, AVAIL + 2), &idx, 2);
}
static void nested_indirect(struct fake *f)
{
	set_desc(f, BUF, 0, BUF + 0x100, 16, VIRTQ_DESC_F_INDIRECT, 0);
	set_desc(f, DESC, 0, BUF, 16, VIRTQ_DESC_F_INDIRECT, 0);
	offer(f, 0);
}
static void indirect_bad_len(struct fake *f)
{
	set_desc(f, DESC, 0, BUF, 24, VIRTQ_DESC_F_INDIRECT, 0);
	offer(f, 0);
}
static void indirect_empty(struct fake *f)
{
	set_desc(f, DESC, 0, BUF, 0, VIRTQ_DESC_F_INDIRECT, 0);
	offer(f, 0);
}
static void indirect_huge(struct fake *f)
{
	set_desc(f, DESC, 0, BUF, 16 * (VIRTQ_MAX_INDIRECT + 1), VIRTQ_DESC_F_INDIRECT, 0);
	offer(f, 0);
}
static void indirect_outside(struct fake *f)
{
	set_desc(f, DESC, 0, MEMSZ - 16, 32, VIRTQ_DESC_F_INDIRECT, 0);
	offer(f, 0);
}
static void indirect_loop(struct fake *f)
{
	set_desc(f, BUF, 0, BUF + 0x100, 8, VIRTQ_DESC_F_NEXT, 1);
	set_desc(f, BUF, 1, BUF + 0x100, 8, VIRTQ_DESC_F_NEXT, 0);
	set_desc(f, DESC, 0, BUF, 32, VIRTQ_DESC_F_INDIRECT, 0);
	offer(f, 0);
}
static void indirect_next_out(struct fake *f)
{
	set_desc(f, BUF, 0, BUF + 0x100, 8, VIRTQ_DESC_F_NEXT, 2);
	set_desc(f, DESC, 0, BUF, 32, VIRTQ_DESC_F_INDIRECT, 0);
	offer(f, 0);
}
static void indirect_with_next(struct fake *f)
{
	set_desc(f, BUF, 0, BUF + 0x100, 8, 0, 0);
	set_desc(f, DESC, 0, BUF, 16, VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_NEXT, 1);
	offer(f, 0);
}

UNIT_TEST(vq_bad_head) { hostile(bad_head); }
UNIT_TEST(vq_bad_next) { hostile(bad_next); }
UNIT_TEST(vq_self_loop) { hostile(self_loop); }
UNIT_TEST(vq_loop_through_the_whole_queue) { hostile(long_loop); }
UNIT_TEST(vq_buffer_outside_memory) { hostile(outside_memory); }
UNIT_TEST(vq_buffer_straddling_the_end_of_memory) { hostile(straddles_end); }
UNIT_TEST(vq_buffer_address_wraps) { hostile(wrapping_addr); }
UNIT_TEST(vq_zero_length) { hostile(zero_len); }
UNIT_TEST(vq_oversized_length) { hostile(huge_len); }
UNIT_TEST(vq_readable_after_writable) { hostile(read_after_write); }
UNIT_TEST(vq_avail_index_too_far_ahead) { hostile(too_many_avail); }
UNIT_TEST(vq_nested_indirect) { hostile(nested_indirect); }
UNIT_TEST(vq_indirect_partial_descriptor) { hostile(indirect_bad_len); }
UNIT_TEST(vq_indirect_empty) { hostile(indirect_empty); }
UNIT_TEST(vq_indirect_too_big) { hostile(indirect_huge); }
UNIT_TEST(vq_indirect_outside_memory) { hostile(indirect_outside); }
UNIT_TEST(vq_indirect_loop) { hostile(indirect_loop); }
UNIT_TEST(vq_indirect_next_outside_table) { hostile(indirect_next_out); }
UNIT_TEST(vq_indirect_with_next) { hostile(indirect_with_next); }

UNIT_TEST(vq_check_sizes_and_rings)
{
	struct fake f;

	setup(&f);
	f.q.size = 6;				/* not a power of two */
	CHECK(virtq_check(&f.q, &f.m, 256) == -EINVAL);
	f.q.size = 0;
	CHECK(virtq_check(&f.q, &f.m, 256) == -EINVAL);
	f.q.size = 512;				/* above the device's max */
	CHECK(virtq_check(&f.q, &f.m, 256) == -EINVAL);
	f.q.size = 256;
	CHECK(virtq_check(&f.q, &f.m, 128) == -EINVAL);
	CHECK(virtq_check(&f.q, &f.m, 256) == 0);
	f.q.desc = DESC + 8;			/* misaligned */
	CHECK(virtq_check(&f.q, &f.m, 256) == -EINVAL);
	f.q.desc = MEMSZ - 16;			/* table runs out of RAM */
	CHECK(virtq_check(&f.q, &f.m, 256) == -EINVAL);
	f.q.desc = DESC;
	f.q.used = 1ULL << 45;
	CHECK(virtq_check(&f.q, &f.m, 256) == -EINVAL);
	guest_mem_destroy(&f.m);
}

UNIT_TEST(vq_disabled_queue_yields_nothing)
{
	static struct virtq_elem e;
	struct fake f;

	setup(&f);
	set_desc(&f, DESC, 0, BUF, 8, 0, 0);
	offer(&f, 0);
	f.q.ready = false;
	CHECK(virtq_pop(&f.q, &f.m, &e) == 0);
	guest_mem_destroy(&f.m);
}

UNIT_TEST(vq_notification_hint_and_pending_entries)
{
	static struct virtq_elem e;
	struct fake f;
	uint16_t flags;

	setup(&f);
	CHECK(!virtq_has_avail(&f.q, &f.m));
	virtq_set_notify(&f.q, &f.m, false);
	memcpy(&flags, g(&f, USED), 2);
	CHECK_EQ_U64(flags, VIRTQ_USED_F_NO_NOTIFY);
	set_desc(&f, DESC, 0, BUF, 16, 0, 0);
	offer(&f, 0);
	CHECK(virtq_has_avail(&f.q, &f.m));
	CHECK(virtq_pop(&f.q, &f.m, &e) == 1);
	CHECK(!virtq_has_avail(&f.q, &f.m));
	virtq_set_notify(&f.q, &f.m, true);
	memcpy(&flags, g(&f, USED), 2);
	CHECK_EQ_U64(flags, 0);
	/* a queue that is not ready is left alone */
	f.q.ready = false;
	virtq_set_notify(&f.q, &f.m, false);
	memcpy(&flags, g(&f, USED), 2);
	CHECK_EQ_U64(flags, 0);
	offer(&f, 0);
	CHECK(!virtq_has_avail(&f.q, &f.m));
}

static bool page_marked(const uint8_t *bm, uint64_t gpa)
{
	return bm[gpa / 4096 / 8] & (1u << (gpa / 4096 % 8));
}

/* While a live migration tracks kvmm's own writes, a push marks the
 * pages of the chain's device-writable buffers (direct and indirect)
 * and the used ring, and no other; nothing is marked while not tracking. */
UNIT_TEST(vq_push_marks_written_pages_for_a_live_migration)
{
	static struct virtq_elem e;
	struct fake f;
	uint8_t bm[MEMSZ / 4096 / 8];
	unsigned int p, n = 0;

	setup(&f);
	set_desc(&f, DESC, 0, BUF, 16, VIRTQ_DESC_F_NEXT, 1);			/* read: 0x10000 */
	set_desc(&f, DESC, 1, BUF + 0x3ff0, 0x20, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 2); /* 0x13000-0x14000 */
	set_desc(&f, DESC, 2, 0x20000, 16, VIRTQ_DESC_F_INDIRECT, 0);
	set_desc(&f, 0x20000, 0, BUF + 0x8000, 8, VIRTQ_DESC_F_WRITE, 0);	/* 0x18000 */
	offer(&f, 0);
	/* Not tracking: a push marks nothing (and costs no walk). */
	CHECK(virtq_pop(&f.q, &f.m, &e) == 1);
	CHECK(virtq_push(&f.q, &f.m, e.head, 8) == 0);
	CHECK(guest_mem_track(&f.m, true) == 0);
	memset(bm, 0, sizeof(bm));
	guest_mem_take_dirty(&f.m, bm);
	for (p = 0; p < sizeof(bm); p++)
		CHECK(bm[p] == 0);
	offer(&f, 0);
	CHECK(virtq_pop(&f.q, &f.m, &e) == 1);
	CHECK(virtq_push(&f.q, &f.m, e.head, 8) == 0);
	guest_mem_take_dirty(&f.m, bm);
	CHECK(page_marked(bm, BUF + 0x3000) && page_marked(bm, BUF + 0x4000));
	CHECK(page_marked(bm, BUF + 0x8000));
	CHECK(page_marked(bm, USED));
	CHECK(!page_marked(bm, BUF));
	CHECK(!page_marked(bm, DESC) && !page_marked(bm, AVAIL) && !page_marked(bm, 0x20000));
	for (p = 0; p < MEMSZ / 4096; p++)
		n += page_marked(bm, p * 4096ULL);
	CHECK_EQ_U64(n, 4);
	/* Taken once: the bits are cleared. */
	memset(bm, 0, sizeof(bm));
	guest_mem_take_dirty(&f.m, bm);
	CHECK(!page_marked(bm, USED));
	/* Outside guest RAM is ignored, a range across pages marks each. */
	guest_mem_mark_gpa(&f.m, MEMSZ, 4096);
	guest_mem_mark_gpa(&f.m, 0x5ff8, 16);
	guest_mem_take_dirty(&f.m, bm);
	CHECK(page_marked(bm, 0x5000) && page_marked(bm, 0x6000) && !page_marked(bm, 0x7000));
	CHECK(guest_mem_track(&f.m, false) == 0);
	guest_mem_mark_gpa(&f.m, 0x7000, 1);
	CHECK(guest_mem_track(&f.m, true) == 0);
	memset(bm, 0, sizeof(bm));
	guest_mem_take_dirty(&f.m, bm);
	CHECK(!page_marked(bm, 0x7000));
	guest_mem_destroy(&f.m);
}
