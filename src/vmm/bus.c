#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "device.h"

void device_init(struct device *dev, const struct device_ops *ops, struct vm *vm)
{
	dev->ops = ops;
	dev->vm = vm;
	dev->next = NULL;
	pthread_mutex_init(&dev->lock, NULL);
}

int state_put(struct state_buf *b, const void *data, size_t len)
{
	if (b->len + len > b->cap) {
		size_t cap = (b->cap ? b->cap * 2 : 256) + len;
		uint8_t *p = realloc(b->data, cap);

		if (!p)
			return -ENOMEM;
		b->data = p;
		b->cap = cap;
	}
	memcpy(b->data + b->len, data, len);
	b->len += len;
	return 0;
}

void state_buf_free(struct state_buf *b)
{
	free(b->data);
	memset(b, 0, sizeof(*b));
}

int bus_register(struct bus *b, uint64_t base, uint64_t len, struct device *dev)
{
	unsigned int i;

	if (!len || base + len < base)
		return -EINVAL;
	if (b->nranges == BUS_MAX_RANGES)
		return -ENOSPC;
	for (i = 0; i < b->nranges; i++) {
		struct bus_range *r = &b->ranges[i];

		if (base < r->base + r->len && r->base < base + len)
			return -EEXIST;
		if (base < r->base)
			break;
	}
	memmove(&b->ranges[i + 1], &b->ranges[i],
		(b->nranges - i) * sizeof(b->ranges[0]));
	b->ranges[i] = (struct bus_range){ base, len, dev };
	b->nranges++;
	return 0;
}

static struct bus_range *bus_find(struct bus *b, uint64_t addr)
{
	unsigned int lo = 0, hi = b->nranges;

	while (lo < hi) {
		unsigned int mid = (lo + hi) / 2;
		struct bus_range *r = &b->ranges[mid];

		if (addr < r->base)
			hi = mid;
		else if (addr - r->base >= r->len)
			lo = mid + 1;
		else
			return r;
	}
	return NULL;
}

bool bus_access(struct bus *b, uint64_t addr, uint8_t *data,
		unsigned int len, bool is_write)
{
	struct bus_range *r = bus_find(b, addr);
	struct device *dev;

	/* GUEST: an access that starts in a device but runs past its end is
	 * treated as unclaimed rather than handed to the device. */
	if (!r || len > r->len - (addr - r->base))
		return false;
	dev = r->dev;
	pthread_mutex_lock(&dev->lock);
	if (is_write) {
		if (dev->ops->write)
			dev->ops->write(dev, addr - r->base, data, len);
	} else {
		memset(data, 0, len);
		if (dev->ops->read)
			dev->ops->read(dev, addr - r->base, data, len);
	}
	pthread_mutex_unlock(&dev->lock);
	return true;
}
