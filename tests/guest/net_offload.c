// SPDX-License-Identifier: MIT
/*
 * virtio-net's optional features (virtio 1.2, 5.1.3, 5.1.6) for the
 * serving NICs, chosen per NIC with kvmmtest.netN.features=LIST
 * (mrg, csum, gcsum) and kvmmtest.netN.rxbuf=BYTES:
 *
 * - MRG_RXBUF: a frame may fill several receive buffers; the header,
 *   in the first, says how many (num_buffers).  They are the next used
 *   entries, gathered here into one frame.
 * - GUEST_CSUM: a frame may come with NEEDS_CSUM (the checksum from
 *   csum_start to the end is still to be computed and stored at
 *   csum_start + csum_offset) or DATA_VALID (the device checked it).
 *   The first is completed here; UDP checksums are verified either way.
 * - CSUM: UDP echoes leave with the pseudo-header sum in their checksum
 *   field and NEEDS_CSUM, for the device to complete.
 *
 * kvmmtest.netN.udpcsum=none|full|bad says how echoes are checksummed
 * without CSUM: not at all (the default), right, or deliberately wrong
 * (a negative control: the host must drop them).
 */
#include "guest.h"
#include "virtio_net.h"

#define F_CSUM		0
#define F_GUEST_CSUM	1
#define F_MRG_RXBUF	15

#define HDR_F_NEEDS_CSUM	1
#define HDR_F_DATA_VALID	2

#define RXBUF_MIN	64

static const struct {
	const char *name;
	int bit;
} feature_names[] = {
	{ "mrg", F_MRG_RXBUF },
	{ "csum", F_CSUM },
	{ "gcsum", F_GUEST_CSUM },
};

static u16 le16(const u8 *p)
{
	return p[0] | p[1] << 8;
}

static u32 csum_add(u32 sum, const u8 *p, u32 len)
{
	for (u32 i = 0; i + 1 < len; i += 2)
		sum += get16(p + i);
	if (len & 1)
		sum += p[len - 1] << 8;
	return sum;
}

static u16 csum_fold(u32 sum)
{
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return sum;
}

/* RFC 1071 Internet checksum. */
u16 net_csum(const u8 *p, u32 len)
{
	return ~csum_fold(csum_add(0, p, len));
}

/* The IPv4 pseudo-header's sum (RFC 768) for a transport segment. */
static u32 pseudo_sum(const u8 *ip, u8 proto, u32 len)
{
	return csum_add(0, ip + 12, 8) + proto + len;
}

/* Reads features=, rxbuf= and udpcsum= for NIC n; the features to ask for
 * (beyond MAC), or false on a bad option (reported). */
bool net_offload_options(struct nic *n, u64 *wanted)
{
	char key[40], val[40];
	const char *s;

	n->rxbuf = NET_BUF_LEN;
	snprintf(key, sizeof(key), "kvmmtest.net%d.features", n->index);
	if (cmdline_option(key, val, sizeof(val))) {
		n->offload_opts = true;
		for (s = val; *s;) {
			size_t l = 0;
			int i, nf = sizeof(feature_names) / sizeof(feature_names[0]);

			while (s[l] && s[l] != ',')
				l++;
			for (i = 0; i < nf; i++)
				if (strlen(feature_names[i].name) == l &&
				    !strncmp(s, feature_names[i].name, l))
					break;
			if (i == nf) {
				fail("virtio-net", "dev=%s %s: unknown feature in \"%s\" (mrg, csum, gcsum)",
				     n->v->name, key, val);
				return false;
			}
			*wanted |= 1ULL << feature_names[i].bit;
			s += l + (s[l] == ',');
		}
	}
	snprintf(key, sizeof(key), "kvmmtest.net%d.rxbuf", n->index);
	if (cmdline_option(key, val, sizeof(val))) {
		n->offload_opts = true;
		n->rxbuf = parse_u64(val, NULL);
		/* Without MRG_RXBUF a buffer must take a whole frame (5.1.6.3.1). */
		if (n->rxbuf < (*wanted & 1ULL << F_MRG_RXBUF ? RXBUF_MIN : 1526) ||
		    n->rxbuf > NET_BUF_LEN) {
			fail("virtio-net", "dev=%s %s=%s: must be %u-%u (1526 and up without features=mrg)",
			     n->v->name, key, val, RXBUF_MIN, NET_BUF_LEN);
			return false;
		}
	}
	snprintf(key, sizeof(key), "kvmmtest.net%d.udpcsum", n->index);
	if (cmdline_option(key, val, sizeof(val))) {
		n->offload_opts = true;
		if (!strcmp(val, "none"))
			n->udpcsum = UDPCSUM_NONE;
		else if (!strcmp(val, "full"))
			n->udpcsum = UDPCSUM_FULL;
		else if (!strcmp(val, "bad"))
			n->udpcsum = UDPCSUM_BAD;
		else {
			fail("virtio-net", "dev=%s %s=%s: use none, full or bad",
			     n->v->name, key, val);
			return false;
		}
	}
	if (n->offload_opts && n->bench) {
		fail("virtio-net", "dev=%s features=, rxbuf= and udpcsum= are for serving, not the throughput modes",
		     n->v->name);
		return false;
	}
	return true;
}

