"""Installing kvmm: `make install` (DESTDIR and prefix honoured) and
`make uninstall`, the installed daemon running the installed kvmm, the
systemd units through `systemd-analyze verify`, the man pages through
man(1), and socket activation the way systemd does it (inherited
listening sockets, LISTEN_FDS, an idle exit with the sockets kept)."""
import grp
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time

import pytest

import drvtest
from drvtest import VIRTKVMMD, Daemon, virsh
from kvmmtest import BUILD, GUEST

SRC = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SYSTEM_UNITS = ["virtkvmmd.service", "virtkvmmd.socket", "virtkvmmd-ro.socket",
                "virtkvmmd-tls.socket"]
USER_UNITS = ["virtkvmmd.service", "virtkvmmd.socket"]


def plain(text):
    """man's output without its overstrike (bold, underline)."""
    return re.sub(".\x08", "", text)


def run(argv, **kw):
    r = subprocess.run(argv, capture_output=True, text=True, **kw)
    assert r.returncode == 0, f"{argv} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
    return r


def expected_files(prefix, sysconfdir):
    """Every file `make install` puts in place, with its mode, by path."""
    files = {
        f"{prefix}/bin/kvmm": 0o755,
        f"{prefix}/sbin/virtkvmmd": 0o755,
        f"{sysconfdir}/libvirt/virtkvmmd.conf": 0o644,
        f"{prefix}/share/man/man1/kvmm.1": 0o644,
        f"{prefix}/share/man/man8/virtkvmmd.8": 0o644,
    }
    # Every schema of the tree, so a new one missing from the install
    # rules is found here.
    for name in os.listdir(os.path.join(SRC, "schemas")):
        files[f"{prefix}/share/kvmm/schemas/{name}"] = 0o644
    for u in SYSTEM_UNITS:
        files[f"{prefix}/lib/systemd/system/{u}"] = 0o644
    for u in USER_UNITS:
        files[f"{prefix}/lib/systemd/user/{u}"] = 0o644
    return files


def files_under(top):
    found = {}
    for d, _, names in os.walk(top):
        for n in names:
            p = os.path.join(d, n)
            found[p[len(top):]] = stat.S_IMODE(os.lstat(p).st_mode)
    return found


@pytest.fixture(scope="module")
def installed():
    """The tree as `make distdir` ships it, configured with a prefix of
    its own in a temporary directory, built and installed there (so the
    installed daemon's KVMM_PATH is real), and installed once more with
    DESTDIR.  Removed afterwards."""
    top = tempfile.mkdtemp(prefix="kvi-")
    try:
        src = os.path.join(top, "src")
        prefix = os.path.join(top, "usr")
        sysconfdir = os.path.join(top, "etc")
        run(["make", "-C", BUILD, "distdir", f"distdir={src}"])
        run(["./configure", "-q", f"--prefix={prefix}", f"--sysconfdir={sysconfdir}"], cwd=src)
        run(["make", "-j2"], cwd=src)
        run(["make", "install"], cwd=src)
        run(["make", "install", f"DESTDIR={top}/dest"], cwd=src)
        yield {"top": top, "src": src, "prefix": prefix, "sysconfdir": sysconfdir,
               "dest": os.path.join(top, "dest")}
    finally:
        shutil.rmtree(top, ignore_errors=True)


def test_make_install_with_destdir_puts_every_file_in_place(installed):
    want = expected_files(installed["prefix"], installed["sysconfdir"])
    # DESTDIR is prepended to the configured paths and nothing else.
    got = files_under(installed["dest"])
    assert got == want
    # The prefix install (no DESTDIR) holds the same files.
    got = {}
    for d in (installed["prefix"], installed["sysconfdir"]):
        got.update({d + p: m for p, m in files_under(d).items()})
    assert got == want
    # Installed files are the tree's: schemas byte for byte, the
    # configuration file as shipped.
    for name in os.listdir(os.path.join(SRC, "schemas")):
        with open(os.path.join(SRC, "schemas", name), "rb") as a, \
                open(f"{installed['prefix']}/share/kvmm/schemas/{name}", "rb") as b:
            assert a.read() == b.read(), name


