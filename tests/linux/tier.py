"""The Linux tier's one boot: Debian's own kernel as a libvirt domain under
virtkvmmd, driven with virsh as a user would, with every device kvmm has
-- two virtio disks (one read-only), a NIC on a tap in a private network
namespace, rng, a virtio console, the balloon -- and every check of
tests/lib/linuxguest.py in that boot.  The host's part: `virsh console`
on the virtio console (hvc0) reads the guest's line and answers it,
`virsh setmem` inflates and deflates Debian's virtio_balloon, `virsh
shutdown` presses the ACPI power button.

On hosts with VMX/SVM it boots the bzImage as it is.  On KVM-PVM hosts
(DESIGN.md §7) it boots the vmlinux inside the same bzImage through its
PVH entry, the daemon told to run kvmm in its --pvm-compat mode
(docs/pvm-compat.md): one vCPU, a slowed guest clock and hidden CPU
features, many minutes instead of seconds.  So tests/linux/conftest.py
starts this file as its own process as the suite begins, at nice 10, and
test_linux.py collects the result: the boot overlaps the rest of the
suite.  Run alone:

    KVMM_BUILDDIR=$PWD python3 tests/linux/tier.py --result /tmp/tier.json

KVMM_LINUX_DIAG=DIR writes DIR/timing.txt (host seconds at each serial
line, kvmm's CPU time), DIR/dmesg.txt (the guest's dmesg, through hvc0)
and DIR/compat.txt (what the mode stood in for); KVMM_LINUX_CMDLINE adds
to the kernel's command line; KVMM_LINUX_PVM_SLOWDOWN, _MEMORY and
_TIMEOUT change the clock's slowdown, the guest's memory and each step's
wait under --pvm-compat."""
import argparse
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "lib"))

import linuxguest  # noqa: E402
import netns as netns_lib  # noqa: E402
from drvtest import INSTALLED_CONF, Daemon, virsh, wait_for  # noqa: E402
from kvmmtest import TOP, hardware_virtualization, host_tsc_khz, kvm_unavailable  # noqa: E402
from virshconsole import Console  # noqa: E402

EXTRACT_VMLINUX = os.path.join(TOP, "tools", "extract-vmlinux")
NAME = "debian-linux"

# Guest time runs this many times slower than the host's under
# --pvm-compat: the emulated kernel needs milliseconds for a timer
# interrupt, so at its own 4 ms tick it would do little else.
PVM_SLOWDOWN = int(os.environ.get("KVMM_LINUX_PVM_SLOWDOWN", "10"))

# The guest's memory under --pvm-compat: the kernel sets up a struct page
# for every 4 KiB of it, hands each to the buddy allocator and sizes its
# hash tables by it, all emulated.  The initramfs, the modules and the
# checks need a few MiB beyond the kernel's own ~45; 128 MiB is also the
# size of one memory section, so no struct pages are left for the deferred
# set-up.
PVM_MEMORY_MIB = int(os.environ.get("KVMM_LINUX_PVM_MEMORY", "128M").rstrip("Mm"))

# What `virsh setmem` takes from the guest and gives back: 4,096 pages,
# 16 batches of Linux's 256, each a kick and an madvise in kvmm.
BALLOON_KIB = 16 * 1024
# How often (host seconds) kvmm asks the guest's balloon driver for its
# statistics, which virsh dommemstat then shows.
STATS_PERIOD = 5

SKIP_PVM = ("host KVM has no VMX/SVM (KVM-PVM) and KVMM_LINUX_PVM=0: the tier boots "
            "Debian's kernel here only through kvmm --pvm-compat, which takes many minutes")


