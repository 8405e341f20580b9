"""shareable=on (libvirt's <disk><shareable/>): kvmm takes a shared flock
on the image instead of an exclusive one, so several kvmm that each say
they share it run on it at once; one that does not say so is still
refused while they hold it, and they are refused while it does."""
import fcntl
import os
import subprocess

from kvmmtest import GUEST, KVMM, Api, start


def image(tmp):
    p = os.path.join(tmp, "shared.img")
    with open(p, "wb") as f:
        f.truncate(1 << 20)
    return p


def paused_kvmm(vms, tmp, name, disk):
    api = os.path.join(tmp, f"{name}.sock")
    g = start(vms, [KVMM, "--kernel", GUEST, "--serial", "none", "--memory", "64M",
                    "--paused", "--api-socket", api, "--disk", disk])
    c = Api(api)
    assert c.call("query-status")["return"]["state"] == "paused"
    return g, c


def refused(disk):
    r = subprocess.run([KVMM, "--kernel", GUEST, "--serial", "none", "--memory", "64M",
                        "--disk", disk], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1, r.stderr
    return r.stderr


def test_shareable_disks_run_together(kvm, tmp, vms):
    p = image(tmp)
    a, ca = paused_kvmm(vms, tmp, "a", f"path={p},shareable=on")
    b, cb = paused_kvmm(vms, tmp, "b", f"path={p},shareable=on")
    # one that does not share it is kept off it
    assert f"disk {p} is in use by another process" in refused(f"path={p}")
    for g, c in ((a, ca), (b, cb)):
        c.call("quit")
        assert g.wait_exit() == 0


def test_an_exclusive_user_keeps_sharers_off(kvm, tmp):
    p = image(tmp)
    with open(p, "rb") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        err = refused(f"path={p},shareable=on")
    assert "give readonly=on or shareable=on to both" in err
    # and a sharer beside another shared holder runs
    with open(p, "rb") as f:
        fcntl.flock(f, fcntl.LOCK_SH)
        r = subprocess.run([KVMM, "--kernel", GUEST, "--serial", "none", "--memory", "64M",
                            "--cmdline", "kvmmtest.action=poweroff", "--disk", f"path={p},shareable=on"],
                           capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
