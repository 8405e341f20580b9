/* virDomainSave / Restore and managed save.
 *
 * A save image is two files: FILE, kvmm's state stream exactly as its
 * `save` wrote it (docs/state-stream.md: kvmm maps guest memory from it
 * at restore, page-aligned, so nothing may be put in front of it), and
 * FILE.xml, the domain's XML behind a comment giving the state to restore
 * it in (running or paused):
 *
 *     <!-- virtkvmmd save image: state=paused -->
 *     <domain type='kvm'>...
 *
 * The daemon writes both: the XML to FILE.xml.new before kvmm saves, the
 * stream to FILE.new, which it opens itself (0600) and fills from a pipe
 * whose other end kvmm writes (kvmm's `save` by descriptor: a sandboxed
 * kvmm opens no path).  Pumping the stream itself is what lets the daemon
 * count its progress for virDomainGetJobInfo and abort it: closing the
 * pipe makes kvmm's save fail, and a VM that was running runs on.  Once
 * the stream is whole and fsynced FILE.new becomes FILE, then the XML
 * becomes FILE.xml; a failure anywhere removes the .new files: FILE only
 * ever appears complete, and a failed save leaves an image already there
 * as it was. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <libvirt/libvirt.h>

#include "domain_api.h"
#include "error.h"
#include "handlers.h"
#include "log.h"
#include "domain/job.h"
#include "kvmm/proc_stat.h"
#include "kvmm/process.h"
#include "remote_save_xdr.h"

#define VIR_FROM_THIS VIR_FROM_DOMAIN

#define SAVE_FLAGS (VIR_DOMAIN_SAVE_BYPASS_CACHE | VIR_DOMAIN_SAVE_RUNNING | VIR_DOMAIN_SAVE_PAUSED)
#define HEADER_RUNNING "<!-- virtkvmmd save image: state=running -->\n"
#define HEADER_PAUSED "<!-- virtkvmmd save image: state=paused -->\n"

static char *xml_path(const char *file)
{
	return g_strconcat(file, ".xml", NULL);
}

/* CLIENT: libvirt's client library makes the path absolute; one that is
 * not did not come through it. */
static int check_path(const char *path)
{
	if (!path || path[0] != '/') {
		drv_error_report(VIR_ERR_INVALID_ARG, "the save image path '%s' is not absolute",
				 path ? path : "");
		return -1;
	}
	return 0;
}

static int check_state_flags(unsigned flags)
{
	if ((flags & VIR_DOMAIN_SAVE_RUNNING) && (flags & VIR_DOMAIN_SAVE_PAUSED)) {
		drv_error_report(VIR_ERR_INVALID_ARG,
				 "flags 'running' and 'paused' are mutually exclusive");
		return -1;
	}
	return 0;
}

/* What an alternative XML (save --xml, restore --xml,
 * save-image-define) may not change: what the guest sees, checked as
 * libvirt's ABI stability check words it.  Host-side things (disk and
 * log paths, NIC sources, titles) may change; kvmm checks the rest of
 * what the guest sees when it restores (docs/kvmm.md, "Restore").  0, or
 * -1 after reporting. */
