/* The hand-driven engine of blk_engine.h, linked under the name of the
 * block layer's asynchronous engine instead of io_uring.c. */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "blk_engine.h"
#include "block/block_int.h"
#include "unit.h"

#define HELD_MAX	64

static struct held {
	struct block_req *req;
	bool finished;
} held[HELD_MAX];
static unsigned int nheld;
int he_submit_error;
static int efd = -1;

unsigned int he_held(void)
{
	unsigned int i, n = 0;

	for (i = 0; i < nheld; i++)
		n += !held[i].finished;
	return n;
}

/* The i-th held request not yet finished. */
static struct held *nth(unsigned int i)
{
	unsigned int k;

	for (k = 0; k < nheld; k++)
		if (!held[k].finished && !i--)
			return &held[k];
	CHECK(!"no such held request");
	return &held[0];
}

enum block_op he_op(unsigned int i)
{
	return nth(i)->req->op;
}

uint64_t he_off(unsigned int i)
{
	return nth(i)->req->off;
}

uint64_t he_bytes(unsigned int i)
{
	return nth(i)->req->bytes;
}

uint64_t he_host(unsigned int i)
{
	return nth(i)->req->host;
}

static void run(struct block_dev *bd, struct held *h)
{
	struct block_req *req = h->req;
	uint64_t one = 1;

	if (req->op == BLOCK_FLUSH)
		req->res = fdatasync(bd->fd) ? -errno : 0;
	else
		req->res = block_sync_rw(req->fd, req->op == BLOCK_WRITE, req->iov, req->niov,
					 req->host, req->bytes);
	h->finished = true;
	CHECK(write(efd, &one, sizeof(one)) == sizeof(one));
}

static struct block_dev *the_bd;

void he_finish(unsigned int i)
{
	run(the_bd, nth(i));
}

void he_fail(unsigned int i, int err)
{
	struct held *h = nth(i);
	uint64_t one = 1;

	h->req->res = -err;
	h->finished = true;
	CHECK(write(efd, &one, sizeof(one)) == sizeof(one));
}

static int he_init(struct block_dev *bd, unsigned int depth, int fd)
{
	the_bd = bd;
	efd = fd;
	nheld = 0;
	return 0;
}

static int he_queue(struct block_dev *bd, struct block_req *req)
{
	if (nheld == HELD_MAX)
		return -EAGAIN;
	held[nheld++] = (struct held){ req, false };
	return 0;
}

static int he_submit(struct block_dev *bd)
{
	int r = he_submit_error;

	he_submit_error = 0;
	return r;
}

/* Completes the finished requests (all of them, finished now, if wait),
 * keeping the others in order. */
static int he_reap(struct block_dev *bd, bool wait)
{
	unsigned int i, k = 0, n = nheld;
	struct held done[HELD_MAX];
	unsigned int ndone = 0;

	for (i = 0; i < n; i++) {
		if (wait && !held[i].finished)
			run(bd, &held[i]);
		if (held[i].finished)
			done[ndone++] = held[i];
		else
			held[k++] = held[i];
	}
	nheld = k;
	for (i = 0; i < ndone; i++)
		block_complete(bd, done[i].req);
	return 0;
}

static void he_exit(struct block_dev *bd)
{
	nheld = 0;
	the_bd = NULL;
}

const struct block_engine block_async_engine = {
	.name = "held",
	.init = he_init,
	.queue = he_queue,
	.submit = he_submit,
	.reap = he_reap,
	.exit = he_exit,
};
