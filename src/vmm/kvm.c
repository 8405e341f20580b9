/* The only file issuing VM-level KVM ioctls. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <linux/kvm.h>

#include "arch/x86/arch.h"
#include "log.h"
#include "util.h"
#include "vm.h"

int kvm_open(struct vm *vm)
{
	int r;

	vm->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (vm->kvm_fd < 0) {
		r = -errno;
		if (r == -ENOENT)
			pr_err("/dev/kvm does not exist: enable virtualization in the firmware and load the KVM module (modprobe kvm_intel or kvm_amd)");
		else if (r == -EACCES || r == -EPERM)
			pr_err("no permission to open /dev/kvm: run kvmm as root or add your user to the 'kvm' group");
		else
			pr_err("cannot open /dev/kvm: %s", strerror(-r));
		return r;
	}
	if (ioctl(vm->kvm_fd, KVM_GET_API_VERSION, 0) != KVM_API_VERSION) {
		pr_err("/dev/kvm speaks an unsupported KVM API version: use a Linux kernel with KVM API %d",
		       KVM_API_VERSION);
		return -ENOTSUP;
	}
	r = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_MAX_VCPUS);
	if (r <= 0)
		r = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_NR_VCPUS);
	vm->max_vcpus = r > 0 ? r : 1;
	vm->run_size = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (vm->run_size <= 0) {
		pr_err("KVM_GET_VCPU_MMAP_SIZE failed: %s", strerror(errno));
		return -errno;
	}
	return 0;
}

static int kvm_set_region_flags(struct vm *vm, unsigned int slot,
				const struct guest_region *r, uint32_t flags)
{
	struct kvm_userspace_memory_region reg = {
		.slot = slot,
		.flags = flags,
		.guest_phys_addr = r->gpa,
		.memory_size = r->size,
		.userspace_addr = (uintptr_t)r->hva,
	};

	if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &reg) < 0)
		return -errno;
	return 0;
}

static int kvm_set_region(struct vm *vm, unsigned int slot,
			  const struct guest_region *r)
{
	return kvm_set_region_flags(vm, slot, r, 0);
}

int kvm_dirty_log(struct vm *vm, bool on)
{
	unsigned int i;
	int r;

	for (i = 0; i < vm->mem.nregions; i++) {
		r = kvm_set_region_flags(vm, i, &vm->mem.regions[i],
					 on ? KVM_MEM_LOG_DIRTY_PAGES : 0);
		if (r)
			return r;
	}
	return 0;
}

int kvm_take_dirty(struct vm *vm, uint8_t *out)
{
	uint64_t first = 0, npages, w, i, *bm;
	unsigned int s;

	for (s = 0; s < vm->mem.nregions; s++) {
		struct kvm_dirty_log log = { .slot = s };

		npages = vm->mem.regions[s].size / 4096;
		bm = calloc((npages + 63) / 64, sizeof(uint64_t));
		if (!bm)
			return -ENOMEM;
		log.dirty_bitmap = bm;
		if (ioctl(vm->vm_fd, KVM_GET_DIRTY_LOG, &log) < 0) {
			int e = errno;

			free(bm);
			return -e;
		}
		/* A slot starts at any page of the stream's count: bit by bit. */
		for (i = 0; i < (npages + 63) / 64; i++) {
			for (w = bm[i]; w; w &= w - 1) {
				uint64_t p = first + i * 64 + __builtin_ctzll(w);

				out[p / 8] |= 1u << (p % 8);
			}
		}
		free(bm);
		first += npages;
	}
	return 0;
}

/* The slot of each stream page; a range of pages in slot-local pages,
 * widened to what KVM_CLEAR_DIRTY_LOG takes: 64-page aligned, or up to
 * the slot's end. */
