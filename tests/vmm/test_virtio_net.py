"""virtio-net under QEMU and kvmm on taps in a private netns, driven by
the test guest."""
import json
import os
import subprocess
import sys

import pytest

import kvmmtest
import netns as netns_lib
from virtiotest import Nic, RUNNERS, checks, by_dev, finish, msix_delivered, add_tap, probe


@pytest.mark.parametrize("runner", RUNNERS)
def test_virtio_net_two_nics_answer_ping_and_udp(kvm, vms, tmp, runner, netns):
    nics = [("tap0", "52:54:00:aa:00:01", "10.77.1.1/24", "10.77.1.15", 7),
            ("tap1", "52:54:00:aa:00:02", "10.77.2.1/24", "10.77.2.15", 5001)]
    for tap, _, cidr, _, _ in nics:
        add_tap(netns, tap, cidr)
    cmdline = "kvmmtest.virtio=net kvmmtest.net.serve=60 " + " ".join(
        f"kvmmtest.net{i}.ip={ip} kvmmtest.net{i}.udp={port}"
        for i, (_, _, _, ip, port) in enumerate(nics))
    g = runner.start(vms, tmp, cmdline, [Nic(netns, tap, mac) for tap, mac, *_ in nics])
    g.wait_for(r"KVMMTEST event virtio-net-ready nics=2", timeout=60)
    cfg = by_dev(g, "info", "virtio-net")
    for i, (tap, mac, _, ip, port) in enumerate(nics):
        assert cfg[f"net{i}"]["mac"] == mac and cfg[f"net{i}"]["mac_from"] == "device"
        r = probe(netns, ip, port)
        assert r["ping"] == 3, r
        assert r["udp"] == r["udp_sent"] and r["quit"] == 1, r
    finish(g)
    done = by_dev(g, "pass", "virtio-net")
    for i in range(len(nics)):
        d = done[f"net{i}"]
        assert int(d["arp_replies"]) >= 1 and int(d["icmp_replies"]) >= 3
        assert int(d["udp_echoes"]) == 7
        msix_delivered(g, f"net{i}")


