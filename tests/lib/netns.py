"""Private network namespaces for the tests that need taps and bridges,
and the probe that pings and echoes a test guest from inside one."""
import json
import os
import subprocess
import sys
import uuid

import pytest

NETPROBE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "netprobe.py")
VNETCAP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "vnetcap.py")


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


def probe(ns, ip, port, *opts):
    """netprobe.py's JSON result: pings, UDP echoes on PORT, then QUIT
    (opts: its --big, --timeout S)."""
    out = subprocess.run(["ip", "netns", "exec", ns, sys.executable, NETPROBE, ip, str(port)]
                         + [str(o) for o in opts],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def udp_mib(ns):
    """The namespace's UDP counters from /proc/net/snmp, by name."""
    out = subprocess.run(["ip", "netns", "exec", ns, "cat", "/proc/net/snmp"],
                         capture_output=True, text=True, check=True).stdout
    names, values = [line.split()[1:] for line in out.splitlines() if line.startswith("Udp:")]
    return dict(zip(names, map(int, values)))


def captured(ns, tap, sport, count, run):
    """vnetcap.py's datagrams from port SPORT into TAP while run() runs
    (its result is returned too); the capture is stopped either way."""
    cap = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, VNETCAP, tap,
                            str(sport), str(count), "30"], stdout=subprocess.PIPE, text=True)
    try:
        assert json.loads(cap.stdout.readline())["ready"]
        r = run()
        return r, json.loads(cap.communicate(timeout=40)[0])
    finally:
        if cap.poll() is None:
            cap.kill()
            cap.wait()
