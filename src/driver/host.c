/* Facts about this host and this kvmm that the host and capability calls
 * share; see host.h. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <linux/kvm.h>

#include "conf/domain_tables.h"
#include "driver.h"
#include "host.h"
#include "log.h"

#ifndef KVMM_PATH
#define KVMM_PATH "/usr/local/bin/kvmm"
#endif

const char *host_emulator_path(void)
{
	static char *path;
	g_autofree char *self = NULL, *dir = NULL, *built = NULL;

	if (g_once_init_enter(&path)) {
		char *found = NULL;

		/* Tests run the daemon from the build tree, where the kvmm
		 * next to it is the one they mean; an installed daemon has no
		 * src/vmm beside it and uses the installed kvmm. */
		self = g_file_read_link("/proc/self/exe", NULL);
		if (self) {
			dir = g_path_get_dirname(self);
			built = g_build_filename(dir, "..", "vmm", "kvmm", NULL);
			if (g_str_has_suffix(dir, "/src/driver") && access(built, X_OK) == 0)
				found = g_canonicalize_filename(built, NULL);
		}
		if (!found)
			found = g_strdup(KVMM_PATH);
		g_once_init_leave(&path, found);
	}
	return path;
}

int host_max_vcpus(void)
{
	int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	int n = -1;

	if (fd >= 0) {
		n = ioctl(fd, KVM_CHECK_EXTENSION, KVM_CAP_MAX_VCPUS);
		/* Old kernels answer 0 for MAX_VCPUS: NR_VCPUS is then the
		 * limit (KVM's API documentation). */
		if (n <= 0)
			n = ioctl(fd, KVM_CHECK_EXTENSION, KVM_CAP_NR_VCPUS);
		close(fd);
	} else {
		pr_debug("cannot open /dev/kvm (%s): reporting kvmm's own vCPU limit", g_strerror(errno));
	}
	if (n <= 0 || n > CONF_MAX_VCPUS)
		n = CONF_MAX_VCPUS;
	return n;
}

static int int_cmp(gconstpointer a, gconstpointer b)
{
	return *(const int *)a - *(const int *)b;
}

GArray *host_numa_cells(void)
{
	GArray *cells = g_array_new(FALSE, FALSE, sizeof(int));
	GDir *dir = g_dir_open("/sys/devices/system/node", 0, NULL);

	if (dir) {
		const char *name;

		while ((name = g_dir_read_name(dir))) {
			char *end;
			long id;

			if (!g_str_has_prefix(name, "node") || !g_ascii_isdigit(name[4]))
				continue;
			id = strtol(name + 4, &end, 10);
			if (*end || id < 0 || id > 65535)
				continue;
			int v = id;
			g_array_append_val(cells, v);
		}
		g_dir_close(dir);
	}
	if (cells->len == 0) {
		int zero = 0;
		g_array_append_val(cells, zero);
	}
	g_array_sort(cells, int_cmp);
	return cells;
}

bool host_numa_cell_exists(int cell)
{
	g_autoptr(GArray) cells = host_numa_cells();

	for (guint i = 0; i < cells->len; i++)
		if (g_array_index(cells, int, i) == cell)
			return true;
	return false;
}

char *host_meminfo_path(int cell)
{
	/* Without NUMA in sysfs the one cell is the whole host. */
	if (cell >= 0 && g_file_test("/sys/devices/system/node", G_FILE_TEST_IS_DIR))
		return g_strdup_printf("/sys/devices/system/node/node%d/meminfo", cell);
	return g_strdup("/proc/meminfo");
}

long long host_meminfo_kib(const char *path, const char *key)
{
	g_autofree char *text = NULL;
	size_t keylen = strlen(key);

	if (!g_file_get_contents(path, &text, NULL, NULL))
		return -1;
	for (char *line = text; line && *line;) {
		char *next = strchr(line, '\n');
		char *p = line;

		if (next)
			*next++ = '\0';
		/* node meminfo: "Node 0 MemFree:   123 kB" */
		if (g_str_has_prefix(p, "Node ")) {
			p += 5;
			p += strspn(p, "0123456789");
			p += strspn(p, " ");
		}
		if (!strncmp(p, key, keylen) && p[keylen] == ':')
			return g_ascii_strtoll(p + keylen + 1, NULL, 10);
		line = next;
	}
	return -1;
}

