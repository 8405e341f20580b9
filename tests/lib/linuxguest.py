"""The Linux tier's guest side, the same whichever VMM runs it: a busybox
initramfs whose /init loads Debian's virtio modules (from the guest
kernel's /lib/modules/VERSION), uses the disks, the NIC, the rng, the
console and the balloon, and reports on ttyS0; and the checks of that
report.  The caller starts the VMM and plays the host's part
(tests/linux/tier.py: kvmm under virtkvmmd)."""
import hashlib
import os
import re
import subprocess
import uuid


TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MKINITRAMFS = os.path.join(TOP, "tools", "mkinitramfs")

# virtio_pci pulls in virtio, virtio_ring and the pci transport libraries
# (all modular in Debian 12's kernel), virtio_net pulls in net_failover.
MODULES = ["virtio_pci", "virtio_blk", "virtio_net", "virtio_rng", "virtio_console",
           "virtio_balloon"]
# Their devices' virtio IDs, as the guest's sysfs lists them: net, block,
# console, entropy, balloon (the virtio specification, 5 "Device Types").
VIRTIO_IDS = ["0x0001", "0x0002", "0x0002", "0x0003", "0x0004", "0x0005"]
# The ACPI power button and the event device it reports through.
BUTTON_MODULES = ["button", "evdev"]
# What Linux says when it dislikes our ACPI tables or PCI resources.
COMPLAINTS = r"ACPI BIOS Error|ACPI Error|PCI: .*conflict|BAR .* no space|failed to assign"
# What else it said about our machine that real firmware does not make it
# say: no SMBIOS tables, MTRRs left disabled (so no PAT), no PS/2
# controller in the DSDT or one showing a key lock, an ECAM window the
# e820 map does not reserve (MMCONFIG then waits for ACPI).  No '/' in
# these: /init's sed delimits the expression with it.
COMPLAINTS += (r"|DMI not present|MTRRs disabled|No PS.2 controller found|Keylock active"
               r"|not using MMCONFIG")
assert "/" not in COMPLAINTS
DISK_BYTES = 2 << 20
MARKER_SECTOR = 100
HOST_IP, GUEST_IP = "10.91.0.1", "10.91.0.2"
RESULT = re.compile(r"KVMM-LINUX (\S+) ?(.*)")

# Every process the script starts costs seconds of emulated kernel work on
# KVM-PVM hosts (fork, exec, page faults at CPL0), so it reads files with
# the shell's own `read`, lists with globs and spawns only what does the
# work (insmod, md5sum, dd, ip, ping, od, dmesg, sed).  Busybox's applets
# are links made in the archive (mkinitramfs --applet), not at boot.
INIT = """#!/bin/busybox sh
echo "KVMM-LINUX stage init"
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
while read -r m; do
	insmod /lib/modules/$m.ko || echo "KVMM-LINUX insmod-failed $m"
done < /lib/modules/load-order
echo "KVMM-LINUX stage insmod"
# PCI drivers probe as they register; give slow machines (TCG) time.
settle() {{
	n=0
	while [ ! -e "$1" ] && [ $n -lt 300 ]; do sleep 0.1; n=$((n+1)); done
}}
settle /dev/vdb
settle /sys/class/net/eth0
settle /dev/hvc0
echo "KVMM-LINUX stage settled"
read -r online < /sys/devices/system/cpu/online
case $online in
*-*) cpus=$((${{online#*-}} + 1)) ;;
*) cpus=1 ;;
esac
read -r mem < /proc/meminfo
echo "KVMM-LINUX cpus n=$cpus $mem"
set -- $(sed 's/ .*//' /proc/modules)
echo "KVMM-LINUX modules $*"
for d in /sys/block/vd*; do
	n=${{d##*/}}
	read -r serial < $d/serial
	read -r ro < $d/ro
	read -r size < $d/size
	set -- $(md5sum < /dev/$n)
	echo "KVMM-LINUX disk serial=$serial ro=$ro sectors=$size md5=$1"
	if printf '{marker}' | dd of=/dev/$n bs=512 seek={sector} conv=notrunc,fsync 2>/dev/null; then
		echo "KVMM-LINUX disk-write serial=$serial result=written"
	else
		echo "KVMM-LINUX disk-write serial=$serial result=refused"
	fi
done
ip link set eth0 up
ip addr add {guest_ip}/24 dev eth0
read -r mac < /sys/class/net/eth0/address
# -A: the next request as soon as the reply is in, not a (slowed) second later.
ping -A -q -c 3 -w 30 {host_ip} > /tmp/ping
while read -r l; do
	case $l in *"packets transmitted"*) echo "KVMM-LINUX net mac=$mac $l" ;; esac
done < /tmp/ping
read -r current < /sys/class/misc/hw_random/rng_current
hex() {{
	local IFS
	set -- $(od -An -tx1 -N32 /dev/hwrng)
	IFS=
	h="$*"
}}
hex; a=$h
hex; b=$h
echo "KVMM-LINUX rng current=$current a=$a b=$b"
# The host reads hvc0 and answers on it (virsh console): one descriptor
# for both, so the answer cannot come before the line is open.
exec 4<> /dev/hvc0
echo "KVMM-LINUX-HVC {token}" >&4
read -r reply <&4
echo "KVMM-LINUX hvc reply=$reply"
exec 4>&-
dmesg > /tmp/dmesg
sed -n -E -e '/{complaints}/s/^/KVMM-LINUX complaint /p' -e '/ACPI: FACS /s/^/KVMM-LINUX facs /p' \\
	-e '/i8042: PNP: PS.2 Controller/s/^/KVMM-LINUX ps2 /p' \\
	-e '/PCI: MMCONFIG at .* reserved/s/^/KVMM-LINUX mmconfig /p' /tmp/dmesg
read -r uuid < /sys/class/dmi/id/product_uuid
echo "KVMM-LINUX dmi uuid=$uuid"
for d in /sys/bus/virtio/devices/virtio*; do
	read -r dev < $d/device
	echo "KVMM-LINUX virtio ${{d##*/}} device=$dev"
done
sed -n '/virtio/s/^ */KVMM-LINUX irq /p' /proc/interrupts
button=
for e in /sys/class/input/event*; do
	read -r name < $e/device/name
	[ "$name" = "Power Button" ] && button=/dev/input/${{e##*/}}
done
sync
# Open the button's event device before saying "done": the host presses
# the ACPI power button on that line, and an event before the open is lost.
[ -n "$button" ] && exec 3< $button
echo "KVMM-LINUX done button=$button"
# Wait for the key event, then power off as a desktop's acpid would.
[ -n "$button" ] && dd of=/dev/null bs=24 count=1 <&3 2>/dev/null && echo "KVMM-LINUX pressed"
{diag}poweroff -f
"""
# What the script runs: links to busybox in the archive's /bin.
APPLETS = ["mount", "insmod", "sleep", "md5sum", "printf", "dd", "ip", "ping", "od", "dmesg",
           "sed", "sync", "poweroff"]


