/* Reading helpers for the domain parser.  Every element, attribute and text
 * the parser reads is marked as consumed (in libxml2's _private field); after
 * the parse, xml_refuse_unconsumed() walks the document and refuses the first
 * thing nobody read, by name.  That is how "never silently drop" is enforced
 * for the whole of libvirt's grammar without listing it. */
#ifndef KVMM_DOMAIN_XML_H
#define KVMM_DOMAIN_XML_H

#include <stdbool.h>
#include <libxml/tree.h>

#include "domain_tables.h"

/* First element child named NAME (no namespace), marked consumed; NULL if
 * none.  Later siblings of the same name stay unconsumed and are reported as
 * duplicates. */
xmlNodePtr xml_child(xmlNodePtr node, const char *name);

/* Marks NODE consumed (for elements found by iteration). */
void xml_take(xmlNodePtr node);
bool xml_is_element(xmlNodePtr node, const char *name);

/* The value of attribute NAME (g_malloc'ed), marked consumed; NULL if absent. */
char *xml_attr(xmlNodePtr node, const char *name);

/* Required attribute: reports "Missing 'NAME' attribute in 'ELEMENT'". */
char *xml_attr_required(xmlNodePtr node, const char *name);

/* The text content (g_malloc'ed, never NULL), marked consumed. */
char *xml_text(xmlNodePtr node);

/* Attribute NAME looked up in E: *OUT = index.  Absent: *OUT = DEF, an
 * error when DEF is XML_REQUIRED, *OUT = -1 when XML_OPTIONAL.  Returns -1
 * after reporting. */
#define XML_REQUIRED (-1)
#define XML_OPTIONAL (-2)
int xml_attr_enum(xmlNodePtr node, const char *name, const struct conf_enum *e, int def, int *out);
int xml_text_enum(xmlNodePtr node, const struct conf_enum *e, int *out);

/* Unsigned decimal attribute; absent leaves *OUT alone and returns 0. */
int xml_attr_uint(xmlNodePtr node, const char *name, unsigned *out);

/* Refuses the first element, attribute or non-blank text under ROOT that
 * the parser did not consume.  Returns -1 after reporting, 0 when none. */
int xml_refuse_unconsumed(xmlNodePtr root);

#endif
