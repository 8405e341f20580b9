/* Connection-level procedures: authentication list, open/close, what the
 * client asks about the daemon itself. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libvirt/libvirt.h>

#include "domain_api.h"
#include "driver.h"
#include "error.h"
#include "handlers.h"
#include "host.h"
#include "log.h"
#include "remote_xdr.h"

#define VIR_FROM_THIS VIR_FROM_NONE

/* virConnectSupportsFeature numbers (VIR_DRV_FEATURE_* in libvirt's
 * internal headers; see libvirt-rpc-facts.md §4.1). */
enum {
	FEATURE_MIGRATION_P2P = 4,
	FEATURE_MIGRATION_V3 = 6,
	FEATURE_MIGRATE_CHANGE_PROTECTION = 7,
	FEATURE_MIGRATION_OFFLINE = 12,
	FEATURE_MIGRATION_PARAMS = 13,
	FEATURE_PROGRAM_KEEPALIVE = 10,
	FEATURE_REMOTE_EVENT_CALLBACK = 14,
	FEATURE_REMOTE_CLOSE_CALLBACK = 15,
};

/* CONNECT_OPEN flag bits that mean something to the server; the client
 * also sends internal bits (0x2, 0x4) that must be ignored. */
#define OPEN_FLAG_READONLY 0x1

struct drv_state drv_state = { .privileged = true, .uri = "kvmm:///system", .root = "" };

int drv_auth_list(struct rpc_conn *conn, void *args, void *ret)
{
	remote_auth_list_ret *r = ret;

	/* UNIX sockets only: the socket's permissions decide who gets in,
	 * and SO_PEERCRED says who did, so no further authentication. */
	r->types.types_val = malloc(sizeof(*r->types.types_val));
	if (!r->types.types_val) {
		drv_error_report(VIR_ERR_NO_MEMORY, "out of memory");
		return -1;
	}
	r->types.types_val[0] = REMOTE_AUTH_NONE;
	r->types.types_len = 1;
	return 0;
}

/* Whether name (the client's URI, query and all) names this driver; on
 * refusal, reports the error a libvirt daemon would. */
static int check_uri(const char *name)
{
	const char *path;
	size_t pathlen;

	/* CLIENT: name is any string up to REMOTE_STRING_MAX; we only
	 * compare prefixes and lengths within it. */
	if (strncmp(name, "kvmm://", 7) != 0) {
		drv_error_report(VIR_ERR_NO_CONNECT, "%s", name);
		return -1;
	}
	/* The client strips the host and transport; a host here means the
	 * caller bypassed it, and we are not a proxy. */
	path = name + 7;
	if (*path != '/') {
		drv_error_report(VIR_ERR_INVALID_ARG,
				 "URI '%s' names a remote host; virtkvmmd serves this host only, use kvmm:///%s",
				 name, drv_state.privileged ? "system" : "session");
		return -1;
	}
	pathlen = strcspn(path, "?#");
	/* As libvirt's own drivers: a system daemon also serves root's
	 * kvmm:///session (the client sends root there), a session daemon
	 * only ///session. */
	if ((pathlen == 8 && !strncmp(path, "/session", 8)) ||
	    (drv_state.privileged && pathlen == 7 && !strncmp(path, "/system", 7)))
		return 0;
	drv_error_report(VIR_ERR_INTERNAL_ERROR, "unexpected kvmm URI path '%.*s', try kvmm:///%s",
			 (int)MIN(pathlen, 256), path, drv_state.privileged ? "system" : "session");
	return -1;
}

int drv_connect_open(struct rpc_conn *conn, void *args, void *ret)
{
	remote_connect_open_args *a = args;

	if (conn->open) {
		drv_error_report(VIR_ERR_INTERNAL_ERROR, "connection already open");
		return -1;
	}
	/* No name: the client probes for a default; that is us. */
	if (a->name && **a->name && check_uri(*a->name) < 0)
		return -1;
	if (a->flags & OPEN_FLAG_READONLY)
		conn->readonly = true;
	conn->open = true;
	pr_info("client %u (pid %ld, uid %ld): opened %s%s", conn->id, (long)conn->pid,
		(long)conn->uid, a->name && **a->name ? *a->name : drv_state.uri,
		conn->readonly ? " read-only" : "");
	return 0;
}

int drv_connect_close(struct rpc_conn *conn, void *args, void *ret)
{
	/* The reply goes out first; the server drops the client after. */
	/* Read by other clients' workers deciding whom events go to. */
	__atomic_store_n(&conn->closing, true, __ATOMIC_RELAXED);
	return 0;
}

