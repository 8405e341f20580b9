/* Post-copy live migration, both ends (postcopy.h).
 *
 * The destination's faults come from every thread that touches guest
 * RAM: vCPUs (KVM's own accesses, through get_user_pages, hence a
 * userfaultfd that handles kernel faults) and kvmm's main thread (virtio
 * rings, disk reads, net RX).  Two threads of their own serve them, and
 * neither ever touches guest RAM but through UFFDIO_COPY/ZEROPAGE: the
 * fault thread reads the userfaultfd and asks the source for the page (or
 * places a zero page: one the source never had), the receive thread reads
 * the pages the source sends and places them.  So no fault waits on the
 * thread that faulted. */
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "api.h"
#include "log.h"
#include "loop.h"
#include "postcopy.h"
#include "sandbox.h"
#include "util.h"
#include "vm.h"

/* Pages sent in reply to a request: the one asked for and what follows
 * it (a guest touching a page often touches the next). */
#define PC_REQ_PAGES	16
/* Pages per background section: small, so a request waits little. */
#define PC_PUSH_PAGES	64

static bool bit(const uint8_t *bm, uint64_t p)
{
	return __atomic_load_n(&bm[p / 8], __ATOMIC_ACQUIRE) & (1u << (p % 8));
}

static void clear_bit(uint8_t *bm, uint64_t p)
{
	__atomic_fetch_and(&bm[p / 8], (uint8_t)~(1u << (p % 8)), __ATOMIC_RELEASE);
}

static uint64_t popcount_bm(const uint8_t *bm, uint64_t npages)
{
	uint64_t i, n = 0;

	for (i = 0; i < (npages + 7) / 8; i++)
		n += __builtin_popcount(bm[i]);
	return n;
}

static void put_msg(uint8_t *b, uint32_t type, uint64_t page)
{
	uint32_t zero = 0;

	memcpy(b, &type, 4);
	memcpy(b + 4, &zero, 4);
	memcpy(b + 8, &page, 8);
}

