/* The state stream's framing (src/vmm/migration/stream.c): what is
 * written reads back, and every truncated, corrupt, unknown or newer
 * stream is refused with a reason, never read past. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "migration/stream.h"
#include "unit.h"
#include "util.h"

#define NPAGES 40

/* A stream in a memory file: header, a config section, a device section,
 * memory (pages 1, 2 and 30 present), end. */
static uint8_t *make_stream(size_t *len, uint8_t **ram_out)
{
	struct stream_writer w;
	uint8_t *ram = calloc(NPAGES, STREAM_PAGE_SIZE);
	uint8_t bitmap[(NPAGES + 7) / 8] = { 0 };
	uint8_t *buf;
	int fd = memfd_create("stream", 0);
	unsigned int p;

	for (p = 0; p < NPAGES; p++)
		memset(ram + p * STREAM_PAGE_SIZE, 0x40 + p, STREAM_PAGE_SIZE);
	bitmap[0] = 0x06;		/* pages 1 and 2 */
	bitmap[30 / 8] |= 1 << (30 % 8);
	stream_writer_init(&w, fd);
	CHECK(stream_write_header(&w) == 0);
	CHECK(stream_write_section(&w, SEC_CONFIG, 0, "{\"cpus\":1}", 10) == 0);
	CHECK(stream_write_section(&w, SEC_DEVICE, 3, "abc", 3) == 0);
	CHECK(stream_write_memory(&w, ram, NPAGES * STREAM_PAGE_SIZE, bitmap) == 0);
	CHECK(stream_write_section(&w, SEC_END, 0, "", 0) == 0);
	*len = w.off;
	buf = malloc(*len);
	CHECK(pread(fd, buf, *len, 0) == (ssize_t)*len);
	close(fd);
	*ram_out = ram;
	return buf;
}

static int fd_of(const uint8_t *data, size_t len)
{
	int fd = memfd_create("stream", 0);

	CHECK(write(fd, data, len) == (ssize_t)len);
	lseek(fd, 0, SEEK_SET);
	return fd;
}

/* Reads a whole stream as a restore would: 0 or the first error. */
static int read_all(const uint8_t *data, size_t len, char *why, size_t whylen,
		    uint8_t *ram)
{
	struct stream_reader r;
	struct stream_section_hdr h;
	struct stream_mem_desc d;
	uint8_t *p, *bm;
	int fd = fd_of(data, len), ret;

	stream_reader_init(&r, fd);
	ret = stream_read_header(&r);
	while (!ret) {
		ret = stream_read_section_hdr(&r, &h);
		if (ret)
			break;
		if (h.type == SEC_END)
			break;
		if (h.type == SEC_MEMORY) {
			ret = stream_read_mem_meta(&r, &h, NPAGES * STREAM_PAGE_SIZE, &d, &bm);
			if (!ret) {
				ret = stream_read_mem_pages(&r, &d, bm, ram, NPAGES * STREAM_PAGE_SIZE);
				free(bm);
			}
			continue;
		}
		ret = stream_read_payload(&r, &h, &p);
		if (!ret)
			free(p);
	}
	snprintf(why, whylen, "%s", r.err);
	close(fd);
	return ret;
}

