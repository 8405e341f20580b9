"""Device aliases through virtkvmmd, as libvirt shows them: a running
domain's live XML names every device (libvirt's qemu driver's names),
the names survive a daemon restart (the status file), the inactive XML
keeps only the user's ('ua-') aliases, and virsh domblklist/domiflist
read the same as without them.  The interface runs in a private network
namespace (the daemon makes its tap there)."""
import os
import signal
import xml.etree.ElementTree as ET

import libvirt
import pytest

import netns as netns_lib
from drvtest import virsh
from test_lifecycle import guest_xml

L = libvirt


@pytest.fixture
def netns():
    yield from netns_lib.private("kval-")


def aliases(xml):
    """{(element, distinguishing attribute): alias} of a domain XML's devices."""
    out = {}
    for dev in ET.fromstring(xml).find("devices"):
        if dev.tag == "emulator":
            continue
        a = dev.find("alias")
        key = dev.tag
        if dev.tag == "disk":
            key += ":" + dev.find("target").get("dev")
        elif dev.tag == "controller":
            key += ":" + dev.get("type")
        elif dev.tag == "console":
            key += ":" + dev.find("target").get("type")
        out[key] = a.get("name") if a is not None else None
    return out


def domain(root):
    for name in ("a.img", "b.img"):
        with open(os.path.join(root, name), "wb") as f:
            f.truncate(1 << 20)
    devices = f"""
    <disk type='file' device='disk'><source file='{root}/a.img'/><target dev='vda' bus='virtio'/></disk>
    <disk type='file' device='disk'><source file='{root}/b.img'/><target dev='vdb' bus='virtio'/>
      <alias name='ua-data'/></disk>
    <interface type='ethernet'><mac address='52:54:00:12:34:01'/></interface>
    <console type='pty'><target type='virtio'/></console>
    <memballoon model='virtio'/>
    <rng model='virtio'><backend model='random'>/dev/urandom</backend></rng>"""
    return guest_xml(root, name="al", extra_devices=devices)


LIVE = {"disk:vda": "virtio-disk0", "disk:vdb": "ua-data", "controller:usb": "usb",
        "controller:pci": "pci.0", "interface": "net0", "serial": "serial0",
        "console:serial": "serial0", "console:virtio": "console1", "memballoon": "balloon0",
        "rng": "rng0"}


def test_live_xml_names_every_device_and_a_restart_keeps_them(start_daemon, netns, kvm):
    d = start_daemon(prefix=["ip", "netns", "exec", netns])
    conn = libvirt.open(d.uri())
    dom = conn.defineXML(domain(d.root))
    # defined, not running: only the user's alias
    assert {k: v for k, v in aliases(dom.XMLDesc(0)).items() if v} == {"disk:vdb": "ua-data"}
    blk_off = virsh(d.uri(), "domblklist", "al").stdout
    dom.create()
    assert aliases(dom.XMLDesc(0)) == LIVE
    inactive = aliases(dom.XMLDesc(L.VIR_DOMAIN_XML_INACTIVE))
    assert {k: v for k, v in inactive.items() if v} == {"disk:vdb": "ua-data"}
    # virsh's lists read targets and sources, not aliases
    blk = virsh(d.uri(), "domblklist", "al")
    assert blk.returncode == 0 and blk.stdout == blk_off, blk.stdout
    assert f"{d.root}/a.img" in blk.stdout and f"{d.root}/b.img" in blk.stdout
    ifl = virsh(d.uri(), "domiflist", "al")
    assert ifl.returncode == 0 and "52:54:00:12:34:01" in ifl.stdout, ifl.stdout
    # the live XML defined again: the run's aliases are dropped, the user's kept
    again = conn.defineXML(dom.XMLDesc(0))
    assert {k: v for k, v in aliases(again.XMLDesc(L.VIR_DOMAIN_XML_INACTIVE)).items() if v} \
        == {"disk:vdb": "ua-data"}
    conn.close()

    # a daemon killed and started again adopts the run with the same names
    os.kill(d.proc.pid, signal.SIGKILL)
    d.proc.wait()
    d2 = start_daemon(root=d.root, prefix=["ip", "netns", "exec", netns])
    conn = libvirt.open(d2.uri())
    dom = conn.lookupByName("al")
    assert dom.isActive()
    assert aliases(dom.XMLDesc(0)) == LIVE
    dom.destroy()
    # stopped: the run's names go with it
    assert {k: v for k, v in aliases(dom.XMLDesc(0)).items() if v} == {"disk:vdb": "ua-data"}
    conn.close()


def test_bad_and_repeated_user_aliases_are_refused(daemon):
    conn = libvirt.open(daemon.uri())
    base = guest_xml(daemon.root, name="bad", extra_devices="""
    <rng model='virtio'><backend model='random'/><alias name='ALIAS'/></rng>
    <memballoon model='virtio'><alias name='ua-one'/></memballoon>""")
    with pytest.raises(libvirt.libvirtError) as e:
        conn.defineXML(base.replace("ALIAS", "ua-bad.name"))
    assert e.value.get_error_code() == L.VIR_ERR_XML_ERROR
    assert "alias 'ua-bad.name' is not a valid user alias" in str(e.value)
    with pytest.raises(libvirt.libvirtError) as e:
        conn.defineXML(base.replace("ALIAS", "ua-one"))
    assert e.value.get_error_code() == L.VIR_ERR_CONFIG_UNSUPPORTED
    assert "non unique alias detected: ua-one" in str(e.value)
    assert conn.listDefinedDomains() == []
    conn.close()
