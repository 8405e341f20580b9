/* virConnectGetDomainCapabilities and virConnectGetMaxVcpus.
 *
 * The domain capabilities are generated from domain_tables.c, the lists
 * the XML parser accepts, so every value listed is one the parser takes
 * and everything it refuses is absent or supported='no'
 * (tests/driver/test_host.py checks both directions through the parser).
 * The document follows libvirt 9.0's domaincaps.rng, which is what the
 * Debian clients validate against: it has places for disk, rng, cpu
 * modes and os, not yet for interfaces, chardevs or memballoon, so those
 * tables cannot be shown here. */
#include <string.h>

#include <glib.h>

#include "conf/domain_tables.h"
#include "error.h"
#include "host.h"
#include "remote_host_xdr.h"

#define VIR_FROM_THIS VIR_FROM_CAPABILITIES

static void enum_values(GString *x, const char *indent, const char *name, const struct conf_enum *e)
{
	xml_append_printf(x, "%s<enum name='%s'>\n", indent, name);
	for (int i = 0; e->values[i]; i++)
		xml_append_printf(x, "%s  <value>%s</value>\n", indent, e->values[i]);
	xml_append_printf(x, "%s</enum>\n", indent);
}

static bool has(const struct conf_enum *e, const char *value)
{
	return conf_enum_lookup(e, value) >= 0;
}

static const char *yes_no(bool b)
{
	return b ? "yes" : "no";
}

/* host-passthrough and maximum may carry migratable=, host-model not
 * (domain_parse.c); custom is refused. */
static void cpu_modes(GString *x)
{
	static const char *const migratable_enum[] = {
		[0] = "hostPassthroughMigratable", [2] = "maximumMigratable" };
	/* Schema order. */
	static const char *const modes[] = { "host-passthrough", "maximum", "host-model", "custom" };

	g_string_append(x, "  <cpu>\n");
	for (size_t i = 0; i < G_N_ELEMENTS(modes); i++) {
		int idx = conf_enum_lookup(&conf_cpu_mode, modes[i]);
		const char *mig = idx >= 0 && idx < (int)G_N_ELEMENTS(migratable_enum) ?
				  migratable_enum[idx] : NULL;

		if (idx >= 0 && mig) {
			xml_append_printf(x, "    <mode name='%s' supported='yes'>\n", modes[i]);
			enum_values(x, "      ", mig, &conf_on_off);
			g_string_append(x, "    </mode>\n");
		} else {
			xml_append_printf(x, "    <mode name='%s' supported='%s'/>\n", modes[i],
					  yes_no(idx >= 0));
		}
	}
	g_string_append(x, "  </cpu>\n");
}

static char *domcaps_format(const char *emulator, const char *virttype, const char *machine,
			    const char *arch)
{
	g_autoptr(GString) x = g_string_new("<domainCapabilities>\n");

	xml_append_printf(x, "  <path>%s</path>\n", emulator);
	xml_append_printf(x, "  <domain>%s</domain>\n", virttype);
	xml_append_printf(x, "  <machine>%s</machine>\n", machine);
	xml_append_printf(x, "  <arch>%s</arch>\n", arch);
	g_string_append_printf(x, "  <vcpu max='%d'/>\n", host_max_vcpus());
	g_string_append(x, "  <iothreads supported='no'/>\n");
	/* kvmm loads the kernel itself: an OS, but no firmware or loader. */
	g_string_append(x, "  <os supported='yes'>\n"
			   "    <loader supported='no'/>\n"
			   "  </os>\n");
	cpu_modes(x);
	g_string_append(x, "  <devices>\n");
	g_string_append(x, "    <disk supported='yes'>\n");
	enum_values(x, "      ", "diskDevice", &conf_disk_device);
	enum_values(x, "      ", "bus", &conf_disk_bus);
	g_string_append(x, "    </disk>\n");
	g_string_append(x, "    <graphics supported='no'/>\n"
			   "    <video supported='no'/>\n"
			   "    <hostdev supported='no'/>\n");
	g_string_append(x, "    <rng supported='yes'>\n");
	enum_values(x, "      ", "model", &conf_rng_model);
	enum_values(x, "      ", "backendModel", &conf_rng_backend);
	g_string_append(x, "    </rng>\n");
	g_string_append(x, "    <filesystem supported='no'/>\n"
			   "    <tpm supported='no'/>\n"
			   "    <redirdev supported='no'/>\n"
			   "    <channel supported='no'/>\n"
			   "  </devices>\n");
	g_string_append(x, "  <features>\n"
			   "    <vmcoreinfo supported='yes'/>\n"
			   "    <genid supported='no'/>\n"
			   "    <backingStoreInput supported='yes'/>\n"
			   "    <backup supported='no'/>\n"
			   "    <sev supported='no'/>\n"
			   "    <sgx supported='no'/>\n"
			   "    <hyperv supported='no'/>\n"
			   "  </features>\n");
	g_string_append(x, "</domainCapabilities>\n");
	return g_string_free(g_steal_pointer(&x), FALSE);
}

