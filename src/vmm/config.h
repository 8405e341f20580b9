/* The VM description: one structure, filled from a JSON document by one
 * parser.  The command line is turned into the same JSON first (main.c), so
 * flags and --config files are validated by exactly the same code.
 * Schema: schemas/vm-config.schema.json. */
#ifndef KVMM_CONFIG_H
#define KVMM_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vm_limits.h"	/* the ranges, shared with virtkvmmd */

struct json_object;

#define KVMM_MAX_CPUS VM_MAX_CPUS
#define KVMM_MIN_MEMORY VM_MIN_MEMORY
#define KVMM_MAX_MEMORY VM_MAX_MEMORY

enum serial_mode {
	SERIAL_NONE,
	SERIAL_STDIO,
	SERIAL_PTY,
	SERIAL_FILE,
	SERIAL_UNIX,
};

struct serial_config {
	enum serial_mode mode;
	char *path;		/* file: and unix: */
};

/* --disk cache=: what the host's page cache may hold and what a guest
 * FLUSH does (docs/kvmm.md). */
enum disk_cache {
	DISK_CACHE_WRITEBACK,	/* buffered, FLUSH = fdatasync (default) */
	DISK_CACHE_NONE,	/* O_DIRECT, FLUSH = fdatasync */
	DISK_CACHE_UNSAFE,	/* buffered, FLUSH does nothing */
};

#define KVMM_MAX_DISKS		VM_MAX_DISKS
#define KVMM_DISK_SERIAL_MAX	VM_DISK_SERIAL_MAX	/* virtio-blk GET_ID */

struct disk_config {
	char *path;
	bool readonly;
	enum disk_cache cache;
	char *serial;		/* NULL: GET_ID answers an empty string */
	unsigned int blk_size;	/* logical block: 512 (default) to 4096 */
};

#define KVMM_MAX_NETS		VM_MAX_NETS

/* --net: a virtio-net NIC on a tap device, named (kvmm opens it, and
 * creates it if it does not exist) or already open (fd=N). */
struct net_config {
	char *tap;		/* NULL with fd */
	int fd;			/* -1 with tap */
	bool has_mac;		/* else the device picks 52:54:00:xx:xx:xx */
	uint8_t mac[6];
};

struct vm_config {
	char *name;
	char *kernel;
	char *initrd;
	char *cmdline;
	uint64_t memory;	/* bytes */
	unsigned int cpus;
	struct serial_config serial;
	bool has_console;	/* a virtio-console ("console") ... */
	struct serial_config console;	/* ... and its host end */
	char *api_socket;
	bool no_reboot;
	bool thp;		/* guest RAM on transparent huge pages (default) */
	bool paused;		/* first boot waits for "resume" (no reset does) */
	bool rng;		/* virtio-rng fed by the host's getrandom() */
	struct disk_config disks[KVMM_MAX_DISKS];
	unsigned int ndisks;
	struct net_config nets[KVMM_MAX_NETS];
	unsigned int nnets;
};

/* Fills *cfg from a JSON object.  On error returns -EINVAL and writes one
 * line naming the problem and its fix into err. */
int config_from_json(struct json_object *obj, struct vm_config *cfg,
		     char *err, size_t errlen);
void config_free(struct vm_config *cfg);
const char *serial_mode_name(enum serial_mode mode);
const char *disk_cache_name(enum disk_cache cache);

#endif
