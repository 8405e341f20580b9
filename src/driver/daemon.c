/* virtkvmmd: the libvirt hypervisor daemon for kvmm.  Sets up the
 * instance (system or session, --root), listens where libvirt's client
 * looks for kvmm:///system or ///session (or on the sockets systemd
 * passes it), and runs the GLib main loop until SIGTERM/SIGINT or
 * --timeout of idleness. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <netdb.h>
#include <unistd.h>

#include <glib.h>
#include <glib-unix.h>
#include <libxml/parser.h>

#include "api/domain_api.h"
#include "domain/autodestroy.h"
#include "daemon_conf.h"
#include "domain/domain.h"
#include "driver.h"
#include "host.h"
#include "kvmm/cgroup.h"
#include "kvmm/monitor.h"
#include "kvmm/process.h"
#include "error.h"
#include "log.h"
#include "migrate_tls.h"
#include "rpc/server.h"
#include "tls.h"

static gchar *opt_root;
static gint opt_timeout;
static gboolean opt_verbose;
static gboolean opt_listen;
static gchar *opt_pid_file;
static gchar *opt_config;
/* NOT_GIVEN: the configuration file (or its default) decides. */
#define NOT_GIVEN G_MININT
static gint opt_keepalive_interval = NOT_GIVEN;
static gint opt_keepalive_count = NOT_GIVEN;
static gint opt_max_clients = NOT_GIVEN;

static const GOptionEntry options[] = {
	{ "root", 0, 0, G_OPTION_ARG_FILENAME, &opt_root,
	  "Keep every file of this instance (sockets, definitions in DIR/etc/libvirt/kvmm, status files, logs) under DIR", "DIR" },
	{ "timeout", 't', 0, G_OPTION_ARG_INT, &opt_timeout,
	  "Exit after SECONDS without clients (0: never)", "SECONDS" },
	{ "listen", 'l', 0, G_OPTION_ARG_NONE, &opt_listen,
	  "Listen for TLS clients (kvmm+tls://HOST/system) on tls_port, as listen_tls = 1 does", NULL },
	{ "verbose", 'v', 0, G_OPTION_ARG_NONE, &opt_verbose,
	  "Log every connection and call (overrides log_level)", NULL },
	{ "config", 'f', 0, G_OPTION_ARG_FILENAME, &opt_config,
	  "Read the configuration from FILE (default: " SYSCONFDIR "/libvirt/virtkvmmd.conf, $XDG_CONFIG_HOME/libvirt/virtkvmmd.conf for a user, DIR/etc/libvirt/virtkvmmd.conf with --root)", "FILE" },
	{ "pid-file", 'p', 0, G_OPTION_ARG_FILENAME, &opt_pid_file,
	  "Write the daemon's PID to PATH, locked while it runs", "PATH" },
	{ "keepalive-interval", 0, 0, G_OPTION_ARG_INT, &opt_keepalive_interval,
	  "Ping a client after SECONDS of silence (0: never; default 5, or keepalive_interval)", "SECONDS" },
	{ "keepalive-count", 0, 0, G_OPTION_ARG_INT, &opt_keepalive_count,
	  "Drop a client after N unanswered pings (default 5, or keepalive_count)", "N" },
	{ "max-clients", 0, 0, G_OPTION_ARG_INT, &opt_max_clients,
	  "Refuse connections beyond N clients (default 5000, or max_clients)", "N" },
	{ NULL, 0, 0, 0, NULL, NULL, NULL }
};

static gboolean on_signal(gpointer data)
{
	pr_info("exiting on signal");
	g_main_loop_quit(data);
	return G_SOURCE_REMOVE;
}

struct idle_check {
	GMainLoop *loop;
	struct rpc_server *srv;
};

