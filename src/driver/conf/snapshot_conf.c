/* Snapshot XML; see snapshot_conf.h. */
#include <stdlib.h>
#include <string.h>

#include <glib.h>
#include <libvirt/libvirt.h>
#include <libxml/parser.h>
#include <libxml/tree.h>

#include "error.h"
#include "snapshot_conf.h"

#define VIR_FROM_THIS VIR_FROM_DOMAIN_SNAPSHOT

static const char *const loc_names[] = {
	[SNAP_LOC_DEFAULT] = "default", [SNAP_LOC_NO] = "no", [SNAP_LOC_INTERNAL] = "internal",
	[SNAP_LOC_EXTERNAL] = "external", [SNAP_LOC_MANUAL] = "manual",
};

const char *snapshot_location_name(int loc)
{
	return loc >= 0 && loc < (int)G_N_ELEMENTS(loc_names) ? loc_names[loc] : "?";
}

void snapshot_def_free(struct snapshot_def *def)
{
	if (!def)
		return;
	g_free(def->name);
	g_free(def->description);
	g_free(def->state);
	g_free(def->parent);
	g_free(def->memory_file);
	for (size_t i = 0; i < def->ndisks; i++) {
		g_free(def->disks[i].name);
		g_free(def->disks[i].file);
		g_free(def->disks[i].driver);
	}
	g_free(def->disks);
	g_free(def->domain_xml);
	g_free(def);
}

static bool is_elem(xmlNodePtr n, const char *name)
{
	return n->type == XML_ELEMENT_NODE && !strcmp((const char *)n->name, name);
}

static char *text(xmlNodePtr n)
{
	xmlChar *t = xmlNodeGetContent(n);
	char *s = g_strdup(t ? (const char *)t : "");

	xmlFree(t);
	return s;
}

static char *attr(xmlNodePtr n, const char *name)
{
	xmlChar *v = xmlGetProp(n, (const xmlChar *)name);
	char *s = v ? g_strdup((const char *)v) : NULL;

	xmlFree(v);
	return s;
}

static xmlNodePtr child(xmlNodePtr n, const char *name)
{
	for (xmlNodePtr c = n->children; c; c = c->next)
		if (is_elem(c, name))
			return c;
	return NULL;
}

/* CLIENT: snapshot= is one of libvirt's words; 'manual' is libvirt's too
 * but means the user does it, which kvmm cannot coordinate. */
static int parse_location(xmlNodePtr n, const char *what, int *out)
{
	g_autofree char *v = attr(n, "snapshot");

	*out = SNAP_LOC_DEFAULT;
	if (!v)
		return 0;
	for (int i = SNAP_LOC_NO; i <= SNAP_LOC_MANUAL; i++)
		if (!strcmp(v, loc_names[i])) {
			*out = i;
			return 0;
		}
	drv_error_report(VIR_ERR_XML_DETAIL, "unknown %s snapshot setting '%s'", what, v);
	return -1;
}

static int parse_disk(xmlNodePtr n, struct snapshot_disk *d)
{
	xmlNodePtr src = child(n, "source"), drv = child(n, "driver");
	g_autofree char *type = attr(n, "type");

	d->name = attr(n, "name");
	if (!d->name || !*d->name) {
		drv_error_report(VIR_ERR_XML_ERROR, "missing name from disk snapshot element");
		return -1;
	}
	if (parse_location(n, "disk", &d->snapshot) < 0)
		return -1;
	/* CLIENT: only files: kvmm's overlays are qcow2 files the daemon
	 * writes. */
	if (type && strcmp(type, "file") != 0) {
		drv_error_report(VIR_ERR_CONFIG_UNSUPPORTED,
				 "disk '%s': snapshot overlays of type '%s' are not supported, only 'file'",
				 d->name, type);
		return -1;
	}
	if (src) {
		d->file = attr(src, "file");
		if (d->file && d->file[0] != '/') {
			drv_error_report(VIR_ERR_XML_DETAIL,
					 "disk '%s': the snapshot file '%s' is not an absolute path",
					 d->name, d->file);
			return -1;
		}
	}
	if (drv)
		d->driver = attr(drv, "type");
	if (d->file && d->snapshot == SNAP_LOC_DEFAULT)
		d->snapshot = SNAP_LOC_EXTERNAL;
	return 0;
}

