"""Disks through virtkvmmd: <disk> elements become kvmm's virtio-blk
devices; the test guest reads what the host wrote into the image, sees the
serial and the read-only flag; domblklist lists the disks; domblkstat,
domblkinfo and domstats report kvmm's own counters and the image's sizes."""
import os
import zlib

import libvirt

from drvtest import virsh
from test_lifecycle import serial, wait_for
from kvmmtest import GUEST

L = libvirt


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
