"""tools/bench/migrate-tls in a tiny run (one migration each way per
mode): real `virsh migrate --live` with and without --tls between two
private virtkvmmd.  The output is well-formed, both modes carried the
guest's rewritten memory, and the ratios agree with the figures they come
from.  No timing is asserted: the figures go to docs/virtkvmmd.md."""
import os
import re
import subprocess

from kvmmtest import TOP

BENCH = os.path.join(TOP, "tools", "bench", "migrate-tls")


def test_migrate_tls_bench_tiny_run(kvm):
    r = subprocess.run([BENCH, "-n", "2", "--touch", "16"], capture_output=True, text=True,
                       timeout=600, stdin=subprocess.DEVNULL)
    out = r.stdout
    assert r.returncode == 0, out + r.stderr
    lines = out.splitlines()
    assert lines[0].startswith("live migration through two virtkvmmd, loopback: 64 MiB guest "
                               "rewriting 16 MiB"), out
    rows = {m[0]: (int(m[1]), int(m[2]), float(m[3]))
            for m in re.findall(r"^(plain|tls)\s+(\d+)\s+(\d+)\s+(\d+\.\d)$", out, re.M)}
    assert set(rows) == {"plain", "tls"}, out
    for wall, job, mib in rows.values():
        assert 0 < job <= wall and mib >= 16, out
    m = re.search(r"^tls/plain\s+(\d+\.\d\d)\s+(\d+\.\d\d)$", out, re.M)
    assert m, out
    for col, printed in ((0, float(m[1])), (1, float(m[2]))):
        assert ratio_agrees(printed, rows["tls"][col], rows["plain"][col]), out


def ratio_agrees(printed, tls, plain):
    """The bench divides the unrounded medians and prints each median to the
    millisecond, so the true ratio lies between the extremes those roundings
    allow; the printed ratio is itself rounded to 0.01."""
    low = (tls - 0.5) / (plain + 0.5)
    high = (tls + 0.5) / (plain - 0.5)
    return low - 0.005 <= printed <= high + 0.005
