/* virConnectGetCapabilities: the host (CPU, NUMA topology) and what guests
 * kvmm runs.  The <guest> part comes from domain_tables.c, the tables the
 * XML validator uses, so it never names an os type, arch, machine or
 * domain type the parser refuses.  Output follows libvirt's
 * capability.rng (tests validate it with virt-xml-validate). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <glib.h>

#include "conf/domain_tables.h"
#include "error.h"
#include "host.h"
#include "remote_host_xdr.h"

#define VIR_FROM_THIS VIR_FROM_CAPABILITIES

/* The value of the first "key : value" line of /proc/cpuinfo. */
static char *cpuinfo_field(const char *text, const char *key)
{
	size_t keylen = strlen(key);

	for (const char *line = text; line && *line;) {
		const char *eol = strchrnul(line, '\n');

		if (!strncmp(line, key, keylen) && strchr(" \t:", line[keylen])) {
			const char *p = line + keylen;

			p += strspn(p, " \t");
			if (*p == ':') {
				p++;
				p += strspn(p, " \t");
				return g_strndup(p, eol - p);
			}
		}
		line = *eol ? eol + 1 : NULL;
	}
	return NULL;
}

/* Sockets, dies per socket, cores per die and threads per core of the
 * online CPUs; the flat layout (1, 1, cpus, 1) when they do not multiply
 * out, as libvirt does for asymmetric hosts. */
static void cpu_topology(GString *x)
{
	g_autoptr(GArray) cpus = host_online_cpus();
	g_autoptr(GHashTable) pkgs = g_hash_table_new(g_direct_hash, g_direct_equal);
	g_autoptr(GHashTable) dies = g_hash_table_new(g_direct_hash, g_direct_equal);
	g_autoptr(GHashTable) cores = g_hash_table_new(g_direct_hash, g_direct_equal);
	unsigned n = cpus->len, s, d, c, t;

	for (guint i = 0; i < cpus->len; i++) {
		int cpu = g_array_index(cpus, int, i);
		long pkg = host_cpu_long(cpu, "topology/physical_package_id");
		long die = host_cpu_long(cpu, "topology/die_id");
		long core = host_cpu_long(cpu, "topology/core_id");

		if (die < 0)
			die = 0;
		/* ids are small; pack them into one hash key each */
		g_hash_table_add(pkgs, GSIZE_TO_POINTER((gsize)(pkg + 1)));
		g_hash_table_add(dies, GSIZE_TO_POINTER((gsize)(((pkg + 1) << 16) | (die & 0xffff))));
		g_hash_table_add(cores, GSIZE_TO_POINTER((gsize)(((pkg + 1) << 40) | ((die & 0xffff) << 24) |
								  (core & 0xffffff))));
	}
	s = g_hash_table_size(pkgs);
	d = s ? g_hash_table_size(dies) / s : 0;
	c = s && d ? g_hash_table_size(cores) / (s * d) : 0;
	t = s && d && c ? n / (s * d * c) : 0;
	if (!s || !d || !c || !t || s * d * c * t != n)
		s = 1, d = 1, c = n, t = 1;
	g_string_append_printf(x, "      <topology sockets='%u' dies='%u' cores='%u' threads='%u'/>\n",
			       s, d, c, t);
}

/* Page sizes in KiB this host offers: the base page and each hugepage
 * pool in /sys/kernel/mm/hugepages. */
static GArray *page_sizes(void)
{
	GArray *sizes = g_array_new(FALSE, FALSE, sizeof(unsigned));
	unsigned base = sysconf(_SC_PAGESIZE) / 1024;
	GDir *dir = g_dir_open("/sys/kernel/mm/hugepages", 0, NULL);

	g_array_append_val(sizes, base);
	if (dir) {
		const char *name;

		while ((name = g_dir_read_name(dir))) {
			unsigned kib;

			if (sscanf(name, "hugepages-%ukB", &kib) == 1 && kib > 0)
				g_array_append_val(sizes, kib);
		}
		g_dir_close(dir);
	}
	return sizes;
}

