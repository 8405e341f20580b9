/* The host and capability calls (capabilities.c, domcaps.c, sysinfo.c,
 * nodestats.c), the close callback (connect.c), and the facts about this
 * host and this kvmm they share (host.c).  Handlers follow handlers.h's
 * conventions. */
#ifndef KVMM_DRV_HOST_H
#define KVMM_DRV_HOST_H

#include <stdbool.h>

#include <glib.h>

#include "rpc/dispatch.h"

/* capabilities.c */
int drv_connect_get_capabilities(struct rpc_conn *conn, void *args, void *ret);
/* The whole <capabilities> document, or NULL with the error reported;
 * READONLY: for a read-only client (no root-only facts). */
char *host_capabilities_format(bool readonly);

/* domcaps.c */
int drv_connect_get_domain_capabilities(struct rpc_conn *conn, void *args, void *ret);
int drv_connect_get_max_vcpus(struct rpc_conn *conn, void *args, void *ret);
/* Whether kvmm runs guests for this emulator, arch, machine type and
 * virttype (each NULL: the default), as domcapabilities answers them;
 * 0, or -1 with VIR_ERR_INVALID_ARG reported. */
int domcaps_check_target(const char *emulatorbin, const char *arch, const char *machine,
			 const char *virttype);

/* sysinfo.c */
int drv_connect_get_sysinfo(struct rpc_conn *conn, void *args, void *ret);

/* nodestats.c */
int drv_node_get_cpu_stats(struct rpc_conn *conn, void *args, void *ret);
int drv_node_get_memory_stats(struct rpc_conn *conn, void *args, void *ret);
int drv_node_get_cells_free_memory(struct rpc_conn *conn, void *args, void *ret);
int drv_node_get_free_memory(struct rpc_conn *conn, void *args, void *ret);
int drv_node_get_cpu_map(struct rpc_conn *conn, void *args, void *ret);
int drv_node_get_free_pages(struct rpc_conn *conn, void *args, void *ret);

/* connect.c */
int drv_connect_register_close_callback(struct rpc_conn *conn, void *args, void *ret);
int drv_connect_unregister_close_callback(struct rpc_conn *conn, void *args, void *ret);

/* host.c: facts */

/* The kvmm binary domains run with: in a build tree (virtkvmmd is
 * .../src/driver/virtkvmmd and .../src/vmm/kvmm exists) that kvmm, else
 * the installed one, KVMM_PATH ($bindir/kvmm, set at build time). */
const char *host_emulator_path(void);

/* A number from /sys/devices/system/cpu/cpuCPU/FILE (e.g. "online",
 * "topology/core_id"), or -1 when absent (node.c). */
long host_cpu_long(int cpu, const char *file);

/* The most vCPUs a kvmm guest can have here: KVM's limit
 * (KVM_CAP_MAX_VCPUS, else KVM_CAP_NR_VCPUS) capped by kvmm's own. */
int host_max_vcpus(void);

/* NUMA cells present (ids in ascending order; a host without
 * /sys/devices/system/node has one cell, 0). */
GArray *host_numa_cells(void);	/* of int */
bool host_numa_cell_exists(int cell);

/* "Key:   123 kB" style values from a meminfo file (/proc/meminfo, or a
 * node's meminfo whose lines start "Node N "); KiB, or -1 if absent. */
long long host_meminfo_kib(const char *path, const char *key);
/* A cell's meminfo path, or /proc/meminfo for cell -1. */
char *host_meminfo_path(int cell);

/* A sysfs cpu list file ("0-3,8") as ids; empty if unreadable. */
GArray *host_cpulist_read(const char *path);	/* of int */
/* The online CPUs, from /sys/devices/system/cpu/online (a cpu list). */
GArray *host_online_cpus(void);	/* of int, ascending */
/* One more than the highest CPU id present. */
int host_present_cpus(void);

/* The host's UUID (capabilities' <host><uuid>): the SMBIOS system UUID
 * when this daemon can read it (*FROM_DMI set: it is root-only, see
 * capabilities.c), else one generated on first use and kept in the
 * instance's state directory (var/lib/libvirt/kvmm/host-uuid). */
const char *host_uuid(bool *from_dmi);

/* libvirt's name (its cpu_map's) for a CPUID vendor string:
 * "AuthenticAMD" is "AMD"; others as they are. */
const char *host_cpu_vendor_name(const char *cpuid_vendor);

/* XML text and attribute escaping for the formatters (&, <, >, ', "). */
void xml_append_escaped(GString *out, const char *text);
void xml_append_printf(GString *out, const char *fmt, ...) G_GNUC_PRINTF(2, 3);

#endif
