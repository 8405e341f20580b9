/* Control socket: framing, the command table and event broadcast. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <unistd.h>

#include <json-c/json.h>

#include "api.h"
#include "block/block.h"
#include "chardev.h"
#include "devices/cpu_hotplug.h"
#include "devices/devices.h"
#include "log.h"
#include "loop.h"
#include "pci/hotplug.h"
#include "migration/migration.h"
#include "migration/live.h"
#include "migration/postcopy.h"
#include "util.h"
#include "virtio/balloon.h"
#include "virtio/blk.h"
#include "virtio/net.h"
#include "virtio/virtio.h"

#define API_MAX_CLIENTS 16
#define API_MAX_LINE (64 * 1024)
/* Descriptors a client may hold at once: received, and named by getfd. */
#define API_MAX_FDS 8
#define API_FDNAME_MAX 64

struct api_fd {
	int fd;				/* -1: free */
	char name[API_FDNAME_MAX];	/* "": received, not yet named */
	unsigned long seq;		/* arrival order */
};

struct api_client {
	struct api *api;
	int fd;
	size_t len;
	char buf[API_MAX_LINE];
	/* SCM_RIGHTS descriptors, in the order they came; getfd names the
	 * oldest unnamed one.  Closed with the connection. */
	struct api_fd fds[API_MAX_FDS];
	unsigned long fd_seq;
};

struct api {
	struct vm *vm;
	int listen_fd;
	char *path;
	struct api_client *clients[API_MAX_CLIENTS];
	struct api_client *cur;		/* the client whose command runs */
};

struct api_cmd {
	const char *name;
	/* Returns the "return" object, or NULL with *err set. */
	struct json_object *(*fn)(struct api *api, struct json_object *args,
				  const char **code, const char **err);
};

static void api_drop(struct api *api, int slot)
{
	struct api_client *c = api->clients[slot];
	int i;

	loop_del(api->vm->loop, c->fd);
	close(c->fd);
	for (i = 0; i < API_MAX_FDS; i++)
		if (c->fds[i].fd >= 0)
			close(c->fds[i].fd);
	free(c);
	api->clients[slot] = NULL;
}

static int api_slot(struct api *api, struct api_client *c)
{
	int i;

	for (i = 0; i < API_MAX_CLIENTS; i++)
		if (api->clients[i] == c)
			return i;
	return -1;
}

/* Keeps a received descriptor unnamed, or closes it when the client
 * already holds as many as it may. */
static void client_keep_fd(struct api_client *c, int fd)
{
	int i;

	for (i = 0; i < API_MAX_FDS; i++) {
		if (c->fds[i].fd < 0) {
			c->fds[i].fd = fd;
			c->fds[i].name[0] = '\0';
			c->fds[i].seq = c->fd_seq++;
			return;
		}
	}
	pr_warn("control socket: a client sent more than %d descriptors; closing the extra one",
		API_MAX_FDS);
	close(fd);
}

static struct api_fd *client_find_fd(struct api_client *c, const char *name)
{
	int i;

	for (i = 0; i < API_MAX_FDS; i++)
		if (c->fds[i].fd >= 0 && c->fds[i].name[0] && !strcmp(c->fds[i].name, name))
			return &c->fds[i];
	return NULL;
}

/* The descriptor getfd named, now the caller's; -ENOENT if none. */
static int api_take_fd(struct api *api, const char *name)
{
	struct api_fd *f = api->cur ? client_find_fd(api->cur, name) : NULL;
	int fd;

	if (!f)
		return -ENOENT;
	fd = f->fd;
	f->fd = -1;
	return fd;
}

/* The descriptor getfd named, still the client's; -ENOENT if none. */
static int client_find_fd_of(struct api *api, const char *name)
{
	struct api_fd *f = api->cur ? client_find_fd(api->cur, name) : NULL;

	return f ? f->fd : -ENOENT;
}

static void api_send(struct api *api, struct api_client *c, struct json_object *msg)
{
	const char *s = json_object_to_json_string_ext(msg, JSON_C_TO_STRING_PLAIN);
	size_t len = strlen(s);
	char *line = malloc(len + 1);
	int r;

	if (!line)
		return;
	memcpy(line, s, len);
	line[len] = '\n';
	/* Client sockets are non-blocking: a client that stops reading
	 * its events is dropped rather than allowed to stall the VMM. */
	r = write_all(c->fd, line, len + 1);
	free(line);
	if (r)
		api_drop(api, api_slot(api, c));
}

static void api_broadcast(struct api *api, struct json_object *msg)
{
	int i;

	for (i = 0; i < API_MAX_CLIENTS; i++)
		if (api->clients[i])
			api_send(api, api->clients[i], msg);
}

static struct json_object *api_timestamp(void)
{
	struct json_object *t = json_object_new_object();
	struct timeval tv;

	gettimeofday(&tv, NULL);
	json_object_object_add(t, "seconds", json_object_new_int64(tv.tv_sec));
	json_object_object_add(t, "microseconds", json_object_new_int64(tv.tv_usec));
	return t;
}

static void api_emit(struct api *api, const char *event, struct json_object *data)
{
	struct json_object *msg = json_object_new_object();

	json_object_object_add(msg, "event", json_object_new_string(event));
	json_object_object_add(msg, "data", data);
	json_object_object_add(msg, "timestamp", api_timestamp());
	api_broadcast(api, msg);
	json_object_put(msg);
}

void api_event_state(struct api *api, struct vm *vm, enum vm_reason reason)
{
	struct json_object *d;

	if (!api)
		return;
	d = json_object_new_object();
	json_object_object_add(d, "state", json_object_new_string(vm_state_name(vm->state)));
	json_object_object_add(d, "reason", json_object_new_string(vm_reason_name(reason)));
	if (vm->state == VM_SHUTDOWN)
		json_object_object_add(d, "exit_status", json_object_new_int(vm->exit_status));
	api_emit(api, "state-changed", d);
}

void api_event_reset(struct api *api, struct vm *vm)
{
	struct json_object *d;

	if (!api)
		return;
	d = json_object_new_object();
	json_object_object_add(d, "boots", json_object_new_int(vm->boots + 1));
	api_emit(api, "reset", d);
}

void api_event_block_io_error(struct api *api, const struct vm_io_error *e)
{
	struct json_object *d;
	const char *name;

	if (!api)
		return;
	name = strerrorname_np(e->error);
	d = json_object_new_object();
	json_object_object_add(d, "device", json_object_new_string(e->device));
	json_object_object_add(d, "op", json_object_new_string(e->op));
	json_object_object_add(d, "error", json_object_new_string(name ? name : "EIO"));
	json_object_object_add(d, "message", json_object_new_string(strerror(e->error)));
	json_object_object_add(d, "action", json_object_new_string(e->action));
	api_emit(api, "block-io-error", d);
}

/* The guest's balloon moved: its RAM is now actual bytes. */
void api_event_device(struct api *api, const char *event, const char *id,
		      unsigned int slot)
{
	struct json_object *d;

	if (!api)
		return;
	d = json_object_new_object();
	json_object_object_add(d, "id", json_object_new_string(id));
	json_object_object_add(d, "slot", json_object_new_int(slot));
	api_emit(api, event, d);
}

void api_event_migration(struct api *api, const char *status, const char *error)
{
	struct json_object *d;

	if (!api)
		return;
	d = json_object_new_object();
	json_object_object_add(d, "status", json_object_new_string(status));
	if (error)
		json_object_object_add(d, "error", json_object_new_string(error));
	api_emit(api, "migration-status", d);
}

