/* Between domain objects and the remote_nonnull_domain a client sends and
 * receives: the wire's name for a domain. */
#ifndef KVMM_DRV_DOMAIN_WIRE_H
#define KVMM_DRV_DOMAIN_WIRE_H

#include "domain/domain.h"
#include "remote_xdr.h"

/* The domain a client names, by its UUID (as libvirtd looks it up), or
 * NULL after reporting VIR_ERR_NO_DOMAIN. */
struct domain_obj *wire_domain_get(const remote_nonnull_domain *dom);

/* Fills OUT (name malloc'ed for xdr_free) from OBJ. */
void wire_domain_make(struct domain_obj *obj, remote_nonnull_domain *out);

#endif
