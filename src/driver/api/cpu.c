/* The host CPU calls: virConnectGetCPUModelNames, virConnectCompareCPU
 * and virConnectCompareHypervisorCPU, virConnectBaselineCPU and
 * virConnectBaselineHypervisorCPU.
 *
 * kvmm gives every guest the host's CPU (host-passthrough; host-model
 * means the same here) and runs no named CPU model (domcapabilities:
 * custom supported='no').  So a comparison is of features: the host's
 * /proc/cpuinfo flags against those a CPU definition requires.  A named
 * <model> would need libvirt's CPU map expanded into CPUID bits, which
 * kvmm does not do: such a comparison or baseline answers
 * VIR_ERR_NO_SUPPORT, which nova treats as "cannot tell" and proceeds.
 * The model names are libvirt's own (its cpu_map, libvirt0's package),
 * as libvirt's qemu driver lists them whatever the hypervisor. */
#include <string.h>

#include <libvirt/libvirt.h>
#include <libxml/parser.h>
#include <libxml/tree.h>

#include "domain_api.h"
#include "error.h"
#include "handlers.h"
#include "host.h"
#include "remote_cpu_xdr.h"

#define VIR_FROM_THIS VIR_FROM_CPU

#define CPU_MAP_DIR "/usr/share/libvirt/cpu_map"

/* The architectures kvmm runs (libvirt's x86 CPU driver covers both). */
static bool arch_ok(const char *arch)
{
	return !strcmp(arch, "x86_64") || !strcmp(arch, "i686");
}

/* Linux and libvirt spell some features differently ("sse4.1" and
 * "sse4_1", "tsc-deadline" and "tsc_deadline_timer"): one spelling for
 * comparing. */
static char *feature_key(const char *name)
{
	static const char *const alias[][2] = {
		{ "pclmuldq", "pclmulqdq" },
		{ "tsc_deadline", "tsc_deadline_timer" },
		{ "sse3", "pni" },
	};
	char *k = g_ascii_strdown(name, -1);

	for (char *p = k; *p; p++)
		if (*p == '.' || *p == '-')
			*p = '_';
	for (size_t i = 0; i < G_N_ELEMENTS(alias); i++)
		if (!strcmp(k, alias[i][0])) {
			g_free(k);
			return g_strdup(alias[i][1]);
		}
	return k;
}

/* The host: its vendor (libvirt's name) and its flags by feature_key. */
struct host_cpu {
	char *vendor;
	GHashTable *features;
};

static void host_cpu_read(struct host_cpu *h)
{
	g_autofree char *info = NULL;
	const char *line;

	h->vendor = NULL;
	h->features = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
	if (!g_file_get_contents("/proc/cpuinfo", &info, NULL, NULL))
		return;
	if ((line = strstr(info, "\nvendor_id")) || (line = strstr(info, "vendor_id"))) {
		const char *v = strchr(line, ':');

		if (v) {
			g_autofree char *id = g_strndup(v + 1, strchrnul(v, '\n') - v - 1);

			g_strstrip(id);
			h->vendor = g_strdup(host_cpu_vendor_name(id));
		}
	}
	if ((line = strstr(info, "\nflags"))) {
		const char *v = strchr(line, ':');
		g_autofree char *flags = v ? g_strndup(v + 1, strchrnul(v, '\n') - v - 1) : NULL;
		g_auto(GStrv) f = flags ? g_strsplit(flags, " ", -1) : NULL;

		for (int i = 0; f && f[i]; i++)
			if (*f[i])
				g_hash_table_add(h->features, feature_key(f[i]));
	}
}

static void host_cpu_clear(struct host_cpu *h)
{
	g_free(h->vendor);
	g_hash_table_destroy(h->features);
}

/* One CPU definition a client sent. */
struct cpu_def {
	char *mode;		/* NULL for a host CPU (capabilities' form) */
	char *match;		/* a guest CPU's: exact, minimum, strict */
	char *arch, *vendor, *model;
	GPtrArray *required;	/* feature names it needs */
	GPtrArray *forbidden;	/* feature names it must not have */
	GPtrArray *listed;	/* every feature it names but the forbidden */
};

