"""Networks, storage, node devices, secrets, network filters and host
interfaces through virtkvmmd: it relays those procedures to libvirt's own
daemon (here Debian's libvirtd with only those drivers, in the test's
private namespaces, tests/lib/libvirtd.py), so stock clients (virsh,
python3-libvirt, Sys::Virt, virt-install) get libvirt's own answers over
kvmm:///system.  And the APIs virtkvmmd neither implements nor forwards
answer libvirt's VIR_ERR_NO_SUPPORT wording."""
import json
import os
import pwd
import random
import re
import signal
import socket
import struct
import subprocess
import sys
import textwrap
import threading
import time
import xml.etree.ElementTree as ET
import zlib

import libvirt
import pytest

import netns as netns_lib
from drvtest import (VIRTKVMMD, Raw, assert_healthy, call_packet, event_loop, open_body, packet,
                     virsh, xdr_int, xdr_uint)
from kvmmtest import GUEST
from libvirtd import Libvirtd
from test_lifecycle import wait_for

L = libvirt
SECONDARY = ("network", "storage", "nodedev", "secret", "nwfilter", "interface")
PROC_NAMES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "src", "driver",
                          "rpc", "proc_names.c")


@pytest.fixture
def netns():
    yield from netns_lib.private("kvdf-")


@pytest.fixture
def lvd(netns):
    """libvirtd with every secondary driver, in its own namespaces."""
    d = Libvirtd(netns, SECONDARY)
    yield d
    d.stop()


@pytest.fixture
def fwd(start_daemon, lvd):
    """(virtkvmmd in libvirtd's namespaces, libvirtd)."""
    return start_daemon(prefix=lvd.prefix), lvd


def ok(r):
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def table(out):
    """virsh's table rows (after the header and its rule), split."""
    return [line.split() for line in out.strip().splitlines()[2:] if line.strip()]


# --- storage ------------------------------------------------------------------

def test_storage_pool_volumes_and_streams(fwd, tmp_path):
    d, lvd = fwd
    uri = d.uri()
    pool_dir = tmp_path / "pool"
    pool_dir.mkdir()
    ok(virsh(uri, "pool-define-as", "kvdpool", "dir", "--target", str(pool_dir)))
    ok(virsh(uri, "pool-start", "kvdpool"))
    ok(virsh(uri, "vol-create-as", "kvdpool", "v1", "4M", "--format", "raw"))
    assert (pool_dir / "v1").stat().st_size == 4 << 20     # libvirt's driver made it
    assert [r[:2] for r in table(ok(virsh(uri, "vol-list", "kvdpool")))] == \
        [["v1", str(pool_dir / "v1")]]
    # libvirt's own storage driver holds the pool: asked directly, it has it
    assert ["kvdpool", "active", "no"] in table(lvd.virsh("storage:///system", "pool-list").stdout)

    # several chunks of libvirt's stream size, and an odd tail
    data = os.urandom(3 * 262120 + 4097)
    (tmp_path / "up.bin").write_bytes(data)
    ok(virsh(uri, "vol-upload", "--pool", "kvdpool", "v1", str(tmp_path / "up.bin")))
    assert (pool_dir / "v1").read_bytes()[:len(data)] == data
    ok(virsh(uri, "vol-download", "--pool", "kvdpool", "v1", str(tmp_path / "down.bin")))
    down = (tmp_path / "down.bin").read_bytes()
    assert len(down) == 4 << 20 and down[:len(data)] == data and down[len(data):] == \
        bytes(len(down) - len(data))

    ok(virsh(uri, "vol-delete", "--pool", "kvdpool", "v1"))
    assert table(ok(virsh(uri, "vol-list", "kvdpool"))) == []
    assert not (pool_dir / "v1").exists()
    # libvirt's errors come back as libvirt made them
    r = virsh(uri, "vol-info", "--pool", "kvdpool", "nope")
    assert r.returncode != 0 and "Storage volume not found" in r.stderr, r.stderr
    ok(virsh(uri, "pool-destroy", "kvdpool"))
    ok(virsh(uri, "pool-undefine", "kvdpool"))
    assert table(ok(virsh(uri, "pool-list", "--all"))) == []
    assert_healthy(d)


def test_sparse_volume_streams_keep_their_holes(fwd, tmp_path):
    """--sparse: holes go as STREAM_HOLE packets both ways, relayed."""
    d, _ = fwd
    uri = d.uri()
    pool_dir = tmp_path / "pool"
    pool_dir.mkdir()
    ok(virsh(uri, "pool-create-as", "sparse", "dir", "--target", str(pool_dir)))
    ok(virsh(uri, "vol-create-as", "sparse", "v", "64M", "--allocation", "0"))
    head, tail = os.urandom(1 << 20), os.urandom(300000)
    src = tmp_path / "src.bin"
    with open(src, "wb") as f:
        f.write(head)
        f.seek(40 << 20)
        f.write(tail)
    ok(virsh(uri, "vol-upload", "--sparse", "--pool", "sparse", "v", str(src)))
    vol = pool_dir / "v"
    assert vol.stat().st_blocks * 512 < 4 << 20         # the hole stayed a hole
    ok(virsh(uri, "vol-download", "--sparse", "--pool", "sparse", "v", str(tmp_path / "dl.bin")))
    dl = tmp_path / "dl.bin"
    assert dl.stat().st_blocks * 512 < 4 << 20
    data = dl.read_bytes()
    assert data[:len(head)] == head and data[40 << 20:(40 << 20) + len(tail)] == tail
    assert data[len(head):40 << 20] == bytes((40 << 20) - len(head))


def vm_rss_kib(pid, field="VmHWM"):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(field)


