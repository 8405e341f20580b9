/* ACPI PCI hotplug of bus 0; see hotplug.h and docs/hotplug.md. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <json-c/json.h>

#include "api.h"
#include "arch/x86/layout.h"
#include "config.h"
#include "devices/devices.h"
#include "hotplug.h"
#include "log.h"
#include "loop.h"
#include "migration/live.h"
#include "pci.h"
#include "util.h"
#include "virtio/blk.h"
#include "virtio/net.h"
#include "vm.h"

#define HP_UP		0x00	/* read: slots added since the last read */
#define HP_DOWN		0x04	/* read: slots with a removal request */
#define HP_EJECT	0x08	/* write: eject these slots; read: features (0) */
#define HP_RMV		0x0c	/* read: slots a device may be removed from */
#define HP_SEL		0x10	/* bus selector; only bus 0 exists */
#define HP_LEN		0x14

#define HP_GPE		1	/* GPE0 bit of the hotplug event */

struct hp_slot {
	char id[PCI_HOTPLUG_ID_MAX];
	enum pci_hotplug_kind kind;
	unsigned int cfg_index;		/* in vm->cfg->disks or ->nets */
	struct device *dev;		/* NULL: no hot-added device here */
	struct json_object *opts;	/* its keys, for a save's stream */
};

struct pci_hotplug {
	struct device dev;
	struct device *pm;
	int efd;			/* wakes the main thread for an eject */
	/* Guarded by dev.lock: the registers and the ejects not yet
	 * acted on. */
	uint32_t up, down, sel, ejected;
	/* Main thread only. */
	struct hp_slot slots[PCI_MAX_DEVICES];
};

static const struct device_ops hp_ops;

static struct pci_hotplug *hp_of(struct vm *vm)
{
	struct device *d;

	for (d = vm->devices; d; d = d->next)
		if (d->ops == &hp_ops)
			return (struct pci_hotplug *)d;
	return NULL;
}

/* Slots the guest may eject from: those of hot-added devices, and the
 * empty ones; cold-plugged devices stay (docs/hotplug.md).  Read from a
 * vCPU without the main thread's view locked: a slot changing meanwhile
 * shows its old or new bit, both of which the guest must expect. */
static uint32_t removable(struct pci_hotplug *hp)
{
	uint32_t m = 0;
	unsigned int s;

	for (s = 1; s < PCI_MAX_DEVICES; s++)
		if (hp->slots[s].dev || !hp->dev.vm->pci->slots[s])
			m |= 1u << s;
	return m;
}

static void hp_read(struct device *dev, uint64_t addr, uint8_t *data, unsigned int len)
{
	struct pci_hotplug *hp = (struct pci_hotplug *)dev;
	uint8_t regs[HP_LEN] = { 0 };

	/* GUEST: any width at any offset is served from this snapshot (the
	 * bus checked that addr+len fits); reading any byte of "up"
	 * consumes it, as QEMU does. */
	memcpy(regs + HP_UP, &hp->up, 4);
	memcpy(regs + HP_DOWN, &hp->down, 4);
	if (hp->sel == 0) {
		uint32_t rmv = removable(hp);

		memcpy(regs + HP_RMV, &rmv, 4);
	}
	memcpy(regs + HP_SEL, &hp->sel, 4);
	memcpy(data, regs + addr, len);
	if (addr < HP_UP + 4)
		hp->up = 0;
}

static void hp_write(struct device *dev, uint64_t addr, const uint8_t *data, unsigned int len)
{
	struct pci_hotplug *hp = (struct pci_hotplug *)dev;
	uint64_t one = 1;
	uint32_t v = 0;

	if (len != 4 || (addr != HP_EJECT && addr != HP_SEL))
		return;
	memcpy(&v, data, 4);
	if (addr == HP_SEL) {
		hp->sel = v;
		return;
	}
	/* GUEST: only a slot the host asked back is ejected; any other bit
	 * (a cold-plugged device, an empty slot, another bus) is ignored. */
	v &= hp->down;
	if (hp->sel != 0 || !v)
		return;
	hp->down &= ~v;
	hp->up &= ~v;
	hp->ejected |= v;
	if (write(hp->efd, &one, sizeof(one)) < 0)
		pr_debug("hotplug eventfd: %s", strerror(errno));
}

