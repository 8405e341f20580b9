"""virtio-console under QEMU and kvmm, driven by the test guest; kvmm's
console backends (unix socket, pty, stdio, file)."""
import json
import os
import re
import subprocess

import pytest

import kvmmtest
from virtiotest import (
    Console, RUNNERS, by_dev, finish, msix_delivered, read, connect, rng_survived_malformed)


def read_line(s):
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = s.recv(256)
        assert chunk, f"console closed after {buf!r}"
        buf += chunk
    return buf.decode()


def console_exchange(g, s, line=b"ping 42 from the host", echo=None):
    """The greeting, then line sent and its echo read back on socket s."""
    try:
        assert read_line(s) == "KVMMTEST-HVC hello from console0\n"
        g.wait_for(r"KVMMTEST event virtio-console-ready dev=console0")
        s.sendall(line + b"\n")
        assert read_line(s) == "echo: " + (echo or line.decode()) + "\n"
    finally:
        s.close()


@pytest.mark.parametrize("runner", RUNNERS)
def test_virtio_console_writes_and_echoes(kvm, vms, tmp, runner):
    path = os.path.join(tmp, "hvc0.sock")
    g = runner.start(vms, tmp, "kvmmtest.virtio=console kvmmtest.console0.echo=20",
                     [Console(path)])
    console_exchange(g, connect(path))
    finish(g)
    assert by_dev(g, "pass", "virtio-console-echo")["console0"]["line"] == "ping 42 from the host"
    msix_delivered(g, "console0")


@pytest.mark.parametrize("runner", RUNNERS)
def test_virtio_console_input_waits_for_guest_buffers(kvm, vms, tmp, runner):
    """A 1000-byte line is more than the guest's four 128-byte receive
    buffers: the rest must wait on the host until the guest posts them
    again, not be dropped (the newline at the end would be lost, and the
    guest, which keeps the first 120 characters, would never answer)."""
    path = os.path.join(tmp, "hvc0.sock")
    g = runner.start(vms, tmp, "kvmmtest.virtio=console kvmmtest.console0.echo=20",
                     [Console(path)])
    console_exchange(g, connect(path), line=b"L" * 1000, echo="L" * 120)
    finish(g)


@pytest.mark.parametrize("runner", RUNNERS)
@pytest.mark.parametrize("kind", ["head", "loop"])
def test_virtio_malformed_rng_chain_spares_the_console(kvm, vms, tmp, runner, kind):
    """A hostile chain on the rng's queue breaks the rng alone: the
    console beside it still greets and echoes."""
    path = os.path.join(tmp, "hvc0.sock")
    g = runner.start(vms, tmp, f"kvmmtest.virtio=rng,console kvmmtest.rng0.malformed={kind} "
                               "kvmmtest.console0.echo=20", ["rng", Console(path)])
    console_exchange(g, connect(path))
    finish(g)
    rng_survived_malformed(g, kind)


def test_kvmm_console_on_a_pty_named_by_status(kvm, vms, tmp):
    """--console pty: query-status says where the console is (as the
    daemon will need), and the pty carries both directions."""
    import jsonschema
    sock = os.path.join(tmp, "api.sock")
    g = kvmmtest.start(vms, kvmmtest.kvmm_argv(
        "kvmmtest.virtio=console kvmmtest.console0.echo=20", 1, "256M",
        ["--console", "pty", "--api-socket", sock, "--paused"]))
    api = kvmmtest.Api(sock)
    st = api.call("query-status")["return"]
    with open(os.path.join(kvmmtest.TOP, "schemas", "api.schema.json")) as f:
        schema = json.load(f)
    jsonschema.Draft202012Validator({"$schema": schema["$schema"], "$defs": schema["$defs"],
                                     "$ref": "#/$defs/status"}).validate(st)
    assert st["console"]["mode"] == "pty" and "serial" not in st
    fd = os.open(st["console"]["path"], os.O_RDWR | os.O_NOCTTY)
    assert os.isatty(fd)
    # Resumed once the pty is open: it drops what nobody reads.
    assert "return" in api.call("resume")
    console_exchange(g, PtyLines(fd))
    finish(g)


class PtyLines:
    """Just enough of a socket over a pty for console_exchange."""

    def __init__(self, fd):
        self.fd = fd

    def recv(self, n):
        import select
        assert select.select([self.fd], [], [], kvmmtest.Guest.WAIT)[0], "nothing on the pty"
        return os.read(self.fd, n)

    def sendall(self, data):
        os.write(self.fd, data)

    def close(self):
        os.close(self.fd)


def test_kvmm_console_on_stdio(kvm, tmp):
    """--console stdio (the serial port elsewhere): the greeting on kvmm's
    stdout, a line on its stdin echoed back."""
    import select
    log = os.path.join(tmp, "serial.log")
    argv = kvmmtest.kvmm_argv("kvmmtest.virtio=console kvmmtest.console0.echo=20", 1, "256M",
                              ["--serial", f"file:{log}", "--console", "stdio"])
    p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    try:
        def line():
            assert select.select([p.stdout], [], [], 20)[0], "nothing on stdout"
            return p.stdout.readline()
        assert line() == b"KVMMTEST-HVC hello from console0\n"
        p.stdin.write(b"via stdio\n")
        p.stdin.flush()
        assert line() == b"echo: via stdio\n"
        assert p.wait(60) == 0, p.stderr.read()
    finally:
        p.kill()
        p.wait()
    assert re.search(r"KVMMTEST done pass=\d+ fail=0", read(log).decode())


def test_kvmm_console_survives_a_reset(kvm, vms, tmp):
    """A VM reset resets the console with the machine: the rebooted
    guest greets again on the same client connection."""
    path, sock = os.path.join(tmp, "hvc0.sock"), os.path.join(tmp, "api.sock")
    g = kvmmtest.start(vms, kvmmtest.kvmm_argv(
        "kvmmtest.virtio=console kvmmtest.action=wait", 1, "256M",
        ["--console", f"unix:{path}", "--api-socket", sock]))
    s = connect(path)
    try:
        assert read_line(s) == "KVMMTEST-HVC hello from console0\n"
        api = kvmmtest.Api(sock)
        assert "return" in api.call("reset")
        assert read_line(s) == "KVMMTEST-HVC hello from console0\n"
        assert "return" in api.call("quit")
    finally:
        s.close()
    assert g.wait_exit() == 0


def test_kvmm_console_to_a_file(kvm, vms, tmp):
    """--console file:PATH takes the guest's output (no input)."""
    path = os.path.join(tmp, "hvc0.log")
    g = kvmmtest.start(vms, kvmmtest.kvmm_argv("kvmmtest.virtio=console", 1, "256M",
                                               ["--console", f"file:{path}"]))
    finish(g)
    assert read(path) == b"KVMMTEST-HVC hello from console0\n"
