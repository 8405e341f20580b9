// SPDX-License-Identifier: MIT
/*
 * Throughput modes for one NIC, for tools/bench/net: the same binary runs
 * under every VMM, so what differs between runs is the device.  For NIC N:
 *
 *   kvmmtest.netN.blast=SECONDS  send UDP datagrams from the NIC's UDP port
 *       to kvmmtest.netN.peer=IP:PORT (MAC from kvmmtest.netN.peermac=,
 *       else resolved with ARP) as fast as the tx ring takes them;
 *   kvmmtest.netN.sink=SECONDS   count the datagrams sent to the NIC's UDP
 *       port until the end marker arrives or the time is up;
 *   kvmmtest.netN.size=BYTES     UDP payload, 16-1472 (default 1472:
 *       1514-byte frames, a full 1500-byte MTU);
 *   kvmmtest.net.idle=poll       spin when there is nothing to do, rather
 *       than sleep until the queue's interrupt.
 *
 * Payload: bytes 0-7 a big-endian sequence number counting from 0 (all
 * ones: the end marker), byte i >= 8 is (i * 31 + 7) & 0xff.
 * The rings are polled with interrupts suppressed
 * (VIRTQ_AVAIL_F_NO_INTERRUPT) while there is work, as NAPI does, and
 * refilled a quarter ring at a time with one notification (on tx, left
 * out while the device says it needs none, VIRTQ_USED_F_NO_NOTIFY):
 * every notification is a VM exit.  Idle, the guest sleeps until the
 * queue's interrupt: a spinning vCPU would take a host core from the
 * VMM's I/O thread and the host's peer on a small host.
 */
#include "guest.h"
#include "io.h"
#include "virtio_net.h"

#define AVAIL_F_NO_INTERRUPT	1
#define USED_F_NO_NOTIFY	1
#define MIN_PAYLOAD		16
#define MAX_PAYLOAD		1472	/* 1500 - IPv4 and UDP headers */
#define HDRS			(14 + 20 + 8)	/* Ethernet, IPv4, UDP */
#define TX_BUF_LEN		1536	/* >= NET_HDR_LEN + HDRS + MAX_PAYLOAD */
#define END_SEQ			(~0ULL)
#define END_MARKERS		3
#define DRAIN_S			5

struct bench {
	struct nic *n;
	struct virtq *q;
	u32 size;		/* UDP payload */
	u64 secs;
	u64 pkts, bytes, kicks, rekicks, sleeps;
	bool halt;		/* idle: sleep until an interrupt, not spin */
	u64 t0, t1;		/* TSC: first and last datagram */
};

static bool option(int index, const char *name, char *val, size_t len)
{
	char key[40];

	snprintf(key, sizeof(key), "kvmmtest.net%d.%s", index, name);
	return cmdline_option(key, val, len);
}

bool net_bench_wanted(int index)
{
	char val[20];

	return option(index, "blast", val, sizeof(val)) ||
	       option(index, "sink", val, sizeof(val));
}

static void put64(u8 *p, u64 v)
{
	put32(p, v >> 32);
	put32(p + 4, v);
}

static u64 get64(const u8 *p)
{
	return (u64)get32(p) << 32 | get32(p + 4);
}

static u8 pattern(u32 i)
{
	return (i * 31 + 7) & 0xff;
}

static u64 tsc_ns(u64 cycles)
{
	return cycles * 1000000 / tsc_khz;
}

static bool parse_mac(const char *s, u8 *mac)
{
	for (int i = 0; i < 6; i++) {
		int v = 0;

		for (int j = 0; j < 2; j++, s++) {
			char c = *s | 0x20;

			if (*s >= '0' && *s <= '9')
				v = v << 4 | (*s - '0');
			else if (c >= 'a' && c <= 'f')
				v = v << 4 | (c - 'a' + 10);
			else
				return false;
		}
		if (*s != (i < 5 ? ':' : 0))
			return false;
		s++;
		mac[i] = v;
	}
	return true;
}

/*
 * Notify the device, on tx unless it said it needs no notification now.
 * On rx always: QEMU 7.2 stopped receiving, buffers posted, when the
 * driver left out notifications on its VIRTQ_USED_F_NO_NOTIFY.
 */
static void notify(struct bench *b)
{
	asm volatile("mfence" : : : "memory");	/* avail idx before used flags */
	if (b->q->index == 1 && *(volatile u16 *)b->q->used & USED_F_NO_NOTIFY)
		return;
	virtq_kick(b->n->v, b->q);
	b->kicks++;
}