static void hp_unplug(struct pci_hotplug *hp, unsigned int s)
{
	struct vm *vm = hp->dev.vm;
	struct hp_slot *sl = &hp->slots[s];
	struct device **p;
	char id[PCI_HOTPLUG_ID_MAX];

	if (!sl->dev)
		return;
	/* A device-del that came after the eject left its bit behind. */
	pthread_mutex_lock(&hp->dev.lock);
	hp->down &= ~(1u << s);
	hp->up &= ~(1u << s);
	pthread_mutex_unlock(&hp->dev.lock);
	pci_bus_remove(vm->pci, s);
	for (p = &vm->devices; *p; p = &(*p)->next) {
		if (*p == sl->dev) {
			*p = sl->dev->next;
			break;
		}
	}
	sl->dev->ops->destroy(sl->dev);
	json_object_put(sl->opts);
	if (sl->kind == PCI_HOTPLUG_BLK)
		config_disk_free(&vm->cfg->disks[sl->cfg_index]);
	else
		config_net_free(&vm->cfg->nets[sl->cfg_index]);
	memcpy(id, sl->id, sizeof(id));
	memset(sl, 0, sizeof(*sl));
	pr_info("device %s removed from slot %u", id, s);
	api_event_device(vm->api, "device-deleted", id, s);
}

/* Main thread: the ejects the guest wrote. */
static void hp_ejected(void *opaque, uint32_t events)
{
	struct pci_hotplug *hp = opaque;
	uint64_t n;
	uint32_t ej;
	unsigned int s;

	if (read(hp->efd, &n, sizeof(n)) < 0 && errno != EAGAIN)
		pr_debug("hotplug eventfd: %s", strerror(errno));
	/* A live migration's stream lists the devices it started with:
	 * the ejects wait for its end (pci_hotplug_kick). */
	if (live_migrate_active(hp->dev.vm))
		return;
	pthread_mutex_lock(&hp->dev.lock);
	ej = hp->ejected;
	hp->ejected = 0;
	pthread_mutex_unlock(&hp->dev.lock);
	for (s = 1; s < PCI_MAX_DEVICES; s++)
		if (ej & (1u << s))
			hp_unplug(hp, s);
}

/* A guest reset completes the removals it was asked for, as a power
 * cycle would; the added devices stay. */
static void hp_reset(struct device *dev)
{
	struct pci_hotplug *hp = (struct pci_hotplug *)dev;
	uint64_t one = 1;

	hp->ejected |= hp->down;
	hp->up = hp->down = hp->sel = 0;
	if (hp->ejected && write(hp->efd, &one, sizeof(one)) < 0)
		pr_debug("hotplug eventfd: %s", strerror(errno));
}

static void hp_destroy(struct device *dev)
{
	struct pci_hotplug *hp = (struct pci_hotplug *)dev;
	unsigned int s;

	/* The hot-added devices are on vm->devices and go with the rest. */
	for (s = 0; s < PCI_MAX_DEVICES; s++)
		json_object_put(hp->slots[s].opts);
	loop_del(dev->vm->loop, hp->efd);
	close(hp->efd);
	free(hp);
}

/* The registers and the ejects not yet acted on; which slots hold a
 * hot-added device is the stream's configuration ("hotplug"). */
#define HP_STATE_VERSION	1

struct hp_state {
	uint32_t up, down, sel, ejected;
};

static int hp_save(struct device *dev, struct state_buf *out)
{
	struct pci_hotplug *hp = (struct pci_hotplug *)dev;
	struct hp_state st = { hp->up, hp->down, hp->sel, hp->ejected };
	uint8_t ver = HP_STATE_VERSION;
	int r = state_put(out, &ver, 1);

	return r ? r : state_put(out, &st, sizeof(st));
}

static int hp_load(struct device *dev, const uint8_t *data, size_t len)
{
	struct pci_hotplug *hp = (struct pci_hotplug *)dev;
	struct hp_state st;
	uint64_t one = 1;
	uint32_t mine = 0;
	unsigned int s;

	/* An older kvmm's stream has no record here: it refused to save
	 * with a hot-added device, so the registers were all clear. */
	if (len == 0)
		return 0;
	if (len != 1 + sizeof(st) || data[0] != HP_STATE_VERSION)
		return -EINVAL;
	memcpy(&st, data + 1, sizeof(st));
	for (s = 1; s < PCI_MAX_DEVICES; s++)
		if (hp->slots[s].dev)
			mine |= 1u << s;
	/* GUEST: an add, removal request or eject only for a slot that
	 * holds a hot-added device here; any other bit is not this VM's. */
	if ((st.up | st.down | st.ejected) & ~mine)
		return -EINVAL;
	hp->up = st.up;
	hp->down = st.down;
	hp->sel = st.sel;
	hp->ejected = st.ejected;
	if (hp->ejected && write(hp->efd, &one, sizeof(one)) < 0)
		pr_debug("hotplug eventfd: %s", strerror(errno));
	return 0;
}

