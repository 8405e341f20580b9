/* One kvmm process per running domain: spawn it from the domain's
 * definition (vmconfig.c), wait until its control socket answers, stop it,
 * and notice at once when it exits -- through a pidfd watched by the main
 * loop, never by polling kill(pid, 0) (PID 1 may reap orphans late).
 *
 * Files of a running domain: STATE_DIR/UUID.json (the configuration kvmm
 * was started with), STATE_DIR/UUID.sock (its control socket),
 * STATE_DIR/UUID.xml (its status: status.h), and the log LOG_DIR/NAME.log
 * (what was started, kvmm's own messages, how it ended).  All but the log
 * go when the domain stops.  kvmm runs in a session of its own, so it
 * outlives the daemon; the next daemon re-adopts it. */
#ifndef KVMM_DRV_PROCESS_H
#define KVMM_DRV_PROCESS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "domain/domain.h"

/* Where running domains' files go; set once by daemon.c. */
void process_init(const char *state_dir, const char *log_dir);

/* virtkvmmd.conf's sandbox: kvmm started with --sandbox, as UID/GID
 * ((uid_t)-1/(gid_t)-1: the system user/group "kvmm", looked up at each
 * start, which fails if there is none); hot-added disks then go to it
 * as descriptors (monitor.c).  Set once by daemon.c. */
void process_set_sandbox(bool on, uid_t uid, gid_t gid);

/* virtkvmmd.conf's pvm_compat: every kvmm started (boot, restore,
 * incoming migration) gets "pvm_compat": true in its config.  Set once
 * by daemon.c. */
void process_set_pvm_compat(bool on);

/* Starts OBJ (inactive; the caller holds its job).  On success the domain
 * is running with an id; on failure nothing is left behind (no process,
 * socket or config file) and the reason -- kvmm's own message when it
 * exited -- is reported.  Crash-consistent: the run's status file
 * (paused, starting up) exists before kvmm runs.  Sources that are not
 * regular files (or block devices, for disks) are refused first. */
int process_start(struct domain_obj *obj);

/* process_start; PAUSED (virsh start --paused): kvmm holds the vCPUs
 * before their first instruction and the domain is paused (user), with
 * the Started and then the Suspended event, as libvirt's QEMU driver. */
int process_start_paused(struct domain_obj *obj, bool paused);

/* Starts OBJ (inactive; the job held) from FILE, a state stream kvmm's
 * save wrote: kvmm --restore FILE with the host side (taps, ptys, log,
 * socket) made as process_start makes them.  The domain is running
 * (RESTORED; PAUSED: paused after it, as process_start_paused), event
 * STARTED/RESTORED.  FILE must stay in place while the VM runs (kvmm maps
 * the guest's memory from it; removing it is fine). */
int process_restore(struct domain_obj *obj, const char *file, bool paused);

/* Saving a running OBJ (the job held), in two steps so the caller can
 * make the image safe in between.  process_save_stream: kvmm writes its
 * state stream to FD (monitor_save; a sandboxed kvmm too) and leaves the
 * VM paused, the domain's state unchanged; on failure the VM runs on as
 * it was.  Then either process_save_finish: kvmm stopped, the domain shut
 * off (saved), event STOPPED/SAVED; or process_save_abandon, when what
 * kvmm wrote could not be kept: the VM resumed unless the domain is
 * paused (a failure there is only logged). */
int process_save_stream(struct domain_obj *obj, int fd);
int process_save_finish(struct domain_obj *obj);
void process_save_abandon(struct domain_obj *obj);

/* Migration.  The incoming side: starts OBJ (inactive; the job held)
 * from the state stream kvmm reads whole from FD, a migration's accepted
 * connection (kvmm --incoming fd:N --paused), with the host side made as
 * process_start makes it.  Returns once kvmm has read the stream and
 * answers: the domain is paused (migration), event STARTED/MIGRATED.  On
 * failure nothing is left, as for process_start.  FD stays the caller's. */
int process_start_incoming(struct domain_obj *obj, int fd);

/* The outgoing side, stop-and-copy: writes the active OBJ's state to FD
 * (a connected socket; FD stays the caller's), the job held.  The VM is
 * left paused: a running one as paused (migration), event
 * SUSPENDED/MIGRATED; on failure a running VM runs on.  (A live
 * migration is kvmm's `migrate`, driven by api/domain_migrate.c, which
 * then marks the VM with process_migrated_paused.) */
int process_migrate_out(struct domain_obj *obj, int fd);
/* kvmm paused OBJ's VM for a migration (its switchover, or a migration
 * told to converge): a running domain becomes paused (migration), event
 * SUSPENDED/MIGRATED; a domain the user paused stays as it is. */
