"""Private network namespaces for the tests that need taps and bridges,
and the probe that pings and echoes a test guest from inside one."""
import json
import os
import subprocess
import sys
import uuid

import pytest

NETPROBE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "netprobe.py")


def private(prefix):
    """For a fixture (yield from): a new namespace named PREFIX + random,
    loopback up, deleted with its taps even when the test fails."""
    if os.geteuid() != 0:
        pytest.skip("network namespaces and taps need root")
    name = prefix + uuid.uuid4().hex[:8]
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def probe(ns, ip, port):
    """netprobe.py's JSON result: pings, UDP echoes on PORT, then QUIT."""
    out = subprocess.run(["ip", "netns", "exec", ns, sys.executable, NETPROBE, ip, str(port)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)
