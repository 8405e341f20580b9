"""The Linux tier: Debian's own kernel under virtkvmmd and kvmm, with a
busybox initramfs built from busybox-static and Debian's virtio modules,
every device kvmm has and every check in one boot, driven with virsh
(tier.py; the guest's side in tests/lib/linuxguest.py).  On KVM-PVM hosts
it runs through kvmm's --pvm-compat mode, many minutes of one CPU, in the
background from the suite's start (conftest.py); KVMM_LINUX_PVM=0 skips
it there."""
import pytest


def test_debian_kernel_on_kvmm(linux_tier):
    """Both disks read back and identified by serial, the write lands in
    the image and the read-only disk refuses one, ping over the tap,
    /dev/hwrng on virtio_rng, a line each way on hvc0 through virsh
    console, Debian's virtio_balloon following virsh setmem down and up;
    no ACPI or PCI complaint in dmesg, MSI-X vectors for every virtio
    queue; virsh shutdown (the ACPI power button) powers it off."""
    r = linux_tier
    if r["outcome"] != "passed":
        pytest.fail(r.get("message", "") + "\n--- the run's output ---\n" + r["log"][-4000:])
    # What the run took and what the compatibility mode stood in for, for
    # the report (pytest -s or -rP shows it).
    print(f"to /init {r['userspace']} s, the whole boot {r['seconds']} s, "
          f"its result taken {r['wall']} s after the suite began; kvmm's CPU time {r['cpu']} s")
    print("\n".join(r["compat"]))
