"""Guests outlive virtkvmmd: kill -9 the daemon while domains run, start it
again on the same --root, and the domains are still running with their
ids and states, and shutdown, destroy, suspend/resume and events work on
them.  A kvmm that died while no daemon watched is reported shut off
(crashed) and its files are removed."""
import glob
import os
import queue
import signal
import subprocess

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


def test_guest_that_died_meanwhile_is_shut_off(start_daemon, kvm):
    d1 = start_daemon()
    c = libvirt.open(d1.uri())
    c.defineXML(guest_xml(d1.root, "gone")).create()
    c.close()
    [pid] = d1.guests()
    crash_daemon(d1)
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not d1.guests(), "kvmm to die")
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
