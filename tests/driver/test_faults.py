"""virtkvmmd under faults: the daemon killed (-9) in the middle of starts,
kvmm processes that stop answering (SIGSTOP), hostile read-only clients,
FIFOs where files belong, running out of file descriptors, oversized
packets.  After each, every kvmm belongs to exactly one domain reported
running, nothing of a run that is not running is left (taps, files), and
root's calls are still answered.

Figures (time to the first answer after a restart, root's worst latency
under attack) are printed as "FIGURE ..." lines (pytest -s shows them)."""
import glob
import os
import random
import re
import resource
import signal
import struct
import subprocess
import tempfile
import threading
import time

import libvirt
import pytest

from drvtest import (OK, PROC_AUTH_LIST, PROC_GET_TYPE, Raw, assert_healthy, call_packet,
                     virsh)
from kvmmtest import KVMM
from test_interfaces import netns, nic, taps  # noqa: F401  (netns: a fixture)
from test_lifecycle import assert_nothing_left, guest_xml, serial, state_dir, wait_for

L = libvirt
# The expected errors are checked, not printed.
libvirt.registerErrorHandler(lambda ctx, err: None, None)


def crash_daemon(d):
    os.kill(d.proc.pid, signal.SIGKILL)
    d.proc.wait()


def figure(name, value, unit):
    print(f"FIGURE {name}: {value:.3f} {unit}")


def in_ns(ns):
    return ["ip", "netns", "exec", ns]


def status_text(d, uuid):
    try:
        with open(os.path.join(state_dir(d), uuid + ".xml")) as f:
            return f.read()
    except FileNotFoundError:
        return None


def problems(d, conn, ns=None):
    """What breaks the daemon's promise after a crash: kvmm processes that
    no running domain owns or that two own, running domains without their
    kvmm, files and taps of runs that are not running."""
    found = []
    running = {}
    for dom in conn.listAllDomains(0):
        if dom.isActive():
            text = status_text(d, dom.UUIDString())
            if text is None:
                found.append(f"{dom.name()} runs without a status file")
                continue
            running[dom.UUIDString()] = (dom.name(), int(re.search(r" pid='(\d+)'", text).group(1)),
                                         re.findall(r"<tap nic='\d+' dev='([^']+)'", text))
    pids = sorted(d.guests())
    owned = sorted(p for _, p, _ in running.values())
    if pids != owned:
        found.append(f"kvmm processes {pids}, owned by running domains {owned} ({running})")
    left = os.listdir(state_dir(d)) if os.path.isdir(state_dir(d)) else []
    for f in left:
        if f != "autostarted" and f[:36] not in running:
            found.append(f"file {f} of no running domain")
    if ns is not None:
        want = sorted(t for _, _, ts in running.values() for t in ts)
        if taps(ns) != want:
            found.append(f"taps {taps(ns)}, running domains own {want}")
    return found


GATE = """#!/bin/sh
# kvmm, once the test says go: holds a start where the daemon waits for it
touch "{dir}/held.$$"
while [ ! -e "{dir}/go" ]; do sleep 0.02; done
exec {kvmm} "$@"
"""


def gated_emulator(root):
    path = os.path.join(root, "gate-kvmm")
    with open(path, "w") as f:
        f.write(GATE.format(dir=root, kvmm=KVMM))
    os.chmod(path, 0o755)
    return path


def with_emulator(xml, emulator):
    return xml.replace("<devices>", f"<devices>\n    <emulator>{emulator}</emulator>", 1)


# --- 1. kill -9 during start ----------------------------------------------

