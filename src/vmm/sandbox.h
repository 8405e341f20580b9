/* kvmm --sandbox: confinement once everything is open (docs/kvmm.md). */
#ifndef KVMM_SANDBOX_H
#define KVMM_SANDBOX_H

#include <stdbool.h>
#include <stdint.h>

struct sandbox_config;

/* The kinds of thread kvmm runs, each with its own allow-list. */
enum sandbox_thread {
	SANDBOX_THREAD_MAIN,	/* event loop, devices' I/O, io_uring, control socket */
	SANDBOX_THREAD_VCPU,	/* KVM_RUN and the exits it hands to devices */
	SANDBOX_THREAD_MIGRATION, /* live migration's copy: dirty log, the stream */
	SANDBOX_THREAD_KINDS,
};

/* One row of an allow-list: the system call nr, allowed (err 0) or failing
 * with err; arg >= 0 allows it only when argument arg, masked with mask
 * (0: its low 32 bits), equals value; arg2 > arg (0: none) adds that
 * argument's low 32 bits equal to value2. */
struct seccomp_rule {
	int nr;
	int arg;
	uint64_t mask;
	uint64_t value;
	int err;
	const char *why;
	int arg2;
	uint64_t value2;
};

struct seccomp_policy {
	const char *name;
	const struct seccomp_rule *rules;
	unsigned int nrules;
};

/* seccomp_policy.c: the reviewed lists. */
extern const struct seccomp_policy seccomp_policies[SANDBOX_THREAD_KINDS];

/* On the main thread while it is the only one, after everything kvmm
 * needs by path is open: private empty root, uid/gid, no capabilities,
 * no_new_privs, the main thread's filter.  -errno, printed. */
int sandbox_enter(const struct sandbox_config *sb);

/* Every other thread, first thing: its own filter (a no-op unless
 * sandbox_enter ran).  -errno, printed. */
int sandbox_thread_enter(enum sandbox_thread kind);

/* The pieces, for tests: compiles the filters and installs the SIGSYS
 * reporter (log: EPERM instead of death), then applies one kind's filter
 * to the calling thread (no_new_privs must be set). */
int sandbox_filters_prepare(bool log);
int sandbox_filter_apply(enum sandbox_thread kind);

#endif
