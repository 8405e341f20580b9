"""Domain snapshots through virtkvmmd (external: each disk goes onto a new
qcow2 overlay the daemon writes, over the image it had): virsh's
snapshot-create-as / list / current / dumpxml / revert / delete and
python3-libvirt's snapshot API, with the test guest writing its disk
after the snapshot and the revert bringing back the snapshot's disk;
metadata kept across a daemon restart; undefine refusing a domain with
snapshots; bad input refused with nothing half made."""
import json
import os
import re
import subprocess
import zlib

import libvirt
import pytest

from drvtest import virsh
from kvmmtest import GUEST, complete_lines, live_ticks
from test_lifecycle import Events, serial, wait_for
from test_disks import (SECTOR, as_raw, check_clean, image, pattern, qcow2_guest, qemu_img,
                        run_to_poweroff)

L = libvirt


def raw_disk(path):
    return f"""      <driver name='qemu' type='raw'/>
      <source file='{path}'/>"""


def define(d, conn, name="sn", write="100+8"):
    base = os.path.join(d.root, f"{name}.img")
    data = image(base, 4096)
    dom = conn.defineXML(qcow2_guest(d, name, raw_disk(base), f"kvmmtest.blk0.write={write}"))
    return dom, base, data


def ok(d, *args):
    r = virsh(d.uri(), *args, timeout=120)
    assert r.returncode == 0, (args, r.stdout, r.stderr)
    return r.stdout


def fails(d, *args):
    r = virsh(d.uri(), *args, timeout=120)
    assert r.returncode != 0, (args, r.stdout)
    return r.stderr


def written(data, sectors):
    want = bytearray(data)
    for s in sectors:
        want[s * SECTOR:(s + 1) * SECTOR] = pattern(s)
    return bytes(want)


def snapdir(d, dom):
    return os.path.join(d.root, "lib", "kvmm", "snapshot", dom)


@pytest.fixture
def conn(daemon):
    c = libvirt.open(daemon.uri())
    yield c
    c.close()


def test_disk_only_snapshot_guest_writes_then_revert(daemon, conn, kvm):
    d = daemon
    dom, base, data = define(d, conn)
    out = ok(d, "snapshot-create-as", "sn", "s1", "--description", "before the writes",
             "--disk-only", "--atomic")
    assert "Domain snapshot s1 created" in out, out
    overlay = os.path.join(d.root, "sn.s1")
    # The disk is on the overlay now, the overlay over the image it had.
    xml = dom.XMLDesc(L.VIR_DOMAIN_XML_INACTIVE)
    assert f"<source file='{overlay}'/>" in xml and "type='qcow2'" in xml, xml
    check_clean(overlay)
    assert as_raw(overlay, "qcow2", d.root) == data

    # The guest writes sectors 100..107 after the snapshot: the overlay
    # takes them, the snapshot's image stays as it was.
    run_to_poweroff(d, dom, "sn")
    assert open(base, "rb").read() == data
    assert as_raw(overlay, "qcow2", d.root) == written(data, range(100, 108))

    dump = ok(d, "snapshot-dumpxml", "sn", "s1")
    assert "<name>s1</name>" in dump and "<description>before the writes</description>" in dump
    assert "<state>disk-snapshot</state>" in dump and "<memory snapshot='no'/>" in dump, dump
    assert f"<disk name='vda' snapshot='external' type='file'>" in dump, dump
    assert f"<source file='{overlay}'/>" in dump, dump
    # the domain as it was: on the raw image
    assert f"<source file='{base}'/>" in dump and "<parent>" not in dump, dump
    assert ok(d, "snapshot-current", "sn", "--name").strip() == "s1"

    # A second snapshot is the first one's child.
    ok(d, "snapshot-create-as", "sn", "s2", "--disk-only")
    assert ok(d, "snapshot-current", "sn", "--name").strip() == "s2"
    assert "<parent>\n    <name>s1</name>\n  </parent>" in ok(d, "snapshot-dumpxml", "sn", "s2")
    tree = ok(d, "snapshot-list", "sn", "--tree")
    assert tree.splitlines()[0] == "s1" and "+- s2" in tree, tree
    rows = [l.split() for l in ok(d, "snapshot-list", "sn", "--parent").splitlines()[2:] if l.strip()]
    assert [(r[0], r[5:]) for r in rows] == [("s1", []), ("s2", ["s1"])], rows
    assert ok(d, "snapshot-list", "sn", "--name", "--leaves").split() == ["s2"]
    assert ok(d, "snapshot-list", "sn", "--name", "--roots").split() == ["s1"]

    # Revert to s1: a fresh overlay over the image s1 kept, the guest's
    # writes gone from what the domain sees; s1 is current.
    ok(d, "snapshot-revert", "sn", "s1")
    xml = dom.XMLDesc(L.VIR_DOMAIN_XML_INACTIVE)
    fresh = overlay + "-1"
    assert f"<source file='{fresh}'/>" in xml, xml
    assert as_raw(fresh, "qcow2", d.root) == data
    check_clean(fresh)
    assert dom.state() == [L.VIR_DOMAIN_SHUTOFF, L.VIR_DOMAIN_SHUTOFF_FROM_SNAPSHOT]
    assert ok(d, "snapshot-current", "sn", "--name").strip() == "s1"
    # The guest runs again from the snapshot's disk.
    run_to_poweroff(d, dom, "sn")
    assert as_raw(fresh, "qcow2", d.root) == written(data, range(100, 108))
    assert open(base, "rb").read() == data

    # Delete: metadata only; the overlays stay (the domain may be on them).
    ok(d, "snapshot-delete", "sn", "s2")
    assert ok(d, "snapshot-list", "sn", "--name").split() == ["s1"]
    assert os.path.exists(os.path.join(d.root, "sn.s2"))
    ok(d, "snapshot-delete", "sn", "s1", "--metadata")
    assert ok(d, "snapshot-list", "sn", "--name").split() == []
    assert os.listdir(snapdir(d, "sn")) == []
    assert "has no current snapshot" in fails(d, "snapshot-current", "sn", "--name")
    assert not dom.hasCurrentSnapshot()


