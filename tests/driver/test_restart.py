"""Guests outlive virtkvmmd: kill -9 the daemon while domains run, start it
again on the same --root, and the domains are still running with their
ids and states, and shutdown, destroy, suspend/resume and events work on
them.  A kvmm that died while no daemon watched is reported shut off
(crashed) and its files are removed."""
import glob
import json
import os
import queue
import re
import signal
import socket
import subprocess
import threading

import libvirt
import pytest

from drvtest import event_loop, virsh
from test_lifecycle import assert_nothing_left, guest_xml, serial, state_dir, wait_for

L = libvirt
TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCHEMA = os.path.join(TOP, "schemas", "domstatus.rng")


def crash_daemon(d):
    os.kill(d.proc.pid, signal.SIGKILL)
    d.proc.wait()


def status_files(d):
    return sorted(glob.glob(os.path.join(state_dir(d), "*.xml")))


def test_running_guests_survive_a_daemon_kill(start_daemon, kvm):
    d1 = start_daemon()
    c = libvirt.open(d1.uri())
    a = c.defineXML(guest_xml(d1.root, "a"))
    b = c.defineXML(guest_xml(d1.root, "b"))
    a.create()
    b.create()
    b.suspend()
    wait_for(lambda: "power-button armed" in serial(d1.root, "a"), "guest a to arm its button")
    pids = sorted(d1.guests())
    assert len(pids) == 2
    files = status_files(d1)
    assert len(files) == 2
    r = subprocess.run(["xmllint", "--noout", "--relaxng", SCHEMA] + files,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    c.close()

    crash_daemon(d1)
    assert sorted(d1.guests()) == pids                  # the guests did not notice
    d2 = start_daemon(root=d1.root)
    assert "adopted" in d2.output()
    r = virsh(d2.uri(), "list")
    assert r.returncode == 0, r.stderr
    assert " 1    a      running" in r.stdout and " 2    b      paused" in r.stdout, r.stdout

    event_loop()
    c = libvirt.open(d2.uri())
    q = queue.Queue()
    c.domainEventRegisterAny(None, L.VIR_DOMAIN_EVENT_ID_LIFECYCLE,
                             lambda conn, dom, ev, det, _: q.put((dom.name(), ev, det)), None)
    a, b = c.lookupByName("a"), c.lookupByName("b")
    assert a.ID() == 1 and b.ID() == 2
    assert b.state() == [L.VIR_DOMAIN_PAUSED, L.VIR_DOMAIN_PAUSED_USER]
    assert a.info()[4] > 0                               # CPU time of the adopted kvmm

    b.resume()
    assert q.get(timeout=10) == ("b", L.VIR_DOMAIN_EVENT_RESUMED, L.VIR_DOMAIN_EVENT_RESUMED_UNPAUSED)
    # shutdown: the guest powers off; the adopted kvmm is not our child,
    # its exit status comes from its last event, so the reason is right
    a.shutdown()
    assert q.get(timeout=30) == ("a", L.VIR_DOMAIN_EVENT_STOPPED, L.VIR_DOMAIN_EVENT_STOPPED_SHUTDOWN)
    assert a.state() == [L.VIR_DOMAIN_SHUTOFF, L.VIR_DOMAIN_SHUTOFF_SHUTDOWN]
    b.destroy()
    assert q.get(timeout=10) == ("b", L.VIR_DOMAIN_EVENT_STOPPED, L.VIR_DOMAIN_EVENT_STOPPED_DESTROYED)
    assert_nothing_left(d2)
    # ids stay unique across the restart
    a.create()
    assert a.ID() == 3
    a.destroy()
    c.close()


def died_while_no_daemon(start_daemon, name):
    """A daemon that ran domain NAME, killed; then NAME's kvmm killed too.
    The daemon and the pid kvmm had."""
    d1 = start_daemon()
    c = libvirt.open(d1.uri())
    c.defineXML(guest_xml(d1.root, name)).create()
    c.close()
    [pid] = d1.guests()
    crash_daemon(d1)
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not d1.guests(), "kvmm to die")
    return d1, pid


def test_guest_that_died_meanwhile_is_shut_off(start_daemon, kvm):
    d1, pid = died_while_no_daemon(start_daemon, "gone")
    d2 = start_daemon(root=d1.root)
    assert "its kvmm (pid %d) is gone" % pid in d2.output()
    r = virsh(d2.uri(), "domstate", "--reason", "gone")
    assert r.stdout.strip() == "shut off (crashed)", r.stdout + r.stderr
    assert_nothing_left(d2)


