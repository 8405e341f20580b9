/* MSI routes: GSI allocation, KVM_SET_GSI_ROUTING and one irqfd each. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "irq.h"
#include "log.h"
#include "util.h"
#include "vm.h"

struct irq_routes {
	pthread_mutex_t lock;
	unsigned int n;
	struct kvm_msi_route r[IRQ_MSI_MAX];
	int fd[IRQ_MSI_MAX];
};

int irq_init(struct vm *vm)
{
	struct irq_routes *t = calloc(1, sizeof(*t));

	if (!t)
		return -ENOMEM;
	pthread_mutex_init(&t->lock, NULL);
	vm->irq = t;
	return 0;
}

void irq_destroy(struct vm *vm)
{
	struct irq_routes *t = vm->irq;
	unsigned int i;

	if (!t)
		return;
	for (i = 0; i < t->n; i++)
		if (t->fd[i] >= 0)
			close(t->fd[i]);
	pthread_mutex_destroy(&t->lock);
	free(t);
	vm->irq = NULL;
}

int irq_attach(struct vm *vm)
{
	struct irq_routes *t = vm->irq;
	unsigned int i;
	int r = 0;

	if (!t || !t->n)
		return 0;
	pthread_mutex_lock(&t->lock);
	r = kvm_set_msi_routes(vm, t->r, t->n);
	for (i = 0; i < t->n && !r; i++)
		if (t->r[i].used)
			r = kvm_irqfd(vm, t->fd[i], t->r[i].gsi, true);
	pthread_mutex_unlock(&t->lock);
	if (r)
		pr_err("cannot give the MSI routes to KVM: %s", strerror(-r));
	return r;
}

int irq_msi_alloc(struct vm *vm)
{
	struct irq_routes *t = vm->irq;
	unsigned int id;
	int fd, r;

	pthread_mutex_lock(&t->lock);
	/* A route a removed device freed is taken first. */
	for (id = 0; id < t->n && t->r[id].used; id++)
		;
	if (id == IRQ_MSI_MAX) {
		pthread_mutex_unlock(&t->lock);
		return -ENOSPC;
	}
	fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (fd < 0) {
		r = -errno;
		pthread_mutex_unlock(&t->lock);
		return r;
	}
	/* Unused until routed: a GSI without a route has nothing to
	 * deliver, and KVM_IRQFD wants the GSI known. */
	t->r[id] = (struct kvm_msi_route){ .used = true,
					   .gsi = IRQ_MSI_GSI_BASE + id };
	r = kvm_set_msi_routes(vm, t->r, MAX(t->n, id + 1));
	if (!r)
		r = kvm_irqfd(vm, fd, t->r[id].gsi, true);
	if (r) {
		close(fd);
		t->r[id].used = false;
		pthread_mutex_unlock(&t->lock);
		pr_err("cannot set up an MSI route: %s", strerror(-r));
		return r;
	}
	__atomic_store_n(&t->fd[id], fd, __ATOMIC_RELEASE);
	if (id == t->n)
		__atomic_store_n(&t->n, id + 1, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&t->lock);
	return id;
}

void irq_msi_free(struct vm *vm, unsigned int id)
{
	struct irq_routes *t = vm->irq;
	int fd;

	if (!t)
		return;
	pthread_mutex_lock(&t->lock);
	if (id < t->n && t->r[id].used) {
		fd = t->fd[id];
		__atomic_store_n(&t->fd[id], -1, __ATOMIC_RELEASE);
		kvm_irqfd(vm, fd, t->r[id].gsi, false);
		close(fd);
		t->r[id] = (struct kvm_msi_route){ .used = false };
		kvm_set_msi_routes(vm, t->r, t->n);
	}
	pthread_mutex_unlock(&t->lock);
}

int irq_msi_route(struct vm *vm, unsigned int id, uint64_t addr, uint32_t data)
{
	struct irq_routes *t = vm->irq;
	int r;

	pthread_mutex_lock(&t->lock);
	if (id >= t->n || !t->r[id].used) {
		pthread_mutex_unlock(&t->lock);
		return -EINVAL;
	}
	if (t->r[id].addr == addr && t->r[id].data == data) {
		pthread_mutex_unlock(&t->lock);
		return 0;
	}
	t->r[id].addr = addr;
	t->r[id].data = data;
	r = kvm_set_msi_routes(vm, t->r, t->n);
	pthread_mutex_unlock(&t->lock);
	return r;
}

void irq_msi_fire(struct vm *vm, unsigned int id)
{
	uint64_t one = 1;
	int fd;

	/* n only grows, and fd[id] is set before n covers it; a freed
	 * route's fd is -1 (only its removed device fired it). */
	if (id >= __atomic_load_n(&vm->irq->n, __ATOMIC_ACQUIRE))
		return;
	fd = __atomic_load_n(&vm->irq->fd[id], __ATOMIC_ACQUIRE);
	if (fd >= 0 && write(fd, &one, sizeof(one)) < 0)
		pr_debug("MSI eventfd: %s", strerror(errno));
}
