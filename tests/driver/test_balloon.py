"""The balloon through libvirt: a domain with <memballoon model='virtio'>
(what virt-install, virt-manager and nova write by default) defines and
starts with kvmm's virtio-balloon, its options reach the guest's driver
(tests/guest/virtio_balloon.c), and the real virt-install --import with
its default balloon starts a guest."""
import os
import queue
import subprocess

import libvirt
import pytest

from drvtest import event_loop, virsh
from kvmmtest import GUEST
from test_forward import fwd, lvd, netns  # noqa: F401 (fixtures)
from test_lifecycle import guest_xml, serial, wait_for


def balloon_record(root, name="g1"):
    """The guest's `info balloon` record of the features it found (serial
    log ROOT/NAME-serial.log)."""
    for line in serial(root, name).splitlines():
        if "KVMMTEST info balloon dev=balloon0 stats=" in line:
            return dict(f.split("=", 1) for f in line.split()[3:])
    return None


@pytest.mark.parametrize("attrs,stats,want", [
    ("", "", {"reporting": "0", "deflate_on_oom": "0"}),
    (" autodeflate='on' freePageReporting='on'", "<stats period='1'/>",
     {"reporting": "1", "deflate_on_oom": "1"}),
])
def test_memballoon_virtio_starts_with_its_options(daemon, kvm, attrs, stats, want):
    """The balloon the guest finds offers what the definition asked for:
    autodeflate is DEFLATE_ON_OOM, freePageReporting is PAGE_REPORTING, a
    stats period has the device ask for fresh statistics again and again
    (the guest's second round)."""
    conn = libvirt.open(daemon.uri())
    dom = conn.defineXML(guest_xml(
        daemon.root, extra_cmdline=" kvmmtest.virtio=balloon",
        extra_devices=f"\n    <memballoon model='virtio'{attrs}>{stats}</memballoon>"))
    assert "<memballoon model='virtio'" in dom.XMLDesc()
    dom.create()
    wait_for(lambda: "KVMMTEST event balloon-ready dev=balloon0" in serial(daemon.root),
             "the guest's balloon driver", timeout=60)
    rec = balloon_record(daemon.root)
    assert {k: rec[k] for k in want} == want, rec
    if stats:
        wait_for(lambda: "KVMMTEST info balloon-stats dev=balloon0 seq=2 " in serial(daemon.root),
                 "a second round of statistics", timeout=60)
    dom.destroy()
    conn.close()


def test_virt_install_import_with_its_default_balloon(fwd, tmp_path, kvm):  # noqa: F811
    """The real virt-install, with the balloon instead of --memballoon
    none: the element it writes is honoured, and the guest finds the
    balloon with DEFLATE_ON_OOM.  (For a kvmm URI virt-install writes no
    <memballoon> by default, and kvmm's default is none.)"""
    d, lvd = fwd
    log = tmp_path / "vi-serial.log"
    r = subprocess.run(
        ["virt-install", "--connect", d.uri(), "--name", "vib", "--memory", "128", "--vcpus", "1",
         "--import", "--disk", "none", "--memballoon", "model=virtio,autodeflate=on",
         "--boot", f"kernel={GUEST},cmdline=kvmmtest.action=wait kvmmtest.virtio=balloon",
         "--osinfo", "detect=on,require=off", "--network", "none", "--graphics", "none",
         "--serial", f"file,path={log}", "--console", "none", "--noautoconsole"],
        capture_output=True, text=True, timeout=120, env=dict(os.environ, HOME=str(tmp_path)))
    assert r.returncode == 0, r.stdout + r.stderr + d.output()
    conn = libvirt.open(d.uri())
    dom = conn.lookupByName("vib")
    assert dom.isActive()
    assert "<memballoon model='virtio'" in dom.XMLDesc()
    wait_for(lambda: log.exists() and "KVMMTEST event balloon-ready dev=balloon0" in log.read_text(),
             "the guest's balloon driver", timeout=60)
    rec = balloon_record(str(tmp_path), "vi")
    assert rec["deflate_on_oom"] == "1", rec
    dom.destroy()
    conn.close()


