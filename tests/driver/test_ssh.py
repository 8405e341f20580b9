"""Remote access over ssh: virsh -c kvmm+ssh://root@127.0.0.1:PORT/system
through an sshd this test starts (its own config, host key and
authorized_keys), which runs libvirt's virt-ssh-helper on the "remote"
side.  The helper finds virtkvmmd by the socket name libvirt derives from
the URI's driver (/run/libvirt/virtkvmmd-sock): sshd runs in a private
mount namespace whose /run/libvirt is the test daemon's, so nothing on
the host is touched (nc is not installed here: only the helper can have
carried these connections).  And the documented route for a host without
the helper: proxy=netcat with socket= (a stand-in for nc -U)."""
import os
import shutil
import signal
import socket
import subprocess
import time

import libvirt
import pytest

from drvtest import virsh
from test_console import pty_guest_xml

SSHD = "/usr/sbin/sshd"

pytestmark = pytest.mark.skipif(not os.path.exists(SSHD) or os.geteuid() != 0,
                                reason="needs openssh-server's sshd and root")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Sshd:
    """sshd on a loopback port in a mount namespace of its own whose
    /run/libvirt is run_libvirt (a daemon's --root run directory)."""

    def __init__(self, tmp, run_libvirt):
        self.dir = os.path.join(tmp, "ssh")
        os.makedirs(self.dir)
        self.hostkey = os.path.join(self.dir, "hostkey")
        self.userkey = os.path.join(self.dir, "userkey")
        for k in (self.hostkey, self.userkey):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", k], check=True)
        shutil.copy(self.userkey + ".pub", os.path.join(self.dir, "authorized_keys"))
        self.port = free_port()
        conf = os.path.join(self.dir, "sshd_config")
        with open(conf, "w") as f:
            f.write(f"""Port {self.port}
ListenAddress 127.0.0.1
HostKey {self.hostkey}
AuthorizedKeysFile {self.dir}/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PidFile none
""")
        self.log = os.path.join(self.dir, "sshd.log")
        # A private /run: sshd wants /run/sshd, the helper /run/libvirt.
        script = (f"mount --make-rprivate / && mount -t tmpfs tmpfs /run && "
                  f"mkdir -p /run/sshd /run/libvirt && mount --bind {run_libvirt} /run/libvirt && "
                  f"exec {SSHD} -D -e -f {conf}")
        self.proc = subprocess.Popen(["unshare", "-m", "sh", "-c", script],
                                     stdout=open(self.log, "wb"), stderr=subprocess.STDOUT)
        # ssh writes the host key here, not to the user's ~/.ssh.
        self.ssh = os.path.join(self.dir, "ssh-wrapper")
        with open(self.ssh, "w") as f:
            f.write(f"""#!/bin/sh
exec ssh -o UserKnownHostsFile={self.dir}/known_hosts -o BatchMode=yes "$@"
""")
        os.chmod(self.ssh, 0o755)
        deadline = time.monotonic() + 10
        while True:
            assert self.proc.poll() is None, self.output()
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, self.output()
                time.sleep(0.05)

    def uri(self, extra=""):
        return (f"kvmm+ssh://root@127.0.0.1:{self.port}/system?keyfile={self.userkey}"
                f"&no_verify=1&command={self.ssh}{extra}")

    def output(self):
        with open(self.log, "rb") as f:
            return f.read().decode(errors="replace")

    def stop(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


@pytest.fixture
def sshd_for(tmp):
    started = []

    def start(d):
        s = Sshd(tmp, d.rundir)
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()


def test_virsh_over_ssh_with_virt_ssh_helper(daemon, sshd_for):
    d = daemon
    libvirt.open(d.uri()).defineXML(pty_guest_xml("viassh"))
    s = sshd_for(d)
    r = virsh(s.uri(), "list", "--all")
    assert r.returncode == 0, r.stderr + s.output() + d.output()
    assert "viassh" in r.stdout and "shut off" in r.stdout, r.stdout
    assert "Accepted publickey for root" in s.output()
    r = virsh(s.uri(), "desc", "viassh", "--new-desc", "set over ssh")
    assert r.returncode == 0, r.stderr
    assert "set over ssh" in virsh(d.uri(), "desc", "viassh").stdout


def test_python_over_ssh_read_only(daemon, sshd_for):
    d = daemon
    s = sshd_for(d)
    conn = libvirt.openReadOnly(s.uri())
    assert conn.getType() and conn.listAllDomains() == []
    with pytest.raises(libvirt.libvirtError) as e:
        conn.defineXML(pty_guest_xml("ro"))
    assert e.value.get_error_code() == libvirt.VIR_ERR_OPERATION_DENIED
    conn.close()
    rw = libvirt.open(s.uri())
    rw.defineXML(pty_guest_xml("rw"))
    assert [x.name() for x in rw.listAllDomains()] == ["rw"]
    rw.close()


# A stand-in for `nc -U PATH` (no netcat is installed here): what
# libvirt's netcat mode runs on the remote side.
NC = """#!/usr/bin/python3
import os, selectors, socket, sys
if "-U" not in sys.argv:
    sys.exit("usage: nc -U PATH")
path = sys.argv[sys.argv.index("-U") + 1]
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(path)
except OSError as e:
    sys.exit(f"nc: {path}: {e.strerror}")
sel = selectors.DefaultSelector()
sel.register(0, selectors.EVENT_READ)
sel.register(s, selectors.EVENT_READ)
while True:
    for key, _ in sel.select():
        if key.fileobj == 0:
            data = os.read(0, 65536)
            if not data:
                s.shutdown(socket.SHUT_WR)
                sel.unregister(0)
            else:
                s.sendall(data)
        else:
            data = s.recv(65536)
            if not data:
                sys.exit(0)
            os.write(1, data)
"""


def test_socket_parameter_with_netcat(daemon, sshd_for):
    """The documented route where the remote host has no virt-ssh-helper:
    proxy=netcat and socket= naming virtkvmmd's socket."""
    d = daemon
    libvirt.open(d.uri()).defineXML(pty_guest_xml("vianc"))
    s = sshd_for(d)
    nc = os.path.join(s.dir, "nc")
    with open(nc, "w") as f:
        f.write(NC)
    os.chmod(nc, 0o755)
    # Without socket=, netcat goes to libvirt's own socket: nothing there.
    r = virsh(s.uri(f"&proxy=netcat&netcat={nc}"), "list", "--all")
    assert r.returncode != 0, r.stdout
    assert "nc: /var/run/libvirt/libvirt-sock: No such file" in r.stderr, r.stderr
    r = virsh(s.uri(f"&proxy=netcat&netcat={nc}&socket={d.sock}"), "list", "--all")
    assert r.returncode == 0, r.stderr + s.output()
    assert "vianc" in r.stdout, r.stdout