void api_event_cpu(struct api *api, const char *event, unsigned int id)
{
	struct json_object *d;

	if (!api)
		return;
	d = json_object_new_object();
	json_object_object_add(d, "id", json_object_new_int(id));
	api_emit(api, event, d);
}

static void api_event_balloon(void *opaque, uint64_t actual)
{
	struct api *api = opaque;
	struct json_object *d = json_object_new_object();

	json_object_object_add(d, "actual", json_object_new_int64((int64_t)actual));
	api_emit(api, "balloon-change", d);
}

static struct device *find_balloon(struct api *api)
{
	struct virtio_balloon_info info;
	struct device *d;

	for (d = api->vm->devices; d; d = d->next)
		if (!virtio_balloon_info(d, &info))
			return d;
	return NULL;
}

/* Where a console client attaches: the pty kvmm allocated, or the
 * socket it listens on. */
static struct json_object *attach_point(const struct chardev *c)
{
	struct json_object *s = json_object_new_object();

	json_object_object_add(s, "mode", json_object_new_string(
		c->mode == SERIAL_PTY ? "pty" : "unix"));
	json_object_object_add(s, "path", json_object_new_string(c->path));
	return s;
}

static int vcpus_present(const struct vm *vm)
{
	unsigned int i;
	int n = 0;

	for (i = 0; i < vm->ncpus; i++)
		n += vm->cpu_present[i];
	return n;
}

static struct json_object *cmd_query_status(struct api *api, struct json_object *args,
					    const char **code, const char **err)
{
	struct vm *vm = api->vm;
	struct json_object *r = json_object_new_object();

	json_object_object_add(r, "name", json_object_new_string(vm->cfg->name));
	json_object_object_add(r, "state", json_object_new_string(vm_state_name(vm->state)));
	json_object_object_add(r, "vcpus", json_object_new_int(vcpus_present(vm)));
	json_object_object_add(r, "max_vcpus", json_object_new_int(vm->ncpus));
	json_object_object_add(r, "cpu_hotplug", json_object_new_boolean(vm->cfg->max_cpus > vm->cfg->cpus));
	json_object_object_add(r, "memory", json_object_new_int64(vm->mem.size));
	json_object_object_add(r, "uptime_ms",
			       json_object_new_int64((now_ns() - vm->start_ns) / 1000000));
	json_object_object_add(r, "boots", json_object_new_int(vm->boots));
	json_object_object_add(r, "pid", json_object_new_int(getpid()));
	if (vm->serial_backend && vm->serial_backend->path)
		json_object_object_add(r, "serial", attach_point(vm->serial_backend));
	if (vm->console_backend && vm->console_backend->path)
		json_object_object_add(r, "console", attach_point(vm->console_backend));
	return r;
}

static struct json_object *cmd_pause(struct api *api, struct json_object *args,
				     const char **code, const char **err)
{
	if (vm_pause(api->vm)) {
		*code = "InvalidState";
		*err = "the VM is not running";
		return NULL;
	}
	return json_object_new_object();
}

static struct json_object *cmd_resume(struct api *api, struct json_object *args,
				      const char **code, const char **err)
{
	int r = vm_resume(api->vm);

	if (r == -EBUSY) {
		*code = "DeviceInUse";
		*err = "a disk is in use by another process (the kvmm the VM migrated to?)";
		return NULL;
	}
	if (r == -EPERM) {
		*code = "InvalidState";
		*err = "a post-copy migration of this guest failed: its memory is incomplete, it cannot run again";
		return NULL;
	}
	if (r) {
		*code = "InvalidState";
		*err = "the VM is not paused";
		return NULL;
	}
	return json_object_new_object();
}

static void add_u64(struct json_object *o, const char *key, uint64_t v);

/* CLIENT: "path", the file to write (as path.new, renamed when
 * complete), or "fdname", a descriptor getfd named, opened for writing
 * (a file or a pipe; closed once written).  The VM is left paused: the
 * caller quits or resumes. */
static struct json_object *cmd_save(struct api *api, struct json_object *args,
				    const char **code, const char **err)
{
	static char msg[600];
	struct vm *vm = api->vm;
	struct json_object *pv, *r, *d;
	struct save_result res;
	bool was_running = vm->state == VM_RUNNING;
	const char *path = NULL, *fdname = NULL;
	int fd = -1, rc, fl;

	if (args && json_object_object_get_ex(args, "fdname", &pv) &&
	    json_object_is_type(pv, json_type_string) && !json_object_object_get_ex(args, "path", NULL)) {
		fdname = json_object_get_string(pv);
		fl = client_find_fd_of(api, fdname);
		if (fl < 0) {
			snprintf(msg, sizeof(msg), "no descriptor named '%.64s': getfd names one", fdname);
			*code = "InvalidArgument";
			*err = msg;
			return NULL;
		}
		fl = fcntl(fl, F_GETFL);
		if (fl < 0 || (fl & O_ACCMODE) == O_RDONLY) {
			*code = "InvalidArgument";
			*err = "save's descriptor is not open for writing";
			return NULL;
		}
	} else if (!args || !json_object_object_get_ex(args, "path", &pv) ||
		   json_object_object_get_ex(args, "fdname", NULL) ||
		   !json_object_is_type(pv, json_type_string) || !*(path = json_object_get_string(pv))) {
		*code = "InvalidArgument";
		*err = "save takes {\"path\": the file to write} or {\"fdname\": a descriptor getfd named}";
		return NULL;
	}
	if (vm->state != VM_RUNNING && vm->state != VM_PAUSED) {
		*code = "InvalidState";
		*err = "the VM is not running";
		return NULL;
	}
	if (live_migrate_active(vm)) {
		*code = "InvalidState";
		*err = "a migration is running: wait for it or migrate-cancel it";
		return NULL;
	}
	/* The vCPUs parked, their last port or MMIO access completed; the
	 * devices finish what they have in flight in their save hooks. */
	vm_pause(vm);
	if (fdname) {
		fd = api_take_fd(api, fdname);
		rc = migration_save_fd(vm, fd, &res, msg, sizeof(msg));
		close(fd);
	} else {
		rc = migration_save_file(vm, path, &res, msg, sizeof(msg));
	}
	if (rc) {
		if (was_running)
			vm_resume(vm);
		*code = "SaveFailed";
		*err = msg;
		return NULL;
	}
	/* A stream sent to a descriptor is a migration's: the kvmm that
	 * continues the VM takes the disks' locks; a resume here takes
	 * them back. */
	if (fdname)
		block_lock_all(false);
	d = json_object_new_object();
	json_object_object_add(d, fdname ? "fdname" : "path", json_object_new_string(fdname ? fdname : path));
	add_u64(d, "bytes", res.bytes);
	add_u64(d, "pages", res.pages);
	add_u64(d, "ms", res.ns / 1000000);
	r = json_object_get(d);
	api_emit(api, "save-completed", d);
	return r;
}

static struct json_object *cmd_power_button(struct api *api, struct json_object *args,
					    const char **code, const char **err)
{
	if (api->vm->state != VM_RUNNING && api->vm->state != VM_PAUSED) {
		*code = "InvalidState";
		*err = "the VM is not running";
		return NULL;
	}
	acpi_pm_power_button((struct device *)api->vm->pm);
	return json_object_new_object();
}

