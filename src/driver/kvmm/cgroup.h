/* A cgroup per running domain, carrying its <cputune> and <memtune>.  The
 * only file that writes cgroup files.  Layout, under the cgroup v2 mount
 * when it has the cpu or memory controller enabled, else under the v1
 * mounts of cpu and of memory (each that exists):
 *
 *     MOUNT/machine/kvmm-INSTANCE/UUID
 *
 * INSTANCE is 16 hex digits of a digest of the daemon's state directory
 * (as in its taps' mark), so that instances (system, session, --root)
 * never touch each other's cgroups.  The path below MOUNT is what a run's
 * status file records.  A host without a usable hierarchy runs domains in
 * the daemon's cgroup, unless they ask for a limit: then the start is
 * refused, naming the missing controller. */
#ifndef KVMM_DRV_CGROUP_H
#define KVMM_DRV_CGROUP_H

#include <glib.h>
#include <sys/types.h>

#include "conf/domain_conf.h"

/* Finds the hierarchies: those of /proc/self/mountinfo, or (FAKE_ROOT,
 * the daemon's cgroup_root key, for tests) a directory holding either a
 * cgroup.controllers file (a v2 root) or one directory per v1 controller. */
void cgroup_init(const char *state_dir, const char *fake_root);

/* Creates the cgroup of domain UUID, applies DEF's tunables and moves
 * PID (held before exec) into it.  Returns the recorded path (g_free), ""
 * when the host has no hierarchy and DEF needs none, NULL after reporting
 * (whatever was created is removed). */
char *cgroup_create(const char *uuid, const struct domain_def *def, pid_t pid);

/* A running domain's tunables changed: rewrites the cpu (memory) files of
 * its cgroup at PATH from DEF.  -1 after reporting. */
int cgroup_set_cpu(const char *path, const struct domain_def *def);
int cgroup_set_memory(const char *path, const struct domain_def *def);

/* cgroup v2's cpu.weight: its range, and the kernel's default. */
#define CPU_WEIGHT_MIN 1
#define CPU_WEIGHT_MAX 10000
#define CPU_WEIGHT_DEFAULT 100

/* The cpu.weight for <cputune><shares> SHARES on cgroup v2: SHARES
 * itself, as libvirt writes it; -1 after reporting (VIR_ERR_INVALID_ARG,
 * libvirt's words) outside [CPU_WEIGHT_MIN, CPU_WEIGHT_MAX]. */
long long cgroup_cpu_weight(unsigned long long shares);

/* Whether the hierarchy in use is cgroup v2 (cpu.weight's range). */
bool cgroup_v2(void);

/* Removes the cgroup at PATH (a recorded one; NULL or "" is none).  Its
 * processes must be gone. */
void cgroup_remove(const char *path);

/* Removes this instance's cgroups whose UUID OWNED (a set of UUID
 * strings) does not hold. */
void cgroup_sweep(GHashTable *owned);

#endif
