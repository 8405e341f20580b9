"""<interface> through virtkvmmd: the daemon makes a persistent tap per NIC
(ethernet alone, or a port of a Linux bridge), kvmm's virtio-net is handed
it open, and the daemon removes it whenever the domain stops.

The daemon runs inside a network namespace each test creates (`ip netns
exec NS virtkvmmd --root ...`), so its taps and bridges are private; the
clients (virsh, python3-libvirt) reach it from outside through its socket.
The test guest answers ARP, ICMP echo and UDP on its NICs
(tests/lib/netprobe.py drives that from inside the namespace)."""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
import xml.etree.ElementTree as ET

import libvirt
import pytest

import kvmmtest
import netns as netns_lib
from drvtest import virsh
from test_lifecycle import guest_xml, serial, state_dir, wait_for

L = libvirt


def ns_run(ns, *argv, check=True):
    return subprocess.run(["ip", "netns", "exec", ns] + list(argv), capture_output=True,
                          text=True, check=check, timeout=60)


def links(ns):
    """{name: ip's JSON for it} of every link in the namespace."""
    out = subprocess.run(["ip", "-j", "-d", "-n", ns, "link", "show"], capture_output=True,
                         text=True, check=True).stdout
    return {link["ifname"]: link for link in json.loads(out)}


def taps(ns):
    return sorted(n for n, link in links(ns).items()
                  if link.get("linkinfo", {}).get("info_kind") == "tun")


@pytest.fixture
def netns():
    yield from netns_lib.private("kvdn-")


@pytest.fixture
def nsd(start_daemon, netns):
    """(daemon in the namespace, namespace, connection)."""
    d = start_daemon(prefix=["ip", "netns", "exec", netns])
    conn = libvirt.open(d.uri())
    yield d, netns, conn
    conn.close()


def nic(kind="ethernet", mac=None, source=None, target=None, managed=None):
    parts = [f"<interface type='{kind}'>"]
    if mac:
        parts.append(f"<mac address='{mac}'/>")
    if source:
        attr = "bridge" if kind == "bridge" else "network"
        parts.append(f"<source {attr}='{source}'/>")
    if target or managed:
        t = f" dev='{target}'" if target else ""
        m = f" managed='{managed}'" if managed else ""
        parts.append(f"<target{t}{m}/>")
    parts.append("<model type='virtio'/></interface>")
    return "\n    " + "".join(parts)


def net_guest(d, name, nics, ips, action="wait", serve=60, **kw):
    """The test guest with NICS, answering on IPS (net0, net1, ...) for
    SERVE seconds at most, then waiting for the power button."""
    cmdline = f" kvmmtest.virtio=net kvmmtest.net.serve={serve}" + "".join(
        f" kvmmtest.net{i}.ip={ip} kvmmtest.net{i}.udp=7" for i, ip in enumerate(ips))
    return guest_xml(d.root, name, action=action, extra_devices="".join(nics),
                     extra_cmdline=cmdline, **kw)


def probe(ns, ip):
    return netns_lib.probe(ns, ip, 7)


def live_targets(dom):
    root = ET.fromstring(dom.XMLDesc())
    return [i.find("target").get("dev") if i.find("target") is not None else None
            for i in root.findall("devices/interface")]


def ifstat(d, name, dev):
    r = virsh(d.uri(), "domifstat", name, dev)
    assert r.returncode == 0, r.stderr
    return {k: int(v) for _, k, v in (line.split() for line in r.stdout.strip().splitlines())}


def status_xml(d, dom):
    with open(os.path.join(state_dir(d), dom.UUIDString() + ".xml")) as f:
        return f.read()


def wait_shutoff(dom):
    wait_for(lambda: dom.state()[0] == L.VIR_DOMAIN_SHUTOFF, "the domain to stop")


def kvmm_pid(d):
    [pid] = d.guests()
    return pid


# --- end to end: kvmm's virtio-net on the daemon's taps ---------------------

