/* A whole VM to and from the state stream: what KVM holds (vCPUs,
 * irqchip, PIT, kvmclock), each device's own record, then guest memory. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <linux/kvm.h>

#include <json-c/json.h>

#include "config.h"
#include "log.h"
#include "migration.h"
#include "pci/hotplug.h"
#include "postcopy.h"
#include "util.h"
#include "vm.h"

#define ERR(...) snprintf(err, errlen, __VA_ARGS__)

/* --- vCPU --- */

/* The MSRs a guest's state needs across a restore (the architectural
 * ones Linux and our test guest use, KVM's paravirtual ones, MTRRs),
 * kept only where KVM lists them on this host. */
static const uint32_t msr_candidates[] = {
	0x10,			/* TSC */
	0x3b,			/* TSC_ADJUST */
	0x174, 0x175, 0x176,	/* SYSENTER_CS/ESP/EIP */
	0x1a0,			/* MISC_ENABLE */
	0x277,			/* PAT */
	0x2ff,			/* MTRR default type */
	0x250, 0x258, 0x259,	/* fixed MTRRs */
	0x268, 0x269, 0x26a, 0x26b, 0x26c, 0x26d, 0x26e, 0x26f,
	0x6e0,			/* TSC_DEADLINE */
	0xc0000081, 0xc0000082, 0xc0000083, 0xc0000084,	/* STAR, LSTAR, CSTAR, FMASK */
	0xc0000102,		/* KERNEL_GS_BASE */
	0xc0000103,		/* TSC_AUX */
	0x11, 0x12,		/* kvmclock, old numbers */
	0x4b564d00, 0x4b564d01,	/* kvmclock wall clock, system time */
	0x4b564d02,		/* async page fault */
	0x4b564d03,		/* steal time */
	0x4b564d04,		/* PV EOI */
	0x4b564d05,		/* poll control */
};
#define MSR_MTRR_VAR_FIRST	0x200
#define MSR_MTRR_VAR_LAST	0x20f
#define VCPU_MAX_MSRS		64
#define VCPU_MAX_XSAVE		(64 * 1024)

enum { VCPU_HAS_XSAVE = 1, VCPU_HAS_XCRS = 2, VCPU_HAS_DEBUGREGS = 4 };

struct vcpu_blob {
	uint32_t flags;
	uint32_t nmsrs;
	uint32_t xsave_len;
	uint32_t reserved;
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kvm_fpu fpu;
	struct kvm_xcrs xcrs;
	struct kvm_lapic_state lapic;
	struct kvm_vcpu_events events;
	struct kvm_mp_state mp;
	struct kvm_debugregs dregs;
};

struct msr_rec {
	uint32_t index, reserved;
	uint64_t data;
};

static bool msr_wanted(uint32_t idx)
{
	unsigned int i;

	if (idx >= MSR_MTRR_VAR_FIRST && idx <= MSR_MTRR_VAR_LAST)
		return true;
	for (i = 0; i < ARRAY_SIZE(msr_candidates); i++)
		if (msr_candidates[i] == idx)
			return true;
	return false;
}

static const uint32_t mtrr_msrs[] = {
	0x2ff, 0x250, 0x258, 0x259,
	0x268, 0x269, 0x26a, 0x26b, 0x26c, 0x26d, 0x26e, 0x26f,
};

static bool msr_in(const uint32_t *list, unsigned int n, uint32_t idx)
{
	unsigned int i;

	for (i = 0; i < n; i++)
		if (list[i] == idx)
			return true;
	return false;
}

/* This host's list of MSRs to carry, in candidate order (TSC first). */
static int msr_list(struct vm *vm, uint32_t *out, unsigned int *n)
{
	struct kvm_msr_list probe = { .nmsrs = 0 }, *l;
	unsigned int i, k = 0;

	if (ioctl(vm->kvm_fd, KVM_GET_MSR_INDEX_LIST, &probe) < 0 && errno != E2BIG)
		return -errno;
	l = calloc(1, sizeof(*l) + probe.nmsrs * sizeof(uint32_t));
	if (!l)
		return -ENOMEM;
	l->nmsrs = probe.nmsrs;
	if (ioctl(vm->kvm_fd, KVM_GET_MSR_INDEX_LIST, l) < 0) {
		free(l);
		return -errno;
	}
	for (i = 0; i < l->nmsrs && k < VCPU_MAX_MSRS; i++)
		if (msr_wanted(l->indices[i]))
			out[k++] = l->indices[i];
	free(l);
	/* KVM leaves the MTRRs out of its list (they depend on the guest's
	 * CPUID), yet the guest runs with them enabled since its set-up:
	 * carry them all, and get_msrs drops any KVM then refuses. */
	for (i = 0; i < ARRAY_SIZE(mtrr_msrs) && k < VCPU_MAX_MSRS; i++)
		if (!msr_in(out, k, mtrr_msrs[i]))
			out[k++] = mtrr_msrs[i];
	for (i = MSR_MTRR_VAR_FIRST; i <= MSR_MTRR_VAR_LAST && k < VCPU_MAX_MSRS; i++)
		if (!msr_in(out, k, i))
			out[k++] = i;
	*n = k;
	return 0;
}

static int xsave_size(struct vm *vm)
{
	int n;

	if (ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE) <= 0)
		return 0;
	n = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE2);
	return n > (int)sizeof(struct kvm_xsave) ? n : (int)sizeof(struct kvm_xsave);
}