int kvm_clear_dirty(struct vm *vm, const uint8_t *bm, uint64_t first, uint64_t n)
{
	uint64_t sfirst = 0, snpages, a, b, lo, hi, p, *mask;
	unsigned int s;
	int r = 0;

	if (!vm->dirty_manual)
		return 0;
	for (s = 0; s < vm->mem.nregions && !r; s++, sfirst += snpages) {
		struct kvm_clear_dirty_log c = { .slot = s };
		bool any = false;

		snpages = vm->mem.regions[s].size / 4096;
		a = MAX(first, sfirst);
		b = MIN(first + n, sfirst + snpages);
		if (a >= b)
			continue;
		lo = (a - sfirst) & ~63ULL;
		hi = MIN(((b - sfirst) + 63) & ~63ULL, snpages);
		mask = calloc((hi - lo + 63) / 64, sizeof(uint64_t));
		if (!mask)
			return -ENOMEM;
		/* Only the pages the caller is about to read: any other bit
		 * KVM holds stays for the next kvm_take_dirty. */
		for (p = a; p < b; p++) {
			if (bm[p / 8] & (1u << (p % 8))) {
				uint64_t i = p - sfirst - lo;

				mask[i / 64] |= 1ULL << (i % 64);
				any = true;
			}
		}
		if (any) {
			c.first_page = lo;
			c.num_pages = hi - lo;
			c.dirty_bitmap = mask;
			if (ioctl(vm->vm_fd, KVM_CLEAR_DIRTY_LOG, &c) < 0)
				r = -errno;
		}
		free(mask);
	}
	return r;
}

/* Manual protect when KVM has it: KVM_GET_DIRTY_LOG then no longer
 * write-protects every page it reports at once, so a page the guest
 * keeps writing faults once per chunk sent, not after every round.
 * Not KVM_DIRTY_LOG_INITIALLY_SET: round 0 sends the touched pages
 * from kvmm's own view, and an all-set log would send every page of
 * RAM again in round 1.  KVMM_DIRTY_LOG=get keeps the old mode (to
 * compare the two, tools/bench/migrate). */
static void kvm_dirty_mode(struct vm *vm)
{
	struct kvm_enable_cap cap = { .cap = KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 };
	const char *env = getenv("KVMM_DIRTY_LOG");
	int have;

	vm->dirty_manual = false;
	have = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2);
	if (env && !strcmp(env, "get")) {
		pr_debug("KVM dirty log: KVM_GET_DIRTY_LOG protects (KVMM_DIRTY_LOG=get)");
		return;
	}
	if (have <= 0 || !(have & KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE)) {
		pr_debug("KVM dirty log: KVM_GET_DIRTY_LOG protects (no KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2)");
		return;
	}
	cap.args[0] = KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE;
	if (ioctl(vm->vm_fd, KVM_ENABLE_CAP, &cap) < 0) {
		pr_debug("KVM dirty log: KVM_GET_DIRTY_LOG protects (manual protect refused: %s)",
			 strerror(errno));
		return;
	}
	vm->dirty_manual = true;
	pr_debug("KVM dirty log: manual protect, KVM_CLEAR_DIRTY_LOG per chunk sent");
}

int kvm_create_vm(struct vm *vm)
{
	unsigned int i;
	int r;

	vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
	if (vm->vm_fd < 0) {
		r = -errno;
		pr_err("KVM_CREATE_VM failed: %s", strerror(-r));
		return r;
	}
	/* Before the slots: how their dirty log behaves. */
	kvm_dirty_mode(vm);
	for (i = 0; i < vm->mem.nregions; i++) {
		const struct guest_region *g = &vm->mem.regions[i];
		uint64_t t = now_ns();

		/* KVM allocates and zeroes its per-page bookkeeping for the
		 * whole slot here (docs/kvmm.md, Memory): the one part of a
		 * start that grows with the configured RAM. */
		r = kvm_set_region(vm, i, g);
		t = now_ns() - t;
		vm->slots_ns += t;
		pr_debug("KVM memory slot %u: %llu MiB at 0x%llx, %llu us", i,
			 (unsigned long long)(g->size >> 20),
			 (unsigned long long)g->gpa, (unsigned long long)(t / 1000));
		if (r) {
			pr_err("cannot give %llu MiB of guest memory to KVM: %s",
			       (unsigned long long)(vm->mem.regions[i].size >> 20),
			       strerror(-r));
			return r;
		}
	}
	return arch_vm_init(vm);
}

void kvm_destroy_vm(struct vm *vm)
{
	if (vm->vm_fd >= 0)
		close(vm->vm_fd);
	vm->vm_fd = -1;
}

int kvm_irq_line(struct vm *vm, unsigned int gsi, int level)
{
	struct kvm_irq_level irq = { .irq = gsi, .level = level };

	if (ioctl(vm->vm_fd, KVM_IRQ_LINE, &irq) < 0)
		return -errno;
	return 0;
}

