"""kvmm's own behaviour with the test guest: control socket, pause and
resume, signals, serial backends, lazy guest memory."""
import json
import os
import pty
import re
import select
import signal
import socket
import subprocess
import time

import pytest

from kvmmtest import Api, GUEST, KVMM, kvmm_argv, start, stream, wait_record


def test_api_reports_status_and_events(kvm, vms, tmp):
    sock = os.path.join(tmp, "api.sock")
    g = start(vms, kvmm_argv("kvmmtest.action=wait", cpus=2, memory="300M",
                             extra=["--api-socket", sock, "--name", "demo"]))
    g.wait_for(r"KVMMTEST tick")
    api = Api(sock)
    assert api.greeting["greeting"]["name"] == "kvmm"
    assert api.greeting["greeting"]["api"] == 1
    st = api.call("query-status")["return"]
    assert st["state"] == "running"
    assert st["vcpus"] == 2
    assert st["memory"] == 300 << 20
    assert st["name"] == "demo"
    assert st["uptime_ms"] >= 0
    assert st["pid"] == g.proc.pid
    assert "serial" not in st          # stdio: nothing to attach to
    cmds = api.call("query-commands")["return"]
    for c in ("query-status", "pause", "resume", "power-button", "reset", "quit"):
        assert c in cmds
    r = api.call("no-such-command")
    assert r["error"]["code"] == "CommandNotFound"
    api.sock.sendall(b"this is not json\n")
    assert api._read_msg()["error"]["code"] == "ParseError"
    # A request sent before the greeting is read (as virtkvmmd sends
    # them): the greeting first, then its answer.
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(sock)
        s.sendall(b'{"id":7,"execute":"query-status"}\n')
        buf, deadline = b"", time.monotonic() + 30
        # events may come between the two; a record is a complete line
        while b'"id":7' not in buf or not buf.endswith(b"\n"):
            assert time.monotonic() < deadline, f"only {buf!r} within 30 s"
            if select.select([s], [], [], 1)[0]:
                chunk = s.recv(65536)
                assert chunk, f"kvmm closed the connection after {buf!r}"
                buf += chunk
        msgs = [json.loads(l) for l in buf.split(b"\n") if l]
        assert "greeting" in msgs[0], msgs
        answer = [m for m in msgs if m.get("id") == 7]
        assert answer and answer[0]["return"]["name"] == "demo", msgs
    assert api.call("quit")["return"] == {}
    ev = api.wait_event("state-changed", state="shutdown")
    assert ev["data"]["reason"] == "quit"
    assert g.wait_exit() == 0
    assert not os.path.exists(sock), "control socket left behind"


def witness(vms):
    """A second guest ticking every 50 ms of its TSC clock: while another
    guest must stay silent, waiting for the witness's ticks is waiting for
    time in which a running guest would have printed, on the same busy
    host (a sleep would prove nothing on a host that starves both)."""
    w = start(vms, kvmm_argv("kvmmtest.action=wait kvmmtest.tick_ms=50", memory="64M"))
    w.wait_for(r"KVMMTEST tick")
    return w


def witness_ticks(w, n):
    w.wait_for(r"KVMMTEST tick", count=len(w.records("tick")) + n)


def test_pause_stops_the_guest_and_resume_continues(kvm, vms, tmp):
    sock = os.path.join(tmp, "api.sock")
    g = start(vms, kvmm_argv("kvmmtest.action=wait kvmmtest.tick_ms=50", extra=["--api-socket", sock]))
    w = witness(vms)
    g.wait_for(r"KVMMTEST tick", count=3)
    api = Api(sock)
    assert "return" in api.call("pause")
    assert api.wait_event("state-changed", state="paused")["data"]["reason"] == "user"
    assert api.call("query-status")["return"]["state"] == "paused"
    # The vCPUs are parked and their serial writes done before the event;
    # two witness ticks let this side read what is still in the pipe.
    witness_ticks(w, 2)
    before = (len(g.lines), g.partial)
    witness_ticks(w, 20)
    assert (len(g.lines), g.partial) == before, "guest kept running while paused"
    assert api.call("pause")["return"] == {}        # idempotent
    assert "return" in api.call("resume")
    api.wait_event("state-changed", state="running")
    g.wait_for(r"KVMMTEST tick", count=len(g.records("tick")) + 3)
    assert api.call("query-status")["return"]["state"] == "running"
    api.call("quit")
    assert g.wait_exit() == 0


