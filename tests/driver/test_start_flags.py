"""Start flags through the real virsh and python3-libvirt: start --paused
(kvmm holds the vCPUs before the guest's first instruction; libvirt's
state, reason and events), AUTODESTROY (the domain goes with the
connection that started it, closed or killed), and the flags kvmm does
not support, refused by name."""
import os
import signal
import subprocess
import sys

import libvirt
import pytest

from drvtest import virsh
from kvmmtest import complete_lines
from test_lifecycle import (Events, assert_nothing_left, guest_xml, paused_long_enough, serial,
                            wait_for)

L = libvirt


@pytest.fixture
def conn(daemon):
    c = libvirt.open(daemon.uri())
    yield c
    c.close()


def test_start_paused_with_virsh(daemon, conn, kvm):
    d = daemon
    ev = Events(d.uri())
    path = os.path.join(d.root, "g1.xml")
    with open(path, "w") as f:
        f.write(guest_xml(d.root))
    assert virsh(d.uri(), "define", path).returncode == 0
    assert ev.next()[1] == L.VIR_DOMAIN_EVENT_DEFINED
    r = virsh(d.uri(), "start", "--paused", "g1")
    assert r.returncode == 0, r.stderr
    assert "Domain 'g1' started" in r.stdout
    # libvirt's QEMU driver: Started Booted, then Suspended Paused
    assert ev.next() == ("g1", L.VIR_DOMAIN_EVENT_STARTED, L.VIR_DOMAIN_EVENT_STARTED_BOOTED)
    assert ev.next() == ("g1", L.VIR_DOMAIN_EVENT_SUSPENDED, L.VIR_DOMAIN_EVENT_SUSPENDED_PAUSED)
    assert virsh(d.uri(), "domstate", "--reason", "g1").stdout.strip() == "paused (user)"
    assert conn.lookupByName("g1").state() == [L.VIR_DOMAIN_PAUSED, L.VIR_DOMAIN_PAUSED_USER]
    assert len(d.guests()) == 1
    # the guest's console (COM1, a file here) stays empty: nothing ran
    paused_long_enough(d, conn, ev)
    assert serial(d.root) == ""
    assert virsh(d.uri(), "suspend", "g1").returncode == 0      # paused already: nothing to do
    r = virsh(d.uri(), "resume", "g1")
    assert r.returncode == 0, r.stderr
    assert ev.next() == ("g1", L.VIR_DOMAIN_EVENT_RESUMED, L.VIR_DOMAIN_EVENT_RESUMED_UNPAUSED)
    assert virsh(d.uri(), "domstate", "--reason", "g1").stdout.strip() == "running (unpaused)"
    # the guest starts from its first instruction: its first line is the boot record
    first = wait_for(lambda: complete_lines(serial(d.root)), "the guest's first line")
    assert "KVMMTEST boot" in first[0], first[:3]
    wait_for(lambda: "KVMMTEST done" in serial(d.root), "the guest's checks")
    assert virsh(d.uri(), "destroy", "g1").returncode == 0
    assert ev.next() == ("g1", L.VIR_DOMAIN_EVENT_STOPPED, L.VIR_DOMAIN_EVENT_STOPPED_DESTROYED)
    assert_nothing_left(d)
    ev.conn.close()


def test_create_xml_paused(daemon, conn, kvm):
    d = daemon
    ev = Events(d.uri())
    dom = conn.createXML(guest_xml(d.root, "tp"), L.VIR_DOMAIN_START_PAUSED)
    assert ev.next() == ("tp", L.VIR_DOMAIN_EVENT_STARTED, L.VIR_DOMAIN_EVENT_STARTED_BOOTED)
    assert ev.next() == ("tp", L.VIR_DOMAIN_EVENT_SUSPENDED, L.VIR_DOMAIN_EVENT_SUSPENDED_PAUSED)
    assert dom.state() == [L.VIR_DOMAIN_PAUSED, L.VIR_DOMAIN_PAUSED_USER]
    paused_long_enough(d, conn, ev)
    assert serial(d.root, "tp") == ""
    dom.resume()
    wait_for(lambda: "KVMMTEST boot" in serial(d.root, "tp"), "the guest's first line")
    dom.destroy()
    assert_nothing_left(d)
    ev.conn.close()