def test_ethernet_tap_ping_and_statistics(nsd, kvm):
    d, ns, conn = nsd
    mac = "52:54:00:d0:00:01"
    dom = conn.defineXML(net_guest(d, "eth", [nic(mac=mac)], ["10.99.1.2"]))
    assert live_targets(dom) == [None]                   # no tap while shut off
    dom.create()
    assert live_targets(dom) == ["vnet0"]                # generated, lowest free
    assert taps(ns) == ["vnet0"]
    link = links(ns)["vnet0"]
    assert link["address"] == "fe:54:00:d0:00:01"        # libvirt's host side
    assert "UP" in link["flags"]
    r = virsh(d.uri(), "domiflist", "eth")
    assert r.returncode == 0, r.stderr
    assert ["vnet0", "ethernet", "-", "virtio", mac] in [l.split() for l in r.stdout.splitlines()]
    assert "<tap nic='0' dev='vnet0' owned='yes'/>" in status_xml(d, dom)
    # the inactive definition never keeps a generated name
    assert "vnet0" not in dom.XMLDesc(L.VIR_DOMAIN_XML_INACTIVE)

    subprocess.run(["ip", "-n", ns, "addr", "add", "10.99.1.1/24", "dev", "vnet0"], check=True)
    wait_for(lambda: "virtio-net-ready" in serial(d.root, "eth"), "the guest's NIC", 60)
    # one way first, while the guest serves: 20 datagrams of 1000 bytes to
    # a port it does not answer on.  The guest's rx grows (the host's tx on
    # the tap, swapped as libvirt does for taps), its tx does not.
    start = ifstat(d, "eth", "vnet0")
    ns_run(ns, sys.executable, "-c",
           "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
           "for _ in range(20): s.sendto(bytes(1000), ('10.99.1.2', 9))")
    wait_for(lambda: ifstat(d, "eth", "vnet0")["rx_bytes"] - start["rx_bytes"] >= 20 * 1028,
             "the one-way datagrams in the guest's rx")
    before = ifstat(d, "eth", "vnet0")
    assert before["tx_bytes"] - start["tx_bytes"] < 2000          # an ARP reply or so
    r = probe(ns, "10.99.1.2")
    assert r["ping"] == 3 and r["udp"] == r["udp_sent"] and r["quit"] == 1, r
    after = ifstat(d, "eth", "vnet0")
    # the guest received the pings and datagrams, and answered them:
    # 3 x (64+8+20) ICMP plus the UDP payloads, both ways
    assert after["rx_bytes"] - before["rx_bytes"] > 1400 + 3 * 84
    assert after["tx_bytes"] - before["tx_bytes"] > 1400 + 3 * 84
    assert after["rx_packets"] - before["rx_packets"] >= 3 + 7
    assert after["tx_packets"] - before["tx_packets"] >= 3 + 7
    assert ifstat(d, "eth", mac)["rx_bytes"] >= after["rx_bytes"]   # by MAC too
    [(_, rec)] = conn.domainListGetStats([dom], L.VIR_DOMAIN_STATS_INTERFACE)
    assert rec["net.count"] == 1 and rec["net.0.name"] == "vnet0"
    assert rec["net.0.rx.bytes"] >= after["rx_bytes"] and rec["net.0.tx.pkts"] >= after["tx_packets"]
    assert {"net.0.rx.errs", "net.0.rx.drop", "net.0.tx.errs", "net.0.tx.drop"} <= set(rec)
    r = virsh(d.uri(), "domifstat", "eth", "vnet9")
    assert r.returncode != 0 and "'vnet9' is not a known interface" in r.stderr

    dom.destroy()
    assert taps(ns) == []
    assert live_targets(dom) == [None]
    [(_, rec)] = conn.domainListGetStats([dom], L.VIR_DOMAIN_STATS_INTERFACE)
    assert rec["net.count"] == 0


