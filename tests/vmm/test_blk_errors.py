"""Host I/O errors under kvmm's disks, on real failing file systems: a
failed flush stays failed, and the error policies (docs/kvmm.md)."""
import contextlib
import os
import subprocess
import uuid

import pytest

import kvmmtest
from virtiotest import by_dev, no_failures

SYNC_IDS = ["io_uring", "sync"]


def run(*argv):
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


@contextlib.contextmanager
def tmpfs(path, size):
    """A tmpfs of size bytes at path: writes past that fail with ENOSPC."""
    os.makedirs(path, exist_ok=True)
    try:
        run("mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", path)
    except (subprocess.CalledProcessError, FileNotFoundError) as e:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {e}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", path], check=False)


@contextlib.contextmanager
def writeback_fails(tmp, room):
    """A directory on ext4 (no journal) on a loop device whose backing file
    sits on a tmpfs with room bytes: writes there succeed into the page
    cache and fail only when written back, so the next fdatasync() fails
    (ENOSPC), and the one after says nothing more."""
    with tmpfs(os.path.join(tmp, "small"), room) as small:
        back = os.path.join(small, "ext4.img")
        with open(back, "wb") as f:
            f.truncate(64 << 20)
        run("mkfs.ext4", "-q", "-F", "-O", "^has_journal", back)
        try:
            loop = subprocess.run(["losetup", "-f", "--show", back], check=True,
                                  capture_output=True, text=True).stdout.strip()
        except (subprocess.CalledProcessError, FileNotFoundError) as e:
            pytest.skip(f"no loop device here: {e}")
        mnt = os.path.join(tmp, f"ext4-{uuid.uuid4().hex[:8]}")
        os.makedirs(mnt)
        try:
            run("mount", loop, mnt)
            try:
                yield mnt
            finally:
                subprocess.run(["umount", "-l", mnt], check=False)
        finally:
            subprocess.run(["losetup", "-d", loop], check=False)


def sparse(path, size):
    with open(path, "wb") as f:
        f.truncate(size)
    return path


def start_kvmm(vms, tmp, cmdline, disk, sync, extra=()):
    sock = os.path.join(tmp, "api.sock")
    env = ["env", "KVMM_NO_IO_URING=1"] if sync else []
    g = kvmmtest.start(vms, env + kvmmtest.kvmm_argv(
        f"kvmmtest.virtio=blk {cmdline} kvmmtest.action=wait", 1, "256M",
        ["--disk", disk, "--api-socket", sock] + list(extra)))
    return g, sock


def quit_vm(g, sock):
    api = kvmmtest.Api(sock)
    try:
        api.call("quit")
    finally:
        api.close()
    g.wait_exit()


@pytest.mark.parametrize("sync", [False, True], ids=SYNC_IDS)
def test_kvmm_blk_failed_flush_stays_failed(kvm, vms, tmp, sync):
    """cache=writeback: the guest's 4 MiB land in the host's page cache,
    writing them back fails (the loop device's file system is full), so
    the FLUSH fails; the kernel reports that once only, and a second
    FLUSH (nothing new written) would succeed though the data is gone:
    kvmm fails it too, and says so on stderr."""
    with writeback_fails(tmp, 2 << 20) as mnt:
        img = sparse(os.path.join(mnt, "d0.img"), 16 << 20)
        g, sock = start_kvmm(vms, tmp, "kvmmtest.blk0.wflush=0+8192",
                             f"path={img},cache=writeback,error_policy=report", sync)
        g.wait_for(r"KVMMTEST done", timeout=120)
        no_failures(g)
        r = by_dev(g, "info", "virtio-blk-wflush")["blk0"]
        assert (r["write"], r["flush"], r["reflush"]) == ("ok", "ioerr", "ioerr"), r
        quit_vm(g, sock)
        err = g.stderr.decode(errors="replace")
        assert "flush failed" in err and "every later flush" in err, err


def test_qemu_blk_failed_flush_stays_failed(kvm, vms, tmp):
    """The reference: QEMU (cache=writeback, werror=report) on the same
    failing file system fails the second FLUSH too."""
    with writeback_fails(tmp, 2 << 20) as mnt:
        img = sparse(os.path.join(mnt, "d0.img"), 16 << 20)
        g = kvmmtest.start(vms, kvmmtest.qemu_argv(
            "kvmmtest.virtio=blk kvmmtest.blk0.wflush=0+8192", 1, "256M",
            ["-drive", f"file={img},if=none,id=d0,format=raw,cache=writeback,aio=threads,"
                       "werror=report,rerror=report",
             "-device", "virtio-blk-pci,drive=d0,disable-legacy=on,addr=0x04"]))
        g.wait_for(r"KVMMTEST done", timeout=180)
        no_failures(g)
        r = by_dev(g, "info", "virtio-blk-wflush")["blk0"]
        assert (r["write"], r["flush"], r["reflush"]) == ("ok", "ioerr", "ioerr"), r
        assert g.wait_exit() == 0


