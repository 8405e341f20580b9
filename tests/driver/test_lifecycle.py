"""Running domains through virtkvmmd: the real virsh and python3-libvirt
start the project's test guest in kvmm, pause, resume, reset, shut it down
and destroy it; the states, reasons and events are libvirt's; a failed
start and a kvmm that dies leave nothing behind."""
import os
import queue
import signal

import libvirt
import pytest

from drvtest import event_loop, virsh, wait_for  # noqa: F401 (other tests import wait_for from here)
from kvmmtest import GUEST

L = libvirt


def guest_xml(root, name="g1", action="wait", on_poweroff="destroy", on_crash="destroy",
              kernel=GUEST, extra_devices="", extra_cmdline=""):
    """The test guest with its serial port in a file under root."""
    return f"""<domain type='kvm'>
  <name>{name}</name>
  <memory unit='MiB'>128</memory>
  <vcpu>1</vcpu>
  <os><type>hvm</type><kernel>{kernel}</kernel>
    <cmdline>kvmmtest.action={action} kvmmtest.tick_ms=100{extra_cmdline}</cmdline></os>
  <on_poweroff>{on_poweroff}</on_poweroff>
  <on_crash>{on_crash}</on_crash>
  <devices>
    <serial type='file'><source path='{root}/{name}-serial.log'/><target port='0'/></serial>{extra_devices}
  </devices>
</domain>
"""


def serial(root, name="g1"):
    try:
        with open(os.path.join(root, f"{name}-serial.log")) as f:
            return f.read()
    except FileNotFoundError:
        return ""


def state_dir(d):
    return os.path.join(d.root, "run", "libvirt", "kvmm")


def assert_nothing_left(d):
    """No kvmm process, control socket or config file of the daemon."""
    assert d.guests() == [], "kvmm still running"
    left = os.listdir(state_dir(d)) if os.path.isdir(state_dir(d)) else []
    left = [f for f in left if f != "autostarted"]        # the once-per-boot marker
    assert left == [], left


class Events:
    def __init__(self, uri):
        event_loop()
        self.conn = libvirt.open(uri)
        self.q = queue.Queue()
        self.conn.domainEventRegisterAny(
            None, L.VIR_DOMAIN_EVENT_ID_LIFECYCLE,
            lambda c, dom, ev, detail, _: self.q.put((dom.name(), ev, detail)), None)

    def next(self, timeout=30):
        return self.q.get(timeout=timeout)


def paused_long_enough(d, conn, ev, name="ref", ticks=3):
    """The condition that shows a paused guest stayed paused: the same
    guest, started now and running, prints its boot line and TICKS ticks,
    in which time a running guest would have ticked as well.  The
    reference is destroyed and its events taken off ev."""
    ref = conn.createXML(guest_xml(d.root, name), 0)
    assert ev.next() == (name, L.VIR_DOMAIN_EVENT_STARTED, L.VIR_DOMAIN_EVENT_STARTED_BOOTED)
    wait_for(lambda: serial(d.root, name).count("KVMMTEST tick") >= ticks,
             "the reference guest's ticks")
    ref.destroy()
    assert ev.next() == (name, L.VIR_DOMAIN_EVENT_STOPPED, L.VIR_DOMAIN_EVENT_STOPPED_DESTROYED)


@pytest.fixture
def conn(daemon):
    c = libvirt.open(daemon.uri())
    yield c
    c.close()


