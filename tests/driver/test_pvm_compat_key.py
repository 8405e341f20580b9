"""virtkvmmd.conf's pvm_compat (docs/pvm-compat.md): with 1, every kvmm
the daemon starts -- a boot and a restore alike, sandboxed or not -- runs
in kvmm's KVM-PVM compatibility mode, which kvmm itself shows (it refuses
a live migration for it); the test guest, which never trips the mode,
runs as ever.  Without the key, no kvmm gets it.  Where the host has
VMX/SVM, kvmm refuses the mode and the start fails with its message."""
import json
import os
import socket
import tempfile

import libvirt
import pytest

from kvmmtest import hardware_virtualization
from test_attach_detach import api_of, kvmm_pid
from test_lifecycle import state_dir
from test_save import assert_continued, live_xml, ticks, wait_ticks

REFUSED = "live migration is not supported with --pvm-compat"


def daemon_with(start_daemon, conf):
    root = tempfile.mkdtemp(prefix="kvd-")
    os.makedirs(os.path.join(root, "etc", "libvirt"))
    with open(os.path.join(root, "etc", "libvirt", "virtkvmmd.conf"), "w") as f:
        f.write(conf)
    return start_daemon(root=root)


def written_config(d, dom):
    """The configuration the daemon wrote for the domain's kvmm."""
    with open(os.path.join(state_dir(d), dom.UUIDString() + ".json")) as f:
        return json.load(f)


def domain_log(d, dom):
    with open(os.path.join(d.root, "log", "libvirt", "kvmm", dom.name() + ".log")) as f:
        return f.read()


def argv_of(pid):
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read().split(b"\0")


def migrate_answer(d, dom):
    """kvmm's own answer to a live migration into a socket: the mode is
    the one thing that makes it refuse one named by fdname (the sandbox
    refuses only a uri).  Asked only where the mode is on: elsewhere it
    would start one."""
    api = api_of(d, dom)
    a, b = socket.socketpair()
    try:
        r = api.call("getfd", {"fdname": "pvmtest"}, fds=[a.fileno()])
        assert "error" not in r, r
        return api.call("migrate", {"fdname": "pvmtest"})
    finally:
        a.close()
        b.close()
        api.close()


@pytest.mark.parametrize("sandbox", [1, 0])
def test_pvm_compat_key_puts_every_kvmm_in_the_mode(start_daemon, kvm, tmp_path, sandbox):
    d = daemon_with(start_daemon, f"pvm_compat = 1\nsandbox = {sandbox}\n")
    assert "pvm_compat = 1: every guest runs in kvmm's KVM-PVM compatibility mode" in d.output()
    conn = libvirt.open(d.uri())
    dom = conn.defineXML(live_xml(d.root))
    if hardware_virtualization():
        # kvmm's refusal, as the start's error: no guest gets the mode here.
        with pytest.raises(libvirt.libvirtError) as e:
            dom.create()
        assert "KVM-PVM test hosts only: this host has VMX/SVM" in str(e.value), str(e.value)
        assert d.guests() == []
        return
    dom.create()
    pid = kvmm_pid(d)
    assert (b"--sandbox" in argv_of(pid)) == bool(sandbox), argv_of(pid)
    assert written_config(d, dom).get("pvm_compat") is True
    wait_ticks(d.root, 3)
    # The domain's log says how its guest runs.
    assert "KVM-PVM compatibility mode on" in domain_log(d, dom)
    r = migrate_answer(d, dom)
    assert REFUSED in json.dumps(r.get("error")), r
    # Refused, the guest runs on.
    before = ticks(d.root)
    wait_ticks(d.root, before[-1][0] + 2)

    # A restore's kvmm gets it too (kvmm restores a stream only in the
    # mode it was saved in).
    img = str(tmp_path / "s1.save")
    dom.save(img)
    assert d.guests() == []
    before = ticks(d.root)
    conn.restore(img)
    assert_continued(d.root, before)
    assert written_config(d, dom).get("pvm_compat") is True
    r = migrate_answer(d, dom)
    assert REFUSED in json.dumps(r.get("error")), r
    dom.destroy()
    conn.close()


@pytest.mark.parametrize("conf", ["", "pvm_compat = 0\n"])
def test_without_the_key_no_kvmm_gets_the_mode(start_daemon, kvm, conf):
    d = daemon_with(start_daemon, conf)
    assert "compatibility mode" not in d.output()
    conn = libvirt.open(d.uri())
    dom = conn.defineXML(live_xml(d.root))
    dom.create()
    # The daemon writes kvmm's whole configuration and passes no mode
    # flag: neither asks for it.
    assert "pvm_compat" not in written_config(d, dom)
    assert b"--pvm-compat" not in argv_of(kvmm_pid(d))
    wait_ticks(d.root, 3)
    assert "compatibility mode" not in domain_log(d, dom)
    dom.destroy()
    conn.close()


def test_a_guest_saved_in_the_mode_is_not_restored_without_it(start_daemon, kvm, tmp_path):
    """A restore's configuration is laid over the saved one: the daemon
    without the key says pvm_compat false outright, so a stream saved in
    the mode is refused (by kvmm) rather than brought back in it; and a
    stream saved without it is refused by a daemon with the key."""
    if hardware_virtualization():
        pytest.skip("no guest runs in the mode on a host with VMX/SVM (see the test above)")
    pvm = daemon_with(start_daemon, "pvm_compat = 1\n")
    plain = daemon_with(start_daemon, "")
    for saver, restorer, name in ((pvm, plain, "inmode"), (plain, pvm, "without")):
        conn = libvirt.open(saver.uri())
        dom = conn.defineXML(live_xml(saver.root, name))
        dom.create()
        wait_ticks(saver.root, 3, name)
        img = str(tmp_path / f"{name}.save")
        dom.save(img)
        conn.close()
        other = libvirt.open(restorer.uri())
        with pytest.raises(libvirt.libvirtError) as e:
            other.restore(img)
        assert "vmcoreinfo, pvm_compat)" in str(e.value), str(e.value)
        assert restorer.guests() == []
        other.close()
