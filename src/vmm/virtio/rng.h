/* virtio-rng: what the rest of kvmm calls (the device is virtio/rng.c). */
#ifndef KVMM_VIRTIO_RNG_H
#define KVMM_VIRTIO_RNG_H

#include <stdint.h>

struct device;
struct vm;

struct device *virtio_rng_create(struct vm *vm, unsigned int slot, uint64_t bar_addr);

#endif
