"""virsh save / restore through virtkvmmd with the test guest's `live`
scenario (a tick counter and its clock on COM1): the saved domain is shut
off (saved), the restored one continues -- ticks go on from where they
were, the guest's clock never goes back -- with libvirt's events; a save
that fails leaves the domain running and no image behind.  A save is the
domain's job: domjobinfo and save --verbose follow it, domjobabort
cancels it (the daemon's test hold keeps a save in the middle, so no
test races it); restore --xml, save-image-define and the Params APIs
change only what is the host's; a sandboxed guest saves through the
daemon's descriptor."""
import os
import re
import subprocess
import threading

import libvirt
import pytest

from drvtest import virsh
from kvmmtest import GUEST, live_ticks
from test_lifecycle import Events, serial, wait_for

L = libvirt


def live_xml(root, name="s1"):
    return f"""<domain type='kvm'>
  <name>{name}</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type>hvm</type><kernel>{GUEST}</kernel>
    <cmdline>kvmmtest.action=live kvmmtest.tick_ms=50</cmdline></os>
  <on_poweroff>destroy</on_poweroff>
  <devices>
    <serial type='file'><source path='{root}/{name}-serial.log'/><target port='0'/></serial>
  </devices>
</domain>
"""


def ticks(root, name="s1"):
    """(n, us) of each complete tick line: a save can cut one partway."""
    return [(t.n, t.us) for t in live_ticks(serial(root, name))]


def wait_ticks(root, n, name="s1"):
    wait_for(lambda: len(ticks(root, name)) >= n and ticks(root, name)[-1][0] >= n,
             f"tick {n} of {name}")


def assert_continued(root, before, name="s1", more=3):
    """The guest, restored, went on from tick BEFORE's count: the serial
    file (appended to) shows one sequence, its clock never going back."""
    last = before[-1][0]
    wait_for(lambda: ticks(root, name)[-1][0] >= last + more, f"ticks after {last}")
    t = ticks(root, name)
    assert [n for n, _ in t] == list(range(1, len(t) + 1)), "the tick count restarted or skipped"
    assert all(b[1] <= a[1] for b, a in zip(t, t[1:])), "the guest's clock went back"
    # Restored, not booted again: one boot line.
    assert serial(root, name).count("KVMMTEST boot") == 1


@pytest.fixture
def conn(daemon):
    c = libvirt.open(daemon.uri())
    yield c
    c.close()


def test_save_restore_with_virsh_continues_the_guest(daemon, conn, kvm, tmp_path):
    d = daemon
    ev = Events(d.uri())
    dom = conn.defineXML(live_xml(d.root))
    dom.create()
    assert ev.next()[1:] == (L.VIR_DOMAIN_EVENT_DEFINED, L.VIR_DOMAIN_EVENT_DEFINED_ADDED)
    assert ev.next()[1:] == (L.VIR_DOMAIN_EVENT_STARTED, L.VIR_DOMAIN_EVENT_STARTED_BOOTED)
    wait_ticks(d.root, 3)
    img = str(tmp_path / "s1.save")
    r = virsh(d.uri(), "save", "s1", img, timeout=120)
    assert r.returncode == 0, r.stderr
    # Shut off because saved, with libvirt's event; the image is complete.
    assert dom.state() == [L.VIR_DOMAIN_SHUTOFF, L.VIR_DOMAIN_SHUTOFF_SAVED]
    assert ev.next()[1:] == (L.VIR_DOMAIN_EVENT_STOPPED, L.VIR_DOMAIN_EVENT_STOPPED_SAVED)
    assert d.guests() == []
    assert os.path.getsize(img) > 0 and not os.path.exists(img + ".new")
    before = ticks(d.root)
    r = virsh(d.uri(), "domstate", "s1", "--reason")
    assert r.stdout.strip() == "shut off (saved)", r.stdout

    r = virsh(d.uri(), "save-image-dumpxml", img)
    assert r.returncode == 0, r.stderr
    assert "<name>s1</name>" in r.stdout and dom.UUIDString() in r.stdout

    r = virsh(d.uri(), "restore", img, timeout=120)
    assert r.returncode == 0, r.stderr
    assert ev.next()[1:] == (L.VIR_DOMAIN_EVENT_STARTED, L.VIR_DOMAIN_EVENT_STARTED_RESTORED)
    assert dom.state() == [L.VIR_DOMAIN_RUNNING, L.VIR_DOMAIN_RUNNING_RESTORED]
    assert_continued(d.root, before)
    dom.destroy()


