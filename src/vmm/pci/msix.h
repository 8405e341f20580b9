/* MSI-X for a PCI function: the capability, the vector table and the
 * pending-bit array in one of its memory BARs, per-vector and function
 * masks.  Delivery goes through a sink (in kvmm: irq.c's routes and
 * irqfds), so this file needs no KVM and is unit-tested alone.
 *
 * A masked vector that fires sets its pending bit; unmasking delivers it.
 * Callers hold the function's device lock. */
#ifndef KVMM_MSIX_H
#define KVMM_MSIX_H

#include <stdbool.h>
#include <stdint.h>

#include "device.h"

struct pci_func;

#define MSIX_MAX_VECTORS	64
#define MSIX_ENTRY_SIZE		16
#define MSIX_CAP_LEN		12

struct msix_sink {
	/* A new route for vector; returns its id or -errno. */
	int (*alloc)(void *opaque);
	void (*route)(void *opaque, unsigned int id, uint64_t addr, uint32_t data);
	void (*fire)(void *opaque, unsigned int id);
	void *opaque;
};

struct msix {
	struct pci_func *f;
	const struct msix_sink *sink;
	unsigned int nvec;
	int bar;
	uint32_t table_off, pba_off;	/* inside the BAR */
	unsigned int cap;		/* capability offset in config space */
	uint8_t table[MSIX_MAX_VECTORS * MSIX_ENTRY_SIZE];
	uint64_t pba;
	int route[MSIX_MAX_VECTORS];	/* sink ids, -1 until first use */
	uint64_t routed_addr[MSIX_MAX_VECTORS];
	uint32_t routed_data[MSIX_MAX_VECTORS];
};

/* Adds the capability; table and PBA offsets must be 8-byte aligned and
 * lie in BAR `bar` (already added).  -EINVAL / -ENOSPC. */
int msix_init(struct msix *m, struct pci_func *f, const struct msix_sink *sink,
	      unsigned int nvec, int bar, uint32_t table_off, uint32_t pba_off);
/* A BAR access; false if [off, off+len) is not the table or PBA. */
bool msix_bar_access(struct msix *m, int bar, uint64_t off, uint8_t *data,
		     unsigned int len, bool is_write);
/* After a configuration write (enable and function mask live there). */
void msix_cfg_written(struct msix *m, unsigned int off, unsigned int len);
/* Raises vector (delivered, or left pending while masked; dropped when
 * MSI-X is off or vector is out of range). */
void msix_notify(struct msix *m, unsigned int vector);
bool msix_enabled(const struct msix *m);

void msix_reset(struct msix *m);
int msix_save(struct msix *m, struct state_buf *out);
/* Returns the bytes consumed, or -EINVAL. */
int msix_load(struct msix *m, const uint8_t *data, size_t len);

#endif
