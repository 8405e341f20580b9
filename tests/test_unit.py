"""The C unit tests, one pytest item per case (collected with --list)."""
import os
import re
import subprocess

import pytest

from kvmmtest import UNIT_DIR

BINARIES = ["test_config", "test_acpi", "test_boot", "test_bus", "test_pci", "test_virtqueue", "test_virtio_pci", "test_virtio_console", "test_virtio_net", "test_virtio_blk", "test_virtio_balloon", "test_qcow2", "test_rpc", "test_monitor", "test_job", "test_cgroup", "test_smbios", "test_fw_cfg", "test_seccomp", "test_state_stream"]


def cases():
    out = []
    for b in BINARIES:
        path = os.path.join(UNIT_DIR, b)
        if not os.path.exists(path):
            out.append(pytest.param(b, None, id=f"{b}-missing"))
            continue
        names = subprocess.run([path, "--list"], capture_output=True, text=True, check=True).stdout.split()
        if not names:
            # A binary whose cases were not registered would pass unseen.
            out.append(pytest.param(b, "", id=f"{b}-no-cases"))
        out += [pytest.param(b, n, id=f"{b}.{n}") for n in names]
    return out


@pytest.mark.parametrize("binary,case", cases())
def test_unit(binary, case):
    path = os.path.join(UNIT_DIR, binary)
    assert case is not None, f"{path} was not built: run make check"
    assert case, f"{path} --list names no test case"
    r = subprocess.run([path, case], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"PASS {case}" in r.stdout


def test_virtqueue_fuzz():
    """The virtqueue walker under random and hostile rings for a bounded
    time: no crash, every accepted buffer inside guest RAM."""
    path = os.path.join(UNIT_DIR, "vq_fuzz")
    assert os.path.exists(path), f"{path} was not built: run make check"
    r = subprocess.run([path, "--seconds", "4", "--seed", "1"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    m = re.search(r"(\d+) rounds, (\d+) chains accepted", r.stdout)
    assert m, r.stdout
    rounds, chains = int(m.group(1)), int(m.group(2))
    assert rounds > 1000 and chains > 100, r.stdout


def test_qcow2_fuzz():
    """qcow2 images with mutated headers and tables, opened and driven for
    a bounded time: no crash, no write into the header or into an image
    kvmm refused, no growth past what the requests could allocate."""
    path = os.path.join(UNIT_DIR, "qcow2_fuzz")
    assert os.path.exists(path), f"{path} was not built: run make check"
    r = subprocess.run([path, "--seconds", "4", "--seed", "1"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr[-4000:]
    m = re.search(r"(\d+) images, (\d+) opened, (\d+) requests, (\d+) succeeded", r.stdout)
    assert m, r.stdout
    images, opened, reqs, ok = map(int, m.groups())
    assert images > 50 and opened > 10 and reqs > 50 and ok > 10, r.stdout
