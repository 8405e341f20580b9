/* MC146818 CMOS real-time clock at ports 0x70/0x71: the guest's wall
 * clock at boot.  Time is the host's UTC plus an offset the guest sets by
 * writing the clock; reads compute the time, so "update in progress" is
 * never seen.  No alarm, periodic or update interrupts. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "devices.h"
#include "device.h"
#include "vm.h"

#define RTC_SEC		0x00
#define RTC_MIN		0x02
#define RTC_HOUR	0x04
#define RTC_WDAY	0x06
#define RTC_MDAY	0x07
#define RTC_MON		0x08
#define RTC_YEAR	0x09
#define RTC_REG_A	0x0A
#define RTC_REG_B	0x0B
#define RTC_REG_C	0x0C
#define RTC_REG_D	0x0D
#define RTC_CENTURY	0x32

#define REG_B_SET	0x80	/* guest is setting the clock */
#define REG_B_BINARY	0x04	/* else BCD */
#define REG_B_24H	0x02
#define REG_D_VRT	0x80	/* RAM and time valid */

struct rtc_state {
	uint32_t version;
	uint8_t index;
	uint8_t cmos[128];
	int64_t offset;		/* guest time - host time, seconds */
};

struct rtc {
	struct device dev;
	struct rtc_state s;
};

#define RTC_STATE_VERSION 1

static uint8_t to_reg(struct rtc *r, int v)
{
	if (r->s.cmos[RTC_REG_B] & REG_B_BINARY)
		return v;
	return ((v / 10) << 4) | (v % 10);
}

static int from_reg(struct rtc *r, uint8_t v)
{
	if (r->s.cmos[RTC_REG_B] & REG_B_BINARY)
		return v;
	return (v >> 4) * 10 + (v & 0x0f);
}

static void rtc_fill_time(struct rtc *r)
{
	time_t t = time(NULL) + r->s.offset;
	struct tm tm;
	int hour;

	gmtime_r(&t, &tm);
	hour = tm.tm_hour;
	r->s.cmos[RTC_SEC] = to_reg(r, tm.tm_sec);
	r->s.cmos[RTC_MIN] = to_reg(r, tm.tm_min);
	if (r->s.cmos[RTC_REG_B] & REG_B_24H) {
		r->s.cmos[RTC_HOUR] = to_reg(r, hour);
	} else {
		/* 12-hour mode: 1..12, bit 7 = PM */
		r->s.cmos[RTC_HOUR] = to_reg(r, hour % 12 ? hour % 12 : 12) |
				      (hour >= 12 ? 0x80 : 0);
	}
	r->s.cmos[RTC_WDAY] = to_reg(r, tm.tm_wday + 1);
	r->s.cmos[RTC_MDAY] = to_reg(r, tm.tm_mday);
	r->s.cmos[RTC_MON] = to_reg(r, tm.tm_mon + 1);
	r->s.cmos[RTC_YEAR] = to_reg(r, tm.tm_year % 100);
	r->s.cmos[RTC_CENTURY] = to_reg(r, (tm.tm_year + 1900) / 100);
}

/* The guest wrote the clock: remember how far it is from the host's. */
static void rtc_take_time(struct rtc *r)
{
	struct tm tm = { 0 };
	uint8_t h = r->s.cmos[RTC_HOUR];
	time_t t;

	tm.tm_sec = from_reg(r, r->s.cmos[RTC_SEC]);
	tm.tm_min = from_reg(r, r->s.cmos[RTC_MIN]);
	if (r->s.cmos[RTC_REG_B] & REG_B_24H)
		tm.tm_hour = from_reg(r, h);
	else
		tm.tm_hour = from_reg(r, h & 0x7f) % 12 + ((h & 0x80) ? 12 : 0);
	tm.tm_mday = from_reg(r, r->s.cmos[RTC_MDAY]);
	tm.tm_mon = from_reg(r, r->s.cmos[RTC_MON]) - 1;
	tm.tm_year = from_reg(r, r->s.cmos[RTC_CENTURY]) * 100 +
		     from_reg(r, r->s.cmos[RTC_YEAR]) - 1900;
	/* GUEST: nonsense dates make timegm return -1 or wrap; the offset
	 * is then just a number, harmless to the host. */
	t = timegm(&tm);
	if (t != (time_t)-1)
		r->s.offset = (int64_t)t - (int64_t)time(NULL);
}