static int check_abi(const struct domain_def *src, const struct domain_def *dst)
{
	char a[37], b[37];

#define ABI_ERR(...) (drv_error_report(VIR_ERR_CONFIG_UNSUPPORTED, __VA_ARGS__), -1)
	if (strcmp(src->name, dst->name))
		return ABI_ERR("Target domain name '%s' does not match source '%s'", dst->name,
			       src->name);
	if (memcmp(src->uuid, dst->uuid, 16)) {
		domain_uuid_format(src->uuid, a);
		domain_uuid_format(dst->uuid, b);
		return ABI_ERR("Target domain uuid %s does not match source %s", b, a);
	}
	if (src->memory_kib != dst->memory_kib)
		return ABI_ERR("Target domain max memory %llu does not match source %llu",
			       dst->memory_kib, src->memory_kib);
	if (src->max_memory_kib != dst->max_memory_kib)
		return ABI_ERR("Target maximum memory size '%llu' doesn't match source '%llu'",
			       dst->max_memory_kib, src->max_memory_kib);
	if (src->vcpus != dst->vcpus)
		return ABI_ERR("Target domain vCPU max %u does not match source %u", dst->vcpus,
			       src->vcpus);
	if (src->ndisks != dst->ndisks)
		return ABI_ERR("Target domain disk count %zu does not match source %zu", dst->ndisks,
			       src->ndisks);
	for (size_t i = 0; i < src->ndisks; i++) {
		const struct domain_disk *x = &src->disks[i], *y = &dst->disks[i];

		if (strcmp(x->target, y->target))
			return ABI_ERR("Target disk %s does not match source %s", y->target, x->target);
		if (x->readonly != y->readonly)
			return ABI_ERR("Target disk %s readonly setting does not match source", y->target);
		if (g_strcmp0(x->serial, y->serial))
			return ABI_ERR("Target disk serial %s does not match source %s",
				       y->serial ? y->serial : "", x->serial ? x->serial : "");
	}
	if (src->nnets != dst->nnets)
		return ABI_ERR("Target domain net card count %zu does not match source %zu",
			       dst->nnets, src->nnets);
	for (size_t i = 0; i < src->nnets; i++) {
		const unsigned char *x = src->nets[i].mac, *y = dst->nets[i].mac;

		if (memcmp(x, y, 6))
			return ABI_ERR("Target network card mac %02x:%02x:%02x:%02x:%02x:%02x does not match source %02x:%02x:%02x:%02x:%02x:%02x",
				       y[0], y[1], y[2], y[3], y[4], y[5], x[0], x[1], x[2], x[3], x[4], x[5]);
		if (src->nets[i].mtu != dst->nets[i].mtu)
			return ABI_ERR("Target network card MTU %u does not match source %u",
				       dst->nets[i].mtu, src->nets[i].mtu);
	}
	if (src->nserials != dst->nserials)
		return ABI_ERR("Target domain serial port count %zu does not match source %zu",
			       dst->nserials, src->nserials);
	if (src->nconsoles != dst->nconsoles)
		return ABI_ERR("Target domain console count %zu does not match source %zu",
			       dst->nconsoles, src->nconsoles);
	if (src->balloon_model != dst->balloon_model)
		return ABI_ERR("Target balloon model does not match source");
	if (src->nrngs != dst->nrngs)
		return ABI_ERR("Target domain RNG device count %zu does not match source %zu",
			       dst->nrngs, src->nrngs);
#undef ABI_ERR
	return 0;
}

/* CLIENT: DXML parsed and checked against SRC: the definition (free
 * with domain_def_free), or NULL after reporting. */
static struct domain_def *alt_def(const struct domain_def *src, const char *dxml)
{
	struct domain_def *def = domain_def_parse_string(dxml, domains_parse_opts());

	if (def && check_abi(src, def) < 0) {
		domain_def_free(def);
		return NULL;
	}
	return def;
}

/* The stream's way from kvmm to FILE.new: a thread reads the pipe kvmm
 * writes and writes the file, counting bytes for the job; an abort (or
 * its own write error) makes it close the pipe, so kvmm's save fails. */
struct pump {
	struct domain_obj *obj;
	int in;			/* the pipe's read end */
	int out;		/* FILE.new */
	int wake;		/* eventfd: stop (an abort) */
	uint64_t total;		/* the estimate of the stream's size */
	uint64_t done;
	int err;		/* errno of what failed, ECANCELED on abort; 0 */
	GThread *thread;
};

/* For the tests: while the file VIRTKVMMD_TEST_HOLD_SAVE names exists
 * and the stream has reached the number of bytes it holds (none: 0), the
 * pump waits after each chunk, as behind a stalled disk, so a test can
 * watch and abort a save in the middle without racing it.  Unset
 * (always, outside tests), nothing happens. */
static void test_hold(struct pump *p)
{
	const char *hold = getenv("VIRTKVMMD_TEST_HOLD_SAVE");
	struct pollfd w = { .fd = p->wake, .events = POLLIN };

	while (hold) {
		g_autofree char *text = NULL;

		if (!g_file_get_contents(hold, &text, NULL, NULL) ||
		    p->done < g_ascii_strtoull(text, NULL, 10) || poll(&w, 1, 20) != 0)
			break;
	}
}

/* Moves what the pipe holds to the file: its size, 0 at the end of the
 * stream, -errno.  splice() moves the pages without copying them
 * through here; a file system that cannot take them gets read/write. */
