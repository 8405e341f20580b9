"""The VM state stream (docs/state-stream.md): the control socket's save,
kvmm --restore in a new process, and hostile stream files refused before
the guest runs.  The guest is the test guest's `live` action: ticks of its
own clock with a disk read each, a COM1 echo, the power button."""
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import threading

from kvmmtest import Api, KVMM, Qmp, kvmm_argv, qemu_argv, start
from netns import probe, NETPROBE as netprobe_path
from virtiotest import add_tap
from test_schemas import load, validator

SCHEMA = load("api.schema.json")

LIVE = re.compile(r"KVMMTEST live n=(\d+) us=(\d+) blk0=(\S+) blk_irqs=(\d+)")


def parse(lines):
    out = []
    for line in lines:
        m = LIVE.search(line)
        if m:
            out.append((int(m[1]), int(m[2]), m[3], int(m[4])))
    return out


def live(g):
    """The guest's live records as (n, us, blk0, blk_irqs)."""
    return parse(list(g.lines))


def continued(g, h):
    """The live records of g's output continued by h's: a line the guest
    was writing when it was saved ends in the restored process."""
    a, b = list(g.lines), list(h.lines)
    if g.partial and b:
        a, b = a + [g.partial + b[0]], b[1:]
    return parse(a + b)


def consecutive(seq):
    return [r[0] for r in seq] == list(range(seq[0][0], seq[0][0] + len(seq)))


def disk_image(tmp, name="disk.img"):
    path = os.path.join(tmp, name)
    with open(path, "wb") as f:
        f.write(os.urandom(1 << 20))
    return path


def start_live(vms, tmp, disk, cpus=2, sock_name="a.sock"):
    sock = os.path.join(tmp, sock_name)
    g = start(vms, kvmm_argv("kvmmtest.action=live kvmmtest.tick_ms=50 kvmmtest.virtio=blk",
                             cpus=cpus, extra=["--api-socket", sock, "--disk", f"path={disk}"]))
    g.wait_for(r"KVMMTEST live n=3 ")
    return g, Api(sock)


def save(api, path):
    r = api.call("save", {"path": path}, timeout=60)
    validator(SCHEMA, "save").validate({"path": path})
    validator(SCHEMA, "reply").validate(r)
    validator(SCHEMA, "save-result").validate(r["return"])
    ev = api.wait_event("save-completed", path=path)
    validator(SCHEMA, "event").validate(ev)
    assert ev["data"] == r["return"]
    assert r["return"]["bytes"] == os.path.getsize(path)
    return r["return"]


def saved_guest(vms, tmp, cpus=2):
    """A live guest saved to a file and quit: (file, disk, the Guest)."""
    disk = disk_image(tmp)
    g, api = start_live(vms, tmp, disk, cpus=cpus)
    state = os.path.join(tmp, "vm.state")
    save(api, state)
    assert api.call("quit")["return"] == {}
    assert g.wait_exit() == 0
    return state, disk, g


def test_save_then_restore_in_a_new_process_continues_the_guest(kvm, vms, tmp):
    disk = disk_image(tmp)
    g, api = start_live(vms, tmp, disk, cpus=2)
    state = os.path.join(tmp, "vm.state")
    res = save(api, state)
    # The save leaves the VM paused; its file is complete and alone.
    assert api.call("query-status")["return"]["state"] == "paused"
    assert not os.path.exists(state + ".new")
    assert res["pages"] > 0
    # Only what the guest touched: a few hundred KiB of a 256 MiB guest.
    assert os.path.getsize(state) < 16 << 20, os.path.getsize(state)
    assert api.call("quit")["return"] == {}
    assert g.wait_exit() == 0
    before = live(g)
    last = before[-1]

    # The disk moves (a host-side path may change); its content does not.
    moved = os.path.join(tmp, "moved.img")
    shutil.copy(disk, moved)
    sock = os.path.join(tmp, "b.sock")
    h = start(vms, [KVMM, "--restore", state, "--api-socket", sock, "--disk", f"path={moved}"])
    h.wait_for(r"KVMMTEST live n=%d " % (last[0] + 4))
    after = live(h)
    assert not [l for l in h.lines if "KVMMTEST boot" in l], "the guest booted again"
    # The tick count goes on by one, the guest's clock never goes back.
    seq = continued(g, h)
    assert seq[0][0] == 1 and consecutive(seq), (last, after[:3])
    assert all(b[1] > a[1] for a, b in zip(seq, seq[1:])), "the guest's clock went back"
    # The disk still reads the same, with its MSI-X interrupts arriving
    # in the new process.
    assert {r[2] for r in seq} == {before[0][2]} and before[0][2] != "none"
    assert after[-1][3] > after[0][3] >= last[3]
    # The second vCPU, halted with interrupts on, still takes the IPI
    # each tick sends it.
    ap = [int(re.search(r"ap_irqs=(\d+)", l)[1]) for l in h.lines if "KVMMTEST live n=" in l]
    assert ap[-1] > ap[0] > 0, ap
    # COM1 input (an IOAPIC interrupt) and the power button (SCI).
    h.send(b"after restore\r")
    h.wait_for(r'KVMMTEST live-echo line="after restore"')
    api2 = Api(sock)
    assert api2.call("query-status")["return"]["state"] == "running"
    assert api2.call("power-button")["return"] == {}
    h.wait_for(r"KVMMTEST event power-button")
    assert h.wait_exit() == 0


