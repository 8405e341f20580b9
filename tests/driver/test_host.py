"""virtkvmmd's host and capability calls, driven by the real Debian
clients (virsh, python3-libvirt) against a private daemon (--root):
capabilities and domain capabilities (validated against libvirt's own
schemas, and checked against this host), the domain capabilities <=>
XML parser consistency, sysinfo, node statistics, free memory, max vCPUs
and the close callback."""
import fcntl
import os
import platform
import re
import subprocess
import tempfile
import threading
import xml.etree.ElementTree as ET

import libvirt
import pytest

from drvtest import event_loop, virsh
from kvmmtest import UNIT_DIR

XML2XML = os.path.join(UNIT_DIR, "xml2xml")
NCPU = os.sysconf("SC_NPROCESSORS_ONLN")


def ok(r):
    assert r.returncode == 0, r.stderr
    return r.stdout


def validate(xml, schema):
    """virt-xml-validate (package libvirt-clients) against libvirt's schema."""
    with tempfile.NamedTemporaryFile("w", suffix=".xml") as f:
        f.write(xml)
        f.flush()
        r = subprocess.run(["virt-xml-validate", f.name, schema], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr + "\n" + xml


def meminfo(path, key):
    with open(path) as f:
        return int(re.search(rf"{key}:\s+(\d+) kB", f.read()).group(1))


def kvm_max_vcpus():
    """KVM's limit as host.c reads it, capped by kvmm's 254."""
    try:
        fd = os.open("/dev/kvm", os.O_RDWR)
    except OSError:
        return 254
    try:
        n = fcntl.ioctl(fd, 0xAE03, 66)          # KVM_CHECK_EXTENSION, KVM_CAP_MAX_VCPUS
        if n <= 0:
            n = fcntl.ioctl(fd, 0xAE03, 9)       # KVM_CAP_NR_VCPUS
    finally:
        os.close(fd)
    return min(n, 254) if n > 0 else 254


# --- capabilities -------------------------------------------------------

def test_capabilities_validate_and_describe_this_host(daemon):
    xml = ok(virsh(daemon.uri(), "capabilities"))
    validate(xml, "capability")
    caps = ET.fromstring(xml)
    cpu = caps.find("host/cpu")
    assert cpu.findtext("arch") == platform.machine()
    topo = cpu.find("topology").attrib
    assert (int(topo["sockets"]) * int(topo["dies"]) * int(topo["cores"]) *
            int(topo["threads"])) == NCPU
    cells = caps.findall("host/topology/cells/cell")
    assert int(caps.find("host/topology/cells").get("num")) == len(cells) >= 1
    assert sum(int(c.find("cpus").get("num")) for c in cells) == NCPU
    for c in cells:
        node = f"/sys/devices/system/node/node{c.get('id')}/meminfo"
        path = node if os.path.exists(node) else "/proc/meminfo"
        assert int(c.findtext("memory")) == meminfo(path, "MemTotal")
    with open("/proc/cpuinfo") as f:
        flags = re.search(r"^flags\s*:\s*(.*)$", f.read(), re.M).group(1).split()
    assert {f.get("name") for f in cpu.findall("feature")} == set(flags)

    guests = caps.findall("guest")
    assert len(guests) == 1
    g = guests[0]
    assert g.findtext("os_type") == "hvm"
    arch = g.find("arch")
    assert arch.get("name") == "x86_64" and arch.findtext("wordsize") == "64"
    emulator = arch.findtext("emulator")
    assert os.path.isabs(emulator) and os.access(emulator, os.X_OK), emulator
    assert os.path.basename(emulator) == "kvmm"
    assert [m.text for m in arch.findall("machine")] == ["pc"]
    assert [d.get("type") for d in arch.findall("domain")] == ["kvm"]
    assert {f.tag for f in g.find("features")} == {"acpi", "apic"}


def test_capabilities_through_python(daemon):
    conn = libvirt.open(daemon.uri())
    try:
        caps = ET.fromstring(conn.getCapabilities())
        assert caps.find("guest/arch/domain").get("type") == "kvm"
    finally:
        conn.close()


# --- domain capabilities --------------------------------------------------

def domcaps(daemon, *args):
    return ok(virsh(daemon.uri(), "domcapabilities", *args))


def test_domcapabilities_validate_and_match_capabilities(daemon):
    xml = domcaps(daemon)
    validate(xml, "domaincaps")
    dc = ET.fromstring(xml)
    caps = ET.fromstring(ok(virsh(daemon.uri(), "capabilities")))
    assert dc.findtext("path") == caps.findtext("guest/arch/emulator")
    assert dc.findtext("domain") == "kvm"
    assert dc.findtext("machine") == "pc"
    assert dc.findtext("arch") == "x86_64"
    assert int(dc.find("vcpu").get("max")) == kvm_max_vcpus()
    # every argument spelled out gives the same document
    assert domcaps(daemon, "--virttype", "kvm", "--arch", "x86_64", "--machine", "pc",
                   "--emulatorbin", dc.findtext("path")) == xml


@pytest.mark.parametrize("args,message", [
    (("--virttype", "qemu"), "virttype 'qemu' is not supported by kvmm; supported: 'kvm'"),
    (("--arch", "aarch64"), "arch 'aarch64' is not supported by kvmm; supported: 'x86_64'"),
    (("--machine", "q35"), "machine type 'q35' is not supported by kvmm; supported: 'pc'"),
    (("--emulatorbin", "/usr/bin/qemu-system-x86_64"), "emulator '/usr/bin/qemu-system-x86_64' is not kvmm's"),
])
def test_domcapabilities_refuses_what_kvmm_cannot_do(daemon, args, message):
    r = virsh(daemon.uri(), "domcapabilities", *args)
    assert r.returncode == 1
    assert f"error: invalid argument: {message}" in r.stderr, r.stderr


def test_domcapabilities_flags_refused_through_python(daemon):
    conn = libvirt.open(daemon.uri())
    try:
        with pytest.raises(libvirt.libvirtError) as e:
            conn.getDomainCapabilities(None, None, None, None, 1)
        assert e.value.get_error_code() == libvirt.VIR_ERR_INVALID_ARG
        with pytest.raises(libvirt.libvirtError) as e:
            conn.getDomainCapabilities(None, None, None, "qemu", 0)
        assert e.value.get_error_code() == libvirt.VIR_ERR_INVALID_ARG
        assert "virttype 'qemu'" in str(e.value)
    finally:
        conn.close()


# The domain capabilities <=> XML parser consistency: everything listed
# as supported is accepted by the parser (xml2xml links the daemon's
# conf library), everything supported='no' or absent is refused.

def domain_xml(devices="", os_extra="", extra="", dtype="kvm", arch="x86_64", machine="pc", vcpus=1):
    return (f"<domain type='{dtype}'><name>t</name><memory unit='MiB'>256</memory>"
            f"<vcpu>{vcpus}</vcpu>"
            f"<os><type arch='{arch}' machine='{machine}'>hvm</type>{os_extra}"
            f"<kernel>/boot/vmlinuz</kernel></os>{extra}<devices>{devices}</devices></domain>")


def parse(xml):
    """(accepted, message) of the daemon's parser for a domain XML."""
    assert os.path.exists(XML2XML), f"{XML2XML} was not built: run make check"
    with tempfile.NamedTemporaryFile("w", suffix=".xml") as f:
        f.write(xml)
        f.flush()
        r = subprocess.run([XML2XML, f.name], capture_output=True, text=True, timeout=30)
    return r.returncode == 0, r.stdout + r.stderr


def enum(node, name):
    e = node.find(f"enum[@name='{name}']")
    assert e is not None, f"no enum {name}"
    return [v.text for v in e.findall("value")]


def disk(device="disk", bus="virtio"):
    return (f"<disk type='file' device='{device}'><source file='/var/lib/x.img'/>"
            f"<target dev='vda' bus='{bus}'/></disk>")


def rng(model="virtio", backend="random"):
    return f"<rng model='{model}'><backend model='{backend}'>/dev/urandom</backend></rng>"


# What supported='no' elements mean in a domain XML.
UNSUPPORTED_SAMPLES = {
    "devices/graphics": dict(devices="<graphics type='vnc'/>"),
    "devices/video": dict(devices="<video><model type='virtio'/></video>"),
    "devices/hostdev": dict(devices="<hostdev mode='subsystem' type='pci'><source>"
                                    "<address domain='0' bus='0' slot='1' function='0'/></source></hostdev>"),
    "devices/filesystem": dict(devices="<filesystem type='mount'><source dir='/a'/><target dir='t'/></filesystem>"),
    "devices/tpm": dict(devices="<tpm model='tpm-crb'><backend type='emulator'/></tpm>"),
    "devices/redirdev": dict(devices="<redirdev bus='usb' type='spicevmc'/>"),
    "devices/channel": dict(devices="<channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>"),
    "os/loader": dict(os_extra="<loader>/usr/share/OVMF/OVMF_CODE.fd</loader>"),
    "iothreads": dict(extra="<iothreads>2</iothreads>"),
    "features/genid": dict(extra="<genid/>"),
    "features/hyperv": dict(extra="<features><hyperv mode='custom'/></features>"),
    "features/sev": dict(extra="<launchSecurity type='sev'><policy>0x0003</policy></launchSecurity>"),
    "features/sgx": dict(extra="<features><sgx/></features>"),
    "features/backup": None,                # an API, not domain XML
}


def test_domcapabilities_lists_exactly_what_the_parser_accepts(daemon):
    dc = ET.fromstring(domcaps(daemon))
    assert parse(domain_xml())[0], parse(domain_xml())[1]

    # identity and limits
    assert parse(domain_xml(dtype=dc.findtext("domain"), arch=dc.findtext("arch"),
                            machine=dc.findtext("machine")))[0]
    vmax = int(dc.find("vcpu").get("max"))
    accepted, msg = parse(domain_xml(vcpus=vmax))
    assert accepted, msg
    if vmax == 254:     # kvmm's own limit: one more is refused
        assert not parse(domain_xml(vcpus=vmax + 1))[0]

    # cpu modes, and the migratable values each allows
    for mode in dc.findall("cpu/mode"):
        name = mode.get("name")
        accepted, msg = parse(domain_xml(extra=f"<cpu mode='{name}'/>"))
        assert accepted == (mode.get("supported") == "yes"), (name, msg)
        for e in mode.findall("enum"):
            for v in enum(mode, e.get("name")):
                accepted, msg = parse(domain_xml(extra=f"<cpu mode='{name}' migratable='{v}'/>"))
                assert accepted, (name, v, msg)

    # disks: every device type on every bus
    d = dc.find("devices/disk")
    assert d.get("supported") == "yes"
    for dev in enum(d, "diskDevice"):
        for bus in enum(d, "bus"):
            accepted, msg = parse(domain_xml(devices=disk(dev, bus)))
            assert accepted, (dev, bus, msg)

    # rng: every model with every backend
    r = dc.find("devices/rng")
    assert r.get("supported") == "yes"
    for model in enum(r, "model"):
        for backend in enum(r, "backendModel"):
            accepted, msg = parse(domain_xml(devices=rng(model, backend)))
            assert accepted, (model, backend, msg)

    # vmcoreinfo (kvmm's fw_cfg etc/vmcoreinfo): listed and accepted
    assert dc.find("features/vmcoreinfo").get("supported") == "yes"
    accepted, msg = parse(domain_xml(extra="<features><vmcoreinfo/></features>"))
    assert accepted, msg

    # backingStoreInput: a <backingStore> chain in the domain XML is taken
    assert dc.find("features/backingStoreInput").get("supported") == "yes"
    accepted, msg = parse(domain_xml(devices=(
        "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
        "<source file='/var/lib/x.qcow2'/><backingStore type='file'><format type='raw'/>"
        "<source file='/var/lib/base.raw'/><backingStore/></backingStore>"
        "<target dev='vda' bus='virtio'/></disk>")))
    assert accepted, msg

    # everything marked unsupported is refused
    marked = {p for p in UNSUPPORTED_SAMPLES
              if dc.find(p) is not None and dc.find(p).get("supported") == "no"}
    assert marked == set(UNSUPPORTED_SAMPLES), "domcapabilities and the samples disagree"
    for path, sample in UNSUPPORTED_SAMPLES.items():
        if sample is None:
            continue
        accepted, msg = parse(domain_xml(**sample))
        assert not accepted, (path, msg)
        assert "VIR_ERR_CONFIG_UNSUPPORTED" in msg or "not supported" in msg, (path, msg)


@pytest.mark.parametrize("xml_kw,listed", [
    (dict(devices=disk(bus="ide")), ("devices/disk", "bus", "ide")),
    (dict(devices=disk(bus="sata")), ("devices/disk", "bus", "sata")),
    (dict(devices=disk(bus="scsi")), ("devices/disk", "bus", "scsi")),
    (dict(devices=disk(bus="usb")), ("devices/disk", "bus", "usb")),
    (dict(devices=disk(device="cdrom")), ("devices/disk", "diskDevice", "cdrom")),
    (dict(devices=disk(device="lun")), ("devices/disk", "diskDevice", "lun")),
    (dict(devices=rng(model="virtio-transitional")), ("devices/rng", "model", "virtio-transitional")),
    (dict(devices=rng(backend="egd")), ("devices/rng", "backendModel", "egd")),
    (dict(extra="<cpu mode='custom'><model>EPYC</model></cpu>"), None),
    (dict(machine="q35"), None),
    (dict(arch="aarch64"), None),
    (dict(dtype="qemu"), None),
], ids=["bus-ide", "bus-sata", "bus-scsi", "bus-usb", "cdrom", "lun", "rng-transitional",
        "rng-egd", "cpu-custom", "q35", "aarch64", "type-qemu"])
def test_values_libvirt_knows_but_kvmm_does_not_are_neither_listed_nor_accepted(daemon, xml_kw, listed):
    dc = ET.fromstring(domcaps(daemon))
    if listed:
        path, name, value = listed
        assert value not in enum(dc.find(path), name)
    accepted, msg = parse(domain_xml(**xml_kw))
    assert not accepted
    assert "VIR_ERR_CONFIG_UNSUPPORTED" in msg and "not supported by kvmm" in msg, msg
    if "cpu" in xml_kw.get("extra", ""):
        assert dc.find("cpu/mode[@name='custom']").get("supported") == "no"
    for key, elem in (("machine", "machine"), ("arch", "arch"), ("dtype", "domain")):
        if key in xml_kw:
            assert dc.findtext(elem) != xml_kw[key]


# --- max vcpus ------------------------------------------------------------

def test_maxvcpus(daemon):
    want = kvm_max_vcpus()
    assert ok(virsh(daemon.uri(), "maxvcpus")).strip() == str(want)
    assert ok(virsh(daemon.uri(), "maxvcpus", "--type", "kvm")).strip() == str(want)
    conn = libvirt.open(daemon.uri())
    try:
        assert conn.getMaxVcpus(None) == want
        assert conn.getMaxVcpus("kvm") == want
        assert conn.getMaxVcpus("KVM") == want
        with pytest.raises(libvirt.libvirtError) as e:
            conn.getMaxVcpus("xen")
        assert e.value.get_error_code() == libvirt.VIR_ERR_INVALID_ARG
        assert "unknown type 'xen'" in str(e.value)
    finally:
        conn.close()


# --- sysinfo ----------------------------------------------------------------

def test_sysinfo(daemon):
    xml = ok(virsh(daemon.uri(), "sysinfo"))
    si = ET.fromstring(xml)
    assert si.tag == "sysinfo" and si.get("type") == "smbios"
    # libvirt's own schema has <sysinfo> inside a domain: check it there.
    validate(f"<domain type='kvm'><name>t</name><memory>262144</memory>{xml}"
             "<os><type>hvm</type></os></domain>", "domain")
    vendor = "/sys/class/dmi/id/sys_vendor"
    if os.path.exists(vendor):
        with open(vendor) as f:
            want = f.read().strip()
        if want:
            assert si.findtext("system/entry[@name='manufacturer']") == want
    else:
        assert len(si) == 0, "no DMI on this host, yet sysinfo has entries"


# DMI files as the kernel has them: root-only serials and UUID (0400).
DMI = {"sys_vendor": ("Acme Computers", 0o444), "product_name": ("Roadrunner", 0o444),
       "product_serial": ("SER-4242", 0o400), "product_uuid": ("4c4c4544-0042-3510-8052-b4c04f4e3232", 0o400),
       "board_serial": ("BRD-77", 0o400), "chassis_serial": ("CHS-99", 0o400)}


def test_sysinfo_root_only_fields_not_for_read_only_clients(start_daemon):
    """The daemon reads DMI as root; a read-only client (the socket anyone
    may use) must not get what the kernel shows only to root.  The DMI
    directory is a tmpfs in a mount namespace of the daemon's own, so the
    test does not depend on the host's firmware."""
    if os.geteuid() != 0:
        pytest.fail("needs root (a mount namespace for the daemon)")
    setup = ["mount -t tmpfs dmi /sys/class", "mkdir -p /sys/class/dmi/id"]
    for f, (v, mode) in DMI.items():
        setup += [f"printf '%s\\n' '{v}' > /sys/class/dmi/id/{f}", f"chmod {mode:o} /sys/class/dmi/id/{f}"]
    prefix = ["unshare", "-m", "--propagation", "private", "sh", "-ec",
              " && ".join(setup) + ' && exec "$@"', "sh"]
    d = start_daemon(prefix=prefix)
    full = ET.fromstring(ok(virsh(d.uri(), "sysinfo")))
    assert full.findtext("system/entry[@name='serial']") == "SER-4242"
    assert full.findtext("system/entry[@name='uuid']") == DMI["product_uuid"][0]
    ro = ok(virsh(d.uri(ro=True), "sysinfo", readonly=True))
    si = ET.fromstring(ro)
    assert si.findtext("system/entry[@name='manufacturer']") == "Acme Computers"
    assert si.findtext("system/entry[@name='product']") == "Roadrunner"
    for f, (v, mode) in DMI.items():
        if mode == 0o400:
            assert v not in ro, (f, ro)
    assert si.find("system/entry[@name='serial']") is None
    assert si.find("system/entry[@name='uuid']") is None
    assert si.find("baseBoard") is None and si.find("chassis") is None


# --- node statistics ----------------------------------------------------------

def stats(out):
    return {k.strip(): v.strip() for k, v in
            (l.split(":", 1) for l in out.splitlines() if ":" in l)}


def kib(v):
    assert v.endswith(" KiB"), v
    return int(v[:-4])


def test_nodememstats(daemon):
    s = stats(ok(virsh(daemon.uri(), "nodememstats")))
    assert set(s) == {"total", "free", "buffers", "cached"}
    assert kib(s["total"]) == meminfo("/proc/meminfo", "MemTotal")
    assert 0 < kib(s["free"]) <= kib(s["total"])
    for cell in ET.fromstring(ok(virsh(daemon.uri(), "capabilities"))).findall(
            "host/topology/cells/cell"):
        c = stats(ok(virsh(daemon.uri(), "nodememstats", "--cell", cell.get("id"))))
        assert kib(c["total"]) == int(cell.findtext("memory"))
    r = virsh(daemon.uri(), "nodememstats", "--cell", "999")
    assert r.returncode == 1 and "NUMA cell 999 does not exist" in r.stderr, r.stderr


def test_nodecpustats(daemon):
    total = stats(ok(virsh(daemon.uri(), "nodecpustats")))
    assert set(total) == {"user", "system", "idle", "iowait"}
    assert all(int(v) >= 0 for v in total.values()) and int(total["idle"]) > 0
    per_cpu = 0
    for cpu in range(NCPU):
        s = stats(ok(virsh(daemon.uri(), "nodecpustats", "--cpu", str(cpu))))
        per_cpu += int(s["idle"])
    # the per-CPU counters add up to the total (read a moment later)
    assert per_cpu >= int(total["idle"]) * 0.99
    r = virsh(daemon.uri(), "nodecpustats", "--cpu", str(4096))
    assert r.returncode == 1 and "Invalid cpuNum 4096" in r.stderr, r.stderr


def test_nodecpustats_percent(daemon):
    s = stats(ok(virsh(daemon.uri(), "nodecpustats", "--percent")))
    assert set(s) == {"usage", "user", "system", "idle", "iowait"}
    pct = {k: float(v.rstrip("%")) for k, v in s.items()}
    assert all(0 <= v <= 100 for v in pct.values()), pct
    # virsh: usage = user + system; the rest is idle or waiting for I/O
    assert abs(pct["usage"] + pct["idle"] + pct["iowait"] - 100) < 0.5, pct


def test_freecell(daemon):
    out = ok(virsh(daemon.uri(), "freecell"))
    total = kib(out.split("Total:", 1)[1].strip())
    free = meminfo("/proc/meminfo", "MemFree")
    assert abs(total - free) < free * 0.2, (total, free)

    caps = ET.fromstring(ok(virsh(daemon.uri(), "capabilities")))
    ids = [c.get("id") for c in caps.findall("host/topology/cells/cell")]
    out = ok(virsh(daemon.uri(), "freecell", "--all"))
    rows = dict(re.findall(r"^\s*(\d+):\s+(\d+) KiB$", out, re.M))
    assert list(rows) == ids, out
    assert int(out.split("Total:", 1)[1].split()[0]) == sum(int(v) for v in rows.values())
    one = ok(virsh(daemon.uri(), "freecell", ids[0]))
    assert re.match(rf"{ids[0]}: \d+ KiB", one.strip()), one


def test_node_memory_and_cpu_map_through_python(daemon):
    conn = libvirt.open(daemon.uri())
    try:
        assert abs(conn.getFreeMemory() // 1024 - meminfo("/proc/meminfo", "MemFree")) < \
            meminfo("/proc/meminfo", "MemFree") * 0.2
        cells = conn.getCellsFreeMemory(0, 1)
        assert len(cells) == 1 and cells[0] > 0
        with pytest.raises(libvirt.libvirtError) as e:
            conn.getCellsFreeMemory(4000, 1)
        assert e.value.get_error_code() == libvirt.VIR_ERR_INVALID_ARG
        n, cpumap, online = conn.getCPUMap()
        assert online == NCPU and sum(cpumap) == NCPU and n >= NCPU
        pages = conn.getFreePages([os.sysconf("SC_PAGE_SIZE") // 1024], 0, 1)
        assert list(pages) == [0] and list(pages[0].values())[0] > 0
        with pytest.raises(libvirt.libvirtError):
            conn.getFreePages([3], 0, 1)
        assert conn.getMemoryStats(-1)["total"] == meminfo("/proc/meminfo", "MemTotal")
        assert set(conn.getCPUStats(-1)) == {"kernel", "user", "idle", "iowait"}
    finally:
        conn.close()


# --- close callback -------------------------------------------------------------

def test_close_callback_feature_and_virsh_registration(daemon):
    ok(virsh(daemon.uri(), "hostname"))
    log = daemon.output()
    # virsh registers a close callback when feature 15 is on, and drops it
    assert "call virConnectRegisterCloseCallback (360)" in log
    assert "call virConnectUnregisterCloseCallback (361)" in log


def test_close_callback_through_python(start_daemon):
    event_loop()
    d = start_daemon()
    conn = libvirt.open(d.uri())
    closed = threading.Event()
    reasons = []

    def on_close(c, reason, opaque):
        reasons.append(reason)
        closed.set()

    conn.registerCloseCallback(on_close, None)
    conn.unregisterCloseCallback()
    conn.registerCloseCallback(on_close, None)
    conn.getHostname()          # the registration calls were answered in order
    log = d.output()
    assert log.count("call virConnectRegisterCloseCallback (360)") == 2
    assert log.count("call virConnectUnregisterCloseCallback (361)") == 1
    # the daemon going away closes the connection: the callback runs
    d.stop()
    assert closed.wait(15), "close callback never ran"
    assert reasons[0] in (libvirt.VIR_CONNECT_CLOSE_REASON_EOF,
                          libvirt.VIR_CONNECT_CLOSE_REASON_ERROR)


# --- the host's UUID, the CPU calls, guest time ------------------------------

def host_uuid_of(caps):
    m = re.search(r"<host>\s*<uuid>([0-9a-f-]{36})</uuid>", caps)
    return m.group(1) if m else None


def test_host_uuid_is_stable_and_kept(start_daemon):
    d1 = start_daemon()
    uuid = host_uuid_of(ok(virsh(d1.uri(), "capabilities")))
    assert uuid, "no <host><uuid>"
    dmi = None
    try:
        with open("/sys/class/dmi/id/product_uuid") as f:
            dmi = f.read().strip().lower()
    except OSError:
        pass
    if dmi:
        assert uuid == dmi
        # root-only on the host: not for read-only clients
        assert host_uuid_of(ok(virsh(d1.uri(ro=True), "capabilities"))) is None
    else:
        kept = os.path.join(d1.root, "var", "lib", "libvirt", "kvmm", "host-uuid")
        with open(kept) as f:
            assert f.read().strip() == uuid
        assert host_uuid_of(ok(virsh(d1.uri(ro=True), "capabilities"))) == uuid
    d1.stop()
    d2 = start_daemon(root=d1.root)                  # the same instance again
    assert host_uuid_of(libvirt.open(d2.uri()).getCapabilities()) == uuid


def cpu_map_models():
    """Every x86 model of libvirt's cpu_map, read independently."""
    names = []
    index = ET.parse("/usr/share/libvirt/cpu_map/index.xml").getroot()
    for inc in index.find("arch[@name='x86']").iter("include"):
        root = ET.parse(os.path.join("/usr/share/libvirt/cpu_map", inc.get("filename"))).getroot()
        names += [m.get("name") for m in root.findall("model")]
    return names


def test_cpu_models(daemon):
    want = cpu_map_models()
    assert "Skylake-Client" in want and len(want) > 20
    assert ok(virsh(daemon.uri(), "cpu-models", "x86_64")).split() == want
    conn = libvirt.open(daemon.uri(ro=True))
    assert conn.getCPUModelNames("x86_64") == want
    with pytest.raises(libvirt.libvirtError) as e:
        conn.getCPUModelNames("sparc64")
    assert e.value.get_error_code() == libvirt.VIR_ERR_INVALID_ARG


def host_cpu_xml(uri):
    caps = ET.fromstring(libvirt.open(uri).getCapabilities())
    return ET.tostring(caps.find("host/cpu"), encoding="unicode")


def test_cpu_compare_and_baseline_with_virsh(daemon, tmp_path):
    uri = daemon.uri()
    host = tmp_path / "host.xml"
    host.write_text(host_cpu_xml(uri))
    r = virsh(uri, "cpu-compare", str(host))
    assert r.returncode == 0 and "identical to host CPU" in r.stdout, r.stdout + r.stderr
    r = virsh(uri, "hypervisor-cpu-compare", str(host))
    assert r.returncode == 0 and "identical to the CPU provided by hypervisor" in r.stdout, r.stderr
    # a CPU needing a feature this host lacks
    other = tmp_path / "other.xml"
    other.write_text("<cpu><arch>x86_64</arch><feature name='kvmm-no-such-feature'/></cpu>")
    r = virsh(uri, "cpu-compare", str(other))
    assert "incompatible" in r.stdout + r.stderr
    r = virsh(uri, "cpu-compare", "--error", str(other))
    assert r.returncode != 0 and "kvmm-no-such-feature" in r.stderr
    # baselines: the host's own features, as a custom CPU
    with open("/proc/cpuinfo") as f:
        flags = next(line for line in f if line.startswith("flags")).split(":")[1].split()
    for cmd in ("cpu-baseline", "hypervisor-cpu-baseline"):
        cpu = ET.fromstring(ok(virsh(uri, cmd, str(host))))
        assert cpu.get("mode") == "custom"
        assert [f.get("name") for f in cpu.findall("feature")] == flags
        assert all(f.get("policy") == "require" for f in cpu.findall("feature"))


def test_cpu_compare_and_baseline_through_python(daemon):
    conn = libvirt.open(daemon.uri())
    host = host_cpu_xml(daemon.uri())
    assert conn.compareCPU(host) == libvirt.VIR_CPU_COMPARE_IDENTICAL
    # a guest with the host's CPU: what kvmm runs every guest with
    for mode in ("host-passthrough", "host-model"):
        assert conn.compareCPU(f"<cpu mode='{mode}'/>") == libvirt.VIR_CPU_COMPARE_IDENTICAL
        assert conn.compareHypervisorCPU(None, "x86_64", "pc", "kvm", f"<cpu mode='{mode}'/>") == \
            libvirt.VIR_CPU_COMPARE_IDENTICAL
    # fewer features than the host: the host is a superset
    assert conn.compareCPU("<cpu mode='custom'><feature policy='require' name='fpu'/></cpu>") == \
        libvirt.VIR_CPU_COMPARE_SUPERSET
    assert conn.compareCPU("<cpu mode='custom'><feature policy='forbid' name='fpu'/></cpu>") == \
        libvirt.VIR_CPU_COMPARE_INCOMPATIBLE
    with pytest.raises(libvirt.libvirtError) as e:
        conn.compareCPU("<cpu mode='custom'><feature policy='forbid' name='fpu'/></cpu>",
                        libvirt.VIR_CONNECT_COMPARE_CPU_FAIL_INCOMPATIBLE)
    assert e.value.get_error_code() == libvirt.VIR_ERR_CPU_INCOMPATIBLE
    assert "Host CPU provides forbidden features: fpu" in str(e.value)
    # strict: the host may have nothing more than the guest CPU names
    with pytest.raises(libvirt.libvirtError) as e:
        conn.compareCPU("<cpu mode='custom' match='strict'><feature policy='require' name='fpu'/></cpu>",
                        libvirt.VIR_CONNECT_COMPARE_CPU_FAIL_INCOMPATIBLE)
    assert "Host CPU does not strictly match guest CPU: Extra features: " in str(e.value)
    # the host's own baseline names every feature it has: identical, even strictly
    base = conn.baselineCPU([host])
    assert conn.compareCPU(base) == libvirt.VIR_CPU_COMPARE_IDENTICAL
    assert conn.compareCPU(base.replace("match='exact'", "match='strict'")) == \
        libvirt.VIR_CPU_COMPARE_IDENTICAL
    # a named model: kvmm cannot tell, with the code nova proceeds on
    with pytest.raises(libvirt.libvirtError) as e:
        conn.compareCPU("<cpu mode='custom'><model>Skylake-Client</model></cpu>")
    assert e.value.get_error_code() == libvirt.VIR_ERR_NO_SUPPORT
    with pytest.raises(libvirt.libvirtError) as e:
        conn.compareHypervisorCPU(None, "x86_64", "q35", None, "<cpu mode='host-model'/>")
    assert e.value.get_error_code() == libvirt.VIR_ERR_INVALID_ARG
    # a baseline of two CPUs: what both have
    two = ["<cpu><vendor>AMD</vendor><feature name='fpu'/><feature name='sse2'/></cpu>",
           "<cpu><vendor>AMD</vendor><feature name='sse2'/><feature name='avx'/></cpu>"]
    cpu = ET.fromstring(conn.baselineCPU(two, libvirt.VIR_CONNECT_BASELINE_CPU_EXPAND_FEATURES))
    assert cpu.findtext("vendor") == "AMD"
    assert [f.get("name") for f in cpu.findall("feature")] == ["sse2"]
    with pytest.raises(libvirt.libvirtError) as e:
        conn.baselineCPU([two[0], "<cpu><vendor>Intel</vendor></cpu>"])
    assert e.value.get_error_code() == libvirt.VIR_ERR_OPERATION_FAILED
    conn.close()


def test_set_time_without_guest_agent(daemon, kvm):
    from kvmmtest import GUEST
    conn = libvirt.open(daemon.uri())
    dom = conn.defineXML(f"""<domain type='kvm'><name>t</name><memory unit='MiB'>128</memory>
  <os><type>hvm</type><kernel>{GUEST}</kernel><cmdline>kvmmtest.action=wait</cmdline></os>
</domain>""")
    with pytest.raises(libvirt.libvirtError) as e:
        dom.setTime({"seconds": 1, "nseconds": 0})
    assert e.value.get_error_code() == libvirt.VIR_ERR_OPERATION_INVALID
    dom.create()
    # libvirt's answer for a guest without an agent; nova's sync_guest_time
    # logs this code at debug level and goes on
    for call in (lambda: dom.setTime({"seconds": 1, "nseconds": 0}),
                 lambda: dom.setTime(None, libvirt.VIR_DOMAIN_TIME_SYNC),
                 lambda: dom.getTime()):
        with pytest.raises(libvirt.libvirtError) as e:
            call()
        assert e.value.get_error_code() == libvirt.VIR_ERR_ARGUMENT_UNSUPPORTED
        assert "guest agent is not configured" in str(e.value)
    r = virsh(daemon.uri(), "domtime", "t", "--now")
    assert r.returncode != 0 and "guest agent is not configured" in r.stderr
    with pytest.raises(libvirt.libvirtError) as e:
        libvirt.open(daemon.uri(ro=True)).lookupByName("t").setTime({"seconds": 1})
    assert e.value.get_error_code() == libvirt.VIR_ERR_OPERATION_DENIED
    dom.destroy()
    conn.close()
