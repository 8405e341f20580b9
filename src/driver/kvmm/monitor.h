/* The daemon's side of kvmm's control API (docs/api.md): the only file
 * in virtkvmmd that speaks it.  One typed call per command the daemon
 * uses, kvmm's replies and events parsed here into C structs, so no other
 * file knows a command name or a JSON key.
 *
 * A command opens its own connection to the VM's socket, reads the
 * greeting, sends one request and reads until the reply with its id
 * (events on the way are skipped), then closes.  Blocking, with a
 * deadline (monitor_timeout) that covers connect() too, so it is called
 * from worker threads only; kvmm accepts several clients, and at most 4
 * commands to one kvmm run at once (further ones wait their turn within
 * their deadline), so a kvmm that stopped answering holds few
 * connections.
 *
 * Every call returns 0, or -1 after reporting: kvmm's own error message
 * with VIR_ERR_OPERATION_INVALID for InvalidState, VIR_ERR_INVALID_ARG for
 * InvalidArgument, VIR_ERR_OPERATION_FAILED for the rest and for a reply
 * of the wrong shape, or why kvmm could not be reached (then the lost
 * handler runs too). */
#ifndef KVMM_DRV_MONITOR_H
#define KVMM_DRV_MONITOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* How long a command may take, kvmm's greeting included (virtkvmmd.conf
 * monitor_timeout); set once at start. */
void monitor_set_timeout(unsigned ms);
/* On: device-add of a disk opens its image here and passes the
 * descriptor (getfd, SCM_RIGHTS), for a sandboxed kvmm.  Set once. */
void monitor_set_pass_fds(bool on);

/* Called (from the worker) when a command fails for want of an answer --
 * a timeout, EOF, garbage, no connection -- rather than kvmm's refusal:
 * FN(path, -errno).  Whether the daemon lost control of a VM that still
 * runs is the handler's to decide. */
typedef void (*monitor_lost_fn)(const char *path, int err);
void monitor_set_lost_handler(monitor_lost_fn fn);

/* Connects to PATH and reads the greeting, all within TIMEOUT_MS (a
 * full listen backlog included): a connected fd, or -errno
 * (-ENOENT/-ECONNREFUSED while kvmm is still starting, -ETIMEDOUT). */
int monitor_connect(const char *path, int timeout_ms);

/* The commands without arguments or a reply worth keeping. */
int monitor_pause(const char *path);
int monitor_resume(const char *path);
int monitor_powerdown(const char *path);	/* the ACPI power button */
int monitor_reboot(const char *path);		/* power button, then reset */
int monitor_reset(const char *path);		/* hard reset */

/* save: kvmm pauses the VM and writes its state stream to FD (sent with
 * getfd: a file or a pipe open for writing, which kvmm closes once
 * written), leaving it paused; on failure (VIR_ERR_OPERATION_FAILED with
 * kvmm's message) a running VM runs on, and what was written is the
 * caller's to remove.  Works for a sandboxed kvmm too, which opens no
 * path.  A migration passes its connection.  Its deadline is MONITOR_SAVE_TIMEOUT_MS, or monitor_timeout
 * when that is longer. */
#define MONITOR_SAVE_TIMEOUT_MS 300000
int monitor_save(const char *path, int fd);

/* Live migration (kvmm's `migrate` with FD, a connected socket sent by
 * getfd): starts the pre-copy and returns at once; query it with
 * monitor_query_migrate until it ends.  MAX_DOWNTIME_MS >= 1,
 * BANDWIDTH_MIBPS 0 for no limit. */
struct kvmm_migrate_params {
	uint64_t max_downtime_ms;
	uint64_t bandwidth_mibps;
	bool auto_converge;
};
int monitor_migrate(const char *path, int fd, const struct kvmm_migrate_params *p);
/* migrate-cancel: the running migration stops before its switchover
 * (a running VM runs on); VIR_ERR_OPERATION_INVALID when none runs. */
int monitor_migrate_cancel(const char *path);
/* migrate-postcopy: the running pre-copy switches to post-copy. */
int monitor_migrate_postcopy(const char *path);
/* migrate-set-params: for the running migration and the next ones. */
int monitor_migrate_set_params(const char *path, const struct kvmm_migrate_params *p);