def test_save_leaves_the_vm_paused_and_resume_continues_it(kvm, vms, tmp):
    disk = disk_image(tmp)
    g, api = start_live(vms, tmp, disk, cpus=1)
    save(api, os.path.join(tmp, "vm.state"))
    n = live(g)[-1][0]
    assert api.call("resume")["return"] == {}
    g.wait_for(r"KVMMTEST live n=%d " % (n + 3))
    assert [r[0] for r in live(g)] == list(range(1, len(live(g)) + 1))
    api.call("quit")
    assert g.wait_exit() == 0


def test_restore_paused_waits_for_resume(kvm, vms, tmp):
    state, disk, g = saved_guest(vms, tmp, cpus=1)
    before = live(g)
    sock = os.path.join(tmp, "b.sock")
    h = start(vms, [KVMM, "--restore", state, "--paused", "--api-socket", sock])
    api = Api(sock)
    assert api.call("query-status")["return"]["state"] == "paused"
    assert live(h) == []
    assert api.call("resume")["return"] == {}
    h.wait_for(r"KVMMTEST live n=%d " % (before[-1][0] + 2))
    seq = continued(g, h)
    assert seq[0][0] == 1 and consecutive(seq), seq
    api.call("quit")
    assert h.wait_exit() == 0


def test_save_failure_removes_the_file_and_keeps_the_guest_running(kvm, vms, tmp):
    disk = disk_image(tmp)
    g, api = start_live(vms, tmp, disk, cpus=1)
    r = api.call("save", {"path": "/proc/kvmm-cannot-write-here"})
    assert r["error"]["code"] == "SaveFailed", r
    validator(SCHEMA, "reply").validate(r)
    assert "cannot create /proc/kvmm-cannot-write-here.new" in r["error"]["message"], r
    # Full disk (ENOSPC): a 64 KiB tmpfs cannot hold the stream.
    full = os.path.join(tmp, "full")
    os.mkdir(full)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", full], check=True)
    try:
        r = api.call("save", {"path": os.path.join(full, "vm.state")}, timeout=60)
        assert r["error"]["code"] == "SaveFailed", r
        assert "No space left on device" in r["error"]["message"], r
        assert os.listdir(full) == [], "partial file left behind"
    finally:
        subprocess.run(["umount", full])
    assert api.call("query-status")["return"]["state"] == "running"
    n = live(g)[-1][0]
    g.wait_for(r"KVMMTEST live n=%d " % (n + 2))
    for bad in ({}, {"path": 3}, {"path": ""}):
        assert api.call("save", bad)["error"]["code"] == "InvalidArgument"
    api.call("quit")
    assert g.wait_exit() == 0


