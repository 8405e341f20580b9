/* Taps, bridge ports and their counters; see netdev.h. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <net/if_arp.h>

#include <glib.h>
#include <libvirt/libvirt.h>

#include "error.h"
#include "log.h"
#include "netdev.h"
#include "testpoint.h"
#include "tun.h"

#define VIR_FROM_THIS VIR_FROM_NONE

/* Generated names: vnet0 upwards, the lowest one free. */
#define GENERATED_MAX 10000
/* The kernel's bound on an interface alias, NUL included (IFALIASZ in
 * linux/if.h, which clashes with net/if.h). */
#define ALIAS_MAX 256

static int ctl_socket(void)
{
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	if (s < 0)
		drv_error_report(VIR_ERR_SYSTEM_ERROR, "cannot open a socket for interface control: %s",
				 g_strerror(errno));
	return s;
}

static void set_ifname(struct ifreq *ifr, const char *name)
{
	memset(ifr, 0, sizeof(*ifr));
	g_strlcpy(ifr->ifr_name, name, sizeof(ifr->ifr_name));
}

int netdev_set_mtu(const char *name, unsigned mtu)
{
	struct ifreq ifr;
	int s = ctl_socket(), r = 0;

	if (s < 0)
		return -1;
	set_ifname(&ifr, name);
	ifr.ifr_mtu = (int)mtu;
	if (ioctl(s, SIOCSIFMTU, &ifr) < 0) {
		drv_error_report(VIR_ERR_SYSTEM_ERROR, "cannot set the MTU of tap '%s' to %u: %s", name, mtu,
				 g_strerror(errno));
		r = -1;
	}
	close(s);
	return r;
}

bool netdev_exists(const char *name)
{
	return if_nametoindex(name) != 0;
}

/* rtnetlink, not sysfs, for the alias: it always acts in the caller's
 * network namespace, whatever sysfs instance is mounted. */
static int rtnl_socket(void)
{
	struct sockaddr_nl sa = { .nl_family = AF_NETLINK };
	int s = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);

	if (s < 0)
		return -errno;
	if (bind(s, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int e = errno;

		close(s);
		return -e;
	}
	return s;
}

/* Sets the alias (IFLA_IFALIAS) of interface INDEX: 0 or -errno. */
static int set_alias(unsigned index, const char *alias)
{
	struct {
		struct nlmsghdr nh;
		struct ifinfomsg ifi;
		char attrs[RTA_SPACE(ALIAS_MAX)];
	} req;
	struct {
		struct nlmsghdr nh;
		struct nlmsgerr err;
		char rest[256];
	} ack;
	struct rtattr *rta;
	size_t len = strlen(alias);
	ssize_t n;
	int s, r;

	if (len >= ALIAS_MAX)
		return -ENAMETOOLONG;
	memset(&req, 0, sizeof(req));
	req.nh.nlmsg_type = RTM_NEWLINK;
	req.nh.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
	req.nh.nlmsg_seq = 1;
	req.ifi.ifi_family = AF_UNSPEC;
	req.ifi.ifi_index = (int)index;
	rta = (struct rtattr *)req.attrs;
	rta->rta_type = IFLA_IFALIAS;
	rta->rta_len = RTA_LENGTH(len);
	memcpy(RTA_DATA(rta), alias, len);
	req.nh.nlmsg_len = NLMSG_LENGTH(sizeof(req.ifi)) + RTA_ALIGN(rta->rta_len);
	if ((s = rtnl_socket()) < 0)
		return s;
	if (send(s, &req, req.nh.nlmsg_len, 0) < 0) {
		r = -errno;
	} else {
		do
			n = recv(s, &ack, sizeof(ack), 0);
		while (n < 0 && errno == EINTR);
		if (n < 0)
			r = -errno;
		else if (n < (ssize_t)NLMSG_LENGTH(sizeof(ack.err)) || ack.nh.nlmsg_type != NLMSG_ERROR)
			r = -EPROTO;
		else
			r = ack.err.error;
	}
	close(s);
	return r;
}

