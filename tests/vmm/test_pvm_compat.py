"""kvmm's --pvm-compat mode (docs/pvm-compat.md) and tools/extract-vmlinux,
which together boot Debian's kernel on KVM-PVM hosts (the Linux tier,
tests/linux/, is where Linux itself runs)."""
import glob
import gzip
import lzma
import os
import struct
import subprocess

import pytest

import kvmmtest
from kvmmtest import TOP

EXTRACT = os.path.join(TOP, "tools", "extract-vmlinux")


def test_pvm_compat_only_where_the_host_lacks_vmx_svm(kvm, vms, tmp):
    """On a KVM-PVM host the mode comes on and leaves a guest that never
    trips it as it was (the test guest runs all its checks and powers
    off); on a host with VMX/SVM kvmm refuses to start with it."""
    g = kvmmtest.start(vms, kvmmtest.kvmm_argv(extra=["--pvm-compat"]))
    if kvmmtest.hardware_virtualization():
        assert g.wait_exit() == 1
        assert b"KVM-PVM test hosts only: this host has VMX/SVM" in g.stderr, g.stderr
        return
    g.wait_for(r"KVMMTEST done")
    assert not g.records("fail"), g.records("fail")
    assert g.wait_exit() == 0
    assert b"KVM-PVM compatibility mode on" in g.stderr, g.stderr


def test_pvm_compat_is_a_config_key(kvm, vms, tmp):
    """The same switch from a --config file, and a wrong type refused."""
    bad = os.path.join(tmp, "bad.json")
    with open(bad, "w") as f:
        f.write('{"kernel": "%s", "pvm_compat": "yes"}' % kvmmtest.GUEST)
    r = subprocess.run([kvmmtest.KVMM, "--config", bad], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and "pvm_compat" in r.stderr, r.stderr


def bzimage(payload, setup_sects=4):
    """A minimal bzImage: setup sectors with the header fields the tool
    reads, then the protected-mode part holding PAYLOAD at an offset."""
    setup = bytearray((setup_sects + 1) * 512)
    setup[0x1f1] = setup_sects
    setup[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", setup, 0x206, 0x20f)
    struct.pack_into("<II", setup, 0x248, 0x40, len(payload))
    return bytes(setup) + b"\xaa" * 0x40 + payload + b"\x00" * 16


@pytest.mark.parametrize("compress", [
    pytest.param(lambda d: lzma.compress(d, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC32), id="xz"),
    pytest.param(gzip.compress, id="gzip"),
])
def test_extract_vmlinux_finds_the_payload_through_the_header(tmp, compress):
    elf = b"\x7fELF" + os.urandom(5000)
    src, out = os.path.join(tmp, "bz"), os.path.join(tmp, "vmlinux")
    with open(src, "wb") as f:
        f.write(bzimage(compress(elf)))
    subprocess.run([EXTRACT, src, out], check=True, timeout=60)
    with open(out, "rb") as f:
        assert f.read() == elf


def test_extract_vmlinux_refuses_what_is_not_a_bzimage(tmp):
    src, out = os.path.join(tmp, "bz"), os.path.join(tmp, "vmlinux")
    for data, why in ((os.urandom(4096), "not a bzImage"),
                      (bzimage(b"\x01\x02" * 100), "unknown payload compression"),
                      (bzimage(b"x")[:0x300], "past the end")):
        with open(src, "wb") as f:
            f.write(data)
        r = subprocess.run([EXTRACT, src, out], capture_output=True, text=True, timeout=60)
        assert r.returncode == 1 and why in r.stderr, r.stderr


def test_extract_vmlinux_on_debians_kernel(tmp):
    """The real thing, where linux-image-amd64 is installed (always in CI:
    tools/install-deps): an ELF with Xen's PHYS32_ENTRY note, which is
    what kvmm's PVH loader needs."""
    kernels = sorted(glob.glob("/boot/vmlinuz-*"))
    if not kernels:
        pytest.fail("no /boot/vmlinuz-*: tools/install-deps installs linux-image-amd64")
    out = os.path.join(tmp, "vmlinux")
    subprocess.run([EXTRACT, kernels[-1], out], check=True, timeout=120)
    notes = subprocess.run(["readelf", "-n", out], capture_output=True, text=True, check=True).stdout
    assert "ELF64" in subprocess.run(["readelf", "-h", out], capture_output=True, text=True).stdout
    assert "0x00000012" in notes or "NT_XEN_PHYS32_ENTRY" in notes or "Unknown note type: (0x00000012)" in notes, notes