def test_kill_during_starts_leaves_no_guest_unmanaged_or_doubled(start_daemon, netns, kvm):
    """Six starts wait for kvmm (an emulator that holds until told), the
    daemon is killed, kvmm then runs: the next daemon must know each of
    them -- kill it, remove its tap and files -- and a start afterwards
    runs exactly one kvmm per domain."""
    ns = netns
    d = start_daemon(prefix=in_ns(ns))
    emu = gated_emulator(d.root)
    conn = libvirt.open(d.uri())
    names = [f"s{i}" for i in range(6)]
    for n in names:
        conn.defineXML(with_emulator(guest_xml(d.root, n, extra_devices=nic()), emu))
    conn.close()
    starts = [subprocess.Popen(["virsh", "-c", d.uri(), "start", n], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE) for n in names]
    wait_for(lambda: len(glob.glob(os.path.join(d.root, "held.*"))) == len(names),
             "every start to reach kvmm")
    crash_daemon(d)
    for p in starts:
        p.communicate(timeout=60)
        assert p.returncode != 0
    open(os.path.join(d.root, "go"), "w").close()      # the held kvmm processes run on
    wait_for(lambda: len(d.guests()) == len(names), "the held starts to exec kvmm")

    d2 = start_daemon(root=d.root, prefix=in_ns(ns))
    conn = libvirt.open(d2.uri())
    assert problems(d2, conn, ns) == []
    for n in names:
        assert conn.lookupByName(n).state()[0] == L.VIR_DOMAIN_SHUTOFF
    assert "was starting when the daemon stopped" in d2.output()
    # and they start again, once each
    for n in names:
        conn.lookupByName(n).create()
    assert len(d2.guests()) == len(names)
    assert problems(d2, conn, ns) == []
    for n in names:
        conn.lookupByName(n).destroy()
    assert_nothing_left(d2)
    assert taps(ns) == []
    conn.close()


def test_stray_kvmm_and_stale_files_are_cleaned_up(start_daemon, kvm):
    """What a daemon older than the start record could leave: a kvmm of
    this instance with no status file, its config and socket, a
    half-written temporary file.  The next daemon kills and removes them."""
    d = start_daemon()
    conn = libvirt.open(d.uri())
    dom = conn.defineXML(guest_xml(d.root, "stray"))
    dom.create()
    uuid = dom.UUIDString()
    conn.close()
    crash_daemon(d)
    [pid] = d.guests()
    os.unlink(os.path.join(state_dir(d), uuid + ".xml"))
    with open(os.path.join(state_dir(d), uuid + ".json.AB12CD"), "w") as f:
        f.write("{")
    d2 = start_daemon(root=d.root)
    assert f"killing kvmm (pid {pid})" in d2.output()
    assert d2.guests() == []
    assert_nothing_left(d2)
    assert virsh(d2.uri(), "domstate", "stray").stdout.strip() == "shut off"


def test_tap_made_before_the_record_named_it_is_removed(start_daemon, netns, kvm):
    """A start killed after making its tap but before its record named it:
    the record (starting, no tap) is all the next daemon has; it finds the
    tap by the mark the daemon gives its taps and removes it."""
    ns = netns
    d = start_daemon(prefix=in_ns(ns))
    conn = libvirt.open(d.uri())
    dom = conn.defineXML(guest_xml(d.root, "u", extra_devices=nic(mac="52:54:00:12:34:56")))
    dom.create()
    uuid = dom.UUIDString()
    conn.close()
    crash_daemon(d)
    [pid] = d.guests()
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not d.guests(), "kvmm to die")
    path = os.path.join(state_dir(d), uuid + ".xml")
    with open(path) as f:
        text = f.read()
    # what the record said before the taps were made
    text = re.sub(r"<domstatus state='\w+' reason='\d+'", "<domstatus state='paused' reason='11'", text)
    text = re.sub(r"\s*<tap nic='0'[^>]*/>", "", text)
    with open(path, "w") as f:
        f.write(text)
    assert taps(ns) == ["vnet0"]
    d2 = start_daemon(root=d.root, prefix=in_ns(ns))
    assert "removing tap 'vnet0': made by this daemon for a run that is not running" in d2.output()
    assert taps(ns) == []
    assert_nothing_left(d2)
    assert virsh(d2.uri(), "domstate", "u").stdout.strip() == "shut off"


def foreign_tap(ns, name, mac):
    """A tap as libvirtd makes them -- vnetN, persistent, the host side of
    a guest's MAC -- which no virtkvmmd may remove."""
    subprocess.run(in_ns(ns) + ["ip", "tuntap", "add", "dev", name, "mode", "tap"], check=True)
    subprocess.run(in_ns(ns) + ["ip", "link", "set", name, "address", mac], check=True)


