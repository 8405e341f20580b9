/* Domain event callbacks and event messages; see events.h. */
#include <stdlib.h>
#include <string.h>

#include <libvirt/libvirt.h>

#include "error.h"
#include "rpc/domain_wire.h"
#include "events.h"
#include "api/handlers.h"
#include "log.h"
#include "message.h"
#include "remote_xdr.h"
#include "remote_events_xdr.h"

#define VIR_FROM_THIS VIR_FROM_NONE

/* VIR_DOMAIN_EVENT_ID_LAST of libvirt 9.0 (facts §6): virsh event --all
 * registers every ID below it, so all are accepted, even those kvmm
 * never raises. */
#define EVENT_ID_COUNT 27
/* CLIENT: a client library registers once per event ID (it counts its
 * own callbacks); a bound keeps a raw client from growing the list
 * without end. */
#define CALLBACKS_PER_CONN_MAX 256
/* A client that registered for events but does not read them: past this
 * many unread bytes its events are dropped rather than buffered. */
#define EVENT_BACKLOG_MAX (8 * 1024 * 1024)

struct event_cb {
	struct rpc_conn *conn;
	int id;			/* callbackID (legacy form: unused) */
	int event_id;		/* VIR_DOMAIN_EVENT_ID_* */
	bool legacy;		/* registered with 167: messages without callbackID */
	bool filtered;		/* only the domain with this uuid */
	unsigned char uuid[16];
	bool warned;		/* backlog warning logged once */
};

/* Handlers run on worker threads: one lock over the callback list, held
 * while an event is queued on every client, so each client sees the
 * events of one domain in the order they happened. */
static GMutex lock;
static GPtrArray *callbacks;	/* struct event_cb *, in registration order */
static int next_callback_id;

static unsigned conn_ncallbacks(const struct rpc_conn *conn)
{
	unsigned n = 0;

	for (guint i = 0; callbacks && i < callbacks->len; i++)
		n += ((struct event_cb *)g_ptr_array_index(callbacks, i))->conn == conn;
	return n;
}

static int check_event_id(int event_id)
{
	if (event_id < 0 || event_id >= EVENT_ID_COUNT) {
		drv_error_report(VIR_ERR_INVALID_ARG, "unsupported event ID %d", event_id);
		return -1;
	}
	return 0;
}

static struct event_cb *add_callback(struct rpc_conn *conn, int event_id, bool legacy)
{
	struct event_cb *cb;

	if (conn->gone) {
		/* Its call outlived the client; nothing would ever remove it. */
		drv_error_report(VIR_ERR_OPERATION_FAILED, "the connection is closed");
		return NULL;
	}
	if (conn_ncallbacks(conn) >= CALLBACKS_PER_CONN_MAX) {
		drv_error_report(VIR_ERR_OPERATION_FAILED,
				 "too many event callbacks on this connection (at most %d)",
				 CALLBACKS_PER_CONN_MAX);
		return NULL;
	}
	if (!callbacks)
		callbacks = g_ptr_array_new_with_free_func(g_free);
	cb = g_new0(struct event_cb, 1);
	cb->conn = conn;
	cb->id = legacy ? -1 : ++next_callback_id;
	cb->event_id = event_id;
	cb->legacy = legacy;
	g_ptr_array_add(callbacks, cb);
	return cb;
}

/* The callback of CONN matching: the callbackID ID (callback form), or
 * the legacy registration of EVENT_ID.  Its index, or -1. */
static int find_callback(const struct rpc_conn *conn, bool legacy, int id, int event_id)
{
	for (guint i = 0; callbacks && i < callbacks->len; i++) {
		const struct event_cb *cb = g_ptr_array_index(callbacks, i);

		if (cb->conn == conn && cb->legacy == legacy &&
		    (legacy ? cb->event_id == event_id : cb->id == id))
			return (int)i;
	}
	return -1;
}

