"""PCI hotplug (docs/hotplug.md): a virtio disk added to the running test
guest, enumerated and read by it, then removed at the host's request and
ejected by the guest; the same scenario under QEMU's pc machine, whose
ACPI hotplug interface kvmm's follows.  Then a NIC, and the refusals."""
import json
import os
import socket
import subprocess
import sys
import zlib

import jsonschema
import pytest

import kvmmtest
from virtiotest import add_tap, by_dev, checks, finish, probe

SECTOR = 512
CMDLINE = "kvmmtest.hotplug=120 kvmmtest.action=wait kvmmtest.smp=off"


def make_disk(tmp, name, sectors=2048):
    path = os.path.join(tmp, name)
    with open(path, "wb") as f:
        for s in range(sectors):
            f.write(s.to_bytes(4, "little") * (SECTOR // 4))
    return path


def crc_of(path, count=64):
    with open(path, "rb") as f:
        return zlib.crc32(f.read(count * SECTOR))


with open(os.path.join(kvmmtest.TOP, "schemas", "api.schema.json")) as f:
    SCHEMA = json.load(f)


def valid(ref, doc):
    """doc matches $defs/ref of schemas/api.schema.json."""
    sub = {"$schema": SCHEMA["$schema"], "$defs": SCHEMA["$defs"], "$ref": f"#/$defs/{ref}"}
    jsonschema.Draft202012Validator(sub).validate(doc)
    return doc


def nfds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def start(vms, tmp, vmm, cmdline=CMDLINE, prefix=(), extra=()):
    sock = os.path.join(tmp, "ctl.sock")
    if vmm == "kvmm":
        argv = kvmmtest.kvmm_argv(cmdline, 1, "256M", ["--api-socket", sock] + list(extra))
    else:
        # The pc machine: ACPI PCI hotplug of the root bus (q35 has
        # PCIe slots instead).
        argv = kvmmtest.qemu_argv(cmdline, 1, "256M",
                                  ["-qmp", f"unix:{sock},server=on,wait=off"], machine="pc")
    return kvmmtest.start(vms, list(prefix) + argv), sock


def power_off(g, vmm, sock):
    """Presses the power button once the guest armed it (it does just
    before its done record) and waits for it to power off."""
    g.wait_for(r"KVMMTEST done", timeout=60)
    if vmm == "kvmm":
        api = kvmmtest.Api(sock)
        assert "return" in api.call("power-button")
        api.close()
    else:
        q = kvmmtest.Qmp(sock)
        assert "return" in q.execute("system_powerdown")
        q.close()
    finish(g)


def guest_handled_one_disk(g, path):
    """The guest's records of one add and one eject of disk blk0."""
    g.wait_for(r"KVMMTEST pass hotplug added=1 removed=1", timeout=120)
    add = checks(g, "pass", "hotplug-add")
    assert len(add) == 1 and add[0]["dev"] == "blk0" and add[0]["device"] == "1042", add
    read = by_dev(g, "pass", "virtio-blk-read")["blk0"]
    assert int(read["crc32"], 16) == crc_of(path), read
    assert int(by_dev(g, "pass", "virtio-msix")["blk0"]["interrupts"]) > 0
    ej = checks(g, "pass", "hotplug-eject")
    assert len(ej) == 1 and ej[0]["slot"] == add[0]["slot"] and ej[0]["dev"] == "blk0", ej


def test_hotplug_disk_kvmm(kvm, vms, tmp):
    path = make_disk(tmp, "hot.img")
    # GUEST: the guest also ejects the new slot before kvmm asked for it;
    # kvmm keeps the device (the guest then reads it).
    g, sock = start(vms, tmp, "kvmm", CMDLINE + " kvmmtest.hotplug.rogue=added")
    g.wait_for(r"KVMMTEST event hotplug-ready")
    pid = g.proc.pid
    api = kvmmtest.Api(sock)
    try:
        before = nfds(pid)
        args = valid("device-add", {"type": "blk", "id": "hd1", "path": path, "serial": "hot1"})
        r = valid("reply", api.call("device-add", args))
        assert r["return"] == {"id": "hd1", "slot": 1}, r
        assert valid("devices", api.call("query-devices")["return"]) == [
            {"id": "hd1", "type": "blk", "slot": 1, "path": path, "state": "plugged"}]
        g.wait_for(r"KVMMTEST pass virtio-msix dev=blk0")
        # A complete device: its counters are kvmm's like any disk's.
        st = api.call("query-block-stats")["return"]
        assert len(st) == 1 and st[0]["path"] == path and st[0]["rd_operations"] >= 1, st
        assert nfds(pid) > before
        assert "return" in api.call("device-del", {"id": "hd1"})
        ev = valid("event", api.wait_event("device-deleted", timeout=60, id="hd1"))
        assert ev["data"]["slot"] == 1
        guest_handled_one_disk(g, path)
        rogue = g.wait_for(r"KVMMTEST info hotplug rogue-eject slot=1 before=(\w+) after=(\w+)")
        assert rogue.group(1) == rogue.group(2) == "10421af4", rogue.group(0)
        # Nothing left: no device, no counters, every descriptor closed
        # (image, io_uring, eventfds, MSI irqfds), the slot free again.
        assert api.call("query-devices")["return"] == []
        assert api.call("query-block-stats")["return"] == []
        assert nfds(pid) == before
        r = api.call("device-add", {"type": "blk", "id": "hd2", "path": path})
        assert r["return"] == {"id": "hd2", "slot": 1}, r
    finally:
        api.close()
    power_off(g, "kvmm", sock)


@pytest.mark.parametrize("sandbox", [[], ["--sandbox"]], ids=["plain", "sandboxed"])
def test_hotplug_disk_by_descriptor_kvmm(kvm, vms, tmp, sandbox):
    """The image opened by the caller and passed over the control socket
    (getfd, SCM_RIGHTS): the guest reads it, kvmm locks it as it would a
    path, and closes it once the device is ejected.  Sandboxed, kvmm
    cannot open a path at all: a descriptor is the only way."""
    import fcntl
    path = make_disk(tmp, "hot.img")
    g, sock = start(vms, tmp, "kvmm", CMDLINE, extra=sandbox)
    g.wait_for(r"KVMMTEST event hotplug-ready")
    pid = g.proc.pid
    api = kvmmtest.Api(sock)
    try:
        before = nfds(pid)
        fd = os.open(path, os.O_RDWR)
        try:
            r = valid("reply", api.call("getfd", valid("getfd", {"fdname": "img"}), fds=[fd]))
            assert r["return"] == {}, r
        finally:
            os.close(fd)
        assert nfds(pid) == before + 1
        args = valid("device-add", {"type": "blk", "id": "hd1", "fdname": "img"})
        r = valid("reply", api.call("device-add", args))
        assert r["return"] == {"id": "hd1", "slot": 1}, r
        # The name is used up with the descriptor.
        r = api.call("device-add", {"type": "blk", "id": "hd2", "fdname": "img"})
        assert r["error"]["code"] == "InvalidArgument" and "getfd" in r["error"]["message"], r
        g.wait_for(r"KVMMTEST pass virtio-msix dev=blk0")
        # Writable, so locked exclusively, as with a path.
        with open(path, "rb") as other:
            with pytest.raises(BlockingIOError):
                fcntl.flock(other, fcntl.LOCK_SH | fcntl.LOCK_NB)
        assert "return" in api.call("device-del", {"id": "hd1"})
        api.wait_event("device-deleted", timeout=60, id="hd1")
        guest_handled_one_disk(g, path)
        assert nfds(pid) == before
        with open(path, "rb") as other:
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        api.close()
    power_off(g, "kvmm", sock)


def test_sandboxed_hotplug_next_to_a_cold_disk(kvm, vms, tmp):
    """Sandboxed, with a disk from the start: a path is refused (kvmm
    reaches none) and kvmm lives on; the cold disk's image passed again
    for writing is refused by its lock, not by a stat of paths; another
    image passed as a descriptor is plugged."""
    import fcntl
    cold = make_disk(tmp, "cold.img", 64)
    hot = make_disk(tmp, "hot.img", 64)
    g, sock = start(vms, tmp, "kvmm", "kvmmtest.action=wait",
                    extra=["--disk", f"path={cold}", "--sandbox"])
    g.wait_for(r"KVMMTEST done")
    api = kvmmtest.Api(sock)
    try:
        r = api.call("device-add", {"type": "blk", "id": "p", "path": hot})
        assert r["error"]["code"] == "InvalidArgument" and "Permission denied" in r["error"]["message"], r
        for name, path in (("c", cold), ("h", hot)):
            fd = os.open(path, os.O_RDWR)
            try:
                assert api.call("getfd", {"fdname": name}, fds=[fd])["return"] == {}
            finally:
                os.close(fd)
        r = api.call("device-add", {"type": "blk", "id": "c", "fdname": "c", "path": cold})
        assert r["error"]["code"] == "InvalidArgument", r
        r = api.call("device-add", {"type": "blk", "id": "h", "fdname": "h", "path": hot})
        assert r["return"] == {"id": "h", "slot": 2}, r
        with open(hot, "rb") as other:
            with pytest.raises(BlockingIOError):
                fcntl.flock(other, fcntl.LOCK_SH | fcntl.LOCK_NB)
        assert api.call("query-status")["return"]["state"] == "running"
    finally:
        api.close()
    power_off(g, "kvmm", sock)


def test_hotplug_descriptor_refusals(kvm, vms, tmp):
    """A getfd without a descriptor, an unknown name, a read-only
    descriptor for a writable disk: each refused, nothing kept; a client's
    named descriptors are closed when it goes."""
    path = make_disk(tmp, "d.img", 64)
    g, sock = start(vms, tmp, "kvmm", "kvmmtest.action=wait")
    g.wait_for(r"KVMMTEST done")
    pid = g.proc.pid
    api = kvmmtest.Api(sock)
    try:
        before = nfds(pid)
        r = api.call("getfd", {"fdname": "x"})
        assert r["error"]["code"] == "InvalidArgument" and "without a descriptor" in r["error"]["message"], r
        r = api.call("device-add", {"type": "blk", "id": "a", "fdname": "nope"})
        assert r["error"]["code"] == "InvalidArgument" and "no descriptor named" in r["error"]["message"], r
        fd = os.open(path, os.O_RDONLY)
        try:
            assert api.call("getfd", {"fdname": "ro"}, fds=[fd])["return"] == {}
            # Given again, a name stands for the new descriptor only.
            assert api.call("getfd", {"fdname": "ro"}, fds=[fd])["return"] == {}
        finally:
            os.close(fd)
        assert nfds(pid) == before + 1
        r = api.call("device-add", {"type": "blk", "id": "a", "fdname": "ro"})
        assert r["error"]["code"] == "InvalidArgument" and "read-only" in r["error"]["message"], r
        assert nfds(pid) == before
        assert api.call("query-devices")["return"] == []
        fd = os.open(path, os.O_RDONLY)
        try:
            assert api.call("getfd", {"fdname": "ro"}, fds=[fd])["return"] == {}
            assert api.call("getfd", {"fdname": "ro2"}, fds=[fd])["return"] == {}
        finally:
            os.close(fd)
        assert nfds(pid) == before + 2
        assert api.call("closefd", {"fdname": "ro"})["return"] == {}
        assert api.call("closefd", {"fdname": "ro"})["error"]["code"] == "InvalidArgument"
        assert nfds(pid) == before + 1
    finally:
        api.close()
    # The connection gone, so is what it held.
    api = kvmmtest.Api(sock)
    assert api.call("query-status")["return"]
    assert nfds(pid) == before
    api.close()
    power_off(g, "kvmm", sock)


def test_hotplug_disk_qemu(kvm, vms, tmp):
    """The same guest scenario against QEMU's pc machine: the reference
    for the registers' behaviour."""
    path = make_disk(tmp, "hot.img")
    g, sock = start(vms, tmp, "qemu")
    g.wait_for(r"KVMMTEST event hotplug-ready")
    q = kvmmtest.Qmp(sock)
    try:
        r = q.execute("blockdev-add", {"driver": "raw", "node-name": "hd1",
                                       "file": {"driver": "file", "filename": path}})
        assert "return" in r, r
        r = q.execute("device_add", {"driver": "virtio-blk-pci", "id": "hd1", "drive": "hd1",
                                     "addr": "0x5", "disable-legacy": "on"})
        assert "return" in r, r
        g.wait_for(r"KVMMTEST pass virtio-msix dev=blk0")
        assert "return" in q.execute("device_del", {"id": "hd1"})
        guest_handled_one_disk(g, path)
        assert checks(g, "pass", "hotplug-add")[0]["slot"] == "5"
    finally:
        q.close()
    power_off(g, "qemu", sock)


def test_hotplug_nic_kvmm(kvm, vms, tmp, netns):
    """A NIC on a tap: the guest answers ping and UDP on it, query-net-stats
    counts it, and it is gone with its tap descriptor once ejected."""
    add_tap(netns, "hp0", "10.0.9.1/24")
    g, sock = start(vms, tmp, "kvmm", CMDLINE + " kvmmtest.net0.ip=10.0.9.15 kvmmtest.net.serve=60",
                    prefix=["ip", "netns", "exec", netns])
    g.wait_for(r"KVMMTEST event hotplug-ready")
    pid = g.proc.pid
    api = kvmmtest.Api(sock)
    try:
        before = nfds(pid)
        r = api.call("device-add", {"type": "net", "id": "nic1", "tap": "hp0",
                                    "mac": "52:54:00:12:34:99"})
        assert r["return"] == {"id": "nic1", "slot": 1}, r
        g.wait_for(r"KVMMTEST pass hotplug-add slot=1 dev=net0 vendor=1af4 device=1041")
        g.wait_for(r"KVMMTEST event virtio-net-ready nics=1", timeout=60)
        r = probe(netns, "10.0.9.15", 7)
        assert r["ping"] == 3 and r["udp"] == r["udp_sent"] and r["quit"] == 1, r
        g.wait_for(r"KVMMTEST pass virtio-net dev=net0")
        st = api.call("query-net-stats")["return"]
        assert len(st) == 1 and st[0]["tap"] == "hp0" and st[0]["mac"] == "52:54:00:12:34:99", st
        assert st[0]["rx_packets"] > 0 and st[0]["tx_packets"] > 0, st
        assert "return" in api.call("device-del", {"id": "nic1"})
        api.wait_event("device-deleted", timeout=60, id="nic1")
        g.wait_for(r"KVMMTEST pass hotplug added=1 removed=1", timeout=60)
        assert api.call("query-net-stats")["return"] == []
        assert nfds(pid) == before
    finally:
        api.close()
    power_off(g, "kvmm", sock)


# Opens the tap argv[1] inside the namespace it runs in (TUNSETIFF with
# IFF_TAP | IFF_NO_PI | IFF_VNET_HDR, as virtkvmmd does) and sends the
# descriptor on the socket that is its fd argv[2].
SEND_TAP = r"""
import fcntl, os, socket, struct, sys
fd = os.open("/dev/net/tun", os.O_RDWR)
fcntl.ioctl(fd, 0x400454ca, struct.pack("16sH", sys.argv[1].encode(), 0x0002 | 0x1000 | 0x4000))
s = socket.socket(fileno=int(sys.argv[2]))
socket.send_fds(s, [b"tap"], [fd])
"""


def tap_fd(netns, name):
    """A descriptor attached to tap name of netns, opened there."""
    mine, theirs = socket.socketpair()
    try:
        subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-c", SEND_TAP, name,
                        str(theirs.fileno())], pass_fds=[theirs.fileno()], check=True)
        _, fds, _, _ = socket.recv_fds(mine, 16, 1)
        assert len(fds) == 1
        return fds[0]
    finally:
        mine.close()
        theirs.close()