GPtrArray *netdev_marked(const char *prefix)
{
	struct {
		struct nlmsghdr nh;
		struct ifinfomsg ifi;
	} req = {
		.nh = { .nlmsg_len = NLMSG_LENGTH(sizeof(struct ifinfomsg)), .nlmsg_type = RTM_GETLINK,
			.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP, .nlmsg_seq = 1 },
		.ifi = { .ifi_family = AF_UNSPEC },
	};
	g_autoptr(GPtrArray) out = g_ptr_array_new_with_free_func(g_free);
	g_autofree char *buf = g_malloc(65536);
	bool done = false;
	int s = rtnl_socket();

	if (s < 0 || send(s, &req, req.nh.nlmsg_len, 0) < 0) {
		pr_warn("cannot list network devices: %s", g_strerror(s < 0 ? -s : errno));
		if (s >= 0)
			close(s);
		return NULL;
	}
	while (!done) {
		ssize_t n = recv(s, buf, 65536, 0);
		struct nlmsghdr *nh = (struct nlmsghdr *)buf;

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			pr_warn("cannot list network devices: %s", n < 0 ? g_strerror(errno) : "no answer");
			close(s);
			return NULL;
		}
		for (; NLMSG_OK(nh, (unsigned)n); nh = NLMSG_NEXT(nh, n)) {
			struct ifinfomsg *ifi = NLMSG_DATA(nh);
			int alen = (int)IFLA_PAYLOAD(nh);
			const char *ifname = NULL, *alias = NULL;
			size_t alias_len = 0;

			if (nh->nlmsg_type == NLMSG_DONE || nh->nlmsg_type == NLMSG_ERROR) {
				done = true;
				break;
			}
			if (nh->nlmsg_type != RTM_NEWLINK)
				continue;
			for (struct rtattr *a = IFLA_RTA(ifi); RTA_OK(a, alen); a = RTA_NEXT(a, alen)) {
				if (a->rta_type == IFLA_IFNAME)
					ifname = RTA_DATA(a);
				else if (a->rta_type == IFLA_IFALIAS) {
					alias = RTA_DATA(a);
					alias_len = RTA_PAYLOAD(a);
				}
			}
			if (ifname && alias && alias_len >= strlen(prefix) &&
			    !strncmp(alias, prefix, strlen(prefix)))
				g_ptr_array_add(out, g_strdup(ifname));
		}
	}
	close(s);
	return g_steal_pointer(&out);
}

/* The tap itself: a descriptor attached to it, *NAME filled when
 * generated; -1 after reporting. */
static int tap_open(char **name)
{
	int fd;

	if (*name) {
		if (strlen(*name) >= IFNAMSIZ) {
			drv_error_report(VIR_ERR_CONFIG_UNSUPPORTED,
					 "interface name '%s' is too long: at most %d characters", *name,
					 IFNAMSIZ - 1);
			return -1;
		}
		fd = tun_open_tap(*name, 0, 0);
		if (fd == -EBUSY)
			drv_error_report(VIR_ERR_OPERATION_FAILED,
					 "tap device '%s' is in use by another process; choose another <target dev='...'/> or leave it out",
					 *name);
		else if (fd == -EINVAL)
			drv_error_report(VIR_ERR_OPERATION_FAILED,
					 "cannot create tap device '%s': a network device of another kind has that name",
					 *name);
		else if (fd < 0)
			drv_error_report(VIR_ERR_SYSTEM_ERROR, "cannot create tap device '%s': %s%s", *name,
					 g_strerror(-fd), fd == -EPERM ? " (creating taps needs CAP_NET_ADMIN)" : "");
		return fd < 0 ? -1 : fd;
	}
	/* IFF_TUN_EXCL: a name taken (by anything) is EBUSY, so two starts
	 * at once can never share a tap. */
	for (int n = 0; n < GENERATED_MAX; n++) {
		g_autofree char *try = g_strdup_printf("vnet%d", n);

		fd = tun_open_tap(try, IFF_TUN_EXCL, 0);
		if (fd >= 0) {
			*name = g_steal_pointer(&try);
			return fd;
		}
		if (fd != -EBUSY) {
			drv_error_report(VIR_ERR_SYSTEM_ERROR, "cannot create tap device '%s': %s%s", try,
					 g_strerror(-fd), fd == -EPERM ? " (creating taps needs CAP_NET_ADMIN)" : "");
			return -1;
		}
	}
	drv_error_report(VIR_ERR_OPERATION_FAILED, "no free tap name: vnet0 to vnet%d all exist",
			 GENERATED_MAX - 1);
	return -1;
}

