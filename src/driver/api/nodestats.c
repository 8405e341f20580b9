/* The host's CPU and memory statistics and free memory:
 * virNodeGetCPUStats (/proc/stat), virNodeGetMemoryStats (/proc/meminfo
 * and each NUMA cell's meminfo), virNodeGetCellsFreeMemory,
 * virNodeGetFreeMemory, virNodeGetFreePages and virNodeGetCPUMap.
 * Memory stats are KiB; free memory in bytes; CPU times in ns.  Reply
 * bodies are allocated with GLib, whose allocator is malloc, so the RPC
 * layer's xdr_free releases them. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <glib.h>

#include "error.h"
#include "host.h"
#include "remote_host_xdr.h"

#define VIR_FROM_THIS VIR_FROM_NONE

struct stat_field {
	const char *name;
	unsigned long long value;
};

/* The typed-parameter protocol shared by both getters: nparams 0 asks
 * for the count; otherwise it is the room the caller has. */
static int check_nparams(int nparams, int max, const char *api)
{
	/* CLIENT: nparams is the client's; REMOTE_NODE_*_STATS_MAX bounds
	 * the reply array, and negative values are nonsense. */
	if (nparams < 0 || nparams > max) {
		drv_error_report(VIR_ERR_INVALID_ARG, "nparams %d out of range in %s (0 to %d)",
				 nparams, api, max);
		return -1;
	}
	return 0;
}

/* Fills params/nparams of a *_stats_ret (both layouts are
 * { str field; u64 value }). */
#define FILL_STATS(r, fields, n, room, api)                                            \
	({                                                                                \
		int rc_ = 0;                                                              \
		if ((room) == 0) {                                                     \
			(r)->nparams = (n);                                               \
		} else if ((room) < (n)) {                                             \
			drv_error_report(VIR_ERR_INVALID_ARG,                             \
					 "nparams %d too small in %s: %d needed", (room), \
					 (api), (n));                                     \
			rc_ = -1;                                                         \
		} else {                                                                  \
			(r)->params.params_val = g_new0(typeof(*(r)->params.params_val), (n)); \
			(r)->params.params_len = (n);                                     \
			for (int i_ = 0; i_ < (n); i_++) {                                \
				(r)->params.params_val[i_].field = g_strdup((fields)[i_].name); \
				(r)->params.params_val[i_].value = (fields)[i_].value;    \
			}                                                                 \
			(r)->nparams = (n);                                               \
		}                                                                         \
		rc_;                                                                      \
	})

int drv_node_get_cpu_stats(struct rpc_conn *conn, void *args, void *ret)
{
	remote_node_get_cpu_stats_args *a = args;
	remote_node_get_cpu_stats_ret *r = ret;
	g_autofree char *text = NULL, *want = NULL;
	unsigned long long v[8] = { 0 };
	long hz = sysconf(_SC_CLK_TCK);
	bool found = false;

	if (a->flags) {
		drv_error_report(VIR_ERR_INVALID_ARG, "unsupported flags (0x%x) in function %s",
				 a->flags, "virNodeGetCPUStats");
		return -1;
	}
	if (check_nparams(a->nparams, REMOTE_NODE_CPU_STATS_MAX, "virNodeGetCPUStats") < 0)
		return -1;
	/* CLIENT: cpuNum only selects a line of /proc/stat by name. */
	if (a->cpuNum < -1) {
		drv_error_report(VIR_ERR_INVALID_ARG, "Invalid cpuNum %d", a->cpuNum);
		return -1;
	}
	if (!g_file_get_contents("/proc/stat", &text, NULL, NULL)) {
		drv_error_report(VIR_ERR_SYSTEM_ERROR, "cannot read /proc/stat");
		return -1;
	}
	want = a->cpuNum == -1 ? g_strdup("cpu ") : g_strdup_printf("cpu%d ", a->cpuNum);
	for (char *line = text; line && *line;) {
		char *next = strchr(line, '\n');

		if (next)
			*next++ = '\0';
		if (g_str_has_prefix(line, want)) {
			/* user nice system idle iowait irq softirq steal */
			sscanf(line + strlen(want), "%llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1],
			       &v[2], &v[3], &v[4], &v[5], &v[6], &v[7]);
			found = true;
			break;
		}
		line = next;
	}
	if (!found) {
		drv_error_report(VIR_ERR_INVALID_ARG, "Invalid cpuNum %d: no such online CPU", a->cpuNum);
		return -1;
	}
	if (hz <= 0)
		hz = 100;
	unsigned long long ns = 1000000000ULL / hz;
	/* libvirt's grouping: nice time is user time, interrupts are kernel
	 * time. */
	struct stat_field f[] = {
		{ "kernel", (v[2] + v[5] + v[6]) * ns },
		{ "user", (v[0] + v[1]) * ns },
		{ "idle", v[3] * ns },
		{ "iowait", v[4] * ns },
	};
	return FILL_STATS(r, f, (int)G_N_ELEMENTS(f), a->nparams, "virNodeGetCPUStats");
}