def test_adopted_kvmm_killed_is_noticed(start_daemon, kvm):
    d1 = start_daemon()
    c = libvirt.open(d1.uri())
    c.defineXML(guest_xml(d1.root, "victim")).create()
    c.close()
    crash_daemon(d1)
    d2 = start_daemon(root=d1.root)
    [pid] = d2.guests()
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: virsh(d2.uri(), "domstate", "victim").stdout.strip() == "shut off",
             "the domain to stop")
    r = virsh(d2.uri(), "domstate", "--reason", "victim")
    assert r.stdout.strip() == "shut off (crashed)"
    assert_nothing_left(d2)


def test_bad_status_file_is_skipped(start_daemon):
    d1 = start_daemon()
    crash_daemon(d1)
    os.makedirs(state_dir(d1), exist_ok=True)
    bad = os.path.join(state_dir(d1), "0b3c4d5e-6f70-4182-93a4-b5c6d7e8f901.xml")
    with open(bad, "w") as f:
        f.write("<domstatus state='running'")
    d2 = start_daemon(root=d1.root)
    assert f"ignoring status file {bad}: not well-formed XML" in d2.output()
    assert virsh(d2.uri(), "list", "--all").returncode == 0
    assert os.path.exists(bad)                           # reported, never destroyed


def test_autostart_once_per_boot(start_daemon, kvm):
    """Domains marked autostart start with the daemon -- once per host
    boot, as libvirt does (a marker in the runtime directory): a restarted
    daemon does not start again what was shut down meanwhile."""
    d1 = start_daemon()
    c = libvirt.open(d1.uri())
    auto = c.defineXML(guest_xml(d1.root, "auto"))
    auto.setAutostart(1)
    c.defineXML(guest_xml(d1.root, "manual"))
    c.close()
    d1.stop()
    os.remove(os.path.join(state_dir(d1), "autostarted"))   # as a host reboot does
    d2 = start_daemon(root=d1.root)
    wait_for(lambda: virsh(d2.uri(), "domstate", "auto").stdout.strip() == "running",
             "autostart")
    assert virsh(d2.uri(), "domstate", "manual").stdout.strip() == "shut off"
    assert "domain 'auto' autostarted" in d2.output()
    assert virsh(d2.uri(), "destroy", "auto").returncode == 0
    d2.stop()
    d3 = start_daemon(root=d1.root)                      # same boot: not again
    assert virsh(d3.uri(), "domstate", "auto").stdout.strip() == "shut off"


def test_transient_domain_survives_a_daemon_kill(start_daemon, kvm):
    d1 = start_daemon()
    c = libvirt.open(d1.uri())
    c.createXML(guest_xml(d1.root, "temp"), 0)
    c.close()
    crash_daemon(d1)
    d2 = start_daemon(root=d1.root)
    c = libvirt.open(d2.uri())
    t = c.lookupByName("temp")                           # from its status file alone
    assert t.isActive() and not t.isPersistent() and t.ID() == 1
    t.destroy()
    with pytest.raises(libvirt.libvirtError):
        c.lookupByName("temp")
    assert_nothing_left(d2)
    c.close()


def test_guest_undefined_as_the_daemon_died_runs_on_transient(start_daemon, kvm):
    """undefine of a running domain removes its definition file, then marks
    its status file transient: a daemon killed in between must not lose the
    guest.  The next daemon adopts it from its status file, transient, as
    the undefine would have left it, and destroy ends it."""
    d1 = start_daemon()
    c = libvirt.open(d1.uri())
    dom = c.defineXML(guest_xml(d1.root, "gone"))
    dom.create()
    pid = d1.guests()
    assert len(pid) == 1
    c.close()
    crash_daemon(d1)
    # what undefine does first, the daemon killed before the rest
    os.unlink(os.path.join(d1.root, "etc", "libvirt", "kvmm", "gone.xml"))
    d2 = start_daemon(root=d1.root)
    c = libvirt.open(d2.uri())
    t = c.lookupByName("gone")
    assert t.isActive() and not t.isPersistent() and t.ID() == 1
    assert d2.guests() == pid
    assert "no such domain defined" not in d2.output()
    t.destroy()
    with pytest.raises(libvirt.libvirtError):
        c.lookupByName("gone")
    assert_nothing_left(d2)
    c.close()