@pytest.mark.parametrize("sandbox", [[], ["--sandbox"]], ids=["plain", "sandboxed"])
def test_hotplug_nic_by_descriptor_kvmm(kvm, vms, tmp, netns, sandbox):
    """The tap opened by the caller and passed over the control socket
    (getfd, then device-add's fdname): the guest answers on it, kvmm names
    it by the tap's own name, and closes it once the NIC is ejected.
    Sandboxed, kvmm can open no tap itself: a descriptor is the only way.
    A descriptor that is not a tap, a tap given by name and descriptor at
    once, and a bare fd number are refused, leaving nothing open."""
    add_tap(netns, "hp0", "10.0.9.1/24")
    g, sock = start(vms, tmp, "kvmm", CMDLINE + " kvmmtest.net0.ip=10.0.9.15 kvmmtest.net.serve=60",
                    prefix=["ip", "netns", "exec", netns], extra=sandbox)
    g.wait_for(r"KVMMTEST event hotplug-ready")
    pid = g.proc.pid
    api = kvmmtest.Api(sock)
    try:
        before = nfds(pid)
        fd = os.open("/dev/null", os.O_RDWR)
        try:
            assert api.call("getfd", {"fdname": "null"}, fds=[fd])["return"] == {}
        finally:
            os.close(fd)
        r = valid("reply", api.call("device-add", {"type": "net", "id": "nic0", "fdname": "null"}))
        assert r["error"]["code"] == "InvalidArgument" and "not a tap" in r["error"]["message"], r
        assert api.call("query-devices")["return"] == []
        assert nfds(pid) == before
        r = api.call("device-add", {"type": "net", "id": "nic0", "fd": 0})
        assert r["error"]["code"] == "InvalidArgument" and "not fd" in r["error"]["message"], r

        fd = tap_fd(netns, "hp0")
        try:
            assert api.call("getfd", {"fdname": "tap"}, fds=[fd])["return"] == {}
        finally:
            os.close(fd)
        r = api.call("device-add", {"type": "net", "id": "nic1", "fdname": "tap", "tap": "hp0"})
        assert r["error"]["code"] == "InvalidArgument" and "not both" in r["error"]["message"], r
        assert nfds(pid) == before + 1      # still held under its name
        args = valid("device-add", {"type": "net", "id": "nic1", "fdname": "tap",
                                    "mac": "52:54:00:12:34:99"})
        r = valid("reply", api.call("device-add", args))
        assert r["return"] == {"id": "nic1", "slot": 1}, r
        devs = valid("devices", api.call("query-devices")["return"])
        assert [(d["id"], d["tap"]) for d in devs] == [("nic1", "hp0")], devs
        g.wait_for(r"KVMMTEST pass hotplug-add slot=1 dev=net0 vendor=1af4 device=1041")
        g.wait_for(r"KVMMTEST event virtio-net-ready nics=1", timeout=60)
        r = probe(netns, "10.0.9.15", 7)
        assert r["ping"] == 3 and r["udp"] == r["udp_sent"] and r["quit"] == 1, r
        g.wait_for(r"KVMMTEST pass virtio-net dev=net0")
        st = api.call("query-net-stats")["return"]
        assert len(st) == 1 and st[0]["tap"] == "hp0" and st[0]["mac"] == "52:54:00:12:34:99", st
        assert "return" in api.call("device-del", {"id": "nic1"})
        api.wait_event("device-deleted", timeout=60, id="nic1")
        g.wait_for(r"KVMMTEST pass hotplug added=1 removed=1", timeout=60)
        assert api.call("query-net-stats")["return"] == []
        assert nfds(pid) == before
    finally:
        api.close()
    power_off(g, "kvmm", sock)


