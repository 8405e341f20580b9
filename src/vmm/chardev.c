#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "chardev.h"
#include "log.h"
#include "loop.h"
#include "util.h"

static void chardev_restore_tty(struct chardev *c)
{
	if (c->raw) {
		tcsetattr(STDIN_FILENO, TCSANOW, &c->saved);
		c->raw = false;
	}
}

static void set_nonblock(int fd)
{
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

static void chardev_stop_input(struct chardev *c)
{
	if (c->in_fd >= 0)
		loop_del(c->loop, c->in_fd);
}

static void chardev_drop_client(struct chardev *c)
{
	pthread_mutex_lock(&c->lock);
	chardev_stop_input(c);
	close(c->in_fd);
	c->in_fd = c->out_fd = -1;
	c->input_paused = false;
	pthread_mutex_unlock(&c->lock);
}

/* Does some process hold the pty's slave open?  While none does, the
 * master reports a hang-up (the kernel's TTY_OTHER_CLOSED), as QEMU's pty
 * chardev relies on. */
static bool chardev_pty_has_client(int master)
{
	struct pollfd p = { .fd = master, .events = POLLOUT };

	return poll(&p, 1, 0) >= 0 && !(p.revents & (POLLHUP | POLLERR));
}

static void chardev_pty_arm(struct chardev *c, bool on)
{
	struct itimerspec its = { 0 };

	if (on) {
		its.it_value.tv_nsec = CHARDEV_PTY_POLL_MS * 1000000L;
		its.it_interval = its.it_value;
	}
	timerfd_settime(c->pty_timer, 0, &its, NULL);
}

static void chardev_on_input(void *opaque, uint32_t events);

/* Empties what the guest wrote to the pty and no client read, which would
 * greet the next one.  Only through the slave can its input queue be
 * flushed; the lock keeps writers off while kvmm holds it open. */
static void chardev_pty_flush(struct chardev *c)
{
	int slave;

	pthread_mutex_lock(&c->lock);
	slave = open(c->path, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
	if (slave >= 0) {
		tcflush(slave, TCIFLUSH);
		close(slave);
	}
	c->pty_unread = false;
	pthread_mutex_unlock(&c->lock);
}

/* The last client closed the pty: stop reading (the master would report
 * the hang-up forever) and look for the next client by timer. */
static void chardev_pty_hangup(struct chardev *c)
{
	pthread_mutex_lock(&c->lock);
	chardev_stop_input(c);
	c->in_fd = -1;
	c->input_paused = false;
	pthread_mutex_unlock(&c->lock);
	chardev_pty_flush(c);
	pr_debug("%s: the client of %s left", c->what ? c->what : "serial console", c->path);
	chardev_pty_arm(c, true);
}

static void chardev_pty_on_timer(void *opaque, uint32_t events)
{
	struct chardev *c = opaque;
	uint64_t ticks;

	if (read(c->pty_timer, &ticks, sizeof(ticks)) < 0 && errno == EAGAIN)
		return;
	if (c->in_fd >= 0)
		return;
	if (!chardev_pty_has_client(c->out_fd)) {
		/* A client came and went between two ticks (nova reads the
		 * pty that way): what it left unread goes too. */
		if (c->pty_unread)
			chardev_pty_flush(c);
		return;
	}
	if (loop_add(c->loop, c->out_fd, EPOLLIN, chardev_on_input, c))
		return;		/* try again on the next tick */
	pthread_mutex_lock(&c->lock);
	c->in_fd = c->out_fd;
	pthread_mutex_unlock(&c->lock);
	pr_debug("%s: a client opened %s", c->what ? c->what : "serial console", c->path);
	chardev_pty_arm(c, false);
}

static void chardev_on_input(void *opaque, uint32_t events)
{
	struct chardev *c = opaque;
	uint8_t buf[256];
	size_t space, i, start = 0;
	ssize_t n;

	/* A hang-up comes even while input is paused (events 0); pending
	 * input (EPOLLIN beside it) is read first. */
	if (c->mode == SERIAL_PTY && (events & (EPOLLHUP | EPOLLERR)) && !(events & EPOLLIN)) {
		chardev_pty_hangup(c);
		return;
	}
	space = c->input_space(c->opaque);
	if (!space) {
		/* The device is full: stop reading until it drains, so the
		 * backend's own buffer holds the rest and nothing is lost. */
		pthread_mutex_lock(&c->lock);
		c->input_paused = true;
		loop_mod(c->loop, c->in_fd, 0);
		pthread_mutex_unlock(&c->lock);
		return;
	}
	n = read(c->in_fd, buf, MIN(space, sizeof(buf)));
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		if (c->mode == SERIAL_UNIX)
			chardev_drop_client(c);
		else if (c->mode == SERIAL_PTY)
			chardev_pty_hangup(c);	/* EIO: the slave is closed */
		else
			chardev_stop_input(c);	/* stdin closed: keep running */
		return;
	}
	if (c->escape_armed) {
		for (i = 0; i < (size_t)n; i++) {
			if (buf[i] == CHARDEV_ESCAPE) {
				if (i > start)
					c->input(c->opaque, buf + start, i - start);
				if (c->escape)
					c->escape(c->opaque_escape);
				return;
			}
		}
	}
	c->input(c->opaque, buf + start, n - start);
}

static void chardev_on_accept(void *opaque, uint32_t events)
{
	struct chardev *c = opaque;
	int fd = accept4(c->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

	if (fd < 0)
		return;
	if (c->in_fd >= 0)
		chardev_drop_client(c);	/* the newest client takes over */
	pthread_mutex_lock(&c->lock);
	c->in_fd = c->out_fd = fd;
	if (!c->had_client && c->backlog_len) {
		/* A fresh socket's buffer takes the bounded backlog whole;
		 * if it does not, the rest is dropped like any output. */
		write_all(fd, c->backlog, c->backlog_len);
	}
	free(c->backlog);
	c->backlog = NULL;
	c->backlog_len = 0;
	c->had_client = true;
	pthread_mutex_unlock(&c->lock);
	loop_add(c->loop, fd, EPOLLIN, chardev_on_input, c);
}

static int chardev_open_stdio(struct chardev *c)
{
	struct termios raw;
	int r;

	c->in_fd = STDIN_FILENO;
	c->out_fd = STDOUT_FILENO;
	if (isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &c->saved) == 0) {
		raw = c->saved;
		cfmakeraw(&raw);
		/* Keep output post-processing so host log lines stay tidy. */
		raw.c_oflag |= OPOST | ONLCR;
		tcsetattr(STDIN_FILENO, TCSANOW, &raw);
		c->raw = true;
		c->escape_armed = true;
	}
	r = loop_add(c->loop, c->in_fd, EPOLLIN, chardev_on_input, c);
	if (r == -EPERM) {
		/* stdin is a regular file or /dev/null: no console input. */
		c->in_fd = -1;
		r = 0;
	}
	return r;
}

/* As QEMU's pty chardev: the slave is opened only to make it raw, then
 * closed, so that the master tells whether a client has it open.  Output
 * while none has is dropped (else it would wait in the pty and greet a
 * later reader, such as nova's, with old output); the log gets it. */
static int chardev_open_pty(struct chardev *c)
{
	struct termios t;
	int master, slave;
	char *name;

	master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (master < 0 || grantpt(master) || unlockpt(master) ||
	    !(name = ptsname(master)))
		goto fail;
	slave = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (slave < 0)
		goto fail;
	if (tcgetattr(slave, &t) == 0) {
		cfmakeraw(&t);
		tcsetattr(slave, TCSANOW, &t);
	}
	close(slave);
	c->path = strdup(name);
	if (!c->path)
		goto fail;
	set_nonblock(master);
	c->out_fd = master;
	c->pty_timer = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	if (c->pty_timer < 0)
		return -errno;	/* chardev_close() closes the master */
	fprintf(stderr, "kvmm: %s is on %s\n", c->what ? c->what : "serial console", c->path);
	chardev_pty_arm(c, true);
	return loop_add(c->loop, c->pty_timer, EPOLLIN, chardev_pty_on_timer, c);
fail:
	if (master >= 0)
		close(master);
	return -errno ? -errno : -EIO;
}

/* fd, opened O_NONBLOCK so that a FIFO is refused instead of waiting for
 * a reader: a file or a character device (a terminal, /dev/null) is
 * taken and made blocking again; anything else is refused. */
static int check_output(struct chardev *c, int fd, const char *kind, const char *path)
{
	const char *why = file_refused(fd, FILE_OK_CHR);

	if (why) {
		pr_err("%s %s file %s is %s: give a regular file", c->what ? c->what : "serial",
		       kind, path, why);
		return -EINVAL;
	}
	if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK))
		return -errno;
	return 0;
}

