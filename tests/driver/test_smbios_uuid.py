"""Every domain's guest finds SMBIOS tables with the domain's UUID as the
system's (type 1), as libvirt's -uuid gives it under QEMU: the guest's
/sys/class/dmi/id/product_uuid, which cloud-init and nova's guests read.
The test guest (kvmmtest.smbios=1) scans for the tables as Linux's
dmi_scan does and reports type 1; the UUID is compared with virsh
domuuid.  <sysinfo> stays out of the tables unless <smbios
mode='sysinfo'/> asks for it, as under libvirt; <smbios mode='emulate'/>
(libvirt's default said outright) gives the same guest and stays in the
definition."""
import re

import libvirt
import pytest

from drvtest import virsh
from test_lifecycle import guest_xml, serial, wait_for

SYSINFO = """  <sysinfo type='smbios'>
    <system><entry name='manufacturer'>Example &amp; Co</entry></system>
  </sysinfo>
"""


def smbios_report(root, name):
    """The k=v facts of the guest's `info smbios` record, once complete
    (its newline written)."""
    line = wait_for(lambda: re.search(r"^KVMMTEST info smbios (.*?)\r?\n", serial(root, name), re.M),
                    "the guest's SMBIOS report")[1]
    return dict(re.findall(r'(\w+)=("[^"]*"|\S+)', line))


@pytest.fixture
def conn(daemon):
    c = libvirt.open(daemon.uri())
    yield c
    c.close()


@pytest.mark.parametrize("sysinfo,emulate", [(False, False), (True, False), (True, True)],
                         ids=["plain", "sysinfo-without-smbios-mode", "smbios-emulate"])
def test_guest_finds_the_domains_uuid(daemon, conn, kvm, sysinfo, emulate):
    d = daemon
    xml = guest_xml(d.root, extra_cmdline=" kvmmtest.smbios=1")
    if sysinfo:
        xml = xml.replace("  <os>", SYSINFO + "  <os>")
        assert "<sysinfo" in xml
    if emulate:
        xml = xml.replace("</os>", "<smbios mode='emulate'/></os>")
        assert "<smbios mode='emulate'/>" in xml
    dom = conn.defineXML(xml)
    # Kept in the definition as libvirt keeps it, and only when given.
    defined = virsh(d.uri(), "dumpxml", "--inactive", "g1").stdout
    assert ("<smbios mode='emulate'/>" in defined) == emulate, defined
    uuid = virsh(d.uri(), "domuuid", "g1").stdout.strip()
    assert re.fullmatch(r"[0-9a-f-]{36}", uuid) and uuid == dom.UUIDString()
    dom.create()
    f = smbios_report(d.root, "g1")
    assert f["anchor"] in ("_SM3_", "_SM_"), f
    assert f["uuid"] == uuid, f
    # kvmm's defaults, not <sysinfo>'s manufacturer, without mode='sysinfo'
    # (with mode='emulate' too).
    assert f["manufacturer"].strip('"') == "kvmm" and f["product"].strip('"') == "kvmm", f
    wait_for(lambda: "KVMMTEST done" in serial(d.root, "g1"), "the guest's checks")
    assert "KVMMTEST fail" not in serial(d.root, "g1")
    dom.destroy()
