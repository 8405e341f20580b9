/* Helpers shared by the domain handlers: flags, disks by name, the
 * listing filter; and the wire's name for a domain (rpc/domain_wire.h). */
#ifndef KVMM_DRV_DOMAIN_API_H
#define KVMM_DRV_DOMAIN_API_H

#include "domain/domain.h"
#include "rpc/domain_wire.h"

/* Refuses flag bits outside ALLOWED with libvirt's wording. */
int api_check_flags(unsigned flags, unsigned allowed, const char *api);

/* The index of the disk of DEF a client names: its target (vda) or its
 * source path, as libvirt accepts; -1 (nothing reported) if none. */
int api_disk_index(const struct domain_def *def, const char *name);

/* Whether OBJ passes listAllDomains' filter FLAGS (VIR_CONNECT_LIST_DOMAINS_*,
 * whose values getAllDomainStats' list filters share). */
bool list_domain_matches(struct domain_obj *obj, unsigned flags);

#endif
