/* Domains started with VIR_DOMAIN_START_AUTODESTROY: destroyed, as
 * libvirt does, when the connection that started them goes away --
 * closed, or its client died (the server drops it on EOF either way).
 *
 * The list lives in the daemon's memory: a daemon that stops leaves
 * such domains running, and the next one adopts them as ordinary
 * domains (their connection is long gone by then). */
#ifndef KVMM_DRV_AUTODESTROY_H
#define KVMM_DRV_AUTODESTROY_H

#include "domain.h"
#include "rpc/dispatch.h"

/* Ties the running OBJ (this run of it) to CONN.  0, or -1 when CONN is
 * already gone: the caller destroys the domain itself. */
int autodestroy_add(struct rpc_conn *conn, struct domain_obj *obj);

/* CONN is going away (main loop): its domains are destroyed on a thread
 * of their own, each under its job. */
void autodestroy_conn_gone(struct rpc_conn *conn);

/* The daemon is stopping: connections it drops now destroy nothing. */
void autodestroy_stop(void);

#endif
