"""The fuzzers built with AddressSanitizer and UBSan (`make fuzz-san`),
each for a bounded time: any sanitizer report, crash or failed check is
a failure.  The seed changes from run to run so CI covers new ground;
a failure names it, and `<fuzzer>-san --seed S` replays it."""
import os
import re
import subprocess
import time

import pytest

from kvmmtest import BUILD, UNIT_DIR

SECONDS = int(os.environ.get("KVMM_FUZZ_SECONDS", "20"))
SAN_ENV = {
    # Stop at the first report, with an exit status that says so.
    "ASAN_OPTIONS": "halt_on_error=1:abort_on_error=0:exitcode=86:detect_leaks=1",
    "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1:exitcode=87",
}
REPORT = re.compile(r"ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:")


@pytest.fixture(scope="module")
def san_build():
    r = subprocess.run(["make", "-C", BUILD, "fuzz-san"], capture_output=True, text=True,
                       timeout=900)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]


@pytest.mark.parametrize("fuzzer,counted", [
    ("vq_fuzz", r"(\d+) rounds, (\d+) chains accepted"),
    ("rpc_fuzz", r"(\d+) packets, (\d+) replies"),
    ("qcow2_fuzz", r"opened, (\d+) requests, (\d+) succeeded"),
])
def test_fuzzer_under_sanitizers(san_build, fuzzer, counted):
    path = os.path.join(UNIT_DIR, fuzzer + "-san")
    # The sanitizers really are in: ASan answers its help flag.
    helped = subprocess.run([path, "--seconds", "0"], capture_output=True, text=True,
                            env={**os.environ, "ASAN_OPTIONS": "help=1"}, timeout=60)
    assert "AddressSanitizer" in helped.stdout + helped.stderr, helped.stderr[-2000:]
    seed = int(os.environ.get("KVMM_FUZZ_SEED", time.time_ns() % (1 << 31)))
    r = subprocess.run([path, "--seconds", str(SECONDS), "--seed", str(seed)],
                       capture_output=True, text=True, env={**os.environ, **SAN_ENV},
                       timeout=SECONDS * 10 + 60)
    where = f"{fuzzer}-san --seed {seed}: exit {r.returncode}\n{r.stdout[-2000:]}{r.stderr[-6000:]}"
    assert not REPORT.search(r.stderr), where
    assert r.returncode == 0, where
    m = re.search(counted, r.stdout)
    assert m and int(m.group(1)) > 1000 and int(m.group(2)) > 100, where