def test_save_paused_restores_paused_and_restore_running_overrides(daemon, conn, kvm, tmp_path):
    d = daemon
    dom = conn.defineXML(live_xml(d.root))
    dom.create()
    wait_ticks(d.root, 2)
    img = str(tmp_path / "p.save")
    dom.saveFlags(img, None, L.VIR_DOMAIN_SAVE_PAUSED)
    assert dom.state() == [L.VIR_DOMAIN_SHUTOFF, L.VIR_DOMAIN_SHUTOFF_SAVED]
    conn.restore(img)
    assert dom.state()[0] == L.VIR_DOMAIN_PAUSED
    before = ticks(d.root)
    dom.resume()
    assert_continued(d.root, before)
    # --running overrides what the image says.
    dom.saveFlags(img, None, L.VIR_DOMAIN_SAVE_PAUSED)
    conn.restoreFlags(img, None, L.VIR_DOMAIN_SAVE_RUNNING)
    assert dom.state() == [L.VIR_DOMAIN_RUNNING, L.VIR_DOMAIN_RUNNING_RESTORED]
    dom.destroy()


def test_restore_of_an_undefined_domain_is_transient(daemon, conn, kvm, tmp_path):
    d = daemon
    dom = conn.createXML(live_xml(d.root, "t1"), 0)
    wait_ticks(d.root, 2, "t1")
    img = str(tmp_path / "t.save")
    dom.save(img)
    # A transient domain is gone once saved; restore brings it back, transient.
    assert "t1" not in [x.name() for x in conn.listAllDomains()]
    before = ticks(d.root, "t1")
    conn.restore(img)
    dom = conn.lookupByName("t1")
    assert dom.isActive() and not dom.isPersistent()
    assert_continued(d.root, before, "t1")
    dom.destroy()


def test_failed_save_leaves_the_domain_running(daemon, conn, kvm, tmp_path):
    d = daemon
    dom = conn.defineXML(live_xml(d.root))
    dom.create()
    wait_ticks(d.root, 2)

    def still_running():
        assert dom.state() == [L.VIR_DOMAIN_RUNNING, L.VIR_DOMAIN_RUNNING_BOOTED]
        n = ticks(d.root)[-1][0]
        wait_ticks(d.root, n + 2)

    # The daemon cannot write the image's XML (its directory is missing,
    # and root writes anywhere else): nothing is asked of kvmm.
    r = virsh(d.uri(), "save", "s1", str(tmp_path / "missing" / "x.save"), timeout=120)
    assert r.returncode != 0 and "cannot write the save image" in r.stderr, r.stderr
    still_running()
    # kvmm cannot write its stream (FILE.new, which it writes first, is a
    # directory): kvmm's SaveFailed, the guest runs on, no file is left.
    img = tmp_path / "y.save"
    (tmp_path / "y.save.new").mkdir()
    r = virsh(d.uri(), "save", "s1", str(img), timeout=120)
    assert r.returncode != 0, r.stderr
    still_running()
    assert sorted(os.listdir(str(tmp_path))) == ["y.save.new"]
    # A failed save over an existing image leaves that image whole.
    (tmp_path / "y.save.new").rmdir()
    dom.save(str(img))
    xml = (tmp_path / "y.save.xml").read_text()
    dom.create()
    wait_ticks(d.root, ticks(d.root)[-1][0] + 2)
    (tmp_path / "y.save.new").mkdir()
    assert virsh(d.uri(), "save", "s1", str(img), timeout=120).returncode != 0
    still_running()
    assert (tmp_path / "y.save.xml").read_text() == xml
    assert sorted(os.listdir(str(tmp_path))) == ["y.save", "y.save.new", "y.save.xml"]
    dom.destroy()


def test_save_restore_refusals(daemon, conn, kvm, tmp_path):
    d = daemon
    dom = conn.defineXML(live_xml(d.root))
    with pytest.raises(libvirt.libvirtError, match="domain is not running"):
        dom.save(str(tmp_path / "a.save"))
    with pytest.raises(libvirt.libvirtError, match="mutually exclusive"):
        dom.saveFlags(str(tmp_path / "a.save"), None,
                      L.VIR_DOMAIN_SAVE_PAUSED | L.VIR_DOMAIN_SAVE_RUNNING)
    with pytest.raises(libvirt.libvirtError, match="cannot read the save image"):
        conn.restore(str(tmp_path / "none.save"))
    # Not an image of ours.
    bad = tmp_path / "bad.save"
    bad.write_text("x")
    (tmp_path / "bad.save.xml").write_text("<domain/>")
    with pytest.raises(libvirt.libvirtError, match="not a save image"):
        conn.restore(str(bad))
    # Read-only connections may not save or restore.
    ro = libvirt.openReadOnly(d.uri(ro=True))
    with pytest.raises(libvirt.libvirtError):
        ro.restore(str(bad))
    ro.close()