/*
 * Nothing to do: spin, or sleep until the queue's interrupt (or the 10 ms
 * tick).  Interrupts are asked for only while asleep, and the used ring
 * is checked again after asking, so a completion in between wakes us.
 */
static void idle(struct bench *b)
{
	volatile u16 *used_idx = (volatile u16 *)(b->q->used + 2);

	if (!b->halt) {
		cpu_relax();
		return;
	}
	b->q->avail[0] = 0;
	asm volatile("mfence" : : : "memory");
	if (*used_idx == b->q->last_used) {
		wfi();
		b->sleeps++;
	}
	b->q->avail[0] = AVAIL_F_NO_INTERRUPT;
}

/* The next received buffer, or NULL; *len is its frame's length (0: none). */
static u8 *rx_next(struct nic *n, u32 *len)
{
	u32 id, l;
	u8 *buf;

	if (!virtq_poll(&n->v->vq[0], &id, &l))
		return NULL;
	/* The device says which buffer and how long: checked before use. */
	if (id >= VIRTQ_MAX_SIZE || !n->rx[id])
		return NULL;
	buf = n->rx[id];
	n->rx[id] = NULL;
	*len = l > NET_HDR_LEN && l <= NET_BUF_LEN ? l - NET_HDR_LEN : 0;
	return buf;
}

/* Ask who has ip (the host answers for its tap); other frames are served. */
static bool arp_resolve(struct nic *n, u32 ip, u8 *mac)
{
	for (int tries = 0; tries < 10; tries++) {
		u8 *o = n->tx + NET_HDR_LEN, *a = o + 14;
		u64 until;

		memset(o, 0xff, 6);
		memcpy(o + 6, n->mac, 6);
		put16(o + 12, ETH_ARP);
		put16(a, 1);			/* Ethernet */
		put16(a + 2, ETH_IP);
		a[4] = 6;
		a[5] = 4;
		put16(a + 6, 1);		/* request */
		memcpy(a + 8, n->mac, 6);
		put32(a + 14, n->ip);
		memset(a + 18, 0, 6);
		put32(a + 24, ip);
		net_transmit(n, 42);
		until = now_us() + 300000;
		while (now_us() < until) {
			u32 len;
			u8 *buf = rx_next(n, &len), *f;
			bool found;

			if (!buf) {
				cpu_relax();
				continue;
			}
			f = buf + NET_HDR_LEN;
			a = f + 14;
			found = len >= 42 && get16(f + 12) == ETH_ARP &&
				get16(a + 6) == 2 && get32(a + 14) == ip;
			if (found)
				memcpy(mac, a + 8, 6);
			else if (len)
				net_receive(n, f, len);
			net_post_rx(n, buf);
			virtq_kick(n->v, &n->v->vq[0]);
			if (found)
				return true;
		}
	}
	return false;
}

/* Ethernet + IPv4 + UDP headers of a datagram from n to ip:port. */
static void udp_headers(struct nic *n, u8 *o, const u8 *mac, u32 ip,
			u16 port, u32 size)
{
	u8 *h = o + 14, *u = h + 20;

	memcpy(o, mac, 6);
	memcpy(o + 6, n->mac, 6);
	put16(o + 12, ETH_IP);
	memset(h, 0, 20);
	h[0] = 0x45;
	put16(h + 2, 20 + 8 + size);
	put16(h + 6, 0x4000);		/* don't fragment */
	h[8] = 64;
	h[9] = IP_UDP;
	put32(h + 12, n->ip);
	put32(h + 16, ip);
	put16(h + 10, net_csum(h, 20));
	put16(u, n->udp_port);
	put16(u + 2, port);
	put16(u + 4, 8 + size);
	put16(u + 6, 0);		/* no checksum: allowed over IPv4 */
}

/* Reclaim completed transmissions; returns how many. */
static u32 tx_reclaim(struct bench *b)
{
	u32 id, len, done = 0;

	while (virtq_poll(b->q, &id, &len))
		done++;
	return done;
}