def test_volume_streams_at_the_pace_of_the_slower_side(fwd, tmp_path):
    """A download the client reads slowly, an upload while libvirtd is
    stopped: virtkvmmd holds a few MiB at most, never the volume."""
    d, lvd = fwd
    pool_dir = tmp_path / "pool"
    pool_dir.mkdir()
    data = os.urandom(32 << 20)
    (pool_dir / "big").write_bytes(data)
    ok(virsh(d.uri(), "pool-create-as", "pace", "dir", "--target", str(pool_dir)))
    conn = libvirt.open(d.uri())
    vol = conn.storagePoolLookupByName("pace").storageVolLookupByName("big")
    pid = d.proc.pid
    before = vm_rss_kib(pid)
    st = conn.newStream(0)
    vol.download(st, 0, 0, 0)
    got = []
    while True:
        chunk = st.recv(256 << 10)
        if not chunk:
            break
        got.append(chunk)
        time.sleep(0.005)        # a slow reader: libvirtd sends far faster
    st.finish()
    assert b"".join(got) == data
    assert vm_rss_kib(pid) - before < 12 << 10, (before, vm_rss_kib(pid))

    # upload while libvirtd does not read: virtkvmmd stops reading us, so
    # the client cannot hand over the volume
    new = os.urandom(32 << 20)
    before = vm_rss_kib(pid)
    progress = {"sent": 0}

    def upload():
        st = conn.newStream(0)
        vol.upload(st, 0, len(new), 0)          # answered by libvirtd
        for off in range(0, len(new), 256 << 10):
            st.send(new[off:off + (256 << 10)])
            progress["sent"] = off + (256 << 10)
        st.finish()
        progress["done"] = True
    t = threading.Thread(target=upload)
    t.start()
    try:
        wait_for(lambda: progress["sent"] > 0, "the upload to start")
        os.kill(lvd.pid, signal.SIGSTOP)
        stopped_at = progress["sent"]
        # given 2 s, an unthrottled relay would take all 32 MiB
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline and progress["sent"] < len(new):
            time.sleep(0.05)
        assert progress["sent"] - stopped_at < 16 << 20, progress
        assert vm_rss_kib(pid) - before < 12 << 10, (before, vm_rss_kib(pid))
    finally:
        os.kill(lvd.pid, signal.SIGCONT)
    t.join(60)
    assert progress.get("done")
    assert (pool_dir / "big").read_bytes() == new
    conn.close()


def test_volume_lookup_by_path_is_libvirts(fwd, tmp_path):
    """virt-install's flow: a path outside every pool is no volume
    (VIR_ERR_NO_STORAGE_VOL, so it defines a pool for the directory)."""
    d, _ = fwd
    conn = libvirt.open(d.uri())
    with pytest.raises(libvirt.libvirtError) as e:
        conn.storageVolLookupByPath(str(tmp_path / "disk.img"))
    assert e.value.get_error_code() == L.VIR_ERR_NO_STORAGE_VOL
    assert conn.listAllStoragePools() == []
    conn.close()


# --- the other families ---------------------------------------------------------

def test_networks_node_devices_secrets_filters_interfaces(fwd, tmp_path, netns):
    d, lvd = fwd
    uri = d.uri()
    subprocess.run(["ip", "-n", netns, "link", "add", "kvdfbr0", "type", "bridge"], check=True)
    net_xml = tmp_path / "net.xml"
    net_xml.write_text("<network><name>kvdfnet</name><forward mode='bridge'/>"
                       "<bridge name='kvdfbr0'/></network>")
    ok(virsh(uri, "net-define", str(net_xml)))
    assert table(ok(virsh(uri, "net-list", "--all"))) == [["kvdfnet", "inactive", "no", "yes"]]
    ok(virsh(uri, "net-start", "kvdfnet"))
    assert table(ok(virsh(uri, "net-list"))) == [["kvdfnet", "active", "no", "yes"]]
    root = ET.fromstring(ok(virsh(uri, "net-dumpxml", "kvdfnet")))
    assert root.find("bridge").get("name") == "kvdfbr0" and root.find("uuid").text

    # node devices: the host's, as libvirt's nodedev driver sees them
    devs = ok(virsh(uri, "nodedev-list")).split()
    assert "computer" in devs and "net_lo_00_00_00_00_00_00" in devs, devs
    assert "<name>computer</name>" in ok(virsh(uri, "nodedev-dumpxml", "computer"))
    # and nova's calls: the list, the legacy count and names
    conn = libvirt.open(uri)
    names = sorted(dev.name() for dev in conn.listAllDevices())
    assert names == sorted(devs) and conn.numOfDevices(None) == len(names)
    assert sorted(conn.listDevices(None)) == names
    assert "net_lo_00_00_00_00_00_00" in conn.listDevices("net")
    assert "computer" not in conn.listDevices("net")
    conn.close()

    secret_xml = tmp_path / "secret.xml"
    secret_xml.write_text("<secret ephemeral='no' private='yes'><uuid>"
                          "8f0a5bd0-1c1e-4a5e-9a8b-2c6b3c1d0e01</uuid><usage type='volume'>"
                          "<volume>/kvdf/vol</volume></usage></secret>")
    ok(virsh(uri, "secret-define", str(secret_xml)))
    assert table(ok(virsh(uri, "secret-list"))) == [
        ["8f0a5bd0-1c1e-4a5e-9a8b-2c6b3c1d0e01", "volume", "/kvdf/vol"]]

    filter_xml = tmp_path / "filter.xml"
    filter_xml.write_text("<filter name='kvdf-filter' chain='root'><rule action='accept' "
                          "direction='in' priority='500'><all/></rule></filter>")
    ok(virsh(uri, "nwfilter-define", str(filter_xml)))
    assert ["kvdf-filter"] == [r[1] for r in table(ok(virsh(uri, "nwfilter-list")))]

    # the namespace's interfaces, as libvirt's interface driver sees them
    ifaces = table(ok(virsh(uri, "iface-list", "--all")))
    assert {"lo", "kvdfbr0"} <= {r[0] for r in ifaces}, ifaces
    assert ifaces == table(lvd.virsh("interface:///system", "iface-list", "--all").stdout)
    # what libvirtd answers directly is what came through virtkvmmd
    assert table(lvd.virsh("secret:///system", "secret-list").stdout) == \
        table(ok(virsh(uri, "secret-list")))
    ok(virsh(uri, "net-destroy", "kvdfnet"))
    ok(virsh(uri, "net-undefine", "kvdfnet"))
    assert table(ok(virsh(uri, "net-list", "--all"))) == []
    assert_healthy(d)


