"""A live migration whose link is cut mid-copy: the veth between the two
virtkvmmd "hosts" (test_migrate.py's fixtures) taken down while a busy
guest is being copied at a low --bandwidth.  The migration connection's
timeouts (virtkvmmd sets them on both ends: unacknowledged data, and
keepalive probes for the end that only reads) end it within
LINK_TIMEOUT_S, where TCP alone retries for some 15 minutes; the guest
runs on on the source, nothing of it is left on the destination, and
once the link is back it migrates.  The same with --p2p, where the
source daemon's own libvirt connection to the destination's crosses the
cut link too: its keepalive ends it in as long, the destination drops
that client (and with it the incoming run) on its own keepalive."""
import os
import subprocess
import time

import libvirt
import pytest

from drvtest import virsh
from test_lifecycle import assert_nothing_left, wait_for
from test_migrate import (DIRTY, DST_IP, TLS_PORT, assert_memory_right, copying,  # noqa: F401
                          hosts, migrate, ns_dst, ns_src, running, start_migrate, ticks,
                          tls_dst_conf)
from test_tls import pki  # noqa: F401 (fixture)

L = libvirt
# virtkvmmd's LINK_TIMEOUT_S (src/driver/api/domain_migrate.c).
LINK_TIMEOUT_S = 30


def veth(ns):
    """The veth end in NS (the hosts fixture names them after ns_src)."""
    out = subprocess.run(["ip", "-n", ns, "-o", "link", "show", "type", "veth"],
                         capture_output=True, text=True, check=True).stdout
    names = [line.split(":")[1].strip().split("@")[0] for line in out.splitlines()]
    assert len(names) == 1, out
    return names[0]


def link(ns, up):
    subprocess.run(["ip", "-n", ns, "link", "set", veth(ns), "up" if up else "down"], check=True)


def link_up(ns):
    out = subprocess.run(["ip", "-n", ns, "-o", "link", "show", veth(ns)],
                         capture_output=True, text=True, check=True).stdout
    return "state UP" in out


def taps(host):
    return subprocess.run(["ip", "-n", host.ns, "-o", "link", "show", "type", "tun"],
                          capture_output=True, text=True, check=True).stdout.strip()


def dconnuri(pki):
    """The destination's daemon over TLS, across the veth."""
    return f"kvmm+tls://{DST_IP}:{TLS_PORT}/system?pkipath={pki['allowed']}&no_verify=1"


def start_p2p(src, pki, *flags):
    argv = ["virsh", "-c", src.uri, "migrate", "--p2p", "m1", dconnuri(pki),
            "--migrateuri", f"tcp://{DST_IP}", *flags]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, LC_ALL="C"))


@pytest.mark.parametrize("p2p", [False, True], ids=["managed", "p2p"])
def test_link_cut_mid_copy_fails_in_time_and_leaves_nothing(hosts, pki, p2p):
    src, dst, shared = hosts
    sdom = running(src, shared, cmdline=DIRTY)
    if p2p:
        p = start_p2p(src, pki, "--live", "--bandwidth", "2")
    else:
        p = start_migrate(src, dst, "m1", "--live", "--bandwidth", "2")
    try:
        # Mid-copy: something sent, far from all of it at 2 MiB/s.
        st = copying(sdom)
        assert st["memory_remaining"] > 8 << 20, st
        # The destination is receiving: its incoming kvmm runs.
        wait_for(lambda: len(dst.d.guests()) == 1, "the destination's incoming kvmm")
        cut = time.monotonic()
        link(src.ns, False)
        wait_for(lambda: not link_up(dst.ns), "the link down on the destination's side")
        out, err = p.communicate(timeout=LINK_TIMEOUT_S * 4)
        failed_after = time.monotonic() - cut
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert p.returncode != 0, out
    assert "migration failed" in err and "timed out" in err, err + src.d.output()
    # Within the link timeout (and its keepalive period), not TCP's 15
    # minutes; nor before the timeout could have run out.
    assert LINK_TIMEOUT_S - 5 < failed_after < LINK_TIMEOUT_S * 3, failed_after
    # The source never stopped: its guest ticks on, every check right.
    assert sdom.state()[0] == L.VIR_DOMAIN_RUNNING, sdom.state()
    assert_memory_right(shared, ticks(shared))
    assert src.d.guests() and sdom.jobStats()["type"] == L.VIR_DOMAIN_JOB_NONE
    done = sdom.jobStats(L.VIR_DOMAIN_JOB_STATS_COMPLETED)
    assert done["type"] == L.VIR_DOMAIN_JOB_FAILED, done
    # Nothing left on the destination: domain, kvmm, port, control
    # socket, status and config files, taps (with --p2p, once it dropped
    # the source daemon's client: its keepalive, as long again at most).
    wait_for(lambda: dst.d.guests() == [], "the destination's kvmm gone",
             timeout=LINK_TIMEOUT_S * 3)
    if p2p:
        # Dropped by the destination's keepalive, which took what
        # Prepare made with it (Finish could never come).
        out = dst.d.output()
        assert "keepalive pings: dropping it" in out, out
        assert "the client of its incoming migration went away" in out, out
    dst.no_domain("m1")
    assert dst.listening() == []
    assert_nothing_left(dst.d)
    assert taps(dst) == ""
    # The link back, it migrates.
    link(src.ns, True)
    wait_for(lambda: link_up(src.ns) and link_up(dst.ns), "the link up again")
    before = ticks(shared)
    if p2p:
        p = start_p2p(src, pki, "--live")
        out, err = p.communicate(timeout=180)
        assert p.returncode == 0, err + src.d.output() + dst.d.output()
    else:
        r = migrate(src, dst, "m1", "--live")
        assert r.returncode == 0, r.stderr + src.d.output() + dst.d.output()
    ddom = dst.conn.lookupByName("m1")
    assert ddom.state() == [L.VIR_DOMAIN_RUNNING, L.VIR_DOMAIN_RUNNING_MIGRATED]
    assert_memory_right(shared, before)
    assert src.d.guests() == []
    ddom.destroy()


def test_a_long_p2p_copy_keeps_its_connection(hosts, pki):
    """The other side of that keepalive: a --p2p copy slower than the
    link timeout leaves the source daemon's connection to the
    destination idle, yet each end answers the other's pings (libvirt's
    client library on the daemon's main loop), so neither drops it and
    the migration completes."""
    src, dst, shared = hosts
    sdom = running(src, shared, cmdline=DIRTY)
    before = ticks(shared)
    p = start_p2p(src, pki, "--live", "--bandwidth", "2")
    try:
        # Idle well past the keepalive's death time on both ends.
        copying(sdom)
        wait_for(lambda: sdom.jobStats().get("time_elapsed", 0) > LINK_TIMEOUT_S * 1500,
                 "the copy running past the link timeout", timeout=LINK_TIMEOUT_S * 4)
        assert virsh(src.uri, "migrate-setspeed", "m1", "0").returncode == 0
        out, err = p.communicate(timeout=180)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert p.returncode == 0, err + src.d.output() + dst.d.output()
    assert "keepalive pings" not in dst.d.output() + src.d.output()
    ddom = dst.conn.lookupByName("m1")
    assert ddom.state() == [L.VIR_DOMAIN_RUNNING, L.VIR_DOMAIN_RUNNING_MIGRATED]
    assert_memory_right(shared, before)
    ddom.destroy()
