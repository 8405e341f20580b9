/* MSI routes of the VM: each is a GSI above the IOAPIC's with an eventfd
 * bound to it by KVM_IRQFD, so raising an interrupt is one eventfd write
 * from any thread, and KVM delivers the message.  The table survives a VM
 * reset (which makes a new KVM VM): irq_attach() gives it to the new one. */
#ifndef KVMM_IRQ_H
#define KVMM_IRQ_H

#include <stdint.h>

struct vm;

#define IRQ_MSI_GSI_BASE	24	/* above the IOAPIC's 24 pins */
#define IRQ_MSI_MAX		512

int irq_init(struct vm *vm);
void irq_destroy(struct vm *vm);
/* Re-creates the routes and irqfds on a fresh KVM VM. */
int irq_attach(struct vm *vm);
/* A new route (initially to nowhere: address 0); returns its id or -errno. */
int irq_msi_alloc(struct vm *vm);
/* Gives route id back (a hot-removed device's): irqfd and eventfd closed,
 * the id reused by the next irq_msi_alloc(). */
void irq_msi_free(struct vm *vm, unsigned int id);
int irq_msi_route(struct vm *vm, unsigned int id, uint64_t addr, uint32_t data);
void irq_msi_fire(struct vm *vm, unsigned int id);

#endif
