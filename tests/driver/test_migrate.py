"""virsh migrate between two virtkvmmd instances as two hosts: each daemon
(and the kvmm processes it starts) in a network namespace of its own, the
two joined by a veth pair, the migration's data on a TCP connection across
it; the disk and the serial log in a directory both share.  virsh holds a
connection to each daemon (their UNIX sockets: the file system is shared).
The guest is the test guest's `live` scenario: after a migration its tick
count goes on from where it was, on the destination.  Events are seen with
python3-libvirt on both sides."""
import os
import re
import shutil
import socket
import subprocess
import tempfile

import libvirt
import pytest

from drvtest import virsh
from kvmmtest import GUEST, KVMM, live_records, live_ticks
from netns import private
from test_attach_detach import api_of
from test_lifecycle import Events, event_loop, serial, wait_for
from test_tls import DN_ALLOWED, pki  # noqa: F401 (fixture)

L = libvirt
SRC_IP, DST_IP = "10.199.0.1", "10.199.0.2"
TLS_PORT = 16514


def live_xml(shared, name="m1", disk=None, emulator=None,
             cmdline="kvmmtest.action=live kvmmtest.tick_ms=50 kvmmtest.virtio=blk"):
    disk = disk or os.path.join(shared, "disk.img")
    emu = f"<emulator>{emulator}</emulator>" if emulator else ""
    return f"""<domain type='kvm'>
  <name>{name}</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type>hvm</type><kernel>{GUEST}</kernel>
    <cmdline>{cmdline}</cmdline></os>
  <on_poweroff>destroy</on_poweroff>
  <devices>
    {emu}
    <disk type='file' device='disk'><driver name='qemu' type='raw'/>
      <source file='{disk}'/><target dev='vda' bus='virtio'/></disk>
    <serial type='file'><source path='{shared}/{name}-serial.log'/><target port='0'/></serial>
  </devices>
</domain>
"""


def ticks(shared, name="m1"):
    return [(t.n, t.us) for t in live_ticks(serial(shared, name))]


def wait_ticks(shared, n, name="m1"):
    wait_for(lambda: ticks(shared, name) and ticks(shared, name)[-1][0] >= n, f"tick {n} of {name}")


def assert_continued(shared, before, name="m1", more=3):
    """The guest went on from tick BEFORE's count, one sequence in the
    shared serial log, its clock never going back, booted once."""
    last = before[-1][0]
    wait_for(lambda: ticks(shared, name)[-1][0] >= last + more, f"ticks after {last}")
    t = ticks(shared, name)
    assert [n for n, _ in t] == list(range(1, len(t) + 1)), "the tick count restarted or skipped"
    assert all(b[1] <= a[1] for b, a in zip(t, t[1:])), "the guest's clock went back"
    assert serial(shared, name).count("KVMMTEST boot") == 1


class Host:
    def __init__(self, daemon, ns, ip):
        self.d, self.ns, self.ip = daemon, ns, ip
        self.uri = daemon.uri()
        self.conn = libvirt.open(self.uri)
        self.ev = Events(self.uri)

    def events(self, name, n, timeout=60):
        out = []
        while len(out) < n:
            e = self.ev.next(timeout)
            if e[0] == name:
                out.append(e[1:])
        return out

    def no_domain(self, name):
        with pytest.raises(libvirt.libvirtError):
            self.conn.lookupByName(name)

    def listening(self):
        """The TCP ports of libvirt's migration range listening in this
        host's namespace."""
        out = subprocess.run(["ip", "netns", "exec", self.ns, "ss", "-Htln"],
                             capture_output=True, text=True, check=True).stdout
        ports = [int(line.split()[3].rsplit(":", 1)[1]) for line in out.splitlines()]
        return [p for p in ports if 49152 <= p <= 49215]


@pytest.fixture
def ns_src():
    yield from private("kmsrc")


@pytest.fixture
def ns_dst():
    yield from private("kmdst")


@pytest.fixture
def tls_dst_conf(pki):
    """The destination's virtkvmmd.conf: TLS on DST_IP (the peer-to-peer
    tests' dconnuri); the clients' pkipath= directory."""
    d = tempfile.mkdtemp(prefix="kvmig-tls-")
    conf = os.path.join(d, "virtkvmmd.conf")
    with open(conf, "w") as f:
        f.write(f"""listen_tls = 1
tls_port = "{TLS_PORT}"
listen_addr = "{DST_IP}"
ca_file = "{pki['ca']}"
cert_file = "{pki['cert']}"
key_file = "{pki['key']}"
tls_allowed_dn_list = ["{DN_ALLOWED}"]
""")
    yield conf
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def hosts(start_daemon, ns_src, ns_dst, kvm, tls_dst_conf):
    yield from make_hosts(start_daemon, ns_src, ns_dst, ["--config", tls_dst_conf])


@pytest.fixture
def lean_hosts(start_daemon, ns_src, ns_dst, kvm):
    """As hosts, but the destination has no TLS listener and no client
    but virsh's: few descriptors of its own, so the connection it accepts
    lands on a low number.  (src Host, dst Daemon, shared dir)."""
    yield from make_hosts(start_daemon, ns_src, ns_dst, [], lean=True)