def test_managedsave_start_restores_and_removes_the_image(daemon, conn, kvm):
    d = daemon
    ev = Events(d.uri())
    dom = conn.defineXML(live_xml(d.root))
    ev.next()
    dom.create()
    ev.next()
    wait_ticks(d.root, 3)
    r = virsh(d.uri(), "managedsave", "s1", timeout=120)
    assert r.returncode == 0, r.stderr
    assert ev.next()[1:] == (L.VIR_DOMAIN_EVENT_STOPPED, L.VIR_DOMAIN_EVENT_STOPPED_SAVED)
    img = os.path.join(d.root, "lib", "kvmm", "save", "s1.save")
    assert os.path.isfile(img)
    assert dom.hasManagedSaveImage() == 1
    assert "Managed save:   yes" in virsh(d.uri(), "dominfo", "s1").stdout
    r = virsh(d.uri(), "list", "--all", "--managed-save")
    assert re.search(r"s1\s+saved", r.stdout), r.stdout
    assert [x.name() for x in conn.listAllDomains(L.VIR_CONNECT_LIST_DOMAINS_MANAGEDSAVE)] == ["s1"]
    assert conn.listAllDomains(L.VIR_CONNECT_LIST_DOMAINS_NO_MANAGEDSAVE) == []
    # Undefine is refused while the image exists, in libvirt's words.
    r = virsh(d.uri(), "undefine", "s1")
    assert r.returncode != 0
    assert "Refusing to undefine while domain managed save image exists" in r.stderr, r.stderr
    # Nor is rename: the image is named after the domain.
    r = virsh(d.uri(), "domrename", "s1", "s9")
    assert r.returncode != 0
    assert "domain with a managed saved state can't be renamed" in r.stderr, r.stderr
    before = ticks(d.root)

    r = virsh(d.uri(), "start", "s1", timeout=120)
    assert r.returncode == 0, r.stderr
    assert ev.next()[1:] == (L.VIR_DOMAIN_EVENT_STARTED, L.VIR_DOMAIN_EVENT_STARTED_RESTORED)
    assert dom.state() == [L.VIR_DOMAIN_RUNNING, L.VIR_DOMAIN_RUNNING_RESTORED]
    assert not os.path.exists(img) and not os.path.exists(img + ".xml")
    assert dom.hasManagedSaveImage() == 0
    assert_continued(d.root, before)
    assert "Managed save:   no" in virsh(d.uri(), "dominfo", "s1").stdout

    # managedsave-remove, then start boots afresh; undefine --managed-save.
    dom.managedSave()
    assert dom.hasManagedSaveImage() == 1
    assert virsh(d.uri(), "managedsave-remove", "s1").returncode == 0
    assert dom.hasManagedSaveImage() == 0 and not os.path.exists(img)
    dom.create()
    assert dom.state() == [L.VIR_DOMAIN_RUNNING, L.VIR_DOMAIN_RUNNING_BOOTED]
    wait_for(lambda: serial(d.root, "s1").count("KVMMTEST boot") == 2, "a second boot")
    dom.managedSave()
    r = virsh(d.uri(), "undefine", "s1", "--managed-save")
    assert r.returncode == 0, r.stderr
    assert not os.path.exists(img) and not os.path.exists(img + ".xml")


def test_managedsave_start_force_boot_and_transient(daemon, conn, kvm):
    d = daemon
    dom = conn.defineXML(live_xml(d.root))
    dom.create()
    wait_ticks(d.root, 2)
    dom.managedSave(L.VIR_DOMAIN_SAVE_PAUSED)
    # start --paused of an image: restored, paused.
    dom.createWithFlags(L.VIR_DOMAIN_START_PAUSED)
    assert dom.state()[0] == L.VIR_DOMAIN_PAUSED
    dom.managedSave()
    dom.createWithFlags(L.VIR_DOMAIN_START_FORCE_BOOT)
    assert dom.state() == [L.VIR_DOMAIN_RUNNING, L.VIR_DOMAIN_RUNNING_BOOTED]
    assert dom.hasManagedSaveImage() == 0
    dom.destroy()
    t = conn.createXML(live_xml(d.root, "t2"), 0)
    with pytest.raises(libvirt.libvirtError, match="cannot do managed save for transient domain"):
        t.managedSave()
    assert t.isActive()
    t.destroy()