void process_migrated_paused(struct domain_obj *obj);
/* Stops OBJ's kvmm after its state went to a destination that now runs
 * it: shut off (migrated), event STOPPED/MIGRATED. */
int process_stop_migrated(struct domain_obj *obj);
/* Resumes a paused OBJ: running with REASON, event RESUMED/DETAIL. */
int process_resume_as(struct domain_obj *obj, int reason, int detail);

/* process_restore from a snapshot's memory FILE (revert): state reason
 * and events FROM_SNAPSHOT (STARTED, then SUSPENDED if PAUSED), as
 * libvirt's. */
int process_restore_snapshot(struct domain_obj *obj, const char *file, bool paused);

/* Stops OBJ's kvmm (the caller holds the job): SIGTERM, and unless
 * GRACEFUL, SIGKILL when it has not exited after a few seconds.  Returns
 * once the domain is shut off. */
int process_destroy(struct domain_obj *obj, bool graceful);

/* process_destroy for a revert to a snapshot (or its HALT): shut off
 * (from snapshot), event STOPPED/FROM_SNAPSHOT. */
int process_destroy_for_snapshot(struct domain_obj *obj);

/* The pid of OBJ's kvmm, 0 when it is not running. */
pid_t process_pid(struct domain_obj *obj);

/* CPU time used by OBJ's kvmm (all its threads), in ns; 0 if inactive. */
uint64_t process_cpu_time(struct domain_obj *obj);

/* The cgroup of OBJ's run (kvmm/cgroup.h), "" when it has none or does
 * not run; OBJ's lock held. */
const char *process_cgroup_locked(struct domain_obj *obj);

/* The control socket of a running OBJ (a copy), or NULL after reporting
 * VIR_ERR_OPERATION_INVALID "domain is not running". */
char *process_api_path(struct domain_obj *obj);

/* Re-adopts the kvmm processes a previous daemon started, from their
 * status files (status.c), without waiting on any of them (a stopped kvmm
 * stays its domain's; its event connection and status follow on a
 * thread); domains whose kvmm died meanwhile are shut off (crashed), runs
 * that were still starting are ended (kvmm killed); their files and taps
 * removed.  Then kills every kvmm of this instance and removes every file
 * of STATE_DIR that no status file owns.  Called once, after the
 * definitions are loaded, before clients are served. */
void process_adopt_all(void);

/* Starts the domains marked autostart, once per host boot (a marker in
 * STATE_DIR, which is on tmpfs), on a thread of its own. */
void process_autostart_all(void);

/* Rewrites a running OBJ's status file (domain_set_state; obj->lock
 * held).  A failure is logged: the domain runs on, only a daemon restart
 * would lose track of it. */
void process_save_status_locked(struct domain_obj *obj);

/* How many domains run (the idle timeout waits for none). */
unsigned process_count(void);

/* Hotplug.  kvmm's id of a hot-added disk or NIC is its alias, which the
 * caller assigned in NEWDEF (domain_def_assign_aliases).
 *
 * Plugs disk number IDX of NEWDEF -- OBJ's live definition with that disk
 * added -- into the running guest (the caller holds the job); on success
 * NEWDEF is taken, the disk is in the live definition (and the status
 * file), DEVICE_ADDED sent.  On failure nothing was added and NEWDEF is
 * the caller's. */
int process_attach_disk(struct domain_obj *obj, struct domain_def *newdef, size_t idx);

/* The same for NIC number IDX of NEWDEF: its tap made (as at start) and
 * removed again on failure, and once the guest gave the NIC back. */
int process_attach_net(struct domain_obj *obj, struct domain_def *newdef, size_t idx);

/* Asks the guest to give back the hot-added device ALIAS (the job held)
 * and waits up to 5 s for it: *REMOVED when it is gone (from the live XML
 * too), else the removal is pending and DEVICE_REMOVED comes later.  A
 * device plugged in at start is refused. */
int process_detach_device(struct domain_obj *obj, const char *alias, bool *removed);

/* vCPU hotplug (the job held): brings the running guest to N vCPUs (at
 * most the live maximum, checked by the caller), adding the lowest free
 * ids or removing the highest ones; a removal waits up to 5 s for the
 * guest's eject (then VIR_ERR_OPERATION_TIMEOUT, as libvirt's qemu
 * driver).  The live XML's current= and the status file follow what kvmm
 * then has. */
int process_set_vcpus(struct domain_obj *obj, unsigned n);

#endif