int drv_connect_supports_feature(struct rpc_conn *conn, void *args, void *ret)
{
	remote_connect_supports_feature_args *a = args;
	remote_connect_supports_feature_ret *r = ret;

	switch (a->feature) {
	case FEATURE_PROGRAM_KEEPALIVE:
		/* Asking is also libvirt's cue to start pinging the client. */
		conn->keepalive.enabled = true;
		r->supported = 1;
		break;
	case FEATURE_REMOTE_CLOSE_CALLBACK:
		/* The client then registers with CONNECT_REGISTER_CLOSE_CALLBACK;
		 * its callback fires when the socket closes, which needs
		 * nothing more from us. */
		r->supported = 1;
		break;
	case FEATURE_REMOTE_EVENT_CALLBACK:
		/* The client then registers with the callback RPCs (316/317)
		 * and expects messages headed by its callbackID (events.c). */
		r->supported = 1;
		break;
	case FEATURE_MIGRATION_V3:
	case FEATURE_MIGRATION_PARAMS:
	case FEATURE_MIGRATION_OFFLINE:
		/* Protocol v3 with typed parameters (domain_migrate.c). */
		r->supported = 1;
		break;
	case FEATURE_MIGRATE_CHANGE_PROTECTION:
		/* Begin marks the domain as migrating until Confirm, and the
		 * client then calls Confirm(cancelled) after a failed Prepare
		 * too, which lifts the mark. */
		r->supported = 1;
		break;
	case FEATURE_MIGRATION_P2P:
		r->supported = migrate_p2p_supported();
		break;
	default:
		/* FD passing, typed-parameter strings and
		 * the rest: not yet.  Unknown numbers are "no", as in
		 * libvirt's drivers. */
		r->supported = 0;
		break;
	}
	return 0;
}

int drv_connect_get_type(struct rpc_conn *conn, void *args, void *ret)
{
	remote_connect_get_type_ret *r = ret;

	r->type = strdup("KVMM");
	if (!r->type) {
		drv_error_report(VIR_ERR_NO_MEMORY, "out of memory");
		return -1;
	}
	return 0;
}

/* "1.2.3" -> 1002003, libvirt's version encoding. */
static unsigned long long version_number(const char *v)
{
	unsigned long long part[3] = { 0, 0, 0 };

	for (int i = 0; i < 3 && *v; i++) {
		part[i] = strtoull(v, (char **)&v, 10);
		if (*v == '.')
			v++;
	}
	return part[0] * 1000000 + part[1] * 1000 + part[2];
}

int drv_connect_get_version(struct rpc_conn *conn, void *args, void *ret)
{
	remote_connect_get_version_ret *r = ret;

	/* kvmm's own version, unless the operator set hypervisor_version
	 * (the QEMU level nova requires, docs/virtkvmmd.md). */
	r->hv_ver = drv_state.hypervisor_version ? drv_state.hypervisor_version
						 : version_number(PACKAGE_VERSION);
	return 0;
}

int drv_connect_get_lib_version(struct rpc_conn *conn, void *args, void *ret)
{
	remote_connect_get_lib_version_ret *r = ret;

	/* Clients read the daemon's library version as the level of the
	 * protocol it speaks; we speak libvirt's as of the headers we were
	 * built against. */
	r->lib_ver = LIBVIR_VERSION_NUMBER;
	return 0;
}

int drv_connect_is_secure(struct rpc_conn *conn, void *args, void *ret)
{
	remote_connect_is_secure_ret *r = ret;

	/* The daemon's side of the connection: kvmm is driven through local
	 * sockets only, nothing crosses a network unprotected.  The client
	 * ANDs this with its own transport's (a UNIX socket or TLS is
	 * secure; IsEncrypted asks the same and ANDs with TLS), as libvirt's
	 * hypervisor drivers answer 1. */
	r->secure = 1;
	return 0;
}

int drv_connect_get_hostname(struct rpc_conn *conn, void *args, void *ret)
{
	remote_connect_get_hostname_ret *r = ret;
	char name[256];

	if (gethostname(name, sizeof(name)) < 0) {
		drv_error_report(VIR_ERR_SYSTEM_ERROR, "cannot get the host name: %s", g_strerror(errno));
		return -1;
	}
	name[sizeof(name) - 1] = '\0';
	r->hostname = strdup(name);
	if (!r->hostname) {
		drv_error_report(VIR_ERR_NO_MEMORY, "out of memory");
		return -1;
	}
	return 0;
}

int drv_connect_get_uri(struct rpc_conn *conn, void *args, void *ret)
{
	remote_connect_get_uri_ret *r = ret;

	r->uri = strdup(drv_state.uri);
	if (!r->uri) {
		drv_error_report(VIR_ERR_NO_MEMORY, "out of memory");
		return -1;
	}
	return 0;
}

/* The close callback lives in the client library: it runs when the
 * connection drops, whoever drops it.  The server only records that one
 * is registered (for the log, and so a double registration is refused
 * as libvirtd does). */
int drv_connect_register_close_callback(struct rpc_conn *conn, void *args, void *ret)
{
	if (conn->close_callback) {
		drv_error_report(VIR_ERR_OPERATION_INVALID, "A close callback is already registered");
		return -1;
	}
	conn->close_callback = true;
	return 0;
}

int drv_connect_unregister_close_callback(struct rpc_conn *conn, void *args, void *ret)
{
	if (!conn->close_callback) {
		drv_error_report(VIR_ERR_OPERATION_INVALID, "A close callback is not registered");
		return -1;
	}
	conn->close_callback = false;
	return 0;
}