/* kvmclock must not jump by the time spent paused, or the guest sees its
 * clock leap forward and its watchdogs fire. */
int kvm_clock_save(struct vm *vm)
{
	struct kvm_clock_data *c = (struct kvm_clock_data *)vm->clock_data;

	_Static_assert(sizeof(vm->clock_data) >= sizeof(struct kvm_clock_data),
		       "clock_data too small");
	memset(c, 0, sizeof(*c));
	if (ioctl(vm->vm_fd, KVM_GET_CLOCK, c) < 0)
		return -errno;
	vm->clock_saved = true;
	return 0;
}

int kvm_clock_restore(struct vm *vm)
{
	struct kvm_clock_data *c = (struct kvm_clock_data *)vm->clock_data;

	if (!vm->clock_saved)
		return 0;
	vm->clock_saved = false;
	c->flags = 0;
	if (ioctl(vm->vm_fd, KVM_SET_CLOCK, c) < 0)
		return -errno;
	return 0;
}

/* KVM_CREATE_IRQCHIP's default routes, which KVM_SET_GSI_ROUTING
 * replaces wholesale and so must be repeated: GSIs 0-15 go to the
 * IOAPIC pin of the same number and to the 8259 pair (master pins 0-7,
 * slave pins 0-7), GSIs 16-23 to the IOAPIC only. */
#define KVM_IOAPIC_PINS 24
#define KVM_PIC_IRQS 16

static unsigned int default_routes(struct kvm_irq_routing_entry *e)
{
	unsigned int gsi, n = 0;

	for (gsi = 0; gsi < KVM_IOAPIC_PINS; gsi++) {
		e[n++] = (struct kvm_irq_routing_entry){
			.gsi = gsi, .type = KVM_IRQ_ROUTING_IRQCHIP,
			.u.irqchip = { KVM_IRQCHIP_IOAPIC, gsi } };
		if (gsi < KVM_PIC_IRQS)
			e[n++] = (struct kvm_irq_routing_entry){
				.gsi = gsi, .type = KVM_IRQ_ROUTING_IRQCHIP,
				.u.irqchip = { gsi < 8 ? KVM_IRQCHIP_PIC_MASTER :
					       KVM_IRQCHIP_PIC_SLAVE, gsi % 8 } };
	}
	return n;
}

int kvm_set_msi_routes(struct vm *vm, const struct kvm_msi_route *r,
		       unsigned int n)
{
	struct kvm_irq_routing *t;
	unsigned int i, k;
	int ret = 0;

	t = calloc(1, sizeof(*t) + (KVM_IOAPIC_PINS + KVM_PIC_IRQS + n) *
		   sizeof(t->entries[0]));
	if (!t)
		return -ENOMEM;
	k = default_routes(t->entries);
	for (i = 0; i < n; i++) {
		if (!r[i].used)
			continue;
		t->entries[k++] = (struct kvm_irq_routing_entry){
			.gsi = r[i].gsi, .type = KVM_IRQ_ROUTING_MSI,
			.u.msi = { .address_lo = (uint32_t)r[i].addr,
				   .address_hi = r[i].addr >> 32,
				   .data = r[i].data } };
	}
	t->nr = k;
	if (ioctl(vm->vm_fd, KVM_SET_GSI_ROUTING, t) < 0)
		ret = -errno;
	free(t);
	return ret;
}

int kvm_irqfd(struct vm *vm, int fd, unsigned int gsi, bool assign)
{
	struct kvm_irqfd i = { .fd = fd, .gsi = gsi,
			       .flags = assign ? 0 : KVM_IRQFD_FLAG_DEASSIGN };

	return ioctl(vm->vm_fd, KVM_IRQFD, &i) < 0 ? -errno : 0;
}

int kvm_ioeventfd(struct vm *vm, uint64_t addr, unsigned int len, int fd,
		  bool assign)
{
	struct kvm_ioeventfd e = { .addr = addr, .len = len, .fd = fd,
				   .flags = assign ? 0 : KVM_IOEVENTFD_FLAG_DEASSIGN };

	return ioctl(vm->vm_fd, KVM_IOEVENTFD, &e) < 0 ? -errno : 0;
}