static int read_exact(int fd, void *buf, size_t len)
{
	size_t got = 0;
	ssize_t n;

	while (got < len) {
		n = read(fd, (uint8_t *)buf + got, len - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -ECONNRESET;
		got += n;
	}
	return 0;
}

/* --- source --- */

/* One section of pending pages from page p on; they are sent then. */
static int send_from(struct postcopy_source *ps, uint64_t p, uint64_t max, uint64_t *next)
{
	uint64_t q, sent;
	int r;

	*next = p;
	r = stream_write_pages(ps->w, ps->base, ps->npages, ps->pending, next, max, &sent);
	if (r)
		return r;
	for (q = p; q < *next; q++)
		clear_bit(ps->pending, q);
	return 0;
}

/* GUEST: the destination's messages are as untrusted as its guest. */
static int read_msg(int fd, uint32_t *type, uint64_t *page, uint64_t npages)
{
	uint8_t b[POSTCOPY_MSG_LEN];
	uint32_t zero;
	int r = read_exact(fd, b, sizeof(b));

	if (r)
		return r;
	memcpy(type, b, 4);
	memcpy(&zero, b + 4, 4);
	memcpy(page, b + 8, 8);
	if (zero || (*type != POSTCOPY_REQ && *type != POSTCOPY_DONE) ||
	    (*type == POSTCOPY_REQ && *page >= npages))
		return -EPROTO;
	return 0;
}

int postcopy_source_run(struct postcopy_source *ps, char *err, size_t errlen)
{
	uint64_t cursor = 0, next, page, left = popcount_bm(ps->pending, ps->npages);
	uint32_t type;
	struct pollfd pfd = { .fd = ps->w->fd, .events = POLLIN };
	int r;

	while (cursor < ps->npages) {
		if (atomic_load(ps->cancel)) {
			snprintf(err, errlen, "cancelled");
			return -ECANCELED;
		}
		/* Requests first: a vCPU of the destination waits on each. */
		while (poll(&pfd, 1, 0) > 0) {
			r = read_msg(ps->w->fd, &type, &page, ps->npages);
			if (r)
				goto bad_msg;
			if (type == POSTCOPY_DONE) {
				r = -EPROTO;
				goto bad_msg;
			}
			ps->requests++;
			if (!bit(ps->pending, page))
				continue;	/* sent already, on its way */
			r = send_from(ps, page, PC_REQ_PAGES, &next);
			if (r)
				goto bad_write;
		}
		r = send_from(ps, cursor, PC_PUSH_PAGES, &cursor);
		if (r)
			goto bad_write;
		left = popcount_bm(ps->pending, ps->npages);
		if (ps->progress)
			ps->progress(ps->opaque, left * STREAM_PAGE_SIZE, ps->requests);
	}
	r = stream_write_section(ps->w, SEC_END, 1, "", 0);
	if (r)
		goto bad_write;
	/* Requests sent before the last pages arrived are answered already. */
	do {
		r = read_msg(ps->w->fd, &type, &page, ps->npages);
		if (r)
			goto bad_msg;
	} while (type != POSTCOPY_DONE);
	return 0;
bad_write:
	snprintf(err, errlen, "cannot send guest memory: %s", strerror(-r));
	return r;
bad_msg:
	snprintf(err, errlen, r == -EPROTO ? "the destination sent a malformed post-copy message" :
		 "the destination's connection: %s", strerror(-r));
	return r;
}

/* --- destination --- */

enum incoming_state { IN_NONE, IN_PREPARED, IN_ACTIVE, IN_COMPLETED, IN_FAILED };

static struct incoming {
	struct vm *vm;
	int fd, uffd, epfd, stop_fd, done_fd;
	uint8_t *base;
	uint64_t npages;
	uint8_t *pending;		/* pages still to come (atomic bits) */
	uint8_t *requested;		/* fault thread's only */
	pthread_t fault_thread, recv_thread;
	bool threads;
	pthread_mutex_t wlock;		/* writes to fd */
	pthread_mutex_t lock;		/* state, err */
	enum incoming_state state;
	uint64_t remaining;		/* pages (atomic) */
	bool stopping;
	char err[256];
} in = {
	.fd = -1, .uffd = -1, .epfd = -1, .stop_fd = -1, .done_fd = -1,
	.wlock = PTHREAD_MUTEX_INITIALIZER, .lock = PTHREAD_MUTEX_INITIALIZER,
};

static void in_close_fds(void)
{
	int *fds[] = { &in.fd, &in.uffd, &in.epfd, &in.stop_fd, &in.done_fd };
	unsigned int i;

	if (in.done_fd >= 0 && in.vm)
		loop_del(in.vm->loop, in.done_fd);
	for (i = 0; i < sizeof(fds) / sizeof(fds[0]); i++) {
		if (*fds[i] >= 0)
			close(*fds[i]);
		*fds[i] = -1;
	}
	free(in.pending);
	free(in.requested);
	in.pending = in.requested = NULL;
}

static int open_uffd(char *err, size_t errlen)
{
	int dev, fd;

	/* /dev/userfaultfd's permission is checked at open; the syscall
	 * instead needs CAP_SYS_PTRACE for kernel faults (KVM's) when
	 * vm.unprivileged_userfaultfd is 0. */
	dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
	if (dev >= 0) {
		fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
		close(dev);
		if (fd >= 0)
			return fd;
	}
	fd = syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (fd < 0) {
		fd = -errno;
		snprintf(err, errlen, "post-copy needs a userfaultfd that takes KVM's faults: "
			 "neither /dev/userfaultfd nor userfaultfd() gave one (%s); start kvmm as root",
			 strerror(-fd));
	}
	return fd;
}

static void join_threads(void);

static void on_in_done(void *opaque, uint32_t events)
{
	struct vm *vm = opaque;
	uint64_t n;
	char why[300];

	if (read(in.done_fd, &n, sizeof(n)) < 0)
		return;
	join_threads();
	pthread_mutex_lock(&in.lock);
	snprintf(why, sizeof(why), "%s", in.err);
	pthread_mutex_unlock(&in.lock);
	if (in.state == IN_COMPLETED) {
		struct uffdio_range range = { (uintptr_t)in.base, in.npages * STREAM_PAGE_SIZE };

		/* Every page is in: RAM is ordinary memory again. */
		if (ioctl(in.uffd, UFFDIO_UNREGISTER, &range))
			pr_warn("post-copy: cannot unregister guest RAM: %s", strerror(errno));
		in_close_fds();
		pr_info("post-copy: every page arrived");
		api_event_migration(vm->api, "completed", NULL);
		return;
	}
	/* The guest is lost: what ran here used pages the source can no
	 * longer send.  Paused (a vCPU waiting on a page is kicked out of
	 * its fault), for whoever started it to end it; the userfaultfd
	 * stays, so nothing runs on with a page of zeros in place. */
	pr_err("post-copy failed: %s; the guest is lost", why);
	vm_pause(vm);
	api_event_migration(vm->api, "failed", why);
}

int postcopy_incoming_prepare(struct vm *vm, int fd, const uint8_t *payload, uint64_t len,
			      char *err, size_t errlen)
{
	struct uffdio_api api = { .api = UFFD_API };
	struct uffdio_register reg = { 0 };
	struct epoll_event ev = { .events = EPOLLIN };
	uint64_t npages = vm->mem.size / STREAM_PAGE_SIZE, n, p, start;
	size_t bmlen = (npages + 7) / 8;
	int r;

	in.fd = fd;
	in.vm = vm;
	/* GUEST: the bitmap is the source's: its size this VM's RAM, no bit
	 * past its end. */
	if (len < 8 || (memcpy(&n, payload, 8), n != npages) || len != 8 + bmlen ||
	    (npages % 8 && payload[8 + bmlen - 1] >> (npages % 8))) {
		snprintf(err, errlen, "postcopy section: its bitmap does not fit this VM's RAM (corrupt stream)");
		r = -EINVAL;
		goto fail;
	}
	if (vm->mem.page_size || vm->mem.file_backed) {
		snprintf(err, errlen, "post-copy needs guest RAM of ordinary pages (no hugepages)");
		r = -EOPNOTSUPP;
		goto fail;
	}
	in.pending = malloc(bmlen);
	in.requested = calloc(1, bmlen);
	if (!in.pending || !in.requested) {
		snprintf(err, errlen, "out of memory for the post-copy bitmaps");
		r = -ENOMEM;
		goto fail;
	}
	memcpy(in.pending, payload + 8, bmlen);
	in.npages = npages;
	in.base = vm->mem.base;
	in.remaining = popcount_bm(in.pending, npages);
	/* Earlier rounds' copies of these pages are stale: gone, each page
	 * faults until the source's copy is placed. */
	for (p = 0; p < npages; ) {
		if (!bit(in.pending, p)) {
			p++;
			continue;
		}
		for (start = p; p < npages && bit(in.pending, p); p++)
			;
		if (madvise(in.base + start * STREAM_PAGE_SIZE, (p - start) * STREAM_PAGE_SIZE,
			    MADV_DONTNEED)) {
			r = -errno;
			snprintf(err, errlen, "cannot drop the stale pages: %s", strerror(-r));
			goto fail;
		}
	}
	r = open_uffd(err, errlen);
	if (r < 0)
		goto fail;
	in.uffd = r;
	reg.range.start = (uintptr_t)in.base;
	reg.range.len = vm->mem.size;
	reg.mode = UFFDIO_REGISTER_MODE_MISSING;
	if (ioctl(in.uffd, UFFDIO_API, &api) || ioctl(in.uffd, UFFDIO_REGISTER, &reg)) {
		r = -errno;
		snprintf(err, errlen, "cannot register guest RAM with the userfaultfd: %s", strerror(-r));
		goto fail;
	}
	if ((reg.ioctls & ((1ULL << _UFFDIO_COPY) | (1ULL << _UFFDIO_ZEROPAGE))) !=
	    ((1ULL << _UFFDIO_COPY) | (1ULL << _UFFDIO_ZEROPAGE))) {
		snprintf(err, errlen, "the userfaultfd cannot place pages in guest RAM");
		r = -EOPNOTSUPP;
		goto fail;
	}
	in.epfd = epoll_create1(EPOLL_CLOEXEC);
	in.stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	in.done_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	ev.data.fd = in.uffd;
	if (in.epfd < 0 || in.stop_fd < 0 || in.done_fd < 0 ||
	    epoll_ctl(in.epfd, EPOLL_CTL_ADD, in.uffd, &ev)) {
		r = -errno;
		snprintf(err, errlen, "cannot set up post-copy: %s", strerror(-r));
		goto fail;
	}
	ev.data.fd = in.stop_fd;
	if (epoll_ctl(in.epfd, EPOLL_CTL_ADD, in.stop_fd, &ev)) {
		r = -errno;
		snprintf(err, errlen, "cannot set up post-copy: %s", strerror(-r));
		goto fail;
	}
	r = loop_add(vm->loop, in.done_fd, EPOLLIN, on_in_done, vm);
	if (r) {
		snprintf(err, errlen, "cannot set up post-copy: %s", strerror(-r));
		close(in.done_fd);
		in.done_fd = -1;
		goto fail;
	}
	in.state = IN_PREPARED;
	pr_info("post-copy: %llu pages to come", (unsigned long long)in.remaining);
	return 0;
fail:
	in_close_fds();
	return r;
}

bool postcopy_incoming_pending(void)
{
	return in.state == IN_PREPARED;
}

/* The first failure is the one reported. */
static void __attribute__((format(printf, 1, 2))) in_fail(const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&in.lock);
	if (in.state == IN_ACTIVE) {
		in.state = IN_FAILED;
		va_start(ap, fmt);
		vsnprintf(in.err, sizeof(in.err), fmt, ap);
		va_end(ap);
	}
	pthread_mutex_unlock(&in.lock);
}