static struct json_object *cmd_reboot(struct api *api, struct json_object *args,
				      const char **code, const char **err)
{
	struct json_object *r = cmd_power_button(api, args, code, err);

	if (r)
		api->vm->reboot_on_poweroff = true;
	return r;
}

static struct json_object *cmd_reset(struct api *api, struct json_object *args,
				     const char **code, const char **err)
{
	if (api->vm->state != VM_RUNNING && api->vm->state != VM_PAUSED) {
		*code = "InvalidState";
		*err = "the VM is not running";
		return NULL;
	}
	vm_request(api->vm, REASON_RESET, NULL);
	return json_object_new_object();
}

static struct json_object *cmd_quit(struct api *api, struct json_object *args,
				    const char **code, const char **err)
{
	/* Acted on from the loop, after this reply has been sent. */
	vm_request(api->vm, REASON_QUIT, NULL);
	return json_object_new_object();
}

static void add_u64(struct json_object *o, const char *key, uint64_t v)
{
	json_object_object_add(o, key, json_object_new_int64((int64_t)v));
}

/* One entry per disk, in --disk order. */
static struct json_object *cmd_query_block_stats(struct api *api, struct json_object *args,
						 const char **code, const char **err)
{
	struct json_object *a = json_object_new_array();
	struct virtio_blk_stats st;
	struct device *d;
	unsigned int n = 0;
	char name[16];

	for (d = api->vm->devices; d; d = d->next) {
		struct json_object *o;

		if (virtio_blk_stats(d, &st))
			continue;
		o = json_object_new_object();
		snprintf(name, sizeof(name), "disk%u", n++);
		json_object_object_add(o, "device", json_object_new_string(name));
		json_object_object_add(o, "path", json_object_new_string(st.path));
		add_u64(o, "rd_operations", st.rd_reqs);
		add_u64(o, "wr_operations", st.wr_reqs);
		add_u64(o, "flush_operations", st.flush_reqs);
		add_u64(o, "other_operations", st.other_reqs);
		add_u64(o, "rd_bytes", st.rd_bytes);
		add_u64(o, "wr_bytes", st.wr_bytes);
		add_u64(o, "errors", st.errors);
		add_u64(o, "invalid_operations", st.invalid);
		add_u64(o, "failed_operations", st.failed);
		json_object_object_add(o, "io_status", json_object_new_string(
			!st.io_status ? "ok" : st.io_status == ENOSPC ? "nospace" : "failed"));
		add_u64(o, "rd_total_time_ns", st.rd_ns);
		add_u64(o, "wr_total_time_ns", st.wr_ns);
		add_u64(o, "flush_total_time_ns", st.flush_ns);
		add_u64(o, "sync_operations", st.syncs);
		json_object_array_add(a, o);
	}
	return a;
}

/* One entry per NIC, in --net order. */
static struct json_object *cmd_query_net_stats(struct api *api, struct json_object *args,
					       const char **code, const char **err)
{
	struct json_object *a = json_object_new_array();
	struct virtio_net_stats st;
	struct device *d;
	unsigned int n = 0;
	char name[24];

	for (d = api->vm->devices; d; d = d->next) {
		struct json_object *o;

		if (virtio_net_stats(d, &st))
			continue;
		o = json_object_new_object();
		snprintf(name, sizeof(name), "net%u", n++);
		json_object_object_add(o, "id", json_object_new_string(name));
		json_object_object_add(o, "tap", json_object_new_string(st.tap));
		snprintf(name, sizeof(name), "%02x:%02x:%02x:%02x:%02x:%02x", st.mac[0],
			 st.mac[1], st.mac[2], st.mac[3], st.mac[4], st.mac[5]);
		json_object_object_add(o, "mac", json_object_new_string(name));
		add_u64(o, "rx_bytes", st.rx_bytes);
		add_u64(o, "rx_packets", st.rx_packets);
		add_u64(o, "rx_errors", st.rx_errors);
		add_u64(o, "rx_drops", st.rx_drops);
		add_u64(o, "tx_bytes", st.tx_bytes);
		add_u64(o, "tx_packets", st.tx_packets);
		add_u64(o, "tx_errors", st.tx_errors);
		add_u64(o, "tx_drops", st.tx_drops);
		json_object_array_add(a, o);
	}
	return a;
}

/* CLIENT: "device" names a disk as query-block-stats does (disk0, ...)
 * or by its path; "size" is the new size in bytes. */
static struct json_object *cmd_block_resize(struct api *api, struct json_object *args,
					    const char **code, const char **err)
{
	static char msg[320];	/* the main thread's only */
	struct json_object *dv = NULL, *sv = NULL;
	struct virtio_blk_stats st;
	const char *want;
	struct device *d;
	unsigned int n = 0;
	char name[16];
	int64_t size;
	int r;

	if (!args || !json_object_object_get_ex(args, "device", &dv) ||
	    !json_object_is_type(dv, json_type_string) ||
	    !json_object_object_get_ex(args, "size", &sv) || !json_object_is_type(sv, json_type_int)) {
		*code = "InvalidArgument";
		*err = "block-resize takes arguments {\"device\": \"disk0\" or the disk's path, \"size\": bytes}";
		return NULL;
	}
	want = json_object_get_string(dv);
	size = json_object_get_int64(sv);
	for (d = api->vm->devices; d; d = d->next) {
		if (virtio_blk_stats(d, &st))
			continue;
		snprintf(name, sizeof(name), "disk%u", n++);
		if (strcmp(want, name) && strcmp(want, st.path))
			continue;
		if (size <= 0) {
			*code = "InvalidArgument";
			*err = "block-resize: size must be a positive number of bytes";
			return NULL;
		}
		r = virtio_blk_resize(d, (uint64_t)size, msg, sizeof(msg));
		if (r) {
			*code = r == -EINVAL ? "InvalidArgument" : "GenericError";
			*err = msg;
			return NULL;
		}
		pr_info("disk %s resized to %lld bytes", st.path, (long long)size);
		return json_object_new_object();
	}
	snprintf(msg, sizeof(msg), "no disk '%.200s': name it as query-block-stats does (disk0, ...) or by its path",
		 want);
	*code = "InvalidArgument";
	*err = msg;
	return NULL;
}

/* CLIENT: {"device": "disk0" or the disk's path, and "path": the overlay
 * or "fdname": a descriptor getfd named, the overlay opened for reading
 * and writing (what a sandboxed kvmm takes: it opens no path), which
 * "path", if given too, only names.  The
 * overlay (a qcow2 image whose backing file is the disk's image, of the
 * same size) takes the disk's writes from now on; the image, as kvmm has
 * it open, becomes read-only beneath it.  For external snapshots: the
 * caller pauses the VM (or saves it, which leaves it paused) and resumes
 * it after. */