/* Host-side address, bridge port, link up; -1 after reporting. */
static int tap_setup(int s, const char *name, const unsigned char mac[6], const char *bridge)
{
	struct ifreq ifr;
	int r;

	set_ifname(&ifr, name);
	ifr.ifr_hwaddr.sa_family = ARPHRD_ETHER;
	memcpy(ifr.ifr_hwaddr.sa_data, mac, 6);
	ifr.ifr_hwaddr.sa_data[0] = (char)0xFE;
	if (ioctl(s, SIOCSIFHWADDR, &ifr) < 0) {
		drv_error_report(VIR_ERR_SYSTEM_ERROR, "cannot set the MAC address of tap '%s': %s", name,
				 g_strerror(errno));
		return -1;
	}
	if (bridge) {
		unsigned idx = if_nametoindex(name);

		if (!netdev_exists(bridge)) {
			drv_error_report(VIR_ERR_OPERATION_FAILED,
					 "bridge '%s' does not exist on this host; create it, or change <source bridge='...'/>",
					 bridge);
			return -1;
		}
		/* The bridge adopts the smallest MTU of its ports: match it
		 * before joining, as libvirt does. */
		set_ifname(&ifr, bridge);
		if (ioctl(s, SIOCGIFMTU, &ifr) == 0) {
			int mtu = ifr.ifr_mtu;

			set_ifname(&ifr, name);
			ifr.ifr_mtu = mtu;
			if (ioctl(s, SIOCSIFMTU, &ifr) < 0)
				pr_warn("cannot set the MTU of tap '%s' to %d: %s", name, mtu, g_strerror(errno));
		}
		set_ifname(&ifr, bridge);
		ifr.ifr_ifindex = (int)idx;
		if (!idx || ioctl(s, SIOCBRADDIF, &ifr) < 0) {
			int e = errno;

			drv_error_report(VIR_ERR_OPERATION_FAILED, "cannot add tap '%s' to bridge '%s': %s%s",
					 name, bridge, g_strerror(e),
					 e == EOPNOTSUPP ? " (it is not a Linux bridge)" : "");
			return -1;
		}
	}
	if ((r = netif_set_up(name)) < 0) {
		drv_error_report(VIR_ERR_SYSTEM_ERROR, "cannot bring tap '%s' up: %s", name, g_strerror(-r));
		return -1;
	}
	return 0;
}

int netdev_tap_create(char **name, const unsigned char mac[6], const char *bridge, const char *mark)
{
	bool generated = !*name;
	int fd, s, r;

	if (mac[0] == 0xFE) {
		drv_error_report(VIR_ERR_CONFIG_UNSUPPORTED,
				 "cannot use MAC address %02x:%02x:%02x:%02x:%02x:%02x: the first byte 0xfe is reserved for the host side of the tap",
				 mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]);
		return -1;
	}
	if ((fd = tap_open(name)) < 0)
		return -1;
	/* Marked while it still goes with our descriptor: a tap that
	 * outlives a daemon killed at any point after TUNSETPERSIST carries
	 * the mark the next one sweeps by. */
	if ((r = set_alias(if_nametoindex(*name), mark)) < 0) {
		drv_error_report(VIR_ERR_SYSTEM_ERROR, "cannot mark tap '%s' as this daemon's: %s", *name,
				 g_strerror(-r));
		goto fail;
	}
	if (ioctl(fd, TUNSETPERSIST, 1) < 0) {
		drv_error_report(VIR_ERR_SYSTEM_ERROR, "cannot make tap '%s' persistent: %s", *name,
				 g_strerror(errno));
		goto fail;
	}
	/* Tests kill the daemon here: a tap no record names yet. */
	test_crash_point("tap-persistent");
	if ((s = ctl_socket()) < 0)
		goto fail;
	if (tap_setup(s, *name, mac, bridge) < 0) {
		close(s);
		goto fail;
	}
	close(s);
	pr_info("tap '%s' created%s%s", *name, bridge ? " on bridge " : "", bridge ? bridge : "");
	return fd;

