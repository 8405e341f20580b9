"""kvmm's virtio-net on tap devices, beyond what tests/vmm/test_virtio_net.py
checks against QEMU too: the counters of query-net-stats against the
guest's own and the host tap's, taps kvmm creates (gone at exit) next to
persistent ones (kept), a tap passed as an open fd, and bad input (one
line, exit 1, no tap left behind).  Every test runs in a private network
namespace (root needed)."""
import json
import os
import subprocess
import sys
import time

import pytest

import kvmmtest
from virtiotest import add_tap, by_dev, no_failures, probe

SCHEMA = os.path.join(os.path.dirname(__file__), "..", "..", "schemas", "api.schema.json")

# Opens the tap argv[1] with TUNSETIFF (IFF_TAP | IFF_NO_PI | IFF_VNET_HDR,
# or the flags in argv[2]) and execs the rest with it as fd 3..., so kvmm
# inherits a tap the caller opened: run inside the namespace.
OPEN_TAP = r"""
import fcntl, os, struct, sys
name, flags = sys.argv[1], int(sys.argv[2], 0)
if name == "-":
    fd = os.open("/dev/null", os.O_RDWR)
else:
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, 0x400454ca, struct.pack("16sH", name.encode(), flags))  # TUNSETIFF
os.set_inheritable(fd, True)
argv = [a.replace("@FD@", str(fd)) for a in sys.argv[3:]]
os.execv(argv[0], argv)
"""
TAP_FLAGS = 0x0002 | 0x1000 | 0x4000    # IFF_TAP | IFF_NO_PI | IFF_VNET_HDR

# Holds the tap argv[1] open (attached) until stdin closes.
HOLD_TAP = r"""
import fcntl, os, struct, sys
fd = os.open("/dev/net/tun", os.O_RDWR)
fcntl.ioctl(fd, 0x400454ca, struct.pack("16sH", sys.argv[1].encode(), 0x0002 | 0x1000))
print("held", flush=True)
sys.stdin.read()
"""


def links(ns):
    out = subprocess.run(["ip", "-n", ns, "-j", "link", "show"], capture_output=True,
                         text=True, check=True).stdout
    return {l["ifname"]: l for l in json.loads(out)}


def tap_counters(ns, tap):
    out = subprocess.run(["ip", "-n", ns, "-j", "-s", "link", "show", "dev", tap],
                         capture_output=True, text=True, check=True).stdout
    s = json.loads(out)[0]["stats64"]
    return s["rx"], s["tx"]


def net_cmdline(nics):
    return "kvmmtest.virtio=net kvmmtest.net.serve=60 " + " ".join(
        f"kvmmtest.net{i}.ip={ip} kvmmtest.net{i}.udp={port}" for i, (ip, port) in enumerate(nics))


def exchange(g, ns, nics):
    """Pings and UDP echoes on every NIC (ip, port); the probe's results."""
    g.wait_for(rf"KVMMTEST event virtio-net-ready nics={len(nics)}", timeout=60)
    out = []
    for ip, port in nics:
        r = probe(ns, ip, port)
        assert r["ping"] == 3 and r["udp"] == r["udp_sent"] and r["quit"] == 1, r
        out.append(r)
    return out


def call(sock, command):
    """One command on kvmm's control socket; its reply."""
    api = kvmmtest.Api(sock)
    try:
        return api.call(command)
    finally:
        api.close()


def net_stats(sock):
    import jsonschema
    st = call(sock, "query-net-stats")["return"]
    schema = json.load(open(SCHEMA))
    jsonschema.validate(st, {**schema["$defs"]["net-stats"], "$defs": schema["$defs"]})
    return st