def test_bridge_port_ping(nsd, kvm):
    d, ns, conn = nsd
    br = "br-" + uuid.uuid4().hex[:6]
    subprocess.run(["ip", "-n", ns, "link", "add", br, "type", "bridge"], check=True)
    subprocess.run(["ip", "-n", ns, "link", "set", br, "mtu", "1480", "up"], check=True)
    subprocess.run(["ip", "-n", ns, "addr", "add", "10.99.2.1/24", "dev", br], check=True)
    dom = conn.createXML(net_guest(d, "brg", [nic("bridge", source=br, target="kvdtap0")],
                                   ["10.99.2.2"]))
    assert live_targets(dom) == ["kvdtap0"]              # the name asked for
    link = links(ns)["kvdtap0"]
    assert link.get("master") == br and link["mtu"] == 1480    # the bridge's, not 1500
    r = virsh(d.uri(), "domiflist", "brg")
    assert ["kvdtap0", "bridge", br] == r.stdout.splitlines()[2].split()[:3], r.stdout
    wait_for(lambda: "virtio-net-ready" in serial(d.root, "brg"), "the guest's NIC", 60)
    r = probe(ns, "10.99.2.2")
    assert r["ping"] == 3 and r["udp"] == r["udp_sent"], r
    assert ifstat(d, "brg", "kvdtap0")["tx_packets"] >= 3
    dom.destroy()
    assert taps(ns) == [] and br in links(ns)          # the bridge is the user's


def test_two_nics_skip_a_taken_name(nsd, kvm):
    """A tap that is not ours (vnet0, made by someone else) is neither
    taken over nor removed; each NIC answers on its own subnet."""
    d, ns, conn = nsd
    subprocess.run(["ip", "-n", ns, "tuntap", "add", "dev", "vnet0", "mode", "tap"], check=True)
    dom = conn.defineXML(net_guest(d, "two", [nic(mac="52:54:00:d0:01:01"),
                                              nic(mac="52:54:00:d0:01:02")],
                                   ["10.99.3.2", "10.99.4.2"]))
    dom.create()
    assert live_targets(dom) == ["vnet1", "vnet2"]
    for tap, cidr in (("vnet1", "10.99.3.1/24"), ("vnet2", "10.99.4.1/24")):
        subprocess.run(["ip", "-n", ns, "addr", "add", cidr, "dev", tap], check=True)
    wait_for(lambda: "virtio-net-ready nics=2" in serial(d.root, "two"), "the guest's NICs", 60)
    for ip in ("10.99.3.2", "10.99.4.2"):
        r = probe(ns, ip)
        assert r["ping"] == 3 and r["udp"] == r["udp_sent"], (ip, r)
    [(_, rec)] = conn.domainListGetStats([dom], L.VIR_DOMAIN_STATS_INTERFACE)
    assert rec["net.count"] == 2 and rec["net.1.name"] == "vnet2" and rec["net.1.rx.pkts"] >= 3
    dom.destroy()
    assert taps(ns) == ["vnet0"]


def test_starts_at_once_each_get_their_own_taps(nsd, kvm):
    """Twelve starts at once, three NICs each: every start succeeds with taps
    of its own, and none is left after.  (A tap takes one holder: a
    daemon that opened its new tap again by name could find it held by
    the copy another start's fork had caught.)"""
    d, ns, conn = nsd
    names = [f"p{i}" for i in range(12)]
    for n in names:
        conn.defineXML(guest_xml(d.root, n, extra_devices=nic() * 3))
    starts = [subprocess.Popen(["virsh", "-c", d.uri(), "start", n], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True) for n in names]
    errors = [(n, p.communicate(timeout=120)[1]) for n, p in zip(names, starts)]
    errors = [(n, e) for (n, e), p in zip(errors, starts) if p.returncode != 0]
    try:
        assert errors == []
        targets = [t for n in names for t in live_targets(conn.lookupByName(n))]
        assert len(set(targets)) == 3 * len(names) and sorted(targets) == taps(ns), targets
    finally:
        for n in names:
            dom = conn.lookupByName(n)
            if dom.isActive():
                dom.destroy()
    assert taps(ns) == []


def test_tap_removed_after_guest_shutdown(nsd, kvm):
    d, ns, conn = nsd
    dom = conn.defineXML(net_guest(d, "down", [nic()], ["10.99.5.2"], serve=1))
    dom.create()
    assert taps(ns) == ["vnet0"]
    wait_for(lambda: "power-button armed" in serial(d.root, "down"), "the guest to wait", 60)
    dom.shutdown()
    wait_shutoff(dom)
    assert dom.state()[1] == L.VIR_DOMAIN_SHUTOFF_SHUTDOWN
    assert taps(ns) == []


