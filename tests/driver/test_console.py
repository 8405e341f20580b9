"""virsh console on a real terminal: the test guest's shell through
virtkvmmd's RPC stream, detach with Ctrl-], reconnect, --force takeover,
the guest powering off under an attached console, refusals, and the
console of a guest adopted after a daemon restart."""
import os
import signal
import time

import libvirt
import pytest

from drvtest import virsh
from virshconsole import Console  # noqa: F401 (other tests import it from here)
from kvmmtest import GUEST

L = libvirt


def pty_guest_xml(name="g1", action="prompt"):
    return f"""<domain type='kvm'>
  <name>{name}</name>
  <memory unit='MiB'>128</memory>
  <os><type>hvm</type><kernel>{GUEST}</kernel><cmdline>kvmmtest.action={action}</cmdline></os>
  <devices>
    <serial type='pty'><target port='0'/></serial>
    <console type='pty'><target type='serial' port='0'/></console>
  </devices>
</domain>
"""


@pytest.fixture
def consoles():
    opened = []
    yield opened
    for c in opened:
        c.close()


def attach(consoles, uri, name, *extra):
    c = Console(uri, name, *extra)
    consoles.append(c)
    return c


def test_console_shell_detach_and_reconnect(daemon, consoles, kvm):
    d = daemon
    conn = libvirt.open(d.uri())
    dom = conn.defineXML(pty_guest_xml())
    dom.create()
    live = dom.XMLDesc(0)
    assert "<source path='/dev/pts/" in live               # the allocated pty, as libvirt shows it
    assert "/dev/pts/" not in dom.XMLDesc(L.VIR_DOMAIN_XML_INACTIVE)
    tty = virsh(d.uri(), "ttyconsole", "g1").stdout.strip()
    assert tty.startswith("/dev/pts/")

    c = attach(consoles, d.uri(), "g1")
    c.ready()
    c.send(b"info\r")
    c.read_until("cmdline: kvmmtest.action=prompt")
    c.send(b"\x1d")                                        # Ctrl-]
    assert c.wait() == 0

    # reconnect: the same shell, still there
    c2 = attach(consoles, d.uri(), "g1")
    c2.ready()
    c2.send(b"help\r")
    c2.read_until("poweroff")
    c2.send(b"\x1d")
    assert c2.wait() == 0
    dom.destroy()
    conn.close()


def test_one_console_at_a_time_and_force(daemon, consoles, kvm):
    d = daemon
    conn = libvirt.open(d.uri())
    conn.defineXML(pty_guest_xml()).create()
    first = attach(consoles, d.uri(), "g1")
    first.ready()
    refused = attach(consoles, d.uri(), "g1")
    assert refused.wait() != 0
    assert b"Active console session exists for this domain" in refused.out, refused.out

    second = attach(consoles, d.uri(), "g1", "--force")
    second.ready()
    assert first.wait() == 0                               # taken over: its stream ended
    second.send(b"info\r")
    second.read_until("cmdline: kvmmtest.action=prompt")
    second.send(b"\x1d")
    assert second.wait() == 0
    conn.lookupByName("g1").destroy()
    conn.close()


def test_guest_poweroff_ends_the_console(daemon, consoles, kvm):
    d = daemon
    conn = libvirt.open(d.uri())
    dom = conn.defineXML(pty_guest_xml())
    dom.create()
    c = attach(consoles, d.uri(), "g1")
    c.ready()
    c.send(b"poweroff\r")
    assert c.wait(30) == 0
    assert b"poweroff" in c.out
    # the console's end and kvmm's exit reach the daemon separately
    deadline = time.monotonic() + 10
    while dom.state()[0] != L.VIR_DOMAIN_SHUTOFF:
        assert time.monotonic() < deadline, dom.state()
        time.sleep(0.05)
    assert dom.state() == [L.VIR_DOMAIN_SHUTOFF, L.VIR_DOMAIN_SHUTOFF_SHUTDOWN]
    conn.close()


