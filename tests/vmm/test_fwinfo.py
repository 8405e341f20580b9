"""SMBIOS and fw_cfg as the test guest finds them (tests/guest/fwinfo.c),
under kvmm and under QEMU (q35, SeaBIOS) as the reference: nova's system
strings and UUID through the entry point the guest scans for, and the
guest writing its VMCOREINFO note's address into fw_cfg's etc/vmcoreinfo
by DMA, as Linux's qemu_fw_cfg does; kvmm then names the note in its log
and in its crash report."""
import json
import os
import re

import pytest

from kvmmtest import GUEST, KVMM, qemu_argv, start

UUID = "3f0e7c52-8a4d-4b6e-9f21-5d7c0a9e1b34"
SYSTEM = {"manufacturer": "OpenStack Foundation", "product": "OpenStack Nova",
          "serial": UUID, "family": "Virtual Machine"}
NOTE = 0x1234000


def kvmm(vms, tmp, cmdline, **conf):
    path = os.path.join(tmp, "vm.json")
    with open(path, "w") as f:
        json.dump(dict({"kernel": GUEST, "memory": "256M", "cmdline": cmdline,
                        "serial": "stdio", "no_reboot": True}, **conf), f)
    return start(vms, [KVMM, "-v", "--config", path])


def qemu(vms, cmdline, extra):
    return start(vms, qemu_argv(cmdline, extra=["-no-reboot"] + extra))


def facts(g, prefix):
    """The k=v facts of the guest's `info PREFIX ...` records."""
    out = {}
    for _, text in g.records("info"):
        if text.startswith(prefix + " "):
            for m in re.finditer(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)', text):
                v = m.group(2)
                out[m.group(1)] = v[1:-1] if v.startswith('"') else v
    return out


@pytest.mark.parametrize("vmm", ["kvmm", "qemu"])
def test_guest_reads_nova_system_information(kvm, vms, tmp, vmm):
    cmdline = "kvmmtest.action=poweroff kvmmtest.smbios=1"
    if vmm == "kvmm":
        g = kvmm(vms, tmp, cmdline, smbios={"system": dict(SYSTEM, uuid=UUID)})
    else:
        g = qemu(vms, cmdline, ["-uuid", UUID, "-smbios", "type=1," + ",".join(
            f"{k}={v}" for k, v in SYSTEM.items())])
    g.wait_for(r"KVMMTEST done")
    f = facts(g, "smbios")
    assert f.get("anchor") in ("_SM3_", "_SM_"), g.records("info")
    assert {k: f[k] for k in SYSTEM} == SYSTEM
    assert f["uuid"] == UUID
    assert not g.records("fail"), g.records("fail")
    assert g.wait_exit() == 0


def test_default_tables_without_the_key(kvm, vms, tmp):
    """Without "smbios" the guest still finds tables, kvmm's defaults (as
    QEMU gives every guest its own): Linux's DMI, cloud-init and
    systemd-detect-virt need them."""
    g = kvmm(vms, tmp, "kvmmtest.action=poweroff kvmmtest.smbios=1")
    g.wait_for(r"KVMMTEST done")
    f = facts(g, "smbios")
    assert f.get("anchor") == "_SM3_", g.records("info")
    assert (f["manufacturer"], f["product"]) == ("kvmm", "kvmm"), f
    assert f["uuid"] == "00000000-0000-0000-0000-000000000000", f
    # Types 0, 1, 3, 32 and 127.
    assert "smbios_structures=5" in [t for _, t in g.records("info")], g.records("info")
    assert not g.records("fail"), g.records("fail")
    assert g.wait_exit() == 0


@pytest.mark.parametrize("vmm", ["kvmm", "qemu"])
def test_guest_writes_its_vmcoreinfo_note(kvm, vms, tmp, vmm):
    cmdline = f"kvmmtest.action=crash kvmmtest.vmcoreinfo={NOTE:#x}"
    if vmm == "kvmm":
        g = kvmm(vms, tmp, cmdline, vmcoreinfo=True)
    else:
        g = qemu(vms, cmdline, ["-device", "vmcoreinfo"])
    g.wait_for(r"KVMMTEST action crash")
    f = facts(g, "fw_cfg")
    assert (f["signature"], f["dma"], f["vmcoreinfo"], f["vmcoreinfo_write"]) == \
        ("QEMU", "yes", "found", "ok"), g.records("info")
    if vmm == "kvmm":
        assert g.wait_exit() == 3
        err = g.stderr.decode()
        assert f"guest VMCOREINFO note at {NOTE:#x}, 4096 bytes" in err, err
        assert re.search(rf"guest triple fault on vCPU 0: .*, VMCOREINFO note at {NOTE:#x} \(4096 bytes\)",
                         err), err
    else:
        assert g.wait_exit() == 0


def test_no_fw_cfg_without_vmcoreinfo(kvm, vms, tmp):
    g = kvmm(vms, tmp, f"kvmmtest.action=crash kvmmtest.vmcoreinfo={NOTE:#x}")
    g.wait_for(r"KVMMTEST action crash")
    assert facts(g, "fw_cfg") == {"signature": "none"}
    assert g.wait_exit() == 3
    assert "VMCOREINFO" not in g.stderr.decode()