def test_failed_restore_leaves_the_domain_shut_off(daemon, conn, kvm, tmp_path):
    """A damaged image: kvmm refuses it before the guest runs; the error
    is kvmm's, nothing of the run is left, a managed image stays."""
    d = daemon
    dom = conn.defineXML(live_xml(d.root))
    dom.create()
    wait_ticks(d.root, 2)
    # Saved while paused: restored paused.
    dom.suspend()
    img = str(tmp_path / "c.save")
    dom.save(img)
    conn.restore(img)
    assert dom.state() == [L.VIR_DOMAIN_PAUSED, L.VIR_DOMAIN_PAUSED_USER]
    dom.save(img)
    with open(img, "r+b") as f:
        f.truncate(os.path.getsize(img) // 2)
    with pytest.raises(libvirt.libvirtError, match="truncated"):
        conn.restore(img)
    assert dom.state() == [L.VIR_DOMAIN_SHUTOFF, L.VIR_DOMAIN_SHUTOFF_SAVED]
    assert d.guests() == []
    # The same through a managed image: start fails, the image stays.
    managed = os.path.join(d.root, "lib", "kvmm", "save", "s1.save")
    os.makedirs(os.path.dirname(managed))
    os.rename(img, managed)
    os.rename(img + ".xml", managed + ".xml")
    assert dom.hasManagedSaveImage() == 1
    with pytest.raises(libvirt.libvirtError, match="truncated"):
        dom.create()
    assert not dom.isActive() and dom.hasManagedSaveImage() == 1
    assert d.guests() == []


def test_restored_domain_is_adopted_by_the_next_daemon(start_daemon, kvm, tmp_path):
    """A restored kvmm (started with --restore) is its domain's after a
    daemon restart, running on; the guest still ticks."""
    from test_restart import crash_daemon
    d1 = start_daemon()
    c = libvirt.open(d1.uri())
    dom = c.defineXML(live_xml(d1.root))
    dom.create()
    wait_ticks(d1.root, 2)
    img = str(tmp_path / "a.save")
    dom.save(img)
    c.restore(img)
    pids = d1.guests()
    c.close()
    crash_daemon(d1)
    d2 = start_daemon(root=d1.root)
    assert "adopted" in d2.output()
    c = libvirt.open(d2.uri())
    dom = c.lookupByName("s1")
    assert dom.isActive() and d2.guests() == pids
    n = ticks(d2.root)[-1][0]
    wait_ticks(d2.root, n + 2)
    dom.destroy()
    c.close()


def held_daemon(start_daemon, tmp_path):
    """A daemon whose save pump waits after each chunk while the file
    HOLD exists (VIRTKVMMD_TEST_HOLD_SAVE): a save stays in the middle
    until the test removes it -- no race against the save's speed."""
    hold = tmp_path / "hold"
    hold.touch()
    d = start_daemon(env=dict(os.environ, VIRTKVMMD_TEST_HOLD_SAVE=str(hold)))
    return d, hold


def in_background(fn):
    out = []
    t = threading.Thread(target=lambda: out.append(fn()))
    t.start()
    return t, out


def saving(dom):
    """The running save's stats once some of the stream was written."""
    st = dom.jobStats()
    return st if st["type"] == L.VIR_DOMAIN_JOB_UNBOUNDED and st.get("data_processed") else None


def test_domjobinfo_during_a_save_and_completed_after(start_daemon, kvm, tmp_path):
    d, hold = held_daemon(start_daemon, tmp_path)
    conn = libvirt.open(d.uri())
    dom = conn.defineXML(live_xml(d.root))
    # Nothing running: no job, and no abort.
    with pytest.raises(libvirt.libvirtError, match="domain is not running"):
        dom.jobInfo()
    dom.create()
    wait_ticks(d.root, 2)
    assert dom.jobStats()["type"] == L.VIR_DOMAIN_JOB_NONE
    r = virsh(d.uri(), "domjobabort", "s1")
    assert r.returncode != 0 and "no job is active on the domain" in r.stderr, r.stderr
    img = str(tmp_path / "j.save")
    t, res = in_background(lambda: virsh(d.uri(), "save", "s1", img, timeout=120))
    st = wait_for(lambda: saving(dom), "the save's first bytes")
    assert st["operation"] == L.VIR_DOMAIN_JOB_OPERATION_SAVE
    assert 0 < st["data_processed"] < st["data_total"]
    assert st["data_remaining"] == st["data_total"] - st["data_processed"]
    # virsh's view: the job as libvirt's qemu driver shows a save.
    out = virsh(d.uri(), "domjobinfo", "s1").stdout
    assert re.search(r"Job type:\s+Unbounded", out), out
    assert re.search(r"Operation:\s+Save", out), out
    assert re.search(r"Time elapsed:\s+\d+\s+ms", out), out
    assert re.search(r"Data processed:\s+[\d.]+ (B|[KMG]iB)", out), out
    assert re.search(r"Data total:\s+[\d.]+ [KMG]iB", out), out
    info = dom.jobInfo()
    assert info[0] == L.VIR_DOMAIN_JOB_UNBOUNDED and info[4] > 0, info
    hold.unlink()
    t.join(120)
    assert res[0].returncode == 0, res[0].stderr
    assert dom.state() == [L.VIR_DOMAIN_SHUTOFF, L.VIR_DOMAIN_SHUTOFF_SAVED]
    out = virsh(d.uri(), "domjobinfo", "s1", "--completed", "--keep-completed").stdout
    assert re.search(r"Job type:\s+Completed", out), out
    assert re.search(r"Operation:\s+Save", out), out
    done = dom.jobStats(L.VIR_DOMAIN_JOB_STATS_COMPLETED)
    assert done["type"] == L.VIR_DOMAIN_JOB_COMPLETED and done["success"]
    assert done["data_processed"] == done["data_total"] == os.path.getsize(img)
    assert done["data_remaining"] == 0
    # Read without KEEP_COMPLETED: gone.
    assert dom.jobStats(L.VIR_DOMAIN_JOB_STATS_COMPLETED)["type"] == L.VIR_DOMAIN_JOB_NONE
    conn.restore(img)
    assert dom.jobStats(L.VIR_DOMAIN_JOB_STATS_COMPLETED)["operation"] == \
        L.VIR_DOMAIN_JOB_OPERATION_RESTORE
    dom.destroy()
    conn.close()


def test_domjobabort_mid_save_keeps_the_guest_running(start_daemon, kvm, tmp_path):
    d, hold = held_daemon(start_daemon, tmp_path)
    conn = libvirt.open(d.uri())
    dom = conn.defineXML(live_xml(d.root))
    dom.create()
    wait_ticks(d.root, 2)
    out_dir = tmp_path / "img"
    out_dir.mkdir()
    img = str(out_dir / "a.save")
    t, res = in_background(lambda: virsh(d.uri(), "save", "s1", img, timeout=120))
    wait_for(lambda: saving(dom), "the save's first bytes")
    r = virsh(d.uri(), "domjobabort", "s1")
    assert r.returncode == 0, r.stderr
    t.join(120)
    assert res[0].returncode != 0
    assert "operation aborted: save: canceled by client" in res[0].stderr, res[0].stderr
    # The guest runs on, nothing is left of the image.
    assert dom.state() == [L.VIR_DOMAIN_RUNNING, L.VIR_DOMAIN_RUNNING_BOOTED]
    wait_ticks(d.root, ticks(d.root)[-1][0] + 2)
    assert os.listdir(str(out_dir)) == []
    st = dom.jobStats(L.VIR_DOMAIN_JOB_STATS_COMPLETED)
    assert st["type"] == L.VIR_DOMAIN_JOB_CANCELLED and not st["success"]
    # Saved again, unheld: the image restores and the guest continues.
    hold.unlink()
    dom.save(img)
    before = ticks(d.root)
    conn.restore(img)
    assert_continued(d.root, before)
    dom.destroy()
    conn.close()


def hold_at(hold, nbytes):
    """The held pump goes on until the stream reaches NBYTES (atomically:
    the pump never reads a half-written number)."""
    tmp = hold.with_suffix(".tmp")
    tmp.write_text(str(nbytes))
    os.rename(tmp, hold)


def test_save_verbose_prints_rising_progress(start_daemon, kvm, tmp_path):
    """virsh save --verbose polls virDomainGetJobInfo on the connection
    the save runs on: the daemon answers it beside the running save, and
    virsh prints each percentage -- 0, one in the middle, 100."""
    import subprocess
    d, hold = held_daemon(start_daemon, tmp_path)
    conn = libvirt.open(d.uri())
    # 32 MiB touched: the stream is mostly guest pages, so a point a
    # quarter of the way through the estimate is inside it.
    xml = live_xml(d.root).replace("kvmmtest.tick_ms=50", "kvmmtest.tick_ms=50 kvmmtest.live.touch=32")
    dom = conn.defineXML(xml)
    dom.create()
    wait_ticks(d.root, 2)
    img = str(tmp_path / "v.save")
    p = subprocess.Popen(["virsh", "-c", d.uri(), "save", "s1", img, "--verbose"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         env=dict(os.environ, LC_ALL="C"))
    out = []
    reader = threading.Thread(target=lambda: out.extend(iter(lambda: p.stdout.read1(4096), b"")))
    reader.start()

    def percents():
        return [int(n) for n in re.findall(rb"Save: \[\s*(\d+) %\]", b"".join(out))]

    st = wait_for(lambda: saving(dom), "the save's first bytes")
    wait_for(lambda: percents(), "virsh's first progress line")
    assert percents()[-1] < 100
    hold_at(hold, st["data_total"] // 4)
    wait_for(lambda: any(0 < n < 100 for n in percents()), "progress in the middle")
    hold.unlink()
    assert p.wait(120) == 0, b"".join(out)
    reader.join(10)
    seen = percents()
    assert seen == sorted(seen) and seen[-1] == 100, seen
    assert b"Domain 's1' saved to" in b"".join(out)
    assert dom.state() == [L.VIR_DOMAIN_SHUTOFF, L.VIR_DOMAIN_SHUTOFF_SAVED]
    conn.close()


def test_sandboxed_guest_saves_and_restores(start_daemon, kvm, tmp_path):
    """A confined kvmm opens no path: the daemon creates the image (0600,
    its own) and kvmm writes it through the descriptor it is given;
    restore and a managed save's start work as unconfined."""
    from test_sandboxed import KVMM_GID, KVMM_UID, assert_confined, sandboxed_daemon
    d = sandboxed_daemon(start_daemon, "sandbox = 1\n")
    conn = libvirt.open(d.uri())
    dom = conn.defineXML(live_xml(d.root))
    dom.create()
    wait_ticks(d.root, 2)
    assert_confined(d.guests()[0], KVMM_UID, KVMM_GID)
    img = str(tmp_path / "sb.save")
    r = virsh(d.uri(), "save", "s1", img, timeout=120)
    assert r.returncode == 0, r.stderr
    st = os.stat(img)
    assert (st.st_mode & 0o777, st.st_uid) == (0o600, os.getuid())
    assert dom.state() == [L.VIR_DOMAIN_SHUTOFF, L.VIR_DOMAIN_SHUTOFF_SAVED]
    before = ticks(d.root)
    conn.restore(img)
    assert_confined(d.guests()[0], KVMM_UID, KVMM_GID)
    assert_continued(d.root, before)
    dom.managedSave()
    before = ticks(d.root)
    dom.create()
    assert dom.state() == [L.VIR_DOMAIN_RUNNING, L.VIR_DOMAIN_RUNNING_RESTORED]
    assert_continued(d.root, before)
    dom.destroy()
    conn.close()


def disk_xml(root, disk, name="s1"):
    """live_xml with a virtio disk the guest reads every tick (blk0=)."""
    x = live_xml(root, name).replace("kvmmtest.tick_ms=50", "kvmmtest.tick_ms=50 kvmmtest.virtio=blk")
    return x.replace("<devices>", "<devices>\n    <disk type='file' device='disk'>"
                     f"<source file='{disk}'/><target dev='vda' bus='virtio'/></disk>")


def saved_with_a_disk(d, conn, tmp_path):
    """A defined guest reading its disk, saved; its disk then moved, as
    to another host's storage.  (dom, image, old path, new path, the
    guest's crc of its disk)."""
    from test_attach_detach import make_disk
    disk = make_disk(str(tmp_path / "a.img"))
    dom = conn.defineXML(disk_xml(d.root, disk))
    dom.create()
    wait_ticks(d.root, 2)
    crc = live_ticks(serial(d.root, "s1"))[-1].blk0
    assert crc.startswith("0x"), crc
    img = str(tmp_path / "m.save")
    dom.save(img)
    moved = str(tmp_path / "moved.img")
    os.rename(disk, moved)
    return dom, img, disk, moved, crc


def test_restore_xml_with_a_moved_disk(daemon, conn, kvm, tmp_path):
    d = daemon
    dom, img, disk, moved, crc = saved_with_a_disk(d, conn, tmp_path)
    # The image's path is gone: refused, the domain stays saved.
    with pytest.raises(libvirt.libvirtError, match=re.escape(disk)):
        conn.restore(img)
    assert dom.state() == [L.VIR_DOMAIN_SHUTOFF, L.VIR_DOMAIN_SHUTOFF_SAVED]
    xml = virsh(d.uri(), "save-image-dumpxml", img).stdout
    assert disk in xml
    # What the guest sees may not change, in libvirt's words.
    for change, message in (
            (lambda x: re.sub(r"<memory unit='KiB'>\d+</memory>", "<memory unit='KiB'>131072</memory>", x),
             "Target domain max memory 131072 does not match source 65536"),
            (lambda x: x.replace("<vcpu placement='static'>1</vcpu>", "<vcpu placement='static'>2</vcpu>"),
             "Target domain vCPU max 2 does not match source 1"),
            (lambda x: x.replace("dev='vda'", "dev='vdb'"),
             "Target disk vdb does not match source vda")):
        bad = tmp_path / "bad.xml"
        bad.write_text(change(xml.replace(disk, moved)))
        r = virsh(d.uri(), "restore", img, "--xml", str(bad), timeout=120)
        assert r.returncode != 0 and message in r.stderr, (message, r.stderr)
        assert "unsupported configuration" in r.stderr, r.stderr
    assert dom.state() == [L.VIR_DOMAIN_SHUTOFF, L.VIR_DOMAIN_SHUTOFF_SAVED]
    # The host side may: the disk at its new place.
    good = tmp_path / "good.xml"
    good.write_text(xml.replace(disk, moved))
    before = ticks(d.root)
    r = virsh(d.uri(), "restore", img, "--xml", str(good), timeout=120)
    assert r.returncode == 0, r.stderr
    assert dom.state() == [L.VIR_DOMAIN_RUNNING, L.VIR_DOMAIN_RUNNING_RESTORED]
    assert_continued(d.root, before)
    # The guest reads the same disk, from its new place.
    assert {t.blk0 for t in live_ticks(serial(d.root, "s1"))} == {crc}
    assert moved in dom.XMLDesc(0) and disk not in dom.XMLDesc(0)
    # The run's definition only: the persistent one is the next start's.
    assert disk in dom.XMLDesc(L.VIR_DOMAIN_XML_INACTIVE)
    dom.destroy()
    assert disk in dom.XMLDesc(0)


def test_save_image_define_rewrites_the_image(daemon, conn, kvm, tmp_path):
    d = daemon
    dom, img, disk, moved, crc = saved_with_a_disk(d, conn, tmp_path)
    xml = virsh(d.uri(), "save-image-dumpxml", img).stdout
    bad = tmp_path / "bad.xml"
    bad.write_text(xml.replace("<vcpu placement='static'>1</vcpu>", "<vcpu placement='static'>2</vcpu>"))
    r = virsh(d.uri(), "save-image-define", img, str(bad))
    assert r.returncode != 0 and "Target domain vCPU max 2 does not match source 1" in r.stderr, r.stderr
    assert virsh(d.uri(), "save-image-dumpxml", img).stdout == xml
    new = tmp_path / "new.xml"
    new.write_text(xml.replace(disk, moved))
    r = virsh(d.uri(), "save-image-define", img, str(new), "--paused")
    assert r.returncode == 0, r.stderr
    assert moved in virsh(d.uri(), "save-image-dumpxml", img).stdout
    assert open(img + ".xml").readline().strip() == "<!-- virtkvmmd save image: state=paused -->"
    # Restored as the image now says: paused, with the moved disk.
    before = ticks(d.root)
    conn.restore(img)
    assert dom.state()[0] == L.VIR_DOMAIN_PAUSED
    assert moved in dom.XMLDesc(0)
    dom.resume()
    assert_continued(d.root, before)
    assert {t.blk0 for t in live_ticks(serial(d.root, "s1"))} == {crc}
    dom.destroy()


def test_save_params_and_restore_params(daemon, conn, kvm, tmp_path):
    d = daemon
    dom = conn.defineXML(live_xml(d.root))
    dom.create()
    wait_ticks(d.root, 2)
    img = str(tmp_path / "p.save")
    xml = dom.XMLDesc(L.VIR_DOMAIN_XML_INACTIVE)
    with pytest.raises(libvirt.libvirtError, match="Target domain name 'zz' does not match source 's1'"):
        dom.saveParams({L.VIR_DOMAIN_SAVE_PARAM_FILE: img,
                        L.VIR_DOMAIN_SAVE_PARAM_DXML: xml.replace("<name>s1<", "<name>zz<")})
    assert dom.isActive() and not os.path.exists(img)
    # An alternative XML for the image: a title added (host side only).
    alt = xml.replace("<name>s1</name>", "<name>s1</name><title>from params</title>")
    dom.saveParams({L.VIR_DOMAIN_SAVE_PARAM_FILE: img, L.VIR_DOMAIN_SAVE_PARAM_DXML: alt})
    assert dom.state() == [L.VIR_DOMAIN_SHUTOFF, L.VIR_DOMAIN_SHUTOFF_SAVED]
    assert "<title>from params</title>" in open(img + ".xml").read()
    with pytest.raises(libvirt.libvirtError, match="File to load domain from must be provided"):
        conn.restoreParams({})
    before = ticks(d.root)
    conn.restoreParams({L.VIR_DOMAIN_SAVE_PARAM_FILE: img}, L.VIR_DOMAIN_SAVE_PAUSED)
    assert dom.state()[0] == L.VIR_DOMAIN_PAUSED
    assert "<title>from params</title>" in dom.XMLDesc(0)
    dom.resume()
    assert_continued(d.root, before)
    # No file: a managed save, as libvirt's.
    dom.saveParams({})
    assert dom.hasManagedSaveImage() == 1
    assert dom.state() == [L.VIR_DOMAIN_SHUTOFF, L.VIR_DOMAIN_SHUTOFF_SAVED]


def test_managed_saved_reason_survives_a_daemon_restart(start_daemon, kvm):
    d1 = start_daemon()
    c = libvirt.open(d1.uri())
    dom = c.defineXML(live_xml(d1.root))
    dom.create()
    wait_ticks(d1.root, 2)
    dom.managedSave()
    c.close()
    d1.stop()
    d2 = start_daemon(root=d1.root)
    r = virsh(d2.uri(), "domstate", "s1", "--reason")
    assert r.stdout.strip() == "shut off (saved)", r.stdout
    c = libvirt.open(d2.uri())
    dom = c.lookupByName("s1")
    assert dom.hasManagedSaveImage() == 1
    before = ticks(d2.root)
    dom.create()
    assert dom.state() == [L.VIR_DOMAIN_RUNNING, L.VIR_DOMAIN_RUNNING_RESTORED]
    assert_continued(d2.root, before)
    dom.destroy()
    # Without an image, nothing says why it is off.
    assert virsh(d2.uri(), "domstate", "s1", "--reason").stdout.strip() == "shut off (destroyed)"
    c.close()


def test_restore_on_another_daemon_from_a_copied_image(start_daemon, kvm, tmp_path):
    """Another host, as far as the daemon can tell: its own --root, the
    image copied there and the original gone; the serial log moved into
    its root with restore --xml.  The guest's ticks go on."""
    import shutil
    d1 = start_daemon()
    c1 = libvirt.open(d1.uri())
    dom = c1.defineXML(live_xml(d1.root))
    dom.create()
    wait_ticks(d1.root, 3)
    img = str(tmp_path / "h1.save")
    dom.save(img)
    last = ticks(d1.root)[-1]
    c1.close()
    d2 = start_daemon()
    other = tmp_path / "other"
    other.mkdir()
    copy = str(other / "h2.save")
    shutil.copy(img, copy)
    shutil.copy(img + ".xml", copy + ".xml")
    os.unlink(img)
    os.unlink(img + ".xml")
    c2 = libvirt.open(d2.uri())
    xml = c2.saveImageGetXMLDesc(copy).replace(f"{d1.root}/s1-serial.log", f"{d2.root}/s1-serial.log")
    c2.restoreFlags(copy, xml)
    dom2 = c2.lookupByName("s1")
    assert dom2.isActive() and not dom2.isPersistent()
    wait_for(lambda: len(ticks(d2.root)) >= 3, "ticks on the other daemon")
    # COM1's output goes on in the other file, a line cut by the save
    # included: together, one sequence from one boot, the clock never
    # going back.
    both = serial(d1.root, "s1") + serial(d2.root, "s1")
    t = [(k.n, k.us) for k in live_ticks(both)]
    assert [n for n, _ in t] == list(range(1, len(t) + 1)), t
    assert t[-1][0] > last[0] + 2
    assert all(b[1] <= a[1] for b, a in zip(t, t[1:])), t
    assert both.count("KVMMTEST boot") == 1
    dom2.destroy()
    c2.close()


def test_a_second_job_waits_for_the_save_then_times_out(start_daemon, kvm, tmp_path):
    """One job at a time: while a save runs (held mid-stream), a change
    to the domain waits libvirt's 30 s for it and gives up in libvirt's
    words; the save, let go, completes as if nothing had happened."""
    d, hold = held_daemon(start_daemon, tmp_path)
    conn = libvirt.open(d.uri())
    dom = conn.defineXML(live_xml(d.root))
    dom.create()
    wait_ticks(d.root, 2)
    img = str(tmp_path / "w.save")
    t, res = in_background(lambda: virsh(d.uri(), "save", "s1", img, timeout=120))
    wait_for(lambda: saving(dom), "the save's first bytes")
    r = virsh(d.uri(), "managedsave", "s1", timeout=120)
    assert r.returncode != 0
    assert "Timed out during operation: cannot acquire state change lock" in r.stderr, r.stderr
    # Still held where it was, and still abortable: nothing moved on.
    assert saving(dom)
    hold.unlink()
    t.join(120)
    assert res[0].returncode == 0, res[0].stderr
    assert dom.state() == [L.VIR_DOMAIN_SHUTOFF, L.VIR_DOMAIN_SHUTOFF_SAVED]
    assert dom.hasManagedSaveImage() == 0
    conn.close()


def resident(path):
    """Bytes of PATH in the host's page cache (util-linux's fincore)."""
    r = subprocess.run(["fincore", "--bytes", "--noheadings", "--output", "RES", path],
                       capture_output=True, text=True, check=True)
    return int(r.stdout.strip())


def test_save_bypass_cache_leaves_the_image_out_of_the_page_cache(daemon, conn, kvm, tmp_path):
    """virsh save --bypass-cache: the image is on disk and none of it stays
    in the host's page cache (a plain save's does), and it restores."""
    d = daemon
    dom = conn.defineXML(live_xml(d.root))
    dom.create()
    wait_ticks(d.root, 3)
    img = str(tmp_path / "s1.save")
    r = virsh(d.uri(), "save", "s1", img, "--bypass-cache", timeout=120)
    assert r.returncode == 0, r.stderr
    assert os.path.getsize(img) > 0 and resident(img) == 0
    before = ticks(d.root)
    r = virsh(d.uri(), "restore", img, timeout=120)
    assert r.returncode == 0, r.stderr
    assert_continued(d.root, before)
    # The same save without the flag leaves its image cached.
    plain = str(tmp_path / "s1-plain.save")
    r = virsh(d.uri(), "save", "s1", plain, timeout=120)
    assert r.returncode == 0, r.stderr
    assert resident(plain) > 0


def test_job_stats_on_the_saving_connection_without_an_event_loop(start_daemon, kvm, tmp_path):
    """A client with no event loop (python3-libvirt in a script) asks for
    the job's stats on the very connection its save runs on: the daemon
    reads and answers that call beside the save while the test's hold
    still keeps the save in the middle -- so it cannot have waited for
    the save's end.  (The join's bound only ends a failing run.)"""
    d, hold = held_daemon(start_daemon, tmp_path)
    conn = libvirt.open(d.uri())
    dom = conn.defineXML(live_xml(d.root))
    dom.create()
    wait_ticks(d.root, 2)
    img = str(tmp_path / "n.save")
    t, res = in_background(lambda: dom.save(img))
    try:
        # On the same connection, from another thread, the save held.
        q, st = in_background(lambda: wait_for(lambda: saving(dom), "the save's first bytes"))
        q.join(60)
        assert st, "the job's stats, asked beside the save, were not answered"
        assert st[0]["operation"] == L.VIR_DOMAIN_JOB_OPERATION_SAVE
        q, info = in_background(dom.jobInfo)
        q.join(60)
        assert info and info[0][0] == L.VIR_DOMAIN_JOB_UNBOUNDED, info
        assert t.is_alive() and not res, "the save ended with its hold in place"
    finally:
        hold.unlink()
        t.join(120)
    assert res == [0]
    assert dom.state() == [L.VIR_DOMAIN_SHUTOFF, L.VIR_DOMAIN_SHUTOFF_SAVED]
    conn.close()