def test_unsupported_start_flags_are_refused(daemon, conn, kvm):
    d = daemon
    dom = conn.defineXML(guest_xml(d.root))
    # FORCE_BOOT (discard a managed save image) is virDomainCreateWithFlags'
    # only (test_save.py); createXML refuses it, as libvirt.
    for flag in (L.VIR_DOMAIN_START_BYPASS_CACHE, L.VIR_DOMAIN_START_FORCE_BOOT,
                 L.VIR_DOMAIN_START_RESET_NVRAM):
        if flag != L.VIR_DOMAIN_START_FORCE_BOOT:
            with pytest.raises(libvirt.libvirtError) as e:
                dom.createWithFlags(flag)
            assert e.value.get_error_code() == L.VIR_ERR_INVALID_ARG
            assert f"unsupported flags (0x{flag:x})" in str(e.value)
        with pytest.raises(libvirt.libvirtError) as e:
            conn.createXML(guest_xml(d.root, "t"), flag)
        assert e.value.get_error_code() == L.VIR_ERR_INVALID_ARG
    assert not dom.isActive()
    assert [x.name() for x in conn.listAllDomains(0)] == ["g1"]
    assert_nothing_left(d)


# A client in a process of its own, so the test can kill it: starts the
# domain (defined, or created from XML) with FLAGS and waits.
CLIENT = r"""
import sys, time, libvirt
uri, name, flags, xml = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
c = libvirt.open(uri)
if xml:
    c.createXML(open(xml).read(), flags)
else:
    c.lookupByName(name).createWithFlags(flags)
print("started", flush=True)
time.sleep(600)
"""