def test_hotplug_nic_qemu(kvm, vms, tmp, netns):
    """The NIC scenario against QEMU's pc machine."""
    add_tap(netns, "hp0", "10.0.9.1/24")
    g, sock = start(vms, tmp, "qemu", CMDLINE + " kvmmtest.net0.ip=10.0.9.15 kvmmtest.net.serve=60",
                    prefix=["ip", "netns", "exec", netns])
    g.wait_for(r"KVMMTEST event hotplug-ready")
    q = kvmmtest.Qmp(sock)
    try:
        r = q.execute("netdev_add", {"type": "tap", "id": "n1", "ifname": "hp0",
                                     "script": "no", "downscript": "no"})
        assert "return" in r, r
        r = q.execute("device_add", {"driver": "virtio-net-pci", "id": "nic1", "netdev": "n1",
                                     "mac": "52:54:00:12:34:99", "romfile": "",
                                     "addr": "0x6", "disable-legacy": "on"})
        assert "return" in r, r
        g.wait_for(r"KVMMTEST pass hotplug-add slot=6 dev=net0 vendor=1af4 device=1041")
        g.wait_for(r"KVMMTEST event virtio-net-ready nics=1", timeout=60)
        r = probe(netns, "10.0.9.15", 7)
        assert r["ping"] == 3 and r["udp"] == r["udp_sent"] and r["quit"] == 1, r
        g.wait_for(r"KVMMTEST pass virtio-net dev=net0")
        assert "return" in q.execute("device_del", {"id": "nic1"})
        g.wait_for(r"KVMMTEST pass hotplug added=1 removed=1", timeout=60)
    finally:
        q.close()
    power_off(g, "qemu", sock)


