"""Defining a domain while it runs, as virt-install does (createXML, then
defineXML with the same uuid): the running guest keeps its live
definition (pty paths, `virsh console`), the new one is saved for the
next start (`dumpxml --inactive`), dominfo says Persistent, isUpdated is
set, and the next start runs it.  Undefining a running persistent domain
makes it transient: it runs on and is gone once it stops.  All through
the real virsh and python3-libvirt, with the test guest running in kvmm."""
import os
import signal
import subprocess

import libvirt
import pytest

from drvtest import virsh
from kvmmtest import GUEST
from test_console import Console
from test_lifecycle import Events

L = libvirt

UUID = "6f1c3b2a-94d1-4c8e-a0a1-5d3e2f1b7c90"


def xml(cmdline="kvmmtest.action=prompt", memory=128, description=""):
    desc = f"<description>{description}</description>" if description else ""
    return f"""<domain type='kvm'>
  <name>vi</name>
  <uuid>{UUID}</uuid>{desc}
  <memory unit='MiB'>{memory}</memory>
  <os><type>hvm</type><kernel>{GUEST}</kernel><cmdline>{cmdline}</cmdline></os>
  <devices>
    <serial type='pty'><target port='0'/></serial>
    <console type='pty'><target type='serial' port='0'/></console>
  </devices>
</domain>
"""


NEXT = "kvmmtest.action=prompt kvmmtest.tick_ms=77"


@pytest.fixture
def consoles():
    opened = []
    yield opened
    for c in opened:
        c.close()


def guest_cmdline(consoles, uri, name="vi"):
    """What the running guest itself says its command line is, asked on
    its serial console through `virsh console`."""
    c = Console(uri, name)
    consoles.append(c)
    c.ready()
    start = len(c.out)
    c.send(b"info\r")
    # the reply's cmdline line, then the prompt that follows it (a prompt
    # answering one of ready()'s Enters may come first)
    c.read_until_count(b"cmdline: ", c.out[:start].count(b"cmdline: ") + 1, 30)
    after = c.out.rindex(b"cmdline: ")
    c.read_until_count(b"kvmm-testguest> ", c.out[:after].count(b"kvmm-testguest> ") + 1, 30)
    line = c.out[after:].split(b"cmdline: ")[1].splitlines()[0].decode().strip()
    c.send(b"\x1d")
    assert c.wait() == 0
    return line


def dominfo(uri, name="vi"):
    r = virsh(uri, "dominfo", name)
    assert r.returncode == 0, r.stderr
    return {k.strip(): v.strip() for k, _, v in
            (line.partition(":") for line in r.stdout.splitlines() if ":" in line)}


