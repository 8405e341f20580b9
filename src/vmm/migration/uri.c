/* Migration URIs: tcp:HOST:PORT, unix:PATH, fd:N; the destination
 * listens and accepts one connection, the source connects. */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "migration.h"

#define ERR(...) snprintf(err, errlen, __VA_ARGS__)

/* tcp:HOST:PORT split at the last colon (HOST may be [v6]). */
static int tcp_addr(const char *rest, struct addrinfo **ai, bool passive,
		    char *err, size_t errlen)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM };
	const char *colon = strrchr(rest, ':');
	char host[256];
	size_t hl;
	int r;

	if (!colon || !colon[1] || (hl = colon - rest) >= sizeof(host)) {
		ERR("migration URI tcp:%s: give tcp:HOST:PORT", rest);
		return -EINVAL;
	}
	memcpy(host, rest, hl);
	host[hl] = '\0';
	if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']') {
		memmove(host, host + 1, hl - 2);
		host[hl - 2] = '\0';
	}
	hints.ai_flags = passive ? AI_PASSIVE : 0;
	r = getaddrinfo(*host ? host : NULL, colon + 1, &hints, ai);
	if (r) {
		ERR("migration URI tcp:%s: %s", rest, gai_strerror(r));
		return -EINVAL;
	}
	return 0;
}

static int unix_addr(const char *path, struct sockaddr_un *sa, char *err, size_t errlen)
{
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	if (!*path || strlen(path) >= sizeof(sa->sun_path)) {
		ERR("migration URI unix:%s: give a path of 1 to %zu bytes", path,
		    sizeof(sa->sun_path) - 1);
		return -EINVAL;
	}
	strcpy(sa->sun_path, path);
	return 0;
}

int migration_uri_fd(const char *uri, char *err, size_t errlen)
{
	char *end;
	long n;
	int fl;

	if (strncmp(uri, "fd:", 3))
		return -ENOENT;
	errno = 0;
	n = strtol(uri + 3, &end, 10);
	if (errno || end == uri + 3 || *end || n < 0 || n > 65535 ||
	    (fl = fcntl(n, F_GETFL)) < 0 || (fl & O_ACCMODE) == O_WRONLY) {
		ERR("migration URI %s: not a descriptor open for reading", uri);
		return -EBADF;
	}
	/* Not the guest's, nor a child's. */
	fcntl(n, F_SETFD, FD_CLOEXEC);
	return (int)n;
}

int migration_listen(const char *uri, char *err, size_t errlen)
{
	struct sockaddr_un sa;
	struct addrinfo *ai = NULL, *a;
	char tmp[sizeof(sa.sun_path) + 16];
	int fd = -1, cfd, one = 1, r;

	r = migration_uri_fd(uri, err, errlen);
	if (r != -ENOENT)
		return r;
	if (!strncmp(uri, "unix:", 5)) {
		r = unix_addr(uri + 5, &sa, err, errlen);
		if (r)
			return r;
		/* Bound under a temporary name and renamed once listening:
		 * a source that sees the path can connect at once. */
		snprintf(tmp, sizeof(tmp), "%s.%d", uri + 5, (int)getpid());
		if (strlen(tmp) >= sizeof(sa.sun_path)) {
			ERR("migration URI %s: path too long", uri);
			return -ENAMETOOLONG;
		}
		strcpy(sa.sun_path, tmp);
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
		    listen(fd, 1) < 0 || rename(tmp, uri + 5) < 0) {
			r = -errno;
			ERR("cannot listen on %s: %s", uri, strerror(-r));
			if (fd >= 0)
				close(fd);
			unlink(tmp);
			return r;
		}
		cfd = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
		r = -errno;
		close(fd);
		unlink(uri + 5);	/* one connection: nothing is left behind */
	} else if (!strncmp(uri, "tcp:", 4)) {
		r = tcp_addr(uri + 4, &ai, true, err, errlen);
		if (r)
			return r;
		r = -EADDRNOTAVAIL;
		for (a = ai; a; a = a->ai_next) {
			fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
			if (fd < 0)
				continue;
			setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
			if (!bind(fd, a->ai_addr, a->ai_addrlen) && !listen(fd, 1))
				break;
			r = -errno;
			close(fd);
			fd = -1;
		}
		freeaddrinfo(ai);
		if (fd < 0) {
			ERR("cannot listen on %s: %s", uri, strerror(-r));
			return r;
		}
		cfd = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
		r = -errno;
		close(fd);
	} else {
		ERR("migration URI %s: give tcp:HOST:PORT, unix:PATH or fd:N", uri);
		return -EINVAL;
	}
	if (cfd < 0) {
		ERR("cannot accept the migration connection on %s: %s", uri, strerror(-r));
		return r;
	}
	return cfd;
}

int migration_connect(const char *uri, char *err, size_t errlen)
{
	struct sockaddr_un sa;
	struct addrinfo *ai = NULL, *a;
	int fd = -1, r;

	if (!strncmp(uri, "unix:", 5)) {
		r = unix_addr(uri + 5, &sa, err, errlen);
		if (r)
			return r;
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
			r = -errno;
			ERR("cannot connect to %s: %s", uri, strerror(-r));
			if (fd >= 0)
				close(fd);
			return r;
		}
		return fd;
	}
	if (strncmp(uri, "tcp:", 4)) {
		ERR("migration URI %s: give tcp:HOST:PORT or unix:PATH", uri);
		return -EINVAL;
	}
	r = tcp_addr(uri + 4, &ai, false, err, errlen);
	if (r)
		return r;
	r = -EHOSTUNREACH;
	for (a = ai; a; a = a->ai_next) {
		fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
		if (fd >= 0 && !connect(fd, a->ai_addr, a->ai_addrlen))
			break;
		r = -errno;
		if (fd >= 0)
			close(fd);
		fd = -1;
	}
	freeaddrinfo(ai);
	if (fd < 0) {
		ERR("cannot connect to %s: %s", uri, strerror(-r));
		return r;
	}
	return fd;
}