MiB_KIB = 1024


def proc_rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])


def balloon_xml(root, name="g1", memory_mib=256, touch_mib=128, period=""):
    stats = f"<stats period='{period}'/>" if period else ""
    return guest_xml(root, name, extra_cmdline=f" kvmmtest.virtio=balloon "
                     f"kvmmtest.balloon0.touch={touch_mib}",
                     extra_devices=f"\n    <memballoon model='virtio'>{stats}</memballoon>"
                     ).replace("<memory unit='MiB'>128</memory>",
                               f"<memory unit='MiB'>{memory_mib}</memory>")


@pytest.fixture
def ballooned(daemon, kvm):
    conn = libvirt.open(daemon.uri())
    dom = conn.defineXML(balloon_xml(daemon.root))
    dom.create()
    wait_for(lambda: "KVMMTEST event balloon-ready dev=balloon0" in serial(daemon.root),
             "the guest's balloon driver", timeout=60)
    [pid] = daemon.guests()
    yield daemon, conn, dom, pid
    if dom.isActive():
        dom.destroy()
    conn.close()


def guest_reached(root, pages):
    """The guest's record of the balloon holding PAGES 4 KiB pages."""
    want = f"why=target actual={pages} target={pages} "
    return any("KVMMTEST info balloon dev=balloon0 " in line and want in line
               for line in serial(root).splitlines())


def test_setmem_live_shrinks_and_grows_the_guest(ballooned):
    """virsh setmem --live: the guest inflates its balloon, kvmm gives the
    pages back to the host (its RSS drops), dommemstat and dominfo report
    the new size; setmem back to the maximum deflates it."""
    d, conn, dom, pid = ballooned
    wait_for(lambda: "KVMMTEST info balloon-touch dev=balloon0 mib=128" in serial(d.root),
             "the guest touching its memory")
    before = proc_rss_kib(pid)
    r = virsh(d.uri(), "setmem", "g1", "160M", "--live")
    assert r.returncode == 0, r.stderr
    wait_for(lambda: guest_reached(d.root, 96 * 256), "the balloon inflated by 96 MiB", timeout=60)
    wait_for(lambda: dom.memoryStats()["actual"] == 160 * MiB_KIB, "dommemstat's actual")
    assert before - proc_rss_kib(pid) > 64 * MiB_KIB, (before, proc_rss_kib(pid))
    assert dom.info()[1:3] == [256 * MiB_KIB, 160 * MiB_KIB]
    r = virsh(d.uri(), "dommemstat", "g1")
    assert r.returncode == 0 and "actual 163840" in r.stdout and "rss " in r.stdout, r.stdout
    [(_, st)] = conn.domainListGetStats([dom], libvirt.VIR_DOMAIN_STATS_BALLOON)
    assert st["balloon.current"] == 160 * MiB_KIB and st["balloon.maximum"] == 256 * MiB_KIB, st
    # the guest's first round of statistics, under libvirt's names
    assert st["balloon.last-update"] > 0 and 0 < st["balloon.unused"] < 256 * MiB_KIB, st
    assert "balloon.rss" in st
    r = virsh(d.uri(), "domstats", "--balloon", "g1")
    assert r.returncode == 0 and "balloon.current=163840" in r.stdout, r.stdout
    # the persistent definition is not the live one's
    assert "<currentMemory unit='KiB'>262144</currentMemory>" in dom.XMLDesc(
        libvirt.VIR_DOMAIN_XML_INACTIVE)
    dom.setMemoryFlags(256 * MiB_KIB, libvirt.VIR_DOMAIN_AFFECT_LIVE)
    wait_for(lambda: guest_reached(d.root, 0), "the balloon deflated", timeout=60)
    wait_for(lambda: dom.memoryStats()["actual"] == 256 * MiB_KIB, "dommemstat's actual")


def dominfo_used_kib(uri, name="g1"):
    r = virsh(uri, "dominfo", name)
    assert r.returncode == 0, r.stderr
    [used] = [line.split(":", 1)[1].split() for line in r.stdout.splitlines()
              if line.startswith("Used memory:")]
    assert used[1] == "KiB", r.stdout
    return int(used[0])