def test_make_uninstall_removes_every_file(installed):
    dest = os.path.join(installed["top"], "dest2")
    run(["make", "install", f"DESTDIR={dest}"], cwd=installed["src"])
    assert files_under(dest)
    run(["make", "uninstall", f"DESTDIR={dest}"], cwd=installed["src"])
    assert files_under(dest) == {}


def test_installed_files_name_the_configured_paths(installed):
    p, etc = installed["prefix"], installed["sysconfdir"]
    with open(f"{p}/lib/systemd/system/virtkvmmd.service") as f:
        unit = f.read()
    assert f"ExecStart={p}/sbin/virtkvmmd $VIRTKVMMD_ARGS" in unit
    assert 'Environment=VIRTKVMMD_ARGS="--timeout 120"' in unit
    assert "KillMode=process" in unit      # guests outlive the daemon
    with open(f"{p}/lib/systemd/user/virtkvmmd.service") as f:
        assert f"ExecStart={p}/sbin/virtkvmmd $VIRTKVMMD_ARGS" in f.read()
    # The sockets are where libvirt's client looks, whatever the prefix.
    with open(f"{p}/lib/systemd/system/virtkvmmd.socket") as f:
        assert "ListenStream=/run/libvirt/virtkvmmd-sock\n" in f.read()
    with open(f"{p}/lib/systemd/system/virtkvmmd-ro.socket") as f:
        assert "ListenStream=/run/libvirt/virtkvmmd-sock-ro\n" in f.read()
    with open(f"{p}/lib/systemd/user/virtkvmmd.socket") as f:
        assert "ListenStream=%t/libvirt/virtkvmmd-sock\n" in f.read()
    with open(f"{p}/share/man/man8/virtkvmmd.8") as f:
        man = f.read()
    assert f"{etc}/libvirt/virtkvmmd.conf" in man and f"{p}/share/kvmm/schemas/" in man
    # The daemon reads its configuration where it was installed.
    r = run([f"{p}/sbin/virtkvmmd", "--help"])
    assert f"(default: {etc}/libvirt/virtkvmmd.conf," in r.stdout


def test_systemd_analyze_verifies_the_units(installed, tmp):
    """verify checks the units' keys, that ExecStart= is an executable and
    that each Documentation=man: page is found; it only warns about an
    unknown key, so any output is a failure."""
    p = installed["prefix"]
    env = dict(os.environ, MANPATH=f"{p}/share/man", XDG_RUNTIME_DIR=tmp, LC_ALL="C")
    os.chmod(tmp, 0o700)
    r = subprocess.run(["systemd-analyze", "verify"] +
                       [f"{p}/lib/systemd/system/{u}" for u in SYSTEM_UNITS],
                       capture_output=True, text=True, env=env)
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
    r = subprocess.run(["systemd-analyze", "--user", "verify"] +
                       [f"{p}/lib/systemd/user/{u}" for u in USER_UNITS],
                       capture_output=True, text=True, env=env)
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
    # and it does complain about a wrong unit
    with open(f"{p}/lib/systemd/system/virtkvmmd.service") as f:
        bad = f.read().replace("KillMode=process", "KillMode=procesz")
    os.makedirs(os.path.join(tmp, "bad"))
    for u in SYSTEM_UNITS[1:]:
        shutil.copy(f"{p}/lib/systemd/system/{u}", os.path.join(tmp, "bad", u))
    with open(os.path.join(tmp, "bad", "virtkvmmd.service"), "w") as f:
        f.write(bad)
    r = subprocess.run(["systemd-analyze", "verify", os.path.join(tmp, "bad", "virtkvmmd.service")],
                       capture_output=True, text=True, env=env)
    assert "procesz" in r.stderr


@pytest.mark.parametrize("page", ["man1/kvmm.1", "man8/virtkvmmd.8"])
def test_man_pages_render_without_warnings(installed, page):
    path = f"{installed['prefix']}/share/man/{page}"
    r = subprocess.run(["man", "--warnings", "-l", path], capture_output=True, text=True,
                       env=dict(os.environ, MANWIDTH="80", LC_ALL="C.UTF-8", MAN_KEEP_FORMATTING="0"))
    assert r.returncode == 0 and r.stderr == "", r.stderr
    text = plain(r.stdout)
    for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "EXIT STATUS", "SEE ALSO"):
        assert f"\n{section}\n" in text, section
    assert not re.search(r"@[a-zA-Z_]+@", text)
    assert max(len(l) for l in text.splitlines()) <= 80