static struct json_object *cmd_block_overlay(struct api *api, struct json_object *args,
					     const char **code, const char **err)
{
	static char msg[600];	/* the main thread's only */
	static char fdpath[80];
	struct json_object *dv = NULL, *pv = NULL, *fv = NULL;
	struct virtio_blk_stats st;
	const char *want, *path = NULL, *fdname = NULL;
	struct device *d;
	unsigned int n = 0;
	char name[16];
	int r, fd = -1;

	if (args)
		json_object_object_get_ex(args, "path", &pv);
	if (args)
		json_object_object_get_ex(args, "fdname", &fv);
	if (pv && json_object_is_type(pv, json_type_string))
		path = json_object_get_string(pv);
	if (fv && json_object_is_type(fv, json_type_string))
		fdname = json_object_get_string(fv);
	if (!args || !json_object_object_get_ex(args, "device", &dv) ||
	    !json_object_is_type(dv, json_type_string) || (!pv && !fv) ||
	    (pv && (!path || !*path)) || (fv && (!fdname || !*fdname))) {
		*code = "InvalidArgument";
		*err = "block-overlay takes arguments {\"device\": \"disk0\" or the disk's path, and \"path\": the overlay or \"fdname\": a descriptor getfd named (path then only names it)}";
		return NULL;
	}
	/* A confined kvmm opens no path (it would die of it). */
	if (!fdname && api->vm->cfg->sandbox.enabled) {
		*code = "InvalidState";
		*err = "block-overlay: a sandboxed kvmm cannot open the overlay by path: pass it as fdname";
		return NULL;
	}
	if (fdname) {
		if (client_find_fd_of(api, fdname) < 0) {
			snprintf(msg, sizeof(msg), "no descriptor named '%.64s': getfd names one", fdname);
			*code = "InvalidArgument";
			*err = msg;
			return NULL;
		}
		/* The name the disk goes by from then on (query-block-stats,
		 * the next block-overlay's "device"). */
		if (!path) {
			snprintf(fdpath, sizeof(fdpath), "fd:%.64s", fdname);
			path = fdpath;
		}
	}
	want = json_object_get_string(dv);
	for (d = api->vm->devices; d; d = d->next) {
		if (virtio_blk_stats(d, &st))
			continue;
		snprintf(name, sizeof(name), "disk%u", n++);
		if (strcmp(want, name) && strcmp(want, st.path))
			continue;
		if (fdname)
			fd = client_find_fd_of(api, fdname);
		r = virtio_blk_overlay(d, path, fd, msg, sizeof(msg));
		if (r) {
			/* The descriptor stays the client's, for another try. */
			*code = r == -EINVAL || r == -EBUSY ? "InvalidArgument" : "GenericError";
			*err = msg;
			return NULL;
		}
		if (fdname)
			api_take_fd(api, fdname);	/* the disk's now */
		pr_info("disk %s now writes to overlay %s", want, path);
		return json_object_new_object();
	}
	snprintf(msg, sizeof(msg), "no disk '%.200s': name it as query-block-stats does (disk0, ...) or by its path",
		 want);
	*code = "InvalidArgument";
	*err = msg;
	return NULL;
}

/* Sizes in bytes as libvirt counts them (virDomainSetMemory,
 * virDomainMemoryStats): "actual" is the RAM the guest has left, "target"
 * what it was asked to keep. */
static struct json_object *cmd_query_balloon(struct api *api, struct json_object *args,
					     const char **code, const char **err)
{
	struct device *d = find_balloon(api);
	struct virtio_balloon_info in;
	struct json_object *r, *st;
	unsigned int i;

	if (!d) {
		*code = "DeviceNotFound";
		*err = "this VM has no balloon: start kvmm with --balloon";
		return NULL;
	}
	virtio_balloon_info(d, &in);
	r = json_object_new_object();
	add_u64(r, "memory", in.memory);
	add_u64(r, "target", in.memory - MIN((uint64_t)in.num_pages * BALLOON_PAGE_SIZE, in.memory));
	add_u64(r, "actual", in.memory - MIN((uint64_t)in.actual * BALLOON_PAGE_SIZE, in.memory));
	add_u64(r, "inflated", in.inflated * BALLOON_PAGE_SIZE);
	add_u64(r, "reported", in.reported);
	add_u64(r, "bad_pfns", in.bad_pfns);
	add_u64(r, "bad_stats", in.bad_stats);
	json_object_object_add(r, "deflate_on_oom", json_object_new_boolean(in.deflate_on_oom));
	json_object_object_add(r, "free_page_reporting",
			       json_object_new_boolean(in.free_page_reporting));
	json_object_object_add(r, "stats_period", json_object_new_int(in.stats_period));
	st = json_object_new_object();
	for (i = 0; i < BALLOON_S_NR; i++)
		if (in.stats_valid & (1ULL << i))
			add_u64(st, balloon_stat_names[i], in.stats[i]);
	if (in.has_stats)
		add_u64(st, "last_update", in.last_update);
	json_object_object_add(r, "stats", st);
	return r;
}

/* CLIENT: "target" in bytes, at most the VM's memory; "stats_period"
 * in seconds.  Either or both. */
static struct json_object *cmd_balloon_set(struct api *api, struct json_object *args,
					   const char **code, const char **err)
{
	static char msg[160];
	struct device *d = find_balloon(api);
	struct json_object *tv = NULL, *pv = NULL;
	int64_t target = -1, period = -1;

	if (!d) {
		*code = "DeviceNotFound";
		*err = "this VM has no balloon: start kvmm with --balloon";
		return NULL;
	}
	if (args && json_object_object_get_ex(args, "target", &tv)) {
		if (!json_object_is_type(tv, json_type_int) || (target = json_object_get_int64(tv)) < 0)
			goto bad;
	}
	if (args && json_object_object_get_ex(args, "stats_period", &pv)) {
		if (!json_object_is_type(pv, json_type_int) ||
		    (period = json_object_get_int64(pv)) < 0 || period > KVMM_BALLOON_MAX_PERIOD)
			goto bad;
	}
	if (!tv && !pv)
		goto bad;
	if (tv && (uint64_t)target > api->vm->mem.size) {
		snprintf(msg, sizeof(msg), "balloon-set: target %lld is above the VM's memory (%llu bytes)",
			 (long long)target, (unsigned long long)api->vm->mem.size);
		*code = "InvalidArgument";
		*err = msg;
		return NULL;
	}
	if (tv)
		virtio_balloon_set_target(d, target);
	if (pv && virtio_balloon_set_stats_period(d, period)) {
		*err = "balloon-set: cannot arm the statistics timer";
		return NULL;
	}
	return json_object_new_object();
bad:
	*code = "InvalidArgument";
	*err = "balloon-set takes {\"target\": bytes the guest keeps, \"stats_period\": seconds (0 to 86400)}";
	return NULL;
}

static const char *hotplug_code(int r)
{
	switch (r) {
	case -EEXIST:
		return "DeviceInUse";
	case -ENOSPC:
		return "NoSpace";
	case -ENODEV:
		return "DeviceNotFound";
	case -EBUSY:
		return "DeviceInUse";
	default:
		return "InvalidArgument";
	}
}

/* CLIENT: {"type": "blk" or "net", "id": name, "slot": 1-31 (optional),
 * then a disk's keys as in the configuration's "disks" (path, format,
 * readonly, cache, serial, ...) or a NIC's (tap, mac, mtu), "fdname" for
 * the image or the tap already open}.  Answers once
 * the device is on the bus and the guest was signalled. */
