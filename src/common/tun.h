/* The tun/tap ioctls kvmm and virtkvmmd share: a descriptor attached to
 * a tap, and an interface's link state.  No policy and no messages: each
 * returns -errno for its caller to explain in its own terms. */
#ifndef KVMM_TUN_H
#define KVMM_TUN_H

#include <linux/if_tun.h>

/* What every tap of ours is: Ethernet frames, no packet information,
 * each carrying a virtio-net header. */
#define TUN_TAP_FLAGS	(IFF_TAP | IFF_NO_PI | IFF_VNET_HDR)

/* Opens /dev/net/tun with oflags (beside O_RDWR | O_CLOEXEC) and attaches
 * the tap NAME with TUN_TAP_FLAGS | extra, creating it if it does not
 * exist: the descriptor, or -errno (EBUSY: another process holds it;
 * EINVAL: a device of another kind has the name). */
int tun_open_tap(const char *name, int extra, int oflags);
/* Sets IFF_UP on the interface NAME: 0 or -errno. */
int netif_set_up(const char *name);

#endif