/* The element N as text, its lines shifted left by the indentation of
 * its closing tag, so that a nested <domain> reads as on its own and
 * formatting it again nests it by the same amount. */
static char *node_xml(xmlNodePtr n)
{
	xmlBufferPtr b = xmlBufferCreate();
	g_auto(GStrv) lines = NULL;
	GString *s = g_string_new(NULL);
	size_t nl, k = 0;

	xmlNodeDump(b, n->doc, n, 0, 0);
	lines = g_strsplit((const char *)xmlBufferContent(b), "\n", -1);
	xmlBufferFree(b);
	nl = g_strv_length(lines);
	if (nl > 1)
		while (lines[nl - 1][k] == ' ')
			k++;
	for (size_t i = 0; i < nl; i++) {
		const char *l = lines[i];

		for (size_t j = 0; i > 0 && j < k && *l == ' '; j++)
			l++;
		g_string_append(s, l);
		g_string_append_c(s, '\n');
	}
	return g_string_free(s, FALSE);
}

static int parse_root(xmlNodePtr root, struct snapshot_def *def, bool internal)
{
	for (xmlNodePtr n = root->children; n; n = n->next) {
		if (n->type != XML_ELEMENT_NODE)
			continue;
		if (is_elem(n, "name")) {
			def->name = text(n);
		} else if (is_elem(n, "description")) {
			def->description = text(n);
		} else if (is_elem(n, "state")) {
			def->state = text(n);
		} else if (is_elem(n, "parent")) {
			xmlNodePtr pn = child(n, "name");

			def->parent = pn ? text(pn) : NULL;
		} else if (is_elem(n, "creationTime")) {
			g_autofree char *t = text(n);
			char *end;

			def->creation = strtoll(t, &end, 10);
			if (!*t || *end || def->creation < 0) {
				drv_error_report(VIR_ERR_XML_ERROR, "invalid creationTime '%s'", t);
				return -1;
			}
		} else if (is_elem(n, "memory")) {
			if (parse_location(n, "memory", &def->memory) < 0)
				return -1;
			def->memory_file = attr(n, "file");
			if (def->memory_file && def->memory == SNAP_LOC_DEFAULT)
				def->memory = SNAP_LOC_EXTERNAL;
			if (def->memory_file && def->memory_file[0] != '/') {
				drv_error_report(VIR_ERR_XML_DETAIL,
						 "the memory snapshot file '%s' is not an absolute path",
						 def->memory_file);
				return -1;
			}
		} else if (is_elem(n, "disks")) {
			for (xmlNodePtr c = n->children; c; c = c->next) {
				if (!is_elem(c, "disk"))
					continue;
				def->disks = g_renew(struct snapshot_disk, def->disks, def->ndisks + 1);
				memset(&def->disks[def->ndisks], 0, sizeof(def->disks[0]));
				def->ndisks++;
				if (parse_disk(c, &def->disks[def->ndisks - 1]) < 0)
					return -1;
				for (size_t i = 0; i + 1 < def->ndisks; i++)
					if (!strcmp(def->disks[i].name, def->disks[def->ndisks - 1].name)) {
						drv_error_report(VIR_ERR_CONFIG_UNSUPPORTED,
								 "disk '%s' specified twice",
								 def->disks[i].name);
						return -1;
					}
			}
		} else if (is_elem(n, "domain")) {
			def->domain_xml = node_xml(n);
		} else if (internal && is_elem(n, "active")) {
			g_autofree char *t = text(n);

			def->current = !strcmp(t, "1");
		} else {
			/* CLIENT: never dropped silently. */
			drv_error_report(VIR_ERR_CONFIG_UNSUPPORTED,
					 "unsupported element <%s> in snapshot XML", (const char *)n->name);
			return -1;
		}
	}
	/* CLIENT: the name becomes a file name in the daemon's directory. */
	if (def->name && (!*def->name || strchr(def->name, '/') || def->name[0] == '.')) {
		drv_error_report(VIR_ERR_XML_DETAIL,
				 "snapshot name '%s' is not valid: empty, starting with '.' or containing '/'",
				 def->name);
		return -1;
	}
	return 0;
}

