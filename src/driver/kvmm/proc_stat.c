/* /proc readings; see proc_stat.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <glib.h>

#include "proc_stat.h"

int proc_times(pid_t pid, pid_t tid, struct proc_times *t)
{
	g_autofree char *path = tid < 0 ? g_strdup_printf("/proc/%ld/stat", (long)pid)
					: g_strdup_printf("/proc/%ld/task/%ld/stat", (long)pid, (long)tid);
	g_autofree char *text = NULL;
	unsigned long long ut, st;
	long tick = sysconf(_SC_CLK_TCK);
	char *p;
	int cpu = -1;

	if (!g_file_get_contents(path, &text, NULL, NULL))
		return -1;
	/* After "(comm)", which may hold spaces: state is field 3, utime
	 * 14, stime 15, processor 39. */
	p = strrchr(text, ')');
	if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu "
			 "%*d %*d %*d %*d %*d %*d %*u %*u %*d %*u %*u %*u %*u %*u %*u %*u %*u "
			 "%*u %*u %*u %*u %*u %*d %d", &ut, &st, &cpu) < 2)
		return -1;
	t->user_ns = ut * (1000000000ULL / (unsigned long long)tick);
	t->system_ns = st * (1000000000ULL / (unsigned long long)tick);
	t->cpu = cpu;
	return 0;
}

long long proc_rss_kib(pid_t pid)
{
	g_autofree char *path = g_strdup_printf("/proc/%ld/status", (long)pid);
	g_autofree char *text = NULL;
	char *p;

	if (!g_file_get_contents(path, &text, NULL, NULL) || !(p = strstr(text, "\nVmRSS:")))
		return -1;
	return strtoll(p + 7, NULL, 10);
}

int proc_vcpu_tids(pid_t pid, pid_t *tids, int n)
{
	g_autofree char *dir = g_strdup_printf("/proc/%ld/task", (long)pid);
	g_autoptr(GDir) d = g_dir_open(dir, 0, NULL);
	const char *name;
	int found = 0;

	memset(tids, 0, sizeof(*tids) * n);
	if (!d)
		return 0;
	while ((name = g_dir_read_name(d))) {
		g_autofree char *path = g_strdup_printf("%s/%s/comm", dir, name);
		g_autofree char *comm = NULL;
		int v;

		if (!g_file_get_contents(path, &comm, NULL, NULL) || sscanf(comm, "vcpu%d", &v) != 1 ||
		    v < 0 || v >= n || tids[v])
			continue;
		tids[v] = (pid_t)atol(name);
		found++;
	}
	return found;
}
