#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "loop.h"

struct loop_watch {
	int fd;
	loop_fn fn;
	void *opaque;
	struct loop_watch *next;
};

struct loop {
	int epfd;
	bool quit;
	struct loop_watch *watches;
};

struct loop *loop_new(void)
{
	struct loop *l = calloc(1, sizeof(*l));

	if (!l)
		return NULL;
	l->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (l->epfd < 0) {
		free(l);
		return NULL;
	}
	return l;
}

void loop_free(struct loop *l)
{
	struct loop_watch *w, *next;

	if (!l)
		return;
	for (w = l->watches; w; w = next) {
		next = w->next;
		free(w);
	}
	close(l->epfd);
	free(l);
}

int loop_add(struct loop *l, int fd, uint32_t events, loop_fn fn, void *opaque)
{
	struct loop_watch *w = calloc(1, sizeof(*w));
	struct epoll_event ev = { .events = events };

	if (!w)
		return -ENOMEM;
	w->fd = fd;
	w->fn = fn;
	w->opaque = opaque;
	ev.data.ptr = w;
	if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		free(w);
		return -errno;
	}
	w->next = l->watches;
	l->watches = w;
	return 0;
}

static struct loop_watch *loop_find(struct loop *l, int fd)
{
	struct loop_watch *w;

	for (w = l->watches; w; w = w->next)
		if (w->fd == fd)
			return w;
	return NULL;
}

int loop_mod(struct loop *l, int fd, uint32_t events)
{
	struct loop_watch *w = loop_find(l, fd);
	struct epoll_event ev = { .events = events };

	if (!w)
		return -ENOENT;
	ev.data.ptr = w;
	return epoll_ctl(l->epfd, EPOLL_CTL_MOD, fd, &ev) < 0 ? -errno : 0;
}

void loop_del(struct loop *l, int fd)
{
	struct loop_watch **p, *w;

	for (p = &l->watches; (w = *p); p = &w->next) {
		if (w->fd == fd) {
			epoll_ctl(l->epfd, EPOLL_CTL_DEL, fd, NULL);
			*p = w->next;
			free(w);
			return;
		}
	}
}

/* A callback may delete a watch whose event is still queued in the same
 * batch; only watches still on the list are dispatched.  The handlers
 * cope with a spurious wakeup (non-blocking fds), so address reuse by a
 * newer watch is harmless. */
static bool loop_watch_alive(struct loop *l, struct loop_watch *w)
{
	struct loop_watch *x;

	for (x = l->watches; x; x = x->next)
		if (x == w)
			return true;
	return false;
}

int loop_run(struct loop *l)
{
	struct epoll_event evs[16];
	int i, n;

	while (!l->quit) {
		n = epoll_wait(l->epfd, evs, 16, -1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		for (i = 0; i < n && !l->quit; i++) {
			struct loop_watch *w = evs[i].data.ptr;

			if (loop_watch_alive(l, w))
				w->fn(w->opaque, evs[i].events);
		}
	}
	return 0;
}

void loop_quit(struct loop *l)
{
	l->quit = true;
}
