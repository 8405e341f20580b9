/* fw_cfg: see fw_cfg.h.  Items are byte arrays addressed by a 16-bit key;
 * the selected item is read (or written) sequentially from offset 0,
 * through the data port or DMA.  Everything a DMA request names (its
 * descriptor, its buffer) is the guest's and checked before use. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "devices.h"
#include "device.h"
#include "fw_cfg.h"
#include "log.h"
#include "memory.h"
#include "vm.h"

#define FILE_NAME_LEN	56
#define DIR_ENTRY_LEN	64	/* be32 size, be16 select, be16 reserved, name[56] */
#define MAX_ITEM	4096	/* the largest item kvmm has (the directory is 68 bytes) */

struct item {
	uint32_t len;
	uint8_t data[MAX_ITEM];
	bool writable;
};

enum { ITEM_SIGNATURE, ITEM_ID, ITEM_DIR, ITEM_VMCOREINFO, NITEMS };

struct fw_cfg {
	struct device dev;
	uint16_t selector;
	uint32_t offset;		/* in the selected item */
	uint32_t dma_high;		/* DMA address, high half written first */
	struct item items[NITEMS];
	/* The guest's note, for the crash report. */
	bool note_given;
	uint64_t note_paddr;
	uint32_t note_size;
};

static void put_be(uint8_t *p, uint64_t v, unsigned int n)
{
	while (n--) {
		p[n] = v & 0xff;
		v >>= 8;
	}
}

static uint64_t get_be(const uint8_t *p, unsigned int n)
{
	uint64_t v = 0;

	for (unsigned int i = 0; i < n; i++)
		v = v << 8 | p[i];
	return v;
}

static uint64_t get_le(const uint8_t *p, unsigned int n)
{
	uint64_t v = 0;

	while (n--)
		v = v << 8 | p[n];
	return v;
}

/* The item a key names, or NULL (reads as nothing: zeros, writes fail). */
static struct item *item_of(struct fw_cfg *f, uint16_t key)
{
	switch (key & FW_CFG_ENTRY_MASK) {
	case FW_CFG_SIGNATURE:
		return &f->items[ITEM_SIGNATURE];
	case FW_CFG_ID:
		return &f->items[ITEM_ID];
	case FW_CFG_FILE_DIR:
		return &f->items[ITEM_DIR];
	case FW_CFG_FILE_FIRST:
		return &f->items[ITEM_VMCOREINFO];
	}
	return NULL;
}

static void vmcoreinfo_reset(struct fw_cfg *f)
{
	struct item *it = &f->items[ITEM_VMCOREINFO];

	/* host_format: the formats kvmm reads, as QEMU announces them */
	memset(it->data, 0, FW_CFG_VMCOREINFO_SIZE);
	it->data[0] = FW_CFG_VMCOREINFO_ELF;
	f->note_given = false;
}

/* GUEST: the guest wrote etc/vmcoreinfo; keep it only if it is a note
 * kvmm can describe (the ELF format, a non-zero size). */
static void vmcoreinfo_written(struct fw_cfg *f)
{
	const uint8_t *d = f->items[ITEM_VMCOREINFO].data;
	uint16_t format = get_le(d + 2, 2);
	uint32_t size = get_le(d + 4, 4);
	uint64_t paddr = get_le(d + 8, 8);

	if (format != FW_CFG_VMCOREINFO_ELF || !size || paddr + size < paddr) {
		f->note_given = false;
		return;
	}
	/* GUEST: said once per value, so rewriting it cannot flood the log. */
	if (f->note_given && f->note_paddr == paddr && f->note_size == size)
		return;
	f->note_given = true;
	f->note_paddr = paddr;
	f->note_size = size;
	pr_info("guest VMCOREINFO note at 0x%" PRIx64 ", %" PRIu32 " bytes", paddr, size);
}

static void select_item(struct fw_cfg *f, uint16_t key)
{
	f->selector = key;
	f->offset = 0;
}

static uint8_t data_read(struct fw_cfg *f)
{
	struct item *it = item_of(f, f->selector);

	if (!it || f->offset >= it->len)
		return 0;
	return it->data[f->offset++];
}

