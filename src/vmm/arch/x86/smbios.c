/* SMBIOS tables; see smbios.h.  Structures are written field by field at
 * the offsets of DSP0134 3.x (section numbers below), like acpi.c, so each
 * can be checked against the spec. */
#include <errno.h>
#include <string.h>

#include "smbios.h"

/* Entry points (5.2.1, 5.2.2). */
#define EP3_LEN			0x18
#define EP2_LEN			0x1F
#define EP2_INTERMEDIATE	0x10	/* "_DMI_" */
#define EP2_INTERMEDIATE_LEN	0x0F

/* Structure lengths (the formatted area), for the versions we claim. */
#define T0_LEN		0x18	/* 2.4+ */
#define T1_LEN		0x1B	/* 2.4+ */
#define T2_LEN		0x0F	/* no contained handles */
#define T3_LEN		0x16	/* 2.7+, no contained elements: 0x15 + 0 + SKU */
#define T11_LEN		0x05
#define T32_LEN		0x0B
#define T127_LEN	0x04

#define HANDLE(type)	((uint16_t)((type) << 8))

struct out {
	uint8_t *buf;
	uint64_t size;
	uint64_t off;		/* next free byte */
	unsigned int count;	/* structures written */
	uint64_t largest;	/* the largest structure, strings included */
	int err;
};

static void put_le(uint8_t *p, uint64_t v, unsigned int n)
{
	while (n--) {
		*p++ = v & 0xff;
		v >>= 8;
	}
}

static uint8_t checksum(const uint8_t *p, unsigned int len)
{
	uint8_t s = 0;

	while (len--)
		s += *p++;
	return (uint8_t)-s;
}

/* One structure being written: its formatted area and string set. */
struct sstruct {
	uint8_t *p;		/* start of the structure */
	uint64_t start;
	unsigned int nstrings;
};

static struct sstruct begin(struct out *o, uint8_t type, uint8_t len)
{
	struct sstruct s = { NULL, o->off, 0 };

	if (o->err || len > o->size - o->off) {
		o->err = -ENOSPC;
		return s;
	}
	s.p = o->buf + o->off;
	memset(s.p, 0, len);
	s.p[0] = type;
	s.p[1] = len;
	put_le(s.p + 2, HANDLE(type), 2);
	o->off += len;
	return s;
}

/* Appends STR to the structure's string set and stores its number at
 * field OFFSET; no string (NULL) leaves the field 0, "none". */
static void string(struct out *o, struct sstruct *s, unsigned int offset, const char *str)
{
	size_t len;

	if (o->err || !str || !*str)
		return;
	len = strlen(str) + 1;
	if (len > o->size - o->off) {
		o->err = -ENOSPC;
		return;
	}
	memcpy(o->buf + o->off, str, len);
	o->off += len;
	s->p[offset] = ++s->nstrings;
}

/* The string set ends with one more NUL; with no strings, two (6.1.3). */
static void end(struct out *o, struct sstruct *s)
{
	unsigned int nuls = s->nstrings ? 1 : 2;

	if (o->err)
		return;
	if (nuls > o->size - o->off) {
		o->err = -ENOSPC;
		return;
	}
	memset(o->buf + o->off, 0, nuls);
	o->off += nuls;
	o->count++;
	if (o->off - s->start > o->largest)
		o->largest = o->off - s->start;
}

static const char *field(const struct smbios_config *sm, int group, int f, const char *def)
{
	const char *v = sm->fields[group][f];

	return v ? v : def;
}

/* 7.1: BIOS information. */
static void type0(struct out *o, const struct smbios_config *sm)
{
	struct sstruct s = begin(o, 0, T0_LEN);

	if (o->err)
		return;
	string(o, &s, 0x04, field(sm, SMBIOS_BIOS, SMBIOS_BIOS_VENDOR, SMBIOS_DEFAULT_VENDOR));
	string(o, &s, 0x05, field(sm, SMBIOS_BIOS, SMBIOS_BIOS_VERSION, PACKAGE_VERSION));
	put_le(s.p + 0x06, 0xF000, 2);	/* "starting segment": the tables' 64 KiB window */
	string(o, &s, 0x08, field(sm, SMBIOS_BIOS, SMBIOS_BIOS_DATE, NULL));
	s.p[0x09] = 0;			/* ROM size: 64 KiB */
	put_le(s.p + 0x0A, 1u << 3, 8);	/* characteristics not supported */
	s.p[0x13] = 1u << 4;		/* extension byte 2: a virtual machine */
	if (sm->fields[SMBIOS_BIOS][SMBIOS_BIOS_RELEASE]) {
		s.p[0x14] = sm->bios_release[0];
		s.p[0x15] = sm->bios_release[1];
	} else {
		s.p[0x14] = s.p[0x15] = 0xFF;	/* not supported */
	}
	s.p[0x16] = s.p[0x17] = 0xFF;	/* no embedded controller */
	end(o, &s);
}