static struct json_object *cmd_device_add(struct api *api, struct json_object *args,
					  const char **code, const char **err)
{
	static char msg[320];	/* the main thread's only */
	struct json_object *tv = NULL, *iv = NULL, *sv = NULL, *fv, *opts, *r;
	const char *type, *id, *fdname = NULL;
	unsigned int slot = 0, got;
	int64_t sl = 0;
	int rc;

	if (live_migrate_active(api->vm)) {
		*code = "InvalidState";
		*err = "a migration is running: devices cannot be added until it ends";
		return NULL;
	}

	if (!args || !json_object_is_type(args, json_type_object) ||
	    !json_object_object_get_ex(args, "type", &tv) || !json_object_is_type(tv, json_type_string) ||
	    !json_object_object_get_ex(args, "id", &iv) || !json_object_is_type(iv, json_type_string) ||
	    (json_object_object_get_ex(args, "slot", &sv) && !json_object_is_type(sv, json_type_int))) {
		*code = "InvalidArgument";
		*err = "device-add takes {\"type\": \"blk\" or \"net\", \"id\": name, \"slot\": 1-31 (optional), and the disk's or NIC's keys}";
		return NULL;
	}
	type = json_object_get_string(tv);
	id = json_object_get_string(iv);
	if (sv) {
		sl = json_object_get_int64(sv);
		if (sl < 1 || sl > 0xffff) {
			snprintf(msg, sizeof(msg), "slot %lld is out of range: hotplug slots are 1 to 31", (long long)sl);
			*code = "InvalidArgument";
			*err = msg;
			return NULL;
		}
		slot = sl;
	}
	/* CLIENT: "fdname", a descriptor getfd named, stands for the disk
	 * image (opened for reading, or reading and writing unless
	 * readonly) -- the path, if given too, is only its name -- or for
	 * the NIC's tap. */
	if (json_object_object_get_ex(args, "fdname", &fv)) {
		if (!json_object_is_type(fv, json_type_string)) {
			*code = "InvalidArgument";
			*err = "device-add's fdname must be a name getfd gave";
			return NULL;
		}
		fdname = json_object_get_string(fv);
		if (client_find_fd_of(api, fdname) < 0) {
			snprintf(msg, sizeof(msg), "no descriptor named '%.64s': getfd names one", fdname);
			*code = "InvalidArgument";
			*err = msg;
			return NULL;
		}
	}
	/* The rest is the device's own configuration. */
	opts = json_object_new_object();
	json_object_object_foreach(args, key, val) {
		if (strcmp(key, "type") && strcmp(key, "id") && strcmp(key, "slot") && strcmp(key, "fdname"))
			json_object_object_add(opts, key, json_object_get(val));
	}
	if (fdname && !strcmp(type, "blk") && !json_object_object_get_ex(opts, "path", NULL)) {
		snprintf(msg, sizeof(msg), "fd:%s", fdname);
		json_object_object_add(opts, "path", json_object_new_string(msg));
	}
	if (!strcmp(type, "blk")) {
		struct disk_config d;

		rc = config_disk_parse(opts, &d, api->vm->cfg->ndisks, msg, sizeof(msg));
		if (!rc) {
			if (fdname) {
				d.fd = api_take_fd(api, fdname);
				d.has_fd = true;
			}
			rc = pci_hotplug_add_blk(api->vm, id, slot, &d, opts, false, &got, msg, sizeof(msg));
		}
	} else if (!strcmp(type, "net")) {
		struct net_config n;
		int fd = -1;

		/* CLIENT: "fd" would name one of kvmm's own descriptors: a tap
		 * comes by name, or open as fdname (a sandboxed kvmm cannot
		 * open /dev/net/tun); the descriptor tells its tap's name. */
		if (json_object_object_get_ex(opts, "fd", NULL)) {
			snprintf(msg, sizeof(msg), "a hot-added NIC needs tap=NAME or fdname (a tap descriptor getfd named), not fd");
			rc = -EINVAL;
		} else if (fdname && json_object_object_get_ex(opts, "tap", NULL)) {
			snprintf(msg, sizeof(msg), "a hot-added NIC takes tap or fdname, not both");
			rc = -EINVAL;
		} else {
			if (fdname) {
				fd = api_take_fd(api, fdname);
				json_object_object_add(opts, "fd", json_object_new_int(fd));
			}
			rc = config_net_parse(opts, &n, api->vm->cfg->nnets, msg, sizeof(msg));
			if (!rc)
				rc = pci_hotplug_add_net(api->vm, id, slot, &n, opts, false, &got, msg, sizeof(msg));
			else if (fd >= 0)
				close(fd);
		}
	} else {
		snprintf(msg, sizeof(msg), "device type '%.32s' cannot be hot-added: use blk or net", type);
		rc = -EINVAL;
	}
	json_object_put(opts);
	if (rc) {
		*code = hotplug_code(rc);
		*err = msg;
		return NULL;
	}
	r = json_object_new_object();
	json_object_object_add(r, "id", json_object_new_string(id));
	json_object_object_add(r, "slot", json_object_new_int(got));
	return r;
}

/* CLIENT: {"id": a hot-added device's}.  Answers once the guest was asked;
 * "device-deleted" says when it ejected the device. */
static struct json_object *cmd_device_del(struct api *api, struct json_object *args,
					  const char **code, const char **err)
{
	static char msg[200];
	struct json_object *iv = NULL;
	int rc;

	if (!args || !json_object_object_get_ex(args, "id", &iv) ||
	    !json_object_is_type(iv, json_type_string)) {
		*code = "InvalidArgument";
		*err = "device-del takes {\"id\": the id given to device-add}";
		return NULL;
	}
	/* As QEMU's: the guest's eject would change the device list the
	 * migration's stream began with. */
	if (live_migrate_active(api->vm)) {
		*code = "InvalidState";
		*err = "a migration is running: devices cannot be removed until it ends";
		return NULL;
	}
	rc = pci_hotplug_del(api->vm, json_object_get_string(iv), msg, sizeof(msg));
	if (rc) {
		*code = hotplug_code(rc);
		*err = msg;
		return NULL;
	}
	return json_object_new_object();
}

/* The hot-added devices, in slot order. */
static struct json_object *cmd_query_devices(struct api *api, struct json_object *args,
					     const char **code, const char **err)
{
	struct pci_hotplug_info in[32];
	struct json_object *a = json_object_new_array();
	unsigned int i, n = pci_hotplug_list(api->vm, in, ARRAY_SIZE(in));

	for (i = 0; i < n; i++) {
		struct json_object *o = json_object_new_object();
		bool blk = in[i].kind == PCI_HOTPLUG_BLK;

		json_object_object_add(o, "id", json_object_new_string(in[i].id));
		json_object_object_add(o, "type", json_object_new_string(blk ? "blk" : "net"));
		json_object_object_add(o, "slot", json_object_new_int(in[i].slot));
		json_object_object_add(o, blk ? "path" : "tap", json_object_new_string(in[i].backend));
		json_object_object_add(o, "state", json_object_new_string(in[i].removing ? "removing" : "plugged"));
		json_object_array_add(a, o);
	}
	return a;
}

/* CLIENT: {"id": a vCPU number, 0 to max_cpus - 1}. */
static int cpu_id_arg(struct json_object *args, const char *cmd, unsigned int *id,
		      const char **code, const char **err)
{
	static char msg[96];
	struct json_object *iv;
	int64_t v;

	if (!args || !json_object_object_get_ex(args, "id", &iv) ||
	    !json_object_is_type(iv, json_type_int) ||
	    (v = json_object_get_int64(iv)) < 0 || v > 0xffff) {
		snprintf(msg, sizeof(msg), "%s takes {\"id\": a vCPU number, 0 to max_vcpus - 1}", cmd);
		*code = "InvalidArgument";
		*err = msg;
		return -EINVAL;
	}
	*id = v;
	return 0;
}

/* Answers once the vCPU exists and the guest was signalled; the guest
 * starts it (INIT/SIPI) when it wants. */
