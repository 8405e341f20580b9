// SPDX-License-Identifier: MIT
/*
 * virtio-net (virtio spec 5.1), one queue pair, no offloads: enough to
 * answer ARP requests and ICMP echo for the guest's address and to echo
 * UDP datagrams on one port, on every NIC at once.  Options per NIC N:
 * kvmmtest.netN.ip=A.B.C.D, kvmmtest.netN.udp=PORT (default 7); and
 * kvmmtest.net.serve=SECONDS, how long to answer at most (default 30).
 * A UDP datagram "KVMMTEST-QUIT" on the echo port is echoed and ends
 * serving on that NIC.  kvmmtest.netN.malformed=KIND first puts a hostile
 * chain (virtq_malformed) on NIC N's transmit queue, reports what the
 * device did, and resets it before bringing it up as usual.  A NIC
 * given a throughput mode (net_bench.c) runs that instead of serving.
 */
#include "guest.h"
#include "io.h"
#include "virtio_net.h"

#define F_MAC		5

#define RX_BUFS		16
#define MAX_NICS	4

#define IP_ICMP		1
#define QUIT		"KVMMTEST-QUIT"

static struct nic nics[MAX_NICS];
static int nnics;

/* A.B.C.D; *end (if asked) after the last digit. */
bool net_parse_ip(const char *s, u32 *ip, const char **end)
{
	const char *e = s;

	*ip = 0;
	for (int i = 0; i < 4; i++) {
		u64 b = parse_u64(s, &e);

		if (e == s || b > 255 || (i < 3 && *e != '.'))
			return false;
		*ip = *ip << 8 | b;
		s = e + 1;
	}
	if (end)
		*end = e;
	return true;
}

bool net_post_rx(struct nic *n, u8 *buf)
{
	struct vbuf b = { buf, n->rxbuf, true };
	int head = virtq_add(&n->v->vq[0], &b, 1);

	if (head < 0)
		return false;
	n->rx[head] = buf;
	return true;
}

/* The frame in n->tx + NET_HDR_LEN, len bytes, padded to Ethernet's 60;
 * csum_start not 0: NEEDS_CSUM, the checksum field csum_offset past it
 * (zero padding leaves the device's sum unchanged). */
static void transmit(struct nic *n, u32 len, u16 csum_start, u16 csum_offset)
{
	struct vbuf b = { n->tx, NET_HDR_LEN + (len < 60 ? 60 : len), false };

	if (len < 60)
		memset(n->tx + NET_HDR_LEN + len, 0, 60 - len);
	memset(n->tx, 0, NET_HDR_LEN);	/* no GSO */
	if (csum_start) {
		n->tx[0] = 1;		/* VIRTIO_NET_HDR_F_NEEDS_CSUM */
		n->tx[6] = csum_start;
		n->tx[7] = csum_start >> 8;
		n->tx[8] = csum_offset;
		n->tx[9] = csum_offset >> 8;
	}
	virtq_transfer(n->v, &n->v->vq[1], &b, 1, NULL);
}

void net_transmit(struct nic *n, u32 len)
{
	transmit(n, len, 0, 0);
}

static void reply_eth(struct nic *n, u8 *out, const u8 *in, u16 type)
{
	memcpy(out, in + 6, 6);
	memcpy(out + 6, n->mac, 6);
	put16(out + 12, type);
}

static void arp(struct nic *n, const u8 *f, u32 len)
{
	const u8 *a = f + 14;
	u8 *o = n->tx + NET_HDR_LEN, *r = o + 14;

	if (len < 42 || get16(a) != 1 || get16(a + 2) != ETH_IP ||
	    a[4] != 6 || a[5] != 4 || get16(a + 6) != 1 ||
	    get32(a + 24) != n->ip)
		return;
	reply_eth(n, o, f, ETH_ARP);
	memcpy(r, a, 6);		/* htype, ptype, hlen, plen */
	put16(r + 6, 2);		/* reply */
	memcpy(r + 8, n->mac, 6);
	put32(r + 14, n->ip);
	memcpy(r + 18, a + 8, 10);	/* requester's MAC and IP */
	net_transmit(n, 42);
	n->arp++;
}