def test_man_pages_list_every_option(installed):
    """Each option --help shows is in its man page."""
    p = installed["prefix"]
    for prog, page in ((f"{p}/bin/kvmm", "man1/kvmm.1"), (f"{p}/sbin/virtkvmmd", "man8/virtkvmmd.8")):
        helptext = subprocess.run([prog, "--help"], capture_output=True, text=True).stdout
        opts = set(re.findall(r"(?<![\w/-])--[a-z][a-z-]*[a-z]", helptext)) - {"--help-all"}
        assert len(opts) > 5, helptext
        rendered = plain(subprocess.run(["man", "-l", f"{p}/share/man/{page}"], capture_output=True,
                                        text=True, env=dict(os.environ, MANWIDTH="200",
                                                            LC_ALL="C")).stdout)
        missing = [o for o in sorted(opts) if o not in rendered]
        assert not missing, f"{page} lacks {missing}"


def uncommented_conf(installed):
    """The installed virtkvmmd.conf with every key uncommented (the group:
    ours, as a name that exists here)."""
    with open(f"{installed['sysconfdir']}/libvirt/virtkvmmd.conf") as f:
        lines = f.read().splitlines()
    keys, out = [], []
    for line in lines:
        if line.startswith("#") and " = " in line and not line.startswith("# "):
            key = line[1:].split(" = ")[0]
            keys.append(key)
            if key == "unix_sock_group":
                line = f'#unix_sock_group = "{grp.getgrgid(os.getgid()).gr_name}"'
            line = line[1:]
        out.append(line)
    return keys, "\n".join(out) + "\n"


@pytest.fixture
def start_daemon():
    """start_daemon(root=None, **kw): a Daemon (drvtest), stopped by PID
    and its root removed at the end."""
    started = []

    def start(root=None, **kw):
        d = Daemon(root or tempfile.mkdtemp(prefix="kvd-"), **kw)
        started.append(d)
        d.wait_ready()
        return d
    yield start
    for d in started:
        d.stop()
        shutil.rmtree(d.root, ignore_errors=True)


def test_installed_conf_documents_the_daemons_keys(installed, start_daemon, monkeypatch):
    """Every key of the installed file, uncommented, is one the installed
    daemon accepts, at the value it says is the default."""
    keys, text = uncommented_conf(installed)
    assert keys == ["unix_sock_group", "unix_sock_ro_perms", "unix_sock_rw_perms", "log_level",
                    "max_clients", "max_workers", "keepalive_interval", "keepalive_count",
                    "monitor_timeout", "hypervisor_version", "sandbox", "user", "group", "pvm_compat",
                    "listen_tls", "tls_port",
                    "listen_addr", "key_file", "cert_file", "ca_file", "crl_file",
                    "tls_no_verify_certificate", "tls_allowed_dn_list", "tls_priority",
                    "migrate_tls_x509_cert_dir", "migrate_tls_x509_verify", "migrate_tls_force"]
    # The sandbox is on by default, as the install's own account.
    for line in ("sandbox = 1", 'user = "kvmm"', 'group = "kvmm"'):
        assert f"\n{line}\n" in text, line
    monkeypatch.setattr(drvtest, "VIRTKVMMD", f"{installed['prefix']}/sbin/virtkvmmd")
    root = tempfile.mkdtemp(prefix="kvd-")
    os.makedirs(os.path.join(root, "etc", "libvirt"))
    with open(os.path.join(root, "etc", "libvirt", "virtkvmmd.conf"), "w") as f:
        f.write(text)
    d = start_daemon(root=root, verbose=False)
    assert stat.S_IMODE(os.stat(d.sock).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(d.sock_ro).st_mode) == 0o666
    r = virsh(d.uri(), "version", "--daemon")
    assert r.returncode == 0 and "Running hypervisor: KVMM 4.2.0" in r.stdout, r.stdout + r.stderr