def make_hosts(start_daemon, ns_src, ns_dst, dst_extra, lean=False):
    veth = "kmv" + ns_src[-6:]
    subprocess.run(["ip", "link", "add", veth + "a", "netns", ns_src, "type", "veth",
                    "peer", "name", veth + "b", "netns", ns_dst], check=True)
    for ns, dev, ip in ((ns_src, veth + "a", SRC_IP), (ns_dst, veth + "b", DST_IP)):
        subprocess.run(["ip", "-n", ns, "addr", "add", ip + "/24", "dev", dev], check=True)
        subprocess.run(["ip", "-n", ns, "link", "set", dev, "up"], check=True)
    shared = tempfile.mkdtemp(prefix="kvmig-")
    with open(os.path.join(shared, "disk.img"), "wb") as f:
        f.write(os.urandom(1 << 20))
    src = Host(start_daemon(prefix=["ip", "netns", "exec", ns_src]), ns_src, SRC_IP)
    dst = start_daemon(dst_extra, prefix=["ip", "netns", "exec", ns_dst])
    if not lean:
        dst = Host(dst, ns_dst, DST_IP)
    yield src, dst, shared
    shutil.rmtree(shared, ignore_errors=True)


def migrate(src, dst, name, *flags, timeout=180):
    return virsh(src.uri, "migrate", name, dst.uri, "--migrateuri", f"tcp://{dst.ip}", *flags,
                 timeout=timeout)


def running(host, shared, name="m1", **kw):
    dom = host.conn.defineXML(live_xml(shared, name, **kw))
    dom.create()
    assert host.events(name, 2) == [(L.VIR_DOMAIN_EVENT_DEFINED, L.VIR_DOMAIN_EVENT_DEFINED_ADDED),
                                    (L.VIR_DOMAIN_EVENT_STARTED, L.VIR_DOMAIN_EVENT_STARTED_BOOTED)]
    wait_ticks(shared, 3, name)
    return dom


def test_migrate_moves_the_running_guest(hosts):
    src, dst, shared = hosts
    sdom = running(src, shared)
    r = migrate(src, dst, "m1")
    assert r.returncode == 0, r.stderr + src.d.output() + dst.d.output()
    before = ticks(shared)
    # The destination runs it, transient, with libvirt's events.
    ddom = dst.conn.lookupByName("m1")
    assert ddom.UUIDString() == sdom.UUIDString()
    assert ddom.state() == [L.VIR_DOMAIN_RUNNING, L.VIR_DOMAIN_RUNNING_MIGRATED]
    assert not ddom.isPersistent()
    assert dst.events("m1", 2) == [(L.VIR_DOMAIN_EVENT_STARTED, L.VIR_DOMAIN_EVENT_STARTED_MIGRATED),
                                   (L.VIR_DOMAIN_EVENT_RESUMED, L.VIR_DOMAIN_EVENT_RESUMED_MIGRATED)]
    assert len(dst.d.guests()) == 1
    # The source: paused for the transfer, then stopped as migrated, and
    # still defined (no --undefinesource).
    assert src.events("m1", 2) == [(L.VIR_DOMAIN_EVENT_SUSPENDED, L.VIR_DOMAIN_EVENT_SUSPENDED_MIGRATED),
                                   (L.VIR_DOMAIN_EVENT_STOPPED, L.VIR_DOMAIN_EVENT_STOPPED_MIGRATED)]
    assert sdom.state() == [L.VIR_DOMAIN_SHUTOFF, L.VIR_DOMAIN_SHUTOFF_MIGRATED]
    assert sdom.isPersistent()
    assert src.d.guests() == []
    assert_continued(shared, before)
    # The destination's kvmm runs in its namespace and reads the shared disk.
    pid = dst.d.guests()[0]
    assert os.stat(f"/proc/{pid}/ns/net").st_ino == os.stat(f"/run/netns/{dst.ns}").st_ino
    assert ticks(shared)[-1][0] > before[-1][0]
    assert dst.listening() == []
    ddom.destroy()


def test_migrate_to_a_daemon_with_few_descriptors(lean_hosts):
    # Its accepted connection can be the very number kvmm is to inherit
    # it on (fd:12): it must still reach kvmm's --incoming.
    src, dst, shared = lean_hosts
    running(src, shared)
    before = ticks(shared)
    r = virsh(src.uri, "migrate", "--live", "m1", dst.uri(), "--migrateuri", f"tcp://{DST_IP}",
              timeout=180)
    assert r.returncode == 0, r.stderr + src.d.output() + dst.output()
    assert "running" in virsh(dst.uri(), "domstate", "m1").stdout
    assert_continued(shared, before)
    assert virsh(dst.uri(), "destroy", "m1").returncode == 0


def test_persistent_undefinesource_and_back(hosts):
    src, dst, shared = hosts
    running(src, shared)
    r = migrate(src, dst, "m1", "--persistent", "--undefinesource")
    assert r.returncode == 0, r.stderr + src.d.output() + dst.d.output()
    ddom = dst.conn.lookupByName("m1")
    assert ddom.isPersistent() and ddom.isActive()
    assert dst.events("m1", 3) == [(L.VIR_DOMAIN_EVENT_STARTED, L.VIR_DOMAIN_EVENT_STARTED_MIGRATED),
                                   (L.VIR_DOMAIN_EVENT_RESUMED, L.VIR_DOMAIN_EVENT_RESUMED_MIGRATED),
                                   (L.VIR_DOMAIN_EVENT_DEFINED, L.VIR_DOMAIN_EVENT_DEFINED_ADDED)]
    assert src.events("m1", 3)[1:] == [(L.VIR_DOMAIN_EVENT_STOPPED, L.VIR_DOMAIN_EVENT_STOPPED_MIGRATED),
                                       (L.VIR_DOMAIN_EVENT_UNDEFINED, L.VIR_DOMAIN_EVENT_UNDEFINED_REMOVED)]
    src.no_domain("m1")
    # The definition survives the destination daemon's restart: on disk.
    assert os.path.exists(os.path.join(dst.d.root, "etc", "libvirt", "kvmm", "m1.xml")) or \
        "m1" in virsh(dst.uri, "list", "--all", "--persistent").stdout
    before = ticks(shared)
    # And back again, the same way.
    r = migrate(dst, src, "m1", "--persistent", "--undefinesource")
    assert r.returncode == 0, r.stderr + src.d.output() + dst.d.output()
    dst.no_domain("m1")
    assert src.conn.lookupByName("m1").isActive()
    assert_continued(shared, before)
    src.conn.lookupByName("m1").destroy()


