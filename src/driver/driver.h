/* What every handler may need to know about this daemon instance; set
 * once by daemon.c before the first client is accepted. */
#ifndef KVMM_DRV_DRIVER_H
#define KVMM_DRV_DRIVER_H

#include <stdbool.h>

struct drv_state {
	bool privileged;	/* system instance (root) or session */
	const char *uri;	/* canonical URI: kvmm:///system or ///session */
	const char *root;	/* --root prefix for every file, "" if none */
	unsigned long long hypervisor_version;	/* virConnectGetVersion's
						 * answer; 0: kvmm's version */
};

extern struct drv_state drv_state;

#endif