def test_kvmm_net_stats_match_the_guest_and_the_tap(kvm, vms, tmp, netns):
    nics = [("tap0", "52:54:00:bb:00:01", "10.78.1.1/24", "10.78.1.15", 7),
            ("tap1", "52:54:00:bb:00:02", "10.78.2.1/24", "10.78.2.15", 5001)]
    for tap, _, cidr, _, _ in nics:
        add_tap(netns, tap, cidr)
    sock = os.path.join(tmp, "api.sock")
    args = ["--api-socket", sock]
    for tap, mac, *_ in nics:
        args += ["--net", f"tap={tap},mac={mac}"]
    addrs = [(ip, port) for *_, ip, port in nics]
    g = kvmmtest.start(vms, ["ip", "netns", "exec", netns] + kvmmtest.kvmm_argv(
        net_cmdline(addrs) + " kvmmtest.action=wait", 1, "256M", args))
    sent = exchange(g, netns, addrs)
    g.wait_for(r"KVMMTEST done", timeout=60)
    no_failures(g)
    guest = by_dev(g, "pass", "virtio-net")
    st = net_stats(sock)
    assert [s["id"] for s in st] == ["net0", "net1"]
    for i, (tap, mac, *_) in enumerate(nics):
        s, gs, r = st[i], guest[f"net{i}"], sent[i]
        host_rx, host_tx = tap_counters(netns, tap)
        assert s["tap"] == tap and s["mac"] == mac
        # The guest sends nothing but its replies, and the tap took each.
        replies = int(gs["arp_replies"]) + int(gs["icmp_replies"]) + int(gs["udp_echoes"])
        assert s["tx_packets"] == replies, (s, gs)
        assert replies >= r["ping"] + r["udp"] + r["quit"] + 1     # + an ARP reply
        assert (s["tx_packets"], s["tx_bytes"]) == (host_rx["packets"], host_rx["bytes"]), (s, host_rx)
        # Every frame the guest looked at came through the device; the
        # device gave it no more than the host sent into the tap.
        assert int(gs["frames"]) <= s["rx_packets"] <= host_tx["packets"], (s, gs, host_tx)
        assert r["ping"] + r["udp"] + r["quit"] < s["rx_packets"]
        assert 0 < s["rx_bytes"] <= host_tx["bytes"]
        assert s["rx_errors"] == s["rx_drops"] == s["tx_errors"] == s["tx_drops"] == 0, s
    # The counters survive a reset of the guest (and of the device), and
    # the NICs work again after it: they count on from where they were.
    assert "return" in call(sock, "reset")
    g.wait_for(r"KVMMTEST event virtio-net-ready nics=2", timeout=60, count=2)
    for ip, port in addrs:
        r = probe(netns, ip, port)
        assert r["ping"] == 3 and r["udp"] == r["udp_sent"] and r["quit"] == 1, r
    after = net_stats(sock)
    for a, b in zip(st, after):
        assert b["tx_packets"] >= a["tx_packets"] + r["ping"] + r["udp"] + r["quit"], (a, b)
        assert b["rx_packets"] >= a["rx_packets"] + r["ping"] + r["udp"] + r["quit"], (a, b)
        assert b["rx_bytes"] > a["rx_bytes"] and b["tx_bytes"] > a["tx_bytes"]
    assert "return" in call(sock, "quit")
    assert g.wait_exit() == 0


def test_kvmm_created_tap_goes_at_exit_persistent_tap_stays(kvm, vms, tmp, netns):
    """The NICs come from a --config file in the shape virtkvmmd writes
    ({"tap": NAME}, no MAC: kvmm makes them up)."""
    add_tap(netns, "keep0", "10.79.1.1/24")
    assert "made0" not in links(netns)
    addrs = [("10.79.1.15", 7), ("10.79.2.15", 7)]
    conf = os.path.join(tmp, "vm.json")
    with open(conf, "w") as f:
        json.dump({"nets": [{"tap": "keep0"}, {"tap": "made0"}]}, f)
    g = kvmmtest.start(vms, ["ip", "netns", "exec", netns] + kvmmtest.kvmm_argv(
        net_cmdline(addrs), 1, "256M", ["--config", conf]))
    g.wait_for(r"KVMMTEST event virtio-net-ready nics=2", timeout=60)
    # kvmm made it, link up; the host end only needs an address.
    made = links(netns)["made0"]
    assert "UP" in made["flags"], made
    subprocess.run(["ip", "-n", netns, "addr", "add", "10.79.2.1/24", "dev", "made0"], check=True)
    for ip, port in addrs:
        r = probe(netns, ip, port)
        assert r["ping"] == 3 and r["udp"] == r["udp_sent"] and r["quit"] == 1, r
    # The generated MACs: 52:54:00 and random bytes, not the same twice.
    macs = [c["mac"] for c in by_dev(g, "info", "virtio-net").values()]
    assert len(set(macs)) == 2 and all(m.startswith("52:54:00:") for m in macs), macs
    g.wait_for(r"KVMMTEST done", timeout=60)
    no_failures(g)
    assert g.wait_exit() == 0
    now = links(netns)
    assert "made0" not in now, "the tap kvmm created outlived it"
    assert "keep0" in now, "kvmm removed a tap it did not create"


