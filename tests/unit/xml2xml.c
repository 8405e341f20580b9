/* xml2xml [--inactive] [--migratable] FILE: parses a domain XML file with
 * virtkvmmd's parser and prints it formatted, or prints the error as
 *   error: <VIR_ERR_...> <VIR_FROM_...>: message
 * and exits 1.  Used by tests/driver/test_xml2xml.py.
 *
 * xml2xml --vm-config[=API_SOCKET] FILE prints instead the kvmm VM
 * configuration the daemon would start the domain with (vmconfig.c), for
 * tests/driver/test_xml2config.py.
 *
 * With KVMM_TEST_SEED=N in the environment, generated UUIDs and MAC
 * addresses come from a PRNG seeded with N, so goldens are stable. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>
#include <libvirt/libvirt.h>

#include "conf/domain_conf.h"
#include "error.h"
#include "kvmm/vmconfig.h"

/* The emulator shown when the XML names none (the daemon passes its own). */
#define TEST_EMULATOR "/usr/bin/kvmm"

static GRand *seeded;

static void seeded_bytes(unsigned char *buf, size_t len)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = g_rand_int_range(seeded, 0, 256);
}

static const char *code_name(int code)
{
	switch (code) {
#define C(x) case x: return #x
	C(VIR_ERR_INTERNAL_ERROR); C(VIR_ERR_NO_MEMORY); C(VIR_ERR_INVALID_ARG);
	C(VIR_ERR_XML_ERROR); C(VIR_ERR_XML_DETAIL); C(VIR_ERR_NO_NAME);
	C(VIR_ERR_CONFIG_UNSUPPORTED); C(VIR_ERR_NO_TARGET); C(VIR_ERR_NO_SOURCE);
	C(VIR_ERR_OVERFLOW); C(VIR_ERR_OPERATION_INVALID);
#undef C
	default: return "VIR_ERR_?";
	}
}

static const char *domain_name(int domain)
{
	switch (domain) {
	case VIR_FROM_DOMAIN: return "VIR_FROM_DOMAIN";
	case VIR_FROM_XML: return "VIR_FROM_XML";
	default: return "VIR_FROM_?";
	}
}

int main(int argc, char **argv)
{
	struct domain_parse_opts opts = { .default_emulator = TEST_EMULATOR };
	unsigned flags = 0;
	bool vm_config = false;
	struct vmconfig_runtime rt = { 0 };
	const char *file = NULL, *seed = getenv("KVMM_TEST_SEED");
	g_autofree char *xml = NULL;
	g_autoptr(GError) err = NULL;
	struct domain_def *def;
	char *out;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--inactive"))
			flags |= VIR_DOMAIN_XML_INACTIVE;
		else if (!strcmp(argv[i], "--migratable"))
			flags |= VIR_DOMAIN_XML_MIGRATABLE;
		else if (!strcmp(argv[i], "--status"))
			opts.status = true;
		else if (!strcmp(argv[i], "--vm-config"))
			vm_config = true;
		else if (!strncmp(argv[i], "--vm-config=", 12))
			vm_config = true, rt.api_socket = argv[i] + 12;
		else if (!file && argv[i][0] != '-')
			file = argv[i];
		else
			file = NULL, i = argc;
	}
	if (!file) {
		fprintf(stderr, "usage: xml2xml [--inactive] [--migratable] [--status] [--vm-config[=API_SOCKET]] FILE\n");
		return 2;
	}
	if (seed) {
		seeded = g_rand_new_with_seed(strtoul(seed, NULL, 10));
		domain_conf_set_random(seeded_bytes);
	}
	if (!g_file_get_contents(file, &xml, NULL, &err)) {
		fprintf(stderr, "xml2xml: %s\n", err->message);
		return 2;
	}
	def = domain_def_parse_string(xml, &opts);
	if (!def)
		out = NULL;
	else if (vm_config) {
		/* The taps the daemon would make: the named ones, else vnetN
		 * in order (the real ones are the lowest free on the host). */
		g_auto(GStrv) taps = g_new0(char *, def->nnets + 1);

		for (size_t i = 0, gen = 0; i < def->nnets; i++)
			taps[i] = def->nets[i].ifname && !def->nets[i].ifname_generated ?
				  g_strdup(def->nets[i].ifname) : g_strdup_printf("vnet%zu", gen++);
		rt.taps = taps;
		out = vmconfig_from_def(def, &rt);
	}
	else
		out = domain_def_format(def, flags);
	if (!out) {
		const struct drv_error *e = drv_error_last();
		printf("error: %s %s: %s\n", e ? code_name(e->code) : "?",
		       e ? domain_name(e->domain) : "?", e ? e->message : "unknown error");
		domain_def_free(def);
		return 1;
	}
	fputs(out, stdout);
	if (vm_config)
		putchar('\n');
	g_free(out);
	domain_def_free(def);
	if (seeded)
		g_rand_free(seeded);
	return 0;
}
