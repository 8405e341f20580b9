"""The Linux tier: Debian's own kernel under kvmm, with a busybox initramfs
the test builds from busybox-static.  Runs only where the host has hardware
virtualization; on KVM-PVM hosts a stock kernel cannot boot under any VMM
(see DESIGN.md, 'The machines we build on'), and the tier is skipped with
that reason — the only skip the suite allows."""
import glob
import os
import shutil
import subprocess

import pytest

import linuxguest
import netns as netns_lib
from kvmmtest import KVMM, TOP, connect, hardware_virtualization, kvm_unavailable, start

MKINITRAMFS = os.path.join(TOP, "tools", "mkinitramfs")

PVM_REASON = ("host KVM has no VMX/SVM (KVM-PVM): guest kernel code is emulated ~1000x slower, "
              "so a stock kernel cannot boot here under any VMM; the Linux tier runs on hosts "
              "with hardware virtualization")


@pytest.fixture
def linux_host():
    why = kvm_unavailable()
    if why:
        if os.environ.get("KVMM_REQUIRE_KVM") == "1":
            pytest.fail("KVMM_REQUIRE_KVM=1 but " + why)
        pytest.skip(why)
    if not hardware_virtualization():
        pytest.skip(PVM_REASON)
    kernels = sorted(glob.glob("/boot/vmlinuz-*"))
    busybox = shutil.which("busybox") or "/bin/busybox"
    if not kernels or not os.path.exists(busybox):
        pytest.fail("the Linux tier needs linux-image-amd64 and busybox-static (tools/install-deps)")
    return kernels[-1], busybox


@pytest.fixture
def linux_netns(linux_host):
    """A private network namespace, made only once the tier is known to run."""
    yield from netns_lib.private("kvmml-")


def build_initramfs(path, busybox):
    init = (b"#!/bin/busybox sh\n/bin/busybox mkdir -p /proc /sys\n"
            b"/bin/busybox mount -t proc proc /proc\n"
            b"echo KVMM-LINUX cpus=$(/bin/busybox grep -c ^processor /proc/cpuinfo)\n"
            b"echo KVMM-LINUX mem=$(/bin/busybox grep MemTotal /proc/meminfo)\n"
            b"/bin/busybox poweroff -f\n")
    script = os.path.join(os.path.dirname(path), "init.sh")
    with open(script, "wb") as f:
        f.write(init)
    subprocess.run([MKINITRAMFS, path, "--init", script, "--busybox", busybox], check=True)


def test_debian_kernel_boots_to_init(linux_host, vms, tmp):
    kernel, busybox = linux_host
    initrd = os.path.join(tmp, "initramfs.gz")
    build_initramfs(initrd, busybox)
    g = start(vms, [KVMM, "--kernel", kernel, "--initrd", initrd, "--memory", "512M", "--cpus", "2",
                    "--serial", "stdio", "--cmdline", "console=ttyS0 panic=-1 quiet"])
    m = g.wait_for(r"KVMM-LINUX cpus=(\d+)", timeout=120)
    assert m.group(1) == "2"
    g.wait_for(r"KVMM-LINUX mem=MemTotal:\s+\d+ kB")
    assert g.wait_exit(120) == 0


def test_debian_kernel_uses_kvmm_virtio_devices(linux_host, linux_netns, vms, tmp):
    """Debian's own virtio drivers (modules from /lib/modules) against
    kvmm's devices: both disks read back and identified by serial, the
    write lands in the image and the read-only disk refuses one, ping over
    the tap, /dev/hwrng on virtio_rng, a line on /dev/hvc0."""
    kernel, busybox = linux_host
    case = linuxguest.Case(tmp, linux_netns, kernel, busybox)
    argv = ["ip", "netns", "exec", case.netns, KVMM, "--kernel", case.kernel,
            "--initrd", case.initrd, "--memory", "512M", "--cpus", "2", "--serial", "stdio",
            "--cmdline", case.cmdline, "--rng", "--net", f"tap={case.tap},mac={case.mac}",
            "--console", f"unix:{case.console}"]
    for path, serial, ro in case.disks:
        argv += ["--disk", f"path={path},serial={serial}" + (",readonly=on" if ro else "")]
    g = start(vms, argv)
    console = connect(case.console, timeout=120)
    try:
        case.check(g, console)
    finally:
        console.close()