@pytest.mark.parametrize("point", ["tap-persistent", "run-unrecorded"])
def test_tap_no_record_names_is_removed(start_daemon, netns, kvm, point):
    """The daemon killed (-9, by itself at a named point) where a tap of
    its own exists that no record names: just after a start made the tap
    persistent, or, as a domain stops, between removing its record and its
    taps.  The next daemon removes that tap, found by its mark -- and not
    a tap of another manager with the same form of name and the same MAC,
    which no one holds either."""
    ns = netns
    d = start_daemon(prefix=in_ns(ns), env=dict(os.environ, VIRTKVMMD_TEST_CRASH_AT=point))
    foreign_tap(ns, "vnet9", "fe:54:00:12:34:56")
    conn = libvirt.open(d.uri())
    dom = conn.defineXML(guest_xml(d.root, "w", extra_devices=nic(mac="52:54:00:12:34:56")))
    uuid = dom.UUIDString()
    if point == "tap-persistent":
        with pytest.raises(libvirt.libvirtError):
            dom.create()
    else:
        dom.create()
        assert taps(ns) == ["vnet0", "vnet9"]
        with pytest.raises(libvirt.libvirtError):
            dom.destroy()
    assert d.proc.wait(60) == -signal.SIGKILL, d.output()
    # in the window: our tap is there, and no record names it
    assert taps(ns) == ["vnet0", "vnet9"]
    text = status_text(d, uuid)
    assert text is None or "<tap " not in text, text
    wait_for(lambda: not d.guests(), "kvmm, or the child held before it, to go")

    d2 = start_daemon(root=d.root, prefix=in_ns(ns))
    out = d2.output()
    assert "removing tap 'vnet0': made by this daemon for a run that is not running" in out, out
    assert "vnet9" not in out, out
    assert taps(ns) == ["vnet9"]
    assert_nothing_left(d2)
    conn = libvirt.open(d2.uri())
    dom = conn.lookupByName("w")
    assert dom.state()[0] == L.VIR_DOMAIN_SHUTOFF
    # and it runs again, on a tap of its own
    dom.create()
    assert taps(ns) == ["vnet0", "vnet9"]
    dom.destroy()
    assert taps(ns) == ["vnet9"]
    assert_nothing_left(d2)
    conn.close()


def test_restart_leaves_other_instances_taps(start_daemon, netns, kvm):
    """Two daemons (two --root instances) in one network namespace: a
    restart of one sweeps only its own taps, never the other's."""
    ns = netns
    a = start_daemon(prefix=in_ns(ns))
    b = start_daemon(prefix=in_ns(ns))
    ca, cb = libvirt.open(a.uri()), libvirt.open(b.uri())
    ca.defineXML(guest_xml(a.root, "a", extra_devices=nic())).create()
    cb.defineXML(guest_xml(b.root, "b", extra_devices=nic())).create()
    assert len(taps(ns)) == 2
    # b's guest stops while its daemon is down: its record and tap remain
    ca.close()
    cb.close()
    crash_daemon(b)
    crash_daemon(a)
    for pid in b.guests():
        os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not b.guests(), "b's kvmm to die")
    a2 = start_daemon(root=a.root, prefix=in_ns(ns))
    assert "removing tap" not in a2.output(), a2.output()
    assert len(taps(ns)) == 2
    b2 = start_daemon(root=b.root, prefix=in_ns(ns))
    assert "removing tap" not in b2.output(), b2.output()   # named by its record: removed with it
    ca = libvirt.open(a2.uri())
    assert [x.name() for x in ca.listAllDomains(L.VIR_CONNECT_LIST_DOMAINS_ACTIVE)] == ["a"]
    [tap] = taps(ns)
    assert f"<target dev='{tap}'/>" in ca.lookupByName("a").XMLDesc(0)
    ca.lookupByName("a").destroy()
    assert taps(ns) == []
    ca.close()


# --- 2. stopped kvmm at daemon start -----------------------------------------