def test_paused_start_waits_for_resume(kvm, vms, tmp):
    """--paused: the vCPUs wait before their first instruction; the guest
    prints nothing until resume, then boots from the start."""
    sock = os.path.join(tmp, "api.sock")
    g = start(vms, kvmm_argv("kvmmtest.action=wait", extra=["--api-socket", sock, "--paused"]))
    api = Api(sock)
    st = api.call("query-status")["return"]
    assert st["state"] == "paused"
    assert st["boots"] == 1
    w = witness(vms)
    witness_ticks(w, 20)
    assert g.lines == [] and g.partial == "", "guest ran while paused"
    assert g.proc.poll() is None
    assert api.call("pause")["return"] == {}        # already paused: idempotent
    assert api.call("resume")["return"] == {}
    assert api.wait_event("state-changed", state="running")["data"]["reason"] == "user"
    g.wait_for(r"KVMMTEST boot")
    assert g.records()[0][0] == "boot", g.lines[:3]
    # a reset afterwards runs at once: only the first boot waits
    assert "return" in api.call("reset")
    g.wait_for(r"KVMMTEST boot", count=2)
    assert api.call("query-status")["return"]["state"] == "running"
    api.call("quit")
    assert g.wait_exit() == 0


def test_paused_config_key(kvm, vms, tmp):
    sock = os.path.join(tmp, "api.sock")
    cfg = os.path.join(tmp, "vm.json")
    with open(cfg, "w") as f:
        json.dump({"kernel": GUEST, "cmdline": "kvmmtest.action=poweroff", "memory": "64M",
                   "serial": "stdio", "api_socket": sock, "paused": True}, f)
    g = start(vms, [KVMM, "--config", cfg])
    api = Api(sock)
    assert api.call("query-status")["return"]["state"] == "paused"
    assert api.call("resume")["return"] == {}
    assert g.wait_exit() == 0
    assert any("KVMMTEST boot" in l for l in g.lines)


def test_reset_from_the_control_socket_reboots(kvm, vms, tmp):
    sock = os.path.join(tmp, "api.sock")
    g = start(vms, kvmm_argv("kvmmtest.action=wait", extra=["--api-socket", sock]))
    g.wait_for(r"KVMMTEST tick")
    api = Api(sock)
    assert "return" in api.call("reset")
    api.wait_event("reset")
    g.wait_for(r"KVMMTEST boot", count=2)
    assert api.call("query-status")["return"]["boots"] == 2
    api.call("quit")
    assert g.wait_exit() == 0


def test_reboot_turns_the_guests_poweroff_into_a_reset(kvm, vms, tmp):
    """'reboot' presses the power button; the guest powers off, and kvmm
    boots it again instead of exiting (libvirt's ACPI reboot)."""
    sock = os.path.join(tmp, "api.sock")
    g = start(vms, kvmm_argv("kvmmtest.action=wait", extra=["--api-socket", sock]))
    g.wait_for(r"power-button armed")
    api = Api(sock)
    assert api.call("reboot")["return"] == {}
    g.wait_for(r"KVMMTEST action poweroff")
    api.wait_event("reset", timeout=30)
    g.wait_for(r"KVMMTEST boot", count=2)
    assert g.proc.poll() is None
    assert api.call("query-status")["return"]["boots"] == 2
    # only the next poweroff: the one after that ends kvmm as usual
    g.wait_for(r"power-button armed", count=2)
    assert api.call("power-button")["return"] == {}
    assert g.wait_exit(30) == 0


def test_sigterm_stops_cleanly_and_removes_the_socket(kvm, vms, tmp):
    sock = os.path.join(tmp, "api.sock")
    g = start(vms, kvmm_argv("kvmmtest.action=wait", extra=["--api-socket", sock]))
    g.wait_for(r"KVMMTEST tick")
    api = Api(sock)
    g.proc.send_signal(signal.SIGTERM)
    ev = api.wait_event("state-changed", state="shutdown")
    assert ev["data"]["reason"] == "signal"
    assert g.wait_exit() == 4
    assert not os.path.exists(sock)


