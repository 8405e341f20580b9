"""virtkvmmd's connection-level calls, driven by the real Debian clients:
virsh and python3-libvirt against a private daemon (--root)."""
import os
import platform
import pwd
import re
import shutil
import signal
import socket
import stat
import struct
import subprocess
import tempfile
import time

import libvirt
import pytest

from drvtest import (OK, PROC_SUPPORTS_FEATURE, VIRTKVMMD, Daemon, Raw, package_version,
                     version_number, virsh, xdr_int)
from test_tls import pki, tls_daemon, tls_uri  # noqa: F401 (fixtures)

PROC_CONNECT_IS_SECURE = 149


def meminfo_kib():
    with open("/proc/meminfo") as f:
        return int(re.search(r"MemTotal:\s+(\d+) kB", f.read()).group(1))


def test_virsh_version(daemon):
    r = virsh(daemon.uri(), "version", "--daemon")
    assert r.returncode == 0, r.stderr
    assert "Using API: KVMM" in r.stdout
    assert f"Running hypervisor: KVMM {package_version()}" in r.stdout
    assert f"Running against daemon: {libvirt.getVersion() // 1000000}." in r.stdout


def test_virsh_hostname_and_uri(daemon):
    r = virsh(daemon.uri(), "hostname")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == socket.gethostname()
    r = virsh(daemon.uri(), "uri")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().startswith("kvmm:///system")


def test_virsh_list_all_is_empty(daemon):
    r = virsh(daemon.uri(), "list", "--all")
    assert r.returncode == 0, r.stderr
    lines = [l for l in r.stdout.splitlines() if l.strip()]
    assert lines[0].split() == ["Id", "Name", "State"]
    assert len(lines) == 2 and set(lines[1]) == {"-"}, r.stdout
    assert "call virConnectListAllDomains (273)" in daemon.output()


def test_virsh_nodeinfo_reports_this_host(daemon):
    r = virsh(daemon.uri(), "nodeinfo")
    assert r.returncode == 0, r.stderr
    info = dict(l.split(":", 1) for l in r.stdout.splitlines() if ":" in l)
    info = {k.strip(): v.strip() for k, v in info.items()}
    cpus = os.sysconf("SC_NPROCESSORS_ONLN")
    assert info["CPU model"] == platform.machine()
    assert int(info["CPU(s)"]) == cpus
    assert info["Memory size"] == f"{meminfo_kib()} KiB"
    product = 1
    for k in ("CPU socket(s)", "Core(s) per socket", "Thread(s) per core", "NUMA cell(s)"):
        assert int(info[k]) >= 1
        product *= int(info[k])
    assert product == cpus, info
    with open("/proc/cpuinfo") as f:
        m = re.search(r"cpu MHz\s*:\s*(\d+)", f.read())
    if m:
        assert info["CPU frequency"] == f"{m.group(1)} MHz"


def test_readonly_socket_lists_and_refuses_changes(daemon, tmp):
    assert stat.S_IMODE(os.stat(daemon.sock).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(daemon.sock_ro).st_mode) == 0o666
    r = virsh(daemon.uri(ro=True), "list", readonly=True)
    assert r.returncode == 0, r.stderr
    assert "Id   Name   State" in r.stdout
    assert "opened kvmm:///system read-only" in daemon.output()
    xml = os.path.join(tmp, "d.xml")
    with open(xml, "w") as f:
        f.write("<domain type='kvm'><name>x</name></domain>")
    for uri in (daemon.uri(ro=True), daemon.uri()):
        r = virsh(uri, "define", xml, readonly=True)
        assert r.returncode != 0
        assert "operation forbidden: read only access prevents virDomainDefineXML" in r.stderr
    # Without -r, the read-only socket still refuses: the socket decides.
    r = virsh(daemon.uri(ro=True), "define", xml)
    assert "operation forbidden: read only access prevents virDomainDefineXML" in r.stderr


def test_unsupported_commands_fail_cleanly(daemon, tmp):
    r = virsh(daemon.uri(), "node-memory-tune")
    assert r.returncode == 1
    assert "error: Unable to get number of memory parameters" in r.stderr
    assert ("this function is not supported by the connection driver: "
            "virNodeGetMemoryParameters") in r.stderr
    xml = os.path.join(tmp, "d.xml")
    with open(xml, "w") as f:
        f.write("<domain type='kvm'><name>x</name></domain>")
    # create is implemented now: this XML gets the parser's answer
    r = virsh(daemon.uri(), "create", xml)
    assert r.returncode == 1 and "Memory size must be specified" in r.stderr
    c = libvirt.open(daemon.uri())
    with pytest.raises(libvirt.libvirtError) as e:
        c.getMemoryParameters()
    assert e.value.get_error_code() == libvirt.VIR_ERR_NO_SUPPORT
    assert e.value.get_error_domain() == libvirt.VIR_FROM_DOMAIN
    assert c.getType() == "KVMM"        # the connection survives
    c.close()
    assert daemon.alive()


