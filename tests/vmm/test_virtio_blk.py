"""virtio-blk under QEMU and kvmm (on both of kvmm's I/O paths), driven
by the test guest; kvmm's disks on its control socket."""
import json
import os
import re
import time
import zlib

import pytest

import kvmmtest
from virtiotest import (
    SECTOR, Disk, VirtioRunner, BLK_RUNNERS, by_dev, no_failures, finish, msix_delivered,
    pattern, make_image, read)


@pytest.mark.parametrize("runner", BLK_RUNNERS)
def test_virtio_blk_reads_what_the_host_wrote(kvm, vms, tmp, runner):
    path, data = make_image(tmp, "d0.img", 4 << 20)
    g = runner.start(vms, tmp, "kvmmtest.virtio=blk kvmmtest.blk0.read=100+2000",
                     [Disk(path, "SER-d0")])
    finish(g)
    cfg = by_dev(g, "info", "virtio-blk")["blk0"]
    assert int(cfg["capacity"]) == len(data) // SECTOR
    assert cfg["serial"] == "SER-d0" and cfg["blk_size"] == "512" and cfg["ro"] == "0"
    r = by_dev(g, "pass", "virtio-blk-read")["blk0"]
    assert (r["sector"], r["count"]) == ("100", "2000")
    assert int(r["crc32"], 16) == zlib.crc32(data[100 * SECTOR:2100 * SECTOR])
    msix_delivered(g, "blk0")


@pytest.mark.parametrize("runner", BLK_RUNNERS)
def test_virtio_blk_guest_writes_reach_the_file(kvm, vms, tmp, runner):
    path, data = make_image(tmp, "d0.img", 1 << 20)
    start, count = 300, 200        # crosses the guest's 64 KiB request size
    g = runner.start(vms, tmp, f"kvmmtest.virtio=blk kvmmtest.blk0.write={start}+{count}",
                     [Disk(path, "w0")])
    finish(g)
    assert by_dev(g, "pass", "virtio-blk-flush")["blk0"] is not None
    want = b"".join(pattern(s) for s in range(start, start + count))
    after = read(path)
    assert after[start * SECTOR:(start + count) * SECTOR] == want
    assert after[:start * SECTOR] == data[:start * SECTOR]
    assert after[(start + count) * SECTOR:] == data[(start + count) * SECTOR:]
    assert int(by_dev(g, "pass", "virtio-blk-write")["blk0"]["crc32"], 16) == zlib.crc32(want)


@pytest.mark.parametrize("runner", BLK_RUNNERS)
def test_virtio_blk_read_only_disk_refuses_writes(kvm, vms, tmp, runner):
    path, data = make_image(tmp, "ro.img", 1 << 20)
    g = runner.start(vms, tmp, "kvmmtest.virtio=blk kvmmtest.blk0.write=0+8",
                     [Disk(path, "ro0", readonly=True)])
    finish(g)
    assert by_dev(g, "info", "virtio-blk")["blk0"]["ro"] == "1"
    refused = by_dev(g, "pass", "virtio-blk-ro")["blk0"]
    assert refused.get("status") in ("ioerr", "unsupp")
    assert read(path) == data


@pytest.mark.parametrize("runner", BLK_RUNNERS)
def test_virtio_blk_write_zeroes_and_discard(kvm, vms, tmp, runner):
    path, data = make_image(tmp, "d0.img", 1 << 20)
    g = runner.start(vms, tmp, "kvmmtest.virtio=blk kvmmtest.blk0.zeroes=64+64 "
                               "kvmmtest.blk0.discard=512+128", [Disk(path, "z0")])
    finish(g)
    cfg = by_dev(g, "info", "virtio-blk")["blk0"]
    after = read(path)
    # Both are offered (kvmm always; QEMU by default on a raw file) and the
    # guest ran them.
    assert (cfg["write_zeroes"], cfg["discard"]) == ("1", "1"), cfg
    assert "blk0" in by_dev(g, "pass", "virtio-blk-write-zeroes")
    assert after[64 * SECTOR:128 * SECTOR] == bytes(64 * SECTOR)
    assert "blk0" in by_dev(g, "pass", "virtio-blk-discard")
    assert after[:64 * SECTOR] == data[:64 * SECTOR]
    assert after[128 * SECTOR:512 * SECTOR] == data[128 * SECTOR:512 * SECTOR]
    assert after[640 * SECTOR:] == data[640 * SECTOR:]