def test_serial_to_file_appends(kvm, tmp):
    out = os.path.join(tmp, "console.log")
    with open(out, "w") as f:
        f.write("previous run\n")
    r = subprocess.run([KVMM, "--kernel", GUEST, "--memory", "128M", "--serial", f"file:{out}",
                        "--cmdline", "kvmmtest.action=poweroff"], capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    text = open(out).read()
    assert text.startswith("previous run\n")
    assert "KVMMTEST done" in text


def test_serial_none_runs_without_console(kvm, tmp):
    r = subprocess.run([KVMM, "--kernel", GUEST, "--memory", "128M", "--serial", "none",
                        "--cmdline", "kvmmtest.action=poweroff"], capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert b"KVMMTEST" not in r.stdout


def test_serial_unix_socket_carries_the_console(kvm, vms, tmp):
    path = os.path.join(tmp, "serial.sock")
    sock = os.path.join(tmp, "api.sock")
    g = start(vms, [KVMM, "--kernel", GUEST, "--memory", "128M", "--serial", f"unix:{path}",
                    "--api-socket", sock, "--cmdline", "kvmmtest.action=wait"])
    deadline = time.time() + 10
    while not os.path.exists(path) and time.time() < deadline:
        time.sleep(0.02)
    c = socket.socket(socket.AF_UNIX)
    c.connect(path)
    wait_record(stream(c), r"^KVMMTEST tick \d+$", "a tick on the serial socket", timeout=20)
    c.close()
    Api(sock).call("quit")
    assert g.wait_exit() == 0
    assert not os.path.exists(path), "serial socket left behind"


def test_serial_pty_prints_its_path_and_carries_input(kvm, vms, tmp):
    sock = os.path.join(tmp, "api.sock")
    # Paused until the client is on: a pty drops what nobody reads.
    g = start(vms, [KVMM, "--kernel", GUEST, "--memory", "128M", "--serial", "pty", "--paused",
                    "--api-socket", sock, "--cmdline", "kvmmtest.action=prompt"])
    deadline = time.time() + 10
    while b"serial console is on" not in g.stderr and time.time() < deadline:
        time.sleep(0.02)
    m = re.search(rb"serial console is on (/dev/pts/\d+)", g.stderr)
    assert m, g.stderr
    fd = os.open(m.group(1), os.O_RDWR | os.O_NOCTTY)
    try:
        assert "return" in Api(sock).call("resume")
        data = b""
        deadline = time.time() + 20
        while b"kvmm-testguest> " not in data and time.time() < deadline:
            if select.select([fd], [], [], 0.5)[0]:
                data += os.read(fd, 4096)
        assert b"kvmm-testguest> " in data, data
        os.write(fd, b"poweroff\r")
        assert g.wait_exit() == 0
    finally:
        os.close(fd)


def test_interactive_prompt_over_stdio(kvm, vms):
    g = start(vms, kvmm_argv("kvmmtest.action=prompt", cpus=2))
    g.wait_for(r"kvmm-testguest> $", partial=True)
    g.send(b"info\r")
    # the reply, not the boot records: the shell's own lines, after the
    # echo of what was typed
    echo = g.wait_line(r"^kvmm-testguest> info$")[1]
    m, at = g.wait_line(r"^cpus: madt=(\d+) online=(\d+)$")
    assert at > echo and m.groups() == ("2", "2"), g.lines[echo:]
    g.wait_for(r"^cmdline: kvmmtest\.action=prompt$")
    g.send(b"poweroff\r")
    assert g.wait_exit() == 0


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def test_guest_memory_is_mapped_lazily(kvm, vms, tmp):
    sock = os.path.join(tmp, "api.sock")
    g = start(vms, kvmm_argv("kvmmtest.action=wait", memory="4G", extra=["--api-socket", sock]))
    g.wait_for(r"KVMMTEST tick")
    rss = rss_kib(g.proc.pid)
    # A 4 GiB guest that touched only its own few pages must cost the
    # host tens of MiB at most, not gigabytes.
    assert rss < 64 * 1024, f"RSS {rss} KiB for a 4G guest that touched almost nothing"
    Api(sock).call("quit")
    g.wait_exit()


def guest_ram_vmflags(pid, size):
    """VmFlags of the mapping of SIZE bytes (the guest's RAM) in smaps."""
    flags, found = None, None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
                lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
                found = hi - lo == size
            elif found and line.startswith("VmFlags:"):
                flags = line.split()[1:]
    assert flags is not None, "no mapping of the guest's RAM"
    return flags


@pytest.mark.parametrize("thp", [True, False], ids=["default", "no-thp"])
def test_guest_ram_huge_pages_by_default(kvm, vms, tmp, thp):
    """Guest RAM asks for transparent huge pages (smaps "hg", MADV_HUGEPAGE)
    unless --no-thp; either way it is left out of core dumps ("dd")."""
    sock = os.path.join(tmp, "api.sock")
    extra = ["--api-socket", sock] + ([] if thp else ["--no-thp"])
    g = start(vms, kvmm_argv("kvmmtest.action=wait", memory="96M", extra=extra))
    g.wait_for(r"KVMMTEST tick")
    flags = guest_ram_vmflags(g.proc.pid, 96 << 20)
    assert ("hg" in flags) == thp, flags
    assert "dd" in flags, flags
    Api(sock).call("quit")
    assert g.wait_exit() == 0


def test_stdio_terminal_is_raw_and_ctrl_bracket_quits(kvm, tmp):
    """On a terminal, kvmm puts it in raw mode (keys go to the guest, not
    the line discipline), Ctrl-] quits with status 0, and the terminal's
    settings are restored."""
    import termios
    master, slave = pty.openpty()
    before = termios.tcgetattr(slave)
    p = subprocess.Popen([KVMM, "--kernel", GUEST, "--memory", "128M",
                          "--cmdline", "kvmmtest.action=prompt"],
                         stdin=slave, stdout=slave, stderr=subprocess.PIPE)
    try:
        data = b""
        deadline = time.time() + 20
        while b"kvmm-testguest> " not in data and time.time() < deadline:
            if select.select([master], [], [], 0.5)[0]:
                data += os.read(master, 4096)
        assert b"kvmm-testguest> " in data, data
        assert not termios.tcgetattr(slave)[3] & termios.ICANON, "terminal not in raw mode"
        os.write(master, b"\x1d")
        assert p.wait(20) == 0
        assert termios.tcgetattr(slave) == before, "terminal settings not restored"
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        os.close(master)
        os.close(slave)


def test_control_socket_survives_hostile_clients(kvm, vms, tmp):
    sock = os.path.join(tmp, "api.sock")
    g = start(vms, kvmm_argv("kvmmtest.action=wait", extra=["--api-socket", sock]))
    g.wait_for(r"KVMMTEST tick")
    # binary garbage, a request that is not an object, one without "execute"
    a = Api(sock)
    a.sock.sendall(b"\x00\xff\xfe garbage \x01\n[1,2,3]\n{\"id\": 7}\n")
    assert a._read_msg()["error"]["code"] == "ParseError"
    assert a._read_msg()["error"]["code"] == "ParseError"
    r = a._read_msg()
    assert r["error"]["code"] == "InvalidRequest" and r["id"] == 7
    # a line longer than any request: refused and dropped
    b = Api(sock)
    b.sock.sendall(b"x" * (70 * 1024))
    assert b._read_msg()["error"]["code"] == "ParseError"
    # clients that vanish mid-request, and more clients than kvmm serves
    for _ in range(5):
        c = socket.socket(socket.AF_UNIX)
        c.connect(sock)
        c.sendall(b'{"execute": "query-st')
        c.close()
    crowd = []
    for _ in range(20):
        c = socket.socket(socket.AF_UNIX)
        c.connect(sock)
        crowd.append(c)
    for c in crowd:
        c.close()
    # the VM and the first client are unharmed
    assert a.call("query-status")["return"]["state"] == "running"
    g.wait_for(r"KVMMTEST tick", count=len(g.records("tick")) + 1)
    a.call("quit")
    assert g.wait_exit() == 0


def tiny_bzimage(path, code):
    """A bzImage (boot protocol 2.15, 64-bit entry) whose 64-bit entry
    point runs `code` at CPL0 with kvmm's boot page tables."""
    import struct
    k = bytearray(1024)
    k[0x1f1] = 1                                    # setup_sects
    struct.pack_into("<H", k, 0x1fe, 0xAA55)
    k[0x200:0x202] = b"\xeb\x66"
    k[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", k, 0x206, 0x20F)
    k[0x211] = 1                                    # LOADED_HIGH
    struct.pack_into("<I", k, 0x22c, 0x7fffffff)
    struct.pack_into("<H", k, 0x236, 1)             # XLF_KERNEL_64
    struct.pack_into("<I", k, 0x238, 255)
    struct.pack_into("<I", k, 0x260, 0x10000)
    payload = bytearray(0x200) + code + bytes(512)
    with open(path, "wb") as f:
        f.write(k + payload)


def test_cpl0_fault_reports_rip_and_instruction(kvm, tmp):
    """int3 at CPL0 with no IDT: a KVM internal error on KVM-PVM (its
    emulator stops on int3), a triple fault elsewhere; either way exit 3
    and a message naming the vCPU, RIP and the instruction bytes."""
    path = os.path.join(tmp, "int3.bzImage")
    tiny_bzimage(path, b"\xcc\x90\x90\x90")
    r = subprocess.run([KVMM, "--kernel", path, "--memory", "32M", "--serial", "none"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 3, r.stderr
    assert re.search(r"kvmm: error: (KVM internal error|guest triple fault).* on vCPU 0: RIP 0x[0-9a-f]+", r.stderr), r.stderr
    if "internal error" in r.stderr:
        assert "RIP 0x100200" in r.stderr and "instruction bytes [cc 90 90 90" in r.stderr


def test_guest_port_writes_reach_the_serial_and_pm_devices(kvm, tmp):
    """The smallest guest: three bytes to COM1 and an S5 write to PM1a_CNT,
    executed at CPL0 through the 64-bit entry; kvmm prints them and exits 0."""
    path = os.path.join(tmp, "hi.bzImage")
    code = bytes([0x66, 0xba, 0xf8, 0x03,            # mov $0x3f8, %dx
                  0xb0, 0x48, 0xee, 0xb0, 0x69, 0xee, 0xb0, 0x0a, 0xee,
                  0x66, 0xba, 0x04, 0x06,            # mov $0x604, %dx
                  0x66, 0xb8, 0x00, 0x34, 0x66, 0xef,  # out (5 << 10) | SLP_EN
                  0xeb, 0xfe])
    tiny_bzimage(path, code)
    r = subprocess.run([KVMM, "--kernel", path, "--memory", "32M", "--serial", "stdio"],
                       capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"Hi\n"


def test_quit_right_after_reset_is_not_lost(kvm, vms, tmp):
    """Both requests reach the main loop in one batch: the stop must win
    over the pending reset."""
    sock = os.path.join(tmp, "api.sock")
    g = start(vms, kvmm_argv("kvmmtest.action=wait", extra=["--api-socket", sock]))
    g.wait_for(r"KVMMTEST tick")
    api = Api(sock)
    api.sock.sendall(b'{"id":1,"execute":"reset"}\n{"id":2,"execute":"quit"}\n')
    assert g.wait_exit(30) == 0


def test_status_names_the_serial_pty_and_socket(kvm, vms, tmp):
    """What a console client needs: the pty kvmm allocated (a terminal
    carrying the guest's output), or the socket it listens on."""
    sock = os.path.join(tmp, "api.sock")
    g = start(vms, kvmm_argv("kvmmtest.action=wait",
                             extra=["--api-socket", sock, "--serial", "pty", "--paused"]))
    api = Api(sock)
    st = api.call("query-status")["return"]
    assert st["serial"]["mode"] == "pty"
    fd = os.open(st["serial"]["path"], os.O_RDWR | os.O_NOCTTY)
    try:
        assert os.isatty(fd)
        assert "return" in api.call("resume")     # the guest's first line once we read
        wait_record(stream(fd), r"^KVMMTEST done pass=\d+ fail=0$", "the guest's checks on the pty")
    finally:
        os.close(fd)
    g.kill()

    sock2 = os.path.join(tmp, "api2.sock")
    serial = os.path.join(tmp, "serial.sock")
    start(vms, kvmm_argv("kvmmtest.action=wait",
                         extra=["--api-socket", sock2, "--serial", "unix:" + serial]))
    st = Api(sock2).call("query-status")["return"]
    assert st["serial"] == {"mode": "unix", "path": serial}