def test_snapshot_api_tree_and_flags(daemon, conn, kvm):
    d = daemon
    dom, base, data = define(d, conn)
    s1 = dom.snapshotCreateXML("<domainsnapshot><name>a</name></domainsnapshot>", 0)
    s2 = dom.snapshotCreateXML("<domainsnapshot><name>b</name></domainsnapshot>",
                               L.VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY)
    dom.revertToSnapshot(s1)
    s3 = dom.snapshotCreateXML("<domainsnapshot><name>c</name></domainsnapshot>", 0)
    assert [s.getName() for s in dom.listAllSnapshots()] == ["a", "b", "c"]
    assert dom.snapshotNum() == 3 and sorted(dom.snapshotListNames()) == ["a", "b", "c"]
    assert [s.getName() for s in dom.listAllSnapshots(L.VIR_DOMAIN_SNAPSHOT_LIST_ROOTS)] == ["a"]
    assert [s.getName() for s in dom.listAllSnapshots(L.VIR_DOMAIN_SNAPSHOT_LIST_LEAVES)] == ["b", "c"]
    assert [s.getName() for s in dom.listAllSnapshots(L.VIR_DOMAIN_SNAPSHOT_LIST_DISK_ONLY)] == ["b"]
    assert [s.getName() for s in dom.listAllSnapshots(L.VIR_DOMAIN_SNAPSHOT_LIST_INACTIVE)] == ["a", "c"]
    assert dom.listAllSnapshots(L.VIR_DOMAIN_SNAPSHOT_LIST_INTERNAL) == []
    assert s2.getParent().getName() == "a" and s3.getParent().getName() == "a"
    with pytest.raises(libvirt.libvirtError, match="does not have a parent"):
        s1.getParent()
    assert sorted(c.getName() for c in s1.listAllChildren()) == ["b", "c"]
    assert s1.numChildren() == 2 and sorted(s1.listChildrenNames()) == ["b", "c"]
    assert s3.isCurrent() and not s1.isCurrent() and s1.hasMetadata()
    conn.defineXML(qcow2_guest(d, "other", raw_disk(base), ""))
    assert [x.name() for x in conn.listAllDomains(L.VIR_CONNECT_LIST_DOMAINS_HAS_SNAPSHOT)] == ["sn"]
    assert [x.name() for x in conn.listAllDomains(L.VIR_CONNECT_LIST_DOMAINS_NO_SNAPSHOT)] == ["other"]
    assert dom.snapshotCurrent().getName() == "c"
    assert dom.snapshotLookupByName("b").getName() == "b"
    info = ok(d, "snapshot-info", "sn", "a")
    assert "Current:        no" in info and "Children:       2" in info, info
    assert "Descendants:    2" in info and "Metadata:       yes" in info, info
    assert ok(d, "snapshot-parent", "sn", "b").strip() == "a"
    assert ok(d, "snapshot-list", "sn", "--name", "--from", "a").split() == ["b", "c"]
    # Deleting a with its children takes all three; the overlays stay.
    s1.delete(L.VIR_DOMAIN_SNAPSHOT_DELETE_CHILDREN)
    assert dom.snapshotNum() == 0 and not dom.hasCurrentSnapshot()
    assert all(os.path.exists(os.path.join(d.root, f"sn.{n}")) for n in "abc")