enum kvmm_migrate_status {
	KVMM_MIGRATE_NONE,
	KVMM_MIGRATE_ACTIVE,
	KVMM_MIGRATE_COMPLETED,
	KVMM_MIGRATE_FAILED,
	KVMM_MIGRATE_CANCELLED,
	KVMM_MIGRATE_POSTCOPY,	/* the destination runs, pulling what it lacks */
};
/* query-migrate: the last migration's progress (bytes, ms). */
struct kvmm_migrate_info {
	enum kvmm_migrate_status status;
	uint64_t total_bytes, transferred_bytes, remaining_bytes;
	uint64_t iteration;		/* rounds so far */
	uint64_t dirty_pages_rate;	/* pages/s the guest dirtied last round */
	uint64_t setup_ms, total_ms, downtime_ms;
	uint64_t cpu_throttle_pct;
	uint64_t postcopy_requests;	/* pages the destination asked for */
	char error[256];		/* FAILED: why */
};
int monitor_query_migrate(const char *path, struct kvmm_migrate_info *mi);

/* What kvmm says its VM is doing. */
enum kvmm_run_state {
	KVMM_STATE_UNKNOWN,	/* a state this daemon does not know */
	KVMM_STATE_RUNNING,
	KVMM_STATE_PAUSED,
	KVMM_STATE_SHUTDOWN,
};

/* query-status, the parts the daemon uses.  The pty paths are NULL unless
 * that device is on a pty; free with kvmm_status_clear. */
struct kvmm_status {
	enum kvmm_run_state state;
	char *serial_pty;	/* COM1 */
	char *console_pty;	/* the virtio console */
	bool cpu_hotplug;	/* cpu-add and cpu-del work (--max-cpus above --cpus) */
	unsigned vcpus;		/* the guest's now; 0: not said */
};
int monitor_query_status(const char *path, struct kvmm_status *st);
void kvmm_status_clear(struct kvmm_status *st);

/* Whether a disk holds requests for error policy stop, and what they
 * met (query-block-stats io_status, QEMU's io-status). */
enum kvmm_io_status { KVMM_IO_OK, KVMM_IO_FAILED, KVMM_IO_NOSPACE };

/* One disk's counters since kvmm started (query-block-stats). */
struct kvmm_blk_stats {
	uint64_t rd_reqs, rd_bytes, rd_time_ns;
	uint64_t wr_reqs, wr_bytes, wr_time_ns;
	uint64_t fl_reqs, fl_time_ns;
	uint64_t errors;
	enum kvmm_io_status io_status;	/* requests held by error policy stop */
};
/* Every disk's, in --disk order (the XML's): *STATS (g_free) holds *N. */
int monitor_block_stats(const char *path, struct kvmm_blk_stats **stats, size_t *n);

/* Resizes disk number DISK (in --disk order) to BYTES. */
int monitor_block_resize(const char *path, unsigned disk, uint64_t bytes);

/* Puts the disk whose image is IMAGE onto OVERLAY, a qcow2 file over it
 * (kvmm's block-overlay), which the daemon opens and passes (a sandboxed
 * kvmm opens no path); DSYNC: the disk's cache mode is writethrough or
 * directsync (kvmm needs O_DSYNC on the descriptor then). */
int monitor_block_overlay(const char *path, const char *image, const char *overlay, bool dsync);

/* balloon-set: the RAM the guest is asked to keep, TARGET bytes (0: not
 * changed), and the statistics period in seconds (-1: not changed). */
int monitor_balloon_set(const char *path, uint64_t target, int stats_period);

/* query-balloon, in bytes (last_update in epoch seconds).  HAVE has bit
 * N set when the guest gave the Nth statistic, in the order below. */
struct kvmm_balloon {
	uint64_t memory, target, actual;
	uint64_t swap_in, swap_out, major_faults, minor_faults, free_memory,
		 total_memory, available_memory, disk_caches, last_update;
	unsigned have;
};
#define KVMM_BALLOON_NSTATS 9
int monitor_query_balloon(const char *path, struct kvmm_balloon *b);

/* PCI hotplug (docs/hotplug.md).  device-add of a virtio disk or NIC with
 * id ID; KEYS_JSON is a JSON object of the disk's or NIC's keys as in the
 * VM config (vmconfig_disk_json / vmconfig_net_json).  *SLOT: the PCI slot
 * kvmm put it in.  A NIC's tap goes as TAP_FD (the caller's to close
 * after), in place of the name in KEYS_JSON: kvmm opens no tap. */