static void blast(struct bench *b)
{
	struct nic *n = b->n;
	struct virtq *q = b->q;
	u8 *bufs[VIRTQ_MAX_SIZE], peermac[6];
	char val[40];
	const char *p, *mac_from = "option";
	u32 peer, inflight = 0, batch = q->size / 4 ? q->size / 4 : 1;
	u16 port;
	u64 end, seq = 0;

	if (!option(n->index, "peer", val, sizeof(val)) ||
	    !net_parse_ip(val, &peer, &p) || *p != ':' ||
	    !(port = parse_u64(p + 1, NULL))) {
		fail("net-bench", "dev=%s blast needs kvmmtest.net%d.peer=IP:PORT",
		     n->v->name, n->index);
		return;
	}
	if (option(n->index, "peermac", val, sizeof(val))) {
		if (!parse_mac(val, peermac)) {
			fail("net-bench", "dev=%s kvmmtest.net%d.peermac=%s is not xx:xx:xx:xx:xx:xx",
			     n->v->name, n->index, val);
			return;
		}
	} else if (arp_resolve(n, peer, peermac)) {
		mac_from = "arp";
	} else {
		fail("net-bench", "dev=%s no ARP reply from the peer; give kvmmtest.net%d.peermac=",
		     n->v->name, n->index);
		return;
	}
	/* Buffer by descriptor: a one-descriptor chain takes free_head. */
	for (u32 d = 0; d < q->size; d++) {
		u8 *buf = dma_alloc(TX_BUF_LEN, 64), *pl;

		if (!buf) {
			fail("net-bench", "dev=%s out of DMA memory", n->v->name);
			return;
		}
		udp_headers(n, buf + NET_HDR_LEN, peermac, peer, port, b->size);
		pl = buf + NET_HDR_LEN + HDRS;
		for (u32 i = 8; i < b->size; i++)
			pl[i] = pattern(i);
		bufs[d] = buf;
	}
	record("event net-bench-start dev=%s mode=tx peermac=%02x:%02x:%02x:%02x:%02x:%02x peermac_from=%s",
	       n->v->name, peermac[0], peermac[1], peermac[2], peermac[3],
	       peermac[4], peermac[5], mac_from);
	b->t0 = rdtsc();
	end = b->t0 + b->secs * tsc_khz * 1000;
	for (;;) {
		inflight -= tx_reclaim(b);
		if (rdtsc() >= end)
			break;
		if (q->num_free < batch) {
			idle(b);
			continue;
		}
		while (q->num_free) {
			u8 *buf = bufs[q->free_head];
			struct vbuf vb = { buf, NET_HDR_LEN + HDRS + b->size, false };

			put64(buf + NET_HDR_LEN + HDRS, seq++);
			virtq_add(q, &vb, 1);
			inflight++;
		}
		notify(b);
	}
	while (inflight && rdtsc() < end + DRAIN_S * tsc_khz * 1000)
		inflight -= tx_reclaim(b);
	b->t1 = rdtsc();
	b->pkts = seq - inflight;
	b->bytes = b->pkts * b->size;
	if (inflight) {
		fail("net-bench", "dev=%s %u datagrams not sent %d s after the end",
		     n->v->name, inflight, DRAIN_S);
		return;
	}
	/* The end marker, a few times: the host may drop one. */
	for (int i = 0; i < END_MARKERS; i++) {
		u8 *buf = bufs[q->free_head];
		struct vbuf vb = { buf, NET_HDR_LEN + HDRS + b->size, false };

		put64(buf + NET_HDR_LEN + HDRS, END_SEQ);
		virtq_add(q, &vb, 1);
		notify(b);
		for (u64 t = now_us(); !tx_reclaim(b) && now_us() - t < 1000000;)
			cpu_relax();
	}
	info("net-bench dev=%s mode=tx size=%u bytes=%lu pkts=%lu ns=%lu kicks=%lu sleeps=%lu",
	     n->v->name, b->size, b->bytes, b->pkts, tsc_ns(b->t1 - b->t0),
	     b->kicks, b->sleeps);
}

/* The UDP payload of f if it is a datagram for n's port, else NULL. */
static const u8 *bench_payload(struct nic *n, const u8 *f, u32 len, u32 *plen)
{
	const u8 *ip = f + 14, *u;
	u32 ihl, total;

	/* Every length comes from the frame: checked against len. */
	if (len < 14 + 20 + 8 || get16(f + 12) != ETH_IP || (ip[0] >> 4) != 4)
		return NULL;
	ihl = (ip[0] & 0xf) * 4;
	total = get16(ip + 2);
	if (ihl < 20 || total < ihl + 8 || total > len - 14 || ip[9] != IP_UDP ||
	    get32(ip + 16) != n->ip || (get16(ip + 6) & 0x3fff))
		return NULL;
	u = ip + ihl;
	if (get16(u + 2) != n->udp_port || get16(u + 4) < 8 + 8 ||
	    get16(u + 4) > total - ihl)
		return NULL;
	*plen = get16(u + 4) - 8;
	return u + 8;
}

