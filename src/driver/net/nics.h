/* The host side of a running domain's NICs: one persistent tap per
 * <interface> (ethernet: the tap alone; bridge: a port of that bridge;
 * network: a port of the bridge of that libvirt network), made before
 * kvmm starts and removed when the domain stops, whichever way it stops.
 * kvmm is handed each tap open: the descriptor that made it, or for the
 * user's own tap one opened by name (nics_open); it opens none itself.  The
 * names go into the live XML (<target dev=>) and the status file. */
#ifndef KVMM_DRV_NICS_H
#define KVMM_DRV_NICS_H

#include <stdbool.h>
#include <stddef.h>

#include "conf/domain_conf.h"

struct nic_taps {
	size_t n;
	char **names;		/* per NIC, in XML order */
	bool *owned;		/* made here, removed here (not managed='no') */
};

/* Creates the taps of DEF's interfaces into T, each marked MARK (see
 * netdev.h); FDS[i] (DEF's nnets of them) is the descriptor that made
 * tap i, kept for kvmm, or -1 for the user's own tap.  -1 after
 * reporting, with nothing left behind. */
int nics_create(const struct domain_def *def, struct nic_taps *t, const char *mark, int *fds);

/* Fills FDS's -1 entries, the user's own taps, with descriptors opened
 * by name (netdev_tap_open): then every FDS[i] is for kvmm, and the
 * caller closes them.  -1 after reporting, with the ones opened here
 * closed again. */
int nics_open(const struct nic_taps *t, int *fds);

/* A start that failed before kvmm got FDS: the taps T made go with
 * their descriptors (netdev_tap_discard), the others' are closed. */
void nics_release(struct nic_taps *t, int *fds, size_t n);

/* Removes the taps T owns and empties T; nics_clear only empties it. */
void nics_remove(struct nic_taps *t);
void nics_clear(struct nic_taps *t);

/* Shows T's names as DEF's <target dev=> (generated ones are live-only);
 * nics_forget takes the generated ones away again when the domain stops. */
void nics_show(struct domain_def *def, const struct nic_taps *t);
void nics_forget(struct domain_def *def);

/* The NIC of DEF a client names by its target dev or its MAC address, as
 * libvirt accepts; -1 after reporting. */
int nics_find(const struct domain_def *def, const char *device);

#endif
