"""A disk on a full file system under virtkvmmd: with <driver
error_policy='stop'> the guest's write stops the domain (paused, I/O
error) with libvirt's IO_ERROR and IO_ERROR_REASON events as
python3-libvirt receives them; virsh domblkerror names the disk; once
there is room, virsh resume retries the write and the guest sees it
done.  And the write-cache modes kvmm took on: writethrough reaches it."""
import contextlib
import os
import queue
import subprocess

import libvirt
import pytest

from drvtest import event_loop, virsh
from kvmmtest import wait_record
from test_lifecycle import assert_nothing_left, guest_xml, serial, wait_for

L = libvirt


@contextlib.contextmanager
def tmpfs(path, size):
    """A tmpfs of size bytes at path: writes past that fail with ENOSPC."""
    os.makedirs(path, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", path],
                       capture_output=True, text=True)
    if r.returncode:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {r.stderr}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", path], check=False)


class IoEvents:
    def __init__(self, uri):
        event_loop()
        self.conn = libvirt.open(uri)
        self.q = queue.Queue()      # every kind, in arrival order

        def io(c, dom, path, alias, action, _):
            self.q.put(("io", dom.name(), path, alias, action))

        def io_reason(c, dom, path, alias, action, reason, _):
            self.q.put(("reason", dom.name(), path, alias, action, reason))

        def lifecycle(c, dom, ev, detail, _):
            self.q.put(("lifecycle", dom.name(), ev, detail))
        self.conn.domainEventRegisterAny(None, L.VIR_DOMAIN_EVENT_ID_IO_ERROR, io, None)
        self.conn.domainEventRegisterAny(None, L.VIR_DOMAIN_EVENT_ID_IO_ERROR_REASON, io_reason,
                                         None)
        self.conn.domainEventRegisterAny(None, L.VIR_DOMAIN_EVENT_ID_LIFECYCLE, lifecycle, None)

    def until(self, marker, timeout=120):
        """What arrived up to and including the first event starting with
        MARKER."""
        seen = []
        while True:
            try:
                e = self.q.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"no {marker} within {timeout}s; saw {seen}") from None
            seen.append(e)
            if e[:len(marker)] == marker:
                return seen


def test_enospc_pauses_the_domain_and_resume_completes_the_write(daemon, kvm):
    d = daemon
    ev = IoEvents(d.uri())
    conn = libvirt.open(d.uri())
    with tmpfs(os.path.join(d.root, "small"), 3 << 20) as small:
        filler = os.path.join(small, "filler")
        with open(filler, "wb") as f:
            f.write(b"\1" * (2 << 20))
        img = os.path.join(small, "d.img")
        with open(img, "wb") as f:
            f.truncate(4 << 20)
        dom = conn.defineXML(guest_xml(
            d.root, "full", extra_cmdline=" kvmmtest.virtio=blk kvmmtest.blk0.wflush=0+4096",
            extra_devices=f"""
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw' cache='writeback' error_policy='stop'/>
      <source file='{img}'/><target dev='vda' bus='virtio'/>
    </disk>"""))
        assert "error_policy='stop'" in dom.XMLDesc(0)
        r = virsh(d.uri(), "domblkerror", "full")
        assert r.returncode != 0 and "not running" in r.stderr, r

        dom.create()
        seen = ev.until(("lifecycle", "full", L.VIR_DOMAIN_EVENT_SUSPENDED))
        # As libvirt's qemu driver: both I/O error events, then the pause.
        io = [e for e in seen if e[0] in ("io", "reason")]
        assert ("io", "full", img, "vda", L.VIR_DOMAIN_EVENT_IO_ERROR_PAUSE) in io, seen
        assert ("reason", "full", img, "vda", L.VIR_DOMAIN_EVENT_IO_ERROR_PAUSE, "enospc") in io, seen
        assert seen[-1] == ("lifecycle", "full", L.VIR_DOMAIN_EVENT_SUSPENDED,
                            L.VIR_DOMAIN_EVENT_SUSPENDED_IOERROR), seen
        assert dom.state() == [L.VIR_DOMAIN_PAUSED, L.VIR_DOMAIN_PAUSED_IOERROR]
        r = virsh(d.uri(), "domstate", "full", "--reason")
        assert r.stdout.strip() == "paused (I/O error)", r
        assert dom.diskErrors() == {"vda": L.VIR_DOMAIN_DISK_ERROR_NO_SPACE}
        r = virsh(d.uri(), "domblkerror", "full")
        assert r.returncode == 0 and r.stdout.strip() == "vda: no space", r
        # The write is held, not failed: the guest has no answer yet.
        assert "virtio-blk-wflush" not in serial(d.root, "full")

        os.unlink(filler)
        r = virsh(d.uri(), "resume", "full")
        assert r.returncode == 0, r
        rec = wait_record(lambda: serial(d.root, "full"), r"KVMMTEST info virtio-blk-wflush .*",
                          "the guest's write record", timeout=120).group(0)
        assert rec.endswith("write=ok flush=ok reflush=ok"), rec
        assert dom.state()[0] == L.VIR_DOMAIN_RUNNING
        assert dom.diskErrors() == {}
        r = virsh(d.uri(), "domblkerror", "full")
        assert r.returncode == 0 and "No errors found" in r.stdout, r
        assert "KVMMTEST fail" not in serial(d.root, "full")
        dom.destroy()
        wait_for(lambda: not d.guests(), "kvmm gone")
    dom.undefine()
    assert_nothing_left(d)