def test_installed_daemon_runs_the_installed_kvmm(installed, start_daemon, monkeypatch, kvm):
    p = installed["prefix"]
    monkeypatch.setattr(drvtest, "VIRTKVMMD", f"{p}/sbin/virtkvmmd")
    d = start_daemon()
    caps = virsh(d.uri(), "capabilities").stdout
    assert f"<emulator>{p}/bin/kvmm</emulator>" in caps
    xml = os.path.join(d.root, "g.xml")
    with open(xml, "w") as f:
        f.write(f"""<domain type='kvm'><name>g</name><memory unit='MiB'>128</memory><vcpu>1</vcpu>
  <os><type>hvm</type><kernel>{GUEST}</kernel><cmdline>kvmmtest.action=wait</cmdline></os>
  <devices><serial type='file'><source path='{d.root}/serial.log'/></serial></devices>
</domain>""")
    assert virsh(d.uri(), "define", xml).returncode == 0
    r = virsh(d.uri(), "start", "g")
    assert r.returncode == 0, r.stderr + d.output()
    deadline = time.monotonic() + 30
    while "KVMMTEST done" not in open(os.path.join(d.root, "serial.log")).read():
        assert time.monotonic() < deadline, "the guest never finished its checks"
        time.sleep(0.05)
    (pid,) = d.guests()
    assert os.readlink(f"/proc/{pid}/exe") == f"{p}/bin/kvmm"
    # Confined by default, as the system account the install makes.
    with open(f"/proc/{pid}/status") as f:
        st = dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)
    assert st["Uid"].split() == [str(pwd.getpwnam("kvmm").pw_uid)] * 4, st["Uid"]
    assert st["Gid"].split() == [str(grp.getgrnam("kvmm").gr_gid)] * 4, st["Gid"]
    assert st["Seccomp"] == "2" and int(st["CapEff"], 16) == 0, st
    assert virsh(d.uri(), "destroy", "g").returncode == 0


# --- socket activation ------------------------------------------------------

def listening(path, mode):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    os.chmod(path, mode)
    s.listen(16)
    return s


# Run in the child: the sockets onto fds 3.., LISTEN_PID its own pid
# (the exec keeps it), as systemd's service manager does.
ACTIVATE = """
import os, sys
fds = [int(x) for x in sys.argv[1].split(",") if x]
high = [os.dup(fd) for fd in fds]
for i, fd in enumerate(high):
    if fd != 3 + i:
        os.dup2(fd, 3 + i)
    os.set_inheritable(3 + i, True)
os.environ["LISTEN_PID"] = str(os.getpid())
os.execv(sys.argv[2], sys.argv[2:])
"""


def activate(argv, socks, names=None, env_extra=None, log=None):
    env = dict(os.environ, LISTEN_FDS=str(len(socks)))
    if names is not None:
        env["LISTEN_FDNAMES"] = ":".join(names)
    env.update(env_extra or {})
    fds = [s.fileno() for s in socks]
    return subprocess.Popen([sys.executable, "-c", ACTIVATE, ",".join(map(str, fds))] + argv,
                            pass_fds=fds, env=env, stdout=log, stderr=subprocess.STDOUT)


def backlog(path):
    """Connections waiting to be accepted on the listening socket path."""
    r = run(["ss", "-xlnH", "src", path])
    fields = r.stdout.split()
    assert fields, f"nothing listens on {path}"
    return int(fields[2])


def output(path):
    with open(path, errors="replace") as f:
        return f.read()


@pytest.fixture
def activation_root():
    root = tempfile.mkdtemp(prefix="kva-")
    rundir = os.path.join(root, "run", "libvirt")
    os.makedirs(rundir)
    procs = []
    yield root, rundir, procs
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()
    shutil.rmtree(root, ignore_errors=True)