/* Reads the MSRs in idx[], dropping any KVM will not read (it stops at
 * the first): the record keeps the ones it has. */
static int get_msrs(struct vcpu *v, uint32_t *idx, unsigned int *n, struct msr_rec *out)
{
	struct {
		struct kvm_msrs h;
		struct kvm_msr_entry e[VCPU_MAX_MSRS];
	} m;
	unsigned int i;
	int got;

	for (;;) {
		memset(&m, 0, sizeof(m));
		m.h.nmsrs = *n;
		for (i = 0; i < *n; i++)
			m.e[i].index = idx[i];
		got = ioctl(v->fd, KVM_GET_MSRS, &m);
		if (got < 0)
			return -errno;
		if ((unsigned int)got == *n)
			break;
		memmove(idx + got, idx + got + 1, (*n - got - 1) * sizeof(*idx));
		(*n)--;
	}
	for (i = 0; i < *n; i++)
		out[i] = (struct msr_rec){ m.e[i].index, 0, m.e[i].data };
	return 0;
}

static int save_vcpu(struct vm *vm, struct vcpu *v, struct state_buf *out,
		     const uint32_t *msrs, unsigned int nmsrs, int xlen)
{
	struct vcpu_blob b;
	struct msr_rec rec[VCPU_MAX_MSRS];
	uint32_t idx[VCPU_MAX_MSRS];
	void *xs = NULL;
	int r;

	memset(&b, 0, sizeof(b));
	memcpy(idx, msrs, nmsrs * sizeof(*idx));
	if (ioctl(v->fd, KVM_GET_REGS, &b.regs) < 0 ||
	    ioctl(v->fd, KVM_GET_SREGS, &b.sregs) < 0 ||
	    ioctl(v->fd, KVM_GET_LAPIC, &b.lapic) < 0 ||
	    ioctl(v->fd, KVM_GET_VCPU_EVENTS, &b.events) < 0 ||
	    ioctl(v->fd, KVM_GET_MP_STATE, &b.mp) < 0)
		return -errno;
	if (ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XCRS) > 0 &&
	    ioctl(v->fd, KVM_GET_XCRS, &b.xcrs) == 0)
		b.flags |= VCPU_HAS_XCRS;
	if (ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_DEBUGREGS) > 0 &&
	    ioctl(v->fd, KVM_GET_DEBUGREGS, &b.dregs) == 0)
		b.flags |= VCPU_HAS_DEBUGREGS;
	if (xlen) {
		xs = calloc(1, xlen);
		if (!xs)
			return -ENOMEM;
		if (ioctl(v->fd, xlen > (int)sizeof(struct kvm_xsave) ? KVM_GET_XSAVE2 :
			  KVM_GET_XSAVE, xs) < 0) {
			r = -errno;
			free(xs);
			return r;
		}
		b.flags |= VCPU_HAS_XSAVE;
		b.xsave_len = xlen;
	} else if (ioctl(v->fd, KVM_GET_FPU, &b.fpu) < 0) {
		return -errno;
	}
	r = get_msrs(v, idx, &nmsrs, rec);
	b.nmsrs = nmsrs;
	if (!r)
		r = state_put(out, &b, sizeof(b));
	if (!r)
		r = state_put(out, rec, nmsrs * sizeof(rec[0]));
	if (!r && xs)
		r = state_put(out, xs, xlen);
	free(xs);
	return r;
}

/* The order QEMU found KVM needs: registers, FPU, sregs (APIC base),
 * MSRs (TSC), then MP state, LAPIC and events. */
