/* Bounded randomized fuzz of the qcow2 format: images crafted and
 * written through kvmm, then their headers, refcount tables and blocks,
 * L1 and L2 tables mutated, opened and driven with random reads, writes,
 * discards, zeroes and flushes.  A crash or a sanitizer report is a
 * failure, and so is a write kvmm must never make: into the header
 * (other than its autoclear bits), into an image it refused or opened
 * read-only, or growing the file past what the requests could
 * allocate.  Exit status 0
 * otherwise.
 *
 *   qcow2_fuzz [--seconds N] [--seed S]    defaults: 5 s, seed 1
 */
#include <stdio.h>
#include <time.h>

#include "fuzz_rng.h"
#include "qcow2_img.h"
#include "util.h"

#define REQ_MAX	(64 * 1024)

static char path[64];
static FILE *report;

static int put_file(const uint8_t *b, uint64_t len)
{
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	int ok;

	if (fd < 0)
		return -1;
	ok = write(fd, b, len) == (ssize_t)len;
	close(fd);
	return ok ? 0 : -1;
}

/* A valid image with data, L2 tables and (small clusters) several
 * refcount blocks; its bytes. */
static uint8_t *base_image(uint64_t *len, unsigned int *cb)
{
	static const unsigned int cbs[] = { 9, 12, 16 };
	uint8_t buf[REQ_MAX];
	struct qi_dev d;
	unsigned int i;
	uint64_t size;

	*cb = cbs[rng() % 3];
	size = (1 + rng() % 4) << 20;
	if (qi_create(path, *cb, 2 + rng() % 2, size))
		return NULL;
	if (!qi_open(&d, path, false))
		return NULL;
	for (i = 0; i < 8; i++) {
		uint64_t n = 512 * (1 + rng() % (REQ_MAX / 512));
		uint64_t off = (rng() % (size / 512)) * 512;

		memset(buf, (int)rng(), sizeof(buf));
		qi_io(d.bd, BLOCK_WRITE, off, buf, MIN(n, size - off));
	}
	block_close(d.bd);
	return qi_slurp(path, len);
}

static void mutate(uint8_t *f, uint64_t len, unsigned int cb)
{
	static const unsigned int fields[] = { 4, 8, 16, 20, 24, 32, 36, 40, 48, 56, 60,
					       72, 80, 88, 96, 100, 104 };
	uint64_t cs = 1ULL << cb, where;
	unsigned int n = 1 + rng() % 4, i;

	for (i = 0; i < n; i++) {
		switch (rng() % 4) {
		case 0:		/* a header field: noise or an edge */
			where = fields[rng() % ARRAY_SIZE(fields)];
			break;
		case 1:		/* refcount table, its block, the L1 table */
			where = cs + rng() % (3 * cs);
			break;
		default:	/* anywhere: L2 tables, data */
			where = rng() % len;
			break;
		}
		where &= ~7ULL;
		if (where + 8 > len)
			continue;
		switch (rng() % 4) {
		case 0:
			qi_put(f + where, rng(), 8);
			break;
		case 1:	/* a plausible offset, maybe flagged */
			qi_put(f + where, ((rng() % (len / cs + 4)) << cb) | (rng() % 2 ? 1ULL << 63 : 0) |
				(rng() % 8 ? 0 : 1ULL << 62), 8);
			break;
		case 2:
			f[where + rng() % 8] ^= 1u << (rng() % 8);
			break;
		default:
			qi_put(f + where, 0, 8);
			break;
		}
	}
}

