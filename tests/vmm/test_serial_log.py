"""A log on kvmm's character devices ("log": {"path", "append"}, what
virtkvmmd makes of libvirt's <log file=... append=...>): the file gets
everything the guest wrote, whatever the backend, written over at start
or appended to; a log kvmm cannot open stops it before the guest runs."""
import json
import os
import subprocess

from kvmmtest import GUEST, KVMM


def run(tmp, serial, **extra):
    conf = dict({"kernel": GUEST, "memory": "64M", "cmdline": "kvmmtest.action=poweroff",
                 "serial": serial}, **extra)
    path = os.path.join(tmp, "vm.json")
    with open(path, "w") as f:
        json.dump(conf, f)
    return subprocess.run([KVMM, "--config", path], capture_output=True, timeout=120)


def test_log_copies_the_serial_output(kvm, tmp):
    log = os.path.join(tmp, "console.log")
    with open(log, "w") as f:
        f.write("an earlier run\n")
    r = run(tmp, {"mode": "stdio", "log": {"path": log}})
    assert r.returncode == 0, r.stderr
    with open(log, "rb") as f:
        first = f.read()
    assert b"KVMMTEST done" in first
    assert first == r.stdout            # byte for byte what stdio got
    # append: the earlier run stays, the new one follows it
    r = run(tmp, {"mode": "none", "log": {"path": log, "append": True}})
    assert r.returncode == 0, r.stderr
    with open(log, "rb") as f:
        both = f.read()
    assert both.startswith(first) and both.count(b"KVMMTEST done") == 2


def test_virtio_console_log_and_a_log_kvmm_cannot_open(kvm, tmp):
    log = os.path.join(tmp, "hvc.log")
    r = run(tmp, "none", console={"mode": "none", "log": {"path": log, "append": True}})
    assert r.returncode == 0, r.stderr
    assert os.path.exists(log)          # opened (the guest writes nothing there unasked)
    bad = os.path.join(tmp, "no-such-dir", "console.log")
    r = run(tmp, {"mode": "none", "log": {"path": bad}})
    assert r.returncode == 1
    assert f"cannot open serial log file {bad}: No such file or directory" in r.stderr.decode()


def test_log_is_rotated_like_virtlogd(kvm, tmp):
    """Past max_size the log becomes FILE.0 (FILE.0 FILE.1, up to FILE.2),
    so a chatty guest cannot fill the host's disk: what is kept is the
    newest output, in order, and every file within the size."""
    log = os.path.join(tmp, "console.log")
    r = run(tmp, {"mode": "stdio", "log": {"path": log, "max_size": 300}})
    assert r.returncode == 0, r.stderr
    assert len(r.stdout) > 4 * 300, "the guest wrote too little to rotate 3 times"
    files = [log + ".2", log + ".1", log + ".0", log]
    kept = b""
    for p in files:
        with open(p, "rb") as f:
            data = f.read()
        assert 0 < len(data) <= 300, (p, len(data))
        kept += data
    assert not os.path.exists(log + ".3")
    assert r.stdout.endswith(kept)