def test_diskspec_names_the_overlay_and_readonly_disks_are_left(daemon, conn, kvm):
    d = daemon
    base = os.path.join(d.root, "ds.img")
    seed = os.path.join(d.root, "seed.img")
    data = image(base, 2048)
    image(seed, 128)
    xml = qcow2_guest(d, "ds", raw_disk(base), "").replace("""    </disk>
""", f"""    </disk>
    <disk type='file' device='disk'>
      <source file='{seed}'/>
      <target dev='vdb' bus='virtio'/>
      <readonly/>
    </disk>
""", 1)
    dom = conn.defineXML(xml)
    mine = os.path.join(d.root, "mine.qcow2")
    ok(d, "snapshot-create-as", "ds", "s", "--disk-only", "--diskspec", f"vda,file={mine}")
    dump = ok(d, "snapshot-dumpxml", "ds", "s")
    assert f"<source file='{mine}'/>" in dump and "<disk name='vdb' snapshot='no'/>" in dump, dump
    live = dom.XMLDesc(L.VIR_DOMAIN_XML_INACTIVE)
    assert f"<source file='{mine}'/>" in live and f"<source file='{seed}'/>" in live, live
    assert as_raw(mine, "qcow2", d.root) == data
    # snapshot='no' for a writable disk: it stays on its image.
    dom.snapshotCreateXML("<domainsnapshot><name>t</name><disks><disk name='vda' snapshot='no'/>"
                          "</disks></domainsnapshot>", 0)
    assert dom.XMLDesc(L.VIR_DOMAIN_XML_INACTIVE) == live


def test_overlay_of_a_large_image_and_no_metadata(daemon, conn, kvm):
    """An image whose L1 table spans several clusters (over 4 TiB): the
    overlay is clean for qemu-img and has the image's size; --no-metadata
    makes the overlay and moves the disk, and records nothing."""
    d = daemon
    big = os.path.join(d.root, "big.img")
    with open(big, "wb") as f:
        f.truncate(5 << 40)
    dom = conn.defineXML(qcow2_guest(d, "big", raw_disk(big), ""))
    ok(d, "snapshot-create-as", "big", "s", "--no-metadata")
    overlay = os.path.join(d.root, "big.s")
    check_clean(overlay)
    info = json.loads(qemu_img("info", "--output=json", overlay))
    assert info["virtual-size"] == 5 << 40 and info["backing-filename"] == big, info
    assert info["backing-filename-format"] == "raw", info
    inactive = dom.XMLDesc(L.VIR_DOMAIN_XML_INACTIVE)
    assert f"<source file='{overlay}'/>" in inactive and "backingStore" not in inactive, inactive
    assert dom.snapshotNum() == 0 and not os.path.exists(snapdir(d, "big"))


def test_metadata_survives_restart_and_undefine_refuses(start_daemon, kvm):
    d = start_daemon()
    conn = libvirt.open(d.uri())
    dom, base, data = define(d, conn)
    ok(d, "snapshot-create-as", "sn", "s1")
    ok(d, "snapshot-create-as", "sn", "s2")
    dump = ok(d, "snapshot-dumpxml", "sn", "s2")
    conn.close()
    d.stop()
    d2 = start_daemon(root=d.root)
    assert ok(d2, "snapshot-list", "sn", "--name").split() == ["s1", "s2"]
    assert ok(d2, "snapshot-current", "sn", "--name").strip() == "s2"
    assert ok(d2, "snapshot-dumpxml", "sn", "s2") == dump
    # libvirt's refusal, then its flag removes the metadata with the domain.
    err = fails(d2, "undefine", "sn")
    assert "cannot delete inactive domain with 2 snapshots" in err, err
    assert "sn" in ok(d2, "list", "--all", "--name").split()
    ok(d2, "undefine", "sn", "--snapshots-metadata")
    assert not os.path.exists(snapdir(d2, "sn"))
    conn = libvirt.open(d2.uri())
    dom, base, data = define(d2, conn)
    assert dom.snapshotNum() == 0
    conn.close()


