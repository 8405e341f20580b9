// SPDX-License-Identifier: MIT
/*
 * virtio-console (virtio spec 5.3), port 0 only (MULTIPORT is not
 * accepted): queue 0 receives, queue 1 transmits.  Writes a greeting the
 * host can read; with kvmmtest.consoleN.echo=SECONDS, waits that long for
 * a line from the host and sends it back prefixed with "echo: ".
 */
#include "guest.h"
#include "io.h"
#include "virtio.h"

#define RX_BUFS		4
#define RX_BYTES	128
#define LINE_MAX	120

struct console {
	struct virtio_dev *v;
	u8 *rx[VIRTQ_MAX_SIZE];	/* receive buffer by head descriptor */
	u8 *tx;
};

static bool post_rx(struct console *c, u8 *buf)
{
	struct vbuf b = { buf, RX_BYTES, true };
	int head = virtq_add(&c->v->vq[0], &b, 1);

	if (head < 0)
		return false;
	c->rx[head] = buf;
	return true;
}

static bool send(struct console *c, const char *s, u32 len)
{
	struct vbuf b = { c->tx, len, false };

	memcpy(c->tx, s, len);
	return virtq_transfer(c->v, &c->v->vq[1], &b, 1, NULL) == 0;
}

/* A line from the host (without its newline), or false on timeout. */
static bool receive_line(struct console *c, char *line, u64 timeout_us)
{
	u64 start = now_us();
	u32 n = 0, id, len;

	while (now_us() - start < timeout_us) {
		if (!virtq_poll(&c->v->vq[0], &id, &len)) {
			cpu_relax();
			continue;
		}
		if (id >= VIRTQ_MAX_SIZE || !c->rx[id])
			return false;
		u8 *buf = c->rx[id];

		c->rx[id] = NULL;
		if (len > RX_BYTES)
			len = RX_BYTES;
		for (u32 i = 0; i < len; i++) {
			if (buf[i] == '\n' || buf[i] == '\r') {
				line[n] = '\0';
				post_rx(c, buf);
				virtq_kick(c->v, &c->v->vq[0]);
				return true;
			}
			if (n < LINE_MAX)
				line[n++] = buf[i] >= ' ' && buf[i] < 127 &&
					    buf[i] != '"' ? buf[i] : '?';
		}
		post_rx(c, buf);
		virtq_kick(c->v, &c->v->vq[0]);
	}
	return false;
}

void virtio_console_run(struct virtio_dev *v, int index)
{
	struct console c = { .v = v };
	char key[32], opt[16], msg[LINE_MAX + 16], line[LINE_MAX + 1];
	int n;

	if (!virtio_init(v, 0, 2, 16))
		return;
	c.tx = dma_alloc(sizeof(msg), 16);
	for (int i = 0; i < RX_BUFS; i++) {
		u8 *buf = dma_alloc(RX_BYTES, 16);

		if (!buf || !c.tx || !post_rx(&c, buf)) {
			fail("virtio-console", "dev=%s out of DMA memory", v->name);
			return;
		}
	}
	if (!virtio_driver_ok(v))
		return;
	virtq_kick(v, &v->vq[0]);

	n = snprintf(msg, sizeof(msg), "KVMMTEST-HVC hello from %s\n", v->name);
	if (!send(&c, msg, n))
		return;
	pass("virtio-console-write", "dev=%s bytes=%d", v->name, n);

	snprintf(key, sizeof(key), "kvmmtest.console%d.echo", index);
	if (cmdline_option(key, opt, sizeof(opt))) {
		u64 secs = parse_u64(opt, NULL) ?: 10;

		record("event virtio-console-ready dev=%s", v->name);
		if (!receive_line(&c, line, secs * 1000000)) {
			fail("virtio-console-echo", "dev=%s no line from the host in %lu s",
			     v->name, secs);
		} else {
			n = snprintf(msg, sizeof(msg), "echo: %s\n", line);
			if (send(&c, msg, n))
				pass("virtio-console-echo", "dev=%s line=\"%s\"",
				     v->name, line);
		}
	}
	virtio_report_interrupts(v, true);
}