/* 7.2: system information.  The UUID's first three fields are stored
 * little-endian (7.2.1, since 2.6). */
static void type1(struct out *o, const struct smbios_config *sm)
{
	struct sstruct s = begin(o, 1, T1_LEN);
	const uint8_t *u = sm->uuid;

	if (o->err)
		return;
	string(o, &s, 0x04, field(sm, SMBIOS_SYSTEM, SMBIOS_SYS_MANUFACTURER, SMBIOS_DEFAULT_VENDOR));
	string(o, &s, 0x05, field(sm, SMBIOS_SYSTEM, SMBIOS_SYS_PRODUCT, SMBIOS_DEFAULT_PRODUCT));
	string(o, &s, 0x06, field(sm, SMBIOS_SYSTEM, SMBIOS_SYS_VERSION, NULL));
	string(o, &s, 0x07, field(sm, SMBIOS_SYSTEM, SMBIOS_SYS_SERIAL, NULL));
	if (sm->has_uuid) {
		uint8_t *d = s.p + 0x08;

		d[0] = u[3]; d[1] = u[2]; d[2] = u[1]; d[3] = u[0];
		d[4] = u[5]; d[5] = u[4];
		d[6] = u[7]; d[7] = u[6];
		memcpy(d + 8, u + 8, 8);
	}				/* else all zero: no UUID */
	s.p[0x18] = 0x06;		/* wake-up type: power switch */
	string(o, &s, 0x19, field(sm, SMBIOS_SYSTEM, SMBIOS_SYS_SKU, NULL));
	string(o, &s, 0x1A, field(sm, SMBIOS_SYSTEM, SMBIOS_SYS_FAMILY, NULL));
	end(o, &s);
}

static bool group_given(const struct smbios_config *sm, int group)
{
	for (int f = 0; f < SMBIOS_MAX_FIELDS; f++)
		if (sm->fields[group][f])
			return true;
	return false;
}

/* 7.3: baseboard information, only when one was described. */
static void type2(struct out *o, const struct smbios_config *sm)
{
	struct sstruct s;

	if (!group_given(sm, SMBIOS_BASEBOARD))
		return;
	s = begin(o, 2, T2_LEN);
	if (o->err)
		return;
	string(o, &s, 0x04, field(sm, SMBIOS_BASEBOARD, SMBIOS_BOARD_MANUFACTURER, NULL));
	string(o, &s, 0x05, field(sm, SMBIOS_BASEBOARD, SMBIOS_BOARD_PRODUCT, NULL));
	string(o, &s, 0x06, field(sm, SMBIOS_BASEBOARD, SMBIOS_BOARD_VERSION, NULL));
	string(o, &s, 0x07, field(sm, SMBIOS_BASEBOARD, SMBIOS_BOARD_SERIAL, NULL));
	string(o, &s, 0x08, field(sm, SMBIOS_BASEBOARD, SMBIOS_BOARD_ASSET, NULL));
	s.p[0x09] = 0x01;		/* feature flags: a hosting board */
	string(o, &s, 0x0A, field(sm, SMBIOS_BASEBOARD, SMBIOS_BOARD_LOCATION, NULL));
	put_le(s.p + 0x0B, HANDLE(3), 2);	/* in the chassis below */
	s.p[0x0D] = 0x0A;		/* board type: motherboard */
	s.p[0x0E] = 0;			/* no contained objects */
	end(o, &s);
}

