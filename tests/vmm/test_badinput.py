"""Bad input gets one line naming the problem and the fix, a non-zero exit,
and nothing left behind (no socket, no file)."""
import os
import subprocess

import pytest

from kvmmtest import GUEST, KVMM


def run(tmp, *args, timeout=30):
    """Runs kvmm with a control socket in tmp; checks nothing is left."""
    sock = os.path.join(tmp, "api.sock")
    before = set(os.listdir(tmp))
    r = subprocess.run([KVMM, "--api-socket", sock, "--serial", "none", *args],
                       capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert set(os.listdir(tmp)) == before, "kvmm left files behind"
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("kvmm: error: ")
    return lines[0]


def test_missing_kernel(tmp):
    err = run(tmp, "--kernel", "/nonexistent/bzImage")
    assert "cannot read kernel /nonexistent/bzImage: No such file or directory; check the --kernel path" in err


def test_unreadable_kernel(tmp):
    if os.geteuid() == 0:
        err = run(tmp, "--kernel", tmp)      # a directory: root can read any file
        assert "cannot read kernel" in err
    else:
        p = os.path.join(tmp, "k")
        open(p, "w").close()
        os.chmod(p, 0)
        assert "Permission denied" in run(tmp, "--kernel", p)


def test_not_a_kernel(tmp):
    p = os.path.join(tmp, "notakernel")
    with open(p, "wb") as f:
        f.write(b"\x7fELF" + b"garbage" * 100)
    err = run(tmp, "--kernel", p)
    assert "is an ELF file but not a 64-bit x86 one: give --kernel an x86_64 vmlinux or bzImage" in err
    with open(p, "wb") as f:
        f.write(b"hello world\n" * 100)
    assert "is neither a bzImage nor an ELF vmlinux: give --kernel a Linux kernel image" in run(tmp, "--kernel", p)


def test_missing_initrd(tmp):
    err = run(tmp, "--kernel", GUEST, "--initrd", "/nonexistent/initrd")
    assert "cannot read initrd /nonexistent/initrd" in err and "--initrd" in err


def test_initrd_too_big_for_memory(tmp):
    p = os.path.join(tmp, "big.img")
    with open(p, "wb") as f:
        f.truncate(40 << 20)
    err = run(tmp, "--kernel", GUEST, "--initrd", p, "--memory", "32M")
    assert "does not fit in guest memory" in err and "--memory" in err


@pytest.mark.parametrize("value,message", [
    ("12Q", "memory size '12Q' is not valid"),
    ("lots", "memory size 'lots' is not valid"),
    ("1M", "is too small"),
    ("5T", "more than kvmm supports"),
])
def test_invalid_memory(tmp, value, message):
    assert message in run(tmp, "--kernel", GUEST, "--memory", value)


def test_memory_that_cannot_be_mapped(kvm, tmp):
    # Within the configuration limit, but more than this process may map.
    r = subprocess.run(["sh", "-c", f"ulimit -v 2000000; exec {KVMM} --kernel {GUEST} --serial none "
                        f"--api-socket {tmp}/api.sock --memory 900G"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1, r.stderr
    # one line: how much, why (mmap's errno under the limit), and the fix
    assert r.stderr == ("kvmm: error: cannot map 921600 MiB of guest memory: "
                        "Cannot allocate memory; lower --memory\n"), r.stderr
    assert os.listdir(tmp) == []


@pytest.mark.parametrize("value,message", [
    ("0", "cpus 0 is out of range: use a count from 1 to 254"),
    ("-3", "cpus -3 is out of range"),
    ("many", "cpus 'many' is not a number"),
    ("4096", "cpus 4096 is out of range"),
])
def test_invalid_cpu_count(tmp, value, message):
    assert message in run(tmp, "--kernel", GUEST, "--cpus", value)


def test_unknown_flag(tmp):
    assert "unknown option '--frobnicate'; see kvmm --help" in run(tmp, "--kernel", GUEST, "--frobnicate")


def test_flag_without_value(tmp):
    assert "option '--kernel' needs a value" in run(tmp, "--kernel")


def test_rng_takes_no_value(tmp):
    assert "unknown option '--rng=yes'" in run(tmp, "--kernel", GUEST, "--rng=yes")


def test_rng_in_config_must_be_boolean(tmp):
    p = os.path.join(tmp, "vm.json")
    with open(p, "w") as f:
        f.write('{"kernel": "%s", "rng": "yes"}' % GUEST)
    assert "'rng' must be true or false" in run(tmp, "--config", p)
    os.unlink(p)


def test_no_kernel(tmp):
    assert "no kernel given: use --kernel PATH" in run(tmp)


def test_bad_config_file(tmp):
    p = os.path.join(tmp, "vm.json")
    with open(p, "w") as f:
        f.write("{ not json")
    assert "cannot read configuration" in run(tmp, "--config", p)
    os.unlink(p)


def test_unknown_serial_backend(tmp):
    assert "serial backend 'tcp' is unknown" in run(tmp, "--kernel", GUEST, "--serial", "tcp:1234")


def test_bad_console_backends(tmp):
    assert "console backend 'tcp' is unknown: use stdio, pty, file:PATH, unix:PATH or none" in \
        run(tmp, "--kernel", GUEST, "--console", "tcp:1234")
    assert "console backend 'unix' needs a path: use unix:PATH" in \
        run(tmp, "--kernel", GUEST, "--console", "unix")
    assert "console backend 'pty' takes no path" in run(tmp, "--kernel", GUEST, "--console", "pty:/x")
    assert "option '--console' needs a value" in run(tmp, "--kernel", GUEST, "--console")


def test_console_and_serial_cannot_share_a_host_end(tmp):
    r = subprocess.run([KVMM, "--kernel", GUEST, "--console", "stdio"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert r.stderr == ("kvmm: error: serial and console cannot both use stdio: give the serial "
                        "port another backend, e.g. --serial none\n")
    s = os.path.join(tmp, "c.sock")
    assert f"serial and console cannot share the socket {s}: give each its own path" in \
        run(tmp, "--kernel", GUEST, "--serial", f"unix:{s}", "--console", f"unix:{s}")


def test_console_socket_or_file_in_missing_directory(kvm, tmp):
    err = run(tmp, "--kernel", GUEST, "--console", f"unix:{tmp}/nodir/c.sock")
    assert f"cannot listen on virtio console socket {tmp}/nodir/c.sock: No such file or directory; " \
           "create its directory first" in err
    err = run(tmp, "--kernel", GUEST, "--console", f"file:{tmp}/nodir/c.log")
    assert f"cannot open virtio console output file {tmp}/nodir/c.log: No such file or directory" in err


def test_console_socket_removed_when_start_fails(kvm, tmp):
    # The socket is made before the kernel is read: a bad kernel must
    # not leave it behind (run() checks tmp is as it was).
    err = run(tmp, "--kernel", "/nonexistent/bzImage", "--console", f"unix:{tmp}/c.sock")
    assert "cannot read kernel /nonexistent/bzImage" in err


def test_no_kvm_device(tmp):
    # An empty mount namespace view of /dev: kvmm must say what to do.
    r = subprocess.run(["unshare", "-m", "sh", "-c",
                        f"mount -t tmpfs none /dev && exec {KVMM} --kernel {GUEST} --serial none"],
                       capture_output=True, text=True, timeout=30)
    if "unshare failed" in r.stderr or "Operation not permitted" in r.stderr:
        pytest.skip("cannot create a mount namespace here")
    assert r.returncode == 1
    assert "/dev/kvm does not exist: enable virtualization" in r.stderr


def test_no_permission_on_kvm(tmp):
    if os.geteuid() != 0:
        pytest.skip("needs root to drop privileges")
    import shutil
    os.chmod(tmp, 0o755)
    kernel = os.path.join(tmp, "guest.bzImage")
    shutil.copy(GUEST, kernel)
    os.chmod(kernel, 0o644)
    # A /dev/kvm of mode 0600 in a mount namespace of its own, whatever
    # the host's mode is.
    st = os.stat("/dev/kvm")
    script = (f"mount -t tmpfs none /dev && mknod -m 0600 /dev/kvm c {os.major(st.st_rdev)} "
              f"{os.minor(st.st_rdev)} && exec setpriv --reuid=65534 --regid=65534 --clear-groups "
              f"{KVMM} --kernel {kernel} --serial none")
    r = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 1, r.stderr
    assert "no permission to open /dev/kvm: run kvmm as root or add your user to the 'kvm' group" in r.stderr


def test_config_file_and_flags_share_one_parser(kvm, tmp):
    p = os.path.join(tmp, "vm.json")
    with open(p, "w") as f:
        f.write('{"kernel": "%s", "memory": "128M", "cmdline": "kvmmtest.action=poweroff", '
                '"serial": "none", "cpus": 2}' % GUEST)
    r = subprocess.run([KVMM, "--config", p], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    with open(p, "w") as f:
        f.write('{"kernel": "%s", "memory": "12Q"}' % GUEST)
    r = subprocess.run([KVMM, "--config", p], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert "memory size '12Q' is not valid" in r.stderr
    os.unlink(p)


def test_control_socket_in_missing_directory(kvm, tmp):
    r = subprocess.run([KVMM, "--kernel", GUEST, "--serial", "none",
                        "--api-socket", os.path.join(tmp, "nodir", "api.sock")],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert f"cannot listen on control socket {tmp}/nodir/api.sock: No such file or directory; create its directory first" in r.stderr
    assert os.listdir(tmp) == []


def test_control_socket_already_in_use(kvm, vms, tmp):
    sock = os.path.join(tmp, "api.sock")
    open(sock, "w").close()
    r = subprocess.run([KVMM, "--kernel", GUEST, "--serial", "none", "--api-socket", sock],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert "Address already in use; another process uses it, or a stale file is left" in r.stderr
    assert os.path.exists(sock), "kvmm removed a file it did not create"


def image(tmp, name="d.img", size=1 << 20):
    p = os.path.join(tmp, name)
    with open(p, "wb") as f:
        f.truncate(size)
    return p


def test_disk_missing_image(kvm, tmp):
    err = run(tmp, "--kernel", GUEST, "--disk", "path=/nonexistent/d.img")
    assert "cannot open disk /nonexistent/d.img: No such file or directory; check the --disk path" in err


def test_disk_unopenable_image(kvm, tmp):
    # A directory cannot be opened for writing, even by root.
    d = os.path.join(tmp, "adir")
    os.mkdir(d)
    err = run(tmp, "--kernel", GUEST, "--disk", f"path={d}")
    assert f"cannot open disk {d}: Is a directory" in err


def test_disk_that_is_not_an_image(kvm, tmp):
    err = run(tmp, "--kernel", GUEST, "--disk", "path=/dev/null,readonly=on")
    assert "disk /dev/null is not a regular file or a block device" in err


def test_disk_given_writable_twice(kvm, tmp):
    p = image(tmp)
    link = os.path.join(tmp, "other-name.img")
    os.symlink(p, link)
    for second in (f"path={link}", f"path={link},readonly=on"):
        err = run(tmp, "--kernel", GUEST, "--disk", f"path={p}", "--disk", second)
        assert f"disk {link} is given twice and is writable" in err
    # Read-only both times is fine: the guest boots and powers off.
    r = subprocess.run([KVMM, "--kernel", GUEST, "--serial", "none", "--cmdline", "kvmmtest.action=poweroff",
                        "--disk", f"path={p},readonly=on", "--disk", f"path={link},readonly=on"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


def test_disk_in_use_by_another_process(kvm, tmp):
    import fcntl
    p = image(tmp)
    with open(p, "rb") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        err = run(tmp, "--kernel", GUEST, "--disk", f"path={p}")
    assert f"disk {p} is in use by another process" in err


@pytest.mark.parametrize("value,message", [
    ("path=IMG,cache=sometimes", "disk 0: cache mode 'sometimes' is unknown: use none, writeback, writethrough, directsync or unsafe"),
    ("path=IMG,readonly=maybe", "disk 0: readonly=maybe is not valid: use readonly=on or readonly=off"),
    ("path=IMG,bus=ide", "disk 0: unknown option 'bus'"),
    ("readonly=on", "disk 0 has no path: use --disk path=IMAGE"),
    ("IMG", "has no value: use e.g. path=IMAGE,readonly=on"),
    ("path=IMG,serial=" + "x" * 21, "is longer than 20 bytes"),
    ("path=IMG,blk_size=1000", "disk 0: blk_size 1000 is not valid"),
    ("path=", "disk 0: path is empty"),
])
def test_disk_bad_option(tmp, value, message):
    p = image(tmp)
    assert message in run(tmp, "--kernel", GUEST, "--disk", value.replace("IMG", p))


def test_disk_needs_a_value(tmp):
    assert "option '--disk' needs a value" in run(tmp, "--kernel", GUEST, "--disk")
