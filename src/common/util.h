/* Small helpers shared by kvmm and virtkvmmd; no policy here. */
#ifndef KVMM_UTIL_H
#define KVMM_UTIL_H

#include <stddef.h>
#include <stdint.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define ALIGN_UP(x, a) (((x) + (a) - 1) & ~((uint64_t)(a) - 1))
#define ALIGN_DOWN(x, a) ((x) & ~((uint64_t)(a) - 1))
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))

#define KiB (1024ULL)
#define MiB (1024ULL * KiB)
#define GiB (1024ULL * MiB)

/* "512M", "4G", "1048576", "2GiB" -> bytes (no suffix = bytes; k/M/G/T are
 * binary multiples, like QEMU's -m).  Returns 0 or -EINVAL / -ERANGE. */
int parse_size(const char *s, uint64_t *out);

/* Reads a whole file into a malloc'd buffer; returns 0 or -errno. */
int read_file(const char *path, uint8_t **data, size_t *len);

/* Writes all of buf, retrying on EINTR/short writes; -errno on error. */
int write_all(int fd, const void *buf, size_t len);

uint64_t now_ns(void);


/* A non-blocking, close-on-exec UNIX stream socket listening on path.
 * On failure returns -errno and logs "cannot listen on <what> PATH: why;
 * fix".  The caller unlinks path when done. */
int unix_listen(const char *path, int backlog, const char *what);

#endif
