"""The test guest's virtio drivers (modern virtio-pci, MSI-X) against
virtio devices: under QEMU now, as the reference that keeps the guest
honest to the spec; under kvmm for the devices it has (rng, blk, console, net).  The
guest's options and records are described in tests/guest/README.md."""
import json
import os
import re
import subprocess
import sys
import time
import zlib

import pytest

import kvmmtest
import netns as netns_lib

SECTOR = 512


class Disk:
    def __init__(self, path, serial, readonly=False, blk_size=512):
        self.path, self.serial, self.readonly, self.blk_size = path, serial, readonly, blk_size


class Console:
    def __init__(self, path):
        self.path = path


class Nic:
    """A virtio-net NIC on a tap device that already exists in netns."""

    def __init__(self, netns, tap, mac):
        self.netns, self.tap, self.mac = netns, tap, mac


class VirtioRunner:
    """Starts the guest with a list of devices (Disk, Console, "rng"), in
    that order on the PCI bus: the guest numbers devices of one kind in
    bus order (blk0, blk1, ...)."""

    def __init__(self, name):
        self.name = name

    def start(self, vms, tmp, cmdline, devices, memory="256M", extra=(), entry="16"):
        self.sock = os.path.join(tmp, "ctl.sock")
        if self.name.startswith("kvmm"):
            # kvmm's devices so far: rng, blk, one console and NICs.
            # Others skip until they exist.  kvmm places rng, then the
            # disks, then the console, then the NICs.
            extra_args, prefix = [], []
            for dev in devices:
                if dev == "rng":
                    extra_args.append("--rng")
                elif isinstance(dev, Disk):
                    ro = ",readonly=on" if dev.readonly else ""
                    extra_args += ["--disk", f"path={dev.path},serial={dev.serial},cache=none,"
                                             f"blk_size={dev.blk_size}{ro}"]
                elif isinstance(dev, Console) and "--console" not in extra_args:
                    # kvmm keeps what the guest writes before the test
                    # connects (docs/kvmm.md), as QEMU's wait=on does.
                    extra_args += ["--console", f"unix:{dev.path}"]
                elif isinstance(dev, Nic):
                    # kvmm runs inside the namespace, where the taps are.
                    prefix = ["ip", "netns", "exec", dev.netns]
                    extra_args += ["--net", f"tap={dev.tap},mac={dev.mac}"]
                else:
                    pytest.skip(f"kvmm has no virtio {type(dev).__name__.lower()} device yet")
            if entry != "16":
                pytest.skip("kvmm enters the guest at its 64-bit entry only")
            # kvmm-sync: the preadv/pwritev path kvmm takes without io_uring.
            env = ["env", "KVMM_NO_IO_URING=1"] if self.name == "kvmm-sync" else []
            return kvmmtest.start(vms, prefix + env + kvmmtest.kvmm_argv(
                cmdline, 1, memory, extra_args + ["--api-socket", self.sock] + list(extra)))
        args, prefix = [], []
        for i, dev in enumerate(devices):
            addr = f"addr={0x04 + i:#x}"
            if dev == "rng":
                args += ["-device", f"virtio-rng-pci,disable-legacy=on,{addr}"]
            elif isinstance(dev, Disk):
                ro = ",readonly=on" if dev.readonly else ""
                args += ["-drive", f"file={dev.path},if=none,id=d{i},format=raw,"
                                   f"cache=none,aio=io_uring{ro}",
                         "-device", f"virtio-blk-pci,drive=d{i},serial={dev.serial},"
                                    f"logical_block_size={dev.blk_size},"
                                    f"physical_block_size={dev.blk_size},"
                                    f"disable-legacy=on,{addr}"]
            elif isinstance(dev, Console):
                # wait=on: QEMU starts the guest only once the test is
                # connected, so nothing the guest writes is dropped.
                args += ["-chardev", f"socket,id=c{i},path={dev.path},server=on,wait=on",
                         "-device", f"virtio-serial-pci,disable-legacy=on,{addr}",
                         "-device", f"virtconsole,chardev=c{i}"]
            elif isinstance(dev, Nic):
                # QEMU runs inside the namespace, where the taps are.
                prefix = ["ip", "netns", "exec", dev.netns]
                args += ["-netdev", f"tap,id=n{i},ifname={dev.tap},script=no,downscript=no",
                         "-device", f"virtio-net-pci,netdev=n{i},mac={dev.mac},romfile=,"
                                    f"disable-legacy=on,{addr}"]
        args += ["-qmp", f"unix:{self.sock},server=on,wait=off"]
        argv = kvmmtest.qemu_argv(cmdline, 1, memory, args + list(extra))
        k = argv.index("-kernel") + 1
        guest_dir = os.path.dirname(kvmmtest.GUEST)
        if entry == "pvh":
            argv[k] = os.path.join(guest_dir, "kvmm-testguest-pvh.elf")
        elif entry in ("32", "64"):
            # The multiboot shim enters the bzImage as a 32/64-bit loader.
            argv[k] = os.path.join(guest_dir, "kvmm-testguest-mbshim.elf")
            argv += ["-initrd", f"{kvmmtest.GUEST} entry={entry}"]
        return kvmmtest.start(vms, prefix + argv)

    def resize_disk(self, index, size):
        """Grows disk `index` (its place in the device list) to size bytes."""
        if self.name.startswith("kvmm"):
            api = kvmmtest.Api(self.sock)
            try:
                r = api.call("block-resize", {"device": f"disk{index}", "size": size})
                assert r.get("return") == {}, r
            finally:
                api.close()
            return
        q = kvmmtest.Qmp(self.sock)
        try:
            r = q.execute("block_resize", {"device": f"d{index}", "size": size})
            assert "return" in r, r
        finally:
            q.close()