def test_console_refusals(daemon, consoles, kvm):
    d = daemon
    conn = libvirt.open(d.uri())
    conn.defineXML(pty_guest_xml())
    off = attach(consoles, d.uri(), "g1")
    assert off.wait() != 0
    assert b"not running" in off.out, off.out
    dom = conn.defineXML(f"""<domain type='kvm'><name>tofile</name><memory unit='MiB'>128</memory>
  <os><type>hvm</type><kernel>{GUEST}</kernel><cmdline>kvmmtest.action=wait</cmdline></os>
  <devices><serial type='file'><source path='{d.root}/s.log'/><target port='0'/></serial></devices>
</domain>""")
    dom.create()
    st = conn.newStream(0)
    with pytest.raises(libvirt.libvirtError) as e:
        dom.openConsole(None, st, 0)
    assert "character device serial0 is not using a PTY" in str(e.value)
    with pytest.raises(libvirt.libvirtError) as e:
        dom.openConsole("serial7", conn.newStream(0), 0)
    assert "cannot find character device serial7" in str(e.value)
    ro = conn_ro = libvirt.openReadOnly(d.uri(ro=True))
    with pytest.raises(libvirt.libvirtError) as e:
        ro.lookupByName("tofile").openConsole(None, ro.newStream(0), 0)
    assert e.value.get_error_code() == L.VIR_ERR_OPERATION_DENIED
    conn_ro.close()
    dom.destroy()
    conn.close()


def test_console_of_an_adopted_guest(start_daemon, consoles, kvm):
    d1 = start_daemon()
    conn = libvirt.open(d1.uri())
    conn.defineXML(pty_guest_xml()).create()
    conn.close()
    os.kill(d1.proc.pid, signal.SIGKILL)
    d1.proc.wait()
    d2 = start_daemon(root=d1.root)
    c = attach(consoles, d2.uri(), "g1")
    c.ready()
    c.send(b"info\r")
    c.read_until("cmdline: kvmmtest.action=prompt")
    c.send(b"\x1d")
    assert c.wait() == 0
    assert virsh(d2.uri(), "destroy", "g1").returncode == 0


def test_virtio_console(daemon, consoles, kvm):
    """<console type='pty'><target type='virtio'/> is kvmm's virtio
    console (hvc0): its pty shows in the live XML and virsh console
    --devname console1 reaches it; the guest's greeting and echo pass
    through the daemon's stream."""
    d = daemon
    conn = libvirt.open(d.uri())
    dom = conn.defineXML(f"""<domain type='kvm'>
  <name>hvc</name>
  <memory unit='MiB'>128</memory>
  <os><type>hvm</type><kernel>{GUEST}</kernel>
    <cmdline>kvmmtest.action=wait kvmmtest.virtio=console kvmmtest.console0.echo=60</cmdline></os>
  <devices>
    <serial type='file'><source path='{d.root}/hvc-serial.log'/><target port='0'/></serial>
    <console type='pty'><target type='virtio'/></console>
  </devices>
</domain>""")
    # Paused until attached: a pty drops what nobody reads, as QEMU's.
    dom.createWithFlags(L.VIR_DOMAIN_START_PAUSED)
    live = dom.XMLDesc(0)
    assert live.count("<source path='/dev/pts/") == 1, live
    c = attach(consoles, d.uri(), "hvc", "--devname", "console1")
    c.read_until("(Ctrl + ])")
    dom.resume()
    c.read_until("KVMMTEST-HVC hello from console0")      # the guest's greeting on hvc0
    deadline = time.monotonic() + 30
    while "virtio-console-ready" not in open(os.path.join(d.root, "hvc-serial.log")).read():
        assert time.monotonic() < deadline, "the guest never got ready for input"
        time.sleep(0.05)
    c.send(b"ping-from-virsh\n")
    c.read_until("echo: ping-from-virsh")
    c.send(b"\x1d")
    assert c.wait() == 0
    # the serial port is a file: no console there
    r = attach(consoles, d.uri(), "hvc", "--devname", "serial0")
    assert r.wait() != 0 and b"character device serial0 is not using a PTY" in r.out
    dom.destroy()
    conn.close()
