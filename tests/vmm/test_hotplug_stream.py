"""Hot-added devices and vCPUs carried by the state stream
(docs/hotplug.md, docs/state-stream.md): the test guest's hotplug and CPU
hotplug scenarios saved with what was added, restored in a new process,
and migrated live; the restored guest uses each device and vCPU, and
gives them back when asked.  Then a restore whose configuration moves a
hot-added device is refused."""
import json
import os
import socket
import struct
import subprocess

from kvmmtest import Api, KVMM, kvmm_argv, start
from test_cpu_hotplug import threads
from test_hotplug import crc_of, make_disk
from test_live_migration import wait_listening
from virtiotest import add_tap, by_dev, checks, finish, probe

HOTPLUG = ("kvmmtest.hotplug=240 kvmmtest.hotplug.removals=2 kvmmtest.hotplug.reread=1 "
           "kvmmtest.action=wait kvmmtest.smp=off")


def power_off(g, api):
    """The power button once the guest armed it, then its exit."""
    g.wait_for(r"KVMMTEST done", timeout=60)
    assert "return" in api.call("power-button")
    finish(g)


def save_and_quit(api, g, state):
    r = api.call("save", {"path": state}, timeout=60)
    assert "return" in r, r
    assert api.call("quit")["return"] == {}
    assert g.wait_exit() == 0


def reread_crc(g, slot):
    m = g.wait_for(rf"KVMMTEST pass hotplug-reread slot={slot} dev=\S+ sectors=64 crc32=(\w+)",
                   timeout=60)
    return int(m.group(1), 16)


def test_save_restore_keeps_a_hot_added_disk_and_nic(kvm, vms, tmp, netns):
    """A disk and a NIC (at a slot of the caller's choice) hot-added, the
    VM saved and restored: the restored kvmm has them at the same slots
    under the same ids, the guest reads the disk on the queue it had
    and answers on the NIC, and both go back at device-del with
    device-deleted from the restored kvmm."""
    add_tap(netns, "hs0", "10.0.9.1/24")
    disk = make_disk(tmp, "hot.img")
    sock = os.path.join(tmp, "a.sock")
    cmdline = HOTPLUG + " kvmmtest.net0.ip=10.0.9.15 kvmmtest.net.serve=240"
    g = start(vms, ["ip", "netns", "exec", netns] +
              kvmm_argv(cmdline, 1, "256M", ["--api-socket", sock]))
    g.wait_for(r"KVMMTEST event hotplug-ready")
    api = Api(sock)
    r = api.call("device-add", {"type": "blk", "id": "hd1", "path": disk, "serial": "hot1"})
    assert r["return"] == {"id": "hd1", "slot": 1}, r
    g.wait_for(r"KVMMTEST pass virtio-blk-read dev=blk0")
    assert int(by_dev(g, "pass", "virtio-blk-read")["blk0"]["crc32"], 16) == crc_of(disk)
    r = api.call("device-add", {"type": "net", "id": "nic1", "tap": "hs0", "slot": 5,
                                "mac": "52:54:00:12:34:99"})
    assert r["return"] == {"id": "nic1", "slot": 5}, r
    g.wait_for(r"KVMMTEST pass hotplug-add slot=5 dev=net0 vendor=1af4 device=1041")
    g.wait_for(r"KVMMTEST event virtio-net-ready nics=1", timeout=60)
    state = os.path.join(tmp, "vm.state")
    save_and_quit(api, g, state)
    api.close()

    sock2 = os.path.join(tmp, "b.sock")
    h = start(vms, ["ip", "netns", "exec", netns, KVMM, "--restore", state,
                    "--api-socket", sock2])
    api = Api(sock2)
    try:
        assert api.call("query-devices")["return"] == [
            {"id": "hd1", "type": "blk", "slot": 1, "path": disk, "state": "plugged"},
            {"id": "nic1", "type": "net", "slot": 5, "tap": "hs0", "state": "plugged"}]
        st = api.call("query-net-stats")["return"]
        assert len(st) == 1 and st[0]["mac"] == "52:54:00:12:34:99", st
        # The guest's NIC driver goes on serving in the new process.
        r = probe(netns, "10.0.9.15", 7)
        assert r["ping"] == 3 and r["udp"] == r["udp_sent"] and r["quit"] == 1, r
        assert api.call("query-net-stats")["return"][0]["rx_packets"] > 0
        assert "return" in api.call("device-del", {"id": "hd1"})
        assert reread_crc(h, 1) == crc_of(disk)
        assert api.wait_event("device-deleted", timeout=60, id="hd1")["data"]["slot"] == 1
        assert "return" in api.call("device-del", {"id": "nic1"})
        assert api.wait_event("device-deleted", timeout=60, id="nic1")["data"]["slot"] == 5
        h.wait_for(r"KVMMTEST pass hotplug added=2 removed=2", timeout=60)
        assert api.call("query-devices")["return"] == []
        assert not [l for l in h.lines if "KVMMTEST boot" in l], "the guest booted again"
        power_off(h, api)
    finally:
        api.close()


