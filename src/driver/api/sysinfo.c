/* virConnectGetSysinfo: the host's SMBIOS tables as libvirt's <sysinfo>
 * XML, read from /sys/class/dmi/id (the kernel's copy of SMBIOS, no
 * dmidecode needed).  Fields the kernel does not show are left out, and
 * so, for read-only connections, are those it shows only to root (serial
 * numbers, the UUID: mode 0400) -- the daemon reads them as root, its
 * read-only socket is anyone's.  A host without DMI (some virtual
 * machines) gets an empty <sysinfo type='smbios'/>. */
#include <string.h>
#include <sys/stat.h>

#include <glib.h>

#include "error.h"
#include "host.h"
#include "remote_host_xdr.h"

#define VIR_FROM_THIS VIR_FROM_NONE

#define DMI_DIR "/sys/class/dmi/id/"

struct dmi_entry {
	const char *name;	/* libvirt's entry name */
	const char *file;	/* under /sys/class/dmi/id */
};

struct dmi_block {
	const char *element;
	struct dmi_entry entries[8];
};

/* libvirt's blocks and entry names, in its order. */
static const struct dmi_block blocks[] = {
	{ "bios", { { "vendor", "bios_vendor" }, { "version", "bios_version" },
		    { "date", "bios_date" }, { "release", "bios_release" } } },
	{ "system", { { "manufacturer", "sys_vendor" }, { "product", "product_name" },
		      { "version", "product_version" }, { "serial", "product_serial" },
		      { "uuid", "product_uuid" }, { "sku", "product_sku" },
		      { "family", "product_family" } } },
	{ "baseBoard", { { "manufacturer", "board_vendor" }, { "product", "board_name" },
			 { "version", "board_version" }, { "serial", "board_serial" },
			 { "asset", "board_asset_tag" } } },
	{ "chassis", { { "manufacturer", "chassis_vendor" }, { "version", "chassis_version" },
		       { "serial", "chassis_serial" }, { "asset", "chassis_asset_tag" } } },
};

/* A DMI string, trimmed, or NULL when absent, unreadable or empty --
 * or, unless PRIVILEGED, not readable by every user. */
static char *dmi_read(const char *file, bool privileged)
{
	g_autofree char *path = g_strconcat(DMI_DIR, file, NULL);
	char *text = NULL;
	struct stat st;

	if (!privileged && (stat(path, &st) < 0 || !(st.st_mode & S_IROTH)))
		return NULL;
	if (!g_file_get_contents(path, &text, NULL, NULL))
		return NULL;
	g_strstrip(text);
	/* The kernel passes SMBIOS bytes through; keep only valid UTF-8
	 * without control characters, which XML cannot carry. */
	if (!*text || !g_utf8_validate(text, -1, NULL)) {
		g_free(text);
		return NULL;
	}
	for (char *p = text; *p; p++)
		if ((unsigned char)*p < 0x20)
			*p = ' ';
	return text;
}

static char *sysinfo_format(bool privileged)
{
	g_autoptr(GString) x = g_string_new(NULL);
	bool any = false;

	for (size_t b = 0; b < G_N_ELEMENTS(blocks); b++) {
		g_autoptr(GString) body = g_string_new(NULL);

		for (const struct dmi_entry *e = blocks[b].entries; e->name; e++) {
			g_autofree char *v = dmi_read(e->file, privileged);
			if (v)
				xml_append_printf(body, "    <entry name='%s'>%s</entry>\n", e->name, v);
		}
		if (body->len) {
			g_string_append_printf(x, "  <%s>\n%s  </%s>\n", blocks[b].element, body->str,
					       blocks[b].element);
			any = true;
		}
	}
	if (!any)
		return g_strdup("<sysinfo type='smbios'/>\n");
	g_string_prepend(x, "<sysinfo type='smbios'>\n");
	g_string_append(x, "</sysinfo>\n");
	return g_string_free(g_steal_pointer(&x), FALSE);
}

int drv_connect_get_sysinfo(struct rpc_conn *conn, void *args, void *ret)
{
	remote_connect_get_sysinfo_args *a = args;
	remote_connect_get_sysinfo_ret *r = ret;

	if (a->flags) {
		drv_error_report(VIR_ERR_INVALID_ARG, "unsupported flags (0x%x) in function %s",
				 a->flags, "virConnectGetSysinfo");
		return -1;
	}
	r->sysinfo = sysinfo_format(!conn->readonly);
	return 0;
}
