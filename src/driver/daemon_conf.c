/* virtkvmmd.conf; see daemon_conf.h.  GKeyFile wants [groups] and has
 * no quoted strings, so libvirt's syntax gets its own small parser. */
#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <glib.h>

#include "daemon_conf.h"

/* An administrator's file, not a client's; still, do not slurp a wrong
 * path such as a disk image. */
#define CONF_SIZE_MAX (1024 * 1024)

enum value_kind { VALUE_STRING, VALUE_INT, VALUE_LIST };

struct value {
	enum value_kind kind;
	char *str;		/* VALUE_STRING, NUL-terminated copy */
	long long num;		/* VALUE_INT */
	char **list;		/* VALUE_LIST: of strings, NULL-terminated */
};

/* Where a problem is: file and line, for every message. */
struct where {
	const char *path;
	unsigned line;
};

#define conf_err(w, ...) conf_err_at((w), g_strdup_printf(__VA_ARGS__))

static int conf_err_at(const struct where *w, char *msg)
{
	pr_err("%s:%u: %s", w->path, w->line, msg);
	g_free(msg);
	return -1;
}

void daemon_conf_defaults(struct daemon_conf *conf)
{
	/* Read-write: the owner only; read-only: every local user.  Tighter
	 * than libvirt's 0700/0777 by the execute bits, which a socket does
	 * not use. */
	conf->unix_sock_group = (gid_t)-1;
	conf->unix_sock_ro_perms = 0666;
	conf->unix_sock_rw_perms = 0600;
	conf->log_level = LOG_WARN;
	conf->max_clients = 5000;		/* libvirt's defaults */
	conf->max_workers = 20;
	conf->prio_workers = 5;
	conf->max_client_requests = 5;
	conf->max_anonymous_clients = 20;
	conf->keepalive_interval = 5;
	conf->keepalive_count = 5;
	conf->monitor_timeout = 10;
	conf->hypervisor_version = 0;
	conf->listen_tls = false;
	conf->tls_port = g_strdup("16514");
	conf->listen_addr = NULL;
	conf->key_file = conf->cert_file = conf->ca_file = conf->crl_file = NULL;
	conf->tls_no_verify_certificate = false;
	conf->tls_allowed_dn_list = NULL;
	conf->tls_priority = NULL;
	conf->migrate_tls_x509_cert_dir = NULL;
	conf->migrate_tls_x509_verify = true;
	conf->migrate_tls_force = false;
	/* Confined by default, as libvirt's qemu driver runs QEMU as
	 * libvirt-qemu; kvmm can only drop to another user if it starts as
	 * root, so a session daemon's guests run as its user, unconfined. */
	conf->sandbox = geteuid() == 0;
	conf->sandbox_uid = (uid_t)-1;
	conf->sandbox_gid = (gid_t)-1;
	conf->pvm_compat = false;
}

void daemon_conf_clear(struct daemon_conf *conf)
{
	g_clear_pointer(&conf->tls_port, g_free);
	g_clear_pointer(&conf->listen_addr, g_free);
	g_clear_pointer(&conf->key_file, g_free);
	g_clear_pointer(&conf->cert_file, g_free);
	g_clear_pointer(&conf->ca_file, g_free);
	g_clear_pointer(&conf->crl_file, g_free);
	g_clear_pointer(&conf->tls_allowed_dn_list, g_strfreev);
	g_clear_pointer(&conf->tls_priority, g_free);
	g_clear_pointer(&conf->migrate_tls_x509_cert_dir, g_free);
	g_clear_pointer(&conf->cgroup_root, g_free);
}

/* "MAJOR.MINOR.MICRO" (each 0-999, libvirt's encoding) as libvirt's
 * version number; -1 if it is not that. */
static long long version_parse(const char *s)
{
	unsigned long part[3];
	const char *p = s;
	char *end;

	for (int i = 0; i < 3; i++) {
		if (!g_ascii_isdigit(*p))
			return -1;
		errno = 0;
		part[i] = strtoul(p, &end, 10);
		if (errno || part[i] > 999 || (i < 2 ? *end != '.' : *end != '\0'))
			return -1;
		p = end + 1;
	}
	return part[0] * 1000000LL + part[1] * 1000 + part[2];
}