def test_redefine_and_current(daemon, conn, kvm):
    d = daemon
    dom, base, data = define(d, conn)
    ok(d, "snapshot-create-as", "sn", "s1")
    ok(d, "snapshot-create-as", "sn", "s2")
    xml1 = ok(d, "snapshot-dumpxml", "sn", "s1")
    xml2 = ok(d, "snapshot-dumpxml", "sn", "s2")
    ok(d, "snapshot-delete", "sn", "s2", "--metadata")
    ok(d, "snapshot-delete", "sn", "s1", "--metadata")
    for n, x in (("s1", xml1), ("s2", xml2)):
        p = os.path.join(d.root, f"{n}.xml")
        open(p, "w").write(x)
        ok(d, "snapshot-create", "sn", p, "--redefine")
    assert ok(d, "snapshot-dumpxml", "sn", "s1") == xml1
    assert ok(d, "snapshot-dumpxml", "sn", "s2") == xml2
    assert not dom.hasCurrentSnapshot()
    ok(d, "snapshot-create", "sn", os.path.join(d.root, "s1.xml"), "--redefine", "--current")
    assert ok(d, "snapshot-current", "sn", "--name").strip() == "s1"
    # A redefinition whose parent is unknown, or of another domain.
    other = xml2.replace("<name>s1</name>", "<name>nosuch</name>")
    open(os.path.join(d.root, "bad.xml"), "w").write(other)
    err = fails(d, "snapshot-create", "sn", os.path.join(d.root, "bad.xml"), "--redefine")
    assert "parent nosuch for snapshot s2 not found" in err, err
    # snapshot-edit: the XML through an editor, redefined; s1 stays current.
    r = subprocess.run(["virsh", "-c", d.uri(), "snapshot-edit", "sn", "s1"], capture_output=True,
                       text=True, timeout=120,
                       env=dict(os.environ, LC_ALL="C",
                                EDITOR="sed -i 's|</name>|</name>\\n  <description>edited</description>|'"))
    assert r.returncode == 0, r.stderr
    assert "<description>edited</description>" in ok(d, "snapshot-dumpxml", "sn", "s1")
    assert ok(d, "snapshot-current", "sn", "--name").strip() == "s1"
    # Snapshot metadata is filed under the domain's name: no rename.
    with pytest.raises(libvirt.libvirtError, match="cannot rename domain with snapshots"):
        dom.rename("renamed", 0)


def test_bad_input_is_refused_with_nothing_made(daemon, conn, kvm):
    d = daemon
    dom, base, data = define(d, conn)
    before = sorted(os.listdir(d.root))
    err = fails(d, "snapshot-dumpxml", "sn", "nosuch")
    assert "Domain snapshot not found: no domain snapshot with matching name 'nosuch'" in err, err
    assert "nosuch" in fails(d, "snapshot-revert", "sn", "nosuch")
    assert "nosuch" in fails(d, "snapshot-delete", "sn", "nosuch")
    with pytest.raises(libvirt.libvirtError) as e:
        dom.snapshotCreateXML("<domainsnapshot><name>x</name>", 0)
    assert e.value.get_error_code() == L.VIR_ERR_XML_ERROR
    with pytest.raises(libvirt.libvirtError, match="unexpected root element"):
        dom.snapshotCreateXML("<domain/>", 0)
    with pytest.raises(libvirt.libvirtError, match="internal snapshots are not supported"):
        dom.snapshotCreateXML("<domainsnapshot><disks><disk name='vda' snapshot='internal'/>"
                              "</disks></domainsnapshot>", 0)
    with pytest.raises(libvirt.libvirtError, match="no disk named 'vdz'"):
        dom.snapshotCreateXML("<domainsnapshot><disks><disk name='vdz'/></disks></domainsnapshot>", 0)
    with pytest.raises(libvirt.libvirtError, match="memory state cannot be saved"):
        dom.snapshotCreateXML("<domainsnapshot><memory snapshot='external' file='/tmp/m'/>"
                              "</domainsnapshot>", 0)
    with pytest.raises(libvirt.libvirtError, match="not valid"):
        dom.snapshotCreateXML("<domainsnapshot><name>../x</name></domainsnapshot>", 0)
    with pytest.raises(libvirt.libvirtError, match="guest agent"):
        dom.snapshotCreateXML("<domainsnapshot/>", L.VIR_DOMAIN_SNAPSHOT_CREATE_QUIESCE)
    with pytest.raises(libvirt.libvirtError, match="reusing existing overlay"):
        dom.snapshotCreateXML("<domainsnapshot/>", L.VIR_DOMAIN_SNAPSHOT_CREATE_REUSE_EXT)
    assert sorted(os.listdir(d.root)) == before and dom.snapshotNum() == 0
    assert dom.XMLDesc(L.VIR_DOMAIN_XML_INACTIVE).count(f"<source file='{base}'/>") == 1

    # A duplicate name: refused, the first one untouched, no overlay made.
    dom.snapshotCreateXML("<domainsnapshot><name>one</name></domainsnapshot>", 0)
    made = sorted(os.listdir(d.root))
    xml = dom.XMLDesc(L.VIR_DOMAIN_XML_INACTIVE)
    with pytest.raises(libvirt.libvirtError, match="domain snapshot 'one' already exists"):
        dom.snapshotCreateXML("<domainsnapshot><name>one</name></domainsnapshot>", 0)
    assert sorted(os.listdir(d.root)) == made and dom.XMLDesc(L.VIR_DOMAIN_XML_INACTIVE) == xml
    # An overlay file that exists already: refused, the domain unchanged.
    open(os.path.join(d.root, "sn.two"), "w").write("mine")
    err = fails(d, "snapshot-create-as", "sn", "two")
    assert "already exists" in err, err
    assert open(os.path.join(d.root, "sn.two")).read() == "mine"
    assert dom.XMLDesc(L.VIR_DOMAIN_XML_INACTIVE) == xml and dom.snapshotNum() == 1

    # Read-only clients may list, not create.
    ro = libvirt.openReadOnly(d.uri(ro=True))
    rdom = ro.lookupByName("sn")
    assert [s.getName() for s in rdom.listAllSnapshots()] == ["one"]
    with pytest.raises(libvirt.libvirtError, match="read only"):
        rdom.snapshotCreateXML("<domainsnapshot/>", 0)
    ro.close()


