"""Private libvirt daemons for the benchmarks: virtkvmmd with --root in a
temp dir, and Debian's libvirtd (qemu driver) as a session daemon of user
nobody with every directory in the temp dir (as root: in a mount
namespace of its own with a /dev/kvm node nobody may open).  Both are
stopped by PID; nothing outside the temp dir is touched."""
import os
import signal
import socket
import subprocess
import time

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("KVMM_BUILDDIR", TOP)
VIRTKVMMD = os.path.join(BUILD, "src", "driver", "virtkvmmd")
KERNEL = os.path.join(TOP, "tests", "guest", "kvmm-testguest.bzImage")
LIBVIRTD = "/usr/sbin/libvirtd"
QEMU_DRIVER = "/usr/lib/x86_64-linux-gnu/libvirt/connection-driver/libvirt_driver_qemu.so"
QEMU = "/usr/bin/qemu-system-x86_64"
APT = ("DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "
       "libvirt-daemon libvirt-daemon-driver-qemu")
NOBODY = 65534


class Daemon:
    """A private daemon started by this script, stopped by PID."""

    def __init__(self, name, uri, sock, argv, log, env=None):
        self.name, self.uri, self.sock = name, uri, sock
        self.logpath = log
        with open(log, "wb") as f:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=f,
                                         stderr=subprocess.STDOUT, env=env,
                                         start_new_session=True)

    def output(self):
        with open(self.logpath, "rb") as f:
            return f.read().decode(errors="replace")

    def wait_ready(self, timeout=30):
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited ({self.proc.returncode}):\n{self.output()}")
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.connect(self.sock)
                return
            except (FileNotFoundError, ConnectionRefusedError):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.name} never listened on {self.sock}:\n{self.output()}")
                time.sleep(0.02)
            finally:
                s.close()

    def stop(self, timeout=15):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def start_kvmm(tmp, prefix=()):
    """prefix: argv run before the daemon's, e.g. ip netns exec NS."""
    root = os.path.join(tmp, "kvmm")
    os.mkdir(root)
    sock = os.path.join(root, "run", "libvirt", "virtkvmmd-sock")
    return Daemon("virtkvmmd", f"kvmm:///system?socket={sock}", sock,
                  list(prefix) + [VIRTKVMMD, "--root", root, "--pid-file", os.path.join(root, "virtkvmmd.pid")],
                  os.path.join(tmp, "virtkvmmd.log"))


def start_libvirtd(tmp, log="libvirtd.log", prefix=(), host_uuid=None):
    """libvirtd as a session daemon with every directory under tmp/libvirtd;
    started again on the same tmp, it finds the first one's state there.
    prefix: a command it runs under (e.g. ["ip", "netns", "exec", NS]);
    host_uuid: its libvirtd.conf's, so that two of them on one machine are
    two hosts to a migration."""
    base = os.path.join(tmp, "libvirtd")
    dirs = {d: os.path.join(base, d) for d in ("home", "run", "config", "cache", "dev")}
    for d in dirs.values():
        os.makedirs(d, exist_ok=True)
    if host_uuid:
        os.makedirs(os.path.join(dirs["config"], "libvirt"), exist_ok=True)
        with open(os.path.join(dirs["config"], "libvirt", "libvirtd.conf"), "w") as f:
            f.write(f'host_uuid = "{host_uuid}"\n')
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C", "HOME": dirs["home"],
           "XDG_RUNTIME_DIR": dirs["run"], "XDG_CONFIG_HOME": dirs["config"],
           "XDG_CACHE_HOME": dirs["cache"]}
    if os.geteuid() == 0:
        # root's libvirtd would use /etc/libvirt, /var/lib/libvirt and
        # /run/libvirt: run a session daemon as nobody instead, with a
        # /dev/kvm that nobody may open in a mount namespace of its own.
        for d in [base] + list(dirs.values()) + ([os.path.join(dirs["config"], "libvirt")]
                                                  if host_uuid else []):
            os.chown(d, NOBODY, NOBODY)
        script = ('set -e; mount -t tmpfs -o mode=755 kvmm-bench "$1"; '
                  'mknod -m 600 "$1/kvm" c 10 232; chown 65534:65534 "$1/kvm"; '
                  'mount --bind "$1/kvm" /dev/kvm; '
                  'exec setpriv --reuid=65534 --regid=65534 --clear-groups "$2"')
        argv = ["unshare", "--mount", "--propagation", "private",
                "sh", "-c", script, "sh", dirs["dev"], LIBVIRTD]
    else:
        argv = [LIBVIRTD]
    sock = os.path.join(dirs["run"], "libvirt", "libvirt-sock")
    return Daemon("libvirtd", f"qemu:///session?socket={sock}", sock, list(prefix) + argv,
                  os.path.join(tmp, log), env=env)


def virsh(uri, *args):
    r = subprocess.run(["virsh", "-q", "-c", uri] + list(args), capture_output=True,
                       text=True, env=dict(os.environ, LC_ALL="C"))
    if r.returncode != 0:
        raise RuntimeError(f"virsh -c {uri} {' '.join(args)}: {r.stderr.strip()}")
    return r.stdout


def missing_libvirtd():
    """What libvirtd's side needs and this host lacks."""
    return [p for p in (LIBVIRTD, QEMU_DRIVER, QEMU) if not os.path.exists(p)]


def guest_dir(tmp, label):
    """tmp/label with a copy of the test guest's kernel, for one stack's
    guests: their XML, serial logs and save images."""
    import shutil
    d = os.path.join(tmp, label)
    os.mkdir(d)
    shutil.copy(KERNEL, os.path.join(d, "guest.bzImage"))
    if os.geteuid() == 0:
        # QEMU and the session libvirtd run as nobody: they write here.
        os.chown(d, NOBODY, NOBODY)
        os.chmod(os.path.join(d, "guest.bzImage"), 0o644)
    return d
