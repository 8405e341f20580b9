/* The platform devices of the x86 machine, created in this order. */
#include <errno.h>
#include <stdlib.h>

#include "arch/x86/layout.h"
#include "chardev.h"
#include "devices.h"
#include "device.h"
#include "log.h"
#include "vm.h"

void devices_add(struct vm *vm, struct device *dev)
{
	struct device **p = &vm->devices;

	while (*p)
		p = &(*p)->next;
	*p = dev;
}

int devices_create(struct vm *vm)
{
	struct device *dev;

	dev = serial_create(vm, X86_COM1_PORT, X86_COM1_IRQ, vm->serial_backend);
	if (!dev)
		goto fail;
	devices_add(vm, dev);
	dev = acpi_pm_create(vm, X86_PM_BASE, X86_SCI_IRQ, X86_S5_SLP_TYP);
	if (!dev)
		goto fail;
	devices_add(vm, dev);
	vm->pm = (struct acpi_pm *)dev;
	dev = sysreset_create(vm, X86_RESET_PORT);
	if (!dev)
		goto fail;
	devices_add(vm, dev);
	dev = i8042_create(vm);
	if (!dev)
		goto fail;
	devices_add(vm, dev);
	dev = rtc_create(vm, X86_RTC_PORT);
	if (!dev)
		goto fail;
	devices_add(vm, dev);
	return 0;
fail:
	pr_err("cannot create the platform devices");
	return -ENOMEM;
}

void devices_reset(struct vm *vm)
{
	struct device *d;

	for (d = vm->devices; d; d = d->next) {
		pthread_mutex_lock(&d->lock);
		if (d->ops->reset)
			d->ops->reset(d);
		pthread_mutex_unlock(&d->lock);
	}
}

void devices_destroy(struct vm *vm)
{
	struct device *d, *next;

	for (d = vm->devices; d; d = next) {
		next = d->next;
		d->ops->destroy(d);
	}
	vm->devices = NULL;
	vm->pm = NULL;
}
