/* VIR_DOMAIN_DEFINE_VALIDATE: checks a domain XML document against
 * libvirt's installed RELAX NG schema, as libvirt does for that flag. */
#ifndef KVMM_DRV_DOMAIN_SCHEMA_H
#define KVMM_DRV_DOMAIN_SCHEMA_H

/* 0 when XML validates; -1 after reporting VIR_ERR_XML_INVALID_SCHEMA (or
 * the reason the schema could not be used). */
int domain_schema_validate(const char *xml);

#endif