def test_kvmm_net_fd_is_a_tap_the_caller_opened(kvm, vms, tmp, netns):
    add_tap(netns, "fdtap0", "10.80.1.1/24")
    sock = os.path.join(tmp, "api.sock")
    addrs = [("10.80.1.15", 7)]
    argv = kvmmtest.kvmm_argv(net_cmdline(addrs) + " kvmmtest.action=wait", 1, "256M",
                              ["--net", "fd=@FD@,mac=52:54:00:cc:00:01", "--api-socket", sock])
    g = kvmmtest.start(vms, ["ip", "netns", "exec", netns, sys.executable, "-c", OPEN_TAP,
                             "fdtap0", str(TAP_FLAGS)] + argv)
    exchange(g, netns, addrs)
    g.wait_for(r"KVMMTEST done", timeout=60)
    no_failures(g)
    st = net_stats(sock)
    assert [(s["tap"], s["mac"]) for s in st] == [("fdtap0", "52:54:00:cc:00:01")]
    assert st[0]["tx_packets"] > 0 and st[0]["rx_packets"] > 0
    assert "return" in call(sock, "quit")
    assert g.wait_exit() == 0
    assert "fdtap0" in links(netns)


# --- bad input ------------------------------------------------------------

def refused(ns, tmp, args, prefix=()):
    """Runs kvmm in ns with args; one error line, exit 1, no interface
    added or removed, nothing left in tmp.  Returns the line."""
    before, files = set(links(ns)), set(os.listdir(tmp))
    r = subprocess.run(["ip", "netns", "exec", ns, *prefix, kvmmtest.KVMM,
                        "--api-socket", os.path.join(tmp, "api.sock"), "--serial", "none",
                        "--kernel", kvmmtest.GUEST, *args],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1, (r.returncode, r.stderr)
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("kvmm: error: "), r.stderr
    assert set(links(ns)) == before, "kvmm left a tap behind (or removed one)"
    assert set(os.listdir(tmp)) == files
    return lines[0]


def test_kvmm_net_busy_tap_is_refused(kvm, tmp, netns):
    add_tap(netns, "busy0", "10.81.1.1/24")
    holder = subprocess.Popen(["ip", "netns", "exec", netns, sys.executable, "-c", HOLD_TAP,
                               "busy0"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        # The first NIC's tap is one kvmm creates: it must go too.
        err = refused(netns, tmp, ["--net", "tap=new0", "--net", "tap=busy0"])
        assert "tap 'busy0' is busy: another process has it open" in err
    finally:
        holder.stdin.close()
        holder.wait(timeout=10)
    assert "busy0" in links(netns)


def test_kvmm_net_tun_is_not_a_tap(kvm, tmp, netns):
    subprocess.run(["ip", "-n", netns, "tuntap", "add", "dev", "tun0", "mode", "tun"], check=True)
    err = refused(netns, tmp, ["--net", "tap=tun0"])
    assert "tap 'tun0' cannot be opened as a tap: it is another kind of device" in err


def test_kvmm_net_fd_that_is_not_a_tap(kvm, tmp, netns):
    err = refused(netns, tmp, ["--net", "fd=@FD@"],
                  prefix=[sys.executable, "-c", OPEN_TAP, "-", "0"])
    assert "is not an open tap" in err and "TUNSETIFF" in err
    err = refused(netns, tmp, ["--net", "fd=97"])
    assert "net 0: fd 97 is not an open tap (Bad file descriptor)" in err


def test_kvmm_net_fd_without_vnet_header(kvm, tmp, netns):
    add_tap(netns, "novh0", "10.82.1.1/24")
    err = refused(netns, tmp, ["--net", "fd=@FD@"],
                  prefix=[sys.executable, "-c", OPEN_TAP, "novh0", str(0x0002 | 0x1000)])
    assert "(novh0) is not a tap opened with IFF_TAP|IFF_NO_PI|IFF_VNET_HDR" in err


@pytest.mark.parametrize("args,message", [
    (["--net", "tap=t0,mac=52:54:00:12:34"],
     "net 0: mac '52:54:00:12:34' is not valid: use six hex bytes of a unicast address"),
    (["--net", "tap=t0,mac=01:54:00:12:34:56"],
     "net 0: mac '01:54:00:12:34:56' is not valid"),
    (["--net", "tap=t0,model=e1000"], "net 0: unknown option 'model': use tap, fd, mac or mtu"),
    (["--net", "mac=52:54:00:12:34:56"], "net 0 needs exactly one of tap and fd"),
    (["--net", "tap=this-name-is-too-long"], "net 0: tap name 'this-name-is-too-long' is not valid"),
    ([a for i in range(9) for a in ("--net", f"tap=t{i}")], "9 NICs given: kvmm supports at most 8"),
    (["--net", "tap=t0", "--net", "tap=t0"], "net 1: tap 't0' is given twice"),
], ids=["short-mac", "multicast-mac", "unknown-option", "no-tap", "long-name", "nine-nics",
        "tap-twice"])
def test_kvmm_net_bad_options(kvm, tmp, netns, args, message):
    assert message in refused(netns, tmp, args)


def test_kvmm_net_frame_too_big_for_the_guest_is_a_counted_drop(kvm, vms, tmp, netns):
    """The host raised the tap's MTU past what the guest's buffers hold
    (the test guest takes no MRG_RXBUF): such a frame is dropped and
    counted once, and the NIC goes on receiving."""
    add_tap(netns, "mtu0", "10.84.1.1/24")
    subprocess.run(["ip", "-n", netns, "link", "set", "mtu0", "mtu", "4000"], check=True)
    sock = os.path.join(tmp, "api.sock")
    addrs = [("10.84.1.15", 7)]
    g = kvmmtest.start(vms, ["ip", "netns", "exec", netns] + kvmmtest.kvmm_argv(
        net_cmdline(addrs) + " kvmmtest.action=wait", 1, "256M",
        ["--net", "tap=mtu0", "--api-socket", sock]))
    exchange(g, netns, addrs)
    before = net_stats(sock)[0]
    send = ("import socket, sys; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
            "s.sendto(b'x' * int(sys.argv[2]), (sys.argv[1], 9))")
    for size in (3000, 100):
        subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-c", send,
                        addrs[0][0], str(size)], check=True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        st = net_stats(sock)[0]
        if st["rx_packets"] > before["rx_packets"] and st["rx_drops"]:
            break
        time.sleep(0.05)
    assert st["rx_drops"] == 1 and st["rx_errors"] == 0, st
    # the small datagram after it arrived whole: 14 + 20 + 8 + 100 bytes
    assert st["rx_bytes"] - before["rx_bytes"] >= 142, (before, st)
    assert "return" in call(sock, "quit")
    assert g.wait_exit() == 0


def main_thread_cpu(pid):
    """CPU seconds kvmm's main thread (the loop) has used."""
    with open(f"/proc/{pid}/task/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_kvmm_net_tap_deleted_under_a_running_guest(kvm, vms, tmp, netns):
    """Someone deletes the tap while the guest runs: kvmm says so once,
    forgets the tap (its loop does not spin on the error) and runs on;
    the other NIC is untouched."""
    add_tap(netns, "gone0", "10.85.1.1/24")
    add_tap(netns, "stay0", "10.85.2.1/24")
    sock = os.path.join(tmp, "api.sock")
    addrs = [("10.85.1.15", 7), ("10.85.2.15", 7)]
    g = kvmmtest.start(vms, ["ip", "netns", "exec", netns] + kvmmtest.kvmm_argv(
        net_cmdline(addrs), 1, "256M",
        ["--net", "tap=gone0", "--net", "tap=stay0", "--api-socket", sock]))
    g.wait_for(r"KVMMTEST event virtio-net-ready nics=2", timeout=60)
    subprocess.run(["ip", "-n", netns, "link", "del", "gone0"], check=True)
    before = main_thread_cpu(g.proc.pid)
    time.sleep(1)
    assert main_thread_cpu(g.proc.pid) - before < 0.5, "kvmm's loop spins on the dead tap"
    r = probe(netns, *addrs[1])
    assert r["ping"] == 3 and r["udp"] == r["udp_sent"] and r["quit"] == 1, r
    st = net_stats(sock)
    assert [s["tap"] for s in st] == ["gone0", "stay0"] and st[1]["tx_packets"] > 0
    assert "return" in call(sock, "quit")
    assert g.wait_exit() == 0
    warnings = [l for l in g.stderr.decode().splitlines() if "went away" in l]
    assert warnings == ["kvmm: warning: tap 'gone0' went away; its NIC stays without a link"], \
        g.stderr.decode()