def modules_dir(kernel):
    """/boot/vmlinuz-VERSION -> /lib/modules/VERSION"""
    return os.path.join("/lib/modules", os.path.basename(kernel).split("-", 1)[1])


class Case:
    """One run's guest side: two disk images (one read-only), a tap in
    NETNS and the initramfs.  The host's part reads kernel, initrd,
    cmdline, disks ((path, serial, readonly)), netns, tap and mac from it;
    it answers the guest's line TOKEN on hvc0 with REPLY."""

    def __init__(self, tmp, netns, kernel, busybox, moddir=None, cmdline="", compress=True,
                 diag=False, unsigned=False):
        """COMPRESS, UNSIGNED: mkinitramfs's options.  DIAG: after the checks the guest sends its dmesg (printk times)
        to hvc0, for measuring where a boot's time goes."""
        self.kernel, self.netns = kernel, netns
        tag = uuid.uuid4().hex[:8]
        self.token = "hvc-" + tag
        self.reply = "host-" + tag
        self.marker = "KVMM-LINUX-MARK " + tag
        self.mac = "52:54:00:4c:%s:%s" % (tag[:2], tag[2:4])
        self.tap = "tap0"
        self.cmdline = ("console=ttyS0 panic=-1 quiet " + cmdline).strip()
        self.disks, self.content = [], {}
        for name, ro in (("rw", False), ("ro", True)):
            path, serial = os.path.join(tmp, name + ".img"), f"kvmm-{name}-{tag}"
            data = os.urandom(DISK_BYTES)
            with open(path, "wb") as f:
                f.write(data)
            self.disks.append((path, serial, ro))
            self.content[serial] = data
        for args in (["tuntap", "add", "dev", self.tap, "mode", "tap"],
                     ["addr", "add", HOST_IP + "/24", "dev", self.tap],
                     ["link", "set", self.tap, "up"]):
            subprocess.run(["ip", "-n", netns] + args, check=True)
        script = os.path.join(tmp, "init.sh")
        with open(script, "w") as f:
            f.write(INIT.format(marker=self.marker, sector=MARKER_SECTOR, guest_ip=GUEST_IP,
                                host_ip=HOST_IP, token=self.token, complaints=COMPLAINTS,
                                diag="dmesg > /dev/hvc0\n" if diag else ""))
        self.initrd = os.path.join(tmp, "initramfs.gz" if compress else "initramfs.cpio")
        argv = [MKINITRAMFS, self.initrd, "--init", script, "--busybox", busybox,
                "--modules", moddir or modules_dir(kernel)] + ([] if compress else ["--uncompressed"])
        argv += ["--unsigned"] if unsigned else []
        for m in MODULES + BUTTON_MODULES:
            argv += ["--module", m]
        for a in APPLETS:
            argv += ["--applet", a]
        subprocess.run(argv, check=True)

    def check_report(self, lines, cpus, uuid=None):
        """Checks the guest's report (its serial lines up to "done") and
        returns it by kind: {"disk": [...], "virtio": [...], ...}.  UUID:
        the one the guest's SMBIOS must give."""
        found = {}
        for line in lines:
            m = RESULT.search(line)
            if m:
                found.setdefault(m.group(1), []).append(m.group(2))
        out = "\n".join(lines[-60:])
        assert "done" in found, out
        assert "insmod-failed" not in found, out
        m = re.fullmatch(r"n=(\d+) MemTotal:\s+\d+ kB", found["cpus"][0]) if "cpus" in found else None
        assert m and int(m.group(1)) == cpus, found.get("cpus")
        # Linux has no complaint about our ACPI tables or PCI resources.
        assert "complaint" not in found, "\n".join(found["complaint"])
        assert len(found.get("facs", [])) == 1, found.get("facs")
        # It found the PS/2 controller in the DSDT, and the ECAM reserved
        # in the e820 map from its first PCI access.
        assert [l for l in found.get("ps2", []) if "[PNP0303:KBD] at 0x60,0x64 irq 1" in l], found.get("ps2")
        assert [l for l in found.get("mmconfig", []) if "reserved in E820" in l], found.get("mmconfig")
        # SMBIOS type 1 carries the domain's UUID, as under libvirt + QEMU.
        if uuid:
            assert found.get("dmi") == [f"uuid={uuid}"], found.get("dmi")
        # Every virtio device has its config vector and per-queue
        # vectors, all MSI-X: none fell back to a shared vector or INTx.
        irqs = found.get("irq", [])
        for text in found["virtio"]:
            dev = text.split()[0]
            mine = [l for l in irqs if re.search(rf"\b{dev}-", l)]
            assert any(f"{dev}-config" in l for l in mine), (dev, irqs)
            queues = [l for l in mine if f"{dev}-config" not in l]
            assert queues and not any(f"{dev}-virtqueues" in l for l in queues), (dev, irqs)
            assert all("MSI" in l for l in mine), (dev, mine)
        ids = sorted(re.search(r"device=(\S+)", t).group(1) for t in found["virtio"])
        assert ids == VIRTIO_IDS, found["virtio"]
        loaded = found["modules"][0].split()
        for m in MODULES + ["virtio", "virtio_ring", "net_failover", "failover"]:
            assert m in loaded, f"{m} not loaded: {loaded}"

        disks = {}
        for text in found["disk"]:
            kv = dict(re.findall(r"(\w+)=(\S+)", text))
            disks[kv["serial"]] = kv
        writes = dict(re.findall(r"serial=(\S+) result=(\S+)", " ".join(found["disk-write"])))
        assert sorted(disks) == sorted(self.content), out
        for path, serial, ro in self.disks:
            d = disks[serial]
            assert d["md5"] == hashlib.md5(self.content[serial]).hexdigest(), d
            assert d["sectors"] == str(DISK_BYTES // 512) and d["ro"] == ("1" if ro else "0"), d
            assert writes[serial] == ("refused" if ro else "written"), writes
        net = found["net"][0]
        assert net.startswith(f"mac={self.mac} "), net
        assert re.search(r"3 packets transmitted, 3 packets received", net), net
        rng = dict(re.findall(r"(\w+)=(\S*)", found["rng"][0]))
        assert rng["current"] == "virtio_rng.0", rng
        assert re.fullmatch(r"[0-9a-f]{64}", rng["a"]) and re.fullmatch(r"[0-9a-f]{64}", rng["b"]), rng
        assert rng["a"] != rng["b"], rng
        # What the host typed on hvc0 reached the guest's shell.
        assert found.get("hvc") == [f"reply={self.reply}"], found.get("hvc")
        assert re.search(r"button=/dev/input/event\d+", found["done"][0]), found["done"]
        return found

    def check_images(self):
        """After the VMM exits: the write landed in the read-write image,
        and nothing else changed."""
        for path, serial, ro in self.disks:
            with open(path, "rb") as f:
                now = f.read()
            want = bytearray(self.content[serial])
            if not ro:
                at = MARKER_SECTOR * 512
                want[at:at + len(self.marker)] = self.marker.encode()
            assert now == bytes(want), f"{path}: not the content the guest left"
