/* qcow2 overlays; see qcow2_create.h.
 *
 * The layout (64 KiB clusters, 16-bit refcounts, as qemu-img's default):
 * cluster 0 the header, its backing-format extension and the backing
 * file name; cluster 1 the refcount table; cluster 2 its one refcount
 * block; then the L1 table, all zero.  Every cluster of the file is
 * counted once, so `qemu-img check` finds neither leaks nor errors. */
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib.h>
#include <libvirt/libvirt.h>

#include "conf/domain_conf.h"
#include "disk_chain.h"
#include "error.h"
#include "qcow2_create.h"

#define VIR_FROM_THIS VIR_FROM_STORAGE

#define CLUSTER_BITS	16
#define CLUSTER		(1u << CLUSTER_BITS)
#define HEADER_LEN	104
#define EXT_BACKING_FMT	0xe2792acaU
#define MAGIC		0x514649fbU
/* One L1 entry maps an L2 table's 8192 clusters. */
#define L1_SPAN		((uint64_t)CLUSTER * (CLUSTER / 8))

static void put32(unsigned char *p, uint32_t v)
{
	p[0] = v >> 24; p[1] = v >> 16; p[2] = v >> 8; p[3] = v;
}

static void put64(unsigned char *p, uint64_t v)
{
	put32(p, v >> 32);
	put32(p + 4, (uint32_t)v);
}

int image_virtual_size(const char *path, int format, uint64_t *size)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC), rc = 0;

	if (fd < 0 || fstat(fd, &st) < 0) {
		drv_error_report(VIR_ERR_SYSTEM_ERROR, "cannot open '%s': %s", path,
				 g_strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	if (format == FORMAT_QCOW2) {
		if (disk_chain_qcow2_size(fd, size) != 1) {
			drv_error_report(VIR_ERR_OPERATION_FAILED, "'%s' is not a qcow2 image", path);
			rc = -1;
		}
	} else if (S_ISBLK(st.st_mode)) {
		if (ioctl(fd, BLKGETSIZE64, size) < 0) {
			drv_error_report(VIR_ERR_SYSTEM_ERROR, "cannot get the size of '%s': %s",
					 path, g_strerror(errno));
			rc = -1;
		}
	} else {
		*size = st.st_size;
	}
	close(fd);
	return rc;
}

int qcow2_create_overlay(const char *path, const char *backing, const char *backing_fmt,
			 uint64_t size)
{
	uint64_t l1_size = (size + L1_SPAN - 1) / L1_SPAN;
	uint64_t l1_clusters = (l1_size * 8 + CLUSTER - 1) / CLUSTER;
	uint64_t nclusters = 3 + (l1_clusters ? l1_clusters : 1);
	size_t flen = strlen(backing_fmt), blen = strlen(backing), off;
	g_autofree unsigned char *c = g_malloc0(3 * CLUSTER);
	int fd;

	off = HEADER_LEN + 8 + ((flen + 7) & ~(size_t)7) + 8;
	/* A cluster holds a path of any length Linux allows. */
	if (blen == 0 || blen > 1023 || off + blen > CLUSTER || nclusters > CLUSTER / 2) {
		drv_error_report(VIR_ERR_INTERNAL_ERROR,
				 "cannot create the overlay '%s': backing name or size out of range", path);
		return -1;
	}
	put32(c, MAGIC);
	put32(c + 4, 3);			/* version */
	put64(c + 8, off);			/* backing file name */
	put32(c + 16, blen);
	put32(c + 20, CLUSTER_BITS);
	put64(c + 24, size);
	put32(c + 36, l1_size);
	put64(c + 40, 3 * (uint64_t)CLUSTER);	/* L1 table */
	put64(c + 48, CLUSTER);			/* refcount table */
	put32(c + 56, 1);
	put32(c + 96, 4);			/* refcount_order: 16 bits */
	put32(c + 100, HEADER_LEN);
	put32(c + HEADER_LEN, EXT_BACKING_FMT);
	put32(c + HEADER_LEN + 4, flen);
	memcpy(c + HEADER_LEN + 8, backing_fmt, flen);
	/* then the end-of-extensions marker, zeros, and the name */
	memcpy(c + off, backing, blen);
	put64(c + CLUSTER, 2 * (uint64_t)CLUSTER);	/* refcount block 0 */
	for (uint64_t i = 0; i < nclusters; i++)
		c[2 * CLUSTER + 2 * i + 1] = 1;

	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		drv_error_report(VIR_ERR_OPERATION_INVALID, "cannot create the overlay '%s': %s", path,
				 errno == EEXIST ? "the file already exists" : g_strerror(errno));
		return -1;
	}
	if (pwrite(fd, c, 3 * CLUSTER, 0) != 3 * (ssize_t)CLUSTER ||
	    ftruncate(fd, nclusters * CLUSTER) < 0 || fsync(fd) < 0) {
		drv_error_report(VIR_ERR_SYSTEM_ERROR, "cannot write the overlay '%s': %s", path,
				 g_strerror(errno));
		close(fd);
		unlink(path);
		return -1;
	}
	close(fd);
	return 0;
}
