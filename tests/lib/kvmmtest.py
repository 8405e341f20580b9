"""Helpers for the guest tests: start kvmm (or QEMU) with the test guest,
collect its serial records, talk to the control socket."""
import json
import os
import re
import select
import signal
import socket
import subprocess
import threading
import time
from collections import namedtuple

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("KVMM_BUILDDIR", TOP)
KVMM = os.path.join(BUILD, "src", "vmm", "kvmm")
GUEST = os.path.join(BUILD, "tests", "guest", "kvmm-testguest.bzImage")
UNIT_DIR = os.path.join(BUILD, "tests", "unit")
QEMU = "/usr/bin/qemu-system-x86_64"

RECORD = re.compile(r"KVMMTEST (\S+) ?(.*)")


def complete_lines(text):
    """The complete lines of serial output (str or bytes), CR stripped (the
    guest ends lines with CRLF): a line counts once its newline has
    arrived, never while it is still being written."""
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return [l.rstrip("\r") for l in text.split("\n")[:-1]]


# The live scenario's tick line (tests/guest/live.c), its fields up to blk0.
LIVE_TICK = re.compile(r"KVMMTEST live n=(\d+) us=(\d+) blk0=(\S+) ")
Tick = namedtuple("Tick", "n us blk0")


def live_records(text, rx=LIVE_TICK):
    """RX's match in each complete line of serial output TEXT it matches.
    The test guest writes a line a byte at a time, so a pause, save,
    snapshot or migration often stops it mid-line, and what a pattern
    finds in a partial line (a value cut short) is not what the guest
    wrote: only a line whose newline has arrived counts."""
    return [m for m in map(rx.search, complete_lines(text)) if m]


def live_ticks(text):
    """The live scenario's complete tick lines in TEXT, as Ticks."""
    return [Tick(int(m[1]), int(m[2]), m[3]) for m in live_records(text)]


def stream(src):
    """A read() for wait_record over a socket or a file descriptor (a pty):
    everything that has arrived so far, taking what is there without
    blocking."""
    buf = bytearray()

    def read():
        while select.select([src], [], [], 0.05)[0]:
            try:
                chunk = src.recv(4096) if hasattr(src, "recv") else os.read(src, 4096)
            except OSError:     # a pty whose other side has gone
                chunk = b""
            if not chunk:
                break
            buf.extend(chunk)
        return bytes(buf)
    return read


def wait_record(read, pattern, what=None, timeout=30, count=1):
    """Polls read() -- the serial output so far, str or bytes (a log file,
    a socket's buffer) -- until COUNT complete lines match the regex
    PATTERN; returns the last match (an re.Match).  The one way to wait
    for a record and then parse it: a match on a partial line could cut
    a value short."""
    rx = re.compile(pattern)
    deadline = time.monotonic() + timeout
    while True:
        lines = complete_lines(read())
        found = [m for m in map(rx.search, lines) if m]
        if len(found) >= count:
            return found[count - 1]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or repr(pattern)} (x{count}); "
                                 "last lines:\n" + "\n".join(lines[-30:]))
        time.sleep(0.05)


def kvm_unavailable():
    """None if /dev/kvm is usable, else the reason it is not."""
    if not os.path.exists("/dev/kvm"):
        return "/dev/kvm does not exist"
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "no permission on /dev/kvm"
    return None


def hardware_virtualization():
    """True where stock kernels can boot: the CPU has VMX or SVM and KVM is
    not the PVM flavour (see DESIGN.md, 'The machines we build on')."""
    if os.path.exists("/sys/module/kvm_pvm"):
        return False
    with open("/proc/cpuinfo") as f:
        flags = f.read()
    return " vmx" in flags or " svm" in flags


