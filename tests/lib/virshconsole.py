"""`virsh console` on a pseudo-terminal of its own, as a person runs it:
for tests that read a guest's console through virtkvmmd."""
import os
import pty
import select
import signal
import subprocess
import time


class Console:
    """`virsh console` with its own terminal (a pty), as a person runs it."""

    def __init__(self, uri, name, *extra):
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen(["virsh", "-c", uri, "console", *extra, name],
                                     stdin=slave, stdout=slave, stderr=slave,
                                     start_new_session=True, env=dict(os.environ, LC_ALL="C"))
        os.close(slave)
        self.out = b""

    def read_until(self, text, timeout=30):
        deadline = time.monotonic() + timeout
        while text.encode() not in self.out:
            left = deadline - time.monotonic()
            assert left > 0, f"no {text!r} on the console; got:\n{self.out.decode(errors='replace')}"
            if select.select([self.master], [], [], min(left, 0.2))[0]:
                try:
                    self.out += os.read(self.master, 4096)
                except OSError:         # EIO: virsh has exited
                    assert text.encode() in self.out, self.out.decode(errors="replace")
                    return

    def send(self, data):
        os.write(self.master, data)

    def ready(self, timeout=30):
        """Attached, and the guest's shell answers.  virsh puts the
        terminal in raw mode only after its greeting, so Enter is
        repeated until a fresh prompt shows."""
        self.read_until("(Ctrl + ])", timeout)
        deadline = time.monotonic() + timeout
        while True:
            seen = self.out.count(b"kvmm-testguest> ")
            self.send(b"\r")
            try:
                self.read_until_count(b"kvmm-testguest> ", seen + 1, 1)
                return
            except AssertionError:
                assert time.monotonic() < deadline, self.out.decode(errors="replace")

    def read_until_count(self, text, count, timeout):
        deadline = time.monotonic() + timeout
        while self.out.count(text) < count:
            left = deadline - time.monotonic()
            assert left > 0, "timeout"
            if select.select([self.master], [], [], min(left, 0.1))[0]:
                self.out += os.read(self.master, 4096)

    def wait(self, timeout=15):
        try:
            rc = self.proc.wait(timeout)
        finally:
            self.drain()
        return rc

    def read_to_end(self, timeout):
        """Everything virsh writes until it exits (the domain ended): read
        while waiting, so that virsh is never blocked on a full terminal."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            assert left > 0, "virsh console did not end"
            if select.select([self.master], [], [], min(left, 0.2))[0]:
                try:
                    chunk = os.read(self.master, 65536)
                except OSError:         # EIO: virsh has exited and all is read
                    chunk = b""
                if not chunk:
                    return self.proc.wait(left)
                self.out += chunk
            elif self.proc.poll() is not None:
                self.drain()
                return self.proc.returncode

    def drain(self):
        while True:
            try:
                if not select.select([self.master], [], [], 0.1)[0]:
                    return
                chunk = os.read(self.master, 4096)
                if not chunk:
                    return
                self.out += chunk
            except OSError:
                return

    def close(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        os.close(self.master)
