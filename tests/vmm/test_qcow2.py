"""qcow2 disks: images made by qemu-img, written by the test guest through
kvmm (both I/O paths) and QEMU as the reference, then checked by
qemu-img (check, compare, map); backing chains as the configuration
names them; hostile and unsupported images refused with one line."""
import json
import os
import struct
import subprocess
import time
import zlib

import pytest

import kvmmtest
from kvmmtest import GUEST, KVMM
from virtiotest import SECTOR, Disk, VirtioRunner, BLK_RUNNERS, by_dev, finish, pattern

MiB = 1 << 20
VARIANTS = [
    pytest.param("0.10", 65536, id="v2-64k"),
    pytest.param("1.1", 65536, id="v3-64k"),
    pytest.param("0.10", 4096, id="v2-4k"),
    pytest.param("1.1", 4096, id="v3-4k"),
]


def qemu_img(*args, check=True):
    r = subprocess.run(["qemu-img", *args], capture_output=True, text=True, timeout=120)
    if check:
        assert r.returncode == 0, (args, r.stdout, r.stderr)
    return r


def qemu_io(path, fmt, *cmds):
    argv = ["qemu-io", "-f", fmt]
    for c in cmds:
        argv += ["-c", c]
    r = subprocess.run(argv + [path], capture_output=True, text=True, timeout=120)
    out = r.stdout.lower()
    assert r.returncode == 0 and "error" not in out and "fail" not in out, (cmds, r.stdout, r.stderr)


def create(tmp, name, size, compat="1.1", cluster=65536, backing=None, backing_fmt=None,
           extra=()):
    path = os.path.join(tmp, name)
    opts = f"compat={compat},cluster_size={cluster}"
    args = ["create", "-q", "-f", "qcow2", "-o", opts]
    if backing:
        args += ["-b", backing, "-F", backing_fmt]
    qemu_img(*args, *extra, path, str(size))
    return path


def check_clean(path):
    """qemu-img check finds neither corruption nor leaks."""
    r = qemu_img("check", "--output=json", path, check=False)
    assert r.returncode == 0, (r.stdout, r.stderr)
    info = json.loads(r.stdout)
    assert not info.get("corruptions") and not info.get("leaks"), info
    assert not info.get("check-errors"), info


def same_as(tmp, path, want, fmt="qcow2"):
    """The disk path shows is byte for byte want (qemu-img compare)."""
    raw = os.path.join(tmp, "expected.raw")
    with open(raw, "wb") as f:
        f.write(want)
    r = qemu_img("compare", "-f", fmt, "-F", "raw", path, raw, check=False)
    assert r.returncode == 0, (r.stdout, r.stderr)


def allocated(path, start, length):
    """Bytes of [start, start + length) qemu-img map says hold data in the
    top image."""
    r = qemu_img("map", "--output=json", path)
    total = 0
    for e in json.loads(r.stdout):
        if not e["data"] or e.get("depth", 0) != 0:
            continue
        lo, hi = max(e["start"], start), min(e["start"] + e["length"], start + length)
        total += max(0, hi - lo)
    return total


def patterns(start, count):
    return b"".join(pattern(s) for s in range(start, start + count))


@pytest.mark.parametrize("compat,cluster", VARIANTS)
@pytest.mark.parametrize("runner", BLK_RUNNERS)
def test_qcow2_guest_writes_reach_the_image(kvm, vms, tmp, runner, compat, cluster):
    """Writes into unallocated clusters, partial at both ends, read back
    after FLUSH; the image is clean and shows exactly what was written."""
    size = 4 * MiB
    path = create(tmp, "d0.qcow2", size, compat, cluster)
    start, count = 300, 200
    g = runner.start(vms, tmp, "kvmmtest.virtio=blk kvmmtest.blk0.read=0+8192 "
                               f"kvmmtest.blk0.write={start}+{count}",
                     [Disk(path, "q0", fmt="qcow2")])
    finish(g)
    assert int(by_dev(g, "pass", "virtio-blk-read")["blk0"]["crc32"], 16) == zlib.crc32(bytes(size))
    want = bytearray(size)
    want[start * SECTOR:(start + count) * SECTOR] = patterns(start, count)
    assert int(by_dev(g, "pass", "virtio-blk-write")["blk0"]["crc32"], 16) == \
        zlib.crc32(want[start * SECTOR:(start + count) * SECTOR])
    check_clean(path)
    same_as(tmp, path, bytes(want))
    # Only the clusters written were allocated.
    lo, hi = start * SECTOR // cluster * cluster, -(-(start + count) * SECTOR // cluster) * cluster
    assert allocated(path, 0, size) == hi - lo