def test_hotplug_refusals_leave_nothing_behind(kvm, vms, tmp):
    path = make_disk(tmp, "d.img", 64)
    g, sock = start(vms, tmp, "kvmm", "kvmmtest.action=wait")
    g.wait_for(r"KVMMTEST done")
    pid = g.proc.pid
    api = kvmmtest.Api(sock)

    def refused(cmd, args, code, text):
        r = valid("reply", api.call(cmd, args))
        assert "error" in r, r
        assert r["error"]["code"] == code and text in r["error"]["message"], r

    try:
        before = nfds(pid)
        refused("device-add", {"type": "blk", "id": "x", "path": os.path.join(tmp, "none.img")},
                "InvalidArgument", "No such file or directory")
        refused("device-add", {"type": "blk", "id": "x"}, "InvalidArgument", "has no path")
        refused("device-add", {"type": "blk", "id": "x", "path": path, "slot": 32},
                "InvalidArgument", "out of range")
        refused("device-add", {"type": "blk", "id": "x", "path": path, "slot": 0},
                "InvalidArgument", "out of range")
        refused("device-add", {"type": "net", "id": "x", "fd": 3}, "InvalidArgument", "needs tap")
        refused("device-add", {"type": "gpu", "id": "x"}, "InvalidArgument", "use blk or net")
        refused("device-add", {"type": "blk", "path": path}, "InvalidArgument", "device-add takes")
        refused("device-del", {"id": "nope"}, "DeviceNotFound", "no hot-added device")
        assert nfds(pid) == before
        assert api.call("query-devices")["return"] == []

        assert api.call("device-add", {"type": "blk", "id": "a", "path": path,
                                       "shareable": True, "readonly": True})["return"]["slot"] == 1
        after_one = nfds(pid)
        refused("device-add", {"type": "blk", "id": "a", "path": path}, "DeviceInUse", "is taken")
        refused("device-add", {"type": "blk", "id": "b", "path": path, "slot": 1},
                "DeviceInUse", "slot 1 is taken")
        assert nfds(pid) == after_one
        # kvmm's disk limit comes before the slots run out.
        for i in range(1, 16):
            r = api.call("device-add", {"type": "blk", "id": f"d{i}", "path": path,
                                        "shareable": True, "readonly": True})
            assert r["return"]["slot"] == i + 1, r
        full = nfds(pid)
        refused("device-add", {"type": "blk", "id": "d16", "path": path, "shareable": True,
                               "readonly": True}, "NoSpace", "at most 16 disks")
        assert nfds(pid) == full
        assert len(api.call("query-devices")["return"]) == 16
        # A removal the guest ignores stays pending: no event, the device
        # stays, marked as removing.
        assert "return" in api.call("device-del", {"id": "a"})
        with pytest.raises(TimeoutError):
            api.wait_event("device-deleted", timeout=2)
        devs = valid("devices", api.call("query-devices")["return"])
        assert devs[0]["id"] == "a" and devs[0]["state"] == "removing", devs
    finally:
        api.close()
    power_off(g, "kvmm", sock)


