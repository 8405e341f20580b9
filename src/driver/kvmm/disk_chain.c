/* Disk backing chains at start; see disk_chain.h.
 *
 * libvirt reads a qcow2 image's backing file from its header when the
 * domain XML does not give the chain, and (since 6.0) only when the
 * header also records the backing file's format: a format it would have
 * to guess is refused, since a guessed format lets an image's content
 * decide which files the VM opens.  The same rules here; kvmm itself then
 * checks every layer against the headers again when it opens them. */
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib.h>
#include <libvirt/libvirt.h>

#include "disk_chain.h"
#include "error.h"

#define VIR_FROM_THIS VIR_FROM_STORAGE

#define QCOW2_MAGIC		0x514649fbU	/* "QFI\xfb" */
#define QCOW2_EXT_BACKING_FMT	0xe2792acaU
#define QCOW2_V2_HEADER		72
#define HEADER_READ		65536	/* the header and its extensions */
#define NAME_MAX_LEN		1023	/* a backing file name, as QEMU caps it */

static uint32_t be32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t be64(const unsigned char *p)
{
	return (uint64_t)be32(p) << 32 | be32(p + 4);
}

/* What a qcow2 header says of its backing file: *NAME and *FMT (g_malloc'ed,
 * NULL when absent).  Returns 1 for a qcow2 header read, 0 for a file that
 * is not one, not a regular file or cannot be read (the daemon's checks
 * or kvmm say why).  CLIENT: the image is whoever made it's; every offset and
 * length is checked against what was read, and nothing blocks (O_NONBLOCK,
 * regular files only). */
static int read_header(const char *path, char **name, char **fmt)
{
	g_autofree unsigned char *h = g_malloc(HEADER_READ);
	uint64_t boff, ext;
	uint32_t bsize;
	struct stat st;
	ssize_t n;
	int fd;

	*name = *fmt = NULL;
	fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	/* Anything else is refused with the domain's other files
	 * (process.c, check_sources). */
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return 0;
	}
	n = pread(fd, h, HEADER_READ, 0);
	if (n < QCOW2_V2_HEADER || be32(h) != QCOW2_MAGIC || (be32(h + 4) != 2 && be32(h + 4) != 3)) {
		close(fd);
		return 0;
	}
	boff = be64(h + 8);
	bsize = be32(h + 16);
	ext = be32(h + 4) == 3 && n >= 104 ? be32(h + 100) : QCOW2_V2_HEADER;
	/* Header extensions: type, length, data padded to 8 bytes. */
	while (ext + 8 <= (uint64_t)n) {
		uint32_t type = be32(h + ext), len = be32(h + ext + 4);

		if (type == 0 || ext + 8 + len > (uint64_t)n)
			break;
		if (type == QCOW2_EXT_BACKING_FMT && len && len < 32)
			*fmt = g_strndup((const char *)h + ext + 8, len);
		ext += 8 + (((uint64_t)len + 7) & ~7ULL);
	}
	if (boff && bsize) {
		if (bsize > NAME_MAX_LEN || pread(fd, h, bsize, (off_t)boff) != (ssize_t)bsize ||
		    memchr(h, '\0', bsize)) {
			/* kvmm refuses such a header, with its reason. */
			close(fd);
			g_clear_pointer(fmt, g_free);
			return 0;
		}
		*name = g_strndup((const char *)h, bsize);
	}
	close(fd);
	return 1;
}

