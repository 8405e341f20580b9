/* ACPI CPU hotplug; see cpu_hotplug.h and docs/hotplug.md. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "api.h"
#include "arch/x86/arch.h"
#include "arch/x86/layout.h"
#include "config.h"
#include "cpu_hotplug.h"
#include "devices.h"
#include "log.h"
#include "loop.h"
#include "migration/live.h"
#include "vm.h"

#define CPHP_SEL	0x00	/* write: selector; read: command data 2 */
#define CPHP_FLAGS	0x04	/* read: status; write: control */
#define CPHP_CMD	0x05	/* write: command */
#define CPHP_DATA	0x08	/* read/write: command data */
#define CPHP_LEN	0x0c

#define CPHP_F_ENABLED	(1u << 0)
#define CPHP_F_INSERT	(1u << 1)
#define CPHP_F_REMOVE	(1u << 2)
#define CPHP_F_EJECT	(1u << 3)

#define CPHP_CMD_NEXT_EVENT	0
#define CPHP_CMD_OST_EVENT	1
#define CPHP_CMD_OST_STATUS	2
#define CPHP_CMD_ARCH_ID	3

#define CPHP_GPE	2	/* GPE0 bit of the CPU hotplug event */

struct cphp_cpu {
	bool enabled;		/* the guest's _STA says present */
	bool inserting;		/* insert event not yet cleared by the guest */
	bool removing;		/* remove event not yet cleared by the guest */
	bool asked;		/* the host wants it back (until ejected) */
	bool ejected;		/* the guest ejected it; main not done yet */
};

struct cpu_hotplug {
	struct device dev;
	struct device *pm;
	int efd;			/* wakes the main thread for an eject */
	unsigned int ncpus;		/* slots: vm->ncpus */
	/* Guarded by dev.lock. */
	uint32_t sel;
	uint8_t cmd;
	uint32_t ost_event, ost_status;
	struct cphp_cpu *cpus;
};

static const struct device_ops cphp_ops;

static struct cpu_hotplug *cphp_of(struct vm *vm)
{
	struct device *d;

	for (d = vm->devices; d; d = d->next)
		if (d->ops == &cphp_ops)
			return (struct cpu_hotplug *)d;
	return NULL;
}

static void cphp_read(struct device *dev, uint64_t addr, uint8_t *data, unsigned int len)
{
	struct cpu_hotplug *c = (struct cpu_hotplug *)dev;
	uint8_t regs[CPHP_LEN] = { 0 };
	uint32_t v;

	/* GUEST: a selector past the slots reads all zeros, as the
	 * interface says; any width at any offset comes from this snapshot
	 * (the bus checked that addr+len fits). */
	if (c->sel < c->ncpus) {
		struct cphp_cpu *p = &c->cpus[c->sel];

		regs[CPHP_FLAGS] = (p->enabled ? CPHP_F_ENABLED : 0) |
				   (p->inserting ? CPHP_F_INSERT : 0) |
				   (p->removing ? CPHP_F_REMOVE : 0);
		/* The APIC ID is the slot: its upper half (CPHP_SEL) is 0. */
		v = c->cmd == CPHP_CMD_NEXT_EVENT || c->cmd == CPHP_CMD_ARCH_ID ? c->sel : 0;
		memcpy(regs + CPHP_DATA, &v, 4);
	}
	memcpy(data, regs + addr, len);
}

/* Command 0: the selector moves to a CPU with an event, searching from
 * the current one round the slots; with none, it stays. */
static void select_next_event(struct cpu_hotplug *c)
{
	unsigned int i, s;

	for (i = 0; i < c->ncpus; i++) {
		s = (c->sel + i) % c->ncpus;
		if (c->cpus[s].inserting || c->cpus[s].removing) {
			c->sel = s;
			return;
		}
	}
}