static int chardev_open_file(struct chardev *c, const char *path)
{
	int r;

	c->out_fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NONBLOCK, 0644);
	if (c->out_fd < 0 && errno == ENXIO) {
		pr_err("%s output file %s is a FIFO or a socket: give a regular file",
		       c->what ? c->what : "serial", path);
		return -EINVAL;
	}
	if (c->out_fd < 0) {
		pr_err("cannot open %s output file %s: %s", c->what ? c->what : "serial",
		       path, strerror(errno));
		return -errno;
	}
	r = check_output(c, c->out_fd, "output", path);
	if (r) {
		close(c->out_fd);
		c->out_fd = -1;
	}
	return r;
}

static int chardev_open_unix(struct chardev *c, const char *path)
{
	int fd = unix_listen(path, 1, c->what ? "virtio console socket" : "serial socket");

	if (fd < 0)
		return fd;
	c->listen_fd = fd;
	c->path = strdup(path);
	c->owns_path = true;
	return loop_add(c->loop, fd, EPOLLIN, chardev_on_accept, c);
}

/* The log is opened once, at start: a guest reset keeps writing on.  It
 * is always written with O_APPEND (append off only empties it first), so
 * another appender (nova adds what it read from the pty) is never
 * written over. */
static int chardev_open_log(struct chardev *c, const struct serial_config *sc)
{
	int flags = O_WRONLY | O_CREAT | O_CLOEXEC | O_APPEND | (sc->log_append ? 0 : O_TRUNC);
	struct stat st;
	int r;

	c->log_fd = open(sc->log, flags | O_NONBLOCK, 0644);
	if (c->log_fd < 0 && errno == ENXIO) {
		pr_err("%s log file %s is a FIFO or a socket: give a regular file",
		       c->what ? c->what : "serial", sc->log);
		return -EINVAL;
	}
	if (c->log_fd < 0) {
		pr_err("cannot open %s log file %s: %s", c->what ? c->what : "serial",
		       sc->log, strerror(errno));
		return -errno;
	}
	r = check_output(c, c->log_fd, "log", sc->log);
	if (r) {
		close(c->log_fd);
		c->log_fd = -1;
		return r;
	}
	c->log_path = strdup(sc->log);
	c->log_size = fstat(c->log_fd, &st) == 0 ? (uint64_t)st.st_size : 0;
	c->log_max = sc->log_max ? sc->log_max : CHARDEV_LOG_MAX;
	return 0;
}