RUNNERS = [
    pytest.param(VirtioRunner("kvmm"), id="kvmm"),
    pytest.param(VirtioRunner("qemu"), id="qemu"),
]
# The blk scenarios run on both of kvmm's I/O paths.
BLK_RUNNERS = RUNNERS + [pytest.param(VirtioRunner("kvmm-sync"), id="kvmm-sync")]


def checks(g, kind, name):
    """Records `KVMMTEST <kind> <name> k=v ...` as dicts, in order."""
    out = []
    for _, text in g.records(kind):
        head, _, rest = text.partition(" ")
        if head == name:
            out.append({m.group(1): m.group(2).strip('"')
                        for m in re.finditer(r'(\w+)=("[^"]*"|\S+)', rest)})
    return out


def by_dev(g, kind, name):
    """The same, keyed by dev= (blk0, rng0...); one device's records merged."""
    out = {}
    for r in checks(g, kind, name):
        if "dev" in r:
            out.setdefault(r["dev"], {}).update(r)
    return out


def no_failures(g):
    fails = g.records("fail")
    assert not fails, f"guest self-checks failed: {fails}"


def finish(g):
    g.wait_for(r"KVMMTEST done", timeout=60)
    no_failures(g)
    assert g.wait_exit() == 0


def msix_delivered(g, dev):
    r = by_dev(g, "pass", "virtio-msix")
    assert dev in r, f"no MSI-X pass record for {dev}: {g.records('info')[-5:]}"
    assert int(r[dev]["interrupts"]) > 0


def pattern(sector):
    """What the guest writes to a sector (tests/guest/README.md)."""
    return sector.to_bytes(8, "little") + bytes((sector * 37 + i) & 0xff for i in range(8, SECTOR))


def make_image(tmp, name, size):
    path = os.path.join(tmp, name)
    data = os.urandom(size)
    with open(path, "wb") as f:
        f.write(data)
    return path, data


def read(path):
    with open(path, "rb") as f:
        return f.read()


@pytest.mark.parametrize("runner", RUNNERS)
def test_virtio_rng_gives_random_bytes(kvm, vms, tmp, runner):
    g = runner.start(vms, tmp, "kvmmtest.virtio=rng", ["rng"])
    finish(g)
    r = by_dev(g, "pass", "virtio-rng")["rng0"]
    assert r["bytes"] == "64" and int(r["distinct"]) > 16
    msix_delivered(g, "rng0")


@pytest.mark.parametrize("runner", RUNNERS)
def test_virtio_pci_functions_reported(kvm, vms, tmp, runner):
    g = runner.start(vms, tmp, "kvmmtest.virtio=rng", ["rng"])
    finish(g)
    funcs = checks(g, "info", "pci")
    virtio = [f for f in funcs if f["vendor"] == "1af4"]
    assert [(f["device"], f["class"][:2]) for f in virtio] == [("1044", "00")]
    assert int(checks(g, "pass", "pci")[0]["functions"]) == len(funcs)
    dev = by_dev(g, "info", "virtio")
    assert int(dev["rng0"]["features"], 16) & (1 << 32), "VIRTIO_F_VERSION_1 not negotiated"


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