def test_tap_removed_after_kvmm_killed(nsd, kvm):
    d, ns, conn = nsd
    dom = conn.defineXML(net_guest(d, "killed", [nic()], ["10.99.6.2"]))
    dom.create()
    assert taps(ns) == ["vnet0"]
    os.kill(kvmm_pid(d), signal.SIGKILL)
    wait_shutoff(dom)
    assert dom.state()[1] == L.VIR_DOMAIN_SHUTOFF_CRASHED
    assert taps(ns) == []
    dom.create()                                        # and again, the same name
    assert live_targets(dom) == ["vnet0"]
    dom.destroy()
    assert taps(ns) == []


def test_adopted_domain_keeps_and_later_removes_its_tap(start_daemon, netns, kvm):
    ns = netns
    d = start_daemon(prefix=["ip", "netns", "exec", ns])
    conn = libvirt.open(d.uri())
    dom = conn.defineXML(net_guest(d, "adopt", [nic()], ["10.99.7.2"]))
    dom.create()
    conn.close()
    os.kill(d.proc.pid, signal.SIGKILL)
    d.proc.wait()
    assert taps(ns) == ["vnet0"]                         # the guest runs on
    d2 = start_daemon(root=d.root, prefix=["ip", "netns", "exec", ns])
    conn = libvirt.open(d2.uri())
    dom = conn.lookupByName("adopt")
    assert dom.isActive() and live_targets(dom) == ["vnet0"]
    assert "<tap nic='0' dev='vnet0' owned='yes'/>" in status_xml(d2, dom)
    subprocess.run(["xmllint", "--noout", "--relaxng",
                    os.path.join(kvmmtest.TOP, "schemas", "domstatus.rng"),
                    os.path.join(state_dir(d2), dom.UUIDString() + ".xml")],
                   check=True, capture_output=True)
    assert ifstat(d2, "adopt", "vnet0")["rx_bytes"] >= 0
    dom.destroy()
    assert taps(ns) == []
    # a kvmm that dies while no daemon runs: its tap goes when the next
    # daemon finds it gone
    dom.create()
    conn.close()
    os.kill(d2.proc.pid, signal.SIGKILL)
    d2.proc.wait()
    os.kill(kvmm_pid(d2), signal.SIGKILL)
    wait_for(lambda: not d2.guests(), "kvmm to die")
    assert taps(ns) == ["vnet0"]
    d3 = start_daemon(root=d.root, prefix=["ip", "netns", "exec", ns])
    conn = libvirt.open(d3.uri())
    assert conn.lookupByName("adopt").state()[:2] == [L.VIR_DOMAIN_SHUTOFF,
                                                      L.VIR_DOMAIN_SHUTOFF_CRASHED]
    assert taps(ns) == []
    conn.close()


# --- refusals and failed starts (no guest NIC needed) ------------------------

def test_failed_start_leaves_no_tap(nsd):
    """kvmm fails after the daemon made the taps (a kernel that does not
    exist, or, before kvmm has virtio-net, the nets themselves): the start
    fails with kvmm's reason and both taps are gone."""
    d, ns, conn = nsd
    xml = guest_xml(d.root, "fails", kernel="/nonexistent/bzImage",
                    extra_devices=nic() + nic(target="kvdtap1"))
    dom = conn.defineXML(xml)
    with pytest.raises(libvirt.libvirtError) as e:
        dom.create()
    assert "kvmm exited while starting" in str(e.value)
    assert taps(ns) == []
    log = d.output()
    assert "tap 'vnet0' created" in log and "tap 'vnet0' removed" in log, log
    assert "tap 'kvdtap1' created" in log and "tap 'kvdtap1' removed" in log, log
    assert live_targets(dom) == [None, "kvdtap1"]       # the named one is the user's
    assert not [f for f in os.listdir(state_dir(d)) if f.endswith(".xml")]


