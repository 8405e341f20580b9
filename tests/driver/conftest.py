"""Fixtures for the virtkvmmd tests: a private daemon per test, stopped
by PID even when the test fails."""
import os
import shutil
import tempfile

import pytest

from drvtest import VIRTKVMMD, Daemon


@pytest.fixture
def start_daemon():
    """start_daemon(extra=(), ...) -> a running Daemon in its own --root
    (a new temporary one, or root= one the test prepared).  Every daemon
    started is stopped (by PID) and its root removed."""
    started = []

    def start(extra=(), wait=True, root=None, **kw):
        assert os.path.exists(VIRTKVMMD), f"{VIRTKVMMD} was not built: run make"
        root = root or tempfile.mkdtemp(prefix="kvd-")
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