static ssize_t pump_chunk(struct pump *p, char **buf, size_t cap)
{
	ssize_t n;

	if (!*buf) {
		n = splice(p->in, NULL, p->out, NULL, cap, SPLICE_F_MOVE);
		if (n >= 0 || errno != EINVAL)
			return n < 0 ? -errno : n;
		*buf = g_malloc(cap);
	}
	n = read(p->in, *buf, cap);
	if (n <= 0)
		return n < 0 ? -errno : 0;
	for (ssize_t off = 0; off < n;) {
		ssize_t w = write(p->out, *buf + off, n - off);

		if (w < 0 && errno != EINTR)
			return -errno;
		off += w > 0 ? w : 0;
	}
	return n;
}

static gpointer pump_run(gpointer data)
{
	struct pump *p = data;
	const size_t cap = 1 << 20;
	g_autofree char *buf = NULL;

	for (;;) {
		struct pollfd f[2] = { { .fd = p->in, .events = POLLIN },
				       { .fd = p->wake, .events = POLLIN } };
		ssize_t n;

		if (poll(f, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			p->err = errno;
			break;
		}
		if (f[1].revents) {
			p->err = ECANCELED;
			break;
		}
		n = pump_chunk(p, &buf, cap);
		if (n == -EINTR || n == -EAGAIN)
			continue;
		if (n < 0) {
			p->err = -n;
			break;
		}
		if (n == 0) {
			/* kvmm closed its end: the stream is all there. */
			if (fsync(p->out) < 0)
				p->err = errno;
			break;
		}
		p->done += n;
		job_progress(p->obj, p->done, p->total);
		test_hold(p);
	}
	/* kvmm's next write fails (EPIPE): its save fails, the VM runs on. */
	close(p->in);
	p->in = -1;
	return NULL;
}

static void pump_abort(void *opaque)
{
	struct pump *p = opaque;
	uint64_t one = 1;

	if (write(p->wake, &one, sizeof(one)) < 0)
		pr_warn("cannot stop a save's pump: %s", g_strerror(errno));
}

/* What the stream will take: kvmm's resident memory, i.e. the guest
 * pages it touched (the stream holds those, less zero pages) and kvmm's
 * own few MiB.  An estimate: pages a restore mapped and the guest has
 * not touched yet are not resident but are written; the job's total then
 * grows with what is written. */
static uint64_t stream_estimate(struct domain_obj *obj)
{
	pid_t pid = process_pid(obj);
	long long kib = pid ? proc_rss_kib(pid) : -1;

	return kib > 0 ? (uint64_t)kib * 1024 : 0;
}

/* Has OBJ's kvmm save into NEW (created here) through a pump; 0 with the
 * VM paused and NEW whole and fsynced, or -1 after reporting with the VM
 * as it was and NEW removed.  BYPASS (--bypass-cache): the image's pages
 * leave the host's page cache once on disk, so a save does not push the
 * host's other guests out of it. */
static int save_stream(struct domain_obj *obj, const char *new, bool bypass)
{
	struct pump p = { .obj = obj, .in = -1, .out = -1, .wake = -1 };
	int pipefd[2] = { -1, -1 };
	int rc = -1, saved;

	p.out = open(new, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (p.out < 0) {
		drv_error_report(VIR_ERR_OPERATION_FAILED, "cannot create the save image %s: %s", new,
				 g_strerror(errno));
		return -1;
	}
	if (pipe2(pipefd, O_CLOEXEC) < 0 || (p.wake = eventfd(0, EFD_CLOEXEC)) < 0) {
		drv_error_report(VIR_ERR_SYSTEM_ERROR, "cannot make a pipe for the save: %s",
				 g_strerror(errno));
		p.in = pipefd[0];
		if (pipefd[1] >= 0)
			close(pipefd[1]);
		goto out;
	}
	p.in = pipefd[0];
	/* Fewer, larger hand-overs between kvmm and the pump; the default
	 * size works too. */
	(void)fcntl(pipefd[1], F_SETPIPE_SZ, 1 << 20);
	p.total = stream_estimate(obj);
	job_progress(obj, 0, p.total);
	p.thread = g_thread_new("save-pump", pump_run, &p);
	job_set_abort(obj, pump_abort, &p);
	saved = process_save_stream(obj, pipefd[1]);
	/* kvmm closed its copy once written (or failed); with ours closed
	 * too the pump sees the end. */
	close(pipefd[1]);
	g_thread_join(p.thread);
	job_set_abort(obj, NULL, NULL);
	if (saved < 0 && p.err && p.err != ECANCELED) {
		/* kvmm's "Broken pipe" only echoes the pump's failure. */
		drv_error_reset();
		drv_error_report(VIR_ERR_OPERATION_FAILED, "cannot write the save image %s: %s", new,
				 g_strerror(p.err));
	}
	if (saved < 0)
		goto out;
	if (p.err) {
		/* kvmm wrote all it had into the pipe before the pump failed:
		 * its save "succeeded", the image did not. */
		process_save_abandon(obj);
		if (p.err != ECANCELED)
			drv_error_report(VIR_ERR_OPERATION_FAILED, "cannot write the save image %s: %s",
					 new, g_strerror(p.err));
		else
			drv_error_report(VIR_ERR_OPERATION_ABORTED, "save: canceled by client");
		goto out;
	}
	if (bypass)
		(void)posix_fadvise(p.out, 0, 0, POSIX_FADV_DONTNEED);
	rc = 0;
out:
	if (p.in >= 0)
		close(p.in);
	if (p.wake >= 0)
		close(p.wake);
	close(p.out);
	if (rc < 0)
		unlink(new);
	return rc;
}

/* The renames in FILE's directory on disk before kvmm goes: a crash
 * after the save leaves the image, not a .new file.  Best effort: a
 * directory that cannot be opened was written to all the same. */
static void sync_dir(const char *file)
{
	g_autofree char *dir = g_path_get_dirname(file);
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd >= 0) {
		if (fsync(fd) < 0)
			pr_warn("cannot sync %s: %s", dir, g_strerror(errno));
		close(fd);
	}
}

/* Saves OBJ (running; its job held) into FILE and FILE.xml (DXML's
 * definition there, when given). */
static int save_obj(struct domain_obj *obj, const char *file, const char *dxml, unsigned flags)
{
	g_autofree char *xml = NULL, *body = NULL, *xpath = xml_path(file);
	g_autofree char *xnew = g_strconcat(xpath, ".new", NULL);
	g_autofree char *new = g_strconcat(file, ".new", NULL);
	g_autoptr(GError) err = NULL;
	bool paused;

	g_mutex_lock(&obj->lock);
	if (obj->id < 0) {
		g_mutex_unlock(&obj->lock);
		drv_error_report(VIR_ERR_OPERATION_INVALID, "domain is not running");
		return -1;
	}
	paused = flags & VIR_DOMAIN_SAVE_PAUSED ? true
	       : flags & VIR_DOMAIN_SAVE_RUNNING ? false
	       : obj->state == VIR_DOMAIN_PAUSED;
	/* The definition the run has, without what only a run has (ids,
	 * pty paths, generated names): the restore's run makes its own. */
	if (dxml) {
		struct domain_def *alt = alt_def(obj->def, dxml);

		xml = alt ? domain_def_format(alt, VIR_DOMAIN_XML_INACTIVE | VIR_DOMAIN_XML_SECURE) : NULL;
		domain_def_free(alt);
	} else {
		xml = domain_def_format(obj->def, VIR_DOMAIN_XML_INACTIVE | VIR_DOMAIN_XML_SECURE);
	}
	g_mutex_unlock(&obj->lock);
	if (!xml)
		return -1;
	body = g_strconcat(paused ? HEADER_PAUSED : HEADER_RUNNING, xml, NULL);
	if (!g_file_set_contents_full(xnew, body, -1, G_FILE_SET_CONTENTS_CONSISTENT, 0600, &err)) {
		drv_error_report(VIR_ERR_OPERATION_FAILED, "cannot write the save image %s: %s", xnew,
				 err->message);
		return -1;
	}
	if (save_stream(obj, new, flags & VIR_DOMAIN_SAVE_BYPASS_CACHE) < 0) {
		unlink(xnew);
		return -1;
	}
	if (rename(new, file) < 0) {
		drv_error_report(VIR_ERR_SYSTEM_ERROR, "cannot rename %s to %s: %s", new, file,
				 g_strerror(errno));
		process_save_abandon(obj);
		unlink(new);
		unlink(xnew);
		return -1;
	}
	/* In the directory FILE was just renamed in: only a file system
	 * gone bad fails here, and the image's stream is complete. */
	if (rename(xnew, xpath) < 0) {
		drv_error_report(VIR_ERR_SYSTEM_ERROR, "cannot rename %s to %s: %s", xnew, xpath,
				 g_strerror(errno));
		process_save_abandon(obj);
		return -1;
	}
	sync_dir(file);
	if (process_save_finish(obj) < 0)
		return -1;
	pr_info("domain '%s' saved to %s", obj->def->name, file);
	return 0;
}

static int save(const remote_nonnull_domain *dom, const char *to, const char *dxml,
		unsigned flags, const char *api)
{
	struct domain_obj *obj;
	int rc = -1;

	if (api_check_flags(flags, SAVE_FLAGS, api) < 0 || check_state_flags(flags) < 0 ||
	    check_path(to) < 0)
		return -1;
	obj = wire_domain_get(dom);
	if (!obj)
		return -1;
	if (job_begin(obj, api, VIR_DOMAIN_JOB_OPERATION_SAVE) == 0) {
		rc = save_obj(obj, to, dxml, flags);
		job_end(obj, rc);
	}
	domain_obj_unref(obj);
	return rc;
}

int drv_domain_save(struct rpc_conn *conn, void *args, void *ret)
{
	remote_domain_save_args *a = args;

	return save(&a->dom, a->to, NULL, 0, "virDomainSave");
}

int drv_domain_save_flags(struct rpc_conn *conn, void *args, void *ret)
{
	remote_domain_save_flags_args *a = args;

	return save(&a->dom, a->to, a->dxml ? *a->dxml : NULL, a->flags, "virDomainSaveFlags");
}

/* The XML of save image FILE (g_free) and the state it was saved to be
 * restored in; NULL after reporting. */
static char *read_image_xml(const char *file, bool *paused)
{
	g_autofree char *xpath = xml_path(file);
	g_autoptr(GError) err = NULL;
	char *body = NULL, *xml;

	if (!g_file_get_contents(xpath, &body, NULL, &err)) {
		drv_error_report(VIR_ERR_OPERATION_INVALID, "cannot read the save image %s: %s", xpath,
				 err->message);
		return NULL;
	}
	/* CLIENT: any file could be named; ours start with our header. */
	if (g_str_has_prefix(body, HEADER_RUNNING)) {
		*paused = false;
		xml = g_strdup(body + strlen(HEADER_RUNNING));
	} else if (g_str_has_prefix(body, HEADER_PAUSED)) {
		*paused = true;
		xml = g_strdup(body + strlen(HEADER_PAUSED));
	} else {
		drv_error_report(VIR_ERR_OPERATION_FAILED,
				 "%s is not a save image of virtkvmmd (no header)", xpath);
		xml = NULL;
	}
	g_free(body);
	return xml;
}


/* A restore runs the defined OBJ (inactive, its job held) with ALT, the
 * image's definition, as its live one, the persistent one waiting in
 * newdef as for a definition defined while it runs; undone if the
 * restore fails. */
static void run_with(struct domain_obj *obj, struct domain_def *alt)
{
	g_mutex_lock(&obj->lock);
	if (obj->persistent)
		obj->newdef = obj->def;
	else
		domain_def_free(obj->def);
	obj->def = alt;
	g_mutex_unlock(&obj->lock);
}

static void run_with_undo(struct domain_obj *obj)
{
	g_mutex_lock(&obj->lock);
	/* A run that ended already put the persistent one back. */
	if (obj->id < 0 && obj->newdef) {
		domain_def_free(obj->retired);
		obj->retired = obj->def;
		obj->def = obj->newdef;
		obj->newdef = NULL;
	}
	g_mutex_unlock(&obj->lock);
}

static int restore(const char *from, const char *dxml, unsigned flags, const char *api)
{
	struct domain_def *def, *alt = NULL;
	struct domain_obj *obj;
	g_autofree char *xml = NULL;
	bool paused, added = false, swapped = false;
	int rc = -1;

	if (api_check_flags(flags, SAVE_FLAGS, api) < 0 || check_state_flags(flags) < 0 ||
	    check_path(from) < 0)
		return -1;
	xml = read_image_xml(from, &paused);
	if (!xml)
		return -1;
	def = domain_def_parse_string(xml, domains_parse_opts());
	if (!def)
		return -1;
	/* libvirt's restore --xml: the host side may differ from the
	 * image's (a disk moved, another bridge), not what the guest sees. */
	if (dxml) {
		alt = alt_def(def, dxml);
		if (!alt) {
			domain_def_free(def);
			return -1;
		}
	}
	if (alt) {
		domain_def_free(def);
		def = alt;
	}
	/* The run is the image's (or DXML's) definition, as libvirt's: a
	 * defined domain runs it with its persistent definition kept for
	 * the next start; else it becomes a transient domain. */
	obj = domain_find_by_uuid(def->uuid);
	if (obj) {
		if (strcmp(obj->def->name, def->name) != 0) {
			drv_error_report(VIR_ERR_OPERATION_FAILED,
					 "domain '%s' is already defined with the uuid of the save image's '%s'",
					 obj->def->name, def->name);
			domain_def_free(def);
			domain_obj_unref(obj);
			return -1;
		}
		if (job_begin(obj, api, VIR_DOMAIN_JOB_OPERATION_RESTORE) < 0) {
			domain_def_free(def);
			domain_obj_unref(obj);
			return -1;
		}
		g_mutex_lock(&obj->lock);
		swapped = obj->id < 0;
		g_mutex_unlock(&obj->lock);
		/* A running one: process_restore refuses it in its words. */
		if (swapped)
			run_with(obj, def);
		else
			domain_def_free(def);
	} else {
		obj = domain_add_transient(def, api);
		if (!obj)
			return -1;
		job_begin_held(obj, VIR_DOMAIN_JOB_OPERATION_RESTORE);
		added = true;
	}
	if (flags & VIR_DOMAIN_SAVE_PAUSED)
		paused = true;
	else if (flags & VIR_DOMAIN_SAVE_RUNNING)
		paused = false;
	rc = process_restore(obj, from, paused);
	if (rc < 0 && swapped)
		run_with_undo(obj);
	if (rc < 0 && added)
		domain_remove_transient(obj);
	job_end(obj, rc);
	if (rc == 0)
		pr_info("domain '%s' restored from %s", obj->def->name, from);
	domain_obj_unref(obj);
	return rc;
}

int drv_domain_restore(struct rpc_conn *conn, void *args, void *ret)
{
	remote_domain_restore_args *a = args;

	return restore(a->from, NULL, 0, "virDomainRestore");
}

int drv_domain_restore_flags(struct rpc_conn *conn, void *args, void *ret)
{
	remote_domain_restore_flags_args *a = args;

	return restore(a->from, a->dxml ? *a->dxml : NULL, a->flags, "virDomainRestoreFlags");
}

int drv_domain_save_image_get_xml_desc(struct rpc_conn *conn, void *args, void *ret)
{
	remote_domain_save_image_get_xml_desc_args *a = args;
	remote_domain_save_image_get_xml_desc_ret *r = ret;
	g_autofree char *xml = NULL;
	bool paused;

	if (api_check_flags(a->flags, VIR_DOMAIN_SAVE_IMAGE_XML_SECURE,
			    "virDomainSaveImageGetXMLDesc") < 0 || check_path(a->file) < 0)
		return -1;
	xml = read_image_xml(a->file, &paused);
	if (!xml)
		return -1;
	r->xml = strdup(xml);	/* freed by xdr_free */
	return r->xml ? 0 : (drv_error_report(VIR_ERR_NO_MEMORY, "out of memory"), -1);
}

/* save-image-define: the image's XML replaced by DXML's (checked as for
 * restore --xml), and its state by RUNNING/PAUSED when given. */
int drv_domain_save_image_define_xml(struct rpc_conn *conn, void *args, void *ret)
{
	remote_domain_save_image_define_xml_args *a = args;
	g_autofree char *xml = NULL, *out = NULL, *body = NULL, *xpath = NULL;
	g_autoptr(GError) err = NULL;
	struct domain_def *def, *alt;
	bool paused;

	if (api_check_flags(a->flags, VIR_DOMAIN_SAVE_RUNNING | VIR_DOMAIN_SAVE_PAUSED,
			    "virDomainSaveImageDefineXML") < 0 ||
	    check_state_flags(a->flags) < 0 || check_path(a->file) < 0)
		return -1;
	xml = read_image_xml(a->file, &paused);
	if (!xml)
		return -1;
	def = domain_def_parse_string(xml, domains_parse_opts());
	if (!def)
		return -1;
	alt = alt_def(def, a->dxml);
	domain_def_free(def);
	if (!alt)
		return -1;
	out = domain_def_format(alt, VIR_DOMAIN_XML_INACTIVE | VIR_DOMAIN_XML_SECURE);
	domain_def_free(alt);
	if (!out)
		return -1;
	if (a->flags & VIR_DOMAIN_SAVE_PAUSED)
		paused = true;
	else if (a->flags & VIR_DOMAIN_SAVE_RUNNING)
		paused = false;
	body = g_strconcat(paused ? HEADER_PAUSED : HEADER_RUNNING, out, NULL);
	xpath = xml_path(a->file);
	/* Written aside and renamed over: the image never has half an XML. */
	if (!g_file_set_contents_full(xpath, body, -1, G_FILE_SET_CONTENTS_CONSISTENT, 0600, &err)) {
		drv_error_report(VIR_ERR_OPERATION_FAILED, "cannot write the save image %s: %s", xpath,
				 err->message);
		return -1;
	}
	return 0;
}

/* --- managed save: one image per domain, in the daemon's own directory,
 * which the next start restores from. */

#include "driver.h"

/* Where libvirt's qemu driver keeps its managed images, for kvmm. */
static char *managed_dir(void)
{
	if (drv_state.root && drv_state.root[0])
		return g_build_filename(drv_state.root, "lib", "kvmm", "save", NULL);
	if (drv_state.privileged)
		return g_strdup("/var/lib/libvirt/kvmm/save");
	return g_build_filename(g_get_user_config_dir(), "libvirt", "kvmm", "save", NULL);
}

char *managed_save_path_locked(struct domain_obj *obj)
{
	g_autofree char *dir = managed_dir();
	g_autofree char *file = g_strconcat(obj->def->name, ".save", NULL);

	return g_build_filename(dir, file, NULL);
}

bool managed_save_exists_locked(struct domain_obj *obj)
{
	g_autofree char *path = managed_save_path_locked(obj);

	return access(path, F_OK) == 0;
}

static char *managed_save_path(struct domain_obj *obj)
{
	char *path;

	g_mutex_lock(&obj->lock);
	path = managed_save_path_locked(obj);
	g_mutex_unlock(&obj->lock);
	return path;
}

int managed_save_remove(struct domain_obj *obj)
{
	g_autofree char *path = managed_save_path(obj);
	g_autofree char *xpath = xml_path(path);

	if ((unlink(path) < 0 && errno != ENOENT) || (unlink(xpath) < 0 && errno != ENOENT)) {
		drv_error_report(VIR_ERR_SYSTEM_ERROR, "Failed to remove managed save file '%s': %s",
				 path, g_strerror(errno));
		return -1;
	}
	return 0;
}

void managed_save_mark_all(void)
{
	g_autoptr(GPtrArray) all = domain_list();

	for (guint i = 0; i < all->len; i++) {
		struct domain_obj *obj = g_ptr_array_index(all, i);

		g_mutex_lock(&obj->lock);
		if (obj->id < 0 && obj->persistent && managed_save_exists_locked(obj))
			domain_set_state(obj, VIR_DOMAIN_SHUTOFF, VIR_DOMAIN_SHUTOFF_SAVED, -1, 0);
		g_mutex_unlock(&obj->lock);
	}
}

int managed_save_start(struct domain_obj *obj, bool paused, bool *restored)
{
	g_autofree char *path = managed_save_path(obj);
	g_autofree char *xml = NULL;
	struct domain_def *def;
	bool image_paused;

	*restored = false;
	if (access(path, F_OK) < 0)
		return 0;
	*restored = true;
	xml = read_image_xml(path, &image_paused);
	if (!xml)
		return -1;
	/* The run is the image's definition, as a restore's: the devices
	 * and vCPUs hot-added before the save are in it, not in the
	 * persistent one, which stays for the next start. */
	def = domain_def_parse_string(xml, domains_parse_opts());
	if (!def)
		return -1;
	if (memcmp(def->uuid, obj->def->uuid, sizeof(def->uuid))) {
		drv_error_report(VIR_ERR_OPERATION_FAILED,
				 "the managed save image '%s' is another domain's (its uuid differs)", path);
		domain_def_free(def);
		return -1;
	}
	run_with(obj, def);
	if (process_restore(obj, path, paused || image_paused) < 0) {
		run_with_undo(obj);
		return -1;
	}
	/* kvmm keeps the file mapped; removing it is fine, its pages stay. */
	if (managed_save_remove(obj) < 0) {
		pr_warn("domain '%s': %s", obj->def->name,
			drv_error_last() ? drv_error_last()->message : "?");
		drv_error_reset();
	}
	pr_info("domain '%s' restored from its managed save image", obj->def->name);
	return 0;
}

static int managed_save(const remote_nonnull_domain *dom, const char *dxml, unsigned flags,
			const char *api)
{
	g_autofree char *dir = managed_dir();
	struct domain_obj *obj;
	int rc = -1;

	if (api_check_flags(flags, SAVE_FLAGS, api) < 0 || check_state_flags(flags) < 0)
		return -1;
	obj = wire_domain_get(dom);
	if (!obj)
		return -1;
	if (job_begin(obj, api, VIR_DOMAIN_JOB_OPERATION_SAVE) < 0)
		goto out;
	if (!obj->persistent) {
		drv_error_report(VIR_ERR_OPERATION_INVALID,
				 "cannot do managed save for transient domain");
	} else if (g_mkdir_with_parents(dir, 0700) < 0) {
		drv_error_report(VIR_ERR_SYSTEM_ERROR, "cannot create %s: %s", dir,
				 g_strerror(errno));
	} else {
		g_autofree char *path = managed_save_path(obj);

		rc = save_obj(obj, path, dxml, flags);
	}
	job_end(obj, rc);
out:
	domain_obj_unref(obj);
	return rc;
}

int drv_domain_managed_save(struct rpc_conn *conn, void *args, void *ret)
{
	remote_domain_flags_args *a = args;

	return managed_save(&a->dom, NULL, a->flags, "virDomainManagedSave");
}

/* CLIENT: the typed parameters of SaveParams/RestoreParams: only
 * `file` and `dxml`, strings, each at most once (libvirt's
 * virTypedParamsValidate wording).  0, or -1 after reporting. */
static int save_params(const remote_typed_param *p, unsigned n, const char **file,
		       const char **dxml)
{
	*file = *dxml = NULL;
	for (unsigned i = 0; i < n; i++) {
		const char **slot = !strcmp(p[i].field, VIR_DOMAIN_SAVE_PARAM_FILE) ? file
				  : !strcmp(p[i].field, VIR_DOMAIN_SAVE_PARAM_DXML) ? dxml : NULL;

		if (!slot) {
			drv_error_report(VIR_ERR_INVALID_ARG, "parameter '%s' not supported",
					 p[i].field);
			return -1;
		}
		if (p[i].value.type != VIR_TYPED_PARAM_STRING) {
			drv_error_report(VIR_ERR_INVALID_ARG,
					 "invalid type '%d' for parameter '%s', expected 'string'",
					 p[i].value.type, p[i].field);
			return -1;
		}
		if (*slot) {
			drv_error_report(VIR_ERR_INVALID_ARG, "parameter '%s' occurs multiple times",
					 p[i].field);
			return -1;
		}
		*slot = p[i].value.remote_typed_param_value_u.s;
	}
	return 0;
}

int drv_domain_save_params(struct rpc_conn *conn, void *args, void *ret)
{
	remote_domain_save_params_args *a = args;
	const char *file, *dxml;

	if (save_params(a->params.params_val, a->params.params_len, &file, &dxml) < 0)
		return -1;
	/* No file: a managed save, as libvirt. */
	if (!file)
		return managed_save(&a->dom, dxml, a->flags, "virDomainSaveParams");
	return save(&a->dom, file, dxml, a->flags, "virDomainSaveParams");
}

int drv_domain_restore_params(struct rpc_conn *conn, void *args, void *ret)
{
	remote_domain_restore_params_args *a = args;
	const char *file, *dxml;

	if (save_params(a->params.params_val, a->params.params_len, &file, &dxml) < 0)
		return -1;
	if (!file) {
		drv_error_report(VIR_ERR_INVALID_ARG, "File to load domain from must be provided");
		return -1;
	}
	return restore(file, dxml, a->flags, "virDomainRestoreParams");
}

int drv_domain_managed_save_remove(struct rpc_conn *conn, void *args, void *ret)
{
	remote_domain_flags_args *a = args;
	struct domain_obj *obj;
	int rc = -1;

	if (api_check_flags(a->flags, 0, "virDomainManagedSaveRemove") < 0)
		return -1;
	obj = wire_domain_get(&a->dom);
	if (!obj)
		return -1;
	if (domain_job_begin(obj, "virDomainManagedSaveRemove") == 0) {
		rc = managed_save_remove(obj);
		domain_job_end(obj);
	}
	domain_obj_unref(obj);
	return rc;
}