def test_restore_through_a_pipe_reads_and_checks_every_page(kvm, vms, tmp):
    """A stream that cannot be mapped (a FIFO, as a socket will be) is read
    page by page and its pages' checksum checked: a flipped byte in guest
    memory is refused there."""
    state, disk, g = saved_guest(vms, tmp, cpus=1)
    before = live(g)
    data = open(state, "rb").read()
    mem = [s for s in sections(data) if s[0] == 8][0]
    fifo = os.path.join(tmp, "stream.fifo")
    os.mkfifo(fifo)

    def feed(blob):
        fd = os.open(fifo, os.O_WRONLY)
        try:
            view = memoryview(blob)
            while view:
                view = view[os.write(fd, view):]
        except BrokenPipeError:
            pass            # kvmm stopped reading: the refusal case
        finally:
            os.close(fd)

    t = threading.Thread(target=feed, args=(data,))
    t.start()
    sock = os.path.join(tmp, "b.sock")
    h = start(vms, [KVMM, "--restore", fifo, "--api-socket", sock])
    h.wait_for(r"KVMMTEST live n=%d " % (before[-1][0] + 2))
    t.join()
    Api(sock).call("quit")
    assert h.wait_exit() == 0

    bad = bytearray(data)
    bad[mem[2] + mem[3] - 100] ^= 1        # in the last page
    t = threading.Thread(target=feed, args=(bytes(bad),))
    t.start()
    r = subprocess.run([KVMM, "--restore", fifo], capture_output=True, text=True, timeout=60)
    t.join()
    assert r.returncode == 1 and "memory pages: checksum mismatch" in r.stderr, r.stderr
    assert "KVMMTEST" not in r.stdout