def test_other_uris_are_refused_like_libvirt(daemon):
    r = virsh(f"qemu:///system?socket={daemon.sock}", "list")
    assert r.returncode == 1
    assert "no connection driver available for qemu:///system" in r.stderr
    with pytest.raises(libvirt.libvirtError) as e:
        libvirt.open(f"qemu:///system?socket={daemon.sock}")
    assert e.value.get_error_code() == libvirt.VIR_ERR_NO_CONNECT
    r = virsh(f"kvmm:///elsewhere?socket={daemon.sock}", "list")
    assert r.returncode == 1
    assert "unexpected kvmm URI path '/elsewhere', try kvmm:///system" in r.stderr
    # Root's kvmm:///session lands on the system socket, as libvirt's
    # client sends it there; it is served.
    r = virsh(f"kvmm:///session?socket={daemon.sock}", "list")
    assert r.returncode == 0, r.stderr


def test_python_libvirt(daemon):
    c = libvirt.open(daemon.uri())
    try:
        assert c.getType() == "KVMM"
        assert c.getVersion() == version_number(package_version())
        assert c.getLibVersion() == libvirt.getVersion()
        assert c.getHostname() == socket.gethostname()
        assert c.listAllDomains() == []
        assert c.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE) == []
        # the legacy calls older clients use
        assert c.numOfDomains() == 0 and c.listDomainsID() == []
        assert c.numOfDefinedDomains() == 0 and c.listDefinedDomains() == []
        info = c.getInfo()
        assert info[0] == platform.machine()
        assert info[1] == meminfo_kib() // 1024
        assert info[2] == os.sysconf("SC_NPROCESSORS_ONLN")
        assert c.isAlive() == 1
        with pytest.raises(libvirt.libvirtError) as e:
            c.listAllDomains(1 << 20)
        assert e.value.get_error_code() == libvirt.VIR_ERR_INVALID_ARG
        assert "unsupported flags (0x100000)" in str(e.value)
    finally:
        c.close()
    ro = libvirt.openReadOnly(daemon.uri(ro=True))
    try:
        assert ro.getType() == "KVMM"
        assert ro.listAllDomains() == []
        with pytest.raises(libvirt.libvirtError) as e:
            ro.defineXML("<domain type='kvm'><name>x</name></domain>")
        assert e.value.get_error_code() == libvirt.VIR_ERR_OPERATION_DENIED
    finally:
        ro.close()
    assert daemon.alive()


def test_features_answered_truthfully(daemon):
    raw = Raw(daemon.sock).open()
    answers = {}
    for feature in (4, 6, 7, 8, 9, 10, 12, 13, 14, 15, 9999):
        r = raw.call(PROC_SUPPORTS_FEATURE, xdr_int(feature))
        answers[feature] = struct.unpack(">i", r[6])[0]
    # migration (p2p, v3, change protection, offline, parameters),
    # keepalive, event callbacks and the close callback; FD passing and
    # typed-parameter strings later
    assert answers == {4: 1, 6: 1, 7: 1, 8: 0, 9: 0, 10: 1, 12: 1, 13: 1, 14: 1, 15: 1, 9999: 0}
    raw.close()


def test_is_secure_and_is_encrypted_over_unix_sockets(daemon):
    """virConnectIsSecure and IsEncrypted both ask procedure 149; the
    client ANDs the daemon's answer with its transport's own: a local
    socket is secure, not encrypted -- as with libvirt's own daemons."""
    raw = Raw(daemon.sock).open()
    r = raw.call(PROC_CONNECT_IS_SECURE)
    assert r[5] == OK and struct.unpack(">i", r[6])[0] == 1
    raw.close()
    for c in (libvirt.open(daemon.uri()), libvirt.openReadOnly(daemon.uri(ro=True))):
        try:
            assert c.isSecure() == 1
            assert c.isEncrypted() == 0
        finally:
            c.close()


def test_is_secure_and_is_encrypted_over_tls(tls_daemon, pki):
    d, port = tls_daemon
    c = libvirt.open(tls_uri(port, pki["allowed"]))
    try:
        assert c.isSecure() == 1
        assert c.isEncrypted() == 1
    finally:
        c.close()


def test_sigterm_removes_sockets_and_pid_file(start_daemon):
    d = start_daemon()
    with open(d.pidfile) as f:
        assert int(f.read()) == d.proc.pid
    os.kill(d.proc.pid, signal.SIGTERM)
    assert d.proc.wait(10) == 0
    for p in (d.sock, d.sock_ro, d.pidfile):
        assert not os.path.exists(p), p


