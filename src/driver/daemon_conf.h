/* virtkvmmd.conf: the daemon's configuration file, in the syntax of
 * libvirt's daemons' files (virtqemud.conf and friends):
 *
 *     # a comment
 *     unix_sock_group = "libvirt"
 *     unix_sock_rw_perms = "0770"
 *     log_level = 2
 *
 * Strings in double or single quotes, integers, '#' comments; one setting
 * per line.  Unknown keys and bad values are errors naming the file, the
 * line and the key: a daemon that cannot honour its configuration does
 * not start.  docs/virtkvmmd.md lists the keys. */
#ifndef KVMM_DRV_DAEMON_CONF_H
#define KVMM_DRV_DAEMON_CONF_H

#include <stdbool.h>
#include <sys/types.h>

#include "log.h"

struct daemon_conf {
	gid_t unix_sock_group;		/* (gid_t)-1: leave the daemon's group */
	mode_t unix_sock_ro_perms;
	mode_t unix_sock_rw_perms;
	enum log_level log_level;
	unsigned max_clients;
	unsigned max_workers;
	unsigned prio_workers;
	unsigned max_client_requests;
	unsigned max_anonymous_clients;
	unsigned keepalive_interval;	/* 0: never ping */
	unsigned keepalive_count;
	unsigned monitor_timeout;	/* seconds a kvmm command may take */
	unsigned long long hypervisor_version;	/* what virConnectGetVersion
						 * answers, libvirt's encoding;
						 * 0: kvmm's own version */
	/* Remote access over TLS (libvirtd.conf's keys).  Unauthenticated
	 * TCP (listen_tcp) is not offered. */
	bool listen_tls;
	char *tls_port;			/* a port number or service name */
	char *listen_addr;		/* NULL: every address */
	char *key_file;			/* NULL: libvirt's default location */
	char *cert_file;
	char *ca_file;
	char *crl_file;			/* NULL: no revocation list */
	bool tls_no_verify_certificate;
	char **tls_allowed_dn_list;	/* NULL: any DN; empty: none */
	char *tls_priority;		/* NULL: gnutls's "NORMAL" */
	/* The migration stream over TLS (qemu.conf's keys; migrate_tls.h). */
	char *migrate_tls_x509_cert_dir;	/* NULL: libvirt's default */
	bool migrate_tls_x509_verify;
	bool migrate_tls_force;
	/* kvmm --sandbox for every guest started (docs/virtkvmmd.md), as
	 * sandbox_uid/sandbox_gid ((uid_t)-1, (gid_t)-1: not set, the
	 * system user and group "kvmm", looked up at each start). */
	bool sandbox;
	uid_t sandbox_uid;
	gid_t sandbox_gid;
	/* KVM-PVM test hosts only: every kvmm this daemon starts runs with
	 * "pvm_compat": true (docs/pvm-compat.md); never on by default. */
	bool pvm_compat;
	/* Tests only: a directory standing for the cgroup hierarchies
	 * (kvmm/cgroup.h); NULL: the host's, from /proc/self/mountinfo. */
	char *cgroup_root;
};

/* The built-in settings, used for whatever the file does not set. */
void daemon_conf_defaults(struct daemon_conf *conf);

/* Frees what CONF's strings hold. */
void daemon_conf_clear(struct daemon_conf *conf);

/* Reads PATH into CONF.  A missing file is fine unless MUST_EXIST (an
 * explicit --config).  0, or -1 after logging the error. */
int daemon_conf_load(struct daemon_conf *conf, const char *path, bool must_exist);

#endif
