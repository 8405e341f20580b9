"""virtkvmmd with sandbox = 1 in virtkvmmd.conf: each guest's kvmm runs
with --sandbox (docs/kvmm.md), every thread unprivileged and filtered, and
what libvirt asks of a running guest still works -- a hot-added disk, and
every tap, goes to kvmm as a descriptor the daemon opened (a sandboxed
kvmm opens no path)."""
import glob
import json
import os
import grp
import pwd
import subprocess
import tempfile

import libvirt
import pytest

from drvtest import virsh
from kvmmtest import wait_record
import netns as netns_lib
from test_attach_detach import (CMDLINE, DeviceEvents, api_of, guest_read, kvmm_pid, make_disk,
                                nfds, ns_taps)
from test_lifecycle import assert_nothing_left, guest_xml, serial, state_dir, wait_for

L = libvirt
NOGROUP = grp.getgrnam("nogroup").gr_gid
# virtkvmmd.conf's default user and group: the system account the install
# makes (tools/install-deps here, the Debian package's postinst).
KVMM_UID = pwd.getpwnam("kvmm").pw_uid
KVMM_GID = grp.getgrnam("kvmm").gr_gid


def status(path):
    out = {}
    with open(path) as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.strip()
    return out


def assert_confined(pid, uid, gid):
    """Every thread of kvmm: the sandbox's uid/gid, no capabilities,
    no_new_privs, a seccomp filter; and kvmm in a mount namespace of its
    own whose root is empty."""
    assert os.readlink(f"/proc/{pid}/ns/mnt") != os.readlink("/proc/self/ns/mnt")
    assert os.listdir(f"/proc/{pid}/root/") == []
    tids = os.listdir(f"/proc/{pid}/task")
    assert len(tids) >= 2, tids
    for tid in tids:
        st = status(f"/proc/{pid}/task/{tid}/status")
        who = f"thread {tid} ({st['Name']})"
        assert st["Uid"].split() == [str(uid)] * 4, (who, st["Uid"])
        assert st["Gid"].split() == [str(gid)] * 4, (who, st["Gid"])
        assert int(st["CapEff"], 16) == 0 and int(st["CapPrm"], 16) == 0, who
        assert st["NoNewPrivs"] == "1" and st["Seccomp"] == "2", who


def sandboxed_daemon(start_daemon, conf, **kw):
    root = tempfile.mkdtemp(prefix="kvd-")
    os.makedirs(os.path.join(root, "etc", "libvirt"))
    with open(os.path.join(root, "etc", "libvirt", "virtkvmmd.conf"), "w") as f:
        f.write(conf)
    return start_daemon(root=root, **kw)


def test_default_config_confines_kvmm_as_the_kvmm_user(daemon, kvm):
    """The installed virtkvmmd.conf, every key at its default: kvmm runs
    with --sandbox as the system user and group kvmm, confined, and the
    guest runs."""
    conn = libvirt.open(daemon.uri())
    dom = conn.defineXML(guest_xml(daemon.root, "sb"))
    dom.create()
    pid = kvmm_pid(daemon)
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        argv = f.read().split(b"\0")
    assert b"--sandbox" in argv, argv
    assert argv[argv.index(b"--uid") + 1] == str(KVMM_UID).encode(), argv
    assert argv[argv.index(b"--gid") + 1] == str(KVMM_GID).encode(), argv
    wait_record(lambda: serial(daemon.root, "sb"), r"KVMMTEST tick", "the guest's first tick")
    assert_confined(pid, KVMM_UID, KVMM_GID)
    dom.destroy()
    assert_nothing_left(daemon)
    conn.close()


