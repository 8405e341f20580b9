"""Post-copy live migration between two kvmm processes (docs/api.md
"migrate", docs/state-stream.md "Post-copy"): the source pauses and sends
the state, the destination runs the guest at once and pulls each page it
lacks on first touch (userfaultfd), the source pushing the rest.  The
guest is test_live_migration's: each tick rewrites its memory after
checking the last tick's values, so a page lost or stale on the way shows
as mem=bad on the destination."""
import os
import shutil
import socket
import time

from kvmmtest import Api, Guest, KVMM, kvmm_argv, start
from test_live_migration import (CMDLINE, SCHEMA, check_continued, destination, disk_image,
                                 migrate, records, thread_status, wait_listening)
from test_schemas import validator


def wait_event(api, status, timeout=120):
    ev = api.wait_event("migration-status", timeout=timeout)
    validator(SCHEMA, "event").validate(ev)
    assert ev["data"]["status"] == status, ev
    return ev


def query(api):
    q = api.call("query-migrate")
    validator(SCHEMA, "reply").validate(q)
    validator(SCHEMA, "migrate-info").validate(q["return"])
    return q["return"]


def wait_query(api, status, proc, timeout=120):
    """query-migrate until it says status (the destination's events may
    come before anyone could connect to it)."""
    deadline = time.monotonic() + timeout
    while True:
        q = query(api)
        if q["status"] == status:
            return q
        assert proc.poll() is None and time.monotonic() < deadline, q
        time.sleep(0.05)


def test_a_guest_outrunning_the_link_converges_by_postcopy(kvm, vms, tmp):
    """The guest rewrites 16 MiB every 20 ms, the link takes 8 MiB/s and
    no throttle: pre-copy never converges.  With postcopy the first round
    is followed by the switch; the destination's guest touches pages it
    lacks at once and asks for them; its memory checks stay right."""
    disk = disk_image(tmp)
    sock = os.path.join(tmp, "src.sock")
    g = start(vms, kvmm_argv(CMDLINE, cpus=2,
                             extra=["--api-socket", sock, "--disk", f"path={disk}"]))
    g.wait_for(r"KVMMTEST live n=3 ")
    api = Api(sock)
    where = os.path.join(tmp, "mig.sock")
    h, hsock = destination(vms, tmp, "unix:" + where, disk)
    wait_listening(where, h)
    at_start = records(g.lines)[-1][0]
    migrate(api, {"uri": "unix:" + where, "bandwidth-mibps": 8, "auto-converge": False,
                  "postcopy": True})
    wait_event(api, "postcopy-active")
    # The source is paused from the switch on; the guest runs there.
    assert api.call("query-status")["return"]["state"] == "paused"
    hapi = Api(hsock)
    q = query(hapi)
    assert q["postcopy"] is True and q["status"] in ("postcopy-active", "completed"), q
    # Three whole records written there (the source's reader may not have
    # read its last lines yet, and the line the pause cut ends on h).
    h.wait_for(r"KVMMTEST live n=\d+ ", count=3)
    info = wait_event(api, "completed")
    info = query(api)
    assert info["status"] == "completed" and info["postcopy"] is True, info
    assert info["iteration"] == 1 and info["remaining-bytes"] == 0, info
    assert info["cpu-throttle-percent"] == 0, info
    # Pages the guest touched before the source pushed them: asked for.
    assert info["postcopy-requests"] > 0, info
    q = wait_query(hapi, "completed", h.proc)
    assert q["remaining-bytes"] == 0 and q["postcopy"] is True, q
    assert hapi.call("query-status")["return"]["state"] == "running"
    h.wait_for(r"KVMMTEST live n=%d " % (records(h.lines)[-1][0] + 3))
    assert api.call("quit")["return"] == {}
    assert g.wait_exit() == 0
    check_continued(g, h, at_start)


def test_migrate_postcopy_switches_a_running_precopy(kvm, vms, tmp):
    """No postcopy at the start: rounds that never converge, until
    migrate-postcopy switches at once; migrate-cancel is refused then, and
    migrate-postcopy with no migration says so."""
    disk = disk_image(tmp)
    sock = os.path.join(tmp, "src.sock")
    g = start(vms, kvmm_argv(CMDLINE, cpus=1,
                             extra=["--api-socket", sock, "--disk", f"path={disk}"]))
    g.wait_for(r"KVMMTEST live n=3 ")
    api = Api(sock)
    r = api.call("migrate-postcopy")
    assert r["error"]["code"] == "InvalidState" and "no migration" in r["error"]["message"], r
    where = os.path.join(tmp, "mig.sock")
    h, hsock = destination(vms, tmp, "unix:" + where, disk)
    wait_listening(where, h)
    at_start = records(g.lines)[-1][0]
    migrate(api, {"uri": "unix:" + where, "bandwidth-mibps": 4, "auto-converge": False})
    g.wait_for(r"KVMMTEST live n=%d " % (at_start + 3))
    assert query(api)["status"] == "active"
    assert api.call("migrate-postcopy")["return"] == {}
    wait_event(api, "postcopy-active")
    # The background push keeps to 4 MiB/s: post-copy lasts a while.
    r = api.call("migrate-cancel")
    assert r.get("error", {}).get("code") == "InvalidState" or query(api)["status"] == "completed", r
    assert api.call("migrate-set-params", {"bandwidth-mibps": 0})["return"] == {}
    wait_event(api, "completed")
    assert query(api)["postcopy"] is True
    hapi = Api(hsock)
    wait_query(hapi, "completed", h.proc)
    h.wait_for(r"KVMMTEST live n=%d " % (records(g.lines)[-1][0] + 3))
    assert api.call("quit")["return"] == {}
    assert g.wait_exit() == 0
    check_continued(g, h, at_start)


