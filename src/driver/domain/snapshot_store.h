/* Snapshot metadata of every domain: ROOT/DOMAIN/NAME.xml per snapshot
 * (libvirt's layout for its qemu driver's snapshot directory), each a
 * <domainsnapshot> with <active>1</active> on the current one; written
 * to NAME.xml.new then renamed, so a crash leaves the old file or the new
 * one.  Loaded once at daemon start, then kept in memory.
 *
 * Locking: one lock for the store; callers take it around a lookup and
 * the use of what it returned (snapshot_store_lock/unlock), and changes
 * happen under the domain's job as well. */
#ifndef KVMM_DRV_SNAPSHOT_STORE_H
#define KVMM_DRV_SNAPSHOT_STORE_H

#include <stdbool.h>

#include <glib.h>

#include "conf/snapshot_conf.h"

/* Loads every DIR/DOMAIN/NAME.xml (DIR created if missing); unreadable or invalid
 * files are logged and skipped.  -1 after reporting when DIR cannot be
 * used. */
int snapshot_store_init(const char *dir);

/* The <domain> DEF keeps, as the daemon formats it (libvirt's style,
 * whatever the XML it was read from looked like). */
void snapshot_normalize_domain(struct snapshot_def *def);

void snapshot_store_lock(void);
void snapshot_store_unlock(void);

/* The snapshots of domain DOM in creation order (never NULL; empty when
 * it has none); valid while the lock is held. */
GPtrArray *snapshot_store_list(const char *dom);
struct snapshot_def *snapshot_store_find(const char *dom, const char *name);
struct snapshot_def *snapshot_store_current(const char *dom);
unsigned snapshot_store_count(const char *dom);

/* The directory of DOM's snapshots (created if missing; g_free). */
char *snapshot_store_dir(const char *dom);

/* Lock held.  Adds DEF (taken; a snapshot of the same name is replaced)
 * and writes its file; with CURRENT it becomes the current snapshot.
 * -1 after reporting, DEF freed and the store unchanged. */
int snapshot_store_add(const char *dom, struct snapshot_def *def, bool current);
/* Lock held.  Makes NAME (NULL: none) DOM's current snapshot, rewriting
 * the files whose <active> changes. */
int snapshot_store_set_current(const char *dom, const char *name);
/* Lock held.  Rewrites DEF's file (after its parent changed). */
int snapshot_store_write(const char *dom, struct snapshot_def *def);
/* Lock held.  Removes NAME's file and entry. */
int snapshot_store_remove(const char *dom, const char *name);
/* Lock held.  Removes every snapshot of DOM, its directory too. */
int snapshot_store_remove_all(const char *dom);

#endif
