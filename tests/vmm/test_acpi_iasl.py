"""kvmm's ACPI tables through Debian's ACPICA disassembler and compiler:
no errors, no warnings, no checksum complaints; the DSDT recompiles to the
same AML."""
import glob
import os
import re
import subprocess

import pytest

from kvmmtest import UNIT_DIR

IASL = "/usr/bin/iasl"
BAD = re.compile(r"incorrect|warning|error", re.I)


@pytest.mark.parametrize("ncpus,extra", [(1, []), (2, []), (8, []), (254, []), (2, ["fw_cfg"])],
                         ids=["1", "2", "8", "254", "2-fw_cfg"])
def test_iasl_accepts_every_table(tmp, ncpus, extra):
    subprocess.run([os.path.join(UNIT_DIR, "acpi_dump"), tmp, str(ncpus), *extra], check=True)
    # iasl cannot read a lone RSDP; the unit tests check it.
    tables = [os.path.join(tmp, f"{t}.dat") for t in ("apic", "facp", "facs", "xsdt", "rsdt", "dsdt", "mcfg")]
    r = subprocess.run([IASL, "-d", *tables], cwd=tmp, capture_output=True, text=True)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    # iasl exits 0 even on a bad checksum: read what it says and writes.
    assert not BAD.search(out.replace("0 Errors, 0 Warnings", "")), out
    for dsl in glob.glob(os.path.join(tmp, "*.dsl")):
        text = open(dsl).read()
        assert not re.search(r"incorrect checksum", text, re.I), dsl
    facp = open(os.path.join(tmp, "facp.dsl")).read()
    assert re.search(r"PM1A Event Block Address : 00000600", facp), facp
    assert re.search(r"SCI Interrupt : 0009", facp)
    apic = open(os.path.join(tmp, "apic.dsl")).read()
    assert len(re.findall(r"Subtable Type : 00 \[Processor Local APIC\]", apic)) == ncpus

    r = subprocess.run([IASL, "dsdt.dsl"], cwd=tmp, capture_output=True, text=True)
    assert r.returncode == 0 and "0 Errors, 0 Warnings" in r.stdout, r.stdout + r.stderr
    ours = open(os.path.join(tmp, "dsdt.dat"), "rb").read()
    theirs = open(os.path.join(tmp, "dsdt.aml"), "rb").read()
    assert ours[36:] == theirs[36:], "recompiled DSDT differs from ours"
    dsdt = open(os.path.join(tmp, "dsdt.dsl")).read()
    assert ('Name (_HID, "QEMU0002")' in dsdt) == bool(extra), dsdt
    dsdt = open(os.path.join(tmp, "dsdt.dsl")).read()
    assert re.search(r"Device \(RTC\)", dsdt) and re.search(r"Device \(COM1\)", dsdt)
    kbd = dsdt[dsdt.index("Device (KBD)"):]
    kbd = kbd[:kbd.index("Device (", 1)]
    assert 'EisaId ("PNP0303")' in kbd, kbd
    ports = re.findall(r"IO \(Decode16,\s*(0x\w+),\s*// Range Minimum\s*(0x\w+),\s*// Range Maximum"
                       r"\s*0x01,\s*// Alignment\s*(0x\w+),\s*// Length", kbd)
    assert ports == [("0x0060", "0x0060", "0x01"), ("0x0064", "0x0064", "0x01")], kbd
    assert re.search(r"IRQNoFlags \(\)\s*\{1\}", kbd), kbd
    assert re.search(r"Name \(_S5, Package \(0x04\)[^{]*\{\s*0x05,\s*0x05", dsdt), dsdt
    # PCI: the host bridge with its windows, ECAM in the MCFG and reserved
    # as a motherboard resource (what Linux's pci_mmcfg checks).
    pci0 = dsdt[dsdt.index("Device (PCI0)"):]
    assert 'EisaId ("PNP0A08")' in pci0 and 'EisaId ("PNP0A03")' in pci0
    assert re.search(r"Name \(_SEG, Zero\)", pci0) and re.search(r"Name \(_BBN, Zero\)", pci0)
    assert re.search(r"WordBusNumber.*\n.*\n\s*0x0000,\s*// Range Minimum\n\s*0x0000,\s*// Range Maximum", pci0)
    assert re.search(r"0xC0000000,\s*// Range Minimum\n\s*0xDFFFFFFF,\s*// Range Maximum", pci0)
    assert re.search(r'EisaId \("PNP0C02"\)[^}]*Memory32Fixed \(ReadWrite,\s*0xE0000000,\s*// Address Base\s*0x00100000', dsdt)
    # PCI hotplug (docs/hotplug.md): GPE0 in the FADT, the slot registers,
    # a device per slot with _ADR, _SUN and an _EJ0 writing its bit, PCNT
    # notifying each slot, and the GPE 1 handler calling it.
    assert re.search(r"GPE0 Block Address : 0000060C", facp), facp
    assert re.search(r"GPE0 Block Length : 04", facp), facp
    assert re.search(r"OperationRegion \(PCST, SystemIO, 0xAE00, 0x08\)", pci0)
    assert re.search(r"OperationRegion \(SEJ, SystemIO, 0xAE08, 0x04\)", pci0)
    for slot in range(1, 32):
        name = f"S{slot:02X}"
        m = re.search(r"Device \(%s\)\s*\{\s*Name \(_ADR, (0x[0-9A-F]+|One|Zero)\)[^\n]*\n\s*"
                      r"Name \(_SUN, (0x[0-9A-F]+|One)\)[^\n]*\n\s*Method \(_EJ0, 1, NotSerialized\)[^{]*"
                      r"\{\s*B0EJ = (0x[0-9A-F]+)" % name, pci0)
        assert m, name
        assert int(m.group(1), 16) == slot << 16
        assert (1 if m.group(2) == "One" else int(m.group(2), 16)) == slot
        assert int(m.group(3), 16) == 1 << slot
        bit = "0x%02X" % (1 << slot) if slot < 8 else "0x%04X" % (1 << slot) if slot < 16 else "0x%08X" % (1 << slot)
        assert re.search(r"If \(\(PCIU & %s\)\)\s*\{\s*Notify \(%s, One\)" % (bit, name), pci0), name
        assert re.search(r"If \(\(PCID & %s\)\)\s*\{\s*Notify \(%s, 0x03\)" % (bit, name), pci0), name
    assert re.search(r"Scope \(_GPE\)\s*\{\s*Method \(_E01, 0, NotSerialized\)[^{]*\{\s*\\_SB\.PCI0\.PCNT \(\)", dsdt), dsdt
    mcfg = open(os.path.join(tmp, "mcfg.dsl")).read()
    assert re.search(r"Base Address : 00000000E0000000", mcfg), mcfg
    assert re.search(r"Start Bus Number : 00", mcfg) and re.search(r"End Bus Number : 00", mcfg)


