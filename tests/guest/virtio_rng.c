// SPDX-License-Identifier: MIT
/*
 * virtio-rng (virtio spec 5.4): one queue of device-writable buffers.
 * With kvmmtest.rngN.malformed=KIND, then submits a hostile request
 * (virtq_malformed), reports what the device did, resets it and checks
 * that it works again.
 */
#include "guest.h"
#include "virtio.h"

#define RNG_BYTES	64

/* Fills buf; the number of bytes, or -1 if the device failed us. */
static int read_random(struct virtio_dev *v, u8 *buf)
{
	u32 got = 0, len;

	/* The device may return fewer bytes than asked: ask again. */
	for (int tries = 0; got < RNG_BYTES && tries < 64; tries++) {
		struct vbuf b = { buf + got, RNG_BYTES - got, true };

		if (virtq_transfer(v, &v->vq[0], &b, 1, &len) < 0)
			return -1;
		if (len > RNG_BYTES - got)
			len = RNG_BYTES - got;
		got += len;
	}
	return got;
}

static u32 distinct(const u8 *buf, int n)
{
	bool seen[256] = { false };
	u32 d = 0;

	for (int i = 0; i < n; i++) {
		d += !seen[buf[i]];
		seen[buf[i]] = true;
	}
	return d;
}

static void malformed(struct virtio_dev *v, const char *kind, u8 *buf)
{
	u8 status = 0;
	const char *what = virtq_malformed(v, &v->vq[0], kind, &status);
	int got;

	if (!what) {
		fail("virtio-malformed", "dev=%s unknown kind %s", v->name, kind);
		return;
	}
	info("virtio-malformed dev=%s kind=%s outcome=%s status=0x%02x",
	     v->name, kind, what, status);
	virtio_reset(v);
	if (!virtio_init(v, 0, 1, 8) || !virtio_driver_ok(v))
		return;
	got = read_random(v, buf);
	if (got == RNG_BYTES && distinct(buf, got) > 1)
		pass("virtio-reset", "dev=%s works again bytes=%d", v->name, got);
	else if (got >= 0)
		fail("virtio-reset", "dev=%s bytes=%d after reset", v->name, got);
}

void virtio_rng_run(struct virtio_dev *v, int index)
{
	char key[32], kind[16];
	u8 *buf;
	int got;
	u32 d;

	if (!virtio_init(v, 0, 1, 8) || !virtio_driver_ok(v))
		return;
	buf = dma_alloc(RNG_BYTES, 64);
	got = read_random(v, buf);
	if (got < 0)
		return;
	d = distinct(buf, got);
	if (got < RNG_BYTES)
		fail("virtio-rng", "dev=%s bytes=%d of %d", v->name, got,
		     RNG_BYTES);
	else if (d < 2)
		fail("virtio-rng", "dev=%s bytes=%d all equal (0x%02x)",
		     v->name, got, buf[0]);
	else
		pass("virtio-rng", "dev=%s bytes=%d distinct=%u", v->name, got,
		     d);
	virtio_report_interrupts(v, true);

	snprintf(key, sizeof(key), "kvmmtest.rng%d.malformed", index);
	if (cmdline_option(key, kind, sizeof(kind)))
		malformed(v, kind, buf);
}
