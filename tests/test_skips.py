"""CI's rule that a skip is a failure (tests/conftest.py): pytest runs a
copy of the suite's conftest.py over tiny test files that skip, in each
way a test can, with and without KVMM_REQUIRE_KVM=1."""
import os
import re
import shutil
import subprocess
import sys

import kvmmtest

HERE = os.path.dirname(os.path.abspath(__file__))

SKIPPING = {
    "test_a.py": '''
import pytest

def test_skip_call():
    pytest.skip("reason-call")

@pytest.fixture
def fix():
    pytest.skip("reason-fixture")

def test_skip_fixture(fix):
    pass

@pytest.mark.skipif(True, reason="reason-marker")
def test_skip_marker():
    pass

def test_passes():
    pass
''',
    "test_module.py": '''
import pytest
pytest.importorskip("no_such_module_kvmm", reason="reason-module")

def test_never_collected():
    pass
''',
    "linux/test_tier.py": '''
import pytest

def test_linux_tier():
    pytest.skip("reason-linux")
''',
}


def run_suite(tmp, require):
    tests = os.path.join(tmp, "tests")
    for name, text in SKIPPING.items():
        path = os.path.join(tests, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
    shutil.copy(os.path.join(HERE, "conftest.py"), tests)
    env = dict(os.environ, PYTHONPATH=os.path.join(HERE, "lib"))
    env.pop("KVMM_SUMMARY_FILE", None)
    env.pop("KVMM_REQUIRE_KVM", None)
    if require:
        env["KVMM_REQUIRE_KVM"] = "1"
    # A failed collection would stop the run before the other files.
    r = subprocess.run([sys.executable, "-m", "pytest", "-rfEs", "-p", "no:cacheprovider",
                        "--continue-on-collection-errors", "--rootdir", tmp, tests], cwd=tmp, env=env,
                       capture_output=True, text=True, timeout=120)
    m = re.search(r"^(\d+) passed, (\d+) failed, (\d+) skipped$", r.stdout, re.M)
    assert m, r.stdout + r.stderr
    return r, tuple(int(n) for n in m.groups())


def test_skips_are_failures_under_require_kvm(tmp):
    r, counts = run_suite(tmp, require=True)
    out = r.stdout
    assert r.returncode != 0, out
    # Each way of skipping fails, and says why it would have skipped.
    for why in ("reason-call", "reason-fixture", "reason-marker", "reason-module"):
        assert re.search(r"KVMM_REQUIRE_KVM=1 allows no skip outside the Linux tier: .*"
                         + why, out), out
    if kvmmtest.hardware_virtualization():
        assert counts == (1, 5, 0), out
        assert "reason-linux" in out and "SKIPPED" not in out, out
    else:
        # The Linux tier alone may skip, on a host that cannot run it.
        assert counts == (1, 4, 1), out
        assert re.search(r"SKIPPED .*reason-linux", out), out


def test_skips_stay_skips_without_require_kvm(tmp):
    """The same files outside CI: every skip is reported as one, which
    shows the failures above come from KVMM_REQUIRE_KVM=1 alone."""
    r, counts = run_suite(tmp, require=False)
    # The module skipped at collection counts once.
    assert counts == (1, 0, 5), r.stdout
    assert r.returncode == 0, r.stdout