def test_stopped_kvmm_at_restart_stays_the_domains(start_daemon, kvm):
    """Three kvmm stopped (SIGSTOP), the daemon killed and restarted: it
    answers at once, keeps all three running (never declared crashed,
    never started twice), and controls them once they continue."""
    d1 = start_daemon()
    conn = libvirt.open(d1.uri())
    names = ["t0", "t1", "t2"]
    for n in names:
        conn.defineXML(guest_xml(d1.root, n)).create()
    for n in names:
        wait_for(lambda: "KVMMTEST tick" in serial(d1.root, n), f"{n} running")
    conn.close()
    pids = sorted(d1.guests())
    assert len(pids) == 3
    for p in pids:
        os.kill(p, signal.SIGSTOP)
    try:
        crash_daemon(d1)
        t0 = time.monotonic()
        d2 = start_daemon(root=d1.root, wait=False)
        d2.wait_ready(timeout=90)
        r = virsh(d2.uri(), "list")
        took = time.monotonic() - t0
        figure("first answer after a restart with 3 stopped kvmm", took, "s")
        assert r.returncode == 0, r.stderr
        for n in names:
            assert re.search(rf"\s{n}\s+running", r.stdout), r.stdout
        assert took < 5, took                          # goal: under 1 s (figure above)
        assert sorted(d2.guests()) == pids
        r = virsh(d2.uri(), "start", "t0")
        assert r.returncode != 0 and "Domain is already active" in r.stderr, r.stderr
        assert sorted(d2.guests()) == pids
        assert "is gone" not in d2.output()
    finally:
        for p in pids:
            os.kill(p, signal.SIGCONT)
    conn = libvirt.open(d2.uri())
    for n in names:
        dom = conn.lookupByName(n)
        dom.suspend()
        assert dom.state() == [L.VIR_DOMAIN_PAUSED, L.VIR_DOMAIN_PAUSED_USER]
        dom.destroy()
    assert_nothing_left(d2)
    conn.close()


# --- 3. a stopped kvmm and 40 hostile read-only clients -------------------------

def conf_daemon(start_daemon, text, **kw):
    """A daemon whose virtkvmmd.conf (in its root) says TEXT."""
    root = tempfile.mkdtemp(prefix="kvd-")
    os.makedirs(os.path.join(root, "etc", "libvirt"))
    with open(os.path.join(root, "etc", "libvirt", "virtkvmmd.conf"), "w") as f:
        f.write(text)
    return start_daemon(root=root, **kw)


def timed(fn, limit):
    """(seconds FN took, its result); fails if it has not returned within
    LIMIT seconds (a call the daemon never answers would hang the test)."""
    out = {}

    def run():
        t = time.monotonic()
        try:
            out["v"] = fn()
        except Exception as e:      # re-raised in the caller's thread
            out["e"] = e
        out["t"] = time.monotonic() - t
    th = threading.Thread(target=run, daemon=True)
    th.start()
    th.join(limit)
    assert "t" in out, f"no answer within {limit} s"
    if "e" in out:
        raise out["e"]
    return out["t"], out["v"]


def test_stopped_kvmm_and_hostile_readers_do_not_stall_root(start_daemon, kvm):
    d = conf_daemon(start_daemon, "monitor_timeout = 2\n")
    conn = libvirt.open(d.uri())
    img = os.path.join(d.root, "d.img")
    with open(img, "wb") as f:
        f.truncate(1 << 20)
    dom = conn.defineXML(guest_xml(d.root, extra_devices=f"""
    <disk type='file' device='disk'><source file='{img}'/><target dev='vda' bus='virtio'/></disk>"""))
    dom.create()
    wait_for(lambda: "KVMMTEST tick" in serial(d.root), "the guest running")
    [pid] = d.guests()
    os.kill(pid, signal.SIGSTOP)
    stop = threading.Event()
    failures = []

    def hammer():
        c = libvirt.openReadOnly(d.uri(ro=True))
        g = c.lookupByName("g1")
        while not stop.is_set():
            try:
                g.blockStats("vda")
            except libvirt.libvirtError:
                failures.append(1)
        c.close()
    threads = [threading.Thread(target=hammer, daemon=True) for _ in range(40)]
    try:
        for t in threads:
            t.start()
        # the attack is in force once calls time out on the stopped kvmm
        wait_for(lambda: len(failures) >= 40, "blockstat calls to time out", timeout=120)
        worst = 0
        for _ in range(20):
            t, doms = timed(lambda: conn.listAllDomains(0), 30)
            assert [x.name() for x in doms] == ["g1"]
            worst = max(worst, t)
        t, r = timed(lambda: virsh(d.uri(), "list"), 60)
        assert r.returncode == 0 and "g1" in r.stdout, r.stderr
        figure("worst root listAllDomains latency, 40 hostile readers", worst, "s")
        figure("root virsh list under attack (process start included)", t, "s")
        assert worst < 1.0, worst                      # goal 0.1 s (figure above)
        assert t < 5, t                                # every call virsh makes is a priority one
        # destroy is a priority call too: SIGTERM, SIGKILL after 5 s
        t, _ = timed(dom.destroy, 30)
        figure("destroy of the stopped kvmm under attack", t, "s")
        assert dom.state()[0] == L.VIR_DOMAIN_SHUTOFF
    finally:
        stop.set()
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 30
    for t in threads:
        t.join(max(0, deadline - time.monotonic()))
    conn.close()
    # SIGTERM is obeyed promptly
    t0 = time.monotonic()
    assert d.stop(timeout=20) == 0, d.output()
    assert time.monotonic() - t0 < 15


