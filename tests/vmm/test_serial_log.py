"""A log on kvmm's character devices ("log": {"path", "append"}, what
virtkvmmd makes of libvirt's <log file=... append=...>): the file gets
everything the guest wrote, whatever the backend, written over at start
or appended to; a log kvmm cannot open stops it before the guest runs.
A pty, as QEMU's, drops what the guest writes while no client has it
open; the log keeps it, and is only ever appended to, so that another
appender (nova adds what it read from the pty) is never written over."""
import json
import os
import re
import subprocess
import time

from kvmmtest import GUEST, KVMM, Api, start, stream, wait_record

TICK = re.compile(r"^KVMMTEST tick (\d+)$")


def run(tmp, serial, **extra):
    conf = dict({"kernel": GUEST, "memory": "64M", "cmdline": "kvmmtest.action=poweroff",
                 "serial": serial}, **extra)
    path = os.path.join(tmp, "vm.json")
    with open(path, "w") as f:
        json.dump(conf, f)
    return subprocess.run([KVMM, "--config", path], capture_output=True, timeout=120)


def test_log_copies_the_serial_output(kvm, tmp):
    log = os.path.join(tmp, "console.log")
    with open(log, "w") as f:
        f.write("an earlier run\n")
    r = run(tmp, {"mode": "stdio", "log": {"path": log}})
    assert r.returncode == 0, r.stderr
    with open(log, "rb") as f:
        first = f.read()
    assert b"KVMMTEST done" in first
    assert first == r.stdout            # byte for byte what stdio got
    # append: the earlier run stays, the new one follows it
    r = run(tmp, {"mode": "none", "log": {"path": log, "append": True}})
    assert r.returncode == 0, r.stderr
    with open(log, "rb") as f:
        both = f.read()
    assert both.startswith(first) and both.count(b"KVMMTEST done") == 2


def test_virtio_console_log_and_a_log_kvmm_cannot_open(kvm, tmp):
    log = os.path.join(tmp, "hvc.log")
    r = run(tmp, "none", console={"mode": "none", "log": {"path": log, "append": True}})
    assert r.returncode == 0, r.stderr
    assert os.path.exists(log)          # opened (the guest writes nothing there unasked)
    bad = os.path.join(tmp, "no-such-dir", "console.log")
    r = run(tmp, {"mode": "none", "log": {"path": bad}})
    assert r.returncode == 1
    assert f"cannot open serial log file {bad}: No such file or directory" in r.stderr.decode()


def test_log_is_rotated_like_virtlogd(kvm, tmp):
    """Past max_size the log becomes FILE.0 (FILE.0 FILE.1, up to FILE.2),
    so a chatty guest cannot fill the host's disk: what is kept is the
    newest output, in order, and every file within the size."""
    log = os.path.join(tmp, "console.log")
    r = run(tmp, {"mode": "stdio", "log": {"path": log, "max_size": 300}})
    assert r.returncode == 0, r.stderr
    assert len(r.stdout) > 4 * 300, "the guest wrote too little to rotate 3 times"
    files = [log + ".2", log + ".1", log + ".0", log]
    kept = b""
    for p in files:
        with open(p, "rb") as f:
            data = f.read()
        assert 0 < len(data) <= 300, (p, len(data))
        kept += data
    assert not os.path.exists(log + ".3")
    assert r.stdout.endswith(kept)


def start_on_pty(vms, tmp, log, cmdline="kvmmtest.action=wait kvmmtest.tick_ms=50"):
    """kvmm with its serial port on a pty and a log; the pty's path."""
    conf = {"kernel": GUEST, "memory": "64M", "cmdline": cmdline,
            "serial": {"mode": "pty", "log": {"path": log}}}
    path, sock = os.path.join(tmp, "vm.json"), os.path.join(tmp, "api.sock")
    with open(path, "w") as f:
        json.dump(conf, f)
    # -vv: kvmm says when it has seen a client leave (its debug line)
    g = start(vms, [KVMM, "-vv", "--config", path, "--api-socket", sock])
    return g, Api(sock).call("query-status")["return"]["serial"]["path"]


def ticks(data):
    lines = data.decode(errors="replace").split("\n")[:-1]
    return [int(m.group(1)) for m in (TICK.match(l.rstrip("\r")) for l in lines) if m]


def wait_stderr(g, text, count=1, timeout=30):
    deadline = time.monotonic() + timeout
    while g.stderr.decode(errors="replace").count(text) < count:
        assert time.monotonic() < deadline, f"no {text!r} (x{count}) from kvmm:\n{g.stderr!r}"
        time.sleep(0.05)


def test_pty_drops_output_nobody_reads_the_log_keeps_it(kvm, vms, tmp):
    """What the guest wrote while no client had the pty open is not
    delivered to a later reader (nova's readpty, virsh console): each
    client sees the output from its open on, the one after a client left
    (without reading all) too; the log has every line, in order."""
    log = os.path.join(tmp, "console.log")
    g, pty_path = start_on_pty(vms, tmp, log)

    def read_log():
        with open(log, "rb") as f:
            return f.read()
    wait_record(read_log, r"^KVMMTEST tick 5$", "ticks in the log while nobody is on the pty")
    for client in (1, 2):
        before = max(ticks(read_log()))
        fd = os.open(pty_path, os.O_RDWR | os.O_NOCTTY)
        try:
            read = stream(fd)
            wait_record(read, TICK.pattern, f"ticks on the pty (client {client})", count=3)
            got = read()
        finally:
            os.close(fd)        # what is still unread stays behind
        assert b"KVMMTEST boot" not in got and b"KVMMTEST done" not in got, got
        assert min(ticks(got)) >= before, (before, got)
        wait_stderr(g, f"serial console: the client of {pty_path} left", client)
        # meanwhile the log goes on, nothing missed
        wait_record(read_log, rf"^KVMMTEST tick {max(ticks(got)) + 3}$", "ticks after the client left")
    logged = read_log()
    assert b"KVMMTEST boot" in logged and b"KVMMTEST done" in logged
    numbers = ticks(logged)
    assert numbers == list(range(numbers[0], numbers[-1] + 1)), numbers


def test_log_has_another_appender_s_lines_whole(kvm, vms, tmp):
    """append off writes the log over once, at start; after that kvmm
    appends (O_APPEND), so what another writer appends meanwhile (nova
    appends what it read from the pty) is kept whole, between the guest's
    bytes, and the guest's output is all there too."""
    log = os.path.join(tmp, "console.log")
    with open(log, "w") as f:
        f.write("an earlier run, written over\n")
    g, _ = start_on_pty(vms, tmp, log)
    marks = []
    fd = os.open(log, os.O_WRONLY | os.O_APPEND)
    try:
        for i in range(6):
            def read_log():
                with open(log, "rb") as f:
                    return f.read()
            wait_record(read_log, rf"^KVMMTEST tick {3 * i + 2}$", "the guest's ticks in the log")
            marks.append(b"<nova's read %d>\n" % i)
            os.write(fd, marks[-1])
    finally:
        os.close(fd)
    wait_record(read_log, r"^KVMMTEST tick 20$", "ticks after the last mark")
    g.kill()
    logged = read_log()
    assert not logged.startswith(b"an earlier run"), logged[:200]
    guest = logged
    for m in marks:
        assert logged.count(m) == 1, (m, logged)
        guest = guest.replace(m, b"")
    assert guest.startswith(b"KVMMTEST boot"), guest[:200]
    numbers = ticks(guest)
    assert numbers == list(range(numbers[0], numbers[-1] + 1)), numbers