/* 7.4: system enclosure, always (a required structure, 6.2). */
static void type3(struct out *o, const struct smbios_config *sm)
{
	struct sstruct s = begin(o, 3, T3_LEN);

	if (o->err)
		return;
	string(o, &s, 0x04, field(sm, SMBIOS_CHASSIS, SMBIOS_CHASSIS_MANUFACTURER, SMBIOS_DEFAULT_VENDOR));
	s.p[0x05] = 0x01;		/* type: other */
	string(o, &s, 0x06, field(sm, SMBIOS_CHASSIS, SMBIOS_CHASSIS_VERSION, NULL));
	string(o, &s, 0x07, field(sm, SMBIOS_CHASSIS, SMBIOS_CHASSIS_SERIAL, NULL));
	string(o, &s, 0x08, field(sm, SMBIOS_CHASSIS, SMBIOS_CHASSIS_ASSET, NULL));
	s.p[0x09] = s.p[0x0A] = s.p[0x0B] = 0x03;	/* boot-up, power, thermal: safe */
	s.p[0x0C] = 0x02;		/* security status: unknown */
	string(o, &s, 0x15, field(sm, SMBIOS_CHASSIS, SMBIOS_CHASSIS_SKU, NULL));
	end(o, &s);
}

/* 7.12: OEM strings, only when given. */
static void type11(struct out *o, const struct smbios_config *sm)
{
	struct sstruct s;

	if (!sm->noem_strings)
		return;
	s = begin(o, 11, T11_LEN);
	if (o->err)
		return;
	for (unsigned int i = 0; i < sm->noem_strings; i++)
		string(o, &s, 0x04, sm->oem_strings[i]);	/* the count ends up in 0x04 */
	end(o, &s);
}

/* 7.33: system boot information: no errors. */
static void type32(struct out *o)
{
	struct sstruct s = begin(o, 32, T32_LEN);

	end(o, &s);
}

/* 7.46: end of table. */
static void type127(struct out *o)
{
	struct sstruct s = begin(o, 127, T127_LEN);

	end(o, &s);
}

int64_t smbios_build(const struct smbios_config *sm, void *buf, uint64_t base, uint64_t size)
{
	struct out o = { buf, size, SMBIOS_TABLE_OFF, 0, 0, 0 };
	uint64_t table_len;
	uint8_t *ep;

	if (base + size > 0x100000000ULL || base % 16)
		return -EINVAL;
	if (size < SMBIOS_TABLE_OFF)
		return -ENOSPC;
	type0(&o, sm);
	type1(&o, sm);
	type2(&o, sm);
	type3(&o, sm);
	type11(&o, sm);
	type32(&o);
	type127(&o);
	if (o.err)
		return o.err;
	table_len = o.off - SMBIOS_TABLE_OFF;
	if (table_len > 0xFFFF)		/* the 2.x entry point's field is 16 bits */
		return -ENOSPC;

	ep = o.buf + SMBIOS3_EP_OFF;
	memset(ep, 0, SMBIOS_TABLE_OFF);
	memcpy(ep, "_SM3_", 5);
	ep[0x06] = EP3_LEN;
	ep[0x07] = 3;			/* SMBIOS 3.0 */
	ep[0x08] = 0;
	ep[0x09] = 0;			/* docrev */
	ep[0x0A] = 0x01;		/* entry point revision: 3.0 */
	put_le(ep + 0x0C, table_len, 4);	/* maximum size */
	put_le(ep + 0x10, base + SMBIOS_TABLE_OFF, 8);
	ep[0x05] = checksum(ep, EP3_LEN);

	ep = o.buf + SMBIOS2_EP_OFF;
	memcpy(ep, "_SM_", 4);
	ep[0x05] = EP2_LEN;
	ep[0x06] = 2;
	ep[0x07] = 8;			/* SMBIOS 2.8 */
	put_le(ep + 0x08, o.largest, 2);
	ep[0x0A] = 0;			/* entry point revision: 2.1 format */
	memcpy(ep + EP2_INTERMEDIATE, "_DMI_", 5);
	put_le(ep + 0x16, table_len, 2);
	put_le(ep + 0x18, base + SMBIOS_TABLE_OFF, 4);
	put_le(ep + 0x1C, o.count, 2);
	ep[0x1E] = 0x28;		/* BCD revision 2.8 */
	ep[0x15] = checksum(ep + EP2_INTERMEDIATE, EP2_INTERMEDIATE_LEN);
	ep[0x04] = checksum(ep, EP2_LEN);
	return (int64_t)o.off;
}
