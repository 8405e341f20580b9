/* Consumption-tracking XML reading (see domain_xml.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>

#include "domain_xml.h"
#include "error.h"

#define VIR_FROM_THIS VIR_FROM_DOMAIN

/* Values of _private; nothing else in the process uses it on these docs. */
#define TAKEN ((void *)1)
#define TEXT_TAKEN ((void *)2)	/* element whose text was read as well */

static bool taken(const void *p)
{
	return p == TAKEN || p == TEXT_TAKEN;
}

bool xml_is_element(xmlNodePtr node, const char *name)
{
	return node->type == XML_ELEMENT_NODE && !node->ns &&
	       strcmp((const char *)node->name, name) == 0;
}

void xml_take(xmlNodePtr node)
{
	if (node->_private != TEXT_TAKEN)
		node->_private = TAKEN;
}

xmlNodePtr xml_child(xmlNodePtr node, const char *name)
{
	for (xmlNodePtr c = node->children; c; c = c->next) {
		if (xml_is_element(c, name)) {
			xml_take(c);
			return c;
		}
	}
	return NULL;
}

char *xml_attr(xmlNodePtr node, const char *name)
{
	xmlAttrPtr a = xmlHasNsProp(node, BAD_CAST name, NULL);
	xmlChar *v;
	char *ret;

	if (!a)
		return NULL;
	a->_private = TAKEN;
	v = xmlNodeGetContent((xmlNodePtr)a);
	ret = g_strdup(v ? (const char *)v : "");
	xmlFree(v);
	return ret;
}

char *xml_attr_required(xmlNodePtr node, const char *name)
{
	char *v = xml_attr(node, name);

	if (!v)
		drv_error_report(VIR_ERR_XML_ERROR, "Missing '%s' attribute in '%s'",
				 name, (const char *)node->name);
	return v;
}

char *xml_text(xmlNodePtr node)
{
	xmlChar *v = xmlNodeGetContent(node);
	char *ret = g_strdup(v ? (const char *)v : "");

	xmlFree(v);
	node->_private = TEXT_TAKEN;
	return ret;
}

int xml_attr_enum(xmlNodePtr node, const char *name, const struct conf_enum *e, int def, int *out)
{
	g_autofree char *v = xml_attr(node, name);
	int i;

	if (!v) {
		if (def == XML_OPTIONAL) {
			*out = -1;
			return 0;
		}
		if (def == XML_REQUIRED) {
			drv_error_report(VIR_ERR_XML_ERROR, "Missing '%s' attribute in '%s'",
					 name, (const char *)node->name);
			return -1;
		}
		*out = def;
		return 0;
	}
	i = conf_enum_lookup(e, v);
	if (i < 0) {
		conf_enum_refuse(e, v);
		return -1;
	}
	*out = i;
	return 0;
}

int xml_text_enum(xmlNodePtr node, const struct conf_enum *e, int *out)
{
	g_autofree char *v = xml_text(node);
	g_strstrip(v);
	int i = conf_enum_lookup(e, v);

	if (i < 0) {
		conf_enum_refuse(e, v);
		return -1;
	}
	*out = i;
	return 0;
}

int xml_attr_uint(xmlNodePtr node, const char *name, unsigned *out)
{
	g_autofree char *v = xml_attr(node, name);
	char *end;
	unsigned long n;

	if (!v)
		return 0;
	errno = 0;
	n = strtoul(v, &end, 10);
	if (!*v || *end || v[0] == '-' || errno || n > 0xffffffffUL) {
		drv_error_report(VIR_ERR_XML_ERROR,
				 "Invalid value for attribute '%s' in element '%s': '%s'. Expected non-negative integer value",
				 name, (const char *)node->name, v);
		return -1;
	}
	*out = n;
	return 0;
}

static bool blank(const xmlChar *s)
{
	for (; s && *s; s++)
		if (!strchr(" \t\r\n", *s))
			return false;
	return true;
}

static bool sibling_taken(xmlNodePtr node)
{
	for (xmlNodePtr c = node->parent->children; c; c = c->next)
		if (c != node && c->type == XML_ELEMENT_NODE && taken(c->_private) &&
		    c->ns == node->ns && xmlStrEqual(c->name, node->name))
			return true;
	return false;
}

static void qualified(xmlNodePtr n, char *buf, size_t len)
{
	if (n->ns && n->ns->prefix)
		g_snprintf(buf, len, "%s:%s", n->ns->prefix, n->name);
	else
		g_snprintf(buf, len, "%s", n->name);
}

/* What to do instead, for elements virt-install, virt-manager and nova
 * add by default: libvirt's define API has no way to carry a warning, so
 * the refusal names the change (and the tool's switch that makes it). */