/* Adds to D's chain what the headers below its last known layer name. */
static int probe(struct domain_disk *d)
{
	for (;;) {
		const char *upper = d->nbacking ? d->backing[d->nbacking - 1].path : d->source;
		int upper_fmt = d->nbacking ? d->backing[d->nbacking - 1].format : d->format;
		g_autofree char *name = NULL, *fmt = NULL, *dir = NULL;
		struct domain_backing *b;
		int r, f;

		if (upper_fmt != FORMAT_QCOW2 || d->type != DISK_FILE)
			return 0;
		r = read_header(upper, &name, &fmt);
		if (r <= 0 || !name)
			return r;
		/* A relative name is relative to the image's directory. */
		dir = g_path_get_dirname(upper);
		g_autofree char *path = g_path_is_absolute(name) ? g_strdup(name)
								  : g_build_filename(dir, name, NULL);
		if (!fmt) {
			drv_error_report(VIR_ERR_OPERATION_INVALID,
					 "format of backing image '%s' of image '%s' was not specified in the image metadata (See https://libvirt.org/kbase/backing_chains.html for troubleshooting)",
					 name, upper);
			return -1;
		}
		if ((f = conf_enum_lookup(&conf_disk_format, fmt)) < 0) {
			drv_error_report(VIR_ERR_CONFIG_UNSUPPORTED,
					 "backing image '%s' of image '%s' has format '%s', which kvmm does not support; supported: 'raw', 'qcow2'",
					 name, upper, fmt);
			return -1;
		}
		if (d->nbacking == DOMAIN_MAX_BACKING) {
			drv_error_report(VIR_ERR_CONFIG_UNSUPPORTED,
					 "disk %s: a backing chain longer than %d layers is not supported by kvmm",
					 d->source, DOMAIN_MAX_BACKING);
			return -1;
		}
		d->backing = g_renew(struct domain_backing, d->backing, d->nbacking + 1);
		b = &d->backing[d->nbacking++];
		b->format = f;
		b->path = g_steal_pointer(&path);
		b->index = 0;
	}
}

int disk_chain_prepare(struct domain_def *def)
{
	unsigned index = 0;

	for (size_t i = 0; i < def->ndisks; i++) {
		struct domain_disk *d = &def->disks[i];

		if (!d->backing_end && probe(d) < 0) {
			disk_chain_forget(def);
			return -1;
		}
	}
	/* libvirt numbers every layer of every disk, top first. */
	for (size_t i = 0; i < def->ndisks; i++) {
		struct domain_disk *d = &def->disks[i];

		d->index = ++index;
		for (size_t j = 0; j < d->nbacking; j++)
			d->backing[j].index = ++index;
	}
	return 0;
}

void disk_chain_forget(struct domain_def *def)
{
	for (size_t i = 0; i < def->ndisks; i++) {
		struct domain_disk *d = &def->disks[i];

		for (size_t j = d->nbacking_given; j < d->nbacking; j++)
			g_free(d->backing[j].path);
		d->nbacking = d->nbacking_given;
		d->index = 0;
		for (size_t j = 0; j < d->nbacking; j++)
			d->backing[j].index = 0;
	}
}

int disk_chain_qcow2_size(int fd, uint64_t *size)
{
	unsigned char h[32];

	/* CLIENT: the header is the image's; only its magic is trusted to
	 * say it is qcow2, the size is reported as it stands. */
	if (pread(fd, h, sizeof(h), 0) != (ssize_t)sizeof(h) || be32(h) != QCOW2_MAGIC)
		return 0;
	*size = be64(h + 24);
	return 1;
}

int disk_chain_qcow2_has_backing(int fd)
{
	unsigned char h[20];

	/* CLIENT: the header is the image's; nonzero offset and length of a
	 * backing file name are enough for kvmm to go looking for it. */
	if (pread(fd, h, sizeof(h), 0) != (ssize_t)sizeof(h) || be32(h) != QCOW2_MAGIC)
		return 0;
	return be64(h + 8) && be32(h + 16);
}

void disk_chain_adopt(struct domain_def *def, struct domain_def *live)
{
	if (def->ndisks != live->ndisks)
		return;
	for (size_t i = 0; i < def->ndisks; i++) {
		struct domain_disk *d = &def->disks[i], *l = &live->disks[i];

		/* The same definition (the caller compared them): the live
		 * chain continues the given one. */
		if (g_strcmp0(d->source, l->source) || l->nbacking < d->nbacking)
			return;
	}
	disk_chain_forget(def);
	for (size_t i = 0; i < def->ndisks; i++) {
		struct domain_disk *d = &def->disks[i], *l = &live->disks[i];

		d->index = l->index;
		d->backing = g_renew(struct domain_backing, d->backing, l->nbacking);
		for (size_t j = 0; j < l->nbacking; j++) {
			if (j >= d->nbacking) {
				d->backing[j].path = g_steal_pointer(&l->backing[j].path);
				d->backing[j].format = l->backing[j].format;
			}
			d->backing[j].index = l->backing[j].index;
		}
		d->nbacking = l->nbacking;
	}
}
