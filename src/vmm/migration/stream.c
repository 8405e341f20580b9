/* The state stream's framing: header, sections, checksums (stream.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "stream.h"
#include "util.h"

/* crc32c (Castagnoli, reflected 0x82F63B78): the SSE4.2 instruction when
 * the CPU has it (memory pages are checksummed at GB/s), else a table. */
static uint32_t crc_table[256];

static void crc_table_init(void)
{
	uint32_t i, j, c;

	for (i = 0; i < 256; i++) {
		c = i;
		for (j = 0; j < 8; j++)
			c = c & 1 ? (c >> 1) ^ 0x82F63B78 : c >> 1;
		crc_table[i] = c;
	}
}

static uint32_t crc32c_sw(uint32_t crc, const uint8_t *p, size_t len)
{
	if (!crc_table[1])
		crc_table_init();
	while (len--)
		crc = crc_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
	return crc;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2")))
static uint32_t crc32c_hw(uint32_t crc, const uint8_t *p, size_t len)
{
	uint64_t c = crc, v;

	while (len && ((uintptr_t)p & 7)) {
		c = __builtin_ia32_crc32qi((uint32_t)c, *p++);
		len--;
	}
	while (len >= 8) {
		memcpy(&v, p, 8);
		c = __builtin_ia32_crc32di(c, v);
		p += 8;
		len -= 8;
	}
	while (len--)
		c = __builtin_ia32_crc32qi((uint32_t)c, *p++);
	return (uint32_t)c;
}
#endif

uint32_t crc32c(uint32_t crc, const void *data, size_t len)
{
	crc = ~crc;
#if defined(__x86_64__)
	if (__builtin_cpu_supports("sse4.2"))
		return ~crc32c_hw(crc, data, len);
#endif
	return ~crc32c_sw(crc, data, len);
}

static const char *const section_names[] = {
	[SEC_CONFIG] = "config", [SEC_LAYOUT] = "layout", [SEC_VCPU] = "vcpu",
	[SEC_IRQCHIP] = "irqchip", [SEC_PIT] = "pit", [SEC_CLOCK] = "clock",
	[SEC_DEVICE] = "device", [SEC_MEMORY] = "memory", [SEC_END] = "end",
	[SEC_PAGES] = "pages", [SEC_POSTCOPY] = "postcopy",
};

const char *stream_section_name(uint32_t type)
{
	return type && type <= SEC_MAX ? section_names[type] : "unknown";
}

/* --- writer --- */

void stream_writer_init(struct stream_writer *w, int fd)
{
	w->fd = fd;
	w->off = 0;
}

static int wr(struct stream_writer *w, const void *p, size_t len)
{
	int r = write_all(w->fd, p, len);

	if (!r)
		w->off += len;
	return r;
}

static void put32(uint8_t *p, uint32_t v)
{
	memcpy(p, &v, 4);	/* the stream is little-endian, as x86 */
}

static void put64(uint8_t *p, uint64_t v)
{
	memcpy(p, &v, 8);
}

static uint32_t get32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, 4);
	return v;
}

static uint64_t get64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, 8);
	return v;
}

int stream_write_header(struct stream_writer *w)
{
	uint8_t h[STREAM_HEADER_LEN] = { 0 };

	memcpy(h, STREAM_MAGIC, 8);
	put32(h + 8, STREAM_VERSION);
	put32(h + 12, 0);
	return wr(w, h, sizeof(h));
}

static int write_section_hdr(struct stream_writer *w, uint32_t type, uint32_t index,
			     uint64_t len, uint32_t crc)
{
	uint8_t h[STREAM_SECTION_HDR_LEN];

	put32(h, type);
	put32(h + 4, index);
	put64(h + 8, len);
	put32(h + 16, crc);
	put32(h + 20, crc32c(0, h, 20));
	return wr(w, h, sizeof(h));
}

int stream_write_section(struct stream_writer *w, uint32_t type, uint32_t index,
			 const void *payload, size_t len)
{
	int r = write_section_hdr(w, type, index, len, crc32c(0, payload, len));

	return r ? r : wr(w, payload, len);
}