def test_incoming_save_stream_from_an_inherited_connected_socket(kvm, vms, tmp):
    """--incoming fd:N: a save's stream read whole from a TCP connection
    kvmm inherited, as a migration's destination gets it; the guest
    continues.  A descriptor that is not open, or not for reading, is
    refused."""
    state, disk, g = saved_guest(vms, tmp, cpus=1)
    before = live(g)
    data = open(state, "rb").read()
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1)
    out = socket.create_connection(lsock.getsockname())
    conn, _ = lsock.accept()
    lsock.close()
    fd = conn.fileno()
    sock = os.path.join(tmp, "b.sock")
    h = start(vms, [KVMM, "--incoming", f"fd:{fd}", "--paused", "--api-socket", sock],
              pass_fds=(fd,))
    conn.close()
    out.sendall(data)
    out.shutdown(socket.SHUT_WR)
    # kvmm closes the connection once it has read the stream.
    out.settimeout(60)
    assert out.recv(1) == b""
    out.close()
    api = Api(sock, timeout=60)
    assert api.call("resume")["return"] == {}
    h.wait_for(r"KVMMTEST live n=%d " % (before[-1][0] + 2))
    api.call("quit")
    assert h.wait_exit() == 0

    r = subprocess.run([KVMM, "--incoming", "fd:97"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "fd:97: not a descriptor open for reading" in r.stderr, r.stderr
    rd, wr = os.pipe()
    try:
        r = subprocess.run([KVMM, "--incoming", f"fd:{wr}"], pass_fds=(wr,),
                           capture_output=True, text=True, timeout=60)
    finally:
        os.close(rd)
        os.close(wr)
    assert r.returncode == 1 and f"fd:{wr}: not a descriptor open for reading" in r.stderr, r.stderr


def test_a_migration_hands_the_disk_lock_over(kvm, vms, tmp):
    """A save to a descriptor lets go of the disks' locks and kvmm
    --incoming fd:N opens them unlocked, so the destination starts while
    the source is still there, paused; the destination takes them at its
    first resume, and the source can no longer resume (DeviceInUse)."""
    disk = disk_image(tmp)
    g, api = start_live(vms, tmp, disk, cpus=1)
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1)
    out = socket.create_connection(lsock.getsockname())
    conn, _ = lsock.accept()
    lsock.close()
    sock = os.path.join(tmp, "b.sock")
    h = start(vms, [KVMM, "--incoming", f"fd:{conn.fileno()}", "--paused", "--api-socket", sock,
                    "--disk", f"path={disk}"], pass_fds=(conn.fileno(),))
    conn.close()
    assert api.call("getfd", {"fdname": "mig"}, fds=(out.fileno(),))["return"] == {}
    r = api.call("save", {"fdname": "mig"}, timeout=60)
    assert "return" in r, r
    out.close()
    b = Api(sock, timeout=60)
    assert b.call("resume")["return"] == {}
    before = live(g)
    h.wait_for(r"KVMMTEST live n=%d " % (before[-1][0] + 2))
    r = api.call("resume")
    assert r["error"]["code"] == "DeviceInUse", r
    api.call("quit")
    assert g.wait_exit() == 0
    b.call("quit")
    assert h.wait_exit() == 0


# --- hostile stream files -----------------------------------------------------

def sections(data):
    """(type, index, payload offset, payload length) of each section."""
    out, off = [], 16
    while off < len(data):
        t, i, n = struct.unpack_from("<IIQ", data, off)
        out.append((t, i, off + 24, n))
        off += 24 + n
    return out


def page_bitmap(path):
    """The memory section's bitmap of pages present."""
    data = open(path, "rb").read()
    t, _, off, _ = [s for s in sections(data) if s[0] == 8][0]
    bitmap_len = struct.unpack_from("<Q", data, off + 24)[0]
    return data[off + 48:off + 48 + bitmap_len]


def refused(path, *extra):
    r = subprocess.run([KVMM, "--restore", path, "--serial", "stdio", *extra],
                       capture_output=True, text=True, timeout=60)
    assert "KVMMTEST" not in r.stdout, "guest code ran: " + r.stdout[:200]
    return r.returncode, r.stderr


def test_hostile_streams_are_refused_before_the_guest_runs(kvm, vms, tmp):
    state, disk, _ = saved_guest(vms, tmp, cpus=2)
    data = open(state, "rb").read()
    secs = sections(data)
    names = [t for t, _, _, _ in secs]
    assert names[:3] == [1, 2, 3] and names[-2:] == [8, 9], names
    bad = os.path.join(tmp, "bad.state")

    def write(blob):
        with open(bad, "wb") as f:
            f.write(blob)

    # Truncated at every section boundary, and inside the memory pages.
    cuts = [0, 10, 16] + [off - 24 for _, _, off, _ in secs] + [off for _, _, off, _ in secs]
    mem = secs[-2]
    cuts.append(mem[2] + mem[3] - 4096)
    for cut in sorted(c for c in set(cuts) if c < len(data)):
        write(data[:cut])
        rc, err = refused(bad)
        assert rc == 1 and "truncated" in err, (cut, err)

    # A flipped byte in each section's header and in each payload (the
    # memory section's descriptor and bitmap: its pages are checked when
    # read, see the pipe test).
    for t, i, off, n in secs:
        for at in (off - 20, off + min(n, 60) // 2) if n else (off - 20,):
            blob = bytearray(data)
            blob[at] ^= 0x04
            write(bytes(blob))
            rc, err = refused(bad)
            assert rc == 1 and re.search(r"checksum mismatch|corrupt", err), (t, i, at, err)

    # Newer version, not a stream.
    blob = bytearray(data)
    struct.pack_into("<I", blob, 8, 3)
    write(bytes(blob))
    rc, err = refused(bad)
    assert rc == 1 and "written by a newer kvmm: stream version 3, this kvmm reads up to 2" in err, err
    write(b"KVMMSTRX" + data[8:])
    rc, err = refused(bad)
    assert rc == 1 and "not a kvmm state stream" in err, err

    # A configuration that does not fit the stream: more vCPUs, less
    # memory, another disk.
    rc, err = refused(state, "--cpus", "3")
    assert rc == 1 and "2 vCPUs, not 3" in err, err
    rc, err = refused(state, "--memory", "128M")
    assert rc == 1 and "256 MiB of memory, not 128 MiB" in err, err
    rc, err = refused(state, "--disk", f"path={disk}", "--disk", f"path={disk},readonly=on")
    assert rc == 1 and "devices differ" in err, err


def test_a_restored_guest_saves_and_restores_again(kvm, vms, tmp):
    """Pages a restore mapped from its file and the guest has not touched
    since must be in the next save too (they are not resident)."""
    state, disk, g = saved_guest(vms, tmp, cpus=2)
    before = live(g)
    sock = os.path.join(tmp, "b.sock")
    h = start(vms, [KVMM, "--restore", state, "--api-socket", sock])
    h.wait_for(r"KVMMTEST live n=%d " % (before[-1][0] + 2))
    api = Api(sock)
    again = os.path.join(tmp, "again.state")
    save(api, again)
    api.call("quit")
    assert h.wait_exit() == 0
    # Every page of the first stream is in the second (the guest freed
    # none), whether or not the guest touched it in between.
    first, second = page_bitmap(state), page_bitmap(again)
    assert first and all(a & ~b == 0 for a, b in zip(first, second)), "pages lost"
    os.unlink(state)        # nothing may still come from the first file
    n = live(h)[-1][0]
    sock3 = os.path.join(tmp, "c.sock")
    k = start(vms, [KVMM, "--restore", again, "--api-socket", sock3])
    k.wait_for(r"KVMMTEST live n=%d " % (n + 3))
    seq = continued(h, k)
    assert consecutive(seq) and seq[-1][0] >= n + 3, seq
    k.send(b"third\r")
    k.wait_for(r'KVMMTEST live-echo line="third"')
    Api(sock3).call("quit")
    assert k.wait_exit() == 0


def test_the_nic_answers_after_a_restore(kvm, vms, tmp, netns):
    """Saved while the guest serves its NIC, restored in a new process on
    the same tap: pings and UDP echoes are answered, the guest goes on."""
    add_tap(netns, "sstap0", "10.81.1.1/24")
    sock = os.path.join(tmp, "a.sock")
    cmdline = ("kvmmtest.virtio=net kvmmtest.net.serve=120 kvmmtest.net0.ip=10.81.1.15 "
               "kvmmtest.action=live kvmmtest.tick_ms=50")
    g = start(vms, ["ip", "netns", "exec", netns] + kvmm_argv(
        cmdline, 1, "256M", ["--api-socket", sock, "--net", "tap=sstap0,mac=52:54:00:dd:00:01"]))
    g.wait_for(r"KVMMTEST event virtio-net-ready nics=1", timeout=60)
    # Pings only: the probe's UDP "quit" would end the guest's serving.
    ping = ["ip", "netns", "exec", netns, sys.executable, "-c",
            "import sys; sys.path.insert(0, %r); import netprobe; print(netprobe.ping(%r, 2, 5, False))"
            % (os.path.dirname(netprobe_path), "10.81.1.15")]
    assert subprocess.run(ping, capture_output=True, text=True, timeout=60).stdout.strip() == "2"
    api = Api(sock)
    state = os.path.join(tmp, "vm.state")
    save(api, state)
    api.call("quit")
    assert g.wait_exit() == 0
    assert live(g) == []            # still serving when saved

    sock2 = os.path.join(tmp, "b.sock")
    h = start(vms, ["ip", "netns", "exec", netns, KVMM, "--restore", state,
                    "--api-socket", sock2, "--net", "tap=sstap0,mac=52:54:00:dd:00:01"])
    Api(sock2).call("query-status")
    r = probe(netns, "10.81.1.15", 7)
    assert r["ping"] == 3 and r["udp"] == r["udp_sent"] and r["quit"] == 1, r
    h.wait_for(r"KVMMTEST pass virtio-net dev=net0")
    h.wait_for(r"KVMMTEST live n=2 ")
    assert not [l for l in h.lines if "KVMMTEST boot" in l]
    Api(sock2).call("quit")
    assert h.wait_exit() == 0


def test_disk_requests_in_flight_at_the_save_complete(kvm, vms, tmp):
    """Saved while the guest keeps 16 disk reads in flight: the device
    finishes them before the state is taken, so the restored guest's
    load ends without a lost or repeated completion."""
    disk = os.path.join(tmp, "disk.img")
    with open(disk, "wb") as f:
        f.truncate(64 << 20)
    sock = os.path.join(tmp, "a.sock")
    cmdline = ("kvmmtest.virtio=blk kvmmtest.blk0.bench=randread kvmmtest.blk0.qd=16 "
               "kvmmtest.blk0.bytes=1099511627776 kvmmtest.blk0.ms=4000 "
               "kvmmtest.action=live kvmmtest.tick_ms=50")
    # cache=none: O_DIRECT reads stay in flight in io_uring (cached ones
    # may complete as they are submitted).
    g = start(vms, kvmm_argv(cmdline, 1, "256M", ["--api-socket", sock,
                                                  "--disk", f"path={disk},cache=none"]))
    g.wait_for(r"KVMMTEST pass virtio-blk-read dev=blk0")
    api = Api(sock)
    # The load is running: reads complete between two looks.
    ops = lambda: api.call("query-block-stats")["return"][0]["rd_operations"]
    first = ops()
    while ops() == first:
        pass
    state = os.path.join(tmp, "vm.state")
    save(api, state)
    api.call("quit")
    assert g.wait_exit() == 0
    assert not [l for l in g.lines if "blk-bench" in l], "the load ended before the save"

    h = start(vms, [KVMM, "--restore", state, "--api-socket", os.path.join(tmp, "b.sock")])
    # A stalled load reports a fail line instead (a kick the save lost).
    m = h.wait_for(r"KVMMTEST (?:info blk-bench dev=blk0 .*reqs=(\d+) .*errors=(\d+)|fail .*)",
                   timeout=120)
    assert m[1] is not None and int(m[1]) > 16 and m[2] == "0", m[0]
    h.wait_for(r"KVMMTEST live n=2 ")
    assert not [l for l in h.lines if "KVMMTEST fail" in l], h.lines
    Api(os.path.join(tmp, "b.sock")).call("quit")
    assert h.wait_exit() == 0


def test_touched_memory_comes_back_and_only_it_is_written(kvm, vms, tmp):
    """32 MiB the guest wrote are in the stream (and little else), mapped
    back from the file and read right by the restored guest at each tick."""
    sock = os.path.join(tmp, "a.sock")
    g = start(vms, kvmm_argv("kvmmtest.action=live kvmmtest.tick_ms=50 kvmmtest.live.touch=32 "
                             "kvmmtest.live.check=on",
                             1, "1G", ["--api-socket", sock]))
    g.wait_for(r"KVMMTEST live n=2 .* mem=ok")
    api = Api(sock)
    state = os.path.join(tmp, "vm.state")
    res = save(api, state)
    assert 32 * 256 <= res["pages"] < 40 * 256, res
    assert 32 << 20 < os.path.getsize(state) < 41 << 20
    api.call("quit")
    assert g.wait_exit() == 0
    n = live(g)[-1][0]
    h = start(vms, [KVMM, "--restore", state, "--api-socket", os.path.join(tmp, "b.sock")])
    h.wait_for(r"KVMMTEST live n=%d " % (n + 3))
    mems = [re.search(r"mem=(\w+)", l)[1] for l in h.lines if "KVMMTEST live n=" in l]
    assert mems and set(mems) == {"ok"}, mems
    Api(os.path.join(tmp, "b.sock")).call("quit")
    assert h.wait_exit() == 0


def test_the_live_guest_continues_across_qemus_save_and_restore_too(kvm, vms, tmp):
    """The reference: what the tests above expect of the live guest holds
    under QEMU's own save and restore (exec: migration to a file)."""
    state = os.path.join(tmp, "qemu.state")
    cmdline = "kvmmtest.action=live kvmmtest.tick_ms=50 kvmmtest.live.touch=32 kvmmtest.live.check=on"
    qmp = os.path.join(tmp, "q.sock")
    g = start(vms, qemu_argv(cmdline, 2, "256M", ["-qmp", f"unix:{qmp},server=on,wait=off"]))
    g.wait_for(r"KVMMTEST live n=3 .* mem=ok")
    q = Qmp(qmp)
    q.execute("stop")
    q.execute("migrate", {"uri": f"exec:cat > {state}"})
    while q.execute("query-migrate")["return"].get("status") not in ("completed", "failed"):
        pass
    assert q.execute("query-migrate")["return"]["status"] == "completed"
    q.execute("quit")
    g.wait_exit()
    qmp2 = os.path.join(tmp, "q2.sock")
    h = start(vms, qemu_argv(cmdline, 2, "256M", ["-qmp", f"unix:{qmp2},server=on,wait=off",
                                                 "-incoming", f"exec:cat {state}"]))
    q = Qmp(qmp2)
    while q.execute("query-migrate")["return"].get("status") not in ("completed", "failed"):
        pass
    assert q.execute("query-migrate")["return"]["status"] == "completed"
    q.execute("cont")
    n = live(g)[-1][0]
    h.wait_for(r"KVMMTEST live n=%d " % (n + 3))
    seq = continued(g, h)
    assert seq[0][0] == 1 and consecutive(seq), seq
    assert all(b[1] > a[1] for a, b in zip(seq, seq[1:])), "the guest's clock went back"
    mems = [re.search(r"mem=(\w+)", l)[1] for l in h.lines if "KVMMTEST live n=" in l]
    assert set(mems) == {"ok"}, mems
    ap = [int(re.search(r"ap_irqs=(\d+)", l)[1]) for l in h.lines if "KVMMTEST live n=" in l]
    assert ap[-1] > ap[0] > 0, ap
    h.send(b"on qemu\r")
    h.wait_for(r'KVMMTEST live-echo line="on qemu"')
    q.execute("quit")
    h.wait_exit()
