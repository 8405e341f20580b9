/* The fuzzers' random numbers: xorshift64*, reproducible from a seed
 * (set rng_state, never to 0), good enough for picking inputs. */
#ifndef KVMM_FUZZ_RNG_H
#define KVMM_FUZZ_RNG_H

#include <stdint.h>

static uint64_t rng_state = 1;

static inline uint64_t rng(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 2685821657736338717ULL;
}

#endif
