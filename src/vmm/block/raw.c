/* The raw format: the disk is the file (or block device), byte for
 * byte. */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <unistd.h>

#include "block_int.h"
#include "util.h"

static int raw_open(struct block_dev *bd, const struct disk_config *d, uint64_t file_size,
		    uint64_t *size)
{
	*size = file_size;
	return 0;
}

static int raw_map(struct block_dev *bd, uint64_t off, uint64_t len, bool write,
		   uint64_t *host, uint64_t *run)
{
	*host = off;
	*run = len;
	return 0;
}

/* A discard is a hint: a file system without holes keeps the data. */
static int raw_discard(struct block_dev *bd, uint64_t off, uint64_t len)
{
	if (fallocate(bd->bfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, len) &&
	    errno != EOPNOTSUPP)
		return -errno;
	return 0;
}

/* Zeroes through the page cache when the file system cannot. */
static int raw_write_zeroes(struct block_dev *bd, uint64_t off, uint64_t len)
{
	static const uint8_t zero[64 * 1024];

	if (!fallocate(bd->bfd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, off, len))
		return 0;
	while (len) {
		ssize_t r = pwrite(bd->bfd, zero, MIN(len, sizeof(zero)), off);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return r < 0 ? -errno : -EIO;
		off += r;
		len -= r;
	}
	return 0;
}

static int raw_resize(struct block_dev *bd, uint64_t size)
{
	return ftruncate(bd->bfd, (off_t)size) ? -errno : 0;
}

static void raw_close(struct block_dev *bd)
{
}

const struct block_format block_raw = {
	.name = "raw",
	.open = raw_open,
	.map = raw_map,
	.discard = raw_discard,
	.write_zeroes = raw_write_zeroes,
	.resize = raw_resize,
	.close = raw_close,
};
