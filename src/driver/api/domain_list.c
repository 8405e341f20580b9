/* Listing and counting domains: listAllDomains with its filters, and the
 * legacy calls (ids of running domains, names of inactive ones) that old
 * clients and the fallback paths use. */
#include <stdlib.h>
#include <string.h>

#include <libvirt/libvirt.h>

#include "domain_api.h"
#include "error.h"
#include "handlers.h"

#define VIR_FROM_THIS VIR_FROM_DOMAIN

/* Every VIR_CONNECT_LIST_DOMAINS_* filter bit libvirt 9.0 defines. */
#define LIST_DOMAINS_FLAGS_ALL 0xffffu

int drv_connect_list_all_domains(struct rpc_conn *conn, void *args, void *ret)
{
	remote_connect_list_all_domains_args *a = args;
	remote_connect_list_all_domains_ret *r = ret;
	g_autoptr(GPtrArray) all = NULL;
	unsigned n = 0;

	/* CLIENT: unknown filter bits are refused, never ignored (virsh
	 * then retries with the basic ones). */
	if (a->flags & ~LIST_DOMAINS_FLAGS_ALL) {
		drv_error_report(VIR_ERR_INVALID_ARG, "unsupported flags (0x%x) in function %s",
				 a->flags & ~LIST_DOMAINS_FLAGS_ALL, "virConnectListAllDomains");
		return -1;
	}
	all = domain_list();
	/* CLIENT: more than the protocol's maximum would be refused by the
	 * client; the index never holds that many in practice, but the
	 * reply must stay within bounds regardless. */
	if (all->len > REMOTE_DOMAIN_LIST_MAX) {
		drv_error_report_full(VIR_FROM_RPC, VIR_ERR_RPC, "Too many domains '%u' for limit '%d'",
				      all->len, REMOTE_DOMAIN_LIST_MAX);
		return -1;
	}
	if (a->need_results)
		r->domains.domains_val = calloc(MAX(all->len, 1), sizeof(remote_nonnull_domain));
	for (guint i = 0; i < all->len; i++) {
		struct domain_obj *obj = all->pdata[i];
		bool ok;

		g_mutex_lock(&obj->lock);
		ok = list_domain_matches(obj, a->flags);
		g_mutex_unlock(&obj->lock);
		if (!ok)
			continue;
		if (a->need_results)
			wire_domain_make(obj, &r->domains.domains_val[n]);
		n++;
	}
	r->domains.domains_len = a->need_results ? n : 0;
	r->ret = n;
	return 0;
}

/* Counts (and, with OUT, collects) domains active or not. */
static int collect(bool active, int max, remote_nonnull_domain *out)
{
	g_autoptr(GPtrArray) all = domain_list();
	int n = 0;

	for (guint i = 0; i < all->len && (!out || n < max); i++) {
		struct domain_obj *obj = all->pdata[i];

		if ((obj->id >= 0) != active)
			continue;
		if (out)
			wire_domain_make(obj, &out[n]);
		n++;
	}
	return n;
}

int drv_connect_num_of_domains(struct rpc_conn *conn, void *args, void *ret)
{
	remote_connect_num_of_domains_ret *r = ret;

	r->num = collect(true, 0, NULL);
	return 0;
}

int drv_connect_list_domains(struct rpc_conn *conn, void *args, void *ret)
{
	remote_connect_list_domains_args *a = args;
	remote_connect_list_domains_ret *r = ret;
	g_autofree remote_nonnull_domain *doms = NULL;
	int n;

	/* CLIENT: maxids bounds the reply; it must fit the protocol. */
	if (a->maxids < 0 || a->maxids > REMOTE_DOMAIN_LIST_MAX) {
		drv_error_report_full(VIR_FROM_RPC, VIR_ERR_RPC,
				      "Too many domains '%d' for limit '%d'", a->maxids,
				      REMOTE_DOMAIN_LIST_MAX);
		return -1;
	}
	doms = g_new0(remote_nonnull_domain, MAX(a->maxids, 1));
	n = collect(true, a->maxids, doms);
	r->ids.ids_val = calloc(MAX(n, 1), sizeof(int));
	for (int i = 0; i < n; i++) {
		r->ids.ids_val[i] = doms[i].id;
		free(doms[i].name);
	}
	r->ids.ids_len = n;
	return 0;
}

int drv_connect_num_of_defined_domains(struct rpc_conn *conn, void *args, void *ret)
{
	remote_connect_num_of_defined_domains_ret *r = ret;

	r->num = collect(false, 0, NULL);
	return 0;
}

int drv_connect_list_defined_domains(struct rpc_conn *conn, void *args, void *ret)
{
	remote_connect_list_defined_domains_args *a = args;
	remote_connect_list_defined_domains_ret *r = ret;
	g_autofree remote_nonnull_domain *doms = NULL;
	int n;

	/* CLIENT: as for maxids above. */
	if (a->maxnames < 0 || a->maxnames > REMOTE_DOMAIN_LIST_MAX) {
		drv_error_report_full(VIR_FROM_RPC, VIR_ERR_RPC,
				      "Too many domain names '%d' for limit '%d'", a->maxnames,
				      REMOTE_DOMAIN_LIST_MAX);
		return -1;
	}
	doms = g_new0(remote_nonnull_domain, MAX(a->maxnames, 1));
	n = collect(false, a->maxnames, doms);
	r->names.names_val = calloc(MAX(n, 1), sizeof(char *));
	for (int i = 0; i < n; i++)
		r->names.names_val[i] = doms[i].name;	/* handed over */
	r->names.names_len = n;
	return 0;
}
