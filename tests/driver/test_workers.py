"""Calls that block run off virtkvmmd's I/O loop.

The definitions directory lives on a small ext4 file system that the test
freezes (fsfreeze, as a backup tool does for a snapshot): a define then
blocks in the kernel until the file system thaws.  While it does, other
clients must still be answered, and the blocked client's own keepalive
must not be needed to get there.  The assertions are about order (who is
answered while the define is still pending), not about time."""
import os
import shutil
import subprocess
import threading
import time

import libvirt
import pytest

from drvtest import Daemon, virsh
from kvmmtest import GUEST


def domain_xml(name):
    return f"""<domain type='kvm'>
  <name>{name}</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><kernel>{GUEST}</kernel></os>
  <devices/>
</domain>
"""


def run(*argv):
    return subprocess.run(argv, capture_output=True, text=True)


@pytest.fixture
def frozen_fs(tmp):
    """(mountpoint, freeze, thaw): an ext4 image loop-mounted under tmp.
    Always thawed and unmounted at the end, whatever happened."""
    if os.geteuid() != 0:
        pytest.skip("freezing a file system needs root")
    for tool in ("mkfs.ext4", "fsfreeze"):
        if not shutil.which(tool):
            pytest.fail(f"{tool} is not installed: run tools/install-deps (e2fsprogs, util-linux)")
    img = os.path.join(tmp, "defs.img")
    mnt = os.path.join(tmp, "root", "etc", "libvirt", "kvmm")
    os.makedirs(mnt)
    with open(img, "wb") as f:
        f.truncate(16 << 20)
    r = run("mkfs.ext4", "-q", "-F", img)
    assert r.returncode == 0, r.stderr
    r = run("mount", "-o", "loop", img, mnt)
    if r.returncode != 0:
        pytest.skip(f"cannot loop-mount a file system here: {r.stderr.strip()}")
    state = {"frozen": False}

    def freeze():
        r = run("fsfreeze", "-f", mnt)
        assert r.returncode == 0, r.stderr
        state["frozen"] = True

    def thaw():
        if state["frozen"]:
            r = run("fsfreeze", "-u", mnt)
            assert r.returncode == 0, r.stderr
            state["frozen"] = False
    try:
        yield mnt, freeze, thaw
    finally:
        if state["frozen"]:
            run("fsfreeze", "-u", mnt)
        for _ in range(50):
            if run("umount", mnt).returncode == 0:
                break
            time.sleep(0.1)


def wait_log(d, text, timeout=10):
    deadline = time.monotonic() + timeout
    while text not in d.output():
        assert time.monotonic() < deadline, f"no {text!r} in the daemon log:\n{d.output()}"
        assert d.alive(), d.output()
        time.sleep(0.02)


def test_blocked_define_stalls_no_other_client(frozen_fs, tmp):
    mnt, freeze, thaw = frozen_fs
    d = Daemon(os.path.join(tmp, "root")).wait_ready()
    try:
        admin = libvirt.open(d.uri())
        admin.defineXML(domain_xml("before"))
        freeze()

        done = {}
        writers = []
        for name in ("blocked1", "blocked2"):
            def define(name=name):
                c = libvirt.open(d.uri())
                try:
                    c.defineXML(domain_xml(name))
                    done[name] = "defined"
                except libvirt.libvirtError as e:
                    done[name] = str(e)
                finally:
                    c.close()
            t = threading.Thread(target=define, daemon=True)
            t.start()
            writers.append(t)
        # Both defines are inside the daemon (the log shows each call
        # arriving) and blocked on the frozen file system.
        deadline = time.monotonic() + 10
        while d.output().count("call virDomainDefineXML") < 3:
            assert time.monotonic() < deadline, d.output()
            time.sleep(0.02)

        # Other clients are answered meanwhile, through both a client
        # already connected and new ones.  In a thread: were they
        # stalled, the test must fail (and thaw), not hang.
        def others():
            names = sorted(dom.name() for dom in admin.listAllDomains(0))
            assert names == ["before"]
            assert admin.getHostname()
            assert admin.lookupByName("before").info()[0] == libvirt.VIR_DOMAIN_SHUTOFF
            r = virsh(d.uri(), "list", "--all", "--name")
            assert r.returncode == 0, r.stderr
            assert r.stdout.split() == ["before"]
            r = virsh(d.uri(ro=True), "dominfo", "before", readonly=True)
            assert r.returncode == 0, r.stderr
            checked.append(True)
        checked = []
        errors = []

        def run_others():
            try:
                others()
            except BaseException as e:   # re-raised below
                errors.append(e)
        t = threading.Thread(target=run_others, daemon=True)
        t.start()
        t.join(60)
        if errors:
            raise errors[0]
        assert checked, "other clients were not answered while a define was blocked"
        # ... and all of that while the defines are still pending.
        assert done == {}, done
        assert all(t.is_alive() for t in writers)

        thaw()
        for t in writers:
            t.join(30)
        assert done == {"blocked1": "defined", "blocked2": "defined"}
        assert sorted(dom.name() for dom in admin.listAllDomains(0)) == \
            ["before", "blocked1", "blocked2"]
        files = set(os.listdir(mnt))
        assert {"before.xml", "blocked1.xml", "blocked2.xml"} <= files
        assert not [f for f in files if f.startswith(".")], files   # no temp file left
        admin.close()
    finally:
        thaw()
        assert d.stop() == 0, d.output()


