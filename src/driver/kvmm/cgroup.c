/* Cgroups of running domains; see cgroup.h. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib.h>
#include <glib/gstdio.h>
#include <libvirt/libvirt.h>

#include "cgroup.h"
#include "error.h"
#include "log.h"
#include "testpoint.h"

#define VIR_FROM_THIS VIR_FROM_CGROUP

enum { CG_CPU, CG_MEMORY, CG_N };
static const char *const cg_names[CG_N] = { "cpu", "memory" };

static bool v2;			/* one hierarchy: mounts[] are all the same */
static char *mounts[CG_N];	/* NULL: controller missing */
static char *instance_dir;	/* "machine/kvmm-INSTANCE" */

static bool has_word(const char *list, const char *word, const char *seps)
{
	g_auto(GStrv) w = g_strsplit_set(list, seps, -1);

	for (char **p = w; *p; p++)
		if (!strcmp(*p, word))
			return true;
	return false;
}

/* The controllers a v2 root offers. */
static void v2_controllers(const char *mnt, char *found[CG_N])
{
	g_autofree char *path = g_build_filename(mnt, "cgroup.controllers", NULL);
	g_autofree char *list = NULL;

	if (!g_file_get_contents(path, &list, NULL, NULL))
		return;
	g_strstrip(list);
	for (int i = 0; i < CG_N; i++)
		if (has_word(list, cg_names[i], " \n"))
			found[i] = g_strdup(mnt);
}

static void find_mounts(void)
{
	g_autofree char *info = NULL;
	char *v1[CG_N] = { 0 }, *v2m[CG_N] = { 0 };
	g_auto(GStrv) lines = NULL;
	bool any_v2 = false;

	if (!g_file_get_contents("/proc/self/mountinfo", &info, NULL, NULL))
		return;
	lines = g_strsplit(info, "\n", -1);
	for (char **l = lines; *l; l++) {
		/* ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [TAGS] - FSTYPE SOURCE SUPEROPTS */
		g_auto(GStrv) f = g_strsplit(*l, " ", -1);
		guint n = g_strv_length(f), dash;

		for (dash = 6; dash < n && strcmp(f[dash], "-"); dash++)
			;
		if (n < 6 || dash + 3 >= n)
			continue;
		/* Only a hierarchy mounted at its root: a bind of a subtree
		 * (a container's view) would misplace machine/. */
		if (strcmp(f[3], "/"))
			continue;
		if (!strcmp(f[dash + 1], "cgroup2")) {
			char *found[CG_N] = { 0 };

			v2_controllers(f[4], found);
			for (int i = 0; i < CG_N; i++) {
				if (found[i] && !v2m[i]) {
					v2m[i] = found[i];
					any_v2 = true;
				} else {
					g_free(found[i]);
				}
			}
		} else if (!strcmp(f[dash + 1], "cgroup")) {
			for (int i = 0; i < CG_N; i++)
				if (!v1[i] && has_word(f[dash + 3], cg_names[i], ","))
					v1[i] = g_strdup(f[4]);
		}
	}
	/* v2 when it offers the controllers; a controller is never split
	 * between the two (the kernel binds each to one hierarchy). */
	v2 = any_v2;
	for (int i = 0; i < CG_N; i++) {
		mounts[i] = v2 ? v2m[i] : v1[i];
		g_free(v2 ? v1[i] : v2m[i]);
	}
}

void cgroup_init(const char *state_dir, const char *fake_root)
{
	g_autofree char *digest = g_compute_checksum_for_string(G_CHECKSUM_SHA256, state_dir, -1);

	instance_dir = g_strdup_printf("machine/kvmm-%.16s", digest);
	if (!fake_root) {
		find_mounts();
	} else {
		g_autofree char *ctl = g_build_filename(fake_root, "cgroup.controllers", NULL);

		v2 = g_file_test(ctl, G_FILE_TEST_EXISTS);
		if (v2) {
			v2_controllers(fake_root, mounts);
		} else {
			for (int i = 0; i < CG_N; i++) {
				g_autofree char *d = g_build_filename(fake_root, cg_names[i], NULL);

				if (g_file_test(d, G_FILE_TEST_IS_DIR))
					mounts[i] = g_steal_pointer(&d);
			}
		}
	}
	for (int i = 0; i < CG_N; i++)
		pr_info("cgroup controller %s: %s%s", cg_names[i], mounts[i] ? mounts[i] : "not available",
			mounts[i] ? (v2 ? " (v2)" : " (v1)") : "");
}