@pytest.mark.parametrize("base_fmt", ["raw", "qcow2"])
@pytest.mark.parametrize("runner", BLK_RUNNERS)
def test_qcow2_backing_file_reads_and_copy_on_write(kvm, vms, tmp, runner, base_fmt):
    """The guest reads the backing file through the top image; a partial
    write copies the rest of each cluster from it; the backing file is not
    touched."""
    size = 4 * MiB
    data = os.urandom(size)
    base_raw = os.path.join(tmp, "base.raw")
    with open(base_raw, "wb") as f:
        f.write(data)
    base = base_raw
    if base_fmt == "qcow2":
        base = os.path.join(tmp, "base.qcow2")
        qemu_img("convert", "-f", "raw", "-O", "qcow2", "-o", "cluster_size=4096", base_raw, base)
    with open(base, "rb") as f:
        base_bytes = f.read()
    # The header names the backing file relative to the top's directory.
    top = create(tmp, "top.qcow2", size, backing=os.path.basename(base), backing_fmt=base_fmt)
    start, count = 301, 199
    g = runner.start(vms, tmp, "kvmmtest.virtio=blk kvmmtest.blk0.read=0+8192 "
                               f"kvmmtest.blk0.write={start}+{count}",
                     [Disk(top, "t0", fmt="qcow2", backing=[(base, base_fmt)])])
    finish(g)
    assert int(by_dev(g, "pass", "virtio-blk-read")["blk0"]["crc32"], 16) == zlib.crc32(data)
    want = bytearray(data)
    want[start * SECTOR:(start + count) * SECTOR] = patterns(start, count)
    check_clean(top)
    same_as(tmp, top, bytes(want))
    with open(base, "rb") as f:
        assert f.read() == base_bytes
    assert allocated(top, 0, size) == 2 * 65536       # the two clusters written