/* Refuses VALUE for the virsh option OPT unless it is in E. */
static int check_choice(const char *opt, const char *value, const struct conf_enum *e)
{
	g_autoptr(GString) supported = g_string_new(NULL);

	if (has(e, value))
		return 0;
	for (int i = 0; e->values[i]; i++)
		g_string_append_printf(supported, "%s'%s'", i ? ", " : "", e->values[i]);
	drv_error_report(VIR_ERR_INVALID_ARG, "%s '%.64s' is not supported by kvmm; supported: %s",
			 opt, value, supported->str);
	return -1;
}

int domcaps_check_target(const char *emulatorbin, const char *arch, const char *machine,
			 const char *virttype)
{
	const char *emulator = host_emulator_path();

	/* CLIENT: every string is the client's (up to REMOTE_STRING_MAX);
	 * each is only compared against our tables, and messages cut it. */
	if (emulatorbin && strcmp(emulatorbin, emulator) != 0) {
		g_autofree char *given = g_canonicalize_filename(emulatorbin, "/");
		g_autofree char *real_given = realpath(given, NULL);
		g_autofree char *real_ours = realpath(emulator, NULL);

		if (!real_given || !real_ours || strcmp(real_given, real_ours) != 0) {
			drv_error_report(VIR_ERR_INVALID_ARG,
					 "emulator '%.256s' is not kvmm's; kvmm guests run %s",
					 emulatorbin, emulator);
			return -1;
		}
	}
	if ((virttype && check_choice("virttype", virttype, &conf_domain_type) < 0) ||
	    (arch && check_choice("arch", arch, &conf_arch) < 0) ||
	    (machine && check_choice("machine type", machine, &conf_machine) < 0))
		return -1;
	return 0;
}

int drv_connect_get_domain_capabilities(struct rpc_conn *conn, void *args, void *ret)
{
	remote_connect_get_domain_capabilities_args *a = args;
	remote_connect_get_domain_capabilities_ret *r = ret;
	const char *emulator = host_emulator_path();
	const char *virttype = a->virttype ? *a->virttype : conf_enum_name(&conf_domain_type, 0);
	const char *machine = a->machine ? *a->machine : conf_enum_name(&conf_machine, 0);
	const char *arch = a->arch ? *a->arch : conf_enum_name(&conf_arch, 0);

	if (a->flags) {
		drv_error_report(VIR_ERR_INVALID_ARG, "unsupported flags (0x%x) in function %s",
				 a->flags, "virConnectGetDomainCapabilities");
		return -1;
	}
	if (domcaps_check_target(a->emulatorbin ? *a->emulatorbin : NULL, arch, machine,
				 virttype) < 0)
		return -1;
	r->capabilities = domcaps_format(emulator, virttype, machine, arch);
	return 0;
}

int drv_connect_get_max_vcpus(struct rpc_conn *conn, void *args, void *ret)
{
	remote_connect_get_max_vcpus_args *a = args;
	remote_connect_get_max_vcpus_ret *r = ret;

	/* CLIENT: compared only.  libvirt's drivers match the type
	 * case-insensitively ("KVM" works with the qemu driver). */
	if (a->type && **a->type) {
		g_autofree char *lower = g_ascii_strdown(*a->type, MIN(strlen(*a->type), 64));
		if (conf_enum_lookup(&conf_domain_type, lower) < 0) {
			drv_error_report(VIR_ERR_INVALID_ARG, "unknown type '%.64s'; kvmm runs type '%s'",
					 *a->type, conf_enum_name(&conf_domain_type, 0));
			return -1;
		}
	}
	r->max_vcpus = host_max_vcpus();
	return 0;
}