def test_default_account_missing_refuses_the_start(start_daemon, tmp_path, kvm):
    """A host without the kvmm account (its /etc/passwd and /etc/group
    without it, in a mount namespace of the daemon's): the daemon runs,
    but a start fails naming the key and the account -- never kvmm as
    root or as nobody -- and leaves nothing; sandbox = 0 then starts it
    unconfined."""
    for name in ("passwd", "group"):
        with open(f"/etc/{name}") as src, open(tmp_path / name, "w") as dst:
            dst.writelines(l for l in src if not l.startswith("kvmm:"))
    prefix = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
              'mount --bind "$1" /etc/passwd && mount --bind "$2" /etc/group && shift 2 && exec "$@"',
              "sh", str(tmp_path / "passwd"), str(tmp_path / "group")]
    d = start_daemon(prefix=prefix)
    conn = libvirt.open(d.uri())
    dom = conn.defineXML(guest_xml(d.root, "sb"))
    with pytest.raises(libvirt.libvirtError) as e:
        dom.create()
    assert e.value.get_error_code() == L.VIR_ERR_OPERATION_FAILED
    assert ("virtkvmmd.conf: user is not set and its default, the system user 'kvmm', "
            "does not exist") in str(e.value), e.value
    assert dom.state()[0] == L.VIR_DOMAIN_SHUTOFF
    assert_nothing_left(d)
    conn.close()

    d = sandboxed_daemon(start_daemon, "sandbox = 0\n", prefix=prefix)
    conn = libvirt.open(d.uri())
    dom = conn.defineXML(guest_xml(d.root, "sb"))
    dom.create()
    pid = kvmm_pid(d)
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        assert b"--sandbox" not in f.read().split(b"\0")
    assert status(f"/proc/{pid}/status")["Uid"].split() == ["0"] * 4
    dom.destroy()
    assert_nothing_left(d)
    conn.close()


def test_hot_added_backing_chain_refused_when_confined(daemon, kvm):
    """A qcow2 image with a backing file, hot-added to a confined kvmm
    (the default): kvmm could open neither file by path and takes no
    descriptor for the backing file, so the daemon refuses it, saying
    why and what would do, and the guest and its definition are as they
    were."""
    base = make_disk(os.path.join(daemon.root, "base.img"))
    top = os.path.join(daemon.root, "top.qcow2")
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", base, "-F", "raw", top],
                   check=True, timeout=60)
    conn = libvirt.open(daemon.uri())
    dom = conn.defineXML(guest_xml(daemon.root, "sb", extra_cmdline=CMDLINE))
    dom.create()
    wait_record(lambda: serial(daemon.root, "sb"), r"KVMMTEST event hotplug-ready", "the guest's hotplug")
    xml = dom.XMLDesc(0)
    r = virsh(daemon.uri(), "attach-disk", "sb", top, "vdb", "--subdriver", "qcow2", "--live")
    assert r.returncode != 0
    assert (f"disk '{top}' has a backing chain: a sandboxed guest cannot open it "
            "(set sandbox = 0 in virtkvmmd.conf to hot-add it)") in r.stderr, r.stderr
    assert dom.XMLDesc(0) == xml
    api = api_of(daemon, dom)
    assert api.call("query-devices")["return"] == []
    api.close()
    dom.destroy()
    conn.close()


def test_sandboxed_guest_hotplug_and_lifecycle(start_daemon, kvm):
    """The guest runs with every kvmm thread confined; attach-disk (the
    image passed as a descriptor) and detach-disk; suspend, resume and a
    guest shutdown."""
    d = sandboxed_daemon(start_daemon, 'sandbox = 1\nuser = "+4343"\ngroup = "nogroup"\n')
    img = make_disk(os.path.join(d.root, "hot.img"))
    conn = libvirt.open(d.uri())
    ev = DeviceEvents(d.uri())
    dom = conn.defineXML(guest_xml(d.root, "sb", extra_cmdline=CMDLINE))
    dom.create()
    wait_record(lambda: serial(d.root, "sb"), r"KVMMTEST event hotplug-ready", "the guest's hotplug")
    pid = kvmm_pid(d)
    assert_confined(pid, 4343, NOGROUP)
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        argv = f.read().split(b"\0")
    assert b"--sandbox" in argv and argv[argv.index(b"--uid") + 1] == b"4343", argv

    api = api_of(d, dom)
    before = nfds(pid)
    r = virsh(d.uri(), "attach-disk", "sb", img, "vdb", "--live")
    assert r.returncode == 0, r.stderr
    assert ev.next() == ("added", "sb", "virtio-disk1")
    guest_read(d, "sb", img)
    assert dom.blockStats("vdb")[0] >= 1
    devs = api.call("query-devices")["return"]
    assert [(x["id"], x["path"]) for x in devs] == [("virtio-disk1", img)], devs
    assert nfds(pid) > before
    r = virsh(d.uri(), "detach-disk", "sb", "vdb", "--live")
    assert r.returncode == 0, r.stderr
    assert ev.next() == ("removed", "sb", "virtio-disk1")
    wait_record(lambda: serial(d.root, "sb"), r"KVMMTEST pass hotplug added=1 removed=1",
                "the guest's eject")
    assert nfds(pid) == before
    api.close()

    dom.suspend()
    assert dom.state()[0] == L.VIR_DOMAIN_PAUSED
    ticks = serial(d.root, "sb").count("KVMMTEST tick")
    dom.resume()
    assert dom.state()[0] == L.VIR_DOMAIN_RUNNING
    wait_for(lambda: serial(d.root, "sb").count("KVMMTEST tick") > ticks + 2, "ticks after resume")
    dom.shutdown()
    wait_for(lambda: not dom.isActive(), "the guest's shutdown", timeout=60)
    assert "KVMMTEST fail" not in serial(d.root, "sb")
    # The sockets a sandboxed kvmm cannot remove, the daemon does.
    assert_nothing_left(d)
    ev.conn.close()
    conn.close()