/* One DMA request (QEMU's FWCfgDmaAccess: be32 control, be32 length,
 * be64 address) at guest address ADDR; its control word is written back,
 * 0 on success or FW_CFG_DMA_ERROR. */
static void dma_run(struct fw_cfg *f, uint64_t addr)
{
	struct guest_memory *mem = &f->dev.vm->mem;
	uint8_t *desc = guest_mem_ptr(mem, addr, 16);
	uint32_t control, len;
	uint64_t buf;
	struct item *it;
	bool error = false;

	/* GUEST: a descriptor outside RAM cannot even be answered. */
	if (!desc)
		return;
	control = get_be(desc, 4);
	len = get_be(desc + 4, 4);
	buf = get_be(desc + 8, 8);
	if (control & FW_CFG_DMA_SELECT)
		select_item(f, control >> 16);
	it = item_of(f, f->selector);
	if (control & FW_CFG_DMA_READ) {
		/* GUEST: the buffer must be guest RAM, whole. */
		uint8_t *dst = len ? guest_mem_ptr(mem, buf, len) : NULL;

		if (len && !dst) {
			error = true;
		} else if (len) {
			uint32_t have = it && f->offset < it->len ? it->len - f->offset : 0;
			uint32_t n = len < have ? len : have;

			if (n)
				memcpy(dst, it->data + f->offset, n);
			memset(dst + n, 0, len - n);	/* past the end reads as zeros */
			guest_mem_mark(mem, dst, len);	/* for a live migration */
			f->offset += n;
		}
	} else if (control & FW_CFG_DMA_WRITE) {
		const uint8_t *src = len ? guest_mem_ptr(mem, buf, len) : NULL;

		/* GUEST: only writable items, within their size. */
		if (!it || !it->writable || (len && !src) || f->offset > it->len ||
		    len > it->len - f->offset) {
			error = true;
		} else if (len) {
			memcpy(it->data + f->offset, src, len);
			f->offset += len;
			if (it == &f->items[ITEM_VMCOREINFO])
				vmcoreinfo_written(f);
		}
	} else if (control & FW_CFG_DMA_SKIP) {
		f->offset = (uint64_t)f->offset + len > UINT32_MAX ? UINT32_MAX : f->offset + len;
	}
	put_be(desc, error ? FW_CFG_DMA_ERROR : 0, 4);
	guest_mem_mark(mem, desc, 4);
}

static void fw_cfg_read(struct device *dev, uint64_t addr, uint8_t *data, unsigned int len)
{
	struct fw_cfg *f = (struct fw_cfg *)dev;
	uint8_t sig[8];

	memset(data, 0, len);
	if (addr == FW_CFG_PORT_DATA) {
		for (unsigned int i = 0; i < len; i++)
			data[i] = data_read(f);
	} else if (addr >= FW_CFG_PORT_DMA) {
		/* The DMA port reads as its signature, big-endian. */
		put_be(sig, FW_CFG_DMA_SIGNATURE, 8);
		for (unsigned int i = 0; i < len && addr + i < FW_CFG_PORT_LEN; i++)
			data[i] = sig[addr - FW_CFG_PORT_DMA + i];
	}
}

static void fw_cfg_write(struct device *dev, uint64_t addr, const uint8_t *data, unsigned int len)
{
	struct fw_cfg *f = (struct fw_cfg *)dev;

	if (addr == FW_CFG_PORT_SEL && len == 2) {
		select_item(f, get_le(data, 2));	/* x86: little-endian */
	} else if (addr == FW_CFG_PORT_DMA && len == 4) {
		f->dma_high = get_be(data, 4);
	} else if (addr == FW_CFG_PORT_DMA + 4 && len == 4) {
		/* The low half starts the transfer. */
		dma_run(f, (uint64_t)f->dma_high << 32 | get_be(data, 4));
		f->dma_high = 0;
	}
	/* Data port writes are ignored, as in QEMU since 2.4. */
}