@pytest.mark.parametrize("runner", RUNNERS)
def test_virtio_net_offloads_and_mergeable_buffers(kvm, vms, tmp, runner, netns):
    """The guest negotiates virtio-net's offloads per NIC and is driven
    with 1514-byte frames.  net0 (MRG_RXBUF with 256-byte buffers,
    GUEST_CSUM, CSUM): frames span several buffers and still get answers;
    the host's UDP arrives with NEEDS_CSUM, which the guest completes and
    verifies; its echoes leave with only the pseudo-header sum and
    NEEDS_CSUM, and the host's socket (which drops bad UDP checksums)
    gets them, and they complete right from the header's csum_start and
    csum_offset as the host saw them.  net1 (MRG_RXBUF with 512-byte buffers, no GUEST_CSUM,
    full checksums by the guest): no NEEDS_CSUM reaches a driver that
    did not take it.  net2, the negative control: echoes with a wrong
    checksum and no CSUM are dropped by the host, counted in its
    InCsumErrors.  net3: the checksum offloads without MRG_RXBUF (one
    2 KiB buffer a frame)."""
    nics = [("tap0", "52:54:00:aa:00:05", "10.77.5.1/24", "10.77.5.15",
             "features=mrg,gcsum,csum rxbuf=256"),
            ("tap1", "52:54:00:aa:00:06", "10.77.6.1/24", "10.77.6.15",
             "features=mrg rxbuf=512 udpcsum=full"),
            ("tap2", "52:54:00:aa:00:07", "10.77.7.1/24", "10.77.7.15", "udpcsum=bad"),
            ("tap3", "52:54:00:aa:00:08", "10.77.8.1/24", "10.77.8.15", "features=gcsum,csum")]
    for tap, _, cidr, _, _ in nics:
        add_tap(netns, tap, cidr)
    cmdline = "kvmmtest.virtio=net kvmmtest.net.serve=90 " + " ".join(
        f"kvmmtest.net{i}.ip={ip} " + " ".join(f"kvmmtest.net{i}.{o}" for o in opts.split())
        for i, (_, _, _, ip, opts) in enumerate(nics))
    g = runner.start(vms, tmp, cmdline, [Nic(netns, tap, mac) for tap, mac, *_ in nics])
    g.wait_for(r"KVMMTEST event virtio-net-ready nics=4", timeout=60)
    feats = {r["dev"]: int(r["features"], 16) for r in checks(g, "info", "virtio")
             if "features" in r}
    assert feats["net0"] & 0x8003 == 0x8003, feats      # MRG_RXBUF, GUEST_CSUM, CSUM
    assert feats["net1"] & 0x8003 == 0x8000, feats
    assert feats["net2"] & 0x8003 == 0, feats
    assert feats["net3"] & 0x8003 == 0x0003, feats
    # The echoes as they enter the host, with their virtio-net header: the
    # host's stack trusts a NEEDS_CSUM checksum, so it is completed and
    # checked there from the csum_start and csum_offset the device passed.
    wire = {}
    for i, ip in ((0, "10.77.5.15"), (1, "10.77.6.15"), (3, "10.77.8.15")):
        r, wire[i] = netns_lib.captured(netns, f"tap{i}", 7, 8,
                                        lambda: probe(netns, ip, 7, "--big"))
        assert r["ping"] == 3, r
        assert r["udp"] == r["udp_sent"] == 7 and r["quit"] == 1, r
    before = netns_lib.udp_mib(netns)
    r, wire[2] = netns_lib.captured(netns, "tap2", 7, 8,
                                    lambda: probe(netns, "10.77.7.15", 7, "--big",
                                                  "--timeout", 0.5))
    after = netns_lib.udp_mib(netns)
    assert r["ping"] == 3, r
    assert r["udp"] == 0 and r["quit"] == 0, r
    assert after["InCsumErrors"] - before["InCsumErrors"] >= 8, (before, after)
    for i in (0, 3):
        assert len(wire[i]) == 8 and all(d == {"flags": 1, "csum_start": 34, "csum_offset": 6,
                                               "ok": True} for d in wire[i]), wire[i]
    assert len(wire[1]) == 8 and all(d["flags"] == 0 and d["ok"] for d in wire[1]), wire[1]
    # The checker itself tells a wrong checksum.
    assert len(wire[2]) == 8 and all(d["flags"] == 0 and d["ok"] is False
                                     for d in wire[2]), wire[2]
    finish(g)
    done = by_dev(g, "pass", "virtio-net")
    for i in range(4):
        assert int(done[f"net{i}"]["udp_echoes"]) == 8, done    # 7 and QUIT
    off = by_dev(g, "pass", "virtio-net-offload")
    o = off["net0"]
    assert o["mrg"] == "1" and o["gcsum"] == "1" and o["tx_csum"] == "partial", o
    # Pings (3), the 1400- and 1472-byte datagrams at least, over buffers
    # of 256 bytes: a 1514-byte frame and its header take 6.
    assert int(o["multi_buffer_frames"]) >= 5 and int(o["max_buffers"]) == 6, o
    assert int(o["needs_csum"]) >= 8 and int(o["udp_csum_ok"]) >= 8, o
    assert int(o["tx_partial"]) == 8, o
    o = off["net1"]
    assert o["mrg"] == "1" and o["gcsum"] == "0" and o["tx_csum"] == "full", o
    assert int(o["multi_buffer_frames"]) >= 5 and int(o["max_buffers"]) == 3, o
    assert int(o["needs_csum"]) == 0 and int(o["udp_csum_ok"]) >= 8, o
    o = off["net2"]
    assert o["mrg"] == "0" and o["tx_csum"] == "bad" and int(o["max_buffers"]) == 1, o
    o = off["net3"]
    assert o["mrg"] == "0" and o["gcsum"] == "1" and o["tx_csum"] == "partial", o
    assert int(o["max_buffers"]) == 1 and int(o["needs_csum"]) >= 8, o
    assert int(o["udp_csum_ok"]) >= 8 and int(o["tx_partial"]) == 8, o
    for o in off.values():
        assert o["udp_csum_bad"] == "0" and o["rx_errors"] == "0", o


def bench_probe(ns, *args, **kw):
    script = os.path.join(os.path.dirname(kvmmtest.__file__), "netbench_probe.py")
    return subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, script]
                            + [str(a) for a in args], text=True, **kw)