def fake_kvmm(path):
    """Something answering like kvmm on the UNIX socket PATH: the greeting,
    then 'running' to every request.  Returns the listening socket."""
    if os.path.exists(path):
        os.unlink(path)
    ls = socket.socket(socket.AF_UNIX)
    ls.bind(path)
    ls.listen(8)

    def serve(c):
        with c, c.makefile("rw") as f:
            f.write('{"greeting":{"name":"kvmm","version":"0.1.0","api":1,"vm":"x"}}\n')
            f.flush()
            for line in f:
                req = json.loads(line)
                f.write(json.dumps({"id": req.get("id"), "return": {"state": "running"}}) + "\n")
                f.flush()

    def accept():
        while True:
            try:
                c, _ = ls.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(c,), daemon=True).start()
    threading.Thread(target=accept, daemon=True).start()
    return ls


def test_recycled_pid_is_not_adopted(start_daemon, kvm):
    """A status file whose kvmm died while no daemon watched, its pid now
    another process's -- one that even answers on the control socket: the
    daemon must neither adopt that process nor signal it."""
    d1, _ = died_while_no_daemon(start_daemon, "reused")
    [path] = status_files(d1)
    with open(path) as f:
        text = f.read()
    monitor = re.search(r"<monitor path='([^']*)'", text).group(1)
    other = subprocess.Popen(["sleep", "600"])
    ls = fake_kvmm(monitor)
    try:
        with open(path, "w") as f:
            f.write(re.sub(r" pid='\d+'", f" pid='{other.pid}'", text, count=1))
        d2 = start_daemon(root=d1.root)
        assert "its kvmm (pid %d) is gone" % other.pid in d2.output()
        r = virsh(d2.uri(), "domstate", "--reason", "reused")
        assert r.stdout.strip() == "shut off (crashed)", r.stdout + r.stderr
        r = virsh(d2.uri(), "destroy", "reused")
        assert r.returncode != 0                         # nothing of ours runs
        assert not os.path.exists(path)
        d2.stop()
        assert other.poll() is None, "the daemon signalled a process not its own"
    finally:
        ls.close()
        other.kill()
        other.wait()


def status_state(d, dom):
    """(state, reason) from DOM's status file, None when it has none."""
    try:
        with open(os.path.join(state_dir(d), dom.UUIDString() + ".xml")) as f:
            text = f.read()
    except FileNotFoundError:
        return None
    m = re.search(r"<domstatus state='(\w+)' reason='(\d+)'", text)
    return ({"running": L.VIR_DOMAIN_RUNNING, "paused": L.VIR_DOMAIN_PAUSED}[m.group(1)],
            int(m.group(2)))


# What each lifecycle event leaves: the state and reason libvirt shows.
AFTER = {
    (L.VIR_DOMAIN_EVENT_STARTED, L.VIR_DOMAIN_EVENT_STARTED_BOOTED):
        (L.VIR_DOMAIN_RUNNING, L.VIR_DOMAIN_RUNNING_BOOTED),
    (L.VIR_DOMAIN_EVENT_SUSPENDED, L.VIR_DOMAIN_EVENT_SUSPENDED_PAUSED):
        (L.VIR_DOMAIN_PAUSED, L.VIR_DOMAIN_PAUSED_USER),
    (L.VIR_DOMAIN_EVENT_RESUMED, L.VIR_DOMAIN_EVENT_RESUMED_UNPAUSED):
        (L.VIR_DOMAIN_RUNNING, L.VIR_DOMAIN_RUNNING_UNPAUSED),
    (L.VIR_DOMAIN_EVENT_STOPPED, L.VIR_DOMAIN_EVENT_STOPPED_SHUTDOWN):
        (L.VIR_DOMAIN_SHUTOFF, L.VIR_DOMAIN_SHUTOFF_SHUTDOWN),
    (L.VIR_DOMAIN_EVENT_STOPPED, L.VIR_DOMAIN_EVENT_STOPPED_DESTROYED):
        (L.VIR_DOMAIN_SHUTOFF, L.VIR_DOMAIN_SHUTOFF_DESTROYED),
    (L.VIR_DOMAIN_EVENT_STOPPED, L.VIR_DOMAIN_EVENT_STOPPED_CRASHED):
        (L.VIR_DOMAIN_SHUTOFF, L.VIR_DOMAIN_SHUTOFF_CRASHED),
}


