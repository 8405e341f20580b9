"""The test guest booted through the PVH entry (Xen's PHYS32_ENTRY ELF
note, struct hvm_start_info in %ebx), under kvmm and under QEMU, which
detects the note on -kernel: both must give the same answers as the
bzImage does through the Linux boot protocol."""
import os
import struct
import zlib

import pytest

import kvmmtest
from kvmmtest import Runner

PVH = os.path.join(os.path.dirname(kvmmtest.GUEST), "kvmm-testguest-pvh.elf")
XEN_ELFNOTE_PHYS32_ENTRY = 18


class PvhRunner(Runner):
    """Runner with -kernel/--kernel pointing at the PVH ELF."""

    def start(self, vms, tmp, cmdline, cpus=1, memory="256M", initrd=None,
              no_reboot=False, control=False):
        self.sock = os.path.join(tmp, "ctl.sock")
        if self.name == "kvmm":
            extra = ["--no-reboot"] if no_reboot else []
            if control:
                extra += ["--api-socket", self.sock]
            argv = kvmmtest.kvmm_argv(cmdline, cpus, memory, extra, kernel=PVH, initrd=initrd)
        else:
            extra = ["-no-reboot"] if no_reboot else []
            if control:
                extra += ["-qmp", f"unix:{self.sock},server=on,wait=off"]
            argv = kvmmtest.qemu_argv(cmdline, cpus, memory, extra, initrd=initrd)
            argv[argv.index("-kernel") + 1] = PVH
        return kvmmtest.start(vms, argv)


RUNNERS = [pytest.param(PvhRunner("kvmm"), id="kvmm"), pytest.param(PvhRunner("qemu"), id="qemu")]


def no_failures(g):
    fails = g.records("fail")
    assert not fails, f"guest self-checks failed: {fails}"


def booted_pvh(g):
    boots = g.records("boot")
    assert boots and boots[0][1].startswith("v1 entry=pvh"), boots


