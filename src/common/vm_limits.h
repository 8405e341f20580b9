/* What a VM may be: the value ranges of the VM config contract, kept once.
 *
 * kvmm's config parser (src/vmm/config.c) refuses what is outside them;
 * virtkvmmd (src/driver/conf/ at define, src/driver/vmconfig.c at start)
 * refuses the same definitions earlier, with libvirt's errors, so that no
 * configuration it hands to kvmm is refused there.  Change a value here and
 * both sides follow; tests/driver/test_xml2config.py runs every golden
 * through kvmm's parser to keep them in step.
 *
 * Header only: plain constants and one pure predicate, usable from the
 * freestanding-ish VMM and from the GLib daemon alike. */
#ifndef KVMM_VM_LIMITS_H
#define KVMM_VM_LIMITS_H

#include <stdbool.h>
#include <string.h>

/* Guest RAM in bytes.  kvmm maps it in whole pages, so the size is a
 * multiple of VM_MEMORY_ALIGN; the daemon rounds <memory> up to it. */
#define VM_MIN_MEMORY	(16ULL << 20)	/* 16 MiB */
#define VM_MAX_MEMORY	(1ULL << 40)	/* 1 TiB */
#define VM_MEMORY_ALIGN	4096ULL		/* 4 KiB */

/* xAPIC IDs 0..253; the IOAPIC takes the ID above them. */
#define VM_MAX_CPUS	254

/* virtio-blk disks, and the ID a disk answers GET_ID with (virtio's
 * VIRTIO_BLK_ID_BYTES, no terminating NUL needed). */
#define VM_MAX_DISKS		16
#define VM_DISK_SERIAL_MAX	20

/* virtio-net NICs, each on its own tap. */
#define VM_MAX_NETS		8
/* A network interface name: IFNAMSIZ (16) less its NUL. */
#define VM_TAP_NAME_MAX		15
#define VM_NET_MTU_MIN		68	/* IPv4's minimum */
#define VM_NET_MTU_MAX		65535	/* virtio-net's mtu is 16 bits */

/* SMBIOS strings (<sysinfo>): each bounded, so all of them fit the
 * 64 KiB at 0xF0000 kvmm gives the tables. */
#define VM_SMBIOS_STRING_MAX	1024	/* bytes */
#define VM_SMBIOS_OEM_STRINGS	32

/* One of each: COM1, one virtio console, one virtio-rng. */
#define VM_MAX_SERIALS		1
#define VM_MAX_CONSOLES		1
#define VM_MAX_RNGS		1

/* The longest balloon statistics period kvmm takes (its --balloon
 * stats_period), seconds. */
#define VM_BALLOON_PERIOD_MAX	86400

/* A tap name the kernel takes (its dev_valid_name): 1 to VM_TAP_NAME_MAX
 * characters, no '/', ':' or white space, not "." or "..". */
static inline bool vm_tap_name_valid(const char *s)
{
	return *s && strlen(s) <= VM_TAP_NAME_MAX && !strpbrk(s, "/: \t\n\r\v\f") &&
	       strcmp(s, ".") && strcmp(s, "..");
}

#endif