static void sink(struct bench *b)
{
	struct nic *n = b->n;
	struct virtq *q = b->q;
	u8 *used[VIRTQ_MAX_SIZE];
	u32 nused = 0, batch = q->size / 4 ? q->size / 4 : 1;
	u64 end, next_seq = 0, reordered = 0, bad = 0, last;
	bool ended = false;

	/* Fill the whole ring (virtio_net_run posted a few buffers). */
	while (q->num_free) {
		u8 *buf = dma_alloc(NET_BUF_LEN, 64);

		if (!buf || !net_post_rx(n, buf)) {
			fail("net-bench", "dev=%s out of DMA memory", n->v->name);
			return;
		}
	}
	virtq_kick(n->v, q);
	record("event net-bench-ready dev=%s mode=rx port=%u", n->v->name,
	       n->udp_port);
	end = rdtsc() + b->secs * tsc_khz * 1000;
	last = rdtsc();
	while (!ended && rdtsc() < end) {
		u32 len, plen;
		u8 *buf = rx_next(n, &len);
		const u8 *pl;

		if (!buf) {
			/* Idle 1 ms with buffers posted: notify again. */
			if (rdtsc() - last > tsc_khz) {
				virtq_kick(n->v, q);
				b->rekicks++;
				last = rdtsc();
			}
			idle(b);
			continue;
		}
		last = rdtsc();
		pl = bench_payload(n, buf + NET_HDR_LEN, len, &plen);
		if (pl && get64(pl) == END_SEQ) {
			ended = true;
		} else if (pl) {
			u64 seq = get64(pl), now = rdtsc();

			if (!b->pkts)
				b->t0 = now;
			b->t1 = now;
			b->pkts++;
			b->bytes += plen;
			if (seq < next_seq)
				reordered++;
			else
				next_seq = seq + 1;
			/* A sample of the payload: all of it costs guest time. */
			if (plen < MIN_PAYLOAD || pl[8] != pattern(8) ||
			    pl[plen - 1] != pattern(plen - 1))
				bad++;
		} else if (len) {
			net_receive(n, buf + NET_HDR_LEN, len);
		}
		used[nused++] = buf;
		if (nused >= batch) {
			while (nused)
				net_post_rx(n, used[--nused]);
			notify(b);
		}
	}
	while (nused)
		net_post_rx(n, used[--nused]);
	virtq_kick(n->v, q);
	info("net-bench dev=%s mode=rx bytes=%lu pkts=%lu ns=%lu seq_end=%lu reordered=%lu bad=%lu kicks=%lu rekicks=%lu sleeps=%lu ended=%d",
	     n->v->name, b->bytes, b->pkts, tsc_ns(b->t1 - b->t0), next_seq,
	     reordered, bad, b->kicks, b->rekicks, b->sleeps, ended);
}

void net_bench_run(struct nic *n)
{
	struct bench b = { .n = n, .size = MAX_PAYLOAD };
	char val[20], other[20];
	bool tx = option(n->index, "blast", val, sizeof(val));
	struct virtq *q = &n->v->vq[tx ? 1 : 0];

	if (tx && option(n->index, "sink", other, sizeof(other))) {
		fail("net-bench", "dev=%s: blast= and sink= exclude each other",
		     n->v->name);
		return;
	}
	if (!tx)
		option(n->index, "sink", val, sizeof(val));
	b.secs = parse_u64(val, NULL);
	if (option(n->index, "size", val, sizeof(val)))
		b.size = parse_u64(val, NULL);
	if (b.size < MIN_PAYLOAD || b.size > MAX_PAYLOAD) {
		fail("net-bench", "dev=%s size=%u is not %d-%d", n->v->name,
		     b.size, MIN_PAYLOAD, MAX_PAYLOAD);
		return;
	}
	b.q = q;
	b.halt = !cmdline_option("kvmmtest.net.idle", val, sizeof(val)) ||
		 strcmp(val, "poll");
	q->avail[0] = AVAIL_F_NO_INTERRUPT;	/* we poll */
	if (tx)
		blast(&b);
	else
		sink(&b);
	q->avail[0] = 0;
	virtio_check_status(n->v);
	virtio_report_interrupts(n->v, false);
}
