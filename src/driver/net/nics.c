/* The taps of a running domain's NICs; see nics.h. */
#include <string.h>
#include <unistd.h>

#include <glib.h>
#include <libvirt/libvirt.h>

#include "error.h"
#include "netdev.h"
#include "network.h"
#include "nics.h"

#define VIR_FROM_THIS VIR_FROM_DOMAIN

/* One NIC's tap into T's slot I, *FD the descriptor that made it (-1:
 * the user's own); -1 after reporting. */
static int nic_create(const struct domain_net *n, struct nic_taps *t, size_t i, const char *mark,
		      int *fd)
{
	g_autofree char *bridge = NULL;
	/* A 'vnet' name in a definition belonged to an earlier run (libvirt
	 * drops them): a new one is generated. */
	char *name = n->ifname && !n->ifname_generated ? g_strdup(n->ifname) : NULL;

	if (n->managed == TRI_OFF) {
		/* The user's own tap: used as it is, never removed. */
		if (n->type != NET_ETHERNET || !name) {
			drv_error_report(VIR_ERR_CONFIG_UNSUPPORTED,
					 "<target managed='no'> needs <interface type='ethernet'> and <target dev='...'/> naming an existing tap");
			g_free(name);
			return -1;
		}
		if (!netdev_exists(name)) {
			drv_error_report(VIR_ERR_OPERATION_FAILED,
					 "tap device '%s' does not exist; with managed='no' it must be created beforehand",
					 name);
			g_free(name);
			return -1;
		}
		t->names[i] = name;
		return 0;
	}
	if (n->type == NET_BRIDGE)
		bridge = g_strdup(n->source);
	else if (n->type == NET_NETWORK && !(bridge = network_bridge(n->source)))
		goto fail;
	if ((*fd = netdev_tap_create(&name, n->mac, bridge, mark)) < 0)
		goto fail;
	t->names[i] = name;
	t->owned[i] = true;
	/* <mtu size=>: the tap's own (on a bridge, in place of the bridge's,
	 * as libvirt does); the guest is told the same (VIRTIO_NET_F_MTU). */
	return n->mtu ? netdev_set_mtu(name, n->mtu) : 0;
fail:
	g_free(name);
	return -1;
}

int nics_create(const struct domain_def *def, struct nic_taps *t, const char *mark, int *fds)
{
	memset(t, 0, sizeof(*t));
	if (!def->nnets)
		return 0;
	t->n = def->nnets;
	t->names = g_new0(char *, t->n + 1);
	t->owned = g_new0(bool, t->n);
	for (size_t i = 0; i < t->n; i++)
		fds[i] = -1;
	for (size_t i = 0; i < t->n; i++) {
		if (nic_create(&def->nets[i], t, i, mark, &fds[i]) < 0) {
			nics_release(t, fds, t->n);
			nics_remove(t);
			return -1;
		}
	}
	return 0;
}

int nics_open(const struct nic_taps *t, int *fds)
{
	for (size_t i = 0; i < t->n; i++) {
		if (fds[i] >= 0)
			continue;
		fds[i] = netdev_tap_open(t->names[i]);
		if (fds[i] < 0) {
			while (i--)
				if (!t->owned[i]) {
					close(fds[i]);
					fds[i] = -1;
				}
			return -1;
		}
	}
	return 0;
}

void nics_release(struct nic_taps *t, int *fds, size_t n)
{
	for (size_t i = 0; i < n && i < t->n; i++) {
		if (fds[i] < 0)
			continue;
		if (t->owned[i]) {
			netdev_tap_discard(fds[i], t->names[i]);
			t->owned[i] = false;	/* gone: nothing for nics_remove */
		} else {
			close(fds[i]);
		}
		fds[i] = -1;
	}
}

void nics_remove(struct nic_taps *t)
{
	for (size_t i = 0; i < t->n; i++)
		if (t->names[i] && t->owned[i])
			netdev_tap_delete(t->names[i]);
	nics_clear(t);
}

void nics_clear(struct nic_taps *t)
{
	for (size_t i = 0; i < t->n; i++)
		g_free(t->names[i]);
	g_free(t->names);
	g_free(t->owned);
	memset(t, 0, sizeof(*t));
}

void nics_show(struct domain_def *def, const struct nic_taps *t)
{
	for (size_t i = 0; i < def->nnets && i < t->n; i++) {
		struct domain_net *n = &def->nets[i];

		if (!t->names[i] || (n->ifname && !n->ifname_generated))
			continue;
		g_free(n->ifname);
		n->ifname = g_strdup(t->names[i]);
		n->ifname_generated = true;
	}
}

void nics_forget(struct domain_def *def)
{
	for (size_t i = 0; i < def->nnets; i++)
		if (def->nets[i].ifname_generated)
			g_clear_pointer(&def->nets[i].ifname, g_free);
}

int nics_find(const struct domain_def *def, const char *device)
{
	unsigned char mac[6];
	bool by_mac = domain_mac_parse(device, mac) == 0;

	for (size_t i = 0; i < def->nnets; i++) {
		const struct domain_net *n = &def->nets[i];

		if (by_mac ? !memcmp(n->mac, mac, 6) : n->ifname && !strcmp(n->ifname, device))
			return (int)i;
	}
	drv_error_report(VIR_ERR_INVALID_ARG, "'%s' is not a known interface", device);
	return -1;
}