static int load_vcpu(struct vm *vm, struct vcpu *v, const uint8_t *p, size_t len,
		     char *err, size_t errlen)
{
	struct vcpu_blob b;
	const struct msr_rec *rec;
	struct {
		struct kvm_msrs h;
		struct kvm_msr_entry e[VCPU_MAX_MSRS];
	} m;
	unsigned int i;
	int xlen = xsave_size(vm), r;

	if (len < sizeof(b))
		goto bad;
	memcpy(&b, p, sizeof(b));
	/* GUEST: sizes are checked here, the values by KVM's ioctls. */
	if (b.nmsrs > VCPU_MAX_MSRS || b.xsave_len > VCPU_MAX_XSAVE ||
	    len != sizeof(b) + b.nmsrs * sizeof(*rec) + b.xsave_len)
		goto bad;
	if (b.flags & VCPU_HAS_XSAVE ? (int)b.xsave_len != xlen : b.xsave_len != 0) {
		ERR("vCPU %u: the stream's XSAVE area is %u bytes, this host's %d: restore on a host with the same CPU features",
		    v->id, b.xsave_len, xlen);
		return -EINVAL;
	}
	rec = (const struct msr_rec *)(p + sizeof(b));
	memset(&m, 0, sizeof(m));
	m.h.nmsrs = b.nmsrs;
	for (i = 0; i < b.nmsrs; i++) {
		m.e[i].index = rec[i].index;
		m.e[i].data = rec[i].data;
	}
	if (ioctl(v->fd, KVM_SET_REGS, &b.regs) < 0)
		goto kvm;
	if (b.flags & VCPU_HAS_XSAVE) {
		if (ioctl(v->fd, KVM_SET_XSAVE, p + sizeof(b) + b.nmsrs * sizeof(*rec)) < 0)
			goto kvm;
	} else if (ioctl(v->fd, KVM_SET_FPU, &b.fpu) < 0) {
		goto kvm;
	}
	if ((b.flags & VCPU_HAS_XCRS) && ioctl(v->fd, KVM_SET_XCRS, &b.xcrs) < 0)
		goto kvm;
	if (ioctl(v->fd, KVM_SET_SREGS, &b.sregs) < 0)
		goto kvm;
	r = ioctl(v->fd, KVM_SET_MSRS, &m);
	if (r < 0)
		goto kvm;
	if ((unsigned int)r != b.nmsrs) {
		ERR("vCPU %u: KVM refused MSR 0x%x from the stream", v->id, rec[r].index);
		return -EINVAL;
	}
	b.events.flags &= KVM_VCPUEVENT_VALID_SHADOW | KVM_VCPUEVENT_VALID_SMM;
	b.events.flags |= KVM_VCPUEVENT_VALID_NMI_PENDING | KVM_VCPUEVENT_VALID_SIPI_VECTOR;
	if (ioctl(v->fd, KVM_SET_MP_STATE, &b.mp) < 0 ||
	    ioctl(v->fd, KVM_SET_LAPIC, &b.lapic) < 0 ||
	    ioctl(v->fd, KVM_SET_VCPU_EVENTS, &b.events) < 0)
		goto kvm;
	if ((b.flags & VCPU_HAS_DEBUGREGS) && ioctl(v->fd, KVM_SET_DEBUGREGS, &b.dregs) < 0)
		goto kvm;
	return 0;
bad:
	ERR("vCPU %u: malformed vcpu section", v->id);
	return -EINVAL;
kvm:
	r = -errno;
	ERR("vCPU %u: KVM refused the stream's state: %s", v->id, strerror(errno));
	return r;
}

/* --- memory --- */

static bool page_bit(const uint8_t *bm, uint64_t p)
{
	return bm[p / 8] & (1u << (p % 8));
}

static bool page_is_zero(const uint8_t *pg)
{
	const uint64_t *q = (const uint64_t *)pg;
	unsigned int i;

	for (i = 0; i < STREAM_PAGE_SIZE / 8; i++)
		if (q[i])
			return false;
	return true;
}

/* Pages the guest touched: resident or swapped out (/proc/self/pagemap;
 * mincore() misses swapped pages), plus those a restore mapped from its
 * file that were not touched since; all-zero pages are left out. */
static uint8_t *touched_pages(struct vm *vm, uint64_t *count)
{
	uint64_t npages = vm->mem.size / STREAM_PAGE_SIZE, p, i, n;
	uint64_t ent[512];
	uint8_t *bm = calloc(1, (npages + 7) / 8 + 1);
	int fd;

	if (!bm)
		return NULL;
	fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	for (p = 0; p < npages; p += n) {
		n = MIN(npages - p, ARRAY_SIZE(ent));
		if (fd < 0 || pread(fd, ent, n * 8,
				    ((uintptr_t)vm->mem.base / STREAM_PAGE_SIZE + p) * 8) != (ssize_t)(n * 8)) {
			/* Unknown: every page is a candidate. */
			for (i = 0; i < n; i++)
				ent[i] = 1ULL << 63;
		}
		for (i = 0; i < n; i++) {
			bool cand = ent[i] >> 62 ||
				    (vm->restored_pages && page_bit(vm->restored_pages, p + i));

			if (cand && !page_is_zero(vm->mem.base + (p + i) * STREAM_PAGE_SIZE)) {
				bm[(p + i) / 8] |= 1u << ((p + i) % 8);
				(*count)++;
			}
		}
	}
	if (fd >= 0)
		close(fd);
	return bm;
}

/* --- save --- */

struct layout_rec {
	uint32_t page_size, nregions;
	uint64_t mem_size;
	struct { uint64_t gpa, size; } r[GUEST_MEM_MAX_REGIONS];
};

#define DEV_NAME_LEN 32

static int put_section(struct stream_writer *w, uint32_t type, uint32_t index,
		       const void *p, size_t len, char *err, size_t errlen)
{
	int r = stream_write_section(w, type, index, p, len);

	if (r)
		ERR("cannot write the %s section: %s", stream_section_name(type), strerror(-r));
	return r;
}

/* The configuration the VM runs as now: the one it started with, its
 * hot-added devices ("hotplug", slot and id with their keys) and, with
 * vCPU hotplug, the vCPUs it has ("vcpus_present") in place of those it
 * was started or restored with. */
char *migration_stream_config(struct vm *vm)
{
	struct json_object *o = json_tokener_parse(vm->config_json), *hp, *cpus;
	unsigned int i;
	char *s;

	if (!o || !json_object_is_type(o, json_type_object)) {
		json_object_put(o);
		return NULL;
	}
	json_object_object_del(o, "hotplug");
	json_object_object_del(o, "vcpus_present");
	hp = pci_hotplug_config(vm);
	if (!hp) {
		json_object_put(o);
		return NULL;
	}
	if (json_object_array_length(hp))
		json_object_object_add(o, "hotplug", hp);
	else
		json_object_put(hp);
	if (vm->cfg->max_cpus > vm->cfg->cpus) {
		cpus = json_object_new_array();
		for (i = 0; i < vm->ncpus; i++)
			if (vm->cpu_present[i])
				json_object_array_add(cpus, json_object_new_int(i));
		json_object_object_add(o, "vcpus_present", cpus);
	}
	s = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
	json_object_put(o);
	return s;
}

