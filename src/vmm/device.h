/* Platform devices and the buses that route guest port-I/O and MMIO to
 * them.  Every device is one file with one ops table; the VM lists its
 * devices explicitly (vm.c) so the creation order can be read. */
#ifndef KVMM_DEVICE_H
#define KVMM_DEVICE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct vm;
struct device;
struct state_buf;

struct device_ops {
	const char *name;
	/* Guest register access; addr is relative to the registered base.
	 * Called from vCPU threads with dev->lock held. */
	void (*read)(struct device *dev, uint64_t addr, uint8_t *data, unsigned int len);
	void (*write)(struct device *dev, uint64_t addr, const uint8_t *data, unsigned int len);
	/* Back to the power-on state (guest reset). */
	void (*reset)(struct device *dev);
	/* Device state for save/restore and migration: save appends a
	 * versioned record; load checks and applies it (-EINVAL if bad). */
	int (*save)(struct device *dev, struct state_buf *out);
	int (*load)(struct device *dev, const uint8_t *data, size_t len);
	void (*destroy)(struct device *dev);
};

struct device {
	const struct device_ops *ops;
	struct vm *vm;
	pthread_mutex_t lock;
	struct device *next;
};

void device_init(struct device *dev, const struct device_ops *ops, struct vm *vm);

/* A growable byte buffer for device state records. */
struct state_buf {
	uint8_t *data;
	size_t len, cap;
};
int state_put(struct state_buf *b, const void *data, size_t len);
void state_buf_free(struct state_buf *b);

enum bus_kind { BUS_PIO, BUS_MMIO };

struct bus_range {
	uint64_t base, len;
	struct device *dev;
};

#define BUS_MAX_RANGES 64

struct bus {
	unsigned int nranges;
	struct bus_range ranges[BUS_MAX_RANGES];	/* sorted by base */
};

/* Ranges are registered while the VM is built, before any vCPU runs, so
 * lookups need no lock.  -EEXIST if the range overlaps another. */
int bus_register(struct bus *b, uint64_t base, uint64_t len, struct device *dev);

/* Dispatches one guest access.  Returns false if no device claims addr
 * (the caller then reads all-ones / drops the write). */
bool bus_access(struct bus *b, uint64_t addr, uint8_t *data,
		unsigned int len, bool is_write);

#endif