static void placed(uint64_t p)
{
	clear_bit(in.pending, p);
	__atomic_fetch_sub(&in.remaining, 1, __ATOMIC_RELAXED);
}

static int put_page(void *opaque, uint64_t first, uint64_t count, const uint8_t *data)
{
	struct uffdio_copy c;
	uint64_t p;

	for (p = first; p < first + count; p++, data += STREAM_PAGE_SIZE) {
		/* GUEST: a page sent twice, or one never announced, is not
		 * placed: what the guest has there stays. */
		if (!bit(in.pending, p))
			continue;
		c = (struct uffdio_copy){ .dst = (uintptr_t)in.base + p * STREAM_PAGE_SIZE,
					  .src = (uintptr_t)data, .len = STREAM_PAGE_SIZE };
		while (ioctl(in.uffd, UFFDIO_COPY, &c)) {
			if (errno == EEXIST)
				break;
			if (errno != EAGAIN && errno != EINTR)
				return -errno;
			c.copy = 0;
		}
		/* After the page is in: a fault that sees the bit clear finds
		 * the page there. */
		placed(p);
	}
	return 0;
}

static void *recv_thread(void *opaque)
{
	struct stream_reader rd;
	struct stream_section_hdr h;
	uint8_t msg[POSTCOPY_MSG_LEN], *p;
	uint64_t one = 1;
	char err[256];
	int r;

	pthread_setname_np(pthread_self(), "postcopy-recv");
	if (sandbox_thread_enter(SANDBOX_THREAD_MIGRATION)) {
		in_fail("%s", "cannot confine the post-copy receive thread");
		goto out;
	}
	stream_reader_init(&rd, in.fd);
	rd.version = STREAM_VERSION;
	for (;;) {
		r = stream_read_section_hdr(&rd, &h);
		if (r) {
			in_fail("the source's connection: %.200s", rd.err);
			goto out;
		}
		if (h.type == SEC_END && h.index == 1 && !h.len)
			break;
		if (h.type != SEC_PAGES) {
			in_fail("unexpected %s section during post-copy (corrupt stream)",
				stream_section_name(h.type));
			goto out;
		}
		r = stream_read_payload(&rd, &h, &p);
		if (r) {
			in_fail("the source's connection: %.200s", rd.err);
			goto out;
		}
		r = stream_for_pages(p, h.len, in.npages, put_page, NULL, NULL, err, sizeof(err));
		free(p);
		if (r) {
			in_fail("cannot place a page: %.200s", r == -EINVAL ? err : strerror(-r));
			goto out;
		}
	}
	if (__atomic_load_n(&in.remaining, __ATOMIC_RELAXED)) {
		in_fail("%s", "the source ended post-copy with pages never sent");
		goto out;
	}
	put_msg(msg, POSTCOPY_DONE, 0);
	pthread_mutex_lock(&in.wlock);
	r = write_all(in.fd, msg, sizeof(msg));
	pthread_mutex_unlock(&in.wlock);
	if (r)
		pr_warn("post-copy: cannot tell the source all arrived: %s", strerror(-r));
	pthread_mutex_lock(&in.lock);
	if (in.state == IN_ACTIVE)
		in.state = IN_COMPLETED;
	pthread_mutex_unlock(&in.lock);
out:
	if (write(in.done_fd, &one, sizeof(one)) < 0)
		pr_debug("post-copy eventfd: %s", strerror(errno));
	return NULL;
}