def test_pvh_elf_has_the_note_and_loads_at_its_run_address():
    """What loaders look at: one PT_LOAD at p_paddr 0x100000, a PT_NOTE
    with Xen's PHYS32_ENTRY inside it, and no bzImage header (QEMU would
    take the Linux path on seeing "HdrS" at 0x202)."""
    with open(PVH, "rb") as f:
        elf = f.read()
    assert elf[:5] == b"\x7fELF\x02"
    assert elf[0x202:0x206] != b"HdrS"
    phoff, = struct.unpack_from("<Q", elf, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", elf, 0x36)
    loads, entry = [], None
    for i in range(phnum):
        p_type, _, off, vaddr, paddr, filesz, memsz, align = struct.unpack_from(
            "<IIQQQQQQ", elf, phoff + i * phentsize)
        if p_type == 1:
            loads.append((paddr, vaddr, memsz))
        elif p_type == 4:
            assert align == 4, "QEMU aligns the note name by p_align"
            pos = off
            while pos < off + filesz:
                namesz, descsz, ntype = struct.unpack_from("<III", elf, pos)
                name = elf[pos + 12:pos + 12 + namesz]
                desc = pos + 12 + (namesz + 3) // 4 * 4
                if name == b"Xen\0" and ntype == XEN_ELFNOTE_PHYS32_ENTRY:
                    entry = int.from_bytes(elf[desc:desc + descsz], "little")
                pos = desc + (descsz + 3) // 4 * 4
    assert [l[:2] for l in loads] == [(0x100000, 0x100000)]
    assert entry is not None and 0x100000 < entry < 0x100000 + loads[0][2]


@pytest.mark.parametrize("runner", RUNNERS)
@pytest.mark.parametrize("cpus", [1, 2])
def test_pvh_guest_sees_and_starts_every_cpu(kvm, vms, tmp, runner, cpus):
    g = runner.start(vms, tmp, "kvmmtest.action=poweroff", cpus=cpus)
    g.wait_for(r"KVMMTEST done")
    booted_pvh(g)
    facts = g.info()
    assert facts["boot_protocol"] == "pvh"
    assert facts["cpus_madt"] == str(cpus)
    assert facts["cpus_online"] == str(cpus)
    # Both loaders pass the RSDP in start_info; the guest checks it is one.
    assert facts["found"] == "start_info"
    assert int(facts["rsdp_paddr"], 16) == int(facts["rsdp"], 16)
    no_failures(g)
    assert g.wait_exit() == runner.exit_status("poweroff")


@pytest.mark.parametrize("runner", RUNNERS)
@pytest.mark.parametrize("memory,mib", [("256M", 256), ("4G", 4096)])
def test_pvh_memory_map_matches_configuration(kvm, vms, tmp, runner, memory, mib):
    g = runner.start(vms, tmp, "kvmmtest.action=poweroff", memory=memory)
    g.wait_for(r"KVMMTEST done")
    booted_pvh(g)
    facts = g.info()
    usable = int(facts["mem_usable"])
    # Firmware keeps a little for itself (EBDA, BIOS areas): allow 2%.
    assert mib * 2**20 * 0.98 <= usable <= mib * 2**20
    entries = [t for _, t in g.records("info") if t.startswith("e820 ")]
    assert len(entries) == int(facts["memmap_entries"])
    if mib > 3072:
        bases = [int(t.split("base=")[1].split()[0], 16) for t in entries]
        assert max(bases) >= 4 << 30, "RAM above 4 GiB missing from the memory map"
    no_failures(g)
    assert g.wait_exit() == runner.exit_status("poweroff")


@pytest.mark.parametrize("runner", RUNNERS)
@pytest.mark.parametrize("memory", ["256M", "4G"])
def test_pvh_guest_receives_cmdline_and_initrd(kvm, vms, tmp, runner, memory):
    data = os.urandom(300 * 1024 + 17)
    path = os.path.join(tmp, "initrd.img")
    with open(path, "wb") as f:
        f.write(data)
    cmdline = "kvmmtest.action=poweroff foo=bar quoted=a-b_c.d"
    g = runner.start(vms, tmp, cmdline, initrd=path, memory=memory)
    g.wait_for(r"KVMMTEST done")
    booted_pvh(g)
    facts = g.info()
    assert facts["cmdline"] == cmdline
    assert facts["nr_modules"] == "1"
    assert int(facts["initrd_size"]) == len(data)
    assert int(facts["initrd_crc32"], 16) == zlib.crc32(data)
    no_failures(g)
    assert g.wait_exit() == runner.exit_status("poweroff")


@pytest.mark.parametrize("runner", RUNNERS)
def test_pvh_without_initrd(kvm, vms, tmp, runner):
    g = runner.start(vms, tmp, "kvmmtest.action=poweroff")
    g.wait_for(r"KVMMTEST done")
    facts = g.info()
    assert facts["nr_modules"] == "0"
    assert facts["initrd"] == "none"
    no_failures(g)
    assert g.wait_exit() == runner.exit_status("poweroff")


@pytest.mark.parametrize("runner", RUNNERS)
def test_pvh_power_button_powers_the_guest_off(kvm, vms, tmp, runner):
    g = runner.start(vms, tmp, "kvmmtest.action=wait", cpus=2, control=True)
    g.wait_for(r"KVMMTEST tick")
    booted_pvh(g)
    runner.power_button()
    g.wait_for(r"KVMMTEST event power-button")
    no_failures(g)
    assert g.wait_exit() == runner.exit_status("poweroff")


@pytest.mark.parametrize("runner", RUNNERS)
def test_pvh_reboot_boots_again_through_pvh(kvm, vms, tmp, runner):
    g = runner.start(vms, tmp, "kvmmtest.action=reboot", control=True)
    # The record after "boot", so that the second boot line is complete.
    g.wait_for(r"KVMMTEST info start_info_version=", count=2, timeout=60)
    assert [t for _, t in g.records("boot")][:2] == ["v1 entry=pvh"] * 2
    g.kill()


@pytest.mark.parametrize("runner", RUNNERS)
def test_pvh_no_reboot_exits_on_guest_reset(kvm, vms, tmp, runner):
    g = runner.start(vms, tmp, "kvmmtest.action=reboot", no_reboot=True)
    assert g.wait_exit() == runner.exit_status("reboot")
    assert len(g.records("boot")) == 1