static gboolean check_idle(gpointer data)
{
	struct idle_check *ic = data;
	gint64 since = rpc_server_idle_since(ic->srv);

	/* Running guests keep the daemon, as libvirt's: it would have
	 * to re-adopt them on the next start. */
	if (process_count())
		return G_SOURCE_CONTINUE;
	if (since && g_get_monotonic_time() - since >= (gint64)opt_timeout * G_USEC_PER_SEC) {
		pr_info("no clients for %d seconds: exiting", opt_timeout);
		g_main_loop_quit(ic->loop);
		return G_SOURCE_REMOVE;
	}
	return G_SOURCE_CONTINUE;
}

/* Creates and locks the PID file: a second daemon given the same file
 * refuses to start instead of overwriting it.  The fd stays open (and
 * locked) until exit. */
static int write_pid_file(const char *path)
{
	struct flock lk = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
	char buf[32];
	int fd, n;

	fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0) {
		pr_err("cannot create PID file %s: %s", path, g_strerror(errno));
		return -1;
	}
	if (fcntl(fd, F_SETLK, &lk) < 0) {
		pr_err("PID file %s is locked by another virtkvmmd: stop it first, or use another --pid-file",
		       path);
		close(fd);
		return -1;
	}
	n = snprintf(buf, sizeof(buf), "%ld\n", (long)getpid());
	if (ftruncate(fd, 0) < 0 || write(fd, buf, n) != n) {
		pr_err("cannot write PID file %s: %s", path, g_strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

/* Every client is a descriptor, and max_clients defaults to 5000: the
 * soft limit (often 1024) goes up to the hard one, as libvirt's daemons
 * do.  kvmm is started with its own descriptors only (close_range), so
 * it inherits the limit but none of ours. */
static void raise_nofile_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur >= rl.rlim_max)
		return;
	rl.rlim_cur = rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
		pr_warn("cannot raise the open-file limit to %llu: %s", (unsigned long long)rl.rlim_max,
			g_strerror(errno));
}

/* Socket activation, as sd_listen_fds_with_names(3) without libsystemd:
 * systemd passes the listening sockets as fds 3.. (LISTEN_FDS) to the
 * process LISTEN_PID, named after their socket units (LISTEN_FDNAMES).
 * virtkvmmd.socket is the read-write socket, virtkvmmd-ro.socket the
 * read-only one, virtkvmmd-tls.socket the TLS port; without names, the
 * socket's file name (or being TCP) tells.  *rw, *ro and *tls get the fds
 * (-1: not passed) and *rw_path, *ro_path the UNIX sockets' paths.
 * 0, or -1 with the reason logged. */