int migration_write_prologue(struct vm *vm, struct stream_writer *w, const char *config,
			     char *err, size_t errlen)
{
	struct layout_rec lay;
	unsigned int i;
	int r;

	memset(&lay, 0, sizeof(lay));
	lay.page_size = STREAM_PAGE_SIZE;
	lay.nregions = vm->mem.nregions;
	lay.mem_size = vm->mem.size;
	r = stream_write_header(w);
	if (r) {
		ERR("cannot write the stream header: %s", strerror(-r));
		return r;
	}
	r = put_section(w, SEC_CONFIG, 0, config, strlen(config), err, errlen);
	if (r)
		return r;
	for (i = 0; i < vm->mem.nregions; i++) {
		lay.r[i].gpa = vm->mem.regions[i].gpa;
		lay.r[i].size = vm->mem.regions[i].size;
	}
	return put_section(w, SEC_LAYOUT, 0, &lay, sizeof(lay), err, errlen);
}

uint8_t *migration_touched_pages(struct vm *vm, uint64_t *count)
{
	*count = 0;
	return touched_pages(vm, count);
}

static int write_state(struct vm *vm, struct stream_writer *w,
		       uint8_t *(*pages)(struct vm *vm, void *opaque, uint64_t *count),
		       void *opaque, uint64_t *npages, bool postcopy, char *err, size_t errlen)
{
	struct kvm_irqchip chip;
	struct kvm_pit_state2 pit;
	struct kvm_clock_data clk;
	struct state_buf b = { 0 }, *devs = NULL;
	struct device *d;
	uint32_t msrs[VCPU_MAX_MSRS];
	unsigned int nmsrs = 0, ndevs = 0, i, k;
	uint64_t count = 0;
	uint8_t *bm;
	int xlen, r;

	r = msr_list(vm, msrs, &nmsrs);
	if (r) {
		ERR("KVM_GET_MSR_INDEX_LIST: %s", strerror(-r));
		return r;
	}
	xlen = xsave_size(vm);
	/* The devices' records first, though they go after the clock: their
	 * hooks complete what is in flight (virtio-blk) and interrupt the
	 * guest for it, and those interrupts must be in the local APICs and
	 * irqchips read below, or the loaded guest never gets them. */
	for (d = vm->devices; d; d = d->next)
		ndevs++;
	devs = calloc(ndevs ? ndevs : 1, sizeof(*devs));
	if (!devs) {
		ERR("out of memory for the devices' state");
		return -ENOMEM;
	}
	for (d = vm->devices, k = 0; d; d = d->next, k++) {
		char name[DEV_NAME_LEN] = { 0 };

		snprintf(name, sizeof(name), "%s", d->ops->name);
		r = state_put(&devs[k], name, sizeof(name));
		pthread_mutex_lock(&d->lock);
		if (!r && d->ops->save)
			r = d->ops->save(d, &devs[k]);
		pthread_mutex_unlock(&d->lock);
		if (r) {
			ERR("device %s (%u) could not save its state: %s", d->ops->name, k, strerror(-r));
			goto out;
		}
	}
	/* The vCPUs the guest has, by id: a restore builds the same set
	 * from the configuration's vcpus_present. */
	for (i = 0; i < vm->ncpus; i++) {
		if (!vm->cpu_present[i])
			continue;
		b.len = 0;
		r = save_vcpu(vm, &vm->vcpus[i], &b, msrs, nmsrs, xlen);
		if (r) {
			ERR("cannot read vCPU %u's state from KVM: %s", i, strerror(-r));
			goto out;
		}
		r = put_section(w, SEC_VCPU, i, b.data, b.len, err, errlen);
		if (r)
			goto out;
	}
	for (i = 0; i < 3; i++) {
		memset(&chip, 0, sizeof(chip));
		chip.chip_id = i;
		if (ioctl(vm->vm_fd, KVM_GET_IRQCHIP, &chip) < 0) {
			r = -errno;
			ERR("KVM_GET_IRQCHIP %u: %s", i, strerror(-r));
			goto out;
		}
		r = put_section(w, SEC_IRQCHIP, i, &chip, sizeof(chip), err, errlen);
		if (r)
			goto out;
	}
	memset(&pit, 0, sizeof(pit));
	if (ioctl(vm->vm_fd, KVM_GET_PIT2, &pit) < 0) {
		r = -errno;
		ERR("KVM_GET_PIT2: %s", strerror(-r));
		goto out;
	}
	r = put_section(w, SEC_PIT, 0, &pit, sizeof(pit), err, errlen);
	if (r)
		goto out;
	/* The clock as the pause left it: the guest resumes from there. */
	if (vm->clock_saved) {
		memcpy(&clk, vm->clock_data, sizeof(clk));
	} else if (ioctl(vm->vm_fd, KVM_GET_CLOCK, &clk) < 0) {
		r = -errno;
		ERR("KVM_GET_CLOCK: %s", strerror(-r));
		goto out;
	}
	r = put_section(w, SEC_CLOCK, 0, &clk, sizeof(clk), err, errlen);
	if (r)
		goto out;
	for (k = 0; k < ndevs; k++) {
		r = put_section(w, SEC_DEVICE, k, devs[k].data, devs[k].len, err, errlen);
		if (r)
			goto out;
	}
	/* After the devices' save hooks: they completed the requests in
	 * flight, so the pages those wrote are in what pages() finds. */
	bm = pages(vm, opaque, &count);
	if (!bm) {
		r = -ENOMEM;
		ERR("out of memory for the page bitmap");
		goto out;
	}
	if (postcopy) {
		/* Not the pages: which ones the destination must wait for. */
		uint64_t n = vm->mem.size / STREAM_PAGE_SIZE;
		size_t bmlen = (n + 7) / 8;
		uint8_t *pl = malloc(8 + bmlen);

		r = -ENOMEM;
		if (pl) {
			memcpy(pl, &n, 8);
			memcpy(pl + 8, bm, bmlen);
			r = stream_write_section(w, SEC_POSTCOPY, 0, pl, 8 + bmlen);
			free(pl);
		}
	} else {
		r = stream_write_memory(w, vm->mem.base, vm->mem.size, bm);
	}
	free(bm);
	if (r) {
		ERR("cannot write guest memory: %s", strerror(-r));
		goto out;
	}
	r = put_section(w, SEC_END, 0, "", 0, err, errlen);
	if (!r && npages)
		*npages = count;
out:
	for (k = 0; k < ndevs; k++)
		state_buf_free(&devs[k]);
	free(devs);
	state_buf_free(&b);
	return r;
}