static int want_string(const struct where *w, const char *key, const struct value *v,
		       const char *example)
{
	if (v->kind != VALUE_STRING)
		return conf_err(w, "%s: expected a string in quotes, like %s", key, example);
	return 0;
}

static int want_int(const struct where *w, const char *key, const struct value *v,
		    long long min, long long max, long long *out)
{
	if (v->kind != VALUE_INT)
		return conf_err(w, "%s: expected a number without quotes", key);
	if (v->num < min || v->num > max)
		return conf_err(w, "%s: %lld is out of range (%lld to %lld)", key, v->num, min, max);
	*out = v->num;
	return 0;
}

static int set_perms(const struct where *w, const char *key, const struct value *v, mode_t *out)
{
	char *end;
	unsigned long m;

	if (want_string(w, key, v, "\"0770\"") < 0)
		return -1;
	errno = 0;
	m = strtoul(v->str, &end, 8);
	if (!*v->str || *end || errno || m > 0777)
		return conf_err(w, "%s: \"%s\" is not an octal permission mode such as \"0770\"",
				key, v->str);
	*out = (mode_t)m;
	return 0;
}

static int set_group(const struct where *w, const char *key, const struct value *v, gid_t *out)
{
	struct group *gr;
	char *end;
	unsigned long n;

	if (want_string(w, key, v, "\"libvirt\"") < 0)
		return -1;
	/* A name, or as libvirt a number written "+N". */
	if (v->str[0] == '+') {
		errno = 0;
		n = strtoul(v->str + 1, &end, 10);
		if (!v->str[1] || *end || errno || n >= (gid_t)-1)
			return conf_err(w, "%s: \"%s\" is not a group number", key, v->str);
		*out = (gid_t)n;
		return 0;
	}
	errno = 0;
	gr = getgrnam(v->str);
	if (!gr)
		return conf_err(w, "%s: no group named \"%s\"%s%s", key, v->str,
				errno ? ": " : "", errno ? g_strerror(errno) : "");
	*out = gr->gr_gid;
	return 0;
}

/* The sandbox's user: a name, or a number written "+N"; never root,
 * which kvmm refuses. */
static int set_user(const struct where *w, const char *key, const struct value *v, uid_t *out)
{
	struct passwd *pw;
	char *end;
	unsigned long n;

	if (want_string(w, key, v, "\"kvmm\"") < 0)
		return -1;
	if (v->str[0] == '+') {
		errno = 0;
		n = strtoul(v->str + 1, &end, 10);
		if (!v->str[1] || *end || errno || n >= (uid_t)-1)
			return conf_err(w, "%s: \"%s\" is not a user number", key, v->str);
		*out = (uid_t)n;
	} else {
		errno = 0;
		pw = getpwnam(v->str);
		if (!pw)
			return conf_err(w, "%s: no user named \"%s\"%s%s", key, v->str,
					errno ? ": " : "", errno ? g_strerror(errno) : "");
		*out = pw->pw_uid;
	}
	if (*out == 0)
		return conf_err(w, "%s: the sandbox's user must not be root", key);
	return 0;
}

static int set_bool(const struct where *w, const char *key, const struct value *v, bool *out)
{
	long long n;

	if (want_int(w, key, v, 0, 1, &n) < 0)
		return -1;
	*out = n;
	return 0;
}

/* A string setting; an empty one is refused (it would name no file). */
static int set_string(const struct where *w, const char *key, const struct value *v,
		      const char *example, char **out)
{
	if (want_string(w, key, v, example) < 0)
		return -1;
	if (!*v->str)
		return conf_err(w, "%s: must not be empty", key);
	g_free(*out);
	*out = g_strdup(v->str);
	return 0;
}