@pytest.mark.parametrize("runner", RUNNERS)
def test_virtio_net_throughput_modes(kvm, vms, tmp, runner, netns):
    """tools/bench/net's guest side: net0 sends datagrams flat out for a
    second (the host checks what arrives: content, order, source), then
    net1 counts datagrams the host sends at a modest rate (all of them
    must arrive, in order, intact)."""
    add_tap(netns, "tap0", "10.77.3.1/24")
    add_tap(netns, "tap1", "10.77.4.1/24")
    # A fixed neighbour: no ARP while the host sends to net1.
    subprocess.run(["ip", "-n", netns, "neigh", "replace", "10.77.4.15", "lladdr",
                    "52:54:00:aa:00:04", "dev", "tap1", "nud", "permanent"], check=True)
    size, count = 1000, 2000
    recv = bench_probe(netns, "recv", 9000, 90, stdout=subprocess.PIPE)
    send = None
    try:
        assert json.loads(recv.stdout.readline())["ready"]
        cmdline = ("kvmmtest.virtio=net kvmmtest.net.serve=60 "
                   "kvmmtest.net0.ip=10.77.3.15 kvmmtest.net0.udp=9001 kvmmtest.net0.blast=1 "
                   "kvmmtest.net0.peer=10.77.3.1:9000 kvmmtest.net0.size=1200 "
                   "kvmmtest.net1.ip=10.77.4.15 kvmmtest.net1.udp=9002 kvmmtest.net1.sink=60")
        g = runner.start(vms, tmp, cmdline, [Nic(netns, "tap0", "52:54:00:aa:00:03"),
                                             Nic(netns, "tap1", "52:54:00:aa:00:04")])
        g.wait_for(r"KVMMTEST event net-bench-ready dev=net1", timeout=90)
        host = json.loads(recv.communicate(timeout=30)[0])
        send = bench_probe(netns, "send", "10.77.4.15", 9002, count, size, 10000,
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        sent = json.loads(send.stdout.readline())
        g.wait_for(r"KVMMTEST info net-bench dev=net1", timeout=60)
        send.stdin.write("done\n")
        send.stdin.flush()
        send.wait(10)
        finish(g)
    finally:
        for p in (recv, send):
            if p and p.poll() is None:
                p.kill()
                p.wait()
    start = by_dev(g, "event", "net-bench-start")["net0"]
    assert start["peermac_from"] == "arp", start
    tx = by_dev(g, "info", "net-bench")["net0"]
    assert tx["mode"] == "tx" and int(tx["size"]) == 1200
    pkts = int(tx["pkts"])
    assert pkts > 0 and int(tx["bytes"]) == pkts * 1200 and int(tx["ns"]) >= 1e9, tx
    # The host may drop some of a flat-out stream, never alter or reorder it.
    assert host["sources"] == ["10.77.3.15:9001"] and host["sizes"] == [1200], host
    assert 0 < host["pkts"] <= pkts and host["seq_max"] < pkts, (host, tx)
    assert host["bad"] == 0 and host["reordered"] == 0, host
    rx = by_dev(g, "info", "net-bench")["net1"]
    assert sent["pkts"] == count
    assert rx["mode"] == "rx" and int(rx["pkts"]) == count and int(rx["seq_end"]) == count, rx
    assert int(rx["bytes"]) == count * size and int(rx["bad"]) == 0, rx
    assert int(rx["reordered"]) == 0 and rx["ended"] == "1", rx


@pytest.mark.parametrize("runner", RUNNERS)
@pytest.mark.parametrize("kind", ["head", "loop"])
def test_virtio_net_malformed_tx_chain_breaks_only_its_nic(kvm, vms, tmp, runner, netns, kind):
    """A hostile chain on one NIC's transmit queue puts that NIC in
    DEVICE_NEEDS_RESET; the other NIC is untouched, and the broken one
    works again once the guest has reset it."""
    nics = [("tap0", "52:54:00:dd:00:01", "10.83.1.1/24", "10.83.1.15", 7),
            ("tap1", "52:54:00:dd:00:02", "10.83.2.1/24", "10.83.2.15", 7)]
    for tap, _, cidr, _, _ in nics:
        add_tap(netns, tap, cidr)
    cmdline = f"kvmmtest.virtio=net kvmmtest.net.serve=60 kvmmtest.net0.malformed={kind} " + \
        " ".join(f"kvmmtest.net{i}.ip={ip} kvmmtest.net{i}.udp={port}"
                 for i, (_, _, _, ip, port) in enumerate(nics))
    g = runner.start(vms, tmp, cmdline, [Nic(netns, tap, mac) for tap, mac, *_ in nics])
    g.wait_for(r"KVMMTEST event virtio-net-ready nics=2", timeout=60)
    assert by_dev(g, "info", "virtio-malformed")["net0"]["outcome"] == "needs-reset"
    for _, _, _, ip, port in reversed(nics):
        r = probe(netns, ip, port)
        assert r["ping"] == 3 and r["udp"] == r["udp_sent"] and r["quit"] == 1, r
    finish(g)
    assert set(by_dev(g, "pass", "virtio-net")) == {"net0", "net1"}