def pattern_ok(path, start, count):
    from virtiotest import SECTOR, pattern
    with open(path, "rb") as f:
        f.seek(start * SECTOR)
        return f.read(count * SECTOR) == b"".join(pattern(s) for s in range(start, start + count))


@pytest.mark.parametrize("policy", ["stop", None])
@pytest.mark.parametrize("sync", [False, True], ids=SYNC_IDS)
def test_kvmm_blk_enospc_stops_the_vm_and_resume_retries(kvm, vms, tmp, sync, policy):
    """error_policy=stop, and the default (enospace, as QEMU's werror): the
    guest's write meets a full file system; kvmm announces block-io-error,
    pauses the VM (reason io-error) and holds the write; once there is
    room, resume retries it and the guest sees its write, and the flushes
    after it, succeed."""
    with tmpfs(os.path.join(tmp, "small"), 3 << 20) as small:
        filler = os.path.join(small, "filler")
        with open(filler, "wb") as f:
            f.write(b"\1" * (2 << 20))
        img = sparse(os.path.join(small, "d0.img"), 4 << 20)
        disk = f"path={img},cache=writeback" + (f",error_policy={policy}" if policy else "")
        g, sock = start_kvmm(vms, tmp, "kvmmtest.blk0.wflush=0+4096", disk, sync)
        api = kvmmtest.Api(sock)
        try:
            e = api.wait_event("block-io-error", timeout=120)
            assert e["data"] == {"device": "disk0", "op": "write", "error": "ENOSPC",
                                 "message": os.strerror(28), "action": "stop"}, e
            api.wait_event("state-changed", timeout=30, state="paused", reason="io-error")
            assert api.call("query-status")["return"]["state"] == "paused"
            assert api.call("query-block-stats")["return"][0]["io_status"] == "nospace"
            # Held, not failed: the guest has not been answered.
            assert not by_dev(g, "info", "virtio-blk-wflush")
            os.unlink(filler)
            assert api.call("resume")["return"] == {}
            g.wait_for(r"KVMMTEST done", timeout=120)
            no_failures(g)
            r = by_dev(g, "info", "virtio-blk-wflush")["blk0"]
            assert (r["write"], r["flush"], r["reflush"]) == ("ok", "ok", "ok"), r
            st = api.call("query-block-stats")["return"][0]
            assert st["failed_operations"] >= 1 and st["invalid_operations"] == 0, st
            assert st["errors"] == 0, st     # nothing failed to the guest
            assert st["io_status"] == "ok", st
            api.call("quit")
        finally:
            api.close()
        g.wait_exit()
        assert pattern_ok(img, 0, 4096)
        assert "No space left on device" in g.stderr.decode(errors="replace")


@pytest.mark.parametrize("policy,status", [("report", "ioerr"), ("ignore", "ok")])
def test_kvmm_blk_enospc_reported_or_ignored(kvm, vms, tmp, policy, status):
    """error_policy=report fails the guest's write; ignore tells it the
    write was done.  Either way the VM keeps running and kvmm announces
    the error with the action taken."""
    with tmpfs(os.path.join(tmp, "small"), 1 << 20) as small:
        img = sparse(os.path.join(small, "d0.img"), 4 << 20)
        g, sock = start_kvmm(vms, tmp, "kvmmtest.blk0.wflush=0+4096",
                             f"path={img},cache=writeback,error_policy={policy}", False)
        api = kvmmtest.Api(sock)
        try:
            e = api.wait_event("block-io-error", timeout=120)
            assert (e["data"]["op"], e["data"]["error"], e["data"]["action"]) == \
                ("write", "ENOSPC", policy), e
            g.wait_for(r"KVMMTEST done", timeout=120)
            no_failures(g)
            r = by_dev(g, "info", "virtio-blk-wflush")["blk0"]
            assert r["write"] == status, r
            assert api.call("query-status")["return"]["state"] == "running"
            st = api.call("query-block-stats")["return"][0]
            assert st["failed_operations"] >= 1 and st["invalid_operations"] == 0, st
            api.call("quit")
        finally:
            api.close()
        g.wait_exit()
