/* The main thread's epoll loop: the control socket, serial backends,
 * signals and vCPU requests all arrive here.  Device work never runs on
 * vCPU threads' behalf here except input delivery. */
#ifndef KVMM_LOOP_H
#define KVMM_LOOP_H

#include <stdbool.h>
#include <stdint.h>

typedef void (*loop_fn)(void *opaque, uint32_t events);

struct loop;

struct loop *loop_new(void);
void loop_free(struct loop *l);
/* Watches fd for events (EPOLLIN...); fn(opaque, events) when ready. */
int loop_add(struct loop *l, int fd, uint32_t events, loop_fn fn, void *opaque);
int loop_mod(struct loop *l, int fd, uint32_t events);
void loop_del(struct loop *l, int fd);
/* Runs until loop_quit(); returns 0 or -errno. */
int loop_run(struct loop *l);
void loop_quit(struct loop *l);

#endif