def test_start_list_info_destroy_with_virsh(daemon, kvm):
    d = daemon
    path = os.path.join(d.root, "g1.xml")
    with open(path, "w") as f:
        f.write(guest_xml(d.root))
    assert virsh(d.uri(), "define", path).returncode == 0
    r = virsh(d.uri(), "start", "g1")
    assert r.returncode == 0, r.stderr
    assert "Domain 'g1' started" in r.stdout
    # The guest really runs: its serial port is the file the XML named.
    wait_for(lambda: "KVMMTEST done" in serial(d.root), "the guest's checks")
    assert "KVMMTEST fail" not in serial(d.root)

    r = virsh(d.uri(), "list")
    assert r.returncode == 0 and " 1    g1     running" in r.stdout, r.stdout
    assert virsh(d.uri(), "domid", "g1").stdout.strip() == "1"
    assert virsh(d.uri(), "domstate", "--reason", "g1").stdout.strip() == "running (booted)"
    info = virsh(d.uri(), "dominfo", "g1").stdout
    assert "State:          running" in info and "Id:             1" in info
    cpu = float(info.split("CPU time:")[1].split("s")[0])
    assert cpu > 0                                   # from /proc, not a placeholder
    live = virsh(d.uri(), "dumpxml", "g1").stdout
    assert "<domain type='kvm' id='1'>" in live
    assert "id=" not in virsh(d.uri(), "dumpxml", "--inactive", "g1").stdout.splitlines()[0]
    assert len(d.guests()) == 1

    r = virsh(d.uri(), "start", "g1")
    assert r.returncode != 0 and "already active" in r.stderr

    r = virsh(d.uri(), "destroy", "g1")
    assert r.returncode == 0, r.stderr
    assert virsh(d.uri(), "domstate", "--reason", "g1").stdout.strip() == "shut off (destroyed)"
    assert virsh(d.uri(), "domid", "g1").stdout.strip() == "-"
    assert_nothing_left(d)
    with open(os.path.join(d.root, "log", "libvirt", "kvmm", "g1.log")) as f:
        log = f.read()
    assert "starting up:" in log and '"kernel": "' in log and "destroy requested" in log
    assert "ended: exit status 4" in log                # kvmm's status for SIGTERM
    # and it starts again, with a new id
    assert virsh(d.uri(), "start", "g1").returncode == 0
    assert virsh(d.uri(), "domid", "g1").stdout.strip() == "2"
    assert virsh(d.uri(), "destroy", "g1").returncode == 0


def test_suspend_resume_reset_shutdown_and_their_events(daemon, conn, kvm):
    d = daemon
    ev = Events(d.uri())
    dom = conn.defineXML(guest_xml(d.root))
    assert ev.next() == ("g1", L.VIR_DOMAIN_EVENT_DEFINED, L.VIR_DOMAIN_EVENT_DEFINED_ADDED)
    dom.create()
    assert ev.next() == ("g1", L.VIR_DOMAIN_EVENT_STARTED, L.VIR_DOMAIN_EVENT_STARTED_BOOTED)
    assert dom.isActive() and dom.ID() == 1
    wait_for(lambda: "power-button armed" in serial(d.root), "the guest to arm its power button")

    dom.suspend()
    assert ev.next() == ("g1", L.VIR_DOMAIN_EVENT_SUSPENDED, L.VIR_DOMAIN_EVENT_SUSPENDED_PAUSED)
    assert dom.state() == [L.VIR_DOMAIN_PAUSED, L.VIR_DOMAIN_PAUSED_USER]
    # paused for real: the guest's tick counter stops
    ticks = serial(d.root).count("KVMMTEST tick")
    paused_long_enough(d, conn, ev)
    assert serial(d.root).count("KVMMTEST tick") <= ticks + 1
    dom.suspend()                                        # a no-op, as in libvirt
    dom.resume()
    assert ev.next() == ("g1", L.VIR_DOMAIN_EVENT_RESUMED, L.VIR_DOMAIN_EVENT_RESUMED_UNPAUSED)
    assert dom.state() == [L.VIR_DOMAIN_RUNNING, L.VIR_DOMAIN_RUNNING_UNPAUSED]
    with pytest.raises(libvirt.libvirtError) as e:
        dom.resume()
    assert e.value.get_error_code() == L.VIR_ERR_OPERATION_INVALID
    wait_for(lambda: serial(d.root).count("KVMMTEST tick") > ticks + 2, "ticks after resume")

    # reset: the guest boots again inside the same kvmm
    boots = serial(d.root).count("KVMMTEST boot")
    dom.reset()
    wait_for(lambda: serial(d.root).count("KVMMTEST boot") > boots, "a second boot")
    assert dom.ID() == 1
    wait_for(lambda: serial(d.root).count("power-button armed") > 1, "the power button armed again")

    # shutdown: the ACPI power button; the guest powers itself off
    dom.shutdown()
    assert ev.next() == ("g1", L.VIR_DOMAIN_EVENT_STOPPED, L.VIR_DOMAIN_EVENT_STOPPED_SHUTDOWN)
    assert dom.state() == [L.VIR_DOMAIN_SHUTOFF, L.VIR_DOMAIN_SHUTOFF_SHUTDOWN]
    assert "KVMMTEST action poweroff" in serial(d.root)
    assert_nothing_left(d)
    with pytest.raises(libvirt.libvirtError) as e:
        dom.shutdown()
    assert e.value.get_error_code() == L.VIR_ERR_OPERATION_INVALID
    assert "not running" in str(e.value)
    ev.conn.close()


