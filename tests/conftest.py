"""Shared pytest set-up: where the built binaries are, the KVM gate, and
the closing summary line CI reads."""
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))

import kvmmtest  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line("markers", "kvm: needs /dev/kvm")


@pytest.fixture
def kvm():
    """Tests that run guests take this fixture: without /dev/kvm they are
    skipped, or fail under KVMM_REQUIRE_KVM=1 (as in CI)."""
    why = kvmmtest.kvm_unavailable()
    if why:
        if os.environ.get("KVMM_REQUIRE_KVM") == "1":
            pytest.fail("KVMM_REQUIRE_KVM=1 but " + why)
        pytest.skip(why)


@pytest.fixture
def tmp(tmp_path):
    """A short temporary directory: UNIX socket paths must stay < 108 bytes."""
    import tempfile
    import shutil
    d = tempfile.mkdtemp(prefix="kvmm-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def vms():
    """Every VM a test starts is registered here and killed at the end,
    even when the test fails."""
    started = []
    yield started
    for vm in started:
        vm.kill()


# --- under KVMM_REQUIRE_KVM=1 (CI) a skip is a failure ------------------------
# A skipped test proves nothing, and CI only shows the count.  The one skip
# allowed: the Linux tier where the host cannot run it (no VMX/SVM).
LINUX_TIER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "linux")


def _skip_allowed(path):
    path = os.path.abspath(str(path))
    in_linux_tier = os.path.commonpath([path, LINUX_TIER]) == LINUX_TIER
    return in_linux_tier and not kvmmtest.hardware_virtualization()


def _refuse_skip(report, path):
    if not (report.skipped and os.environ.get("KVMM_REQUIRE_KVM") == "1"):
        return
    if hasattr(report, "wasxfail") or _skip_allowed(path):
        return
    longrepr = report.longrepr
    why = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    report.outcome = "failed"
    report.longrepr = f"KVMM_REQUIRE_KVM=1 allows no skip outside the Linux tier: {why}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _refuse_skip(outcome.get_result(), item.path)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    """Module-level skips (pytest.skip(allow_module_level=True),
    importorskip) happen while collecting."""
    outcome = yield
    _refuse_skip(outcome.get_result(), collector.path)


def pytest_terminal_summary(terminalreporter):
    stats = terminalreporter.stats
    passed = len(stats.get("passed", []))
    failed = len(stats.get("failed", [])) + len(stats.get("error", []))
    skipped = len(stats.get("skipped", []))
    line = f"{passed} passed, {failed} failed, {skipped} skipped"
    terminalreporter.write_line("")
    terminalreporter.write_line(line)
    # tools/check prints it again as the very last line of the run.
    path = os.environ.get("KVMM_SUMMARY_FILE")
    if path:
        with open(path, "w") as f:
            f.write(line + "\n")
