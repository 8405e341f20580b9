/* The VM state stream's framing (docs/state-stream.md): a fixed header,
 * then sections, each a type, an index, a length and checksums, read and
 * written over a file descriptor front to back, so the same code serves a
 * file (save/restore) and a socket (live migration).  Nothing here knows
 * KVM: the payloads are the caller's, which is what the unit tests use. */
#ifndef KVMM_STREAM_H
#define KVMM_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define STREAM_MAGIC		"KVMMSTRM"
#define STREAM_VERSION		2	/* the newest this kvmm writes and reads */
#define STREAM_HEADER_LEN	16	/* magic, version, flags */
#define STREAM_SECTION_HDR_LEN	24
#define STREAM_PAGE_SIZE	4096
/* Any section but memory is read whole into memory: bounded. */
#define STREAM_MAX_SECTION	(64u << 20)

enum stream_section {
	SEC_CONFIG = 1,		/* kvmm's JSON VM configuration, as text */
	SEC_LAYOUT = 2,		/* page size and guest RAM regions */
	SEC_VCPU = 3,		/* one per vCPU, index = vCPU id */
	SEC_IRQCHIP = 4,	/* index: 0 PIC master, 1 PIC slave, 2 IOAPIC */
	SEC_PIT = 5,
	SEC_CLOCK = 6,
	SEC_DEVICE = 7,		/* index = position in the device list */
	SEC_MEMORY = 8,		/* last but END; its pages page-aligned */
	SEC_END = 9,
	SEC_PAGES = 10,		/* version 2: runs of pages sent while the guest
				 * ran (live migration), between LAYOUT and the
				 * first VCPU; later ones overwrite earlier */
	SEC_POSTCOPY = 11,	/* version 2, live migration only: in the memory
				 * section's place, the bitmap of the pages still
				 * to come; PAGES sections follow END (post-copy) */
	SEC_MAX = SEC_POSTCOPY,
};

struct stream_section_hdr {
	uint32_t type;
	uint32_t index;
	uint64_t len;		/* payload bytes after this header */
	uint32_t crc;		/* crc32c of the payload (memory: its metadata) */
	uint32_t hdr_crc;	/* crc32c of the 20 bytes above */
};

/* The memory section's payload: this, the bitmap of pages present
 * (bit p of byte p/8 = page p), zeros to the next page boundary of the
 * stream, then the present pages in order.  The section's crc covers
 * this descriptor and the bitmap; data_crc covers the pages. */
struct stream_mem_desc {
	uint32_t page_size;
	uint32_t flags;
	uint64_t npages;	/* guest RAM / page_size */
	uint64_t present;	/* bits set in the bitmap */
	uint64_t bitmap_len;	/* (npages + 7) / 8 */
	uint64_t pad_len;	/* zeros between the bitmap and the first page */
	uint32_t data_crc;
	uint32_t reserved;
};

uint32_t crc32c(uint32_t crc, const void *data, size_t len);

struct stream_writer {
	int fd;
	uint64_t off;		/* bytes written so far */
};

void stream_writer_init(struct stream_writer *w, int fd);
int stream_write_header(struct stream_writer *w);
int stream_write_section(struct stream_writer *w, uint32_t type, uint32_t index,
			 const void *payload, size_t len);
/* The memory section of size bytes at base; bitmap marks the pages to
 * write (the others read as zeros on restore). */
int stream_write_memory(struct stream_writer *w, const uint8_t *base,
			uint64_t size, const uint8_t *bitmap);

/* One PAGES section: the pages set in bitmap (npages of them, at base)
 * from page *next on, at most max_pages of them, copied into a buffer
 * first (the guest may write them meanwhile: its dirty log sends them
 * again) and written as runs.  *next is where the next section starts,
 * npages when done; *sent counts the pages written.  0 or -errno. */
int stream_write_pages(struct stream_writer *w, const uint8_t *base, uint64_t npages,
		       const uint8_t *bitmap, uint64_t *next, uint64_t max_pages,
		       uint64_t *sent);
/* Largest PAGES payload a writer makes: 1024 pages and their runs. */
#define STREAM_PAGES_MAX_PAGES	1024

struct stream_reader {
	int fd;
	uint64_t off;		/* bytes consumed so far */
	unsigned int version;
	char err[256];		/* why the last call failed */
};

void stream_reader_init(struct stream_reader *r, int fd);
/* 0, or -EINVAL (not a stream, newer version) with r->err set. */
int stream_read_header(struct stream_reader *r);
/* Reads and checks the next section header: 0 or -errno, r->err set. */
int stream_read_section_hdr(struct stream_reader *r, struct stream_section_hdr *h);
/* Reads a whole (non-memory) section's payload into a malloc'd buffer
 * and checks its crc. */
int stream_read_payload(struct stream_reader *r, const struct stream_section_hdr *h,
			uint8_t **payload);
/* The memory section after its header: descriptor and bitmap (malloc'd)
 * read and checked, for a RAM of ram_size bytes; leaves the reader at the
 * first page, r->off page aligned. */
int stream_read_mem_meta(struct stream_reader *r, const struct stream_section_hdr *h,
			 uint64_t ram_size, struct stream_mem_desc *d, uint8_t **bitmap);
/* Reads the pages into base (size bytes, zero where not present) and
 * checks data_crc: the path for an fd that cannot be mapped. */
int stream_read_mem_pages(struct stream_reader *r, const struct stream_mem_desc *d,
			  const uint8_t *bitmap, uint8_t *base, uint64_t size);

/* Checks a PAGES payload (read and crc-checked by stream_read_payload)
 * against a RAM of size bytes and copies its pages into base: 0, or
 * -EINVAL with err set and nothing copied. */
int stream_apply_pages(const uint8_t *payload, uint64_t len, uint8_t *base, uint64_t size,
		       uint64_t *pages, char *err, size_t errlen);

/* The same check, then put() for each run instead of a copy into RAM
 * (post-copy places pages with userfaultfd): 0, -EINVAL with err set
 * before any put() if the payload is bad, or put()'s error. */
int stream_for_pages(const uint8_t *payload, uint64_t len, uint64_t npages,
		     int (*put)(void *opaque, uint64_t first, uint64_t count, const uint8_t *data),
		     void *opaque, uint64_t *pages, char *err, size_t errlen);

const char *stream_section_name(uint32_t type);

#endif