def test_events_of_pools_and_networks_reach_the_client(fwd, tmp_path):
    d, lvd = fwd
    event_loop()
    conn = libvirt.open(d.uri())
    seen = []
    got = threading.Event()

    def pool_cb(c, pool, event, detail, opaque):
        seen.append(("pool", pool.name(), event))
        got.set()

    def net_cb(c, net, event, detail, opaque):
        seen.append(("net", net.name(), event))
        got.set()

    pool_id = conn.storagePoolEventRegisterAny(None, L.VIR_STORAGE_POOL_EVENT_ID_LIFECYCLE,
                                               pool_cb, None)
    net_id = conn.networkEventRegisterAny(None, L.VIR_NETWORK_EVENT_ID_LIFECYCLE, net_cb, None)
    # made by someone else, straight at libvirtd: the events still come
    (tmp_path / "p").mkdir()
    lvd.virsh("storage:///system", "pool-define-as", "evpool", "dir", "--target",
              str(tmp_path / "p"))
    net = tmp_path / "n.xml"
    net.write_text("<network><name>evnet</name><bridge name='kvdevbr0'/></network>")
    lvd.virsh("network:///system", "net-define", str(net))
    wait_for(lambda: ("pool", "evpool", L.VIR_STORAGE_POOL_EVENT_DEFINED) in seen and
             ("net", "evnet", L.VIR_NETWORK_EVENT_DEFINED) in seen, "both events")
    conn.storagePoolEventDeregisterAny(pool_id)
    conn.networkEventDeregisterAny(net_id)
    conn.close()


# --- libvirt's tools ---------------------------------------------------------------

TCK_START = r"""
use strict; use warnings; use Sys::Virt;
# what libvirt-tck's set-up does before its first test: list (and would
# clean up) every domain, network and storage pool
my $c = Sys::Virt->new(uri => $ARGV[0]);
my @d = ($c->list_domains(), $c->list_defined_domains());
my @n = ($c->list_networks(), $c->list_defined_networks());
my @p = ($c->list_storage_pools(), $c->list_defined_storage_pools());
printf "domains=%s\n", join(",", sort map { $_->get_name } @d);
printf "networks=%s\n", join(",", sort map { $_->get_name } @n);
printf "pools=%s\n", join(",", sort map { $_->get_name } @p);
printf "nodedevs=%d secrets=%d\n", scalar($c->list_all_node_devices()), $c->num_of_secrets();
"""


