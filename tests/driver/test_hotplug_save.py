"""Hot-added devices and vCPUs through a save and restore with virsh and
python3-libvirt (docs/virtkvmmd.md): the test guest (kvmmtest.hotplug,
kvmmtest.cpuhp) is given a disk, a NIC and a vCPU while it runs, saved,
restored; it reads the disk, answers on the NIC, runs the vCPU, and gives
each back when detached, with DEVICE_REMOVED as before the save."""
import os
import subprocess

import libvirt

import netns as netns_lib
from drvtest import virsh
from kvmmtest import wait_record
from test_attach_detach import DeviceEvents, api_of, crc_of, guest_read, make_disk, netns  # noqa: F401
from test_lifecycle import guest_xml, serial

L = libvirt
HOTPLUG = (" kvmmtest.hotplug=240 kvmmtest.hotplug.removals=2 kvmmtest.hotplug.reread=1"
           " kvmmtest.smp=off kvmmtest.net0.ip=10.0.9.15 kvmmtest.net.serve=240")


def record(d, name, pattern, what):
    return wait_record(lambda: serial(d.root, name), pattern, what, timeout=60)


def test_save_restore_keeps_a_hot_added_disk_and_nic(start_daemon, netns, kvm):
    ns = netns
    for cmd in (["link", "add", "kvbr0", "type", "bridge"],
                ["addr", "add", "10.0.9.1/24", "dev", "kvbr0"],
                ["link", "set", "kvbr0", "up"]):
        subprocess.run(["ip", "-n", ns] + cmd, check=True)
    d = start_daemon(prefix=["ip", "netns", "exec", ns])
    conn = libvirt.open(d.uri())
    ev = DeviceEvents(d.uri())
    img = make_disk(os.path.join(d.root, "hot.img"))
    mac = "52:54:00:12:34:99"
    dom = conn.defineXML(guest_xml(d.root, "hp", extra_cmdline=HOTPLUG))
    dom.create()
    record(d, "hp", r"KVMMTEST event hotplug-ready", "the guest's hotplug")
    r = virsh(d.uri(), "attach-disk", "hp", img, "vdb", "--live")
    assert r.returncode == 0, r.stderr
    assert ev.next() == ("added", "hp", "virtio-disk1")
    guest_read(d, "hp", img)
    r = virsh(d.uri(), "attach-interface", "hp", "bridge", "kvbr0", "--mac", mac, "--model",
              "virtio", "--live")
    assert r.returncode == 0, r.stderr
    assert ev.next() == ("added", "hp", "net0")
    record(d, "hp", r"KVMMTEST event virtio-net-ready nics=1", "the guest's new NIC")
    api = api_of(d, dom)
    slots = {x["id"]: x["slot"] for x in api.call("query-devices")["return"]}
    api.close()

    out = os.path.join(d.root, "hp.save")
    r = virsh(d.uri(), "save", "hp", out)
    assert r.returncode == 0, r.stderr
    assert dom.state() == [L.VIR_DOMAIN_SHUTOFF, L.VIR_DOMAIN_SHUTOFF_SAVED]
    r = virsh(d.uri(), "restore", out)
    assert r.returncode == 0, r.stderr
    assert dom.state() == [L.VIR_DOMAIN_RUNNING, L.VIR_DOMAIN_RUNNING_RESTORED]
    live = dom.XMLDesc(0)
    assert f"<source file='{img}'" in live and f"<mac address='{mac}'/>" in live, live
    assert "<alias name='virtio-disk1'/>" in live and "<alias name='net0'/>" in live, live
    # The same devices at the same slots, under the aliases detach names.
    api = api_of(d, dom)
    assert {x["id"]: x["slot"] for x in api.call("query-devices")["return"]} == slots
    api.close()
    # The guest's NIC driver answers in the restored kvmm, on a new tap.
    r = netns_lib.probe(ns, "10.0.9.15", 7)
    assert r["ping"] == 3 and r["udp"] == r["udp_sent"] and r["quit"] == 1, r

    r = virsh(d.uri(), "detach-disk", "hp", "vdb", "--live")
    assert r.returncode == 0, r.stderr
    assert ev.next() == ("removed", "hp", "virtio-disk1")
    m = record(d, "hp", rf"KVMMTEST pass hotplug-reread slot={slots['virtio-disk1']} dev=blk0 "
               r"sectors=64 crc32=(\w+)", "the guest's read after the restore")
    assert int(m.group(1), 16) == crc_of(img)
    r = virsh(d.uri(), "detach-interface", "hp", "bridge", "--mac", mac, "--live")
    assert r.returncode == 0, r.stderr
    assert ev.next() == ("removed", "hp", "net0")
    record(d, "hp", r"KVMMTEST pass hotplug added=2 removed=2", "the guest's ejects")
    live = dom.XMLDesc(0)
    assert img not in live and mac not in live
    assert "KVMMTEST fail" not in serial(d.root, "hp")
    dom.destroy()
    ev.conn.close()
    conn.close()