static void fw_cfg_reset(struct device *dev)
{
	struct fw_cfg *f = (struct fw_cfg *)dev;

	select_item(f, FW_CFG_SIGNATURE);
	f->dma_high = 0;
	vmcoreinfo_reset(f);
}

static int fw_cfg_save(struct device *dev, struct state_buf *out)
{
	struct fw_cfg *f = (struct fw_cfg *)dev;
	uint8_t rec[2 + 4 + 4 + FW_CFG_VMCOREINFO_SIZE];

	memcpy(rec, &f->selector, 2);
	memcpy(rec + 2, &f->offset, 4);
	memcpy(rec + 6, &f->dma_high, 4);
	memcpy(rec + 10, f->items[ITEM_VMCOREINFO].data, FW_CFG_VMCOREINFO_SIZE);
	return state_put(out, rec, sizeof(rec));
}

static int fw_cfg_load(struct device *dev, const uint8_t *data, size_t len)
{
	struct fw_cfg *f = (struct fw_cfg *)dev;

	if (len != 2 + 4 + 4 + FW_CFG_VMCOREINFO_SIZE)
		return -EINVAL;
	memcpy(&f->selector, data, 2);
	memcpy(&f->offset, data + 2, 4);
	memcpy(&f->dma_high, data + 6, 4);
	memcpy(f->items[ITEM_VMCOREINFO].data, data + 10, FW_CFG_VMCOREINFO_SIZE);
	vmcoreinfo_written(f);
	return 0;
}

static void fw_cfg_destroy(struct device *dev)
{
	free(dev);
}

static const struct device_ops fw_cfg_ops = {
	.name = "fw_cfg",
	.read = fw_cfg_read,
	.write = fw_cfg_write,
	.reset = fw_cfg_reset,
	.save = fw_cfg_save,
	.load = fw_cfg_load,
	.destroy = fw_cfg_destroy,
};

static void add_file(struct fw_cfg *f, uint16_t key, const char *name, uint32_t size)
{
	struct item *dir = &f->items[ITEM_DIR];
	uint32_t n = get_be(dir->data, 4);
	uint8_t *e = dir->data + 4 + n * DIR_ENTRY_LEN;

	put_be(e, size, 4);
	put_be(e + 4, key, 2);
	strncpy((char *)e + 8, name, FILE_NAME_LEN - 1);
	put_be(dir->data, n + 1, 4);
	dir->len = 4 + (n + 1) * DIR_ENTRY_LEN;
}

struct device *fw_cfg_create(struct vm *vm, uint16_t port)
{
	struct fw_cfg *f = calloc(1, sizeof(*f));

	if (!f)
		return NULL;
	device_init(&f->dev, &fw_cfg_ops, vm);
	memcpy(f->items[ITEM_SIGNATURE].data, "QEMU", 4);
	f->items[ITEM_SIGNATURE].len = 4;
	f->items[ITEM_ID].data[0] = FW_CFG_VERSION | FW_CFG_VERSION_DMA;	/* le32 */
	f->items[ITEM_ID].len = 4;
	f->items[ITEM_DIR].len = 4;
	f->items[ITEM_VMCOREINFO].len = FW_CFG_VMCOREINFO_SIZE;
	f->items[ITEM_VMCOREINFO].writable = true;
	add_file(f, FW_CFG_FILE_FIRST, FW_CFG_VMCOREINFO_FILE, FW_CFG_VMCOREINFO_SIZE);
	fw_cfg_reset(&f->dev);
	if (bus_register(&vm->pio, port, FW_CFG_PORT_LEN, &f->dev)) {
		free(f);
		return NULL;
	}
	return &f->dev;
}

bool fw_cfg_vmcoreinfo(struct vm *vm, uint64_t *paddr, uint32_t *size)
{
	bool given = false;

	for (struct device *d = vm->devices; d; d = d->next) {
		struct fw_cfg *f = (struct fw_cfg *)d;

		if (d->ops != &fw_cfg_ops)
			continue;
		pthread_mutex_lock(&d->lock);
		given = f->note_given;
		*paddr = f->note_paddr;
		*size = f->note_size;
		pthread_mutex_unlock(&d->lock);
	}
	return given;
}