static int cb_register_any(struct rpc_conn *conn, void *args, void *ret)
{
	remote_connect_domain_event_callback_register_any_args *a = args;
	remote_connect_domain_event_callback_register_any_ret *r = ret;
	struct event_cb *cb;

	if (check_event_id(a->eventID) < 0)
		return -1;
	cb = add_callback(conn, a->eventID, false);
	if (!cb)
		return -1;
	/* CLIENT: the filter is matched by its 16-byte uuid only, as
	 * libvirtd does; the domain need not exist (yet). */
	if (a->dom) {
		cb->filtered = true;
		memcpy(cb->uuid, a->dom->uuid, 16);
	}
	r->callbackID = cb->id;
	pr_debug("client %u: event callback %d for event %d%s%s", conn->id, cb->id, cb->event_id,
		 a->dom ? " of domain " : "", a->dom ? a->dom->name : "");
	return 0;
}

static int cb_deregister_any(struct rpc_conn *conn, void *args, void *ret)
{
	remote_connect_domain_event_callback_deregister_any_args *a = args;
	int i = find_callback(conn, false, a->callbackID, 0);

	/* CLIENT: only a callback this connection registered. */
	if (i < 0) {
		drv_error_report(VIR_ERR_INVALID_ARG, "domain event callback %d not registered",
				 a->callbackID);
		return -1;
	}
	g_ptr_array_remove_index(callbacks, i);
	return 0;
}

/* The legacy form: one registration per event ID and connection, no
 * filter, messages without a callbackID. */
static int legacy_register_any(struct rpc_conn *conn, void *args, void *ret)
{
	remote_connect_domain_event_register_any_args *a = args;

	if (check_event_id(a->eventID) < 0)
		return -1;
	if (find_callback(conn, true, 0, a->eventID) >= 0) {
		drv_error_report(VIR_ERR_OPERATION_INVALID, "domain event %d already registered",
				 a->eventID);
		return -1;
	}
	return add_callback(conn, a->eventID, true) ? 0 : -1;
}

static int legacy_deregister_any(struct rpc_conn *conn, void *args, void *ret)
{
	remote_connect_domain_event_deregister_any_args *a = args;
	int i;

	if (check_event_id(a->eventID) < 0)
		return -1;
	i = find_callback(conn, true, 0, a->eventID);
	if (i < 0) {
		drv_error_report(VIR_ERR_OPERATION_INVALID, "domain event %d not registered",
				 a->eventID);
		return -1;
	}
	g_ptr_array_remove_index(callbacks, i);
	return 0;
}

/* The handlers in the dispatch table: each under the lock. */
#define LOCKED(api, impl)							\
	int api(struct rpc_conn *conn, void *args, void *ret)			\
	{									\
		int rc;								\
										\
		g_mutex_lock(&lock);						\
		rc = impl(conn, args, ret);					\
		g_mutex_unlock(&lock);						\
		return rc;							\
	}
LOCKED(drv_connect_domain_event_callback_register_any, cb_register_any)
LOCKED(drv_connect_domain_event_callback_deregister_any, cb_deregister_any)
LOCKED(drv_connect_domain_event_register_any, legacy_register_any)
LOCKED(drv_connect_domain_event_deregister_any, legacy_deregister_any)
#undef LOCKED

void events_conn_gone(struct rpc_conn *conn)
{
	g_mutex_lock(&lock);
	conn->gone = true;
	for (guint i = 0; callbacks && i < callbacks->len;) {
		if (((struct event_cb *)g_ptr_array_index(callbacks, i))->conn == conn)
			g_ptr_array_remove_index(callbacks, i);
		else
			i++;
	}
	g_mutex_unlock(&lock);
}

/* Whether CB wants event EVENT_ID of the domain UUID now. */
static bool wants(struct event_cb *cb, int event_id, const unsigned char uuid[16])
{
	if (cb->event_id != event_id || (cb->filtered && memcmp(cb->uuid, uuid, 16)))
		return false;
	/* A client past CONNECT_CLOSE reads nothing more. */
	if (__atomic_load_n(&cb->conn->closing, __ATOMIC_RELAXED))
		return false;
	if (cb->conn->backlog && cb->conn->backlog(cb->conn) > EVENT_BACKLOG_MAX) {
		if (!cb->warned)
			pr_warn("client %u (pid %ld) does not read its events: dropping them",
				cb->conn->id, (long)cb->conn->pid);
		cb->warned = true;
		return false;
	}
	cb->warned = false;
	return true;
}