class Watch:
    """A connection to D whose lifecycle events of 'agree' land on a
    queue."""

    def __init__(self, d):
        event_loop()
        self.d = d
        self.conn = libvirt.open(d.uri())
        self.dom = self.conn.lookupByName("agree")
        self.q = queue.Queue()
        self.conn.domainEventRegisterAny(
            self.dom, L.VIR_DOMAIN_EVENT_ID_LIFECYCLE,
            lambda conn, dom, ev, det, _: self.q.put((ev, det)), None)

    def check(self, state):
        """The status file and virDomainGetState both say STATE."""
        assert self.dom.state() == list(state)
        on_disk = status_state(self.d, self.dom)
        if state[0] == L.VIR_DOMAIN_SHUTOFF:
            assert on_disk is None, on_disk
        else:
            assert on_disk == state

    def expect(self, event):
        """EVENT comes next, and what it says is what the daemon shows."""
        got = self.q.get(timeout=30)
        assert got == event, (got, event)
        self.check(AFTER[event])


def armed(d, n):
    return serial(d.root, "agree").count("power-button armed") >= n


def test_events_status_file_and_state_agree(start_daemon, kvm):
    """Through start, suspend, resume, reset, shutdown, destroy, a crash and a
    daemon restart, after each lifecycle event the status file and
    virDomainGetState say what the event said."""
    d1 = start_daemon()
    c = libvirt.open(d1.uri())
    c.defineXML(guest_xml(d1.root, "agree"))
    c.close()
    w = Watch(d1)
    w.dom.create()
    w.expect((L.VIR_DOMAIN_EVENT_STARTED, L.VIR_DOMAIN_EVENT_STARTED_BOOTED))
    w.dom.suspend()
    w.expect((L.VIR_DOMAIN_EVENT_SUSPENDED, L.VIR_DOMAIN_EVENT_SUSPENDED_PAUSED))
    w.dom.resume()
    w.expect((L.VIR_DOMAIN_EVENT_RESUMED, L.VIR_DOMAIN_EVENT_RESUMED_UNPAUSED))
    w.dom.suspend()
    w.expect((L.VIR_DOMAIN_EVENT_SUSPENDED, L.VIR_DOMAIN_EVENT_SUSPENDED_PAUSED))

    # a new daemon adopts it in the state the last event announced
    w.conn.close()
    crash_daemon(d1)
    d2 = start_daemon(root=d1.root)
    w = Watch(d2)
    w.check((L.VIR_DOMAIN_PAUSED, L.VIR_DOMAIN_PAUSED_USER))
    w.dom.resume()
    w.expect((L.VIR_DOMAIN_EVENT_RESUMED, L.VIR_DOMAIN_EVENT_RESUMED_UNPAUSED))
    # a reset changes no state (a reboot event, no lifecycle one)
    wait_for(lambda: armed(d2, 1), "the guest to arm its button")
    w.dom.reset()
    wait_for(lambda: armed(d2, 2), "the guest to boot again and arm its button")
    assert w.q.empty(), w.q.get_nowait()
    w.check((L.VIR_DOMAIN_RUNNING, L.VIR_DOMAIN_RUNNING_UNPAUSED))
    w.dom.shutdown()
    w.expect((L.VIR_DOMAIN_EVENT_STOPPED, L.VIR_DOMAIN_EVENT_STOPPED_SHUTDOWN))

    w.dom.create()
    w.expect((L.VIR_DOMAIN_EVENT_STARTED, L.VIR_DOMAIN_EVENT_STARTED_BOOTED))
    [pid] = d2.guests()
    os.kill(pid, signal.SIGKILL)
    w.expect((L.VIR_DOMAIN_EVENT_STOPPED, L.VIR_DOMAIN_EVENT_STOPPED_CRASHED))

    w.dom.create()
    w.expect((L.VIR_DOMAIN_EVENT_STARTED, L.VIR_DOMAIN_EVENT_STARTED_BOOTED))
    w.dom.destroy()
    w.expect((L.VIR_DOMAIN_EVENT_STOPPED, L.VIR_DOMAIN_EVENT_STOPPED_DESTROYED))
    assert_nothing_left(d2)
    w.conn.close()