static bool page_set(const uint8_t *bitmap, uint64_t p)
{
	return bitmap[p / 8] & (1u << (p % 8));
}

#define MEM_DESC_LEN 48

static void desc_encode(uint8_t *b, const struct stream_mem_desc *d)
{
	put32(b, d->page_size);
	put32(b + 4, d->flags);
	put64(b + 8, d->npages);
	put64(b + 16, d->present);
	put64(b + 24, d->bitmap_len);
	put64(b + 32, d->pad_len);
	put32(b + 40, d->data_crc);
	put32(b + 44, d->reserved);
}

int stream_write_memory(struct stream_writer *w, const uint8_t *base,
			uint64_t size, const uint8_t *bitmap)
{
	static const uint8_t zeros[STREAM_PAGE_SIZE];
	struct stream_mem_desc d = { .page_size = STREAM_PAGE_SIZE };
	uint8_t db[MEM_DESC_LEN];
	uint64_t p, start;
	uint32_t crc;
	int r;

	d.npages = size / STREAM_PAGE_SIZE;
	d.bitmap_len = (d.npages + 7) / 8;
	/* One pass over the pages for the checksum first: the descriptor
	 * that carries it comes before them (the stream cannot seek back). */
	crc = 0;
	for (p = 0; p < d.npages; p++) {
		if (!page_set(bitmap, p))
			continue;
		d.present++;
		crc = crc32c(crc, base + p * STREAM_PAGE_SIZE, STREAM_PAGE_SIZE);
	}
	d.data_crc = crc;
	start = w->off + STREAM_SECTION_HDR_LEN + MEM_DESC_LEN + d.bitmap_len;
	d.pad_len = ALIGN_UP(start, STREAM_PAGE_SIZE) - start;
	desc_encode(db, &d);
	crc = crc32c(crc32c(0, db, sizeof(db)), bitmap, d.bitmap_len);
	r = write_section_hdr(w, SEC_MEMORY, 0, MEM_DESC_LEN + d.bitmap_len + d.pad_len +
			      d.present * STREAM_PAGE_SIZE, crc);
	if (!r)
		r = wr(w, db, sizeof(db));
	if (!r)
		r = wr(w, bitmap, d.bitmap_len);
	if (!r)
		r = wr(w, zeros, d.pad_len);
	/* Runs of present pages in one write each. */
	for (p = 0; !r && p < d.npages; ) {
		if (!page_set(bitmap, p)) {
			p++;
			continue;
		}
		for (start = p; p < d.npages && page_set(bitmap, p); p++)
			;
		r = wr(w, base + start * STREAM_PAGE_SIZE, (p - start) * STREAM_PAGE_SIZE);
	}
	return r;
}

/* PAGES payload: nruns (u32), reserved (u32), nruns x {first page u64,
 * count u64}, then the pages of the runs in order. */
#define PAGES_HDR_LEN	8
#define PAGES_RUN_LEN	16

int stream_write_pages(struct stream_writer *w, const uint8_t *base, uint64_t npages,
		       const uint8_t *bitmap, uint64_t *next, uint64_t max_pages,
		       uint64_t *sent)
{
	uint64_t p, start, n = 0, nruns = 0, runs_end;
	uint8_t *buf, *data;
	size_t len;
	int r;

	if (max_pages > STREAM_PAGES_MAX_PAGES)
		max_pages = STREAM_PAGES_MAX_PAGES;
	/* First the runs that fit, then the buffer for them. */
	for (p = *next; p < npages && n < max_pages; ) {
		if (!page_set(bitmap, p)) {
			p++;
			continue;
		}
		for (start = p; p < npages && page_set(bitmap, p) && n < max_pages; p++)
			n++;
		nruns++;
	}
	runs_end = p;
	*sent = 0;
	if (!nruns) {
		*next = npages;
		return 0;
	}
	len = PAGES_HDR_LEN + nruns * PAGES_RUN_LEN + n * STREAM_PAGE_SIZE;
	buf = malloc(len);
	if (!buf)
		return -ENOMEM;
	put32(buf, nruns);
	put32(buf + 4, 0);
	data = buf + PAGES_HDR_LEN + nruns * PAGES_RUN_LEN;
	nruns = 0;
	for (p = *next; p < runs_end; ) {
		if (!page_set(bitmap, p)) {
			p++;
			continue;
		}
		for (start = p; p < runs_end && page_set(bitmap, p); p++)
			;
		put64(buf + PAGES_HDR_LEN + nruns * PAGES_RUN_LEN, start);
		put64(buf + PAGES_HDR_LEN + nruns * PAGES_RUN_LEN + 8, p - start);
		memcpy(data, base + start * STREAM_PAGE_SIZE, (p - start) * STREAM_PAGE_SIZE);
		data += (p - start) * STREAM_PAGE_SIZE;
		nruns++;
	}
	r = stream_write_section(w, SEC_PAGES, 0, buf, len);
	free(buf);
	if (!r) {
		*next = runs_end;
		*sent = n;
	}
	return r;
}