static int activation_fds(int *rw, int *ro, int *tls, char **rw_path, char **ro_path)
{
	const char *pid_s = getenv("LISTEN_PID"), *n_s = getenv("LISTEN_FDS");
	const char *names_s = getenv("LISTEN_FDNAMES");
	g_auto(GStrv) names = NULL;
	char *end;
	long n, pid;
	int rc = -1;

	*rw = *ro = *tls = -1;
	if (!pid_s || !n_s)
		return 0;
	errno = 0;
	pid = strtol(pid_s, &end, 10);
	/* Meant for another process (a parent that was activated). */
	if (errno || *end || pid != getpid())
		return 0;
	errno = 0;
	n = strtol(n_s, &end, 10);
	if (errno || *end || n < 1 || n > 3) {
		pr_err("LISTEN_FDS=%s: expected 1 to 3 sockets from systemd (virtkvmmd.socket, virtkvmmd-ro.socket, virtkvmmd-tls.socket)",
		       n_s);
		goto out;
	}
	if (names_s) {
		names = g_strsplit(names_s, ":", -1);
		if (g_strv_length(names) != (guint)n) {
			pr_err("LISTEN_FDNAMES=%s names %u sockets, LISTEN_FDS=%ld", names_s,
			       g_strv_length(names), n);
			goto out;
		}
	}
	for (int i = 0; i < n; i++) {
		int fd = 3 + i, type = 0, acc = 0;
		struct sockaddr_un sa = { 0 };
		struct sockaddr_storage ss = { 0 };
		socklen_t len = sizeof(type), alen = sizeof(sa), slen = sizeof(ss);
		const char *name = names ? names[i] : "unknown";
		g_autofree char *base = NULL;
		int *slot;
		char **path;

		/* The TLS port: a listening TCP socket. */
		if (getsockname(fd, (struct sockaddr *)&ss, &slen) == 0 &&
		    (ss.ss_family == AF_INET || ss.ss_family == AF_INET6)) {
			if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0 ||
			    getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc,
				       &(socklen_t){ sizeof(acc) }) < 0 ||
			    type != SOCK_STREAM || !acc) {
				pr_err("fd %d (%s) from systemd is not a listening TCP socket", fd, name);
				goto out;
			}
			if (strcmp(name, "virtkvmmd-tls.socket") && strcmp(name, "unknown")) {
				pr_err("TCP socket fd %d (%s) from systemd is not virtkvmmd-tls.socket", fd,
				       name);
				goto out;
			}
			if (*tls >= 0) {
				pr_err("systemd passed two TCP sockets");
				goto out;
			}
			*tls = fd;
			continue;
		}
		if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0 ||
		    getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &(socklen_t){ sizeof(acc) }) < 0 ||
		    getsockname(fd, (struct sockaddr *)&sa, &alen) < 0 ||
		    sa.sun_family != AF_UNIX || type != SOCK_STREAM || !acc ||
		    alen <= offsetof(struct sockaddr_un, sun_path) || !sa.sun_path[0]) {
			pr_err("fd %d (%s) from systemd is not a listening UNIX stream socket with a path",
			       fd, name);
			goto out;
		}
		sa.sun_path[sizeof(sa.sun_path) - 1] = '\0';
		base = g_path_get_basename(sa.sun_path);
		if (!strcmp(name, "virtkvmmd.socket") ||
		    (!strcmp(name, "unknown") && !strcmp(base, "virtkvmmd-sock"))) {
			slot = rw;
			path = rw_path;
		} else if (!strcmp(name, "virtkvmmd-ro.socket") ||
			   (!strcmp(name, "unknown") && !strcmp(base, "virtkvmmd-sock-ro"))) {
			slot = ro;
			path = ro_path;
		} else {
			pr_err("socket %s (%s) from systemd is neither virtkvmmd.socket nor virtkvmmd-ro.socket (nor a TCP socket for virtkvmmd-tls.socket)",
			       sa.sun_path, name);
			goto out;
		}
		if (*slot >= 0) {
			pr_err("systemd passed two sockets as %s", name);
			goto out;
		}
		*slot = fd;
		*path = g_strdup(sa.sun_path);
	}
	rc = 0;
out:
	/* Not for the kvmm processes this daemon starts. */
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_FDNAMES");
	return rc;
}

/* Tells systemd (Type=notify) the daemon serves: guests adopted and
 * every socket listening.  A datagram "READY=1" to $NOTIFY_SOCKET, as
 * sd_notify(3); '@' names an abstract socket.  Failure is only logged:
 * systemd then times the start out itself. */
static void notify_ready(void)
{
	const char *path = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	size_t len;
	int fd;

	if (!path)
		return;
	len = strlen(path);
	if (len < 2 || len >= sizeof(sa.sun_path) || (path[0] != '/' && path[0] != '@')) {
		pr_warn("NOTIFY_SOCKET=%s is not a socket path: systemd is not told the daemon is ready",
			path);
		goto out;
	}
	memcpy(sa.sun_path, path, len);
	if (path[0] == '@')
		sa.sun_path[0] = '\0';
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || sendto(fd, "READY=1", 7, MSG_NOSIGNAL, (struct sockaddr *)&sa,
			     offsetof(struct sockaddr_un, sun_path) + len) != 7)
		pr_warn("cannot tell systemd the daemon is ready (%s): %s", path, g_strerror(errno));
	if (fd >= 0)
		close(fd);