def pvm_cmdline():
    """What the kernel is told on a KVM-PVM host (docs/pvm-compat.md):
    CPU features the emulator cannot run hidden (KVM_SET_CPUID2 cannot hide
    them here), the TSC taken as PVM_SLOWDOWN times faster than it is, and
    no kvmclock or clocksource watchdog to correct that; no self-tests,
    mitigations or zeroing of every allocation, which cost minutes of
    emulated CPL0 time and are not what the tier tests.  SMAP and POPCNT
    hidden too: the kernel then runs no clac/stac and calls its software
    hweight, where each of those instructions was an emulation-failure exit
    to kvmm (~44,000 and ~900 in the tier's last passing run); no IO-APIC
    timer check (delay loops on the slowed clock) and expedited RCU grace
    periods (one vCPU: no waiting for ticks of the slowed clock); the lock
    prefixes left as they are (noreplace-smp): with one CPU the kernel
    would otherwise rewrite each of its ~9,000, one text_poke (two page
    table switches) apiece; no tracefs (a directory and files for every
    one of the kernel's trace events, ~50 s of CPU time) and no security
    modules beyond capabilities (their set-up and a hook on every open and
    exec)."""
    khz = host_tsc_khz()
    assert khz, "the host's TSC frequency is unknown"
    return ("noxsave clearcpuid=cx16,ssse3,sse4_1,sse4_2,pclmulqdq,aes,sha_ni,smap,popcnt "
            "cryptomgr.notests rodata=off nowatchdog mitigations=off init_on_alloc=0 "
            f"no-kvmclock tsc_early_khz={khz * PVM_SLOWDOWN} tsc=reliable clocksource=tsc "
            "initcall_blacklist=trace_eval_init,ftrace_check_for_weak_functions,tracer_init_tracefs "
            "no_timer_check rcupdate.rcu_expedited=1 noreplace-smp lsm=capability")


def plan():
    """("run", (bzimage, busybox, pvm)), or ("skip" or "fail", why)."""
    why = kvm_unavailable()
    if why:
        return ("fail" if os.environ.get("KVMM_REQUIRE_KVM") == "1" else "skip"), why
    pvm = not hardware_virtualization()
    if pvm and os.environ.get("KVMM_LINUX_PVM", "1") == "0":
        return "skip", SKIP_PVM
    kernels = sorted(glob.glob("/boot/vmlinuz-*"))
    busybox = shutil.which("busybox") or "/bin/busybox"
    if not kernels or not os.path.exists(busybox):
        return "fail", "the Linux tier needs linux-image-amd64 and busybox-static (tools/install-deps)"
    if os.geteuid() != 0:
        return "skip", "the Linux tier needs root (a network namespace, a tap, a system daemon)"
    return "run", (kernels[-1], busybox, pvm)


class SerialLog:
    """The guest's serial port, a file the daemon's kvmm writes: its
    complete lines, each with the host second it was first seen."""

    def __init__(self, path):
        self.path, self.lines, self.stamps = path, [], []
        self._offset, self._buf = 0, b""
        # Polled in the background too, so that each line's time is when
        # it came, also while the host waits on something else.
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._poller, daemon=True)
        self._thread.start()

    def _poller(self):
        while not self._stop.wait(0.5):
            self.poll()

    def close(self):
        self._stop.set()
        self._thread.join()
        self.poll()

    def poll(self):
        with self._lock:
            self._poll()

    def _poll(self):
        try:
            with open(self.path, "rb") as f:
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            data = b""
        self._offset += len(data)
        *done, self._buf = (self._buf + data).split(b"\n")
        now = time.monotonic()
        for line in done:
            self.lines.append(line.decode(errors="replace").rstrip("\r"))
            self.stamps.append(now)

    def wait_for(self, pattern, timeout, alive):
        """Until a line matches PATTERN; fails at once if ALIVE() says the
        guest is gone, or after TIMEOUT seconds."""
        rx, deadline, checked = re.compile(pattern), time.monotonic() + timeout, 0
        while True:
            self.poll()
            if any(rx.search(l) for l in self.lines):
                return
            now = time.monotonic()
            if now - checked > 5:
                checked = now
                assert alive(), f"the guest is gone before {pattern!r}; last lines:\n" + \
                    "\n".join(self.lines[-30:])
            assert now < deadline, f"no {pattern!r} in {timeout} s; last lines:\n" + \
                "\n".join(self.lines[-30:])
            time.sleep(0.2)