def test_dominfo_used_memory_is_the_balloons_actual(ballooned):
    """virsh dominfo's "Used memory" of a ballooned guest is what the guest
    keeps, as libvirt's qemu driver reports: after setmem it reaches the
    target once the guest has inflated its balloon, and back."""
    d, conn, dom, pid = ballooned
    assert dominfo_used_kib(d.uri()) == 256 * MiB_KIB
    r = virsh(d.uri(), "setmem", "g1", "160M", "--live")
    assert r.returncode == 0, r.stderr
    wait_for(lambda: guest_reached(d.root, 96 * 256), "the balloon inflated by 96 MiB", timeout=60)
    wait_for(lambda: dominfo_used_kib(d.uri()) == 160 * MiB_KIB, "dominfo's used memory at 160 MiB")
    dom.setMemoryFlags(256 * MiB_KIB, libvirt.VIR_DOMAIN_AFFECT_LIVE)
    wait_for(lambda: dominfo_used_kib(d.uri()) == 256 * MiB_KIB, "dominfo's used memory at 256 MiB",
             timeout=60)


def test_dominfo_used_memory_stays_while_the_guest_ignores_the_balloon(daemon, kvm):
    """A guest that never drives its balloon keeps all of its memory:
    setmem sets the target, and dominfo goes on showing the balloon's
    actual (the full size), not the target; without a balloon dominfo
    shows the definition's current memory."""
    conn = libvirt.open(daemon.uri())
    xml = balloon_xml(daemon.root).replace(" kvmmtest.virtio=balloon", "")
    dom = conn.defineXML(xml)
    dom.create()
    wait_for(lambda: "KVMMTEST done" in serial(daemon.root), "the guest's tests", timeout=60)
    r = virsh(daemon.uri(), "setmem", "g1", "160M", "--live")
    assert r.returncode == 0, r.stderr
    assert dom.memoryStats()["actual"] == 256 * MiB_KIB
    assert dominfo_used_kib(daemon.uri()) == 256 * MiB_KIB
    assert "<currentMemory unit='KiB'>163840</currentMemory>" in dom.XMLDesc()
    dom.destroy()
    plain = conn.defineXML(guest_xml(daemon.root, "g2").replace(
        "<memory unit='MiB'>128</memory>",
        "<memory unit='MiB'>128</memory><currentMemory unit='MiB'>96</currentMemory>"))
    plain.create()
    assert dominfo_used_kib(daemon.uri(), "g2") == 96 * MiB_KIB
    plain.destroy()
    conn.close()


def test_setmem_config_is_the_next_boot(ballooned):
    """--config changes <currentMemory> of the definition only; setmaxmem
    is for the next boot, refused live as libvirt's qemu driver does."""
    d, conn, dom, pid = ballooned
    r = virsh(d.uri(), "setmem", "g1", "200M", "--config")
    assert r.returncode == 0, r.stderr
    assert "<currentMemory unit='KiB'>204800</currentMemory>" in dom.XMLDesc(
        libvirt.VIR_DOMAIN_XML_INACTIVE)
    assert dom.info()[2] == 256 * MiB_KIB
    r = virsh(d.uri(), "setmaxmem", "g1", "192M", "--live")
    assert r.returncode != 0 and "cannot resize the maximum memory on an active domain" in r.stderr
    r = virsh(d.uri(), "setmaxmem", "g1", "192M", "--config")
    assert r.returncode == 0, r.stderr
    xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    assert "<memory unit='KiB'>196608</memory>" in xml
    assert "<currentMemory unit='KiB'>196608</currentMemory>" in xml


