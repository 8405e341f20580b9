/* SPDX-License-Identifier: MIT */
/*
 * virtio-net's driver state (virtio_net.c), shared with the throughput
 * modes (net_bench.c).
 */
#ifndef GUEST_VIRTIO_NET_H
#define GUEST_VIRTIO_NET_H

#include "virtio.h"

#define NET_HDR_LEN	12	/* struct virtio_net_hdr with num_buffers */
#define NET_BUF_LEN	2048	/* >= 1526: no MRG_RXBUF, no GSO (5.1.6.3.1) */

/* How UDP echoes are checksummed (net_offload.c). */
enum { UDPCSUM_NONE, UDPCSUM_FULL, UDPCSUM_BAD, UDPCSUM_PARTIAL };

#define NET_BENCH_QSIZE	128	/* ring size for the throughput modes */

#define ETH_ARP		0x0806
#define ETH_IP		0x0800
#define IP_UDP		17

struct nic {
	struct virtio_dev *v;
	int index;		/* N of netN */
	u8 mac[6];
	u32 ip;			/* host order */
	u16 udp_port;
	bool done;
	bool bench;		/* a throughput mode runs instead of serving */
	u8 *rx[VIRTQ_MAX_SIZE];	/* receive buffer by head descriptor */
	u8 *tx;
	u64 arp, icmp, udp, frames;
	/* net_offload.c: options and what they saw */
	bool offload_opts;	/* features=, rxbuf= or udpcsum= given */
	bool mrg, gcsum;	/* MRG_RXBUF, GUEST_CSUM negotiated */
	int udpcsum;		/* UDPCSUM_*: PARTIAL when CSUM negotiated */
	u32 rxbuf;		/* receive buffer size */
	u8 *frame;		/* a frame gathered from several buffers */
	u64 multi, max_bufs, needs_csum, data_valid, csum_ok, csum_bad;
	u64 tx_partial, rx_errors;
};

static inline u16 get16(const u8 *p)
{
	return p[0] << 8 | p[1];
}

static inline void put16(u8 *p, u16 v)
{
	p[0] = v >> 8;
	p[1] = v;
}

static inline u32 get32(const u8 *p)
{
	return (u32)p[0] << 24 | p[1] << 16 | p[2] << 8 | p[3];
}

static inline void put32(u8 *p, u32 v)
{
	put16(p, v >> 16);
	put16(p + 2, v);
}

/* virtio_net.c */
bool net_parse_ip(const char *s, u32 *ip, const char **end);
bool net_post_rx(struct nic *n, u8 *buf);
void net_transmit(struct nic *n, u32 len);
void net_receive(struct nic *n, const u8 *f, u32 len);

/* net_offload.c */
u16 net_csum(const u8 *p, u32 len);
bool net_offload_options(struct nic *n, u64 *wanted);
bool net_offload_negotiated(struct nic *n, u64 wanted);
bool net_udp_csum_ok(struct nic *n, const u8 *ip, const u8 *udp, u32 ulen);
u16 net_udp_csum_fill(struct nic *n, const u8 *ip, u8 *udp, u32 ulen);
bool net_rx_frame(struct nic *n);
void net_offload_report(struct nic *n);

/* net_bench.c */
bool net_bench_wanted(int index);
void net_bench_run(struct nic *n);

#endif
