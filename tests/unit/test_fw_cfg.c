/* Unit tests of the fw_cfg device (devices/fw_cfg.c) driven through its
 * port registers the way Linux's qemu_fw_cfg driver does: the signature
 * and ID through the data port, the file directory, the DMA interface
 * (reads, skips, the write of etc/vmcoreinfo), and hostile requests. */
#include <errno.h>
#include <stdint.h>

#include "unit.h"
#include "arch/x86/layout.h"
#include "device.h"
#include "devices/fw_cfg.h"
#include "log.h"
#include "memory.h"
#include "vm.h"

static struct vm_config cfg;
static struct vm vm;
static struct device *dev;

#define MEM	(64ULL << 20)
#define DESC	0x10000ULL	/* a DMA descriptor */
#define BUF	0x20000ULL	/* a DMA buffer */

static void setup(void)
{
	log_set_level(LOG_ERR + 0);
	memset(&vm, 0, sizeof(vm));
	memset(&cfg, 0, sizeof(cfg));
	cfg.vmcoreinfo = true;
	vm.cfg = &cfg;
	CHECK(guest_mem_init(&vm.mem, MEM, X86_MMIO_HOLE_START, X86_HIGH_RAM_START) == 0);
	dev = fw_cfg_create(&vm, X86_FW_CFG_PORT);
	CHECK(dev != NULL);
	vm.devices = dev;
}

static void teardown(void)
{
	dev->ops->destroy(dev);
	guest_mem_destroy(&vm.mem);
}

static void out16(uint16_t port, uint16_t v)
{
	uint8_t d[2] = { v & 0xff, v >> 8 };

	CHECK(bus_access(&vm.pio, port, d, 2, true));
}

static void out32be(uint16_t port, uint32_t v)
{
	uint8_t d[4] = { v >> 24, v >> 16, v >> 8, v };

	CHECK(bus_access(&vm.pio, port, d, 4, true));
}

static uint8_t in8(uint16_t port)
{
	uint8_t d = 0xEE;

	CHECK(bus_access(&vm.pio, port, &d, 1, false));
	return d;
}

/* The traditional interface: select, then read byte by byte. */
static void read_item(uint16_t key, uint8_t *buf, size_t len)
{
	out16(X86_FW_CFG_PORT + FW_CFG_PORT_SEL, key);
	for (size_t i = 0; i < len; i++)
		buf[i] = in8(X86_FW_CFG_PORT + FW_CFG_PORT_DATA);
}

static uint64_t be(const uint8_t *p, unsigned int n)
{
	uint64_t v = 0;

	for (unsigned int i = 0; i < n; i++)
		v = v << 8 | p[i];
	return v;
}

static void put_be(uint8_t *p, uint64_t v, unsigned int n)
{
	while (n--) {
		p[n] = v & 0xff;
		v >>= 8;
	}
}

/* One DMA request at DESC; returns the control word the device left. */
static uint32_t dma_at(uint64_t desc, uint32_t control, uint32_t len, uint64_t addr)
{
	uint8_t *d = guest_mem_ptr(&vm.mem, desc, 16);

	if (d) {
		put_be(d, control, 4);
		put_be(d + 4, len, 4);
		put_be(d + 8, addr, 8);
	}
	out32be(X86_FW_CFG_PORT + FW_CFG_PORT_DMA, desc >> 32);
	out32be(X86_FW_CFG_PORT + FW_CFG_PORT_DMA + 4, (uint32_t)desc);
	return d ? be(d, 4) : 0xFFFFFFFF;
}

static uint32_t dma(uint32_t control, uint32_t len, uint64_t addr)
{
	return dma_at(DESC, control, len, addr);
}

