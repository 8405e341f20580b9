/* virDomainOpenConsole: `virsh console` attaches to the guest's serial
 * console, the pty kvmm allocated for COM1, through an RPC stream
 * (rpc/stream.h).  One client at a time per domain; FORCE takes the
 * console over from the current one, whose stream then ends. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include <libvirt/libvirt.h>

#include "domain_api.h"
#include "error.h"
#include "handlers.h"
#include "log.h"
#include "rpc/stream.h"
#include "remote_xdr.h"

#define VIR_FROM_THIS VIR_FROM_DOMAIN

static void console_released(struct rpc_stream *s, void *opaque)
{
	struct domain_obj *obj = opaque;

	g_mutex_lock(&obj->lock);
	if (obj->console == s)
		obj->console = NULL;
	g_mutex_unlock(&obj->lock);
	domain_obj_unref(obj);
}

/* The device the client names, as libvirt names them: serial0 and
 * console0 are both COM1 here.  NULL name: the first console. */
static int check_device(const struct domain_def *def, const char *name)
{
	if (name && strcmp(name, "serial0") && strcmp(name, "console0")) {
		drv_error_report(VIR_ERR_INTERNAL_ERROR, "cannot find character device %s", name);
		return -1;
	}
	if (!def->nserials) {
		drv_error_report(VIR_ERR_INTERNAL_ERROR, "cannot find default console device");
		return -1;
	}
	if (def->serials[0].type != CHR_PTY || !def->serials[0].path) {
		drv_error_report(VIR_ERR_OPERATION_FAILED, "character device %s is not using a PTY",
				 name ? name : "serial0");
		return -1;
	}
	return 0;
}

int drv_domain_open_console(struct rpc_conn *conn, void *args, void *ret)
{
	remote_domain_open_console_args *a = args;
	const char *name = a->dev_name ? *a->dev_name : NULL;
	struct domain_obj *obj;
	g_autofree char *path = NULL;
	int fd, rc = -1;

	if (api_check_flags(a->flags, VIR_DOMAIN_CONSOLE_FORCE | VIR_DOMAIN_CONSOLE_SAFE,
			    "virDomainOpenConsole") < 0)
		return -1;
	obj = api_domain_get(&a->dom);
	if (!obj)
		return -1;
	g_mutex_lock(&obj->lock);
	if (obj->id < 0) {
		drv_error_report(VIR_ERR_OPERATION_INVALID, "domain is not running");
		goto out;
	}
	if (check_device(obj->def, name) < 0)
		goto out;
	if (obj->console && !(a->flags & VIR_DOMAIN_CONSOLE_FORCE)) {
		drv_error_report(VIR_ERR_OPERATION_FAILED, "Active console session exists for this domain");
		goto out;
	}
	path = g_strdup(obj->def->serials[0].path);
	fd = open(path, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0) {
		drv_error_report(VIR_ERR_OPERATION_FAILED, "cannot open console %s: %s", path,
				 g_strerror(errno));
		goto out;
	}
	/* The current client's stream ends (end of data); it stays valid
	 * while we hold the lock its release callback needs. */
	if (obj->console)
		rpc_stream_kick(obj->console);
	obj->console = rpc_stream_open(conn, fd, console_released, domain_obj_ref(obj));
	pr_debug("client %u: console of '%s' on %s", conn->id, obj->def->name, path);
	rc = 0;
out:
	g_mutex_unlock(&obj->lock);
	domain_obj_unref(obj);
	return rc;
}
