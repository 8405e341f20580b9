"""virtio-rng under QEMU and kvmm, driven by the test guest."""

import pytest

from virtiotest import RUNNERS, checks, by_dev, finish, msix_delivered, rng_survived_malformed


@pytest.mark.parametrize("runner", RUNNERS)
def test_virtio_rng_gives_random_bytes(kvm, vms, tmp, runner):
    g = runner.start(vms, tmp, "kvmmtest.virtio=rng", ["rng"])
    finish(g)
    r = by_dev(g, "pass", "virtio-rng")["rng0"]
    assert r["bytes"] == "64" and int(r["distinct"]) > 16
    msix_delivered(g, "rng0")


@pytest.mark.parametrize("runner", RUNNERS)
@pytest.mark.parametrize("kind", ["head", "next", "loop", "addr"])
def test_virtio_malformed_rng_chain_then_reset(kvm, vms, tmp, runner, kind):
    """The same hostile chains with the rng alone: DEVICE_NEEDS_RESET (or,
    for a buffer outside RAM, completion), the VMM lives on, and a reset
    revives the device."""
    g = runner.start(vms, tmp, f"kvmmtest.virtio=rng kvmmtest.rng0.malformed={kind}", ["rng"])
    finish(g)
    rng_survived_malformed(g, kind)


@pytest.mark.parametrize("runner", RUNNERS)
def test_virtio_rng_bar_moved_by_the_guest(kvm, vms, tmp, runner):
    """kvmmtest.pci=reassign with the rng alone: the device answers at the
    address the guest chose, MSI-X included."""
    g = runner.start(vms, tmp, "kvmmtest.virtio=rng kvmmtest.pci=reassign", ["rng"])
    finish(g)
    moved = checks(g, "info", "pci-bar")
    assert moved and all(m["assigned"] == "guest" for m in moved)
    assert "rng0" in by_dev(g, "pass", "virtio-rng")
    msix_delivered(g, "rng0")


@pytest.mark.parametrize("runner", RUNNERS)
def test_virtio_rng_works_again_after_a_reboot(kvm, vms, tmp, runner):
    """A guest reset puts the device back to power-on (BAR, MSI-X table,
    queues); on kvmm the new KVM VM gets the MSI routes and ioeventfds
    again."""
    g = runner.start(vms, tmp, "kvmmtest.virtio=rng kvmmtest.action=reboot", ["rng"])
    g.wait_for(r"KVMMTEST pass virtio-msix dev=rng0", count=3, timeout=60)
    g.kill()
    assert not g.records("fail")
    assert len(checks(g, "pass", "virtio-rng")) >= 3
