/* The bounds checks guests lean on: guest_mem_ptr and the device bus. */
#include <errno.h>
#include <stdint.h>

#include "device.h"
#include "memory.h"
#include "unit.h"
#include "util.h"

UNIT_TEST(guest_mem_ptr_accepts_only_ranges_inside_one_region)
{
	struct guest_memory m;

	CHECK(guest_mem_init(&m, 4 * GiB, 3 * GiB, 4 * GiB) == 0);
	CHECK(m.nregions == 2);
	CHECK(guest_mem_ptr(&m, 0, 1) == m.base);
	CHECK(guest_mem_ptr(&m, 3 * GiB - 8, 8) == m.base + 3 * GiB - 8);
	CHECK(guest_mem_ptr(&m, 3 * GiB - 8, 9) == NULL);	/* into the hole */
	CHECK(guest_mem_ptr(&m, 3 * GiB, 1) == NULL);		/* the hole */
	CHECK(guest_mem_ptr(&m, 4 * GiB, 1) == m.base + 3 * GiB);
	CHECK(guest_mem_ptr(&m, 5 * GiB - 1, 1) == m.base + 4 * GiB - 1);
	CHECK(guest_mem_ptr(&m, 5 * GiB - 1, 2) == NULL);	/* past the end */
	CHECK(guest_mem_ptr(&m, 5 * GiB, 0) != NULL);		/* empty, at the end */
	/* wrap-around attempts */
	CHECK(guest_mem_ptr(&m, UINT64_MAX, 2) == NULL);
	CHECK(guest_mem_ptr(&m, 16, UINT64_MAX) == NULL);
	CHECK(guest_mem_ptr(&m, 4 * GiB + 16, UINT64_MAX - 8) == NULL);
	guest_mem_destroy(&m);
}

UNIT_TEST(small_memory_has_one_region)
{
	struct guest_memory m;

	CHECK(guest_mem_init(&m, 64 * MiB, 3 * GiB, 4 * GiB) == 0);
	CHECK(m.nregions == 1);
	CHECK(guest_mem_low_end(&m) == 64 * MiB);
	CHECK(guest_mem_ptr(&m, 4 * GiB, 1) == NULL);
	guest_mem_destroy(&m);
}

struct probe {
	struct device dev;
	uint64_t last_addr;
	unsigned int last_len;
	int writes;
};

static void probe_read(struct device *dev, uint64_t addr, uint8_t *data, unsigned int len)
{
	struct probe *p = (struct probe *)dev;

	p->last_addr = addr;
	p->last_len = len;
	memset(data, 0x5a, len);
}

static void probe_write(struct device *dev, uint64_t addr, const uint8_t *data, unsigned int len)
{
	struct probe *p = (struct probe *)dev;

	p->last_addr = addr;
	p->last_len = len;
	p->writes++;
}

static const struct device_ops probe_ops = {
	.name = "probe", .read = probe_read, .write = probe_write,
};

UNIT_TEST(bus_routes_accesses_with_device_relative_offsets)
{
	struct bus b = { 0 };
	struct probe a, c;
	uint8_t data[4] = { 0 };

	device_init(&a.dev, &probe_ops, NULL);
	device_init(&c.dev, &probe_ops, NULL);
	a.writes = c.writes = 0;
	CHECK(bus_register(&b, 0x3f8, 8, &a.dev) == 0);
	CHECK(bus_register(&b, 0x600, 12, &c.dev) == 0);
	CHECK(bus_access(&b, 0x3fd, data, 1, false));
	CHECK_EQ_U64(a.last_addr, 5);
	CHECK_EQ_U64(data[0], 0x5a);
	CHECK(bus_access(&b, 0x608, data, 4, true));
	CHECK_EQ_U64(c.last_addr, 8);
	CHECK_EQ_U64(c.writes, 1);
	CHECK(!bus_access(&b, 0x400, data, 1, false));
}

UNIT_TEST(bus_refuses_overlaps_and_straddling_accesses)
{
	struct bus b = { 0 };
	struct probe a;
	uint8_t data[4];

	device_init(&a.dev, &probe_ops, NULL);
	a.writes = 0;
	CHECK(bus_register(&b, 0x70, 2, &a.dev) == 0);
	CHECK(bus_register(&b, 0x71, 1, &a.dev) == -EEXIST);
	CHECK(bus_register(&b, 0x6f, 2, &a.dev) == -EEXIST);
	CHECK(bus_register(&b, 0x72, 1, &a.dev) == 0);
	CHECK(bus_register(&b, UINT64_MAX, 2, &a.dev) == -EINVAL);
	/* a 4-byte access at 0x71 runs past the 0x70 device: unclaimed */
	CHECK(!bus_access(&b, 0x71, data, 4, true));
	CHECK(!bus_access(&b, 0x72, data, 2, true));
	CHECK_EQ_U64(a.writes, 0);
}

UNIT_TEST(bus_lookup_finds_every_range_among_many)
{
	struct bus b = { 0 };
	struct probe p[BUS_MAX_RANGES];
	uint8_t data[1];
	unsigned int i;

	/* registered in descending order, so the sorted insert is exercised */
	for (i = 0; i < BUS_MAX_RANGES; i++) {
		device_init(&p[i].dev, &probe_ops, NULL);
		CHECK(bus_register(&b, 0x1000 - i * 0x10, 4, &p[i].dev) == 0);
	}
	CHECK(bus_register(&b, 0x5000, 1, &p[0].dev) == -ENOSPC);
	for (i = 0; i < BUS_MAX_RANGES; i++) {
		p[i].last_addr = 99;
		CHECK(bus_access(&b, 0x1000 - i * 0x10 + 3, data, 1, false));
		CHECK_EQ_U64(p[i].last_addr, 3);
		CHECK(!bus_access(&b, 0x1000 - i * 0x10 + 4, data, 1, false));
	}
}