static int check_cell(int cell)
{
	g_autoptr(GArray) cells = NULL;

	if (cell == -1 || host_numa_cell_exists(cell))
		return 0;
	cells = host_numa_cells();
	drv_error_report(VIR_ERR_INVALID_ARG, "NUMA cell %d does not exist on this host (cells 0-%d)",
			 cell, g_array_index(cells, int, cells->len - 1));
	return -1;
}

int drv_node_get_memory_stats(struct rpc_conn *conn, void *args, void *ret)
{
	remote_node_get_memory_stats_args *a = args;
	remote_node_get_memory_stats_ret *r = ret;
	g_autofree char *path = NULL;
	struct stat_field f[4];
	int n = 0;

	if (a->flags) {
		drv_error_report(VIR_ERR_INVALID_ARG, "unsupported flags (0x%x) in function %s",
				 a->flags, "virNodeGetMemoryStats");
		return -1;
	}
	if (check_nparams(a->nparams, REMOTE_NODE_MEMORY_STATS_MAX, "virNodeGetMemoryStats") < 0)
		return -1;
	/* CLIENT: cellNum must name a cell that exists before it names a
	 * file. */
	if (check_cell(a->cellNum) < 0)
		return -1;
	path = host_meminfo_path(a->cellNum);
	/* A cell's meminfo has no Buffers or Cached: only the host's does. */
	static const char *const keys[][2] = {
		{ "total", "MemTotal" }, { "free", "MemFree" },
		{ "buffers", "Buffers" }, { "cached", "Cached" } };
	for (size_t i = 0; i < G_N_ELEMENTS(keys); i++) {
		long long kib = host_meminfo_kib(path, keys[i][1]);
		if (kib >= 0)
			f[n++] = (struct stat_field){ keys[i][0], kib };
	}
	if (n < 2) {
		drv_error_report(VIR_ERR_INTERNAL_ERROR, "cannot read MemTotal and MemFree from %s", path);
		return -1;
	}
	return FILL_STATS(r, f, n, a->nparams, "virNodeGetMemoryStats");
}

static long long cell_free_kib(int cell)
{
	g_autofree char *path = host_meminfo_path(cell);

	return host_meminfo_kib(path, "MemFree");
}

int drv_node_get_cells_free_memory(struct rpc_conn *conn, void *args, void *ret)
{
	remote_node_get_cells_free_memory_args *a = args;
	remote_node_get_cells_free_memory_ret *r = ret;
	g_autoptr(GArray) cells = host_numa_cells();
	int last = g_array_index(cells, int, cells->len - 1);
	int n;

	/* CLIENT: the range must lie within the cells the host has, and
	 * the reply within REMOTE_NODE_MAX_CELLS. */
	if (a->maxcells <= 0 || a->maxcells > REMOTE_NODE_MAX_CELLS) {
		drv_error_report(VIR_ERR_INVALID_ARG, "maxcells %d out of range (1 to %d)", a->maxcells,
				 REMOTE_NODE_MAX_CELLS);
		return -1;
	}
	if (a->startCell < 0 || a->startCell > last) {
		drv_error_report(VIR_ERR_INVALID_ARG, "start cell %d out of range (0-%d)", a->startCell, last);
		return -1;
	}
	n = MIN(a->maxcells, last - a->startCell + 1);
	r->cells.cells_val = g_new0(typeof(*r->cells.cells_val), n);
	r->cells.cells_len = n;
	for (int i = 0; i < n; i++) {
		int cell = a->startCell + i;
		/* Ids can have holes; a missing cell has no free memory. */
		long long kib = host_numa_cell_exists(cell) ? cell_free_kib(cell) : 0;
		r->cells.cells_val[i] = kib > 0 ? (unsigned long long)kib * 1024 : 0;
	}
	return 0;
}

