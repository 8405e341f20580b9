"""The balloon through libvirt: a domain with <memballoon model='virtio'>
(what virt-install, virt-manager and nova write by default) defines and
starts with kvmm's virtio-balloon, its options reach the guest's driver
(tests/guest/virtio_balloon.c), and the real virt-install --import with
its default balloon starts a guest."""
import os
import subprocess

import libvirt
import pytest

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