/* Queues the event message PROC with BODY to CB's client: type MESSAGE,
 * serial 0, status OK, as the client expects of server-initiated
 * packets (facts §2, §6). */
static void send_event(struct event_cb *cb, int proc, xdrproc_t filter, const void *body)
{
	struct rpc_header hdr = {
		.prog = REMOTE_PROGRAM, .vers = REMOTE_PROTOCOL_VERSION, .proc = proc,
		.type = RPC_MESSAGE, .serial = 0, .status = RPC_OK,
	};
	GBytes *pkt = rpc_msg_encode(&hdr, filter, body);

	if (!pkt) {
		/* Not the caller's error: its operation succeeded. */
		pr_warn("cannot encode event %d for client %u: %s", proc, cb->conn->id,
			drv_error_last() ? drv_error_last()->message : "?");
		drv_error_reset();
		return;
	}
	cb->conn->send(cb->conn, pkt);
}

void events_lifecycle(const char *name, const unsigned char uuid[16], int id, int event,
		      int detail)
{
	remote_domain_event_callback_lifecycle_msg m = {
		.msg = { .dom = { .name = (char *)name, .id = id }, .event = event, .detail = detail },
	};

	memcpy(m.msg.dom.uuid, uuid, 16);
	g_mutex_lock(&lock);
	for (guint i = 0; callbacks && i < callbacks->len; i++) {
		struct event_cb *cb = g_ptr_array_index(callbacks, i);

		if (!wants(cb, VIR_DOMAIN_EVENT_ID_LIFECYCLE, uuid))
			continue;
		if (cb->legacy) {
			send_event(cb, REMOTE_PROC_DOMAIN_EVENT_LIFECYCLE,
				   (xdrproc_t)xdr_remote_domain_event_lifecycle_msg, &m.msg);
		} else {
			m.callbackID = cb->id;
			send_event(cb, REMOTE_PROC_DOMAIN_EVENT_CALLBACK_LIFECYCLE,
				   (xdrproc_t)xdr_remote_domain_event_callback_lifecycle_msg, &m);
		}
	}
	g_mutex_unlock(&lock);
}

void events_lifecycle_obj(struct domain_obj *obj, int event, int detail)
{
	remote_nonnull_domain d;

	wire_domain_make(obj, &d);
	events_lifecycle(d.name, (const unsigned char *)d.uuid, d.id, event, detail);
	free(d.name);
}

void events_metadata_change(struct domain_obj *obj, int type, const char *nsuri)
{
	remote_domain_event_callback_metadata_change_msg m = { .type = type };
	char *uri = (char *)nsuri;

	wire_domain_make(obj, &m.dom);
	m.nsuri = nsuri ? &uri : NULL;
	g_mutex_lock(&lock);
	for (guint i = 0; callbacks && i < callbacks->len; i++) {
		struct event_cb *cb = g_ptr_array_index(callbacks, i);

		/* No legacy form exists for this event (facts §6). */
		if (cb->legacy || !wants(cb, VIR_DOMAIN_EVENT_ID_METADATA_CHANGE,
					 (const unsigned char *)m.dom.uuid))
			continue;
		m.callbackID = cb->id;
		send_event(cb, REMOTE_PROC_DOMAIN_EVENT_CALLBACK_METADATA_CHANGE,
			   (xdrproc_t)xdr_remote_domain_event_callback_metadata_change_msg, &m);
	}
	g_mutex_unlock(&lock);
	free(m.dom.name);
}

void events_migration_iteration(struct domain_obj *obj, int iteration)
{
	remote_domain_event_callback_migration_iteration_msg m = { .iteration = iteration };

	wire_domain_make(obj, &m.dom);
	g_mutex_lock(&lock);
	for (guint i = 0; callbacks && i < callbacks->len; i++) {
		struct event_cb *cb = g_ptr_array_index(callbacks, i);

		/* No legacy form exists for this event either. */
		if (cb->legacy || !wants(cb, VIR_DOMAIN_EVENT_ID_MIGRATION_ITERATION,
					 (const unsigned char *)m.dom.uuid))
			continue;
		m.callbackID = cb->id;
		send_event(cb, REMOTE_PROC_DOMAIN_EVENT_CALLBACK_MIGRATION_ITERATION,
			   (xdrproc_t)xdr_remote_domain_event_callback_migration_iteration_msg, &m);
	}
	g_mutex_unlock(&lock);
	free(m.dom.name);
}