static void cphp_write(struct device *dev, uint64_t addr, const uint8_t *data, unsigned int len)
{
	struct cpu_hotplug *c = (struct cpu_hotplug *)dev;
	uint64_t one = 1;
	uint32_t v = 0;
	struct cphp_cpu *p;

	memcpy(&v, data, len < 4 ? len : 4);
	if (addr == CPHP_SEL && len == 4) {
		/* GUEST: any value; one past the slots disables the rest. */
		c->sel = v;
		return;
	}
	if (c->sel >= c->ncpus)
		return;
	p = &c->cpus[c->sel];
	if (addr == CPHP_FLAGS && len == 1) {
		if (v & CPHP_F_INSERT)
			p->inserting = false;
		if (v & CPHP_F_REMOVE)
			p->removing = false;
		/* GUEST: only a vCPU the host asked back is ejected (never
		 * the boot CPU, which is never asked); another eject is
		 * ignored. */
		if ((v & CPHP_F_EJECT) && p->asked && !p->ejected) {
			p->ejected = true;
			if (write(c->efd, &one, sizeof(one)) < 0)
				pr_debug("cpu hotplug eventfd: %s", strerror(errno));
		}
	} else if (addr == CPHP_CMD && len == 1) {
		c->cmd = v;
		if (v == CPHP_CMD_NEXT_EVENT)
			select_next_event(c);
	} else if (addr == CPHP_DATA && len == 4) {
		if (c->cmd == CPHP_CMD_OST_EVENT) {
			c->ost_event = v;
		} else if (c->cmd == CPHP_CMD_OST_STATUS) {
			c->ost_status = v;
			pr_debug("vCPU %u: _OST event 0x%x status 0x%x", c->sel, c->ost_event, v);
		}
	}
}

/* Main thread: the vCPUs the guest ejected stop for good. */
static void cphp_ejected(void *opaque, uint32_t events)
{
	struct cpu_hotplug *c = opaque;
	struct vm *vm = c->dev.vm;
	uint64_t n;
	unsigned int i;
	bool done;

	if (read(c->efd, &n, sizeof(n)) < 0 && errno != EAGAIN)
		pr_debug("cpu hotplug eventfd: %s", strerror(errno));
	/* A live migration's stream lists the vCPUs it started with: the
	 * ejects wait for its end (cpu_hotplug_kick). */
	if (live_migrate_active(vm))
		return;
	for (i = 0; i < c->ncpus; i++) {
		pthread_mutex_lock(&c->dev.lock);
		done = c->cpus[i].ejected;
		if (done)
			c->cpus[i] = (struct cphp_cpu){ 0 };
		pthread_mutex_unlock(&c->dev.lock);
		if (!done)
			continue;
		if (vm->vcpus[i].thread_started)
			vcpu_unplug(&vm->vcpus[i]);
		vm->cpu_present[i] = false;
		pr_info("vCPU %u removed", i);
		api_event_cpu(vm->api, "cpu-deleted", i);
	}
}

/* A guest reset completes the removals it was asked for, as a power
 * cycle would (before the VM is rebuilt: the vCPU is not created again);
 * the added vCPUs stay, the events are dropped: the new boot finds the
 * vCPUs through _STA. */
static void cphp_reset(struct device *dev)
{
	struct cpu_hotplug *c = (struct cpu_hotplug *)dev;
	struct vm *vm = dev->vm;
	uint64_t one = 1;
	bool any = false;
	unsigned int i;

	for (i = 0; i < c->ncpus; i++) {
		struct cphp_cpu *p = &c->cpus[i];

		p->inserting = p->removing = false;
		if (p->asked || p->ejected) {
			vm->cpu_present[i] = false;
			p->enabled = p->asked = false;
			p->ejected = any = true;
		}
	}
	if (any && write(c->efd, &one, sizeof(one)) < 0)
		pr_debug("cpu hotplug eventfd: %s", strerror(errno));
}

static void cphp_destroy(struct device *dev)
{
	struct cpu_hotplug *c = (struct cpu_hotplug *)dev;

	loop_del(dev->vm->loop, c->efd);
	close(c->efd);
	free(c->cpus);
	free(c);
}

/* The registers and each slot's flags; which vCPUs exist is the
 * stream's configuration ("vcpus_present") and its vCPU sections. */
#define CPHP_STATE_VERSION	1

struct cphp_state_hdr {
	uint32_t ncpus, sel, ost_event, ost_status;
	uint8_t cmd, pad[7];
};