int stream_for_pages(const uint8_t *payload, uint64_t len, uint64_t npages,
		     int (*put)(void *opaque, uint64_t first, uint64_t count, const uint8_t *data),
		     void *opaque, uint64_t *pages, char *err, size_t errlen)
{
	uint64_t nruns, i, first, count, total = 0;
	const uint8_t *data;
	int r;

	/* GUEST: a stream is as untrusted as the guest that made it: every
	 * run inside RAM, the runs and the length agreeing, before any page
	 * is copied. */
	if (len < PAGES_HDR_LEN)
		goto bad;
	nruns = get32(payload);
	if (get32(payload + 4) || !nruns || nruns > (len - PAGES_HDR_LEN) / PAGES_RUN_LEN)
		goto bad;
	for (i = 0; i < nruns; i++) {
		first = get64(payload + PAGES_HDR_LEN + i * PAGES_RUN_LEN);
		count = get64(payload + PAGES_HDR_LEN + i * PAGES_RUN_LEN + 8);
		if (!count || first >= npages || count > npages - first ||
		    count > STREAM_MAX_SECTION / STREAM_PAGE_SIZE)
			goto bad;
		total += count;
	}
	if (len != PAGES_HDR_LEN + nruns * PAGES_RUN_LEN + total * STREAM_PAGE_SIZE)
		goto bad;
	data = payload + PAGES_HDR_LEN + nruns * PAGES_RUN_LEN;
	for (i = 0; i < nruns; i++) {
		first = get64(payload + PAGES_HDR_LEN + i * PAGES_RUN_LEN);
		count = get64(payload + PAGES_HDR_LEN + i * PAGES_RUN_LEN + 8);
		r = put(opaque, first, count, data);
		if (r)
			return r;
		data += count * STREAM_PAGE_SIZE;
	}
	if (pages)
		*pages = total;
	return 0;
bad:
	snprintf(err, errlen, "pages section: runs outside guest RAM or not matching its length (corrupt stream)");
	return -EINVAL;
}

static int put_copy(void *opaque, uint64_t first, uint64_t count, const uint8_t *data)
{
	memcpy((uint8_t *)opaque + first * STREAM_PAGE_SIZE, data, count * STREAM_PAGE_SIZE);
	return 0;
}

int stream_apply_pages(const uint8_t *payload, uint64_t len, uint8_t *base, uint64_t size,
		       uint64_t *pages, char *err, size_t errlen)
{
	return stream_for_pages(payload, len, size / STREAM_PAGE_SIZE, put_copy, base, pages,
				err, errlen);
}

/* --- reader --- */

void stream_reader_init(struct stream_reader *r, int fd)
{
	memset(r, 0, sizeof(*r));
	r->fd = fd;
}

/* Exactly len bytes, or -EIO/-errno with "truncated" said. */
static int rd(struct stream_reader *r, void *p, size_t len, const char *what)
{
	uint8_t *b = p;
	size_t got = 0;
	ssize_t n;

	while (got < len) {
		n = read(r->fd, b + got, len - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int e = errno;

			snprintf(r->err, sizeof(r->err), "cannot read the %s at offset %llu: %s",
				 what, (unsigned long long)(r->off + got), strerror(e));
			return -e;
		}
		if (n == 0) {
			snprintf(r->err, sizeof(r->err),
				 "truncated stream: it ends at offset %llu inside the %s",
				 (unsigned long long)(r->off + got), what);
			return -EIO;
		}
		got += n;
	}
	r->off += len;
	return 0;
}

