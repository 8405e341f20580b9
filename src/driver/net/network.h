/* <interface type='network'>: the bridge of a libvirt virtual network,
 * asked of libvirt's own network driver (virtnetworkd or libvirtd) on this
 * host through libvirt's client library.  The only file that is a libvirt
 * client. */
#ifndef KVMM_DRV_NETWORK_H
#define KVMM_DRV_NETWORK_H

/* The bridge of the active network NAME (g_free it), or NULL after
 * reporting why it cannot be used. */
char *network_bridge(const char *name);

#endif