UNIT_TEST(signature_id_and_dma_port)
{
	uint8_t b[8];

	setup();
	read_item(FW_CFG_SIGNATURE, b, 4);
	CHECK(!memcmp(b, "QEMU", 4));
	read_item(FW_CFG_ID, b, 4);
	CHECK_EQ_U64(b[0], FW_CFG_VERSION | FW_CFG_VERSION_DMA);
	CHECK_EQ_U64(b[1] | b[2] | b[3], 0);
	/* past the end of an item, and an item that does not exist: zeros */
	read_item(FW_CFG_SIGNATURE, b, 6);
	CHECK_EQ_U64(b[4] | b[5], 0);
	read_item(0x1234, b, 4);
	CHECK_EQ_U64(b[0] | b[1] | b[2] | b[3], 0);
	/* the DMA port reads "QEMU CFG" */
	for (int i = 0; i < 8; i++)
		b[i] = in8(X86_FW_CFG_PORT + FW_CFG_PORT_DMA + i);
	CHECK(!memcmp(b, "QEMU CFG", 8));
	teardown();
}

UNIT_TEST(file_directory_names_etc_vmcoreinfo)
{
	uint8_t d[4 + 64];

	setup();
	read_item(FW_CFG_FILE_DIR, d, sizeof(d));
	CHECK_EQ_U64(be(d, 4), 1);
	CHECK_EQ_U64(be(d + 4, 4), FW_CFG_VMCOREINFO_SIZE);
	CHECK_EQ_U64(be(d + 8, 2), FW_CFG_FILE_FIRST);
	CHECK_STR((char *)d + 12, FW_CFG_VMCOREINFO_FILE);
	teardown();
}

/* What Linux's fw_cfg_write_vmcoreinfo() does, then the crash report's
 * view of it; a reset forgets it. */
UNIT_TEST(dma_write_of_vmcoreinfo)
{
	uint8_t *buf, *host;
	uint64_t paddr = 0;
	uint32_t size = 0;

	setup();
	/* the host's format first: host_format 1 (ELF) */
	CHECK_EQ_U64(dma(FW_CFG_FILE_FIRST << 16 | FW_CFG_DMA_SELECT | FW_CFG_DMA_READ, 16, BUF), 0);
	host = guest_mem_ptr(&vm.mem, BUF, 16);
	CHECK_EQ_U64(host[0], 1);
	CHECK_EQ_U64(host[1] | host[2] | host[3], 0);
	CHECK(!fw_cfg_vmcoreinfo(&vm, &paddr, &size));

	buf = guest_mem_ptr(&vm.mem, BUF, 16);
	memset(buf, 0, 16);
	buf[2] = FW_CFG_VMCOREINFO_ELF;		/* guest_format, le16 */
	buf[4] = 0x00; buf[5] = 0x10;		/* size 4096, le32 */
	buf[8] = 0x00; buf[9] = 0xa0; buf[10] = 0x5c; buf[11] = 0x03;	/* paddr 0x35ca000 */
	CHECK_EQ_U64(dma(FW_CFG_FILE_FIRST << 16 | FW_CFG_DMA_SELECT | FW_CFG_DMA_WRITE, 16, BUF), 0);
	CHECK(fw_cfg_vmcoreinfo(&vm, &paddr, &size));
	CHECK_EQ_U64(paddr, 0x35ca000);
	CHECK_EQ_U64(size, 4096);

	dev->ops->reset(dev);
	CHECK(!fw_cfg_vmcoreinfo(&vm, &paddr, &size));
	teardown();
}

UNIT_TEST(dma_read_skip_and_select)
{
	uint8_t *b;

	setup();
	b = guest_mem_ptr(&vm.mem, BUF, 8);
	memset(b, 0xAA, 8);
	/* read past the end: the rest is zeros */
	CHECK_EQ_U64(dma(FW_CFG_SIGNATURE << 16 | FW_CFG_DMA_SELECT | FW_CFG_DMA_READ, 8, BUF), 0);
	CHECK(!memcmp(b, "QEMU\0\0\0\0", 8));
	/* skip 2 in the directory, then read on from there: the count's low half */
	memset(b, 0xAA, 8);
	CHECK_EQ_U64(dma(FW_CFG_FILE_DIR << 16 | FW_CFG_DMA_SELECT | FW_CFG_DMA_SKIP, 2, 0), 0);
	CHECK_EQ_U64(dma(FW_CFG_DMA_READ, 2, BUF), 0);
	CHECK_EQ_U64(be(b, 2), 1);
	CHECK_EQ_U64(b[2], 0xAA);		/* nothing past the length */
	teardown();
}