static int write_file(const char *dir, const char *file, const char *value)
{
	g_autofree char *path = g_build_filename(dir, file, NULL);
	FILE *f = fopen(path, "we");
	int rc = 0;

	if (!f)
		rc = -errno;
	else if (fputs(value, f) < 0)
		rc = -errno;
	if (f && fclose(f) != 0 && !rc)
		rc = -errno;
	if (rc < 0)
		drv_error_report(VIR_ERR_SYSTEM_ERROR, "Unable to write to '%s': %s", path,
				 g_strerror(-rc));
	return rc;
}

/* A path of this instance's: MOUNT/machine/kvmm-INSTANCE/UUID. */
static char *full_path(int c, const char *rel)
{
	return g_build_filename(mounts[c], rel, NULL);
}

/* The mounts holding a run's cgroup, each once. */
static int distinct(int c)
{
	for (int i = 0; i < c; i++)
		if (mounts[i] && mounts[c] && !strcmp(mounts[i], mounts[c]))
			return 0;
	return mounts[c] != NULL;
}

/* v2: a child gets a controller only when its parent's
 * cgroup.subtree_control enables it. */
static int v2_enable(const char *dir)
{
	for (int i = 0; i < CG_N; i++) {
		g_autofree char *val = g_strdup_printf("+%s", cg_names[i]);

		if (mounts[i] && write_file(dir, "cgroup.subtree_control", val) < 0)
			return -1;
	}
	return 0;
}

static int make_dirs(int c, const char *rel)
{
	g_auto(GStrv) parts = g_strsplit(rel, "/", -1);
	g_autofree char *dir = g_strdup(mounts[c]);

	for (char **p = parts; *p; p++) {
		char *next;

		if (v2 && v2_enable(dir) < 0)
			return -1;
		next = g_build_filename(dir, *p, NULL);
		g_free(dir);
		dir = next;
		if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
			drv_error_report(VIR_ERR_SYSTEM_ERROR, "Unable to create cgroup '%s': %s", dir,
					 g_strerror(errno));
			return -1;
		}
	}
	return 0;
}

long long cgroup_cpu_weight(unsigned long long shares)
{
	/* As libvirt's cgroup v2 backend: <shares> is written to cpu.weight
	 * as it is, within cpu.weight's range -- not scaled by systemd's
	 * CPUShares= formula (shares x 100 / 1024), so a value reads back
	 * the same from schedinfo on either hierarchy. */
	if (shares < CPU_WEIGHT_MIN || shares > CPU_WEIGHT_MAX) {
		drv_error_report(VIR_ERR_INVALID_ARG, "shares '%llu' must be in range [%d, %d]", shares,
				 CPU_WEIGHT_MIN, CPU_WEIGHT_MAX);
		return -1;
	}
	return (long long)shares;
}

/* Which controller DEF's tunables need, and whether the host has them. */
static int check(const struct domain_def *def)
{
	bool need[CG_N] = {
		[CG_CPU] = def->cpu_shares || def->cpu_period || def->cpu_quota,
		[CG_MEMORY] = def->mem_hard_limit_kib || def->mem_soft_limit_kib ||
			      def->mem_swap_hard_limit_kib,
	};

	for (int i = 0; i < CG_N; i++) {
		if (need[i] && !mounts[i]) {
			drv_error_report(VIR_ERR_CONFIG_UNSUPPORTED,
					 "cgroup %s controller is not mounted: <%s> cannot be honoured",
					 cg_names[i], i == CG_CPU ? "cputune" : "memtune");
			return -1;
		}
	}
	if (v2 && def->cpu_shares && cgroup_cpu_weight(def->cpu_shares) < 0)
		return -1;
	if (!v2 && def->mem_swap_hard_limit_kib) {
		g_autofree char *f = g_build_filename(mounts[CG_MEMORY], "memory.memsw.limit_in_bytes", NULL);

		if (!g_file_test(f, G_FILE_TEST_EXISTS)) {
			drv_error_report(VIR_ERR_CONFIG_UNSUPPORTED,
					 "<memtune><swap_hard_limit>: the host's memory controller has no swap accounting");
			return -1;
		}
	}
	if (def->mem_swap_hard_limit_kib && def->mem_hard_limit_kib &&
	    def->mem_swap_hard_limit_kib < def->mem_hard_limit_kib) {
		drv_error_report(VIR_ERR_INVALID_ARG,
				 "memory hard_limit tuning value must be less than or equal to swap_hard_limit");
		return -1;
	}
	return 0;
}

#define ULL(buf, v) (g_snprintf(buf, sizeof(buf), "%llu", (unsigned long long)(v)), buf)

/* Writes VALUE quietly: -errno. */
static int try_write(const char *dir, const char *file, const char *value)
{
	g_autofree char *path = g_build_filename(dir, file, NULL);
	FILE *f = fopen(path, "we");
	int rc = 0;

	if (!f)
		return -errno;
	if (fputs(value, f) < 0)
		rc = -errno;
	if (fclose(f) != 0 && !rc)
		rc = -errno;
	return rc;
}