out:
	unsetenv("NOTIFY_SOCKET");
}

/* The TLS listener's credentials and checks, from CONF; files default
 * to libvirt's locations (under --root's DIR with --root).  NULL after
 * logging. */
static struct tls_context *tls_setup(const struct daemon_conf *conf, const char *root)
{
	g_autofree char *ca = g_strconcat(root, "/etc/pki/CA/cacert.pem", NULL);
	g_autofree char *cert = g_strconcat(root, "/etc/pki/libvirt/servercert.pem", NULL);
	g_autofree char *key = g_strconcat(root, "/etc/pki/libvirt/private/serverkey.pem", NULL);
	struct tls_config tc = {
		.ca_file = conf->ca_file ? conf->ca_file : ca,
		.cert_file = conf->cert_file ? conf->cert_file : cert,
		.key_file = conf->key_file ? conf->key_file : key,
		.crl_file = conf->crl_file,
		.no_verify = conf->tls_no_verify_certificate,
		.allowed_dn = conf->tls_allowed_dn_list,
		.priority = conf->tls_priority,
	};
	struct tls_context *ctx = tls_context_new(&tc);

	if (ctx && tc.no_verify)
		pr_warn("tls_no_verify_certificate is set: any TLS client may use the daemon");
	return ctx;
}