/* Applies one setting; -1 after logging. */
static int apply(struct daemon_conf *conf, const struct where *w, const char *key,
		 const struct value *v)
{
	long long n;

	if (v->kind == VALUE_LIST && strcmp(key, "tls_allowed_dn_list"))
		return conf_err(w, "%s: expected a single value, not a list", key);
	if (!strcmp(key, "unix_sock_group"))
		return set_group(w, key, v, &conf->unix_sock_group);
	if (!strcmp(key, "unix_sock_ro_perms"))
		return set_perms(w, key, v, &conf->unix_sock_ro_perms);
	if (!strcmp(key, "unix_sock_rw_perms"))
		return set_perms(w, key, v, &conf->unix_sock_rw_perms);
	if (!strcmp(key, "log_level")) {
		/* libvirt's levels: 1 debug, 2 info, 3 warning, 4 error. */
		static const enum log_level levels[] = { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERR };

		if (want_int(w, key, v, 1, 4, &n) < 0)
			return -1;
		conf->log_level = levels[n - 1];
		return 0;
	}
	if (!strcmp(key, "max_clients")) {
		if (want_int(w, key, v, 1, 1000000, &n) < 0)
			return -1;
		conf->max_clients = n;
		return 0;
	}
	if (!strcmp(key, "max_workers")) {
		if (want_int(w, key, v, 1, 1000, &n) < 0)
			return -1;
		conf->max_workers = n;
		return 0;
	}
	if (!strcmp(key, "prio_workers")) {
		if (want_int(w, key, v, 1, 1000, &n) < 0)
			return -1;
		conf->prio_workers = n;
		return 0;
	}
	if (!strcmp(key, "max_client_requests")) {
		if (want_int(w, key, v, 1, 1000, &n) < 0)
			return -1;
		conf->max_client_requests = n;
		return 0;
	}
	if (!strcmp(key, "max_anonymous_clients")) {
		if (want_int(w, key, v, 1, 1000000, &n) < 0)
			return -1;
		conf->max_anonymous_clients = n;
		return 0;
	}
	if (!strcmp(key, "keepalive_interval")) {
		/* libvirt spells "never" -1; 0 means the same here. */
		if (want_int(w, key, v, -1, 86400, &n) < 0)
			return -1;
		conf->keepalive_interval = n < 0 ? 0 : n;
		return 0;
	}
	if (!strcmp(key, "keepalive_count")) {
		if (want_int(w, key, v, 0, 1000, &n) < 0)
			return -1;
		conf->keepalive_count = n;
		return 0;
	}
	if (!strcmp(key, "monitor_timeout")) {
		if (want_int(w, key, v, 1, 600, &n) < 0)
			return -1;
		conf->monitor_timeout = n;
		return 0;
	}
	if (!strcmp(key, "hypervisor_version")) {
		/* What clients are told the hypervisor's version is; see
		 * docs/virtkvmmd.md for what nova makes of it. */
		long long ver;

		if (want_string(w, key, v, "\"4.2.0\"") < 0)
			return -1;
		if ((ver = version_parse(v->str)) < 0)
			return conf_err(w, "%s: \"%s\" is not a version MAJOR.MINOR.MICRO (each 0-999)",
					key, v->str);
		conf->hypervisor_version = ver;
		return 0;
	}
	if (!strcmp(key, "listen_tls"))
		return set_bool(w, key, v, &conf->listen_tls);
	if (!strcmp(key, "listen_tcp")) {
		bool on;

		if (set_bool(w, key, v, &on) < 0)
			return -1;
		if (on)
			return conf_err(w, "%s: unencrypted, unauthenticated TCP is not offered: use listen_tls",
					key);
		return 0;
	}
	if (!strcmp(key, "tls_port"))
		return set_string(w, key, v, "\"16514\"", &conf->tls_port);
	if (!strcmp(key, "listen_addr"))
		return set_string(w, key, v, "\"192.168.0.1\"", &conf->listen_addr);
	if (!strcmp(key, "key_file"))
		return set_string(w, key, v, "\"/etc/pki/libvirt/private/serverkey.pem\"",
				  &conf->key_file);
	if (!strcmp(key, "cert_file"))
		return set_string(w, key, v, "\"/etc/pki/libvirt/servercert.pem\"", &conf->cert_file);
	if (!strcmp(key, "ca_file"))
		return set_string(w, key, v, "\"/etc/pki/CA/cacert.pem\"", &conf->ca_file);
	if (!strcmp(key, "crl_file"))
		return set_string(w, key, v, "\"/etc/pki/CA/crl.pem\"", &conf->crl_file);
	if (!strcmp(key, "tls_no_verify_certificate"))
		return set_bool(w, key, v, &conf->tls_no_verify_certificate);
	if (!strcmp(key, "tls_priority"))
		return set_string(w, key, v, "\"NORMAL\"", &conf->tls_priority);
	if (!strcmp(key, "migrate_tls_x509_cert_dir"))
		return set_string(w, key, v, "\"/etc/pki/libvirt-migrate\"",
				  &conf->migrate_tls_x509_cert_dir);
	if (!strcmp(key, "migrate_tls_x509_verify"))
		return set_bool(w, key, v, &conf->migrate_tls_x509_verify);
	if (!strcmp(key, "migrate_tls_force"))
		return set_bool(w, key, v, &conf->migrate_tls_force);
	if (!strcmp(key, "sandbox"))
		return set_bool(w, key, v, &conf->sandbox);
	if (!strcmp(key, "user"))
		return set_user(w, key, v, &conf->sandbox_uid);
	if (!strcmp(key, "group")) {
		if (set_group(w, key, v, &conf->sandbox_gid) < 0)
			return -1;
		if (conf->sandbox_gid == 0)
			return conf_err(w, "%s: the sandbox's group must not be root", key);
		return 0;
	}
	if (!strcmp(key, "pvm_compat"))
		return set_bool(w, key, v, &conf->pvm_compat);
	if (!strcmp(key, "cgroup_root"))
		return set_string(w, key, v, "\"/tmp/fake-cgroups\"", &conf->cgroup_root);
	if (!strcmp(key, "tls_allowed_dn_list")) {
		if (v->kind != VALUE_LIST)
			return conf_err(w, "%s: expected a list of strings, like [\"CN=client*\"]", key);
		g_strfreev(conf->tls_allowed_dn_list);
		conf->tls_allowed_dn_list = g_strdupv(v->list);
		return 0;
	}
	return conf_err(w, "unknown key '%s' (virtkvmmd knows unix_sock_group, unix_sock_ro_perms, "
			"unix_sock_rw_perms, log_level, max_clients, max_workers, prio_workers, max_client_requests, "
			"max_anonymous_clients, keepalive_interval, keepalive_count, monitor_timeout, "
			"hypervisor_version, listen_tls, listen_tcp, tls_port, listen_addr, key_file, cert_file, "
			"ca_file, crl_file, tls_no_verify_certificate, tls_allowed_dn_list, tls_priority, "
			"migrate_tls_x509_cert_dir, migrate_tls_x509_verify, migrate_tls_force, sandbox, user, group, pvm_compat, cgroup_root)",
			key);
}