def test_setmem_refusals(daemon, kvm):
    """libvirt's errors: above the maximum, --live on an inactive domain,
    a running domain without a balloon, below kvmm's floor."""
    conn = libvirt.open(daemon.uri())
    dom = conn.defineXML(balloon_xml(daemon.root))
    with pytest.raises(libvirt.libvirtError) as e:
        dom.setMemoryFlags(128 * MiB_KIB, libvirt.VIR_DOMAIN_AFFECT_LIVE)
    assert e.value.get_error_code() == libvirt.VIR_ERR_OPERATION_INVALID
    assert "domain is not running" in str(e.value)
    with pytest.raises(libvirt.libvirtError) as e:
        dom.setMemoryFlags(512 * MiB_KIB, libvirt.VIR_DOMAIN_AFFECT_CONFIG)
    assert e.value.get_error_code() == libvirt.VIR_ERR_INVALID_ARG
    assert "cannot set memory higher than max memory" in str(e.value)
    with pytest.raises(libvirt.libvirtError) as e:
        dom.setMemoryFlags(8 * MiB_KIB, libvirt.VIR_DOMAIN_AFFECT_CONFIG)
    assert e.value.get_error_code() == libvirt.VIR_ERR_INVALID_ARG
    plain = conn.defineXML(guest_xml(daemon.root, "g2"))
    plain.create()
    with pytest.raises(libvirt.libvirtError) as e:
        plain.setMemory(64 * MiB_KIB)
    assert e.value.get_error_code() == libvirt.VIR_ERR_OPERATION_INVALID
    assert "without the balloon device" in str(e.value)
    plain.destroy()
    conn.close()


def test_dommemstat_period_gives_fresh_statistics(ballooned):
    """dommemstat --period --live has kvmm ask the guest for statistics
    every period: fresh rounds arrive and dommemstat shows the guest's
    figures; --config is the definition's <stats period>."""
    d, conn, dom, pid = ballooned
    r = virsh(d.uri(), "dommemstat", "g1", "--period", "1", "--live")
    assert r.returncode == 0, r.stderr
    wait_for(lambda: "KVMMTEST info balloon-stats dev=balloon0 seq=3 " in serial(d.root),
             "rounds of statistics", timeout=60)
    stats = wait_for(lambda: (lambda s: s if "last_update" in s else None)(dom.memoryStats()),
                     "the guest's statistics in dommemstat")
    assert 0 < stats["unused"] < stats["available"] <= 256 * MiB_KIB, stats
    assert stats["minor_fault"] >= 1, stats
    assert "<stats period='1'/>" in dom.XMLDesc()
    assert "<stats period=" not in dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    dom.setMemoryStatsPeriod(7, libvirt.VIR_DOMAIN_AFFECT_CONFIG)
    assert "<stats period='7'/>" in dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    with pytest.raises(libvirt.libvirtError) as e:
        dom.setMemoryStatsPeriod(-1, 0)
    assert e.value.get_error_code() == libvirt.VIR_ERR_INVALID_ARG


def test_balloon_change_event(ballooned):
    """setmem --live: the balloon-change event (ID 13) arrives as the
    guest's actual moves, ending at the new size, on python3-libvirt's
    callback."""
    d, conn, dom, pid = ballooned
    event_loop()
    econn = libvirt.open(d.uri())
    q = queue.Queue()
    cid = econn.domainEventRegisterAny(
        None, libvirt.VIR_DOMAIN_EVENT_ID_BALLOON_CHANGE,
        lambda c, dm, actual, opaque: q.put((dm.name(), actual)), None)
    try:
        dom.setMemoryFlags(192 * MiB_KIB, libvirt.VIR_DOMAIN_AFFECT_LIVE)
        seen = []
        while not seen or seen[-1] != ("g1", 192 * MiB_KIB):
            try:
                seen.append(q.get(timeout=60))
            except queue.Empty:
                raise AssertionError(f"no balloon-change to 192 MiB: {seen}") from None
        assert all(n == "g1" and 192 * MiB_KIB <= a <= 256 * MiB_KIB for n, a in seen), seen
    finally:
        econn.domainEventDeregisterAny(cid)
        econn.close()