enum { CPU_ENABLED = 1, CPU_INSERTING = 2, CPU_REMOVING = 4, CPU_ASKED = 8, CPU_EJECTED = 16 };

static int cphp_save(struct device *dev, struct state_buf *out)
{
	struct cpu_hotplug *c = (struct cpu_hotplug *)dev;
	struct cphp_state_hdr h = { c->ncpus, c->sel, c->ost_event, c->ost_status, c->cmd, { 0 } };
	uint8_t ver = CPHP_STATE_VERSION;
	unsigned int i;
	int r = state_put(out, &ver, 1);

	if (!r)
		r = state_put(out, &h, sizeof(h));

	for (i = 0; i < c->ncpus && !r; i++) {
		const struct cphp_cpu *p = &c->cpus[i];
		uint8_t f = (p->enabled ? CPU_ENABLED : 0) | (p->inserting ? CPU_INSERTING : 0) |
			    (p->removing ? CPU_REMOVING : 0) | (p->asked ? CPU_ASKED : 0) |
			    (p->ejected ? CPU_EJECTED : 0);

		r = state_put(out, &f, 1);
	}
	return r;
}

static int cphp_load(struct device *dev, const uint8_t *data, size_t len)
{
	struct cpu_hotplug *c = (struct cpu_hotplug *)dev;
	struct vm *vm = dev->vm;
	struct cphp_state_hdr h;
	uint64_t one = 1;
	bool any = false;
	unsigned int i;

	if (len < 1 + sizeof(h) || data[0] != CPHP_STATE_VERSION)
		return -EINVAL;
	memcpy(&h, data + 1, sizeof(h));
	if (h.ncpus != c->ncpus || len != 1 + sizeof(h) + c->ncpus)
		return -EINVAL;
	data += 1 + sizeof(h);
	/* GUEST: a slot is enabled exactly when its vCPU is here (the
	 * stream's vCPU set); asked back only one that is (a reset's
	 * completed removal is ejected, no longer there); never the boot
	 * CPU. */
	for (i = 0; i < c->ncpus; i++) {
		uint8_t f = data[i];

		if (f & ~(CPU_ENABLED | CPU_INSERTING | CPU_REMOVING | CPU_ASKED | CPU_EJECTED) ||
		    !!(f & CPU_ENABLED) != vm->cpu_present[i] ||
		    ((f & CPU_ASKED) && !vm->cpu_present[i]) ||
		    (i == 0 && (f & (CPU_ASKED | CPU_EJECTED))))
			return -EINVAL;
	}
	c->sel = h.sel;
	c->cmd = h.cmd;
	c->ost_event = h.ost_event;
	c->ost_status = h.ost_status;
	for (i = 0; i < c->ncpus; i++) {
		c->cpus[i] = (struct cphp_cpu){
			.enabled = data[i] & CPU_ENABLED, .inserting = data[i] & CPU_INSERTING,
			.removing = data[i] & CPU_REMOVING, .asked = data[i] & CPU_ASKED,
			.ejected = data[i] & CPU_EJECTED,
		};
		any |= c->cpus[i].ejected;
	}
	/* An eject the source had not acted on yet is acted on here. */
	if (any && write(c->efd, &one, sizeof(one)) < 0)
		pr_debug("cpu hotplug eventfd: %s", strerror(errno));
	return 0;
}

static const struct device_ops cphp_ops = {
	.name = "cpu-hotplug",
	.read = cphp_read,
	.write = cphp_write,
	.reset = cphp_reset,
	.save = cphp_save,
	.load = cphp_load,
	.destroy = cphp_destroy,
};

struct device *cpu_hotplug_create(struct vm *vm, struct device *pm)
{
	struct cpu_hotplug *c = calloc(1, sizeof(*c));
	unsigned int i;

