/* Schema validation for define --validate; see domain_schema.h. */
#include <string.h>

#include <glib.h>
#include <libxml/parser.h>
#include <libxml/relaxng.h>

#include "domain_schema.h"
#include "error.h"

#define VIR_FROM_THIS VIR_FROM_XML

#ifndef LIBVIRT_SCHEMA_DIR
#define LIBVIRT_SCHEMA_DIR "/usr/share/libvirt/schemas"
#endif
#define DOMAIN_RNG LIBVIRT_SCHEMA_DIR "/domain.rng"

/* Parsing domain.rng (and its includes) costs far more than validating,
 * so the compiled schema is kept; libxml2's validation contexts are per
 * call, the schema itself is shared read-only. */
static GMutex schema_lock;
static xmlRelaxNGPtr schema;

/* libxml2's messages: printf formats, as its callback type says. */
static void collect(void *ctx, const char *fmt, ...) G_GNUC_PRINTF(2, 3);
static void collect(void *ctx, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	g_string_append_vprintf(ctx, fmt, ap);
	va_end(ap);
}

static xmlRelaxNGPtr get_schema(void)
{
	xmlRelaxNGParserCtxtPtr pctx;

	g_mutex_lock(&schema_lock);
	if (!schema) {
		pctx = xmlRelaxNGNewParserCtxt(DOMAIN_RNG);
		if (pctx) {
			schema = xmlRelaxNGParse(pctx);
			xmlRelaxNGFreeParserCtxt(pctx);
		}
	}
	g_mutex_unlock(&schema_lock);
	if (!schema)
		drv_error_report(VIR_ERR_INTERNAL_ERROR,
				 "Unable to parse schema file %s (is libvirt's schema package installed?)",
				 DOMAIN_RNG);
	return schema;
}

int domain_schema_validate(const char *xml)
{
	xmlRelaxNGPtr rng = get_schema();
	xmlRelaxNGValidCtxtPtr vctx;
	g_autoptr(GString) msgs = g_string_new(NULL);
	xmlDocPtr doc;
	int rc;

	if (!rng)
		return -1;
	doc = xmlReadMemory(xml, strlen(xml), "domain.xml", NULL,
			    XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
	if (!doc)
		return 0;	/* not well-formed: the parser reports it, with its line */
	vctx = xmlRelaxNGNewValidCtxt(rng);
	xmlRelaxNGSetValidErrors(vctx, collect, collect, msgs);
	rc = xmlRelaxNGValidateDoc(vctx, doc);
	xmlRelaxNGFreeValidCtxt(vctx);
	xmlFreeDoc(doc);
	if (rc != 0) {
		/* libvirt's wording: the schema file, then libxml2's lines. */
		drv_error_report(VIR_ERR_XML_INVALID_SCHEMA, "Unable to validate doc against %s\n%s",
				 DOMAIN_RNG, msgs->str);
		return -1;
	}
	return 0;
}
