"""Debian's libvirtd with only the secondary drivers a test asks for, as
root, in a network namespace the test made and a mount namespace of its
own whose /run, /var/lib, /var/cache, /var/log and /etc/libvirt are empty
tmpfs: nothing of the host's is seen or touched.  A virtkvmmd started
with `prefix` runs in the same namespaces and so finds libvirtd's sockets
where libvirt's client library would (/run/libvirt/libvirt-sock)."""
import os
import shutil
import signal
import subprocess
import tempfile
import time

import pytest

LIBVIRTD = "/usr/sbin/libvirtd"
DRIVER_DIR = "/usr/lib/x86_64-linux-gnu/libvirt/connection-driver"


def driver_path(name):
    return os.path.join(DRIVER_DIR, f"libvirt_driver_{name}.so")


class Libvirtd:
    def __init__(self, netns, drivers):
        missing = [d for d in drivers if not os.path.exists(driver_path(d))]
        if not os.path.exists(LIBVIRTD) or missing:
            pytest.fail(f"libvirtd or its drivers {missing} are not installed: run "
                        "tools/install-deps (libvirt-daemon)")
        self.tmp = tempfile.mkdtemp(prefix="kvdlv-")
        os.mkdir(os.path.join(self.tmp, "drivers"))
        for d in drivers:
            os.symlink(driver_path(d),
                       os.path.join(self.tmp, "drivers", os.path.basename(driver_path(d))))
        mounts = "; ".join(f"mount -t tmpfs kvdlv {d} || exit 1"
                           for d in ("/run", "/var/lib", "/var/cache", "/var/log", "/etc/libvirt"))
        self.logpath = os.path.join(self.tmp, "libvirtd.log")
        self.log = open(self.logpath, "wb")
        # LIBVIRT_DRIVER_DIR: a directory holding only the wanted modules.
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", netns, "unshare", "-m", "--propagation", "private", "sh", "-c",
             f"{mounts}; exec env LIBVIRT_DRIVER_DIR={self.tmp}/drivers {LIBVIRTD}"],
            stdout=self.log, stderr=subprocess.STDOUT)
        self.pid = self.proc.pid
        # nsenter's prefix into both namespaces, for virsh and virtkvmmd
        self.prefix = ["nsenter", f"--mount=/proc/{self.pid}/ns/mnt",
                       f"--net=/proc/{self.pid}/ns/net"]
        try:
            deadline = time.monotonic() + 30
            while not os.path.exists(self.path("/run/libvirt/libvirt-sock")):
                assert self.proc.poll() is None and time.monotonic() < deadline, self.output()
                time.sleep(0.05)
        except BaseException:
            self.stop()
            raise

    def path(self, p):
        """p as seen from inside the daemon's mount namespace."""
        return f"/proc/{self.pid}/root{p}"

    def output(self):
        self.log.flush()
        with open(self.logpath, "rb") as f:
            return f.read().decode(errors="replace")

    def run(self, *argv, check=True, timeout=60):
        """argv inside the namespaces."""
        r = subprocess.run(self.prefix + list(argv), capture_output=True, text=True,
                           timeout=timeout, env=dict(os.environ, LC_ALL="C"))
        assert not check or r.returncode == 0, (argv, r.stdout, r.stderr)
        return r

    def virsh(self, uri, *args, check=True):
        """virsh against libvirtd itself (storage:///system, ...)."""
        return self.run("virsh", "-c", uri, *args, check=check)

    def nclients(self):
        """How many clients libvirtd serves now, from its admin socket."""
        r = self.run("virt-admin", "-c", "libvirtd:///system", "srv-clients-info", "libvirtd")
        for line in r.stdout.splitlines():
            k, _, v = line.partition(":")
            if k.strip() == "nclients":
                return int(v)
        raise AssertionError(r.stdout)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)     # in case a test stopped it
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        shutil.rmtree(self.tmp, ignore_errors=True)