/* The whole VM is one cgroup: a per-vCPU <quota> is a quota of VCPUS
 * times it for the VM, as libvirt sets a VM's own cgroup. */
static long long vm_quota(const struct domain_def *def)
{
	return def->cpu_quota > 0 ? def->cpu_quota * (long long)def->vcpus : -1;
}

/* Every cpu file, unset values back to the kernel's defaults (a live
 * change may unset one). */
static int apply_cpu(const char *rel, const struct domain_def *def)
{
	g_autofree char *cpu = full_path(CG_CPU, rel);
	unsigned long long period = def->cpu_period ? def->cpu_period : 100000;
	char b[64], q[32];

	if (v2) {
		long long w = def->cpu_shares ? cgroup_cpu_weight(def->cpu_shares) : CPU_WEIGHT_DEFAULT;

		if (w < 0 || write_file(cpu, "cpu.weight", ULL(b, w)) < 0)
			return -1;
		/* cpu.max: "QUOTA PERIOD", "max" for none. */
		if (vm_quota(def) > 0)
			g_snprintf(q, sizeof(q), "%lld", vm_quota(def));
		else
			g_strlcpy(q, "max", sizeof(q));
		g_snprintf(b, sizeof(b), "%s %llu", q, period);
		return write_file(cpu, "cpu.max", b);
	}
	if (write_file(cpu, "cpu.shares", ULL(b, def->cpu_shares ? def->cpu_shares : 1024)) < 0)
		return -1;
	/* A quota must fit the period in force: no quota while it changes. */
	if (write_file(cpu, "cpu.cfs_quota_us", "-1") < 0 ||
	    write_file(cpu, "cpu.cfs_period_us", ULL(b, period)) < 0)
		return -1;
	g_snprintf(b, sizeof(b), "%lld", vm_quota(def));
	return write_file(cpu, "cpu.cfs_quota_us", b);
}

static const char *limit(char *buf, size_t len, unsigned long long kib, const char *none)
{
	if (!kib)
		return none;
	g_snprintf(buf, len, "%llu", kib * 1024);
	return buf;
}

static int apply_memory(const char *rel, const struct domain_def *def)
{
	g_autofree char *mem = full_path(CG_MEMORY, rel);
	g_autofree char *memsw = g_build_filename(mem, "memory.memsw.limit_in_bytes", NULL);
	g_autofree char *swapmax = g_build_filename(mem, "memory.swap.max", NULL);
	char hb[32], sb[32], wb[32];
	const char *h = limit(hb, sizeof(hb), def->mem_hard_limit_kib, v2 ? "max" : "-1");
	const char *s = limit(sb, sizeof(sb), def->mem_soft_limit_kib, v2 ? "max" : "-1");
	const char *w = limit(wb, sizeof(wb), def->mem_swap_hard_limit_kib, "-1");
	int rc;

	if (v2) {
		if (write_file(mem, "memory.max", h) < 0 || write_file(mem, "memory.high", s) < 0)
			return -1;
		/* memory.swap.max is swap alone; libvirt's swap_hard_limit is
		 * memory and swap together. */
		w = "max";
		if (def->mem_swap_hard_limit_kib)
			w = ULL(wb, (def->mem_swap_hard_limit_kib - def->mem_hard_limit_kib) * 1024);
		/* A kernel without swap has no swap file: nothing to reset. */
		else if (!g_file_test(swapmax, G_FILE_TEST_EXISTS))
			return 0;
		return write_file(mem, "memory.swap.max", w);
	}
	if (write_file(mem, "memory.soft_limit_in_bytes", s) < 0)
		return -1;
	if (!g_file_test(memsw, G_FILE_TEST_EXISTS))
		return write_file(mem, "memory.limit_in_bytes", h);
	/* memsw may never be below the memory limit: whichever order
	 * keeps that at each step. */
	rc = try_write(mem, "memory.limit_in_bytes", h);
	if (rc == -EINVAL) {
		if (write_file(mem, "memory.memsw.limit_in_bytes", w) < 0)
			return -1;
		return write_file(mem, "memory.limit_in_bytes", h);
	}
	if (rc < 0) {
		drv_error_report(VIR_ERR_SYSTEM_ERROR, "Unable to write to '%s/memory.limit_in_bytes': %s",
				 mem, g_strerror(-rc));
		return -1;
	}
	return write_file(mem, "memory.memsw.limit_in_bytes", w);
}

static int apply(const char *rel, const struct domain_def *def)
{
	if (mounts[CG_CPU] && apply_cpu(rel, def) < 0)
		return -1;
	if (mounts[CG_MEMORY] && apply_memory(rel, def) < 0)
		return -1;
	return 0;
}