int migration_write_state(struct vm *vm, struct stream_writer *w,
			  uint8_t *(*pages)(struct vm *vm, void *opaque, uint64_t *count),
			  void *opaque, uint64_t *npages, char *err, size_t errlen)
{
	return write_state(vm, w, pages, opaque, npages, false, err, errlen);
}

int migration_write_state_postcopy(struct vm *vm, struct stream_writer *w,
				   uint8_t *(*pages)(struct vm *vm, void *opaque, uint64_t *count),
				   void *opaque, char *err, size_t errlen)
{
	return write_state(vm, w, pages, opaque, NULL, true, err, errlen);
}

static uint8_t *save_pages(struct vm *vm, void *opaque, uint64_t *count)
{
	return migration_touched_pages(vm, count);
}

int migration_save(struct vm *vm, int fd, struct save_result *res,
		   char *err, size_t errlen)
{
	struct stream_writer w;
	uint64_t t0 = now_ns(), pages = 0;
	char *config = migration_stream_config(vm);
	int r;

	if (!config) {
		ERR("out of memory for the stream's configuration");
		return -ENOMEM;
	}
	stream_writer_init(&w, fd);
	r = migration_write_prologue(vm, &w, config, err, errlen);
	free(config);
	if (!r)
		r = migration_write_state(vm, &w, save_pages, NULL, &pages, err, errlen);
	if (!r && res) {
		res->bytes = w.off;
		res->pages = pages;
		res->ns = now_ns() - t0;
	}
	return r;
}

int migration_save_file(struct vm *vm, const char *path, struct save_result *res,
			char *err, size_t errlen)
{
	char *tmp = NULL, *dir = NULL;
	int fd, dfd, r;

	if (asprintf(&tmp, "%s.new", path) < 0)
		return -ENOMEM;
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		r = -errno;
		ERR("cannot create %s: %s", tmp, strerror(-r));
		free(tmp);
		return r;
	}
	r = migration_save(vm, fd, res, err, errlen);
	if (!r && fsync(fd)) {
		r = -errno;
		ERR("cannot write %s: fsync: %s", tmp, strerror(-r));
	}
	if (close(fd) && !r) {
		r = -errno;
		ERR("cannot write %s: %s", tmp, strerror(-r));
	}
	if (!r && rename(tmp, path)) {
		r = -errno;
		ERR("cannot rename %s to %s: %s", tmp, path, strerror(-r));
	}
	if (r) {
		unlink(tmp);
	} else {
		/* The rename itself made durable. */
		dir = strdup(path);
		dfd = dir ? open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
		if (dfd >= 0) {
			fsync(dfd);
			close(dfd);
		}
		free(dir);
	}
	free(tmp);
	return r;
}

int migration_save_fd(struct vm *vm, int fd, struct save_result *res,
		      char *err, size_t errlen)
{
	int r = migration_save(vm, fd, res, err, errlen);

	/* EINVAL: a pipe or socket, nothing to make durable. */
	if (!r && fsync(fd) && errno != EINVAL) {
		r = -errno;
		ERR("cannot write the state: fsync: %s", strerror(-r));
	}
	return r;
}

/* --- restore --- */

static int next_section(struct restore *rs, uint32_t type, uint32_t index,
			struct stream_section_hdr *h, char *err, size_t errlen)
{
	int r = 0;

	if (rs->have_next) {
		*h = rs->next;
		rs->have_next = false;
	} else {
		r = stream_read_section_hdr(&rs->r, h);
	}
	if (r) {
		ERR("%s", rs->r.err);
		return r;
	}
	if (h->type != type || h->index != index) {
		ERR("unexpected %s section %u where the %s section %u belongs: the stream does not match this VM",
		    stream_section_name(h->type), h->index, stream_section_name(type), index);
		return -EINVAL;
	}
	return 0;
}