UNIT_TEST(a_stream_reads_back_with_pages_page_aligned)
{
	struct stream_reader r;
	struct stream_section_hdr h;
	struct stream_mem_desc d;
	uint8_t *ram, *p, *bm, *got = calloc(NPAGES, STREAM_PAGE_SIZE);
	size_t len;
	uint8_t *s = make_stream(&len, &ram);
	int fd = fd_of(s, len);
	unsigned int i;

	stream_reader_init(&r, fd);
	CHECK(stream_read_header(&r) == 0);
	CHECK(r.version == STREAM_VERSION);
	CHECK(stream_read_section_hdr(&r, &h) == 0);
	CHECK(h.type == SEC_CONFIG && h.len == 10);
	CHECK(stream_read_payload(&r, &h, &p) == 0);
	CHECK(!memcmp(p, "{\"cpus\":1}", 10));
	free(p);
	CHECK(stream_read_section_hdr(&r, &h) == 0);
	CHECK(h.type == SEC_DEVICE && h.index == 3 && h.len == 3);
	CHECK(stream_read_payload(&r, &h, &p) == 0);
	free(p);
	CHECK(stream_read_section_hdr(&r, &h) == 0);
	CHECK(h.type == SEC_MEMORY);
	CHECK(stream_read_mem_meta(&r, &h, NPAGES * STREAM_PAGE_SIZE, &d, &bm) == 0);
	CHECK(d.npages == NPAGES && d.present == 3);
	CHECK(r.off % STREAM_PAGE_SIZE == 0);
	/* The pages sit in the file where the descriptor says, in order. */
	CHECK(!memcmp(s + r.off, ram + 1 * STREAM_PAGE_SIZE, STREAM_PAGE_SIZE));
	CHECK(!memcmp(s + r.off + 2 * STREAM_PAGE_SIZE, ram + 30 * STREAM_PAGE_SIZE,
		      STREAM_PAGE_SIZE));
	CHECK(stream_read_mem_pages(&r, &d, bm, got, NPAGES * STREAM_PAGE_SIZE) == 0);
	for (i = 0; i < NPAGES; i++) {
		bool present = i == 1 || i == 2 || i == 30;

		CHECK(got[i * STREAM_PAGE_SIZE + 17] == (present ? 0x40 + i : 0));
	}
	free(bm);
	CHECK(stream_read_section_hdr(&r, &h) == 0);
	CHECK(h.type == SEC_END && h.len == 0);
	CHECK(r.off == len);
	close(fd);
	free(s);
	free(ram);
	free(got);
}

UNIT_TEST(every_truncation_is_refused_as_truncated)
{
	uint8_t *ram, *got = calloc(NPAGES, STREAM_PAGE_SIZE);
	size_t len, cut;
	uint8_t *s = make_stream(&len, &ram);
	char why[256];

	CHECK(read_all(s, len, why, sizeof(why), got) == 0);
	/* Every byte before the end section's last one (the page data in
	 * page steps, to stay quick). */
	for (cut = 0; cut < len; cut += cut > 8192 && cut < len - 8192 ? 509 : 1) {
		int r = read_all(s, cut, why, sizeof(why), got);

		if (r != -EIO || !strstr(why, "truncated")) {
			printf("  cut at %zu: %d %s\n", cut, r, why);
			CHECK(0);
			break;
		}
	}
	free(s);
	free(ram);
	free(got);
}

UNIT_TEST(every_flipped_byte_is_refused)
{
	uint8_t *ram, *got = calloc(NPAGES, STREAM_PAGE_SIZE);
	size_t len, at;
	uint8_t *s = make_stream(&len, &ram);
	char why[256];

	for (at = 0; at < len; at += at > 8192 && at < len - 8192 ? 509 : 1) {
		int r;

		s[at] ^= 0x10;
		r = read_all(s, len, why, sizeof(why), got);
		s[at] ^= 0x10;
		if (r == 0) {
			printf("  flip at %zu not noticed\n", at);
			CHECK(0);
			break;
		}
	}
	free(s);
	free(ram);
	free(got);
}

UNIT_TEST(bad_magic_newer_version_and_unknown_sections_are_named)
{
	uint8_t *ram, *got = calloc(NPAGES, STREAM_PAGE_SIZE);
	size_t len;
	uint8_t *s = make_stream(&len, &ram);
	char why[256];
	uint32_t v;

	s[0] = 'X';
	CHECK(read_all(s, len, why, sizeof(why), got) == -EINVAL);
	CHECK(strstr(why, "bad magic") != NULL);
	s[0] = 'K';
	v = STREAM_VERSION + 1;
	memcpy(s + 8, &v, 4);
	CHECK(read_all(s, len, why, sizeof(why), got) == -EINVAL);
	CHECK(strstr(why, "written by a newer kvmm: stream version 3, this kvmm reads up to 2") != NULL);
	v = STREAM_VERSION;
	memcpy(s + 8, &v, 4);

	/* A section type from the future, with a right header checksum. */
	{
		uint8_t *t = malloc(len);
		uint32_t type = 77, crc;

		memcpy(t, s, len);
		memcpy(t + 16, &type, 4);
		crc = crc32c(0, t + 16, 20);
		memcpy(t + 16 + 20, &crc, 4);
		CHECK(read_all(t, len, why, sizeof(why), got) == -EINVAL);
		CHECK(strstr(why, "unknown section type 77") != NULL);
		free(t);
	}
	free(s);
	free(ram);
	free(got);
}

