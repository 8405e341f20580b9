"""Disks through virtkvmmd: <disk> elements become kvmm's virtio-blk
devices; the test guest reads what the host wrote into the image, sees the
serial and the read-only flag; domblklist lists the disks; domblkstat,
domblkinfo and domstats report kvmm's own counters and the image's sizes."""
import glob
import json
import os
import signal
import subprocess
import zlib

import libvirt
import pytest

from drvtest import virsh
from test_lifecycle import serial, wait_for
from kvmmtest import GUEST

L = libvirt
HERE = os.path.dirname(os.path.abspath(__file__))


def image(path, sectors):
    data = bytes((i * 7 + i // 512) & 0xff for i in range(sectors * 512))
    with open(path, "wb") as f:
        f.write(data)
    return data


def test_disks_reach_the_guest_and_count(daemon, kvm):
    d = daemon
    root_img = os.path.join(d.root, "root.img")
    seed_img = os.path.join(d.root, "seed.img")
    data = image(root_img, 2048)
    image(seed_img, 128)
    conn = libvirt.open(d.uri())
    dom = conn.defineXML(f"""<domain type='kvm'>
  <name>disky</name>
  <memory unit='MiB'>128</memory>
  <os><type>hvm</type><kernel>{GUEST}</kernel>
    <cmdline>kvmmtest.action=wait kvmmtest.virtio=blk kvmmtest.blk0.read=0+64</cmdline></os>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw' cache='none' io='native'/>
      <source file='{root_img}'/>
      <target dev='vda' bus='virtio'/>
      <serial>root-a</serial>
    </disk>
    <disk type='file' device='disk'>
      <source file='{seed_img}'/>
      <target dev='vdb' bus='virtio'/>
      <readonly/>
    </disk>
    <serial type='file'><source path='{d.root}/disky-serial.log'/><target port='0'/></serial>
  </devices>
</domain>""")
    dom.create()
    wait_for(lambda: "KVMMTEST done" in serial(d.root, "disky"), "the guest's checks")
    out = serial(d.root, "disky")
    assert "KVMMTEST fail" not in out, out
    assert 'dev=blk0 capacity=2048' in out and 'serial="root-a"' in out, out
    assert "virtio-blk dev=blk1 capacity=128 blk_size=512 ro=1" in out, out
    crc = "0x%08x" % zlib.crc32(data[:64 * 512])
    assert f"virtio-blk-read dev=blk0 sector=0 count=64 crc32={crc}" in out, out

    r = virsh(d.uri(), "domblkstat", "disky", "vda")
    assert r.returncode == 0, r.stderr
    stats = dict(line.split()[1:] for line in r.stdout.strip().splitlines())
    assert int(stats["rd_req"]) > 0 and int(stats["rd_bytes"]) >= 64 * 512
    # virsh got them through virDomainBlockStatsFlags: the times are only there
    assert int(stats["rd_total_times"]) > 0 and "flush_operations" in stats, r.stdout
    flags = dom.blockStatsFlags("vda")
    assert flags["rd_operations"] == int(stats["rd_req"])
    assert flags["rd_total_times"] > 0 and flags["errs"] == 0
    assert dom.blockStats("vda")[:2] == (flags["rd_operations"], flags["rd_bytes"])
    info = dom.blockInfo("vda")
    assert info[0] == 2048 * 512                           # capacity
    assert dom.blockInfo(seed_img)[0] == 128 * 512          # by source path
    [(_, rec)] = conn.domainListGetStats([dom], L.VIR_DOMAIN_STATS_BLOCK)
    assert rec["block.count"] == 2 and rec["block.0.name"] == "vda"
    assert rec["block.0.path"] == root_img and rec["block.0.rd.reqs"] > 0
    assert rec["block.0.rd.times"] > 0 and "block.0.fl.times" in rec
    r = virsh(d.uri(), "domblklist", "disky", "--details")
    assert r.returncode == 0, r.stderr
    rows = [line.split() for line in r.stdout.strip().splitlines()[2:]]
    assert rows == [["file", "disk", "vda", root_img], ["file", "disk", "vdb", seed_img]], r.stdout
    r = virsh(d.uri(), "domblkstat", "disky", "vdz")
    assert r.returncode != 0 and "invalid path" in r.stderr
    dom.destroy()
    assert open(root_img, "rb").read() == data              # reading changed nothing
    conn.close()


SECTOR = 512


def pattern(sector):
    """What the test guest writes to a sector (tests/guest/README.md)."""
    return sector.to_bytes(8, "little") + bytes((sector * 37 + i) & 0xff for i in range(8, SECTOR))


def qemu_img(*args):
    r = subprocess.run(["qemu-img", *args], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, (args, r.stdout, r.stderr)
    return r.stdout


def check_clean(path):
    info = json.loads(qemu_img("check", "--output=json", path))
    assert not info.get("corruptions") and not info.get("leaks") and not info.get("check-errors"), info


def as_raw(path, fmt, root):
    """The disk PATH shows, as qemu-img reads it (the whole chain)."""
    out = os.path.join(root, "converted.raw")
    qemu_img("convert", "-f", fmt, "-O", "raw", path, out)
    with open(out, "rb") as f:
        data = f.read()
    os.unlink(out)
    return data


def qcow2_guest(d, name, disk, cmdline, action="poweroff"):
    return f"""<domain type='kvm'>
  <name>{name}</name>
  <memory unit='MiB'>128</memory>
  <os><type>hvm</type><kernel>{GUEST}</kernel>
    <cmdline>kvmmtest.action={action} kvmmtest.virtio=blk {cmdline}</cmdline></os>
  <devices>
    <disk type='file' device='disk'>
{disk}
      <target dev='vda' bus='virtio'/>
    </disk>
    <serial type='file'><source path='{d.root}/{name}-serial.log'/><target port='0'/></serial>
  </devices>
</domain>"""


def run_to_poweroff(d, dom, name):
    dom.create()
    wait_for(lambda: dom.state()[0] == L.VIR_DOMAIN_SHUTOFF, f"{name} to power off", timeout=120)
    out = serial(d.root, name)
    assert "KVMMTEST fail" not in out and "KVMMTEST done" in out, out
    return out


def test_qcow2_disk_written_by_the_guest(daemon, kvm):
    """<driver type='qcow2'>: kvmm maps the image as qcow2 (the guest sees
    its virtual size, not the file's), the guest's writes land in it, and
    qemu-img finds the image clean and reads back what the guest wrote."""
    d = daemon
    img = os.path.join(d.root, "disk.qcow2")
    qemu_img("create", "-q", "-f", "qcow2", img, "4M")
    r = subprocess.run(["qemu-io", "-f", "qcow2", "-c", "write -P 0xab 1M 64k", img],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "error" not in r.stdout.lower(), r.stdout + r.stderr
    before = bytearray(4 << 20)
    before[1 << 20:(1 << 20) + 65536] = b"\xab" * 65536
    conn = libvirt.open(d.uri())
    dom = conn.defineXML(qcow2_guest(d, "q2", f"""      <driver name='qemu' type='qcow2'/>
      <source file='{img}'/>""", "kvmmtest.blk0.write=100+40 kvmmtest.blk0.read=0+8192"))
    xml = dom.XMLDesc(0)
    assert "<driver name='qemu' type='qcow2'/>" in xml, xml
    # domblkinfo: the disk's size, not the file's
    assert dom.blockInfo("vda")[0] == 4 << 20 and dom.blockInfo("vda")[2] == os.path.getsize(img)
    out = run_to_poweroff(d, dom, "q2")
    assert "virtio-blk dev=blk0 capacity=8192 " in out, out
    assert "virtio-blk-write dev=blk0 sector=100 count=40 " in out, out
    check_clean(img)
    want = bytearray(before)
    for s in range(100, 140):
        want[s * SECTOR:(s + 1) * SECTOR] = pattern(s)
    assert as_raw(img, "qcow2", d.root) == bytes(want)
    # the guest read the whole disk first: what qemu-io wrote, zeros elsewhere
    crc = "0x%08x" % zlib.crc32(before)
    assert f"virtio-blk-read dev=blk0 sector=0 count=8192 crc32={crc}" in out, out
    assert "<driver name='qemu' type='qcow2'/>" in dom.XMLDesc(L.VIR_DOMAIN_XML_INACTIVE)
    conn.close()


def test_unknown_disk_format_refused_at_define(daemon):
    conn = libvirt.open(daemon.uri())
    for fmt in ("vmdk", "vpc"):
        xml = qcow2_guest(daemon, "bad", f"""      <driver name='qemu' type='{fmt}'/>
      <source file='/var/lib/kvmm/disk.img'/>""", "")
        with pytest.raises(libvirt.libvirtError) as e:
            conn.defineXML(xml)
        assert e.value.get_error_code() == L.VIR_ERR_CONFIG_UNSUPPORTED
        assert f"disk format '{fmt}' is not supported by kvmm; supported: 'raw', 'qcow2'" in str(e.value)
    conn.close()


def test_qcow2_backing_chains(daemon, kvm):
    """A qcow2 overlay on a raw base: without <backingStore> the chain is
    read from the image's header (which must record the base's format, as
    libvirt requires), shown with node indexes in the live XML only, and
    the guest reads the base through the overlay while its writes stay in
    the overlay; a <backingStore> the header contradicts is refused by
    kvmm, with kvmm's reason."""
    d = daemon
    base = os.path.join(d.root, "base.raw")
    data = image(base, 8192)
    overlay = os.path.join(d.root, "overlay.qcow2")
    # relative to the overlay's directory, as qemu-img records it
    qemu_img("create", "-q", "-f", "qcow2", "-b", "base.raw", "-F", "raw", overlay)
    conn = libvirt.open(d.uri())
    disk = f"""      <driver name='qemu' type='qcow2'/>
      <source file='{overlay}'/>"""
    dom = conn.defineXML(qcow2_guest(d, "chain", disk,
                                     "kvmmtest.blk0.read=0+8192 kvmmtest.blk0.write=100+8", "wait"))
    assert "backingStore" not in dom.XMLDesc(0)
    dom.create()
    wait_for(lambda: "KVMMTEST done" in serial(d.root, "chain"), "the guest's checks", timeout=120)
    live = dom.XMLDesc(0)
    assert f"""      <source file='{overlay}' index='1'/>
      <backingStore type='file' index='2'>
        <format type='raw'/>
        <source file='{base}'/>
        <backingStore/>
      </backingStore>
      <target dev='vda' bus='virtio'/>""" in live, live
    assert "backingStore" not in dom.XMLDesc(L.VIR_DOMAIN_XML_INACTIVE)
    out = serial(d.root, "chain")
    assert "KVMMTEST fail" not in out, out
    assert f"virtio-blk-read dev=blk0 sector=0 count=8192 crc32=0x{zlib.crc32(data):08x}" in out, out
    dom.shutdown()      # the guest powers off at the ACPI power button
    wait_for(lambda: dom.state()[0] == L.VIR_DOMAIN_SHUTOFF, "the guest to power off", timeout=120)
    stopped = dom.XMLDesc(0)
    assert "backingStore" not in stopped and f"<source file='{overlay}'/>" in stopped, stopped
    check_clean(overlay)
    with open(base, "rb") as f:
        assert f.read() == data                             # the base only read
    want = bytearray(data)
    for s in range(100, 108):
        want[s * SECTOR:(s + 1) * SECTOR] = pattern(s)
    assert as_raw(overlay, "qcow2", d.root) == bytes(want)

    # A <backingStore> naming another file than the header: kvmm's refusal.
    other = os.path.join(d.root, "other.raw")
    image(other, 8192)
    dom = conn.defineXML(qcow2_guest(d, "contradicted", disk + f"""
      <backingStore type='file'>
        <format type='raw'/>
        <source file='{other}'/>
        <backingStore/>
      </backingStore>""", ""))
    assert f"<source file='{other}'/>" in dom.XMLDesc(L.VIR_DOMAIN_XML_INACTIVE)
    with pytest.raises(libvirt.libvirtError) as e:
        dom.create()
    assert e.value.get_error_code() == L.VIR_ERR_OPERATION_FAILED
    assert "kvmm exited while starting (exit status 1)" in str(e.value), str(e.value)
    assert f"names backing file 'base.raw', not {other} as backing= says" in str(e.value), str(e.value)
    conn.close()


def test_backing_format_not_in_the_image(daemon, kvm):
    """An overlay whose header names its backing file but not its format:
    refused at start as libvirt refuses it, unless the domain XML gives
    the chain itself."""
    d = daemon
    base = os.path.join(d.root, "base.raw")
    image(base, 2048)
    overlay = os.path.join(d.root, "noformat.qcow2")
    qemu_img("create", "-q", "-f", "qcow2", "-b", base, "-F", "raw", overlay)
    # Turn the backing-format extension into an unknown one (ignored).
    with open(overlay, "r+b") as f:
        head = f.read(4096)
        at = head.index(bytes.fromhex("e2792aca"))
        f.seek(at)
        f.write(bytes.fromhex("7e570001"))
    conn = libvirt.open(d.uri())
    disk = f"""      <driver name='qemu' type='qcow2'/>
      <source file='{overlay}'/>"""
    dom = conn.defineXML(qcow2_guest(d, "nofmt", disk, "", "wait"))
    with pytest.raises(libvirt.libvirtError) as e:
        dom.create()
    assert e.value.get_error_code() == L.VIR_ERR_OPERATION_INVALID
    assert (f"format of backing image '{base}' of image '{overlay}' was not specified in the image metadata"
            in str(e.value)), str(e.value)
    assert dom.state()[0] == L.VIR_DOMAIN_SHUTOFF
    dom = conn.defineXML(qcow2_guest(d, "given", disk + f"""
      <backingStore type='file'>
        <format type='raw'/>
        <source file='{base}'/>
      </backingStore>""", "", "wait"))
    dom.create()
    wait_for(lambda: "KVMMTEST done" in serial(d.root, "given"), "the guest", timeout=120)
    live = dom.XMLDesc(0)
    assert f"<source file='{base}'/>\n        <backingStore/>" in live, live
    dom.destroy()
    conn.close()


def test_backing_store_must_be_a_regular_file(daemon):
    """CLIENT: a backing file, given in the XML or named by a header, that
    is a FIFO is refused before kvmm runs: it would block whoever opened it."""
    d = daemon
    fifo = os.path.join(d.root, "fifo")
    os.mkfifo(fifo)
    overlay = os.path.join(d.root, "over.qcow2")
    qemu_img("create", "-q", "-f", "qcow2", "-u", "-b", fifo, "-F", "raw", overlay, "1M")
    conn = libvirt.open(d.uri())
    disk = f"""      <driver name='qemu' type='qcow2'/>
      <source file='{overlay}'/>"""
    given = conn.defineXML(qcow2_guest(d, "given", disk + f"""
      <backingStore type='file'><format type='raw'/><source file='{fifo}'/></backingStore>""", ""))
    read = conn.defineXML(qcow2_guest(d, "read", disk, ""))
    for dom, msg in ((given, f"backing store '{fifo}' is a FIFO; kvmm needs a regular file"),
                     (read, f"backing store '{fifo}' is a FIFO; kvmm needs a regular file")):
        with pytest.raises(libvirt.libvirtError) as e:
            dom.create()
        assert e.value.get_error_code() == L.VIR_ERR_CONFIG_UNSUPPORTED
        assert msg in str(e.value), str(e.value)
        assert dom.state()[0] == L.VIR_DOMAIN_SHUTOFF
    conn.close()


def test_backing_chain_of_a_run_survives_a_daemon_restart(start_daemon, kvm):
    """The chain read at start is in the status file (valid for its
    schema); a restarted daemon shows it in the live XML, never in the
    definition, and forgets it when the run ends."""
    d1 = start_daemon()
    base = os.path.join(d1.root, "base.raw")
    image(base, 2048)
    overlay = os.path.join(d1.root, "overlay.qcow2")
    qemu_img("create", "-q", "-f", "qcow2", "-b", base, "-F", "raw", overlay)
    conn = libvirt.open(d1.uri())
    dom = conn.defineXML(qcow2_guest(d1, "adopt", f"""      <driver name='qemu' type='qcow2'/>
      <source file='{overlay}'/>""", "", "wait"))
    dom.create()
    live = dom.XMLDesc(0)
    conn.close()
    status = glob.glob(os.path.join(d1.root, "run", "libvirt", "kvmm", "*.xml"))
    schema = os.path.join(os.path.dirname(os.path.dirname(HERE)), "schemas", "domstatus.rng")
    r = subprocess.run(["xmllint", "--noout", "--relaxng", schema] + status, capture_output=True,
                       text=True)
    assert r.returncode == 0 and len(status) == 1, r.stderr
    os.kill(d1.proc.pid, signal.SIGKILL)
    d1.proc.wait()
    d2 = start_daemon(root=d1.root)
    conn = libvirt.open(d2.uri())
    dom = conn.lookupByName("adopt")
    assert dom.isActive() and dom.XMLDesc(0) == live
    assert f"<source file='{base}'/>" in live and "index='2'" in live, live
    assert "backingStore" not in dom.XMLDesc(L.VIR_DOMAIN_XML_INACTIVE)
    dom.destroy()
    assert "backingStore" not in dom.XMLDesc(0)
    conn.close()


def test_hostile_qcow2_headers_are_refused_at_start(daemon):
    """CLIENT: the daemon reads the headers of images anyone may have made:
    extension lengths past the header, a backing name outside the file or
    too long, a backing chain that loops; each start fails with a message
    and the daemon goes on serving."""
    d = daemon
    base = os.path.join(d.root, "base.raw")
    image(base, 64)

    def overlay(name, patch):
        path = os.path.join(d.root, name)
        qemu_img("create", "-q", "-f", "qcow2", "-b", base, "-F", "raw", path)
        with open(path, "r+b") as f:
            head = bytearray(f.read(65536))
            patch(head)
            f.seek(0)
            f.write(head)
        return path

    def ext_len(h):         # the backing-format extension's length, past everything
        at = h.index(bytes.fromhex("e2792aca"))
        h[at + 4:at + 8] = (0x7fffffff).to_bytes(4, "big")

    def name_far(h):        # backing file name offset past the end of the file
        h[8:16] = (1 << 40).to_bytes(8, "big")

    def name_long(h):       # backing file name size over 1023
        h[16:20] = (5000).to_bytes(4, "big")

    def loop(h):            # an image that is its own backing file, as qcow2
        at = h.index(bytes.fromhex("e2792aca"))
        h[at + 8:at + 13] = b"qcow2"
        h[at + 4:at + 8] = (5).to_bytes(4, "big")
        boff, bsize = int.from_bytes(h[8:16], "big"), int.from_bytes(h[16:20], "big")
        new = b"loop.qcow2"
        h[boff:boff + len(new)] = new
        h[16:20] = len(new).to_bytes(4, "big")

    conn = libvirt.open(d.uri())
    for name, patch in (("extlen", ext_len), ("far", name_far), ("long", name_long),
                        ("loop", loop)):
        path = overlay(f"{name}.qcow2", patch)
        dom = conn.defineXML(qcow2_guest(d, name, f"""      <driver name='qemu' type='qcow2'/>
      <source file='{path}'/>""", ""))
        with pytest.raises(libvirt.libvirtError) as e:
            dom.create()
        assert str(e.value), name
        assert dom.state()[0] == L.VIR_DOMAIN_SHUTOFF and "backingStore" not in dom.XMLDesc(0)
    assert "a backing chain longer than 16 layers" in str(e.value), str(e.value)
    assert conn.getLibVersion() and len(conn.listAllDomains()) == 4
    conn.close()
