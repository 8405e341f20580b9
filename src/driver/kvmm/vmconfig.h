/* XML -> VM config: the one function that turns a domain definition into
 * the JSON document kvmm reads with --config (schemas/vm-config.schema.json).
 *
 * Pure: no I/O, no daemon state; what only the daemon knows at start time
 * (where the control socket goes) comes in struct vmconfig_runtime.  What
 * the definition asks for and kvmm cannot do yet is refused here, by name,
 * with VIR_ERR_CONFIG_UNSUPPORTED -- never dropped.  Golden tests:
 * tests/xml2config/<case>.xml -> <case>.json (tests/driver/test_xml2config.py). */
#ifndef KVMM_DRV_VMCONFIG_H
#define KVMM_DRV_VMCONFIG_H

#include "conf/domain_conf.h"

struct vmconfig_runtime {
	const char *api_socket;		/* kvmm's control socket; NULL: none */
	bool paused;			/* virsh start --paused */
	char *const *taps;		/* per <interface>, its tap */
	/* Per <interface>, the descriptor of its tap kvmm inherits ("fd"):
	 * the daemon opens the taps, kvmm never does.  NULL: kvmm opens
	 * them by name ("tap"). */
	const int *tap_fds;
	/* A restore's or incoming migration's: each disk and NIC named by
	 * its alias ("id"), so kvmm gives a hot-added one that name (a
	 * definition lists hot-added devices last, in the order they came,
	 * which is how kvmm tells them from the stream's own). */
	bool ids;
	/* virtkvmmd.conf's pvm_compat: "pvm_compat": true (a test host's
	 * daemon's choice, never the definition's); with ids, false is
	 * written too. */
	bool pvm_compat;
};

/* Refuses (VIR_ERR_CONFIG_UNSUPPORTED) what kvmm cannot run yet in DEF,
 * before anything is made for it.  0, or -1 after reporting. */
int vmconfig_check(const struct domain_def *def);

/* The VM config for DEF as a JSON text (g_free it), or NULL after
 * reporting the reason. */
char *vmconfig_from_def(const struct domain_def *def, const struct vmconfig_runtime *rt);

/* One disk's or NIC's keys as in the config's "disks" / "nets" (the same
 * a hot-added device takes: docs/api.md device-add), as JSON text
 * (g_free it). */
char *vmconfig_disk_json(const struct domain_disk *d);
char *vmconfig_net_json(const struct domain_net *n, const char *tap);

#endif