/* Parses the value at *p (leading blanks skipped) into V; on success *p
 * is just past it. */
static int parse_value(const struct where *w, const char *key, const char **p, struct value *v)
{
	const char *s = *p;

	if (*s == '"' || *s == '\'') {
		const char *end = strchr(s + 1, *s);

		if (!end)
			return conf_err(w, "%s: string without its closing %c", key, *s);
		v->kind = VALUE_STRING;
		v->str = g_strndup(s + 1, end - s - 1);
		*p = end + 1;
		return 0;
	}
	if (*s == '-' || g_ascii_isdigit(*s)) {
		char *end;

		errno = 0;
		v->num = strtoll(s, &end, 10);
		if (errno || end == s || (*s == '-' && end == s + 1))
			return conf_err(w, "%s: bad number", key);
		v->kind = VALUE_INT;
		*p = end;
		return 0;
	}
	if (*s == '[') {
		/* A list of strings on this one line: [ "a", 'b' ]. */
		g_autoptr(GPtrArray) items = g_ptr_array_new_with_free_func(g_free);

		s++;
		for (;;) {
			const char *end;

			while (*s == ' ' || *s == '\t')
				s++;
			if (*s == ']' && items->len == 0)
				break;
			if (*s != '"' && *s != '\'')
				return conf_err(w, "%s: expected a string in quotes in the list", key);
			end = strchr(s + 1, *s);
			if (!end)
				return conf_err(w, "%s: string without its closing %c", key, *s);
			g_ptr_array_add(items, g_strndup(s + 1, end - s - 1));
			s = end + 1;
			while (*s == ' ' || *s == '\t')
				s++;
			if (*s == ',') {
				s++;
				continue;
			}
			if (*s == ']')
				break;
			return conf_err(w, "%s: expected ',' or ']' in the list (a list stays on one line)",
					key);
		}
		g_ptr_array_add(items, NULL);
		v->kind = VALUE_LIST;
		v->list = (char **)g_ptr_array_free(g_steal_pointer(&items), FALSE);
		*p = s + 1;
		return 0;
	}
	return conf_err(w, "%s: expected a value (a string in quotes or a number)", key);
}

