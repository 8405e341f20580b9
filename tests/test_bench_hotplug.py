"""tools/bench/hotplug --quick --only kvmm: one round of each hotplug
operation through a private virtkvmmd with real virsh and python3-libvirt
events (a disk, a NIC on a tap in a namespace of its own, a vCPU), the
test guest reporting each.  The output is well-formed and has a figure
for every operation.  No timing is asserted: the figures, and the
comparison with libvirt+QEMU, go to docs/SPECIFICATION.md."""
import os
import re
import subprocess

import pytest

from kvmmtest import TOP

HOTPLUG = os.path.join(TOP, "tools", "bench", "hotplug")
OPS = ["disk attach", "disk detach", "nic attach", "nic detach", "vcpu add", "vcpu add call", "vcpu remove"]


def test_hotplug_bench_quick_kvmm(kvm):
    if os.geteuid() != 0:
        pytest.skip("the NIC round's tap lives in a network namespace: needs root")
    r = subprocess.run([HOTPLUG, "--quick", "--only", "kvmm", "--timeout", "120"],
                       capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
    out = r.stdout
    assert r.returncode == 0, out + r.stderr
    lines = out.splitlines()
    assert re.match(r"hotplug benchmark through the daemons, \d{4}-\d\d-\d\d \d\d:\d\d \S+, "
                    r"load average [\d.]+ [\d.]+ [\d.]+, \d+ CPUs$", lines[0]), lines[0]
    assert lines[1].startswith("command: ") and "--quick --only kvmm" in lines[1], lines[1]
    assert "median of 1," in lines[2] and "kvmmtest.hotplug.removals=2'" in lines[2], lines[2]
    assert re.search(r"^kvmm: the guest is ready [\d.]+ s after", out, re.M), out
    assert re.search(r"^\| operation \| from, to \| kvmm ms \|$", out, re.M), out
    rows = re.findall(r"^\| ([a-z ]+) \| [^|]+ \| ([\d.]+|n/a) \|$", out, re.M)
    assert [op for op, _ in rows] == OPS, out
    for op, ms in rows:
        # each a real figure: the call and the guest's record both came
        assert ms != "n/a" and 0 < float(ms) < 120000, (op, ms)
    # one stack: nothing to compare
    assert "| ratio |" not in out and not re.search(r"^ratio:", out, re.M), out
    assert re.search(r"^a virsh call that does nothing \(virsh list --all\), median of 3: kvmm [\d.]+ ms$",
                     out, re.M), out
    assert re.search(r"^rounds done: kvmm 1/1$", out, re.M), out
    assert re.search(r"^load average [\d.]+ [\d.]+ [\d.]+ at the end$", out, re.M), out
