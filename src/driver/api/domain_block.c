/* Handlers about a running domain's disks: blockresize, and the disks
 * whose requests an I/O error holds (domblkerror).  The rules and errors
 * are those of libvirt's QEMU driver; kvmm does the resize (its
 * block-resize command) and tells the guest, and reports what it holds
 * (query-block-stats io_status, as QEMU's io-status). */
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>
#include <libvirt/libvirt.h>

#include "domain_api.h"
#include "error.h"
#include "handlers.h"
#include "log.h"
#include "kvmm/monitor.h"
#include "kvmm/process.h"

#define VIR_FROM_THIS VIR_FROM_DOMAIN

int drv_domain_block_resize(struct rpc_conn *conn, void *args, void *ret)
{
	remote_domain_block_resize_args *a = args;
	unsigned long long size = a->size;
	g_autofree char *api = NULL, *target = NULL;
	struct domain_obj *obj;
	bool readonly = false;
	int i, rc = -1;

	if (api_check_flags(a->flags, VIR_DOMAIN_BLOCK_RESIZE_BYTES, "virDomainBlockResize") < 0)
		return -1;
	/* CLIENT: KiB unless BYTES; the product must fit. */
	if (!(a->flags & VIR_DOMAIN_BLOCK_RESIZE_BYTES)) {
		if (size > ULLONG_MAX / 1024) {
			drv_error_report(VIR_ERR_OVERFLOW, "size must be less than %llu",
					 ULLONG_MAX / 1024);
			return -1;
		}
		size *= 1024;
	}
	/* CLIENT: no file is larger than off_t holds. */
	if (size > INT64_MAX) {
		drv_error_report(VIR_ERR_INVALID_ARG, "size %llu is too large for an image file", size);
		return -1;
	}
	if (!(obj = wire_domain_get(&a->dom)))
		return -1;
	if (domain_job_begin(obj, "virDomainBlockResize") < 0)
		goto out;
	if (!(api = process_api_path(obj)))
		goto end;
	g_mutex_lock(&obj->lock);
	i = api_disk_index(obj->def, a->disk);
	if (i >= 0) {
		target = g_strdup(obj->def->disks[i].target);
		readonly = obj->def->disks[i].readonly;
	}
	g_mutex_unlock(&obj->lock);
	if (i < 0) {
		drv_error_report(VIR_ERR_INVALID_ARG, "disk '%s' was not found in the domain config",
				 a->disk);
		goto end;
	}
	if (readonly) {
		drv_error_report(VIR_ERR_OPERATION_UNSUPPORTED, "can't resize empty or readonly disk '%s'",
				 target);
		goto end;
	}
	/* kvmm numbers its disks in --disk order, which is the XML's. */
	rc = monitor_block_resize(api, (unsigned)i, size);
	if (rc == 0)
		pr_info("domain '%s': disk %s resized to %llu bytes", obj->def->name, target, size);
end:
	domain_job_end(obj);
out:
	domain_obj_unref(obj);
	return rc;
}

int drv_domain_get_disk_errors(struct rpc_conn *conn, void *args, void *ret)
{
	remote_domain_get_disk_errors_args *a = args;
	remote_domain_get_disk_errors_ret *r = ret;
	g_autofree struct kvmm_blk_stats *st = NULL;
	g_autofree char *api = NULL;
	g_auto(GStrv) targets = NULL;
	struct domain_obj *obj;
	size_t n = 0, ndisks;
	int rc = -1;

	if (api_check_flags(a->flags, 0, "virDomainGetDiskErrors") < 0)
		return -1;
	/* CLIENT: the reply holds at most the protocol's limit. */
	if (a->maxerrors > REMOTE_DOMAIN_DISK_ERRORS_MAX) {
		drv_error_report(VIR_ERR_RPC, "maxerrors too large");
		return -1;
	}
	if (!(obj = wire_domain_get(&a->dom)))
		return -1;
	if (!(api = process_api_path(obj)))
		goto out;
	g_mutex_lock(&obj->lock);
	ndisks = obj->def->ndisks;
	targets = g_new0(char *, ndisks + 1);
	for (size_t i = 0; i < ndisks; i++)
		targets[i] = g_strdup(obj->def->disks[i].target);
	g_mutex_unlock(&obj->lock);
	/* No array: how many entries an answer may need, as libvirt's. */
	if (!a->maxerrors) {
		r->nerrors = (int)ndisks;
		rc = 0;
		goto out;
	}
	if (monitor_block_stats(api, &st, &n) < 0)
		goto out;
	r->errors.errors_val = calloc(MIN(a->maxerrors, ndisks) + 1, sizeof(*r->errors.errors_val));
	for (size_t i = 0; i < ndisks && i < n && r->errors.errors_len < a->maxerrors; i++) {
		remote_domain_disk_error *e = &r->errors.errors_val[r->errors.errors_len];

		if (st[i].io_status == KVMM_IO_OK)
			continue;
		e->disk = strdup(targets[i]);
		e->error = st[i].io_status == KVMM_IO_NOSPACE ? VIR_DOMAIN_DISK_ERROR_NO_SPACE :
							      VIR_DOMAIN_DISK_ERROR_UNSPEC;
		r->errors.errors_len++;
	}
	r->nerrors = (int)r->errors.errors_len;
	rc = 0;
out:
	domain_obj_unref(obj);
	return rc;
}
