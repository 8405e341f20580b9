/* virtio-rng (virtio 1.2, 5.4): one request queue whose writable
 * buffers the device fills from the host's getrandom(). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "log.h"
#include "virtio.h"
#include "virtio/rng.h"

#define RNG_QUEUE_SIZE		256
#define RNG_CHUNK		4096
/* Bytes one pass may take, so a guest cannot keep the loop busy; what is
 * left waits for the next pass, which the device queues itself. */
#define RNG_BUDGET		(256 * 1024)

static void rng_queue_notify(struct virtio_pci *vp, unsigned int q)
{
	static __thread struct virtq_elem e;
	uint8_t buf[RNG_CHUNK];
	uint64_t budget = RNG_BUDGET;
	bool failed = false;
	int r;

	while (budget && (r = virtio_pop(vp, q, &e)) > 0) {
		uint64_t want = e.in_len, done = 0;
		unsigned int i;

		if (want > budget)
			want = budget;
		/* Fill the writable buffers in chunks.  A chain with no
		 * writable buffer completes with 0 bytes. */
		for (i = e.n_out; i < e.n_out + e.n_in && done < want && !failed; i++) {
			uint64_t off = 0;

			while (off < e.iov[i].iov_len && done < want) {
				uint64_t n = e.iov[i].iov_len - off;
				ssize_t got;

				if (n > want - done)
					n = want - done;
				if (n > RNG_CHUNK)
					n = RNG_CHUNK;
				got = getrandom(buf, n, 0);
				if (got <= 0) {
					failed = true;
					break;
				}
				memcpy((uint8_t *)e.iov[i].iov_base + off, buf, got);
				off += got;
				done += got;
			}
		}
		budget -= done < budget ? done : budget;
		if (virtio_push(vp, q, e.head, done))
			return;
		virtio_queue_interrupt(vp, q);
		if (failed)
			break;	/* getrandom failed: try again on the next kick */
	}
	if (!budget)
		virtio_queue_kick(vp, q);
}

/* The device keeps nothing between requests: reset, save and load
 * only have the transport's state to care about. */
static void rng_reset(struct virtio_pci *vp)
{
}

static int rng_save(struct virtio_pci *vp, struct state_buf *out)
{
	return 0;
}

static int rng_load(struct virtio_pci *vp, const uint8_t *data, size_t len)
{
	return len ? -EINVAL : 0;
}

static void rng_destroy(struct virtio_pci *vp)
{
}

static const struct virtio_dev_ops rng_ops = {
	.name = "virtio-rng",
	.type = 4,			/* entropy source */
	.pci_class = 0x00ff,		/* unclassified: "other" */
	.nqueues = 1,
	.queue_size = RNG_QUEUE_SIZE,
	.queue_notify = rng_queue_notify,
	.reset = rng_reset,
	.save = rng_save,
	.load = rng_load,
	.destroy = rng_destroy,
};

struct device *virtio_rng_create(struct vm *vm, unsigned int slot, uint64_t bar_addr)
{
	struct virtio_pci *vp = virtio_pci_create(vm, &rng_ops, NULL, slot, bar_addr);

	return vp ? &vp->f.dev : NULL;
}
