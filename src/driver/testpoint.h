/* Crash points for the fault tests: the daemon kills itself (SIGKILL, as
 * `kill -9` would) where VIRTKVMMD_TEST_CRASH_AT names the point it has
 * reached, so a test can stop it exactly inside a window a random kill
 * only hits now and then.  Unset (always, outside tests), nothing
 * happens. */
#ifndef KVMM_DRV_TESTPOINT_H
#define KVMM_DRV_TESTPOINT_H

#include <signal.h>
#include <stdlib.h>
#include <string.h>

static inline void test_crash_point(const char *name)
{
	const char *at = getenv("VIRTKVMMD_TEST_CRASH_AT");

	if (at && !strcmp(at, name))
		raise(SIGKILL);
}

#endif
