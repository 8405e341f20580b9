/* Helpers shared by the domain handlers: flags, disks by name, the
 * listing filter; and the wire's name for a domain (rpc/domain_wire.h). */
#ifndef KVMM_DRV_DOMAIN_API_H
#define KVMM_DRV_DOMAIN_API_H

#include "domain/domain.h"
#include "rpc/domain_wire.h"

/* Refuses flag bits outside ALLOWED with libvirt's wording. */
int api_check_flags(unsigned flags, unsigned allowed, const char *api);

/* *LIVE and *CONFIG from FLAGS' VIR_DOMAIN_AFFECT_* as libvirt resolves
 * them (CURRENT, neither: live while OBJ runs, else the definition);
 * 0, or -1 reported: LIVE of a domain that does not run, CONFIG of a
 * transient one (TRANSIENT_MSG, NULL for libvirt's usual wording). */
int api_affect(struct domain_obj *obj, unsigned flags, bool *live, bool *config,
	       const char *transient_msg);

/* The index of the disk of DEF a client names: its target (vda) or its
 * source path, as libvirt accepts; -1 (nothing reported) if none. */
int api_disk_index(const struct domain_def *def, const char *name);

/* Whether OBJ passes listAllDomains' filter FLAGS (VIR_CONNECT_LIST_DOMAINS_*,
 * whose values getAllDomainStats' list filters share). */
bool list_domain_matches(struct domain_obj *obj, unsigned flags);

/* Managed save (domain_save.c): OBJ's image, under the daemon's state
 * directory (lib/kvmm/save/NAME.save); obj->lock held. */
char *managed_save_path_locked(struct domain_obj *obj);
bool managed_save_exists_locked(struct domain_obj *obj);
/* Removes OBJ's image, if any (its job held). */
int managed_save_remove(struct domain_obj *obj);
/* Start (the job held): when OBJ has a managed image, *RESTORED and the
 * result of restoring from it (paused if PAUSED or saved so), the image
 * removed once restored; else 0 and nothing done. */
int managed_save_start(struct domain_obj *obj, bool paused, bool *restored);
/* At daemon start: every inactive domain with a managed image is shut off
 * (saved), as it was when the image was made -- the image is the record
 * that outlives the daemon. */
void managed_save_mark_all(void);

struct rpc_conn;
/* CONN is going away (main loop): the incoming migrations it prepared
 * and did not finish are cancelled and removed (domain_migrate.c). */
void migrate_conn_gone(struct rpc_conn *conn);
/* Whether peer-to-peer migration can be driven from here (domain_migrate.c). */
bool migrate_p2p_supported(void);

/* Snapshots (domain_snapshot.c): the metadata store loaded from the
 * daemon's state directory (lib/kvmm/snapshot); once, at start. */
int snapshots_init(void);
/* Undefine (the job held): refuses an inactive OBJ with snapshots unless
 * FLAGS has VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA, as libvirt; then
 * removes its snapshot metadata once it is undefined. */
int snapshots_undefine_check(struct domain_obj *obj, unsigned flags);
int snapshots_forget(struct domain_obj *obj);

#endif