struct snapshot_def *snapshot_def_parse(const char *xml, bool internal)
{
	struct snapshot_def *def;
	xmlDocPtr doc;
	xmlNodePtr root;

	/* No network, no entity expansion: the XML is the client's. */
	doc = xmlReadMemory(xml, strlen(xml), "domainsnapshot.xml", NULL,
			    XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
	if (!doc) {
		const xmlError *e = xmlGetLastError();

		drv_error_report(VIR_ERR_XML_ERROR, "(domain_snapshot):%d: %s", e ? e->line : 0,
				 e && e->message ? g_strchomp(g_strdup(e->message)) : "malformed XML");
		return NULL;
	}
	root = xmlDocGetRootElement(doc);
	if (!root || !is_elem(root, "domainsnapshot")) {
		drv_error_report(VIR_ERR_XML_ERROR,
				 "unexpected root element <%s>, expecting <domainsnapshot>",
				 root ? (const char *)root->name : "");
		xmlFreeDoc(doc);
		return NULL;
	}
	def = g_new0(struct snapshot_def, 1);
	if (parse_root(root, def, internal) < 0) {
		snapshot_def_free(def);
		def = NULL;
	}
	xmlFreeDoc(doc);
	return def;
}

static void escape(GString *s, const char *v)
{
	g_autofree char *e = g_markup_escape_text(v, -1);

	g_string_append(s, e);
}

char *snapshot_def_format(const struct snapshot_def *def, bool internal)
{
	GString *s = g_string_new("<domainsnapshot>\n");

	g_string_append(s, "  <name>");
	escape(s, def->name);
	g_string_append(s, "</name>\n");
	if (def->description) {
		g_string_append(s, "  <description>");
		escape(s, def->description);
		g_string_append(s, "</description>\n");
	}
	if (def->state)
		g_string_append_printf(s, "  <state>%s</state>\n", def->state);
	if (def->parent) {
		g_string_append(s, "  <parent>\n    <name>");
		escape(s, def->parent);
		g_string_append(s, "</name>\n  </parent>\n");
	}
	g_string_append_printf(s, "  <creationTime>%lld</creationTime>\n", def->creation);
	if (def->memory != SNAP_LOC_DEFAULT) {
		g_string_append_printf(s, "  <memory snapshot='%s'", loc_names[def->memory]);
		if (def->memory_file) {
			g_string_append(s, " file='");
			escape(s, def->memory_file);
			g_string_append_c(s, '\'');
		}
		g_string_append(s, "/>\n");
	}
	if (def->ndisks) {
		g_string_append(s, "  <disks>\n");
		for (size_t i = 0; i < def->ndisks; i++) {
			const struct snapshot_disk *d = &def->disks[i];

			g_string_append(s, "    <disk name='");
			escape(s, d->name);
			g_string_append_printf(s, "' snapshot='%s'", loc_names[d->snapshot]);
			if (!d->file && !d->driver) {
				g_string_append(s, "/>\n");
				continue;
			}
			g_string_append(s, " type='file'>\n");
			if (d->driver)
				g_string_append_printf(s, "      <driver type='%s'/>\n", d->driver);
			if (d->file) {
				g_string_append(s, "      <source file='");
				escape(s, d->file);
				g_string_append(s, "'/>\n");
			}
			g_string_append(s, "    </disk>\n");
		}
		g_string_append(s, "  </disks>\n");
	}
	if (def->domain_xml) {
		/* Indented one level, as libvirt nests it. */
		g_auto(GStrv) lines = g_strsplit(def->domain_xml, "\n", -1);

		for (size_t i = 0; lines[i]; i++)
			if (*lines[i])
				g_string_append_printf(s, "  %s\n", lines[i]);
	}
	if (internal)
		g_string_append_printf(s, "  <active>%d</active>\n", def->current ? 1 : 0);
	g_string_append(s, "</domainsnapshot>\n");
	return g_string_free(s, FALSE);
}
