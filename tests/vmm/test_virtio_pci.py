"""The test guest's virtio-pci transport against QEMU's and kvmm's devices:
PCI functions and BARs (placed by the guest, above 4 GiB), MSI-X, the
other entry paths, and a hostile chain breaking one device only."""
import zlib

import pytest

from virtiotest import (
    SECTOR, Disk, VirtioRunner, RUNNERS, checks, by_dev, finish, msix_delivered, pattern,
    make_image, read, rng_survived_malformed)


@pytest.mark.parametrize("runner", RUNNERS)
def test_virtio_pci_functions_reported(kvm, vms, tmp, runner):
    g = runner.start(vms, tmp, "kvmmtest.virtio=rng", ["rng"])
    finish(g)
    funcs = checks(g, "info", "pci")
    virtio = [f for f in funcs if f["vendor"] == "1af4"]
    assert [(f["device"], f["class"][:2]) for f in virtio] == [("1044", "00")]
    assert int(checks(g, "pass", "pci")[0]["functions"]) == len(funcs)
    dev = by_dev(g, "info", "virtio")
    assert int(dev["rng0"]["features"], 16) & (1 << 32), "VIRTIO_F_VERSION_1 not negotiated"


@pytest.mark.parametrize("runner", RUNNERS)
def test_virtio_bars_assigned_by_the_guest(kvm, vms, tmp, runner):
    """kvmmtest.pci=reassign: the guest moves every memory BAR of the
    devices it drives to a window of its own, as it must when a VMM
    leaves BARs at 0, and the devices keep working there."""
    path, data = make_image(tmp, "d0.img", 1 << 20)
    g = runner.start(vms, tmp, "kvmmtest.virtio=rng,blk kvmmtest.pci=reassign",
                     ["rng", Disk(path, "r0")])
    finish(g)
    moved = checks(g, "info", "pci-bar")
    assert len(moved) >= 2 and all(m["assigned"] == "guest" for m in moved)
    assert int(by_dev(g, "pass", "virtio-blk-read")["blk0"]["crc32"], 16) == \
        zlib.crc32(data[:64 * SECTOR])
    msix_delivered(g, "rng0")
    msix_delivered(g, "blk0")


def test_virtio_bar_above_4g_under_qemu(kvm, vms, tmp):
    """A 2 GiB ivshmem BAR overflows SeaBIOS's 32-bit window, so it puts
    every 64-bit BAR above 4 GiB: the guest must map those itself.  (QEMU
    only: this is how to get a high BAR out of QEMU's firmware.)"""
    path, data = make_image(tmp, "d0.img", 1 << 20)
    g = VirtioRunner("qemu").start(
        vms, tmp, "kvmmtest.virtio=blk kvmmtest.blk0.write=8+8", [Disk(path, "hi")],
        extra=["-object", "memory-backend-ram,id=hm,size=2G",
               "-device", "ivshmem-plain,memdev=hm"])
    finish(g)
    blk = [f for f in checks(g, "info", "pci") if f["device"] == "1042"][0]
    high = [v for k, v in blk.items() if k.startswith("bar") and v.startswith("mem64:")]
    assert high and int(high[0].split(":")[1].split("+")[0], 16) >= 1 << 32, blk
    assert read(path)[8 * SECTOR:16 * SECTOR] == b"".join(pattern(s) for s in range(8, 16))
    msix_delivered(g, "blk0")


@pytest.mark.parametrize("runner", RUNNERS)
@pytest.mark.parametrize("kind", ["head", "next", "loop", "addr"])
def test_virtio_malformed_request_breaks_only_its_device(kvm, vms, tmp, runner, kind):
    """A hostile chain on the rng's queue: the device should say
    DEVICE_NEEDS_RESET (virtio 1.x, 2.1.2) for a chain it cannot walk, a
    buffer outside RAM may be refused or completed; either way the VMM
    lives on, the other device keeps working, and a reset revives the rng."""
    path, data = make_image(tmp, "d0.img", 1 << 20)
    g = runner.start(vms, tmp, f"kvmmtest.virtio=rng,blk kvmmtest.rng0.malformed={kind}",
                     ["rng", Disk(path, "m0")])
    finish(g)
    rng_survived_malformed(g, kind)
    assert int(by_dev(g, "pass", "virtio-blk-read")["blk0"]["crc32"], 16) == \
        zlib.crc32(data[:64 * SECTOR])


@pytest.mark.parametrize("entry", ["pvh", "32", "64"])
def test_virtio_through_the_other_entries_under_qemu(kvm, vms, tmp, entry):
    """PCI and virtio do not care how the guest was entered; the memory
    map they avoid when placing BARs comes from a different place on each
    path (PVH start info, the shim's zero page), so check all of them."""
    path, data = make_image(tmp, "d0.img", 1 << 20)
    g = VirtioRunner("qemu").start(
        vms, tmp, "kvmmtest.virtio=rng,blk kvmmtest.pci=reassign kvmmtest.blk0.write=4+4",
        ["rng", Disk(path, "e0")], entry=entry)
    finish(g)
    assert g.records("boot")[0][1].startswith(f"v1 entry={entry}")
    assert "rng0" in by_dev(g, "pass", "virtio-rng")
    assert read(path)[4 * SECTOR:8 * SECTOR] == b"".join(pattern(s) for s in range(4, 8))
    msix_delivered(g, "blk0")