static struct json_object *cmd_cpu_add(struct api *api, struct json_object *args,
				       const char **code, const char **err)
{
	static char msg[200];
	unsigned int id;
	int rc;

	if (cpu_id_arg(args, "cpu-add", &id, code, err))
		return NULL;
	/* The stream under way lists the vCPUs the migration began with. */
	if (live_migrate_active(api->vm)) {
		*code = "InvalidState";
		*err = "a migration is running: vCPUs cannot be added until it ends";
		return NULL;
	}
	rc = cpu_hotplug_add(api->vm, id, msg, sizeof(msg));
	if (rc) {
		*code = hotplug_code(rc);
		*err = msg;
		return NULL;
	}
	return json_object_new_object();
}

/* Answers once the guest was asked; "cpu-deleted" says when it ejected
 * the vCPU. */
static struct json_object *cmd_cpu_del(struct api *api, struct json_object *args,
				       const char **code, const char **err)
{
	static char msg[200];
	unsigned int id;
	int rc;

	if (cpu_id_arg(args, "cpu-del", &id, code, err))
		return NULL;
	if (live_migrate_active(api->vm)) {
		*code = "InvalidState";
		*err = "a migration is running: vCPUs cannot be removed until it ends";
		return NULL;
	}
	rc = cpu_hotplug_del(api->vm, id, msg, sizeof(msg));
	if (rc) {
		*code = hotplug_code(rc);
		*err = msg;
		return NULL;
	}
	return json_object_new_object();
}

/* The vCPUs the guest has, in id order, and those it ejected since the
 * last reset (their slots cannot take a vCPU before the next). */
static struct json_object *cmd_query_cpus(struct api *api, struct json_object *args,
					  const char **code, const char **err)
{
	struct vm *vm = api->vm;
	struct json_object *a = json_object_new_array();
	unsigned int i;

	for (i = 0; i < vm->ncpus; i++) {
		struct json_object *o;
		const char *state = vm->cpu_present[i] ?
				    (cpu_hotplug_removing(vm, i) ? "removing" : "present") :
				    vm->vcpus[i].fd >= 0 ? "ejected" : NULL;

		if (!state)
			continue;
		o = json_object_new_object();
		json_object_object_add(o, "id", json_object_new_int(i));
		json_object_object_add(o, "apic_id", json_object_new_int(i));
		json_object_object_add(o, "state", json_object_new_string(state));
		json_object_array_add(a, o);
	}
	return a;
}

/* CLIENT: {"fdname": name}, the line sent with one descriptor attached
 * (SCM_RIGHTS): names the oldest descriptor received and not yet named,
 * for device-add's or save's "fdname".  A name given again replaces the
 * descriptor it named. */
static struct json_object *cmd_getfd(struct api *api, struct json_object *args,
				     const char **code, const char **err)
{
	struct api_client *c = api->cur;
	struct json_object *nv;
	struct api_fd *f = NULL, *old;
	const char *name;
	int i;

	if (!args || !json_object_object_get_ex(args, "fdname", &nv) ||
	    !json_object_is_type(nv, json_type_string) || !*(name = json_object_get_string(nv)) ||
	    strlen(name) >= API_FDNAME_MAX) {
		*code = "InvalidArgument";
		*err = "getfd takes {\"fdname\": a name of 1 to 63 bytes}, sent with one descriptor (SCM_RIGHTS)";
		return NULL;
	}
	for (i = 0; i < API_MAX_FDS; i++)
		if (c->fds[i].fd >= 0 && !c->fds[i].name[0] && (!f || c->fds[i].seq < f->seq))
			f = &c->fds[i];
	if (!f) {
		*code = "InvalidArgument";
		*err = "getfd came without a descriptor: send it in the same sendmsg as the line (SCM_RIGHTS)";
		return NULL;
	}
	old = client_find_fd(c, name);
	if (old) {
		close(old->fd);
		old->fd = -1;
	}
	strcpy(f->name, name);
	return json_object_new_object();
}

/* CLIENT: {"fdname": name}: closes a descriptor getfd named and no
 * command used. */
static struct json_object *cmd_closefd(struct api *api, struct json_object *args,
				       const char **code, const char **err)
{
	struct json_object *nv;
	int fd;

	if (!args || !json_object_object_get_ex(args, "fdname", &nv) ||
	    !json_object_is_type(nv, json_type_string)) {
		*code = "InvalidArgument";
		*err = "closefd takes {\"fdname\": a name getfd gave}";
		return NULL;
	}
	fd = api_take_fd(api, json_object_get_string(nv));
	if (fd < 0) {
		*code = "InvalidArgument";
		*err = "no descriptor of that name: getfd names one";
		return NULL;
	}
	close(fd);
	return json_object_new_object();
}

/* CLIENT: a migration parameter: a whole number of at least min. */
static int get_param(struct json_object *args, const char *key, uint64_t min,
		     uint64_t *out, bool *given)
{
	struct json_object *v;
	int64_t n;

	*given = false;
	if (!args || !json_object_object_get_ex(args, key, &v))
		return 0;
	if (!json_object_is_type(v, json_type_int))
		return -EINVAL;
	n = json_object_get_int64(v);
	if (n < (int64_t)min || n > 1000000000)
		return -EINVAL;
	*out = n;
	*given = true;
	return 0;
}

/* CLIENT: "auto-converge", a boolean if given. */
static int get_bool(struct json_object *args, const char *key, bool *out, bool *given)
{
	struct json_object *v;

	*given = false;
	if (!args || !json_object_object_get_ex(args, key, &v))
		return 0;
	if (!json_object_is_type(v, json_type_boolean))
		return -EINVAL;
	*out = json_object_get_boolean(v);
	*given = true;
	return 0;
}

/* CLIENT: {"uri": "tcp:HOST:PORT" | "unix:PATH"} or {"fdname": N, a
 * connected socket or pipe getfd named}, optional "max-downtime-ms" (at
 * least 1) and "bandwidth-mibps" (0: no limit).  Answers once the copy
 * has started; migration-status events and query-migrate follow it. */