/* After negotiation: every feature asked for must have been granted. */
bool net_offload_negotiated(struct nic *n, u64 wanted)
{
	for (u32 i = 0; i < sizeof(feature_names) / sizeof(feature_names[0]); i++) {
		int bit = feature_names[i].bit;

		if ((wanted & 1ULL << bit) && !virtio_has(n->v, bit)) {
			fail("virtio-net", "dev=%s the device does not offer %s (bit %d)",
			     n->v->name, feature_names[i].name, bit);
			return false;
		}
	}
	n->mrg = virtio_has(n->v, F_MRG_RXBUF);
	n->gcsum = virtio_has(n->v, F_GUEST_CSUM);
	if (virtio_has(n->v, F_CSUM))
		n->udpcsum = UDPCSUM_PARTIAL;
	return true;
}

/* The UDP segment's checksum over the pseudo-header: 0 when right. */
static u16 udp_check(const u8 *ip, const u8 *udp, u32 ulen)
{
	return ~csum_fold(pseudo_sum(ip, IP_UDP, ulen) + csum_add(0, udp, ulen));
}

/* A received IPv4 UDP segment (ulen bytes, checked to fit): does its
 * checksum hold?  Zero means none was sent (allowed over IPv4). */
bool net_udp_csum_ok(struct nic *n, const u8 *ip, const u8 *udp, u32 ulen)
{
	if (!get16(udp + 6))
		return true;
	if (udp_check(ip, udp, ulen)) {
		n->csum_bad++;
		return false;
	}
	n->csum_ok++;
	return true;
}

/* The checksum field of an outgoing UDP segment (zeroed by the caller);
 * returns the header's csum_start for NEEDS_CSUM, or 0. */
u16 net_udp_csum_fill(struct nic *n, const u8 *ip, u8 *udp, u32 ulen)
{
	u16 full;

	switch (n->udpcsum) {
	case UDPCSUM_PARTIAL:
		/* The device sums from csum_start to the end, over this. */
		put16(udp + 6, csum_fold(pseudo_sum(ip, IP_UDP, ulen)));
		n->tx_partial++;
		return 14 + (ip[0] & 0xf) * 4;
	case UDPCSUM_FULL:
	case UDPCSUM_BAD:
		full = udp_check(ip, udp, ulen);
		if (!full)
			full = 0xffff;	/* 0 would mean "no checksum" */
		/* bad: neither right nor 0 (none) nor 0xffff (also 0) */
		if (n->udpcsum == UDPCSUM_BAD)
			full = full == 0x1234 ? 0x4321 : 0x1234;
		put16(udp + 6, full);
		return 0;
	default:
		return 0;
	}
}

/* GUEST_CSUM: a frame's header flags.  NEEDS_CSUM is completed in place
 * (as the device would have); false if its offsets do not fit the frame. */