UNIT_TEST(a_huge_length_with_a_right_header_checksum_is_refused_unread)
{
	struct stream_writer w;
	struct stream_reader r;
	struct stream_section_hdr h;
	uint8_t hdr[24];
	uint64_t big = 1ULL << 40;
	uint32_t type = SEC_DEVICE, idx = 0, crc = 0, hc;
	int fd = memfd_create("stream", 0);

	stream_writer_init(&w, fd);
	CHECK(stream_write_header(&w) == 0);
	memcpy(hdr, &type, 4);
	memcpy(hdr + 4, &idx, 4);
	memcpy(hdr + 8, &big, 8);
	memcpy(hdr + 16, &crc, 4);
	hc = crc32c(0, hdr, 20);
	memcpy(hdr + 20, &hc, 4);
	CHECK(write(fd, hdr, 24) == 24);
	lseek(fd, 0, SEEK_SET);
	stream_reader_init(&r, fd);
	CHECK(stream_read_header(&r) == 0);
	CHECK(stream_read_section_hdr(&r, &h) == -EINVAL);
	CHECK(strstr(r.err, "too long") != NULL);
	close(fd);
}

UNIT_TEST(crc32c_is_castagnoli)
{
	/* The check value of CRC-32C (iSCSI, RFC 3720). */
	CHECK_EQ_U64(crc32c(0, "123456789", 9), 0xE3069283);
	CHECK_EQ_U64(crc32c(crc32c(0, "1234", 4), "56789", 5), 0xE3069283);
}

UNIT_TEST(a_memory_section_for_another_ram_size_is_refused_before_its_bitmap)
{
	struct stream_reader r;
	struct stream_section_hdr h;
	struct stream_mem_desc d;
	uint8_t *ram, *bm = NULL;
	size_t len;
	uint8_t *s = make_stream(&len, &ram);
	int fd = fd_of(s, len);

	stream_reader_init(&r, fd);
	CHECK(stream_read_header(&r) == 0);
	do {
		CHECK(stream_read_section_hdr(&r, &h) == 0);
		if (h.type != SEC_MEMORY) {
			uint8_t *p;

			CHECK(stream_read_payload(&r, &h, &p) == 0);
			free(p);
		}
	} while (h.type != SEC_MEMORY);
	CHECK(stream_read_mem_meta(&r, &h, 2 * NPAGES * STREAM_PAGE_SIZE, &d, &bm) == -EINVAL);
	CHECK(bm == NULL);
	CHECK(strstr(r.err, "40 pages for") != NULL);
	close(fd);
	free(s);
	free(ram);
}

/* Live migration's PAGES sections: a bitmap's pages go out in bounded
 * sections of runs, read back into RAM in place; later ones overwrite. */
