/* Status files of running domains; see status.h. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <glib.h>
#include <glib/gstdio.h>
#include <libvirt/libvirt.h>
#include <libxml/parser.h>
#include <libxml/tree.h>

#include "conf/domain_conf.h"
#include "error.h"
#include "status.h"

#define VIR_FROM_THIS VIR_FROM_DOMAIN

static const char *const state_names[] = {
	[VIR_DOMAIN_RUNNING] = "running", [VIR_DOMAIN_PAUSED] = "paused",
};

/* PATH's new contents DATA, via a temp file renamed over it: a daemon
 * killed at any point leaves the old record or the new one.  SYNC: on
 * disk (file, then directory) before returning.  -1 with errno. */
static int write_atomic(const char *path, const char *data, size_t len, bool sync)
{
	g_autofree char *tmp = g_strconcat(path, ".XXXXXX", NULL);
	int fd = g_mkstemp_full(tmp, O_WRONLY | O_CLOEXEC, 0600), err;
	size_t done = 0;

	if (fd < 0)
		return -1;
	while (done < len) {
		ssize_t n = write(fd, data + done, len - done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			goto fail;
		done += n;
	}
	if (sync && fsync(fd) < 0)
		goto fail;
	if (close(fd) < 0) {
		fd = -1;
		goto fail;
	}
	fd = -1;
	if (rename(tmp, path) < 0)
		goto fail;
	if (sync) {
		g_autofree char *dir = g_path_get_dirname(path);
		int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

		if (dfd < 0 || fsync(dfd) < 0) {
			err = errno;
			if (dfd >= 0)
				close(dfd);
			errno = err;
			return -1;
		}
		close(dfd);
	}
	return 0;

fail:
	err = errno;
	if (fd >= 0)
		close(fd);
	unlink(tmp);
	errno = err;
	return -1;
}

int status_write(const char *path, const struct domain_status *st, const char *live_xml)
{
	g_autoptr(GString) s = g_string_new(NULL);
	g_autofree char *mon = g_markup_escape_text(st->monitor_path, -1);
	g_autofree char *conf = g_markup_escape_text(st->config_path, -1);
	g_autofree char *log = g_markup_escape_text(st->log_path, -1);
	const char *state = st->state == VIR_DOMAIN_PAUSED ? "paused" : "running";
	char **lines = g_strsplit(live_xml, "\n", -1);

	g_string_append_printf(s, "<domstatus state='%s' reason='%d' pid='%ld' id='%d' started='%lld'%s>\n",
			       state, st->reason, (long)st->pid, st->id, (long long)st->started,
			       st->transient ? " transient='yes'" : "");
	g_string_append_printf(s, "  <monitor path='%s'/>\n  <config path='%s'/>\n  <log path='%s'/>\n",
			       mon, conf, log);
	for (size_t i = 0; i < st->taps.n; i++) {
		g_autofree char *dev = g_markup_escape_text(st->taps.names[i], -1);

		g_string_append_printf(s, "  <tap nic='%zu' dev='%s' owned='%s'/>\n", i, dev,
				       st->taps.owned[i] ? "yes" : "no");
	}
	if (st->cgroup && *st->cgroup) {
		g_autofree char *cg = g_markup_escape_text(st->cgroup, -1);

		g_string_append_printf(s, "  <cgroup path='%s'/>\n", cg);
	}
	for (char **l = lines; *l; l++)
		if (**l)
			g_string_append_printf(s, "  %s\n", *l);
	g_strfreev(lines);
	g_string_append(s, "</domstatus>\n");
	if (write_atomic(path, s->str, s->len, st->durable) < 0) {
		drv_error_report(VIR_ERR_SYSTEM_ERROR, "cannot write the status file %s: %s", path,
				 g_strerror(errno));
		return -1;
	}
	return 0;
}

static char *attr(xmlNodePtr n, const char *name)
{
	xmlChar *v = xmlGetProp(n, (const xmlChar *)name);
	char *out = v ? g_strdup((const char *)v) : NULL;

	xmlFree(v);
	return out;
}

static xmlNodePtr child(xmlNodePtr n, const char *name)
{
	for (xmlNodePtr c = n->children; c; c = c->next)
		if (c->type == XML_ELEMENT_NODE && !strcmp((const char *)c->name, name))
			return c;
	return NULL;
}

static bool number(const char *s, long long min, long long max, long long *out)
{
	char *end;

	if (!s || !*s)
		return false;
	errno = 0;
	*out = strtoll(s, &end, 10);
	return !errno && !*end && *out >= min && *out <= max;
}

/* The <tap> elements, in NIC order. */
static int read_taps(xmlNodePtr root, struct nic_taps *t)
{
	size_t n = 0;

	for (xmlNodePtr c = root->children; c; c = c->next)
		n += c->type == XML_ELEMENT_NODE && !strcmp((const char *)c->name, "tap");
	if (!n)
		return 0;
	t->n = n;
	t->names = g_new0(char *, n + 1);
	t->owned = g_new0(bool, n);
	for (xmlNodePtr c = root->children; c; c = c->next) {
		g_autofree char *nic = NULL, *owned = NULL;
		long long i;

		if (c->type != XML_ELEMENT_NODE || strcmp((const char *)c->name, "tap"))
			continue;
		nic = attr(c, "nic");
		owned = attr(c, "owned");
		if (!number(nic, 0, (long long)n - 1, &i) || t->names[i])
			return -1;
		if (!(t->names[i] = attr(c, "dev")))
			return -1;
		t->owned[i] = owned && !strcmp(owned, "yes");
	}
	for (size_t i = 0; i < n; i++)
		if (!t->names[i])
			return -1;
	return 0;
}

int status_read(const char *path, struct domain_status *st, char **why)
{
	xmlDocPtr doc = xmlReadFile(path, NULL, XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
	xmlNodePtr root, n, dom;
	g_autofree char *state = NULL, *reason = NULL, *pid = NULL, *id = NULL, *started = NULL;
	xmlChar *uuid = NULL;
	long long v;
	int rc = -1;

	memset(st, 0, sizeof(*st));
	*why = NULL;
	if (!doc) {
		*why = g_strdup("not well-formed XML");
		return -1;
	}
	root = xmlDocGetRootElement(doc);
	if (!root || strcmp((const char *)root->name, "domstatus")) {
		*why = g_strdup("not a <domstatus> document");
		goto out;
	}
	state = attr(root, "state");
	reason = attr(root, "reason");
	pid = attr(root, "pid");
	id = attr(root, "id");
	started = attr(root, "started");
	st->state = -1;
	for (size_t i = 0; i < G_N_ELEMENTS(state_names); i++)
		if (state && state_names[i] && !strcmp(state, state_names[i]))
			st->state = (int)i;
	if (st->state < 0 || !number(reason, 0, 100, &v)) {
		*why = g_strdup("bad state or reason");
		goto out;
	}
	st->reason = (int)v;
	if (!number(pid, 2, 0x7fffffff, &v)) {
		*why = g_strdup("bad pid");
		goto out;
	}
	st->pid = (pid_t)v;
	if (!number(id, 1, 0x7fffffff, &v)) {
		*why = g_strdup("bad id");
		goto out;
	}
	st->id = (int)v;
	st->started = number(started, 0, INT64_MAX, &v) ? v : 0;
	if (!(n = child(root, "monitor")) || !(st->monitor_path = attr(n, "path")) ||
	    !(n = child(root, "config")) || !(st->config_path = attr(n, "path")) ||
	    !(n = child(root, "log")) || !(st->log_path = attr(n, "path"))) {
		*why = g_strdup("monitor, config or log path missing");
		goto out;
	}
	if (read_taps(root, &st->taps) < 0) {
		*why = g_strdup("bad <tap> element");
		goto out;
	}
	if ((n = child(root, "cgroup")))
		st->cgroup = attr(n, "path");
	if (!(dom = child(root, "domain")) || !(n = child(dom, "uuid")) ||
	    !(uuid = xmlNodeGetContent(n)) || domain_uuid_parse((const char *)uuid, st->uuid) < 0) {
		*why = g_strdup("no live definition with a uuid");
		goto out;
	}
	{
		g_autofree char *t = attr(root, "transient");
		xmlBufferPtr buf = xmlBufferCreate();

		st->transient = t && !strcmp(t, "yes");
		if (xmlNodeDump(buf, doc, dom, 0, 0) > 0)
			st->live_xml = g_strdup((const char *)xmlBufferContent(buf));
		xmlBufferFree(buf);
	}
	rc = 0;
out:
	xmlFree(uuid);
	if (rc < 0)
		status_clear(st);
	xmlFreeDoc(doc);
	return rc;
}

void status_clear(struct domain_status *st)
{
	g_clear_pointer(&st->monitor_path, g_free);
	g_clear_pointer(&st->config_path, g_free);
	g_clear_pointer(&st->log_path, g_free);
	g_clear_pointer(&st->live_xml, g_free);
	g_clear_pointer(&st->cgroup, g_free);
	nics_clear(&st->taps);
}