@pytest.mark.parametrize("runner", BLK_RUNNERS)
def test_virtio_blk_several_disks(kvm, vms, tmp, runner):
    disks = []
    for i, (size, bs, ro) in enumerate([(1 << 20, 512, False), (3 << 20, 4096, False),
                                        (2 << 20, 512, True)]):
        path, data = make_image(tmp, f"d{i}.img", size)
        disks.append((Disk(path, f"disk-{i}", readonly=ro, blk_size=bs), data))
    cmdline = ("kvmmtest.virtio=blk kvmmtest.blk0.read=0+128 kvmmtest.blk1.read=8+256 "
               "kvmmtest.blk2.read=1000+48 kvmmtest.blk1.write=16+32")
    g = runner.start(vms, tmp, cmdline, [d for d, _ in disks])
    finish(g)
    cfg = by_dev(g, "info", "virtio-blk")
    reads = by_dev(g, "pass", "virtio-blk-read")
    for i, (d, data) in enumerate(disks):
        c = cfg[f"blk{i}"]
        assert int(c["capacity"]) == len(data) // SECTOR
        assert c["serial"] == d.serial and int(c["blk_size"]) == d.blk_size
        assert c["ro"] == ("1" if d.readonly else "0")
        r = reads[f"blk{i}"]
        s, n = int(r["sector"]), int(r["count"])
        assert int(r["crc32"], 16) == zlib.crc32(data[s * SECTOR:(s + n) * SECTOR])
        msix_delivered(g, f"blk{i}")
    after = read(disks[1][0].path)
    assert after[16 * SECTOR:48 * SECTOR] == b"".join(pattern(s) for s in range(16, 48))
    assert read(disks[0][0].path) == disks[0][1]


@pytest.mark.parametrize("runner", BLK_RUNNERS)
@pytest.mark.parametrize("mode,bs,qd", [("seqread", 65536, 8), ("seqwrite", 65536, 8),
                                        ("randread", 4096, 16)])
def test_virtio_blk_bench_mode_counts_what_it_did(kvm, vms, tmp, runner, mode, bs, qd):
    """tools/bench/disk's load: the record adds up, nothing failed, and a
    sequential write put its bytes in the file."""
    size, total = 8 << 20, 3 << 20
    path, data = make_image(tmp, "b0.img", size)
    g = runner.start(vms, tmp, f"kvmmtest.virtio=blk kvmmtest.blk0.bench={mode} "
                               f"kvmmtest.blk0.bs={bs} kvmmtest.blk0.qd={qd} "
                               f"kvmmtest.blk0.bytes={total}", [Disk(path, "b0")])
    finish(g)
    rec = by_dev(g, "info", "blk-bench")["blk0"]
    assert (rec["mode"], int(rec["bs"]), int(rec["qd"])) == (mode, bs, qd)
    assert int(rec["reqs"]) == total // bs and int(rec["bytes"]) == int(rec["reqs"]) * bs
    assert rec["errors"] == "0" and int(rec["ns"]) > 0
    assert 0 < int(rec["kicks"]) <= int(rec["reqs"])
    assert by_dev(g, "pass", "virtio-blk-bench")["blk0"]["reqs"] == rec["reqs"]
    after = read(path)
    if mode == "seqwrite":
        assert after[:total] == b"\x5a" * total and after[total:] == data[total:]
    else:
        assert after == data


@pytest.mark.parametrize("runner", BLK_RUNNERS)
def test_virtio_blk_reset_with_requests_in_flight(kvm, vms, tmp, runner):
    """The driver resets the device under qd reads, brings it up again and
    gets exactly its one new read back."""
    path, _ = make_image(tmp, "r0.img", 16 << 20)
    g = runner.start(vms, tmp, "kvmmtest.virtio=blk kvmmtest.blk0.bench=seqread "
                               "kvmmtest.blk0.bs=262144 kvmmtest.blk0.qd=16 "
                               "kvmmtest.blk0.abort=1", [Disk(path, "r0")])
    finish(g)
    assert "blk0" in by_dev(g, "pass", "virtio-blk-bench-reset")


