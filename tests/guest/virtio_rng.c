// SPDX-License-Identifier: MIT
/* virtio-rng (virtio spec 5.4): one queue of device-writable buffers. */
#include "guest.h"
#include "virtio.h"

#define RNG_BYTES	64

void virtio_rng_run(struct virtio_dev *v)
{
	u8 *buf;
	u32 got = 0, len, distinct = 0;
	bool seen[256] = { false };

	if (!virtio_init(v, 0, 1, 8) || !virtio_driver_ok(v))
		return;
	buf = dma_alloc(RNG_BYTES, 64);
	/* The device may return fewer bytes than asked: ask again. */
	for (int tries = 0; got < RNG_BYTES && tries < 64; tries++) {
		struct vbuf b = { buf + got, RNG_BYTES - got, true };

		if (virtq_transfer(v, &v->vq[0], &b, 1, &len) < 0)
			return;
		if (len > RNG_BYTES - got)
			len = RNG_BYTES - got;
		got += len;
	}
	for (u32 i = 0; i < got; i++) {
		distinct += !seen[buf[i]];
		seen[buf[i]] = true;
	}
	if (got < RNG_BYTES)
		fail("virtio-rng", "dev=%s bytes=%u of %d", v->name, got,
		     RNG_BYTES);
	else if (distinct < 2)
		fail("virtio-rng", "dev=%s bytes=%u all equal (0x%02x)",
		     v->name, got, buf[0]);
	else
		pass("virtio-rng", "dev=%s bytes=%u distinct=%u", v->name, got,
		     distinct);
	virtio_report_interrupts(v, true);
}