def test_sandboxed_guest_stats_balloon_and_resize(start_daemon, kvm):
    """With kvmm confined (the sandbox's default user): domblkstat counts the
    guest's disk reads, blockresize reaches the guest, dommemstat reports
    the balloon and setmem inflates it."""
    d = sandboxed_daemon(start_daemon, "sandbox = 1\n")
    img = os.path.join(d.root, "root.img")
    with open(img, "wb") as f:
        f.write(os.urandom(1 << 20))
    xml = guest_xml(d.root, "sb", extra_cmdline=" kvmmtest.virtio=blk,balloon kvmmtest.blk0.resize=60",
                    extra_devices=f"""
    <disk type='file' device='disk'><source file='{img}'/><target dev='vda' bus='virtio'/></disk>
    <memballoon model='virtio'/>""").replace("<memory unit='MiB'>128</memory>",
                                              "<memory unit='MiB'>256</memory>")
    conn = libvirt.open(d.uri())
    dom = conn.defineXML(xml)
    dom.create()
    wait_record(lambda: serial(d.root, "sb"), r"virtio-blk-resize-ready dev=blk0 capacity=2048$",
                "the guest ready for the resize", timeout=60)
    pid = kvmm_pid(d)
    assert_confined(pid, KVMM_UID, KVMM_GID)
    assert dom.blockStats("vda")[0] >= 1
    r = virsh(d.uri(), "domblkstat", "sb", "vda")
    assert r.returncode == 0 and "rd_req" in r.stdout, r.stderr
    r = virsh(d.uri(), "blockresize", "sb", "vda", "3M")
    assert r.returncode == 0, r.stderr
    assert os.path.getsize(img) == 3 << 20
    wait_record(lambda: serial(d.root, "sb"), r"KVMMTEST pass virtio-blk-resize dev=blk0 .*",
                "the guest's new capacity", timeout=60)
    # the guest's scenarios run in turn: the balloon's after the disk's
    wait_for(lambda: "KVMMTEST event balloon-ready dev=balloon0" in serial(d.root, "sb"),
             "the guest's balloon driver", timeout=60)
    r = virsh(d.uri(), "setmem", "sb", "192M", "--live")
    assert r.returncode == 0, r.stderr
    wait_for(lambda: dom.memoryStats().get("actual") == 192 * 1024, "dommemstat's actual", timeout=60)
    r = virsh(d.uri(), "dommemstat", "sb")
    assert r.returncode == 0 and "actual 196608" in r.stdout, r.stdout
    assert "KVMMTEST fail" not in serial(d.root, "sb")
    dom.destroy()
    assert_nothing_left(d)
    conn.close()


@pytest.fixture
def netns():
    yield from netns_lib.private("kvds-")


def bridge_ns(netns):
    for cmd in (["link", "add", "kvbr0", "type", "bridge"],
                ["addr", "add", "10.0.9.1/24", "dev", "kvbr0"],
                ["link", "set", "kvbr0", "up"]):
        subprocess.run(["ip", "-n", netns] + cmd, check=True)