@pytest.mark.parametrize("runner", BLK_RUNNERS)
def test_virtio_blk_resize_raises_a_config_interrupt(kvm, vms, tmp, runner):
    path, _ = make_image(tmp, "d0.img", 1 << 20)
    g = runner.start(vms, tmp, "kvmmtest.virtio=blk kvmmtest.blk0.resize=30",
                     [Disk(path, "rs0")])
    g.wait_for(r"KVMMTEST event virtio-blk-resize-ready dev=blk0 capacity=2048")
    runner.resize_disk(0, 3 << 20)
    finish(g)
    r = by_dev(g, "pass", "virtio-blk-resize")["blk0"]
    assert int(r["capacity"]) == (3 << 20) // SECTOR
    assert int(r["config_interrupts"]) > 0
    assert os.path.getsize(path) == 3 << 20


def test_kvmm_blk_shrink_and_resize_refusals(kvm, vms, tmp):
    """block-resize by path shrinks the image and the guest reads only the
    new size; bad requests are refused with a line naming the fix and
    change nothing."""
    path, data = make_image(tmp, "d0.img", 1 << 20)
    ro, _ = make_image(tmp, "ro.img", 1 << 20)
    runner = VirtioRunner("kvmm")
    g = runner.start(vms, tmp, "kvmmtest.virtio=blk kvmmtest.blk0.resize=30",
                     [Disk(path, "rs0"), Disk(ro, "ro1", readonly=True)])
    g.wait_for(r"KVMMTEST event virtio-blk-resize-ready dev=blk0 capacity=2048")
    api = kvmmtest.Api(runner.sock)
    for args, code, words in [
            ({"device": "disk1", "size": 2 << 20}, "GenericError", "read-only"),
            ({"device": ro, "size": 2 << 20}, "GenericError", "read-only"),
            ({"device": "disk7", "size": 2 << 20}, "InvalidArgument", "no disk 'disk7'"),
            ({"device": "disk0", "size": 1000}, "InvalidArgument", "multiple of the block size"),
            ({"device": "disk0", "size": 0}, "InvalidArgument", "positive"),
            ({"device": "disk0"}, "InvalidArgument", "block-resize takes arguments"),
            (None, "InvalidArgument", "block-resize takes arguments")]:
        r = api.call("block-resize", args)
        assert r["error"]["code"] == code, (args, r)
        assert words in r["error"]["message"], (args, r)
    assert os.path.getsize(path) == 1 << 20 and os.path.getsize(ro) == 1 << 20
    assert api.call("block-resize", {"device": path, "size": 512 << 10})["return"] == {}
    finish(g)
    r = by_dev(g, "pass", "virtio-blk-resize")["blk0"]
    assert int(r["capacity"]) == (512 << 10) // SECTOR
    assert int(r["config_interrupts"]) > 0
    assert os.path.getsize(path) == 512 << 10
    with open(path, "rb") as f:
        assert f.read() == data[:512 << 10]


def dirty_pages(path):
    """(dirty, under writeback) pages of path in the host's page cache, by
    cachestat(2) (Linux 6.5); None where the kernel has no cachestat."""
    import ctypes
    import struct
    libc = ctypes.CDLL(None, use_errno=True)
    whole = ctypes.create_string_buffer(struct.pack("QQ", 0, 0))   # offset 0, length 0: all
    out = ctypes.create_string_buffer(48)
    fd = os.open(path, os.O_RDONLY)
    try:
        r = libc.syscall(451, fd, whole, out, 0)      # __NR_cachestat on x86-64
    finally:
        os.close(fd)
    if r < 0:
        assert ctypes.get_errno() == 38, os.strerror(ctypes.get_errno())   # ENOSYS
        return None
    _, dirty, writeback, _, _ = struct.unpack("5Q", out.raw[:40])
    return dirty, writeback


def block_stats(sock):
    api = kvmmtest.Api(sock)
    try:
        r = api.call("query-block-stats")
        api.call("quit")
    finally:
        api.close()
    return r["return"]