int drv_node_get_free_memory(struct rpc_conn *conn, void *args, void *ret)
{
	remote_node_get_free_memory_ret *r = ret;
	long long kib = cell_free_kib(-1);

	if (kib < 0) {
		drv_error_report(VIR_ERR_INTERNAL_ERROR, "cannot read MemFree from /proc/meminfo");
		return -1;
	}
	r->freeMem = (unsigned long long)kib * 1024;
	return 0;
}

/* Free pages of size kib in cell: base pages from MemFree, huge pages
 * from the pool's free count; -1 when the host has no such page size. */
static long long free_pages(int cell, unsigned kib)
{
	g_autofree char *path = NULL, *text = NULL;
	unsigned base = sysconf(_SC_PAGESIZE) / 1024;

	if (kib == base) {
		long long free_kib = cell_free_kib(g_file_test("/sys/devices/system/node",
							       G_FILE_TEST_IS_DIR) ? cell : -1);
		return free_kib < 0 ? -1 : free_kib / kib;
	}
	if (g_file_test("/sys/devices/system/node", G_FILE_TEST_IS_DIR))
		path = g_strdup_printf("/sys/devices/system/node/node%d/hugepages/hugepages-%ukB/free_hugepages",
				       cell, kib);
	else
		path = g_strdup_printf("/sys/kernel/mm/hugepages/hugepages-%ukB/free_hugepages", kib);
	if (!g_file_get_contents(path, &text, NULL, NULL))
		return -1;
	return g_ascii_strtoll(text, NULL, 10);
}

int drv_node_get_free_pages(struct rpc_conn *conn, void *args, void *ret)
{
	remote_node_get_free_pages_args *a = args;
	remote_node_get_free_pages_ret *r = ret;
	unsigned npages = a->pages.pages_len;

	if (a->flags) {
		drv_error_report(VIR_ERR_INVALID_ARG, "unsupported flags (0x%x) in function %s",
				 a->flags, "virNodeGetFreePages");
		return -1;
	}
	/* CLIENT: sizes x cells must fit the reply; every cell must exist. */
	if (!npages || !a->cellCount || a->cellCount > REMOTE_NODE_MAX_CELLS ||
	    (unsigned long long)npages * a->cellCount > REMOTE_NODE_MAX_CELLS) {
		drv_error_report(VIR_ERR_INVALID_ARG,
				 "%u page sizes for %u cells: the result won't fit (at most %d values)",
				 npages, a->cellCount, REMOTE_NODE_MAX_CELLS);
		return -1;
	}
	if (a->startCell < 0) {
		drv_error_report(VIR_ERR_INVALID_ARG, "start cell %d out of range", a->startCell);
		return -1;
	}
	r->counts.counts_val = g_new0(typeof(*r->counts.counts_val), (size_t)npages * a->cellCount);
	r->counts.counts_len = npages * a->cellCount;
	for (unsigned c = 0; c < a->cellCount; c++) {
		int cell = a->startCell + c;

		if (check_cell(cell) < 0)
			return -1;
		for (unsigned p = 0; p < npages; p++) {
			long long n = free_pages(cell, a->pages.pages_val[p]);
			if (n < 0) {
				drv_error_report(VIR_ERR_INVALID_ARG,
						 "page size %u KiB is not available on NUMA cell %d",
						 a->pages.pages_val[p], cell);
				return -1;
			}
			r->counts.counts_val[c * npages + p] = n;
		}
	}
	return 0;
}

int drv_node_get_cpu_map(struct rpc_conn *conn, void *args, void *ret)
{
	remote_node_get_cpu_map_args *a = args;
	remote_node_get_cpu_map_ret *r = ret;
	g_autoptr(GArray) online = host_online_cpus();
	int present = host_present_cpus();

	if (a->flags) {
		drv_error_report(VIR_ERR_INVALID_ARG, "unsupported flags (0x%x) in function %s",
				 a->flags, "virNodeGetCPUMap");
		return -1;
	}
	if (a->need_map) {
		size_t len = (present + 7) / 8;

		if (len > REMOTE_CPUMAP_MAX) {
			drv_error_report(VIR_ERR_INTERNAL_ERROR, "%d CPUs do not fit in a CPU map", present);
			return -1;
		}
		r->cpumap.cpumap_val = g_malloc0(len);
		r->cpumap.cpumap_len = len;
		for (guint i = 0; i < online->len; i++) {
			int cpu = g_array_index(online, int, i);
			if (cpu < present)
				r->cpumap.cpumap_val[cpu / 8] |= 1 << (cpu % 8);
		}
	}
	if (a->need_online)
		r->online = online->len;
	r->ret = present;
	return 0;
}