# --- 4. FIFOs and other non-files as sources -----------------------------------

def test_fifo_disk_does_not_block_readers(start_daemon):
    d = start_daemon()
    fifo = os.path.join(d.root, "fifo")
    os.mkfifo(fifo)
    conn = libvirt.open(d.uri())
    conn.defineXML(guest_xml(d.root, "f", extra_devices=f"""
    <disk type='file' device='disk'><source file='{fifo}'/><target dev='vda' bus='virtio'/></disk>"""))
    errors = []

    def info():
        c = libvirt.openReadOnly(d.uri(ro=True))
        try:
            c.lookupByName("f").blockInfo("vda")
        except libvirt.libvirtError as e:
            errors.append(str(e))
        c.close()
    threads = [threading.Thread(target=info, daemon=True) for _ in range(22)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    for t in threads:
        t.join(max(0, deadline - time.monotonic()))
    assert len(errors) == 22, f"{len(errors)} of 22 read-only domblkinfo calls answered in 30 s"
    assert "is not a regular file or a block device" in errors[0], errors[0]
    t, doms = timed(lambda: conn.listAllDomains(0), 10)
    assert [x.name() for x in doms] == ["f"]
    conn.close()


@pytest.mark.parametrize("what", ["kernel", "disk", "serial", "initrd", "proc"])
def test_non_file_sources_refused_at_start(start_daemon, what):
    d = start_daemon()
    fifo = os.path.join(d.root, "fifo")
    os.mkfifo(fifo)
    kw = {}
    if what == "kernel":
        kw["kernel"] = fifo
    elif what == "disk":
        kw["extra_devices"] = f"""
    <disk type='file' device='disk'><source file='{fifo}'/><target dev='vda' bus='virtio'/></disk>"""
    xml = guest_xml(d.root, "x", **kw)
    if what == "serial":
        xml = xml.replace(f"{d.root}/x-serial.log", fifo)
    elif what == "initrd":
        xml = xml.replace("</kernel>", f"</kernel><initrd>{d.root}</initrd>")
    elif what == "proc":
        xml = xml.replace("</kernel>", "</kernel><initrd>/proc/self/environ</initrd>")
    conn = libvirt.open(d.uri())
    dom = conn.defineXML(xml)
    t0 = time.monotonic()
    with pytest.raises(libvirt.libvirtError) as e:
        timed(dom.create, 60)[1]
    assert time.monotonic() - t0 < 10
    assert e.value.get_error_code() == L.VIR_ERR_CONFIG_UNSUPPORTED, str(e.value)
    want = {"kernel": f"kernel '{fifo}' is a FIFO", "disk": f"disk source '{fifo}' is a FIFO",
            "serial": f"serial output '{fifo}' is a FIFO",
            "initrd": f"initrd '{d.root}' is a directory",
            "proc": "initrd '/proc/self/environ' is in /proc"}[what]
    assert want in str(e.value), str(e.value)
    assert d.guests() == []
    assert_nothing_left(d)
    conn.close()


# --- 5. out of file descriptors -----------------------------------------------

def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_emfile_does_not_spin(start_daemon):
    """The daemon limited to 48 descriptors (soft and hard: it cannot
    raise them) and 80 clients connecting: it stops accepting for a while
    instead of spinning on the readable socket, logs once, and serves
    again when clients go."""
    d = start_daemon(prefix=["prlimit", "--nofile=48:48"], verbose=False)
    clients = [Raw(d.sock) for _ in range(80)]          # the rest wait in the backlog
    wait_for(lambda: "cannot accept" in d.output(), "EMFILE")
    # A measurement window, not a synchronisation: what the daemon burns
    # while nothing changes.
    cpu0, t0 = cpu_seconds(d.proc.pid), time.monotonic()
    time.sleep(2)
    burnt = cpu_seconds(d.proc.pid) - cpu0
    figure("daemon CPU while out of descriptors", burnt / (time.monotonic() - t0), "s/s")
    assert burnt < 0.5, burnt
    assert d.output().count("cannot accept") <= 3, d.output()[-2000:]
    for c in clients:
        c.close()
    t, r = timed(lambda: virsh(d.uri(), "list", "--all"), 60)
    assert r.returncode == 0, r.stderr
    assert_healthy(d)


def test_open_file_limit_raised_to_hard_limit(start_daemon):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, 8192)
    d = start_daemon(prefix=["prlimit", f"--nofile=64:{want}"])
    with open(f"/proc/{d.proc.pid}/limits") as f:
        line = [x for x in f if x.startswith("Max open files")][0]
    assert line.split()[3:5] == [str(want), str(want)], line


