"""Helpers for the virtkvmmd tests: a private daemon (--root in a temp
dir, always stopped by PID), the real virsh, and a raw libvirt RPC client
for the robustness tests."""
import os
import re
import select
import signal
import socket
import struct
import subprocess
import threading
import time

from kvmmtest import BUILD, TOP

VIRTKVMMD = os.path.join(BUILD, "src", "driver", "virtkvmmd")
# What `make install` puts in /etc/libvirt: a system daemon of the tests
# reads it too, so its settings (sandbox, user, group) are what the tests
# prove.
INSTALLED_CONF = os.path.join(TOP, "data", "virtkvmmd.conf")
RPC_FUZZ = os.path.join(BUILD, "tests", "unit", "rpc_fuzz")

REMOTE_PROGRAM = 0x20008086
KEEPALIVE_PROGRAM = 0x6B656570
CALL, REPLY, MESSAGE, STREAM, CALL_WITH_FDS = 0, 1, 2, 3, 4
OK, ERROR, CONTINUE = 0, 1, 2
PACKET_MAX = 4 + 33554432

# remote procedures used here
PROC_OPEN, PROC_CLOSE, PROC_GET_TYPE, PROC_GET_VERSION = 1, 2, 3, 4
PROC_NODE_GET_INFO, PROC_SUPPORTS_FEATURE, PROC_AUTH_LIST = 6, 60, 66
PROC_LIST_ALL_DOMAINS, PROC_DEFINE_XML = 273, 11


def package_version():
    """PACKAGE_VERSION from the build's config header."""
    with open(os.path.join(BUILD, "kvmm-build.h")) as f:
        return re.search(r'#define PACKAGE_VERSION "([^"]+)"', f.read()).group(1)


def version_number(v):
    parts = [int(p) for p in v.split(".")] + [0, 0]
    return parts[0] * 1000000 + parts[1] * 1000 + parts[2]


class Daemon:
    """A private virtkvmmd whose files all live under root."""

    def __init__(self, root, extra=(), user=None, env=None, verbose=True, prefix=()):
        """prefix: a command the daemon runs under, which must exec it (so
        the PID stays the daemon's), e.g. ["ip", "netns", "exec", NS]."""
        self.root = root
        conf = os.path.join(root, "etc", "libvirt", "virtkvmmd.conf")
        # The installed file, unless the test brought its own (a file in
        # root, or --config); a session daemon (user) reads its user's.
        if user is None and "--config" not in extra and not os.path.exists(conf):
            os.makedirs(os.path.dirname(conf), exist_ok=True)
            with open(INSTALLED_CONF) as src, open(conf, "w") as dst:
                dst.write(src.read())
        self.rundir = os.path.join(root, "run", "libvirt")
        self.sock = os.path.join(self.rundir, "virtkvmmd-sock")
        self.sock_ro = self.sock + "-ro"
        self.pidfile = os.path.join(root, "virtkvmmd.pid")
        self.logpath = os.path.join(root, "virtkvmmd.log")
        self.argv = (list(prefix) + [VIRTKVMMD, "--root", root, "--pid-file", self.pidfile] +
                     (["--verbose"] if verbose else []) + list(extra))
        self.log = open(self.logpath, "wb")
        self.proc = subprocess.Popen(self.argv, stdout=self.log, stderr=subprocess.STDOUT,
                                     env=env, user=user)

    def wait_ready(self, path=None, timeout=10):
        path = path or self.sock
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"virtkvmmd exited ({self.proc.returncode}):\n{self.output()}")
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.connect(path)
                return self
            except (FileNotFoundError, ConnectionRefusedError):
                if time.monotonic() > deadline:
                    raise AssertionError(f"virtkvmmd never listened on {path}:\n{self.output()}")
                time.sleep(0.02)
            finally:
                s.close()

    def uri(self, ro=False):
        return f"kvmm:///system?socket={self.sock_ro if ro else self.sock}"

    def alive(self):
        return self.proc.poll() is None

    def output(self):
        self.log.flush()
        with open(self.logpath, "rb") as f:
            return f.read().decode(errors="replace")

    def stop(self, timeout=10, keep_guests=False):
        """SIGTERM by PID, SIGKILL if it does not go; returns the exit code.
        The kvmm processes it started (they outlive the daemon by design)
        are killed too unless keep_guests."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if not self.log.closed:
            self.log.close()
        if not keep_guests:
            kill_guests(self.root)
        return self.proc.returncode

    def guests(self):
        return guest_pids(self.root)


def guest_pids(root):
    """PIDs of live processes whose command line mentions root: the kvmm
    processes a daemon with --root root started."""
    pids = []
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open(f"/proc/{p}/cmdline", "rb") as f:
                cmd = f.read()
            with open(f"/proc/{p}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and root.encode() in cmd and b"--config" in cmd and b"virtkvmmd" not in cmd:
            pids.append(int(p))
    return pids


def kill_guests(root):
    for pid in guest_pids(root):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


_event_loop = []


def event_loop():
    """libvirt's default event loop, once per process (libvirt allows one),
    on a daemon thread: close callbacks and domain events are delivered
    from it.  Must run before the connections that use it are opened."""
    import libvirt
    if not _event_loop:
        libvirt.virEventRegisterDefaultImpl()

        def run():
            while True:
                libvirt.virEventRunDefaultImpl()
        t = threading.Thread(target=run, daemon=True)
        t.start()
        _event_loop.append(t)


def wait_for(fn, what, timeout=30, poll=0.05):
    """fn()'s first true value, asked every POLL seconds for up to TIMEOUT."""
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(poll)


