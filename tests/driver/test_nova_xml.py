"""nova's spawn XML through virtkvmmd and kvmm, with real virsh-side
clients (python3-libvirt) and the test guest: what nova 26 sends by
default on x86 defines and starts.

- <features><vmcoreinfo/>: kvmm gets a fw_cfg device, described in its
  DSDT as QEMU0002 (the bytes read from the running guest's memory).
- <serial type='pty'><log file=... append='off'/> with <console
  type='pty'/>: one device; the file gets the guest's serial output,
  written over at start (append='on' keeps the earlier runs).
- <os><smbios mode='sysinfo'/> with nova's <sysinfo>: dmidecode reads
  nova's values, and the domain's UUID, from the guest's memory at
  0xF0000.
- <interface><mtu size=/>: the tap gets that MTU (on a bridge with
  another one), and the guest is offered it (VIRTIO_NET_F_MTU; the
  device's unit test checks the field).
The daemon runs in a private network namespace (its taps and bridge
stay there)."""
import json
import os
import subprocess
import sys
import uuid as uuidlib
import xml.etree.ElementTree as ET

import libvirt
import pytest

import netns as netns_lib
from kvmmtest import GUEST
from test_lifecycle import wait_for

# The dmidecode helpers of kvmm's own SMBIOS test, one tier down.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "vmm"))
from test_smbios import SMBIOS_ADDR, SMBIOS_SIZE, dmidecode, fields, guest_ram

ACPI_ADDR, ACPI_SIZE = 0xE0000, 0x10000
MEMORY = 128 << 20


@pytest.fixture
def netns():
    yield from netns_lib.private("kvnova-")


@pytest.fixture
def nsd(start_daemon, netns):
    d = start_daemon(prefix=["ip", "netns", "exec", netns])
    conn = libvirt.open(d.uri())
    yield d, netns, conn
    conn.close()


def nova_xml(root, uuid, log, append="off", bridge="brq-nova", tap="tapnova0", mtu=1400):
    """nova 26's spawn XML (tests/xml2xml/in/nova-spawn.xml) around the
    test guest, with [libvirt]mem_stats_period_seconds=0 (no balloon)."""
    return f"""<domain type="kvm">
  <uuid>{uuid}</uuid>
  <name>instance-00000001</name>
  <memory>{MEMORY >> 10}</memory>
  <vcpu>1</vcpu>
  <metadata>
    <nova:instance xmlns:nova="http://openstack.org/xmlns/libvirt/nova/1.1">
      <nova:package version="26.2.1"/>
      <nova:name>test</nova:name>
    </nova:instance>
  </metadata>
  <sysinfo type="smbios">
    <system>
      <entry name="manufacturer">OpenStack Foundation</entry>
      <entry name="product">OpenStack Nova</entry>
      <entry name="version">26.2.1</entry>
      <entry name="serial">{uuid}</entry>
      <entry name="uuid">{uuid}</entry>
      <entry name="family">Virtual Machine</entry>
    </system>
  </sysinfo>
  <os>
    <type machine="pc">hvm</type>
    <kernel>{GUEST}</kernel>
    <cmdline>kvmmtest.action=wait kvmmtest.tick_ms=100</cmdline>
    <smbios mode="sysinfo"/>
  </os>
  <features>
    <acpi/>
    <apic/>
    <vmcoreinfo/>
  </features>
  <clock offset="utc">
    <timer name="pit" tickpolicy="delay"/>
    <timer name="rtc" tickpolicy="catchup"/>
    <timer name="hpet" present="no"/>
  </clock>
  <cpu mode="host-model" match="exact">
    <topology sockets="1" cores="1" threads="1"/>
  </cpu>
  <devices>
    <interface type="bridge">
      <mac address="fa:16:3e:00:00:01"/>
      <model type="virtio"/>
      <source bridge="{bridge}"/>
      <mtu size="{mtu}"/>
      <target dev="{tap}"/>
    </interface>
    <serial type="pty">
      <log file="{log}" append="{append}"/>
    </serial>
    <console type="pty"/>
    <rng model="virtio">
      <backend model="random">/dev/urandom</backend>
    </rng>
  </devices>
</domain>
"""