static const struct device_ops hp_ops = {
	.name = "pci-hotplug",
	.read = hp_read,
	.write = hp_write,
	.reset = hp_reset,
	.save = hp_save,
	.load = hp_load,
	.destroy = hp_destroy,
};

struct device *pci_hotplug_create(struct vm *vm, struct device *pm)
{
	struct pci_hotplug *hp = calloc(1, sizeof(*hp));

	if (!hp)
		return NULL;
	device_init(&hp->dev, &hp_ops, vm);
	hp->pm = pm;
	hp->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (hp->efd < 0) {
		free(hp);
		return NULL;
	}
	if (loop_add(vm->loop, hp->efd, EPOLLIN, hp_ejected, hp)) {
		close(hp->efd);
		free(hp);
		return NULL;
	}
	if (bus_register(&vm->pio, X86_PCI_HOTPLUG_PORT, HP_LEN, &hp->dev)) {
		loop_del(vm->loop, hp->efd);
		close(hp->efd);
		free(hp);
		return NULL;
	}
	return &hp->dev;
}

static struct hp_slot *find_id(struct pci_hotplug *hp, const char *id)
{
	unsigned int s;

	for (s = 1; s < PCI_MAX_DEVICES; s++)
		if (hp->slots[s].dev && !strcmp(hp->slots[s].id, id))
			return &hp->slots[s];
	return NULL;
}

/* Checks id and slot; returns the slot to use or a negative errno. */
static int pick_slot(struct pci_hotplug *hp, const char *id, unsigned int slot,
		     char *err, size_t errlen)
{
	struct pci_bus *bus = hp->dev.vm->pci;
	unsigned int s;

	if (!*id || strlen(id) >= PCI_HOTPLUG_ID_MAX) {
		snprintf(err, errlen, "device id must be 1 to %d characters", PCI_HOTPLUG_ID_MAX - 1);
		return -EINVAL;
	}
	if (find_id(hp, id)) {
		snprintf(err, errlen, "device id '%s' is taken", id);
		return -EEXIST;
	}
	if (slot) {
		if (slot >= PCI_MAX_DEVICES) {
			snprintf(err, errlen, "slot %u is out of range: hotplug slots are 1 to %d",
				 slot, PCI_MAX_DEVICES - 1);
			return -EINVAL;
		}
		if (bus->slots[slot]) {
			snprintf(err, errlen, "slot %u is taken", slot);
			return -EEXIST;
		}
		return slot;
	}
	for (s = 1; s < PCI_MAX_DEVICES; s++)
		if (!bus->slots[s])
			return s;
	snprintf(err, errlen, "no free PCI slot: all %d are taken", PCI_MAX_DEVICES - 1);
	return -ENOSPC;
}

static void plugged(struct pci_hotplug *hp, unsigned int s, const char *id,
		    enum pci_hotplug_kind kind, unsigned int index, struct device *dev,
		    struct json_object *opts, bool quiet)
{
	struct hp_slot *sl = &hp->slots[s];

	snprintf(sl->id, sizeof(sl->id), "%s", id);
	sl->kind = kind;
	sl->cfg_index = index;
	sl->dev = dev;
	sl->opts = json_object_get(opts);
	devices_add(hp->dev.vm, dev);
	/* A restored VM's: the guest knew it already; the stream's record
	 * of this device says the rest. */
	if (quiet)
		return;
	pthread_mutex_lock(&hp->dev.lock);
	hp->up |= 1u << s;
	pthread_mutex_unlock(&hp->dev.lock);
	acpi_pm_gpe_raise(hp->pm, HP_GPE);
	pr_info("device %s added in slot %u", id, s);
}

