"""Guest RAM: above 4 GiB it is usable, and kvmm starts a guest far larger
than the host (1 TiB on a 24 GiB machine), paying only for what the guest
touches in host pages (RSS)."""
import pytest

import kvmmtest

RUNNERS = [pytest.param(kvmmtest.Runner("kvmm"), id="kvmm"),
           pytest.param(kvmmtest.Runner("qemu"), id="qemu")]


def records(g, kind, name):
    return [t for _, t in g.records(kind) if t.split(" ", 1)[0] == name]


@pytest.mark.parametrize("runner", RUNNERS)
def test_ram_above_4g_keeps_what_the_guest_writes(kvm, vms, tmp, runner):
    """First, middle and last 2 MiB of the RAM above the hole."""
    g = runner.start(vms, tmp, "kvmmtest.highmem=on kvmmtest.smp=off", memory="6G")
    g.wait_for(r"KVMMTEST done", timeout=60)
    assert not g.records("fail"), g.records("fail")
    assert g.wait_exit() == 0
    (rec,) = records(g, "pass", "highmem")
    assert "blocks=3 first=0x100000000" in rec, rec


def test_a_1t_guest_starts_and_costs_what_it_touches(kvm, vms, tmp):
    """A 1 TiB guest on a 24 GiB host: its RAM is mapped, not committed
    (QEMU 7.2 refuses 64G here).  KVM's bookkeeping for the slot is host
    kernel memory (vmalloc, about 2.5 GiB), not the process's RSS."""
    g = kvmmtest.start(vms, kvmmtest.kvmm_argv("kvmmtest.highmem=on kvmmtest.action=wait kvmmtest.smp=off",
                                               memory="1T"))
    g.wait_for(r"KVMMTEST done", timeout=60)
    assert not g.records("fail"), g.records("fail")
    (usable,) = [t for _, t in g.records("info") if t.startswith("mem_usable=")]
    assert int(usable.split("=")[1]) > (1 << 40) - (1 << 30), usable
    (rec,) = records(g, "pass", "highmem")
    assert "last=0x1003fe00000" in rec, rec
    with open(f"/proc/{g.proc.pid}/status") as f:
        rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    assert rss < 128 * 1024, f"VmRSS {rss} KiB for a guest that touched a few MiB"
    g.kill()