def test_socket_activation_idle_exit_and_restart(activation_root):
    """The daemon serves the sockets it inherits, leaves their modes and
    files alone, tells NOTIFY_SOCKET it is ready, exits when idle; a
    client that connects meanwhile waits in the socket's backlog and is
    served by the next daemon started on the same sockets."""
    root, rundir, procs = activation_root
    sock, sock_ro = os.path.join(rundir, "virtkvmmd-sock"), os.path.join(rundir, "virtkvmmd-sock-ro")
    rw, ro = listening(sock, 0o640), listening(sock_ro, 0o644)
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(os.path.join(root, "notify"))
    notify.settimeout(30)
    logpath = os.path.join(root, "log")
    argv = [VIRTKVMMD, "--root", root, "--verbose", "--timeout", "1"]
    with open(logpath, "wb") as log:
        d = activate(argv, [rw, ro], ["virtkvmmd.socket", "virtkvmmd-ro.socket"],
                     {"NOTIFY_SOCKET": os.path.join(root, "notify")}, log)
        procs.append(d)
        try:
            ready = notify.recv(64)
        except TimeoutError:
            ready = output(logpath)
        assert ready == b"READY=1", ready
        uri = f"kvmm:///system?socket={sock}"
        r = virsh(uri, "list", "--all")
        assert r.returncode == 0, r.stderr + output(logpath)
        r = virsh(f"kvmm:///system?socket={sock_ro}", "define", "/dev/null", readonly=True)
        assert r.returncode != 0 and "read only" in r.stderr.lower(), r.stderr
        out = output(logpath)
        assert f"listening on {sock} (from systemd)" in out
        assert f"listening on {sock_ro} (read-only) (from systemd)" in out
        # not the configured 0600/0666: the unit's modes stand
        assert stat.S_IMODE(os.stat(sock).st_mode) == 0o640
        assert stat.S_IMODE(os.stat(sock_ro).st_mode) == 0o644
        assert d.wait(30) == 0, output(logpath)
        assert "no clients for 1 seconds: exiting" in output(logpath)
        assert os.path.exists(sock) and os.path.exists(sock_ro)

        # A client while no daemon runs: queued by the kernel, not refused.
        waiting = subprocess.Popen(["virsh", "-c", uri, "uri"], stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
        procs.append(waiting)
        # virsh's connection waits in the listening socket's backlog (ss
        # shows it as the listener's Recv-Q) until a daemon accepts it.
        deadline = time.monotonic() + 30
        while backlog(sock) < 1:
            assert waiting.poll() is None, waiting.communicate()
            assert time.monotonic() < deadline, "virsh never connected"
            time.sleep(0.05)
        d2 = activate(argv[:-2], [rw, ro], ["virtkvmmd.socket", "virtkvmmd-ro.socket"], log=log)
        procs.append(d2)
        out_, err_ = waiting.communicate(timeout=30)
        assert waiting.returncode == 0 and out_.strip() == uri, err_
        os.kill(d2.pid, signal.SIGTERM)
        assert d2.wait(30) == 0
    # SIGTERM too leaves systemd's sockets in place
    assert os.path.exists(sock) and os.path.exists(sock_ro)
    rw.close()
    ro.close()


def test_socket_activation_with_systemd_socket_activate(activation_root):
    """systemd's own tool (it listens, then execs the daemon on the first
    connection); without names the socket files tell which is which, and
    a socket not passed (here the read-only one) is created as usual."""
    root, rundir, procs = activation_root
    sock = os.path.join(rundir, "virtkvmmd-sock")
    logpath = os.path.join(root, "log")
    with open(logpath, "wb") as log:
        d = subprocess.Popen(["systemd-socket-activate", "-l", sock,
                              VIRTKVMMD, "--root", root, "--verbose"],
                             stdout=log, stderr=subprocess.STDOUT)
        procs.append(d)
        deadline = time.monotonic() + 30
        while not os.path.exists(sock):
            assert d.poll() is None and time.monotonic() < deadline, output(logpath)
            time.sleep(0.05)
        r = virsh(f"kvmm:///system?socket={sock}", "list", "--all")
        assert r.returncode == 0, r.stderr + output(logpath)
        out = output(logpath)
        assert f"listening on {sock} (from systemd)" in out
        assert f"listening on {sock}-ro (read-only)\n" in out
        r = virsh(f"kvmm:///system?socket={sock}-ro", "list", readonly=True)
        assert r.returncode == 0, r.stderr
        os.kill(d.pid, signal.SIGTERM)
        assert d.wait(30) == 0
    # its own socket removed, systemd's kept
    assert os.path.exists(sock) and not os.path.exists(sock + "-ro")


@pytest.mark.parametrize("case", ["pipe", "name", "count", "session-ro"])
def test_socket_activation_refusals(activation_root, case):
    root, rundir, procs = activation_root
    sock = listening(os.path.join(rundir, "virtkvmmd-sock"), 0o600)
    logpath = os.path.join(root, "log")
    user = None
    names = ["virtkvmmd.socket"]
    socks = [sock]
    if case == "pipe":
        r, w = os.pipe()
        os.close(w)
        socks = [os.fdopen(r)]
        want = "fd 3 (virtkvmmd.socket) from systemd is not a listening UNIX stream socket"
    elif case == "name":
        names = ["libvirtd.socket"]
        want = "neither virtkvmmd.socket nor virtkvmmd-ro.socket"
    elif case == "count":
        names = ["virtkvmmd.socket", "virtkvmmd-ro.socket"]
        want = "LISTEN_FDNAMES=virtkvmmd.socket:virtkvmmd-ro.socket names 2 sockets, LISTEN_FDS=1"
    else:
        ro = listening(os.path.join(rundir, "virtkvmmd-sock-ro"), 0o666)
        socks, names = [sock, ro], ["virtkvmmd.socket", "virtkvmmd-ro.socket"]
        nobody = pwd.getpwnam("nobody")
        for d, _, names_ in os.walk(root):
            os.chown(d, nobody.pw_uid, nobody.pw_gid)
        user = "nobody"
        want = "a session daemon has no read-only socket, but systemd passed"
    argv = [VIRTKVMMD, "--root", root]
    if user:
        argv = [shutil.which("setpriv"), "--reuid=nobody", "--regid=nogroup", "--clear-groups"] + argv
        # setpriv execs the daemon: its pid is LISTEN_PID's
    with open(logpath, "wb") as log:
        if case == "count":
            env = dict(os.environ, LISTEN_FDS="1", LISTEN_FDNAMES=":".join(names))
            d = subprocess.Popen([sys.executable, "-c", ACTIVATE, str(sock.fileno())] + argv,
                                 pass_fds=[sock.fileno()], env=env, stdout=log,
                                 stderr=subprocess.STDOUT)
        else:
            d = activate(argv, socks, names, log=log)
        procs.append(d)
        assert d.wait(30) == 1, output(logpath)
    assert want in output(logpath)
    # nothing bound or removed in its place
    assert os.path.exists(os.path.join(rundir, "virtkvmmd-sock"))
    if case != "session-ro":
        assert not os.path.exists(os.path.join(rundir, "virtkvmmd-sock-ro"))


def test_listen_pid_of_another_process_is_ignored(activation_root):
    """LISTEN_* meant for a parent (the daemon started from an activated
    service) do not apply: the daemon binds its own sockets."""
    root, rundir, procs = activation_root
    env = dict(os.environ, LISTEN_PID="1", LISTEN_FDS="2",
               LISTEN_FDNAMES="virtkvmmd.socket:virtkvmmd-ro.socket")
    d = Daemon(root, env=env)
    try:
        d.wait_ready()
        assert "(from systemd)" not in d.output()
        assert virsh(d.uri(), "list").returncode == 0
        assert virsh(d.uri(ro=True), "list", readonly=True).returncode == 0
    finally:
        d.stop()


def unit_values(path, key):
    with open(path) as f:
        return [l.split("=", 1)[1].strip() for l in f.read().splitlines() if l.startswith(key + "=")]


def test_units_serve_plain_kvmm_system_uri(installed, tmp):
    """The installed units run as systemd would run them (their
    ListenStream= sockets named after the units, ExecStart= with its
    Environment=), in a mount namespace whose /run and /var/log are empty
    tmpfs: plain `virsh -c kvmm:///system`, without ?socket=, reaches the
    installed daemon, read-write and read-only."""
    units = f"{installed['prefix']}/lib/systemd/system"
    listen, names = [], []
    for u in ("virtkvmmd.socket", "virtkvmmd-ro.socket"):
        (path,) = unit_values(f"{units}/{u}", "ListenStream")
        listen += ["-l", path]
        names.append(u)
    service = f"{units}/virtkvmmd.service"
    (env,) = unit_values(service, "Environment")
    (execstart,) = unit_values(service, "ExecStart")
    var, value = env.split("=", 1)
    argv = execstart.replace(f"${var}", value.strip('"')).split()
    assert argv[0] == f"{installed['prefix']}/sbin/virtkvmmd" and argv[1:] == ["--timeout", "120"]
    script = f"""
mount -t tmpfs kvi /run || exit 1
mount -t tmpfs kvi /var/log || exit 1
mkdir -p /run/libvirt
systemd-socket-activate {' '.join(listen)} --fdname={':'.join(names)} {' '.join(argv)} -v \
    >{tmp}/daemon.log 2>&1 &
act=$!
i=0
while [ ! -S /run/libvirt/virtkvmmd-sock-ro ]; do
    i=$((i + 1)); [ $i -lt 600 ] || {{ echo "no socket"; exit 1; }}; sleep 0.05
done
virsh -c kvmm:///system uri && virsh -c kvmm:///system list --all &&
virsh -r -c kvmm:///system list && virsh -r -c kvmm:///system define /dev/null
echo "define-ro: $?"
kill $act; wait $act
echo "daemon: $?"
"""
    r = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                       capture_output=True, text=True, timeout=120, env=dict(os.environ, LC_ALL="C"))
    log = output(os.path.join(tmp, "daemon.log"))
    assert r.stdout.startswith("kvmm:///system\n"), r.stdout + r.stderr + log
    assert " Id   Name   State" in r.stdout
    assert "define-ro: 1" in r.stdout and "read only" in r.stderr.lower(), r.stderr
    assert "daemon: 0" in r.stdout, log
    assert "listening on /run/libvirt/virtkvmmd-sock (from systemd)" in log
    assert "listening on /run/libvirt/virtkvmmd-sock-ro (read-only) (from systemd)" in log
    assert "opened kvmm:///system read-only" in log
    assert not os.path.exists("/run/libvirt/virtkvmmd-sock")   # nothing on the host


