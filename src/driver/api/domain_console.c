/* virDomainOpenConsole: `virsh console` attaches to the guest's serial
 * console or its virtio console, a pty kvmm allocated, through an RPC stream
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

/* The device the client names, as libvirt names them: serialN, consoleN
 * (console0 is COM1 when it is the serial console; a virtio console
 * follows it); no name: the first console.  The pty to attach to, or NULL
 * after reporting. */
static const char *device_pty(const struct domain_def *def, const char *name)
{
	const struct domain_chr *c = NULL;
	unsigned i;
	char tail;

	if (!name)
		c = def->nconsoles ? &def->consoles[0] : def->nserials ? &def->serials[0] : NULL;
	else if (sscanf(name, "serial%u%c", &i, &tail) == 1 && i < def->nserials)
		c = &def->serials[i];
	else if (sscanf(name, "console%u%c", &i, &tail) == 1 && i < def->nconsoles)
		c = &def->consoles[i];
	if (!c) {
		if (name)
			drv_error_report(VIR_ERR_INTERNAL_ERROR, "cannot find character device %s", name);
		else
			drv_error_report(VIR_ERR_INTERNAL_ERROR, "cannot find default console device");
		return NULL;
	}
	if (c->type != CHR_PTY || !c->path) {
		/* Named by its alias, as libvirt: the serial console is serial0. */
		g_autofree char *alias =
			name ? g_strdup(name) :
			c >= def->serials && c < def->serials + def->nserials ?
				g_strdup_printf("serial%td", c - def->serials) :
			c->target == CONSOLE_SERIAL ? g_strdup("serial0") :
				g_strdup_printf("console%td", c - def->consoles);

		drv_error_report(VIR_ERR_OPERATION_FAILED, "character device %s is not using a PTY", alias);
		return NULL;
	}
	return c->path;
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
	obj = wire_domain_get(&a->dom);
	if (!obj)
		return -1;
	g_mutex_lock(&obj->lock);
	if (obj->id < 0) {
		drv_error_report(VIR_ERR_OPERATION_INVALID, "domain is not running");
		goto out;
	}
	if (!(path = g_strdup(device_pty(obj->def, name))))
		goto out;
	if (obj->console && !(a->flags & VIR_DOMAIN_CONSOLE_FORCE)) {
		drv_error_report(VIR_ERR_OPERATION_FAILED, "Active console session exists for this domain");
		goto out;
	}
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