UNIT_TEST(hostile_dma_requests_fail_cleanly)
{
	uint64_t paddr;
	uint32_t size;

	setup();
	/* buffers outside RAM, or running off its end */
	CHECK_EQ_U64(dma(FW_CFG_SIGNATURE << 16 | FW_CFG_DMA_SELECT | FW_CFG_DMA_READ, 4, MEM),
		     FW_CFG_DMA_ERROR);
	CHECK_EQ_U64(dma(FW_CFG_DMA_READ, 0x100, MEM - 0x80), FW_CFG_DMA_ERROR);
	CHECK_EQ_U64(dma(FW_CFG_DMA_READ, 0xFFFFFFFF, BUF), FW_CFG_DMA_ERROR);
	/* writes to read-only items, to nothing, past the file's end */
	CHECK_EQ_U64(dma(FW_CFG_SIGNATURE << 16 | FW_CFG_DMA_SELECT | FW_CFG_DMA_WRITE, 4, BUF),
		     FW_CFG_DMA_ERROR);
	CHECK_EQ_U64(dma(0x1234 << 16 | FW_CFG_DMA_SELECT | FW_CFG_DMA_WRITE, 4, BUF), FW_CFG_DMA_ERROR);
	CHECK_EQ_U64(dma(FW_CFG_FILE_FIRST << 16 | FW_CFG_DMA_SELECT | FW_CFG_DMA_WRITE, 17, BUF),
		     FW_CFG_DMA_ERROR);
	CHECK_EQ_U64(dma(FW_CFG_FILE_FIRST << 16 | FW_CFG_DMA_SELECT | FW_CFG_DMA_SKIP, 0xFFFFFFFF, 0), 0);
	CHECK_EQ_U64(dma(FW_CFG_DMA_WRITE, 1, BUF), FW_CFG_DMA_ERROR);
	/* a descriptor outside RAM: nothing to answer, nothing breaks */
	dma_at(MEM - 8, FW_CFG_DMA_READ, 4, BUF);
	dma_at(0x100000000ULL + MEM, FW_CFG_DMA_READ, 4, BUF);
	/* a note in a format kvmm does not know is not reported */
	uint8_t *b = guest_mem_ptr(&vm.mem, BUF, 16);
	memset(b, 0, 16);
	b[2] = 7;
	b[4] = 1;
	CHECK_EQ_U64(dma(FW_CFG_FILE_FIRST << 16 | FW_CFG_DMA_SELECT | FW_CFG_DMA_WRITE, 16, BUF), 0);
	CHECK(!fw_cfg_vmcoreinfo(&vm, &paddr, &size));
	/* the device still answers */
	read_item(FW_CFG_SIGNATURE, b, 4);
	CHECK(!memcmp(b, "QEMU", 4));
	teardown();
}

UNIT_TEST(save_and_load_keep_the_note)
{
	struct state_buf s = { 0 };
	uint8_t *b;
	uint64_t paddr;
	uint32_t size;

	setup();
	b = guest_mem_ptr(&vm.mem, BUF, 16);
	memset(b, 0, 16);
	b[2] = 1;
	b[4] = 0x40;
	b[8] = 0x12;
	CHECK_EQ_U64(dma(FW_CFG_FILE_FIRST << 16 | FW_CFG_DMA_SELECT | FW_CFG_DMA_WRITE, 16, BUF), 0);
	CHECK_EQ_U64(dev->ops->save(dev, &s), 0);
	dev->ops->reset(dev);
	CHECK(!fw_cfg_vmcoreinfo(&vm, &paddr, &size));
	CHECK_EQ_U64(dev->ops->load(dev, s.data, s.len), 0);
	CHECK(fw_cfg_vmcoreinfo(&vm, &paddr, &size));
	CHECK_EQ_U64(paddr, 0x12);
	CHECK_EQ_U64(size, 0x40);
	CHECK_EQ_U64(dev->ops->load(dev, s.data, s.len - 1), (uint64_t)-EINVAL);
	state_buf_free(&s);
	teardown();
}
