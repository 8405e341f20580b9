"""The README's main job, tools/demo: without a terminal, a private
virtkvmmd boots the demo guest through virsh, the guest runs and powers
off, its console output is printed, and nothing is left behind; on a
terminal (a tmux pane), the guest's console is usable and readable."""
import os
import re
import shutil
import signal
import subprocess
import time

import pytest

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


class Pane:
    """tools/demo in a pane of a private tmux server (its own socket), as a
    user at a terminal runs it."""

    def __init__(self, tmp, argv, width=160, height=50):
        self.sock = os.path.join(tmp, "tmux.sock")
        conf = os.path.join(tmp, "tmux.conf")
        with open(conf, "w") as f:
            f.write("set-option -g history-limit 20000\n")
        self.tmux = ["tmux", "-S", self.sock, "-f", conf]
        cmd = " ".join(argv) + '; echo "demo exit status $?"; exec cat'   # keep the pane
        subprocess.run(self.tmux + ["new-session", "-d", "-s", "demo", "-x", str(width),
                                    "-y", str(height), cmd], check=True, timeout=30)

    def text(self):
        """Everything the pane showed, wrapped lines joined."""
        return subprocess.run(self.tmux + ["capture-pane", "-p", "-J", "-S", "-", "-t", "demo"],
                              check=True, capture_output=True, text=True, timeout=30).stdout

    def wait(self, pattern, what, timeout=300):
        deadline = time.monotonic() + timeout
        while True:
            text = self.text()
            m = re.search(pattern, text, re.M)
            if m:
                return m
            assert time.monotonic() < deadline, f"no {what} on the terminal:\n{text}"
            time.sleep(0.1)

    def keys(self, *keys):
        subprocess.run(self.tmux + ["send-keys", "-t", "demo", *keys], check=True, timeout=30)

    def close(self):
        subprocess.run(self.tmux + ["kill-server"], capture_output=True, timeout=30)


def test_demo_console_on_a_terminal(kvm, tmp):
    """On a terminal the demo attaches the guest's console (virsh start
    --console): every record the guest prints starts at column 0 (its
    serial lines end in CRLF, as Linux's console does, not in a
    staircase), the shell answers what is typed, and Ctrl-] leaves the
    console, after which the demo destroys the guest and stops its
    daemon."""
    if hardware_virtualization():
        pytest.skip("with VMX/SVM the demo boots Debian's Linux, not the test guest")
    pane = Pane(tmp, [os.path.join(TOP, "tools", "demo")])
    root = None
    try:
        root = pane.wait(r"virtkvmmd is serving kvmm:///system\?socket=(\S+)/run/libvirt/virtkvmmd-sock",
                         "the daemon").group(1)
        pane.wait(r"^kvmm-testguest> $", "the guest's prompt")
        pane.keys("info", "Enter")
        pane.wait(r"^boot: entry=64 tsc_khz=\d+$", "the reply to info")
        lines = pane.text().splitlines()
        records = [l for l in lines if "KVMMTEST " in l]
        assert any(l.startswith("KVMMTEST done pass=") for l in records), "\n".join(lines)
        off = [l for l in records if not l.startswith("KVMMTEST ")]
        assert not off, "records not at column 0:\n" + "\n".join(off)
        reply = lines[lines.index("kvmm-testguest> info") + 1:]
        assert reply[0] == "cpus: madt=2 online=2", "\n".join(reply)
        assert reply[2] == "cmdline: kvmmtest.action=prompt console=ttyS0", "\n".join(reply)
        pane.keys("C-]")
        pane.wait(r"demo exit status 0$", "the demo's end", timeout=60)
        assert not os.path.exists(root), f"{root} left behind"
        left = subprocess.run(["pgrep", "-f", root], capture_output=True, text=True).stdout.split()
        assert left == [], f"processes of {root} left: {left}"
    finally:
        try:
            if root and os.path.exists(root):
                # a failure above: end what the demo started (daemon,
                # guest, console client), by PID, so that it cleans up
                for pid in subprocess.run(["pgrep", "-f", root], capture_output=True,
                                          text=True).stdout.split():
                    try:
                        os.kill(int(pid), signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                pane.wait(r"demo exit status", "the demo's end", timeout=30)
        finally:
            pane.close()
            if root:
                shutil.rmtree(root, ignore_errors=True)