/* FILE.1 -> FILE.2, FILE.0 -> FILE.1, FILE -> FILE.0, a new FILE.  Called
 * with c->lock held.  If the new file cannot be made, logging stops. */
static void chardev_rotate_log(struct chardev *c)
{
	size_t n = strlen(c->log_path) + 16;
	char from[n], to[n];

	for (int i = CHARDEV_LOG_BACKUPS - 1; i > 0; i--) {
		snprintf(from, n, "%s.%d", c->log_path, i - 1);
		snprintf(to, n, "%s.%d", c->log_path, i);
		rename(from, to);
	}
	snprintf(to, n, "%s.0", c->log_path);
	if (rename(c->log_path, to)) {
		/* No name to rotate by (kvmm --sandbox reaches no host path):
		 * the same file starts again, so the newest output is kept. */
		if (ftruncate(c->log_fd, 0) || lseek(c->log_fd, 0, SEEK_SET)) {
			pr_warn("cannot rotate the log file %s: %s; the guest's output is no longer logged",
				c->log_path, strerror(errno));
			close(c->log_fd);
			c->log_fd = -1;
		}
		c->log_size = 0;
		return;
	}
	close(c->log_fd);
	c->log_fd = open(c->log_path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
	c->log_size = 0;
	if (c->log_fd < 0)
		pr_warn("cannot start a new log file %s: %s; the guest's output is no longer logged",
			c->log_path, strerror(errno));
}

static void chardev_log(struct chardev *c, const uint8_t *buf, size_t len)
{
	if (c->log_size && c->log_size + len > c->log_max)
		chardev_rotate_log(c);
	/* A failing log (disk full) does not stop the guest. */
	if (c->log_fd >= 0 && write_all(c->log_fd, buf, len) == 0)
		c->log_size += len;
}

static int chardev_open_backend(struct chardev *c, const struct serial_config *sc)
{
	switch (sc->mode) {
	case SERIAL_NONE:
		return 0;
	case SERIAL_STDIO:
		return chardev_open_stdio(c);
	case SERIAL_PTY:
		return chardev_open_pty(c);
	case SERIAL_FILE:
		return chardev_open_file(c, sc->path);
	case SERIAL_UNIX:
		return chardev_open_unix(c, sc->path);
	}
	return -EINVAL;
}

int chardev_open(struct chardev *c, const struct serial_config *sc,
		 struct loop *loop)
{
	int r;

	c->mode = sc->mode;
	c->in_fd = c->out_fd = c->listen_fd = c->log_fd = c->pty_timer = -1;
	c->loop = loop;
	pthread_mutex_init(&c->lock, NULL);
	if (sc->log && chardev_open_log(c, sc))
		return -errno;
	r = chardev_open_backend(c, sc);
	if (r && c->log_fd >= 0) {
		close(c->log_fd);
		c->log_fd = -1;
		free(c->log_path);
		c->log_path = NULL;
	}
	return r;
}

void chardev_close(struct chardev *c)
{
	chardev_restore_tty(c);
	if (c->log_fd >= 0)
		close(c->log_fd);
	c->log_fd = -1;
	free(c->log_path);
	c->log_path = NULL;
	if (c->mode == SERIAL_STDIO || c->mode == SERIAL_NONE) {
		if (c->in_fd >= 0)
			loop_del(c->loop, c->in_fd);
		c->in_fd = c->out_fd = -1;
		return;
	}
	if (c->in_fd >= 0) {
		loop_del(c->loop, c->in_fd);
		close(c->in_fd);
	} else if (c->out_fd >= 0) {
		close(c->out_fd);
	}
	if (c->listen_fd >= 0) {
		loop_del(c->loop, c->listen_fd);
		close(c->listen_fd);
	}
	if (c->pty_timer >= 0) {
		loop_del(c->loop, c->pty_timer);
		close(c->pty_timer);
	}
	if (c->owns_path && c->path)
		unlink(c->path);
	free(c->path);
	c->path = NULL;
	free(c->backlog);
	c->backlog = NULL;
	c->backlog_len = 0;
	c->in_fd = c->out_fd = c->listen_fd = c->pty_timer = -1;
}

/* Unix backend before its first client: keep up to backlog_max bytes,
 * so a client that connects just after start misses nothing (the
 * guest's first line races the client's connect). */
static void chardev_keep(struct chardev *c, const uint8_t *buf, size_t len)
{
	size_t n = MIN(len, c->backlog_max - c->backlog_len);

	if (!n)
		return;
	if (!c->backlog) {
		c->backlog = malloc(c->backlog_max);
		if (!c->backlog)
			return;
	}
	memcpy(c->backlog + c->backlog_len, buf, n);
	c->backlog_len += n;
}

void chardev_write(struct chardev *c, const uint8_t *buf, size_t len)
{
	pthread_mutex_lock(&c->lock);
	/* Whoever is (or is not) attached, the log gets everything. */
	if (c->log_fd >= 0)
		chardev_log(c, buf, len);
	if (c->mode == SERIAL_PTY && c->out_fd >= 0 && !chardev_pty_has_client(c->out_fd)) {
		/* Nobody has the pty open: dropped, as by QEMU. */
	} else if (c->out_fd >= 0) {
		if (c->mode == SERIAL_PTY && c->in_fd < 0)
			c->pty_unread = true;	/* a client the loop has not seen */
		/* Non-blocking backends (pty, socket) drop what their peer
		 * does not read rather than stall the vCPU. */
		if (write_all(c->out_fd, buf, len) == -EPIPE && c->mode == SERIAL_UNIX)
			c->out_fd = -1;
	} else if (c->mode == SERIAL_UNIX && !c->had_client && c->backlog_max) {
		chardev_keep(c, buf, len);
	}
	pthread_mutex_unlock(&c->lock);
}

void chardev_accept_input(struct chardev *c)
{
	pthread_mutex_lock(&c->lock);
	if (c->input_paused && c->in_fd >= 0) {
		c->input_paused = false;
		loop_mod(c->loop, c->in_fd, EPOLLIN);
	}
	pthread_mutex_unlock(&c->lock);
}
