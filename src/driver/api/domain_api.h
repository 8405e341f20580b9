/* Helpers shared by the domain handlers (domain_api.c, domain_edit.c,
 * list.c): between domain objects and the remote_nonnull_domain a
 * client sends and receives. */
#ifndef KVMM_DRV_DOMAIN_API_H
#define KVMM_DRV_DOMAIN_API_H

#include "domain/domain.h"
#include "remote_xdr.h"

/* The domain a client names, by its UUID (as libvirtd looks it up), or
 * NULL after reporting VIR_ERR_NO_DOMAIN. */
struct domain_obj *api_domain_get(const remote_nonnull_domain *dom);

/* Fills OUT (name malloc'ed for xdr_free) from OBJ. */
void api_domain_make(struct domain_obj *obj, remote_nonnull_domain *out);

/* Refuses flag bits outside ALLOWED with libvirt's wording. */
int api_check_flags(unsigned flags, unsigned allowed, const char *api);

/* The index of the disk of DEF a client names: its target (vda) or its
 * source path, as libvirt accepts; -1 (nothing reported) if none. */
int api_disk_index(const struct domain_def *def, const char *name);

/* Whether OBJ passes listAllDomains' filter FLAGS (VIR_CONNECT_LIST_DOMAINS_*,
 * whose values getAllDomainStats' list filters share); list.c. */
bool list_domain_matches(struct domain_obj *obj, unsigned flags);

#endif