/* An event whose body is the domain alone (reboot, control error):
 * LEGACY_PROC without a callbackID, CB_PROC with one. */
static void domain_only_event(struct domain_obj *obj, int event_id, int legacy_proc, int cb_proc)
{
	remote_domain_event_callback_reboot_msg m = { 0 };

	wire_domain_make(obj, &m.msg.dom);
	g_mutex_lock(&lock);
	for (guint i = 0; callbacks && i < callbacks->len; i++) {
		struct event_cb *cb = g_ptr_array_index(callbacks, i);

		if (!wants(cb, event_id, (const unsigned char *)m.msg.dom.uuid))
			continue;
		if (cb->legacy) {
			send_event(cb, legacy_proc, (xdrproc_t)xdr_remote_domain_event_reboot_msg, &m.msg);
		} else {
			m.callbackID = cb->id;
			send_event(cb, cb_proc, (xdrproc_t)xdr_remote_domain_event_callback_reboot_msg, &m);
		}
	}
	g_mutex_unlock(&lock);
	free(m.msg.dom.name);
}

void events_reboot(struct domain_obj *obj)
{
	domain_only_event(obj, VIR_DOMAIN_EVENT_ID_REBOOT, REMOTE_PROC_DOMAIN_EVENT_REBOOT,
			  REMOTE_PROC_DOMAIN_EVENT_CALLBACK_REBOOT);
}

void events_control_error(struct domain_obj *obj)
{
	domain_only_event(obj, VIR_DOMAIN_EVENT_ID_CONTROL_ERROR, REMOTE_PROC_DOMAIN_EVENT_CONTROL_ERROR,
			  REMOTE_PROC_DOMAIN_EVENT_CALLBACK_CONTROL_ERROR);
}

void events_balloon_change(struct domain_obj *obj, unsigned long long actual_kib)
{
	remote_domain_event_callback_balloon_change_msg m = { .msg.actual = actual_kib };

	wire_domain_make(obj, &m.msg.dom);
	g_mutex_lock(&lock);
	for (guint i = 0; callbacks && i < callbacks->len; i++) {
		struct event_cb *cb = g_ptr_array_index(callbacks, i);

		if (!wants(cb, VIR_DOMAIN_EVENT_ID_BALLOON_CHANGE, (const unsigned char *)m.msg.dom.uuid))
			continue;
		if (cb->legacy) {
			send_event(cb, REMOTE_PROC_DOMAIN_EVENT_BALLOON_CHANGE,
				   (xdrproc_t)xdr_remote_domain_event_balloon_change_msg, &m.msg);
		} else {
			m.callbackID = cb->id;
			send_event(cb, REMOTE_PROC_DOMAIN_EVENT_CALLBACK_BALLOON_CHANGE,
				   (xdrproc_t)xdr_remote_domain_event_callback_balloon_change_msg, &m);
		}
	}
	g_mutex_unlock(&lock);
	free(m.msg.dom.name);
}

