/* The host: virNodeGetInfo from /proc and /sys. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <glib.h>

#include "error.h"
#include "handlers.h"
#include "host.h"
#include "remote_xdr.h"

#define VIR_FROM_THIS VIR_FROM_NONE

/* The first "key : value" line of a /proc file whose key is key, as a
 * number, or -1. */
static double proc_field(const char *path, const char *key)
{
	g_autofree char *text = NULL;
	size_t keylen = strlen(key);
	double val = -1;

	if (!g_file_get_contents(path, &text, NULL, NULL))
		return -1;
	for (char *line = text; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
		if (strncmp(line, key, keylen) != 0)
			continue;
		char *p = line + keylen;
		p += strspn(p, " \t");
		if (*p != ':')
			continue;
		val = g_ascii_strtod(p + 1, NULL);
		break;
	}
	return val;
}

long host_cpu_long(int cpu, const char *file)
{
	g_autofree char *path = g_strdup_printf("/sys/devices/system/cpu/cpu%d/%s", cpu, file);
	g_autofree char *text = NULL;

	if (!g_file_get_contents(path, &text, NULL, NULL))
		return -1;
	return strtol(text, NULL, 10);
}

/* NUMA cells, sockets per cell, cores per socket and threads per core of
 * the online CPUs.  When the counts do not multiply out to cpus (offline
 * siblings, asymmetric machines) we report the flat layout libvirt falls
 * back to: one cell, one socket, cpus cores, one thread. */
static void topology(int cpus, remote_node_get_info_ret *r)
{
	g_autoptr(GHashTable) packages = g_hash_table_new(g_direct_hash, g_direct_equal);
	g_autoptr(GHashTable) cores = g_hash_table_new(g_direct_hash, g_direct_equal);
	long ncpu_conf = sysconf(_SC_NPROCESSORS_CONF);
	int nodes = 0, online = 0;

	GDir *dir = g_dir_open("/sys/devices/system/node", 0, NULL);

	if (dir) {
		const char *name;

		while ((name = g_dir_read_name(dir)))
			if (g_str_has_prefix(name, "node") && g_ascii_isdigit(name[4]))
				nodes++;
		g_dir_close(dir);
	}
	for (int cpu = 0; cpu < ncpu_conf && cpu < 65536; cpu++) {
		long pkg, core;

		/* cpu0 often has no "online" file: it cannot go offline. */
		if (host_cpu_long(cpu, "online") == 0)
			continue;
		pkg = host_cpu_long(cpu, "topology/physical_package_id");
		core = host_cpu_long(cpu, "topology/core_id");
		if (pkg < 0 || core < 0)
			continue;
		online++;
		g_hash_table_add(packages, GSIZE_TO_POINTER(pkg + 1));
		g_hash_table_add(cores, GSIZE_TO_POINTER(((pkg + 1) << 20) | core));
	}

	int npkg = g_hash_table_size(packages), ncore = g_hash_table_size(cores);
	if (nodes < 1)
		nodes = 1;
	if (online == cpus && npkg > 0 && ncore > 0 && npkg % nodes == 0 && ncore % npkg == 0 &&
	    cpus % ncore == 0) {
		r->nodes = nodes;
		r->sockets = npkg / nodes;
		r->cores = ncore / npkg;
		r->threads = cpus / ncore;
		return;
	}
	r->nodes = 1;
	r->sockets = 1;
	r->cores = cpus;
	r->threads = 1;
}

int drv_node_get_info(struct rpc_conn *conn, void *args, void *ret)
{
	remote_node_get_info_ret *r = ret;
	struct utsname uts;
	double mem_kib, mhz;
	long cpus;

	if (uname(&uts) < 0) {
		drv_error_report(VIR_ERR_SYSTEM_ERROR, "cannot identify the host (uname): %s",
				 g_strerror(errno));
		return -1;
	}
	/* char model[32] on the wire: NUL-padded, never unterminated. */
	g_strlcpy(r->model, uts.machine, sizeof(r->model));

	mem_kib = proc_field("/proc/meminfo", "MemTotal");
	if (mem_kib < 0) {
		drv_error_report(VIR_ERR_INTERNAL_ERROR, "cannot read MemTotal from /proc/meminfo");
		return -1;
	}
	r->memory = (unsigned long long)mem_kib;

	cpus = sysconf(_SC_NPROCESSORS_ONLN);
	if (cpus < 1) {
		drv_error_report(VIR_ERR_SYSTEM_ERROR, "cannot count the online CPUs: %s",
				 g_strerror(errno));
		return -1;
	}
	r->cpus = cpus;

	/* No "cpu MHz" (some virtual CPUs) is not an error: libvirt then
	 * reports 0 as well. */
	mhz = proc_field("/proc/cpuinfo", "cpu MHz");
	r->mhz = mhz > 0 ? (int)mhz : 0;

	topology(r->cpus, r);
	return 0;
}
