"""kvmm --sandbox (docs/kvmm.md): the test guest's scenarios run as usual
while every thread of kvmm is unprivileged, without capabilities, with
no_new_privs and under a seccomp filter, in a mount namespace whose root
holds nothing of the host's.  What each filter forbids is proven on forked
children by tests/unit/test_seccomp.c; here, that the real kvmm has them
on every thread and still does its work.  And disks, kernels and logs that
are not files are refused, sandboxed or not."""
import json
import os
import pwd
import grp
import re
import socket
import subprocess

import pytest

import kvmmtest
from kvmmtest import GUEST, KVMM, Api, kvmm_argv, start
from virtiotest import (Balloon, Console, Disk, Nic, VirtioRunner, add_tap, by_dev, connect,
                        finish, make_image, pattern, probe, read, SECTOR)

NOBODY = pwd.getpwnam("nobody").pw_uid
NOGROUP = grp.getgrnam("nogroup").gr_gid


def status(path):
    out = {}
    with open(path) as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.strip()
    return out


def assert_confined(pid, uid=NOBODY, gid=NOGROUP, min_threads=1):
    """Every thread of pid: uid/gid, no capabilities at all, no_new_privs,
    a seccomp filter; and its mount namespace and root are not the host's."""
    tids = os.listdir(f"/proc/{pid}/task")
    assert len(tids) >= min_threads, tids
    for tid in tids:
        st = status(f"/proc/{pid}/task/{tid}/status")
        who = f"thread {tid} ({st['Name']})"
        assert st["Uid"].split() == [str(uid)] * 4, (who, st["Uid"])
        assert st["Gid"].split() == [str(gid)] * 4, (who, st["Gid"])
        assert st["Groups"] == "", (who, st["Groups"])
        for cap in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
            assert int(st[cap], 16) == 0, (who, cap, st[cap])
        assert st["NoNewPrivs"] == "1", who
        assert st["Seccomp"] == "2", (who, st["Seccomp"])
        # a vCPU thread adds its own list to the main thread's it inherits
        # (KVM's own workers, kvm-nx-lpage-recovery, inherit from a vCPU)
        if tid == str(pid):
            assert st["Seccomp_filters"] == "1", (who, st["Seccomp_filters"])
        elif st["Name"].startswith("vcpu"):
            assert st["Seccomp_filters"] == "2", (who, st["Seccomp_filters"])
    assert os.readlink(f"/proc/{pid}/ns/mnt") != os.readlink("/proc/self/ns/mnt")
    assert os.listdir(f"/proc/{pid}/root") == []
    assert not os.path.exists(f"/proc/{pid}/root/etc")


def vcpu_threads(pid):
    return [t for t in os.listdir(f"/proc/{pid}/task")
            if status(f"/proc/{pid}/task/{t}/status")["Name"].startswith("vcpu")]


@pytest.mark.parametrize("flags,uid,gid", [
    (["--sandbox"], NOBODY, NOGROUP),
    (["--uid", "4242", "--gid", "nogroup"], 4242, NOGROUP),
], ids=["nobody", "uid-gid"])
def test_sandboxed_kvmm_is_confined_and_obeys_its_control_socket(kvm, vms, tmp, flags, uid, gid):
    """Two vCPUs ticking; every thread confined; query-status, pause (the
    ticks stop), resume (they go on), and the power button powers off."""
    sock = os.path.join(tmp, "api.sock")
    g = start(vms, kvmm_argv("kvmmtest.action=wait kvmmtest.tick_ms=50", cpus=2,
                             extra=["--api-socket", sock] + flags))
    g.wait_for(r"KVMMTEST tick", count=3)
    assert_confined(g.proc.pid, uid, gid, min_threads=3)
    assert len(vcpu_threads(g.proc.pid)) == 2
    api = Api(sock)
    assert api.call("query-status")["return"]["state"] == "running"
    assert "return" in api.call("pause")
    api.wait_event("state-changed", state="paused")
    assert api.call("query-status")["return"]["state"] == "paused"
    assert "return" in api.call("resume")
    api.wait_event("state-changed", state="running")
    g.wait_for(r"KVMMTEST tick", count=len(g.records("tick")) + 3)
    assert "return" in api.call("power-button")
    g.wait_for(r"KVMMTEST event power-button")
    assert g.wait_exit() == 0
    # sandboxed, kvmm cannot remove the socket it made: its starter does
    assert os.path.exists(sock)


