/* The daemon's cgroups (src/driver/kvmm/cgroup.c): <cputune><shares> on
 * cgroup v2 is cpu.weight as libvirt's v2 backend writes it (the value
 * itself, refused outside [1, 10000] in libvirt's words), checked on its
 * own and through a run's cgroup made under a fake v2 root (the daemon's
 * cgroup_root key). */
#include <ftw.h>
#include <stdbool.h>
#include <unistd.h>

#include <glib.h>
#include <glib/gstdio.h>
#include <libvirt/virterror.h>

#include "error.h"
#include "kvmm/cgroup.h"
#include "unit.h"

static bool refused_with(const char *words)
{
	const struct drv_error *e = drv_error_last();
	bool ok = e && e->code == VIR_ERR_INVALID_ARG && strstr(e->message, words);

	drv_error_reset();
	return ok;
}

UNIT_TEST(shares_pass_through_as_libvirt_writes_them)
{
	/* Not systemd's CPUShares= scaling (x 100 / 1024): 1024 stays 1024,
	 * 100 stays 100, so schedinfo reads back what was set. */
	CHECK(cgroup_cpu_weight(1) == 1);
	CHECK(cgroup_cpu_weight(2) == 2);
	CHECK(cgroup_cpu_weight(100) == 100);
	CHECK(cgroup_cpu_weight(512) == 512);
	CHECK(cgroup_cpu_weight(1024) == 1024);
	CHECK(cgroup_cpu_weight(10000) == 10000);
	CHECK(!drv_error_last());
}

UNIT_TEST(shares_outside_cpu_weight_refused)
{
	CHECK(cgroup_cpu_weight(0) == -1);
	CHECK(refused_with("shares '0' must be in range [1, 10000]"));
	CHECK(cgroup_cpu_weight(10001) == -1);
	CHECK(refused_with("shares '10001' must be in range [1, 10000]"));
	CHECK(cgroup_cpu_weight(262144) == -1);
	CHECK(refused_with("shares '262144' must be in range [1, 10000]"));
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static char *read_value(const char *root, const char *rel, const char *file)
{
	g_autofree char *path = g_build_filename(root, rel, file, NULL);
	char *text = NULL;

	if (!g_file_get_contents(path, &text, NULL, NULL))
		return NULL;
	return g_strstrip(text);
}

UNIT_TEST(run_cgroup_on_v2_gets_the_shares_as_cpu_weight)
{
	g_autofree char *root = g_dir_make_tmp("cgv2-XXXXXX", NULL);
	g_autofree char *ctl = g_build_filename(root, "cgroup.controllers", NULL);
	struct domain_def def = { .vcpus = 2, .cpu_shares = 1024 };
	g_autofree char *rel = NULL, *w = NULL, *procs = NULL;
	char pid[16];

	CHECK(root && g_file_set_contents(ctl, "cpu memory\n", -1, NULL));
	cgroup_init("/unit/state", root);
	CHECK(cgroup_v2());
	rel = cgroup_create("0b0e5a8e-6f2a-4e29-9a0d-000000000001", &def, getpid());
	CHECK(rel && g_str_has_prefix(rel, "/machine/kvmm-"));
	if (rel) {
		CHECK_STR((w = read_value(root, rel, "cpu.weight")), "1024");
		g_snprintf(pid, sizeof(pid), "%d", (int)getpid());
		CHECK_STR((procs = read_value(root, rel, "cgroup.procs")), pid);
	}
	/* A weight cpu.weight cannot take makes no cgroup. */
	def.cpu_shares = 20000;
	CHECK(!cgroup_create("0b0e5a8e-6f2a-4e29-9a0d-000000000002", &def, getpid()));
	CHECK(refused_with("shares '20000' must be in range [1, 10000]"));
	nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}
