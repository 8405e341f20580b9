/* What /proc says about a kvmm process and its threads: CPU times, the
 * CPU a thread last ran on, resident memory, and which threads are the
 * vCPUs (kvmm names them "vcpuN"). */
#ifndef KVMM_DRV_PROC_STAT_H
#define KVMM_DRV_PROC_STAT_H

#include <stdint.h>
#include <sys/types.h>

struct proc_times {
	uint64_t user_ns, system_ns;
	int cpu;			/* last ran on; -1 unknown */
};

/* PID's (TID < 0) or one of its threads' times.  0, or -1 if gone. */
int proc_times(pid_t pid, pid_t tid, struct proc_times *t);

/* VmRSS of PID in KiB, or -1. */
long long proc_rss_kib(pid_t pid);

/* The thread ids of PID's vCPUs, indexed by vCPU number (0 where not
 * found), for N vCPUs.  The number found. */
int proc_vcpu_tids(pid_t pid, pid_t *tids, int n);

#endif
