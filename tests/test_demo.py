"""The README's main job, tools/demo, without a terminal: a private
virtkvmmd boots the demo guest through virsh, the guest runs and powers
off, its console output is printed, and nothing is left behind."""
import os
import re
import subprocess

from kvmmtest import TOP, hardware_virtualization


def test_demo_boots_through_virsh_and_cleans_up(kvm):
    r = subprocess.run([os.path.join(TOP, "tools", "demo")], stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=600)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    m = re.search(r"virtkvmmd is serving kvmm:///system\?socket=(\S+)/run/libvirt/virtkvmmd-sock", out)
    assert m, out
    root = m.group(1)
    if hardware_virtualization():
        assert "kvmm demo: Linux" in out, out
    else:
        assert "KVMMTEST done pass=" in out and "KVMMTEST fail" not in out, out
    assert "demo: shut off (shutdown)" in out, out
    assert not os.path.exists(root), f"{root} left behind"
    left = subprocess.run(["pgrep", "-f", root], capture_output=True, text=True).stdout.split()
    assert left == [], f"processes of {root} left: {left}"