def test_guest_poweroff_crash_and_kvmm_killed(daemon, conn, kvm):
    d = daemon
    ev = Events(d.uri())
    # the guest powers off by itself
    dom = conn.defineXML(guest_xml(d.root, "off", action="poweroff"))
    ev.next()
    dom.create()
    assert ev.next()[1] == L.VIR_DOMAIN_EVENT_STARTED
    assert ev.next() == ("off", L.VIR_DOMAIN_EVENT_STOPPED, L.VIR_DOMAIN_EVENT_STOPPED_SHUTDOWN)
    assert dom.state() == [L.VIR_DOMAIN_SHUTOFF, L.VIR_DOMAIN_SHUTOFF_SHUTDOWN]

    # the guest crashes (triple fault): on_crash=destroy
    dom = conn.defineXML(guest_xml(d.root, "bad", action="crash"))
    ev.next()
    dom.create()
    assert ev.next()[1] == L.VIR_DOMAIN_EVENT_STARTED
    assert ev.next() == ("bad", L.VIR_DOMAIN_EVENT_STOPPED, L.VIR_DOMAIN_EVENT_STOPPED_CRASHED)
    assert dom.state() == [L.VIR_DOMAIN_SHUTOFF, L.VIR_DOMAIN_SHUTOFF_CRASHED]
    with open(os.path.join(d.root, "log", "libvirt", "kvmm", "bad.log")) as f:
        assert "exit status 3" in f.read()

    # kvmm itself dies: noticed at once through its pidfd
    dom = conn.defineXML(guest_xml(d.root, "victim"))
    ev.next()
    dom.create()
    assert ev.next()[1] == L.VIR_DOMAIN_EVENT_STARTED
    [pid] = d.guests()
    os.kill(pid, signal.SIGKILL)
    assert ev.next() == ("victim", L.VIR_DOMAIN_EVENT_STOPPED, L.VIR_DOMAIN_EVENT_STOPPED_CRASHED)
    assert dom.state() == [L.VIR_DOMAIN_SHUTOFF, L.VIR_DOMAIN_SHUTOFF_CRASHED]
    assert_nothing_left(d)
    ev.conn.close()


def test_on_poweroff_restart(daemon, conn, kvm):
    d = daemon
    ev = Events(d.uri())
    dom = conn.defineXML(guest_xml(d.root, "phoenix", action="poweroff", on_poweroff="restart"))
    ev.next()
    dom.create()
    seen = [ev.next()[1:] for _ in range(3)]
    assert seen == [(L.VIR_DOMAIN_EVENT_STARTED, L.VIR_DOMAIN_EVENT_STARTED_BOOTED),
                    (L.VIR_DOMAIN_EVENT_STOPPED, L.VIR_DOMAIN_EVENT_STOPPED_SHUTDOWN),
                    (L.VIR_DOMAIN_EVENT_STARTED, L.VIR_DOMAIN_EVENT_STARTED_BOOTED)]
    # it keeps coming back; destroy ends it
    wait_for(lambda: dom.isActive(), "the restarted domain")
    dom.destroy()
    wait_for(lambda: not dom.isActive(), "destroy")
    ev.conn.close()