fail:
	/* Not persistent any more: it goes with our descriptor. */
	ioctl(fd, TUNSETPERSIST, 0);
	close(fd);
	if (generated)
		g_clear_pointer(name, g_free);
	return -1;
}

int netdev_tap_open(const char *name)
{
	int fd;

	/* TUNSETIFF would make a missing one, gone with kvmm's descriptor. */
	if (!netdev_exists(name)) {
		drv_error_report(VIR_ERR_OPERATION_FAILED, "tap device '%s' does not exist", name);
		return -1;
	}
	fd = tun_open_tap(name, 0, 0);
	if (fd == -EBUSY)
		drv_error_report(VIR_ERR_OPERATION_FAILED,
				 "tap device '%s' is in use by another process; stop it or give the interface another <target dev='...'/>",
				 name);
	else if (fd == -EINVAL)
		drv_error_report(VIR_ERR_OPERATION_FAILED,
				 "cannot open tap device '%s': a network device of another kind (a tun, or a multi-queue tap) has that name",
				 name);
	else if (fd < 0)
		drv_error_report(VIR_ERR_SYSTEM_ERROR, "cannot open tap device '%s': %s", name, g_strerror(-fd));
	return fd < 0 ? -1 : fd;
}

void netdev_tap_discard(int fd, const char *name)
{
	if (ioctl(fd, TUNSETPERSIST, 0) < 0)
		pr_warn("cannot remove tap '%s': %s", name, g_strerror(errno));
	else
		pr_info("tap '%s' removed", name);
	close(fd);
}

void netdev_tap_delete(const char *name)
{
	int fd;

	if (!netdev_exists(name))
		return;
	fd = tun_open_tap(name, 0, 0);
	if (fd < 0) {
		pr_warn("cannot remove tap '%s': %s", name, g_strerror(-fd));
		return;
	}
	if (ioctl(fd, TUNSETPERSIST, 0) < 0)
		pr_warn("cannot remove tap '%s': %s", name, g_strerror(errno));
	else
		pr_info("tap '%s' removed", name);
	close(fd);
}

int netdev_stats(const char *name, struct netdev_stats *st)
{
	g_autofree char *text = NULL;
	char **lines;
	int rc = -1;

	/* /proc/net/dev, not sysfs: it always shows the reader's network
	 * namespace, whatever sysfs instance is mounted. */
	if (!g_file_get_contents("/proc/net/dev", &text, NULL, NULL)) {
		drv_error_report(VIR_ERR_SYSTEM_ERROR, "cannot read /proc/net/dev");
		return -1;
	}
	lines = g_strsplit(text, "\n", -1);
	for (char **l = lines; *l && rc < 0; l++) {
		char *colon = strchr(*l, ':');
		unsigned long long v[16];

		if (!colon)
			continue;
		*colon = '\0';
		if (strcmp(g_strstrip(*l), name))
			continue;
		/* Receive: bytes packets errs drop fifo frame compressed
		 * multicast; transmit: bytes packets errs drop ... */
		if (sscanf(colon + 1, "%llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu",
			   &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7], &v[8], &v[9],
			   &v[10], &v[11]) != 12)
			break;
		*st = (struct netdev_stats){ v[0], v[1], v[2], v[3], v[8], v[9], v[10], v[11] };
		rc = 0;
	}
	g_strfreev(lines);
	if (rc < 0)
		drv_error_report(VIR_ERR_OPERATION_FAILED, "no counters for network device '%s'", name);
	return rc;
}
