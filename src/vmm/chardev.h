/* Host ends of the guest's character devices (the serial console, the
 * virtio console): stdio, pty, file, unix socket or none.  Output comes
 * from vCPU threads or the main loop; input is read by the main loop and
 * pushed to the device, which calls chardev_accept_input() again once it
 * has room. */
#ifndef KVMM_CHARDEV_H
#define KVMM_CHARDEV_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <termios.h>

#include "config.h"

struct loop;

struct chardev {
	enum serial_mode mode;
	/* -1 when there is none (yet); a pty's in_fd only while a client
	 * has it open, its out_fd (the master) always. */
	int in_fd, out_fd;
	int listen_fd;
	int log_fd;		/* a copy of the output (serial_config.log); -1: none */
	char *log_path;
	uint64_t log_size, log_max;
	char *path;		/* pty name or unix socket path */
	int pty_timer;		/* pty: looks for a client while none is there */
	bool pty_unread;	/* written to a client not yet attached */
	bool owns_path;		/* we created the socket file */
	bool raw;		/* stdio terminal put in raw mode */
	struct termios saved;
	bool input_paused;
	bool escape_armed;
	pthread_mutex_t lock;	/* out_fd may change under a writer */
	/* Set before chardev_open(); zero means the serial port's ways. */
	const char *what;	/* "virtio console" in messages; NULL: serial */
	size_t backlog_max;	/* unix: output kept for the first client */
	uint8_t *backlog;	/* what was written before it connected */
	size_t backlog_len;
	bool had_client;
	struct loop *loop;

	/* Returns how many bytes the device can take now. */
	size_t (*input_space)(void *opaque);
	void (*input)(void *opaque, const uint8_t *buf, size_t len);
	void *opaque;
	void (*escape)(void *opaque);	/* Ctrl-] on an interactive stdio */
	void *opaque_escape;
};

#define CHARDEV_ESCAPE 0x1d	/* Ctrl-] */
/* How often a pty with no client looks for one (to read its input). */
#define CHARDEV_PTY_POLL_MS	250
/* A log is rotated as virtlogd rotates QEMU's (its defaults): past 2 MiB
 * it becomes FILE.0, FILE.0 becomes FILE.1, ..., up to FILE.2; so a guest
 * cannot fill the host's disk through its console. */
#define CHARDEV_LOG_MAX		(2ULL << 20)
#define CHARDEV_LOG_BACKUPS	3

int chardev_open(struct chardev *c, const struct serial_config *sc,
		 struct loop *loop);
void chardev_close(struct chardev *c);
void chardev_write(struct chardev *c, const uint8_t *buf, size_t len);
/* The device has room again: resume reading input. */
void chardev_accept_input(struct chardev *c);

#endif
