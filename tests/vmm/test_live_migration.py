"""Live migration between two kvmm processes on this host
(docs/state-stream.md, docs/api.md "migrate"): the source's control socket
migrate, kvmm --incoming on the destination.  The guest is the test guest's
`live` action with kvmmtest.live.dirty=on: ticks of its own clock, each
rewriting 16 MiB (one word a page) after checking the last tick's values,
and a disk read every other tick whose buffer it checks a tick later."""
import fcntl
import os
import re
import shutil
import socket
import time

import pytest

from hugetlb import reserved_2m_pages
from kvmmtest import Api, Guest, KVMM, kvmm_argv, start
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
    """The next migration-status event, a final status, and query-migrate
    saying the same."""
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
    clock monotonic, every memory and disk-buffer check right.  G must
    have exited: only then has all it wrote been read (its last line,
    cut by the pause, is joined to h's first)."""
    assert g.proc.poll() is not None, "the source still runs"
    g._out.join(60)
    assert not g._out.is_alive(), "the source's output not read to its end"
    a = records(g.lines)
    assert a[-1][0] > at_start, (at_start, a[-1])
    assert not [l for l in h.lines if "KVMMTEST boot" in l], "the guest booted again"
    # A line the source was writing when it paused ends on h.
    lines, hl = list(g.lines), list(h.lines)
    if g.partial and hl:
        lines, hl = lines + [g.partial + hl[0]], hl[1:]
    seq = records(lines + hl)
    b = seq[len(records(lines)):]
    assert b, "the destination's guest wrote nothing"
    ns = [r[0] for r in seq]
    assert ns == list(range(ns[0], ns[0] + len(ns))), (a[-3:], b[:3])
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
    # Slowly at first, so that the guest ticks on while its pages go; the
    # limit lifted while it runs, the rounds then converge.
    migrate(api, {"uri": uri, "bandwidth-mibps": 8})
    g.wait_for(r"KVMMTEST live n=%d " % (at_start + 3))
    q = api.call("query-migrate")["return"]
    assert q["status"] == "active" and q["bandwidth-mibps"] == 8, q
    assert q["transferred-bytes"] > 0, q
    assert api.call("migrate-set-params", {"bandwidth-mibps": 0})["return"] == {}
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
    assert api.call("quit")["return"] == {}
    assert g.wait_exit() == 0
    check_continued(g, h, at_start)


def test_destination_says_its_share_of_the_downtime(kvm, vms, tmp):
    """With -vv the destination logs how long after the state began to
    arrive (the source paused) its vCPUs started: its share of the
    downtime, within the whole migration's time."""
    disk = disk_image(tmp)
    g, api = source(vms, tmp, disk)
    port = free_port()
    uri = f"tcp:127.0.0.1:{port}"
    h, hsock = destination(vms, tmp, uri, disk, ["-vv"])
    wait_listening(port, h)
    at_start = records(g.lines)[-1][0]
    t0 = time.monotonic()
    # Slowly until the guest ticked on during the copy (a fast copy can
    # end within one tick), then at full speed.
    migrate(api, {"uri": uri, "bandwidth-mibps": 8})
    g.wait_for(r"KVMMTEST live n=%d " % (at_start + 1))
    assert api.call("migrate-set-params", {"bandwidth-mibps": 0})["return"] == {}
    wait_status(api, "completed")
    h.wait_for(r"KVMMTEST live n=%d " % (records(g.lines)[-1][0] + 3))
    took_us = (time.monotonic() - t0) * 1e6
    assert api.call("quit")["return"] == {}
    assert g.wait_exit() == 0
    assert Api(hsock).call("quit")["return"] == {}
    assert h.wait_exit() == 0
    said = re.findall(rb"debug: incoming: the vCPUs started (\d+) us after the state began to arrive",
                      h.stderr)
    assert len(said) == 1, h.stderr
    assert 0 < int(said[0]) < took_us, (said, took_us)
    # the source says nothing of the kind
    assert b"incoming:" not in g.stderr
    check_continued(g, h, at_start)


def manual_protect_offered():
    """KVM_CHECK_EXTENSION(KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2) on /dev/kvm."""
    with open("/dev/kvm", "rb") as f:
        return fcntl.ioctl(f, 0xAE03, 168) & 1 == 1


@pytest.mark.parametrize("mode", ["auto", "get"])
def test_dirty_log_mode_said_and_both_move_the_guest_intact(kvm, vms, tmp, mode):
    """kvmm -vv says how it takes KVM's dirty log: manual protect (each
    chunk protected again by KVM_CLEAR_DIRTY_LOG right before it is sent)
    wherever KVM offers it, as this host's does, or the old
    KVM_GET_DIRTY_LOG that protects all it reports (KVMM_DIRTY_LOG=get,
    the benchmark's comparison).  Either way no page the guest rewrites
    during the copy is missed: its checks of its own memory hold on the
    destination."""
    disk = disk_image(tmp)
    sock = os.path.join(tmp, "src.sock")
    env = dict(os.environ)
    if mode == "get":
        env["KVMM_DIRTY_LOG"] = "get"
    g = Guest(kvmm_argv(CMDLINE, cpus=2, extra=["-vv", "--api-socket", sock,
                                                "--disk", f"path={disk}"]), env=env)
    vms.append(g)
    g.wait_for(r"KVMMTEST live n=3 ")
    api = Api(sock)
    port = free_port()
    uri = f"tcp:127.0.0.1:{port}"
    h, hsock = destination(vms, tmp, uri, disk)
    wait_listening(port, h)
    at_start = records(g.lines)[-1][0]
    # Slowly first: several rounds while the guest rewrites its pages.
    migrate(api, {"uri": uri, "bandwidth-mibps": 16})
    g.wait_for(r"KVMMTEST live n=%d " % (at_start + 3))
    assert api.call("migrate-set-params", {"bandwidth-mibps": 0})["return"] == {}
    info = wait_status(api, "completed")
    assert info["iteration"] >= 1, info
    n = records(g.lines)[-1][0]
    h.wait_for(r"KVMMTEST live n=%d " % (n + 6))
    assert api.call("quit")["return"] == {}
    assert g.wait_exit() == 0
    said = re.findall(rb"debug: KVM dirty log: ([^\n]*)", g.stderr)
    assert len(said) == 1, g.stderr
    if mode == "get":
        assert said[0].startswith(b"KVM_GET_DIRTY_LOG protects (KVMM_DIRTY_LOG=get)"), said
    elif manual_protect_offered():
        assert said[0].startswith(b"manual protect, KVM_CLEAR_DIRTY_LOG"), said
    else:
        assert said[0].startswith(b"KVM_GET_DIRTY_LOG protects (no "), said
    check_continued(g, h, at_start)


def test_hugepage_backed_guest_moves_intact(kvm, vms, tmp):
    """Guest RAM on 2 MiB hugetlb pages: KVM logs and protects it 4 KiB at a
    time all the same (manual protect where offered), so the guest's
    rewritten pages all arrive."""
    disk = disk_image(tmp)
    sock = os.path.join(tmp, "src.sock")
    with reserved_2m_pages(80):
        g = start(vms, kvmm_argv(CMDLINE, cpus=2, memory="64M",
                                 extra=["-vv", "--hugepages", "2M", "--api-socket", sock,
                                        "--disk", f"path={disk}"]))
        g.wait_for(r"KVMMTEST live n=3 ")
        api = Api(sock)
        port = free_port()
        uri = f"tcp:127.0.0.1:{port}"
        h, hsock = destination(vms, tmp, uri, disk)
        wait_listening(port, h)
        at_start = records(g.lines)[-1][0]
        migrate(api, {"uri": uri, "bandwidth-mibps": 16})
        g.wait_for(r"KVMMTEST live n=%d " % (at_start + 3))
        assert api.call("migrate-set-params", {"bandwidth-mibps": 0})["return"] == {}
        info = wait_status(api, "completed")
        assert info["iteration"] >= 1, info
        n = records(g.lines)[-1][0]
        h.wait_for(r"KVMMTEST live n=%d " % (n + 6))
        assert api.call("quit")["return"] == {}
        assert g.wait_exit() == 0
        if manual_protect_offered():
            assert b"debug: KVM dirty log: manual protect" in g.stderr, g.stderr
        check_continued(g, h, at_start)
        assert Api(hsock).call("quit")["return"] == {}
        assert h.wait_exit() == 0


def test_live_migration_over_inherited_descriptors(kvm, vms, tmp):
    """migrate's fdname on the source, --incoming fd:N on the destination:
    the two ends of one socketpair, as a daemon hands them over."""
    disk = disk_image(tmp)
    g, api = source(vms, tmp, disk, cpus=1)
    a, b = socket.socketpair()
    copy = os.path.join(tmp, "dst-disk.img")
    shutil.copy(disk, copy)
    h = Guest([KVMM, "--incoming", f"fd:{b.fileno()}", "--disk", f"path={copy}",
               "--api-socket", os.path.join(tmp, "dst.sock")], pass_fds=(b.fileno(),))
    vms.append(h)
    b.close()
    assert api.call("getfd", {"fdname": "mig"}, fds=[a.fileno()])["return"] == {}
    a.close()
    at_start = records(g.lines)[-1][0]
    migrate(api, {"fdname": "mig", "max-downtime-ms": 100})
    ev = api.wait_event("migration-status", timeout=120)
    assert ev["data"]["status"] == "completed", (ev, h.stderr)
    h.wait_for(r"KVMMTEST live n=%d " % (records(g.lines)[-1][0] + 4))
    assert api.call("quit")["return"] == {}
    assert g.wait_exit() == 0
    check_continued(g, h, at_start - 1)


def test_cancel_mid_copy_keeps_the_source_running(kvm, vms, tmp):
    disk = disk_image(tmp)
    g, api = source(vms, tmp, disk, cpus=1)
    where = os.path.join(tmp, "mig.sock")
    h, _ = destination(vms, tmp, "unix:" + where, disk)
    wait_listening(where, h)
    migrate(api, {"uri": "unix:" + where, "bandwidth-mibps": 2})
    n = records(g.lines)[-1][0]
    g.wait_for(r"KVMMTEST live n=%d " % (n + 2))
    assert api.call("query-migrate")["return"]["status"] == "active"
    assert api.call("migrate-cancel")["return"] == {}
    info = wait_status(api, "cancelled")
    assert "error" not in info
    # The destination saw the connection drop mid-stream: one line, 1.
    assert h.wait_exit() == 1
    err = h.stderr.decode().strip().splitlines()
    assert len(err) == 1 and "truncated stream" in err[0], err
    assert not records(h.lines)
    # The source never paused: it runs on, and can migrate again.
    assert api.call("query-status")["return"]["state"] == "running"
    n = records(g.lines)[-1][0]
    g.wait_for(r"KVMMTEST live n=%d " % (n + 3))
    assert all(r[3] == "ok" for r in records(g.lines))
    assert api.call("migrate-cancel")["error"]["code"] == "InvalidState"
    # Again, to its end: the dirty log the cancel turned off starts
    # afresh, and no page the guest wrote meanwhile is missed.
    again = os.path.join(tmp, "again")
    os.mkdir(again)
    where = os.path.join(again, "mig.sock")
    h, hsock = destination(vms, again, "unix:" + where, disk)
    wait_listening(where, h)
    at_start = records(g.lines)[-1][0]
    # Slowly until the guest has ticked during the copy (a full-speed copy
    # of an idle guest can end within one tick), then at full speed.
    migrate(api, {"uri": "unix:" + where, "bandwidth-mibps": 8})
    g.wait_for(r"KVMMTEST live n=%d " % (at_start + 1))
    assert api.call("migrate-set-params", {"bandwidth-mibps": 0})["return"] == {}
    wait_status(api, "completed")
    n = records(g.lines)[-1][0]
    h.wait_for(r"KVMMTEST live n=%d " % (n + 3))
    assert api.call("quit")["return"] == {}
    assert g.wait_exit() == 0
    check_continued(g, h, at_start)


def test_destination_killed_mid_copy_fails_the_migration_and_the_source_runs_on(kvm, vms, tmp):
    disk = disk_image(tmp)
    g, api = source(vms, tmp, disk, cpus=1)
    port = free_port()
    h, _ = destination(vms, tmp, f"tcp:127.0.0.1:{port}", disk)
    wait_listening(port, h)
    migrate(api, {"uri": f"tcp:127.0.0.1:{port}", "bandwidth-mibps": 2})
    n = records(g.lines)[-1][0]
    g.wait_for(r"KVMMTEST live n=%d " % (n + 2))
    h.kill()
    info = wait_status(api, "failed")
    assert re.search(r"cannot send guest memory: (Broken pipe|Connection reset)", info["error"]), info
    assert api.call("query-status")["return"]["state"] == "running"
    n = records(g.lines)[-1][0]
    g.wait_for(r"KVMMTEST live n=%d " % (n + 3))
    assert all(r[3] == "ok" for r in records(g.lines))


def test_migrate_refuses_bad_arguments_and_a_second_migration(kvm, vms, tmp):
    disk = disk_image(tmp)
    g, api = source(vms, tmp, disk, cpus=1)
    for args in ({}, {"uri": "ftp:x"}, {"uri": "unix:/x", "fdname": "a"},
                 {"uri": "unix:/x", "max-downtime-ms": 0}, {"uri": "unix:/x", "bandwidth-mibps": -1},
                 {"uri": "unix:/x", "speed": 1}, {"fdname": "nothing"}):
        r = api.call("migrate", args)
        assert r["error"]["code"] == "InvalidArgument", (args, r)
    r = api.call("migrate", {"uri": "unix:" + os.path.join(tmp, "nobody.sock")})
    assert r.get("return") == {}, r
    # The connection fails on the thread, after the answer: active first.
    assert api.wait_event("migration-status")["data"]["status"] == "active"
    info = wait_status(api, "failed")
    assert "cannot connect to unix:" in info["error"], info
    assert api.call("query-status")["return"]["state"] == "running"
    assert api.call("migrate-set-params", {})["error"]["code"] == "InvalidArgument"
    assert api.call("migrate-set-params", {"max-downtime-ms": 50})["return"] == {}
    assert api.call("query-migrate")["return"]["max-downtime-ms"] == 50
    assert api.call("migrate-set-params", {"auto-converge": 1})["error"]["code"] == "InvalidArgument"
    assert api.call("migrate-set-params", {"auto-converge": False})["return"] == {}
    q = api.call("query-migrate")["return"]
    assert q["auto-converge"] is False and q["cpu-throttle-percent"] == 0, q


def stream_of(vms, tmp):
    """A state stream a save wrote, and the disk it belongs to."""
    disk = disk_image(tmp)
    g, api = source(vms, tmp, disk, cpus=1)
    path = os.path.join(tmp, "vm.state")
    assert "return" in api.call("save", {"path": path}, timeout=60)
    assert api.call("quit")["return"] == {}
    assert g.wait_exit() == 0
    with open(path, "rb") as f:
        return f.read(), disk


def feed(vms, tmp, disk, blob):
    """Sends blob to kvmm --incoming unix:, then closes: (status, stderr)."""
    where = os.path.join(tmp, "in.sock")
    h, _ = destination(vms, tmp, "unix:" + where, disk)
    wait_listening(where, h)
    s = socket.socket(socket.AF_UNIX)
    s.connect(where)
    try:
        s.sendall(blob)
    except BrokenPipeError:
        pass
    s.close()
    rc = h.wait_exit()
    assert not os.path.exists(where)
    return rc, h.stderr.decode(), h


def test_a_corrupt_or_cut_stream_is_refused_before_the_guest_runs(kvm, vms, tmp):
    data, disk = stream_of(vms, tmp)
    # A byte flipped in the last vCPU section's payload, deep in the memory
    # pages, and the stream cut in half.
    at = data.index(b"\x03\x00\x00\x00\x00\x00\x00\x00", 16) + 24 + 100
    for blob, why in ((data[:at] + bytes([data[at] ^ 1]) + data[at + 1:], "checksum mismatch"),
                      (data[:-8192] + bytes([data[-8192] ^ 0x40]) + data[-8191:], "checksum mismatch|corrupt"),
                      (data[:len(data) // 2], "truncated stream")):
        rc, err, h = feed(vms, tmp, disk, blob)
        lines = err.strip().splitlines()
        assert rc == 1 and len(lines) == 1 and re.search(why, lines[0]), (rc, err)
        assert not records(h.lines), "the guest ran"
    # The whole stream restores: the refusals were the damage.
    rc_ok = feed_ok(vms, tmp, disk, data)
    assert rc_ok


def feed_ok(vms, tmp, disk, blob):
    where = os.path.join(tmp, "ok.sock")
    h, _ = destination(vms, tmp, "unix:" + where, disk)
    wait_listening(where, h)
    s = socket.socket(socket.AF_UNIX)
    s.connect(where)
    s.sendall(blob)
    s.close()
    h.wait_for(r"KVMMTEST live n=\d+ ")
    return True


def thread_status(pid, name):
    """/proc status of pid's thread called name, or None."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                st = dict(l.rstrip("\n").split(":\t", 1) for l in f if ":\t" in l)
        except FileNotFoundError:
            continue
        if st["Name"] == name:
            return st
    return None


def test_sandboxed_source_and_destination_migrate_by_descriptor(kvm, vms, tmp):
    """Both ends --sandbox, the connection passed as a descriptor: a cancel
    first (shutdown wakes the copy), then a migration slowed and throttled
    (the copy's nanosleep, the vCPUs' sleep), the copy thread under its own
    list; the guest goes on on the destination, its memory right."""
    disk = disk_image(tmp)
    sock = os.path.join(tmp, "src.sock")
    g = start(vms, kvmm_argv(CMDLINE.replace("touch=16", "touch=4"), cpus=1,
                             extra=["--api-socket", sock, "--disk", f"path={disk}",
                                    "--sandbox"]))
    g.wait_for(r"KVMMTEST live n=3 ")
    api = Api(sock)
    # Cancelled mid-copy: nobody reads the other end.
    x, y = socket.socketpair()
    assert api.call("getfd", {"fdname": "void"}, fds=[x.fileno()])["return"] == {}
    x.close()
    migrate(api, {"fdname": "void", "bandwidth-mibps": 2})
    n = records(g.lines)[-1][0]
    g.wait_for(r"KVMMTEST live n=%d " % (n + 2))
    assert api.call("migrate-cancel")["return"] == {}
    assert "error" not in wait_status(api, "cancelled")
    y.close()
    assert api.call("query-status")["return"]["state"] == "running"

    a, b = socket.socketpair()
    copy = os.path.join(tmp, "dst-disk.img")
    shutil.copy(disk, copy)
    h = Guest([KVMM, "--incoming", f"fd:{b.fileno()}", "--disk", f"path={copy}",
               "--api-socket", os.path.join(tmp, "dst.sock"), "--sandbox"],
              pass_fds=(b.fileno(),))
    vms.append(h)
    b.close()
    assert api.call("getfd", {"fdname": "mig"}, fds=[a.fileno()])["return"] == {}
    a.close()
    at_start = records(g.lines)[-1][0]
    migrate(api, {"fdname": "mig", "bandwidth-mibps": 8, "max-downtime-ms": 100})
    deadline = time.monotonic() + 120
    while True:
        q = api.call("query-migrate")["return"]
        assert q["status"] == "active", (q, g.stderr)
        if q["cpu-throttle-percent"] >= 30:
            break
        assert time.monotonic() < deadline, q
        time.sleep(0.05)
    # The copy thread adds its list to the main thread's it inherits.
    st = thread_status(g.proc.pid, "migration")
    assert st and st["Seccomp"] == "2" and st["Seccomp_filters"] == "2", st
    assert api.call("migrate-set-params", {"bandwidth-mibps": 0})["return"] == {}
    info = wait_status(api, "completed")
    assert info["cpu-throttle-percent"] == 0, info
    assert api.call("query-status")["return"]["state"] == "paused"
    n = records(g.lines)[-1][0]
    h.wait_for(r"KVMMTEST live n=%d " % (n + 4))
    assert api.call("quit")["return"] == {}
    assert g.wait_exit() == 0
    check_continued(g, h, at_start)
    # The destination confined itself once the stream was in.
    with open(f"/proc/{h.proc.pid}/status") as f:
        st = dict(l.rstrip("\n").split(":\t", 1) for l in f if ":\t" in l)
    assert st["Seccomp"] == "2" and st["NoNewPrivs"] == "1", st


def test_incoming_paused_waits_for_resume_and_a_misfit_destination_refuses(kvm, vms, tmp):
    disk = disk_image(tmp)
    g, api = source(vms, tmp, disk, cpus=2)
    # A destination that does not fit the stream: refused, the source
    # runs on with the migration failed.
    where = os.path.join(tmp, "mig.sock")
    h, _ = destination(vms, tmp, "unix:" + where, disk, extra=["--cpus", "1"])
    wait_listening(where, h)
    migrate(api, {"uri": "unix:" + where})
    wait_status(api, "failed")
    assert h.wait_exit() == 1
    err = h.stderr.decode().strip().splitlines()
    assert len(err) == 1 and "2 vCPUs, not 1" in err[0], err
    assert api.call("query-status")["return"]["state"] == "running"
    # --paused: the guest arrives and waits for resume.
    h, hsock = destination(vms, tmp, "unix:" + where, disk, extra=["--paused"])
    wait_listening(where, h)
    migrate(api, {"uri": "unix:" + where})
    wait_status(api, "completed")
    hapi = Api(hsock)
    assert hapi.call("query-status")["return"]["state"] == "paused"
    assert not records(h.lines)
    assert hapi.call("resume")["return"] == {}
    n = records(g.lines)[-1][0]
    h.wait_for(r"KVMMTEST live n=%d " % (n + 3))
    assert all(r[3] == "ok" for r in records(h.lines))


def test_auto_converge_throttles_a_guest_that_outruns_the_link(kvm, vms, tmp):
    """The guest rewrites 4 MiB every 20 ms, the link takes 8 MiB/s: the
    rounds never shrink, so the vCPUs are throttled, the throttle lifted
    once it is over; the guest's memory still right on the destination."""
    disk = disk_image(tmp)
    sock = os.path.join(tmp, "src.sock")
    g = start(vms, kvmm_argv(CMDLINE.replace("touch=16", "touch=4"), cpus=1,
                             extra=["--api-socket", sock, "--disk", f"path={disk}"]))
    g.wait_for(r"KVMMTEST live n=3 ")
    api = Api(sock)
    where = os.path.join(tmp, "mig.sock")
    h, hsock = destination(vms, tmp, "unix:" + where, disk)
    wait_listening(where, h)
    at_start = records(g.lines)[-1][0]
    migrate(api, {"uri": "unix:" + where, "bandwidth-mibps": 8, "max-downtime-ms": 100})
    deadline = time.monotonic() + 120
    while True:
        q = api.call("query-migrate")["return"]
        validator(SCHEMA, "migrate-info").validate(q)
        assert q["status"] == "active", q
        if q["cpu-throttle-percent"] >= 30:
            break
        assert time.monotonic() < deadline, q
        time.sleep(0.05)
    assert q["auto-converge"] is True and q["iteration"] >= 4, q
    assert api.call("migrate-set-params", {"bandwidth-mibps": 0})["return"] == {}
    info = wait_status(api, "completed")
    assert info["cpu-throttle-percent"] == 0, info
    n = records(g.lines)[-1][0]
    h.wait_for(r"KVMMTEST live n=%d " % (n + 4))
    assert api.call("quit")["return"] == {}
    assert g.wait_exit() == 0
    check_continued(g, h, at_start)


def test_a_live_stream_written_to_a_file_restores(kvm, vms, tmp):
    """migrate to a file descriptor: the rounds' PAGES sections, then the
    state; kvmm --restore reads the rounds and maps the last pages."""
    disk = disk_image(tmp)
    g, api = source(vms, tmp, disk, cpus=1)
    path = os.path.join(tmp, "live.state")
    with open(path, "wb") as f:
        assert api.call("getfd", {"fdname": "f"}, fds=[f.fileno()])["return"] == {}
    migrate(api, {"fdname": "f"})
    info = wait_status(api, "completed")
    with open(path, "rb") as f:
        data = f.read()
    assert len(data) == info["transferred-bytes"]
    assert data[8:12] == b"\x02\x00\x00\x00"
    assert api.call("quit")["return"] == {}
    assert g.wait_exit() == 0
    n = records(g.lines)[-1][0]
    copy = os.path.join(tmp, "r-disk.img")
    shutil.copy(disk, copy)
    h = start(vms, [KVMM, "--restore", path, "--api-socket", os.path.join(tmp, "r.sock"),
                    "--disk", f"path={copy}"])
    h.wait_for(r"KVMMTEST live n=%d " % (n + 4))
    check_continued(g, h, n - 1)