static bool rx_csum(struct nic *n, const u8 *hdr, u8 *f, u32 len)
{
	u32 start = le16(hdr + 6), off = le16(hdr + 8);

	if (!n->gcsum)
		return true;	/* flags mean nothing then (5.1.6.4) */
	if (hdr[0] & HDR_F_DATA_VALID)
		n->data_valid++;
	if (!(hdr[0] & HDR_F_NEEDS_CSUM))
		return true;
	n->needs_csum++;
	/* GUEST: the device's offsets are checked before they are used. */
	if (start >= len || off + 2 > len - start)
		return false;
	/* The field holds the sum so far (the pseudo-header's): summed too. */
	put16(f + start + off, net_csum(f + start, len - start));
	return true;
}

static u8 *take(struct nic *n, u32 id)
{
	u8 *buf;

	if (id >= VIRTQ_MAX_SIZE || !n->rx[id])
		return NULL;
	buf = n->rx[id];
	n->rx[id] = NULL;
	return buf;
}

/* Gives buffers back (NULL ones were lost) and tells the device. */
static void repost(struct nic *n, u8 **bufs, u32 nbufs)
{
	for (u32 i = 0; i < nbufs; i++)
		if (bufs[i])
			net_post_rx(n, bufs[i]);
	virtq_kick(n->v, &n->v->vq[0]);
}

/* One received frame, if the device has used a buffer: with MRG_RXBUF
 * from num_buffers of them.  Served, then the buffers go back. */
bool net_rx_frame(struct nic *n)
{
	struct virtq *q = &n->v->vq[0];
	u8 *bufs[VIRTQ_MAX_SIZE], *hdr, *f;
	u32 id, len, nbufs = 1, flen = 0;

	if (!virtq_poll(q, &id, &len))
		return false;
	bufs[0] = hdr = take(n, id);
	/* GUEST: the used entry names one of ours and fits its buffer. */
	if (!hdr || len < NET_HDR_LEN || len > n->rxbuf) {
		n->rx_errors++;
		repost(n, bufs, 1);
		return true;
	}
	if (n->mrg)
		nbufs = le16(hdr + 10);
	/* GUEST: num_buffers from 1 to what the ring and a frame can hold */
	if (!nbufs || nbufs > q->size) {
		n->rx_errors++;
		repost(n, bufs, 1);
		return true;
	}
	f = hdr + NET_HDR_LEN;
	flen = len - NET_HDR_LEN;
	if (nbufs > 1) {
		bool lost = false;

		/* The rest follow in the used ring, maybe not yet all there. */
		memcpy(n->frame, f, flen);
		for (u32 i = 1; i < nbufs; i++) {
			bufs[i] = NULL;
			if (!virtq_wait(n->v, q, &id, &len, 100000)) {
				n->rx_errors++;
				repost(n, bufs, i);
				return true;
			}
			bufs[i] = take(n, id);
			/* GUEST: each piece is ours and the frame fits ours */
			if (!bufs[i] || len > n->rxbuf || flen + len > NET_BUF_LEN)
				lost = true;	/* the frame; not its buffers */
			if (lost)
				continue;
			memcpy(n->frame + flen, bufs[i], len);
			flen += len;
		}
		if (lost) {
			n->rx_errors++;
			repost(n, bufs, nbufs);
			return true;
		}
		f = n->frame;
		n->multi++;
	}
	if (nbufs > n->max_bufs)
		n->max_bufs = nbufs;
	if (rx_csum(n, hdr, f, flen))
		net_receive(n, f, flen);
	else
		n->rx_errors++;
	repost(n, bufs, nbufs);
	return true;
}

void net_offload_report(struct nic *n)
{
	static const char *const how[] = { "none", "full", "bad", "partial" };

	if (!n->offload_opts)
		return;
	(n->rx_errors || n->csum_bad ? fail : pass)("virtio-net-offload",
	     "dev=%s mrg=%d gcsum=%d tx_csum=%s rxbuf=%u multi_buffer_frames=%lu max_buffers=%lu needs_csum=%lu data_valid=%lu udp_csum_ok=%lu udp_csum_bad=%lu tx_partial=%lu rx_errors=%lu",
	     n->v->name, n->mrg, n->gcsum, how[n->udpcsum], n->rxbuf,
	     n->multi, n->max_bufs, n->needs_csum, n->data_valid, n->csum_ok,
	     n->csum_bad, n->tx_partial, n->rx_errors);
}