def domain_xml(case, kernel, cpus, memory_mib, serial_log):
    disks = ""
    for (path, serial, ro), dev in zip(case.disks, ("vda", "vdb")):
        disks += f"""
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='{path}'/>
      <target dev='{dev}' bus='virtio'/>
      <serial>{serial}</serial>{"<readonly/>" if ro else ""}
    </disk>"""
    return f"""<domain type='kvm'>
  <name>{NAME}</name>
  <memory unit='MiB'>{memory_mib}</memory>
  <vcpu>{cpus}</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{kernel}</kernel>
    <initrd>{case.initrd}</initrd>
    <cmdline>{case.cmdline}</cmdline>
  </os>
  <on_poweroff>destroy</on_poweroff>
  <on_crash>destroy</on_crash>
  <devices>{disks}
    <interface type='ethernet'>
      <mac address='{case.mac}'/>
      <target dev='{case.tap}' managed='no'/>
      <model type='virtio'/>
    </interface>
    <rng model='virtio'><backend model='random'>/dev/urandom</backend></rng>
    <serial type='file'><source path='{serial_log}'/><target port='0'/></serial>
    <console type='pty'><target type='virtio'/></console>
    <memballoon model='virtio'><stats period='{STATS_PERIOD}'/></memballoon>
  </devices>
</domain>
"""


def ok(r):
    assert r.returncode == 0, f"{' '.join(r.args)}: {r.stderr.strip() or r.stdout.strip()}"
    return r.stdout


