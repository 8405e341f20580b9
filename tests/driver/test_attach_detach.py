"""virsh attach-disk / detach-disk on a running kvmm guest through
virtkvmmd: the test guest (kvmmtest.hotplug) reads the hot-added disk,
gives it back on detach; DEVICE_ADDED / DEVICE_REMOVED events, the live
XML and the status file follow, a daemon restart in between adopts the
device; libvirt's refusals leave nothing half-attached."""
import glob
import json
import os
import queue
import signal
import subprocess
import zlib

import libvirt
import pytest

from drvtest import event_loop, virsh
from kvmmtest import Api, wait_record
import netns as netns_lib
from test_lifecycle import guest_xml, serial, state_dir, wait_for

L = libvirt
SECTOR = 512
CMDLINE = " kvmmtest.hotplug=120 kvmmtest.smp=off"


def make_disk(path, sectors=2048):
    with open(path, "wb") as f:
        for s in range(sectors):
            f.write(s.to_bytes(4, "little") * (SECTOR // 4))
    return path


def crc_of(path, count=64):
    with open(path, "rb") as f:
        return zlib.crc32(f.read(count * SECTOR))


def hot_xml(root, name="hp", cold=""):
    return guest_xml(root, name, extra_cmdline=CMDLINE, extra_devices=cold)


class DeviceEvents:
    def __init__(self, uri):
        event_loop()
        self.conn = libvirt.open(uri)
        self.q = queue.Queue()
        for ev, kind in ((L.VIR_DOMAIN_EVENT_ID_DEVICE_ADDED, "added"),
                         (L.VIR_DOMAIN_EVENT_ID_DEVICE_REMOVED, "removed")):
            self.conn.domainEventRegisterAny(
                None, ev, lambda c, dom, alias, _, kind=kind: self.q.put((kind, dom.name(), alias)),
                None)

    def next(self, timeout=60):
        return self.q.get(timeout=timeout)


def api_of(d, dom):
    return Api(os.path.join(state_dir(d), dom.UUIDString() + ".sock"))


def kvmm_pid(d):
    pids = d.guests()
    assert len(pids) == 1, pids
    return pids[0]


def nfds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def refused(fn, code, words):
    with pytest.raises(libvirt.libvirtError) as e:
        fn()
    assert e.value.get_error_code() == code, str(e.value)
    assert words in str(e.value), str(e.value)


def start_ready(d, conn, name="hp", cold=""):
    dom = conn.defineXML(hot_xml(d.root, name, cold))
    dom.create()
    wait_record(lambda: serial(d.root, name), r"KVMMTEST event hotplug-ready", "the guest's hotplug")
    return dom


def guest_read(d, name, img):
    rec = wait_record(lambda: serial(d.root, name), r"KVMMTEST pass virtio-blk-read dev=blk0 .*",
                      "the guest's read of the new disk", timeout=60).group(0)
    crc = int(rec.split("crc32=")[1].split()[0], 16)
    assert crc == crc_of(img), rec


def test_attach_detach_disk_live(daemon, kvm):
    d = daemon
    img = make_disk(os.path.join(d.root, "hot.img"))
    conn = libvirt.open(d.uri())
    ev = DeviceEvents(d.uri())
    dom = start_ready(d, conn)
    pid = kvmm_pid(d)
    api = api_of(d, dom)            # before the count: its socket is one of kvmm's fds
    before = nfds(pid)

    r = virsh(d.uri(), "attach-disk", "hp", img, "vdb", "--live")
    assert r.returncode == 0, r.stderr
    assert ev.next() == ("added", "hp", "virtio-disk1")
    guest_read(d, "hp", img)
    # kvmm counts the new disk after the others, where the live XML has it
    assert dom.blockStats("vdb")[0] >= 1
    live = dom.XMLDesc(0)
    assert f"<source file='{img}'/>" in live and "<target dev='vdb' bus='virtio'/>" in live, live
    # --live only: the persistent definition has no vdb
    assert "vdb" not in dom.XMLDesc(L.VIR_DOMAIN_XML_INACTIVE)
    status = glob.glob(os.path.join(state_dir(d), "*.xml"))
    assert len(status) == 1 and img in open(status[0]).read()
    devs = api.call("query-devices")["return"]
    assert [(x["id"], x["type"], x["path"]) for x in devs] == [("virtio-disk1", "blk", img)], devs
    assert nfds(pid) > before

    r = virsh(d.uri(), "detach-disk", "hp", "vdb", "--live")
    assert r.returncode == 0, r.stderr
    assert ev.next() == ("removed", "hp", "virtio-disk1")
    wait_record(lambda: serial(d.root, "hp"), r"KVMMTEST pass hotplug added=1 removed=1",
                "the guest's eject")
    assert img not in dom.XMLDesc(0)
    assert img not in open(status[0]).read()
    assert api.call("query-devices")["return"] == []
    assert nfds(pid) == before
    api.close()
    assert "KVMMTEST fail" not in serial(d.root, "hp")
    dom.destroy()
    ev.conn.close()
    conn.close()


def test_attached_disk_survives_a_daemon_restart(start_daemon, kvm):
    d1 = start_daemon()
    img = make_disk(os.path.join(d1.root, "hot.img"))
    conn = libvirt.open(d1.uri())
    start_ready(d1, conn)
    r = virsh(d1.uri(), "attach-disk", "hp", img, "vdb", "--live")
    assert r.returncode == 0, r.stderr
    guest_read(d1, "hp", img)
    conn.close()
    os.kill(d1.proc.pid, signal.SIGKILL)
    d1.proc.wait()

    d2 = start_daemon(root=d1.root)
    ev = DeviceEvents(d2.uri())
    conn = libvirt.open(d2.uri())
    dom = conn.lookupByName("hp")
    assert f"<source file='{img}'/>" in dom.XMLDesc(0)
    assert "<alias name='virtio-disk1'/>" in dom.XMLDesc(0)     # from the status file
    assert "vdb" not in dom.XMLDesc(L.VIR_DOMAIN_XML_INACTIVE)
    r = virsh(d2.uri(), "detach-disk", "hp", "vdb", "--live")
    assert r.returncode == 0, r.stderr
    assert ev.next() == ("removed", "hp", "virtio-disk1")
    assert img not in dom.XMLDesc(0)
    dom.destroy()
    ev.conn.close()
    conn.close()


def test_hotplug_refusals(daemon, kvm):
    d = daemon
    img = make_disk(os.path.join(d.root, "hot.img"))
    cold = make_disk(os.path.join(d.root, "cold.img"))
    conn = libvirt.open(d.uri())
    dom = conn.defineXML(hot_xml(d.root, cold=f"""
    <disk type='file' device='disk'><source file='{cold}'/><target dev='vda' bus='virtio'/></disk>"""))
    disk = f"<disk type='file' device='disk'><source file='{img}'/><target dev='vdb' bus='virtio'/></disk>"

    # inactive: --live has nothing to change
    refused(lambda: dom.attachDeviceFlags(disk, L.VIR_DOMAIN_AFFECT_LIVE),
            L.VIR_ERR_OPERATION_INVALID, "domain is not running")
    dom.create()
    wait_record(lambda: serial(d.root, "hp"), r"KVMMTEST event hotplug-ready", "the guest's hotplug")
    pid = kvmm_pid(d)
    api = api_of(d, dom)
    before = nfds(pid)

    r = virsh(d.uri(), "attach-disk", "hp", img, "vda", "--live")
    assert r.returncode != 0 and "target vda already exists" in r.stderr, r.stderr
    r = virsh(d.uri(), "attach-disk", "hp", os.path.join(d.root, "nope.img"), "vdb", "--live")
    assert r.returncode != 0 and "nope.img" in r.stderr, r.stderr
    r = virsh(d.uri(), "detach-disk", "hp", "vdc", "--live")
    assert r.returncode != 0 and "No disk found" in r.stderr, r.stderr
    refused(lambda: dom.detachDeviceFlags(disk, L.VIR_DOMAIN_AFFECT_LIVE),
            L.VIR_ERR_DEVICE_MISSING, "disk vdb not found")
    # a disk of the definition: kvmm cannot take it away
    r = virsh(d.uri(), "detach-disk", "hp", "vda", "--live")
    assert r.returncode != 0 and "plugged in at start" in r.stderr, r.stderr
    assert cold in dom.XMLDesc(0)
    # update-device: only asking for what is there succeeds
    same = f"<disk type='file' device='disk'><source file='{cold}'/><target dev='vda' bus='virtio'/></disk>"
    dom.updateDeviceFlags(same, L.VIR_DOMAIN_AFFECT_LIVE | L.VIR_DOMAIN_AFFECT_CONFIG)
    refused(lambda: dom.updateDeviceFlags(same.replace("</disk>", "<readonly/></disk>"),
                                          L.VIR_DOMAIN_AFFECT_LIVE),
            L.VIR_ERR_OPERATION_UNSUPPORTED, "updating a device is not supported by kvmm")
    refused(lambda: dom.updateDeviceFlags(disk, L.VIR_DOMAIN_AFFECT_LIVE),
            L.VIR_ERR_DEVICE_MISSING, "disk vdb not found")
    assert "<readonly/>" not in dom.XMLDesc(0)
    # by alias too, a disk of the definition stays
    refused(lambda: dom.detachDeviceAlias("virtio-disk0", L.VIR_DOMAIN_AFFECT_LIVE),
            L.VIR_ERR_OPERATION_UNSUPPORTED, "plugged in at start")
    # nothing of the refused ones is left in kvmm
    assert api.call("query-devices")["return"] == []
    assert nfds(pid) == before
    # a second domain may not open the image the first writes
    other = conn.defineXML(hot_xml(d.root, "other"))
    other.create()
    refused(lambda: other.attachDeviceFlags(disk.replace(img, cold), L.VIR_DOMAIN_AFFECT_LIVE),
            L.VIR_ERR_OPERATION_INVALID, "in use by domain 'hp'")
    other.destroy()
    # more disks than kvmm takes: 16 in all
    for i in range(15):
        path = make_disk(os.path.join(d.root, f"d{i}.img"), 8)
        r = virsh(d.uri(), "attach-disk", "hp", path, "vd" + chr(ord("b") + i), "--live")
        assert r.returncode == 0, (i, r.stderr)
    r = virsh(d.uri(), "attach-disk", "hp", img, "vdz", "--live")
    assert r.returncode != 0 and "at most 16 disks" in r.stderr, r.stderr
    assert len(api.call("query-devices")["return"]) == 15
    api.close()
    assert "vdz" not in dom.XMLDesc(0)
    dom.destroy()
    conn.close()


def test_aliases_of_hot_added_devices(daemon, kvm):
    """A hot-added disk gets libvirt's alias (or keeps the user's ua-
    one): the live XML, the status file, kvmm's device id and the events
    name it, and detach-device-alias removes the device by it."""
    d = daemon
    img = make_disk(os.path.join(d.root, "hot.img"))
    img2 = make_disk(os.path.join(d.root, "hot2.img"))
    conn = libvirt.open(d.uri())
    ev = DeviceEvents(d.uri())
    # the guest gives back two disks
    dom = conn.defineXML(guest_xml(d.root, "hp", extra_cmdline=CMDLINE + " kvmmtest.hotplug.removals=2"))
    dom.create()
    wait_record(lambda: serial(d.root, "hp"), r"KVMMTEST event hotplug-ready", "the guest's hotplug")
    api = api_of(d, dom)

    r = virsh(d.uri(), "attach-disk", "hp", img, "vdb", "--live")
    assert r.returncode == 0, r.stderr
    assert ev.next() == ("added", "hp", "virtio-disk1")
    live = dom.XMLDesc(0)
    disk = live[live.index(f"<source file='{img}'/>"):]
    disk = disk[:disk.index("</disk>")]
    assert "<alias name='virtio-disk1'/>" in disk, live
    status = glob.glob(os.path.join(state_dir(d), "*.xml"))
    assert len(status) == 1 and "<alias name='virtio-disk1'/>" in open(status[0]).read()
    assert [x["id"] for x in api.call("query-devices")["return"]] == ["virtio-disk1"]

    # unknown aliases, and devices kvmm cannot detach
    refused(lambda: dom.detachDeviceAlias("virtio-disk7", L.VIR_DOMAIN_AFFECT_LIVE),
            L.VIR_ERR_DEVICE_MISSING, "no device found with alias virtio-disk7")
    refused(lambda: dom.detachDeviceAlias("ua-nope", 0),
            L.VIR_ERR_DEVICE_MISSING, "no device found with alias ua-nope")
    refused(lambda: dom.detachDeviceAlias("serial0", L.VIR_DOMAIN_AFFECT_LIVE),
            L.VIR_ERR_OPERATION_UNSUPPORTED, "cannot be detached")

    r = virsh(d.uri(), "detach-device-alias", "hp", "virtio-disk1")
    assert r.returncode == 0, r.stderr
    assert ev.next() == ("removed", "hp", "virtio-disk1")
    assert img not in dom.XMLDesc(0)
    assert "virtio-disk1" not in open(status[0]).read()
    assert api.call("query-devices")["return"] == []

    # a user alias is kept and is kvmm's id; a run's alias given by the
    # client is not
    ua = f"""<disk type='file' device='disk'><source file='{img2}'/><target dev='vdc' bus='virtio'/>
             <alias name='ua-hot-{{}}'/></disk>"""
    long_ua = ua.format("x" * 57)          # 64 characters
    refused(lambda: dom.attachDeviceFlags(long_ua, L.VIR_DOMAIN_AFFECT_LIVE),
            L.VIR_ERR_CONFIG_UNSUPPORTED, "is too long")
    assert api.call("query-devices")["return"] == []
    dom.attachDeviceFlags(ua.format("data"), L.VIR_DOMAIN_AFFECT_LIVE)
    assert ev.next() == ("added", "hp", "ua-hot-data")
    assert "<alias name='ua-hot-data'/>" in dom.XMLDesc(0)
    assert [x["id"] for x in api.call("query-devices")["return"]] == ["ua-hot-data"]
    # the alias is taken now
    refused(lambda: dom.attachDeviceFlags(ua.format("data").replace("vdc", "vdd"),
                                          L.VIR_DOMAIN_AFFECT_LIVE),
            L.VIR_ERR_CONFIG_UNSUPPORTED, "non unique alias detected: ua-hot-data")
    run_alias = ua.format("data").replace("ua-hot-data", "net0").replace("vdc", "vdd").replace(
        img2, img)
    dom.attachDeviceFlags(run_alias, L.VIR_DOMAIN_AFFECT_LIVE)
    assert ev.next() == ("added", "hp", "virtio-disk3")
    dom.detachDeviceAlias("ua-hot-data", L.VIR_DOMAIN_AFFECT_LIVE)
    assert ev.next() == ("removed", "hp", "ua-hot-data")
    assert img2 not in dom.XMLDesc(0)
    assert [x["id"] for x in api.call("query-devices")["return"]] == ["virtio-disk3"]
    wait_record(lambda: serial(d.root, "hp"), r"KVMMTEST pass hotplug added=3 removed=2",
                "the guest's ejects")
    api.close()
    assert "KVMMTEST fail" not in serial(d.root, "hp")
    dom.destroy()

    # --config: the definition knows only user aliases
    dom.attachDeviceFlags(ua.format("cfg"), L.VIR_DOMAIN_AFFECT_CONFIG)
    assert "<alias name='ua-hot-cfg'/>" in dom.XMLDesc(L.VIR_DOMAIN_XML_INACTIVE)
    refused(lambda: dom.detachDeviceAlias("virtio-disk2", L.VIR_DOMAIN_AFFECT_CONFIG),
            L.VIR_ERR_DEVICE_MISSING, "no device found with alias virtio-disk2")
    dom.detachDeviceAlias("ua-hot-cfg", L.VIR_DOMAIN_AFFECT_CONFIG)
    assert img2 not in dom.XMLDesc(L.VIR_DOMAIN_XML_INACTIVE)
    ev.conn.close()
    conn.close()


def test_attach_detach_config(daemon, kvm):
    """--config changes the next start's definition, running or not."""
    d = daemon
    img = make_disk(os.path.join(d.root, "hot.img"))
    conn = libvirt.open(d.uri())
    dom = conn.defineXML(hot_xml(d.root))
    disk = f"<disk type='file' device='disk'><source file='{img}'/><target dev='vdb' bus='virtio'/></disk>"
    # without flags: the definition of a domain that does not run
    dom.attachDevice(disk)
    assert f"<source file='{img}'/>" in dom.XMLDesc(0)
    dom.detachDevice(disk)
    assert img not in dom.XMLDesc(0)
    refused(lambda: dom.attachDevice("<rng model='virtio'><backend model='random'>/dev/urandom</backend></rng>"),
            L.VIR_ERR_OPERATION_UNSUPPORTED, "only <disk> and <interface>")
    r = virsh(d.uri(), "attach-disk", "hp", img, "vdb", "--config")
    assert r.returncode == 0, r.stderr
    assert f"<source file='{img}'/>" in dom.XMLDesc(0)
    r = virsh(d.uri(), "attach-disk", "hp", img, "vdb", "--config")
    assert r.returncode != 0 and "target vdb already exists" in r.stderr, r.stderr
    dom.create()
    r = virsh(d.uri(), "detach-disk", "hp", "vdb", "--config")
    assert r.returncode == 0, r.stderr
    assert img in dom.XMLDesc(0)                # still the run's
    assert img not in dom.XMLDesc(L.VIR_DOMAIN_XML_INACTIVE)
    dom.destroy()
    assert img not in dom.XMLDesc(0)
    r = virsh(d.uri(), "attach-interface", "hp", "bridge", "kvbr0", "--mac", "52:54:00:12:34:98",
              "--config")
    assert r.returncode == 0, r.stderr
    assert "52:54:00:12:34:98" in dom.XMLDesc(0)
    r = virsh(d.uri(), "detach-interface", "hp", "bridge", "--mac", "52:54:00:12:34:98",
              "--config")
    assert r.returncode == 0, r.stderr
    assert "52:54:00:12:34:98" not in dom.XMLDesc(0)
    conn.close()


@pytest.fixture
def netns():
    yield from netns_lib.private("kvdh-")


def ns_taps(ns):
    out = subprocess.run(["ip", "-j", "-d", "-n", ns, "link", "show"], capture_output=True,
                         text=True, check=True).stdout
    return sorted(link["ifname"] for link in json.loads(out)
                  if link.get("linkinfo", {}).get("info_kind") == "tun")


def test_attach_detach_interface_live(start_daemon, netns, kvm):
    """A NIC on a bridge of the daemon's network namespace: the guest
    answers on it; a daemon restart keeps it, and its tap is gone once the
    guest gave it back."""
    ns = netns
    for cmd in (["link", "add", "kvbr0", "type", "bridge"],
                ["addr", "add", "10.0.9.1/24", "dev", "kvbr0"],
                ["link", "set", "kvbr0", "up"]):
        subprocess.run(["ip", "-n", ns] + cmd, check=True)
    d = start_daemon(prefix=["ip", "netns", "exec", ns])
    conn = libvirt.open(d.uri())
    ev = DeviceEvents(d.uri())
    dom = conn.defineXML(guest_xml(d.root, "hp", extra_cmdline=CMDLINE +
                                   " kvmmtest.net0.ip=10.0.9.15 kvmmtest.net.serve=60"))
    dom.create()
    wait_record(lambda: serial(d.root, "hp"), r"KVMMTEST event hotplug-ready", "the guest's hotplug")
    mac = "52:54:00:12:34:99"

    r = virsh(d.uri(), "attach-interface", "hp", "bridge", "kvbr0", "--mac", mac, "--model",
              "virtio", "--live")
    assert r.returncode == 0, r.stderr
    assert ev.next() == ("added", "hp", "net0")
    assert ns_taps(ns) == ["vnet0"]
    live = dom.XMLDesc(0)
    assert f"<mac address='{mac}'/>" in live and "<target dev='vnet0'/>" in live, live
    assert "<alias name='net0'/>" in live, live
    assert "vnet0" in open(glob.glob(os.path.join(state_dir(d), "*.xml"))[0]).read()
    wait_record(lambda: serial(d.root, "hp"), r"KVMMTEST event virtio-net-ready nics=1",
                "the guest's new NIC", timeout=60)
    r = netns_lib.probe(ns, "10.0.9.15", 7)
    assert r["ping"] == 3 and r["udp"] == r["udp_sent"] and r["quit"] == 1, r
    # the MAC is taken now
    r = virsh(d.uri(), "attach-interface", "hp", "bridge", "kvbr0", "--mac", mac, "--live")
    assert r.returncode != 0 and f"mac {mac} already exists" in r.stderr, r.stderr
    assert ns_taps(ns) == ["vnet0"]

    # a restarted daemon adopts the NIC with its tap, and removes that
    ev.conn.close()
    conn.close()
    os.kill(d.proc.pid, signal.SIGKILL)
    d.proc.wait()
    d = start_daemon(root=d.root, prefix=["ip", "netns", "exec", ns])
    conn = libvirt.open(d.uri())
    ev = DeviceEvents(d.uri())
    dom = conn.lookupByName("hp")
    assert f"<mac address='{mac}'/>" in dom.XMLDesc(0)
    assert "<alias name='net0'/>" in dom.XMLDesc(0)
    assert ns_taps(ns) == ["vnet0"]
    r = virsh(d.uri(), "detach-interface", "hp", "bridge", "--mac", mac, "--live")
    assert r.returncode == 0, r.stderr
    assert ev.next() == ("removed", "hp", "net0")
    wait_record(lambda: serial(d.root, "hp"), r"KVMMTEST pass hotplug added=1 removed=1",
                "the guest's eject", timeout=60)
    assert mac not in dom.XMLDesc(0)
    assert ns_taps(ns) == []
    r = virsh(d.uri(), "detach-interface", "hp", "bridge", "--mac", mac, "--live")
    assert r.returncode != 0 and "No interface found" in r.stderr, r.stderr
    nic = f"<interface type='bridge'><mac address='{mac}'/><source bridge='kvbr0'/></interface>"
    refused(lambda: dom.detachDeviceFlags(nic, L.VIR_DOMAIN_AFFECT_LIVE),
            L.VIR_ERR_DEVICE_MISSING, f"no device matching MAC address {mac} found")
    dom.destroy()
    ev.conn.close()
    conn.close()


def test_removal_pending_while_the_guest_keeps_the_disk(daemon, kvm):
    """A guest that ignores the request (no hotplug driver) keeps the
    disk: detach returns once libvirt's wait is over, with the removal
    pending, and the disk stays in the live XML."""
    d = daemon
    img = make_disk(os.path.join(d.root, "hot.img"))
    conn = libvirt.open(d.uri())
    dom = conn.defineXML(guest_xml(d.root, "deaf"))
    dom.create()
    wait_for(lambda: "power-button armed" in serial(d.root, "deaf"), "the guest to be up")
    # --persistent: the running guest and the definition
    r = virsh(d.uri(), "attach-disk", "deaf", img, "vdb", "--persistent")
    assert r.returncode == 0, r.stderr
    assert img in dom.XMLDesc(0) and img in dom.XMLDesc(L.VIR_DOMAIN_XML_INACTIVE)
    r = virsh(d.uri(), "detach-disk", "deaf", "vdb", "--live")
    assert r.returncode == 0, r.stderr
    assert img in dom.XMLDesc(0)
    api = api_of(d, dom)
    assert [(x["id"], x["state"]) for x in api.call("query-devices")["return"]] == [
        ("virtio-disk1", "removing")]
    api.close()
    dom.destroy()
    # the definition kept it
    assert img in dom.XMLDesc(0)
    conn.close()


def test_persistent_attach_then_restart_then_live_detach(start_daemon, kvm):
    """attach --persistent, a daemon restart (live and persistent XML now
    alike), detach --live: the guest loses the disk, the definition keeps
    it, and the next start has it again."""
    d1 = start_daemon()
    img = make_disk(os.path.join(d1.root, "hot.img"))
    conn = libvirt.open(d1.uri())
    start_ready(d1, conn)
    r = virsh(d1.uri(), "attach-disk", "hp", img, "vdb", "--persistent")
    assert r.returncode == 0, r.stderr
    guest_read(d1, "hp", img)
    conn.close()
    os.kill(d1.proc.pid, signal.SIGKILL)
    d1.proc.wait()

    d2 = start_daemon(root=d1.root)
    ev = DeviceEvents(d2.uri())
    conn = libvirt.open(d2.uri())
    dom = conn.lookupByName("hp")
    r = virsh(d2.uri(), "detach-disk", "hp", "vdb", "--live")
    assert r.returncode == 0, r.stderr
    assert ev.next() == ("removed", "hp", "virtio-disk1")
    assert img not in dom.XMLDesc(0)
    assert img in dom.XMLDesc(L.VIR_DOMAIN_XML_INACTIVE)
    dom.destroy()
    assert "<target dev='vdb' bus='virtio'/>" in dom.XMLDesc(0)
    ev.conn.close()
    conn.close()