static bool rtc_is_time_reg(uint8_t i)
{
	return i <= RTC_YEAR || i == RTC_CENTURY;
}

static void rtc_read(struct device *dev, uint64_t addr, uint8_t *data, unsigned int len)
{
	struct rtc *r = (struct rtc *)dev;
	uint8_t i = r->s.index;

	if (addr == 0) {
		data[0] = 0xff;		/* the index port is write-only */
		return;
	}
	if (rtc_is_time_reg(i) && !(r->s.cmos[RTC_REG_B] & REG_B_SET))
		rtc_fill_time(r);
	data[0] = r->s.cmos[i];
	if (i == RTC_REG_C)
		r->s.cmos[RTC_REG_C] = 0;	/* read to clear */
}

static void rtc_write(struct device *dev, uint64_t addr, const uint8_t *data, unsigned int len)
{
	struct rtc *r = (struct rtc *)dev;
	uint8_t i = r->s.index, v = data[0];

	if (addr == 0) {
		/* GUEST: bit 7 is the NMI mask, not part of the index. */
		r->s.index = v & 0x7f;
		return;
	}
	switch (i) {
	case RTC_REG_A:
		r->s.cmos[i] = v & 0x7f;	/* UIP is read-only */
		return;
	case RTC_REG_B:
		/* Refresh the time registers in the old format first, so a
		 * format change converts rather than reinterprets them. */
		if (!(r->s.cmos[i] & REG_B_SET))
			rtc_fill_time(r);
		if ((r->s.cmos[i] & REG_B_SET) && !(v & REG_B_SET)) {
			r->s.cmos[i] = v;
			rtc_take_time(r);
			return;
		}
		r->s.cmos[i] = v;
		return;
	case RTC_REG_C:
	case RTC_REG_D:
		return;			/* read-only */
	}
	r->s.cmos[i] = v;
	if (rtc_is_time_reg(i) && !(r->s.cmos[RTC_REG_B] & REG_B_SET))
		rtc_take_time(r);
}

static void rtc_reset(struct device *dev)
{
	struct rtc *r = (struct rtc *)dev;
	int64_t offset = r->s.offset;	/* the clock survives a reset */

	memset(&r->s, 0, sizeof(r->s));
	r->s.version = RTC_STATE_VERSION;
	r->s.offset = offset;
	r->s.cmos[RTC_REG_A] = 0x26;	/* 32.768 kHz base, 1024 Hz rate */
	r->s.cmos[RTC_REG_B] = REG_B_24H;
	r->s.cmos[RTC_REG_D] = REG_D_VRT;
}

static int rtc_save(struct device *dev, struct state_buf *out)
{
	return state_put(out, &((struct rtc *)dev)->s, sizeof(struct rtc_state));
}

static int rtc_load(struct device *dev, const uint8_t *data, size_t len)
{
	struct rtc_state s;

	if (len != sizeof(s))
		return -EINVAL;
	memcpy(&s, data, sizeof(s));
	if (s.version != RTC_STATE_VERSION || s.index >= sizeof(s.cmos))
		return -EINVAL;
	((struct rtc *)dev)->s = s;
	return 0;
}

static void rtc_destroy(struct device *dev)
{
	free(dev);
}

static const struct device_ops rtc_ops = {
	.name = "rtc",
	.read = rtc_read,
	.write = rtc_write,
	.reset = rtc_reset,
	.save = rtc_save,
	.load = rtc_load,
	.destroy = rtc_destroy,
};

struct device *rtc_create(struct vm *vm, uint16_t port)
{
	struct rtc *r = calloc(1, sizeof(*r));

	if (!r)
		return NULL;
	device_init(&r->dev, &rtc_ops, vm);
	rtc_reset(&r->dev);
	if (bus_register(&vm->pio, port, 2, &r->dev)) {
		free(r);
		return NULL;
	}
	return &r->dev;
}
