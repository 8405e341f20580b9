/* The host end of a virtio-net NIC: a tap device read and written with
 * a virtio-net header in front of every frame (IFF_VNET_HDR).  This file
 * is the only one that speaks to /dev/net/tun. */
#ifndef KVMM_TAP_H
#define KVMM_TAP_H

#include <net/if.h>
#include <stdbool.h>
#include <stdint.h>

struct tap {
	int fd;			/* non-blocking */
	char name[IF_NAMESIZE];
	bool created;		/* by kvmm: it goes away when fd closes */
};

/* Opens the tap called name, creating it (not persistent, link up) if it
 * does not exist; or, with name NULL, takes fd (already a tap opened
 * with IFF_TAP | IFF_NO_PI | IFF_VNET_HDR), which is then the tap's,
 * closed on failure too.  On failure prints one line naming the problem
 * and its fix, leaves nothing behind and returns -errno. */
int tap_open(struct tap *t, const char *name, int fd, unsigned int index);
/* TUN_F_* offloads the guest can take (TUNSETOFFLOAD): 0 or -errno,
 * silently (the caller decides how often to say so). */
int tap_set_offload(struct tap *t, unsigned int tun_flags);
void tap_close(struct tap *t);

#endif