int pci_hotplug_add_blk(struct vm *vm, const char *id, unsigned int slot,
			struct disk_config *disk, struct json_object *opts, bool quiet,
			unsigned int *slot_out, char *err, size_t errlen)
{
	struct pci_hotplug *hp = hp_of(vm);
	struct device *dev;
	unsigned int i;
	int s;

	if (!hp) {
		config_disk_free(disk);
		snprintf(err, errlen, "this machine has no PCI hotplug");
		return -ENODEV;
	}
	s = pick_slot(hp, id, slot, err, errlen);
	if (s < 0) {
		config_disk_free(disk);
		return s;
	}
	/* CLIENT: the image must be there, or its descriptor open for what
	 * the disk does; block_open says the rest. */
	if (disk->has_fd) {
		int fl = fcntl(disk->fd, F_GETFL);
		int acc = fl & O_ACCMODE;

		if (fl < 0 || acc == O_WRONLY || (!disk->readonly && acc != O_RDWR)) {
			snprintf(err, errlen, "the descriptor of disk image %.200s is %s: give one opened %s",
				 disk->path, fl < 0 ? "not open" : acc == O_WRONLY ? "write-only" : "read-only",
				 disk->readonly ? "for reading" : "for reading and writing (or readonly=on)");
			config_disk_free(disk);
			return -EINVAL;
		}
	} else if (access(disk->path, disk->readonly ? R_OK : R_OK | W_OK)) {
		snprintf(err, errlen, "cannot use disk image %.200s: %s", disk->path, strerror(errno));
		config_disk_free(disk);
		return -EINVAL;
	}
	/* Past the configured disks: the entries removals freed. */
	for (i = vm->cfg->ndisks; i < KVMM_MAX_DISKS && vm->cfg->disks[i].path; i++)
		;
	if (i == KVMM_MAX_DISKS) {
		snprintf(err, errlen, "kvmm takes at most %d disks", KVMM_MAX_DISKS);
		config_disk_free(disk);
		return -ENOSPC;
	}
	vm->cfg->disks[i] = *disk;
	memset(disk, 0, sizeof(*disk));
	dev = virtio_blk_create(vm, i, s, 0);
	if (!dev) {
		snprintf(err, errlen, "cannot open disk image %.200s (kvmm's log says why)",
			 vm->cfg->disks[i].path);
		config_disk_free(&vm->cfg->disks[i]);
		return -EINVAL;
	}
	plugged(hp, s, id, PCI_HOTPLUG_BLK, i, dev, opts, quiet);
	*slot_out = s;
	return 0;
}

/* A hot-added NIC's configuration given up before its device took it:
 * its descriptor, if it came with one, is ours to close. */
static void net_drop(struct net_config *net)
{
	if (!net->tap && net->fd >= 0)
		close(net->fd);
	config_net_free(net);
}

/* Whether entry i of vm->cfg->nets past the configured ones is a
 * hot-added NIC's (a NIC on a descriptor has no tap name to show it). */
static bool net_index_used(const struct pci_hotplug *hp, unsigned int i)
{
	unsigned int s;

	for (s = 1; s < PCI_MAX_DEVICES; s++)
		if (hp->slots[s].dev && hp->slots[s].kind == PCI_HOTPLUG_NET &&
		    hp->slots[s].cfg_index == i)
			return true;
	return false;
}

int pci_hotplug_add_net(struct vm *vm, const char *id, unsigned int slot,
			struct net_config *net, struct json_object *opts, bool quiet,
			unsigned int *slot_out, char *err, size_t errlen)
{
	struct pci_hotplug *hp = hp_of(vm);
	struct device *dev;
	unsigned int i;
	int s;

	if (!hp) {
		net_drop(net);
		snprintf(err, errlen, "this machine has no PCI hotplug");
		return -ENODEV;
	}
	s = pick_slot(hp, id, slot, err, errlen);
	if (s < 0) {
		net_drop(net);
		return s;
	}
	/* CLIENT: a tap by name, or one already open (device-add's fdname:
	 * a descriptor that came over the socket); virtio_net_create checks
	 * either. */
	if (!net->tap && net->fd < 0) {
		snprintf(err, errlen, "a hot-added NIC needs tap=NAME or fdname");
		net_drop(net);
		return -EINVAL;
	}
	for (i = vm->cfg->nnets; i < KVMM_MAX_NETS && net_index_used(hp, i); i++)
		;
	if (i == KVMM_MAX_NETS) {
		snprintf(err, errlen, "kvmm takes at most %d NICs", KVMM_MAX_NETS);
		net_drop(net);
		return -ENOSPC;
	}
	vm->cfg->nets[i] = *net;
	memset(net, 0, sizeof(*net));
	net->fd = -1;
	/* From here the descriptor is the device's: closed with it, or by
	 * virtio_net_create on failure. */
	dev = virtio_net_create(vm, i, s, 0);
	if (!dev) {
		if (vm->cfg->nets[i].tap)
			snprintf(err, errlen, "cannot open tap %.32s (kvmm's log says why)",
				 vm->cfg->nets[i].tap);
		else
			snprintf(err, errlen, "the descriptor is not a tap kvmm can use (kvmm's log says why)");
		config_net_free(&vm->cfg->nets[i]);
		return -EINVAL;
	}
	plugged(hp, s, id, PCI_HOTPLUG_NET, i, dev, opts, quiet);
	*slot_out = s;
	return 0;
}

