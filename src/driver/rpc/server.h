/* The RPC server: listening UNIX sockets (and TLS over TCP), and clients on the GLib main
 * loop, each reading whole packets into rpc_dispatch and writing back
 * what it queues.  Calls run on a pool of worker threads, one at a time
 * per client, so a call that blocks stalls nobody else.  Many clients at
 * once; one misbehaving client is dropped alone. */
#ifndef KVMM_RPC_SERVER_H
#define KVMM_RPC_SERVER_H

#include <stdbool.h>
#include <sys/types.h>

#include <glib.h>

struct rpc_server_config {
	unsigned keepalive_interval;	/* seconds of silence before a PING; 0: never ping */
	unsigned keepalive_count;	/* unanswered PINGs before dropping */
	unsigned max_clients;		/* beyond this, new connections are closed */
	unsigned max_workers;		/* threads running calls */
	unsigned prio_workers;		/* threads running only priority calls (lookups,
					 * lists, destroy) once max_workers are all busy */
	unsigned max_client_requests;	/* calls one client may have waiting and running */
	unsigned max_anonymous_clients;	/* per socket: clients not yet open; beyond it,
					 * new connections wait in the backlog */
};

struct rpc_server;

struct rpc_server *rpc_server_new(const struct rpc_server_config *cfg);

/* Listens on path with the socket file's group set to gid (unless
 * (gid_t)-1) and its mode to mode; clients of a readonly socket may not
 * change anything.  A socket file nobody listens
 * on is a leftover and is replaced; one a live process answers on is
 * not.  0, or -1 with the reason logged. */
int rpc_server_listen(struct rpc_server *srv, const char *path, gid_t gid, mode_t mode,
		      bool readonly);

/* Listens on fd, a listening socket inherited from systemd (socket
 * activation) for path: its file, group and mode are the socket unit's,
 * and it is left in place at exit.  0, or -1 with the reason logged. */
int rpc_server_listen_fd(struct rpc_server *srv, int fd, const char *path, bool readonly);

struct tls_context;

/* Listens on TCP port PORT of ADDR (NULL or "": every address, IPv4 and
 * IPv6) for TLS clients of TLS (kept, not owned): each does the
 * handshake first (bounded in time, never blocking the loop), is checked
 * by tls_session_check_client and told so with the byte 1 libvirt's
 * client waits for; then it is a read-write client like the UNIX
 * socket's.  0, or -1 with the reason logged. */
int rpc_server_listen_tls(struct rpc_server *srv, const char *addr, const char *port,
			  struct tls_context *tls);

/* The same on fd, a listening TCP socket inherited from systemd
 * (virtkvmmd-tls.socket).  0, or -1 with the reason logged. */
int rpc_server_listen_tls_fd(struct rpc_server *srv, int fd, struct tls_context *tls);

unsigned rpc_server_nclients(const struct rpc_server *srv);

/* Monotonic time (µs) since when the server has had no clients; 0 while
 * it has some. */
gint64 rpc_server_idle_since(const struct rpc_server *srv);

/* Drops every client, stops listening and removes the socket files it
 * created. */
void rpc_server_free(struct rpc_server *srv);

#endif
