/* virtio-console: what the rest of kvmm calls (the device is
 * virtio/console.c). */
#ifndef KVMM_VIRTIO_CONSOLE_H
#define KVMM_VIRTIO_CONSOLE_H

#include <stdint.h>

struct chardev;
struct device;
struct vm;

/* Takes backend's input callbacks; the backend outlives the device. */
struct device *virtio_console_create(struct vm *vm, unsigned int slot, uint64_t bar_addr,
				     struct chardev *backend);

#endif