int main(int argc, char **argv)
{
	g_autoptr(GOptionContext) ctx = g_option_context_new("- libvirt hypervisor daemon for kvmm");
	g_autoptr(GError) gerr = NULL;
	g_autofree char *root = NULL, *rundir = NULL, *sock = NULL, *sock_ro = NULL;
	g_autofree char *confdir = NULL, *conffile = NULL;
	g_autofree char *act_rw_path = NULL, *act_ro_path = NULL;
	int act_rw = -1, act_ro = -1, act_tls = -1;
	struct daemon_conf conf;
	struct rpc_server_config cfg;
	struct rpc_server *srv = NULL;
	struct tls_context *tls = NULL;
	struct idle_check ic;
	GMainLoop *loop;
	int pid_fd = -1, rc = 1;

	log_init("virtkvmmd", LOG_WARN);
	g_option_context_add_main_entries(ctx, options, NULL);
	g_option_context_set_summary(ctx,
		"Serves kvmm:///system (as root) or kvmm:///session to libvirt clients (virsh,\n"
		"python3-libvirt, virt-manager) over /run/libvirt/virtkvmmd-sock and -sock-ro,\n"
		"or $XDG_RUNTIME_DIR/libvirt/virtkvmmd-sock for a user.");
	if (!g_option_context_parse(ctx, &argc, &argv, &gerr)) {
		pr_err("%s (try --help)", gerr->message);
		return 2;
	}
	if (argc > 1) {
		pr_err("unexpected argument '%s' (try --help)", argv[1]);
		return 2;
	}
	if (opt_timeout < 0 ||
	    (opt_keepalive_interval != NOT_GIVEN && opt_keepalive_interval < 0) ||
	    (opt_keepalive_count != NOT_GIVEN && opt_keepalive_count < 0) ||
	    (opt_max_clients != NOT_GIVEN && opt_max_clients < 1)) {
		pr_err("--timeout, --keepalive-* must not be negative and --max-clients must be at least 1");
		return 2;
	}
	/* A client vanishing mid-reply must not kill the daemon. */
	signal(SIGPIPE, SIG_IGN);
	raise_nofile_limit();
	if (activation_fds(&act_rw, &act_ro, &act_tls, &act_rw_path, &act_ro_path) < 0)
		return 1;

	drv_state.privileged = geteuid() == 0;
	drv_state.uri = drv_state.privileged ? "kvmm:///system" : "kvmm:///session";
	if (act_ro >= 0 && !drv_state.privileged) {
		pr_err("a session daemon has no read-only socket, but systemd passed %s", act_ro_path);
		return 1;
	}
	if (opt_root) {
		root = g_canonicalize_filename(opt_root, NULL);
		rundir = g_build_filename(root, "run", "libvirt", NULL);
	} else {
		root = g_strdup("");
		/* libvirt's locations: the system runtime directory, or the
		 * user's ($XDG_RUNTIME_DIR, else ~/.cache, as GLib and
		 * libvirt's client both fall back). */
		rundir = drv_state.privileged ? g_strdup("/run/libvirt")
					      : g_build_filename(g_get_user_runtime_dir(), "libvirt", NULL);
	}
	drv_state.root = root;

	/* The configuration file, where libvirt's daemons keep theirs; read
	 * before anything is created, so a bad one leaves nothing behind.
	 * The command line overrides it. */
	if (opt_config)
		conffile = g_canonicalize_filename(opt_config, NULL);
	else if (opt_root)
		conffile = g_build_filename(root, "etc", "libvirt", "virtkvmmd.conf", NULL);
	else if (drv_state.privileged)
		conffile = g_strdup(SYSCONFDIR "/libvirt/virtkvmmd.conf");
	else
		conffile = g_build_filename(g_get_user_config_dir(), "libvirt", "virtkvmmd.conf", NULL);
	daemon_conf_defaults(&conf);
	if (daemon_conf_load(&conf, conffile, opt_config != NULL) < 0)
		return 1;
	log_set_level(opt_verbose ? LOG_DEBUG : conf.log_level);
	if (opt_keepalive_interval != NOT_GIVEN)
		conf.keepalive_interval = opt_keepalive_interval;
	if (opt_keepalive_count != NOT_GIVEN)
		conf.keepalive_count = opt_keepalive_count;
	if (opt_max_clients != NOT_GIVEN)
		conf.max_clients = opt_max_clients;
	/* systemd's virtkvmmd-tls.socket decides, as libvirt's. */
	if (opt_listen || act_tls >= 0)
		conf.listen_tls = true;
	/* Certificates are checked now: a daemon that could not serve TLS
	 * must not start (and leave nothing behind). */
	if (conf.listen_tls && !(tls = tls_setup(&conf, root))) {
		daemon_conf_clear(&conf);
		return 1;
	}
	/* Definitions where libvirt's drivers keep theirs: SYSCONFDIR/libvirt/DRIVER
	 * for the system instance, the user's config dir for a session. */
	if (opt_root)
		confdir = g_build_filename(root, "etc", "libvirt", "kvmm", NULL);
	else if (drv_state.privileged)
		confdir = g_strdup(SYSCONFDIR "/libvirt/kvmm");
	else
		confdir = g_build_filename(g_get_user_config_dir(), "libvirt", "kvmm", NULL);
	if (g_mkdir_with_parents(rundir, drv_state.privileged ? 0755 : 0700) < 0) {
		pr_err("cannot create %s: %s", rundir, g_strerror(errno));
		return 1;
	}
	sock = g_build_filename(rundir, "virtkvmmd-sock", NULL);
	sock_ro = g_build_filename(rundir, "virtkvmmd-sock-ro", NULL);

	if (opt_pid_file && (pid_fd = write_pid_file(opt_pid_file)) < 0)
		return 1;

	{
		/* Running domains' files: the runtime directory, as libvirt's
		 * /run/libvirt/qemu; logs where libvirt keeps its drivers'. */
		g_autofree char *state_dir = g_build_filename(rundir, "kvmm", NULL);
		g_autofree char *log_dir = NULL;

		if (opt_root)
			log_dir = g_build_filename(root, "log", "libvirt", "kvmm", NULL);
		else if (drv_state.privileged)
			log_dir = g_strdup("/var/log/libvirt/kvmm");
		else
			log_dir = g_build_filename(g_get_user_cache_dir(), "libvirt", "kvmm", "log", NULL);
		process_init(state_dir, log_dir);
		cgroup_init(state_dir, conf.cgroup_root);
	}
	if (domains_init(confdir, host_emulator_path()) < 0 || snapshots_init() < 0) {
		pr_err("%s", drv_error_last()->message);
		return 1;
	}

	/* libxml2 is used from every worker thread: initialise it once,
	 * before any exists. */
	xmlInitParser();
	/* Guests the previous daemon started run on: take them back before
	 * any client can ask about them. */
	monitor_set_timeout(conf.monitor_timeout * 1000);
	process_set_sandbox(conf.sandbox, conf.sandbox_uid, conf.sandbox_gid);
	process_set_pvm_compat(conf.pvm_compat);
	if (conf.pvm_compat)
		pr_warn("pvm_compat = 1: every guest runs in kvmm's KVM-PVM compatibility mode, "
			"for testing kvmm on KVM-PVM hosts only (docs/pvm-compat.md)");
	migtls_configure(root, conf.migrate_tls_x509_cert_dir, conf.migrate_tls_x509_verify,
			 conf.migrate_tls_force);
	drv_state.hypervisor_version = conf.hypervisor_version;
	process_adopt_all();
	managed_save_mark_all();
	process_autostart_all();
	loop = g_main_loop_new(NULL, FALSE);
	/* Before the sockets exist: a client may signal us as soon as it
	 * can connect, and the signal must end the loop, not the process. */
	g_unix_signal_add(SIGTERM, on_signal, loop);
	g_unix_signal_add(SIGINT, on_signal, loop);
	cfg.keepalive_interval = conf.keepalive_interval;
	cfg.keepalive_count = conf.keepalive_count;
	cfg.max_clients = conf.max_clients;
	cfg.max_workers = conf.max_workers;
	cfg.prio_workers = conf.prio_workers;
	cfg.max_client_requests = conf.max_client_requests;
	cfg.max_anonymous_clients = conf.max_anonymous_clients;
	srv = rpc_server_new(&cfg);
	/* By default read-write: root only (session: the user only);
	 * read-only: every local user, as libvirt's daemons.  A session
	 * daemon has no read-only socket, like libvirt's.
	 * Sockets systemd passes are used as they are (their modes are the
	 * socket units'); the others are created, as libvirt's daemons do. */
	if (act_rw >= 0 ? rpc_server_listen_fd(srv, act_rw, act_rw_path, false) < 0 :
	    rpc_server_listen(srv, sock, conf.unix_sock_group, conf.unix_sock_rw_perms, false) < 0)
		goto out;
	if (drv_state.privileged &&
	    (act_ro >= 0 ? rpc_server_listen_fd(srv, act_ro, act_ro_path, true) < 0 :
	     rpc_server_listen(srv, sock_ro, conf.unix_sock_group, conf.unix_sock_ro_perms, true) < 0))
		goto out;
	if (act_tls >= 0 ? rpc_server_listen_tls_fd(srv, act_tls, tls) < 0 :
	    tls && rpc_server_listen_tls(srv, conf.listen_addr, conf.tls_port, tls) < 0)
		goto out;

	ic.loop = loop;
	ic.srv = srv;
	if (opt_timeout > 0)
		g_timeout_add_seconds(1, check_idle, &ic);
	pr_info("serving %s", drv_state.uri);
	notify_ready();
	g_main_loop_run(loop);
	/* The clients dropped on the way out are not closing connections. */
	autodestroy_stop();
	rc = 0;
out:
	rpc_server_free(srv);
	tls_context_free(tls);
	daemon_conf_clear(&conf);
	g_main_loop_unref(loop);
	domains_shutdown();
	if (pid_fd >= 0) {
		unlink(opt_pid_file);
		close(pid_fd);
	}
	return rc;
}