@pytest.mark.parametrize("cache,synced", [("none", True), ("writeback", True), ("unsafe", False)])
@pytest.mark.parametrize("sync", [False, True], ids=["io_uring", "sync"])
def test_kvmm_blk_flush_syncs_the_host_per_cache_mode(kvm, vms, tmp, cache, synced, sync):
    """A guest FLUSH is a sync of the image on the host with cache=none and
    writeback, and none with unsafe: counted where kvmm issues it
    (sync_operations) and, on the preadv/pwritev path, seen by strace as
    fdatasync() calls.  What the guest wrote is in the file."""
    path, data = make_image(tmp, "d0.img", 1 << 20)
    start, count = 40, 100
    sock = os.path.join(tmp, "api.sock")
    trace = os.path.join(tmp, "syncs.trace")
    argv = kvmmtest.kvmm_argv(
        f"kvmmtest.virtio=blk kvmmtest.blk0.write={start}+{count} kvmmtest.action=wait",
        1, "256M", ["--disk", f"path={path},cache={cache}", "--api-socket", sock])
    if sync:
        # Only the sync calls stop in strace (seccomp filter): the guest
        # runs at its usual pace.
        argv = ["env", "KVMM_NO_IO_URING=1", "strace", "-f", "-qq", "--seccomp-bpf",
                "-e", "trace=fdatasync,fsync", "-o", trace] + argv
    g = kvmmtest.start(vms, argv)
    try:
        check_flush_syncs(g, sock, path, data, start, count, cache, synced, sync and trace)
    finally:
        # Under strace kvmm is strace's child: killing strace alone (as
        # the vms fixture does) would leave kvmm running.
        for kid in child_pids(g.proc.pid):
            os.kill(kid, 9)


def child_pids(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(k) for k in f.read().split()]
    except FileNotFoundError:
        return []


def check_flush_syncs(g, sock, path, data, start, count, cache, synced, trace):
    g.wait_for(r"KVMMTEST done", timeout=60)
    no_failures(g)
    assert "blk0" in by_dev(g, "pass", "virtio-blk-flush")
    # The flush left nothing of the image dirty in the host's cache (the
    # guest writes nothing after it).  Only writeback goes through the
    # cache; unsafe may or may not have been written back by now.
    dirty = dirty_pages(path)
    if cache == "writeback" and dirty is not None:
        assert dirty == (0, 0), dirty
    st = block_stats(sock)[0]
    g.wait_exit()
    assert st["flush_operations"] >= 1 and st["errors"] == 0, st
    assert st["sync_operations"] == (st["flush_operations"] if synced else 0), st
    if trace:
        with open(trace) as f:
            calls = [line for line in f if re.search(r"\bf(data)?sync\(", line)]
        assert len(calls) == st["sync_operations"], calls
    after = read(path)
    assert after[start * SECTOR:(start + count) * SECTOR] == \
        b"".join(pattern(s) for s in range(start, start + count))
    assert after[:start * SECTOR] == data[:start * SECTOR]


@pytest.mark.parametrize("sync", [False, True], ids=["io_uring", "sync"])
def test_kvmm_blk_stats_on_the_control_socket(kvm, vms, tmp, sync):
    import jsonschema
    schema = json.load(open(os.path.join(os.path.dirname(__file__), "..", "..",
                                         "schemas", "api.schema.json")))
    d0, _ = make_image(tmp, "d0.img", 1 << 20)
    d1, _ = make_image(tmp, "d1.img", 1 << 20)
    sock = os.path.join(tmp, "api.sock")
    env = ["env", "KVMM_NO_IO_URING=1"] if sync else []
    t0 = time.monotonic()
    g = kvmmtest.start(vms, env + kvmmtest.kvmm_argv(
        "kvmmtest.virtio=blk kvmmtest.blk0.write=16+32 kvmmtest.blk1.write=0+8 "
        "kvmmtest.action=wait", 1, "256M",
        ["--disk", f"path={d0}", "--disk", f"path={d1},readonly=on", "--api-socket", sock]))
    g.wait_for(r"KVMMTEST done", timeout=60)
    api = kvmmtest.Api(sock)
    r = api.call("query-block-stats")
    api.call("quit")
    g.wait_exit()
    st = r["return"]
    jsonschema.validate(st, {**schema["$defs"]["block-stats"], "$defs": schema["$defs"]})
    assert [s["device"] for s in st] == ["disk0", "disk1"]
    assert [s["path"] for s in st] == [d0, d1]
    assert st[0]["wr_bytes"] == 32 * SECTOR and st[0]["wr_operations"] >= 1
    assert st[0]["flush_operations"] >= 1 and st[0]["rd_bytes"] >= 32 * SECTOR
    assert st[0]["sync_operations"] == st[0]["flush_operations"]
    assert st[1]["sync_operations"] == 0                             # read-only
    assert st[0]["other_operations"] >= 1 and st[0]["errors"] == 0   # GET_ID
    assert st[1]["wr_bytes"] == 0 and st[1]["errors"] >= 1            # refused writes
    # Each request's time is counted: positive where requests ran, and
    # at most what the guest's whole run took.
    run_ns = (time.monotonic() - t0) * 1e9
    for k in ("rd_total_time_ns", "wr_total_time_ns", "flush_total_time_ns"):
        assert 0 < st[0][k] < run_ns, (k, st[0])


