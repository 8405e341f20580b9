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

/* What kind of file fd is when it is none kvmm should take as a disk,
 * kernel or log (a FIFO, socket or directory would block or mislead; a
 * /proc or /sys file is the host's state, not an image): "a FIFO", ...;
 * NULL when it is a regular file, or a block/character device that
 * FILE_OK_BLK/FILE_OK_CHR allow. */
#define FILE_OK_BLK	1
#define FILE_OK_CHR	2
const char *file_refused(int fd, unsigned int ok);

/* Reads a whole regular file into a malloc'd buffer; returns 0 or -errno
 * (-EINVAL: not a regular file, or one of /proc or /sys). */
int read_file(const char *path, uint8_t **data, size_t *len);

/* Writes all of buf, retrying on EINTR/short writes; -errno on error. */
int write_all(int fd, const void *buf, size_t len);

uint64_t now_ns(void);


/* A non-blocking, close-on-exec UNIX stream socket listening on path.
 * On failure returns -errno and logs "cannot listen on <what> PATH: why;
 * fix".  The caller unlinks path when done. */
int unix_listen(const char *path, int backlog, const char *what);

#endif