def run(work, netns, bzimage, busybox, pvm):
    """The boot and its checks; returns what the report says of it.
    Raises AssertionError with the reason when a check fails."""
    kernel, cpus, memory_mib, extra, timeout = bzimage, 2, 512, "", 300
    if pvm:
        kernel = os.path.join(work, "vmlinux")
        subprocess.run([EXTRACT_VMLINUX, bzimage, kernel], check=True)
        cpus, memory_mib, extra = 1, PVM_MEMORY_MIB, pvm_cmdline()
        timeout = int(os.environ.get("KVMM_LINUX_PVM_TIMEOUT", "1500"))
    diag = os.environ.get("KVMM_LINUX_DIAG")
    extra = (extra + " " + os.environ.get("KVMM_LINUX_CMDLINE", "")).strip()
    case = linuxguest.Case(work, netns, kernel, busybox, moddir=linuxguest.modules_dir(bzimage),
                           cmdline=extra, compress=not pvm, diag=bool(diag), unsigned=pvm)
    root = os.path.join(work, "daemon")
    conf = os.path.join(root, "etc", "libvirt", "virtkvmmd.conf")
    os.makedirs(os.path.dirname(conf))
    with open(INSTALLED_CONF) as src, open(conf, "w") as dst:
        dst.write(src.read() + ("\npvm_compat = 1\n" if pvm else ""))
    serial_log = os.path.join(work, "serial.log")
    d = Daemon(root, prefix=["ip", "netns", "exec", netns])
    console, cpu = None, {}
    t0 = time.monotonic()
    serial = SerialLog(serial_log)
    try:
        d.wait_ready(timeout=60)
        uri = d.uri()
        xml = os.path.join(work, "domain.xml")
        with open(xml, "w") as f:
            f.write(domain_xml(case, kernel, cpus, memory_mib, serial_log))
        ok(virsh(uri, "define", xml))
        # Paused until virsh console is attached: a pty drops what nobody reads.
        ok(virsh(uri, "start", NAME, "--paused", timeout=120))
        console = Console(uri, NAME, "--devname", "console1")
        console.read_until("(Ctrl + ])", 60)
        t0 = time.monotonic()
        ok(virsh(uri, "resume", NAME))

        def alive():
            # Also kvmm's CPU time so far (the machine's load stretches the
            # wall time far more), for the report.
            pids = d.guests() if d.alive() else []
            for pid in pids:
                try:
                    with open(f"/proc/{pid}/stat") as f:
                        fields = f.read().rsplit(")", 1)[1].split()
                    cpu["s"] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
                except (OSError, IndexError, ValueError):
                    pass
            return bool(pids)

        # hvc0, both ways, through the daemon's console stream.
        console.read_until(f"KVMM-LINUX-HVC {case.token}", timeout)
        console.send(case.reply.encode() + b"\r")
        serial.wait_for(r"KVMM-LINUX done", timeout, alive)
        uuid = ok(virsh(uri, "domuuid", NAME)).strip()
        found = case.check_report(serial.lines, cpus, uuid)

        # Debian's virtio_balloon follows virsh setmem down and back up.
        full = memory_mib * 1024

        def memstat():
            return {k: int(v) for k, v in (l.split() for l in
                    ok(virsh(uri, "dommemstat", NAME)).splitlines() if l.strip())}

        def actual():
            return memstat()["actual"]

        assert actual() == full
        # The guest's own figures, from its driver's statistics queue.
        def guest_stats():
            m = memstat()
            return m if "unused" in m and "last_update" in m else None

        stats = wait_for(guest_stats, "the guest's balloon statistics", timeout, poll=0.5)
        assert 0 < stats["unused"] < stats["available"] <= full, stats
        ok(virsh(uri, "setmem", NAME, str(full - BALLOON_KIB), "--live"))
        wait_for(lambda: actual() == full - BALLOON_KIB, "the balloon to inflate", timeout, poll=0.5)
        ok(virsh(uri, "setmem", NAME, str(full), "--live"))
        wait_for(lambda: actual() == full, "the balloon to deflate", timeout, poll=0.5)

        # virsh shutdown: the ACPI power button; the guest powers off.
        ok(virsh(uri, "shutdown", NAME))
        serial.wait_for(r"KVMM-LINUX pressed", timeout, alive)
        wait_for(lambda: ok(virsh(uri, "domstate", NAME, "--reason")).strip() == "shut off (shutdown)",
                 "the domain to shut off", timeout, poll=0.5)
        case.check_images()
        elapsed = time.monotonic() - t0
        if diag:
            console.read_to_end(60)     # virsh console ends with the domain: all of hvc0 is read
        log = open(os.path.join(root, "log", "libvirt", "kvmm", NAME + ".log"), "rb").read()
        # What the mode stood in for, counted at kvmm's exit.
        counts = [l for l in log.decode(errors="replace").splitlines()
                  if l.startswith("kvmm: pvm-compat: ")]
        return {"seconds": round(elapsed), "found": sorted(found), "cpu": cpu.get("s"),
                "userspace": next((round(s - t0) for s, l in zip(serial.stamps, serial.lines)
                                   if "KVMM-LINUX stage init" in l), None),
                "compat": counts}
    finally:
        serial.close()
        if diag:
            os.makedirs(diag, exist_ok=True)
            with open(os.path.join(diag, "timing.txt"), "w") as f:
                f.write(f"# {case.cmdline}\n")
                f.writelines(f"{t - t0:8.1f} {l}\n" for t, l in zip(serial.stamps, serial.lines))
                f.write(f"{time.monotonic() - t0:8.1f} (end)\n")
                f.write(f"# kvmm CPU s (last seen): {cpu.get('s')}\n")
            if console:
                with open(os.path.join(diag, "dmesg.txt"), "wb") as f:
                    f.write(console.out)
            logs = glob.glob(os.path.join(root, "log", "libvirt", "kvmm", "*.log"))
            if logs:
                shutil.copy(logs[0], os.path.join(diag, "compat.txt"))
        if console:
            console.close()
        d.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--result", required=True, help="where the JSON result goes")
    args = ap.parse_args()
    # SIGTERM (the suite ending first) unwinds like an error: the daemon,
    # kvmm, the namespace and the files are removed on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("stopped by SIGTERM"))
    result = {"outcome": "failed"}
    what, detail = plan()
    if what != "run":
        result = {"outcome": what, "message": detail}
    else:
        work = tempfile.mkdtemp(prefix="kvmml-")
        ns = netns_lib.private("kvmml-")
        try:
            result = {"outcome": "passed", **run(work, next(ns), *detail)}
        except BaseException:
            result = {"outcome": "failed", "message": traceback.format_exc()}
        finally:
            ns.close()
            shutil.rmtree(work, ignore_errors=True)
    tmp = args.result + ".tmp"
    with open(tmp, "w") as f:
        json.dump(result, f)
    os.rename(tmp, args.result)
    return 0 if result["outcome"] != "failed" else 1


if __name__ == "__main__":
    sys.exit(main())