GArray *host_cpulist_read(const char *path)
{
	GArray *cpus = g_array_new(FALSE, FALSE, sizeof(int));
	g_autofree char *text = NULL;

	if (!g_file_get_contents(path, &text, NULL, NULL))
		return cpus;
	/* "0-3,8,10-11" */
	g_auto(GStrv) parts = g_strsplit(g_strstrip(text), ",", -1);
	for (int i = 0; parts[i]; i++) {
		char *end;
		long lo = strtol(parts[i], &end, 10), hi = lo;

		if (*end == '-')
			hi = strtol(end + 1, &end, 10);
		if (end == parts[i] || lo < 0 || hi < lo || hi > 65535)
			continue;
		for (long c = lo; c <= hi; c++) {
			int v = c;
			g_array_append_val(cpus, v);
		}
	}
	return cpus;
}

GArray *host_online_cpus(void)
{
	GArray *cpus = host_cpulist_read("/sys/devices/system/cpu/online");

	if (cpus->len == 0) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		for (int c = 0; c < n; c++)
			g_array_append_val(cpus, c);
	}
	return cpus;
}

int host_present_cpus(void)
{
	long n = sysconf(_SC_NPROCESSORS_CONF);
	g_autoptr(GArray) online = host_online_cpus();
	int max = online->len ? g_array_index(online, int, online->len - 1) + 1 : 1;

	return MAX(max, n > 0 ? (int)n : 1);
}

void xml_append_escaped(GString *out, const char *text)
{
	g_autofree char *esc = g_markup_escape_text(text, -1);

	g_string_append(out, esc);
}

void xml_append_printf(GString *out, const char *fmt, ...)
{
	va_list ap;
	g_autofree char *s = NULL;

	/* Every %s argument is escaped for text and attributes alike. */
	va_start(ap, fmt);
	s = g_markup_vprintf_escaped(fmt, ap);
	va_end(ap);
	g_string_append(out, s);
}

/* A UUID as libvirt accepts a host's: 36 characters in the 8-4-4-4-12
 * form, and not one hex digit repeated (firmware placeholders such as
 * all zeros or all 'f', which libvirt refuses too). */
static bool host_uuid_valid(const char *s)
{
	bool varied = false;

	if (strlen(s) != 36)
		return false;
	for (int i = 0; i < 36; i++) {
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (s[i] != '-')
				return false;
		} else if (!g_ascii_isxdigit(s[i])) {
			return false;
		} else if (g_ascii_tolower(s[i]) != g_ascii_tolower(s[0])) {
			varied = true;
		}
	}
	return varied;
}

/* Where a generated host UUID is kept: the instance's state directory
 * (libvirt's /var/lib/libvirt/DRIVER, under --root for a private one;
 * the user's data directory for a session). */
static char *host_uuid_file(void)
{
	if (drv_state.root && *drv_state.root)
		return g_build_filename(drv_state.root, "var", "lib", "libvirt", "kvmm", "host-uuid",
					NULL);
	if (drv_state.privileged)
		return g_strdup("/var/lib/libvirt/kvmm/host-uuid");
	return g_build_filename(g_get_user_data_dir(), "libvirt", "kvmm", "host-uuid", NULL);
}

static char *host_uuid_generated(void)
{
	g_autofree char *path = host_uuid_file();
	g_autofree char *dir = g_path_get_dirname(path);
	g_autoptr(GError) err = NULL;
	char *text = NULL;

	if (g_file_get_contents(path, &text, NULL, NULL) && host_uuid_valid(g_strstrip(text)))
		return text;
	g_free(text);
	text = g_uuid_string_random();
	if (g_mkdir_with_parents(dir, 0755) < 0 ||
	    !g_file_set_contents_full(path, text, -1, G_FILE_SET_CONTENTS_CONSISTENT, 0644, &err))
		pr_warn("cannot keep the host UUID in %s (%s): it changes with every daemon start",
			path, err ? err->message : g_strerror(errno));
	return text;
}

const char *host_uuid(bool *from_dmi)
{
	static char *uuid;
	static bool dmi;

	if (g_once_init_enter(&uuid)) {
		char *found = NULL;

		/* The SMBIOS system UUID (root-readable only), as libvirt's
		 * default host_uuid_source; without one, a UUID generated
		 * once and kept. */
		if (g_file_get_contents("/sys/class/dmi/id/product_uuid", &found, NULL, NULL) &&
		    host_uuid_valid(g_strstrip(found))) {
			dmi = true;
		} else {
			g_free(found);
			found = host_uuid_generated();
		}
		g_once_init_leave(&uuid, found);
	}
	if (from_dmi)
		*from_dmi = dmi;
	return uuid;
}

const char *host_cpu_vendor_name(const char *cpuid_vendor)
{
	if (!g_strcmp0(cpuid_vendor, "GenuineIntel"))
		return "Intel";
	if (!g_strcmp0(cpuid_vendor, "AuthenticAMD"))
		return "AMD";
	if (!g_strcmp0(cpuid_vendor, "HygonGenuine"))
		return "Hygon";
	return cpuid_vendor;
}
