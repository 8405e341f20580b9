"""Guest RAM: above 4 GiB it is usable, and kvmm starts a guest far larger
than the host (1 TiB on a 24 GiB machine), paying only for what the guest
touches in host pages (RSS): as much for 1 TiB as for 6 GiB."""
import re
import time

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


def vm_rss(pid):
    """VmRSS of pid, KiB."""
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def wait_stderr(g, pattern, timeout=30):
    """The match of pattern in g's stderr once its reader thread has it."""
    rx = re.compile(pattern)
    deadline = time.monotonic() + timeout
    while True:
        m = rx.search(g.stderr.decode(errors="replace"))
        if m:
            return m
        assert time.monotonic() < deadline and g.proc.poll() is None, \
            f"no {pattern!r} in kvmm's stderr:\n{g.stderr.decode(errors='replace')}"
        time.sleep(0.05)


def test_a_1t_guest_starts_and_costs_what_it_touches(kvm, vms, tmp):
    """A 1 TiB guest on a 24 GiB host: its RAM is mapped, not committed
    (QEMU 7.2 refuses 64G here), and all of it is in KVM's memory slots
    before the vCPU runs: RAM KVM has no slot for yet breaks a guest on a
    hardware host whose page tables are there (docs/kvmm.md, Memory), so
    slots are never registered lazily.  KVM's bookkeeping for the slots is
    host kernel memory (vmalloc, about 2.5 GiB here), not the process's
    RSS."""
    g = kvmmtest.start(vms, kvmmtest.kvmm_argv("kvmmtest.highmem=on kvmmtest.action=wait kvmmtest.smp=off",
                                               memory="1T", extra=["-vv"]))
    g.wait_for(r"KVMMTEST done", timeout=60)
    assert not g.records("fail"), g.records("fail")
    (usable,) = [t for _, t in g.records("info") if t.startswith("mem_usable=")]
    assert int(usable.split("=")[1]) > (1 << 40) - (1 << 30), usable
    (rec,) = records(g, "pass", "highmem")
    assert "last=0x1003fe00000" in rec, rec
    g.wait_for(r"^KVMMTEST tick 1$", timeout=60)
    assert vm_rss(g.proc.pid) < 128 * 1024, "VmRSS for a guest that touched a few MiB"
    start = wait_stderr(g, r"start: \d+ us of setup before the vCPUs run, \d+ us of it KVM "
                           r"taking (\d+) MiB of guest RAM")
    assert int(start.group(1)) == 1 << 20, start.group(0)
    slots = re.findall(r"KVM memory slot \d+: (\d+) MiB at (0x[0-9a-f]+)", g.stderr.decode())
    assert slots == [("3072", "0x0"), (str((1 << 20) - 3072), "0x100000000")], slots
    g.kill()


def test_rss_is_flat_in_configured_ram(kvm, vms, tmp):
    """The same guest doing the same (the highmem check's three 2 MiB
    blocks above 4 GiB, then ticking) costs the host as much at 1 TiB as
    at 6 GiB: nothing in kvmm grows with the configured size."""
    rss = {}
    for memory in ("6G", "1T"):
        g = kvmmtest.start(vms, kvmmtest.kvmm_argv(
            "kvmmtest.highmem=on kvmmtest.action=wait kvmmtest.smp=off", memory=memory))
        g.wait_for(r"^KVMMTEST tick 2$", timeout=60)
        assert not g.records("fail"), g.records("fail")
        assert len(records(g, "pass", "highmem")) == 1
        rss[memory] = vm_rss(g.proc.pid)
        g.kill()
    assert rss["1T"] < rss["6G"] + 4 * 1024, f"VmRSS KiB by configured size: {rss}"
