#include <ctype.h>
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <json-c/json.h>

#include "config.h"
#include "util.h"

struct cfg_ctx {
	char *err;
	size_t errlen;
};

static int cfg_error(struct cfg_ctx *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static int cfg_error(struct cfg_ctx *c, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(c->err, c->errlen, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

static int get_string(struct cfg_ctx *c, struct json_object *v,
		      const char *key, char **out)
{
	if (!json_object_is_type(v, json_type_string))
		return cfg_error(c, "'%s' must be a string", key);
	free(*out);
	*out = strdup(json_object_get_string(v));
	return *out ? 0 : -ENOMEM;
}

static int get_memory(struct cfg_ctx *c, struct json_object *v,
		      struct vm_config *cfg)
{
	const char *s;
	int64_t n;

	if (json_object_is_type(v, json_type_int)) {
		n = json_object_get_int64(v);
		if (n <= 0)
			return cfg_error(c, "memory must be positive, e.g. 512M");
		cfg->memory = n;
	} else if (json_object_is_type(v, json_type_string)) {
		s = json_object_get_string(v);
		if (parse_size(s, &cfg->memory))
			return cfg_error(c, "memory size '%s' is not valid: use a number with an optional K, M, G or T suffix, e.g. 512M", s);
	} else {
		return cfg_error(c, "memory must be a size such as \"512M\" or a number of bytes");
	}
	if (cfg->memory < KVMM_MIN_MEMORY)
		return cfg_error(c, "memory size %llu bytes is too small: give the guest at least %lluM",
				 (unsigned long long)cfg->memory, VM_MIN_MEMORY / MiB);
	if (cfg->memory > KVMM_MAX_MEMORY)
		return cfg_error(c, "memory size %llu bytes is more than kvmm supports: give the guest at most %lluT",
				 (unsigned long long)cfg->memory, VM_MAX_MEMORY / (1024 * GiB));
	if (cfg->memory % VM_MEMORY_ALIGN)
		return cfg_error(c, "memory size %llu bytes is not a multiple of %lluK",
				 (unsigned long long)cfg->memory, VM_MEMORY_ALIGN / KiB);
	return 0;
}

static int get_count(struct cfg_ctx *c, struct json_object *v, const char *key,
		     const char *flag, unsigned int *out)
{
	int64_t n;
	char *end;

	if (json_object_is_type(v, json_type_int)) {
		n = json_object_get_int64(v);
	} else if (json_object_is_type(v, json_type_string)) {
		n = strtoll(json_object_get_string(v), &end, 10);
		if (!*json_object_get_string(v) || *end)
			return cfg_error(c, "%s '%s' is not a number: use e.g. --%s 2",
					 key, json_object_get_string(v), flag);
	} else {
		return cfg_error(c, "%s must be a number", key);
	}
	if (n < 1 || n > KVMM_MAX_CPUS)
		return cfg_error(c, "%s %lld is out of range: use a count from 1 to %d",
				 key, (long long)n, KVMM_MAX_CPUS);
	*out = n;
	return 0;
}

static const char *const serial_names[] = {
	[SERIAL_NONE] = "none", [SERIAL_STDIO] = "stdio", [SERIAL_PTY] = "pty",
	[SERIAL_FILE] = "file", [SERIAL_UNIX] = "unix",
};

const char *serial_mode_name(enum serial_mode mode)
{
	return serial_names[mode];
}

/* "log": {"path": FILE, "append": true|false}: a copy of the guest's
 * output, appended to FILE or (append false, the default) written over
 * it at start. */
static int get_chardev_log(struct cfg_ctx *c, struct json_object *v, const char *key,
			   struct serial_config *sc)
{
	struct json_object *p, *a;

	if (!json_object_is_type(v, json_type_object) ||
	    !json_object_object_get_ex(v, "path", &p) || !json_object_is_type(p, json_type_string) ||
	    !*json_object_get_string(p))
		return cfg_error(c, "%s.log must be an object {\"path\": FILE, \"append\": true|false}", key);
	json_object_object_foreach(v, k, val) {
		if (!strcmp(k, "max_size")) {
			if (!json_object_is_type(val, json_type_int) || json_object_get_int64(val) < 1)
				return cfg_error(c, "%s.log.max_size must be a positive number of bytes", key);
			sc->log_max = json_object_get_int64(val);
		} else if (strcmp(k, "path") && strcmp(k, "append")) {
			return cfg_error(c, "%s.log: unknown key '%s': use path, append and max_size", key, k);
		}
	}
	if (json_object_object_get_ex(v, "append", &a)) {
		if (!json_object_is_type(a, json_type_boolean))
			return cfg_error(c, "%s.log.append must be true or false", key);
		sc->log_append = json_object_get_boolean(a);
	}
	free(sc->log);
	sc->log = strdup(json_object_get_string(p));
	return sc->log ? 0 : -ENOMEM;
}

/* "stdio" | "pty" | "none" | "file:PATH" | "unix:PATH", or an object
 * {"mode": ..., "path": ...}.  key ("serial", "console") names the
 * option in messages: both take the same backends. */
static int get_chardev(struct cfg_ctx *c, struct json_object *v,
		       const char *key, struct serial_config *sc)
{
	struct json_object *m, *p = NULL, *l = NULL;
	const char *mode, *path = NULL, *colon;
	char buf[16];
	size_t i;

	if (json_object_is_type(v, json_type_object)) {
		if (!json_object_object_get_ex(v, "mode", &m) ||
		    !json_object_is_type(m, json_type_string))
			return cfg_error(c, "%s.mode must be one of stdio, pty, file, unix, none", key);
		mode = json_object_get_string(m);
		if (json_object_object_get_ex(v, "path", &p)) {
			if (!json_object_is_type(p, json_type_string))
				return cfg_error(c, "%s.path must be a string", key);
			path = json_object_get_string(p);
		}
		json_object_object_foreach(v, k, val) {
			(void)val;
			if (strcmp(k, "mode") && strcmp(k, "path") && strcmp(k, "log"))
				return cfg_error(c, "%s: unknown key '%s': use mode, path and log", key, k);
		}
		json_object_object_get_ex(v, "log", &l);
	} else if (json_object_is_type(v, json_type_string)) {
		mode = json_object_get_string(v);
		colon = strchr(mode, ':');
		if (colon) {
			snprintf(buf, sizeof(buf), "%.*s",
				 (int)MIN((size_t)(colon - mode), sizeof(buf) - 1), mode);
			path = colon + 1;
			mode = buf;
		}
	} else {
		return cfg_error(c, "%s must be a string such as \"stdio\" or \"file:PATH\"", key);
	}
	for (i = 0; i < ARRAY_SIZE(serial_names); i++)
		if (!strcmp(mode, serial_names[i]))
			break;
	if (i == ARRAY_SIZE(serial_names))
		return cfg_error(c, "%s backend '%s' is unknown: use stdio, pty, file:PATH, unix:PATH or none", key, mode);
	sc->mode = i;
	free(sc->path);
	sc->path = NULL;
	if (i == SERIAL_FILE || i == SERIAL_UNIX) {
		if (!path || !*path)
			return cfg_error(c, "%s backend '%s' needs a path: use %s:PATH", key, mode, mode);
		sc->path = strdup(path);
		if (!sc->path)
			return -ENOMEM;
	} else if (path) {
		return cfg_error(c, "%s backend '%s' takes no path", key, mode);
	}
	return l ? get_chardev_log(c, l, key, sc) : 0;
}

/* The serial console and the virtio console are two host ends: they
 * cannot both own stdin, nor listen on one socket. */
static int check_consoles(struct cfg_ctx *c, const struct vm_config *cfg)
{
	if (!cfg->has_console)
		return 0;
	if (cfg->serial.mode == SERIAL_STDIO && cfg->console.mode == SERIAL_STDIO)
		return cfg_error(c, "serial and console cannot both use stdio: give the serial port another backend, e.g. --serial none");
	if (cfg->serial.mode == SERIAL_UNIX && cfg->console.mode == SERIAL_UNIX &&
	    !strcmp(cfg->serial.path, cfg->console.path))
		return cfg_error(c, "serial and console cannot share the socket %s: give each its own path",
				 cfg->console.path);
	return 0;
}

static int get_bool(struct cfg_ctx *c, struct json_object *v,
		    const char *key, bool *out)
{
	if (!json_object_is_type(v, json_type_boolean))
		return cfg_error(c, "'%s' must be true or false", key);
	*out = json_object_get_boolean(v);
	return 0;
}

static const char *const cache_names[] = {
	[DISK_CACHE_WRITEBACK] = "writeback", [DISK_CACHE_NONE] = "none",
	[DISK_CACHE_UNSAFE] = "unsafe", [DISK_CACHE_WRITETHROUGH] = "writethrough",
	[DISK_CACHE_DIRECTSYNC] = "directsync",
};

const char *disk_cache_name(enum disk_cache cache)
{
	return cache_names[cache];
}

static const char *const error_policy_names[] = {
	[DISK_ERROR_DEFAULT] = "default", [DISK_ERROR_REPORT] = "report",
	[DISK_ERROR_IGNORE] = "ignore", [DISK_ERROR_STOP] = "stop",
	[DISK_ERROR_ENOSPACE] = "enospace",
};

const char *disk_error_policy_name(enum disk_error_policy p)
{
	return error_policy_names[p];
}

static const char *const format_names[] = {
	[DISK_FORMAT_RAW] = "raw", [DISK_FORMAT_QCOW2] = "qcow2",
};

const char *disk_format_name(enum disk_format format)
{
	return format_names[format];
}

static int format_of(struct cfg_ctx *c, unsigned int n, const char *str,
		     enum disk_format *format)
{
	size_t i;

	for (i = 0; i < ARRAY_SIZE(format_names); i++)
		if (!strcmp(str, format_names[i])) {
			*format = i;
			return 0;
		}
	return cfg_error(c, "disk %u: format '%s' is unknown: use raw or qcow2", n, str);
}

/* backing / backing_format: a JSON array of strings, or one string
 * with the layers separated by ':'. */
static int disk_set_chain(struct cfg_ctx *c, struct disk_config *d, unsigned int n,
			  const char *key, struct json_object *v, const char *str)
{
	bool fmt = !strcmp(key, "backing_format");
	unsigned int *count = fmt ? &d->nbacking_format : &d->nbacking;
	const char *items[KVMM_MAX_BACKING + 1];
	char *s = NULL, *save = NULL, *tok;
	size_t i, k = 0;
	int r = 0;

	if (v && json_object_is_type(v, json_type_array)) {
		for (i = 0; i < json_object_array_length(v); i++) {
			struct json_object *e = json_object_array_get_idx(v, i);

			if (!json_object_is_type(e, json_type_string))
				return cfg_error(c, "disk %u: %s must hold strings", n, key);
			if (k == KVMM_MAX_BACKING)
				return cfg_error(c, "disk %u: %s has more than %d layers", n, key, KVMM_MAX_BACKING);
			items[k++] = json_object_get_string(e);
		}
	} else {
		if (v && !json_object_is_type(v, json_type_string))
			return cfg_error(c, "disk %u: %s must be a string or an array of strings", n, key);
		s = strdup(v ? json_object_get_string(v) : str);
		if (!s)
			return -ENOMEM;
		for (tok = strtok_r(s, ":", &save); tok; tok = strtok_r(NULL, ":", &save)) {
			if (k == KVMM_MAX_BACKING) {
				free(s);
				return cfg_error(c, "disk %u: %s has more than %d layers", n, key, KVMM_MAX_BACKING);
			}
			items[k++] = tok;
		}
	}
	for (i = 0; i < *count && !fmt; i++)
		free(d->backing[i]);
	*count = 0;
	for (i = 0; i < k && !r; i++) {
		if (!*items[i])
			r = cfg_error(c, "disk %u: %s has an empty layer", n, key);
		else if (fmt)
			r = format_of(c, n, items[i], &d->backing_format[i]);
		else if (!(d->backing[i] = strdup(items[i])))
			r = -ENOMEM;
		if (!r)
			*count = i + 1;
	}
	free(s);
	return r;
}

static int disk_set(struct cfg_ctx *c, struct disk_config *d, unsigned int n,
		    const char *key, struct json_object *v, const char *str)
{
	size_t i;

	if (!strcmp(key, "format")) {
		if (v && !json_object_is_type(v, json_type_string))
			return cfg_error(c, "disk %u: format must be a string", n);
		return format_of(c, n, v ? json_object_get_string(v) : str, &d->format);
	}
	if (!strcmp(key, "backing") || !strcmp(key, "backing_format"))
		return disk_set_chain(c, d, n, key, v, str);

	if (!strcmp(key, "path")) {
		if (v && !json_object_is_type(v, json_type_string))
			return cfg_error(c, "disk %u: path must be a string", n);
		str = v ? json_object_get_string(v) : str;
		if (!*str)
			return cfg_error(c, "disk %u: path is empty: use path=IMAGE", n);
		free(d->path);
		d->path = strdup(str);
		return d->path ? 0 : -ENOMEM;
	}
	if (!strcmp(key, "readonly")) {
		if (v) {
			if (!json_object_is_type(v, json_type_boolean))
				return cfg_error(c, "disk %u: readonly must be true or false", n);
			d->readonly = json_object_get_boolean(v);
		} else if (!strcmp(str, "on") || !strcmp(str, "off")) {
			d->readonly = !strcmp(str, "on");
		} else {
			return cfg_error(c, "disk %u: readonly=%s is not valid: use readonly=on or readonly=off", n, str);
		}
		return 0;
	}
	if (!strcmp(key, "cache")) {
		if (v && !json_object_is_type(v, json_type_string))
			return cfg_error(c, "disk %u: cache must be a string", n);
		str = v ? json_object_get_string(v) : str;
		for (i = 0; i < ARRAY_SIZE(cache_names); i++)
			if (!strcmp(str, cache_names[i]))
				break;
		if (i == ARRAY_SIZE(cache_names))
			return cfg_error(c, "disk %u: cache mode '%s' is unknown: use none, writeback, writethrough, directsync or unsafe", n, str);
		d->cache = i;
		return 0;
	}
	if (!strcmp(key, "error_policy") || !strcmp(key, "rerror_policy")) {
		if (v && !json_object_is_type(v, json_type_string))
			return cfg_error(c, "disk %u: %s must be a string", n, key);
		str = v ? json_object_get_string(v) : str;
		/* "default" is not a name to give: leaving the key out is. */
		for (i = DISK_ERROR_REPORT; i < ARRAY_SIZE(error_policy_names); i++)
			if (!strcmp(str, error_policy_names[i]))
				break;
		if (i == ARRAY_SIZE(error_policy_names))
			return cfg_error(c, "disk %u: %s '%s' is unknown: use stop, report, ignore or enospace",
					 n, key, str);
		*(key[0] == 'e' ? &d->werror : &d->rerror) = i;
		return 0;
	}
	if (!strcmp(key, "serial")) {
		if (v && !json_object_is_type(v, json_type_string))
			return cfg_error(c, "disk %u: serial must be a string", n);
		str = v ? json_object_get_string(v) : str;
		if (strlen(str) > KVMM_DISK_SERIAL_MAX)
			return cfg_error(c, "disk %u: serial '%s' is longer than %d bytes: shorten it", n, str,
					 KVMM_DISK_SERIAL_MAX);
		free(d->serial);
		d->serial = strdup(str);
		return d->serial ? 0 : -ENOMEM;
	}
	if (!strcmp(key, "blk_size")) {
		int64_t bs;
		char *end = NULL;

		if (v && !json_object_is_type(v, json_type_int))
			return cfg_error(c, "disk %u: blk_size must be a number", n);
		bs = v ? json_object_get_int64(v) : strtoll(str, &end, 10);
		if ((end && (*end || end == str)) || bs < 512 || bs > 4096 || (bs & (bs - 1)))
			return cfg_error(c, "disk %u: blk_size %s is not valid: use 512, 1024, 2048 or 4096", n,
					 v ? json_object_get_string(v) : str);
		d->blk_size = bs;
		return 0;
	}
	if (!strcmp(key, "shareable")) {
		if (v) {
			if (!json_object_is_type(v, json_type_boolean))
				return cfg_error(c, "disk %u: shareable must be true or false", n);
			d->shareable = json_object_get_boolean(v);
		} else if (!strcmp(str, "on") || !strcmp(str, "off")) {
			d->shareable = !strcmp(str, "on");
		} else {
			return cfg_error(c, "disk %u: shareable=%s is not valid: use shareable=on or shareable=off", n, str);
		}
		return 0;
	}
	return cfg_error(c, "disk %u: unknown option '%s': use path, format, backing, backing_format, readonly, cache, error_policy, rerror_policy, serial, blk_size or shareable", n, key);
}

typedef int (*item_set_fn)(struct cfg_ctx *c, void *item, unsigned int n,
			   const char *key, struct json_object *v, const char *str);

/* "key=value,key=value" (what --disk and --net take), or the same as an
 * object; set() applies each option.  what names the item in messages
 * ("disk", "net") and example shows the string form. */
static int get_options(struct cfg_ctx *c, struct json_object *v, void *item,
		       unsigned int n, item_set_fn set, const char *what,
		       const char *example)
{
	int r = 0;

	if (json_object_is_type(v, json_type_object)) {
		json_object_object_foreach(v, key, val) {
			r = set(c, item, n, key, val, NULL);
			if (r)
				return r;
		}
	} else if (json_object_is_type(v, json_type_string)) {
		char *s = strdup(json_object_get_string(v)), *save = NULL, *opt, *eq;

		if (!s)
			return -ENOMEM;
		for (opt = strtok_r(s, ",", &save); opt && !r;
		     opt = strtok_r(NULL, ",", &save)) {
			eq = strchr(opt, '=');
			if (!eq)
				r = cfg_error(c, "%s %u: option '%s' has no value: use e.g. %s", what, n, opt, example);
			else {
				*eq = '\0';
				r = set(c, item, n, opt, NULL, eq + 1);
			}
		}
		free(s);
	} else {
		r = cfg_error(c, "%s %u must be a string such as \"%s\" or an object", what, n, example);
	}
	return r;
}

static int disk_set_item(struct cfg_ctx *c, void *item, unsigned int n,
			 const char *key, struct json_object *v, const char *str)
{
	return disk_set(c, item, n, key, v, str);
}

/* "path=IMG,readonly=on,cache=none,serial=ID" (what --disk takes), or
 * the same as an object.  Paths with commas need the object form. */
static int get_disk(struct cfg_ctx *c, struct json_object *v,
		    struct disk_config *d, unsigned int n)
{
	int r;

	d->blk_size = 512;
	r = get_options(c, v, d, n, disk_set_item, "disk", "path=IMAGE,readonly=on");
	if (r)
		return r;
	if (!d->path)
		return cfg_error(c, "disk %u has no path: use --disk path=IMAGE", n);
	if (d->nbacking && d->format == DISK_FORMAT_RAW)
		return cfg_error(c, "disk %u: a raw image has no backing file: give format=qcow2 or drop backing", n);
	if (d->nbacking_format > d->nbacking)
		return cfg_error(c, "disk %u: backing_format names %u layers but backing only %u", n,
				 d->nbacking_format, d->nbacking);
	return 0;
}

/* "hugepages": the size of the host's hugetlb pages guest RAM comes
 * from, "2M" or "1G" (a number of bytes also does). */
static int get_hugepages(struct cfg_ctx *c, struct json_object *v, struct vm_config *cfg)
{
	uint64_t n;

	if (json_object_is_type(v, json_type_int) && json_object_get_int64(v) >= 0)
		n = json_object_get_int64(v);
	else if (!json_object_is_type(v, json_type_string) ||
		 parse_size(json_object_get_string(v), &n))
		return cfg_error(c, "hugepages must be a huge page size such as \"2M\" or \"1G\"");
	/* Whether the host has a pool of this size is known at start. */
	if (n < 2 * MiB || (n & (n - 1)))
		return cfg_error(c, "hugepages size %llu bytes is not a huge page size: use 2M or 1G",
				 (unsigned long long)n);
	cfg->hugepages = n;
	return 0;
}

/* --- balloon ----------------------------------------------------------- */

static int balloon_bool(struct cfg_ctx *c, const char *key, struct json_object *v,
			const char *str, bool *out)
{
	if (v) {
		if (!json_object_is_type(v, json_type_boolean))
			return cfg_error(c, "balloon: %s must be true or false", key);
		*out = json_object_get_boolean(v);
	} else if (!strcmp(str, "on") || !strcmp(str, "off")) {
		*out = !strcmp(str, "on");
	} else {
		return cfg_error(c, "balloon: %s=%s is not valid: use %s=on or %s=off", key, str, key, key);
	}
	return 0;
}

static int balloon_set_item(struct cfg_ctx *c, void *item, unsigned int n,
			    const char *key, struct json_object *v, const char *str)
{
	struct balloon_config *b = item;

	if (!strcmp(key, "deflate_on_oom"))
		return balloon_bool(c, key, v, str, &b->deflate_on_oom);
	if (!strcmp(key, "free_page_reporting"))
		return balloon_bool(c, key, v, str, &b->free_page_reporting);
	if (!strcmp(key, "stats_period")) {
		int64_t s;
		char *end = NULL;

		if (v && !json_object_is_type(v, json_type_int))
			return cfg_error(c, "balloon: stats_period must be a number of seconds");
		s = v ? json_object_get_int64(v) : strtoll(str, &end, 10);
		if ((end && (*end || end == str)) || s < 0 || s > KVMM_BALLOON_MAX_PERIOD)
			return cfg_error(c, "balloon: stats_period %s is not valid: use 0 (off) to %d seconds",
					 v ? json_object_get_string(v) : str, KVMM_BALLOON_MAX_PERIOD);
		b->stats_period = s;
		return 0;
	}
	return cfg_error(c, "balloon: unknown option '%s': use deflate_on_oom, free_page_reporting or stats_period",
			 key);
}

/* true, "deflate_on_oom=on,free_page_reporting=on,stats_period=5" (what
 * --balloon takes; "" for none), or the same as an object. */
static int get_balloon(struct cfg_ctx *c, struct json_object *v, struct balloon_config *b)
{
	memset(b, 0, sizeof(*b));
	if (json_object_is_type(v, json_type_boolean)) {
		b->present = json_object_get_boolean(v);
		return 0;
	}
	b->present = true;
	return get_options(c, v, b, 0, balloon_set_item, "balloon",
			   "deflate_on_oom=on,free_page_reporting=on,stats_period=5");
}

/* A user or group: a number, or a name looked up in the host's
 * passwd/group (--uid nobody). */
static int get_id(struct cfg_ctx *c, struct json_object *v, bool group,
		  unsigned int *out)
{
	const char *what = group ? "sandbox gid" : "sandbox uid";
	const char *s;
	char *end;
	long long n;

	if (json_object_is_type(v, json_type_int)) {
		n = json_object_get_int64(v);
	} else if (json_object_is_type(v, json_type_string)) {
		s = json_object_get_string(v);
		errno = 0;
		n = strtoll(s, &end, 10);
		if (!*s || *end || errno) {
			struct passwd *pw = group ? NULL : getpwnam(s);
			struct group *gr = group ? getgrnam(s) : NULL;

			if (!pw && !gr)
				return cfg_error(c, "%s '%s' is not a number nor a known %s name",
						 what, s, group ? "group" : "user");
			n = pw ? (long long)pw->pw_uid : (long long)gr->gr_gid;
		}
	} else {
		return cfg_error(c, "'%s' must be a number or a name", what);
	}
	/* Sandboxed as root would keep root's files writable: refused. */
	if (n <= 0 || n >= 0xffffffffLL)
		return cfg_error(c, "%s %lld is not valid: give an unprivileged %s (not 0), e.g. nobody",
				 what, n, group ? "group" : "user");
	*out = n;
	return 0;
}

static int get_sandbox(struct cfg_ctx *c, struct json_object *v, struct sandbox_config *sb)
{
	int r = 0;

	memset(sb, 0, sizeof(*sb));
	if (json_object_is_type(v, json_type_boolean)) {
		sb->enabled = json_object_get_boolean(v);
		return 0;
	}
	if (!json_object_is_type(v, json_type_object))
		return cfg_error(c, "sandbox must be true, false or an object {\"uid\", \"gid\", \"log\"}");
	sb->enabled = true;
	json_object_object_foreach(v, key, val) {
		if (!strcmp(key, "uid")) {
			r = get_id(c, val, false, &sb->uid);
			sb->has_uid = true;
		} else if (!strcmp(key, "gid")) {
			r = get_id(c, val, true, &sb->gid);
			sb->has_gid = true;
		} else if (!strcmp(key, "log")) {
			r = get_bool(c, val, "sandbox log", &sb->log);
		} else {
			r = cfg_error(c, "sandbox: unknown key '%s': use uid, gid or log", key);
		}
		if (r)
			return r;
	}
	return 0;
}

static int get_disks(struct cfg_ctx *c, struct json_object *v,
		     struct vm_config *cfg)
{
	size_t i, n;
	int r;

	if (!json_object_is_type(v, json_type_array))
		return cfg_error(c, "disks must be an array of disks");
	n = json_object_array_length(v);
	if (n > KVMM_MAX_DISKS)
		return cfg_error(c, "%zu disks given: kvmm supports at most %d", n, KVMM_MAX_DISKS);
	for (i = 0; i < n; i++) {
		cfg->ndisks = i + 1;
		r = get_disk(c, json_object_array_get_idx(v, i), &cfg->disks[i], i);
		if (r)
			return r;
	}
	return 0;
}

static int hex_digit(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	ch = tolower((unsigned char)ch);
	return ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
}

/* "52:54:00:12:34:56": six hex bytes, a unicast address. */
static bool parse_mac(const char *s, uint8_t mac[6])
{
	unsigned int i;

	for (i = 0; i < 6; i++, s += 3) {
		int hi = hex_digit(s[0]), lo = hi < 0 ? -1 : hex_digit(s[1]);

		if (lo < 0 || s[2] != (i < 5 ? ':' : '\0'))
			return false;
		mac[i] = hi << 4 | lo;
	}
	/* multicast bit set, or all zero: no NIC may have it */
	return !(mac[0] & 1) && (mac[0] | mac[1] | mac[2] | mac[3] | mac[4] | mac[5]);
}

static int net_set(struct cfg_ctx *c, void *item, unsigned int n,
		   const char *key, struct json_object *v, const char *str)
{
	struct net_config *nc = item;

	if (!strcmp(key, "tap")) {
		if (v && !json_object_is_type(v, json_type_string))
			return cfg_error(c, "net %u: tap must be a string", n);
		str = v ? json_object_get_string(v) : str;
		if (!vm_tap_name_valid(str))
			return cfg_error(c, "net %u: tap name '%s' is not valid: use 1 to 15 characters without '/', ':' or spaces", n, str);
		free(nc->tap);
		nc->tap = strdup(str);
		return nc->tap ? 0 : -ENOMEM;
	}
	if (!strcmp(key, "fd")) {
		int64_t fd;
		char *end = NULL;

		if (v && !json_object_is_type(v, json_type_int))
			return cfg_error(c, "net %u: fd must be a number", n);
		fd = v ? json_object_get_int64(v) : strtoll(str, &end, 10);
		if ((end && (*end || end == str)) || fd < 0 || fd > INT32_MAX)
			return cfg_error(c, "net %u: fd %s is not valid: give the number of an open tap file descriptor", n,
					 v ? json_object_get_string(v) : str);
		nc->fd = fd;
		return 0;
	}
	if (!strcmp(key, "mac")) {
		if (v && !json_object_is_type(v, json_type_string))
			return cfg_error(c, "net %u: mac must be a string", n);
		str = v ? json_object_get_string(v) : str;
		if (!parse_mac(str, nc->mac))
			return cfg_error(c, "net %u: mac '%s' is not valid: use six hex bytes of a unicast address, e.g. 52:54:00:12:34:56", n, str);
		nc->has_mac = true;
		return 0;
	}
	if (!strcmp(key, "mtu")) {
		int64_t mtu;
		char *end = NULL;

		if (v && !json_object_is_type(v, json_type_int))
			return cfg_error(c, "net %u: mtu must be a number", n);
		mtu = v ? json_object_get_int64(v) : strtoll(str, &end, 10);
		if ((end && (*end || end == str)) || mtu < KVMM_NET_MTU_MIN || mtu > KVMM_NET_MTU_MAX)
			return cfg_error(c, "net %u: mtu %s is not valid: use %d to %d", n,
					 v ? json_object_get_string(v) : str, KVMM_NET_MTU_MIN, KVMM_NET_MTU_MAX);
		nc->mtu = mtu;
		return 0;
	}
	return cfg_error(c, "net %u: unknown option '%s': use tap, fd, mac or mtu", n, key);
}

/* "tap=NAME,mac=52:54:00:12:34:56" or "fd=N,mac=..." (what --net
 * takes), or the same as an object. */
static int get_net(struct cfg_ctx *c, struct json_object *v,
		   struct net_config *nc, unsigned int n)
{
	int r;

	nc->fd = -1;
	r = get_options(c, v, nc, n, net_set, "net", "tap=NAME,mac=52:54:00:12:34:56");
	if (r)
		return r;
	if (!nc->tap == (nc->fd < 0))
		return cfg_error(c, "net %u needs exactly one of tap and fd: use --net tap=NAME or --net fd=N", n);
	return 0;
}

static int get_nets(struct cfg_ctx *c, struct json_object *v,
		    struct vm_config *cfg)
{
	size_t i, j, n;
	int r;

	if (!json_object_is_type(v, json_type_array))
		return cfg_error(c, "nets must be an array of NICs");
	n = json_object_array_length(v);
	if (n > KVMM_MAX_NETS)
		return cfg_error(c, "%zu NICs given: kvmm supports at most %d", n, KVMM_MAX_NETS);
	for (i = 0; i < n; i++) {
		struct net_config *nc = &cfg->nets[i];

		cfg->nnets = i + 1;
		r = get_net(c, json_object_array_get_idx(v, i), nc, i);
		if (r)
			return r;
		for (j = 0; j < i; j++) {
			const struct net_config *o = &cfg->nets[j];

			if (nc->tap && o->tap && !strcmp(nc->tap, o->tap))
				return cfg_error(c, "net %zu: tap '%s' is given twice: give each NIC its own tap", i, nc->tap);
			if (nc->fd >= 0 && nc->fd == o->fd)
				return cfg_error(c, "net %zu: fd %d is given twice: give each NIC its own tap", i, nc->fd);
			if (nc->has_mac && o->has_mac && !memcmp(nc->mac, o->mac, 6))
				return cfg_error(c, "net %zu: its mac is the one net %zu has: give each NIC its own", i, j);
		}
	}
	return 0;
}

/* "hotplug": [{"type": "blk" or "net", "id", "slot", the device's keys}],
 * the devices a saved VM had hot-added, as the save wrote them. */
static int get_hotplug(struct cfg_ctx *c, struct json_object *v, struct vm_config *cfg)
{
	size_t i, j, n;
	int r;

	if (!json_object_is_type(v, json_type_array))
		return cfg_error(c, "hotplug must be an array of devices");
	n = json_object_array_length(v);
	if (n > KVMM_MAX_HOTPLUG)
		return cfg_error(c, "%zu hot-added devices given: kvmm supports at most %d", n, KVMM_MAX_HOTPLUG);
	for (i = 0; i < n; i++) {
		struct json_object *e = json_object_array_get_idx(v, i), *tv, *iv, *sv, *opts;
		struct hotplug_config *h = &cfg->hotplug[i];
		const char *type, *id;
		int64_t slot;

		cfg->nhotplug = i + 1;
		h->net.fd = -1;
		if (!json_object_is_type(e, json_type_object) ||
		    !json_object_object_get_ex(e, "type", &tv) || !json_object_is_type(tv, json_type_string) ||
		    !json_object_object_get_ex(e, "id", &iv) || !json_object_is_type(iv, json_type_string) ||
		    !json_object_object_get_ex(e, "slot", &sv) || !json_object_is_type(sv, json_type_int))
			return cfg_error(c, "hotplug %zu must be {\"type\": \"blk\" or \"net\", \"id\", \"slot\", and the device's keys}", i);
		type = json_object_get_string(tv);
		id = json_object_get_string(iv);
		slot = json_object_get_int64(sv);
		if (!*id || strlen(id) >= KVMM_HOTPLUG_ID_MAX)
			return cfg_error(c, "hotplug %zu: id must be 1 to %d characters", i, KVMM_HOTPLUG_ID_MAX - 1);
		/* Slot 0 is the host bridge's; bus 0 has 32. */
		if (slot < 1 || slot > 31)
			return cfg_error(c, "hotplug %zu: slot %lld is out of range: use 1 to 31", i, (long long)slot);
		snprintf(h->id, sizeof(h->id), "%s", id);
		h->slot = slot;
		for (j = 0; j < i; j++)
			if (!strcmp(cfg->hotplug[j].id, h->id) || cfg->hotplug[j].slot == h->slot)
				return cfg_error(c, "hotplug %zu: its id or slot is hotplug %zu's", i, j);
		opts = json_object_new_object();
		if (!opts)
			return -ENOMEM;
		json_object_object_foreach(e, key, val) {
			if (strcmp(key, "type") && strcmp(key, "id") && strcmp(key, "slot"))
				json_object_object_add(opts, key, json_object_get(val));
		}
		h->opts = opts;
		if (!strcmp(type, "blk")) {
			h->type = HOTPLUG_BLK;
			r = get_disk(c, opts, &h->disk, cfg->ndisks + i);
		} else if (!strcmp(type, "net")) {
			h->type = HOTPLUG_NET;
			r = get_net(c, opts, &h->net, cfg->nnets + i);
		} else {
			r = cfg_error(c, "hotplug %zu: type '%s' is unknown: use blk or net", i, type);
		}
		if (r)
			return r;
	}
	return 0;
}

/* "vcpus_present": [ids], the vCPUs a saved VM with vCPU hotplug had. */
static int get_present(struct cfg_ctx *c, struct json_object *v, struct vm_config *cfg)
{
	size_t i;

	if (!json_object_is_type(v, json_type_array))
		return cfg_error(c, "vcpus_present must be an array of vCPU ids");
	memset(cfg->present, 0, sizeof(cfg->present));
	for (i = 0; i < json_object_array_length(v); i++) {
		struct json_object *e = json_object_array_get_idx(v, i);
		int64_t id = json_object_is_type(e, json_type_int) ? json_object_get_int64(e) : -1;

		if (id < 0 || id >= VM_MAX_CPUS)
			return cfg_error(c, "vcpus_present must hold vCPU ids 0 to %d", VM_MAX_CPUS - 1);
		cfg->present[id / 64] |= 1ULL << (id % 64);
	}
	cfg->has_present = true;
	return 0;
}

bool config_cpu_present(const struct vm_config *cfg, unsigned int id)
{
	if (!cfg->has_present)
		return id < cfg->cpus;
	return id < cfg->max_cpus && (cfg->present[id / 64] >> (id % 64) & 1);
}

const char *const smbios_group_names[SMBIOS_GROUPS] = {
	"bios", "system", "baseboard", "chassis",
};
const char *const smbios_field_names[SMBIOS_GROUPS][SMBIOS_MAX_FIELDS + 1] = {
	[SMBIOS_BIOS] = { "vendor", "version", "date", "release" },
	[SMBIOS_SYSTEM] = { "manufacturer", "product", "version", "serial", "uuid", "sku", "family" },
	[SMBIOS_BASEBOARD] = { "manufacturer", "product", "version", "serial", "asset", "location" },
	[SMBIOS_CHASSIS] = { "manufacturer", "version", "serial", "asset", "sku" },
};

/* A string SMBIOS can hold: not empty (index 0 means "none"), bounded. */
static int smbios_string(struct cfg_ctx *c, struct json_object *v, const char *what,
			 char **out)
{
	const char *s;

	if (!json_object_is_type(v, json_type_string))
		return cfg_error(c, "smbios %s must be a string", what);
	s = json_object_get_string(v);
	if (!*s || strlen(s) != (size_t)json_object_get_string_len(v) || strlen(s) > SMBIOS_STRING_MAX)
		return cfg_error(c, "smbios %s must be 1 to %d bytes without NUL", what, SMBIOS_STRING_MAX);
	free(*out);
	*out = strdup(s);
	return *out ? 0 : -ENOMEM;
}

/* 8-4-4-4-12 hex digits. */
static bool parse_uuid(const char *s, uint8_t u[16])
{
	unsigned int i, n = 0;

	for (i = 0; s[i] && n < 32; i++) {
		int d;

		if ((i == 8 || i == 13 || i == 18 || i == 23)) {
			if (s[i] != '-')
				return false;
			continue;
		}
		d = hex_digit(s[i]);
		if (d < 0)
			return false;
		u[n / 2] = n % 2 ? (u[n / 2] | d) : d << 4;
		n++;
	}
	return n == 32 && !s[i] && i == 36;
}

static int get_smbios_group(struct cfg_ctx *c, struct json_object *v, struct smbios_config *sm,
			    int g)
{
	const char *const *names = smbios_field_names[g];
	char what[64];
	int r;

	if (!json_object_is_type(v, json_type_object))
		return cfg_error(c, "smbios.%s must be an object of strings", smbios_group_names[g]);
	json_object_object_foreach(v, key, val) {
		int f;

		for (f = 0; names[f]; f++)
			if (!strcmp(key, names[f]))
				break;
		if (!names[f])
			return cfg_error(c, "smbios.%s: unknown field '%s': see schemas/vm-config.schema.json",
					 smbios_group_names[g], key);
		snprintf(what, sizeof(what), "%s.%s", smbios_group_names[g], key);
		r = smbios_string(c, val, what, &sm->fields[g][f]);
		if (r)
			return r;
	}
	return 0;
}

static int get_smbios(struct cfg_ctx *c, struct json_object *v, struct smbios_config *sm)
{
	const char *s;
	unsigned int major, minor;
	int r, len = -1;

	if (!json_object_is_type(v, json_type_object))
		return cfg_error(c, "smbios must be an object: {\"system\": {\"product\": ...}, ...}");
	sm->present = true;
	json_object_object_foreach(v, key, val) {
		int g;

		for (g = 0; g < SMBIOS_GROUPS; g++)
			if (!strcmp(key, smbios_group_names[g]))
				break;
		if (g < SMBIOS_GROUPS) {
			r = get_smbios_group(c, val, sm, g);
		} else if (!strcmp(key, "oem_strings")) {
			size_t i, n;

			if (!json_object_is_type(val, json_type_array))
				return cfg_error(c, "smbios.oem_strings must be an array of strings");
			n = json_object_array_length(val);
			if (n > SMBIOS_MAX_OEM_STRINGS)
				return cfg_error(c, "smbios.oem_strings has %zu strings: kvmm takes at most %d",
						 n, SMBIOS_MAX_OEM_STRINGS);
			for (i = 0, r = 0; i < n && !r; i++) {
				sm->noem_strings = i + 1;
				r = smbios_string(c, json_object_array_get_idx(val, i), "oem string",
						  &sm->oem_strings[i]);
			}
		} else {
			r = cfg_error(c, "smbios: unknown key '%s': use bios, system, baseboard, chassis or oem_strings", key);
		}
		if (r)
			return r;
	}
	if ((s = sm->fields[SMBIOS_SYSTEM][SMBIOS_SYS_UUID])) {
		if (!parse_uuid(s, sm->uuid))
			return cfg_error(c, "smbios system.uuid '%s' is not a UUID: use 8-4-4-4-12 hex digits", s);
		sm->has_uuid = true;
	}
	if ((s = sm->fields[SMBIOS_BIOS][SMBIOS_BIOS_RELEASE])) {
		if (sscanf(s, "%3u.%3u%n", &major, &minor, &len) != 2 || s[len] || !isdigit((unsigned char)*s) ||
		    major > 255 || minor > 255)
			return cfg_error(c, "smbios bios.release '%s' is not valid: use MAJOR.MINOR, each 0 to 255", s);
		sm->bios_release[0] = major;
		sm->bios_release[1] = minor;
	}
	return 0;
}

int config_from_json(struct json_object *obj, struct vm_config *cfg,
		     char *err, size_t errlen)
{
	struct cfg_ctx c = { err, errlen };
	int r = 0;

	memset(cfg, 0, sizeof(*cfg));
	cfg->memory = 512 * MiB;
	cfg->thp = true;
	cfg->ksm = true;
	cfg->cpus = 1;
	cfg->serial.mode = SERIAL_STDIO;
	if (!json_object_is_type(obj, json_type_object))
		return cfg_error(&c, "the VM configuration must be a JSON object");

	json_object_object_foreach(obj, key, val) {
		if (!strcmp(key, "name"))
			r = get_string(&c, val, key, &cfg->name);
		else if (!strcmp(key, "kernel"))
			r = get_string(&c, val, key, &cfg->kernel);
		else if (!strcmp(key, "initrd"))
			r = get_string(&c, val, key, &cfg->initrd);
		else if (!strcmp(key, "cmdline"))
			r = get_string(&c, val, key, &cfg->cmdline);
		else if (!strcmp(key, "memory"))
			r = get_memory(&c, val, cfg);
		else if (!strcmp(key, "cpus"))
			r = get_count(&c, val, key, "cpus", &cfg->cpus);
		else if (!strcmp(key, "max_cpus"))
			r = get_count(&c, val, key, "max-cpus", &cfg->max_cpus);
		else if (!strcmp(key, "serial"))
			r = get_chardev(&c, val, key, &cfg->serial);
		else if (!strcmp(key, "console")) {
			cfg->has_console = true;
			r = get_chardev(&c, val, key, &cfg->console);
		}
		else if (!strcmp(key, "api_socket"))
			r = get_string(&c, val, key, &cfg->api_socket);
		else if (!strcmp(key, "no_reboot"))
			r = get_bool(&c, val, key, &cfg->no_reboot);
		else if (!strcmp(key, "rng"))
			r = get_bool(&c, val, key, &cfg->rng);
		else if (!strcmp(key, "pvm_compat"))
			r = get_bool(&c, val, key, &cfg->pvm_compat);
		else if (!strcmp(key, "thp"))
			r = get_bool(&c, val, key, &cfg->thp);
		else if (!strcmp(key, "ksm"))
			r = get_bool(&c, val, key, &cfg->ksm);
		else if (!strcmp(key, "locked"))
			r = get_bool(&c, val, key, &cfg->locked);
		else if (!strcmp(key, "hugepages"))
			r = get_hugepages(&c, val, cfg);
		else if (!strcmp(key, "paused"))
			r = get_bool(&c, val, key, &cfg->paused);
		else if (!strcmp(key, "disks"))
			r = get_disks(&c, val, cfg);
		else if (!strcmp(key, "nets"))
			r = get_nets(&c, val, cfg);
		else if (!strcmp(key, "hotplug"))
			r = get_hotplug(&c, val, cfg);
		else if (!strcmp(key, "vcpus_present"))
			r = get_present(&c, val, cfg);
		else if (!strcmp(key, "smbios"))
			r = get_smbios(&c, val, &cfg->smbios);
		else if (!strcmp(key, "vmcoreinfo"))
			r = get_bool(&c, val, key, &cfg->vmcoreinfo);
		else if (!strcmp(key, "balloon"))
			r = get_balloon(&c, val, &cfg->balloon);
		else if (!strcmp(key, "sandbox"))
			r = get_sandbox(&c, val, &cfg->sandbox);
		else
			r = cfg_error(&c, "unknown configuration key '%s': see schemas/vm-config.schema.json", key);
		if (r)
			return r;
	}
	if (!cfg->max_cpus)
		cfg->max_cpus = cfg->cpus;
	if (cfg->max_cpus < cfg->cpus)
		return cfg_error(&c, "max_cpus %u is below cpus %u: the vCPUs the guest may have with hot-added ones include those it boots with",
				 cfg->max_cpus, cfg->cpus);
	if (cfg->has_present) {
		unsigned int i;

		for (i = cfg->max_cpus; i < VM_MAX_CPUS; i++)
			if (cfg->present[i / 64] >> (i % 64) & 1)
				return cfg_error(&c, "vcpus_present names vCPU %u, past max_cpus %u", i, cfg->max_cpus);
		/* The boot CPU is never ejected. */
		if (!(cfg->present[0] & 1))
			return cfg_error(&c, "vcpus_present must hold vCPU 0, the boot CPU");
	}
	if (!cfg->kernel)
		return cfg_error(&c, "no kernel given: use --kernel PATH (a bzImage or an ELF vmlinux)");
	r = check_consoles(&c, cfg);
	if (r)
		return r;
	if (cfg->hugepages && cfg->memory % cfg->hugepages)
		return cfg_error(&c, "memory size %llu MiB is not a multiple of the %llu KiB huge pages: round it to whole huge pages",
				 (unsigned long long)(cfg->memory / MiB),
				 (unsigned long long)(cfg->hugepages / KiB));
	/* A huge page goes back to the host whole or not at all, and the
	 * guest balloons 4 KiB pages: freeing would be rare and partial. */
	if (cfg->hugepages && cfg->balloon.present)
		return cfg_error(&c, "hugepages and balloon cannot be combined: huge-page-backed RAM cannot be returned to the host page by page; drop one");
	if (!cfg->name && !(cfg->name = strdup("kvmm")))
		return -ENOMEM;
	if (!cfg->cmdline && !(cfg->cmdline = strdup("")))
		return -ENOMEM;
	return 0;
}

void config_disk_free(struct disk_config *d)
{
	if (d->has_fd && d->fd >= 0)
		close(d->fd);
	free(d->path);
	free(d->serial);
	for (unsigned int j = 0; j < d->nbacking; j++)
		free(d->backing[j]);
	memset(d, 0, sizeof(*d));
}

void config_net_free(struct net_config *nc)
{
	free(nc->tap);
	memset(nc, 0, sizeof(*nc));
	nc->fd = -1;
}

int config_disk_parse(struct json_object *v, struct disk_config *d, unsigned int n,
		      char *err, size_t errlen)
{
	struct cfg_ctx c = { err, errlen };
	int r;

	memset(d, 0, sizeof(*d));
	r = get_disk(&c, v, d, n);
	if (r)
		config_disk_free(d);
	return r;
}

int config_net_parse(struct json_object *v, struct net_config *nc, unsigned int n,
		     char *err, size_t errlen)
{
	struct cfg_ctx c = { err, errlen };
	int r;

	memset(nc, 0, sizeof(*nc));
	r = get_net(&c, v, nc, n);
	if (r)
		config_net_free(nc);
	return r;
}

void config_free(struct vm_config *cfg)
{
	unsigned int i;

	/* Hot-added disks and NICs sit past the configured ones. */
	for (i = 0; i < KVMM_MAX_DISKS; i++)
		config_disk_free(&cfg->disks[i]);
	for (i = 0; i < KVMM_MAX_NETS; i++)
		free(cfg->nets[i].tap);
	for (i = 0; i < cfg->nhotplug; i++) {
		config_disk_free(&cfg->hotplug[i].disk);
		if (cfg->hotplug[i].net.fd >= 0 && !cfg->hotplug[i].net.tap)
			close(cfg->hotplug[i].net.fd);
		config_net_free(&cfg->hotplug[i].net);
		json_object_put(cfg->hotplug[i].opts);
	}
	free(cfg->name);
	free(cfg->kernel);
	free(cfg->initrd);
	free(cfg->cmdline);
	free(cfg->serial.path);
	free(cfg->serial.log);
	free(cfg->console.path);
	free(cfg->console.log);
	for (i = 0; i < SMBIOS_GROUPS; i++)
		for (unsigned int f = 0; f < SMBIOS_MAX_FIELDS; f++)
			free(cfg->smbios.fields[i][f]);
	for (i = 0; i < cfg->smbios.noem_strings; i++)
		free(cfg->smbios.oem_strings[i]);
	free(cfg->api_socket);
	memset(cfg, 0, sizeof(*cfg));
}
