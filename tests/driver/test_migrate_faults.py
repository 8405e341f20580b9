"""A live migration whose link is cut mid-copy: the veth between the two
virtkvmmd "hosts" (test_migrate.py's fixtures) taken down while a busy
guest is being copied at a low --bandwidth.  The migration connection's
timeouts (virtkvmmd sets them on both ends: unacknowledged data, and
keepalive probes for the end that only reads) end it within
LINK_TIMEOUT_S, where TCP alone retries for some 15 minutes; the guest
runs on on the source, nothing of it is left on the destination, and
once the link is back it migrates."""
import subprocess
import time

import libvirt

from test_lifecycle import assert_nothing_left, wait_for
from test_migrate import (DIRTY, assert_memory_right, copying, hosts, migrate,  # noqa: F401
                          ns_dst, ns_src, running, start_migrate, ticks, tls_dst_conf)
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


def test_link_cut_mid_copy_fails_in_time_and_leaves_nothing(hosts):
    src, dst, shared = hosts
    sdom = running(src, shared, cmdline=DIRTY)
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
    # socket, status and config files, taps.
    wait_for(lambda: dst.d.guests() == [], "the destination's kvmm gone")
    dst.no_domain("m1")
    assert dst.listening() == []
    assert_nothing_left(dst.d)
    assert taps(dst) == ""
    # The link back, it migrates.
    link(src.ns, True)
    wait_for(lambda: link_up(src.ns) and link_up(dst.ns), "the link up again")
    before = ticks(shared)
    r = migrate(src, dst, "m1", "--live")
    assert r.returncode == 0, r.stderr + src.d.output() + dst.d.output()
    ddom = dst.conn.lookupByName("m1")
    assert ddom.state() == [L.VIR_DOMAIN_RUNNING, L.VIR_DOMAIN_RUNNING_MIGRATED]
    assert_memory_right(shared, before)
    assert src.d.guests() == []
    ddom.destroy()