def test_back_to_a_host_that_kept_the_definition(hosts):
    """Migrated away without --undefinesource, then back: the source's
    definition stays the domain's (the next start's), the run is the
    migrated one; the transient copy on the other host is gone."""
    src, dst, shared = hosts
    sdom = running(src, shared)
    r = migrate(src, dst, "m1")
    assert r.returncode == 0, r.stderr + dst.d.output()
    r = migrate(dst, src, "m1")
    assert r.returncode == 0, r.stderr + src.d.output()
    before = ticks(shared)
    dst.no_domain("m1")
    assert sdom.isPersistent() and sdom.state() == [L.VIR_DOMAIN_RUNNING,
                                                    L.VIR_DOMAIN_RUNNING_MIGRATED]
    assert_continued(shared, before)
    # Its own definition comes back when the run ends.
    sdom.destroy()
    assert sdom.isPersistent() and "kvmmtest.action=live" in sdom.XMLDesc(0)
    # A failed incoming run leaves the definition as it was, too.
    emu = os.path.join(shared, "kvmm-dying-after")
    with open(emu, "w") as f:
        f.write(DYING_AFTER.format(kvmm=KVMM))
    os.chmod(emu, 0o755)
    ddom = dst.conn.createXML(live_xml(shared, emulator=emu).replace(
        "<name>m1</name>", f"<name>m1</name><uuid>{sdom.UUIDString()}</uuid>"), 0)
    wait_for(lambda: serial(shared, "m1").count("KVMMTEST boot") == 2, "the second boot")
    r = migrate(dst, src, "m1")
    assert r.returncode != 0 and "kvmm exited while starting" in r.stderr, r.stderr
    assert ddom.state()[0] == L.VIR_DOMAIN_RUNNING
    assert not sdom.isActive() and sdom.isPersistent()
    assert "kvmm-dying-after" not in sdom.XMLDesc(0)
    assert src.d.guests() == [] and src.listening() == []
    ddom.destroy()


def test_suspend_leaves_it_paused_on_the_destination(hosts):
    src, dst, shared = hosts
    running(src, shared)
    r = migrate(src, dst, "m1", "--suspend")
    assert r.returncode == 0, r.stderr + dst.d.output()
    ddom = dst.conn.lookupByName("m1")
    assert ddom.state() == [L.VIR_DOMAIN_PAUSED, L.VIR_DOMAIN_PAUSED_USER]
    assert dst.events("m1", 2) == [(L.VIR_DOMAIN_EVENT_STARTED, L.VIR_DOMAIN_EVENT_STARTED_MIGRATED),
                                   (L.VIR_DOMAIN_EVENT_SUSPENDED, L.VIR_DOMAIN_EVENT_SUSPENDED_PAUSED)]
    before = ticks(shared)
    ddom.resume()
    assert_continued(shared, before)
    ddom.destroy()


def test_a_paused_domain_arrives_paused(hosts):
    """virsh sees the source paused and asks for PAUSED itself."""
    src, dst, shared = hosts
    sdom = running(src, shared)
    sdom.suspend()
    r = migrate(src, dst, "m1")
    assert r.returncode == 0, r.stderr + dst.d.output()
    assert dst.conn.lookupByName("m1").state()[0] == L.VIR_DOMAIN_PAUSED
    dst.conn.lookupByName("m1").destroy()


def test_offline_moves_the_definition(hosts):
    src, dst, shared = hosts
    src.conn.defineXML(live_xml(shared))
    r = migrate(src, dst, "m1", "--offline", "--persistent", "--undefinesource")
    assert r.returncode == 0, r.stderr + dst.d.output()
    ddom = dst.conn.lookupByName("m1")
    assert ddom.isPersistent() and not ddom.isActive()
    src.no_domain("m1")
    assert dst.d.guests() == [] and src.d.guests() == []
    # Without --persistent it means nothing: refused.
    r = migrate(dst, src, "m1", "--offline")
    assert r.returncode != 0 and "offline migration requires --persistent" in r.stderr, r.stderr


# A kvmm that dies on the destination with the stream half read: it reads
# 64 KiB of the connection and is killed.
# bash: dash takes single-digit descriptors only.
DYING = """#!/bin/bash
case "$*" in *"--incoming fd:12"*) head -c 65536 <&12 >/dev/null; kill -KILL $$;; esac
exec {kvmm} "$@"
"""


# One that reads the whole stream, then dies: Perform succeeds, Finish
# fails, and Confirm(cancelled) resumes the source.
DYING_AFTER = """#!/bin/bash
case "$*" in *"--incoming fd:12"*) cat <&12 >/dev/null; kill -KILL $$;; esac
exec {kvmm} "$@"
"""


