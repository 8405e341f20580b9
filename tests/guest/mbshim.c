// SPDX-License-Identifier: MIT
/*
 * Test loader (see mbshim.S): builds a zero page from the Multiboot
 * information like a 32/64-bit boot-protocol loader would, copies the
 * bzImage's protected-mode part to 0x100000 and enters it.  Runs at CPL0,
 * emulated on KVM-PVM: string instructions for the bulk copies.
 *
 * QEMU usage:
 *   -kernel mbshim.elf -initrd "kvmm-testguest.bzImage [entry=64],INITRD"
 *   -append "guest command line"
 */
typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;

#define MB_BOOT_MAGIC	0x2badb002
#define MBI_CMDLINE	(1 << 2)
#define MBI_MODS	(1 << 3)
#define MBI_MMAP	(1 << 6)

#define ZERO_PAGE	0x7000
#define PML4		0x9000		/* + PDPT, 4 PDs: up to 0xefff */
#define CMDLINE		0x20000
#define CMDLINE_MAX	2048
#define KERNEL		0x100000

struct mb_info {
	u32 flags, mem_lower, mem_upper, boot_device, cmdline;
	u32 mods_count, mods_addr;
	u32 syms[4];
	u32 mmap_length, mmap_addr;
};

struct mb_mod {
	u32 start, end, string, reserved;
};

void shim_main(u32 magic, struct mb_info *mbi);
void shim_enter32(u32 zero_page, u32 entry) __attribute__((noreturn));
void shim_enter64(u32 zero_page, u32 entry, u32 pml4) __attribute__((noreturn));

static void outb(u16 port, u8 v)
{
	asm volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}

static void die(const char *msg)
{
	for (const char *p = "mbshim: "; *p; p++)
		outb(0x3f8, *p);
	for (; *msg; msg++)
		outb(0x3f8, *msg);
	outb(0x3f8, '\r');
	outb(0x3f8, '\n');
	for (;;)
		asm volatile("cli; hlt");
}

static void copy(u32 dst, u32 src, u32 n)
{
	asm volatile("rep movsb" : "+D"(dst), "+S"(src), "+c"(n) : : "memory");
}

static void zero(u32 dst, u32 n)
{
	asm volatile("rep stosb" : "+D"(dst), "+c"(n) : "a"(0) : "memory");
}

static void put32(u32 addr, u32 v)
{
	*(volatile u32 *)addr = v;
}

static void put64(u32 addr, u64 v)
{
	*(volatile u64 *)addr = v;
}

static const char *has_word(const char *s, const char *w)
{
	for (; *s; s++) {
		const char *a = s, *b = w;

		while (*b && *a == *b)
			a++, b++;
		if (!*b)
			return s;
	}
	return 0;
}

static void build_page_tables(void)
{
	zero(PML4, 0x2000);
	put64(PML4, (PML4 + 0x1000) | 3);
	for (u32 i = 0; i < 4; i++)
		put64(PML4 + 0x1000 + 8 * i, (PML4 + 0x2000 + 0x1000 * i) | 3);
	for (u32 i = 0; i < 2048; i++)
		put64(PML4 + 0x2000 + 8 * i, ((u64)i << 21) | 0x83);
}

void shim_main(u32 magic, struct mb_info *mbi)
{
	struct mb_mod *mods;
	const u8 *k;
	const char *cl = "";
	u32 klen, setup, hdr_end, n = 0, len = 0;

	if (magic != MB_BOOT_MAGIC)
		die("not started by a Multiboot loader");
	if (!(mbi->flags & MBI_MODS) || !mbi->mods_count)
		die("no module: pass the bzImage with -initrd");
	mods = (struct mb_mod *)mbi->mods_addr;
	k = (const u8 *)mods[0].start;
	klen = mods[0].end - mods[0].start;
	if (klen < 0x1000 || *(const u32 *)(k + 0x202) != 0x53726448)
		die("first module is not a bzImage");

	setup = ((k[0x1f1] ? k[0x1f1] : 4) + 1) * 512;
	copy(KERNEL, (u32)k + setup, klen - setup);

	zero(ZERO_PAGE, 0x1000);
	hdr_end = 0x202 + k[0x201];
	copy(ZERO_PAGE + 0x1f1, (u32)k + 0x1f1, hdr_end - 0x1f1);
	*(u8 *)(ZERO_PAGE + 0x210) = 0xff;	/* type_of_loader: undefined */

	/* QEMU passes "<kernel path> <-append>": drop the first word. */
	if (mbi->flags & MBI_CMDLINE) {
		cl = (const char *)mbi->cmdline;
		while (*cl && *cl != ' ')
			cl++;
		while (*cl == ' ')
			cl++;
	}
	while (cl[len] && len < CMDLINE_MAX - 1)
		len++;
	copy(CMDLINE, (u32)cl, len);
	*(u8 *)(CMDLINE + len) = 0;
	put32(ZERO_PAGE + 0x228, CMDLINE);

	if (mbi->mods_count > 1) {
		put32(ZERO_PAGE + 0x218, mods[1].start);
		put32(ZERO_PAGE + 0x21c, mods[1].end - mods[1].start);
	}

	if (mbi->flags & MBI_MMAP) {
		u32 p = mbi->mmap_addr, end = p + mbi->mmap_length;

		for (; p < end && n < 128; p += *(u32 *)p + 4, n++) {
			u32 e = ZERO_PAGE + 0x2d0 + 20 * n;

			copy(e, p + 4, 20);	/* base, length, type */
		}
	}
	*(u8 *)(ZERO_PAGE + 0x1e8) = n;

	if (mods[0].string && has_word((const char *)mods[0].string, "entry=64")) {
		build_page_tables();
		shim_enter64(ZERO_PAGE, KERNEL + 0x200, PML4);
	}
	shim_enter32(ZERO_PAGE, *(const u32 *)(k + 0x214));
}