def test_managedsave_keeps_a_hot_added_vcpu(daemon, kvm):
    d = daemon
    conn = libvirt.open(d.uri())
    cmdline = " kvmmtest.cpuhp=120 kvmmtest.cpuhp.adds=1 kvmmtest.cpuhp.removals=1"
    dom = conn.defineXML(guest_xml(d.root, "vc", extra_cmdline=cmdline).replace(
        "<vcpu>1</vcpu>", "<vcpu current='1'>3</vcpu>"))
    dom.create()
    record(d, "vc", r"KVMMTEST event cpuhp-ready online=1", "the guest's CPU hotplug")
    r = virsh(d.uri(), "setvcpus", "vc", "2", "--live")
    assert r.returncode == 0, r.stderr
    record(d, "vc", r"KVMMTEST pass cpu-work apic_id=1 ", "the guest's new vCPU")

    r = virsh(d.uri(), "managedsave", "vc")
    assert r.returncode == 0, r.stderr
    assert dom.hasManagedSaveImage() == 1
    r = virsh(d.uri(), "start", "vc")
    assert r.returncode == 0, r.stderr
    assert dom.state() == [L.VIR_DOMAIN_RUNNING, L.VIR_DOMAIN_RUNNING_RESTORED]
    assert dom.vcpusFlags(L.VIR_DOMAIN_AFFECT_LIVE) == 2
    assert dom.vcpusFlags(L.VIR_DOMAIN_AFFECT_LIVE | L.VIR_DOMAIN_VCPU_MAXIMUM) == 3
    # The image's definition runs; the persistent one is the next start's.
    assert dom.vcpusFlags(L.VIR_DOMAIN_AFFECT_CONFIG) == 1
    # The guest stops and ejects the restored vCPU when asked.
    r = virsh(d.uri(), "setvcpus", "vc", "1", "--live")
    assert r.returncode == 0, r.stderr
    record(d, "vc", r"KVMMTEST pass cpuhp added=1 removed=1 online=1", "the guest's eject")
    assert dom.vcpusFlags(L.VIR_DOMAIN_AFFECT_LIVE) == 1
    # And takes one again.
    r = virsh(d.uri(), "setvcpus", "vc", "2", "--live")
    assert r.returncode == 0, r.stderr
    assert dom.vcpusFlags(L.VIR_DOMAIN_AFFECT_LIVE) == 2
    assert "KVMMTEST fail" not in serial(d.root, "vc")
    dom.destroy()
    conn.close()


def test_snapshot_of_a_guest_with_a_hot_added_disk_is_refused(daemon, kvm):
    """A running snapshot after an attach: the domain's definition for
    its next start differs from the run's, which a snapshot refuses in
    libvirt's words, leaving the guest running with its disk."""
    d = daemon
    conn = libvirt.open(d.uri())
    img = make_disk(os.path.join(d.root, "hot.img"))
    cmdline = " kvmmtest.hotplug=240 kvmmtest.smp=off"
    dom = conn.defineXML(guest_xml(d.root, "sh", extra_cmdline=cmdline))
    dom.create()
    record(d, "sh", r"KVMMTEST event hotplug-ready", "the guest's hotplug")
    r = virsh(d.uri(), "attach-disk", "sh", img, "vdb", "--persistent")
    assert r.returncode == 0, r.stderr
    guest_read(d, "sh", img)
    r = virsh(d.uri(), "snapshot-create-as", "sh", "s1")
    assert r.returncode != 0 and "a new definition waiting for its next start" in r.stderr, r.stderr
    assert dom.state()[0] == L.VIR_DOMAIN_RUNNING
    assert dom.snapshotNum() == 0
    api = api_of(d, dom)
    assert [x["id"] for x in api.call("query-devices")["return"]] == ["virtio-disk1"]
    api.close()
    dom.destroy()
    conn.close()
