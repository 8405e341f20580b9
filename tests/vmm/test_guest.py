"""The test guest's scenarios, under kvmm and under QEMU (-M q35): both
must give the same answers, which keeps the guest honest to the specs."""
import os
import zlib

import pytest

import kvmmtest
from kvmmtest import Runner

RUNNERS = [pytest.param(Runner("kvmm"), id="kvmm"), pytest.param(Runner("qemu"), id="qemu")]


def no_failures(g):
    fails = g.records("fail")
    assert not fails, f"guest self-checks failed: {fails}"


@pytest.mark.parametrize("runner", RUNNERS)
@pytest.mark.parametrize("cpus", [1, 2, 4])
def test_guest_sees_and_starts_every_cpu(kvm, vms, tmp, runner, cpus):
    g = runner.start(vms, tmp, "kvmmtest.action=poweroff", cpus=cpus)
    g.wait_for(r"KVMMTEST done")
    facts = g.info()
    assert facts["cpus_madt"] == str(cpus)
    assert facts["cpus_online"] == str(cpus)
    no_failures(g)
    assert g.wait_exit() == runner.exit_status("poweroff")


@pytest.mark.parametrize("runner", RUNNERS)
@pytest.mark.parametrize("memory,mib", [("128M", 128), ("1G", 1024), ("4G", 4096)])
def test_guest_memory_matches_configuration(kvm, vms, tmp, runner, memory, mib):
    g = runner.start(vms, tmp, "kvmmtest.action=poweroff", memory=memory)
    g.wait_for(r"KVMMTEST done")
    usable = int(g.info()["mem_usable"])
    # Firmware keeps a little for itself (EBDA, BIOS areas): allow 2%.
    assert mib * 2**20 * 0.98 <= usable <= mib * 2**20
    if mib > 3072:
        bases = [int(t.split("base=")[1].split()[0], 16) for _, t in g.records("info") if t.startswith("e820")]
        assert max(bases) >= 4 << 30, "RAM above 4 GiB missing from the e820 map"
    assert g.wait_exit() == runner.exit_status("poweroff")


@pytest.mark.parametrize("runner", RUNNERS)
def test_guest_receives_cmdline_and_initrd(kvm, vms, tmp, runner):
    data = os.urandom(300 * 1024 + 17)
    path = os.path.join(tmp, "initrd.img")
    with open(path, "wb") as f:
        f.write(data)
    cmdline = "kvmmtest.action=poweroff console=ttyS0 quoted=a-b_c.d"
    g = runner.start(vms, tmp, cmdline, initrd=path)
    g.wait_for(r"KVMMTEST done")
    facts = g.info()
    assert facts["cmdline"] == cmdline
    assert int(facts["initrd_size"]) == len(data)
    assert int(facts["initrd_crc32"], 16) == zlib.crc32(data)
    assert g.wait_exit() == runner.exit_status("poweroff")


@pytest.mark.parametrize("runner", RUNNERS)
def test_acpi_tables_are_valid_for_the_guest(kvm, vms, tmp, runner):
    g = runner.start(vms, tmp, "kvmmtest.action=poweroff", cpus=2)
    g.wait_for(r"KVMMTEST done")
    passed = [t.split()[0] for _, t in g.records("pass")]
    assert "acpi-checksums" in passed
    tables = g.info()["tables"].split(",")
    for sig in ("FACP", "APIC"):
        assert sig in tables
    no_failures(g)
    g.wait_exit()


@pytest.mark.parametrize("runner", RUNNERS)
def test_guest_reboot_boots_again(kvm, vms, tmp, runner):
    g = runner.start(vms, tmp, "kvmmtest.action=reboot", control=True)
    g.wait_for(r"KVMMTEST boot", count=2, timeout=60)
    g.kill()


@pytest.mark.parametrize("runner", RUNNERS)
def test_no_reboot_exits_on_guest_reset(kvm, vms, tmp, runner):
    g = runner.start(vms, tmp, "kvmmtest.action=reboot", no_reboot=True)
    assert g.wait_exit() == runner.exit_status("reboot")
    assert len(g.records("boot")) == 1


@pytest.mark.parametrize("runner", RUNNERS)
def test_power_button_powers_the_guest_off(kvm, vms, tmp, runner):
    g = runner.start(vms, tmp, "kvmmtest.action=wait", control=True)
    g.wait_for(r"KVMMTEST tick")
    runner.power_button()
    g.wait_for(r"KVMMTEST event power-button")
    assert g.wait_exit() == runner.exit_status("poweroff")


@pytest.mark.parametrize("runner", RUNNERS)
def test_triple_fault_stops_the_vm(kvm, vms, tmp, runner):
    g = runner.start(vms, tmp, "kvmmtest.action=crash", no_reboot=True)
    g.wait_for(r"KVMMTEST action crash")
    assert g.wait_exit() == runner.exit_status("crash")
    if runner.name == "kvmm":
        err = g.stderr.decode()
        assert "triple fault" in err and "RIP 0x" in err and "instruction bytes [" in err


@pytest.mark.parametrize("entry", ["32", "64"])
def test_guest_32_and_64_bit_entries_under_qemu(kvm, vms, tmp, entry):
    """QEMU's -kernel only takes the 16-bit path; the guest's multiboot
    shim loads the bzImage as a 32- or 64-bit boot-protocol loader would,
    proving those entries against QEMU rather than against kvmm."""
    from kvmmtest import QEMU
    shim = os.path.join(os.path.dirname(kvmmtest.GUEST), "kvmm-testguest-mbshim.elf")
    data = os.urandom(4096 + 5)
    initrd = os.path.join(tmp, "initrd.img")
    with open(initrd, "wb") as f:
        f.write(data)
    cmdline = "kvmmtest.action=poweroff shim=yes"
    g = kvmmtest.start(vms, [QEMU, "-M", "q35", "-accel", "kvm", "-cpu", "host,-arch-capabilities",
                             "-m", "256", "-smp", "2", "-kernel", shim,
                             "-initrd", f"{kvmmtest.GUEST} entry={entry},{initrd}",
                             "-append", cmdline, "-serial", "stdio", "-display", "none",
                             "-nodefaults", "-no-user-config", "-no-reboot"])
    g.wait_for(r"KVMMTEST done")
    facts = g.info()
    assert g.records("boot")[0][1].startswith(f"v1 entry={entry}")
    assert facts["cmdline"] == cmdline
    assert facts["cpus_online"] == "2"
    assert int(facts["initrd_crc32"], 16) == zlib.crc32(data)
    no_failures(g)
    assert g.wait_exit() == 0