connect = kvmmtest.connect


def read_line(s):
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = s.recv(256)
        assert chunk, f"console closed after {buf!r}"
        buf += chunk
    return buf.decode()


def console_exchange(g, s, line=b"ping 42 from the host", echo=None):
    """The greeting, then line sent and its echo read back on socket s."""
    try:
        assert read_line(s) == "KVMMTEST-HVC hello from console0\n"
        g.wait_for(r"KVMMTEST event virtio-console-ready dev=console0")
        s.sendall(line + b"\n")
        assert read_line(s) == "echo: " + (echo or line.decode()) + "\n"
    finally:
        s.close()


@pytest.mark.parametrize("runner", RUNNERS)
def test_virtio_console_writes_and_echoes(kvm, vms, tmp, runner):
    path = os.path.join(tmp, "hvc0.sock")
    g = runner.start(vms, tmp, "kvmmtest.virtio=console kvmmtest.console0.echo=20",
                     [Console(path)])
    console_exchange(g, connect(path))
    finish(g)
    assert by_dev(g, "pass", "virtio-console-echo")["console0"]["line"] == "ping 42 from the host"
    msix_delivered(g, "console0")


@pytest.mark.parametrize("runner", RUNNERS)
def test_virtio_console_input_waits_for_guest_buffers(kvm, vms, tmp, runner):
    """A 1000-byte line is more than the guest's four 128-byte receive
    buffers: the rest must wait on the host until the guest posts them
    again, not be dropped (the newline at the end would be lost, and the
    guest, which keeps the first 120 characters, would never answer)."""
    path = os.path.join(tmp, "hvc0.sock")
    g = runner.start(vms, tmp, "kvmmtest.virtio=console kvmmtest.console0.echo=20",
                     [Console(path)])
    console_exchange(g, connect(path), line=b"L" * 1000, echo="L" * 120)
    finish(g)


@pytest.mark.parametrize("runner", RUNNERS)
@pytest.mark.parametrize("kind", ["head", "loop"])
def test_virtio_malformed_rng_chain_spares_the_console(kvm, vms, tmp, runner, kind):
    """A hostile chain on the rng's queue breaks the rng alone: the
    console beside it still greets and echoes."""
    path = os.path.join(tmp, "hvc0.sock")
    g = runner.start(vms, tmp, f"kvmmtest.virtio=rng,console kvmmtest.rng0.malformed={kind} "
                               "kvmmtest.console0.echo=20", ["rng", Console(path)])
    console_exchange(g, connect(path))
    finish(g)
    rng_survived_malformed(g, kind)


def test_kvmm_console_on_a_pty_named_by_status(kvm, vms, tmp):
    """--console pty: query-status says where the console is (as the
    daemon will need), and the pty carries both directions."""
    import jsonschema
    sock = os.path.join(tmp, "api.sock")
    g = kvmmtest.start(vms, kvmmtest.kvmm_argv(
        "kvmmtest.virtio=console kvmmtest.console0.echo=20", 1, "256M",
        ["--console", "pty", "--api-socket", sock]))
    st = kvmmtest.Api(sock).call("query-status")["return"]
    with open(os.path.join(kvmmtest.TOP, "schemas", "api.schema.json")) as f:
        schema = json.load(f)
    jsonschema.Draft202012Validator({"$schema": schema["$schema"], "$defs": schema["$defs"],
                                     "$ref": "#/$defs/status"}).validate(st)
    assert st["console"]["mode"] == "pty" and "serial" not in st
    fd = os.open(st["console"]["path"], os.O_RDWR | os.O_NOCTTY)
    assert os.isatty(fd)
    console_exchange(g, PtyLines(fd))
    finish(g)


class PtyLines:
    """Just enough of a socket over a pty for console_exchange."""

    def __init__(self, fd):
        self.fd = fd

    def recv(self, n):
        import select
        assert select.select([self.fd], [], [], 20)[0], "nothing on the pty"
        return os.read(self.fd, n)

    def sendall(self, data):
        os.write(self.fd, data)

    def close(self):
        os.close(self.fd)