def test_destination_kvmm_dead_after_the_transfer_the_source_resumes(hosts):
    src, dst, shared = hosts
    emu = os.path.join(shared, "kvmm-dying-after")
    with open(emu, "w") as f:
        f.write(DYING_AFTER.format(kvmm=KVMM))
    os.chmod(emu, 0o755)
    sdom = src.conn.defineXML(live_xml(shared, emulator=emu))
    sdom.create()
    assert src.events("m1", 2)[1] == (L.VIR_DOMAIN_EVENT_STARTED, L.VIR_DOMAIN_EVENT_STARTED_BOOTED)
    wait_ticks(shared, 3)
    r = migrate(src, dst, "m1")
    assert r.returncode != 0 and "kvmm exited while starting" in r.stderr, r.stderr
    assert src.events("m1", 2) == [(L.VIR_DOMAIN_EVENT_SUSPENDED, L.VIR_DOMAIN_EVENT_SUSPENDED_MIGRATED),
                                   (L.VIR_DOMAIN_EVENT_RESUMED, L.VIR_DOMAIN_EVENT_RESUMED_MIGRATED)]
    assert sdom.state() == [L.VIR_DOMAIN_RUNNING, L.VIR_DOMAIN_RUNNING_MIGRATION_CANCELED]
    before = ticks(shared)
    # It took its disk's lock back and runs on.
    wait_for(lambda: ticks(shared)[-1][0] >= before[-1][0] + 3, "ticks on the source")
    dst.no_domain("m1")
    assert dst.d.guests() == [] and dst.listening() == []
    sdom.destroy()


def test_a_failed_migration_leaves_a_paused_domain_paused(hosts):
    src, dst, shared = hosts
    emu = os.path.join(shared, "kvmm-dying-after")
    with open(emu, "w") as f:
        f.write(DYING_AFTER.format(kvmm=KVMM))
    os.chmod(emu, 0o755)
    sdom = src.conn.defineXML(live_xml(shared, emulator=emu))
    sdom.create()
    wait_ticks(shared, 3)
    sdom.suspend()
    r = migrate(src, dst, "m1")
    assert r.returncode != 0
    assert sdom.state() == [L.VIR_DOMAIN_PAUSED, L.VIR_DOMAIN_PAUSED_USER]
    # Its resume takes the disk's lock back.
    before = ticks(shared)
    sdom.resume()
    wait_for(lambda: ticks(shared)[-1][0] >= before[-1][0] + 3, "ticks after resume")
    dst.no_domain("m1")
    sdom.destroy()


def test_destination_kvmm_killed_mid_transfer_the_source_runs_on(hosts):
    src, dst, shared = hosts
    emu = os.path.join(shared, "kvmm-dying")
    with open(emu, "w") as f:
        f.write(DYING.format(kvmm=KVMM))
    os.chmod(emu, 0o755)
    sdom = src.conn.defineXML(live_xml(shared, emulator=emu))
    sdom.create()
    wait_ticks(shared, 3)
    r = migrate(src, dst, "m1")
    assert r.returncode != 0
    # The source runs on, its guest ticking; nothing is left on the
    # destination: no domain, no kvmm, no listening port.
    assert sdom.state()[0] == L.VIR_DOMAIN_RUNNING, (sdom.state(), src.d.output())
    before = ticks(shared)
    wait_for(lambda: ticks(shared)[-1][0] >= before[-1][0] + 3, "ticks on the source")
    dst.no_domain("m1")
    assert dst.d.guests() == [] and dst.listening() == []
    # And it can still go, once the destination is sane.
    sdom.destroy()


# A destination kvmm held before it reads the stream until the test opens
# the FIFO: the first migration stays in its transfer meanwhile.
HELD = """#!/bin/sh
case "$*" in *"--incoming fd:12"*) cat {fifo} >/dev/null;; esac
exec {kvmm} "$@"
"""