def test_second_daemon_refuses_and_first_keeps_serving(start_daemon):
    d = start_daemon()
    second = Daemon(d.root, extra=["--pid-file", os.path.join(d.root, "other.pid")])
    try:
        assert second.proc.wait(10) == 1
        assert "another daemon is already listening on " + d.sock in second.output()
    finally:
        second.stop()
    assert os.path.exists(d.sock)
    r = virsh(d.uri(), "list", "--all")
    assert r.returncode == 0, r.stderr


def test_same_pid_file_is_refused(start_daemon):
    d = start_daemon()
    other_root = tempfile.mkdtemp(prefix="kvd-")
    try:
        second = subprocess.run([VIRTKVMMD, "--root", other_root, "--pid-file", d.pidfile],
                                capture_output=True, text=True, timeout=10)
        assert second.returncode == 1
        assert "is locked by another virtkvmmd" in second.stderr
        with open(d.pidfile) as f:
            assert int(f.read()) == d.proc.pid
    finally:
        shutil.rmtree(other_root, ignore_errors=True)


def test_stale_socket_is_replaced(start_daemon):
    root = tempfile.mkdtemp(prefix="kvd-")
    rundir = os.path.join(root, "run", "libvirt")
    os.makedirs(rundir)
    for name in ("virtkvmmd-sock", "virtkvmmd-sock-ro"):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(os.path.join(rundir, name))      # left behind, nobody listening
        s.close()
    d = Daemon(root)
    try:
        d.wait_ready()
        assert "removing stale socket" in d.output()
        r = virsh(d.uri(), "list", "--all")
        assert r.returncode == 0, r.stderr
    finally:
        d.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_timeout_exits_when_idle(start_daemon):
    d = start_daemon(["--timeout", "1"])
    raw = Raw(d.sock)
    # Two daemons with the same timeout and no client, started after d
    # and one after the other: once both exited, d has gone through idle
    # checks for longer than its timeout while raw was connected.
    for _ in range(2):
        ref = start_daemon(["--timeout", "1"])
        assert ref.proc.wait(30) == 0, ref.output()
    assert d.alive(), "exited while a client was connected"
    raw.close()
    assert d.proc.wait(10) == 0
    assert "no clients for 1 seconds: exiting" in d.output()
    assert not os.path.exists(d.sock)


def test_session_daemon_for_an_unprivileged_user(tmp):
    """A non-root user gets kvmm:///session under $XDG_RUNTIME_DIR, with
    no read-only socket."""
    nobody = pwd.getpwnam("nobody")
    runtime = os.path.join(tmp, "xdg")
    os.mkdir(runtime, 0o700)
    os.chown(runtime, nobody.pw_uid, nobody.pw_gid)
    os.chmod(tmp, 0o755)
    # nobody may not be able to enter the checkout (a clone under a 0700
    # folder): it runs a copy from tmp, which it can.
    daemon = os.path.join(tmp, "virtkvmmd")
    shutil.copy(VIRTKVMMD, daemon)
    env = dict(os.environ, XDG_RUNTIME_DIR=runtime, HOME=runtime)
    proc = subprocess.Popen([daemon, "--timeout", "30"], env=env, user=nobody.pw_uid,
                            group=nobody.pw_gid, extra_groups=[], cwd=tmp,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    sock = os.path.join(runtime, "libvirt", "virtkvmmd-sock")
    try:
        deadline = time.monotonic() + 10
        while not os.path.exists(sock):
            assert proc.poll() is None, proc.stdout.read()
            assert time.monotonic() < deadline
            time.sleep(0.02)
        st = os.stat(sock)
        assert st.st_uid == nobody.pw_uid and stat.S_IMODE(st.st_mode) == 0o600
        run = lambda uri, *a: subprocess.run(["virsh", "-c", uri] + list(a), env=env,
                                             user=nobody.pw_uid, group=nobody.pw_gid,
                                             extra_groups=[], cwd=tmp, capture_output=True,
                                             text=True, timeout=30)
        r = run(f"kvmm:///session?socket={sock}", "uri")
        assert r.returncode == 0, r.stderr
        # The daemon answers once it listens on all its sockets: no -ro.
        assert not os.path.exists(sock + "-ro")
        r = run(f"kvmm:///session?socket={sock}", "list", "--all")
        assert r.returncode == 0, r.stderr
        r = run(f"kvmm:///system?socket={sock}", "list")
        assert "unexpected kvmm URI path '/system', try kvmm:///session" in r.stderr
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(10) == 0
    assert not os.path.exists(sock)