UNIT_TEST(pages_sections_carry_runs_and_read_back_in_place)
{
	struct stream_writer w;
	struct stream_reader r;
	struct stream_section_hdr h;
	uint8_t *ram = calloc(NPAGES, STREAM_PAGE_SIZE), *got = calloc(NPAGES, STREAM_PAGE_SIZE);
	uint8_t bitmap[(NPAGES + 7) / 8] = { 0 }, *p;
	uint64_t next = 0, sent, total = 0, pages;
	unsigned int i, sections = 0;
	int fd = memfd_create("stream", 0);
	char why[256];

	for (i = 0; i < NPAGES; i++)
		memset(ram + i * STREAM_PAGE_SIZE, 0x40 + i, STREAM_PAGE_SIZE);
	/* Pages 0-4, 9, 30-39: three runs, split at 3 pages a section. */
	bitmap[0] = 0x1f;
	bitmap[1] = 0x02;
	bitmap[3] = 0xc0;
	bitmap[4] = 0xff;
	stream_writer_init(&w, fd);
	CHECK(stream_write_header(&w) == 0);
	while (next < NPAGES) {
		CHECK(stream_write_pages(&w, ram, NPAGES, bitmap, &next, 3, &sent) == 0);
		CHECK(sent <= 3);
		total += sent;
		sections += sent > 0;
	}
	CHECK_EQ_U64(total, 16);
	CHECK_EQ_U64(sections, 6);
	CHECK(stream_write_section(&w, SEC_END, 0, "", 0) == 0);
	lseek(fd, 0, SEEK_SET);
	stream_reader_init(&r, fd);
	CHECK(stream_read_header(&r) == 0);
	total = 0;
	for (;;) {
		CHECK(stream_read_section_hdr(&r, &h) == 0);
		if (h.type == SEC_END)
			break;
		CHECK(h.type == SEC_PAGES);
		CHECK(stream_read_payload(&r, &h, &p) == 0);
		CHECK(stream_apply_pages(p, h.len, got, NPAGES * STREAM_PAGE_SIZE, &pages,
					 why, sizeof(why)) == 0);
		total += pages;
		free(p);
	}
	CHECK_EQ_U64(total, 16);
	for (i = 0; i < NPAGES; i++) {
		bool in = bitmap[i / 8] & (1u << (i % 8));

		CHECK(got[i * STREAM_PAGE_SIZE] == (in ? 0x40 + i : 0));
		CHECK(got[i * STREAM_PAGE_SIZE + STREAM_PAGE_SIZE - 1] == (in ? 0x40 + i : 0));
	}
	close(fd);
	free(ram);
	free(got);
}

UNIT_TEST(a_pages_run_outside_ram_is_refused_with_nothing_copied)
{
	uint8_t *ram = calloc(2, STREAM_PAGE_SIZE);
	uint8_t pl[8 + 16 + STREAM_PAGE_SIZE] = { 0 };
	uint32_t one = 1;
	uint64_t first = 2, count = 1, big = 1ULL << 62;
	char why[256];

	memcpy(pl, &one, 4);
	memcpy(pl + 8, &first, 8);
	memcpy(pl + 16, &count, 8);
	memset(pl + 24, 0x55, STREAM_PAGE_SIZE);
	/* Page 2 of a 2-page RAM. */
	CHECK(stream_apply_pages(pl, sizeof(pl), ram, 2 * STREAM_PAGE_SIZE, NULL,
				 why, sizeof(why)) == -EINVAL);
	CHECK(strstr(why, "corrupt stream") != NULL);
	/* A count that would wrap the length check. */
	first = 0;
	memcpy(pl + 8, &first, 8);
	memcpy(pl + 16, &big, 8);
	CHECK(stream_apply_pages(pl, sizeof(pl), ram, 2 * STREAM_PAGE_SIZE, NULL,
				 why, sizeof(why)) == -EINVAL);
	/* One page short of what the run says. */
	memcpy(pl + 16, &count, 8);
	CHECK(stream_apply_pages(pl, sizeof(pl) - 1, ram, 2 * STREAM_PAGE_SIZE, NULL,
				 why, sizeof(why)) == -EINVAL);
	CHECK(ram[0] == 0 && ram[STREAM_PAGE_SIZE] == 0);
	/* The right one lands. */
	CHECK(stream_apply_pages(pl, sizeof(pl), ram, 2 * STREAM_PAGE_SIZE, NULL,
				 why, sizeof(why)) == 0);
	CHECK(ram[0] == 0x55 && ram[STREAM_PAGE_SIZE] == 0);
	free(ram);
}

