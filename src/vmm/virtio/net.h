/* virtio-net: what the rest of kvmm calls (the device is virtio/net.c). */
#ifndef KVMM_VIRTIO_NET_H
#define KVMM_VIRTIO_NET_H

#include <stdint.h>

struct device;
struct vm;

/* Opens (or creates) NIC index's tap of vm->cfg, or takes its fd (which
 * is closed on failure too); on bad input prints one line and returns
 * NULL, leaving no tap behind. */
struct device *virtio_net_create(struct vm *vm, unsigned int index,
				 unsigned int slot, uint64_t bar_addr);

/* A NIC's counters since kvmm started (they survive guest resets); rx
 * is what the guest received, tx what it sent. */
struct virtio_net_stats {
	const char *tap;
	uint8_t mac[6];
	uint64_t rx_bytes, rx_packets, rx_errors, rx_drops;
	uint64_t tx_bytes, tx_packets, tx_errors, tx_drops;
};
/* 0 and *st filled if dev is a virtio-net device, else -ENODEV. */
int virtio_net_stats(struct device *dev, struct virtio_net_stats *st);

#endif