int pci_hotplug_del(struct vm *vm, const char *id, char *err, size_t errlen)
{
	struct pci_hotplug *hp = hp_of(vm);
	struct hp_slot *sl = hp ? find_id(hp, id) : NULL;
	unsigned int s;

	if (!sl) {
		snprintf(err, errlen, "no hot-added device '%.64s' (cold-plugged devices cannot be removed)", id);
		return -ENODEV;
	}
	s = sl - hp->slots;
	/* Asking again signals again: the guest may have missed it. */
	pthread_mutex_lock(&hp->dev.lock);
	hp->down |= 1u << s;
	pthread_mutex_unlock(&hp->dev.lock);
	acpi_pm_gpe_raise(hp->pm, HP_GPE);
	pr_info("device %s in slot %u: removal requested", id, s);
	return 0;
}

unsigned int pci_hotplug_list(struct vm *vm, struct pci_hotplug_info *out,
			      unsigned int max)
{
	struct pci_hotplug *hp = hp_of(vm);
	unsigned int s, n = 0;
	uint32_t down;

	if (!hp)
		return 0;
	pthread_mutex_lock(&hp->dev.lock);
	down = hp->down | hp->ejected;
	pthread_mutex_unlock(&hp->dev.lock);
	for (s = 1; s < PCI_MAX_DEVICES && n < max; s++) {
		struct hp_slot *sl = &hp->slots[s];
		struct pci_hotplug_info *i = &out[n];

		if (!sl->dev)
			continue;
		memcpy(i->id, sl->id, sizeof(i->id));
		i->kind = sl->kind;
		i->slot = s;
		if (sl->kind == PCI_HOTPLUG_BLK) {
			i->backend = vm->cfg->disks[sl->cfg_index].path;
		} else {
			struct virtio_net_stats st;

			/* The tap's own name, also for one given as a
			 * descriptor; it lives as long as the device. */
			i->backend = virtio_net_stats(sl->dev, &st) ? "" : st.tap;
		}
		i->removing = !!(down & (1u << s));
		i->dev = sl->dev;
		n++;
	}
	return n;
}

int pci_hotplug_restore(struct vm *vm)
{
	char err[320];
	unsigned int k, got;
	int r;

	for (k = 0; k < vm->cfg->nhotplug; k++) {
		struct hotplug_config *h = &vm->cfg->hotplug[k];

		r = h->type == HOTPLUG_BLK ?
			pci_hotplug_add_blk(vm, h->id, h->slot, &h->disk, h->opts, true, &got,
					    err, sizeof(err)) :
			pci_hotplug_add_net(vm, h->id, h->slot, &h->net, h->opts, true, &got,
					    err, sizeof(err));
		if (r) {
			pr_err("hot-added device %s in slot %u: %s", h->id, h->slot, err);
			return r;
		}
	}
	return 0;
}

struct json_object *pci_hotplug_config(struct vm *vm)
{
	struct pci_hotplug *hp = hp_of(vm);
	struct json_object *a = json_object_new_array(), *o;
	struct device *d;
	unsigned int s;

	if (!a || !hp)
		return a;
	/* In the order of vm->devices, which a restore plugs them in: the
	 * device records follow that order. */
	for (d = vm->devices; d; d = d->next) {
		for (s = 1; s < PCI_MAX_DEVICES && hp->slots[s].dev != d; s++)
			;
		if (s == PCI_MAX_DEVICES)
			continue;
		o = json_object_new_object();
		json_object_object_add(o, "type", json_object_new_string(
			hp->slots[s].kind == PCI_HOTPLUG_BLK ? "blk" : "net"));
		json_object_object_add(o, "id", json_object_new_string(hp->slots[s].id));
		json_object_object_add(o, "slot", json_object_new_int(s));
		if (hp->slots[s].opts) {
			json_object_object_foreach(hp->slots[s].opts, key, val) {
				json_object_object_add(o, key, json_object_get(val));
			}
		}
		if (hp->slots[s].kind == PCI_HOTPLUG_NET) {
			struct virtio_net_stats st;

			/* A tap given open is named by its own name: the
			 * number meant nothing outside this process. */
			json_object_object_del(o, "fd");
			if (!virtio_net_stats(d, &st))
				json_object_object_add(o, "tap", json_object_new_string(st.tap));
		}
		json_object_array_add(a, o);
	}
	return a;
}

void pci_hotplug_kick(struct vm *vm)
{
	struct pci_hotplug *hp = hp_of(vm);
	uint64_t one = 1;

	if (hp && write(hp->efd, &one, sizeof(one)) < 0)
		pr_debug("hotplug eventfd: %s", strerror(errno));
}