def test_get_disk_errors_without_errors_and_refused_when_inactive(daemon, kvm):
    d = daemon
    conn = libvirt.open(d.uri())
    img = os.path.join(d.root, "d.img")
    with open(img, "wb") as f:
        f.truncate(1 << 20)
    dom = conn.defineXML(guest_xml(d.root, "fine", extra_devices=f"""
    <disk type='file' device='disk'><source file='{img}'/><target dev='vda' bus='virtio'/></disk>"""))
    with pytest.raises(libvirt.libvirtError) as e:
        dom.diskErrors()
    assert e.value.get_error_code() == L.VIR_ERR_OPERATION_INVALID, str(e.value)
    dom.create()
    wait_for(lambda: "KVMMTEST tick" in serial(d.root, "fine"), "the guest running")
    # python3-libvirt asks how many disks (maxerrors 0), then for them.
    assert dom.diskErrors() == {}
    r = virsh(d.uri(), "domblkerror", "fine")
    assert r.returncode == 0 and "No errors found" in r.stdout, r
    dom.destroy()
    dom.undefine()


def dirty_pages(path):
    """Dirty plus under-writeback pages of path in the host's page cache
    (cachestat(2)); None where the kernel has none."""
    import ctypes
    import struct
    libc = ctypes.CDLL(None, use_errno=True)
    whole = ctypes.create_string_buffer(struct.pack("QQ", 0, 0))
    out = ctypes.create_string_buffer(48)
    fd = os.open(path, os.O_RDONLY)
    try:
        r = libc.syscall(451, fd, whole, out, 0)      # __NR_cachestat on x86-64
    finally:
        os.close(fd)
    if r < 0:
        return None
    _, dirty, writeback, _, _ = struct.unpack("5Q", out.raw[:40])
    return dirty + writeback


def test_cache_writethrough_reaches_kvmm(daemon, kvm):
    """<driver cache='writethrough'> starts (kvmm's O_DSYNC mode): the
    guest's writes, never flushed, leave nothing dirty on the host."""
    d = daemon
    conn = libvirt.open(d.uri())
    img = os.path.join(d.root, "wt.img")
    with open(img, "wb") as f:
        f.write(os.urandom(1 << 20))
        os.fsync(f.fileno())
    if dirty_pages(img) is None:
        pytest.skip("the kernel has no cachestat(2)")
    dom = conn.defineXML(guest_xml(
        d.root, "wt", extra_cmdline=" kvmmtest.virtio=blk kvmmtest.blk0.noflush=8+512",
        extra_devices=f"""
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw' cache='writethrough'/>
      <source file='{img}'/><target dev='vda' bus='virtio'/>
    </disk>"""))
    dom.create()
    rec = wait_record(lambda: serial(d.root, "wt"), r"KVMMTEST info virtio-blk-noflush .*",
                      "the guest's write record", timeout=120).group(0)
    assert rec.endswith("write=ok"), rec
    assert dirty_pages(img) == 0
    dom.destroy()
    dom.undefine()