def test_a_second_migration_of_the_domain_is_refused(hosts):
    src, dst, shared = hosts
    fifo = os.path.join(shared, "hold")
    os.mkfifo(fifo)
    emu = os.path.join(shared, "kvmm-held")
    with open(emu, "w") as f:
        f.write(HELD.format(fifo=fifo, kvmm=KVMM))
    os.chmod(emu, 0o755)
    sdom = src.conn.defineXML(live_xml(shared, emulator=emu))
    sdom.create()
    wait_ticks(shared, 3)
    env = dict(os.environ, LC_ALL="C")
    first = subprocess.Popen(["virsh", "-c", src.uri, "migrate", "m1", dst.uri, "--migrateuri",
                              f"tcp://{dst.ip}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=env)
    try:
        # The state sent (into the connection), the destination not done.
        wait_for(lambda: sdom.state() == [L.VIR_DOMAIN_PAUSED, L.VIR_DOMAIN_PAUSED_MIGRATION],
                 "the source paused for the transfer", timeout=60)
        r = migrate(src, dst, "m1")
        assert r.returncode != 0 and "domain 'm1' is already being migrated" in r.stderr, r.stderr
    finally:
        with open(fifo, "w"):
            pass
    out, err = first.communicate(timeout=180)
    assert first.returncode == 0, err + dst.d.output()
    assert dst.conn.lookupByName("m1").isActive()
    assert sdom.state() == [L.VIR_DOMAIN_SHUTOFF, L.VIR_DOMAIN_SHUTOFF_MIGRATED]
    dst.conn.lookupByName("m1").destroy()


def test_client_gone_mid_migration(hosts):
    """virsh killed while the transfer runs: the destination removes what
    it prepared once virsh's connection is gone; the source stays paused
    for the migration (libvirt leaves it so too), resumes on request and
    can migrate again."""
    src, dst, shared = hosts
    fifo = os.path.join(shared, "hold")
    os.mkfifo(fifo)
    emu = os.path.join(shared, "kvmm-held")
    with open(emu, "w") as f:
        f.write(HELD.format(fifo=fifo, kvmm=KVMM))
    os.chmod(emu, 0o755)
    sdom = src.conn.defineXML(live_xml(shared, emulator=emu))
    sdom.create()
    wait_ticks(shared, 3)
    first = subprocess.Popen(["virsh", "-c", src.uri, "migrate", "m1", dst.uri, "--migrateuri",
                              f"tcp://{dst.ip}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: sdom.state() == [L.VIR_DOMAIN_PAUSED, L.VIR_DOMAIN_PAUSED_MIGRATION],
                 "the source paused for the transfer", timeout=60)
        first.kill()
        first.wait()
        wait_for(lambda: "the client of its incoming migration went away" in dst.d.output(),
                 "the destination to notice")
    finally:
        with open(fifo, "w"):
            pass
    wait_for(lambda: not dst.d.guests() and not dst.listening() and
             "m1" not in virsh(dst.uri, "list", "--all", "--name").stdout, "nothing left there")
    assert sdom.state() == [L.VIR_DOMAIN_PAUSED, L.VIR_DOMAIN_PAUSED_MIGRATION]
    before = ticks(shared)
    sdom.resume()
    wait_for(lambda: ticks(shared)[-1][0] >= before[-1][0] + 3, "ticks after resume")
    os.unlink(fifo)
    with open(emu, "w") as f:
        f.write(HELD.format(fifo="/dev/null", kvmm=KVMM))
    r = migrate(src, dst, "m1")
    assert r.returncode == 0, r.stderr + dst.d.output()
    dst.conn.lookupByName("m1").destroy()


def test_refusals(hosts):
    src, dst, shared = hosts
    running(src, shared)
    cases = [
        (["--copy-storage-all"], "non-shared storage"),
        (["--copy-storage-inc"], "non-shared storage"),
        (["--postcopy"], "post-copy migration is not supported"),
        (["--compressed"], "compressed migration is not supported"),
        (["--dname", "other"], "renaming domain 'm1' to 'other' on migration is not supported"),
        (["--disks-port", "5000"], "migration parameter 'disks_port' is not supported"),
    ]
    for flags, msg in cases:
        r = migrate(src, dst, "m1", *flags)
        assert r.returncode != 0 and msg in r.stderr, (flags, r.stderr)
    # Tunnelled needs peer-to-peer; the source daemon refuses it.
    r = virsh(src.uri, "migrate", "--p2p", "--tunnelled", "m1", f"kvmm+tls://{DST_IP}/system")
    assert r.returncode != 0 and "tunnelled migration is not supported" in r.stderr, r.stderr
    # A destination without the disk: refused in Prepare, nothing left.
    xml = os.path.join(shared, "nodisk.xml")
    with open(xml, "w") as f:
        f.write(live_xml(shared, disk=os.path.join(shared, "absent.img")).replace(
            "<name>m1</name>",
            f"<name>m1</name><uuid>{src.conn.lookupByName('m1').UUIDString()}</uuid>"))
    r = migrate(src, dst, "m1", "--xml", xml)
    assert r.returncode != 0 and "absent.img' is not on this host" in r.stderr, r.stderr
    # Already active on the destination.
    other = os.path.join(shared, "disk2.img")
    open(other, "wb").close()
    dst.conn.createXML(live_xml(shared, "m1", disk=other).replace(
        "<name>m1</name>", f"<name>m1</name><uuid>{src.conn.lookupByName('m1').UUIDString()}</uuid>"
    ).replace("m1-serial.log", "m1-dst-serial.log"), 0)
    r = migrate(src, dst, "m1")
    assert r.returncode != 0 and "already active on the destination" in r.stderr, r.stderr
    dst.conn.lookupByName("m1").destroy()
    # After all that the source still runs, and then migrates.
    sdom = src.conn.lookupByName("m1")
    assert sdom.state()[0] == L.VIR_DOMAIN_RUNNING
    assert dst.d.guests() == [] and dst.listening() == []
    before = ticks(shared)
    r = migrate(src, dst, "m1")
    assert r.returncode == 0, r.stderr + dst.d.output()
    assert_continued(shared, before)
    dst.conn.lookupByName("m1").destroy()


def test_speed_and_downtime_are_kept_per_domain(hosts):
    src, dst, shared = hosts
    running(src, shared)
    assert virsh(src.uri, "migrate-getspeed", "m1").stdout.strip() == "8796093022207"
    assert virsh(src.uri, "migrate-setspeed", "m1", "100").returncode == 0
    assert virsh(src.uri, "migrate-getspeed", "m1").stdout.strip() == "100"
    assert virsh(src.uri, "migrate-getmaxdowntime", "m1").stdout.strip() == "300"
    assert virsh(src.uri, "migrate-setmaxdowntime", "m1", "50").returncode == 0
    assert virsh(src.uri, "migrate-getmaxdowntime", "m1").stdout.strip() == "50"
    r = virsh(src.uri, "migrate-setspeed", "m1", "100", "--postcopy")
    assert r.returncode != 0 and "post-copy" in r.stderr, r.stderr
    src.conn.lookupByName("m1").destroy()


def test_capabilities_and_features(hosts):
    src, dst, shared = hosts
    caps = src.conn.getCapabilities()
    assert "<migration_features>" in caps and "<uri_transport>tcp</uri_transport>" in caps
    assert "<live/>" in caps


def test_p2p_the_source_daemon_drives_the_destination(hosts, pki):
    """--p2p: virsh talks to the source daemon only; it opens dconnuri (TLS
    to the destination's daemon, across the veth) with libvirt's client
    library and runs Prepare and Finish there itself."""
    src, dst, shared = hosts
    sdom = running(src, shared)
    dconnuri = f"kvmm+tls://{DST_IP}:{TLS_PORT}/system?pkipath={pki['allowed']}&no_verify=1"
    r = virsh(src.uri, "migrate", "--p2p", "--persistent", "m1", dconnuri,
              "--migrateuri", f"tcp://{DST_IP}", timeout=180)
    assert r.returncode == 0, r.stderr + src.d.output() + dst.d.output()
    before = ticks(shared)
    ddom = dst.conn.lookupByName("m1")
    assert ddom.state() == [L.VIR_DOMAIN_RUNNING, L.VIR_DOMAIN_RUNNING_MIGRATED]
    assert ddom.isPersistent()
    assert dst.events("m1", 3) == [(L.VIR_DOMAIN_EVENT_STARTED, L.VIR_DOMAIN_EVENT_STARTED_MIGRATED),
                                   (L.VIR_DOMAIN_EVENT_RESUMED, L.VIR_DOMAIN_EVENT_RESUMED_MIGRATED),
                                   (L.VIR_DOMAIN_EVENT_DEFINED, L.VIR_DOMAIN_EVENT_DEFINED_ADDED)]
    assert sdom.state() == [L.VIR_DOMAIN_SHUTOFF, L.VIR_DOMAIN_SHUTOFF_MIGRATED]
    assert src.d.guests() == []
    assert_continued(shared, before)
    # The daemon's own connection came from the source's namespace.
    assert f"from {SRC_IP}" in dst.d.output() or SRC_IP in dst.d.output()
    # Refusals reach virsh through the source daemon too.
    r = virsh(src.uri, "migrate", "--p2p", "m1", dconnuri.replace(DST_IP, SRC_IP), timeout=60)
    assert r.returncode != 0
    ddom.destroy()


# --- live migration ------------------------------------------------------

# The test guest rewriting 16 MiB (a word a page) every 20 ms tick, each
# tick checking the last one's values and every other one a disk read's
# buffer: the copy never catches up unless throttled or the link is fast.
DIRTY = ("kvmmtest.action=live kvmmtest.tick_ms=20 kvmmtest.virtio=blk "
         "kvmmtest.live.touch=16 kvmmtest.live.check=on kvmmtest.live.dirty=on")
DIRTY_REC = re.compile(r"KVMMTEST live n=(\d+) us=(\d+) blk0=\S+ blk_irqs=\d+ mem=(\S+) "
                       r"ap_irqs=\d+ gen=(\d+) blkmem=(\S+)")


def dirty_records(shared, name="m1"):
    """Complete lines only: blkmem= ends the line, so a line still being
    written would read as blkmem=o or =no."""
    return [(int(m[1]), int(m[2]), m[3], int(m[4]), m[5])
            for m in live_records(serial(shared, name), DIRTY_REC)]


def assert_memory_right(shared, before, name="m1"):
    """assert_continued, and every memory and disk-buffer check of the
    guest right, before, during and after the copy, its rewriting going
    on after it."""
    assert_continued(shared, before, name)
    recs = dirty_records(shared, name)
    assert all(r[2] == "ok" for r in recs), [r for r in recs if r[2] != "ok"][:3]
    assert all(r[4] in ("ok", "none") for r in recs), [r for r in recs if r[4] != "ok"][:3]
    assert [r for r in recs if r[0] > before[-1][0] and r[4] == "ok"], "no disk buffer checked after"
    last = [r for r in recs if r[0] <= before[-1][0]][-1]
    assert recs[-1][3] > last[3], "the guest stopped rewriting its memory"


def start_migrate(src, dst, name, *flags):
    argv = ["virsh", "-c", src.uri, "migrate", name, dst.uri, "--migrateuri",
            f"tcp://{dst.ip}", *flags]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, LC_ALL="C"))


def copying(dom, **need):
    """The source's migration job once it has sent something (and NEED:
    each stat at least that)."""
    def ready():
        st = dom.jobStats()
        if st.get("type") != L.VIR_DOMAIN_JOB_UNBOUNDED or not st.get("memory_processed"):
            return None
        return st if all(st.get(k, 0) >= v for k, v in need.items()) else None
    return wait_for(ready, f"the migration job with {need}", timeout=120)


def test_live_migration_the_guest_runs_during_the_copy(hosts):
    """--live: the guest ticks and rewrites its memory while a slow link
    (--bandwidth 4 MiB/s) carries it; domjobinfo shows the job; a faster
    migrate-setspeed reaches the running migration and it completes; the
    guest goes on on the destination with every check right."""
    src, dst, shared = hosts
    sdom = running(src, shared, cmdline=DIRTY)
    before = ticks(shared)
    event_loop()
    iterations = []
    econn = libvirt.open(src.uri)
    econn.domainEventRegisterAny(None, L.VIR_DOMAIN_EVENT_ID_MIGRATION_ITERATION,
                                 lambda c, dom, it, _: iterations.append((dom.name(), it)), None)
    p = start_migrate(src, dst, "m1", "--live", "--verbose", "--bandwidth", "4")
    st = copying(sdom)
    assert st["operation"] == L.VIR_DOMAIN_JOB_OPERATION_MIGRATION_OUT, st
    for k in ("time_elapsed", "data_total", "data_processed", "data_remaining", "memory_total",
              "memory_processed", "memory_remaining", "memory_iteration", "memory_dirty_rate",
              "downtime", "auto_converge_throttle"):
        assert k in st, (k, st)
    assert st["data_total"] == st["data_processed"] + st["data_remaining"], st
    assert st["memory_total"] == 64 << 20 and st["memory_processed"] == st["data_processed"], st
    # The guest runs during the copy: ticks while the job is still there.
    n = ticks(shared)[-1][0]
    wait_ticks(shared, n + 5)
    assert sdom.jobStats()["type"] == L.VIR_DOMAIN_JOB_UNBOUNDED
    assert sdom.state() == [L.VIR_DOMAIN_RUNNING, L.VIR_DOMAIN_RUNNING_BOOTED]
    r = virsh(src.uri, "domjobinfo", "m1")
    assert r.returncode == 0, r.stderr
    for line in ("Job type:         Unbounded", "Operation:        Outgoing migration",
                 "Memory processed:", "Iteration:", "Dirty rate:", "Expected downtime:"):
        assert line in r.stdout, (line, r.stdout)
    # What kvmm was asked: --bandwidth, the domain's downtime, and no
    # auto-converge without --auto-converge; a downtime set during the
    # migration reaches it.
    api = api_of(src.d, sdom)
    q = api.call("query-migrate")["return"]
    assert (q["status"], q["bandwidth-mibps"], q["max-downtime-ms"], q["auto-converge"]) == \
        ("active", 4, 300, False), q
    assert virsh(src.uri, "migrate-setmaxdowntime", "m1", "123").returncode == 0
    wait_for(lambda: api.call("query-migrate")["return"]["max-downtime-ms"] == 123,
             "the new downtime in kvmm")
    assert api.call("query-migrate")["return"]["bandwidth-mibps"] == 4
    # So does a speed, over the migration's --bandwidth.
    assert virsh(src.uri, "migrate-setspeed", "m1", "5").returncode == 0
    wait_for(lambda: api.call("query-migrate")["return"]["bandwidth-mibps"] == 5,
             "the new speed in kvmm")
    api.close()
    # The second round begun, at 4-5 MiB/s: seconds of virsh's progress
    # (it polls every 500 ms), and two iteration events.
    wait_for(lambda: len(iterations) >= 2, "the second round's iteration event", timeout=120)
    assert sdom.jobStats()["memory_iteration"] >= 1
    # A faster link for the running migration: it completes.
    assert virsh(src.uri, "migrate-setspeed", "m1", "0").returncode == 0
    out, err = p.communicate(timeout=180)
    assert p.returncode == 0, err + src.d.output() + dst.d.output()
    progress = [int(x) for x in re.findall(r"Migration: \[\s*(\d+) %\]", err)]
    assert progress and progress[-1] == 100 and min(progress) < 100, err
    ddom = dst.conn.lookupByName("m1")
    assert ddom.state() == [L.VIR_DOMAIN_RUNNING, L.VIR_DOMAIN_RUNNING_MIGRATED]
    assert src.events("m1", 2) == [(L.VIR_DOMAIN_EVENT_SUSPENDED, L.VIR_DOMAIN_EVENT_SUSPENDED_MIGRATED),
                                   (L.VIR_DOMAIN_EVENT_STOPPED, L.VIR_DOMAIN_EVENT_STOPPED_MIGRATED)]
    assert src.d.guests() == []
    assert_memory_right(shared, before)
    # What the job did, after it.
    done = sdom.jobStats(L.VIR_DOMAIN_JOB_STATS_COMPLETED)
    assert done["type"] == L.VIR_DOMAIN_JOB_COMPLETED, done
    assert done["memory_iteration"] >= 1 and done["data_remaining"] == 0, done
    assert done["time_elapsed"] > 0 and "downtime" in done, done
    # An iteration event for each round, from the first on.
    assert iterations == [("m1", i) for i in range(1, len(iterations) + 1)], iterations
    econn.close()
    ddom.destroy()


def test_live_migration_aborted_mid_copy_the_source_runs_on(hosts):
    src, dst, shared = hosts
    sdom = running(src, shared, cmdline=DIRTY)
    p = start_migrate(src, dst, "m1", "--live", "--bandwidth", "2")
    copying(sdom)
    r = virsh(src.uri, "domjobabort", "m1")
    assert r.returncode == 0, r.stderr
    out, err = p.communicate(timeout=120)
    assert p.returncode != 0 and \
        "operation aborted: migration out job: canceled by client" in err, err
    # The source never stopped; the destination is cleaned up.
    assert sdom.state()[0] == L.VIR_DOMAIN_RUNNING
    before = ticks(shared)
    assert_memory_right(shared, before)
    wait_for(lambda: dst.d.guests() == [] and dst.listening() == [], "the destination cleaned up")
    dst.no_domain("m1")
    done = sdom.jobStats(L.VIR_DOMAIN_JOB_STATS_COMPLETED)
    assert done["type"] == L.VIR_DOMAIN_JOB_CANCELLED, done
    # No job left to abort; and then it migrates.
    r = virsh(src.uri, "domjobabort", "m1")
    assert r.returncode != 0 and "no job is active" in r.stderr, r.stderr
    before = ticks(shared)
    r = migrate(src, dst, "m1", "--live")
    assert r.returncode == 0, r.stderr + src.d.output() + dst.d.output()
    assert_memory_right(shared, before)
    dst.conn.lookupByName("m1").destroy()


def test_live_migration_auto_converge_throttles_the_guest(hosts):
    """--auto-converge: a guest that dirties faster than the link (4 MiB
    every 20 ms over 8 MiB/s) is throttled, which domjobinfo shows; then it
    completes, memory right."""
    src, dst, shared = hosts
    sdom = running(src, shared, cmdline=DIRTY.replace("touch=16", "touch=4"))
    before = ticks(shared)
    p = start_migrate(src, dst, "m1", "--live", "--auto-converge", "--bandwidth", "8")
    st = copying(sdom, auto_converge_throttle=30)
    assert st["memory_iteration"] >= 3, st
    api = api_of(src.d, sdom)
    assert api.call("query-migrate")["return"]["auto-converge"] is True
    api.close()
    assert virsh(src.uri, "migrate-setspeed", "m1", "0").returncode == 0
    out, err = p.communicate(timeout=180)
    assert p.returncode == 0, err + src.d.output() + dst.d.output()
    assert_memory_right(shared, before)
    dst.conn.lookupByName("m1").destroy()


def test_live_p2p(hosts, pki):
    src, dst, shared = hosts
    sdom = running(src, shared, cmdline=DIRTY)
    before = ticks(shared)
    dconnuri = f"kvmm+tls://{DST_IP}:{TLS_PORT}/system?pkipath={pki['allowed']}&no_verify=1"
    r = virsh(src.uri, "migrate", "--live", "--p2p", "m1", dconnuri,
              "--migrateuri", f"tcp://{DST_IP}", timeout=180)
    assert r.returncode == 0, r.stderr + src.d.output() + dst.d.output()
    ddom = dst.conn.lookupByName("m1")
    assert ddom.state() == [L.VIR_DOMAIN_RUNNING, L.VIR_DOMAIN_RUNNING_MIGRATED]
    assert sdom.state() == [L.VIR_DOMAIN_SHUTOFF, L.VIR_DOMAIN_SHUTOFF_MIGRATED]
    assert_memory_right(shared, before)
    ddom.destroy()


def test_live_migration_timeout_suspends_the_guest_to_converge(hosts):
    """--timeout 2: the guest dirties 16 MiB every 20 ms over an 8 MiB/s
    link, which never converges (kvmm would give up rounds only after 30,
    a minute); virsh suspends it after 2 s on the connection Perform runs
    on, the migration's job pauses it (paused, reason migration), and the
    next round completes it."""
    src, dst, shared = hosts
    sdom = running(src, shared, cmdline=DIRTY)
    before = ticks(shared)
    p = start_migrate(src, dst, "m1", "--live", "--timeout", "2", "--bandwidth", "8")
    wait_for(lambda: sdom.state() == [L.VIR_DOMAIN_PAUSED, L.VIR_DOMAIN_PAUSED_MIGRATION] or
             p.poll() is not None, "the source paused for the migration", timeout=120)
    out, err = p.communicate(timeout=180)
    assert p.returncode == 0, err + src.d.output() + dst.d.output()
    done = sdom.jobStats(L.VIR_DOMAIN_JOB_STATS_COMPLETED)
    assert done["type"] == L.VIR_DOMAIN_JOB_COMPLETED and done["memory_iteration"] < 20, done
    assert src.events("m1", 2) == [(L.VIR_DOMAIN_EVENT_SUSPENDED, L.VIR_DOMAIN_EVENT_SUSPENDED_MIGRATED),
                                   (L.VIR_DOMAIN_EVENT_STOPPED, L.VIR_DOMAIN_EVENT_STOPPED_MIGRATED)]
    assert dst.conn.lookupByName("m1").state() == [L.VIR_DOMAIN_RUNNING,
                                                   L.VIR_DOMAIN_RUNNING_MIGRATED]
    assert_memory_right(shared, before)
    dst.conn.lookupByName("m1").destroy()


@pytest.fixture
def sandboxed(tls_dst_conf):
    """Both daemons with sandbox = 1: the source's by default, the
    destination's said in its own --config."""
    with open(tls_dst_conf, "a") as f:
        f.write("sandbox = 1\n")


def thread_status(pid, name):
    """/proc status of kvmm's thread called name, or None."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                st = dict(l.rstrip("\n").split(":\t", 1) for l in f if ":\t" in l)
        except FileNotFoundError:
            continue
        if st["Name"] == name:
            return st
    return None


@pytest.mark.parametrize("live", [True, False], ids=["live", "stopped"])
def test_a_sandboxed_kvmm_migrates(sandboxed, hosts, live):
    """Confined kvmm at both ends: --live through kvmm's pre-copy on the
    connection the daemon passes as a descriptor, its copy thread under
    its own seccomp list, a guest that outruns the link throttled (the
    vCPUs sleep confined); or stopped, to kvmm --incoming fd:12.  Either
    way the guest goes on on the destination, its memory right."""
    src, dst, shared = hosts
    sdom = running(src, shared, cmdline=DIRTY.replace("touch=16", "touch=4"))
    pid = src.d.guests()[0]
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        assert b"--sandbox" in f.read().split(b"\0")
    before = ticks(shared)
    if live:
        p = start_migrate(src, dst, "m1", "--live", "--auto-converge", "--bandwidth", "8")
        st = copying(sdom, auto_converge_throttle=30)
        assert st["memory_iteration"] >= 3, st
        # The guest runs confined during the copy.
        wait_ticks(shared, ticks(shared)[-1][0] + 3)
        assert sdom.state() == [L.VIR_DOMAIN_RUNNING, L.VIR_DOMAIN_RUNNING_BOOTED]
        th = thread_status(pid, "migration")
        assert th and th["Seccomp"] == "2" and th["Seccomp_filters"] == "2", th
        assert virsh(src.uri, "migrate-setspeed", "m1", "0").returncode == 0
        out, err = p.communicate(timeout=180)
        assert p.returncode == 0, err + src.d.output() + dst.d.output()
        assert sdom.jobStats(L.VIR_DOMAIN_JOB_STATS_COMPLETED)["type"] == \
            L.VIR_DOMAIN_JOB_COMPLETED
    else:
        r = migrate(src, dst, "m1")
        assert r.returncode == 0, r.stderr + src.d.output() + dst.d.output()
    with open(f"/proc/{dst.d.guests()[0]}/cmdline", "rb") as f:
        argv = f.read().split(b"\0")
    assert argv[argv.index(b"--incoming") + 1] == b"fd:12" and b"--sandbox" in argv, argv
    assert dst.conn.lookupByName("m1").state()[0] == L.VIR_DOMAIN_RUNNING
    assert_memory_right(shared, before)
    dst.conn.lookupByName("m1").destroy()