def live_xml(d, name, base, extra=""):
    return f"""<domain type='kvm'>
  <name>{name}</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type>hvm</type><kernel>{GUEST}</kernel>
    <cmdline>kvmmtest.action=live kvmmtest.tick_ms=50 kvmmtest.virtio=blk{extra}</cmdline></os>
  <on_poweroff>destroy</on_poweroff>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='{base}'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <serial type='file'><source path='{d.root}/{name}-serial.log'/><target port='0'/></serial>
  </devices>
</domain>"""


def ticks(d, name, start=0):
    """(n, blk0 crc) of each tick the guest printed from offset START."""
    return [(t.n, t.blk0) for t in live_ticks(serial(d.root, name)[start:])]


def wait_ticks(d, name, n, start=0):
    wait_for(lambda: len(ticks(d, name, start)) >= n, f"{n} ticks of {name}", timeout=120)


def crc8(data):
    """What the live guest reports for sectors 0-7."""
    return "0x%08x" % zlib.crc32(data[:8 * SECTOR])


def test_running_snapshot_guest_runs_on_and_revert_restores_state_and_disk(daemon, conn, kvm):
    d = daemon
    base = os.path.join(d.root, "lv.img")
    data = image(base, 2048)
    dom = conn.defineXML(live_xml(d, "lv", base))
    dom.create()
    wait_ticks(d, "lv", 3)
    ev = Events(d.uri())
    domid, pids = dom.ID(), d.guests()
    before = ticks(d, "lv")
    ok(d, "snapshot-create-as", "lv", "s1", "--description", "ticking")
    # The snapshot was taken at or before the end of what the file holds
    # now; if that ends partway through a tick's line (written a byte at
    # a time), the snapshot's tick may be that line's: wait for its end.
    text = serial(d.root, "lv")
    cut = text.rfind("\n") + 1
    if cut < len(text):
        text = wait_for(lambda: (lambda s: "\n" in s[cut:] and s[:s.index("\n", cut) + 1])(
            serial(d.root, "lv")), "the tick line in progress at the snapshot")
    after = live_ticks(text)
    # Paused for the save and the switch, then resumed: the same kvmm.
    assert ev.next() == ("lv", L.VIR_DOMAIN_EVENT_SUSPENDED, L.VIR_DOMAIN_EVENT_SUSPENDED_PAUSED)
    assert ev.next() == ("lv", L.VIR_DOMAIN_EVENT_RESUMED, L.VIR_DOMAIN_EVENT_RESUMED_UNPAUSED)
    assert dom.ID() == domid and d.guests() == pids
    assert dom.state() == [L.VIR_DOMAIN_RUNNING, L.VIR_DOMAIN_RUNNING_UNPAUSED]
    # It ran as a job, as libvirt's snapshots do.
    out = virsh(d.uri(), "domjobinfo", "lv", "--completed").stdout
    assert re.search(r"Job type:\s+Completed", out) and re.search(r"Operation:\s+Snapshot", out), out
    # The guest runs on from where it was: one boot, one count.
    wait_for(lambda: ticks(d, "lv")[-1][0] >= after[-1].n + 3, "ticks after the snapshot")
    t = ticks(d, "lv")
    assert [n for n, _ in t] == list(range(1, len(t) + 1)), t
    assert serial(d.root, "lv").count("KVMMTEST boot") == 1
    assert {c for _, c in t} == {crc8(data)}
    assert dom.state()[0] == L.VIR_DOMAIN_RUNNING
    overlay = os.path.join(d.root, "lv.s1")
    mem = os.path.join(snapdir(d, "lv"), "s1.mem")
    live = dom.XMLDesc(0)
    assert f"""<source file='{overlay}' index='2'/>
      <backingStore type='file' index='1'>
        <format type='raw'/>
        <source file='{base}'/>
        <backingStore/>
      </backingStore>""" in live, live
    assert f"<source file='{overlay}'/>" in dom.XMLDesc(L.VIR_DOMAIN_XML_INACTIVE)
    dump = ok(d, "snapshot-dumpxml", "lv", "s1")
    assert "<state>running</state>" in dump and f"<memory snapshot='external' file='{mem}'/>" in dump, dump
    assert os.path.getsize(mem) > 0

    # A disk-only snapshot of the running guest: it runs on, no memory kept.
    ok(d, "snapshot-create-as", "lv", "s2", "--disk-only")
    n = ticks(d, "lv")[-1][0]
    wait_for(lambda: ticks(d, "lv")[-1][0] >= n + 3, "ticks after the disk-only snapshot")
    assert dom.ID() == domid and d.guests() == pids
    assert f"<source file='{os.path.join(d.root, 'lv.s2')}' index='3'/>" in dom.XMLDesc(0)
    assert "<state>disk-snapshot</state>" in ok(d, "snapshot-dumpxml", "lv", "s2")
    assert sorted(os.listdir(snapdir(d, "lv"))) == ["s1.mem", "s1.xml", "s2.xml"]

    # Another boot writes sectors 0-7 (on the disk-only snapshot's overlay).
    dom.destroy()
    xml = dom.XMLDesc(L.VIR_DOMAIN_XML_INACTIVE)
    assert f"<source file='{os.path.join(d.root, 'lv.s2')}'/>" in xml and "backingStore" not in xml
    conn.defineXML(xml.replace("kvmmtest.virtio=blk", "kvmmtest.virtio=blk kvmmtest.blk0.write=0+8"))
    mark = len(serial(d.root, "lv"))
    dom.create()
    written8 = written(data, range(8))
    wait_ticks(d, "lv", 2, mark)
    assert {c for _, c in ticks(d, "lv", mark)} == {crc8(written8)}

    # Revert to s1: the guest goes on from s1's tick, reading s1's disk.
    # (Paused first, so that every tick after the mark is the reverted
    # guest's; the revert ends that run.)
    dom.suspend()
    mark = len(serial(d.root, "lv"))
    ok(d, "snapshot-revert", "lv", "s1")
    assert dom.state()[0] == L.VIR_DOMAIN_RUNNING
    wait_ticks(d, "lv", 3, mark)
    t = ticks(d, "lv", mark)
    assert before[-1][0] < t[0][0] <= after[-1][0] + 1, (before[-1], after[-1], t[0])
    assert [n for n, _ in t] == list(range(t[0][0], t[0][0] + len(t))), t
    assert {c for _, c in t} == {crc8(data)}
    assert "blk0.write" not in dom.XMLDesc(L.VIR_DOMAIN_XML_INACTIVE)
    assert ok(d, "snapshot-current", "lv", "--name").strip() == "s1"
    dom.destroy()
    # The images: the base never written, the later boot's writes on s2's overlay.
    assert open(base, "rb").read() == data
    assert as_raw(os.path.join(d.root, "lv.s2"), "qcow2", d.root) == written8
    assert as_raw(overlay + "-1", "qcow2", d.root) == data
    # Delete with its memory file; reverting to s2 (disk-only) leaves it off.
    ok(d, "snapshot-delete", "lv", "s1")
    assert not os.path.exists(mem)
    ok(d, "snapshot-revert", "lv", "s2")
    assert dom.state() == [L.VIR_DOMAIN_SHUTOFF, L.VIR_DOMAIN_SHUTOFF_FROM_SNAPSHOT]