@pytest.mark.parametrize("cache,durable", [("writethrough", True), ("directsync", True),
                                           ("writeback", False)])
@pytest.mark.parametrize("sync", [False, True], ids=["io_uring", "sync"])
def test_kvmm_blk_write_is_durable_when_done_per_cache_mode(kvm, vms, tmp, cache, durable, sync):
    """writethrough and directsync: once the guest is told a write is done
    (no FLUSH), nothing of it waits in the host's page cache (cachestat:
    no dirty pages), so a host crash keeps it.  writeback, the control:
    the same write is still dirty until a FLUSH.  Killing kvmm loses none
    of it from the file."""
    path = os.path.join(tmp, "d0.img")
    data = os.urandom(1 << 20)
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())        # the test's own pages clean first
    if dirty_pages(path) is None:
        pytest.skip("the kernel has no cachestat(2)")
    assert dirty_pages(path) == (0, 0)
    start, count = 64, 256
    env = ["env", "KVMM_NO_IO_URING=1"] if sync else []
    g = kvmmtest.start(vms, env + kvmmtest.kvmm_argv(
        f"kvmmtest.virtio=blk kvmmtest.blk0.noflush={start}+{count} kvmmtest.action=wait",
        1, "256M", ["--disk", f"path={path},cache={cache}"]))
    g.wait_for(r"KVMMTEST done", timeout=60)
    no_failures(g)
    assert by_dev(g, "info", "virtio-blk-noflush")["blk0"]["write"] == "ok"
    dirty = dirty_pages(path)
    if durable:
        assert dirty == (0, 0), dirty
    else:
        assert dirty[0] + dirty[1] > 0, dirty
    g.kill()
    after = read(path)
    assert after[start * SECTOR:(start + count) * SECTOR] == \
        b"".join(pattern(s) for s in range(start, start + count))
    assert after[:start * SECTOR] == data[:start * SECTOR]


@pytest.mark.parametrize("cache,was", [("writeback", "1"), ("none", "1"), ("writethrough", "0")])
@pytest.mark.parametrize("sync", [False, True], ids=["io_uring", "sync"])
def test_kvmm_blk_guest_turns_its_write_cache_off(kvm, vms, tmp, cache, was, sync):
    """CONFIG_WCE: the writeback byte says what the cache mode is (1 but
    for writethrough); the guest sets it to 0 and from then on each write
    is durable before it completes: no FLUSH, yet nothing of it is dirty
    in the host's page cache, and kvmm synced for it (sync_operations
    with no flush_operations)."""
    path = os.path.join(tmp, "d0.img")
    with open(path, "wb") as f:
        f.write(os.urandom(1 << 20))
        f.flush()
        os.fsync(f.fileno())
    if dirty_pages(path) is None:
        pytest.skip("the kernel has no cachestat(2)")
    sock = os.path.join(tmp, "api.sock")
    start, count = 64, 256
    env = ["env", "KVMM_NO_IO_URING=1"] if sync else []
    g = kvmmtest.start(vms, env + kvmmtest.kvmm_argv(
        f"kvmmtest.virtio=blk kvmmtest.blk0.wce=0 kvmmtest.blk0.noflush={start}+{count} "
        "kvmmtest.action=wait", 1, "256M",
        ["--disk", f"path={path},cache={cache}", "--api-socket", sock]))
    g.wait_for(r"KVMMTEST done", timeout=60)
    no_failures(g)
    w = by_dev(g, "info", "virtio-blk-wce")["blk0"]
    assert (w.get("was"), w.get("now")) == (was, "0"), w
    assert by_dev(g, "info", "virtio-blk-noflush")["blk0"]["write"] == "ok"
    assert dirty_pages(path) == (0, 0)
    st = block_stats(sock)[0]
    g.wait_exit()
    assert st["flush_operations"] == 0, st
    if cache != "writethrough":        # O_DSYNC needs no sync of its own
        assert st["sync_operations"] >= 1, st
    assert read(path)[start * SECTOR:(start + count) * SECTOR] == \
        b"".join(pattern(s) for s in range(start, start + count))