@pytest.mark.parametrize("runner", BLK_RUNNERS)
def test_qcow2_fragmented_clusters(kvm, vms, tmp, runner):
    """4 KiB clusters allocated in reverse order: each of the guest's
    64 KiB requests lands in 16 runs of the file (on io_uring, one host
    request each), read and then rewritten in place."""
    n, cs = 256, 4096
    path = create(tmp, "f.qcow2", n * cs, "1.1", cs)
    qemu_io(path, "qcow2", *[f"write -P {i & 0xff} {(n - 1 - i) * cs} {cs}" for i in range(n)])
    want = bytearray(b"".join(bytes([(n - 1 - c) & 0xff]) * cs for c in range(n)))
    r = json.loads(qemu_img("map", "--output=json", path).stdout)
    assert len([e for e in r if e["data"]]) >= n // 2        # really scattered
    g = runner.start(vms, tmp, f"kvmmtest.virtio=blk kvmmtest.blk0.read=0+{n * cs // SECTOR} "
                               f"kvmmtest.blk0.write=8+{n * cs // SECTOR - 16}",
                     [Disk(path, "f0", fmt="qcow2")])
    finish(g)
    assert int(by_dev(g, "pass", "virtio-blk-read")["blk0"]["crc32"], 16) == zlib.crc32(want)
    want[8 * SECTOR:n * cs - 8 * SECTOR] = patterns(8, n * cs // SECTOR - 16)
    check_clean(path)
    same_as(tmp, path, bytes(want))
    assert allocated(path, 0, n * cs) == n * cs


def qemu_io_image(tmp, compat):
    """An image qemu-io wrote: plain, partial, compressed and (v3) zeroed
    clusters; and the disk it shows."""
    size = 4 * MiB
    path = create(tmp, "io.qcow2", size, compat)
    cmds = ["write -P 0xab 0 70k", "write -P 0x5c 1M 4k", "write -c -P 0x33 2M 64k",
            "write -P 0x77 3M 128k", "write -z 3M 64k"]
    qemu_io(path, "qcow2", *cmds)
    want = bytearray(size)
    want[0:70 << 10] = b"\xab" * (70 << 10)
    want[MiB:MiB + 4096] = b"\x5c" * 4096
    want[2 * MiB:2 * MiB + 65536] = b"\x33" * 65536
    want[3 * MiB + 65536:3 * MiB + 131072] = b"\x77" * 65536
    return path, bytes(want)


@pytest.mark.parametrize("compat", ["0.10", "1.1"])
@pytest.mark.parametrize("runner", BLK_RUNNERS)
def test_qcow2_guest_reads_what_qemu_io_wrote(kvm, vms, tmp, runner, compat):
    path, want = qemu_io_image(tmp, compat)
    g = runner.start(vms, tmp, "kvmmtest.virtio=blk kvmmtest.blk0.read=0+8192",
                     [Disk(path, "r0", fmt="qcow2")])
    finish(g)
    assert int(by_dev(g, "pass", "virtio-blk-read")["blk0"]["crc32"], 16) == zlib.crc32(want)
    check_clean(path)


@pytest.mark.parametrize("runner", BLK_RUNNERS)
def test_qcow2_overwriting_a_compressed_cluster(kvm, vms, tmp, runner):
    """A write into a compressed cluster moves it to a new one with the
    rest of the old content; the old one's refcount drops (check clean)."""
    path, want = qemu_io_image(tmp, "1.1")
    start, count = 2 * MiB // SECTOR + 10, 20
    g = runner.start(vms, tmp, f"kvmmtest.virtio=blk kvmmtest.blk0.write={start}+{count}",
                     [Disk(path, "c0", fmt="qcow2")])
    finish(g)
    want = bytearray(want)
    want[start * SECTOR:(start + count) * SECTOR] = patterns(start, count)
    check_clean(path)
    same_as(tmp, path, bytes(want))


@pytest.mark.parametrize("compat", ["0.10", "1.1"])
@pytest.mark.parametrize("runner", BLK_RUNNERS)
def test_qcow2_discard_and_write_zeroes(kvm, vms, tmp, runner, compat):
    """DISCARD of whole clusters deallocates them (qemu-img map);
    WRITE_ZEROES reads back zeros, partial clusters included."""
    size = 4 * MiB
    path = create(tmp, "z.qcow2", size, compat)
    qemu_io(path, "qcow2", f"write -P 0x42 0 {size}")
    assert allocated(path, MiB, MiB) == MiB
    g = runner.start(vms, tmp, "kvmmtest.virtio=blk kvmmtest.blk0.zeroes=100+300 "
                               "kvmmtest.blk0.discard=2048+2048", [Disk(path, "z0", fmt="qcow2")])
    finish(g)
    assert "blk0" in by_dev(g, "pass", "virtio-blk-discard")
    assert "blk0" in by_dev(g, "pass", "virtio-blk-write-zeroes")
    check_clean(path)
    assert allocated(path, MiB, MiB) == 0
    want = bytearray(b"\x42" * size)
    want[100 * SECTOR:400 * SECTOR] = bytes(300 * SECTOR)
    want[MiB:2 * MiB] = bytes(MiB)       # no backing file: a discarded cluster reads zeros
    same_as(tmp, path, bytes(want))


def test_qcow2_discard_over_a_backing_file_reads_zeros(kvm, vms, tmp):
    """On v3 over a backing file a discarded or zeroed cluster becomes a
    zero cluster: the backing file's data does not show through."""
    size = 2 * MiB
    base = os.path.join(tmp, "base.raw")
    with open(base, "wb") as f:
        f.write(b"\x99" * size)
    top = create(tmp, "top.qcow2", size, backing="base.raw", backing_fmt="raw")
    runner = VirtioRunner("kvmm")
    g = runner.start(vms, tmp, "kvmmtest.virtio=blk kvmmtest.blk0.zeroes=256+256",
                     [Disk(top, "b0", fmt="qcow2", backing=[(base, "raw")])])
    finish(g)
    check_clean(top)
    want = bytearray(b"\x99" * size)
    want[256 * SECTOR:512 * SECTOR] = bytes(256 * SECTOR)
    same_as(tmp, top, bytes(want))
    assert allocated(top, 0, size) == 0        # a zero cluster holds no data


@pytest.mark.parametrize("cluster,new_size", [(65536, 3 * MiB), (4096, 3 << 30)])
def test_qcow2_resize_grows_the_image(kvm, vms, tmp, cluster, new_size):
    """block-resize grows the disk; with 4 KiB clusters past 1 GiB the L1
    table outgrows its cluster and moves."""
    path = create(tmp, "g.qcow2", MiB, "1.1", cluster)
    qemu_io(path, "qcow2", "write -P 0x11 0 64k")
    runner = VirtioRunner("kvmm")
    g = runner.start(vms, tmp, "kvmmtest.virtio=blk kvmmtest.blk0.resize=30",
                     [Disk(path, "g0", fmt="qcow2")])
    g.wait_for(r"KVMMTEST event virtio-blk-resize-ready dev=blk0 capacity=2048")
    runner.resize_disk(0, new_size)
    finish(g)
    assert int(by_dev(g, "pass", "virtio-blk-resize")["blk0"]["capacity"]) == new_size // SECTOR
    check_clean(path)
    info = json.loads(qemu_img("info", "--output=json", path).stdout)
    assert info["virtual-size"] == new_size
    qemu_io(path, "qcow2", "read -P 0x11 0 64k", f"read -P 0 64k {MiB - 65536}")


def test_qcow2_shrink_refused(kvm, vms, tmp):
    path = create(tmp, "s.qcow2", 2 * MiB)
    runner = VirtioRunner("kvmm")
    g = runner.start(vms, tmp, "kvmmtest.virtio=blk kvmmtest.blk0.resize=30",
                     [Disk(path, "s0", fmt="qcow2")])
    g.wait_for(r"KVMMTEST event virtio-blk-resize-ready")
    api = kvmmtest.Api(runner.sock)
    try:
        r = api.call("block-resize", {"device": "disk0", "size": MiB})
        assert "error" in r and "Operation not supported" in r["error"]["message"], r
        assert api.call("block-resize", {"device": "disk0", "size": 3 * MiB})["return"] == {}
    finally:
        api.close()
    finish(g)
    check_clean(path)


# --- refusals --------------------------------------------------------------

def refused(tmp, disk):
    """kvmm started with --disk disk exits 1 with one error line."""
    r = subprocess.run([KVMM, "--kernel", GUEST, "--serial", "none", "--memory", "64M",
                        "--disk", disk], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1, (r.returncode, r.stderr)
    lines = [ln for ln in r.stderr.splitlines() if "error" in ln]
    assert len(lines) == 1, r.stderr
    return lines[0]


def patch(path, off, fmt, value):
    with open(path, "r+b") as f:
        f.seek(off)
        f.write(struct.pack(fmt, value))


def test_qcow2_backing_chain_refusals(tmp):
    size = MiB
    base = os.path.join(tmp, "base.raw")
    other = os.path.join(tmp, "other.raw")
    for p in (base, other):
        with open(p, "wb") as f:
            f.write(bytes(size))
    top = create(tmp, "top.qcow2", size, backing="base.raw", backing_fmt="raw")
    before = open(top, "rb").read()
    assert "which the configuration does not allow" in refused(tmp, f"path={top},format=qcow2")
    assert "not " + other in refused(tmp, f"path={top},format=qcow2,backing={other}")
    assert "backing_format= says qcow2" in refused(
        tmp, f"path={top},format=qcow2,backing={base},backing_format=qcow2")
    assert "has no backing file" in refused(
        tmp, f"path={top},format=qcow2,backing={base}:{other}")
    assert "a raw image has no backing file" in refused(tmp, f"path={base},backing={other}")
    # a -> b -> a
    b = create(tmp, "b.qcow2", size)
    a = create(tmp, "a.qcow2", size, backing="b.qcow2", backing_fmt="qcow2")
    qemu_img("rebase", "-u", "-b", "a.qcow2", "-F", "qcow2", b)
    assert "loops" in refused(tmp, f"path={a},format=qcow2,backing={b}:{a},"
                                   "backing_format=qcow2:qcow2")
    # The image itself was not changed by any of that.
    assert open(top, "rb").read() == before


def test_qcow2_unsupported_features_refused(tmp):
    size = MiB
    ext = create(tmp, "ext.qcow2", size, extra=["-o", "extended_l2=on"])
    assert "extended L2" in refused(tmp, f"path={ext},format=qcow2")
    df = create(tmp, "df.qcow2", size, extra=["-o", f"data_file={tmp}/df.raw"])
    assert "external data file" in refused(tmp, f"path={df},format=qcow2")
    snap = create(tmp, "snap.qcow2", size)
    qemu_img("snapshot", "-c", "s1", snap)
    assert "internal snapshots" in refused(tmp, f"path={snap},format=qcow2")
    # crypt_method set in the header, as qemu-img's AES (1) and LUKS (2) images
    # have it. Not made by qemu-img: its LUKS key derivation times itself by
    # CPU usage, which fails on machines that cannot report it.
    for method in (1, 2):
        enc = create(tmp, f"enc{method}.qcow2", size)
        patch(enc, 32, ">I", method)
        assert "encrypted" in refused(tmp, f"path={enc},format=qcow2")
    dirty = create(tmp, "dirty.qcow2", size)
    patch(dirty, 72, ">Q", 1)
    assert "is dirty" in refused(tmp, f"path={dirty},format=qcow2")
    bad = create(tmp, "corrupt.qcow2", size)
    patch(bad, 72, ">Q", 2)
    assert "marked corrupt" in refused(tmp, f"path={bad},format=qcow2")
    raw = os.path.join(tmp, "plain.raw")
    with open(raw, "wb") as f:
        f.write(bytes(size))
    assert "not a qcow2 image" in refused(tmp, f"path={raw},format=qcow2")
    assert "format 'vmdk' is unknown" in refused(tmp, f"path={raw},format=vmdk")


@pytest.mark.parametrize("off,fmt,value,words", [
    (4, ">I", 4, "version 4"),
    (20, ">I", 30, "cluster_bits 30"),
    (20, ">I", 8, "cluster_bits 8"),
    (36, ">I", 0, "L1 table"),                        # too small for the size
    (40, ">Q", 1 << 40, "L1 table offset"),
    (40, ">Q", 0x10001, "L1 table offset"),
    (48, ">Q", 1 << 40, "refcount table"),
    (56, ">I", 0, "refcount table"),
    (56, ">I", 1 << 20, "refcount table"),
    (100, ">I", 1 << 20, "header_length"),
    (96, ">I", 7, "refcount_order 7"),
    (8, ">Q", 100, "backing file name"),             # inside the header
    (72, ">Q", 1 << 20, "incompatible features"),
], ids=lambda v: str(v))
def test_qcow2_bogus_header_refused(tmp, off, fmt, value, words):
    path = create(tmp, "h.qcow2", 4 * MiB)
    if off == 8:
        patch(path, 16, ">I", 8)
    patch(path, off, fmt, value)
    before = open(path, "rb").read()
    assert words in refused(tmp, f"path={path},format=qcow2")
    assert open(path, "rb").read() == before


def l2_entry_offset(path, vcluster):
    """Where the L2 entry of disk cluster vcluster lies (64 KiB clusters)."""
    with open(path, "rb") as f:
        h = f.read(72)
        l1_off = struct.unpack(">Q", h[40:48])[0]
        f.seek(l1_off + 8 * (vcluster >> 13))
        l2 = struct.unpack(">Q", f.read(8))[0] & 0x00fffffffffffe00
    return l2 + 8 * (vcluster & 8191)


COPIED = 1 << 63


@pytest.mark.parametrize("entry,words", [
    (COPIED | (1 << 40), "past the end of the file"),
    (COPIED | 0x10200, "not cluster-aligned"),
    ("l1", "overlaps the image's header or tables"),
])
def test_qcow2_hostile_l2_entry_is_an_io_error(kvm, vms, tmp, entry, words):
    """A data cluster pointing outside the file, unaligned, or over the
    L1 table: the guest's requests fail, kvmm says why once and goes on,
    the file is not written."""
    path = create(tmp, "h.qcow2", 4 * MiB)
    qemu_io(path, "qcow2", "write -P 0x55 0 128k")
    e = entry
    if entry == "l1":
        with open(path, "rb") as f:
            e = COPIED | struct.unpack(">Q", f.read(48)[40:48])[0]
    patch(path, l2_entry_offset(path, 1), ">Q", e)
    before = open(path, "rb").read()
    runner = VirtioRunner("kvmm")
    g = runner.start(vms, tmp, "kvmmtest.virtio=blk kvmmtest.blk0.read=0+256 "
                               "kvmmtest.blk0.write=128+8", [Disk(path, "h0", fmt="qcow2")])
    g.wait_for(r"KVMMTEST done", timeout=60)
    assert g.wait_exit() == 0
    fails = [t for k, t in g.records("fail")]
    assert any("virtio-blk-read" in t or "status=ioerr" in t for t in fails), fails
    assert any("virtio-blk-write" in t for t in fails), fails
    err = g.stderr.decode()
    assert words in err and err.count("is corrupt") == 1, err
    assert open(path, "rb").read() == before


def check_json(path):
    r = qemu_img("check", "--output=json", path, check=False)
    return r.returncode, json.loads(r.stdout)


def test_qcow2_killed_after_flush_keeps_what_was_flushed(kvm, vms, tmp):
    """The guest's FLUSH completes only once the tables are in the file:
    kvmm killed right after leaves a clean image showing the writes."""
    size = 4 * MiB
    path = create(tmp, "k.qcow2", size, "1.1", 4096)
    start, count = 1000, 3000
    runner = VirtioRunner("kvmm")
    g = runner.start(vms, tmp, f"kvmmtest.virtio=blk kvmmtest.blk0.write={start}+{count} "
                               "kvmmtest.blk0.resize=60", [Disk(path, "k0", fmt="qcow2")])
    g.wait_for(r"KVMMTEST pass virtio-blk-write dev=blk0")
    g.kill()
    rc, info = check_json(path)
    assert rc == 0 and not info.get("corruptions") and not info.get("leaks"), info
    want = bytearray(size)
    want[start * SECTOR:(start + count) * SECTOR] = patterns(start, count)
    same_as(tmp, path, bytes(want))


def test_qcow2_killed_while_allocating_is_not_corrupt(kvm, vms, tmp):
    """kvmm killed in the middle of allocating writes, with caches of two
    tables so that L2 tables and refcount blocks keep leaving them (and
    reaching the file) as it goes: the image may leak clusters but holds
    no corruption."""
    size = 256 * MiB
    path = create(tmp, "c.qcow2", size, "1.1", 4096)     # a refcount block per 8 MiB
    start_size = os.path.getsize(path)
    g = kvmmtest.start(vms, ["env", "KVMM_QCOW2_CACHE_TABLES=2"] + kvmmtest.kvmm_argv(
        "kvmmtest.virtio=blk kvmmtest.blk0.bench=seqwrite "
        f"kvmmtest.blk0.bs={256 << 10} kvmmtest.blk0.qd=8", 1, "256M",
        ["--disk", f"path={path},format=qcow2,cache=none"]))
    try:
        # Killed once data is landing in new clusters (the file grows).
        deadline = time.monotonic() + 120
        while os.path.getsize(path) <= start_size + 24 * MiB:
            assert time.monotonic() < deadline and g.proc.poll() is None, \
                "the image never grew:\n" + "\n".join(g.lines[-20:])
            time.sleep(0.02)        # polling the condition
    finally:
        g.kill()
    rc, info = check_json(path)
    assert rc in (0, 3) and not info.get("corruptions"), info
    # Refcount blocks did reach the file ahead of the tables using them.
    assert info.get("leaks", 0) > 0, info