def test_running_snapshot_refusals_leave_the_guest_running(daemon, conn, kvm):
    d = daemon
    base = os.path.join(d.root, "lr.img")
    image(base, 2048)
    dom = conn.defineXML(live_xml(d, "lr", base))
    dom.create()
    wait_ticks(d, "lr", 2)
    open(os.path.join(d.root, "lr.x"), "w").write("mine")
    err = fails(d, "snapshot-create-as", "lr", "x")
    assert "the file already exists" in err, err
    err = fails(d, "snapshot-create-as", "lr", "y", "--memspec", os.path.join(d.root, "lr.x"))
    assert "the memory file" in err and "already exists" in err, err
    n = ticks(d, "lr")[-1][0]
    wait_for(lambda: ticks(d, "lr")[-1][0] >= n + 2, "ticks after the refusals")
    assert serial(d.root, "lr").count("KVMMTEST boot") == 1 and dom.snapshotNum() == 0
    assert open(os.path.join(d.root, "lr.x")).read() == "mine"
    # --halt: the snapshot taken, the domain left shut off.
    ok(d, "snapshot-create-as", "lr", "h", "--halt")
    assert dom.state() == [L.VIR_DOMAIN_SHUTOFF, L.VIR_DOMAIN_SHUTOFF_FROM_SNAPSHOT]
    # A transient running domain: refused, it runs on.
    tbase = os.path.join(d.root, "tr.img")
    image(tbase, 2048)
    tdom = conn.createXML(live_xml(d, "tr", tbase), 0)
    wait_ticks(d, "tr", 2)
    with pytest.raises(libvirt.libvirtError, match="transient"):
        tdom.snapshotCreateXML("<domainsnapshot/>", 0)
    assert tdom.isActive()
    tdom.destroy()