int main(int argc, char **argv)
{
	unsigned long seconds = 5, images = 0, opened = 0, reqs = 0, ok = 0;
	uint8_t *buf = malloc(REQ_MAX);
	uint64_t end;
	int i, fd;

	for (i = 1; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--seconds"))
			seconds = strtoul(argv[i + 1], NULL, 0);
		else if (!strcmp(argv[i], "--seed"))
			rng_state = strtoull(argv[i + 1], NULL, 0) | 1;
	}
	/* kvmm's one line per refused image or table would drown the
	 * report: its stderr goes away, the fuzzer's own lines do not --
	 * except under the sanitizers, whose reports go to stderr too. */
	report = fdopen(dup(2), "w");
	if (!report)
		return 1;
#ifndef __SANITIZE_ADDRESS__
	if (!freopen("/dev/null", "w", stderr))
		return 1;
#endif
	qi_cache = DISK_CACHE_UNSAFE;	/* what is tested needs no fdatasync */
	strcpy(path, "/tmp/kvmm-qcow2-fuzz-XXXXXX");
	fd = mkstemp(path);
	if (fd < 0 || !buf) {
		fprintf(report, "qcow2_fuzz: cannot create %s\n", path);
		return 1;
	}
	close(fd);
	end = now_ns() + seconds * 1000000000ULL;
	while (now_ns() < end) {
		uint64_t blen, len, after_len = 0, bound;
		unsigned int cb, k, n;
		uint8_t *base = base_image(&blen, &cb), *before, *after;
		struct qi_dev d;
		bool ro;

		if (!base) {
			fprintf(report, "qcow2_fuzz: cannot make a base image\n");
			return 1;
		}
		for (k = 0; k < 8 && now_ns() < end; k++, images++) {
			before = malloc(blen);
			memcpy(before, base, blen);
			mutate(before, blen, cb);
			len = blen;
			if (put_file(before, len))
				return 1;
			n = 1 + rng() % 16;
			/* Per request at most its data, two partial clusters, and
			 * the L2 tables and refcount blocks (64-bit refcounts in
			 * 512-byte clusters: 32 KiB each) that cover it. */
			bound = len + (1ULL << cb) + n * (REQ_MAX + (16ULL << cb));
			ro = rng() % 4 == 0;
			if (qi_open(&d, path, ro)) {
				uint64_t size = block_size(d.bd);

				opened++;
				for (i = 0; i < (int)n && size; i++, reqs++) {
					uint64_t off = (rng() % (size / 512)) * 512;
					uint64_t l = 512 * (1 + rng() % (REQ_MAX / 512));
					int64_t r = 0;

					l = MIN(l, size - off);

					switch (rng() % 6) {
					case 0: case 1:
						r = qi_io(d.bd, BLOCK_READ, off, buf, l);
						break;
					case 2: case 3:
						memset(buf, (int)rng(), l);
						r = qi_io(d.bd, BLOCK_WRITE, off, buf, l);
						break;
					case 4:
						r = rng() % 2 ? block_discard(d.bd, off, l) :
							block_write_zeroes(d.bd, off, l);
						break;
					default:
						r = qi_io(d.bd, BLOCK_FLUSH, 0, NULL, 0);
						break;
					}
					ok += r >= 0;
				}
				block_close(d.bd);
				after = qi_slurp(path, &after_len);
				if (!after || after_len > bound) {
					fprintf(report, "qcow2_fuzz: the file grew past %llu (now %llu, from %llu) in %u requests, cluster_bits %u\n",
						(unsigned long long)bound, (unsigned long long)after_len,
						(unsigned long long)len, n, cb);
					return 1;
				}
				if (ro && (after_len != len || memcmp(after, before, len))) {
					fprintf(report, "qcow2_fuzz: an image opened read-only was written\n");
					return 1;
				}
				if (memcmp(after, before, 88) ||
				    memcmp(after + 96, before + 96, (1ULL << cb) - 96)) {
					fprintf(report, "qcow2_fuzz: the header was written\n");
					return 1;
				}
				free(after);
			} else {
				after = qi_slurp(path, &after_len);
				if (!after || after_len != len || memcmp(after, before, len)) {
					fprintf(report, "qcow2_fuzz: a refused image was written\n");
					return 1;
				}
				free(after);
			}
			free(before);
		}
		free(base);
	}
	unlink(path);
	printf("qcow2_fuzz: %lu images, %lu opened, %lu requests, %lu succeeded\n", images, opened,
	       reqs, ok);
	free(buf);
	return 0;
}