def write(root, name, text):
    path = os.path.join(root, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def test_virt_install_sequence_with_virsh(daemon, consoles, kvm):
    d = daemon
    uri = d.uri()
    # virt-install: the guest is created (transient) ...
    r = virsh(uri, "create", write(d.root, "live.xml", xml()))
    assert r.returncode == 0, r.stderr
    tty = virsh(uri, "ttyconsole", "vi").stdout.strip()
    assert tty.startswith("/dev/pts/")
    assert dominfo(uri)["Persistent"] == "no"
    # ... then defined with the same uuid while it runs.
    r = virsh(uri, "define", write(d.root, "next.xml", xml(NEXT, memory=192)))
    assert r.returncode == 0, r.stderr

    info = dominfo(uri)
    assert info["State"] == "running" and info["Persistent"] == "yes", info
    assert info["Max memory"] == "131072 KiB"           # the run's, not the next one's
    # The live definition is the running guest's: its pty is still there.
    assert virsh(uri, "ttyconsole", "vi").stdout.strip() == tty
    live = virsh(uri, "dumpxml", "vi").stdout
    assert f"<source path='{tty}'/>" in live and "tick_ms" not in live
    assert "<domain type='kvm' id=" in live
    inactive = virsh(uri, "dumpxml", "--inactive", "vi").stdout
    assert f"<cmdline>{NEXT}</cmdline>" in inactive and "196608" in inactive
    assert "/dev/pts/" not in inactive and "id=" not in inactive.splitlines()[0]
    # and virsh console still reaches the guest started first
    assert guest_cmdline(consoles, uri) == "kvmmtest.action=prompt"
    assert "vi" in virsh(uri, "list", "--persistent", "--name").stdout.split()

    # The next start runs the new definition.
    assert virsh(uri, "destroy", "vi").returncode == 0
    assert f"<cmdline>{NEXT}</cmdline>" in virsh(uri, "dumpxml", "vi").stdout
    assert dominfo(uri)["Max memory"] == "196608 KiB"
    assert virsh(uri, "start", "vi").returncode == 0
    assert guest_cmdline(consoles, uri) == NEXT
    assert virsh(uri, "ttyconsole", "vi").stdout.strip().startswith("/dev/pts/")
    assert virsh(uri, "destroy", "vi").returncode == 0
    assert virsh(uri, "undefine", "vi").returncode == 0


def test_is_updated_metadata_and_undefine_while_running(daemon, consoles, kvm):
    d = daemon
    ev = Events(d.uri())
    conn = libvirt.open(d.uri())
    dom = conn.defineXML(xml())
    assert dom.isPersistent() == 1 and dom.isUpdated() == 0
    dom.create()
    assert ev.next() == ("vi", L.VIR_DOMAIN_EVENT_DEFINED, L.VIR_DOMAIN_EVENT_DEFINED_ADDED)
    assert ev.next()[1] == L.VIR_DOMAIN_EVENT_STARTED
    assert dom.isUpdated() == 0                         # started as defined
    live_before = dom.XMLDesc(0)

    dom = conn.defineXML(xml(NEXT, description="next"))
    assert ev.next() == ("vi", L.VIR_DOMAIN_EVENT_DEFINED, L.VIR_DOMAIN_EVENT_DEFINED_UPDATED)
    assert dom.isActive() == 1 and dom.isPersistent() == 1
    assert dom.isUpdated() == 1
    assert dom.XMLDesc(0) == live_before                # the live definition untouched
    assert NEXT in dom.XMLDesc(L.VIR_DOMAIN_XML_INACTIVE)
    # Metadata: CONFIG reaches the next definition, LIVE the running one.
    dom.setMetadata(L.VIR_DOMAIN_METADATA_TITLE, "cfg", None, None, L.VIR_DOMAIN_AFFECT_CONFIG)
    dom.setMetadata(L.VIR_DOMAIN_METADATA_TITLE, "run", None, None, L.VIR_DOMAIN_AFFECT_LIVE)
    assert dom.metadata(L.VIR_DOMAIN_METADATA_TITLE, None, L.VIR_DOMAIN_AFFECT_CONFIG) == "cfg"
    assert dom.metadata(L.VIR_DOMAIN_METADATA_TITLE, None, L.VIR_DOMAIN_AFFECT_LIVE) == "run"
    assert "<title>cfg</title>" in dom.XMLDesc(L.VIR_DOMAIN_XML_INACTIVE)
    assert "<title>run</title>" in dom.XMLDesc(0)
    with open(os.path.join(d.root, "etc", "libvirt", "kvmm", "vi.xml")) as f:
        on_disk = f.read()
    assert "<title>cfg</title>" in on_disk and NEXT in on_disk

    # Undefine while running: it runs on, transient, with nothing next.
    dom.undefine()
    assert ev.next() == ("vi", L.VIR_DOMAIN_EVENT_UNDEFINED, L.VIR_DOMAIN_EVENT_UNDEFINED_REMOVED)
    assert dom.isActive() == 1 and dom.isPersistent() == 0 and dom.isUpdated() == 0
    assert not os.path.exists(os.path.join(d.root, "etc", "libvirt", "kvmm", "vi.xml"))
    assert dominfo(d.uri())["Persistent"] == "no"
    assert guest_cmdline(consoles, d.uri()) == "kvmmtest.action=prompt"
    dom.destroy()
    assert ev.next() == ("vi", L.VIR_DOMAIN_EVENT_STOPPED, L.VIR_DOMAIN_EVENT_STOPPED_DESTROYED)
    with pytest.raises(libvirt.libvirtError) as e:
        conn.lookupByName("vi")
    assert e.value.get_error_code() == L.VIR_ERR_NO_DOMAIN
    conn.close()
    ev.conn.close()


def test_defining_a_created_domain_adds_it(daemon, kvm):
    """The event virt-install's define raises: a transient domain made
    persistent is added (libvirt has no earlier definition to update)."""
    ev = Events(daemon.uri())
    conn = libvirt.open(daemon.uri())
    dom = conn.createXML(xml())
    assert ev.next() == ("vi", L.VIR_DOMAIN_EVENT_STARTED, L.VIR_DOMAIN_EVENT_STARTED_BOOTED)
    conn.defineXML(xml(NEXT))
    assert ev.next() == ("vi", L.VIR_DOMAIN_EVENT_DEFINED, L.VIR_DOMAIN_EVENT_DEFINED_ADDED)
    assert dom.isPersistent() == 1 and dom.isUpdated() == 1
    conn.defineXML(xml(NEXT + " kvmmtest.smp=off"))    # and again: now an update
    assert ev.next() == ("vi", L.VIR_DOMAIN_EVENT_DEFINED, L.VIR_DOMAIN_EVENT_DEFINED_UPDATED)
    assert "smp=off" in dom.XMLDesc(L.VIR_DOMAIN_XML_INACTIVE)
    dom.destroy()
    assert ev.next() == ("vi", L.VIR_DOMAIN_EVENT_STOPPED, L.VIR_DOMAIN_EVENT_STOPPED_DESTROYED)
    assert dom.isPersistent() == 1 and dom.isUpdated() == 0
    assert "smp=off" in dom.XMLDesc(0)
    dom.undefine()
    conn.close()
    ev.conn.close()


def test_define_while_running_survives_a_daemon_restart(start_daemon, consoles, kvm):
    d1 = start_daemon()
    conn = libvirt.open(d1.uri())
    dom = conn.createXML(xml())                         # transient ...
    tty = virsh(d1.uri(), "ttyconsole", "vi").stdout.strip()
    conn.defineXML(xml(NEXT))                           # ... made persistent while it runs
    conn.close()
    os.kill(d1.proc.pid, signal.SIGKILL)
    d1.proc.wait()

    d2 = start_daemon(root=d1.root)
    conn = libvirt.open(d2.uri())
    dom = conn.lookupByName("vi")
    assert dom.isActive() == 1 and dom.isPersistent() == 1 and dom.isUpdated() == 1
    assert f"<source path='{tty}'/>" in dom.XMLDesc(0) and NEXT not in dom.XMLDesc(0)
    assert NEXT in dom.XMLDesc(L.VIR_DOMAIN_XML_INACTIVE)
    assert guest_cmdline(consoles, d2.uri()) == "kvmmtest.action=prompt"
    dom.destroy()
    assert NEXT in dom.XMLDesc(0) and dom.isPersistent() == 1
    dom.undefine()
    conn.close()


def test_undefined_while_running_stays_transient_across_a_restart(start_daemon, kvm):
    d1 = start_daemon()
    conn = libvirt.open(d1.uri())
    dom = conn.defineXML(xml())
    dom.create()
    dom.undefine()
    conn.close()
    os.kill(d1.proc.pid, signal.SIGKILL)
    d1.proc.wait()

    d2 = start_daemon(root=d1.root)
    conn = libvirt.open(d2.uri())
    dom = conn.lookupByName("vi")                       # adopted, though no definition is on disk
    assert dom.isActive() == 1 and dom.isPersistent() == 0
    dom.destroy()
    with pytest.raises(libvirt.libvirtError):
        conn.lookupByName("vi")
    conn.close()


def test_adoption_without_a_redefinition_is_not_updated(start_daemon, kvm):
    """A restarted daemon compares the status file's live definition with
    the one on disk: the same definition is not reported as updated."""
    d1 = start_daemon()
    conn = libvirt.open(d1.uri())
    dom = conn.defineXML(xml())
    dom.create()
    inactive = dom.XMLDesc(L.VIR_DOMAIN_XML_INACTIVE)
    conn.close()
    os.kill(d1.proc.pid, signal.SIGKILL)
    d1.proc.wait()

    d2 = start_daemon(root=d1.root)
    conn = libvirt.open(d2.uri())
    dom = conn.lookupByName("vi")
    assert dom.isActive() == 1 and dom.isPersistent() == 1 and dom.isUpdated() == 0
    assert dom.XMLDesc(L.VIR_DOMAIN_XML_INACTIVE) == inactive
    assert "<source path='/dev/pts/" in dom.XMLDesc(0)
    dom.destroy()
    dom.undefine()
    conn.close()


def test_virt_install(daemon, consoles, kvm):
    """The real virt-install (virtinst): it creates the guest, then defines
    it while it runs; the guest's console stays reachable and the
    definition is saved for the next start."""
    uri = daemon.uri()
    r = subprocess.run(
        ["virt-install", "--connect", uri, "--name", "vi", "--memory", "128", "--vcpus", "1",
         "--osinfo", "detect=on,require=off", "--import",
         "--boot", f"kernel={GUEST},kernel_args=kvmmtest.action=prompt",
         "--disk", "none", "--network", "none", "--graphics", "none", "--noautoconsole",
         "--serial", "pty", "--console", "pty,target_type=serial"],
        capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    info = dominfo(uri)
    assert info["State"] == "running" and info["Persistent"] == "yes", info
    tty = virsh(uri, "ttyconsole", "vi").stdout.strip()
    assert tty.startswith("/dev/pts/")
    assert f"<source path='{tty}'/>" in virsh(uri, "dumpxml", "vi").stdout
    assert guest_cmdline(consoles, uri) == "kvmmtest.action=prompt"
    inactive = virsh(uri, "dumpxml", "--inactive", "vi").stdout
    assert "<cmdline>kvmmtest.action=prompt</cmdline>" in inactive and "/dev/pts/" not in inactive
    assert virsh(uri, "destroy", "vi").returncode == 0
    assert virsh(uri, "start", "vi").returncode == 0       # the saved definition runs
    assert guest_cmdline(consoles, uri) == "kvmmtest.action=prompt"
    assert virsh(uri, "destroy", "vi").returncode == 0
    assert virsh(uri, "undefine", "vi").returncode == 0
