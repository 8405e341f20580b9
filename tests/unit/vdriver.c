/* The hand-driven virtio-pci guest of the device unit tests; see
 * vdriver.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "irq.h"
#include "pci/pci.h"
#include "unit.h"
#include "util.h"
#include "vdriver.h"
#include "virtio/virtio.h"

struct vm vm;
struct vd_watch watch[8];
int nwatch, nroutes, fired[8];
uint32_t route_data[8];
int ioeventfd_result = -ENOSYS;
static uint16_t avail_idx[VIRTIO_MAX_QUEUES];

/* --- stand-ins for kvmm's KVM, MSI and loop glue ------------------- */

int loop_add(struct loop *l, int fd, uint32_t events, loop_fn fn, void *opaque)
{
	if (nwatch == (int)ARRAY_SIZE(watch))
		return -ENOSPC;
	watch[nwatch] = (struct vd_watch){ fd, fn, opaque, events };
	nwatch++;
	return 0;
}

int loop_mod(struct loop *l, int fd, uint32_t events)
{
	int i;

	for (i = 0; i < nwatch; i++)
		if (watch[i].fd == fd)
			watch[i].events = events;
	return 0;
}

void loop_del(struct loop *l, int fd)
{
}

int irq_msi_alloc(struct vm *v)
{
	return nroutes < 8 ? nroutes++ : -ENOSPC;
}

int irq_msi_route(struct vm *v, unsigned int id, uint64_t addr, uint32_t data)
{
	route_data[id] = data;
	return 0;
}

void irq_msi_free(struct vm *v, unsigned int id)
{
}

void irq_msi_fire(struct vm *v, unsigned int id)
{
	fired[id]++;
}

struct vm_io_error vd_io_errors[8];
unsigned int vd_nio_errors;

void vm_io_error(struct vm *v, const char *device, const char *op, int error, const char *action)
{
	struct vm_io_error *e = &vd_io_errors[vd_nio_errors++ % 8];

	snprintf(e->device, sizeof(e->device), "%s", device);
	e->op = op;
	e->error = error;
	e->action = action;
}

int kvm_ioeventfd(struct vm *v, uint64_t addr, unsigned int len, int fd, bool assign)
{
	return assign ? ioeventfd_result : 0;
}

/* --- the driver's accesses ------------------------------------------ */

void vd_setup(void)
{
	memset(&vm, 0, sizeof(vm));
	nwatch = nroutes = 0;
	vd_nio_errors = 0;
	memset(fired, 0, sizeof(fired));
	memset(avail_idx, 0, sizeof(avail_idx));
	ioeventfd_result = -ENOSYS;
	CHECK(guest_mem_init(&vm.mem, 1 * MiB, 1 * MiB, 4 * GiB) == 0);
	vm.pci = calloc(1, sizeof(*vm.pci));
	pci_bus_init(vm.pci);
}

void vd_teardown(void)
{
	pci_bus_destroy(vm.pci);
	free(vm.pci);
	guest_mem_destroy(&vm.mem);
}

void cfgw(unsigned int off, uint32_t v, unsigned int len)
{
	uint8_t d[4];

	pci_put(d, v, len);
	pci_cfg_access(vm.pci, 1, 0, off, d, len, true);
}

uint32_t cfgr(unsigned int off, unsigned int len)
{
	uint8_t d[4];

	pci_cfg_access(vm.pci, 1, 0, off, d, len, false);
	return pci_get(d, len);
}

void bw(uint64_t off, uint32_t v, unsigned int len)
{
	uint8_t d[4];

	pci_put(d, v, len);
	CHECK(pci_mmio_access(vm.pci, VD_BAR + off, d, len, true));
}

uint32_t br(uint64_t off, unsigned int len)
{
	uint8_t d[4] = { 0 };

	CHECK(pci_mmio_access(vm.pci, VD_BAR + off, d, len, false));
	return pci_get(d, len);
}

uint8_t *gm(uint64_t gpa)
{
	return guest_mem_ptr(&vm.mem, gpa, 1);
}

unsigned int find_cap(uint8_t id, uint8_t vtype)
{
	unsigned int off;

	for (off = cfgr(PCI_CAP_PTR, 1); off; off = cfgr(off + 1, 1))
		if (cfgr(off, 1) == id && (!vtype || cfgr(off + 3, 1) == vtype))
			return off;
	return 0;
}

int fired_for(uint32_t data)
{
	int i;

	for (i = 0; i < nroutes; i++)
		if (route_data[i] == data)
			return fired[i];
	return 0;
}

/* --- queues on VD_RING(q) ------------------------------------------- */

void vd_driver_ok(uint64_t features, unsigned int nq)
{
	vd_driver_setup(features, nq);
	bw(20, 0x0f, 1);
	CHECK_EQ_U64(br(20, 1), 0x0f);
}

void vd_driver_setup(uint64_t features, unsigned int nq)
{
	unsigned int cap = find_cap(PCI_CAP_ID_MSIX, 0), q, e;

	bw(20, 0, 1);
	memset(gm(VD_RING(0)), 0, 0x3000 * nq);
	memset(avail_idx, 0, sizeof(avail_idx));
	bw(20, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER, 1);
	bw(8, 0, 4);
	bw(12, (uint32_t)features, 4);
	bw(8, 1, 4);
	bw(12, 1 | (uint32_t)(features >> 32), 4);	/* VERSION_1 */
	bw(20, 0x0b, 1);
	CHECK_EQ_U64(br(20, 1), 0x0b);
	cfgw(cap + 2, 0x8000, 2);
	for (e = 0; e <= nq; e++) {
		bw(0x4000 + 16 * e, 0xfee00000, 4);
		bw(0x4000 + 16 * e + 8, 0x40 + e, 4);
		bw(0x4000 + 16 * e + 12, 0, 4);
	}
	bw(16, 0, 2);
	for (q = 0; q < nq; q++) {
		bw(22, q, 2);
		bw(26, 1 + q, 2);
		bw(24, VD_QSIZE, 2);
		bw(32, VD_RING(q), 4);
		bw(36, 0, 4);
		bw(40, VD_RING(q) + 0x1000, 4);
		bw(44, 0, 4);
		bw(48, VD_RING(q) + 0x2000, 4);
		bw(52, 0, 4);
		bw(28, 1, 2);
	}
}

void vq_post(unsigned int q, uint16_t head, uint64_t addr, uint32_t len,
	     uint16_t flags, uint16_t next)
{
	uint8_t *d = gm(VD_RING(q) + 16 * head);

	memcpy(d, &addr, 8);
	memcpy(d + 8, &len, 4);
	memcpy(d + 12, &flags, 2);
	memcpy(d + 14, &next, 2);
}

void vq_offer(unsigned int q, uint16_t head)
{
	uint8_t *a = gm(VD_RING(q) + 0x1000);

	memcpy(a + 4 + 2 * (avail_idx[q] % VD_QSIZE), &head, 2);
	avail_idx[q]++;
	memcpy(a + 2, &avail_idx[q], 2);
}

uint16_t vq_used_idx(unsigned int q)
{
	return pci_get(gm(VD_RING(q) + 0x2002), 2);
}

uint32_t vq_used_len(unsigned int q, unsigned int i)
{
	return pci_get(gm(VD_RING(q) + 0x2004 + 8 * i + 4), 4);
}

uint32_t vq_used_id(unsigned int q, unsigned int i)
{
	return pci_get(gm(VD_RING(q) + 0x2004 + 8 * i), 4);
}