static int next_payload(struct restore *rs, uint32_t type, uint32_t index,
			uint8_t **p, size_t *len, char *err, size_t errlen)
{
	struct stream_section_hdr h;
	int r = next_section(rs, type, index, &h, err, errlen);

	if (r)
		return r;
	r = stream_read_payload(&rs->r, &h, p);
	if (r) {
		ERR("%s", rs->r.err);
		return r;
	}
	*len = h.len;
	return 0;
}


int migration_restore_open(struct restore *rs, const char *path, char *err, size_t errlen)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC), r;

	if (fd < 0) {
		r = -errno;
		memset(rs, 0, sizeof(*rs));
		rs->fd = -1;
		ERR("cannot open %s: %s", path, strerror(-r));
		return r;
	}
	return migration_restore_open_fd(rs, fd, path, err, errlen);
}

int migration_restore_open_fd(struct restore *rs, int fd, const char *name,
			      char *err, size_t errlen)
{
	struct layout_rec lay;
	uint8_t *p = NULL;
	size_t len;
	unsigned int i;
	int r;

	memset(rs, 0, sizeof(*rs));
	rs->fd = fd;
	stream_reader_init(&rs->r, rs->fd);
	r = stream_read_header(&rs->r);
	if (r) {
		ERR("%s: %s", name, rs->r.err);
		return r;
	}
	r = next_payload(rs, SEC_CONFIG, 0, &p, &len, err, errlen);
	if (r)
		return r;
	rs->config_json = malloc(len + 1);
	if (!rs->config_json) {
		free(p);
		return -ENOMEM;
	}
	memcpy(rs->config_json, p, len);
	rs->config_json[len] = '\0';
	free(p);
	r = next_payload(rs, SEC_LAYOUT, 0, &p, &len, err, errlen);
	if (r)
		return r;
	if (len != sizeof(lay)) {
		free(p);
		ERR("malformed layout section");
		return -EINVAL;
	}
	memcpy(&lay, p, sizeof(lay));
	free(p);
	if (lay.page_size != STREAM_PAGE_SIZE || !lay.nregions ||
	    lay.nregions > GUEST_MEM_MAX_REGIONS) {
		ERR("layout section: page size %u and %u RAM regions are not this kvmm's",
		    lay.page_size, lay.nregions);
		return -EINVAL;
	}
	rs->mem_size = lay.mem_size;
	rs->nregions = lay.nregions;
	for (i = 0; i < lay.nregions; i++) {
		rs->region_gpa[i] = lay.r[i].gpa;
		rs->region_size[i] = lay.r[i].size;
	}
	return 0;
}

int migration_check_config(const struct vm_config *s, const struct vm_config *c,
			   char *err, size_t errlen)
{
	unsigned int i;

	/* What the guest sees must be what it was saved with; the host
	 * side (image paths, taps, sockets, serial backends) may move. */
	if (c->cpus != s->cpus) {
		ERR("the stream's VM has %u vCPUs, not %u: a restore cannot change them", s->cpus, c->cpus);
		return -EINVAL;
	}
	if (c->max_cpus != s->max_cpus) {
		ERR("the stream's VM may have %u vCPUs, not %u: a restore cannot change it", s->max_cpus, c->max_cpus);
		return -EINVAL;
	}
	if (c->memory != s->memory) {
		ERR("the stream's VM has %llu MiB of memory, not %llu MiB: a restore cannot change it",
		    (unsigned long long)(s->memory >> 20), (unsigned long long)(c->memory >> 20));
		return -EINVAL;
	}
	if (c->ndisks != s->ndisks || c->nnets != s->nnets || c->rng != s->rng ||
	    c->has_console != s->has_console || c->balloon.present != s->balloon.present ||
	    c->vmcoreinfo != s->vmcoreinfo || c->pvm_compat != s->pvm_compat) {
		ERR("the devices differ from the stream's (disks, NICs, rng, console, balloon, vmcoreinfo, pvm_compat): a restore may change only host-side paths");
		return -EINVAL;
	}
	if (c->balloon.deflate_on_oom != s->balloon.deflate_on_oom ||
	    c->balloon.free_page_reporting != s->balloon.free_page_reporting) {
		ERR("the balloon's features differ from the stream's");
		return -EINVAL;
	}
	for (i = 0; i < c->max_cpus; i++) {
		if (config_cpu_present(c, i) != config_cpu_present(s, i)) {
			ERR("vCPU %u is %s in the stream's VM: a restore cannot change its vCPUs",
			    i, config_cpu_present(s, i) ? "present" : "absent");
			return -EINVAL;
		}
	}
	/* The hot-added devices: the guest knows each at its slot. */
	if (c->nhotplug != s->nhotplug) {
		ERR("the stream's VM has %u hot-added devices, not %u: a restore may change only their host-side paths and taps",
		    s->nhotplug, c->nhotplug);
		return -EINVAL;
	}
	for (i = 0; i < c->nhotplug; i++) {
		const struct hotplug_config *a = &s->hotplug[i], *b = &c->hotplug[i];

		/* The id is only kvmm's name for it: the host's to change. */
		if (a->type != b->type || a->slot != b->slot) {
			ERR("hot-added device %u is a %s in slot %u in the stream, not a %s in slot %u: a restore cannot move or change it",
			    i, a->type == HOTPLUG_BLK ? "disk" : "NIC", a->slot,
			    b->type == HOTPLUG_BLK ? "disk" : "NIC", b->slot);
			return -EINVAL;
		}
		if (a->type == HOTPLUG_BLK ?
		    (a->disk.readonly != b->disk.readonly || a->disk.blk_size != b->disk.blk_size ||
		     !!a->disk.serial != !!b->disk.serial ||
		     (a->disk.serial && strcmp(a->disk.serial, b->disk.serial))) :
		    (a->net.has_mac != b->net.has_mac || (a->net.has_mac && memcmp(a->net.mac, b->net.mac, 6)) ||
		     a->net.mtu != b->net.mtu)) {
			ERR("hot-added device %s differs from the stream's (readonly, blk_size, serial, mac or mtu): only its path or tap may change",
			    a->id);
			return -EINVAL;
		}
	}
	for (i = 0; i < c->ndisks; i++) {
		const struct disk_config *a = &s->disks[i], *b = &c->disks[i];

		if (a->readonly != b->readonly || a->blk_size != b->blk_size ||
		    !!a->serial != !!b->serial || (a->serial && strcmp(a->serial, b->serial))) {
			ERR("disk %u differs from the stream's (readonly, blk_size or serial): only its path may change", i);
			return -EINVAL;
		}
	}
	for (i = 0; i < c->nnets; i++) {
		const struct net_config *a = &s->nets[i], *b = &c->nets[i];

		if (a->has_mac != b->has_mac || (a->has_mac && memcmp(a->mac, b->mac, 6)) ||
		    a->mtu != b->mtu) {
			ERR("NIC %u differs from the stream's (mac or mtu): only its tap may change", i);
			return -EINVAL;
		}
	}
	return 0;
}

