/* Domain definitions on disk; see domain_persist.h. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib.h>
#include <glib/gstdio.h>

#include "domain_persist.h"
#include "error.h"
#include "log.h"

#define VIR_FROM_THIS VIR_FROM_DOMAIN

#define TEMP_MARK ".xml.new-"

static char *config_dir;
static char *autostart_dir;

int persist_init(const char *dir)
{
	g_free(config_dir);
	g_free(autostart_dir);
	config_dir = g_strdup(dir);
	autostart_dir = g_build_filename(dir, "autostart", NULL);
	/* 0700 as libvirt's system config dirs: definitions may name
	 * paths and devices that are nobody else's business. */
	if (g_mkdir_with_parents(autostart_dir, 0700) < 0) {
		drv_error_report(VIR_ERR_SYSTEM_ERROR, "cannot create config directory '%s': %s",
				 autostart_dir, g_strerror(errno));
		return -1;
	}
	return 0;
}

char *persist_path(const char *name)
{
	g_autofree char *file = g_strconcat(name, ".xml", NULL);

	return g_build_filename(config_dir, file, NULL);
}

static char *autostart_link(const char *name)
{
	g_autofree char *file = g_strconcat(name, ".xml", NULL);

	return g_build_filename(autostart_dir, file, NULL);
}

bool persist_exists(const char *name)
{
	g_autofree char *path = persist_path(name);
	struct stat st;

	return lstat(path, &st) == 0;
}

static int fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int rc;

	if (fd < 0)
		return -1;
	rc = fsync(fd);
	close(fd);
	return rc;
}

int persist_write(const char *name, const char *xml)
{
	g_autofree char *path = persist_path(name);
	g_autofree char *tmpl = g_strdup_printf("%s/.%s" TEMP_MARK "XXXXXX", config_dir, name);
	size_t len = strlen(xml), done = 0;
	int fd;

	fd = g_mkstemp_full(tmpl, O_WRONLY | O_CLOEXEC, 0600);
	if (fd < 0) {
		drv_error_report(VIR_ERR_SYSTEM_ERROR, "cannot create '%s': %s", tmpl, g_strerror(errno));
		return -1;
	}
	while (done < len) {
		ssize_t n = write(fd, xml + done, len - done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			goto fail;
		done += n;
	}
	/* The data must be on disk before the rename makes it the
	 * definition, or a crash could leave an empty file behind the name. */
	if (fsync(fd) < 0)
		goto fail;
	if (close(fd) < 0) {
		fd = -1;
		goto fail;
	}
	fd = -1;
	if (rename(tmpl, path) < 0)
		goto fail;
	/* And the rename itself must survive a crash. */
	if (fsync_dir(config_dir) < 0) {
		drv_error_report(VIR_ERR_SYSTEM_ERROR, "cannot sync directory '%s': %s", config_dir,
				 g_strerror(errno));
		return -1;
	}
	return 0;
fail:
	drv_error_report(VIR_ERR_SYSTEM_ERROR, "cannot write domain definition '%s': %s", path,
			 g_strerror(errno));
	if (fd >= 0)
		close(fd);
	unlink(tmpl);
	return -1;
}

int persist_remove(const char *name)
{
	g_autofree char *path = persist_path(name);

	if (unlink(path) < 0 && errno != ENOENT) {
		drv_error_report(VIR_ERR_SYSTEM_ERROR, "cannot remove config %s: %s", path,
				 g_strerror(errno));
		return -1;
	}
	if (persist_autostart_set(name, false) < 0)
		return -1;
	fsync_dir(config_dir);
	return 0;
}

bool persist_autostart_get(const char *name)
{
	g_autofree char *link = autostart_link(name);
	struct stat st;

	return lstat(link, &st) == 0;
}

int persist_autostart_set(const char *name, bool on)
{
	g_autofree char *link = autostart_link(name);
	g_autofree char *path = persist_path(name);

	if (!on) {
		if (unlink(link) < 0 && errno != ENOENT) {
			drv_error_report(VIR_ERR_SYSTEM_ERROR, "Failed to delete symlink '%s': %s", link,
					 g_strerror(errno));
			return -1;
		}
		return 0;
	}
	/* As libvirt: a symlink to the definition, so `ls autostart/`
	 * shows what starts with the host. */
	if (symlink(path, link) < 0 && errno != EEXIST) {
		drv_error_report(VIR_ERR_SYSTEM_ERROR, "Failed to create symlink '%s' to '%s': %s", link,
				 path, g_strerror(errno));
		return -1;
	}
	fsync_dir(autostart_dir);
	return 0;
}

void persist_load_all(persist_load_fn fn, void *opaque)
{
	g_autoptr(GError) gerr = NULL;
	GDir *d = g_dir_open(config_dir, 0, &gerr);
	const char *ent;

	if (!d) {
		pr_err("cannot read domain definitions in %s: %s", config_dir, gerr->message);
		return;
	}
	while ((ent = g_dir_read_name(d))) {
		g_autofree char *path = g_build_filename(config_dir, ent, NULL);
		g_autofree char *name = NULL;
		g_autofree char *xml = NULL;
		g_autoptr(GError) rerr = NULL;

		/* Temp names end in mkstemp's six letters or digits, never
		 * in ".xml", so no definition (whatever its name) is
		 * mistaken for one. */
		if (ent[0] == '.' && strstr(ent, TEMP_MARK) && !g_str_has_suffix(ent, ".xml")) {
			/* A define interrupted by a crash: the old definition
			 * (if any) is intact under its real name. */
			pr_info("removing %s, left over by an interrupted write", path);
			unlink(path);
			continue;
		}
		if (!g_str_has_suffix(ent, ".xml") || strlen(ent) == 4 ||
		    !g_file_test(path, G_FILE_TEST_IS_REGULAR))
			continue;
		name = g_strndup(ent, strlen(ent) - 4);
		if (!g_file_get_contents(path, &xml, NULL, &rerr))
			fn(name, path, NULL, rerr->message, opaque);
		else
			fn(name, path, xml, NULL, opaque);
	}
	g_dir_close(d);
}