def test_failed_start_reports_kvmm_and_leaves_nothing(daemon, conn, kvm):
    d = daemon
    missing = os.path.join(d.root, "no-such-kernel")
    dom = conn.defineXML(guest_xml(d.root, "nokernel", kernel=missing))
    with pytest.raises(libvirt.libvirtError) as e:
        dom.create()
    assert e.value.get_error_code() == L.VIR_ERR_OPERATION_FAILED
    assert "kvmm exited while starting" in str(e.value)
    assert missing in str(e.value)                       # kvmm's own words
    assert dom.state()[0] == L.VIR_DOMAIN_SHUTOFF and not dom.isActive()
    assert_nothing_left(d)

    # what kvmm cannot run yet is refused before anything starts
    dom = conn.defineXML(guest_xml(d.root, "balloon", extra_devices="""
    <memballoon model='virtio'><stats period='86401'/></memballoon>"""))
    with pytest.raises(libvirt.libvirtError) as e:
        dom.create()
    assert e.value.get_error_code() == L.VIR_ERR_CONFIG_UNSUPPORTED
    assert "memballoon stats period 86401 is longer than kvmm's 86400 seconds" in str(e.value)
    assert_nothing_left(d)

    # flags not supported yet are refused, not ignored
    with pytest.raises(libvirt.libvirtError) as e:
        dom.createWithFlags(L.VIR_DOMAIN_START_BYPASS_CACHE)
    assert e.value.get_error_code() == L.VIR_ERR_INVALID_ARG


def test_running_domain_rules(daemon, conn, kvm):
    d = daemon
    dom = conn.defineXML(guest_xml(d.root))
    dom.create()
    # read-only clients watch, they do not act
    r = virsh(d.uri(ro=True), "destroy", "g1", readonly=True)
    assert r.returncode != 0 and "read only" in r.stderr.lower()
    r = virsh(d.uri(ro=True), "list", readonly=True)
    assert " g1 " in r.stdout
    # listing filters know running domains
    assert [x.name() for x in conn.listAllDomains(L.VIR_CONNECT_LIST_DOMAINS_ACTIVE)] == ["g1"]
    assert conn.listAllDomains(L.VIR_CONNECT_LIST_DOMAINS_INACTIVE) == []
    assert conn.listDomainsID() == [1]
    dom.destroy()
    dom.undefine()
    assert_nothing_left(d)


def test_transient_domains(daemon, conn, kvm):
    """virsh create runs a domain nothing defines; undefining a running
    domain makes it transient; either is gone once it stops."""
    d = daemon
    ev = Events(d.uri())
    path = os.path.join(d.root, "t.xml")
    with open(path, "w") as f:
        f.write(guest_xml(d.root, "temp"))
    r = virsh(d.uri(), "create", path)
    assert r.returncode == 0, r.stderr
    assert "Domain 'temp' created" in r.stdout
    assert ev.next() == ("temp", L.VIR_DOMAIN_EVENT_STARTED, L.VIR_DOMAIN_EVENT_STARTED_BOOTED)
    t = conn.lookupByName("temp")
    assert t.isActive() and not t.isPersistent()
    assert [x.name() for x in conn.listAllDomains(L.VIR_CONNECT_LIST_DOMAINS_TRANSIENT)] == ["temp"]
    assert conn.listAllDomains(L.VIR_CONNECT_LIST_DOMAINS_PERSISTENT) == []
    assert not os.path.exists(os.path.join(d.root, "etc", "libvirt", "kvmm", "temp.xml"))
    with pytest.raises(libvirt.libvirtError) as e:
        t.setAutostart(1)
    assert "transient" in str(e.value)
    r = virsh(d.uri(), "create", path)                   # the name is taken while it runs
    assert r.returncode != 0 and "already active" in r.stderr
    t.destroy()
    assert ev.next() == ("temp", L.VIR_DOMAIN_EVENT_STOPPED, L.VIR_DOMAIN_EVENT_STOPPED_DESTROYED)
    with pytest.raises(libvirt.libvirtError) as e:
        conn.lookupByName("temp")
    assert e.value.get_error_code() == L.VIR_ERR_NO_DOMAIN
    assert_nothing_left(d)

    # a failed create leaves no domain behind
    bad = guest_xml(d.root, "badtemp", kernel=os.path.join(d.root, "missing"))
    with pytest.raises(libvirt.libvirtError):
        conn.createXML(bad, 0)
    assert [x.name() for x in conn.listAllDomains(0)] == []

    # undefine while running: transient until it stops
    dom = conn.defineXML(guest_xml(d.root, "keep"))
    assert ev.next()[1] == L.VIR_DOMAIN_EVENT_DEFINED
    dom.create()
    assert ev.next()[1] == L.VIR_DOMAIN_EVENT_STARTED
    dom.undefine()
    assert ev.next() == ("keep", L.VIR_DOMAIN_EVENT_UNDEFINED, L.VIR_DOMAIN_EVENT_UNDEFINED_REMOVED)
    assert dom.isActive() and not dom.isPersistent()
    assert not os.path.exists(os.path.join(d.root, "etc", "libvirt", "kvmm", "keep.xml"))
    dom.destroy()
    assert ev.next()[1] == L.VIR_DOMAIN_EVENT_STOPPED
    assert conn.listAllDomains(0) == []
    ev.conn.close()


