/* An I/O engine for the block layer that the blk unit test drives by
 * hand: it holds every request it is given until the test finishes it,
 * so the test sees what was in flight, and in which order it went. */
#ifndef KVMM_TEST_BLK_ENGINE_H
#define KVMM_TEST_BLK_ENGINE_H

#include "block/block.h"

/* Requests the engine holds, oldest first. */
unsigned int he_held(void);
enum block_op he_op(unsigned int i);
uint64_t he_off(unsigned int i);
/* Its length, and where in the file it goes. */
uint64_t he_bytes(unsigned int i);
uint64_t he_host(unsigned int i);
/* Does held request i for real (pwritev/preadv/fdatasync) and signals
 * its completion; the layer takes it at its next poll. */
void he_finish(unsigned int i);
/* Finishes held request i as the host failing it with -err (no I/O). */
void he_fail(unsigned int i, int err);
/* The engine's next submit fails with this (0: it does not). */
extern int he_submit_error;

#endif