def test_missing_bridge_refused(nsd):
    d, ns, conn = nsd
    dom = conn.defineXML(guest_xml(d.root, "nobr", extra_devices=nic("bridge", source="kvdnobr0")))
    with pytest.raises(libvirt.libvirtError) as e:
        dom.create()
    assert "bridge 'kvdnobr0' does not exist on this host" in str(e.value)
    assert taps(ns) == []
    # not a bridge: a tap of the test's is no place for a port
    subprocess.run(["ip", "-n", ns, "tuntap", "add", "dev", "kvdnotbr", "mode", "tap"], check=True)
    dom = conn.defineXML(guest_xml(d.root, "notbr", extra_devices=nic("bridge", source="kvdnotbr")))
    with pytest.raises(libvirt.libvirtError) as e:
        dom.create()
    assert "cannot add tap 'vnet0' to bridge 'kvdnotbr'" in str(e.value)
    assert taps(ns) == ["kvdnotbr"]


def test_busy_tap_refused_and_left_alone(nsd):
    """A named target another process holds open: refused, and the other
    process's tap is not touched."""
    d, ns, conn = nsd
    holder = subprocess.Popen(
        ["ip", "netns", "exec", ns, sys.executable, "-c",
         "import fcntl, os, struct, sys\n"
         "fd = os.open('/dev/net/tun', os.O_RDWR)\n"
         "fcntl.ioctl(fd, 0x400454ca, struct.pack('16sH', b'kvdbusy0', 0x0002 | 0x1000))\n"
         "print('ready', flush=True)\n"
         "sys.stdin.read()\n"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        dom = conn.defineXML(guest_xml(d.root, "busy", extra_devices=nic(target="kvdbusy0")))
        with pytest.raises(libvirt.libvirtError) as e:
            dom.create()
        assert "tap device 'kvdbusy0' is in use by another process" in str(e.value)
        assert taps(ns) == ["kvdbusy0"]
    finally:
        holder.stdin.close()
        holder.wait(10)
    assert taps(ns) == []


def test_reserved_mac_and_unmanaged_tap_refused(nsd):
    d, ns, conn = nsd
    dom = conn.defineXML(guest_xml(d.root, "fe", extra_devices=nic(mac="fe:54:00:00:00:01")))
    with pytest.raises(libvirt.libvirtError) as e:
        dom.create()
    assert "the first byte 0xfe is reserved" in str(e.value)
    dom = conn.defineXML(guest_xml(d.root, "unm", extra_devices=nic(target="kvdnone0",
                                                                  managed="no")))
    with pytest.raises(libvirt.libvirtError) as e:
        dom.create()
    assert "tap device 'kvdnone0' does not exist" in str(e.value)
    assert taps(ns) == []


def test_network_refused_without_libvirt_network_driver(start_daemon, netns):
    # The daemon sees an empty /run (a mount namespace of its own), so no
    # libvirtd or virtnetworkd of the host's can answer it.
    d = start_daemon(prefix=["ip", "netns", "exec", netns, "unshare", "-m", "--propagation",
                             "private", "sh", "-c", 'mount -t tmpfs kvdn /run && exec "$@"',
                             "sh"])
    conn = libvirt.open(d.uri())
    dom = conn.defineXML(guest_xml(d.root, "netw", extra_devices=nic("network", source="default")))
    r = virsh(d.uri(), "start", "netw")
    assert r.returncode != 0
    assert ("network 'default' cannot be used: libvirt's network driver is not running "
            "on this host") in r.stderr, r.stderr
    assert "virtnetworkd" in r.stderr and "type='bridge'" in r.stderr
    assert taps(netns) == [] and not dom.isActive()
    conn.close()


# --- type='network' with a real libvirt network driver ----------------------

LIBVIRTD = "/usr/sbin/libvirtd"
NETWORK_DRIVER = "/usr/lib/x86_64-linux-gnu/libvirt/connection-driver/libvirt_driver_network.so"


@pytest.fixture
def libvirt_network(netns):
    """Debian's libvirtd with its network driver alone (LIBVIRT_DRIVER_DIR
    names a directory holding only that module), as root, in the test's
    namespace and a mount namespace of its own whose /run, /var/lib,
    /var/cache, /var/log and /etc/libvirt are empty tmpfs: nothing of the
    host's is seen or touched.  A network 'kvdnet' in forward mode bridge
    on the bridge kvdbr0 the test made, started; 'kvdoff' defined, not
    started.  Yields the nsenter prefix that enters both namespaces."""
    if not (os.path.exists(LIBVIRTD) and os.path.exists(NETWORK_DRIVER)):
        pytest.fail("libvirtd or its network driver is not installed: run tools/install-deps "
                    "(libvirt-daemon)")
    tmp = tempfile.mkdtemp(prefix="kvdn-lv-")
    os.mkdir(os.path.join(tmp, "drivers"))
    os.symlink(NETWORK_DRIVER, os.path.join(tmp, "drivers", os.path.basename(NETWORK_DRIVER)))
    subprocess.run(["ip", "-n", netns, "link", "add", "kvdbr0", "type", "bridge"], check=True)
    subprocess.run(["ip", "-n", netns, "link", "set", "kvdbr0", "up"], check=True)
    mounts = "; ".join(f"mount -t tmpfs kvdn {d} || exit 1"
                       for d in ("/run", "/var/lib", "/var/cache", "/var/log", "/etc/libvirt"))
    log = open(os.path.join(tmp, "libvirtd.log"), "wb")
    proc = subprocess.Popen(
        ["ip", "netns", "exec", netns, "unshare", "-m", "--propagation", "private", "sh", "-c",
         f"{mounts}; exec env LIBVIRT_DRIVER_DIR={tmp}/drivers {LIBVIRTD}"],
        stdout=log, stderr=subprocess.STDOUT)
    try:
        prefix = ["nsenter", f"--mount=/proc/{proc.pid}/ns/mnt", f"--net=/proc/{proc.pid}/ns/net"]
        deadline = time.monotonic() + 30
        while not os.path.exists(f"/proc/{proc.pid}/root/run/libvirt/libvirt-sock"):
            assert proc.poll() is None and time.monotonic() < deadline, \
                open(log.name).read()
            time.sleep(0.05)
        for name, bridge in (("kvdnet", "kvdbr0"), ("kvdoff", "kvdbr9")):
            path = os.path.join(tmp, name + ".xml")
            with open(path, "w") as f:
                f.write(f"<network><name>{name}</name><forward mode='bridge'/>"
                        f"<bridge name='{bridge}'/></network>")
            subprocess.run(prefix + ["virsh", "-c", "network:///system", "net-define", path],
                           check=True, capture_output=True)
        subprocess.run(prefix + ["virsh", "-c", "network:///system", "net-start", "kvdnet"],
                       check=True, capture_output=True)
        yield prefix
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)


def test_network_through_libvirts_network_driver(start_daemon, netns, libvirt_network, kvm):
    ns = netns
    d = start_daemon(prefix=libvirt_network)
    conn = libvirt.open(d.uri())
    subprocess.run(["ip", "-n", ns, "addr", "add", "10.99.8.1/24", "dev", "kvdbr0"], check=True)
    dom = conn.defineXML(net_guest(d, "lvnet", [nic("network", source="kvdnet")], ["10.99.8.2"]))
    dom.create()
    assert live_targets(dom) == ["vnet0"]
    assert links(ns)["vnet0"].get("master") == "kvdbr0"     # the network's bridge
    r = virsh(d.uri(), "domiflist", "lvnet")
    assert r.stdout.splitlines()[2].split()[:3] == ["vnet0", "network", "kvdnet"], r.stdout
    wait_for(lambda: "virtio-net-ready" in serial(d.root, "lvnet"), "the guest's NIC", 60)
    r = probe(ns, "10.99.8.2")
    assert r["ping"] == 3 and r["udp"] == r["udp_sent"], r
    dom.destroy()
    assert taps(ns) == []
    # an inactive network, one that does not exist
    dom = conn.defineXML(guest_xml(d.root, "lvoff", extra_devices=nic("network", source="kvdoff")))
    with pytest.raises(libvirt.libvirtError) as e:
        dom.create()
    assert "network 'kvdoff' is not active; start it with virsh net-start kvdoff" in str(e.value)
    dom = conn.defineXML(guest_xml(d.root, "lvnone", extra_devices=nic("network", source="kvdnx")))
    with pytest.raises(libvirt.libvirtError) as e:
        dom.create()
    assert "network 'kvdnx' cannot be used" in str(e.value) and "kvdnx" in str(e.value)
    assert taps(ns) == []
    conn.close()
