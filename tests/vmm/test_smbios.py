"""kvmm's SMBIOS tables (src/vmm/arch/x86/smbios.c) read by Debian's
dmidecode: the tables virtkvmmd's configurations ask for (the
tests/xml2config goldens made from nova's spawn XML and from every
<sysinfo> group) through `dmidecode --from-dump`, and the very bytes a
running kvmm put at 0xF0000 in its guest's memory, read from the host
through /proc/PID/mem."""
import json
import os
import re
import subprocess

import pytest

from kvmmtest import GUEST, KVMM, TOP, UNIT_DIR, Api, start

DMIDECODE = "/usr/sbin/dmidecode"
XML2CONFIG = os.path.join(TOP, "tests", "xml2config")
NOVA_UUID = "3f0e7c52-8a4d-4b6e-9f21-5d7c0a9e1b34"
SMBIOS_ADDR, SMBIOS_SIZE = 0xF0000, 0x10000


def dmidecode(dump, *args):
    r = subprocess.run([DMIDECODE, "--from-dump", dump, *args], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    # dmidecode's complaints: checksums, lengths, counts, string indexes
    assert r.stderr == "", r.stderr
    assert not re.search(r"Invalid entry|Wrong DMI|checksum|BAD INDEX|OUT OF SPEC|truncated|corrupt",
                         r.stdout, re.I), r.stdout
    return r.stdout


def fields(text, header):
    """The 'Key: value' lines of the first section titled HEADER."""
    m = re.search(rf"^{re.escape(header)}\n((?:\t.*\n?)+)", text, re.M)
    assert m, f"no {header!r} in:\n{text}"
    return dict(re.findall(r"^\t([^:\t][^:]*): (.*)$", m.group(1), re.M))


def dumps(tmp, config):
    out3, out2 = os.path.join(tmp, "smbios3.bin"), os.path.join(tmp, "smbios2.bin")
    subprocess.run([os.path.join(UNIT_DIR, "smbios_dump"), config, out3, out2], check=True)
    return out3, out2


@pytest.mark.parametrize("ep", ["3.0.0", "2.8"])
def test_nova_spawn_tables(tmp, ep):
    """What nova puts in <sysinfo> is what dmidecode reads, through either
    entry point."""
    d3, d2 = dumps(tmp, os.path.join(XML2CONFIG, "nova-spawn.json"))
    out = dmidecode(d3 if ep == "3.0.0" else d2)
    assert f"SMBIOS {ep} present." in out
    sysinfo = fields(out, "System Information")
    assert sysinfo == {"Manufacturer": "OpenStack Foundation", "Product Name": "OpenStack Nova",
                       "Version": "26.2.1", "Serial Number": NOVA_UUID, "UUID": NOVA_UUID,
                       "Wake-up Type": "Power Switch", "SKU Number": "Not Specified",
                       "Family": "Virtual Machine"}
    bios = fields(out, "BIOS Information")
    assert bios["Vendor"] == "kvmm" and bios["Release Date"] == "Not Specified"
    assert fields(out, "Chassis Information")["Manufacturer"] == "kvmm"
    types = [int(t) for t in re.findall(r"^Handle 0x[0-9A-F]+, DMI type (\d+),", out, re.M)]
    assert types == [0, 1, 3, 32, 127]


def test_every_sysinfo_group(tmp):
    d3, _ = dumps(tmp, os.path.join(XML2CONFIG, "sysinfo-all.json"))
    out = dmidecode(d3)
    bios = fields(out, "BIOS Information")
    assert (bios["Vendor"], bios["Version"], bios["Release Date"], bios["BIOS Revision"]) == \
        ("kvmm", "1.0", "03/05/2024", "1.2")
    system = fields(out, "System Information")
    assert (system["Manufacturer"], system["Product Name"], system["SKU Number"]) == \
        ("Example & Co", "Test Machine", "TM-1")
    assert system["UUID"] == "0c7a4e1d-2b3f-4a5c-8d6e-7f8091a2b3c4"   # the domain's
    board = fields(out, "Base Board Information")
    assert {k: board[k] for k in ("Manufacturer", "Product Name", "Version", "Serial Number",
                                  "Asset Tag", "Location In Chassis")} == \
        {"Manufacturer": "Board Maker", "Product Name": "B1", "Version": "rev A",
         "Serial Number": "BS-0001", "Asset Tag": "asset-7", "Location In Chassis": "slot 1"}
    chassis = fields(out, "Chassis Information")
    assert {k: chassis[k] for k in ("Manufacturer", "Version", "Serial Number", "Asset Tag",
                                    "SKU Number")} == \
        {"Manufacturer": "Chassis Maker", "Version": "2", "Serial Number": "CS-9",
         "Asset Tag": "rack-4", "SKU Number": "C-SKU"}
    oem = re.search(r"^OEM Strings\n((?:\t.*\n?)+)", out, re.M).group(1)
    assert re.findall(r"String \d+: (.*)", oem) == ["myapp:some data", "second string"]


def guest_ram(pid, size):
    """The host address of a kvmm's guest RAM: its one anonymous mapping of
    the guest's size."""
    with open(f"/proc/{pid}/maps") as f:
        maps = [l.split() for l in f]
    found = [int(m[0].split("-")[0], 16) for m in maps
             if len(m) == 5 and int(m[0].split("-")[1], 16) - int(m[0].split("-")[0], 16) == size]
    assert len(found) == 1, maps
    return found[0]


def window_of(pid):
    """The 64 KiB at 0xF0000 of a running kvmm's 256 MiB guest."""
    with open(f"/proc/{pid}/mem", "rb") as mem:
        mem.seek(guest_ram(pid, 256 << 20) + SMBIOS_ADDR)
        return mem.read(SMBIOS_SIZE)


def read_window(tmp, window):
    """dmidecode's reading of the window's tables."""
    assert window[:5] == b"_SM3_" and window[0x20:0x24] == b"_SM_"
    # dmidecode's dump format: the entry point at 0, the table at the
    # file offset the entry point names (its guest address).
    dump = os.path.join(tmp, "guest.bin")
    with open(dump, "wb") as f:
        f.write(window[:0x20])
        f.seek(SMBIOS_ADDR)
        f.write(window)
    return dmidecode(dump)


def test_kvmm_puts_the_tables_where_the_guest_finds_them(kvm, tmp, vms):
    """kvmm, paused before the guest's first instruction, already holds
    the tables at 0xF0000: dmidecode reads nova's values from those bytes
    of the guest's memory, and without "smbios" kvmm's defaults."""
    with open(os.path.join(XML2CONFIG, "nova-spawn.json")) as f:
        nova = json.load(f)
    for with_smbios in (True, False):
        api = os.path.join(tmp, f"api-{with_smbios}.sock")
        conf = {"name": "smbios", "kernel": GUEST, "memory": 256 << 20, "serial": "none",
                "api_socket": api, "paused": True}
        if with_smbios:
            conf["smbios"] = nova["smbios"]
        path = os.path.join(tmp, "vm.json")
        with open(path, "w") as f:
            json.dump(conf, f)
        g = start(vms, [KVMM, "--config", path])
        c = Api(api)
        assert c.call("query-status")["return"]["state"] == "paused"
        window = window_of(g.proc.pid)
        c.call("quit")
        assert g.wait_exit() == 0
        out = read_window(tmp, window)
        sysinfo = fields(out, "System Information")
        if with_smbios:
            assert (sysinfo["Product Name"], sysinfo["UUID"]) == ("OpenStack Nova", NOVA_UUID)
            continue
        # The defaults docs/kvmm.md lists for an empty "smbios".
        types = [int(t) for t in re.findall(r"^Handle 0x[0-9A-F]+, DMI type (\d+),", out, re.M)]
        assert types == [0, 1, 3, 32, 127]
        assert (sysinfo["Manufacturer"], sysinfo["Product Name"]) == ("kvmm", "kvmm")
        assert sysinfo["UUID"] == "Not Settable"   # dmidecode's word for all zeros
        assert fields(out, "BIOS Information")["Vendor"] == "kvmm"
        assert fields(out, "Chassis Information")["Manufacturer"] == "kvmm"


def smbios_uuids(g):
    """The system UUIDs the test guest reported, one per boot."""
    return re.findall(r"KVMMTEST info smbios anchor=\S+ .*\buuid=(\S+)", "\n".join(g.lines))


def test_restore_of_a_stream_saved_without_smbios_takes_it(kvm, tmp, vms):
    """A stream saved without "smbios" (by a kvmm whose owner gave none)
    restores with the key given over it, as virtkvmmd now always gives it:
    the tables are in the saved RAM, so the guest goes on with the ones it
    booted with, and a reset rebuilds them with the given UUID."""
    uuid = "6b0e3a52-1c4d-4e8f-9a7b-2d5c8e1f0a93"
    zero = "00000000-0000-0000-0000-000000000000"
    sock_a, sock_b = os.path.join(tmp, "a.sock"), os.path.join(tmp, "b.sock")
    conf = os.path.join(tmp, "vm.json")
    with open(conf, "w") as f:
        json.dump({"kernel": GUEST, "memory": "256M", "serial": "stdio", "api_socket": sock_a,
                   "cmdline": "kvmmtest.action=live kvmmtest.tick_ms=50 kvmmtest.smbios=1"}, f)
    g = start(vms, [KVMM, "--config", conf])
    g.wait_for(r"KVMMTEST live n=3 ")
    assert smbios_uuids(g) == [zero]
    state = os.path.join(tmp, "vm.state")
    a = Api(sock_a)
    assert "return" in a.call("save", {"path": state}, timeout=60)
    a.call("quit")
    assert g.wait_exit() == 0
    n = int(re.findall(r"KVMMTEST live n=(\d+) ", "\n".join(g.lines))[-1])

    over = os.path.join(tmp, "over.json")
    with open(over, "w") as f:
        json.dump({"api_socket": sock_b, "smbios": {"system": {"uuid": uuid}}}, f)
    h = start(vms, [KVMM, "--restore", state, "--config", over])
    h.wait_for(r"KVMMTEST live n=%d " % (n + 2))
    assert not [l for l in h.lines if "KVMMTEST boot" in l], "the guest booted again"
    b = Api(sock_b)
    assert b.call("reset")["return"] == {}
    h.wait_for(r"KVMMTEST info smbios anchor=")
    assert smbios_uuids(h) == [uuid]
    b.call("quit")
    assert h.wait_exit() == 0
