"""tools/bench/faults in a tiny run (one stuck guest, two hostile clients
for a second, two crash rounds) against libvirtd + QEMU, and
tools/fuzz-hours for seconds: the output is well-formed and the counts it
reports agree with each other.  No timing is asserted: these are
benchmarks, their figures go to docs/SPECIFICATION.md."""
import math
import os
import re
import stat
import subprocess

from kvmmtest import TOP

FAULTS = os.path.join(TOP, "tools", "bench", "faults")
FUZZ_HOURS = os.path.join(TOP, "tools", "fuzz-hours")
NUM = r"(\d+(?:\.\d+)?)"
MS = r"(>?\d+(?:\.\d+)?)"


def ms(text):
    """A latency as printed: ">N" is a call never answered."""
    return math.inf if text.startswith(">") else float(text)


def ratio_ok(shown, q, k):
    """A ratio printed with one decimal against the two figures it came
    from, themselves printed with one decimal: equal to the rounding."""
    lo = max(q - 0.05, 0) / (k + 0.05) - 0.05
    hi = (q + 0.05) / max(k - 0.05, 1e-9) + 0.05
    return lo <= shown <= hi


def test_faults_bench_tiny_run(kvm):
    seed = 11
    r = subprocess.run([FAULTS, "--counts", "1", "--clients", "2", "--stallers", "1", "--seconds", "1",
                        "-m", "2", "--domains", "3", "--seed", str(seed)],
                       capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL)
    out = r.stdout
    assert r.returncode == 0, out + r.stderr
    lines = out.splitlines()
    assert re.match(r"faults benchmark, \d{4}-\d\d-\d\d \d\d:\d\d \S+, load average [\d.]+ [\d.]+ [\d.]+, "
                    r"\d+ CPUs$", lines[0]), lines[0]
    assert lines[1].startswith("command: ") and "--seed 11" in lines[1], lines[1]

    # 1. one row per stack, the ratio of their times
    rows = {m.group(1): m for m in re.finditer(
        rf"^\s+1 (kvmm|libvirt\+QEMU)\s+{NUM}\s+(\d+)/1\s+(\d+)\s+(\d+)/1\s*$", out, re.M)}
    assert sorted(rows) == ["kvmm", "libvirt+QEMU"], out
    for m in rows.values():
        assert int(m.group(3)) <= 1 and int(m.group(5)) <= 1 and int(m.group(4)) >= 0, m.group(0)
    ratio = re.search(rf"^\s+1 ratio\s+{NUM}x$", out, re.M)
    assert ratio, out
    k, q = float(rows["kvmm"].group(2)), float(rows["libvirt+QEMU"].group(2))
    assert ratio_ok(float(ratio.group(1)), q, k), (ratio.group(0), k, q)

    # 2. p99 never above the worst; calls were answered; the ratio row
    # agrees (">30000": a call unanswered in 30 s)
    att = {}
    for m in re.finditer(rf"^(kvmm|libvirt\+QEMU)( alone)?\s+{MS}\s+{MS}\s+{MS}\s+{MS}\s+(\d+)\s+(\d+)$",
                         out, re.M):
        lp, lw, ip, iw = (ms(m.group(i)) for i in range(3, 7))
        assert lp <= lw and ip <= iw, m.group(0)
        assert int(m.group(7)) >= 1, m.group(0)
        if m.group(2):
            assert int(m.group(8)) == 0, m.group(0)      # alone: no hostile call
        att[m.group(1) + (m.group(2) or "")] = (lp, lw, ip, iw)
    assert sorted(att) == ["kvmm", "kvmm alone", "libvirt+QEMU", "libvirt+QEMU alone"], out
    assert all(x != math.inf for x in att["kvmm"]), out          # kvmm's are all answered
    ratios = re.search(r"^ratio\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)$", out, re.M)
    assert ratios, out
    for i in range(4):
        k, q, shown = att["kvmm"][i], att["libvirt+QEMU"][i], ratios.group(i + 1)
        if k == 0:
            assert shown == "n/a", ratios.group(0)
        elif q == math.inf:
            assert shown.startswith(">") and shown.endswith("x"), ratios.group(0)
        else:
            assert ratio_ok(float(shown.rstrip("x")), q, k), (ratios.group(0), k, q)

    # 3. a line per round, the totals their sums
    assert f"3 domains with a NIC, seed {seed}" in out, out
    rounds = re.findall(r"^  round (\d+): ((?:c\d:\w+ ?)+); "
                        r"killed (?:at a new kvmm, |at the calls' end, |after )[\d.]+ s(?: in)?; "
                        r"lost (\d+) doubled (\d+) leaked (\d+)(?: \(lost: ([\w ]+)\))?$", out, re.M)
    assert [int(x[0]) for x in rounds] == [1, 2], out
    for _, ops, lost, _, _, names in rounds:
        assert sorted(o.split(":")[0] for o in ops.split()) == ["c0", "c1", "c2"], ops
        assert {o.split(":")[1] for o in ops.split()} <= {"start", "destroy", "define", "undefine"}
        assert len(names.split()) == int(lost), (lost, names)
    t = re.search(r"^  total: 2 rounds, seed 11: lost (\d+) \((\d+) definitions, (\d+) runs\), "
                  r"doubled (\d+), leaked (\d+) \(kvmm (\d+), taps (\d+), files (\d+)\); "
                  rf"slowest restart to the first answer {NUM} ms$", out, re.M)
    assert t, out
    lost, defs, runs, doubled, leaked, lk, lt, lf = (int(t.group(i)) for i in range(1, 9))
    assert lost == defs + runs and leaked == lk + lt + lf, t.group(0)
    assert lost == sum(int(x[2]) for x in rounds), out
    assert doubled == sum(int(x[3]) for x in rounds), out
    assert leaked == sum(int(x[4]) for x in rounds), out
    assert re.search(r"^load average [\d.]+ [\d.]+ [\d.]+ at the end$", out, re.M), out