void events_io_error(struct domain_obj *obj, const char *path, const char *dev, int action,
		     const char *reason)
{
	remote_domain_event_callback_io_error_msg m = { 0 };
	remote_domain_event_callback_io_error_reason_msg mr = { 0 };

	wire_domain_make(obj, &m.msg.dom);
	m.msg.srcPath = (char *)path;
	m.msg.devAlias = (char *)dev;
	m.msg.action = action;
	mr.msg.dom = m.msg.dom;
	mr.msg.srcPath = m.msg.srcPath;
	mr.msg.devAlias = m.msg.devAlias;
	mr.msg.action = action;
	mr.msg.reason = (char *)reason;
	g_mutex_lock(&lock);
	for (guint i = 0; callbacks && i < callbacks->len; i++) {
		struct event_cb *cb = g_ptr_array_index(callbacks, i);
		const unsigned char *uuid = (const unsigned char *)m.msg.dom.uuid;

		if (wants(cb, VIR_DOMAIN_EVENT_ID_IO_ERROR, uuid)) {
			if (cb->legacy) {
				send_event(cb, REMOTE_PROC_DOMAIN_EVENT_IO_ERROR,
					   (xdrproc_t)xdr_remote_domain_event_io_error_msg, &m.msg);
			} else {
				m.callbackID = cb->id;
				send_event(cb, REMOTE_PROC_DOMAIN_EVENT_CALLBACK_IO_ERROR,
					   (xdrproc_t)xdr_remote_domain_event_callback_io_error_msg, &m);
			}
		} else if (wants(cb, VIR_DOMAIN_EVENT_ID_IO_ERROR_REASON, uuid)) {
			if (cb->legacy) {
				send_event(cb, REMOTE_PROC_DOMAIN_EVENT_IO_ERROR_REASON,
					   (xdrproc_t)xdr_remote_domain_event_io_error_reason_msg, &mr.msg);
			} else {
				mr.callbackID = cb->id;
				send_event(cb, REMOTE_PROC_DOMAIN_EVENT_CALLBACK_IO_ERROR_REASON,
					   (xdrproc_t)xdr_remote_domain_event_callback_io_error_reason_msg,
					   &mr);
			}
		}
	}
	g_mutex_unlock(&lock);
	free(m.msg.dom.name);
}

void events_device_removed(struct domain_obj *obj, const char *alias)
{
	remote_domain_event_callback_device_removed_msg m = { 0 };

	wire_domain_make(obj, &m.msg.dom);
	m.msg.devAlias = (char *)alias;
	g_mutex_lock(&lock);
	for (guint i = 0; callbacks && i < callbacks->len; i++) {
		struct event_cb *cb = g_ptr_array_index(callbacks, i);

		if (!wants(cb, VIR_DOMAIN_EVENT_ID_DEVICE_REMOVED, (const unsigned char *)m.msg.dom.uuid))
			continue;
		if (cb->legacy) {
			send_event(cb, REMOTE_PROC_DOMAIN_EVENT_DEVICE_REMOVED,
				   (xdrproc_t)xdr_remote_domain_event_device_removed_msg, &m.msg);
		} else {
			m.callbackID = cb->id;
			send_event(cb, REMOTE_PROC_DOMAIN_EVENT_CALLBACK_DEVICE_REMOVED,
				   (xdrproc_t)xdr_remote_domain_event_callback_device_removed_msg, &m);
		}
	}
	g_mutex_unlock(&lock);
	free(m.msg.dom.name);
}

/* DEVICE_ADDED and DEVICE_REMOVAL_FAILED: the same message, callback form
 * only (a legacy registration of them gets nothing, as from libvirt). */
static void device_event(struct domain_obj *obj, int id, int proc, const char *alias)
{
	remote_domain_event_callback_device_added_msg m = { 0 };

	wire_domain_make(obj, &m.dom);
	m.devAlias = (char *)alias;
	g_mutex_lock(&lock);
	for (guint i = 0; callbacks && i < callbacks->len; i++) {
		struct event_cb *cb = g_ptr_array_index(callbacks, i);

		if (cb->legacy || !wants(cb, id, (const unsigned char *)m.dom.uuid))
			continue;
		m.callbackID = cb->id;
		send_event(cb, proc, (xdrproc_t)xdr_remote_domain_event_callback_device_added_msg, &m);
	}
	g_mutex_unlock(&lock);
	free(m.dom.name);
}

void events_device_added(struct domain_obj *obj, const char *alias)
{
	device_event(obj, VIR_DOMAIN_EVENT_ID_DEVICE_ADDED, REMOTE_PROC_DOMAIN_EVENT_CALLBACK_DEVICE_ADDED,
		     alias);
}

void events_device_removal_failed(struct domain_obj *obj, const char *alias)
{
	device_event(obj, VIR_DOMAIN_EVENT_ID_DEVICE_REMOVAL_FAILED,
		     REMOTE_PROC_DOMAIN_EVENT_CALLBACK_DEVICE_REMOVAL_FAILED, alias);
}