/* Maps runs of the stream's pages over guest RAM (MAP_PRIVATE: read on
 * first touch, copied on write), so restoring costs the same whatever
 * the guest's size; or reads them where the fd cannot be mapped. */
static int restore_memory(struct restore *rs, struct vm *vm,
			  const struct stream_section_hdr *h, char *err, size_t errlen)
{
	struct stream_mem_desc d;
	struct stat st;
	uint8_t *bm = NULL;
	uint64_t p, start, idx = 0, runs = 0, data_off, data_len;
	int r;

	r = stream_read_mem_meta(&rs->r, h, vm->mem.size, &d, &bm);
	if (r) {
		ERR("%s", rs->r.err);
		return r;
	}
	data_off = rs->r.off;
	data_len = d.present * STREAM_PAGE_SIZE;
	for (p = 0; p < d.npages; p++)
		if (page_bit(bm, p) && (p == 0 || !page_bit(bm, p - 1)))
			runs++;
	/* Each run is one mapping; stay well inside vm.max_map_count. */
	if (fstat(rs->fd, &st) || !S_ISREG(st.st_mode) || runs > 16384) {
		r = stream_read_mem_pages(&rs->r, &d, bm, vm->mem.base, vm->mem.size);
		if (r)
			ERR("%s", rs->r.err);
		goto out;
	}
	if ((uint64_t)st.st_size < data_off + data_len) {
		ERR("truncated stream: it ends at offset %llu inside the memory pages",
		    (unsigned long long)st.st_size);
		r = -EIO;
		goto out;
	}
	for (p = 0; p < d.npages; ) {
		if (!page_bit(bm, p)) {
			p++;
			continue;
		}
		for (start = p; p < d.npages && page_bit(bm, p); p++)
			;
		if (mmap(vm->mem.base + start * STREAM_PAGE_SIZE, (p - start) * STREAM_PAGE_SIZE,
			 PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED | MAP_NORESERVE,
			 rs->fd, data_off + idx * STREAM_PAGE_SIZE) == MAP_FAILED) {
			r = -errno;
			ERR("cannot map the stream's memory: %s", strerror(-r));
			goto out;
		}
		idx += p - start;
	}
	vm->mem.file_backed = true;
	/* The new mappings replaced the advice and lock on guest RAM. */
	madvise(vm->mem.base, vm->mem.size, MADV_DONTDUMP);
	if (vm->cfg->locked && mlock(vm->mem.base, vm->mem.size)) {
		r = -errno;
		ERR("cannot lock the restored guest memory: %s", strerror(-r));
		goto out;
	}
	if (lseek(rs->fd, data_off + data_len, SEEK_SET) < 0) {
		r = -errno;
		goto out;
	}
	rs->r.off = data_off + data_len;
	vm->restored_pages = bm;
	bm = NULL;
out:
	free(bm);
	return r;
}

/* Version 2: the PAGES sections a live migration sent while its guest
 * ran, each checked whole before a page of it is copied into RAM; the
 * section after them is kept for next_section. */
static int restore_rounds(struct restore *rs, struct vm *vm, char *err, size_t errlen)
{
	uint8_t *p;
	int r;

	for (;;) {
		r = stream_read_section_hdr(&rs->r, &rs->next);
		if (r) {
			ERR("%s", rs->r.err);
			return r;
		}
		if (rs->next.type != SEC_PAGES) {
			rs->have_next = true;
			rs->state_ns = now_ns();
			return 0;
		}
		r = stream_read_payload(&rs->r, &rs->next, &p);
		if (r) {
			ERR("%s", rs->r.err);
			return r;
		}
		r = stream_apply_pages(p, rs->next.len, vm->mem.base, vm->mem.size, NULL,
				       err, errlen);
		free(p);
		if (r)
			return r;
	}
}