@pytest.mark.parametrize("sandbox", [[], ["--sandbox"]], ids=["plain", "sandboxed"])
def test_save_to_a_descriptor_then_restore(kvm, vms, tmp, sandbox):
    """save with fdname: the state stream written to a file the caller
    opened and passed (getfd), the only way a sandboxed kvmm can write
    one; kvmm --restore of that file goes on with the guest's ticks."""
    sock = os.path.join(tmp, "api.sock")
    disk = os.path.join(tmp, "d.img")
    with open(disk, "wb") as f:
        f.write(os.urandom(1 << 20))
    g = start(vms, kvmm_argv("kvmmtest.action=live kvmmtest.tick_ms=50 kvmmtest.virtio=blk",
                             extra=["--api-socket", sock, "--disk", f"path={disk}"] + sandbox))
    g.wait_for(r"KVMMTEST live n=3 ")
    if sandbox:
        assert_confined(g.proc.pid)
    api = Api(sock)
    state = os.path.join(tmp, "vm.state")
    fd = os.open(state, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        assert api.call("getfd", {"fdname": "state"}, fds=[fd])["return"] == {}
    finally:
        os.close(fd)
    r = api.call("save", {"fdname": "state"}, timeout=60)
    assert set(r["return"]) == {"fdname", "bytes", "pages", "ms"}, r
    assert r["return"]["fdname"] == "state" and r["return"]["bytes"] == os.path.getsize(state) > 0, r
    assert api.wait_event("save-completed", fdname="state")["data"] == r["return"]
    assert api.call("query-status")["return"]["state"] == "paused"
    # Used up: a second save by that name is refused, the VM stays paused.
    r = api.call("save", {"fdname": "state"})
    assert r["error"]["code"] == "InvalidArgument" and "getfd" in r["error"]["message"], r
    assert api.call("quit")["return"] == {}
    assert g.wait_exit() == 0
    last = max(int(m[1]) for m in (re.search(r"KVMMTEST live n=(\d+) ", l) for l in g.lines) if m)
    h = start(vms, [KVMM, "--restore", state, "--api-socket", os.path.join(tmp, "b.sock"),
                    "--disk", f"path={disk}"] + sandbox)
    h.wait_for(r"KVMMTEST live n=%d " % (last + 3))
    assert not [l for l in h.lines if "KVMMTEST boot" in l], "the guest booted again"
    h.kill()


def test_sandboxed_serial_on_a_pty(kvm, vms, tmp):
    """COM1 on a pty: the vCPU writing the guest's output asks whether a
    client holds the slave (poll, never waiting), confined too."""
    sock = os.path.join(tmp, "api.sock")
    g = start(vms, kvmm_argv("kvmmtest.action=wait",
                             extra=["--api-socket", sock, "--serial", "pty", "--sandbox"]))
    api = Api(sock)
    st = api.call("query-status")["return"]
    assert_confined(g.proc.pid)
    fd = os.open(st["serial"]["path"], os.O_RDWR | os.O_NOCTTY)
    try:
        kvmmtest.wait_record(kvmmtest.stream(fd),
                             r"KVMMTEST tick", "the guest's output on the pty")
    finally:
        os.close(fd)
    assert g.proc.poll() is None
    assert "return" in api.call("quit")
    assert g.wait_exit() == 0


def test_sandbox_config_key(kvm, vms, tmp):
    path = os.path.join(tmp, "vm.json")
    with open(path, "w") as f:
        json.dump({"kernel": GUEST, "memory": "64M", "cmdline": "kvmmtest.action=wait",
                   "serial": "stdio", "sandbox": {"uid": "nobody", "gid": 4343}}, f)
    g = start(vms, [KVMM, "--config", path])
    g.wait_for(r"KVMMTEST tick")
    assert_confined(g.proc.pid, NOBODY, 4343)
    g.kill()


@pytest.mark.parametrize("engine", ["io_uring", "sync"])
def test_sandboxed_disks_rng_and_resize(kvm, vms, tmp, engine):
    """Reads, writes, FLUSH and block-resize go through the fds opened
    before the sandbox, on both I/O paths; the rng draws getrandom()."""
    path, data = make_image(tmp, "d0.img", 1 << 20)
    runner = VirtioRunner("kvmm" if engine == "io_uring" else "kvmm-sync")
    g = runner.start(vms, tmp, "kvmmtest.virtio=rng,blk kvmmtest.blk0.write=300+200 "
                     "kvmmtest.blk0.resize=30", ["rng", Disk(path, "sb0")], extra=["--sandbox"])
    g.wait_for(r"KVMMTEST event virtio-blk-resize-ready dev=blk0 capacity=2048")
    assert_confined(g.proc.pid)
    runner.resize_disk(0, 3 << 20)
    finish(g)
    assert by_dev(g, "pass", "virtio-blk-flush")["blk0"] is not None
    assert int(by_dev(g, "pass", "virtio-blk-resize")["blk0"]["capacity"]) == (3 << 20) // SECTOR
    assert "rng0" in by_dev(g, "pass", "virtio-rng")
    after = read(path)
    assert len(after) == 3 << 20
    assert after[300 * SECTOR:500 * SECTOR] == b"".join(pattern(s) for s in range(300, 500))
    assert after[:300 * SECTOR] == data[:300 * SECTOR]


def test_sandboxed_console_and_balloon(kvm, vms, tmp):
    """The console socket (listening before the sandbox) takes a client and
    echoes; the balloon inflates (kvmm frees the guest's pages) and deflates."""
    path = os.path.join(tmp, "hvc0.sock")
    runner = VirtioRunner("kvmm")
    g = runner.start(vms, tmp, "kvmmtest.virtio=console,balloon kvmmtest.console0.echo=30 "
                     "kvmmtest.balloon0.touch=128", [Console(path), Balloon()],
                     memory="512M", extra=["--sandbox"])
    s = connect(path)
    try:
        buf = b""
        while not buf.endswith(b"\n"):
            buf += s.recv(256)
        assert buf == b"KVMMTEST-HVC hello from console0\n"
        g.wait_for(r"KVMMTEST event virtio-console-ready dev=console0")
        s.sendall(b"sandboxed hello\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(256)
            assert chunk
            buf += chunk
        assert buf == b"echo: sandboxed hello\n"
    finally:
        s.close()
    g.wait_for(r"KVMMTEST event balloon-ready dev=balloon0", timeout=60)
    assert_confined(g.proc.pid)
    runner.balloon_set((512 - 64) << 20)
    g.wait_for(r"KVMMTEST info balloon dev=balloon0 why=target (?=.*\bactual=16384\b)", timeout=60)
    assert runner.api_call("query-balloon")["return"]["inflated"] == 64 << 20
    runner.balloon_set(512 << 20)
    g.wait_for(r"KVMMTEST info balloon dev=balloon0 why=target (?=.*\bactual=0\b)", timeout=60)
    runner.power_button()
    finish(g)


def test_sandboxed_net(kvm, vms, tmp, netns):
    """The tap, opened before the sandbox, carries ping and UDP both ways."""
    add_tap(netns, "tap0", "10.77.1.1/24")
    runner = VirtioRunner("kvmm")
    g = runner.start(vms, tmp, "kvmmtest.virtio=net kvmmtest.net.serve=60 kvmmtest.net0.ip=10.77.1.15",
                     [Nic(netns, "tap0", "52:54:00:aa:00:01")], extra=["--sandbox"])
    g.wait_for(r"KVMMTEST event virtio-net-ready nics=1", timeout=60)
    assert_confined(g.proc.pid)
    r = probe(netns, "10.77.1.15", 7)
    assert r["ping"] == 3, r
    assert r["udp"] == r["udp_sent"] and r["quit"] == 1, r
    finish(g)


def test_sandboxed_reboot_rebuilds_the_vm_confined(kvm, vms, tmp):
    """A guest reset makes a new KVM VM and new vCPU threads from inside
    the sandbox; each new thread is filtered too."""
    g = start(vms, kvmm_argv("kvmmtest.action=reboot", cpus=2, extra=["--sandbox"]))
    g.wait_for(r"KVMMTEST boot", count=3, timeout=90)
    assert_confined(g.proc.pid, min_threads=3)
    g.kill()


@pytest.mark.parametrize("uri", ["unix", "tcp"])
def test_sandboxed_migrate_to_a_uri_is_refused_and_the_guest_runs_on(kvm, vms, tmp, uri):
    """tcp: and unix: would need socket() and connect(), which no list
    allows: refused with how to do it instead (fdname), never a SIGSYS."""
    sock = os.path.join(tmp, "api.sock")
    g = start(vms, kvmm_argv("kvmmtest.action=wait kvmmtest.tick_ms=20", cpus=1,
                             extra=["--api-socket", sock, "--sandbox"]))
    g.wait_for(r"KVMMTEST tick", count=2)
    api = Api(sock)
    where = "unix:" + os.path.join(tmp, "x.sock") if uri == "unix" else "tcp:127.0.0.1:9"
    r = api.call("migrate", {"uri": where})
    assert r["error"]["code"] == "MigrationFailed", r
    assert "sandboxed" in r["error"]["message"] and "fdname" in r["error"]["message"], r
    assert api.call("query-migrate")["return"]["status"] == "none"
    g.wait_for(r"KVMMTEST tick", count=len(g.records("tick")) + 3)
    assert_confined(g.proc.pid, min_threads=2)
    assert api.call("query-status")["return"]["state"] == "running"


def test_sandboxed_serial_log_is_cut_back_not_rotated(kvm, tmp):
    """Rotation renames files by path, which a sandboxed kvmm cannot reach:
    the log starts again in the same file, keeping the newest output."""
    log = os.path.join(tmp, "console.log")
    path = os.path.join(tmp, "vm.json")
    with open(path, "w") as f:
        json.dump({"kernel": GUEST, "memory": "64M", "cmdline": "kvmmtest.action=poweroff",
                   "serial": {"mode": "stdio", "log": {"path": log, "max_size": 300}},
                   "sandbox": True}, f)
    r = subprocess.run([KVMM, "--config", path], capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert len(r.stdout) > 2 * 300
    with open(log, "rb") as f:
        kept = f.read()
    assert 0 < len(kept) <= 300
    assert r.stdout.endswith(kept)
    assert not os.path.exists(log + ".0")


def test_sandbox_needs_root(kvm, tmp):
    r = subprocess.run(["setpriv", "--reuid", str(NOBODY), "--regid", str(NOGROUP), "--clear-groups",
                        KVMM, "--kernel", GUEST, "--sandbox"],
                       capture_output=True, timeout=60)
    assert r.returncode == 1
    err = r.stderr.decode()
    # /dev/kvm may already refuse nobody; either way kvmm says why
    assert "must start as root" in err or "/dev/kvm" in err, err


def test_sandbox_refuses_root_as_its_user(tmp):
    r = subprocess.run([KVMM, "--kernel", GUEST, "--uid", "0"], capture_output=True, timeout=60)
    assert r.returncode == 1
    assert "not 0" in r.stderr.decode()


@pytest.fixture
def odd_files(tmp):
    """Paths that are no image or log: a FIFO (which would block a plain
    open), a listening socket, a directory, a /proc and a /sys file."""
    fifo = os.path.join(tmp, "fifo")
    os.mkfifo(fifo)
    sock_path = os.path.join(tmp, "sock")
    s = socket.socket(socket.AF_UNIX)
    s.bind(sock_path)
    s.listen()
    yield {"FIFO": fifo, "socket": sock_path, "directory": tmp,
           "/proc file": "/proc/self/status",
           "/sys file": "/sys/kernel/mm/transparent_hugepage/enabled"}
    s.close()


@pytest.mark.parametrize("sandbox", [[], ["--sandbox"]], ids=["plain", "sandboxed"])
@pytest.mark.parametrize("what", ["kernel", "initrd", "disk", "serial", "log"])
def test_non_files_are_refused(kvm, tmp, odd_files, what, sandbox):
    for kind, path in odd_files.items():
        if what == "log":
            conf = os.path.join(tmp, "vm.json")
            with open(conf, "w") as f:
                json.dump({"kernel": GUEST, "serial": {"mode": "none", "log": {"path": path}}}, f)
            argv = [KVMM, "--config", conf]
        else:
            argv = [KVMM, "--kernel", path if what == "kernel" else GUEST]
            argv += {"kernel": [], "initrd": ["--initrd", path],
                     "disk": ["--disk", f"path={path},readonly=on"],
                     "serial": ["--serial", f"file:{path}"]}[what]
        r = subprocess.run(argv + sandbox, capture_output=True, timeout=60)
        err = r.stderr.decode()
        assert r.returncode == 1, (what, kind, err)
        assert path in err and "KVMMTEST" not in r.stdout.decode(), (what, kind, err)
        words = {"kernel": ["not a regular file", "Is a directory"],
                 "initrd": ["not a regular file", "Is a directory"],
                 "disk": [f"(it is a {kind})", "(it is a socket or a FIFO)"],
                 "serial": [f"is a {kind}", "FIFO or a socket", "Is a directory"],
                 "log": [f"is a {kind}", "FIFO or a socket", "Is a directory"]}[what]
        assert any(w in err for w in words), (what, kind, err)


@pytest.mark.parametrize("sandbox", [[], ["--sandbox"]], ids=["plain", "sandboxed"])
@pytest.mark.parametrize("kind", ["FIFO", "/proc file"])
def test_non_file_qcow2_backing_is_refused(kvm, tmp, odd_files, kind, sandbox):
    """A qcow2 image naming a FIFO (which open would wait on) or a /proc
    file as its backing file."""
    backing = odd_files[kind]
    img = os.path.join(tmp, "top.qcow2")
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-u", "-b", backing, "-F", "raw",
                    img, "1M"], check=True)
    r = subprocess.run([KVMM, "--kernel", GUEST, "--disk",
                        f"path={img},format=qcow2,backing={backing},backing_format=raw"] + sandbox,
                       capture_output=True, timeout=60)
    err = r.stderr.decode()
    assert r.returncode == 1, err
    assert f"backing file {backing} of disk {img} is not a regular file or a block device" in err, err
