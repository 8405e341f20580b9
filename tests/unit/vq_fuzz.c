/* Bounded randomized fuzz of the split virtqueue walker: random and
 * mutated descriptor tables, avail rings and queue states in a small
 * fake guest memory.  Every chain virtq_pop accepts must point only into
 * guest RAM and respect the segment limit; a crash or a sanitizer report
 * is a failure.  Exit status 0 otherwise.
 *
 *   vq_fuzz [--seconds N] [--seed S]    defaults: 5 s, seed 1
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "memory.h"
#include "util.h"
#include "virtio/virtqueue.h"
#include "fuzz_rng.h"

#define MEMSZ	(256 * 1024ULL)

/* Mostly plausible values, sometimes edge cases, sometimes noise. */
static uint64_t pick_addr(void)
{
	switch (rng() % 8) {
	case 0: return rng();
	case 1: return MEMSZ - (rng() % 64);
	case 2: return UINT64_MAX - (rng() % 64);
	default: return rng() % MEMSZ;
	}
}

static uint32_t pick_len(void)
{
	switch (rng() % 8) {
	case 0: return 0;
	case 1: return UINT32_MAX - (rng() % 16);
	case 2: return 16 * (rng() % 300);
	default: return 1 + rng() % 4096;
	}
}

static void put_desc(uint8_t *d, uint64_t addr, uint32_t len, uint16_t flags,
		     uint16_t next)
{
	memcpy(d, &addr, 8);
	memcpy(d + 8, &len, 4);
	memcpy(d + 12, &flags, 2);
	memcpy(d + 14, &next, 2);
}

static int in_ram(const struct guest_memory *m, const struct iovec *v)
{
	const uint8_t *p = v->iov_base;

	return p >= m->base && v->iov_len <= MEMSZ &&
	       (uint64_t)(p - m->base) <= MEMSZ - v->iov_len;
}

int main(int argc, char **argv)
{
	static struct virtq_elem e;
	struct guest_memory m;
	unsigned long seconds = 5, iters = 0, chains = 0, refused = 0;
	uint64_t end;
	int i;

	rng_state = 1;
	for (i = 1; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--seconds"))
			seconds = strtoul(argv[i + 1], NULL, 0);
		else if (!strcmp(argv[i], "--seed"))
			rng_state = strtoull(argv[i + 1], NULL, 0) | 1;
	}
	if (guest_mem_init(&m, MEMSZ, MEMSZ, 4 * GiB)) {
		fprintf(stderr, "vq_fuzz: cannot map the fake guest memory\n");
		return 1;
	}
	end = now_ns() + seconds * 1000000000ULL;
	while (now_ns() < end) {
		struct virtq q = { .ready = true, .indirect = rng() & 1 };
		unsigned int n, k, pops;
		uint8_t *desc, out[64];

		q.size = 1u << (rng() % 9);		/* 1..256 */
		if (!(rng() % 16))
			q.size = rng();			/* maybe not a power of 2 */
		q.desc = (rng() % 16) * 0x1000;
		q.avail = q.desc + 0x1000 * (1 + rng() % 4);
		q.used = q.avail + 0x1000 * (1 + rng() % 4);
		if (!(rng() % 16))
			q.used = pick_addr();
		if (virtq_check(&q, &m, 256)) {
			refused++;
			iters++;
			continue;
		}
		n = q.size;
		desc = guest_mem_ptr(&m, q.desc, 16ULL * n);
		for (k = 0; k < n; k++) {
			uint16_t flags = rng() % 8;
			uint16_t next = rng() % 4 ? rng() % n : rng();

			put_desc(desc + 16 * k, pick_addr(), pick_len(), flags, next);
		}
		/* Indirect tables somewhere in RAM: random bytes already
		 * there from earlier rounds, or fresh ones. */
		for (k = 0; k < 8; k++) {
			uint64_t t = rng() % (MEMSZ - 64) & ~15ULL;

			put_desc(guest_mem_ptr(&m, t, 16), pick_addr(), pick_len(),
				 rng() % 8, rng() % 8);
		}
		{
			uint8_t *avail = guest_mem_ptr(&m, q.avail, 6 + 2ULL * n);
			uint16_t idx = rng() % 4 ? rng() % (n + 1) : rng();

			for (k = 0; k < n; k++) {
				uint16_t h = rng() % 8 ? rng() % n : rng();

				memcpy(avail + 4 + 2 * k, &h, 2);
			}
			memcpy(avail + 2, &idx, 2);
			q.last_avail = 0;
		}
		for (pops = 0; pops < n + 2; pops++) {
			int r = virtq_pop(&q, &m, &e);

			if (r <= 0)
				break;
			chains++;
			if (e.n_out + e.n_in > VIRTQ_MAX_SEGS || !e.n_out + !e.n_in > 1) {
				fprintf(stderr, "vq_fuzz: bad segment count %u+%u\n",
					e.n_out, e.n_in);
				return 1;
			}
			for (k = 0; k < e.n_out + e.n_in; k++) {
				if (!in_ram(&m, &e.iov[k]) || !e.iov[k].iov_len) {
					fprintf(stderr, "vq_fuzz: buffer outside guest RAM\n");
					return 1;
				}
			}
			/* From a buffer of our own: a device writes what it
			 * made, never guest memory into guest memory, and the
			 * chain's buffers may cover the descriptor table. */
			for (k = 0; k < sizeof(out); k++)
				out[k] = rng();
			virtq_elem_write(&e, 0, out, sizeof(out));
			virtq_push(&q, &m, e.head, sizeof(out));
		}
		iters++;
	}
	guest_mem_destroy(&m);
	printf("vq_fuzz: %lu rounds, %lu chains accepted, %lu queues refused\n",
	       iters, chains, refused);
	return 0;
}