def host_tsc_khz():
    """The host's TSC frequency in kHz as its kernel knows it, or None:
    sysfs's tsc_freq_khz where the kernel has one, else its calibration in
    the kernel log, else "cpu MHz" under a hypervisor with a known,
    constant TSC and no cpufreq (there it is the TSC's frequency)."""
    try:
        with open("/sys/devices/system/cpu/cpu0/tsc_freq_khz") as f:
            return int(f.read())
    except (OSError, ValueError):
        pass
    try:
        log = subprocess.run(["dmesg"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        log = ""
    for rx in (r"tsc: Refined TSC clocksource calibration: ([\d.]+) MHz",
               r"tsc: Detected ([\d.]+) MHz (?:processor|TSC)"):
        found = re.findall(rx, log)
        if found:
            return round(float(found[-1]) * 1000)
    with open("/proc/cpuinfo") as f:
        info = f.read()
    flags = re.search(r"^flags\s*:(.*)$", info, re.M).group(1).split()
    if ({"hypervisor", "constant_tsc", "tsc_known_freq"} <= set(flags)
            and not os.path.exists("/sys/devices/system/cpu/cpu0/cpufreq")):
        return round(float(re.search(r"^cpu MHz\s*:\s*([\d.]+)", info, re.M).group(1)) * 1000)
    return None


class Guest:
    """A running VM process whose serial console is a pipe."""

    def __init__(self, argv, env=None, pass_fds=()):
        self.argv = argv
        self.lines = []         # complete lines, CR stripped
        self.stamps = []        # time.monotonic() when each line was complete
        self.partial = ""       # the current unterminated line (a prompt)
        self.cond = threading.Condition()
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=env, pass_fds=pass_fds)
        self.stderr = b""
        self._out = threading.Thread(target=self._read_stdout, daemon=True)
        self._err = threading.Thread(target=self._read_stderr, daemon=True)
        self._out.start()
        self._err.start()

    def _read_stdout(self):
        buf = b""
        while True:
            chunk = self.proc.stdout.read1(4096)
            if not chunk:
                break
            buf += chunk
            with self.cond:
                now = time.monotonic()
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    self.lines.append(line.decode(errors="replace").rstrip("\r"))
                    self.stamps.append(now)
                self.partial = buf.decode(errors="replace")
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()      # an unterminated last line stays partial

    def _read_stderr(self):
        for chunk in iter(lambda: self.proc.stderr.read1(4096), b""):
            self.stderr += chunk

    def records(self, kind=None):
        out = []
        with self.cond:
            for line in self.lines:
                m = RECORD.search(line)
                if m and (kind is None or m.group(1) == kind):
                    out.append((m.group(1), m.group(2)))
        return out

    # Generous: only a failure waits this long, and on a busy host QEMU's
    # SeaBIOS (CPL0, emulated under KVM-PVM) alone took over 30 s.
    WAIT = 120

    def wait_for(self, pattern, timeout=WAIT, count=1, partial=False):
        """Waits until `count` complete serial lines match the regex;
        returns the last match.  partial=True also looks at the line still
        being written (a prompt, which has no newline).  Raises with the
        output so far on timeout."""
        return self.wait_line(pattern, timeout, count, partial)[0]

    def wait_line(self, pattern, timeout=WAIT, count=1, partial=False):
        """As wait_for, but returns (match, index of its line in
        self.lines, or None for the partial line)."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                found = [(m, i) for i, m in enumerate(map(rx.search, self.lines)) if m]
                if partial:
                    m = rx.search(self.partial)
                    if m:
                        found.append((m, None))
                if len(found) >= count:
                    return found[count - 1]
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._out.is_alive()):
                    raise AssertionError(
                        f"no {pattern!r} (x{count}) in serial output:\n" + "\n".join(self.lines[-60:])
                        + "\nstderr:\n" + self.stderr.decode(errors="replace"))
                self.cond.wait(min(left, 0.2))

    def info(self):
        """The guest's `info key=value` facts as a dict."""
        facts = {}
        for _, text in self.records("info"):
            for m in re.finditer(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)', text):
                v = m.group(2)
                facts[m.group(1)] = v[1:-1] if v.startswith('"') else v
        return facts

    def wait_exit(self, timeout=60):
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError("VM did not exit; serial:\n" + "\n".join(self.lines[-60:]))
        self._out.join(5)
        self._err.join(5)
        return rc

    def send(self, data):
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                f.close()
            except Exception:
                pass


def kvmm_argv(cmdline="", cpus=1, memory="256M", extra=(), kernel=None, initrd=None):
    argv = [KVMM, "--kernel", kernel or GUEST, "--cmdline", cmdline,
            "--cpus", str(cpus), "--memory", memory, "--serial", "stdio"]
    if initrd:
        argv += ["--initrd", initrd]
    return argv + list(extra)


def qemu_argv(cmdline="", cpus=1, memory="256M", extra=(), machine="q35", initrd=None):
    argv = [QEMU, "-M", machine, "-accel", "kvm", "-cpu", "host,-arch-capabilities",
            "-m", memory,
            "-smp", str(cpus), "-kernel", GUEST, "-append", cmdline,
            "-serial", "stdio", "-display", "none", "-nodefaults", "-no-user-config"]
    if initrd:
        argv += ["-initrd", initrd]
    return argv + list(extra)


def connect(path, timeout=10, recv_timeout=None):
    """A client of the UNIX socket a VM process listens on, retried for up
    to TIMEOUT until the process has created it.  recv() then waits as
    long as Guest.wait_for does: what comes on the socket may follow a
    whole boot (SeaBIOS under QEMU), slow on a loaded machine."""
    deadline = time.monotonic() + timeout
    while True:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(path)
            s.settimeout(recv_timeout or Guest.WAIT)
            return s
        except (FileNotFoundError, ConnectionRefusedError):
            s.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def start(vms, argv, pass_fds=()):
    g = Guest(argv, pass_fds=pass_fds)
    vms.append(g)
    return g


class Api:
    """A client of the kvmm control socket, retried until the process has
    created it (a migration's destination creates it only once the
    stream is in, which on a loaded machine can take many seconds)."""

    def __init__(self, path, timeout=None):
        timeout = timeout or Guest.WAIT
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.connect(path)
                break
            except (FileNotFoundError, ConnectionRefusedError):
                self.sock.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        self.buf = b""
        self.events = []
        self.next_id = 1
        self.greeting = self._read_msg(timeout)

    def _read_msg(self, timeout=10):
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no message from kvmm")
            r, _, _ = select.select([self.sock], [], [], left)
            if r:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise EOFError("kvmm closed the control socket")
                self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def call(self, command, arguments=None, timeout=10, fds=()):
        """fds: descriptors sent with the request line (SCM_RIGHTS)."""
        req = {"id": self.next_id, "execute": command}
        if arguments is not None:
            req["arguments"] = arguments
        self.next_id += 1
        line = json.dumps(req).encode() + b"\n"
        if fds:
            n = socket.send_fds(self.sock, [line], list(fds))
            line = line[n:]
        if line:
            self.sock.sendall(line)
        while True:
            msg = self._read_msg(timeout)
            if "event" in msg:
                self.events.append(msg)
                continue
            assert msg.get("id") == req["id"], msg
            return msg

    def wait_event(self, name, timeout=10, **data):
        deadline = time.monotonic() + timeout
        while True:
            for e in self.events:
                if e["event"] == name and all(e["data"].get(k) == v for k, v in data.items()):
                    self.events.remove(e)
                    return e
            self.events.append(self._read_msg(max(0.01, deadline - time.monotonic())))

    def close(self):
        self.sock.close()


class Qmp:
    """Just enough QMP to press QEMU's power button (or resize a disk)."""

    def __init__(self, path, timeout=10):
        self.api = Api.__new__(Api)
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.api.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.api.sock.connect(path)
                break
            except (FileNotFoundError, ConnectionRefusedError):
                self.api.sock.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        self.api.buf = b""
        self.api._read_msg(timeout)
        self.execute("qmp_capabilities")

    def execute(self, cmd, arguments=None):
        req = {"execute": cmd}
        if arguments is not None:
            req["arguments"] = arguments
        self.api.sock.sendall(json.dumps(req).encode() + b"\n")
        while True:
            msg = self.api._read_msg()
            if "return" in msg or "error" in msg:
                return msg

    def close(self):
        self.api.sock.close()


class Runner:
    """Starts the test guest under kvmm or QEMU with the same scenario, so
    every scenario proves the guest against both (DESIGN.md section 7)."""

    def __init__(self, name):
        self.name = name

    def start(self, vms, tmp, cmdline, cpus=1, memory="256M", initrd=None,
              no_reboot=False, control=False):
        self.sock = os.path.join(tmp, "ctl.sock")
        if self.name == "kvmm":
            extra = ["--no-reboot"] if no_reboot else []
            if control:
                extra += ["--api-socket", self.sock]
            argv = kvmm_argv(cmdline, cpus, memory, extra, initrd=initrd)
        else:
            extra = ["-no-reboot"] if no_reboot else []
            if control:
                extra += ["-qmp", f"unix:{self.sock},server=on,wait=off"]
            argv = qemu_argv(cmdline, cpus, memory, extra, initrd=initrd)
        return start(vms, argv)

    def power_button(self):
        if self.name == "kvmm":
            api = Api(self.sock)
            assert "return" in api.call("power-button")
            api.close()
        else:
            q = Qmp(self.sock)
            assert "return" in q.execute("system_powerdown")
            q.close()

    def exit_status(self, kind):
        """The process exit status for a guest poweroff/reboot/crash."""
        if self.name == "qemu":
            return 0
        return {"poweroff": 0, "reboot": 2, "crash": 3}[kind]