static struct json_object *cmd_migrate(struct api *api, struct json_object *args,
				       const char **code, const char **err)
{
	static char msg[600];
	struct json_object *uv = NULL, *fv = NULL, *it;
	struct live_info cur;
	const char *uri = NULL, *fdname = NULL;
	uint64_t downtime, bw;
	bool g1, g2, g3, g4, conv, postcopy = false;
	int fd = -1;

	live_migrate_info(api->vm, &cur);
	downtime = cur.max_downtime_ms;
	bw = cur.bandwidth_mibps;
	conv = cur.auto_converge;
	if (args && json_object_is_type(args, json_type_object)) {
		json_object_object_get_ex(args, "uri", &uv);
		json_object_object_get_ex(args, "fdname", &fv);
		json_object_object_foreach(args, key, val) {
			(void)val;
			if (strcmp(key, "uri") && strcmp(key, "fdname") &&
			    strcmp(key, "max-downtime-ms") && strcmp(key, "bandwidth-mibps") &&
			    strcmp(key, "auto-converge") && strcmp(key, "postcopy"))
				goto usage;
		}
	}
	if (!uv == !fv || (uv && !json_object_is_type(uv, json_type_string)) ||
	    (fv && !json_object_is_type(fv, json_type_string)) ||
	    get_param(args, "max-downtime-ms", 1, &downtime, &g1) ||
	    get_param(args, "bandwidth-mibps", 0, &bw, &g2) ||
	    get_bool(args, "auto-converge", &conv, &g3) ||
	    get_bool(args, "postcopy", &postcopy, &g4))
		goto usage;
	if (uv) {
		uri = json_object_get_string(uv);
		if (strncmp(uri, "tcp:", 4) && strncmp(uri, "unix:", 5))
			goto usage;
	} else {
		fdname = json_object_get_string(fv);
		if (client_find_fd_of(api, fdname) < 0) {
			snprintf(msg, sizeof(msg), "no descriptor named '%.64s': getfd names one", fdname);
			*code = "InvalidArgument";
			*err = msg;
			return NULL;
		}
	}
	if (live_migrate_active(api->vm)) {
		*code = "InvalidState";
		*err = "a migration is already running: migrate-cancel stops it";
		return NULL;
	}
	if (fdname) {
		fd = api_take_fd(api, fdname);
		snprintf(msg, sizeof(msg), "fd:%s", fdname);
	}
	if (live_migrate_start(api->vm, fdname ? msg : uri, fd, downtime, bw, conv, postcopy,
			       msg, sizeof(msg))) {
		*code = "MigrationFailed";
		*err = msg;
		return NULL;
	}
	it = json_object_new_object();
	return it;
usage:
	*code = "InvalidArgument";
	*err = "migrate takes {\"uri\": \"tcp:HOST:PORT\" or \"unix:PATH\"} or {\"fdname\": a descriptor getfd named}, "
	       "optional \"max-downtime-ms\" (1 or more), \"bandwidth-mibps\" (0: no limit), \"auto-converge\" and \"postcopy\" (true or false)";
	return NULL;
}

/* CLIENT: no arguments.  A running pre-copy switches to post-copy. */
static struct json_object *cmd_migrate_postcopy(struct api *api, struct json_object *args,
						const char **code, const char **err)
{
	static char msg[256];

	if (args && (!json_object_is_type(args, json_type_object) ||
		     json_object_object_length(args))) {
		*code = "InvalidArgument";
		*err = "migrate-postcopy takes no arguments";
		return NULL;
	}
	if (live_migrate_start_postcopy(api->vm, msg, sizeof(msg))) {
		*code = "InvalidState";
		*err = msg;
		return NULL;
	}
	return json_object_new_object();
}

static struct json_object *cmd_migrate_cancel(struct api *api, struct json_object *args,
					      const char **code, const char **err)
{
	int r = live_migrate_cancel(api->vm);

	if (r) {
		*code = "InvalidState";
		*err = r == -EBUSY ? "the migration is in post-copy: the destination runs the guest, it cannot be cancelled" :
		       "no migration is running";
		return NULL;
	}
	return json_object_new_object();
}

/* CLIENT: "max-downtime-ms" (1 or more), "bandwidth-mibps" (0: no
 * limit); either or both, also while a migration runs. */
static struct json_object *cmd_migrate_set_params(struct api *api, struct json_object *args,
						  const char **code, const char **err)
{
	uint64_t downtime = 0, bw = 0;
	bool g1 = false, g2 = false, g3 = false, conv = true;

	if (args && json_object_is_type(args, json_type_object)) {
		json_object_object_foreach(args, key, val) {
			(void)val;
			if (strcmp(key, "max-downtime-ms") && strcmp(key, "bandwidth-mibps") &&
			    strcmp(key, "auto-converge"))
				goto usage;
		}
	}
	if (get_param(args, "max-downtime-ms", 1, &downtime, &g1) ||
	    get_param(args, "bandwidth-mibps", 0, &bw, &g2) ||
	    get_bool(args, "auto-converge", &conv, &g3) || (!g1 && !g2 && !g3))
		goto usage;
	live_migrate_set_params(api->vm, g1 ? &downtime : NULL, g2 ? &bw : NULL, g3 ? &conv : NULL);
	return json_object_new_object();
usage:
	*code = "InvalidArgument";
	*err = "migrate-set-params takes \"max-downtime-ms\" (1 or more), \"bandwidth-mibps\" (0: no limit) and \"auto-converge\" (true or false), one or more";
	return NULL;
}

static struct json_object *cmd_query_migrate(struct api *api, struct json_object *args,
					     const char **code, const char **err)
{
	struct json_object *r = json_object_new_object();
	struct live_info i;

	const char *in_status;
	char in_err[256];
	uint64_t in_left;

	live_migrate_info(api->vm, &i);
	/* The incoming end of a post-copy has nothing else to say. */
	in_status = i.status == LIVE_NONE ? postcopy_incoming_status(&in_left, in_err, sizeof(in_err)) : NULL;
	if (in_status) {
		i.remaining_bytes = in_left;
		i.postcopy = true;
		snprintf(i.error, sizeof(i.error), "%s", in_err);
	}
	json_object_object_add(r, "status", json_object_new_string(in_status ? in_status :
								   live_status_name(i.status)));
	add_u64(r, "total-bytes", i.total_bytes);
	add_u64(r, "transferred-bytes", i.transferred_bytes);
	add_u64(r, "remaining-bytes", i.remaining_bytes);
	add_u64(r, "iteration", i.iteration);
	add_u64(r, "dirty-pages-rate", i.dirty_pages_rate);
	add_u64(r, "setup-ms", i.setup_ms);
	add_u64(r, "total-ms", i.total_ms);
	add_u64(r, "downtime-ms", i.downtime_ms);
	add_u64(r, "max-downtime-ms", i.max_downtime_ms);
	add_u64(r, "bandwidth-mibps", i.bandwidth_mibps);
	json_object_object_add(r, "auto-converge", json_object_new_boolean(i.auto_converge));
	add_u64(r, "cpu-throttle-percent", i.cpu_throttle_pct);
	json_object_object_add(r, "postcopy", json_object_new_boolean(i.postcopy));
	add_u64(r, "postcopy-requests", i.postcopy_requests);
	if (i.status == LIVE_FAILED || (in_status && !strcmp(in_status, "failed")))
		json_object_object_add(r, "error", json_object_new_string(i.error));
	return r;
}

static struct json_object *cmd_query_commands(struct api *api, struct json_object *args,
					      const char **code, const char **err);

static const struct api_cmd api_cmds[] = {
	{ "query-status", cmd_query_status },
	{ "query-commands", cmd_query_commands },
	{ "getfd", cmd_getfd },
	{ "closefd", cmd_closefd },
	{ "query-block-stats", cmd_query_block_stats },
	{ "query-net-stats", cmd_query_net_stats },
	{ "block-resize", cmd_block_resize },
	{ "block-overlay", cmd_block_overlay },
	{ "query-balloon", cmd_query_balloon },
	{ "balloon-set", cmd_balloon_set },
	{ "device-add", cmd_device_add },
	{ "device-del", cmd_device_del },
	{ "query-devices", cmd_query_devices },
	{ "cpu-add", cmd_cpu_add },
	{ "cpu-del", cmd_cpu_del },
	{ "query-cpus", cmd_query_cpus },
	{ "pause", cmd_pause },
	{ "save", cmd_save },
	{ "migrate", cmd_migrate },
	{ "migrate-cancel", cmd_migrate_cancel },
	{ "migrate-postcopy", cmd_migrate_postcopy },
	{ "migrate-set-params", cmd_migrate_set_params },
	{ "query-migrate", cmd_query_migrate },
	{ "resume", cmd_resume },
	{ "power-button", cmd_power_button },
	{ "reboot", cmd_reboot },
	{ "reset", cmd_reset },
	{ "quit", cmd_quit },
};