int stream_read_header(struct stream_reader *r)
{
	uint8_t h[STREAM_HEADER_LEN];
	uint32_t version;
	int ret = rd(r, h, sizeof(h), "stream header");

	if (ret)
		return ret;
	if (memcmp(h, STREAM_MAGIC, 8)) {
		snprintf(r->err, sizeof(r->err), "not a kvmm state stream (bad magic)");
		return -EINVAL;
	}
	version = get32(h + 8);
	if (version == 0 || version > STREAM_VERSION) {
		snprintf(r->err, sizeof(r->err),
			 "written by a newer kvmm: stream version %u, this kvmm reads up to %u",
			 version, STREAM_VERSION);
		return -EINVAL;
	}
	if (get32(h + 12)) {
		snprintf(r->err, sizeof(r->err), "stream header flags 0x%x unknown to this kvmm",
			 get32(h + 12));
		return -EINVAL;
	}
	r->version = version;
	return 0;
}

int stream_read_section_hdr(struct stream_reader *r, struct stream_section_hdr *h)
{
	uint8_t b[STREAM_SECTION_HDR_LEN];
	uint64_t at = r->off;
	int ret = rd(r, b, sizeof(b), "section header");

	if (ret)
		return ret;
	h->type = get32(b);
	h->index = get32(b + 4);
	h->len = get64(b + 8);
	h->crc = get32(b + 16);
	h->hdr_crc = get32(b + 20);
	/* GUEST: a stream is as untrusted as the guest that made it.  The
	 * header's checksum first: a flipped length must not send the reader
	 * off allocating or skipping; then type and length bounds. */
	if (crc32c(0, b, 20) != h->hdr_crc) {
		snprintf(r->err, sizeof(r->err), "corrupt section header at offset %llu (checksum mismatch)",
			 (unsigned long long)at);
		return -EINVAL;
	}
	if (!h->type || h->type > SEC_MAX || ((h->type == SEC_PAGES || h->type == SEC_POSTCOPY) && r->version < 2)) {
		snprintf(r->err, sizeof(r->err), "unknown section type %u at offset %llu",
			 h->type, (unsigned long long)at);
		return -EINVAL;
	}
	if (h->type != SEC_MEMORY && h->len > STREAM_MAX_SECTION) {
		snprintf(r->err, sizeof(r->err), "%s section at offset %llu too long (%llu bytes)",
			 stream_section_name(h->type), (unsigned long long)at,
			 (unsigned long long)h->len);
		return -EINVAL;
	}
	return 0;
}

int stream_read_payload(struct stream_reader *r, const struct stream_section_hdr *h,
			uint8_t **payload)
{
	char what[64];
	uint8_t *p;
	int ret;

	*payload = NULL;
	p = malloc(h->len ? h->len : 1);
	if (!p)
		return -ENOMEM;
	snprintf(what, sizeof(what), "%s section", stream_section_name(h->type));
	ret = rd(r, p, h->len, what);
	if (!ret && crc32c(0, p, h->len) != h->crc) {
		snprintf(r->err, sizeof(r->err), "%s section %u: checksum mismatch (corrupt stream)",
			 stream_section_name(h->type), h->index);
		ret = -EINVAL;
	}
	if (ret) {
		free(p);
		return ret;
	}
	*payload = p;
	return 0;
}

