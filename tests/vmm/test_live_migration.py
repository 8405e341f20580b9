"""Live migration between two kvmm processes on this host
(docs/state-stream.md, docs/api.md "migrate"): the source's control socket
migrate, kvmm --incoming on the destination.  The guest is the test guest's
`live` action with kvmmtest.live.dirty=on: ticks of its own clock, each
rewriting 16 MiB (one word a page) after checking the last tick's values,
and a disk read every other tick whose buffer it checks a tick later."""
import os
import re
import shutil
import socket
import subprocess
import time

import pytest

from kvmmtest import Api, KVMM, kvmm_argv, start
from test_schemas import load, validator

SCHEMA = load("api.schema.json")

LIVE = re.compile(r"KVMMTEST live n=(\d+) us=(\d+) blk0=(\S+) blk_irqs=(\d+) mem=(\S+) "
                  r"ap_irqs=\d+ gen=(\d+) blkmem=(\S+)")
CMDLINE = ("kvmmtest.action=live kvmmtest.tick_ms=20 kvmmtest.virtio=blk "
           "kvmmtest.live.touch=16 kvmmtest.live.check=on kvmmtest.live.dirty=on")


def records(lines):
    return [(int(m[1]), int(m[2]), m[3], m[5], int(m[6]), m[7])
            for m in map(LIVE.search, lines) if m]


def disk_image(tmp):
    path = os.path.join(tmp, "disk.img")
    with open(path, "wb") as f:
        f.write(os.urandom(1 << 20))
    return path


def source(vms, tmp, disk, cpus=2):
    sock = os.path.join(tmp, "src.sock")
    g = start(vms, kvmm_argv(CMDLINE, cpus=cpus,
                             extra=["--api-socket", sock, "--disk", f"path={disk}"]))
    g.wait_for(r"KVMMTEST live n=3 ")
    return g, Api(sock)


def destination(vms, tmp, uri, disk, extra=()):
    """kvmm --incoming on a copy of the disk: both processes hold their
    image locked, and the guest only reads it."""
    copy = os.path.join(tmp, "dst-disk.img")
    shutil.copy(disk, copy)
    disk = copy
    sock = os.path.join(tmp, "dst.sock")
    h = start(vms, [KVMM, "--incoming", uri, "--api-socket", sock,
                    "--disk", f"path={disk}", *extra])
    return h, sock


def wait_listening(path_or_port, h):
    """Until the destination listens: its unix socket appears (it is
    renamed into place once listening), or the TCP port is in LISTEN."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert h.proc.poll() is None, h.stderr
        if isinstance(path_or_port, str):
            if os.path.exists(path_or_port):
                return
        else:
            with open("/proc/net/tcp") as f:
                for line in f.readlines()[1:]:
                    local, state = line.split()[1], line.split()[3]
                    if int(local.split(":")[1], 16) == path_or_port and state == "0A":
                        return
        time.sleep(0.01)
    raise AssertionError("the destination never listened")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def migrate(api, args):
    validator(SCHEMA, "migrate").validate(args)
    r = api.call("migrate", args)
    validator(SCHEMA, "reply").validate(r)
    assert r.get("return") == {}, r
    ev = api.wait_event("migration-status", status="active")
    validator(SCHEMA, "event").validate(ev)


def wait_status(api, status, timeout=120):
    ev = api.wait_event("migration-status", timeout=timeout)
    validator(SCHEMA, "event").validate(ev)
    assert ev["data"]["status"] == status, ev
    q = api.call("query-migrate")
    validator(SCHEMA, "reply").validate(q)
    validator(SCHEMA, "migrate-info").validate(q["return"])
    assert q["return"]["status"] == status, q
    return q["return"]


def check_continued(g, h, at_start):
    """The guest went on ticking during the copy on g, then on h, its
    clock monotonic, every memory and disk-buffer check right."""
    a, b = records(g.lines), records(h.lines)
    assert b, "the destination's guest wrote nothing"
    assert not [l for l in h.lines if "KVMMTEST boot" in l], "the guest booted again"
    # The copy ran while the guest did: ticks between migrate and pause.
    assert a[-1][0] > at_start, (at_start, a[-1])
    seq = a + b
    ns = [r[0] for r in seq]
    # A line the source was writing when it paused may end on h; the
    # ticks go on by one across the switchover otherwise.
    assert ns == list(range(ns[0], ns[0] + len(ns))) or \
        ns[len(a)] in (a[-1][0] + 1, a[-1][0] + 2), (a[-3:], b[:3])
    assert all(y[1] > x[1] for x, y in zip(seq, seq[1:])), "the guest's clock went back"
    assert all(r[3] == "ok" for r in seq), [r for r in seq if r[3] != "ok"][:3]
    assert all(r[5] in ("ok", "none") for r in seq), [r for r in seq if r[5] == "bad"][:3]
    assert [r for r in b if r[5] == "ok"], "no disk buffer checked on the destination"
    assert b[-1][4] > a[-1][4], "the guest stopped rewriting its memory"


@pytest.mark.parametrize("transport", ["unix", "tcp"])
def test_live_migration_moves_a_running_guest(kvm, vms, tmp, transport):
    disk = disk_image(tmp)
    g, api = source(vms, tmp, disk)
    if transport == "unix":
        where = os.path.join(tmp, "mig.sock")
        uri = "unix:" + where
    else:
        where = free_port()
        uri = f"tcp:127.0.0.1:{where}"
    h, hsock = destination(vms, tmp, uri, disk)
    wait_listening(where, h)
    at_start = records(g.lines)[-1][0]
    migrate(api, {"uri": uri})
    info = wait_status(api, "completed")
    assert info["transferred-bytes"] > 16 << 20
    assert info["iteration"] >= 1 and info["remaining-bytes"] == 0
    assert info["total-bytes"] == 256 << 20
    assert info["downtime-ms"] <= info["total-ms"]
    # The source stays paused for its owner to end it.
    assert api.call("query-status")["return"]["state"] == "paused"
    n = records(g.lines)[-1][0]
    h.wait_for(r"KVMMTEST live n=%d " % (n + 6))
    if transport == "unix":
        assert not os.path.exists(where), "the listening socket was left behind"
    assert Api(hsock).call("query-status")["return"]["state"] == "running"
    check_continued(g, h, at_start)
    assert api.call("quit")["return"] == {}
    assert g.wait_exit() == 0