def test_paused_domain_snapshot_reverts_paused_unless_running_asked(daemon, conn, kvm):
    d = daemon
    base = os.path.join(d.root, "lp.img")
    image(base, 2048)
    dom = conn.defineXML(live_xml(d, "lp", base))
    dom.create()
    wait_ticks(d, "lp", 2)
    dom.suspend()
    # Paused (kvmm parked the vCPU): the serial file holds all the guest
    # wrote, maybe the first part of a tick's line, which the guest
    # writes a byte at a time; the snapshot's tick is the last complete.
    at_pause = serial(d.root, "lp")
    n1 = live_ticks(at_pause)[-1].n
    partial = at_pause[at_pause.rfind("\n") + 1:]
    mem = os.path.join(d.root, "lp.mem")
    ok(d, "snapshot-create-as", "lp", "p", "--memspec", f"file={mem}")
    # Still paused after the snapshot, and not a byte written since.
    assert dom.state()[0] == L.VIR_DOMAIN_PAUSED
    assert serial(d.root, "lp") == at_pause
    dump = ok(d, "snapshot-dumpxml", "lp", "p")
    assert "<state>paused</state>" in dump and f"file='{mem}'" in dump, dump
    assert [s.getName() for s in dom.listAllSnapshots(L.VIR_DOMAIN_SNAPSHOT_LIST_ACTIVE)] == ["p"]
    dom.resume()
    wait_for(lambda: ticks(d, "lp")[-1][0] >= n1 + 3, "ticks after resume")
    # The line the guest was writing at the pause, as the resumed guest
    # finished it (formatted whole before its first byte went out).
    cut = len(at_pause) - len(partial)
    resumed = complete_lines(serial(d.root, "lp")[cut:])[0]
    # Taken paused: reverted paused; --running overrides.  libvirt's
    # events: the run stopped, the snapshot's started (and suspended).
    ev = Events(d.uri())
    ok(d, "snapshot-revert", "lp", "p")
    assert dom.state() == [L.VIR_DOMAIN_PAUSED, L.VIR_DOMAIN_PAUSED_FROM_SNAPSHOT]
    assert [ev.next()[1:] for _ in range(3)] == [
        (L.VIR_DOMAIN_EVENT_STOPPED, L.VIR_DOMAIN_EVENT_STOPPED_FROM_SNAPSHOT),
        (L.VIR_DOMAIN_EVENT_STARTED, L.VIR_DOMAIN_EVENT_STARTED_FROM_SNAPSHOT),
        (L.VIR_DOMAIN_EVENT_SUSPENDED, L.VIR_DOMAIN_EVENT_SUSPENDED_FROM_SNAPSHOT)]
    mark = len(serial(d.root, "lp"))
    ok(d, "snapshot-revert", "lp", "p", "--running")
    assert dom.state() == [L.VIR_DOMAIN_RUNNING, L.VIR_DOMAIN_RUNNING_FROM_SNAPSHOT]
    assert [ev.next()[1:] for _ in range(2)] == [
        (L.VIR_DOMAIN_EVENT_STOPPED, L.VIR_DOMAIN_EVENT_STOPPED_FROM_SNAPSHOT),
        (L.VIR_DOMAIN_EVENT_STARTED, L.VIR_DOMAIN_EVENT_STARTED_FROM_SNAPSHOT)]
    wait_ticks(d, "lp", 2, mark)
    # The guest goes on from the snapshot's instant, to the byte: what it
    # writes first ends the snapshot's partial line as the resumed guest
    # did, then it counts on from the snapshot's tick.
    after = complete_lines(partial + serial(d.root, "lp")[mark:])
    t = [k.n for k in live_ticks("\n".join(after) + "\n")]
    assert t[:2] == [n1 + 1, n1 + 2], (n1, repr(partial), after[:3])
    if partial:
        assert after[0] == resumed, (repr(partial), after[0], resumed)
    dom.destroy()