static struct json_object *cmd_query_commands(struct api *api, struct json_object *args,
					      const char **code, const char **err)
{
	struct json_object *a = json_object_new_array();
	size_t i;

	for (i = 0; i < ARRAY_SIZE(api_cmds); i++)
		json_object_array_add(a, json_object_new_string(api_cmds[i].name));
	return a;
}

static void api_reply_error(struct api *api, struct api_client *c, struct json_object *id,
			    const char *code, const char *msg)
{
	struct json_object *r = json_object_new_object(), *e = json_object_new_object();

	json_object_object_add(e, "code", json_object_new_string(code));
	json_object_object_add(e, "message", json_object_new_string(msg));
	if (id)
		json_object_object_add(r, "id", json_object_get(id));
	json_object_object_add(r, "error", e);
	api_send(api, c, r);
	json_object_put(r);
}

static void api_dispatch(struct api *api, struct api_client *c, const char *line)
{
	struct json_object *req = json_tokener_parse(line), *id = NULL, *ex, *args = NULL, *ret, *r;
	const char *code = "GenericError", *err = "command failed", *name;
	char msg[160];
	size_t i;

	if (!req || !json_object_is_type(req, json_type_object)) {
		api_reply_error(api, c, NULL, "ParseError", "each request must be one JSON object on one line");
		json_object_put(req);
		return;
	}
	json_object_object_get_ex(req, "id", &id);
	if (!json_object_object_get_ex(req, "execute", &ex) ||
	    !json_object_is_type(ex, json_type_string)) {
		api_reply_error(api, c, id, "InvalidRequest", "the request has no \"execute\" string");
		goto out;
	}
	json_object_object_get_ex(req, "arguments", &args);
	name = json_object_get_string(ex);
	for (i = 0; i < ARRAY_SIZE(api_cmds); i++)
		if (!strcmp(name, api_cmds[i].name))
			break;
	if (i == ARRAY_SIZE(api_cmds)) {
		snprintf(msg, sizeof(msg), "unknown command '%.64s'; query-commands lists them", name);
		api_reply_error(api, c, id, "CommandNotFound", msg);
		goto out;
	}
	api->cur = c;
	ret = api_cmds[i].fn(api, args, &code, &err);
	api->cur = NULL;
	if (!ret) {
		api_reply_error(api, c, id, code, err);
		goto out;
	}
	r = json_object_new_object();
	if (id)
		json_object_object_add(r, "id", json_object_get(id));
	json_object_object_add(r, "return", ret);
	api_send(api, c, r);
	json_object_put(r);
out:
	json_object_put(req);
}

static void api_on_client(void *opaque, uint32_t events)
{
	struct api_client *c = opaque;
	struct api *api = c->api;
	union {
		char buf[CMSG_SPACE(API_MAX_FDS * sizeof(int))];
		struct cmsghdr align;
	} cbuf;
	struct msghdr mh;
	struct cmsghdr *cm;
	struct iovec iov;
	char *nl;
	ssize_t n;
	int slot;

	slot = api_slot(api, c);
	if (slot < 0)
		return;
	iov.iov_base = c->buf + c->len;
	iov.iov_len = sizeof(c->buf) - 1 - c->len;
	memset(&mh, 0, sizeof(mh));
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	mh.msg_control = cbuf.buf;
	mh.msg_controllen = sizeof(cbuf.buf);
	n = recvmsg(c->fd, &mh, MSG_CMSG_CLOEXEC);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	/* CLIENT: any descriptors that came are kept for getfd (or closed
	 * past the limit); a truncated set is closed by the kernel. */
	for (cm = CMSG_FIRSTHDR(&mh); n > 0 && cm; cm = CMSG_NXTHDR(&mh, cm)) {
		size_t k, nfd;

		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
			continue;
		nfd = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (k = 0; k < nfd; k++) {
			int fd;

			memcpy(&fd, CMSG_DATA(cm) + k * sizeof(int), sizeof(int));
			client_keep_fd(c, fd);
		}
	}
	if (n <= 0) {
		api_drop(api, slot);
		return;
	}
	c->len += n;
	c->buf[c->len] = '\0';
	while ((nl = memchr(c->buf, '\n', c->len))) {
		*nl = '\0';
		api_dispatch(api, c, c->buf);
		if (api_slot(api, c) < 0)
			return;	/* dropped while replying */
		c->len -= nl + 1 - c->buf;
		memmove(c->buf, nl + 1, c->len);
		c->buf[c->len] = '\0';
	}
	if (c->len == sizeof(c->buf) - 1) {
		/* A line longer than any valid request: refuse and drop. */
		api_reply_error(api, c, NULL, "ParseError", "request line too long");
		if (api_slot(api, c) >= 0)
			api_drop(api, slot);
	}
}

static void api_on_accept(void *opaque, uint32_t events)
{
	struct api *api = opaque;
	struct api_client *c;
	struct json_object *g, *hello;
	int fd, i, i2;

	fd = accept4(api->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	if (fd < 0)
		return;
	for (i = 0; i < API_MAX_CLIENTS && api->clients[i]; i++)
		;
	c = i < API_MAX_CLIENTS ? calloc(1, sizeof(*c)) : NULL;
	if (!c) {
		close(fd);
		return;
	}
	c->fd = fd;
	c->api = api;
	for (i2 = 0; i2 < API_MAX_FDS; i2++)
		c->fds[i2].fd = -1;
	api->clients[i] = c;
	if (loop_add(api->vm->loop, fd, EPOLLIN, api_on_client, c)) {
		close(fd);
		free(c);
		api->clients[i] = NULL;
		return;
	}
	hello = json_object_new_object();
	g = json_object_new_object();
	json_object_object_add(g, "name", json_object_new_string("kvmm"));
	json_object_object_add(g, "version", json_object_new_string(PACKAGE_VERSION));
	json_object_object_add(g, "api", json_object_new_int(KVMM_API_VERSION));
	json_object_object_add(g, "vm", json_object_new_string(api->vm->cfg->name));
	json_object_object_add(hello, "greeting", g);
	api_send(api, c, hello);
	json_object_put(hello);
}

int api_open(struct vm *vm, const char *path, struct api **out)
{
	struct api *api;
	struct device *d;
	int fd, r;

	fd = unix_listen(path, 8, "control socket");
	if (fd < 0)
		return fd;
	api = calloc(1, sizeof(*api));
	if (!api || !(api->path = strdup(path))) {
		free(api);
		unlink(path);
		close(fd);
		return -ENOMEM;
	}
	api->vm = vm;
	api->listen_fd = fd;
	r = loop_add(vm->loop, fd, EPOLLIN, api_on_accept, api);
	if (r) {
		api_close(api);
		return r;
	}
	d = find_balloon(api);
	if (d)
		virtio_balloon_set_listener(d, api_event_balloon, api);
	*out = api;
	return 0;
}

void api_close(struct api *api)
{
	struct device *d;
	int i;

	if (!api)
		return;
	d = find_balloon(api);
	if (d)
		virtio_balloon_set_listener(d, NULL, NULL);
	for (i = 0; i < API_MAX_CLIENTS; i++)
		if (api->clients[i])
			api_drop(api, i);
	loop_del(api->vm->loop, api->listen_fd);
	close(api->listen_fd);
	unlink(api->path);
	free(api->path);
	free(api);
}