static void host_cpu(GString *x, const char *arch)
{
	g_autofree char *info = NULL, *vendor = NULL, *family = NULL, *model = NULL;
	g_autofree char *stepping = NULL, *microcode = NULL, *flags = NULL, *addr = NULL;
	g_autoptr(GArray) sizes = page_sizes();

	g_file_get_contents("/proc/cpuinfo", &info, NULL, NULL);
	if (info) {
		vendor = cpuinfo_field(info, "vendor_id");
		family = cpuinfo_field(info, "cpu family");
		model = cpuinfo_field(info, "model");
		stepping = cpuinfo_field(info, "stepping");
		microcode = cpuinfo_field(info, "microcode");
		flags = cpuinfo_field(info, "flags");
		addr = cpuinfo_field(info, "address sizes");
	}
	g_string_append(x, "    <cpu>\n");
	xml_append_printf(x, "      <arch>%s</arch>\n", arch);
	/* No <model>: libvirt names the host CPU after the closest model of
	 * its CPU map, which kvmm does not have.  The guest gets the host's
	 * CPUID as it is (host-passthrough), so the flags below are what a
	 * guest sees. */
	if (vendor)
		xml_append_printf(x, "      <vendor>%s</vendor>\n", host_cpu_vendor_name(vendor));
	if (microcode) {
		unsigned long long v = g_ascii_strtoull(microcode, NULL, 0);
		if (v)
			g_string_append_printf(x, "      <microcode version='%llu'/>\n", v);
	}
	if (family && model && stepping && atoi(family) > 0)
		g_string_append_printf(x, "      <signature family='%d' model='%d' stepping='%d'/>\n",
				       atoi(family), atoi(model), atoi(stepping));
	cpu_topology(x);
	if (addr && atoi(addr) > 0)
		g_string_append_printf(x, "      <maxphysaddr mode='emulate' bits='%d'/>\n", atoi(addr));
	if (flags) {
		/* The flags of /proc/cpuinfo under Linux's names (a few,
		 * like constant_tsc, are Linux's own rather than CPUID
		 * bits); libvirt's cpu_map spellings would need its map. */
		g_auto(GStrv) f = g_strsplit(flags, " ", -1);
		for (int i = 0; f[i]; i++) {
			bool ok = *f[i] != '\0';
			for (const char *p = f[i]; *p; p++)
				if (!g_ascii_isalnum(*p) && *p != '_' && *p != '-')
					ok = false;
			if (ok)
				g_string_append_printf(x, "      <feature name='%s'/>\n", f[i]);
		}
	}
	for (guint i = 0; i < sizes->len; i++)
		g_string_append_printf(x, "      <pages unit='KiB' size='%u'/>\n",
				       g_array_index(sizes, unsigned, i));
	g_string_append(x, "    </cpu>\n");
}

static long long hugepages(int cell, unsigned kib, const char *what)
{
	g_autofree char *path = NULL, *text = NULL;

	if (g_file_test("/sys/devices/system/node", G_FILE_TEST_IS_DIR))
		path = g_strdup_printf("/sys/devices/system/node/node%d/hugepages/hugepages-%ukB/%s",
				       cell, kib, what);
	else
		path = g_strdup_printf("/sys/kernel/mm/hugepages/hugepages-%ukB/%s", kib, what);
	if (!g_file_get_contents(path, &text, NULL, NULL))
		return 0;
	return g_ascii_strtoll(text, NULL, 10);
}

static void numa_cell(GString *x, int cell, GArray *cells, GArray *sizes)
{
	g_autofree char *meminfo = host_meminfo_path(cell);
	g_autofree char *cpulist_path = g_strdup_printf("/sys/devices/system/node/node%d/cpulist", cell);
	g_autofree char *dist_path = g_strdup_printf("/sys/devices/system/node/node%d/distance", cell);
	g_autofree char *dist = NULL;
	g_autoptr(GArray) cpus = host_cpulist_read(cpulist_path);
	long long total = host_meminfo_kib(meminfo, "MemTotal"), huge_kib = 0;

	if (cpus->len == 0) {
		g_array_unref(cpus);
		cpus = host_online_cpus();
	}
	g_string_append_printf(x, "        <cell id='%d'>\n", cell);
	if (total >= 0)
		g_string_append_printf(x, "          <memory unit='KiB'>%lld</memory>\n", total);
	for (guint i = 1; i < sizes->len; i++) {
		unsigned kib = g_array_index(sizes, unsigned, i);
		huge_kib += hugepages(cell, kib, "nr_hugepages") * kib;
	}
	for (guint i = 0; i < sizes->len; i++) {
		unsigned kib = g_array_index(sizes, unsigned, i);
		/* Base pages: what the hugepage pools leave. */
		long long count = i ? hugepages(cell, kib, "nr_hugepages")
				    : MAX(total - huge_kib, 0) / kib;
		g_string_append_printf(x, "          <pages unit='KiB' size='%u'>%lld</pages>\n", kib, count);
	}
	if (g_file_get_contents(dist_path, &dist, NULL, NULL)) {
		g_auto(GStrv) d = g_strsplit(g_strstrip(dist), " ", -1);
		if (g_strv_length(d) == cells->len) {
			g_string_append(x, "          <distances>\n");
			for (guint i = 0; i < cells->len; i++)
				g_string_append_printf(x, "            <sibling id='%d' value='%d'/>\n",
						       g_array_index(cells, int, i), atoi(d[i]));
			g_string_append(x, "          </distances>\n");
		}
	}
	g_string_append_printf(x, "          <cpus num='%u'>\n", cpus->len);
	for (guint i = 0; i < cpus->len; i++) {
		int cpu = g_array_index(cpus, int, i);
		long pkg = host_cpu_long(cpu, "topology/physical_package_id");
		long die = host_cpu_long(cpu, "topology/die_id");
		long core = host_cpu_long(cpu, "topology/core_id");
		g_autofree char *sib_path = g_strdup_printf("/sys/devices/system/cpu/cpu%d/topology/thread_siblings_list", cpu);
		g_autofree char *sib = NULL;

		/* An offline CPU has no topology: listed by id only. */
		if (pkg >= 0 && core >= 0 && g_file_get_contents(sib_path, &sib, NULL, NULL))
			xml_append_printf(x, "            <cpu id='%d' socket_id='%ld' die_id='%ld' core_id='%ld' siblings='%s'/>\n",
					  cpu, pkg, MAX(die, 0L), core, g_strstrip(sib));
		else
			g_string_append_printf(x, "            <cpu id='%d'/>\n", cpu);
	}
	g_string_append(x, "          </cpus>\n        </cell>\n");
}