def test_rng_reaches_the_guest(daemon, conn, kvm):
    """<rng> becomes kvmm's virtio-rng: the guest finds it on the PCI bus
    and reads random bytes from it."""
    d = daemon
    dom = conn.defineXML(guest_xml(d.root, "rng", action="poweroff", extra_cmdline=" kvmmtest.virtio=rng",
                                   extra_devices="""
    <rng model='virtio'><backend model='random'>/dev/urandom</backend></rng>"""))
    dom.create()
    wait_for(lambda: not dom.isActive(), "the guest to power off")
    out = serial(d.root, "rng")
    assert "KVMMTEST pass virtio-rng dev=rng0 bytes=64" in out, out
    assert "KVMMTEST fail" not in out, out
    assert dom.state() == [L.VIR_DOMAIN_SHUTOFF, L.VIR_DOMAIN_SHUTOFF_SHUTDOWN]


def test_reboot_events(daemon, conn, kvm):
    """A guest reset -- by virsh reset or by the guest itself -- is a
    reboot event (VIR_DOMAIN_EVENT_ID_REBOOT), the domain keeps its id."""
    d = daemon
    event_loop()
    ev = libvirt.open(d.uri())
    q = queue.Queue()
    ev.domainEventRegisterAny(None, L.VIR_DOMAIN_EVENT_ID_REBOOT,
                              lambda c, dom, _: q.put(dom.name()), None)
    dom = conn.defineXML(guest_xml(d.root, "r1"))
    dom.create()
    wait_for(lambda: "KVMMTEST done" in serial(d.root, "r1"), "the guest's checks")
    # No reboot event for the boot: a lifecycle event caused now comes
    # after any, on the same connection.
    marker = ev.domainEventRegisterAny(
        None, L.VIR_DOMAIN_EVENT_ID_LIFECYCLE,
        lambda c, dom, event, detail, _: q.put((dom.name(), event)), None)
    dom.suspend()
    assert q.get(timeout=10) == ("r1", L.VIR_DOMAIN_EVENT_SUSPENDED)
    ev.domainEventDeregisterAny(marker)
    dom.resume()
    dom.reset()
    assert q.get(timeout=10) == "r1"
    assert dom.ID() == 1 and dom.isActive()
    dom.destroy()

    # virsh reboot: the guest shuts down through ACPI and boots again,
    # same kvmm, same id
    armed = serial(d.root, "r1").count("power-button armed")    # the serial file is appended to
    dom.create()
    wait_for(lambda: serial(d.root, "r1").count("power-button armed") > armed, "the guest armed")
    boots = serial(d.root, "r1").count("KVMMTEST boot")
    r = virsh(d.uri(), "reboot", "r1")
    assert r.returncode == 0 and "is being rebooted" in r.stdout, r.stderr
    assert q.get(timeout=30) == "r1"
    wait_for(lambda: serial(d.root, "r1").count("KVMMTEST boot") > boots, "the second boot")
    assert "KVMMTEST action poweroff" in serial(d.root, "r1")
    assert dom.isActive() and dom.ID() == 2
    r = virsh(d.uri(), "reboot", "r1", "--mode", "agent")
    assert r.returncode != 0 and "unsupported flags" in r.stderr
    dom.destroy()

    # the guest reboots itself (its action), again and again
    self_reboot = conn.defineXML(guest_xml(d.root, "r2", action="reboot"))
    self_reboot.create()
    assert q.get(timeout=30) == "r2"
    assert q.get(timeout=30) == "r2"
    assert self_reboot.isActive() and self_reboot.ID() == 3
    self_reboot.destroy()
    ev.close()