# --- 7. names too long for their files --------------------------------------------

def test_name_length_limit(daemon):
    conn = libvirt.open(daemon.uri())
    ok = "n" * 239
    conn.defineXML(guest_xml(daemon.root, ok))
    assert conn.lookupByName(ok).name() == ok
    with pytest.raises(libvirt.libvirtError) as e:
        conn.defineXML(guest_xml(daemon.root, "n" * 240))
    assert e.value.get_error_code() == L.VIR_ERR_XML_ERROR, str(e.value)
    assert "domain name is 240 bytes long; it names files, so at most 239" in str(e.value)
    defs = os.listdir(os.path.join(daemon.root, "etc", "libvirt", "kvmm"))
    assert sorted(defs) == sorted(["autostart", ok + ".xml"]), defs
    conn.close()


# --- 8. memory one client can make the daemon hold --------------------------------

def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


def test_big_packets_from_anonymous_and_read_only_clients(daemon):
    """24 read-only clients (after open) and 8 not yet open, each
    announcing a 32 MiB packet and sending 4 MiB of it: each is dropped at
    its length word; the daemon's memory does not follow."""
    d = daemon
    # The fixture waits for the main socket; the read-only one comes after.
    d.wait_ready(d.sock_ro)
    rss0 = rss_kib(d.proc.pid)
    clients = [Raw(d.sock_ro).open() for _ in range(24)] + [Raw(d.sock) for _ in range(8)]
    chunk = b"\0" * (4 << 20)
    for c in clients:
        try:
            c.send(struct.pack(">I", 32 << 20) + chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
    # sent: the daemon read it (all but a socket buffer), or dropped us
    grown = (rss_kib(d.proc.pid) - rss0) / 1024
    figure("daemon RSS growth, 32 hostile 32 MiB packets", grown, "MiB")
    assert grown < 32, grown
    for c in clients:
        assert c.closed_by_peer(timeout=10)
    assert "from a read-only client (at most 1048576)" in d.output()
    assert "from a not yet open client" in d.output()
    for c in clients:
        c.close()
    # a read-write client that opened may still send the protocol's largest
    big = Raw(d.sock, timeout=60).open()
    big.send(call_packet(PROC_GET_TYPE, 9, b"\0" * (8 << 20)))
    assert big.recv(timeout=60)[4:6] == (9, OK)
    big.close()
    assert_healthy(d)


def test_anonymous_clients_bounded(start_daemon):
    """max_anonymous_clients = 2: a third read-only client that has not
    opened waits until one of the first two goes; root's socket is not
    affected."""
    d = conf_daemon(start_daemon, "max_anonymous_clients = 2\nmax_client_requests = 2\n"
                    "prio_workers = 2\n")
    a, b = Raw(d.sock_ro), Raw(d.sock_ro)
    a.call(PROC_AUTH_LIST)
    b.call(PROC_AUTH_LIST)
    c = Raw(d.sock_ro)                                   # in the backlog
    c.send(call_packet(PROC_AUTH_LIST, 0))
    # root is served meanwhile -- and that round trip shows the daemon ran
    # its loop after c's call arrived
    assert_healthy(d)
    c.sock.setblocking(False)
    with pytest.raises(BlockingIOError):
        c.sock.recv(1)
    c.sock.setblocking(True)
    c.sock.settimeout(10)
    a.close()
    r = c.recv(timeout=30)
    assert r is not None and r[4:6] == (0, OK)
    b.close()
    c.close()


def test_limit_keys_checked(start_daemon, tmp_path):
    for text, msg in [("max_client_requests = 0\n", "max_client_requests: 0 is out of range"),
                      ("prio_workers = \"5\"\n", "prio_workers: expected a number"),
                      ("max_anonymous_clients = -1\n", "max_anonymous_clients: -1 is out of range")]:
        p = tmp_path / "v.conf"
        p.write_text(text)
        d = start_daemon(["--config", str(p)], wait=False)
        assert d.proc.wait(30) == 1
        assert msg in d.output(), d.output()


# --- the fault run ------------------------------------------------------------

def test_fault_run_kill_during_start_destroy_define(start_daemon, netns, kvm):
    """10 rounds: 8 domains started, destroyed and redefined at once, the
    daemon killed (-9) at a random point of it, then started again: no
    guest lost, doubled or leaked, every round."""
    ns = netns
    rng = random.Random(7)
    d = start_daemon(prefix=in_ns(ns))
    root = d.root
    names = [f"f{i}" for i in range(8)]
    conn = libvirt.open(d.uri())
    for n in names:
        conn.defineXML(guest_xml(root, n, extra_devices=nic()))
    conn.close()
    bad, restarts = [], []
    for rnd in range(10):
        ops = []
        for n in names:
            op = rng.choice(["start", "start", "destroy", "define"])
            if op == "define":
                path = os.path.join(root, f"{n}.xml")
                with open(path, "w") as f:
                    f.write(guest_xml(root, n, extra_devices=nic()))
                argv = ["define", path]
            else:
                argv = [op, n]
            ops.append(subprocess.Popen(["virsh", "-c", d.uri()] + argv,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        # A random point: in half the rounds the moment a new kvmm shows
        # (a start in flight, where a daemon that records runs late loses
        # them), else a random delay into the calls.
        if rnd % 2 == 0:
            before = set(d.guests())
            deadline = time.monotonic() + 10
            while not set(d.guests()) - before and time.monotonic() < deadline:
                pass
        else:
            time.sleep(rng.uniform(0, 0.6))
        crash_daemon(d)
        for p in ops:
            p.wait(60)
        t0 = time.monotonic()
        d = start_daemon(root=root, prefix=in_ns(ns))
        conn = libvirt.open(d.uri())
        conn.listAllDomains(0)
        restarts.append(time.monotonic() - t0)
        found = problems(d, conn, ns)
        if found:
            bad.append((rnd, found))
        # the next round starts from whatever survived; all must still work
        for n in names:
            dom = conn.lookupByName(n)
            if not dom.isActive() and rng.random() < 0.5:
                dom.create()
        conn.close()
    figure("fault run: slowest restart to first answer", max(restarts), "s")
    print(f"FIGURE fault run: {len(bad)} of 10 rounds with lost, doubled or leaked guests")
    assert bad == [], bad
    conn = libvirt.open(d.uri())
    for dom in conn.listAllDomains(L.VIR_CONNECT_LIST_DOMAINS_ACTIVE):
        dom.destroy()
    assert_nothing_left(d)
    assert taps(ns) == []
    conn.close()