/* IPv4 header of a reply to ip (header in, ihl bytes), at o + 14. */
static void ip_header(struct nic *n, const u8 *f, const u8 *ip, u8 proto,
		      u32 payload)
{
	u8 *o = n->tx + NET_HDR_LEN, *h = o + 14;

	reply_eth(n, o, f, ETH_IP);
	h[0] = 0x45;
	h[1] = 0;
	put16(h + 2, 20 + payload);
	put16(h + 4, get16(ip + 4));
	put16(h + 6, 0x4000);		/* don't fragment */
	h[8] = 64;
	h[9] = proto;
	put16(h + 10, 0);
	put32(h + 12, n->ip);
	memcpy(h + 16, ip + 12, 4);
	put16(h + 10, net_csum(h, 20));
}

static void ipv4(struct nic *n, const u8 *f, u32 len)
{
	const u8 *ip = f + 14, *p;
	u32 ihl, total, plen;
	u8 *o = n->tx + NET_HDR_LEN + 14 + 20;

	if (len < 34 || (ip[0] >> 4) != 4)
		return;
	ihl = (ip[0] & 0xf) * 4;
	total = get16(ip + 2);
	if (ihl < 20 || total < ihl || total > len - 14 ||
	    get32(ip + 16) != n->ip || (get16(ip + 6) & 0x3fff))
		return;	/* not ours, or a fragment */
	p = ip + ihl;
	plen = total - ihl;
	if (plen > NET_BUF_LEN - NET_HDR_LEN - 14 - 20)
		return;
	if (ip[9] == IP_ICMP && plen >= 8 && p[0] == 8) {
		memcpy(o, p, plen);
		o[0] = 0;		/* echo reply, same id, seq, data */
		put16(o + 2, 0);
		put16(o + 2, net_csum(o, plen));
		ip_header(n, f, ip, IP_ICMP, plen);
		net_transmit(n, 14 + 20 + plen);
		n->icmp++;
	} else if (ip[9] == IP_UDP && plen >= 8 && get16(p + 2) == n->udp_port &&
		   get16(p + 4) >= 8 && get16(p + 4) <= plen) {
		u32 ulen = get16(p + 4);
		u16 start;

		if (!net_udp_csum_ok(n, ip, p, ulen))
			return;		/* dropped, as a stack would */
		memcpy(o, p, ulen);
		put16(o, get16(p + 2));
		put16(o + 2, get16(p));
		put16(o + 6, 0);	/* none unless udpcsum or CSUM */
		ip_header(n, f, ip, IP_UDP, ulen);
		start = net_udp_csum_fill(n, o - 20, o, ulen);
		transmit(n, 14 + 20 + ulen, start, 6);
		n->udp++;
		if (ulen - 8 == sizeof(QUIT) - 1 &&
		    !memcmp(p + 8, QUIT, sizeof(QUIT) - 1))
			n->done = true;
	}
}

void net_receive(struct nic *n, const u8 *f, u32 len)
{
	n->frames++;
	if (len < 14)
		return;
	if (get16(f + 12) == ETH_ARP)
		arp(n, f, len);
	else if (get16(f + 12) == ETH_IP)
		ipv4(n, f, len);
}

/* A hostile transmit chain first; the NIC is then reset and set up as
 * if nothing happened (it must work: the test pings it). */
static bool malformed(struct virtio_dev *v, int index)
{
	char key[32], kind[16];
	const char *what;
	u8 status = 0;

	snprintf(key, sizeof(key), "kvmmtest.net%d.malformed", index);
	if (!cmdline_option(key, kind, sizeof(kind)))
		return true;
	if (!virtio_init(v, 0, 2, 32) || !virtio_driver_ok(v))
		return false;
	what = virtq_malformed(v, &v->vq[1], kind, &status);
	if (!what) {
		fail("virtio-malformed", "dev=%s unknown kind %s", v->name, kind);
		return false;
	}
	info("virtio-malformed dev=%s kind=%s outcome=%s status=0x%02x",
	     v->name, kind, what, status);
	virtio_reset(v);
	return true;
}