def test_a_restarted_daemon_adopts_the_guest_on_its_overlays(start_daemon, kvm):
    d = start_daemon()
    conn = libvirt.open(d.uri())
    base = os.path.join(d.root, "la.img")
    data = image(base, 2048)
    dom = conn.defineXML(live_xml(d, "la", base))
    dom.create()
    wait_ticks(d, "la", 2)
    ok(d, "snapshot-create-as", "la", "s1")
    live = dom.XMLDesc(0)
    pids = d.guests()
    conn.close()
    d.stop(keep_guests=True)
    d2 = start_daemon(root=d.root)
    assert d2.guests() == pids
    conn = libvirt.open(d2.uri())
    dom = conn.lookupByName("la")
    # The run's chain (overlay over the image) as before the restart.
    assert dom.XMLDesc(0) == live
    assert ok(d2, "snapshot-current", "la", "--name").strip() == "s1"
    n = ticks(d2, "la")[-1][0]
    wait_for(lambda: ticks(d2, "la")[-1][0] >= n + 2, "ticks under the new daemon")
    dom.suspend()
    mark = len(serial(d2.root, "la"))
    ok(d2, "snapshot-revert", "la", "s1", "--running")
    wait_ticks(d2, "la", 2, mark)
    assert {c for _, c in ticks(d2, "la", mark)} == {crc8(data)}
    dom.destroy()
    conn.close()


def test_sandboxed_running_snapshots_and_revert(start_daemon, kvm):
    """sandbox = 1: the running guest's kvmm, confined, opens no path --
    the daemon opens the memory file and each overlay and passes them
    (save and block-overlay by fdname), and kvmm keeps the image it has
    open beneath.  Two snapshots in a row (the second over the first's
    overlay), the same confined kvmm running on; the revert starts a new
    confined kvmm from the memory file."""
    from test_sandboxed import KVMM_GID, KVMM_UID, assert_confined, sandboxed_daemon
    d = sandboxed_daemon(start_daemon, "sandbox = 1\n")
    conn = libvirt.open(d.uri())
    base = os.path.join(d.root, "sb.img")
    data = image(base, 2048)
    dom = conn.defineXML(live_xml(d, "sb", base))
    dom.create()
    wait_ticks(d, "sb", 3)
    pids = d.guests()
    assert_confined(pids[0], KVMM_UID, KVMM_GID)
    before = ticks(d, "sb")
    ok(d, "snapshot-create-as", "sb", "s1")
    # The tick line in progress at the snapshot, if any, completed (as in
    # the unconfined test above): the reverted guest may count from it.
    text = serial(d.root, "sb")
    cut = text.rfind("\n") + 1
    if cut < len(text):
        text = wait_for(lambda: (lambda s: "\n" in s[cut:] and s[:s.index("\n", cut) + 1])(
            serial(d.root, "sb")), "the tick line in progress at the snapshot")
    after = live_ticks(text)
    ok(d, "snapshot-create-as", "sb", "s2", "--disk-only")
    assert d.guests() == pids and dom.state()[0] == L.VIR_DOMAIN_RUNNING
    n = ticks(d, "sb")[-1][0]
    wait_for(lambda: ticks(d, "sb")[-1][0] >= n + 3, "ticks after the snapshots")
    t = ticks(d, "sb")
    assert [k for k, _ in t] == list(range(1, len(t) + 1)), t
    assert {c for _, c in t} == {crc8(data)}
    s1, s2 = os.path.join(d.root, "sb.s1"), os.path.join(d.root, "sb.s2")
    assert f"<source file='{s2}' index='3'/>" in dom.XMLDesc(0)
    assert "<state>running</state>" in ok(d, "snapshot-dumpxml", "sb", "s1")
    dom.suspend()
    mark = len(serial(d.root, "sb"))
    ok(d, "snapshot-revert", "sb", "s1")
    assert dom.state()[0] == L.VIR_DOMAIN_RUNNING
    wait_ticks(d, "sb", 3, mark)
    t = ticks(d, "sb", mark)
    assert before[-1][0] < t[0][0] <= after[-1][0] + 1, (before[-1], after[-1], t[0])
    assert {c for _, c in t} == {crc8(data)}
    (pid,) = d.guests()
    assert pid not in pids
    assert_confined(pid, KVMM_UID, KVMM_GID)
    dom.destroy()
    # The base never written; each overlay a clean qcow2 over the layer below.
    assert open(base, "rb").read() == data
    for f in (s1, s2):
        check_clean(f)
    conn.close()