def read_log(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


def guest_window(d, addr, size):
    """SIZE bytes of the running guest's memory at ADDR, read from the
    host through the kvmm process's /proc/PID/mem."""
    pids = d.guests()
    assert len(pids) == 1, pids
    with open(f"/proc/{pids[0]}/mem", "rb") as mem:
        mem.seek(guest_ram(pids[0], MEMORY) + addr)
        return mem.read(size)


def bridge(ns, name, mtu):
    subprocess.run(["ip", "-n", ns, "link", "add", name, "type", "bridge"], check=True)
    subprocess.run(["ip", "-n", ns, "link", "set", name, "mtu", str(mtu), "up"], check=True)


def link_mtu(ns, name):
    out = subprocess.run(["ip", "-j", "-n", ns, "link", "show", name], capture_output=True,
                         text=True, check=True).stdout
    return json.loads(out)[0]["mtu"]


def test_nova_spawn_defines_starts_and_is_honoured(nsd, tmp):
    d, ns, conn = nsd
    bridge(ns, "brq-nova", 1500)
    uuid = str(uuidlib.uuid4())
    log = os.path.join(tmp, "console.log")
    with open(log, "w") as f:
        f.write("a line of an earlier run\n")
    dom = conn.defineXML(nova_xml(d.root, uuid, log))

    # One device, shown twice as libvirt does: the console carries the log.
    root = ET.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
    assert root.find("features/vmcoreinfo").get("state") == "on"
    serial, console = root.find("devices/serial"), root.find("devices/console")
    assert serial.find("log").attrib == {"file": log, "append": "off"}
    assert console.find("log").attrib == serial.find("log").attrib
    assert console.find("target").attrib == {"type": "serial", "port": "0"}

    dom.create()
    out = wait_for(lambda: "KVMMTEST done" in read_log(log) and read_log(log),
                   "the guest's serial output in nova's console.log")
    assert "earlier run" not in out            # append='off': written over
    assert out.startswith("KVMMTEST boot"), out[:200]

    # <mtu>: the tap's, not the bridge's 1500
    assert link_mtu(ns, "tapnova0") == 1400

    # The live XML: valid for libvirt's schema; serial and console share
    # the pty kvmm allocated (virsh console and ttyconsole find it) and
    # the log
    live = dom.XMLDesc()
    path = os.path.join(tmp, "live.xml")
    with open(path, "w") as f:
        f.write(live)
    r = subprocess.run(["virt-xml-validate", path, "domain"], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr + live
    root = ET.fromstring(live)
    pty = root.find("devices/serial/source").get("path")
    assert pty.startswith("/dev/pts/") and root.find("devices/console").get("tty") == pty
    assert root.find("devices/console/log").get("file") == log
    assert root.find("devices/interface/mtu").get("size") == "1400"

    # <smbios mode='sysinfo'/>: nova's values where the guest looks
    window = guest_window(d, SMBIOS_ADDR, SMBIOS_SIZE)
    dump = os.path.join(tmp, "dmi.bin")
    with open(dump, "wb") as f:
        f.write(window[:0x20])
        f.seek(SMBIOS_ADDR)
        f.write(window)
    sysinfo = fields(dmidecode(dump), "System Information")
    assert (sysinfo["Manufacturer"], sysinfo["Product Name"], sysinfo["Version"]) == \
        ("OpenStack Foundation", "OpenStack Nova", "26.2.1")
    assert sysinfo["UUID"] == uuid and sysinfo["Serial Number"] == uuid

    # <vmcoreinfo/>: the fw_cfg device in the DSDT
    acpi = guest_window(d, ACPI_ADDR, ACPI_SIZE)
    assert b"FWCF" in acpi and b"QEMU0002\0" in acpi

    dom.destroy()
    # append='on' keeps what the earlier run wrote, and adds the new one
    dom = conn.defineXML(nova_xml(d.root, uuid, log, append="on"))
    before = read_log(log).count("KVMMTEST done")
    dom.create()
    wait_for(lambda: read_log(log).count("KVMMTEST done") == before + 1,
             "a second run appended to the log")
    assert read_log(log).startswith("KVMMTEST boot")
    dom.destroy()
    dom.undefine()


def test_a_console_aliasing_the_serial_port_takes_its_source(nsd, tmp):
    """libvirt's rule: <console type='pty'/> (no target, or target type
    'serial') beside a <serial> is that serial port, whatever it said
    itself; it comes back as a copy of the serial."""
    d, ns, conn = nsd
    log = os.path.join(tmp, "serial.log")
    xml = f"""<domain type='kvm'><name>alias</name><memory unit='MiB'>128</memory>
  <os><type>hvm</type><kernel>{GUEST}</kernel></os>
  <devices>
    <serial type='file'><source path='{log}'/></serial>
    <console type='pty'><target type='serial'/></console>
  </devices></domain>"""
    dom = conn.defineXML(xml)
    console = ET.fromstring(dom.XMLDesc()).find("devices/console")
    assert console.get("type") == "file"
    assert console.find("source").get("path") == log
    dom.create()
    wait_for(lambda: "KVMMTEST done" in read_log(log), "the guest on the serial file")
    wait_for(lambda: dom.state()[0] == libvirt.VIR_DOMAIN_SHUTOFF, "poweroff")
    dom.undefine()