def fake_fuzzers(tmp_path):
    """A build dir whose fuzzers are scripts: vq_fuzz fails with a
    sanitizer's report, rpc_fuzz and qcow2_fuzz print their summaries."""
    unit = tmp_path / "tests" / "unit"
    unit.mkdir(parents=True)
    scripts = {
        "vq_fuzz": 'echo "vq_fuzz: 7 rounds, 1 chains accepted, 0 queues refused"\n'
                   'echo "x.c:1:2: runtime error: load of null pointer" >&2\nexit 87\n',
        "rpc_fuzz": 'echo "rpc_fuzz: seed $4: 1000 packets, 10 replies, 0 refused by length, '
                    '0 connections ended, 0 bad replies"\n',
        "qcow2_fuzz": 'echo "qcow2_fuzz: 3 images, 2 opened, 50 requests, 40 succeeded"\n',
    }
    for name, body in scripts.items():
        p = unit / name
        p.write_text('#!/bin/sh\nsleep "$2"\n' + body)        # $2: --seconds' value
        p.chmod(p.stat().st_mode | stat.S_IXUSR)
    return tmp_path


def fuzz_rows(out):
    return {m.group(1): tuple(int(m.group(i)) for i in (2, 4, 5)) for m in re.finditer(
        r"^(\w+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)$", out, re.M)}


def test_fuzz_hours_counts_crashes(tmp_path):
    build = fake_fuzzers(tmp_path)
    r = subprocess.run([FUZZ_HOURS, "--seconds", "3", "--chunk", "0.3", "--plain", "--seed", "40",
                        "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, KVMM_BUILDDIR=str(build)))
    out = r.stdout
    assert r.returncode == 1, out + r.stderr
    rows = fuzz_rows(out)
    assert sorted(rows) == ["qcow2_fuzz", "rpc_fuzz", "vq_fuzz"], out
    turns = {n: t for n, (t, _, _) in rows.items()}
    assert turns["vq_fuzz"] >= 1 and abs(turns["vq_fuzz"] - turns["rpc_fuzz"]) <= 1, out
    assert rows["vq_fuzz"][1:] == (7 * turns["vq_fuzz"], turns["vq_fuzz"]), out  # each turn fails
    assert rows["rpc_fuzz"][1:] == (1000 * turns["rpc_fuzz"], 0), out
    assert rows["qcow2_fuzz"][1:] == (50 * turns["qcow2_fuzz"], 0), out
    crashes = re.findall(r"^CRASH vq_fuzz --seed (\d+): exit 87: x.c:1:2: runtime error: .* "
                         r"\(output: (\S+)\)$", out, re.M)
    assert len(crashes) == turns["vq_fuzz"], out
    # the turns take seeds 40, 41, ... in order: vq_fuzz's are every third
    assert [int(s) for s, _ in crashes] == [40 + 3 * i for i in range(len(crashes))], out
    assert all(os.path.exists(p) for _, p in crashes), crashes
    total = re.search(r"^total: (\d+) turns, (\d+) iterations, (\d+) crashes;", out, re.M)
    assert total and int(total.group(1)) == sum(turns.values()), out
    assert int(total.group(2)) == sum(v[1] for v in rows.values()), out
    assert int(total.group(3)) == len(crashes), out


def test_fuzz_hours_runs_the_real_fuzzers(tmp_path):
    """The fuzzers the build made, for a few seconds: no crash, each one
    counted its iterations."""
    names = ["vq_fuzz", "rpc_fuzz", "qcow2_fuzz"]
    r = subprocess.run([FUZZ_HOURS, "--seconds", "6", "--chunk", "1.5", "--plain"] + names,
                       capture_output=True, text=True, timeout=300)
    out = r.stdout
    assert "missing: run make" not in r.stderr, r.stderr      # `make check` builds them
    assert r.returncode == 0, out + r.stderr
    rows = fuzz_rows(out)
    assert sorted(rows) == sorted(names), out
    for n, (turns, iterations, crashes) in rows.items():
        assert turns >= 1 and iterations > turns and crashes == 0, (n, out)
    assert "CRASH" not in out, out
