"""The Linux tier's boot runs as its own process (tier.py), started as
soon as pytest has collected the suite when the tier is among the tests:
on KVM-PVM hosts it takes many minutes of one CPU, which then overlap the
rest of the suite instead of adding to it.  It runs at nice 10, so the
other tests' guests come first.  test_linux.py waits for its result; if
the suite ends first, the run is stopped and cleans up after itself."""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import tier  # noqa: E402

TEST = "test_linux.py::test_debian_kernel_on_kvmm"
_run = {}


def start():
    if not _run:
        d = tempfile.mkdtemp(prefix="kvmm-tier-")
        result, log = os.path.join(d, "result.json"), os.path.join(d, "tier.log")
        with open(log, "wb") as out:
            proc = subprocess.Popen(["nice", "-n", "10", sys.executable, tier.__file__,
                                     "--result", result],
                                    stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        _run.update(proc=proc, result=result, log=log, dir=d, started=time.monotonic())
    return _run


def pytest_collection_finish(session):
    if session.config.option.collectonly:
        return
    if any(item.nodeid.endswith(TEST) for item in session.items) and tier.plan()[0] == "run":
        start()


def pytest_sessionfinish(session):
    if not _run:
        return
    proc = _run["proc"]
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(120)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    shutil.rmtree(_run["dir"], ignore_errors=True)


@pytest.fixture
def linux_tier():
    """The background run's result (a dict: outcome, seconds, userspace,
    compat, ...), once it has ended; skips or fails as tier.plan() says."""
    what, detail = tier.plan()
    if what == "skip":
        pytest.skip(detail)
    if what == "fail":
        pytest.fail(detail)
    run = start()
    # Each of the run's steps has its own limit (KVMM_LINUX_PVM_TIMEOUT);
    # this one only keeps a wedged run from holding the suite for ever.
    try:
        run["proc"].wait(4 * 3600)
    except subprocess.TimeoutExpired:
        os.killpg(run["proc"].pid, signal.SIGKILL)
        run["proc"].wait()
    with open(run["log"], errors="replace") as f:
        log = f.read()
    try:
        with open(run["result"]) as f:
            result = json.load(f)
    except FileNotFoundError:
        pytest.fail(f"the tier's run left no result (exit {run['proc'].returncode}):\n{log}")
    result["log"] = log
    result["wall"] = round(time.monotonic() - run["started"])
    run["report"] = result
    return result


def pytest_terminal_summary(terminalreporter):
    """What the tier's boot took, in the suite's output (CI's log)."""
    r = _run.get("report")
    if r and r["outcome"] == "passed":
        terminalreporter.write_line(
            f"Linux tier: /init {r['userspace']} s after the guest started, the whole boot "
            f"{r['seconds']} s, its result taken {r['wall']} s after the suite began; kvmm's CPU time {r['cpu']} s; "
            + "; ".join(l.split("pvm-compat: ", 1)[-1] for l in r["compat"]))
