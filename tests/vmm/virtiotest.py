"""What the virtio tests share: the runners that start the test guest
with a list of devices under kvmm or QEMU, and readers of its records.
The guest's options and records are described in tests/guest/README.md."""
import os
import re
import subprocess

import pytest

import kvmmtest
import netns as netns_lib

SECTOR = 512


class Disk:
    """backing: the chain below a qcow2 image, [(path, format), ...], top's
    backing first (kvmm takes it in its configuration; QEMU follows the
    image's header)."""

    def __init__(self, path, serial, readonly=False, blk_size=512, fmt="raw", backing=(),
                 cache="none"):
        self.path, self.serial, self.readonly, self.blk_size = path, serial, readonly, blk_size
        self.fmt, self.backing, self.cache = fmt, list(backing), cache


class Console:
    def __init__(self, path):
        self.path = path


class Nic:
    """A virtio-net NIC on a tap device that already exists in netns."""

    def __init__(self, netns, tap, mac):
        self.netns, self.tap, self.mac = netns, tap, mac


class Balloon:
    """A virtio-balloon: kvmm's --balloon, QEMU's virtio-balloon-pci."""

    def __init__(self, deflate_on_oom=True, free_page_reporting=True, stats_period=0):
        self.deflate_on_oom, self.free_page_reporting = deflate_on_oom, free_page_reporting
        self.stats_period = stats_period


def onoff(b):
    return "on" if b else "off"


class VirtioRunner:
    """Starts the guest with a list of devices (Disk, Console, "rng"), in
    that order on the PCI bus: the guest numbers devices of one kind in
    bus order (blk0, blk1, ...)."""

    def __init__(self, name):
        self.name = name

    def start(self, vms, tmp, cmdline, devices, memory="256M", extra=(), entry="16"):
        self.sock = os.path.join(tmp, "ctl.sock")
        if self.name.startswith("kvmm"):
            # kvmm's devices so far: rng, blk, one console, a balloon
            # and NICs.  Others skip until they exist.  kvmm places rng,
            # then the disks, the console, the balloon, the NICs.
            extra_args, prefix = [], []
            for dev in devices:
                if dev == "rng":
                    extra_args.append("--rng")
                elif isinstance(dev, Disk):
                    ro = ",readonly=on" if dev.readonly else ""
                    chain = ""
                    if dev.backing:
                        chain = (",backing=" + ":".join(p for p, _ in dev.backing) +
                                 ",backing_format=" + ":".join(f for _, f in dev.backing))
                    extra_args += ["--disk", f"path={dev.path},serial={dev.serial},"
                                             f"cache={dev.cache},format={dev.fmt}{chain},"
                                             f"blk_size={dev.blk_size}{ro}"]
                elif isinstance(dev, Console) and "--console" not in extra_args:
                    # kvmm keeps what the guest writes before the test
                    # connects (docs/kvmm.md), as QEMU's wait=on does.
                    extra_args += ["--console", f"unix:{dev.path}"]
                elif isinstance(dev, Balloon):
                    extra_args.append(f"--balloon=deflate_on_oom={onoff(dev.deflate_on_oom)},"
                                      f"free_page_reporting={onoff(dev.free_page_reporting)},"
                                      f"stats_period={dev.stats_period}")
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
                # QEMU passes discards down to a qcow2 image only so.
                disc = ",discard=unmap" if dev.fmt != "raw" else ""
                args += ["-drive", f"file={dev.path},if=none,id=d{i},format={dev.fmt},"
                                   f"cache={dev.cache},aio=io_uring{disc}{ro}",
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
            elif isinstance(dev, Balloon):
                args += ["-device", f"virtio-balloon-pci,id=bal0,disable-legacy=on,"
                                    f"deflate-on-oom={onoff(dev.deflate_on_oom)},"
                                    f"free-page-reporting={onoff(dev.free_page_reporting)},{addr}"]
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


    def balloon_set(self, target):
        """Asks the guest to keep target bytes of RAM."""
        if self.name.startswith("kvmm"):
            r = self.api_call("balloon-set", {"target": target})
        else:
            r = self.qmp_call("balloon", {"value": target})
        assert "return" in r, r

    def balloon_stats_period(self, seconds):
        if self.name.startswith("kvmm"):
            r = self.api_call("balloon-set", {"stats_period": seconds})
        else:
            r = self.qmp_call("qom-set", {"path": "/machine/peripheral/bal0",
                                          "property": "guest-stats-polling-interval",
                                          "value": seconds})
        assert "return" in r, r

    def balloon_stats(self):
        """The guest's last statistics as the VMM holds them, named as
        kvmm's query-balloon names them ({} before any arrived)."""
        if self.name.startswith("kvmm"):
            return self.api_call("query-balloon")["return"]["stats"]
        r = self.qmp_call("qom-get", {"path": "/machine/peripheral/bal0",
                                      "property": "guest-stats"})["return"]
        names = {"stat-swap-in": "swap_in", "stat-swap-out": "swap_out",
                 "stat-major-faults": "major_faults", "stat-minor-faults": "minor_faults",
                 "stat-free-memory": "free_memory", "stat-total-memory": "total_memory",
                 "stat-available-memory": "available_memory", "stat-disk-caches": "disk_caches"}
        if not r.get("last-update"):
            return {}
        out = {names[k]: v for k, v in r["stats"].items() if k in names and v != -1}
        out["last_update"] = r["last-update"]
        return out

    def power_button(self):
        if self.name.startswith("kvmm"):
            r = self.api_call("power-button")
        else:
            r = self.qmp_call("system_powerdown")
        assert "return" in r, r

    def api_call(self, cmd, args=None):
        api = kvmmtest.Api(self.sock)
        try:
            return api.call(cmd, args)
        finally:
            api.close()

    def qmp_call(self, cmd, args=None):
        q = kvmmtest.Qmp(self.sock)
        try:
            return q.execute(cmd, args)
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


connect = kvmmtest.connect


def rng_survived_malformed(g, kind):
    """rng0 went to DEVICE_NEEDS_RESET (a buffer outside RAM may also be
    completed) and worked again after the guest reset it."""
    outcome = by_dev(g, "info", "virtio-malformed")["rng0"]["outcome"]
    if kind == "addr":
        assert outcome in ("needs-reset", "completed"), outcome
    else:
        assert outcome == "needs-reset"
    assert "rng0" in by_dev(g, "pass", "virtio-reset")


def add_tap(ns, tap, host_cidr):
    subprocess.run(["ip", "-n", ns, "tuntap", "add", "dev", tap, "mode", "tap"], check=True)
    subprocess.run(["ip", "-n", ns, "addr", "add", host_cidr, "dev", tap], check=True)
    subprocess.run(["ip", "-n", ns, "link", "set", tap, "up"], check=True)


probe = netns_lib.probe
