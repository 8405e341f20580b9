/* Networks through libvirt's network driver; see network.h. */
#include <stdlib.h>

#include <glib.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include "error.h"
#include "network.h"

#define VIR_FROM_THIS VIR_FROM_NETWORK

/* The network driver's URI: virtnetworkd's socket, or libvirtd's where
 * the monolithic daemon runs. */
#define NETWORK_URI "network:///system"

/* libvirt's client prints every error on stderr unless told otherwise;
 * ours are reported to the caller instead. */
static void quiet(void *opaque, virErrorPtr err)
{
	(void)opaque;
	(void)err;
}

static const char *last_message(void)
{
	const char *m = virGetLastErrorMessage();

	return m ? m : "unknown error";
}

char *network_bridge(const char *name)
{
	static gsize once;
	virConnectPtr conn;
	virNetworkPtr net = NULL;
	char *bridge = NULL, *out = NULL;

	if (g_once_init_enter(&once)) {
		virSetErrorFunc(NULL, quiet);
		g_once_init_leave(&once, 1);
	}
	conn = virConnectOpen(NETWORK_URI);
	if (!conn) {
		drv_error_report(VIR_ERR_OPERATION_INVALID,
				 "network '%s' cannot be used: libvirt's network driver is not running on this host (%s: %s); start virtnetworkd or libvirtd, or use <interface type='bridge'>",
				 name, NETWORK_URI, last_message());
		return NULL;
	}
	if (!(net = virNetworkLookupByName(conn, name))) {
		drv_error_report(VIR_ERR_NO_NETWORK, "network '%s' cannot be used: %s", name,
				 last_message());
		goto out;
	}
	if (virNetworkIsActive(net) != 1) {
		drv_error_report(VIR_ERR_OPERATION_INVALID,
				 "network '%s' is not active; start it with virsh net-start %s", name, name);
		goto out;
	}
	if (!(bridge = virNetworkGetBridgeName(net))) {
		drv_error_report(VIR_ERR_CONFIG_UNSUPPORTED,
				 "network '%s' has no bridge (%s); kvmm's NICs join networks that have one",
				 name, last_message());
		goto out;
	}
	out = g_strdup(bridge);
	free(bridge);
out:
	if (net)
		virNetworkFree(net);
	virConnectClose(conn);
	return out;
}
