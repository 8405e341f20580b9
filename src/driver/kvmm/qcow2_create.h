/* New qcow2 overlays for external snapshots: the daemon writes the image
 * itself (qemu-img is never run), an empty qcow2 v3 file whose every
 * read falls through to its backing file. */
#ifndef KVMM_QCOW2_CREATE_H
#define KVMM_QCOW2_CREATE_H

#include <stdint.h>

/* The size the guest sees of image PATH in FORMAT (conf_disk_format):
 * a raw file's or block device's length, a qcow2 header's virtual size.
 * 0, or -1 after reporting. */
int image_virtual_size(const char *path, int format, uint64_t *size);

/* Creates PATH (it must not exist; 0600) as a qcow2 image of SIZE bytes
 * backed by BACKING (an absolute path), whose format BACKING_FMT ("raw",
 * "qcow2") the header records, as libvirt requires of a chain it reads.
 * 0, or -1 after reporting, nothing left under PATH. */
int qcow2_create_overlay(const char *path, const char *backing, const char *backing_fmt,
			 uint64_t size);

#endif