int stream_read_mem_meta(struct stream_reader *r, const struct stream_section_hdr *h,
			 uint64_t ram_size, struct stream_mem_desc *d, uint8_t **bitmap)
{
	uint8_t db[MEM_DESC_LEN], pad[256];
	uint8_t *bm = NULL;
	uint64_t p, n, left, count = 0;
	int ret;

	*bitmap = NULL;
	if (h->type != SEC_MEMORY || h->len < MEM_DESC_LEN) {
		snprintf(r->err, sizeof(r->err), "memory section too short");
		return -EINVAL;
	}
	ret = rd(r, db, sizeof(db), "memory section");
	if (ret)
		return ret;
	d->page_size = get32(db);
	d->flags = get32(db + 4);
	d->npages = get64(db + 8);
	d->present = get64(db + 16);
	d->bitmap_len = get64(db + 24);
	d->pad_len = get64(db + 32);
	d->data_crc = get32(db + 40);
	d->reserved = get32(db + 44);
	/* GUEST: the crc comes after the bitmap; until then every field is
	 * bounded before use. */
	if (d->page_size != STREAM_PAGE_SIZE || d->flags ||
	    d->npages > (UINT64_MAX / STREAM_PAGE_SIZE) ||
	    d->bitmap_len != (d->npages + 7) / 8 || d->bitmap_len > (1ULL << 32) ||
	    d->pad_len >= STREAM_PAGE_SIZE || d->present > d->npages ||
	    h->len != MEM_DESC_LEN + d->bitmap_len + d->pad_len + d->present * STREAM_PAGE_SIZE) {
		snprintf(r->err, sizeof(r->err), "memory section: inconsistent descriptor (corrupt stream)");
		return -EINVAL;
	}
	/* Before the bitmap is allocated: its size follows from npages. */
	if (d->npages != ram_size / STREAM_PAGE_SIZE) {
		snprintf(r->err, sizeof(r->err), "memory section: %llu pages for %llu MiB of RAM",
			 (unsigned long long)d->npages, (unsigned long long)(ram_size >> 20));
		return -EINVAL;
	}
	bm = malloc(d->bitmap_len ? d->bitmap_len : 1);
	if (!bm)
		return -ENOMEM;
	ret = rd(r, bm, d->bitmap_len, "memory bitmap");
	if (ret)
		goto fail;
	if (crc32c(crc32c(0, db, sizeof(db)), bm, d->bitmap_len) != h->crc) {
		snprintf(r->err, sizeof(r->err), "memory section: checksum mismatch (corrupt stream)");
		ret = -EINVAL;
		goto fail;
	}
	for (p = 0; p < d->npages; p++)
		count += page_set(bm, p);
	if (count != d->present || (d->npages % 8 && bm[d->bitmap_len - 1] >> (d->npages % 8))) {
		snprintf(r->err, sizeof(r->err), "memory section: bitmap does not match its count");
		ret = -EINVAL;
		goto fail;
	}
	for (left = d->pad_len; left; left -= n) {
		n = MIN(left, sizeof(pad));
		ret = rd(r, pad, n, "memory section");
		if (ret)
			goto fail;
		/* No checksum covers the padding: it must be what a writer
		 * puts there, so that no byte of a stream goes unchecked. */
		for (p = 0; p < n; p++) {
			if (pad[p]) {
				snprintf(r->err, sizeof(r->err), "memory section: padding not zero (corrupt stream)");
				ret = -EINVAL;
				goto fail;
			}
		}
	}
	if (r->off % STREAM_PAGE_SIZE) {
		snprintf(r->err, sizeof(r->err), "memory section: pages not page-aligned in the stream");
		ret = -EINVAL;
		goto fail;
	}
	*bitmap = bm;
	return 0;
fail:
	free(bm);
	return ret;
}

int stream_read_mem_pages(struct stream_reader *r, const struct stream_mem_desc *d,
			  const uint8_t *bitmap, uint8_t *base, uint64_t size)
{
	uint64_t p;
	uint32_t crc = 0;
	int ret;

	if (d->npages * STREAM_PAGE_SIZE != size) {
		snprintf(r->err, sizeof(r->err), "memory section: %llu pages for %llu bytes of RAM",
			 (unsigned long long)d->npages, (unsigned long long)size);
		return -EINVAL;
	}
	for (p = 0; p < d->npages; p++) {
		uint8_t *pg = base + p * STREAM_PAGE_SIZE;

		if (!page_set(bitmap, p))
			continue;
		ret = rd(r, pg, STREAM_PAGE_SIZE, "memory pages");
		if (ret)
			return ret;
		crc = crc32c(crc, pg, STREAM_PAGE_SIZE);
	}
	if (crc != d->data_crc) {
		snprintf(r->err, sizeof(r->err), "memory pages: checksum mismatch (corrupt stream)");
		return -EINVAL;
	}
	return 0;
}
