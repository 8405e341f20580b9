/* Host network devices behind a domain's NICs: persistent taps, opened
 * here for kvmm (which is handed the descriptors: it needs neither
 * CAP_NET_ADMIN nor /dev/net/tun), their place on a Linux bridge, their
 * counters.  The only
 * file with tun/tap and bridge ioctls.  Everything acts in the daemon's
 * own network namespace.
 *
 * The tap's own (host-side) MAC is the guest's with the first byte 0xFE,
 * as libvirt sets it: a bridge takes the lowest MAC of its ports, and the
 * host must not see the guest's address as its own.
 *
 * Every tap the daemon makes carries a mark, its interface alias (`ip
 * link` shows it), set before the tap can outlive the daemon: a daemon
 * killed between making a tap and recording it, or between forgetting a
 * run and removing its taps, leaves a tap the next one finds by the mark.
 * The MAC cannot tell: libvirtd gives its own vnet taps the same form of
 * address, and a tap is persistent before its MAC is set. */
#ifndef KVMM_DRV_NETDEV_H
#define KVMM_DRV_NETDEV_H

#include <stdbool.h>
#include <stdint.h>

#include <glib.h>

/* Counters as the host sees them (rx: what the host received from the
 * tap, i.e. what the guest sent). */
struct netdev_stats {
	uint64_t rx_bytes, rx_packets, rx_errs, rx_drop;
	uint64_t tx_bytes, tx_packets, tx_errs, tx_drop;
};

/* Creates the persistent tap *NAME -- or, *NAME being NULL, the lowest
 * free vnetN, whose name goes to *NAME (g_free it) -- with MAC the guest's
 * address, attached to BRIDGE when not NULL (taking its MTU), link up,
 * marked MARK (its alias, under 256 bytes).  A tap of that name that
 * exists and nobody holds is taken over, as libvirt does; one in use is
 * refused.  Returns the descriptor that made it, attached, as
 * netdev_tap_open's are: the one to hand kvmm.  Opening the tap again by
 * name could find it held by the copy another thread's fork caught (a
 * tap takes one holder).  -1 after reporting, nothing left behind. */
int netdev_tap_create(char **name, const unsigned char mac[6], const char *bridge, const char *mark);

/* The names of the network devices whose mark begins with PREFIX (free
 * with g_ptr_array_unref), or NULL after a warning. */
GPtrArray *netdev_marked(const char *prefix);

/* Sets NAME's MTU (an interface's <mtu size=>).  -1 after reporting. */
int netdev_set_mtu(const char *name, unsigned mtu);

/* Whether a network device called NAME exists. */
bool netdev_exists(const char *name);

/* A descriptor attached to the existing tap NAME as kvmm reads and
 * writes it (IFF_TAP | IFF_NO_PI | IFF_VNET_HDR, close-on-exec), for
 * kvmm to take over.  -1 after reporting (a tap another process holds is
 * refused). */
int netdev_tap_open(const char *name);

/* Removes the persistent tap NAME (the kernel deletes it once nobody
 * holds it).  Gone already is fine; failures are logged. */
void netdev_tap_delete(const char *name);

/* The same through FD, a descriptor attached to NAME, which it closes:
 * it needs no second holder, so no copy of FD elsewhere can stop it. */
void netdev_tap_discard(int fd, const char *name);

/* NAME's counters (/proc/net/dev).  -1 after reporting. */
int netdev_stats(const char *name, struct netdev_stats *st);

#endif
