/* The asynchronous engine: one io_uring per disk, as deep as the queue
 * above it, so queueing never fails for want of room.  Its completions
 * land on the layer's eventfd, which the main loop watches.  (Submission
 * is a system call that does not block for O_DIRECT I/O, completion a
 * ring read: no thread of its own.) */
#include <errno.h>
#include <stdlib.h>

#include <liburing.h>

#include "block_int.h"

static struct io_uring *ring_of(struct block_dev *bd)
{
	return bd->engine_priv;
}

static int uring_init(struct block_dev *bd, unsigned int depth, int efd)
{
	struct io_uring *ring = calloc(1, sizeof(*ring));
	int r;

	if (!ring)
		return -ENOMEM;
	r = io_uring_queue_init(depth, ring, 0);
	if (r) {
		free(ring);
		return r;
	}
	r = io_uring_register_eventfd(ring, efd);
	if (r) {
		io_uring_queue_exit(ring);
		free(ring);
		return r;
	}
	bd->engine_priv = ring;
	return 0;
}

static int uring_queue(struct block_dev *bd, struct block_req *req)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(ring_of(bd));

	if (!sqe)
		return -EAGAIN;
	if (req->op == BLOCK_FLUSH)
		io_uring_prep_fsync(sqe, bd->fd, IORING_FSYNC_DATASYNC);
	else if (req->op == BLOCK_WRITE)
		io_uring_prep_writev(sqe, req->fd, req->iov, req->niov, req->host);
	else
		io_uring_prep_readv(sqe, req->fd, req->iov, req->niov, req->host);
	io_uring_sqe_set_data(sqe, req);
	return 0;
}

static int uring_submit(struct block_dev *bd)
{
	int r;

	do
		r = io_uring_submit(ring_of(bd));
	while (r == -EINTR);
	return r < 0 ? r : 0;
}

static int uring_reap(struct block_dev *bd, bool wait)
{
	while (bd->inflight) {
		struct io_uring_cqe *cqe;
		struct block_req *req;
		int w = wait ? io_uring_wait_cqe(ring_of(bd), &cqe) :
			       io_uring_peek_cqe(ring_of(bd), &cqe);

		if (w == -EINTR)
			continue;
		if (w == -EAGAIN && !wait)
			return 0;
		if (w < 0)
			return w;
		req = io_uring_cqe_get_data(cqe);
		req->res = cqe->res;
		io_uring_cqe_seen(ring_of(bd), cqe);
		block_complete(bd, req);
	}
	return 0;
}

static void uring_exit(struct block_dev *bd)
{
	io_uring_queue_exit(ring_of(bd));
	free(ring_of(bd));
	bd->engine_priv = NULL;
}

const struct block_engine block_async_engine = {
	.name = "io_uring",
	.init = uring_init,
	.queue = uring_queue,
	.submit = uring_submit,
	.reap = uring_reap,
	.exit = uring_exit,
};