UNIT_TEST(a_pages_section_in_a_version_1_stream_is_refused)
{
	struct stream_writer w;
	struct stream_reader r;
	struct stream_section_hdr h;
	uint8_t *ram = calloc(NPAGES, STREAM_PAGE_SIZE), bitmap[(NPAGES + 7) / 8] = { 1 };
	uint64_t next = 0, sent;
	uint32_t v1 = 1;
	int fd = memfd_create("stream", 0);

	stream_writer_init(&w, fd);
	CHECK(stream_write_header(&w) == 0);
	CHECK(stream_write_pages(&w, ram, NPAGES, bitmap, &next, 8, &sent) == 0);
	CHECK(pwrite(fd, &v1, 4, 8) == 4);
	lseek(fd, 0, SEEK_SET);
	stream_reader_init(&r, fd);
	CHECK(stream_read_header(&r) == 0);
	CHECK(r.version == 1);
	CHECK(stream_read_section_hdr(&r, &h) == -EINVAL);
	CHECK(strstr(r.err, "unknown section type 10") != NULL);
	close(fd);
	free(ram);
}

static int put_count(void *opaque, uint64_t first, uint64_t count, const uint8_t *data)
{
	uint64_t *seen = opaque;

	/* Runs in order: first and the data each run's. */
	CHECK(data[0] == 0x40 + first);
	seen[0] += count;
	seen[1] = first;
	return 0;
}

UNIT_TEST(post_copy_runs_go_to_a_callback_and_its_section_reads_in_version_2_only)
{
	struct stream_writer w;
	struct stream_reader r;
	struct stream_section_hdr h;
	uint8_t *ram = calloc(NPAGES, STREAM_PAGE_SIZE), bitmap[(NPAGES + 7) / 8] = { 0 };
	uint8_t *p, pl[8 + (NPAGES + 7) / 8] = { 0 };
	uint64_t next = 0, sent, seen[2] = { 0 }, pages = 0, n = NPAGES;
	uint32_t v1 = 1;
	char why[256];
	int fd = memfd_create("stream", 0);
	unsigned int i;

	for (i = 0; i < NPAGES; i++)
		memset(ram + i * STREAM_PAGE_SIZE, 0x40 + i, STREAM_PAGE_SIZE);
	bitmap[0] = 0x06;	/* pages 1-2 */
	bitmap[2] = 0x01;	/* page 16 */
	memcpy(pl, &n, 8);
	memcpy(pl + 8, bitmap, sizeof(bitmap));
	stream_writer_init(&w, fd);
	CHECK(stream_write_header(&w) == 0);
	CHECK(stream_write_section(&w, SEC_POSTCOPY, 0, pl, sizeof(pl)) == 0);
	CHECK(stream_write_pages(&w, ram, NPAGES, bitmap, &next, 8, &sent) == 0);
	CHECK_EQ_U64(sent, 3);
	lseek(fd, 0, SEEK_SET);
	stream_reader_init(&r, fd);
	CHECK(stream_read_header(&r) == 0);
	CHECK(stream_read_section_hdr(&r, &h) == 0);
	CHECK(h.type == SEC_POSTCOPY && !strcmp(stream_section_name(h.type), "postcopy"));
	CHECK(stream_read_payload(&r, &h, &p) == 0);
	CHECK(h.len == sizeof(pl) && !memcmp(p, pl, sizeof(pl)));
	free(p);
	CHECK(stream_read_section_hdr(&r, &h) == 0 && h.type == SEC_PAGES);
	CHECK(stream_read_payload(&r, &h, &p) == 0);
	CHECK(stream_for_pages(p, h.len, NPAGES, put_count, seen, &pages, why, sizeof(why)) == 0);
	CHECK_EQ_U64(pages, 3);
	CHECK_EQ_U64(seen[0], 3);
	CHECK_EQ_U64(seen[1], 16);
	/* A RAM too small for page 16: refused before any run is handed on. */
	seen[0] = 0;
	CHECK(stream_for_pages(p, h.len, 16, put_count, seen, NULL, why, sizeof(why)) == -EINVAL);
	CHECK(seen[0] == 0 && strstr(why, "corrupt stream") != NULL);
	free(p);
	/* Version 1 knows no POSTCOPY section. */
	CHECK(pwrite(fd, &v1, 4, 8) == 4);
	lseek(fd, 0, SEEK_SET);
	stream_reader_init(&r, fd);
	CHECK(stream_read_header(&r) == 0);
	CHECK(stream_read_section_hdr(&r, &h) == -EINVAL);
	CHECK(strstr(r.err, "unknown section type 11") != NULL);
	close(fd);
	free(ram);
}