	if (!c)
		return NULL;
	device_init(&c->dev, &cphp_ops, vm);
	c->pm = pm;
	c->ncpus = vm->ncpus;
	c->cpus = calloc(c->ncpus, sizeof(*c->cpus));
	c->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (!c->cpus || c->efd < 0)
		goto fail;
	for (i = 0; i < c->ncpus; i++)
		c->cpus[i].enabled = vm->cpu_present[i];
	if (loop_add(vm->loop, c->efd, EPOLLIN, cphp_ejected, c))
		goto fail;
	if (bus_register(&vm->pio, X86_CPU_HOTPLUG_PORT, CPHP_LEN, &c->dev)) {
		loop_del(vm->loop, c->efd);
		goto fail;
	}
	return &c->dev;
fail:
	if (c->efd >= 0)
		close(c->efd);
	free(c->cpus);
	free(c);
	return NULL;
}

static struct cpu_hotplug *check_id(struct vm *vm, unsigned int id, char *err, size_t errlen)
{
	struct cpu_hotplug *c = cphp_of(vm);

	if (!c) {
		snprintf(err, errlen, "this VM has no vCPU hotplug: start it with --max-cpus above --cpus");
		return NULL;
	}
	if (id >= c->ncpus) {
		snprintf(err, errlen, "vCPU %u is out of range: this VM's vCPUs are 0 to %u (max_cpus %u)",
			 id, c->ncpus - 1, c->ncpus);
		return NULL;
	}
	return c;
}

int cpu_hotplug_add(struct vm *vm, unsigned int id, char *err, size_t errlen)
{
	struct cpu_hotplug *c = check_id(vm, id, err, errlen);
	int r;

	if (!c)
		return -EINVAL;
	if (vm->cpu_present[id]) {
		snprintf(err, errlen, "vCPU %u is already there", id);
		return -EEXIST;
	}
	if (vm->vcpus[id].fd >= 0) {
		snprintf(err, errlen, "vCPU %u was removed and KVM cannot create it again: "
			 "it can be added after the guest's next reset", id);
		return -EBUSY;
	}
	if (vm->state == VM_SHUTDOWN) {
		snprintf(err, errlen, "the VM is shut down");
		return -EINVAL;
	}
	r = vcpu_create(vm, &vm->vcpus[id], id);
	if (!r)
		r = arch_vcpu_hotadd(&vm->vcpus[id]);
	if (!r && vm->boots)
		r = vcpu_start(&vm->vcpus[id]);
	if (r) {
		snprintf(err, errlen, "cannot create vCPU %u: %s", id, strerror(-r));
		return r;
	}
	vm->cpu_present[id] = true;
	pthread_mutex_lock(&c->dev.lock);
	c->cpus[id] = (struct cphp_cpu){ .enabled = true, .inserting = true };
	pthread_mutex_unlock(&c->dev.lock);
	acpi_pm_gpe_raise(c->pm, CPHP_GPE);
	pr_info("vCPU %u added", id);
	return 0;
}

int cpu_hotplug_del(struct vm *vm, unsigned int id, char *err, size_t errlen)
{
	struct cpu_hotplug *c = check_id(vm, id, err, errlen);

	if (!c)
		return -EINVAL;
	if (id == 0) {
		snprintf(err, errlen, "vCPU 0, the boot CPU, cannot be removed");
		return -EINVAL;
	}
	if (!vm->cpu_present[id]) {
		snprintf(err, errlen, "vCPU %u is not there", id);
		return -ENODEV;
	}
	/* Asking again signals again: the guest may have missed it. */
	pthread_mutex_lock(&c->dev.lock);
	c->cpus[id].asked = c->cpus[id].removing = true;
	pthread_mutex_unlock(&c->dev.lock);
	acpi_pm_gpe_raise(c->pm, CPHP_GPE);
	pr_info("vCPU %u: removal requested", id);
	return 0;
}

bool cpu_hotplug_removing(struct vm *vm, unsigned int id)
{
	struct cpu_hotplug *c = cphp_of(vm);
	bool r;

	if (!c || id >= c->ncpus)
		return false;
	pthread_mutex_lock(&c->dev.lock);
	r = c->cpus[id].asked || c->cpus[id].ejected;
	pthread_mutex_unlock(&c->dev.lock);
	return r;
}

void cpu_hotplug_kick(struct vm *vm)
{
	struct cpu_hotplug *c = cphp_of(vm);
	uint64_t one = 1;

	if (c && write(c->efd, &one, sizeof(one)) < 0)
		pr_debug("cpu hotplug eventfd: %s", strerror(errno));
}