def test_kvmm_console_on_stdio(kvm, tmp):
    """--console stdio (the serial port elsewhere): the greeting on kvmm's
    stdout, a line on its stdin echoed back."""
    import select
    log = os.path.join(tmp, "serial.log")
    argv = kvmmtest.kvmm_argv("kvmmtest.virtio=console kvmmtest.console0.echo=20", 1, "256M",
                              ["--serial", f"file:{log}", "--console", "stdio"])
    p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    try:
        def line():
            assert select.select([p.stdout], [], [], 20)[0], "nothing on stdout"
            return p.stdout.readline()
        assert line() == b"KVMMTEST-HVC hello from console0\n"
        p.stdin.write(b"via stdio\n")
        p.stdin.flush()
        assert line() == b"echo: via stdio\n"
        assert p.wait(60) == 0, p.stderr.read()
    finally:
        p.kill()
        p.wait()
    assert re.search(r"KVMMTEST done pass=\d+ fail=0", read(log).decode())


def test_kvmm_console_survives_a_reset(kvm, vms, tmp):
    """A VM reset resets the console with the machine: the rebooted
    guest greets again on the same client connection."""
    path, sock = os.path.join(tmp, "hvc0.sock"), os.path.join(tmp, "api.sock")
    g = kvmmtest.start(vms, kvmmtest.kvmm_argv(
        "kvmmtest.virtio=console kvmmtest.action=wait", 1, "256M",
        ["--console", f"unix:{path}", "--api-socket", sock]))
    s = connect(path)
    try:
        assert read_line(s) == "KVMMTEST-HVC hello from console0\n"
        api = kvmmtest.Api(sock)
        assert "return" in api.call("reset")
        assert read_line(s) == "KVMMTEST-HVC hello from console0\n"
        assert "return" in api.call("quit")
    finally:
        s.close()
    assert g.wait_exit() == 0


def test_kvmm_console_to_a_file(kvm, vms, tmp):
    """--console file:PATH takes the guest's output (no input)."""
    path = os.path.join(tmp, "hvc0.log")
    g = kvmmtest.start(vms, kvmmtest.kvmm_argv("kvmmtest.virtio=console", 1, "256M",
                                               ["--console", f"file:{path}"]))
    finish(g)
    assert read(path) == b"KVMMTEST-HVC hello from console0\n"


@pytest.mark.parametrize("runner", RUNNERS)
def test_virtio_bars_assigned_by_the_guest(kvm, vms, tmp, runner):
    """kvmmtest.pci=reassign: the guest moves every memory BAR of the
    devices it drives to a window of its own, as it must when a VMM
    leaves BARs at 0, and the devices keep working there."""
    path, data = make_image(tmp, "d0.img", 1 << 20)
    g = runner.start(vms, tmp, "kvmmtest.virtio=rng,blk kvmmtest.pci=reassign",
                     ["rng", Disk(path, "r0")])
    finish(g)
    moved = checks(g, "info", "pci-bar")
    assert len(moved) >= 2 and all(m["assigned"] == "guest" for m in moved)
    assert int(by_dev(g, "pass", "virtio-blk-read")["blk0"]["crc32"], 16) == \
        zlib.crc32(data[:64 * SECTOR])
    msix_delivered(g, "rng0")
    msix_delivered(g, "blk0")


def test_virtio_bar_above_4g_under_qemu(kvm, vms, tmp):
    """A 2 GiB ivshmem BAR overflows SeaBIOS's 32-bit window, so it puts
    every 64-bit BAR above 4 GiB: the guest must map those itself.  (QEMU
    only: this is how to get a high BAR out of QEMU's firmware.)"""
    path, data = make_image(tmp, "d0.img", 1 << 20)
    g = VirtioRunner("qemu").start(
        vms, tmp, "kvmmtest.virtio=blk kvmmtest.blk0.write=8+8", [Disk(path, "hi")],
        extra=["-object", "memory-backend-ram,id=hm,size=2G",
               "-device", "ivshmem-plain,memdev=hm"])
    finish(g)
    blk = [f for f in checks(g, "info", "pci") if f["device"] == "1042"][0]
    high = [v for k, v in blk.items() if k.startswith("bar") and v.startswith("mem64:")]
    assert high and int(high[0].split(":")[1].split("+")[0], 16) >= 1 << 32, blk
    assert read(path)[8 * SECTOR:16 * SECTOR] == b"".join(pattern(s) for s in range(8, 16))
    msix_delivered(g, "blk0")


@pytest.fixture
def netns():
    yield from netns_lib.private("kvmmt-")


def add_tap(ns, tap, host_cidr):
    subprocess.run(["ip", "-n", ns, "tuntap", "add", "dev", tap, "mode", "tap"], check=True)
    subprocess.run(["ip", "-n", ns, "addr", "add", host_cidr, "dev", tap], check=True)
    subprocess.run(["ip", "-n", ns, "link", "set", tap, "up"], check=True)