def test_debian_package_builds_lintian_clean(installed):
    """debian/: dpkg-buildpackage on the shipped tree, lintian without a
    warning, and the package holds what `make install` installs (units
    where Debian keeps them, man pages compressed), the configuration
    file as a conffile, the sockets started by its scripts."""
    version = drvtest.package_version()
    src = os.path.join(installed["top"], "deb", f"kvmm-{version}")
    os.makedirs(os.path.dirname(src))
    run(["make", "-C", BUILD, "distdir", f"distdir={src}"])
    run(["dpkg-buildpackage", "-us", "-uc", "-b"], cwd=src, timeout=1800)
    deb = os.path.join(installed["top"], "deb", f"kvmm_{version}-1_amd64.deb")
    changes = deb[:-len(".deb")] + ".changes"
    r = subprocess.run(["lintian", changes], capture_output=True, text=True)
    complaints = [l for l in (r.stdout + r.stderr).splitlines()
                  if l and "running with root privileges is not recommended" not in l]
    assert r.returncode == 0 and not complaints, "\n".join(complaints)

    listing = run(["dpkg-deb", "--contents", deb]).stdout.splitlines()
    got = {}
    for line in listing:
        fields = line.split()
        if not fields[0].startswith("d"):
            got[fields[5][1:]] = fields[0]
    want = {}
    for path, mode in expected_files("/usr", "/etc").items():
        path = path.replace("/usr/lib/systemd/system/", "/lib/systemd/system/")
        if "/share/man/" in path:
            path += ".gz"
        want[path] = "-rwxr-xr-x" if mode == 0o755 else "-rw-r--r--"
    want["/usr/share/doc/kvmm/copyright"] = want["/usr/share/doc/kvmm/changelog.Debian.gz"] = "-rw-r--r--"
    want["/usr/share/lintian/overrides/kvmm"] = "-rw-r--r--"
    assert got == want
    ctl = os.path.join(installed["top"], "deb", "control")
    run(["dpkg-deb", "--control", deb, ctl])
    with open(os.path.join(ctl, "conffiles")) as f:
        assert f.read().split() == ["/etc/libvirt/virtkvmmd.conf"]
    with open(os.path.join(ctl, "postinst")) as f:
        postinst = f.read()
    # The sockets are started at installation; the service waits for its
    # first client.
    invoked = [l for l in postinst.splitlines() if "deb-systemd-invoke" in l]
    assert any("'virtkvmmd.socket'" in l and "'virtkvmmd-ro.socket'" in l for l in invoked), invoked
    assert not any("virtkvmmd.service" in l for l in invoked), invoked
    # The sandbox's own system account, as Debian's libvirt-qemu.
    assert "adduser --quiet --system --group" in postinst and " kvmm\n" in postinst, postinst
    with open(os.path.join(ctl, "control")) as f:
        assert "adduser" in f.read()
