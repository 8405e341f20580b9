"""Guest RAM: above 4 GiB it is usable, and kvmm starts a guest far larger
than the host (1 TiB on a 24 GiB machine), paying only for what the guest
touches in host pages (RSS): as much for 1 TiB as for 6 GiB; and on the
host's huge pages when asked."""
import os
import re
import resource
import subprocess
import time

import pytest

import kvmmtest
from hugetlb import hugetlb_counts, reserved_2m_pages

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


# --- huge pages -------------------------------------------------------------
def mapping_page_size_kib(pid, size_kib):
    """KernelPageSize of the process's mapping of exactly size_kib."""
    size = None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            if line.startswith("Size:"):
                size = int(line.split()[1])
            elif line.startswith("KernelPageSize:") and size == size_kib:
                return int(line.split()[1])
    raise AssertionError(f"no {size_kib} KiB mapping in kvmm")


def test_hugepages_back_guest_ram(kvm, vms):
    """--hugepages 2M: guest RAM is one hugetlb mapping, all 32 pages of a
    64 MiB guest reserved at start (the touched ones no longer free), and
    every one back in the pool when kvmm is gone."""
    with reserved_2m_pages(40):
        assert hugetlb_counts() == (40, 40, 0)
        g = kvmmtest.start(vms, kvmmtest.kvmm_argv("kvmmtest.action=wait kvmmtest.smp=off",
                                                   memory="64M", extra=["--hugepages", "2M"]))
        g.wait_for(r"KVMMTEST done")
        assert not g.records("fail"), g.records("fail")
        total, free, rsvd = hugetlb_counts()
        assert free < 40, "the running guest touched no huge page"
        assert total - free + rsvd == 32, (total, free, rsvd)
        assert mapping_page_size_kib(g.proc.pid, 64 * 1024) == 2048
        g.kill()
        assert hugetlb_counts() == (40, 40, 0)


def test_hugepages_refused_when_the_pool_is_short(kvm, tmp):
    """With no huge pages reserved the start is refused before anything
    runs, naming the shortfall and where to reserve them."""
    sock = os.path.join(tmp, "api.sock")
    with reserved_2m_pages(0):
        p = subprocess.run(kvmmtest.kvmm_argv("kvmmtest.smp=off", memory="64M",
                                              extra=["--hugepages", "2M", "--api-socket", sock]),
                           stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert p.returncode == 1
    assert p.stderr == ("kvmm: error: not enough free 2048 KiB huge pages: 32 needed, 0 free; "
                        "reserve them in /sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages\n")
    assert not os.path.exists(sock)


def test_hugepages_mmap_failure_leaves_nothing(kvm, tmp):
    """Enough free pages but the mapping still fails (here: an address
    space limit below the guest's size): kvmm exits 1 with one line, and
    the pool and the control socket are as before."""
    sock = os.path.join(tmp, "api.sock")

    def limit_address_space():
        resource.setrlimit(resource.RLIMIT_AS, (200 << 20, 200 << 20))

    with reserved_2m_pages(128):
        p = subprocess.run(kvmmtest.kvmm_argv("kvmmtest.smp=off", memory="256M",
                                              extra=["--hugepages", "2M", "--api-socket", sock]),
                           stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
                           preexec_fn=limit_address_space)
        assert hugetlb_counts() == (128, 128, 0)
    assert p.returncode == 1
    assert p.stderr == ("kvmm: error: cannot map 256 MiB of guest memory on 2048 KiB huge pages: "
                        "Cannot allocate memory; reserve more in "
                        "/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages\n")
    assert not os.path.exists(sock)


@pytest.mark.parametrize("extra,message", [
    (["--hugepages", "4M"], "huge page size 4096 KiB is not offered by this host "
                            "(no /sys/kernel/mm/hugepages/hugepages-4096kB): use one it has"),
    (["--hugepages", "3M"], "hugepages size 3145728 bytes is not a huge page size: use 2M or 1G"),
    (["--hugepages", "1G"], "memory size 64 MiB is not a multiple of the 1048576 KiB huge pages: "
                            "round it to whole huge pages"),
    (["--hugepages", "2M", "--balloon"],
     "hugepages and balloon cannot be combined: huge-page-backed RAM cannot be returned "
     "to the host page by page; drop one"),
])
def test_hugepages_bad_configurations_refused(kvm, extra, message):
    p = subprocess.run(kvmmtest.kvmm_argv("kvmmtest.smp=off", memory="64M", extra=extra),
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert (p.returncode, p.stderr) == (1, f"kvmm: error: {message}\n")


def test_hugepages_guest_reboots(kvm, vms):
    """A reset gives the huge pages back and boots the guest again on the
    same mapping (guest_mem_discard on hugetlb memory)."""
    with reserved_2m_pages(40):
        g = kvmmtest.start(vms, kvmmtest.kvmm_argv("kvmmtest.action=reboot kvmmtest.smp=off",
                                                   memory="64M", extra=["--hugepages", "2M"]))
        g.wait_for(r"KVMMTEST done", count=3)
        assert not g.records("fail"), g.records("fail")
        g.kill()
        assert hugetlb_counts() == (40, 40, 0)