def client(d, name, flags, xml=""):
    p = subprocess.Popen(["/usr/bin/python3", "-c", CLIENT, d.uri(), name, str(flags), xml],
                         stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "started"
    return p


def sockets(d):
    """The daemon's sockets.  A client's goes when the daemon drops it,
    after it decided on the client's autodestroy domains."""
    found = set()
    for fd in os.listdir(f"/proc/{d.proc.pid}/fd"):
        try:
            target = os.readlink(f"/proc/{d.proc.pid}/fd/{fd}")
        except FileNotFoundError:
            continue
        if target.startswith("socket:"):
            found.add(target)
    return found


def sockets_of_client(d, pid):
    """The daemon's sockets connected to process PID's (ss pairs the two
    ends of a UNIX connection by inode)."""
    peers = {t[len("socket:["):-1] for t in
             (os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd"))
             if t.startswith("socket:")}
    out = subprocess.run(["ss", "-xpn"], capture_output=True, text=True, check=True).stdout
    found = set()
    for line in out.splitlines():
        f = line.split()
        if len(f) >= 8 and f[4] == d.sock and f[7] in peers and f"pid={d.proc.pid}," in line:
            found.add(f"socket:[{f[5]}]")
    return found


def wait_dropped(d, theirs):
    assert theirs, "no socket of the client's in the daemon"
    wait_for(lambda: not sockets(d) & theirs, "the daemon to drop the client")


def kill(p):
    if p.poll() is None:
        p.kill()
    p.wait()


def test_autodestroy_when_the_connection_closes(daemon, conn, kvm):
    d = daemon
    ev = Events(d.uri())
    conn.defineXML(guest_xml(d.root))
    assert ev.next()[1] == L.VIR_DOMAIN_EVENT_DEFINED
    c = libvirt.open(d.uri())
    dom = c.lookupByName("g1")
    dom.createWithFlags(L.VIR_DOMAIN_START_AUTODESTROY)
    assert ev.next()[1] == L.VIR_DOMAIN_EVENT_STARTED
    wait_for(lambda: "KVMMTEST tick" in serial(d.root), "the guest running")
    pid = d.guests()
    assert len(pid) == 1
    # another connection closing changes nothing
    before = sockets(d)
    other = libvirt.open(d.uri())
    theirs = sockets(d) - before
    other.close()
    wait_dropped(d, theirs)
    assert conn.lookupByName("g1").isActive()
    del dom                                 # else close() keeps the connection open
    assert c.close() == 0
    assert ev.next() == ("g1", L.VIR_DOMAIN_EVENT_STOPPED, L.VIR_DOMAIN_EVENT_STOPPED_DESTROYED)
    g1 = conn.lookupByName("g1")
    assert g1.state() == [L.VIR_DOMAIN_SHUTOFF, L.VIR_DOMAIN_SHUTOFF_DESTROYED]
    assert_nothing_left(d)
    with pytest.raises(ProcessLookupError):
        os.kill(pid[0], 0)
    # started again without the flag, it outlives its connection
    before = sockets(d)
    c = libvirt.open(d.uri())
    theirs = sockets(d) - before
    c.lookupByName("g1").create()
    assert ev.next()[1] == L.VIR_DOMAIN_EVENT_STARTED
    c.close()
    wait_dropped(d, theirs)
    assert g1.isActive() and len(d.guests()) == 1
    # the destroy that stops it is ours: nothing stopped it before
    g1.destroy()
    assert ev.next() == ("g1", L.VIR_DOMAIN_EVENT_STOPPED, L.VIR_DOMAIN_EVENT_STOPPED_DESTROYED)
    ev.conn.close()


def test_autodestroy_when_the_client_dies(daemon, conn, kvm):
    d = daemon
    ev = Events(d.uri())
    conn.defineXML(guest_xml(d.root))
    assert ev.next()[1] == L.VIR_DOMAIN_EVENT_DEFINED
    p = client(d, "g1", L.VIR_DOMAIN_START_AUTODESTROY)
    try:
        assert ev.next()[1] == L.VIR_DOMAIN_EVENT_STARTED
        wait_for(lambda: "KVMMTEST tick" in serial(d.root), "the guest running")
        p.send_signal(signal.SIGKILL)
        assert ev.next() == ("g1", L.VIR_DOMAIN_EVENT_STOPPED, L.VIR_DOMAIN_EVENT_STOPPED_DESTROYED)
        assert conn.lookupByName("g1").state() == [L.VIR_DOMAIN_SHUTOFF, L.VIR_DOMAIN_SHUTOFF_DESTROYED]
        assert_nothing_left(d)
    finally:
        kill(p)

    # a transient domain (createXML) goes the same way, and is gone
    path = os.path.join(d.root, "t.xml")
    with open(path, "w") as f:
        f.write(guest_xml(d.root, "temp"))
    p = client(d, "temp", L.VIR_DOMAIN_START_AUTODESTROY | L.VIR_DOMAIN_START_PAUSED, path)
    try:
        assert ev.next() == ("temp", L.VIR_DOMAIN_EVENT_STARTED, L.VIR_DOMAIN_EVENT_STARTED_BOOTED)
        assert ev.next()[1] == L.VIR_DOMAIN_EVENT_SUSPENDED
        p.send_signal(signal.SIGKILL)
        assert ev.next() == ("temp", L.VIR_DOMAIN_EVENT_STOPPED, L.VIR_DOMAIN_EVENT_STOPPED_DESTROYED)
        with pytest.raises(libvirt.libvirtError) as e:
            conn.lookupByName("temp")
        assert e.value.get_error_code() == L.VIR_ERR_NO_DOMAIN
        assert_nothing_left(d)
    finally:
        kill(p)

    # without the flag, the domain survives its client's death
    p = client(d, "g1", 0)
    try:
        assert ev.next()[1] == L.VIR_DOMAIN_EVENT_STARTED
        theirs = sockets_of_client(d, p.pid)
        p.send_signal(signal.SIGKILL)
        p.wait()
        wait_dropped(d, theirs)
        assert conn.lookupByName("g1").isActive() and len(d.guests()) == 1
    finally:
        kill(p)
    conn.lookupByName("g1").destroy()
    # the destroy that stops it is ours: no event came before
    assert ev.next() == ("g1", L.VIR_DOMAIN_EVENT_STOPPED, L.VIR_DOMAIN_EVENT_STOPPED_DESTROYED)
    ev.conn.close()
