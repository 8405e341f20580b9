"""Fixtures for the virtkvmmd tests: a private daemon per test, stopped
by PID even when the test fails."""
import os
import shutil
import tempfile

import pytest

from drvtest import VIRTKVMMD, Daemon


def force_sandbox(root):
    """KVMM_TEST_SANDBOX=1 (a run to find what a sandboxed kvmm breaks):
    sandbox = 1 in the daemon's configuration file unless the test set
    the key itself."""
    conf = os.path.join(root, "etc", "libvirt", "virtkvmmd.conf")
    os.makedirs(os.path.dirname(conf), exist_ok=True)
    text = open(conf).read() if os.path.exists(conf) else ""
    if not any(line.split("=")[0].strip() == "sandbox" for line in text.splitlines()):
        with open(conf, "a") as f:
            f.write("\nsandbox = 1\n")


@pytest.fixture
def start_daemon():
    """start_daemon(extra=(), ...) -> a running Daemon in its own --root
    (a new temporary one, or root= one the test prepared).  Every daemon
    started is stopped (by PID) and its root removed."""
    started = []

    def start(extra=(), wait=True, root=None, **kw):
        assert os.path.exists(VIRTKVMMD), f"{VIRTKVMMD} was not built: run make"
        root = root or tempfile.mkdtemp(prefix="kvd-")
        if os.environ.get("KVMM_TEST_SANDBOX") == "1":
            force_sandbox(root)
        d = Daemon(root, extra, **kw)
        started.append(d)
        if wait:
            d.wait_ready()
        return d

    yield start
    for d in started:
        d.stop()
        shutil.rmtree(d.root, ignore_errors=True)


@pytest.fixture
def daemon(start_daemon):
    return start_daemon()