void virtio_net_run(struct virtio_dev *v, int index)
{
	struct nic *n;
	char key[32], val[20];
	u64 wanted = 1ULL << F_MAC;
	int bufs = RX_BUFS;

	if (nnics == MAX_NICS) {
		info("virtio-net dev=%s not driven (more than %d NICs)",
		     v->name, MAX_NICS);
		return;
	}
	n = &nics[nnics];
	memset(n, 0, sizeof(*n));
	n->v = v;
	n->index = index;
	n->bench = net_bench_wanted(index);
	snprintf(key, sizeof(key), "kvmmtest.net%d.ip", index);
	if (!cmdline_option(key, val, sizeof(val)) ||
	    !net_parse_ip(val, &n->ip, NULL)) {
		fail("virtio-net", "dev=%s needs %s=A.B.C.D", v->name, key);
		return;
	}
	if (!malformed(v, index))
		return;
	n->udp_port = 7;
	snprintf(key, sizeof(key), "kvmmtest.net%d.udp", index);
	if (cmdline_option(key, val, sizeof(val)))
		n->udp_port = parse_u64(val, NULL);
	if (!net_offload_options(n, &wanted))
		return;
	if (!virtio_init(v, wanted, 2, n->bench ? NET_BENCH_QSIZE : 32) ||
	    !net_offload_negotiated(n, wanted))
		return;
	if (!virtio_has(v, F_MAC)) {
		/* The device has no address for us: make one up, locally administered. */
		u8 mac[6] = { 0x52, 0x54, 0x00, 0x12, 0x34, 0x50 + index };

		memcpy(n->mac, mac, 6);
	} else {
		for (int i = 0; i < 6; i++)
			n->mac[i] = virtio_cfg8(v, i);
	}
	n->tx = dma_alloc(NET_BUF_LEN, 64);
	if (n->rxbuf < NET_BUF_LEN) {
		/* small buffers, a frame over several: fill the ring */
		n->frame = dma_alloc(NET_BUF_LEN, 64);
		bufs = v->vq[0].size;
	}
	for (int i = 0; i < bufs; i++) {
		u8 *buf = dma_alloc(n->rxbuf, 64);

		if (!buf || !n->tx || (n->rxbuf < NET_BUF_LEN && !n->frame) ||
		    !net_post_rx(n, buf)) {
			fail("virtio-net", "dev=%s out of DMA memory", v->name);
			return;
		}
	}
	if (!virtio_driver_ok(v))
		return;
	virtq_kick(v, &v->vq[0]);
	nnics++;
	info("virtio-net dev=%s mac=%02x:%02x:%02x:%02x:%02x:%02x mac_from=%s ip=%u.%u.%u.%u udp=%u",
	     v->name, n->mac[0], n->mac[1], n->mac[2], n->mac[3], n->mac[4],
	     n->mac[5], virtio_has(v, F_MAC) ? "device" : "guest",
	     n->ip >> 24, (n->ip >> 16) & 0xff, (n->ip >> 8) & 0xff,
	     n->ip & 0xff, n->udp_port);
}

/* Answer on every NIC until each got QUIT, or the time is up. */
void virtio_net_serve(void)
{
	char opt[16];
	u64 secs = 30, start;
	bool all_done = false;

	if (!nnics)
		return;
	if (cmdline_option("kvmmtest.net.serve", opt, sizeof(opt)))
		secs = parse_u64(opt, NULL);
	record("event virtio-net-ready nics=%d", nnics);
	for (int i = 0; i < nnics; i++)
		if (nics[i].bench)
			net_bench_run(&nics[i]);
	start = now_us();
	while (!all_done && now_us() - start < secs * 1000000) {
		all_done = true;
		for (int i = 0; i < nnics; i++) {
			struct nic *n = &nics[i];

			if (n->done || n->bench || n->v->broken)
				continue;
			all_done = false;
			if (!net_rx_frame(n))
				cpu_relax();
		}
	}
	for (int i = 0; i < nnics; i++) {
		struct nic *n = &nics[i];

		if (n->bench)
			continue;	/* net_bench_run reported */
		if (n->done)
			pass("virtio-net", "dev=%s frames=%lu arp_replies=%lu icmp_replies=%lu udp_echoes=%lu",
			     n->v->name, n->frames, n->arp, n->icmp, n->udp);
		else
			fail("virtio-net", "dev=%s no %s after %lu s: frames=%lu arp_replies=%lu icmp_replies=%lu udp_echoes=%lu",
			     n->v->name, QUIT, secs, n->frames, n->arp, n->icmp,
			     n->udp);
		net_offload_report(n);
		virtio_report_interrupts(n->v, true);
	}
}
