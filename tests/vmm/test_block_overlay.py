"""block-overlay (docs/api.md): a running disk switched onto a qcow2
overlay whose backing file is its image -- what external snapshots need.
The guest writes its disk sequentially all the while (the test guest's
blk bench): every write before the switch is in the image, every write
after it in the overlay only, and the guest reads its disk through the
overlay as it was.  Bad requests are refused and change nothing."""
import fcntl
import json
import os
import subprocess

import pytest

from kvmmtest import Api, kvmm_argv, start
from test_schemas import load, validator

SCHEMA = load("api.schema.json")
MiB = 1 << 20


def qemu_img(*args):
    r = subprocess.run(["qemu-img", *args], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, (args, r.stderr)
    return r.stdout


def overlay(tmp, name, backing, fmt="raw", size=None):
    path = os.path.join(tmp, name)
    extra = [str(size)] if size else []
    qemu_img("create", "-q", "-f", "qcow2", "-b", backing, "-F", fmt, path, *extra)
    return path


def prefix(data, byte):
    """How many leading bytes of DATA are BYTE."""
    return len(data) - len(data.lstrip(bytes([byte])))


def as_raw(tmp, path):
    out = os.path.join(tmp, "converted.raw")
    qemu_img("convert", "-f", "qcow2", "-O", "raw", path, out)
    with open(out, "rb") as f:
        data = f.read()
    os.unlink(out)
    return data


def test_writes_after_the_switch_go_to_the_overlay(kvm, vms, tmp):
    size = 256 * MiB
    base = os.path.join(tmp, "base.img")
    with open(base, "wb") as f:
        f.truncate(size)
    sock = os.path.join(tmp, "a.sock")
    # 4 KiB sequential writes of 0x5a, one at a time, over the first half
    # of the disk (seconds: the switch comes long before the end, which
    # is bounded by bytes, not by a time the load could overrun); then
    # ticks.
    cmdline = ("kvmmtest.virtio=blk kvmmtest.blk0.bench=seqwrite kvmmtest.blk0.qd=1 "
               f"kvmmtest.blk0.bs=4096 kvmmtest.blk0.bytes={size // 2} "
               "kvmmtest.action=live kvmmtest.tick_ms=50")
    g = start(vms, kvmm_argv(cmdline, 1, "256M", ["--api-socket", sock, "--disk", f"path={base}"]))
    api = Api(sock)
    writes = lambda: api.call("query-block-stats")["return"][0]["wr_operations"]
    first = writes()
    while writes() < first + 16:
        pass
    top = overlay(tmp, "top.qcow2", base)
    assert api.call("pause")["return"] == {}
    args = {"device": "disk0", "path": top}
    validator(SCHEMA, "block-overlay").validate(args)
    r = api.call("block-overlay", args)
    validator(SCHEMA, "reply").validate(r)
    assert r["return"] == {}, r
    assert api.call("resume")["return"] == {}
    assert api.call("query-block-stats")["return"][0]["path"] == top
    m = g.wait_for(r"KVMMTEST info blk-bench dev=blk0 .*errors=(\d+)", timeout=120)
    assert m[1] == "0", m[0]
    g.wait_for(r"KVMMTEST live n=2 ")
    assert not [l for l in g.lines if "KVMMTEST fail" in l], g.lines
    api.call("quit")
    assert g.wait_exit() == 0

    qemu_img("check", top)
    with open(base, "rb") as f:
        old = f.read()
    new = as_raw(tmp, top)
    k, n = prefix(old, 0x5a), prefix(new, 0x5a)
    # The image stopped at the switch; the overlay went on from there.
    assert 0 < k < n == size // 2, (k, n)
    assert old[k:].count(0) == size - k and new[n:].count(0) == size - n
    info = json.loads(qemu_img("info", "--output=json", top))
    assert info["backing-filename"] == base


def test_refusals_change_nothing(kvm, vms, tmp):
    base = os.path.join(tmp, "d.img")
    with open(base, "wb") as f:
        f.write(os.urandom(MiB))
    ro = os.path.join(tmp, "ro.img")
    with open(ro, "wb") as f:
        f.truncate(MiB)
    sock = os.path.join(tmp, "a.sock")
    g = start(vms, kvmm_argv("kvmmtest.action=live kvmmtest.tick_ms=50 kvmmtest.virtio=blk", 1,
                             "256M", ["--api-socket", sock, "--disk", f"path={base}",
                                      "--disk", f"path={ro},readonly=on"]))
    g.wait_for(r"KVMMTEST live n=2 ")
    api = Api(sock)
    other = os.path.join(tmp, "other.img")
    with open(other, "wb") as f:
        f.truncate(MiB)
    for args, words in [
            (None, "block-overlay takes arguments"),
            ({"device": "disk0"}, "block-overlay takes arguments"),
            ({"device": "disk7", "path": "/x"}, "no disk 'disk7'"),
            ({"device": "disk1", "path": overlay(tmp, "r.qcow2", ro)}, "read-only"),
            ({"device": "disk0", "path": os.path.join(tmp, "none.qcow2")}, "cannot open overlay"),
            # an overlay over another file: kvmm's chain check refuses it
            ({"device": "disk0", "path": overlay(tmp, "o.qcow2", other)}, "cannot open overlay"),
            ({"device": base, "path": overlay(tmp, "big.qcow2", base, size=2 * MiB)},
             "cannot change size")]:
        r = api.call("block-overlay", args)
        assert r["error"]["code"] == "InvalidArgument", (args, r)
        assert words in r["error"]["message"], (args, r)
    # Still on its image, reading it as before; then a good overlay works.
    stats = api.call("query-block-stats")["return"]
    assert [s["path"] for s in stats] == [base, ro]
    n = len([l for l in g.lines if "KVMMTEST live" in l])
    g.wait_for(rf"KVMMTEST live n={n + 2} ")
    crcs = {l.split("blk0=")[1].split()[0] for l in g.lines if "KVMMTEST live" in l}
    assert len(crcs) == 1, crcs
    r = api.call("block-overlay", {"device": base, "path": overlay(tmp, "ok.qcow2", base)})
    assert r["return"] == {}, r
    g.wait_for(rf"KVMMTEST live n={n + 5} ")
    crcs = {l.split("blk0=")[1].split()[0] for l in g.lines if "KVMMTEST live" in l}
    assert len(crcs) == 1, crcs          # the same disk, read through the overlay
    api.call("quit")
    assert g.wait_exit() == 0


def pass_fd(api, name, path):
    """PATH opened here, as a caller that may open it does, and given
    to kvmm under NAME (getfd)."""
    fd = os.open(path, os.O_RDWR)
    try:
        r = api.call("getfd", {"fdname": name}, fds=[fd])
        assert r["return"] == {}, r
    finally:
        os.close(fd)


@pytest.mark.parametrize("sandbox", [[], ["--sandbox"]], ids=["plain", "sandboxed"])
def test_overlays_passed_as_descriptors(kvm, vms, tmp, sandbox):
    """Two overlays in turn, each opened by the caller and passed
    (fdname): the only way a sandboxed kvmm, which opens no path, takes
    one.  The image and the first overlay go on as kvmm has them open
    (none reopened by path), every write lands in the layer on top at
    its time, and each overlay is locked as a disk is."""
    size = 256 * MiB
    base = os.path.join(tmp, "base.img")
    with open(base, "wb") as f:
        f.truncate(size)
    sock = os.path.join(tmp, "a.sock")
    cmdline = ("kvmmtest.virtio=blk kvmmtest.blk0.bench=seqwrite kvmmtest.blk0.qd=1 "
               f"kvmmtest.blk0.bs=4096 kvmmtest.blk0.bytes={size // 2} "
               "kvmmtest.action=live kvmmtest.tick_ms=50")
    g = start(vms, kvmm_argv(cmdline, 1, "256M",
                             ["--api-socket", sock, "--disk", f"path={base}"] + sandbox))
    api = Api(sock)
    writes = lambda: api.call("query-block-stats")["return"][0]["wr_operations"]
    tops = []
    for i in range(2):
        first = writes()
        while writes() < first + 16:
            pass
        top = overlay(tmp, f"top{i}.qcow2", tops[-1] if tops else base,
                      "qcow2" if tops else "raw")
        # By path: refused sandboxed, before anything is touched.
        if sandbox:
            r = api.call("block-overlay", {"device": "disk0", "path": top})
            assert r["error"]["code"] == "InvalidState" and "fdname" in r["error"]["message"], r
        r = api.call("block-overlay", {"device": "disk0", "fdname": f"top{i}"})
        assert r["error"]["code"] == "InvalidArgument" and "getfd" in r["error"]["message"], r
        pass_fd(api, f"top{i}", top)
        for bad in ({"device": "disk0", "fdname": ""}, {"device": "disk0", "path": ""}):
            r = api.call("block-overlay", bad)
            assert r["error"]["code"] == "InvalidArgument", (bad, r)
        assert api.call("pause")["return"] == {}
        # The first named by its descriptor, the second by "path" (only a
        # name then), and the disk by its name at the time.
        args = {"device": "fd:top0" if i else "disk0", "fdname": f"top{i}"}
        if i:
            args["path"] = top
        validator(SCHEMA, "block-overlay").validate(args)
        r = api.call("block-overlay", args)
        validator(SCHEMA, "reply").validate(r)
        assert r["return"] == {}, r
        assert api.call("resume")["return"] == {}
        assert api.call("query-block-stats")["return"][0]["path"] == (top if i else "fd:top0")
        # The name is used up with the descriptor, now the disk's.
        r = api.call("block-overlay", args)
        assert r["error"]["code"] == "InvalidArgument" and "getfd" in r["error"]["message"], r
        tops.append(top)
        with open(top, "rb") as other:
            with pytest.raises(BlockingIOError):
                fcntl.flock(other, fcntl.LOCK_SH | fcntl.LOCK_NB)
        # What is beneath is read-only now: shared, not exclusive.
        with open(tops[-2] if i else base, "rb") as other:
            fcntl.flock(other, fcntl.LOCK_SH | fcntl.LOCK_NB)
            with pytest.raises(BlockingIOError):
                fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
    m = g.wait_for(r"KVMMTEST info blk-bench dev=blk0 .*errors=(\d+)", timeout=120)
    assert m[1] == "0", m[0]
    g.wait_for(r"KVMMTEST live n=2 ")
    assert not [l for l in g.lines if "KVMMTEST fail" in l], g.lines
    api.call("quit")
    assert g.wait_exit() == 0

    for t in tops:
        qemu_img("check", t)
    with open(base, "rb") as f:
        old = f.read()
    mid, new = as_raw(tmp, tops[0]), as_raw(tmp, tops[1])
    k, j, n = prefix(old, 0x5a), prefix(mid, 0x5a), prefix(new, 0x5a)
    # Each layer stopped at its switch; the top went on to the end.
    assert 0 < k < j < n == size // 2, (k, j, n)
    assert new[n:].count(0) == size - n
    info = json.loads(qemu_img("info", "--output=json", "--backing-chain", tops[1]))
    assert [i["filename"] for i in info] == [tops[1], tops[0], base]


def test_a_descriptor_overlay_is_refused_over_a_read_only_disk(kvm, vms, tmp):
    """Refused by fdname as by path, and the descriptor stays the
    client's, for another disk."""
    base = os.path.join(tmp, "d.img")
    with open(base, "wb") as f:
        f.truncate(MiB)
    ro = os.path.join(tmp, "ro.img")
    with open(ro, "wb") as f:
        f.truncate(MiB)
    sock = os.path.join(tmp, "a.sock")
    g = start(vms, kvmm_argv("kvmmtest.action=live kvmmtest.tick_ms=50 kvmmtest.virtio=blk", 1,
                             "256M", ["--api-socket", sock, "--disk", f"path={base}",
                                      "--disk", f"path={ro},readonly=on", "--sandbox"]))
    g.wait_for(r"KVMMTEST live n=2 ")
    api = Api(sock)
    pass_fd(api, "o", overlay(tmp, "o.qcow2", base))
    r = api.call("block-overlay", {"device": "disk1", "fdname": "o"})
    assert r["error"]["code"] == "InvalidArgument" and "read-only" in r["error"]["message"], r
    assert [s["path"] for s in api.call("query-block-stats")["return"]] == [base, ro]
    r = api.call("block-overlay", {"device": "disk0", "fdname": "o"})
    assert r["return"] == {}, r
    n = len([l for l in g.lines if "KVMMTEST live" in l])
    g.wait_for(rf"KVMMTEST live n={n + 3} ")
    crcs = {l.split("blk0=")[1].split()[0] for l in g.lines if "KVMMTEST live" in l}
    assert len(crcs) == 1, crcs          # the same disk, read through the overlay
    api.call("quit")
    assert g.wait_exit() == 0