static const struct {
	const char *parent, *name, *hint;
} refused_hints[] = {
	{ "devices", "graphics", " (it has no display); remove it (nova: [vnc] enabled = False and [spice] enabled = False; virt-install: --graphics none)" },
	{ "devices", "video", " (it has no display); remove it (nova: [vnc] enabled = False and [spice] enabled = False; virt-install: --graphics none)" },
	{ "devices", "input", " (it has no display); remove it (virt-install: --graphics none)" },
	{ "devices", "sound", "; remove it (virt-install: --sound none)" },
	{ "devices", "audio", "; remove it (virt-install: --sound none)" },
	{ "devices", "redirdev", " (it has no USB); remove it (virt-install: --redirdev none)" },
	{ "devices", "smartcard", " (it has no USB); remove it (virt-install: --smartcard none)" },
	{ "devices", "tpm", "; remove it (virt-install: --tpm none)" },
	{ "devices", "watchdog", "; remove it (virt-install: --watchdog none)" },
	{ "features", "hyperv", " (it offers no Hyper-V enlightenments); remove it" },
	{ "features", "smm", " (it boots a kernel directly, without firmware); remove it" },
};

static const char *refused_hint(const char *parent, const char *name)
{
	for (size_t i = 0; i < G_N_ELEMENTS(refused_hints); i++)
		if (!strcmp(refused_hints[i].parent, parent) && !strcmp(refused_hints[i].name, name))
			return refused_hints[i].hint;
	return "";
}

static const char *refused_attr_hint(const char *element, const char *attr)
{
	if (!strcmp(element, "os") && !strcmp(attr, "firmware"))
		return " (it boots a kernel directly, without firmware); remove it and add <kernel> (virt-install: --boot kernel=PATH)";
	/* virt-install's USB controller; its model='none' takes no ports. */
	if (!strcmp(element, "controller") && !strcmp(attr, "ports"))
		return " (it has no USB); remove it";
	return "";
}

static int refuse_element(xmlNodePtr c, xmlNodePtr parent)
{
	char name[128], pname[128];

	qualified(c, name, sizeof(name));
	qualified(parent, pname, sizeof(pname));
	if (sibling_taken(c)) {
		drv_error_report(VIR_ERR_XML_ERROR, "element <%s> may appear only once in <%s>",
				 name, pname);
		return -1;
	}
	if (xml_is_element(parent, "devices")) {
		drv_error_report(VIR_ERR_CONFIG_UNSUPPORTED, "device '%s' is not supported by kvmm%s",
				 name, refused_hint(pname, name));
	} else if (!parent->parent || parent->parent->type != XML_ELEMENT_NODE) {
		drv_error_report(VIR_ERR_CONFIG_UNSUPPORTED, "element <%s> is not supported by kvmm", name);
	} else {
		drv_error_report(VIR_ERR_CONFIG_UNSUPPORTED, "element <%s> in <%s> is not supported by kvmm%s",
				 name, pname, refused_hint(pname, name));
	}
	return -1;
}

int xml_refuse_unconsumed(xmlNodePtr node)
{
	char name[128];

	for (xmlAttrPtr a = node->properties; a; a = a->next) {
		if (taken(a->_private))
			continue;
		qualified(node, name, sizeof(name));
		if (a->ns && a->ns->prefix)
			drv_error_report(VIR_ERR_CONFIG_UNSUPPORTED,
					 "attribute '%s:%s' of <%s> is not supported by kvmm",
					 a->ns->prefix, a->name, name);
		else
			drv_error_report(VIR_ERR_CONFIG_UNSUPPORTED,
					 "attribute '%s' of <%s> is not supported by kvmm%s", a->name, name,
					 refused_attr_hint(name, (const char *)a->name));
		return -1;
	}
	for (xmlNodePtr c = node->children; c; c = c->next) {
		switch (c->type) {
		case XML_ELEMENT_NODE:
			if (!taken(c->_private))
				return refuse_element(c, node);
			/* <metadata> is kept verbatim: nothing in it is ours to read. */
			if (xml_is_element(c, "metadata") && !node->parent->parent)
				continue;
			if (xml_refuse_unconsumed(c) < 0)
				return -1;
			break;
		case XML_TEXT_NODE:
		case XML_CDATA_SECTION_NODE:
			if (node->_private != TEXT_TAKEN && !blank(c->content)) {
				qualified(node, name, sizeof(name));
				drv_error_report(VIR_ERR_XML_ERROR, "unexpected text in <%s>", name);
				return -1;
			}
			break;
		default:	/* comments, processing instructions: not data */
			break;
		}
	}
	return 0;
}