/* One line (NUL-terminated, no newline).  Duplicate keys are refused:
 * which one would win is not obvious to whoever reads the file. */
static int parse_line(struct daemon_conf *conf, const struct where *w, char *line,
		      GHashTable *seen)
{
	const char *p = line;
	g_autofree char *key = NULL;
	struct value v = { 0 };
	const char *start;
	int rc;

	while (g_ascii_isspace(*p))
		p++;
	if (!*p || *p == '#')
		return 0;
	start = p;
	if (!g_ascii_isalpha(*p) && *p != '_')
		return conf_err(w, "expected 'key = value'");
	while (g_ascii_isalnum(*p) || *p == '_' || *p == '.')
		p++;
	key = g_strndup(start, p - start);
	while (*p == ' ' || *p == '\t')
		p++;
	if (*p != '=')
		return conf_err(w, "%s: expected '=' after the key", key);
	p++;
	while (*p == ' ' || *p == '\t')
		p++;
	if (parse_value(w, key, &p, &v) < 0)
		return -1;
	while (*p == ' ' || *p == '\t' || *p == '\r')
		p++;
	if (*p && *p != '#') {
		g_free(v.str);
		g_strfreev(v.list);
		return conf_err(w, "%s: unexpected text after the value: '%s'", key, p);
	}
	if (g_hash_table_contains(seen, key)) {
		g_free(v.str);
		g_strfreev(v.list);
		return conf_err(w, "%s: set a second time (line %u)", key,
				GPOINTER_TO_UINT(g_hash_table_lookup(seen, key)));
	}
	g_hash_table_insert(seen, g_strdup(key), GUINT_TO_POINTER(w->line));
	rc = apply(conf, w, key, &v);
	g_free(v.str);
	g_strfreev(v.list);
	return rc;
}

int daemon_conf_load(struct daemon_conf *conf, const char *path, bool must_exist)
{
	g_autoptr(GHashTable) seen = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
	g_autoptr(GError) gerr = NULL;
	g_autofree char *text = NULL;
	struct where w = { .path = path };
	gsize len;
	char *line, *next;

	if (!g_file_test(path, G_FILE_TEST_EXISTS) && !must_exist)
		return 0;
	if (!g_file_get_contents(path, &text, &len, &gerr)) {
		pr_err("cannot read configuration file %s: %s", path, gerr->message);
		return -1;
	}
	if (len > CONF_SIZE_MAX || strlen(text) != len) {
		pr_err("%s: not a configuration file (%s)", path,
		       len > CONF_SIZE_MAX ? "over 1 MiB" : "contains NUL bytes");
		return -1;
	}
	for (line = text; line; line = next) {
		next = strchr(line, '\n');
		if (next)
			*next++ = '\0';
		w.line++;
		if (parse_line(conf, &w, line, seen) < 0)
			return -1;
	}
	pr_debug("read configuration file %s", path);
	return 0;
}