probe = netns_lib.probe


@pytest.mark.parametrize("runner", RUNNERS)
def test_virtio_net_two_nics_answer_ping_and_udp(kvm, vms, tmp, runner, netns):
    nics = [("tap0", "52:54:00:aa:00:01", "10.77.1.1/24", "10.77.1.15", 7),
            ("tap1", "52:54:00:aa:00:02", "10.77.2.1/24", "10.77.2.15", 5001)]
    for tap, _, cidr, _, _ in nics:
        add_tap(netns, tap, cidr)
    cmdline = "kvmmtest.virtio=net kvmmtest.net.serve=60 " + " ".join(
        f"kvmmtest.net{i}.ip={ip} kvmmtest.net{i}.udp={port}"
        for i, (_, _, _, ip, port) in enumerate(nics))
    g = runner.start(vms, tmp, cmdline, [Nic(netns, tap, mac) for tap, mac, *_ in nics])
    g.wait_for(r"KVMMTEST event virtio-net-ready nics=2", timeout=60)
    cfg = by_dev(g, "info", "virtio-net")
    for i, (tap, mac, _, ip, port) in enumerate(nics):
        assert cfg[f"net{i}"]["mac"] == mac and cfg[f"net{i}"]["mac_from"] == "device"
        r = probe(netns, ip, port)
        assert r["ping"] == 3, r
        assert r["udp"] == r["udp_sent"] and r["quit"] == 1, r
    finish(g)
    done = by_dev(g, "pass", "virtio-net")
    for i in range(len(nics)):
        d = done[f"net{i}"]
        assert int(d["arp_replies"]) >= 1 and int(d["icmp_replies"]) >= 3
        assert int(d["udp_echoes"]) == 7
        msix_delivered(g, f"net{i}")


