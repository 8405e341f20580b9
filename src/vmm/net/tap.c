/* tap devices for virtio-net; see tap.h. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "log.h"
#include "net/tap.h"
#include "tun.h"

/* struct virtio_net_hdr with num_buffers: what virtio 1.x always uses. */
#define TAP_VNET_HDR_LEN	12

static int attach(struct tap *t, const char *name, unsigned int index)
{
	struct ifreq ifr;
	int e;

	t->fd = tun_open_tap(name, 0, O_NONBLOCK);
	if (t->fd < 0) {
		e = -t->fd;
		if (e == EBUSY)
			pr_err("tap '%s' is busy: another process has it open; stop it or give this NIC another tap",
			       name);
		else if (e == EINVAL)
			pr_err("tap '%s' cannot be opened as a tap: it is another kind of device (a tun, or a multi_queue tap); give --net a single-queue tap",
			       name);
		else if (e == EPERM)
			pr_err("tap '%s' cannot be opened: %s; run kvmm with CAP_NET_ADMIN or give the tap to its user (ip tuntap add ... user)",
			       name, strerror(e));
		else if (e == ENOENT || e == ENODEV || e == ENXIO)
			pr_err("net %u: cannot open /dev/net/tun: %s; load the tun module", index, strerror(e));
		else
			pr_err("tap '%s' cannot be opened: %s", name, strerror(e));
		return -e;
	}
	/* A tap that existed without us and is not persistent would have
	 * been busy: so not persistent now means we just made it. */
	if (ioctl(t->fd, TUNGETIFF, &ifr) < 0) {
		e = errno;
		pr_err("tap '%s': cannot read its flags: %s", name, strerror(e));
		return -e;
	}
	t->created = !(ifr.ifr_flags & IFF_PERSIST);
	snprintf(t->name, sizeof(t->name), "%s", ifr.ifr_name);
	/* A tap kvmm made is its own: its link goes up so it works without
	 * anyone else's help.  Taps made by others are left as they are. */
	if (t->created && (e = -netif_set_up(t->name))) {
		pr_err("tap '%s': cannot bring its link up: %s", t->name, strerror(e));
		return -e;
	}
	return 0;
}

/* fd=N: the caller opened the tap; it must be one we can use as is,
 * since the flags of an attached queue cannot change.  fd is ours from
 * here: closed on failure too. */
static int adopt(struct tap *t, int fd, unsigned int index)
{
	struct ifreq ifr;
	int fl, e;

	memset(&ifr, 0, sizeof(ifr));
	if (ioctl(fd, TUNGETIFF, &ifr) < 0) {
		e = errno;
		pr_err("net %u: fd %d is not an open tap (%s); pass a /dev/net/tun file descriptor attached with TUNSETIFF",
		       index, fd, strerror(e));
		close(fd);
		return -e;
	}
	if ((ifr.ifr_flags & TUN_TAP_FLAGS) != TUN_TAP_FLAGS) {
		pr_err("net %u: fd %d (%.*s) is not a tap opened with IFF_TAP|IFF_NO_PI|IFF_VNET_HDR; open it with those flags",
		       index, fd, IF_NAMESIZE, ifr.ifr_name);
		close(fd);
		return -EINVAL;
	}
	fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 ||
	    fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) {
		e = errno;
		pr_err("net %u: fd %d: %s", index, fd, strerror(e));
		close(fd);
		return -e;
	}
	t->fd = fd;
	t->created = false;
	snprintf(t->name, sizeof(t->name), "%.*s", IF_NAMESIZE - 1, ifr.ifr_name);
	return 0;
}

int tap_open(struct tap *t, const char *name, int fd, unsigned int index)
{
	int hdr = TAP_VNET_HDR_LEN, r;

	t->fd = -1;
	t->created = false;
	r = name ? attach(t, name, index) : adopt(t, fd, index);
	if (!r && ioctl(t->fd, TUNSETVNETHDRSZ, &hdr) < 0) {
		r = -errno;
		pr_err("tap '%s': cannot set the virtio-net header size: %s", t->name, strerror(-r));
	}
	/* No offload until the guest negotiates one. */
	if (!r && (r = tap_set_offload(t, 0)))
		pr_err("tap '%s': cannot clear its offloads: %s", t->name, strerror(-r));
	if (r)
		tap_close(t);
	return r;
}

int tap_set_offload(struct tap *t, unsigned int tun_flags)
{
	return ioctl(t->fd, TUNSETOFFLOAD, (unsigned long)tun_flags) < 0 ? -errno : 0;
}

void tap_close(struct tap *t)
{
	if (t->fd >= 0)
		close(t->fd);
	t->fd = -1;
}