int migration_restore_load(struct restore *rs, struct vm *vm, char *err, size_t errlen)
{
	struct kvm_irqchip chip;
	struct kvm_pit_state2 pit;
	struct stream_section_hdr h;
	struct device *d;
	uint8_t *p = NULL;
	size_t len;
	unsigned int i;
	int r;

	if (rs->mem_size != vm->mem.size || rs->nregions != vm->mem.nregions) {
		ERR("the stream's memory layout is not this VM's");
		return -EINVAL;
	}
	for (i = 0; i < rs->nregions; i++) {
		if (rs->region_gpa[i] != vm->mem.regions[i].gpa ||
		    rs->region_size[i] != vm->mem.regions[i].size) {
			ERR("the stream's RAM region %u is not this VM's", i);
			return -EINVAL;
		}
	}
	r = restore_rounds(rs, vm, err, errlen);
	if (r)
		return r;
	for (i = 0; i < vm->ncpus; i++) {
		if (!vm->cpu_present[i])
			continue;
		r = next_payload(rs, SEC_VCPU, i, &p, &len, err, errlen);
		if (r)
			return r;
		r = load_vcpu(vm, &vm->vcpus[i], p, len, err, errlen);
		free(p);
		if (r)
			return r;
	}
	for (i = 0; i < 3; i++) {
		r = next_payload(rs, SEC_IRQCHIP, i, &p, &len, err, errlen);
		if (r)
			return r;
		if (len != sizeof(chip)) {
			free(p);
			ERR("malformed irqchip section %u", i);
			return -EINVAL;
		}
		memcpy(&chip, p, sizeof(chip));
		free(p);
		if (chip.chip_id != i || ioctl(vm->vm_fd, KVM_SET_IRQCHIP, &chip) < 0) {
			ERR("irqchip %u: KVM refused the stream's state", i);
			return -EINVAL;
		}
	}
	r = next_payload(rs, SEC_PIT, 0, &p, &len, err, errlen);
	if (r)
		return r;
	if (len != sizeof(pit)) {
		free(p);
		ERR("malformed pit section");
		return -EINVAL;
	}
	memcpy(&pit, p, sizeof(pit));
	free(p);
	if (ioctl(vm->vm_fd, KVM_SET_PIT2, &pit) < 0) {
		r = -errno;
		ERR("PIT: KVM refused the stream's state: %s", strerror(-r));
		return r;
	}
	r = next_payload(rs, SEC_CLOCK, 0, &p, &len, err, errlen);
	if (r)
		return r;
	if (len != sizeof(struct kvm_clock_data)) {
		free(p);
		ERR("malformed clock section");
		return -EINVAL;
	}
	/* Set when the vCPUs first run (vm_resume, or main at once). */
	memcpy(vm->clock_data, p, len);
	vm->clock_saved = true;
	free(p);
	for (d = vm->devices, i = 0; d; d = d->next, i++) {
		r = next_payload(rs, SEC_DEVICE, i, &p, &len, err, errlen);
		if (r)
			return r;
		/* GUEST: the device's own load checks its record. */
		if (len < DEV_NAME_LEN || strncmp((char *)p, d->ops->name, DEV_NAME_LEN)) {
			ERR("device %u: the stream has %.*s where this VM has %s", i,
			    DEV_NAME_LEN, len < DEV_NAME_LEN ? "nothing" : (char *)p, d->ops->name);
			free(p);
			return -EINVAL;
		}
		pthread_mutex_lock(&d->lock);
		r = d->ops->load ? d->ops->load(d, p + DEV_NAME_LEN, len - DEV_NAME_LEN) :
			(len == DEV_NAME_LEN ? 0 : -EINVAL);
		pthread_mutex_unlock(&d->lock);
		free(p);
		if (r) {
			ERR("device %u (%s) refused its state from the stream: %s", i, d->ops->name,
			    strerror(-r));
			return r;
		}
	}
	/* One more device section than devices: not this VM. */
	r = stream_read_section_hdr(&rs->r, &h);
	if (r) {
		ERR("%s", rs->r.err);
		return r;
	}
	if (h.type == SEC_POSTCOPY) {
		/* Post-copy: the pages come once the guest runs. */
		uint64_t plen = h.len;

		r = stream_read_payload(&rs->r, &h, &p);
		if (r) {
			ERR("%s", rs->r.err);
			return r;
		}
		r = next_section(rs, SEC_END, 0, &h, err, errlen);
		if (!r) {
			r = postcopy_incoming_prepare(vm, rs->fd, p, plen, err, errlen);
			rs->fd = -1;
		}
		free(p);
		return r;
	}
	if (h.type != SEC_MEMORY) {
		ERR("unexpected %s section %u where the memory section belongs: the stream does not match this VM",
		    stream_section_name(h.type), h.index);
		return -EINVAL;
	}
	r = restore_memory(rs, vm, &h, err, errlen);
	if (r)
		return r;
	return next_section(rs, SEC_END, 0, &h, err, errlen);
}

void migration_restore_close(struct restore *rs)
{
	if (rs->fd >= 0)
		close(rs->fd);
	rs->fd = -1;
	free(rs->config_json);
	rs->config_json = NULL;
}
