"""virsh migrate (--live, and stopped) of a guest given a disk, a NIC and a vCPU while
it ran, between the two test daemons of test_migrate.py (docs/virtkvmmd.md):
on the destination the devices are at the slots the guest knows, the
guest answers on the NIC and reads the disk, and detach there gives each
back with DEVICE_REMOVED."""
import os
import subprocess

import libvirt
import pytest

import netns as netns_lib
from drvtest import virsh
from kvmmtest import wait_record
from test_attach_detach import DeviceEvents, api_of, crc_of, make_disk
from test_lifecycle import guest_xml, serial
from test_migrate import hosts, migrate, ns_dst, ns_src, tls_dst_conf  # noqa: F401 (fixtures)
from test_tls import pki  # noqa: F401 (fixture)

L = libvirt
HOTPLUG = (" kvmmtest.hotplug=240 kvmmtest.hotplug.removals=2 kvmmtest.hotplug.reread=1"
           " kvmmtest.smp=off kvmmtest.net0.ip=10.0.9.15 kvmmtest.net.serve=240")


def record(shared, pattern, what):
    return wait_record(lambda: serial(shared, "hm"), pattern, what, timeout=60)


@pytest.fixture(params=["--live", None], ids=["live", "stopped"])
def mode(request):
    """The migration's flag.  Both daemons confine kvmm (sandbox = 1, the
    default): the destination opens the hot-added disk before it confines
    itself and gets every tap as a descriptor."""
    return request.param


def test_migration_carries_hot_added_devices_and_vcpus(mode, hosts):
    flag = mode
    src, dst, shared = hosts
    # The same bridge on both hosts, as the NIC's <source bridge=> needs.
    for ns in (src.ns, dst.ns):
        for cmd in (["link", "add", "kvbr0", "type", "bridge"],
                    ["addr", "add", "10.0.9.1/24", "dev", "kvbr0"],
                    ["link", "set", "kvbr0", "up"]):
            subprocess.run(["ip", "-n", ns] + cmd, check=True)
    img = make_disk(os.path.join(shared, "hot.img"))
    mac = "52:54:00:12:34:98"
    dom = src.conn.defineXML(guest_xml(shared, "hm", extra_cmdline=HOTPLUG).replace(
        "<vcpu>1</vcpu>", "<vcpu current='1'>2</vcpu>"))
    dom.create()
    record(shared, r"KVMMTEST event hotplug-ready", "the guest's hotplug")
    r = virsh(src.uri, "attach-disk", "hm", img, "vdb", "--live")
    assert r.returncode == 0, r.stderr
    record(shared, r"KVMMTEST pass virtio-blk-read dev=blk0 ", "the guest's read")
    r = virsh(src.uri, "attach-interface", "hm", "bridge", "kvbr0", "--mac", mac, "--model",
              "virtio", "--live")
    assert r.returncode == 0, r.stderr
    record(shared, r"KVMMTEST event virtio-net-ready nics=1", "the guest's new NIC")
    r = virsh(src.uri, "setvcpus", "hm", "2", "--live")
    assert r.returncode == 0, r.stderr
    api = api_of(src.d, dom)
    slots = {x["id"]: x["slot"] for x in api.call("query-devices")["return"]}
    api.close()
    assert sorted(slots) == ["net0", "virtio-disk1"], slots

    r = migrate(src, dst, "hm", *([flag] if flag else []))
    assert r.returncode == 0, r.stderr + src.d.output() + dst.d.output()
    ddom = dst.conn.lookupByName("hm")
    assert ddom.state() == [L.VIR_DOMAIN_RUNNING, L.VIR_DOMAIN_RUNNING_MIGRATED]
    with open(f"/proc/{dst.d.guests()[0]}/cmdline", "rb") as f:
        assert b"--sandbox" in f.read().split(b"\0")
    assert src.d.guests() == []
    live = ddom.XMLDesc(0)
    assert f"<source file='{img}'" in live and f"<mac address='{mac}'/>" in live, live
    assert ddom.vcpusFlags(L.VIR_DOMAIN_AFFECT_LIVE) == 2
    api = api_of(dst.d, ddom)
    assert {x["id"]: x["slot"] for x in api.call("query-devices")["return"]} == slots
    st = api.call("query-status")["return"]
    assert st["vcpus"] == 2, st
    api.close()
    # The guest's NIC driver answers on the destination's tap.
    r = netns_lib.probe(dst.ns, "10.0.9.15", 7)
    assert r["ping"] == 3 and r["udp"] == r["udp_sent"] and r["quit"] == 1, r

    ev = DeviceEvents(dst.uri)
    r = virsh(dst.uri, "detach-disk", "hm", "vdb", "--live")
    assert r.returncode == 0, r.stderr
    assert ev.next() == ("removed", "hm", "virtio-disk1")
    m = record(shared, rf"KVMMTEST pass hotplug-reread slot={slots['virtio-disk1']} dev=blk0 "
               r"sectors=64 crc32=(\w+)", "the guest's read on the destination")
    assert int(m.group(1), 16) == crc_of(img)
    r = virsh(dst.uri, "detach-interface", "hm", "bridge", "--mac", mac, "--live")
    assert r.returncode == 0, r.stderr
    assert ev.next() == ("removed", "hm", "net0")
    record(shared, r"KVMMTEST pass hotplug added=2 removed=2", "the guest's ejects")
    assert "KVMMTEST fail" not in serial(shared, "hm")
    ddom.destroy()
    ev.conn.close()