@pytest.mark.parametrize("runner", RUNNERS)
def test_virtio_net_offloads_and_mergeable_buffers(kvm, vms, tmp, runner, netns):
    """The guest negotiates virtio-net's offloads per NIC and is driven
    with 1514-byte frames.  net0 (MRG_RXBUF with 256-byte buffers,
    GUEST_CSUM, CSUM): frames span several buffers and still get answers;
    the host's UDP arrives with NEEDS_CSUM, which the guest completes and
    verifies; its echoes leave with only the pseudo-header sum and
    NEEDS_CSUM, and the host's socket (which drops bad UDP checksums)
    gets them, and they complete right from the header's csum_start and
    csum_offset as the host saw them.  net1 (MRG_RXBUF with 512-byte buffers, no GUEST_CSUM,
    full checksums by the guest): no NEEDS_CSUM reaches a driver that
    did not take it.  net2, the negative control: echoes with a wrong
    checksum and no CSUM are dropped by the host, counted in its
    InCsumErrors.  net3: the checksum offloads without MRG_RXBUF (one
    2 KiB buffer a frame)."""
    nics = [("tap0", "52:54:00:aa:00:05", "10.77.5.1/24", "10.77.5.15",
             "features=mrg,gcsum,csum rxbuf=256"),
            ("tap1", "52:54:00:aa:00:06", "10.77.6.1/24", "10.77.6.15",
             "features=mrg rxbuf=512 udpcsum=full"),
            ("tap2", "52:54:00:aa:00:07", "10.77.7.1/24", "10.77.7.15", "udpcsum=bad"),
            ("tap3", "52:54:00:aa:00:08", "10.77.8.1/24", "10.77.8.15", "features=gcsum,csum")]
    for tap, _, cidr, _, _ in nics:
        add_tap(netns, tap, cidr)
    cmdline = "kvmmtest.virtio=net kvmmtest.net.serve=90 " + " ".join(
        f"kvmmtest.net{i}.ip={ip} " + " ".join(f"kvmmtest.net{i}.{o}" for o in opts.split())
        for i, (_, _, _, ip, opts) in enumerate(nics))
    g = runner.start(vms, tmp, cmdline, [Nic(netns, tap, mac) for tap, mac, *_ in nics])
    g.wait_for(r"KVMMTEST event virtio-net-ready nics=4", timeout=60)
    feats = {r["dev"]: int(r["features"], 16) for r in checks(g, "info", "virtio")
             if "features" in r}
    assert feats["net0"] & 0x8003 == 0x8003, feats      # MRG_RXBUF, GUEST_CSUM, CSUM
    assert feats["net1"] & 0x8003 == 0x8000, feats
    assert feats["net2"] & 0x8003 == 0, feats
    assert feats["net3"] & 0x8003 == 0x0003, feats
    # The echoes as they enter the host, with their virtio-net header: the
    # host's stack trusts a NEEDS_CSUM checksum, so it is completed and
    # checked there from the csum_start and csum_offset the device passed.
    wire = {}
    for i, ip in ((0, "10.77.5.15"), (1, "10.77.6.15"), (3, "10.77.8.15")):
        r, wire[i] = netns_lib.captured(netns, f"tap{i}", 7, 8,
                                        lambda: probe(netns, ip, 7, "--big"))
        assert r["ping"] == 3, r
        assert r["udp"] == r["udp_sent"] == 7 and r["quit"] == 1, r
    before = netns_lib.udp_mib(netns)
    r, wire[2] = netns_lib.captured(netns, "tap2", 7, 8,
                                    lambda: probe(netns, "10.77.7.15", 7, "--big",
                                                  "--timeout", 0.5))
    after = netns_lib.udp_mib(netns)
    assert r["ping"] == 3, r
    assert r["udp"] == 0 and r["quit"] == 0, r
    assert after["InCsumErrors"] - before["InCsumErrors"] >= 8, (before, after)
    for i in (0, 3):
        assert len(wire[i]) == 8 and all(d == {"flags": 1, "csum_start": 34, "csum_offset": 6,
                                               "ok": True} for d in wire[i]), wire[i]
    assert len(wire[1]) == 8 and all(d["flags"] == 0 and d["ok"] for d in wire[1]), wire[1]
    # The checker itself tells a wrong checksum.
    assert len(wire[2]) == 8 and all(d["flags"] == 0 and d["ok"] is False
                                     for d in wire[2]), wire[2]
    finish(g)
    done = by_dev(g, "pass", "virtio-net")
    for i in range(4):
        assert int(done[f"net{i}"]["udp_echoes"]) == 8, done    # 7 and QUIT
    off = by_dev(g, "pass", "virtio-net-offload")
    o = off["net0"]
    assert o["mrg"] == "1" and o["gcsum"] == "1" and o["tx_csum"] == "partial", o
    # Pings (3), the 1400- and 1472-byte datagrams at least, over buffers
    # of 256 bytes: a 1514-byte frame and its header take 6.
    assert int(o["multi_buffer_frames"]) >= 5 and int(o["max_buffers"]) == 6, o
    assert int(o["needs_csum"]) >= 8 and int(o["udp_csum_ok"]) >= 8, o
    assert int(o["tx_partial"]) == 8, o
    o = off["net1"]
    assert o["mrg"] == "1" and o["gcsum"] == "0" and o["tx_csum"] == "full", o
    assert int(o["multi_buffer_frames"]) >= 5 and int(o["max_buffers"]) == 3, o
    assert int(o["needs_csum"]) == 0 and int(o["udp_csum_ok"]) >= 8, o
    o = off["net2"]
    assert o["mrg"] == "0" and o["tx_csum"] == "bad" and int(o["max_buffers"]) == 1, o
    o = off["net3"]
    assert o["mrg"] == "0" and o["gcsum"] == "1" and o["tx_csum"] == "partial", o
    assert int(o["max_buffers"]) == 1 and int(o["needs_csum"]) >= 8, o
    assert int(o["udp_csum_ok"]) >= 8 and int(o["tx_partial"]) == 8, o
    for o in off.values():
        assert o["udp_csum_bad"] == "0" and o["rx_errors"] == "0", o


def bench_probe(ns, *args, **kw):
    script = os.path.join(os.path.dirname(kvmmtest.__file__), "netbench_probe.py")
    return subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, script]
                            + [str(a) for a in args], text=True, **kw)


