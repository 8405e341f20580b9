/* The synchronous I/O path: preadv/pwritev and fdatasync on this thread.
 * It is the engine without io_uring, the redo of what O_DIRECT refused
 * or a short transfer left, and the fallback once an engine failed. */
#include <errno.h>
#include <unistd.h>

#include "block_int.h"
#include "util.h"

unsigned int block_iov_slice(const struct iovec *iov, unsigned int n, uint64_t skip,
			     uint64_t len, struct iovec *out)
{
	unsigned int i, k = 0;

	for (i = 0; i < n && len; i++) {
		uint64_t take;

		if (skip >= iov[i].iov_len) {
			skip -= iov[i].iov_len;
			continue;
		}
		take = MIN(iov[i].iov_len - skip, len);
		if (take) {
			out[k].iov_base = (uint8_t *)iov[i].iov_base + skip;
			out[k++].iov_len = take;
		}
		len -= take;
		skip = 0;
	}
	return k;
}

int64_t block_sync_rw(int fd, bool write, const struct iovec *iov, unsigned int n,
		      uint64_t off, uint64_t bytes)
{
	uint64_t done = 0;

	while (done < bytes) {
		struct iovec v[BLOCK_MAX_IOV];
		unsigned int k = block_iov_slice(iov, n, done, bytes - done, v);
		ssize_t r = write ? pwritev(fd, v, k, off + done) : preadv(fd, v, k, off + done);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			return -EIO;	/* the file shrank under us */
		done += r;
	}
	return done;
}

int block_sync_flush(struct block_dev *bd)
{
	if (fdatasync(bd->fd))
		return -errno;
	bd->syncs++;
	return 0;
}