int monitor_device_add_disk(const char *path, const char *id, const char *keys_json,
			    unsigned *slot);
int monitor_device_add_net(const char *path, const char *id, const char *keys_json, int tap_fd,
			   unsigned *slot);
/* device-del: asks the guest to give device ID back; the device-deleted
 * event says when it did.  A cold-plugged device or an unknown id is
 * refused (VIR_ERR_OPERATION_INVALID, saying so). */
int monitor_device_del(const char *path, const char *id);
/* query-devices: the hot-added devices, in slot order. */
struct kvmm_hot_device {
	char id[64];
	bool net;		/* else a disk */
	unsigned slot;
	bool removing;		/* device-del asked, the guest has not ejected it */
};
/* *DEVS (g_free) holds *N. */
int monitor_query_devices(const char *path, struct kvmm_hot_device **devs, size_t *n);

/* vCPU hotplug (docs/hotplug.md).  cpu-add: vCPU ID created and the
 * guest signalled; cpu-del: the guest asked to give it back, the
 * cpu-deleted event says when it did. */
int monitor_cpu_add(const char *path, unsigned id);
int monitor_cpu_del(const char *path, unsigned id);
/* query-cpus: each vCPU id kvmm lists, with its state. */
enum kvmm_cpu_state { KVMM_CPU_PRESENT, KVMM_CPU_REMOVING, KVMM_CPU_EJECTED };
struct kvmm_cpu {
	unsigned id;
	enum kvmm_cpu_state state;
};
/* *CPUS (g_free) holds *N. */
int monitor_query_cpus(const char *path, struct kvmm_cpu **cpus, size_t *n);

/* An event kvmm sent; those this daemon does not know are not delivered. */
enum monitor_event_kind {
	MONITOR_EVENT_STATE_CHANGED,
	MONITOR_EVENT_RESET,		/* the guest was reset (any cause) */
	MONITOR_EVENT_BALLOON_CHANGE,	/* the guest's balloon moved */
	MONITOR_EVENT_BLOCK_IO_ERROR,	/* a disk met a host I/O error */
	MONITOR_EVENT_DEVICE_DELETED,	/* the guest ejected a hot-added device */
	MONITOR_EVENT_CPU_DELETED,	/* the guest ejected a vCPU */
	MONITOR_EVENT_MIGRATION,	/* a migration's status changed */
};
/* What a disk's error policy did about it. */
enum kvmm_io_action { KVMM_IO_ACTION_REPORT, KVMM_IO_ACTION_IGNORE, KVMM_IO_ACTION_STOP };
struct monitor_event {
	enum monitor_event_kind kind;
	enum kvmm_run_state state;	/* STATE_CHANGED: the new state */
	int exit_status;		/* STATE_CHANGED: kvmm's exit status when
					 * it is ending, else -1 */
	uint64_t balloon_actual;	/* BALLOON_CHANGE: bytes the guest keeps */
	/* BLOCK_IO_ERROR: the disk (in --disk order, the XML's), what it
	 * did, and whether the error was ENOSPC. */
	unsigned disk;
	enum kvmm_io_action io_action;
	bool io_nospace;
	/* DEVICE_DELETED: the device's id and the slot it left. */
	char device_id[64];
	unsigned slot;
	unsigned cpu_id;		/* CPU_DELETED: the vCPU */
	enum kvmm_migrate_status migration;	/* MIGRATION: the new status */
};

/* An event connection on the main loop: FN(event, OPAQUE) for each event
 * kvmm sends, until kvmm closes the socket.  NULL if kvmm cannot be
 * reached. */
typedef void (*monitor_event_fn)(const struct monitor_event *ev, void *opaque);
struct monitor_watch;
struct monitor_watch *monitor_watch_new(const char *path, monitor_event_fn fn, void *opaque);
/* The same in two steps: connect and read the greeting (blocking, any
 * thread; NULL if kvmm cannot be reached within monitor_timeout), then
 * deliver events on the main loop from monitor_watch_start on. */
struct monitor_watch *monitor_watch_connect(const char *path);
void monitor_watch_start(struct monitor_watch *w, monitor_event_fn fn, void *opaque);
/* Reads and dispatches what has already arrived (main loop): kvmm's last
 * event is in the socket before its process ends, but the pidfd may be
 * seen first. */
void monitor_watch_drain(struct monitor_watch *w);
void monitor_watch_free(struct monitor_watch *w);

#endif