@pytest.mark.parametrize("runner", RUNNERS)
def test_virtio_net_throughput_modes(kvm, vms, tmp, runner, netns):
    """tools/bench/net's guest side: net0 sends datagrams flat out for a
    second (the host checks what arrives: content, order, source), then
    net1 counts datagrams the host sends at a modest rate (all of them
    must arrive, in order, intact)."""
    add_tap(netns, "tap0", "10.77.3.1/24")
    add_tap(netns, "tap1", "10.77.4.1/24")
    # A fixed neighbour: no ARP while the host sends to net1.
    subprocess.run(["ip", "-n", netns, "neigh", "replace", "10.77.4.15", "lladdr",
                    "52:54:00:aa:00:04", "dev", "tap1", "nud", "permanent"], check=True)
    size, count = 1000, 2000
    recv = bench_probe(netns, "recv", 9000, 90, stdout=subprocess.PIPE)
    send = None
    try:
        assert json.loads(recv.stdout.readline())["ready"]
        cmdline = ("kvmmtest.virtio=net kvmmtest.net.serve=60 "
                   "kvmmtest.net0.ip=10.77.3.15 kvmmtest.net0.udp=9001 kvmmtest.net0.blast=1 "
                   "kvmmtest.net0.peer=10.77.3.1:9000 kvmmtest.net0.size=1200 "
                   "kvmmtest.net1.ip=10.77.4.15 kvmmtest.net1.udp=9002 kvmmtest.net1.sink=60")
        g = runner.start(vms, tmp, cmdline, [Nic(netns, "tap0", "52:54:00:aa:00:03"),
                                             Nic(netns, "tap1", "52:54:00:aa:00:04")])
        g.wait_for(r"KVMMTEST event net-bench-ready dev=net1", timeout=90)
        host = json.loads(recv.communicate(timeout=30)[0])
        send = bench_probe(netns, "send", "10.77.4.15", 9002, count, size, 10000,
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        sent = json.loads(send.stdout.readline())
        g.wait_for(r"KVMMTEST info net-bench dev=net1", timeout=60)
        send.stdin.write("done\n")
        send.stdin.flush()
        send.wait(10)
        finish(g)
    finally:
        for p in (recv, send):
            if p and p.poll() is None:
                p.kill()
                p.wait()
    start = by_dev(g, "event", "net-bench-start")["net0"]
    assert start["peermac_from"] == "arp", start
    tx = by_dev(g, "info", "net-bench")["net0"]
    assert tx["mode"] == "tx" and int(tx["size"]) == 1200
    pkts = int(tx["pkts"])
    assert pkts > 0 and int(tx["bytes"]) == pkts * 1200 and int(tx["ns"]) >= 1e9, tx
    # The host may drop some of a flat-out stream, never alter or reorder it.
    assert host["sources"] == ["10.77.3.15:9001"] and host["sizes"] == [1200], host
    assert 0 < host["pkts"] <= pkts and host["seq_max"] < pkts, (host, tx)
    assert host["bad"] == 0 and host["reordered"] == 0, host
    rx = by_dev(g, "info", "net-bench")["net1"]
    assert sent["pkts"] == count
    assert rx["mode"] == "rx" and int(rx["pkts"]) == count and int(rx["seq_end"]) == count, rx
    assert int(rx["bytes"]) == count * size and int(rx["bad"]) == 0, rx
    assert int(rx["reordered"]) == 0 and rx["ended"] == "1", rx


@pytest.mark.parametrize("runner", RUNNERS)
@pytest.mark.parametrize("kind", ["head", "loop"])
def test_virtio_net_malformed_tx_chain_breaks_only_its_nic(kvm, vms, tmp, runner, netns, kind):
    """A hostile chain on one NIC's transmit queue puts that NIC in
    DEVICE_NEEDS_RESET; the other NIC is untouched, and the broken one
    works again once the guest has reset it."""
    nics = [("tap0", "52:54:00:dd:00:01", "10.83.1.1/24", "10.83.1.15", 7),
            ("tap1", "52:54:00:dd:00:02", "10.83.2.1/24", "10.83.2.15", 7)]
    for tap, _, cidr, _, _ in nics:
        add_tap(netns, tap, cidr)
    cmdline = f"kvmmtest.virtio=net kvmmtest.net.serve=60 kvmmtest.net0.malformed={kind} " + \
        " ".join(f"kvmmtest.net{i}.ip={ip} kvmmtest.net{i}.udp={port}"
                 for i, (_, _, _, ip, port) in enumerate(nics))
    g = runner.start(vms, tmp, cmdline, [Nic(netns, tap, mac) for tap, mac, *_ in nics])
    g.wait_for(r"KVMMTEST event virtio-net-ready nics=2", timeout=60)
    assert by_dev(g, "info", "virtio-malformed")["net0"]["outcome"] == "needs-reset"
    for _, _, _, ip, port in reversed(nics):
        r = probe(netns, ip, port)
        assert r["ping"] == 3 and r["udp"] == r["udp_sent"] and r["quit"] == 1, r
    finish(g)
    assert set(by_dev(g, "pass", "virtio-net")) == {"net0", "net1"}


def rng_survived_malformed(g, kind):
    """rng0 went to DEVICE_NEEDS_RESET (a buffer outside RAM may also be
    completed) and worked again after the guest reset it."""
    outcome = by_dev(g, "info", "virtio-malformed")["rng0"]["outcome"]
    if kind == "addr":
        assert outcome in ("needs-reset", "completed"), outcome
    else:
        assert outcome == "needs-reset"
    assert "rng0" in by_dev(g, "pass", "virtio-reset")


@pytest.mark.parametrize("runner", RUNNERS)
@pytest.mark.parametrize("kind", ["head", "next", "loop", "addr"])
def test_virtio_malformed_request_breaks_only_its_device(kvm, vms, tmp, runner, kind):
    """A hostile chain on the rng's queue: the device should say
    DEVICE_NEEDS_RESET (virtio 1.x, 2.1.2) for a chain it cannot walk, a
    buffer outside RAM may be refused or completed; either way the VMM
    lives on, the other device keeps working, and a reset revives the rng."""
    path, data = make_image(tmp, "d0.img", 1 << 20)
    g = runner.start(vms, tmp, f"kvmmtest.virtio=rng,blk kvmmtest.rng0.malformed={kind}",
                     ["rng", Disk(path, "m0")])
    finish(g)
    rng_survived_malformed(g, kind)
    assert int(by_dev(g, "pass", "virtio-blk-read")["blk0"]["crc32"], 16) == \
        zlib.crc32(data[:64 * SECTOR])


@pytest.mark.parametrize("runner", RUNNERS)
@pytest.mark.parametrize("kind", ["head", "next", "loop", "addr"])
def test_virtio_malformed_rng_chain_then_reset(kvm, vms, tmp, runner, kind):
    """The same hostile chains with the rng alone: DEVICE_NEEDS_RESET (or,
    for a buffer outside RAM, completion), the VMM lives on, and a reset
    revives the device."""
    g = runner.start(vms, tmp, f"kvmmtest.virtio=rng kvmmtest.rng0.malformed={kind}", ["rng"])
    finish(g)
    rng_survived_malformed(g, kind)


@pytest.mark.parametrize("runner", RUNNERS)
def test_virtio_rng_bar_moved_by_the_guest(kvm, vms, tmp, runner):
    """kvmmtest.pci=reassign with the rng alone: the device answers at the
    address the guest chose, MSI-X included."""
    g = runner.start(vms, tmp, "kvmmtest.virtio=rng kvmmtest.pci=reassign", ["rng"])
    finish(g)
    moved = checks(g, "info", "pci-bar")
    assert moved and all(m["assigned"] == "guest" for m in moved)
    assert "rng0" in by_dev(g, "pass", "virtio-rng")
    msix_delivered(g, "rng0")


@pytest.mark.parametrize("runner", RUNNERS)
def test_virtio_rng_works_again_after_a_reboot(kvm, vms, tmp, runner):
    """A guest reset puts the device back to power-on (BAR, MSI-X table,
    queues); on kvmm the new KVM VM gets the MSI routes and ioeventfds
    again."""
    g = runner.start(vms, tmp, "kvmmtest.virtio=rng kvmmtest.action=reboot", ["rng"])
    g.wait_for(r"KVMMTEST pass virtio-msix dev=rng0", count=3, timeout=60)
    g.kill()
    assert not g.records("fail")
    assert len(checks(g, "pass", "virtio-rng")) >= 3


@pytest.mark.parametrize("entry", ["pvh", "32", "64"])
def test_virtio_through_the_other_entries_under_qemu(kvm, vms, tmp, entry):
    """PCI and virtio do not care how the guest was entered; the memory
    map they avoid when placing BARs comes from a different place on each
    path (PVH start info, the shim's zero page), so check all of them."""
    path, data = make_image(tmp, "d0.img", 1 << 20)
    g = VirtioRunner("qemu").start(
        vms, tmp, "kvmmtest.virtio=rng,blk kvmmtest.pci=reassign kvmmtest.blk0.write=4+4",
        ["rng", Disk(path, "e0")], entry=entry)
    finish(g)
    assert g.records("boot")[0][1].startswith(f"v1 entry={entry}")
    assert "rng0" in by_dev(g, "pass", "virtio-rng")
    assert read(path)[4 * SECTOR:8 * SECTOR] == b"".join(pattern(s) for s in range(4, 8))
    msix_delivered(g, "blk0")


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
