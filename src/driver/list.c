/* Listing and counting domains.  There are no domain definitions yet
 * (they arrive with the definitions increment), so every list is empty;
 * arguments are still checked as libvirt's daemons do, so clients see the
 * same errors now as later. */
#include <libvirt/libvirt.h>

#include "error.h"
#include "handlers.h"
#include "remote_xdr.h"

#define VIR_FROM_THIS VIR_FROM_DOMAIN

/* Every VIR_CONNECT_LIST_DOMAINS_* filter bit libvirt 9.0 defines. */
#define LIST_DOMAINS_FLAGS_ALL 0xffffu

int drv_connect_list_all_domains(struct rpc_conn *conn, void *args, void *ret)
{
	remote_connect_list_all_domains_args *a = args;
	remote_connect_list_all_domains_ret *r = ret;

	/* CLIENT: unknown filter bits are refused, never ignored (virsh
	 * then retries with the basic ones). */
	if (a->flags & ~LIST_DOMAINS_FLAGS_ALL) {
		drv_error_report(VIR_ERR_INVALID_ARG, "unsupported flags (0x%x) in function %s",
				 a->flags & ~LIST_DOMAINS_FLAGS_ALL, "virConnectListAllDomains");
		return -1;
	}
	r->domains.domains_len = 0;
	r->domains.domains_val = NULL;
	r->ret = 0;
	return 0;
}

int drv_connect_num_of_domains(struct rpc_conn *conn, void *args, void *ret)
{
	remote_connect_num_of_domains_ret *r = ret;

	r->num = 0;
	return 0;
}

int drv_connect_list_domains(struct rpc_conn *conn, void *args, void *ret)
{
	remote_connect_list_domains_args *a = args;

	/* CLIENT: maxids bounds the reply; it must fit the protocol. */
	if (a->maxids < 0 || a->maxids > REMOTE_DOMAIN_LIST_MAX) {
		drv_error_report_full(VIR_FROM_RPC, VIR_ERR_RPC,
				      "Too many domains '%d' for limit '%d'", a->maxids,
				      REMOTE_DOMAIN_LIST_MAX);
		return -1;
	}
	return 0;
}

int drv_connect_num_of_defined_domains(struct rpc_conn *conn, void *args, void *ret)
{
	remote_connect_num_of_defined_domains_ret *r = ret;

	r->num = 0;
	return 0;
}

int drv_connect_list_defined_domains(struct rpc_conn *conn, void *args, void *ret)
{
	remote_connect_list_defined_domains_args *a = args;

	/* CLIENT: as for maxids above. */
	if (a->maxnames < 0 || a->maxnames > REMOTE_DOMAIN_LIST_MAX) {
		drv_error_report_full(VIR_FROM_RPC, VIR_ERR_RPC,
				      "Too many domain names '%d' for limit '%d'", a->maxnames,
				      REMOTE_DOMAIN_LIST_MAX);
		return -1;
	}
	return 0;
}
