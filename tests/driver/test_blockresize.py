"""virsh blockresize: virtkvmmd asks kvmm to resize the disk's image; the
test guest sees the new capacity through a virtio configuration-change
interrupt, domblkinfo reports it; libvirt's refusals (unknown disk,
read-only disk, inactive domain, size overflow, unknown flags)."""
import os

import libvirt
import pytest

from drvtest import virsh
from kvmmtest import wait_record
from test_lifecycle import assert_nothing_left, guest_xml, serial, wait_for

L = libvirt


def image(path, size):
    with open(path, "wb") as f:
        f.write(os.urandom(size))


def disky_xml(root, root_img, seed_img):
    """The test guest with a writable vda, waiting to be resized, and a
    read-only vdb."""
    return guest_xml(root, "disky", extra_cmdline=" kvmmtest.virtio=blk kvmmtest.blk0.resize=60",
                     extra_devices=f"""
    <disk type='file' device='disk'><source file='{root_img}'/><target dev='vda' bus='virtio'/></disk>
    <disk type='file' device='disk'><source file='{seed_img}'/><target dev='vdb' bus='virtio'/><readonly/></disk>""")


def refused(fn, code, words):
    with pytest.raises(libvirt.libvirtError) as e:
        fn()
    assert e.value.get_error_code() == code, str(e.value)
    assert words in str(e.value)


def test_blockresize_reaches_the_guest(daemon, kvm):
    d = daemon
    root_img = os.path.join(d.root, "root.img")
    seed_img = os.path.join(d.root, "seed.img")
    image(root_img, 1 << 20)
    image(seed_img, 64 << 10)
    conn = libvirt.open(d.uri())
    dom = conn.defineXML(disky_xml(d.root, root_img, seed_img))

    # not running: nothing to resize
    refused(lambda: dom.blockResize("vda", 2 << 20, L.VIR_DOMAIN_BLOCK_RESIZE_BYTES),
            L.VIR_ERR_OPERATION_INVALID, "not running")
    r = virsh(d.uri(), "blockresize", "disky", "vda", "2M")
    assert r.returncode != 0 and "not running" in r.stderr
    assert os.path.getsize(root_img) == 1 << 20

    dom.create()
    wait_record(lambda: serial(d.root, "disky"), r"virtio-blk-resize-ready dev=blk0 capacity=2048$",
                "the guest ready for the resize")
    refused(lambda: dom.blockResize("vdz", 2 << 20, L.VIR_DOMAIN_BLOCK_RESIZE_BYTES),
            L.VIR_ERR_INVALID_ARG, "disk 'vdz' was not found in the domain config")
    refused(lambda: dom.blockResize(seed_img, 2 << 20, L.VIR_DOMAIN_BLOCK_RESIZE_BYTES),
            L.VIR_ERR_OPERATION_UNSUPPORTED, "can't resize empty or readonly disk 'vdb'")
    refused(lambda: dom.blockResize("vda", 1 << 62, 0), L.VIR_ERR_OVERFLOW, "size must be less than")
    refused(lambda: dom.blockResize("vda", 2 << 20, 4), L.VIR_ERR_INVALID_ARG, "unsupported flags (0x4)")
    refused(lambda: dom.blockResize("vda", 1000, L.VIR_DOMAIN_BLOCK_RESIZE_BYTES),
            L.VIR_ERR_INVALID_ARG, "multiple of the block size")
    r = virsh(d.uri(), "blockresize", "disky", "vdb", "2M")
    assert r.returncode != 0 and "readonly" in r.stderr
    assert os.path.getsize(root_img) == 1 << 20 and os.path.getsize(seed_img) == 64 << 10

    r = virsh(d.uri(), "blockresize", "disky", "vda", "3M")
    assert r.returncode == 0, r.stderr
    assert "resized" in r.stdout
    r = virsh(d.uri(), "domblkinfo", "disky", "vda")
    assert r.returncode == 0, r.stderr
    assert "Capacity:       3145728" in r.stdout, r.stdout
    assert os.path.getsize(root_img) == 3 << 20
    # the guest saw it: new capacity, through the config-change interrupt
    rec = wait_record(lambda: serial(d.root, "disky"), r"KVMMTEST (pass|fail) virtio-blk-resize .*",
                      "the guest's resize record").group(0)
    assert "pass virtio-blk-resize dev=blk0 capacity=6144" in rec, rec
    assert int(rec.split("config_interrupts=")[1].split()[0]) > 0

    # KiB without the BYTES flag; shrinking is allowed, as in libvirt
    dom.blockResize("vda", 512)
    assert dom.blockInfo("vda")[0] == 512 << 10
    assert os.path.getsize(root_img) == 512 << 10
    assert "KVMMTEST fail" not in serial(d.root, "disky")
    dom.destroy()
    assert_nothing_left(d)
    conn.close()