static void topology(GString *x)
{
	g_autoptr(GArray) cells = host_numa_cells();
	g_autoptr(GArray) sizes = page_sizes();

	g_string_append_printf(x, "    <topology>\n      <cells num='%u'>\n", cells->len);
	for (guint i = 0; i < cells->len; i++)
		numa_cell(x, g_array_index(cells, int, i), cells, sizes);
	g_string_append(x, "      </cells>\n    </topology>\n");
}

/* One <guest> per os type and arch of the tables (today one of each).
 * kvmm's machine always has ACPI and APICs: present, not toggleable. */
static void guests(GString *x)
{
	for (int o = 0; conf_os_type.values[o]; o++) {
		for (int a = 0; conf_arch.values[a]; a++) {
			g_string_append(x, "  <guest>\n");
			xml_append_printf(x, "    <os_type>%s</os_type>\n", conf_os_type.values[o]);
			xml_append_printf(x, "    <arch name='%s'>\n", conf_arch.values[a]);
			g_string_append(x, "      <wordsize>64</wordsize>\n");
			xml_append_printf(x, "      <emulator>%s</emulator>\n", host_emulator_path());
			for (int m = 0; conf_machine.values[m]; m++)
				xml_append_printf(x, "      <machine maxCpus='%d'>%s</machine>\n",
						  CONF_MAX_VCPUS, conf_machine.values[m]);
			for (int d = 0; conf_domain_type.values[d]; d++)
				xml_append_printf(x, "      <domain type='%s'/>\n", conf_domain_type.values[d]);
			g_string_append(x, "    </arch>\n");
			g_string_append(x, "    <features>\n"
					   "      <acpi default='on' toggle='no'/>\n"
					   "      <apic default='on' toggle='no'/>\n"
					   "    </features>\n");
			g_string_append(x, "  </guest>\n");
		}
	}
}

char *host_capabilities_format(bool readonly)
{
	g_autoptr(GString) x = g_string_new("<capabilities>\n\n  <host>\n");
	const char *uuid;
	bool dmi = false;
	struct utsname uts;

	if (uname(&uts) < 0) {
		drv_error_report(VIR_ERR_SYSTEM_ERROR, "cannot identify the host (uname): %s",
				 g_strerror(errno));
		return NULL;
	}
	/* The SMBIOS system UUID is readable by root only on the host: a
	 * read-only client, which needs no privilege, does not get it
	 * through us (a generated UUID is no secret). */
	uuid = host_uuid(&dmi);
	if (uuid && !(readonly && dmi))
		xml_append_printf(x, "    <uuid>%s</uuid>\n", uuid);
	host_cpu(x, uts.machine);
	/* Migration (domain_migrate.c): live pre-copy or stop-and-copy over
	 * a TCP connection of its own. */
	g_string_append(x, "    <migration_features>\n"
			   "      <live/>\n"
			   "      <uri_transports>\n"
			   "        <uri_transport>tcp</uri_transport>\n"
			   "      </uri_transports>\n"
			   "    </migration_features>\n");
	topology(x);
	g_string_append(x, "  </host>\n\n");
	guests(x);
	g_string_append(x, "\n</capabilities>\n");
	return g_string_free(g_steal_pointer(&x), FALSE);
}

int drv_connect_get_capabilities(struct rpc_conn *conn, void *args, void *ret)
{
	remote_connect_get_capabilities_ret *r = ret;
	char *xml = host_capabilities_format(conn->readonly);

	if (!xml)
		return -1;
	/* The RPC layer frees with free(); GLib's allocator is malloc. */
	r->capabilities = xml;
	return 0;
}