def test_sandboxed_ends_postcopy_by_descriptor(kvm, vms, tmp):
    """Both ends --sandbox (uid nobody, seccomp): the destination made its
    userfaultfd before it dropped its privileges, and its fault and
    receive threads run under their own lists."""
    disk = disk_image(tmp)
    sock = os.path.join(tmp, "src.sock")
    g = start(vms, kvmm_argv(CMDLINE, cpus=1,
                             extra=["--api-socket", sock, "--disk", f"path={disk}",
                                    "--sandbox"]))
    g.wait_for(r"KVMMTEST live n=3 ")
    api = Api(sock)
    a, b = socket.socketpair()
    copy = os.path.join(tmp, "dst-disk.img")
    shutil.copy(disk, copy)
    hsock = os.path.join(tmp, "dst.sock")
    h = Guest([KVMM, "--incoming", f"fd:{b.fileno()}", "--disk", f"path={copy}",
               "--api-socket", hsock, "--sandbox"], pass_fds=(b.fileno(),))
    vms.append(h)
    b.close()
    assert api.call("getfd", {"fdname": "mig"}, fds=[a.fileno()])["return"] == {}
    a.close()
    at_start = records(g.lines)[-1][0]
    migrate(api, {"fdname": "mig", "bandwidth-mibps": 4, "auto-converge": False,
                  "postcopy": True})
    wait_event(api, "postcopy-active")
    # Slow enough that the destination's threads are there to look at,
    # once it has started them.
    # Each thread names itself, then confines itself: wait for both to
    # be there and confined (a thread that never confines fails here).
    def confined(name):
        st = thread_status(h.proc.pid, name)
        return st if st and st["Seccomp"] == "2" else None
    deadline = time.monotonic() + 60
    while confined("postcopy-recv") is None or confined("postcopy-fault") is None:
        assert h.proc.poll() is None and time.monotonic() < deadline, \
            (thread_status(h.proc.pid, "postcopy-recv"),
             thread_status(h.proc.pid, "postcopy-fault"), h.stderr)
        time.sleep(0.01)
    st = thread_status(h.proc.pid, "postcopy-fault")
    assert st and st["Seccomp_filters"] == "2", st
    st = thread_status(h.proc.pid, "postcopy-recv")
    assert st and st["Seccomp_filters"] == "2", st
    assert st["Uid"].split()[0] != "0", st
    assert api.call("migrate-set-params", {"bandwidth-mibps": 0})["return"] == {}
    wait_event(api, "completed")
    hapi = Api(hsock)
    wait_query(hapi, "completed", h.proc)
    h.wait_for(r"KVMMTEST live n=%d " % (records(g.lines)[-1][0] + 3))
    assert api.call("quit")["return"] == {}
    assert g.wait_exit() == 0
    check_continued(g, h, at_start)


def test_a_link_broken_in_postcopy_loses_the_guest_on_both_sides(kvm, vms, tmp):
    """The source killed while the destination still lacks pages: the
    destination pauses the guest and reports the migration failed; it
    will not resume or migrate again.  The other way round, a destination
    killed: the source says the same of its paused guest."""
    disk = disk_image(tmp)
    for victim in ("source", "destination"):
        sock = os.path.join(tmp, f"src-{victim}.sock")
        g = start(vms, kvmm_argv(CMDLINE, cpus=1,
                                 extra=["--api-socket", sock, "--disk", f"path={disk}"]))
        g.wait_for(r"KVMMTEST live n=3 ")
        api = Api(sock)
        where = os.path.join(tmp, f"mig-{victim}.sock")
        hsock = os.path.join(tmp, f"dst-{victim}.sock")
        h, _ = destination(vms, tmp, "unix:" + where, disk, extra=["--api-socket", hsock])
        wait_listening(where, h)
        # 1 MiB/s: the pages the guest does not touch take minutes.
        migrate(api, {"uri": "unix:" + where, "bandwidth-mibps": 1, "auto-converge": False,
                      "postcopy": True})
        wait_event(api, "postcopy-active", timeout=300)
        hapi = Api(hsock)
        q = wait_query(hapi, "postcopy-active", h.proc)
        assert q["remaining-bytes"] > 0, q
        if victim == "source":
            g.proc.kill()
            g.wait_exit()
            q = wait_query(hapi, "failed", h.proc)
            assert "the guest is lost" in h.stderr.decode() or "source" in q["error"], q
            lost, other = hapi, h
        else:
            h.proc.kill()
            h.wait_exit()
            ev = wait_event(api, "failed")
            assert "the guest is lost" in ev["data"]["error"], ev
            lost, other = api, g
        deadline = time.monotonic() + 60
        while lost.call("query-status")["return"]["state"] != "paused":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        r = lost.call("resume")
        assert r["error"]["code"] == "InvalidState" and "post-copy" in r["error"]["message"], r
        r = lost.call("migrate", {"uri": "unix:" + os.path.join(tmp, "nowhere")})
        assert r["error"]["code"] == "MigrationFailed" and "post-copy" in r["error"]["message"], r
        assert lost.call("quit")["return"] == {}
        assert other.wait_exit() == 0
