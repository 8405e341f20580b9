"""Guest RAM: above 4 GiB it is usable, and kvmm starts a guest far larger
than the host (1 TiB on a 24 GiB machine), paying only for what the guest
touches: host pages (RSS) and KVM's memory slots alike."""
import pytest

import kvmmtest

RUNNERS = [pytest.param(kvmmtest.Runner("kvmm"), id="kvmm"),
           pytest.param(kvmmtest.Runner("qemu"), id="qemu")]


def records(g, kind, name):
    return [t for _, t in g.records(kind) if t.split(" ", 1)[0] == name]


@pytest.mark.parametrize("runner", RUNNERS)
def test_ram_above_4g_keeps_what_the_guest_writes(kvm, vms, tmp, runner):
    """First, middle and last 2 MiB of the RAM above the hole: on kvmm
    each is the first use of its memory slot."""
    g = runner.start(vms, tmp, "kvmmtest.highmem=on kvmmtest.smp=off", memory="6G")
    g.wait_for(r"KVMMTEST done", timeout=60)
    assert not g.records("fail"), g.records("fail")
    assert g.wait_exit() == 0
    (rec,) = records(g, "pass", "highmem")
    assert "blocks=3 first=0x100000000" in rec, rec


def vmalloc_used():
    with open("/proc/meminfo") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmallocUsed:")) * 1024


def test_a_1t_guest_starts_and_costs_what_it_touches(kvm, vms, tmp):
    """KVM's bookkeeping for a 1 TiB memory slot is 2.5 GiB of host kernel
    memory (vmalloc) on this host's shadow MMU; kvmm's lazy slots keep it
    to the chunks in use.  1 GiB of slack for other VMs starting meanwhile."""
    before = vmalloc_used()
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
    grown = vmalloc_used() - before
    assert grown < 1 << 30, f"host vmalloc grew by {grown >> 20} MiB"
    g.kill()