def test_client_gone_while_its_call_blocks(frozen_fs, tmp):
    """A client that disconnects while its call is blocked: the call
    finishes when it can, its reply goes nowhere, the daemon serves on."""
    mnt, freeze, thaw = frozen_fs
    d = Daemon(os.path.join(tmp, "root")).wait_ready()
    try:
        freeze()
        p = subprocess.Popen(["virsh", "-c", d.uri(), "define", "/dev/stdin"],
                             stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        p.stdin.write(domain_xml("orphan").encode())
        p.stdin.close()
        wait_log(d, "call virDomainDefineXML")
        p.kill()
        p.wait()
        wait_log(d, "disconnected")
        r = virsh(d.uri(), "list", "--all", "--name")
        assert r.returncode == 0 and r.stdout.split() == [], r.stderr
        thaw()
        # The define itself completes: it was accepted before the
        # client went away, like libvirtd would.
        deadline = time.monotonic() + 10
        while True:
            r = virsh(d.uri(), "list", "--all", "--name")
            if r.stdout.split() == ["orphan"]:
                break
            assert time.monotonic() < deadline, r.stdout + r.stderr + d.output()
            time.sleep(0.05)
        assert d.alive()
    finally:
        thaw()
        assert d.stop() == 0, d.output()


def test_max_workers_bounds_concurrent_calls(frozen_fs, tmp):
    """max_workers = 1 in virtkvmmd.conf: the one worker is taken by the
    blocked define, so another client's ordinary call waits until the file
    system thaws -- the key is applied.  (With the default, it is answered
    at once: the test above.)  Priority calls (opening a connection,
    listing domains) go to a priority worker meanwhile and are answered."""
    mnt, freeze, thaw = frozen_fs
    root = os.path.join(tmp, "root")
    with open(os.path.join(root, "etc", "libvirt", "virtkvmmd.conf"), "w") as f:
        f.write("max_workers = 1\n")
    d = Daemon(root).wait_ready()
    try:
        freeze()
        result = {}

        def define():
            c = libvirt.open(d.uri())
            c.defineXML(domain_xml("slow"))
            result["define"] = True
            c.close()
        w = threading.Thread(target=define, daemon=True)
        w.start()
        wait_log(d, "call virDomainDefineXML")

        listed = threading.Event()

        def lister():
            c = libvirt.open(d.uri())
            result["list"] = [dom.name() for dom in c.listAllDomains(0)]
            listed.set()
            result["caps"] = "<capabilities>" in c.getCapabilities()
            c.close()
        t = threading.Thread(target=lister, daemon=True)
        t.start()
        # the open and the list: priority calls, answered while the define blocks
        assert listed.wait(30), result
        assert result == {"list": []}, result
        t.join(2)
        assert t.is_alive() and "caps" not in result, result
        thaw()
        w.join(30)
        t.join(30)
        assert result == {"define": True, "list": [], "caps": True}, result
    finally:
        thaw()
        assert d.stop() == 0, d.output()