def virsh(uri, *args, readonly=False, timeout=30):
    argv = ["virsh"] + (["-r"] if readonly else []) + ["-c", uri] + list(args)
    env = dict(os.environ, LC_ALL="C")
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)


def assert_healthy(d):
    """The daemon is still running and a real client still gets answers."""
    assert d.alive(), "virtkvmmd died:\n" + d.output()
    r = virsh(d.uri(), "list", "--all")
    assert r.returncode == 0, r.stderr + "\n" + d.output()
    assert "Id   Name   State" in r.stdout


# --- raw RPC ------------------------------------------------------------

def xdr_int(v):
    return struct.pack(">i", v)


def xdr_uint(v):
    return struct.pack(">I", v & 0xFFFFFFFF)


def xdr_string(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack(">I", len(b)) + b + b"\0" * (-len(b) % 4)


def packet(prog, vers, proc, mtype, serial, status=OK, body=b"", length=None):
    hdr = struct.pack(">IIiIII", prog, vers, proc, mtype, serial, status)
    n = 4 + len(hdr) + len(body) if length is None else length
    return struct.pack(">I", n) + hdr + body


def call_packet(proc, serial, body=b""):
    return packet(REMOTE_PROGRAM, 1, proc, CALL, serial, OK, body)


def open_body(uri="kvmm:///system", flags=0):
    return xdr_uint(1) + xdr_string(uri) + xdr_uint(flags)


def decode_error(body):
    """(code, domain, message, level) of an rpc_error body."""
    code, domain, present = struct.unpack(">iiI", body[:12])
    off = 12
    message = None
    if present:
        (n,) = struct.unpack(">I", body[off:off + 4])
        message = body[off + 4:off + 4 + n].decode()
        off += 4 + n + (-n % 4)
    (level,) = struct.unpack(">i", body[off:off + 4])
    return code, domain, message, level


class Raw:
    """A libvirt RPC client speaking bytes, for feeding the daemon
    exactly what a test wants."""

    def __init__(self, path, timeout=10):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        # Blocking connect: with a timeout set, Python makes the socket
        # non-blocking, and a full listen backlog then fails with EAGAIN
        # instead of waiting its turn.
        self.sock.connect(path)
        self.sock.settimeout(timeout)
        self.buf = b""
        self.serial = 0

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self, n, deadline):
        while len(self.buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no packet from virtkvmmd")
            r, _, _ = select.select([self.sock], [], [], left)
            if not r:
                continue
            try:
                chunk = self.sock.recv(1 << 20)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                return False
            self.buf += chunk
        return True

    def recv(self, timeout=10):
        """(prog, vers, proc, type, serial, status, body), or None at EOF."""
        deadline = time.monotonic() + timeout
        if not self._fill(4, deadline):
            return None
        (n,) = struct.unpack(">I", self.buf[:4])
        assert 28 <= n <= PACKET_MAX, f"bad length word {n} from virtkvmmd"
        if not self._fill(n, deadline):
            return None
        pkt, self.buf = self.buf[:n], self.buf[n:]
        return struct.unpack(">IIiIII", pkt[4:28]) + (pkt[28:],)

    def call(self, proc, body=b""):
        """Sends a call; returns its reply, skipping keepalive messages."""
        serial = self.serial
        self.serial += 1
        self.send(call_packet(proc, serial, body))
        while True:
            r = self.recv()
            assert r is not None, "virtkvmmd closed the connection"
            if r[0] == KEEPALIVE_PROGRAM:
                continue
            assert r[:5] == (REMOTE_PROGRAM, 1, proc, REPLY, serial), r
            return r

    def open(self, uri="kvmm:///system", flags=0):
        r = self.call(PROC_AUTH_LIST)
        assert r[5] == OK
        r = self.call(PROC_OPEN, open_body(uri, flags))
        assert r[5] == OK, decode_error(r[6])
        return self

    def closed_by_peer(self, timeout=10):
        """True once the daemon has closed this connection."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                r = self.recv(timeout=deadline - time.monotonic())
            except (TimeoutError, ConnectionResetError):
                return False
            if r is None:
                return True
        return False

    def close(self):
        self.sock.close()
