/* The platform devices of a kvmm machine, created in a fixed order. */
#ifndef KVMM_DEVICES_H
#define KVMM_DEVICES_H

#include <stddef.h>
#include <stdint.h>

struct vm;
struct device;
struct chardev;
struct acpi_pm;

int devices_create(struct vm *vm);
void devices_reset(struct vm *vm);
/* The VM runs again: devices retry what an I/O error held. */
void devices_resume(struct vm *vm);
void devices_destroy(struct vm *vm);

/* Adds dev to the VM's device list (after its creation succeeded). */
void devices_add(struct vm *vm, struct device *dev);

struct device *serial_create(struct vm *vm, uint16_t port, unsigned int irq,
			     struct chardev *backend);
struct device *acpi_pm_create(struct vm *vm, uint16_t base, unsigned int sci,
			      uint8_t s5_slp_typ);
void acpi_pm_power_button(struct device *pm);
/* Sets GPE0 status bit gpe (0-15): an SCI if the guest enabled it. */
void acpi_pm_gpe_raise(struct device *pm, unsigned int gpe);
struct device *sysreset_create(struct vm *vm, uint16_t port);
struct device *i8042_create(struct vm *vm, uint16_t port);
struct device *rtc_create(struct vm *vm, uint16_t port);

#endif