static int live_path(const char *path, int c, const char *what)
{
	if (mounts[c] && (!path || !*path)) {
		/* Adopted from a daemon that made none. */
		drv_error_report(VIR_ERR_OPERATION_INVALID,
				 "the domain's run has no cgroup: %s cannot be changed live", what);
		return -1;
	}
	if (!path || !*path || !mounts[c]) {
		drv_error_report(VIR_ERR_OPERATION_INVALID,
				 "cgroup %s controller is not mounted: %s cannot be changed", cg_names[c], what);
		return -1;
	}
	return 0;
}

int cgroup_set_cpu(const char *path, const struct domain_def *def)
{
	if (live_path(path, CG_CPU, "the scheduler parameters") < 0 || check(def) < 0)
		return -1;
	return apply_cpu(path, def);
}

int cgroup_set_memory(const char *path, const struct domain_def *def)
{
	if (live_path(path, CG_MEMORY, "the memory parameters") < 0 || check(def) < 0)
		return -1;
	return apply_memory(path, def);
}

bool cgroup_v2(void)
{
	return v2;
}

char *cgroup_create(const char *uuid, const struct domain_def *def, pid_t pid)
{
	g_autofree char *rel = g_build_filename(instance_dir, uuid, NULL);
	char b[32];

	if (check(def) < 0)
		return NULL;
	if (!mounts[CG_CPU] && !mounts[CG_MEMORY])
		return g_strdup("");
	for (int i = 0; i < CG_N; i++)
		if (distinct(i) && make_dirs(i, rel) < 0)
			goto fail;
	if (apply(rel, def) < 0)
		goto fail;
	for (int i = 0; i < CG_N; i++) {
		g_autofree char *dir = NULL;

		if (!distinct(i))
			continue;
		dir = full_path(i, rel);
		if (write_file(dir, "cgroup.procs", ULL(b, pid)) < 0)
			goto fail;
	}
	/* Tests kill the daemon here: a cgroup no record names yet. */
	test_crash_point("cgroup-unrecorded");
	return g_strconcat("/", rel, NULL);
fail:
	cgroup_remove(rel);
	return NULL;
}

static void remove_dir(const char *dir);

/* The instance's directory goes with its last run (a daemon per test
 * root would leave one each); "machine" stays, shared. */
static void remove_instance_dir(int c)
{
	g_autofree char *dir = full_path(c, instance_dir);

	if (rmdir(dir) < 0 && errno != ENOTEMPTY && errno != EBUSY && errno != ENOENT)
		pr_warn("cannot remove cgroup %s: %s", dir, g_strerror(errno));
}

/* A process that has just exited may still be counted a moment. */
static void remove_dir(const char *dir)
{
	for (int tries = 0; rmdir(dir) < 0; tries++) {
		if (errno == ENOENT)
			return;
		if (errno != EBUSY || tries == 50) {
			pr_warn("cannot remove cgroup %s: %s", dir, g_strerror(errno));
			return;
		}
		g_usleep(20000);
	}
}

void cgroup_remove(const char *path)
{
	if (!path || !*path || !instance_dir)
		return;
	/* Tests kill the daemon here: a run's record is gone, not its cgroup. */
	test_crash_point("cgroup-unremoved");
	/* Only this instance's: a status file is data. */
	while (*path == '/')
		path++;
	if (!g_str_has_prefix(path, instance_dir) || path[strlen(instance_dir)] != '/' ||
	    strstr(path, "..") || strchr(path + strlen(instance_dir) + 1, '/'))
		return;
	for (int i = CG_N - 1; i >= 0; i--) {
		g_autofree char *dir = NULL;

		if (!distinct(i))
			continue;
		dir = full_path(i, path);
		remove_dir(dir);
		remove_instance_dir(i);
	}
}

void cgroup_sweep(GHashTable *owned)
{
	for (int i = 0; i < CG_N; i++) {
		g_autofree char *parent = NULL;
		g_autoptr(GDir) d = NULL;
		const char *name;

		if (!distinct(i))
			continue;
		parent = full_path(i, instance_dir);
		if (!(d = g_dir_open(parent, 0, NULL)))
			continue;
		while ((name = g_dir_read_name(d))) {
			g_autofree char *dir = g_build_filename(parent, name, NULL);

			if (strlen(name) != 36 || g_hash_table_contains(owned, name) ||
			    !g_file_test(dir, G_FILE_TEST_IS_DIR))
				continue;
			pr_info("removing cgroup %s: no run of this daemon owns it", dir);
			remove_dir(dir);
		}
		remove_instance_dir(i);
	}
}
