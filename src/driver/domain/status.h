/* Status files: what the daemon knows of a running domain, kept in
 * RUNDIR/kvmm/UUID.xml so that a restarted daemon re-adopts the kvmm
 * processes the previous one started.  The only file that reads or
 * writes them; schema: schemas/domstatus.rng (libvirt's domain schema for
 * the live definition inside).
 *
 *   <domstatus state='running' reason='booted' pid='4242' id='1' started='1763750000'
 *              [transient='yes']>
 *     <monitor path='RUNDIR/kvmm/UUID.sock'/>
 *     <config path='RUNDIR/kvmm/UUID.json'/>
 *     <log path='LOGDIR/NAME.log'/>
 *     <tap nic='0' dev='vnet0' owned='yes'/>     one per <interface>: removed
 *                                                 when the domain stops if owned
 *     <cgroup path='/machine/kvmm-INSTANCE/UUID'/>  its cgroup (kvmm/cgroup.h),
 *                                                 absent when it has none
 *     <domain type='kvm' id='1'> ... live definition ... </domain>
 *   </domstatus>
 *
 * Written atomically (temp file, rename) on start and on every state
 * change; removed when the domain stops.  Only a record marked durable
 * (the one written just before kvmm runs) is fsynced with its directory:
 * everything else it names (the process, its taps and cgroup) is gone
 * after a host crash anyway, and a daemon killed needs only the rename. */
#ifndef KVMM_DRV_STATUS_H
#define KVMM_DRV_STATUS_H

#include <stdint.h>
#include <sys/types.h>

#include "net/nics.h"

struct domain_status {
	int state, reason;		/* virDomainState and its reason */
	pid_t pid;
	int id;
	int64_t started;		/* Unix time, seconds */
	char *monitor_path, *config_path, *log_path;
	bool transient;			/* no definition on disk: the live one is all */
	unsigned char uuid[16];		/* read from the live definition */
	char *live_xml;			/* the <domain> element (read only) */
	struct nic_taps taps;		/* the NICs' taps */
	char *cgroup;			/* NULL or "": none */
	bool durable;			/* status_write: fsync file and directory */
};

/* Writes ST and the live definition LIVE_XML to PATH.  -1 after
 * reporting. */
int status_write(const char *path, const struct domain_status *st, const char *live_xml);

/* Reads PATH into ST (free with status_clear).  -1 with the reason in
 * *WHY (g_free it) when the file is not a status file we wrote. */
int status_read(const char *path, struct domain_status *st, char **why);
void status_clear(struct domain_status *st);

#endif
