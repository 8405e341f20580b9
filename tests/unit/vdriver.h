/* A hand-driven virtio-pci guest for the device unit tests (transport,
 * rng, blk, console, net): kvmm's KVM, MSI and loop glue replaced by
 * recorders, and the driver's side done through the PCI bus of a fake
 * VM with 1 MiB of RAM.  Queue q's rings, for the helpers below: its
 * descriptors at VD_RING(q), avail ring 0x1000 above, used ring 0x2000
 * above, VD_QSIZE entries. */
#ifndef KVMM_TEST_VDRIVER_H
#define KVMM_TEST_VDRIVER_H

#include <stdbool.h>
#include <stdint.h>

#include "loop.h"
#include "vm.h"

#define VD_BAR		0xC0000000ULL
#define VD_RING(q)	(0x1000ULL + 0x3000ULL * (q))
#define VD_QSIZE	8

extern struct vm vm;

/* What loop_add() was given, in order; loop_mod() updates events. */
struct vd_watch {
	int fd;
	loop_fn fn;
	void *opaque;
	uint32_t events;
};
extern struct vd_watch watch[8];
extern int nwatch;
/* MSI routes handed out, their data, and how often each fired. */
extern int nroutes, fired[8];
extern uint32_t route_data[8];
/* What kvm_ioeventfd() answers to an assignment (default -ENOSYS: the
 * notify writes take the MMIO exit path). */
extern int ioeventfd_result;

/* What vm_io_error() was told, the last 8 (vd_nio_errors counts all). */
extern struct vm_io_error vd_io_errors[8];
extern unsigned int vd_nio_errors;

/* Clears the recorders and makes vm's RAM and PCI bus. */
void vd_setup(void);
/* Frees what vd_setup() made. */
void vd_teardown(void);

void cfgw(unsigned int off, uint32_t v, unsigned int len);
uint32_t cfgr(unsigned int off, unsigned int len);
/* Accesses to the device's BAR at VD_BAR. */
void bw(uint64_t off, uint32_t v, unsigned int len);
uint32_t br(uint64_t off, unsigned int len);
uint8_t *gm(uint64_t gpa);
unsigned int find_cap(uint8_t id, uint8_t vtype);
/* Interrupts delivered on the route whose data is data. */
int fired_for(uint32_t data);

/* Resets the device and brings it to DRIVER_OK with features (and
 * VERSION_1), MSI-X entry 0 for configuration changes (data 0x40) and
 * entry 1 + q for queue q (0x41 + q), and nq queues on VD_RING(q). */
void vd_driver_ok(uint64_t features, unsigned int nq);
/* All of it but DRIVER_OK: features, MSI-X, queues enabled. */
void vd_driver_setup(uint64_t features, unsigned int nq);
void vq_post(unsigned int q, uint16_t head, uint64_t addr, uint32_t len,
	     uint16_t flags, uint16_t next);
void vq_offer(unsigned int q, uint16_t head);
uint16_t vq_used_idx(unsigned int q);
uint32_t vq_used_len(unsigned int q, unsigned int i);
uint32_t vq_used_id(unsigned int q, unsigned int i);

#endif
