// SPDX-License-Identifier: MIT
/*
 * What firmware-ish tables and devices the guest finds, on request:
 *
 *  kvmmtest.smbios=1        scans 0xF0000-0xFFFFF for the SMBIOS entry
 *                           points as Linux's dmi_scan does (_SM3_ first,
 *                           then _SM_), checks them, walks the table and
 *                           reports the system (type 1) strings and UUID.
 *  kvmmtest.vmcoreinfo=ADDR does what Linux's qemu_fw_cfg driver does with
 *                           etc/vmcoreinfo: finds fw_cfg by its signature
 *                           at port 0x510, reads its ID and file directory,
 *                           and writes {ELF, 4096, ADDR} into the file by
 *                           DMA; reports each step.
 */
#include "guest.h"
#include "io.h"

#define SCAN_START	0xF0000UL
#define SCAN_END	0x100000UL

#define FW_CFG_SEL	0x510
#define FW_CFG_DATA	0x511
#define FW_CFG_DMA	0x514

static u8 sum(const u8 *p, u32 n)
{
	u8 s = 0;

	while (n--)
		s += *p++;
	return s;
}

static u32 le(const u8 *p, int n)
{
	u32 v = 0;

	while (n--)
		v = v << 8 | p[n];
	return v;
}

/* String number IDX of the structure at S (formatted length S[1]). */
static const char *smbios_string(const u8 *s, const u8 *end, u8 idx)
{
	const char *p = (const char *)s + s[1];

	if (!idx)
		return "";
	while (--idx && (const u8 *)p < end && *p)
		p += strlen(p) + 1;
	return (const u8 *)p < end && *p ? p : "(bad index)";
}

static void smbios_report(void)
{
	const u8 *ep = NULL, *t, *end;
	u64 addr = 0, len = 0;
	const char *anchor = "none";
	u32 n = 0;

	for (u64 a = SCAN_START; a < SCAN_END; a += 16) {
		const u8 *p = (const u8 *)a;

		if (!memcmp(p, "_SM3_", 5) && p[6] >= 0x18 && !sum(p, p[6])) {
			ep = p, anchor = "_SM3_";
			addr = le(p + 0x10, 4) | (u64)le(p + 0x14, 4) << 32;
			len = le(p + 0x0C, 4);
			break;
		}
	}
	for (u64 a = SCAN_START; !ep && a < SCAN_END; a += 16) {
		const u8 *p = (const u8 *)a;

		if (!memcmp(p, "_SM_", 4) && p[5] >= 0x1F && !sum(p, p[5]) &&
		    !memcmp(p + 0x10, "_DMI_", 5) && !sum(p + 0x10, 0x0F)) {
			ep = p, anchor = "_SM_";
			addr = le(p + 0x18, 4);
			len = le(p + 0x16, 2);
		}
	}
	if (!ep) {
		info("smbios anchor=none");
		return;
	}
	if (!mapped(addr, len) || len < 4) {
		fail("smbios", "table at 0x%lx (%lu bytes) is out of reach", addr, len);
		return;
	}
	t = (const u8 *)addr;
	end = t + len;
	while (t + 4 <= end && t[1] >= 4) {
		const u8 *next = t + t[1];

		/* the string set ends with two NULs */
		while (next + 1 < end && (next[0] || next[1]))
			next++;
		next += 2;
		n++;
		if (t[0] == 1 && t[1] >= 0x19) {
			const u8 *u = t + 8;

			info("smbios anchor=%s version=%u.%u manufacturer=\"%s\" product=\"%s\" "
			     "serial=\"%s\" family=\"%s\" "
			     "uuid=%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
			     anchor, ep[anchor[3] == '3' ? 7 : 6], ep[anchor[3] == '3' ? 8 : 7],
			     smbios_string(t, end, t[4]), smbios_string(t, end, t[5]),
			     smbios_string(t, end, t[7]), t[1] > 0x1A ? smbios_string(t, end, t[0x1A]) : "",
			     u[3], u[2], u[1], u[0], u[5], u[4], u[7], u[6],
			     u[8], u[9], u[10], u[11], u[12], u[13], u[14], u[15]);
		}
		if (t[0] == 127)
			break;
		t = next;
	}
	info("smbios_structures=%u", n);
}

static void fw_cfg_read(u16 key, void *buf, u32 len)
{
	outw(FW_CFG_SEL, key);
	for (u32 i = 0; i < len; i++)
		((u8 *)buf)[i] = inb(FW_CFG_DATA);
}

static u32 be32(const u8 *p)
{
	return (u32)p[0] << 24 | p[1] << 16 | p[2] << 8 | p[3];
}

static u32 bswap32(u32 v)
{
	return __builtin_bswap32(v);
}

/* One DMA access descriptor and the file's contents, in guest RAM (the
 * guest's addresses are physical). */
static volatile struct {
	u32 control, length;
	u64 address;
} dma __aligned(16);
static u8 note[16] __aligned(16);

static void vmcoreinfo_write(u64 paddr)
{
	u8 sig[4], id[4], count[4], entry[64];
	u16 select = 0;
	u32 n;

	fw_cfg_read(0x0000, sig, 4);
	if (memcmp(sig, "QEMU", 4)) {
		info("fw_cfg signature=none");
		return;
	}
	fw_cfg_read(0x0001, id, 4);
	fw_cfg_read(0x0019, count, 4);		/* then the entries follow */
	n = be32(count);
	for (u32 i = 0; i < n && i < 64; i++) {
		for (u32 j = 0; j < sizeof(entry); j++)
			entry[j] = inb(FW_CFG_DATA);
		if (!strcmp((const char *)entry + 8, "etc/vmcoreinfo"))
			select = entry[4] << 8 | entry[5];
	}
	info("fw_cfg signature=QEMU dma=%s files=%u vmcoreinfo=%s", id[0] & 2 ? "yes" : "no", n,
	     select ? "found" : "none");
	if (!select || !(id[0] & 2))
		return;
	/* { le16 host_format, le16 guest_format = ELF, le32 size, le64 paddr } */
	memset(note, 0, sizeof(note));
	note[2] = 1;
	note[5] = 0x10;				/* 4096 */
	for (int i = 0; i < 8; i++)
		note[8 + i] = paddr >> (8 * i);
	dma.control = bswap32((u32)select << 16 | 0x08 | 0x10);	/* SELECT | WRITE */
	dma.length = bswap32(sizeof(note));
	dma.address = __builtin_bswap64((u64)(uintptr_t)note);
	/* the device reads them: no store may stay behind the port write */
	asm volatile("" : : : "memory");
	outl(FW_CFG_DMA, bswap32((u64)(uintptr_t)&dma >> 32));
	outl(FW_CFG_DMA + 4, bswap32((u32)(uintptr_t)&dma));
	info("fw_cfg vmcoreinfo_write=%s", dma.control == 0 ? "ok" : "error");
}

void fwinfo_run(void)
{
	char opt[24];

	if (cmdline_option("kvmmtest.smbios", opt, sizeof(opt)))
		smbios_report();
	if (cmdline_option("kvmmtest.vmcoreinfo", opt, sizeof(opt)))
		vmcoreinfo_write(parse_u64(opt, NULL));
}