static void serve_fault(uint64_t addr)
{
	struct uffdio_zeropage z;
	struct uffdio_range wake;
	uint8_t msg[POSTCOPY_MSG_LEN];
	uint64_t p;
	int r;

	if (addr < (uintptr_t)in.base)
		return;
	p = (addr - (uintptr_t)in.base) / STREAM_PAGE_SIZE;
	if (p >= in.npages)
		return;
	if (bit(in.pending, p)) {
		/* Placing the page wakes every thread waiting on it. */
		if (in.requested[p / 8] & (1u << (p % 8)))
			return;
		in.requested[p / 8] |= 1u << (p % 8);
		put_msg(msg, POSTCOPY_REQ, p);
		pthread_mutex_lock(&in.wlock);
		r = write_all(in.fd, msg, sizeof(msg));
		pthread_mutex_unlock(&in.wlock);
		if (r)
			pr_debug("post-copy: cannot ask for page %llu: %s",
				 (unsigned long long)p, strerror(-r));
		return;
	}
	/* A page the source never had (or one placed since the fault). */
	z = (struct uffdio_zeropage){ .range = { (uintptr_t)in.base + p * STREAM_PAGE_SIZE,
						 STREAM_PAGE_SIZE } };
	while (ioctl(in.uffd, UFFDIO_ZEROPAGE, &z)) {
		if (errno == EEXIST) {
			wake = z.range;
			ioctl(in.uffd, UFFDIO_WAKE, &wake);
			return;
		}
		if (errno != EAGAIN && errno != EINTR) {
			pr_warn("post-copy: cannot place a zero page: %s", strerror(errno));
			return;
		}
		z.zeropage = 0;
	}
}