def test_sys_virt_lists_like_libvirt_tck(fwd, tmp_path):
    d, lvd = fwd
    if subprocess.run(["perl", "-MSys::Virt", "-e", "1"], capture_output=True).returncode:
        pytest.fail("Sys::Virt is not installed: run tools/install-deps (libsys-virt-perl)")
    conn = libvirt.open(d.uri())
    conn.defineXML(f"<domain type='kvm'><name>tck1</name><memory unit='MiB'>128</memory>"
                   f"<os><type>hvm</type><kernel>{GUEST}</kernel></os></domain>")
    conn.networkDefineXML("<network><name>tcknet</name><bridge name='kvdtck0'/></network>")
    (tmp_path / "p").mkdir()
    conn.storagePoolDefineXML(f"<pool type='dir'><name>tckpool</name><target><path>"
                              f"{tmp_path / 'p'}</path></target></pool>")
    conn.close()
    script = tmp_path / "tck.pl"
    script.write_text(TCK_START)
    r = subprocess.run(["perl", str(script), d.uri()], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    out = dict(line.split("=", 1) for line in r.stdout.splitlines()[:3])
    assert out == {"domains": "tck1", "networks": "tcknet", "pools": "tckpool"}, r.stdout
    m = re.search(r"nodedevs=(\d+) secrets=0", r.stdout)
    assert m and int(m.group(1)) > 1, r.stdout


def test_virt_install_import_with_a_path_disk(fwd, tmp_path, kvm):
    """virt-install looks the disk's path up in storage pools and defines
    one for its directory (libvirt's storage driver does that here); the
    guest then runs and reads the disk.  --memballoon none: the balloon
    virt-install adds by default is not there yet."""
    d, lvd = fwd
    img = tmp_path / "img" / "disk.img"
    img.parent.mkdir()
    data = os.urandom(64 * 512)
    with open(img, "wb") as f:
        f.write(data)
        f.truncate(1 << 20)
    log = tmp_path / "vi-serial.log"
    r = subprocess.run(
        ["virt-install", "--connect", d.uri(), "--name", "vi1", "--memory", "128", "--vcpus", "1",
         "--import", "--disk", f"path={img},bus=virtio,format=raw", "--memballoon", "none",
         "--boot", f"kernel={GUEST},cmdline=kvmmtest.action=wait kvmmtest.virtio=blk "
                   "kvmmtest.blk0.read=0+64",
         "--osinfo", "detect=on,require=off", "--network", "none", "--graphics", "none",
         "--serial", f"file,path={log}", "--console", "none", "--noautoconsole"],
        capture_output=True, text=True, timeout=120, env=dict(os.environ, HOME=str(tmp_path)))
    assert r.returncode == 0, r.stdout + r.stderr + d.output()
    conn = libvirt.open(d.uri())
    dom = conn.lookupByName("vi1")
    assert dom.isActive()
    wait_for(lambda: "KVMMTEST done" in log.read_text() if log.exists() else False,
             "the guest's disk checks")
    crc = "0x%08x" % zlib.crc32(data)
    assert f"virtio-blk-read dev=blk0 sector=0 count=64 crc32={crc}" in log.read_text()
    # the pool virt-install made for the image's directory is libvirt's
    pools = {p.name(): p for p in conn.listAllStoragePools()}
    assert [p.XMLDesc().count(str(img.parent)) > 0 for p in pools.values()] == [True], pools
    assert conn.storageVolLookupByPath(str(img)).path() == str(img)
    dom.destroy()
    conn.close()


def test_virt_install_disk_size_makes_a_qcow2_volume(fwd, tmp_path, kvm):
    """virt-install --disk size=1,format=qcow2,...: virt-install makes its pool
    'default' (/var/lib/libvirt/images, in libvirtd's namespace) and a 1 GiB
    qcow2 volume in it through libvirt's storage driver, then defines and
    starts the guest with its other defaults; the
    guest sees the volume's virtual size and writes to it, and qemu-img
    finds the image clean, with the guest's data."""
    d, lvd = fwd
    log = tmp_path / "vi-serial.log"
    r = subprocess.run(
        ["virt-install", "--connect", d.uri(), "--name", "vi2", "--memory", "128", "--vcpus", "1",
         # virt-install picks qcow2, writes <driver name='qemu' type=...>
         # and picks virtio only on qemu:// URIs (its support.py, guest.py);
         # on kvmm:// they are asked for: without <driver type>, the disk is
         # raw, as libvirt takes it
         "--import", "--disk", "size=1,format=qcow2,driver.type=qcow2,bus=virtio",
         "--boot", f"kernel={GUEST},cmdline=kvmmtest.action=wait kvmmtest.virtio=blk "
                   "kvmmtest.blk0.write=64+8 kvmmtest.blk0.read=0+64",
         "--osinfo", "detect=on,require=off", "--network", "none", "--graphics", "none",
         "--serial", f"file,path={log}", "--console", "none", "--noautoconsole"],
        capture_output=True, text=True, timeout=180, env=dict(os.environ, HOME=str(tmp_path)))
    assert r.returncode == 0, r.stdout + r.stderr + d.output()
    conn = libvirt.open(d.uri())
    dom = conn.lookupByName("vi2")
    assert dom.isActive()
    path = "/var/lib/libvirt/images/vi2.qcow2"
    vol = conn.storagePoolLookupByName("default").storageVolLookupByName("vi2.qcow2")
    assert vol.path() == path and "<format type='qcow2'/>" in vol.XMLDesc(), vol.XMLDesc()
    xml = dom.XMLDesc(0)
    assert f"<driver name='qemu' type='qcow2'/>\n      <source file='{path}' index='1'/>" in xml, xml
    wait_for(lambda: "KVMMTEST done" in log.read_text() if log.exists() else False,
             "the guest's disk checks", timeout=120)
    out = log.read_text()
    assert "KVMMTEST fail" not in out, out
    assert "virtio-blk dev=blk0 capacity=2097152 " in out, out      # 1 GiB, not the file's size
    assert "virtio-blk-write dev=blk0 sector=64 count=8 " in out, out
    dom.destroy()
    img = lvd.path(path)
    r = subprocess.run(["qemu-img", "check", "--output=json", img], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    info = json.loads(r.stdout)
    assert not info.get("corruptions") and not info.get("leaks"), info
    r = subprocess.run(["qemu-io", "-f", "qcow2", "-r", "-c", "read -v 32768 4096", img],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    # the guest's pattern: each sector starts with its number (tests/guest/README.md)
    dump = [line for line in r.stdout.splitlines() if line.startswith("00008000:")]
    assert dump and dump[0].split()[1:9] == ["40", "00", "00", "00", "00", "00", "00", "00"], r.stdout
    conn.close()


# --- access, absence, clean-up, a stuck daemon ------------------------------------

def test_read_only_clients_stay_read_only(fwd, tmp_path):
    d, lvd = fwd
    (tmp_path / "p").mkdir()
    ok(virsh(d.uri(), "pool-define-as", "ropool", "dir", "--target", str(tmp_path / "p")))
    # virsh -r: refused by the client library itself; without -r, on the
    # read-only socket: virtkvmmd reached libvirtd's read-only socket,
    # and libvirt's storage driver refused
    for ro in (True, False):
        r = virsh(d.uri(ro=True), "pool-define-as", "ropool2", "dir", "--target", "/tmp",
                  readonly=ro)
        assert r.returncode != 0
        assert "read only access prevents virStoragePoolDefineXML" in r.stderr, r.stderr
        r = virsh(d.uri(ro=True), "pool-start", "ropool", readonly=ro)
        assert "read only access prevents virStoragePoolCreate" in r.stderr, r.stderr
    # reading is allowed
    assert table(ok(virsh(d.uri(ro=True), "pool-list", "--all"))) == [["ropool", "inactive", "no"]]
    assert "ropool2" not in lvd.virsh("storage:///system", "pool-list", "--all").stdout
    assert "libvirt-sock-ro" in d.output()


def test_daemon_not_running_is_named(start_daemon, tmp_path):
    """No libvirt daemon at all (a mount namespace whose /run is empty):
    the error names the driver, the daemon and how to start it; the
    connection goes on working."""
    needs_root()
    d = start_daemon(prefix=["unshare", "-m", "--propagation", "private", "sh", "-c",
                             'mount -t tmpfs kvdf /run && exec "$0" "$@"'])
    r = virsh(d.uri(), "pool-list")
    assert r.returncode != 0
    assert ("no connection driver available for storage:///system: virtkvmmd hands storage "
            "pools and volumes to libvirt's storage driver, which is not running on this host"
            in r.stderr), r.stderr
    assert "/run/libvirt/virtstoraged-sock nor /run/libvirt/libvirt-sock" in r.stderr
    assert "start virtstoraged (or libvirtd)" in r.stderr
    conn = libvirt.open(d.uri())
    with pytest.raises(libvirt.libvirtError) as e:
        conn.listAllNetworks()
    assert e.value.get_error_code() == L.VIR_ERR_NO_CONNECT
    assert e.value.get_error_domain() == L.VIR_FROM_NETWORK
    assert "start virtnetworkd" in str(e.value)
    assert conn.getType() == "KVMM" and conn.listAllDomains() == []
    conn.close()
    assert_healthy(d)


def test_libvirtd_without_the_driver_is_named(start_daemon, netns):
    """libvirtd runs, but without its storage driver: libvirtd's refusal,
    with what to start."""
    lvd = Libvirtd(netns, ["network"])
    try:
        d = start_daemon(prefix=lvd.prefix)
        r = virsh(d.uri(), "pool-list")
        assert r.returncode != 0
        assert ("no connection driver available for storage:///system: the daemon on "
                "/run/libvirt/libvirt-sock does not serve it (no connection driver available "
                "for storage:///system); start virtstoraged, or libvirtd with its storage "
                "driver") in r.stderr, r.stderr
        # its network driver is there, and serves
        assert table(ok(virsh(d.uri(), "net-list", "--all"))) == []
        wait_for(lambda: lvd.nclients() == 0, "the failed link to close")
        assert_healthy(d)
    finally:
        lvd.stop()


UPLOAD_AND_DIE = textwrap.dedent("""
    import os, sys, libvirt
    conn = libvirt.open(sys.argv[1])
    vol = conn.storagePoolLookupByName("cut").storageVolLookupByName("v")
    st = conn.newStream(0)
    vol.upload(st, 0, 4 << 20, 0)
    st.send(b"x" * 65536)
    print("sending", flush=True)
    sys.stdin.read()      # until the test kills us
""")


def test_client_gone_mid_stream_leaves_nothing(fwd, tmp_path):
    d, lvd = fwd
    (tmp_path / "p").mkdir()
    ok(virsh(d.uri(), "pool-create-as", "cut", "dir", "--target", str(tmp_path / "p")))
    ok(virsh(d.uri(), "vol-create-as", "cut", "v", "4M"))
    wait_for(lambda: lvd.nclients() == 0, "virsh's connections to libvirtd to close")
    script = tmp_path / "up.py"
    script.write_text(UPLOAD_AND_DIE)
    p = subprocess.Popen([sys.executable, str(script), d.uri()], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "sending"
        assert lvd.nclients() == 1            # the client's storage link, mid-upload
        p.kill()
        p.wait()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    wait_for(lambda: lvd.nclients() == 0, "virtkvmmd to close its link to libvirtd")
    # the volume is free again: a whole upload goes through
    data = os.urandom(1 << 20)
    (tmp_path / "up.bin").write_bytes(data)
    ok(virsh(d.uri(), "vol-upload", "--pool", "cut", "v", str(tmp_path / "up.bin")))
    assert (tmp_path / "p" / "v").read_bytes()[:len(data)] == data
    assert_healthy(d)


@pytest.mark.parametrize("keepalive, bound", [
    (("1", "2"), (2, 20)),
    # clients without keepalive: the links keep libvirt's 5 s x 5
    (("0", "2"), (25, 60)),
])
def test_stuck_daemon_fails_the_call_not_virtkvmmd(start_daemon, lvd, keepalive, bound):
    """libvirtd stopped (SIGSTOP) while a call waits on it: virtkvmmd's
    other clients are served meanwhile, and the call fails once the
    keepalive gives up on the daemon."""
    d = start_daemon(extra=["--keepalive-interval", keepalive[0],
                            "--keepalive-count", keepalive[1]], prefix=lvd.prefix)
    conn = libvirt.open(d.uri())
    assert conn.listAllStoragePools() == []        # the link is up
    os.kill(lvd.pid, signal.SIGSTOP)
    try:
        result = {}

        def call():
            t0 = time.monotonic()
            try:
                conn.listAllStoragePools()
                result["ok"] = True
            except libvirt.libvirtError as e:
                result["error"] = e
            result["seconds"] = time.monotonic() - t0
        t = threading.Thread(target=call)
        t.start()
        # meanwhile, virtkvmmd answers everyone else (and this client's
        # own connection stays alive: its keepalive is ours)
        r = virsh(d.uri(), "list", "--all", timeout=10)
        assert r.returncode == 0, r.stderr
        t.join(bound[1] + 10)
        assert not t.is_alive(), "the call never returned"
        e = result.get("error")
        assert e is not None, result
        assert e.get_error_code() == L.VIR_ERR_OPERATION_TIMEOUT
        assert "/run/libvirt/libvirt-sock stopped answering" in str(e), str(e)
        assert bound[0] <= result["seconds"] < bound[1], result
    finally:
        os.kill(lvd.pid, signal.SIGCONT)
    # the next call opens a new link to the daemon, alive again
    assert conn.listAllStoragePools() == []
    assert conn.getType() == "KVMM"
    conn.close()


# --- the relay against a scripted daemon ---------------------------------------------

FAKE_DAEMON = textwrap.dedent(r"""
    # A stand-in for virtstoraged on SOCKDIR/virtstoraged-sock{,-ro}
    # (/run/libvirt in its own mount namespace): logs every packet it gets as a JSON line
    # and answers as MODE says.
    import json, os, socket, struct, sys, threading
    mode, log = sys.argv[1], open(sys.argv[2], "a", buffering=1)
    sockdir = sys.argv[3] if len(sys.argv) > 3 else "/run/libvirt"
    os.makedirs(sockdir, exist_ok=True)
    nconn = [0]

    def send(c, proc, serial, body=b"", mtype=1, status=0):
        hdr = struct.pack(">IIiIII", 0x20008086, 1, proc, mtype, serial, status)
        c.sendall(struct.pack(">I", 28 + len(body)) + hdr + body)

    def serve(c, path):
        nconn[0] += 1
        n = nconn[0]
        buf = b""
        while True:
            while len(buf) < 4 or len(buf) < struct.unpack(">I", buf[:4])[0]:
                chunk = c.recv(65536)
                if not chunk:
                    log.write(json.dumps({"conn": n, "eof": True}) + "\n")
                    return
                buf += chunk
            size = struct.unpack(">I", buf[:4])[0]
            pkt, buf = buf[:size], buf[size:]
            prog, vers, proc, mtype, serial, status = struct.unpack(">IIiIII", pkt[4:28])
            body = pkt[28:]
            rec = {"conn": n, "path": path, "prog": prog, "proc": proc, "type": mtype,
                   "serial": serial, "body": body.hex()}
            if proc == 1 and prog == 0x20008086:
                ln = struct.unpack(">I", body[4:8])[0]
                rec["name"] = body[8:8 + ln].decode()
                rec["flags"] = struct.unpack(">I", body[8 + ln + (-ln % 4):][:4])[0]
            log.write(json.dumps(rec) + "\n")
            if mode == "silent" or prog != 0x20008086:
                continue
            if proc == 66:
                types = {"polkit": [2], "sasl": [1]}.get(mode, [0])
                send(c, proc, serial, struct.pack(">I", len(types)) + b"".join(
                    struct.pack(">i", t) for t in types))
            elif proc == 70:
                send(c, proc, serial, struct.pack(">i", 1))
            elif proc in (1, 2):
                send(c, proc, serial)
            elif mode == "die":
                log.write(json.dumps({"conn": n, "closed": True}) + "\n")
                c.close()
                return
            elif proc == 281:
                # two answers for one call: an event first, then the reply
                send(c, 370, 0, struct.pack(">i", 99), mtype=2)
                send(c, proc, serial, struct.pack(">II", 0, 0))

    socks = []
    for path in (sockdir + "/virtstoraged-sock", sockdir + "/virtstoraged-sock-ro"):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(path)
        s.listen(16)
        socks.append((s, path))
    for s, path in socks:
        def accept(s=s, path=path):
            while True:
                c, _ = s.accept()
                threading.Thread(target=serve, args=(c, path), daemon=True).start()
        threading.Thread(target=accept, daemon=True).start()
    print("ready", flush=True)
    threading.Event().wait()
""")


class FakeDaemon:
    def __init__(self, tmp_path, mode):
        self.log = tmp_path / f"fake-{mode}.jsonl"
        self.log.touch()
        script = tmp_path / "fake_daemon.py"
        script.write_text(FAKE_DAEMON)
        self.proc = subprocess.Popen(
            ["unshare", "-m", "--propagation", "private", "sh", "-c",
             f'mount -t tmpfs kvdf /run && exec {sys.executable} {script} {mode} {self.log}'],
            stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "ready"
        self.prefix = ["nsenter", f"--mount=/proc/{self.proc.pid}/ns/mnt"]

    def records(self):
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def stop(self):
        self.proc.kill()
        self.proc.wait()


def needs_root():
    if os.geteuid() != 0:
        pytest.skip("private mount namespaces need root")


@pytest.fixture
def fake(tmp_path):
    needs_root()
    made = []

    def make(mode):
        f = FakeDaemon(tmp_path, mode)
        made.append(f)
        return f
    yield make
    for f in made:
        f.stop()


def list_pools_raw(raw, serial):
    """CONNECT_LIST_ALL_STORAGE_POOLS (281) with need_results=1, flags 0,
    sent with the given serial; the reply."""
    raw.send(call_packet(281, serial, xdr_int(1) + xdr_uint(0)))
    while True:
        r = raw.recv()
        assert r is not None, "virtkvmmd closed the connection"
        if r[3] == 1:
            return r


def test_relay_is_verbatim_with_the_clients_serials(start_daemon, fake):
    """The set-up virtkvmmd makes (auth list, open of storage:///system),
    the modular daemon's socket preferred, the call passed byte for byte
    with the client's own serial, events and the reply passed back."""
    f = fake("normal")
    d = start_daemon(prefix=f.prefix)
    raw = Raw(d.sock).open()
    r = list_pools_raw(raw, 4242)
    assert r[:6] == (0x20008086, 1, 281, 1, 4242, 0) and r[6] == bytes(8), r
    recs = f.records()
    setup = [(x["proc"], x["serial"]) for x in recs if x.get("conn") == 1 and "proc" in x]
    assert setup[:2] == [(66, 0), (1, 2)], setup
    [opened] = [x for x in recs if x.get("proc") == 1]
    assert opened["name"] == "storage:///system" and opened["flags"] == 0
    assert opened["path"] == "/run/libvirt/virtstoraged-sock"
    [call] = [x for x in recs if x.get("proc") == 281]
    assert call["serial"] == 4242 and call["body"] == (b"\0\0\0\1" + b"\0\0\0\0").hex()
    # read-only clients: the -ro socket and the read-only open flag
    ro = Raw(d.sock_ro).open()
    list_pools_raw(ro, 7)
    [ro_open] = [x for x in f.records() if x.get("proc") == 1 and x["conn"] == 2]
    assert ro_open["path"] == "/run/libvirt/virtstoraged-sock-ro" and ro_open["flags"] == 1
    raw.close()
    ro.close()
    # both clients gone: so are their connections to the daemon
    wait_for(lambda: sum(1 for x in f.records() if x.get("eof")) == 2,
             "virtkvmmd to close both links")
    # virsh's own opening calls (features, close callback, keepalive)
    # stay virtkvmmd's: the daemon sees only the set-up and the family
    ok(virsh(d.uri(), "pool-list", "--all"))
    wait_for(lambda: sum(1 for x in f.records() if x.get("eof")) == 3, "virsh's link to close")
    assert [x["proc"] for x in f.records() if x.get("conn") == 3 and "proc" in x] == [66, 1, 281]
    assert_healthy(d)


def test_relay_event_reaches_the_client(start_daemon, fake):
    f = fake("normal")
    d = start_daemon(prefix=f.prefix)
    raw = Raw(d.sock).open()
    raw.send(call_packet(281, 9, xdr_int(1) + xdr_uint(0)))
    first = raw.recv()
    assert first[:6] == (0x20008086, 1, 370, 2, 0, 0) and first[6] == struct.pack(">i", 99), first
    assert raw.recv()[:5] == (0x20008086, 1, 281, 1, 9)
    raw.close()


def test_relay_polkit_and_sasl(start_daemon, fake):
    """A daemon that asks for polkit gets AUTH_POLKIT before the open; one
    that asks only for SASL is refused with the reason."""
    f = fake("polkit")
    d = start_daemon(prefix=f.prefix)
    conn = libvirt.open(d.uri())
    assert conn.listAllStoragePools() == []
    assert [x["proc"] for x in f.records() if "proc" in x][:3] == [66, 70, 1]
    conn.close()
    f2 = fake("sasl")
    d2 = start_daemon(prefix=f2.prefix)
    conn = libvirt.open(d2.uri())
    with pytest.raises(libvirt.libvirtError) as e:
        conn.listAllStoragePools()
    assert "asks for SASL authentication, which virtkvmmd does not do" in str(e.value)
    assert e.value.get_error_code() == L.VIR_ERR_AUTH_FAILED
    assert conn.getType() == "KVMM"
    conn.close()


def test_relay_daemon_gone_mid_call_fails_the_call(start_daemon, fake):
    """A daemon that drops the connection while a call waits: the call
    fails (no client waits forever), the next call connects again."""
    f = fake("die")
    d = start_daemon(prefix=f.prefix)
    conn = libvirt.open(d.uri())
    for attempt in (1, 2):
        with pytest.raises(libvirt.libvirtError) as e:
            conn.listAllStoragePools()
        assert "the daemon closed the connection" in str(e.value), str(e.value)
        # a new connection each time (the fake logs after closing)
        wait_for(lambda: sum(1 for x in f.records() if x.get("closed")) == attempt,
                 f"connection {attempt} to be dropped by the fake daemon")
    assert conn.getType() == "KVMM"
    conn.close()


def test_relay_silent_daemon_bounded(start_daemon, fake):
    """A daemon that accepts and never answers: the call fails after the
    set-up's bound (10 s); other clients are served meanwhile."""
    f = fake("silent")
    d = start_daemon(prefix=f.prefix)
    conn = libvirt.open(d.uri())
    result = {}

    def call():
        t0 = time.monotonic()
        try:
            conn.listAllStoragePools()
        except libvirt.libvirtError as e:
            result["error"] = e
        result["seconds"] = time.monotonic() - t0
    t = threading.Thread(target=call)
    t.start()
    wait_for(lambda: any(x.get("proc") == 66 for x in f.records()), "the set-up to start")
    t0 = time.monotonic()
    r = virsh(d.uri(), "list", "--all", timeout=10)
    assert r.returncode == 0 and time.monotonic() - t0 < 8, r.stderr
    t.join(40)
    assert not t.is_alive()
    e = result["error"]
    assert e.get_error_code() == L.VIR_ERR_OPERATION_TIMEOUT
    assert "/run/libvirt/virtstoraged-sock did not answer within 10 seconds" in str(e), str(e)
    assert 9 <= result["seconds"] < 30, result
    conn.close()


def test_relay_holds_back_a_client_while_the_daemon_sets_up(start_daemon, fake):
    """Calls a client pipelines while the daemon has not opened (here it
    never does) wait in virtkvmmd only up to a bound: then it stops
    reading that client.  When the set-up fails, each gets its error,
    and the client is read again."""
    f = fake("silent")
    d = start_daemon(prefix=f.prefix)
    raw = Raw(d.sock).open()
    pid = d.proc.pid
    before = vm_rss_kib(pid)
    sent = {"n": 0}

    def flood():
        try:
            for i in range(40):      # calls with 1 MiB of arguments each
                raw.sock.sendall(call_packet(281, 1000 + i, bytes(1 << 20)))
                sent["n"] += 1
        except OSError:
            pass
    raw.sock.settimeout(None)
    t = threading.Thread(target=flood, daemon=True)
    t.start()
    wait_for(lambda: any(x.get("proc") == 66 for x in f.records()), "the set-up to start")
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and sent["n"] < 40:
        time.sleep(0.05)
    assert sent["n"] < 16, sent                          # held back
    assert vm_rss_kib(pid) - before < 12 << 10, (before, vm_rss_kib(pid))
    # the set-up's bound passes: the calls held get their errors, in order
    raw.sock.settimeout(40)
    r = raw.recv(timeout=40)
    assert r[:5] == (0x20008086, 1, 281, 1, 1000) and r[5] == 1, r
    assert b"did not answer within 10 seconds" in r[6]
    raw.close()
    assert_healthy(d)


def test_relay_session_instance(tmp):
    """A session virtkvmmd (an unprivileged user) reaches the user's own
    daemon under $XDG_RUNTIME_DIR/libvirt and opens storage:///session."""
    needs_root()
    nobody = pwd.getpwnam("nobody")
    as_nobody = dict(user=nobody.pw_uid, group=nobody.pw_gid, extra_groups=[])
    os.chmod(tmp, 0o755)
    runtime = os.path.join(tmp, "xdg")
    os.mkdir(runtime, 0o700)
    os.chown(runtime, nobody.pw_uid, nobody.pw_gid)
    log = os.path.join(tmp, "fake.jsonl")
    script = os.path.join(tmp, "fake_daemon.py")
    with open(script, "w") as f:
        f.write(FAKE_DAEMON)
    open(log, "w").close()
    os.chown(log, nobody.pw_uid, nobody.pw_gid)
    sockdir = os.path.join(runtime, "libvirt")
    env = dict(os.environ, XDG_RUNTIME_DIR=runtime, HOME=runtime)
    fake = subprocess.Popen([sys.executable, script, "normal", log, sockdir], env=env,
                            stdout=subprocess.PIPE, text=True, **as_nobody)
    kv = None
    try:
        assert fake.stdout.readline().strip() == "ready"
        kv = subprocess.Popen([VIRTKVMMD], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, **as_nobody)
        sock = os.path.join(sockdir, "virtkvmmd-sock")
        wait_for(lambda: os.path.exists(sock) or kv.poll() is not None, "virtkvmmd's socket")
        r = subprocess.run(["virsh", "-c", f"kvmm:///session?socket={sock}", "pool-list"],
                           env=env, capture_output=True, text=True, timeout=30, **as_nobody)
        assert r.returncode == 0, r.stderr
        recs = [json.loads(line) for line in open(log).read().splitlines()]
        [opened] = [x for x in recs if x.get("proc") == 1]
        assert opened["name"] == "storage:///session" and opened["flags"] == 0
        assert opened["path"] == os.path.join(sockdir, "virtstoraged-sock")
        assert [x["proc"] for x in recs if "proc" in x] == [66, 1, 281]
        # a daemon's socket that is there but not for this user: said so,
        # not taken for an absent daemon
        root_only = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        root_only.bind(os.path.join(sockdir, "virtnetworkd-sock"))
        root_only.listen(1)
        os.chmod(os.path.join(sockdir, "virtnetworkd-sock"), 0o600)
        r = subprocess.run(["virsh", "-c", f"kvmm:///session?socket={sock}", "net-list"],
                           env=env, capture_output=True, text=True, timeout=30, **as_nobody)
        root_only.close()
        assert r.returncode != 0
        assert ("cannot connect to libvirt's network driver at "
                f"{sockdir}/virtnetworkd-sock: Permission denied") in r.stderr, r.stderr
    finally:
        for p in (kv, fake):
            if p and p.poll() is None:
                p.kill()
                p.wait()


def test_mutated_family_packets_through_the_relay(fwd, tmp_path):
    """Mutated storage calls and stream packets from many short clients:
    virtkvmmd relays or drops them and stays up; so does libvirtd; no
    link is left behind."""
    d, lvd = fwd
    rng = random.Random(7)
    seeds = [call_packet(281, 5, xdr_int(1) + xdr_uint(0)),
             call_packet(84, 6, struct.pack(">I", 4) + b"nope"),
             call_packet(97, 7, struct.pack(">I", 8) + b"/tmp/x/y"),
             packet(0x20008086, 1, 208, 3, 7, status=2, body=b"data"),
             packet(0x20008086, 1, 209, 6, 7, status=2, body=bytes(12))]
    deadline = time.monotonic() + 5
    n = 0
    while time.monotonic() < deadline:
        raw = Raw(d.sock, timeout=2)
        raw.send(call_packet(66, 0) + call_packet(1, 1, open_body()))
        for _ in range(rng.randrange(1, 6)):
            p = bytearray(rng.choice(seeds))
            for _ in range(rng.randrange(0, 3)):
                p[rng.randrange(28, len(p))] = rng.randrange(256)
            try:
                raw.send(bytes(p))
            except OSError:
                break
        raw.close()
        n += 1
    assert n > 10
    assert_healthy(d)
    assert lvd.proc.poll() is None, lvd.output()
    assert table(ok(virsh(d.uri(), "pool-list", "--all"))) == []
    wait_for(lambda: lvd.nclients() == 0, "every link to close")


# --- VIR_ERR_NO_SUPPORT -------------------------------------------------------------

def test_no_support_wording_as_libvirts_drivers(daemon):
    """For APIs neither virtkvmmd nor libvirt's test driver implement, the
    same error: code, domain and message."""
    conn = libvirt.open(daemon.uri())
    conn.defineXML(f"<domain type='kvm'><name>ns1</name><memory unit='MiB'>128</memory>"
                   f"<os><type>hvm</type><kernel>{GUEST}</kernel></os></domain>")
    ref = libvirt.open("test:///default")

    def error(fn):
        with pytest.raises(libvirt.libvirtError) as e:
            fn()
        return e.value.get_error_code(), e.value.get_error_domain(), str(e.value)

    ours, theirs = conn.lookupByName("ns1"), ref.lookupByName("test")
    for call in (lambda c, dom: dom.blockPeek("vda", 0, 512),
                 lambda c, dom: dom.migrateSetCompressionCache(1 << 20),
                 lambda c, dom: c.suspendForDuration(0, 60)):
        expected = error(lambda: call(ref, theirs))
        assert expected[0] == L.VIR_ERR_NO_SUPPORT, expected
        assert error(lambda: call(conn, ours)) == expected
    assert error(lambda: ours.injectNMI()) == (
        L.VIR_ERR_NO_SUPPORT, L.VIR_FROM_DOMAIN,
        "this function is not supported by the connection driver: virDomainInjectNMI")
    assert error(lambda: ours.listAllCheckpoints())[:2] == (L.VIR_ERR_NO_SUPPORT,
                                                            L.VIR_FROM_DOMAIN_CHECKPOINT)
    for args, api in ((("inject-nmi", "ns1"), "virDomainInjectNMI"),
                      (("domhostname", "ns1"), "virDomainGetHostname"),
                      (("send-key", "ns1", "KEY_A"), "virDomainSendKey")):
        r = virsh(daemon.uri(), *args)
        assert r.returncode != 0
        assert f"error: this function is not supported by the connection driver: {api}" \
            in r.stderr, r.stderr
    conn.close()
    ref.close()


def test_every_procedure_name_is_libvirts():
    """proc_names.c: every API name is one of libvirt's public APIs
    (libvirt-api.xml), or an internal one (migration steps, features)."""
    api_xml = "/usr/share/libvirt/api/libvirt-api.xml"
    assert os.path.exists(api_xml), "libvirt-api.xml is missing: run tools/install-deps (libvirt-dev)"
    public = {f.get("name") for f in ET.parse(api_xml).iter("function")}
    with open(PROC_NAMES) as f:
        entries = re.findall(r'N\((\d+), (NULL|"(\w+)"), [^)]*\)*\),\t/\* (\w+) \*/', f.read())
    assert len(entries) > 380
    internal = {"virConnectSupportsFeature"}
    for num, _, api, proc in entries:
        if not api:
            continue
        # the procedure's name is the API's, whatever the capitals (the
        # callback form of the domain event registration is the same API)
        assert api[3:].upper() == proc.replace("_", "").replace("EVENTCALLBACK", "EVENT"), \
            (num, api, proc)
        assert api in public or api in internal or api.startswith("virDomainMigrate"), (num, api)
    numbers = [int(n) for n, *_ in entries]
    assert numbers == sorted(set(numbers)) and max(numbers) == 443
