"""tools/bench/snapshot --through-daemons in a tiny run (one 256 MiB guest
on each stack, once, and the all-touched row): real `virsh save` /
`virsh restore` through a private virtkvmmd and a private libvirtd + QEMU.
The output is well-formed, the ratios agree with the figures they come
from and each image holds at least the memory the guest wrote.  No
timing is asserted: the figures go to docs/SPECIFICATION.md."""
import os
import re
import subprocess

from kvmmtest import TOP

SNAPSHOT = os.path.join(TOP, "tools", "bench", "snapshot")
NUM = r"(\d+\.\d)"


def ratio_ok(shown, q, k):
    """A ratio printed with one decimal against the two figures it came
    from, themselves printed with one decimal: equal to the rounding."""
    lo = max(q - 0.05, 0) / (k + 0.05) - 0.05
    hi = (q + 0.05) / max(k - 0.05, 1e-9) + 0.05
    return lo <= shown <= hi


def test_snapshot_through_daemons_tiny_run(kvm):
    r = subprocess.run([SNAPSHOT, "--through-daemons", "-n", "1", "--memory-sizes", "256M",
                        "--touch", "64", "--timeout", "240"],
                       capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL)
    out = r.stdout
    assert r.returncode == 0, out + r.stderr
    lines = out.splitlines()
    assert re.match(r"snapshot benchmark through the daemons \(virsh save / virsh restore\), "
                    r"\d{4}-\d\d-\d\d \d\d:\d\d \S+, load average [\d.]+ [\d.]+ [\d.]+, \d+ CPUs$",
                    lines[0]), lines[0]
    assert lines[1].startswith("command: ") and "--through-daemons" in lines[1], lines[1]
    assert "kvmmtest.action=live" in lines[2], lines[2]
    rows = re.findall(rf"^\s+256M\s+(\d+) MiB\s+{NUM}\s+{NUM}\s+{NUM}x\s+{NUM}\s+{NUM}\s+"
                      rf"{NUM}\s+{NUM}\s+{NUM}x$", out, re.M)
    # the asked-for 64 MiB, then all the guest may write of 256 MiB
    assert [int(x[0]) for x in rows] == [64, 239], out
    for row in rows:
        touched = int(row[0])
        ks, qs, sr, kf, qf, kr, qr, rr = (float(x) for x in row[1:])
        assert ks > 0 and qs > 0 and kr > 0 and qr > 0, row
        assert ratio_ok(sr, qs, ks) and ratio_ok(rr, qr, kr), row
        # each image holds the pages the guest wrote, nothing near the
        # untouched rest of its 256 MiB
        assert touched <= kf < touched + 16 and touched <= qf < touched + 16, row
    assert re.search(rf"^a virsh call that does nothing \(virsh list --all\), median: kvmm {NUM} ms, "
                     rf"libvirt\+QEMU {NUM} ms$", out, re.M), out
    assert re.search(r"^ratio: libvirt\+QEMU's time / kvmm's", out, re.M), out
    assert re.search(r"^load average [\d.]+ [\d.]+ [\d.]+ at the end$", out, re.M), out