def test_a_restarted_daemon_keeps_the_figures(start_daemon, kvm):
    """After setmem --live and dommemstat --period --live, a daemon that
    was killed and started again adopts the guest with the live target
    and period (the status file), and kvmm's figures are read again."""
    from test_restart import crash_daemon
    d1 = start_daemon()
    conn = libvirt.open(d1.uri())
    dom = conn.defineXML(balloon_xml(d1.root))
    dom.create()
    wait_for(lambda: "KVMMTEST event balloon-ready dev=balloon0" in serial(d1.root),
             "the guest's balloon driver", timeout=60)
    dom.setMemoryFlags(200 * MiB_KIB, libvirt.VIR_DOMAIN_AFFECT_LIVE)
    dom.setMemoryStatsPeriod(3, libvirt.VIR_DOMAIN_AFFECT_LIVE)
    wait_for(lambda: guest_reached(d1.root, 56 * 256), "the balloon inflated", timeout=60)
    conn.close()
    crash_daemon(d1)
    d2 = start_daemon(root=d1.root)
    conn = libvirt.open(d2.uri())
    dom = conn.lookupByName("g1")
    assert dom.info()[1:3] == [256 * MiB_KIB, 200 * MiB_KIB]
    assert dom.memoryStats()["actual"] == 200 * MiB_KIB
    assert "<stats period='3'/>" in dom.XMLDesc()
    assert "<currentMemory unit='KiB'>262144</currentMemory>" in dom.XMLDesc(
        libvirt.VIR_DOMAIN_XML_INACTIVE)
    dom.destroy()
    conn.close()


def test_current_memory_below_memory_starts_ballooned(daemon, kvm):
    """<currentMemory> below <memory>: the balloon asks for the rest as
    the guest starts, and the guest inflates to it."""
    conn = libvirt.open(daemon.uri())
    xml = balloon_xml(daemon.root).replace(
        "<memory unit='MiB'>256</memory>",
        "<memory unit='MiB'>256</memory>\n  <currentMemory unit='MiB'>192</currentMemory>")
    dom = conn.defineXML(xml)
    dom.create()
    wait_for(lambda: guest_reached(daemon.root, 64 * 256), "the balloon inflated by 64 MiB",
             timeout=60)
    wait_for(lambda: dom.memoryStats()["actual"] == 192 * MiB_KIB, "dommemstat's actual")
    assert dom.info()[1:3] == [256 * MiB_KIB, 192 * MiB_KIB]
    dom.destroy()
    conn.close()


def guest_ram_flags(pid, size_kib):
    """The VmFlags of kvmm's mapping of guest RAM (the one of SIZE_KIB)."""
    size = None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            if line.startswith("Size:"):
                size = int(line.split()[1])
            elif line.startswith("VmFlags:") and size == size_kib:
                return line.split()[1:]
    raise AssertionError("no mapping of the guest's RAM")


@pytest.mark.parametrize("backing,merged", [("", True),
                                            ("<memoryBacking><nosharepages/></memoryBacking>",
                                             False)])
def test_guest_ram_is_offered_to_ksm_unless_nosharepages(daemon, kvm, backing, merged):
    """KSM: kvmm marks the guest's RAM mergeable (MADV_MERGEABLE, `mg` in
    smaps) unless <memoryBacking><nosharepages/>."""
    conn = libvirt.open(daemon.uri())
    xml = guest_xml(daemon.root).replace(
        "<memory unit='MiB'>128</memory>",
        f"<memory unit='MiB'>200</memory>{backing}")
    dom = conn.defineXML(xml)
    dom.create()
    [pid] = daemon.guests()
    assert ("mg" in guest_ram_flags(pid, 200 * MiB_KIB)) == merged
    dom.destroy()
    conn.close()


def test_locked_memory_is_resident_and_locked(daemon, kvm):
    """<memoryBacking><locked/>: kvmm locks the guest's RAM (VmLck covers
    all of it) from the start."""
    conn = libvirt.open(daemon.uri())
    dom = conn.defineXML(guest_xml(daemon.root).replace(
        "<memory unit='MiB'>128</memory>",
        "<memory unit='MiB'>128</memory><memoryBacking><locked/></memoryBacking>"))
    dom.create()
    [pid] = daemon.guests()
    with open(f"/proc/{pid}/status") as f:
        lck = [int(line.split()[1]) for line in f if line.startswith("VmLck:")][0]
    assert lck >= 128 * MiB_KIB, lck
    assert proc_rss_kib(pid) >= 128 * MiB_KIB
    dom.destroy()
    conn.close()