def test_save_restore_keeps_a_hot_added_vcpu(kvm, vms, tmp):
    """A vCPU hot-added and started by the guest, the VM saved and
    restored: the restored kvmm has it (and its thread), and the guest
    stops and ejects it at cpu-del, cpu-deleted from the restored kvmm."""
    sock = os.path.join(tmp, "a.sock")
    cmdline = ("kvmmtest.cpuhp=120 kvmmtest.cpuhp.adds=1 kvmmtest.cpuhp.removals=1 "
               "kvmmtest.action=wait")
    g = start(vms, kvmm_argv(cmdline, 1, "256M", ["--max-cpus", "3", "--api-socket", sock]))
    g.wait_for(r"KVMMTEST event cpuhp-ready online=1")
    api = Api(sock)
    assert api.call("cpu-add", {"id": 2})["return"] == {}
    g.wait_for(r"KVMMTEST pass cpu-work apic_id=2 ", timeout=60)
    state = os.path.join(tmp, "vm.state")
    save_and_quit(api, g, state)
    api.close()
    with open(state, "rb") as f:
        head = f.read(1 << 16)
    assert b'"vcpus_present":[0,2]' in head

    # --cpus of a restore is the count the VM has now (libvirt's current
    # vCPUs), not the boot count: 2 fits, 3 does not.
    p = subprocess.run([KVMM, "--restore", state, "--cpus", "3"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode != 0 and "the stream's VM has 1 vCPUs, not 3" in p.stderr, p.stderr
    sock2 = os.path.join(tmp, "b.sock")
    h = start(vms, [KVMM, "--restore", state, "--cpus", "2", "--api-socket", sock2])
    api = Api(sock2)
    try:
        assert api.call("query-cpus")["return"] == [
            {"id": 0, "apic_id": 0, "state": "present"},
            {"id": 2, "apic_id": 2, "state": "present"}]
        assert api.call("query-status")["return"]["vcpus"] == 2
        assert {"vcpu0", "vcpu2"} <= threads(h.proc.pid).keys()
        assert "vcpu1" not in threads(h.proc.pid)
        assert api.call("cpu-del", {"id": 2})["return"] == {}
        api.wait_event("cpu-deleted", timeout=60, id=2)
        h.wait_for(r"KVMMTEST pass cpuhp added=1 removed=1 online=1", timeout=60)
        assert checks(h, "pass", "cpu-offline") == [{"apic_id": "2", "online": "1"}]
        assert api.call("query-status")["return"]["vcpus"] == 1
        # The slot that was never used is still free to add.
        assert api.call("cpu-add", {"id": 1})["return"] == {}
        assert api.call("query-status")["return"]["vcpus"] == 2
        power_off(h, api)
    finally:
        api.close()


def test_live_migration_carries_a_hot_added_disk_and_the_cpu_hotplug_state(kvm, vms, tmp):
    """A disk hot-added on the source of a live migration, on a VM with
    vCPU hotplug: the destination has it at its slot, the guest reads it
    and ejects it there; then a vCPU added on the destination is started
    by the guest."""
    disk = make_disk(tmp, "hot.img")
    sock = os.path.join(tmp, "src.sock")
    cmdline = ("kvmmtest.hotplug=240 kvmmtest.hotplug.removals=1 kvmmtest.hotplug.reread=1 "
               "kvmmtest.cpuhp=120 kvmmtest.cpuhp.adds=1 kvmmtest.action=wait")
    g = start(vms, kvmm_argv(cmdline, 1, "256M", ["--max-cpus", "2", "--api-socket", sock]))
    g.wait_for(r"KVMMTEST event hotplug-ready")
    api = Api(sock)
    r = api.call("device-add", {"type": "blk", "id": "hd1", "path": disk, "slot": 7})
    assert r["return"] == {"id": "hd1", "slot": 7}, r
    g.wait_for(r"KVMMTEST pass virtio-blk-read dev=blk0")

    uri = "unix:" + os.path.join(tmp, "mig.sock")
    dsock = os.path.join(tmp, "dst.sock")
    h = start(vms, [KVMM, "--incoming", uri, "--api-socket", dsock])
    wait_listening(uri[5:], h)
    assert api.call("migrate", {"uri": uri}).get("return") == {}
    ev = api.wait_event("migration-status", timeout=120, status="completed")
    assert ev["data"]["status"] == "completed"
    assert api.call("quit")["return"] == {}
    assert g.wait_exit() == 0
    api.close()

    api = Api(dsock)
    try:
        assert api.call("query-devices")["return"] == [
            {"id": "hd1", "type": "blk", "slot": 7, "path": disk, "state": "plugged"}]
        assert "return" in api.call("device-del", {"id": "hd1"})
        assert reread_crc(h, 7) == crc_of(disk)
        api.wait_event("device-deleted", timeout=60, id="hd1")
        h.wait_for(r"KVMMTEST pass hotplug added=1 removed=1", timeout=60)
        h.wait_for(r"KVMMTEST event cpuhp-ready online=1", timeout=60)
        assert api.call("cpu-add", {"id": 1})["return"] == {}
        h.wait_for(r"KVMMTEST pass cpu-work apic_id=1 ", timeout=60)
        h.wait_for(r"KVMMTEST pass cpuhp added=1 removed=0 online=2", timeout=60)
        power_off(h, api)
    finally:
        api.close()


def test_restore_refuses_a_moved_or_missing_hot_added_device(kvm, vms, tmp):
    """The stream's hot-added devices are what the guest knows: a restore
    may give a disk another image and id, not another slot or type, nor
    drop it."""
    disk = make_disk(tmp, "hot.img")
    sock = os.path.join(tmp, "a.sock")
    g = start(vms, kvmm_argv(HOTPLUG, 1, "256M", ["--api-socket", sock]))
    g.wait_for(r"KVMMTEST event hotplug-ready")
    api = Api(sock)
    r = api.call("device-add", {"type": "blk", "id": "hd1", "path": disk, "slot": 3})
    assert r["return"] == {"id": "hd1", "slot": 3}, r
    g.wait_for(r"KVMMTEST pass virtio-blk-read dev=blk0")
    state = os.path.join(tmp, "vm.state")
    save_and_quit(api, g, state)
    api.close()

    def restore_over(over):
        cfg = os.path.join(tmp, "over.json")
        with open(cfg, "w") as f:
            json.dump(over, f)
        p = subprocess.run([KVMM, "--restore", state, "--config", cfg],
                           capture_output=True, text=True, timeout=60)
        return p.returncode, p.stderr

    def restore_with(hotplug):
        return restore_over({"hotplug": hotplug})

    def restore_with_disks(disks):
        return restore_over({"disks": disks})

    for over, msg in [
            ([{"type": "blk", "id": "hd1", "slot": 4, "path": disk}], "cannot move or change it"),
            ([{"type": "net", "id": "hd1", "slot": 3, "tap": "x0"}], "cannot move or change it"),
            ([], "has 1 hot-added devices, not 0"),
            ([{"type": "blk", "id": "hd1", "slot": 3, "path": disk, "readonly": True}],
             "only its path or tap may change")]:
        rc, err = restore_with(over)
        assert rc != 0 and msg in err, (over, err)
        assert "KVMMTEST" not in err
    # A disk given past the stream's own (it has none) is the hot-added
    # one's host side, as virtkvmmd gives it: another image, another id
    # (only kvmm's name for it) are the host's to choose.
    moved = os.path.join(tmp, "moved.img")
    subprocess.run(["cp", disk, moved], check=True)
    rc, err = restore_with_disks([{"path": moved, "id": "x"}, {"path": disk}])
    assert rc != 0 and "has 0 disks and 1 hot-added ones: give 0, or 1" in err, err
    cfg = os.path.join(tmp, "over.json")
    with open(cfg, "w") as f:
        json.dump({"disks": [{"path": moved, "id": "virtio-disk1"}]}, f)
    sock2 = os.path.join(tmp, "b.sock")
    h = start(vms, [KVMM, "--restore", state, "--config", cfg, "--api-socket", sock2])
    api = Api(sock2)
    try:
        assert api.call("query-devices")["return"] == [
            {"id": "virtio-disk1", "type": "blk", "slot": 3, "path": moved, "state": "plugged"}]
        assert api.call("query-block-stats")["return"][0]["path"] == moved
        assert "return" in api.call("device-del", {"id": "virtio-disk1"})
        assert reread_crc(h, 3) == crc_of(disk)
        api.wait_event("device-deleted", timeout=60, id="virtio-disk1")
        assert api.call("quit")["return"] == {}
        assert h.wait_exit() == 0
    finally:
        api.close()


def test_hotplug_waits_while_a_migration_runs(kvm, vms, tmp):
    """While a migration's stream is under way its device and vCPU lists
    stay as they began: adds and removals are refused (InvalidState, as
    QEMU's device_del); once it is cancelled they work again."""
    disk = make_disk(tmp, "hot.img")
    sock = os.path.join(tmp, "src.sock")
    g = start(vms, kvmm_argv(HOTPLUG.replace("removals=2", "removals=1"), 1, "256M",
                             ["--max-cpus", "2", "--api-socket", sock]))
    g.wait_for(r"KVMMTEST event hotplug-ready")
    api = Api(sock)
    assert api.call("device-add", {"type": "blk", "id": "hd1", "path": disk})["return"]["slot"] == 1
    g.wait_for(r"KVMMTEST pass virtio-blk-read dev=blk0")
    # A destination that accepts and never reads: the copy blocks.
    where = os.path.join(tmp, "stuck.sock")
    lst = socket.socket(socket.AF_UNIX)
    lst.bind(where)
    lst.listen(1)
    try:
        r = api.call("migrate", {"uri": "unix:" + where, "bandwidth-mibps": 1})
        assert r.get("return") == {}, r
        assert api.wait_event("migration-status")["data"]["status"] == "active"
        for cmd, args in (("device-del", {"id": "hd1"}), ("cpu-add", {"id": 1}),
                          ("cpu-del", {"id": 0}),
                          ("device-add", {"type": "blk", "id": "hd2", "path": disk})):
            e = api.call(cmd, args)["error"]
            assert e["code"] == "InvalidState" and "a migration is running" in e["message"], (cmd, e)
        assert api.call("migrate-cancel")["return"] == {}
        assert api.wait_event("migration-status", timeout=60)["data"]["status"] == "cancelled"
    finally:
        lst.close()
    assert api.call("cpu-add", {"id": 1})["return"] == {}
    assert "return" in api.call("device-del", {"id": "hd1"})
    assert reread_crc(g, 1) == crc_of(disk)
    api.wait_event("device-deleted", timeout=60, id="hd1")
    g.wait_for(r"KVMMTEST pass hotplug added=1 removed=1", timeout=60)
    power_off(g, api)
    api.close()


def crc32c(data, crc=0):
    """CRC-32C (Castagnoli), as the stream's sections carry it."""
    crc ^= 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def with_device_record(data, name, edit):
    """The stream DATA with the record of device NAME changed by EDIT
    (bytearray of the record after its name, in place), its checksums
    made right again: only kvmm's checks of the record can refuse it."""
    out, off = bytearray(data), 16
    while off < len(out):
        t, i, n = struct.unpack_from("<IIQ", out, off)
        payload = off + 24
        if t == 7 and out[payload:payload + 32].rstrip(b"\0") == name.encode():
            rec = bytearray(out[payload + 32:payload + n])
            edit(rec)
            out[payload + 32:payload + n] = rec
            struct.pack_into("<I", out, off + 16, crc32c(out[payload:payload + n]))
            struct.pack_into("<I", out, off + 20, crc32c(out[off:off + 20]))
            return bytes(out)
        off = payload + n
    raise AssertionError(f"no {name} record")


def test_hostile_hotplug_records_are_refused_before_the_guest_runs(kvm, vms, tmp):
    """GUEST: the PCI and CPU hotplug records are checked like guest input:
    an add or eject bit for a slot with no hot-added device, a vCPU
    enabled that the VM does not have, a removal asked of the boot CPU."""
    assert crc32c(b"123456789") == 0xE3069283
    disk = make_disk(tmp, "hot.img")
    sock = os.path.join(tmp, "a.sock")
    g = start(vms, kvmm_argv(HOTPLUG, 1, "256M", ["--max-cpus", "3", "--api-socket", sock]))
    g.wait_for(r"KVMMTEST event hotplug-ready")
    api = Api(sock)
    assert api.call("device-add", {"type": "blk", "id": "hd1", "path": disk})["return"]["slot"] == 1
    g.wait_for(r"KVMMTEST pass virtio-blk-read dev=blk0")
    state = os.path.join(tmp, "vm.state")
    save_and_quit(api, g, state)
    api.close()
    data = open(state, "rb").read()
    bad = os.path.join(tmp, "bad.state")

    def up_slot_20(rec):        # version, then up, down, sel, ejected
        struct.pack_into("<I", rec, 1, struct.unpack_from("<I", rec, 1)[0] | 1 << 20)

    def eject_slot_5(rec):
        struct.pack_into("<I", rec, 13, 1 << 5)

    def enable_vcpu_2(rec):     # version, 24-byte header, a flag byte per vCPU
        rec[1 + 24 + 2] = 1

    def ask_back_vcpu_0(rec):
        rec[1 + 24 + 0] |= 8

    for name, edit in (("pci-hotplug", up_slot_20), ("pci-hotplug", eject_slot_5),
                       ("cpu-hotplug", enable_vcpu_2), ("cpu-hotplug", ask_back_vcpu_0)):
        with open(bad, "wb") as f:
            f.write(with_device_record(data, name, edit))
        p = subprocess.run([KVMM, "--restore", bad], capture_output=True, text=True, timeout=60)
        assert p.returncode == 1 and f"({name}) refused its state from the stream" in p.stderr, \
            (edit.__name__, p.stderr)
        assert "KVMMTEST" not in p.stdout
    # The same stream untouched restores (the refusals were the edits).
    h = start(vms, [KVMM, "--restore", state, "--api-socket", sock])
    api = Api(sock)
    assert [d["id"] for d in api.call("query-devices")["return"]] == ["hd1"]
    assert api.call("quit")["return"] == {}
    assert h.wait_exit() == 0
    api.close()
