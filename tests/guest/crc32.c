// SPDX-License-Identifier: MIT
/* CRC-32 (IEEE 802.3, reflected, poly 0xedb88320), as zlib.crc32. */
#include "guest.h"

static u32 table[256];
static bool table_ready;

static void make_table(void)
{
	for (u32 i = 0; i < 256; i++) {
		u32 c = i;

		for (int k = 0; k < 8; k++)
			c = (c & 1) ? 0xedb88320 ^ (c >> 1) : c >> 1;
		table[i] = c;
	}
	table_ready = true;
}

/* Start with crc = 0; feed the result back in to continue. */
u32 crc32(u32 crc, const void *buf, size_t len)
{
	const u8 *p = buf;

	if (!table_ready)
		make_table();
	crc = ~crc;
	while (len--)
		crc = table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
	return ~crc;
}