static void cpu_def_clear(struct cpu_def *c)
{
	g_free(c->mode);
	g_free(c->match);
	g_free(c->arch);
	g_free(c->vendor);
	g_free(c->model);
	if (c->required)
		g_ptr_array_unref(c->required);
	if (c->forbidden)
		g_ptr_array_unref(c->forbidden);
	if (c->listed)
		g_ptr_array_unref(c->listed);
}

static char *child_text(xmlNodePtr n, const char *name)
{
	for (xmlNodePtr c = n->children; c; c = c->next)
		if (c->type == XML_ELEMENT_NODE && !strcmp((const char *)c->name, name)) {
			xmlChar *t = xmlNodeGetContent(c);
			char *s = g_strstrip(g_strdup((const char *)t));

			xmlFree(t);
			return s;
		}
	return NULL;
}

static char *prop(xmlNodePtr n, const char *name)
{
	xmlChar *v = xmlGetProp(n, BAD_CAST name);
	char *s = v ? g_strdup((const char *)v) : NULL;

	xmlFree(v);
	return s;
}

/* Parses a <cpu> (a host CPU, or a guest's); 0, or -1 after reporting. */
static int cpu_def_parse(const char *xml, struct cpu_def *c)
{
	xmlDocPtr doc;
	xmlNodePtr root;
	int rc = -1;

	memset(c, 0, sizeof(*c));
	c->required = g_ptr_array_new_with_free_func(g_free);
	c->forbidden = g_ptr_array_new_with_free_func(g_free);
	c->listed = g_ptr_array_new_with_free_func(g_free);
	/* CLIENT: any text; no network, no entities. */
	doc = xmlReadMemory(xml, strlen(xml), "(CPU_definition)", NULL,
			    XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
	root = doc ? xmlDocGetRootElement(doc) : NULL;
	if (!root || strcmp((const char *)root->name, "cpu") != 0) {
		drv_error_report(VIR_ERR_XML_ERROR, "%s",
				 root ? "XML does not contain expected 'cpu' element"
				      : "(CPU_definition): not an XML document");
		goto out;
	}
	c->mode = prop(root, "mode");
	c->match = prop(root, "match");
	c->arch = child_text(root, "arch");
	c->model = child_text(root, "model");
	if (c->model && !*c->model)
		g_clear_pointer(&c->model, g_free);
	c->vendor = child_text(root, "vendor");
	for (xmlNodePtr n = root->children; n; n = n->next) {
		g_autofree char *name = NULL, *policy = NULL;

		if (n->type != XML_ELEMENT_NODE || strcmp((const char *)n->name, "feature") != 0)
			continue;
		name = prop(n, "name");
		policy = prop(n, "policy");
		if (!name || !*name) {
			drv_error_report(VIR_ERR_XML_ERROR, "Invalid CPU feature name");
			goto out;
		}
		/* A host CPU's features have no policy: all are there. */
		if (!policy || !strcmp(policy, "require")) {
			g_ptr_array_add(c->required, g_strdup(name));
		} else if (!strcmp(policy, "forbid")) {
			g_ptr_array_add(c->forbidden, g_steal_pointer(&name));
			continue;
		} else if (strcmp(policy, "optional") && strcmp(policy, "disable") &&
			   strcmp(policy, "force")) {
			drv_error_report(VIR_ERR_XML_ERROR, "Invalid CPU feature policy '%s'", policy);
			goto out;
		}
		g_ptr_array_add(c->listed, g_steal_pointer(&name));
	}
	rc = 0;
out:
	if (doc)
		xmlFreeDoc(doc);
	return rc;
}

static bool host_mode(const char *mode)
{
	return mode && (!strcmp(mode, "host-passthrough") || !strcmp(mode, "host-model") ||
			!strcmp(mode, "maximum"));
}

static int no_model(const char *model)
{
	drv_error_report(VIR_ERR_NO_SUPPORT,
			 "CPU model '%s' cannot be compared by kvmm: it runs guests with the host CPU only (host-passthrough, host-model)",
			 model);
	return -1;
}

/* virCPUCompareResult of XML against this host, or -1 after reporting. */
static int compare(const char *xml, unsigned flags)
{
	struct cpu_def c;
	struct host_cpu h;
	g_autoptr(GString) missing = g_string_new(NULL);
	int result = VIR_CPU_COMPARE_INCOMPATIBLE;

	if (api_check_flags(flags, VIR_CONNECT_COMPARE_CPU_FAIL_INCOMPATIBLE |
			    VIR_CONNECT_COMPARE_CPU_VALIDATE_XML, "virConnectCompareCPU") < 0)
		return -1;
	if (cpu_def_parse(xml, &c) < 0) {
		cpu_def_clear(&c);
		return -1;
	}
	if (host_mode(c.mode)) {
		/* The guest gets this host's CPU as it is. */
		cpu_def_clear(&c);
		return VIR_CPU_COMPARE_IDENTICAL;
	}
	if (c.model) {
		int rc = no_model(c.model);

		cpu_def_clear(&c);
		return rc;
	}
	host_cpu_read(&h);
	if (c.arch && !arch_ok(c.arch)) {
		g_string_append_printf(missing, "CPU arch %s does not match host arch", c.arch);
	} else if (c.vendor && g_strcmp0(c.vendor, h.vendor) != 0) {
		g_string_append_printf(missing, "host CPU vendor does not match required CPU vendor %s",
				       c.vendor);
	} else {
		g_autoptr(GHashTable) extra = g_hash_table_new(g_str_hash, g_str_equal);
		GHashTableIter it;
		gpointer k;

		/* As libvirt's x86 driver: forbidden features first, then
		 * required ones; identical when the CPU names every feature
		 * the host has. */
		for (guint i = 0; i < c.forbidden->len; i++) {
			const char *name = g_ptr_array_index(c.forbidden, i);
			g_autofree char *key = feature_key(name);

			if (g_hash_table_contains(h.features, key))
				g_string_append_printf(missing, "%s%s", missing->len ? ", " : "", name);
		}
		if (missing->len)
			g_string_prepend(missing, "Host CPU provides forbidden features: ");
		for (guint i = 0; !missing->len && i < c.required->len; i++) {
			const char *name = g_ptr_array_index(c.required, i);
			g_autofree char *key = feature_key(name);

			if (!g_hash_table_contains(h.features, key))
				g_string_append_printf(missing, "%s%s", missing->len ? ", " : "", name);
		}
		if (missing->len && !g_str_has_prefix(missing->str, "Host CPU provides"))
			g_string_prepend(missing, "Host CPU does not provide required features: ");
		if (!missing->len) {
			g_hash_table_iter_init(&it, h.features);
			while (g_hash_table_iter_next(&it, &k, NULL))
				g_hash_table_add(extra, k);
			for (guint i = 0; i < c.listed->len; i++) {
				g_autofree char *key = feature_key(g_ptr_array_index(c.listed, i));

				g_hash_table_remove(extra, key);
			}
			result = g_hash_table_size(extra) ? VIR_CPU_COMPARE_SUPERSET
							  : VIR_CPU_COMPARE_IDENTICAL;
			if (result == VIR_CPU_COMPARE_SUPERSET && !g_strcmp0(c.match, "strict")) {
				g_string_assign(missing,
						"Host CPU does not strictly match guest CPU: Extra features: ");
				g_hash_table_iter_init(&it, extra);
				for (bool first = true; g_hash_table_iter_next(&it, &k, NULL); first = false)
					g_string_append_printf(missing, "%s%s", first ? "" : ", ",
							       (char *)k);
				result = VIR_CPU_COMPARE_INCOMPATIBLE;
			}
		}
	}
	if (result == VIR_CPU_COMPARE_INCOMPATIBLE && (flags & VIR_CONNECT_COMPARE_CPU_FAIL_INCOMPATIBLE)) {
		drv_error_report(VIR_ERR_CPU_INCOMPATIBLE, "the CPU is incompatible with host CPU: %s",
				 missing->str);
		result = -1;
	}
	host_cpu_clear(&h);
	cpu_def_clear(&c);
	return result;
}

/* The CPU all of XMLS can run: their common vendor and features.  A
 * malloc'ed document, or NULL after reporting. */
static char *baseline(char **xmls, unsigned n, unsigned flags)
{
	GHashTable *common = NULL;	/* key -> name as first spelled */
	GPtrArray *order = g_ptr_array_new_with_free_func(g_free);
	g_autofree char *vendor = NULL;
	GString *out = NULL;
	char *ret = NULL;

	if (api_check_flags(flags, VIR_CONNECT_BASELINE_CPU_EXPAND_FEATURES |
			    VIR_CONNECT_BASELINE_CPU_MIGRATABLE, "virConnectBaselineCPU") < 0)
		goto out;
	if (n == 0) {
		drv_error_report(VIR_ERR_INVALID_ARG, "no CPU definitions given");
		goto out;
	}
	for (unsigned i = 0; i < n; i++) {
		struct cpu_def c;
		GHashTable *mine;

		if (cpu_def_parse(xmls[i], &c) < 0) {
			cpu_def_clear(&c);
			goto out;
		}
		if (c.model) {
			no_model(c.model);
			cpu_def_clear(&c);
			goto out;
		}
		if (c.arch && !arch_ok(c.arch)) {
			drv_error_report(VIR_ERR_OPERATION_UNSUPPORTED,
					 "kvmm has no CPU driver for architecture %s", c.arch);
			cpu_def_clear(&c);
			goto out;
		}
		if (c.vendor && vendor && strcmp(c.vendor, vendor) != 0) {
			drv_error_report(VIR_ERR_OPERATION_FAILED, "CPU vendors do not match");
			cpu_def_clear(&c);
			goto out;
		}
		if (c.vendor && !vendor)
			vendor = g_strdup(c.vendor);
		mine = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
		for (guint j = 0; j < c.required->len; j++) {
			const char *name = g_ptr_array_index(c.required, j);
			char *k = feature_key(name);

			if (!common && !g_hash_table_contains(mine, k))
				g_ptr_array_add(order, g_strdup(name));
			g_hash_table_add(mine, k);
		}
		if (common) {
			GHashTableIter it;
			gpointer k;

			g_hash_table_iter_init(&it, common);
			while (g_hash_table_iter_next(&it, &k, NULL))
				if (!g_hash_table_contains(mine, k))
					g_hash_table_iter_remove(&it);
			g_hash_table_destroy(mine);
		} else {
			common = mine;
		}
		cpu_def_clear(&c);
	}
	out = g_string_new("<cpu mode='custom' match='exact'>\n");
	if (vendor)
		xml_append_printf(out, "  <vendor>%s</vendor>\n", vendor);
	for (guint i = 0; i < order->len; i++) {
		const char *name = g_ptr_array_index(order, i);
		g_autofree char *k = feature_key(name);

		if (g_hash_table_contains(common, k))
			xml_append_printf(out, "  <feature policy='require' name='%s'/>\n", name);
	}
	g_string_append(out, "</cpu>\n");
	ret = strdup(out->str);		/* freed by xdr_free */
	if (!ret)
		g_error("out of memory");
	g_string_free(out, TRUE);
out:
	if (common)
		g_hash_table_destroy(common);
	g_ptr_array_unref(order);
	return ret;
}

/* The x86 models of libvirt's CPU map, in its index's order. */
static GPtrArray *model_names(void)
{
	GPtrArray *names = g_ptr_array_new_with_free_func(g_free);
	xmlDocPtr index = xmlReadFile(CPU_MAP_DIR "/index.xml", NULL, XML_PARSE_NONET |
				      XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
	xmlNodePtr root = index ? xmlDocGetRootElement(index) : NULL;

	for (xmlNodePtr a = root ? root->children : NULL; a; a = a->next) {
		g_autofree char *arch = NULL;

		if (a->type != XML_ELEMENT_NODE || strcmp((const char *)a->name, "arch") ||
		    g_strcmp0(arch = prop(a, "name"), "x86"))
			continue;
		for (xmlNodePtr inc = a->children; inc; inc = inc->next) {
			g_autofree char *file = NULL, *path = NULL;
			xmlDocPtr doc;
			xmlNodePtr cpus;

			if (inc->type != XML_ELEMENT_NODE || strcmp((const char *)inc->name, "include") ||
			    !(file = prop(inc, "filename")) || strchr(file, '/'))
				continue;
			path = g_build_filename(CPU_MAP_DIR, file, NULL);
			doc = xmlReadFile(path, NULL, XML_PARSE_NONET | XML_PARSE_NOERROR |
					  XML_PARSE_NOWARNING);
			cpus = doc ? xmlDocGetRootElement(doc) : NULL;
			for (xmlNodePtr m = cpus ? cpus->children : NULL; m; m = m->next) {
				char *name;

				if (m->type == XML_ELEMENT_NODE && !strcmp((const char *)m->name, "model") &&
				    (name = prop(m, "name")))
					g_ptr_array_add(names, name);
			}
			if (doc)
				xmlFreeDoc(doc);
		}
	}
	if (index)
		xmlFreeDoc(index);
	return names;
}

int drv_connect_get_cpu_model_names(struct rpc_conn *conn, void *args, void *ret)
{
	remote_connect_get_cpu_model_names_args *a = args;
	remote_connect_get_cpu_model_names_ret *r = ret;
	g_autoptr(GPtrArray) names = NULL;

	if (api_check_flags(a->flags, 0, "virConnectGetCPUModelNames") < 0)
		return -1;
	/* CLIENT: any string; only the architectures kvmm runs have models. */
	if (!arch_ok(a->arch)) {
		drv_error_report(VIR_ERR_INVALID_ARG, "cannot find architecture %s", a->arch);
		return -1;
	}
	names = model_names();
	if (names->len > REMOTE_CONNECT_CPU_MODELS_MAX) {
		drv_error_report(VIR_ERR_RPC, "Too many CPU models '%u' for limit '%d'", names->len,
				 REMOTE_CONNECT_CPU_MODELS_MAX);
		return -1;
	}
	r->ret = names->len;
	if (a->need_results && names->len) {
		r->models.models_len = names->len;
		r->models.models_val = calloc(names->len, sizeof(char *));
		if (!r->models.models_val)
			g_error("out of memory");
		for (guint i = 0; i < names->len; i++)
			if (!(r->models.models_val[i] = strdup(g_ptr_array_index(names, i))))
				g_error("out of memory");
	}
	return 0;
}

int drv_connect_compare_cpu(struct rpc_conn *conn, void *args, void *ret)
{
	remote_connect_compare_cpu_args *a = args;
	remote_connect_compare_cpu_ret *r = ret;

	r->result = compare(a->xml, a->flags);
	return r->result < 0 ? -1 : 0;
}

int drv_connect_baseline_cpu(struct rpc_conn *conn, void *args, void *ret)
{
	remote_connect_baseline_cpu_args *a = args;
	remote_connect_baseline_cpu_ret *r = ret;

	r->cpu = baseline(a->xmlCPUs.xmlCPUs_val, a->xmlCPUs.xmlCPUs_len, a->flags);
	return r->cpu ? 0 : -1;
}

/* The hypervisor forms name what the guest would run under: kvmm's,
 * checked as domcapabilities checks them. */
static int hypervisor_check(remote_string emulator, remote_string arch, remote_string machine,
			    remote_string virttype)
{
	return domcaps_check_target(emulator ? *emulator : NULL, arch ? *arch : NULL,
				    machine ? *machine : NULL, virttype ? *virttype : NULL);
}

int drv_connect_compare_hypervisor_cpu(struct rpc_conn *conn, void *args, void *ret)
{
	remote_connect_compare_hypervisor_cpu_args *a = args;
	remote_connect_compare_hypervisor_cpu_ret *r = ret;

	if (hypervisor_check(a->emulator, a->arch, a->machine, a->virttype) < 0)
		return -1;
	r->result = compare(a->xmlCPU, a->flags);
	return r->result < 0 ? -1 : 0;
}

int drv_connect_baseline_hypervisor_cpu(struct rpc_conn *conn, void *args, void *ret)
{
	remote_connect_baseline_hypervisor_cpu_args *a = args;
	remote_connect_baseline_hypervisor_cpu_ret *r = ret;

	if (hypervisor_check(a->emulator, a->arch, a->machine, a->virttype) < 0)
		return -1;
	r->cpu = baseline(a->xmlCPUs.xmlCPUs_val, a->xmlCPUs.xmlCPUs_len, a->flags);
	return r->cpu ? 0 : -1;
}