def test_sandboxed_guest_nic_from_the_start(start_daemon, netns, kvm):
    """A confined kvmm opens no tap: the daemon hands it each one open, as
    a descriptor it inherits (the config names the fd, not the tap).  The
    guest answers on it; the tap goes with the run."""
    bridge_ns(netns)
    d = sandboxed_daemon(start_daemon, "sandbox = 1\n", prefix=["ip", "netns", "exec", netns])
    conn = libvirt.open(d.uri())
    dom = conn.defineXML(guest_xml(
        d.root, "sb", extra_cmdline=" kvmmtest.virtio=net kvmmtest.net0.ip=10.0.9.15 kvmmtest.net.serve=60",
        extra_devices="""
    <interface type='bridge'><mac address='52:54:00:12:34:90'/><source bridge='kvbr0'/><model type='virtio'/></interface>"""))
    dom.create()
    pid = kvmm_pid(d)
    assert_confined(pid, KVMM_UID, KVMM_GID)
    with open(glob.glob(os.path.join(state_dir(d), "*.json"))[0]) as f:
        nets = json.load(f)["nets"]
    assert nets == [{"fd": 4, "mac": "52:54:00:12:34:90"}], nets
    assert ns_taps(netns) == ["vnet0"]
    wait_record(lambda: serial(d.root, "sb"), r"KVMMTEST event virtio-net-ready nics=1",
                "the guest's NIC", timeout=60)
    r = netns_lib.probe(netns, "10.0.9.15", 7)
    assert r["ping"] == 3 and r["udp"] == r["udp_sent"] and r["quit"] == 1, r
    wait_record(lambda: serial(d.root, "sb"), r"KVMMTEST pass virtio-net dev=net0",
                "the guest's NIC done", timeout=60)
    assert "KVMMTEST fail" not in serial(d.root, "sb")
    dom.destroy()
    assert ns_taps(netns) == []
    conn.close()


def test_sandboxed_guest_nic_hotplug(start_daemon, netns, kvm):
    """attach-interface on a confined kvmm: the daemon makes the tap and
    passes it open over the control socket.  The guest answers on it;
    detach closes it in kvmm and removes the tap."""
    bridge_ns(netns)
    d = sandboxed_daemon(start_daemon, "sandbox = 1\n", prefix=["ip", "netns", "exec", netns])
    conn = libvirt.open(d.uri())
    ev = DeviceEvents(d.uri())
    dom = conn.defineXML(guest_xml(d.root, "sb", extra_cmdline=CMDLINE +
                                   " kvmmtest.net0.ip=10.0.9.15 kvmmtest.net.serve=60"))
    dom.create()
    wait_record(lambda: serial(d.root, "sb"), r"KVMMTEST event hotplug-ready", "the guest's hotplug")
    pid = kvmm_pid(d)
    assert_confined(pid, KVMM_UID, KVMM_GID)
    mac = "52:54:00:12:34:99"
    before = nfds(pid)
    r = virsh(d.uri(), "attach-interface", "sb", "bridge", "kvbr0", "--mac", mac, "--model", "virtio",
              "--live")
    assert r.returncode == 0, r.stderr
    assert ev.next() == ("added", "sb", "net0")
    assert ns_taps(netns) == ["vnet0"]
    assert nfds(pid) > before
    api = api_of(d, dom)
    assert [(x["id"], x["tap"]) for x in api.call("query-devices")["return"]] == [("net0", "vnet0")]
    api.close()
    wait_record(lambda: serial(d.root, "sb"), r"KVMMTEST event virtio-net-ready nics=1",
                "the guest's new NIC", timeout=60)
    r = netns_lib.probe(netns, "10.0.9.15", 7)
    assert r["ping"] == 3 and r["udp"] == r["udp_sent"] and r["quit"] == 1, r
    r = virsh(d.uri(), "detach-interface", "sb", "bridge", "--mac", mac, "--live")
    assert r.returncode == 0, r.stderr
    assert ev.next() == ("removed", "sb", "net0")
    wait_record(lambda: serial(d.root, "sb"), r"KVMMTEST pass hotplug added=1 removed=1",
                "the guest's eject", timeout=60)
    assert ns_taps(netns) == []
    assert nfds(pid) == before
    assert mac not in dom.XMLDesc(0)
    assert "KVMMTEST fail" not in serial(d.root, "sb")
    dom.destroy()
    ev.conn.close()
    conn.close()


@pytest.mark.parametrize("text,message", [
    ("sandbox = 2\n", "sandbox: 2 is out of range (0 to 1)"),
    ('user = "root"\n', "user: the sandbox's user must not be root"),
    ('user = "+0"\n', "user: the sandbox's user must not be root"),
    ('user = "no-such-user-kvmm"\n', 'user: no user named "no-such-user-kvmm"'),
    ('user = "+x"\n', 'user: "+x" is not a user number'),
    ('group = "root"\n', "group: the sandbox's group must not be root"),
    ('group = "no-such-group-kvmm"\n', "group: no group named"),
])
def test_bad_sandbox_keys_refused(start_daemon, tmp_path, text, message):
    path = str(tmp_path / "virtkvmmd.conf")
    with open(path, "w") as f:
        f.write(text)
    d = start_daemon(["--config", path], wait=False)
    assert d.proc.wait(10) == 1
    assert f"{path}:1: {message}" in d.output(), d.output()