def test_hotplug_reset_completes_a_pending_removal(kvm, vms, tmp):
    """A guest that ignores the request keeps the device until it resets:
    then the removal completes, as a power cycle would; a device not asked
    back stays through the reset."""
    path = make_disk(tmp, "d.img", 64)
    g, sock = start(vms, tmp, "kvmm", "kvmmtest.action=wait kvmmtest.pci=on")
    g.wait_for(r"KVMMTEST done")
    api = kvmmtest.Api(sock)
    try:
        for dev_id in ("gone", "stays"):
            r = api.call("device-add", {"type": "blk", "id": dev_id, "path": path,
                                        "readonly": True, "shareable": True})
            assert "return" in r, r
        assert "return" in api.call("device-del", {"id": "gone"})
        assert "return" in api.call("reset")
        ev = valid("event", api.wait_event("device-deleted", timeout=60, id="gone"))
        assert ev["data"]["slot"] == 1
        devs = api.call("query-devices")["return"]
        assert [(d["id"], d["slot"], d["state"]) for d in devs] == [("stays", 2, "plugged")], devs
    finally:
        api.close()
    # The rebooted guest finds the device that stayed on its bus.
    g.wait_for(r"KVMMTEST info pci bdf=00:02.0 vendor=1af4 device=1042", timeout=60)
    # ... and not the one it was asked to give back (the first boot
    # scanned before either was added).
    assert not any("bdf=00:01.0" in line for line in g.lines)
    g.wait_for(r"KVMMTEST done", count=2, timeout=60)
    power_off(g, "kvmm", sock)


def test_hotplug_unasked_eject_is_ignored(kvm, vms, tmp):
    """GUEST: an eject of a slot kvmm did not ask back (here a cold-plugged
    disk's, which QEMU would remove) changes nothing: the disk stays on the
    bus."""
    path = make_disk(tmp, "cold.img", 64)
    sock = os.path.join(tmp, "ctl.sock")
    g = kvmmtest.start(vms, kvmmtest.kvmm_argv(
        "kvmmtest.hotplug=5 kvmmtest.hotplug.rogue=1 kvmmtest.hotplug.removals=0 "
        "kvmmtest.virtio=blk", 1, "256M",
        ["--disk", f"path={path}", "--api-socket", sock]))
    rogue = g.wait_for(r"KVMMTEST info hotplug rogue-eject slot=1 before=(\w+) after=(\w+)")
    assert rogue.group(1) == rogue.group(2) == "10421af4", rogue.group(0)
    finish(g)