@pytest.mark.parametrize("ncpus,maxcpus", [(1, 2), (2, 8), (1, 254)], ids=["1-2", "2-8", "1-254"])
def test_iasl_cpu_hotplug(tmp, ncpus, maxcpus):
    """vCPU hotplug (docs/hotplug.md): the MADT lists every possible CPU,
    those past the boot set online-capable and not enabled; each processor
    device's _STA comes from the CPU hotplug registers, _MAT names its
    APIC ID, every one but CPU 0 has _EJ0; GPE 2 runs the scan."""
    subprocess.run([os.path.join(UNIT_DIR, "acpi_dump"), tmp, str(ncpus), f"max={maxcpus}"], check=True)
    tables = [os.path.join(tmp, f"{t}.dat") for t in ("apic", "facp", "facs", "xsdt", "rsdt", "dsdt", "mcfg")]
    r = subprocess.run([IASL, "-d", *tables], cwd=tmp, capture_output=True, text=True)
    out = r.stdout + r.stderr
    assert r.returncode == 0 and not BAD.search(out.replace("0 Errors, 0 Warnings", "")), out
    apic = open(os.path.join(tmp, "apic.dsl")).read()
    flags = re.findall(r"Local Apic ID : ([0-9A-F]{2})\n.*Flags \(decoded below\) : ([0-9A-F]{8})", apic)
    assert [(int(i, 16), int(f, 16)) for i, f in flags] == \
        [(i, 1 if i < ncpus else 2) for i in range(maxcpus)], apic
    assert apic.count("Runtime Online Capable : 1") == maxcpus - ncpus

    r = subprocess.run([IASL, "dsdt.dsl"], cwd=tmp, capture_output=True, text=True)
    assert r.returncode == 0 and "0 Errors, 0 Warnings" in r.stdout, r.stdout + r.stderr
    ours = open(os.path.join(tmp, "dsdt.dat"), "rb").read()
    theirs = open(os.path.join(tmp, "dsdt.aml"), "rb").read()
    assert ours[36:] == theirs[36:], "recompiled DSDT differs from ours"
    dsdt = open(os.path.join(tmp, "dsdt.dsl")).read()
    assert re.search(r"OperationRegion \(PRS0, SystemIO, 0xAF00, 0x04\)", dsdt)
    assert re.search(r"OperationRegion \(PRS1, SystemIO, 0xAF04, 0x02\)", dsdt)
    assert re.search(r"OperationRegion \(PRS2, SystemIO, 0xAF08, 0x04\)", dsdt)
    assert re.search(r"Method \(_E02, 0, NotSerialized\)[^{]*\{\s*\\_SB\.CSCN \(\)", dsdt), dsdt
    assert re.search(r"Method \(_E01, 0, NotSerialized\)[^{]*\{\s*\\_SB\.PCI0\.PCNT \(\)", dsdt), dsdt
    for i in range(maxcpus):
        dev = re.search(r"Device \(C%03X\)\s*\{(.*?)\n        \}" % i, dsdt, re.S)
        assert dev, i
        body = dev.group(1)
        arg = "Zero" if i == 0 else "One" if i == 1 else "0x%02X" % i
        assert re.search(r"Method \(_STA, 0, NotSerialized\)[^{]*\{\s*Return \(CSTA \(%s\)\)" % arg, body), body
        mat = re.search(r"Name \(_MAT, Buffer \(0x08\)[^{]*\{\s*((?:0x[0-9A-F]{2},? *){8})", body)
        assert mat and [int(b, 16) for b in mat.group(1).replace(",", " ").split()] == \
            [0, 8, i, i, 1, 0, 0, 0], body
        assert ("_EJ0" in body) == (i != 0), body
        if i:
            assert re.search(r"Method \(_EJ0, 1, NotSerialized\)[^{]*\{\s*CEJ0 \(%s\)" % arg, body), body
        assert re.search(r"If \(\(Arg0 == %s\)\)\s*\{\s*Notify \(C%03X, Arg1\)" % (arg, i), dsdt), i