static void *fault_thread(void *opaque)
{
	struct uffd_msg msgs[16];
	struct epoll_event evs[2];
	ssize_t n;
	int i, k;

	pthread_setname_np(pthread_self(), "postcopy-fault");
	if (sandbox_thread_enter(SANDBOX_THREAD_MIGRATION)) {
		in_fail("%s", "cannot confine the post-copy fault thread");
		return NULL;
	}
	for (;;) {
		k = epoll_wait(in.epfd, evs, 2, -1);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			break;
		for (i = 0; i < k; i++)
			if (evs[i].data.fd == in.stop_fd)
				return NULL;
		for (;;) {
			n = read(in.uffd, msgs, sizeof(msgs));
			if (n < 0)
				break;		/* EAGAIN: all read */
			for (i = 0; i < (int)(n / sizeof(msgs[0])); i++)
				if (msgs[i].event == UFFD_EVENT_PAGEFAULT)
					serve_fault(msgs[i].arg.pagefault.address);
		}
	}
	return NULL;
}

int postcopy_incoming_start(struct vm *vm)
{
	int r;

	in.state = IN_ACTIVE;
	r = -pthread_create(&in.fault_thread, NULL, fault_thread, NULL);
	if (r)
		goto fail;
	r = -pthread_create(&in.recv_thread, NULL, recv_thread, NULL);
	if (r) {
		uint64_t one = 1;

		if (write(in.stop_fd, &one, sizeof(one)) < 0)
			pr_debug("post-copy eventfd: %s", strerror(errno));
		pthread_join(in.fault_thread, NULL);
		goto fail;
	}
	in.threads = true;
	api_event_migration(vm->api, "postcopy-active", NULL);
	return 0;
fail:
	pr_err("cannot start post-copy's threads: %s", strerror(-r));
	in.state = IN_FAILED;
	return r;
}

const char *postcopy_incoming_status(uint64_t *remaining_bytes, char *error, size_t errlen)
{
	const char *s;

	pthread_mutex_lock(&in.lock);
	s = in.state == IN_ACTIVE ? "postcopy-active" : in.state == IN_COMPLETED ? "completed" :
	    in.state == IN_FAILED ? "failed" : NULL;
	snprintf(error, errlen, "%s", in.err);
	pthread_mutex_unlock(&in.lock);
	*remaining_bytes = __atomic_load_n(&in.remaining, __ATOMIC_RELAXED) * STREAM_PAGE_SIZE;
	return s;
}

bool postcopy_incoming_lost(void)
{
	return in.state == IN_FAILED;
}

static void join_threads(void)
{
	uint64_t one = 1;

	if (!in.threads)
		return;
	if (in.fd >= 0)
		shutdown(in.fd, SHUT_RDWR);
	if (write(in.stop_fd, &one, sizeof(one)) < 0)
		pr_debug("post-copy eventfd: %s", strerror(errno));
	pthread_join(in.recv_thread, NULL);
	pthread_join(in.fault_thread, NULL);
	in.threads = false;
}

void postcopy_incoming_stop(struct vm *vm)
{
	if (in.state == IN_NONE)
		return;
	in_fail("%s", "kvmm is stopping");
	join_threads();
	/* Closing the userfaultfd lets faults still waiting (a failure's)
	 * go on with zero pages: the guest is going away. */
	in_close_fds();
}
