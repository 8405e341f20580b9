"""tools/bench/migrate --quick, kvmm only, directly and --through-daemons:
the test guest (256 MiB) moved between two kvmm processes in two network
namespaces over a veth pair, idle and dirtying 50 MiB/s.  The output is well-formed, each case
completed, and the bytes counted on the veth hold at least the memory the
guest keeps rewriting.  No timing is asserted: the figures go to
docs/SPECIFICATION.md."""
import os
import re
import subprocess

from kvmmtest import TOP

MIGRATE = os.path.join(TOP, "tools", "bench", "migrate")
NUM = r"(\d+\.\d)"


def test_migrate_quick_kvmm(kvm):
    r = subprocess.run([MIGRATE, "--quick", "--no-qemu", "--timeout", "240"],
                       capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL)
    out = r.stdout
    assert r.returncode == 0, out + r.stderr
    # a run that failed prints n/a and the reason on stderr
    assert r.stderr == "", out + r.stderr
    lines = out.splitlines()
    assert re.match(r"live migration benchmark, \d{4}-\d\d-\d\d \d\d:\d\d \S+, "
                    r"load average [\d.]+ [\d.]+ [\d.]+, \d+ CPUs$", lines[0]), lines[0]
    assert lines[1] == "command: tools/bench/migrate --quick --no-qemu --timeout 240", lines[1]
    assert "256M" in lines[2] and "veth pair between two network namespaces" in lines[2], lines[2]
    rows = re.findall(rf"^(idle|50 MiB/s)\s+kvmm\s+{NUM}\s+(-?\d+\.\d)\s+(-?\d+\.\d)\s+{NUM}$",
                      out, re.M)
    assert [x[0] for x in rows] == ["idle", "50 MiB/s"], out
    for case, total, down, switch, sent in rows:
        # the switchover's gap is one of those the longest is taken from
        assert float(total) > 0 and float(down) >= float(switch), out
    # 1 MiB rewritten every 20 ms: all of it crosses the link at least once
    assert float(rows[1][4]) >= 1.0, out
    assert float(rows[1][4]) > float(rows[0][4]), out
    assert not re.search(r"^(idle|50 MiB/s)\s+(qemu|kvmm/qemu)\s", out, re.M), out
    assert re.search(r"^load average [\d.]+ [\d.]+ [\d.]+ at the end$", out, re.M), out


def test_migrate_through_daemons_quick_kvmm(kvm):
    """--through-daemons, kvmm only: virsh migrate --live between two
    virtkvmmd, one in each namespace, back and forth once per case."""
    r = subprocess.run([MIGRATE, "--through-daemons", "--quick", "--no-qemu", "--timeout", "240"],
                       capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL)
    out = r.stdout
    assert r.returncode == 0, out + r.stderr
    assert r.stderr == "", out + r.stderr
    assert out.splitlines()[2].startswith("virsh migrate --live, median of 1"), out
    rows = re.findall(rf"^(idle|50 MiB/s)\s+kvmm\s+{NUM}\s+{NUM}\s+{NUM}$", out, re.M)
    assert [x[0] for x in rows] == ["idle", "50 MiB/s"], out
    assert all(float(t) > 0 for _, t, _, _ in rows), out
    assert float(rows[1][3]) >= 1.0, out
    assert not re.search(r"libvirt\+QEMU", out), out
