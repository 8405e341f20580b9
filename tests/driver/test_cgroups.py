"""A cgroup per running domain (src/driver/kvmm/cgroup.c): the test guest
started by virtkvmmd runs in MOUNT/machine/kvmm-INSTANCE/UUID, whose
files carry the domain's <cputune> and <memtune>; the cgroup goes with
the run, is re-adopted by a restarted daemon, and a restart removes one
that no run owns."""
import os
import re
import signal

import libvirt
import pytest

from drvtest import virsh
from test_faults import status_text
from test_lifecycle import assert_nothing_left, guest_xml, serial, wait_for

L = libvirt

TUNE = """<vcpu>1</vcpu>
  <memtune>
    <hard_limit unit='MiB'>1024</hard_limit>
    <soft_limit unit='MiB'>768</soft_limit>
  </memtune>
  <cputune>
    <shares>512</shares>
    <period>50000</period>
    <quota>40000</quota>
  </cputune>"""


def tuned_xml(root, name):
    xml = guest_xml(root, name)
    assert "<vcpu>1</vcpu>" in xml
    return xml.replace("<vcpu>1</vcpu>", TUNE)


def mounts():
    """{controller: mount point} of v1 hierarchies, and the v2 mount."""
    v1, v2 = {}, None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields, (fstype, _src, opts) = left.split(), right.split()[:3]
            if fields[3] != "/":
                continue
            if fstype == "cgroup2":
                v2 = fields[4]
            elif fstype == "cgroup":
                for o in opts.split(","):
                    v1.setdefault(o, fields[4])
    return v1, v2


def cgroup_dirs(pid):
    """{controller: directory} of PID's cpu and memory cgroups."""
    v1, v2 = mounts()
    out = {}
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            _, ctrls, path = line.rstrip("\n").split(":", 2)
            for c in ctrls.split(","):
                if c in ("cpu", "memory") and c in v1:
                    out[c] = v1[c] + path
            if ctrls == "" and v2:
                unified = v2 + path
    for c in ("cpu", "memory"):
        out.setdefault(c, unified)
    return out


def read(d, name):
    with open(os.path.join(d, name)) as f:
        return f.read().strip()


def recorded_cgroup(d, uuid):
    m = re.search(r"<cgroup path='([^']+)'/>", status_text(d, uuid) or "")
    assert m, status_text(d, uuid)
    return m.group(1)


def check_limits(dirs):
    cpu, mem = dirs["cpu"], dirs["memory"]
    if os.path.exists(os.path.join(cpu, "cpu.shares")):
        assert read(cpu, "cpu.shares") == "512"
        assert read(cpu, "cpu.cfs_period_us") == "50000"
        assert read(cpu, "cpu.cfs_quota_us") == "40000"
        assert read(mem, "memory.limit_in_bytes") == str(1024 << 20)
        assert read(mem, "memory.soft_limit_in_bytes") == str(768 << 20)
    else:
        assert read(cpu, "cpu.weight") == "512"
        assert read(cpu, "cpu.max") == "40000 50000"
        assert read(mem, "memory.max") == str(1024 << 20)
        assert read(mem, "memory.high") == str(768 << 20)


def test_guest_runs_in_its_cgroup_with_its_limits(daemon, kvm):
    c = libvirt.open(daemon.uri())
    dom = c.defineXML(tuned_xml(daemon.root, "tuned"))
    uuid = dom.UUIDString()
    dumped = dom.XMLDesc(0)
    assert "<shares>512</shares>" in dumped and "<hard_limit unit='KiB'>1048576</hard_limit>" in dumped
    dom.create()
    wait_for(lambda: "power-button armed" in serial(daemon.root, "tuned"), "the guest to run")
    [pid] = daemon.guests()
    path = recorded_cgroup(daemon, uuid)
    assert re.fullmatch(r"/machine/kvmm-[0-9a-f]{16}/" + uuid, path), path
    dirs = cgroup_dirs(pid)
    for d in dirs.values():
        assert d.endswith(path), dirs
    check_limits(dirs)
    dom.destroy()
    for d in dirs.values():
        assert not os.path.exists(d)
    assert_nothing_left(daemon)
    c.close()


def test_restart_adopts_the_cgroup(start_daemon, kvm):
    d1 = start_daemon()
    c = libvirt.open(d1.uri())
    dom = c.defineXML(tuned_xml(d1.root, "kept"))
    uuid = dom.UUIDString()
    dom.create()
    c.close()
    [pid] = d1.guests()
    dirs = cgroup_dirs(pid)
    os.kill(d1.proc.pid, signal.SIGKILL)
    d1.proc.wait()
    d2 = start_daemon(root=d1.root)
    assert "adopted" in d2.output()
    assert d2.guests() == [pid]
    assert cgroup_dirs(pid) == dirs                       # swept by no one
    check_limits(dirs)
    assert recorded_cgroup(d2, uuid) in dirs["cpu"]
    r = virsh(d2.uri(), "destroy", "kept")
    assert r.returncode == 0, r.stderr
    for d in dirs.values():
        assert not os.path.exists(d)
    assert_nothing_left(d2)


@pytest.mark.parametrize("point", ["cgroup-unrecorded", "cgroup-unremoved"])
def test_restart_sweeps_a_cgroup_no_run_owns(start_daemon, kvm, point):
    """The daemon killed (-9, by itself at a named point) while a cgroup of
    its own exists that no record names: just made for a start, or as a
    run ends, between removing its record and its cgroup.  The next daemon
    removes it."""
    d = start_daemon(env=dict(os.environ, VIRTKVMMD_TEST_CRASH_AT=point))
    c = libvirt.open(d.uri())
    dom = c.defineXML(tuned_xml(d.root, "swept"))
    uuid = dom.UUIDString()
    if point == "cgroup-unrecorded":
        with pytest.raises(libvirt.libvirtError):
            dom.create()
    else:
        dom.create()
        [pid] = d.guests()
        dirs = cgroup_dirs(pid)
        with pytest.raises(libvirt.libvirtError):
            dom.destroy()
    assert d.proc.wait(60) == -signal.SIGKILL, d.output()
    wait_for(lambda: not d.guests(), "kvmm, or the child held before it, to go")
    assert status_text(d, uuid) is None
    v1, v2 = mounts()
    if point == "cgroup-unrecorded":
        bases = [v2] if v2 and os.path.exists(os.path.join(v2, "machine")) and not os.path.exists(
            os.path.join(v1.get("cpu", "/nonexistent"), "machine")) else [v1["cpu"], v1["memory"]]
        dirs = {}
        for b in bases:
            parent = os.path.join(b, "machine")
            found = [os.path.join(parent, k, uuid) for k in os.listdir(parent)
                     if os.path.isdir(os.path.join(parent, k, uuid))]
            assert len(found) == 1, found
            dirs[b] = found[0]
    for x in dirs.values():
        assert os.path.isdir(x), x                      # in the window: it is there
    d2 = start_daemon(root=d.root)
    out = d2.output()
    assert "removing cgroup" in out, out
    for x in dirs.values():
        assert not os.path.exists(x), x
    assert_nothing_left(d2)


def test_schedinfo_and_memtune_change_the_cgroup(daemon, kvm):
    """virsh schedinfo and memtune as libvirt's: --live writes the run's
    cgroup and the live XML, --config the definition only."""
    c = libvirt.open(daemon.uri())
    dom = c.defineXML(tuned_xml(daemon.root, "knobs"))
    dom.create()
    [pid] = daemon.guests()
    dirs = cgroup_dirs(pid)
    v2 = not os.path.exists(os.path.join(dirs["cpu"], "cpu.shares"))
    uri = daemon.uri()

    r = virsh(uri, "schedinfo", "knobs")
    assert r.returncode == 0, r.stderr
    assert re.search(r"Scheduler\s*: posix", r.stdout), r.stdout
    assert re.search(r"cpu_shares\s*: 512\n", r.stdout), r.stdout
    assert re.search(r"vcpu_period\s*: 50000\n", r.stdout), r.stdout
    assert re.search(r"vcpu_quota\s*: 40000\n", r.stdout), r.stdout

    r = virsh(uri, "schedinfo", "knobs", "--live", "--set", "cpu_shares=300")
    assert r.returncode == 0, r.stderr
    assert read(dirs["cpu"], "cpu.weight" if v2 else "cpu.shares") == "300"
    r = virsh(uri, "schedinfo", "knobs", "--live", "--set", "vcpu_quota=20000")
    assert r.returncode == 0, r.stderr
    assert read(dirs["cpu"], "cpu.max" if v2 else "cpu.cfs_quota_us") == (
        "20000 50000" if v2 else "20000")
    assert "<shares>300</shares>" in dom.XMLDesc(0)
    assert "<shares>512</shares>" in dom.XMLDesc(L.VIR_DOMAIN_XML_INACTIVE)

    r = virsh(uri, "schedinfo", "knobs", "--config", "--set", "cpu_shares=700")
    assert r.returncode == 0, r.stderr
    assert read(dirs["cpu"], "cpu.weight" if v2 else "cpu.shares") == "300"
    assert "<shares>700</shares>" in dom.XMLDesc(L.VIR_DOMAIN_XML_INACTIVE)

    # not offered (kvmm's VM is one cgroup), so virsh has none to set
    r = virsh(uri, "schedinfo", "knobs", "--live", "--set", "emulator_period=100000")
    assert r.returncode != 0 and "emulator_period" in r.stderr, r.stderr
    r = virsh(uri, "schedinfo", "knobs", "--live", "--set", "vcpu_period=10")
    assert r.returncode != 0 and "out of range" in r.stderr, r.stderr

    # python3-libvirt's calls, the flagless ones (procedures 57, 58) too
    assert tuple(dom.schedulerType()) == ("posix", 3)
    assert dom.schedulerParameters() == {"cpu_shares": 300, "vcpu_period": 50000, "vcpu_quota": 20000}
    dom.setSchedulerParameters({"vcpu_period": 60000})
    assert read(dirs["cpu"], "cpu.max" if v2 else "cpu.cfs_period_us") == (
        "20000 60000" if v2 else "60000")
    assert dom.schedulerParametersFlags(L.VIR_DOMAIN_AFFECT_CONFIG) == {
        "cpu_shares": 700, "vcpu_period": 50000, "vcpu_quota": 40000}

    r = virsh(uri, "memtune", "knobs")
    assert r.returncode == 0, r.stderr
    assert re.search(r"hard_limit\s*: 1048576\n", r.stdout), r.stdout
    assert re.search(r"soft_limit\s*: 786432\n", r.stdout), r.stdout
    assert re.search(r"swap_hard_limit\s*: unlimited\n", r.stdout), r.stdout
    r = virsh(uri, "memtune", "knobs", "--live", "--hard-limit", "900000")
    assert r.returncode == 0, r.stderr
    assert read(dirs["memory"], "memory.max" if v2 else "memory.limit_in_bytes") == str(900000 * 1024)
    assert "<hard_limit unit='KiB'>900000</hard_limit>" in dom.XMLDesc(0)
    assert "<hard_limit unit='KiB'>1048576</hard_limit>" in dom.XMLDesc(L.VIR_DOMAIN_XML_INACTIVE)
    r = virsh(uri, "memtune", "knobs", "--live", "--soft-limit", "-1")
    assert r.returncode == 0, r.stderr
    assert "<soft_limit" not in dom.XMLDesc(0)
    assert int(read(dirs["memory"], "memory.soft_limit_in_bytes")) > 1 << 50 if not v2 else \
        read(dirs["memory"], "memory.high") == "max"
    # refused by the daemon, by name (virsh sends what it is given)
    r = virsh(uri, "memtune", "knobs", "--live", "--min-guarantee", "1000")
    assert r.returncode != 0 and "parameter 'min_guarantee' not supported" in r.stderr, r.stderr
    r = virsh(uri, "memtune", "knobs", "--live", "--swap-hard-limit", "1000")
    assert r.returncode != 0 and "less than or equal to swap_hard_limit" in r.stderr, r.stderr
    r = virsh(uri, "memtune", "knobs", "--config", "--hard-limit", "2000000")
    assert r.returncode == 0, r.stderr
    assert "<hard_limit unit='KiB'>2000000</hard_limit>" in dom.XMLDesc(L.VIR_DOMAIN_XML_INACTIVE)
    assert read(dirs["memory"], "memory.max" if v2 else "memory.limit_in_bytes") == str(900000 * 1024)
    dom.destroy()
    # the next start takes the config values
    dom.create()
    [pid] = daemon.guests()
    dirs = cgroup_dirs(pid)
    assert read(dirs["cpu"], "cpu.weight" if v2 else "cpu.shares") == "700"
    assert read(dirs["memory"], "memory.max" if v2 else "memory.limit_in_bytes") == str(2000000 * 1024)
    dom.destroy()
    c.close()


def fake_cgroup_root(controllers):
    """A --root whose daemon sees, instead of the host's hierarchies, a v1
    layout with only CONTROLLERS (virtkvmmd.conf's cgroup_root, for tests)."""
    from test_config import root_with_conf
    root = root_with_conf("")
    cg = os.path.join(root, "cgroup")
    for c in controllers:
        os.makedirs(os.path.join(cg, c))
    os.makedirs(cg, exist_ok=True)
    with open(os.path.join(root, "etc", "libvirt", "virtkvmmd.conf"), "w") as f:
        f.write(f'cgroup_root = "{cg}"\n')
    return root, cg


def test_missing_controller_refuses_the_tunable(start_daemon, kvm):
    root, cg = fake_cgroup_root([])
    d = start_daemon(root=root)
    c = libvirt.open(d.uri())
    # no hierarchy and nothing asked of one: it runs in the daemon's cgroup
    plain = c.defineXML(guest_xml(root, "plain"))
    plain.create()
    assert "<cgroup" not in status_text(d, plain.UUIDString())
    plain.destroy()
    tuned = c.defineXML(tuned_xml(root, "tuned"))
    with pytest.raises(libvirt.libvirtError) as e:
        tuned.create()
    assert e.value.get_error_code() == L.VIR_ERR_CONFIG_UNSUPPORTED
    assert "cgroup cpu controller is not mounted: <cputune> cannot be honoured" in str(e.value)
    assert_nothing_left(d)
    c.close()


def test_missing_memory_controller_refuses_memtune(start_daemon, kvm):
    root, cg = fake_cgroup_root(["cpu"])
    d = start_daemon(root=root)
    c = libvirt.open(d.uri())
    dom = c.defineXML(tuned_xml(root, "tuned"))
    with pytest.raises(libvirt.libvirtError) as e:
        dom.create()
    assert "cgroup memory controller is not mounted: <memtune> cannot be honoured" in str(e.value)
    assert_nothing_left(d)
    assert not os.path.exists(os.path.join(cg, "cpu", "machine"))     # checked before any is made
    c.close()


def test_v2_files(start_daemon, kvm):
    """cgroup v2's files, through a fake v2 root (this host may have its
    cpu and memory controllers on v1): controllers enabled down the path,
    cpu.weight, cpu.max with the VM's quota (per-vCPU quota x vCPUs),
    memory.max, memory.high, memory.swap.max (swap alone), and the pid."""
    from test_config import root_with_conf
    root = root_with_conf("")
    cg = os.path.join(root, "cgroup")
    os.makedirs(cg)
    with open(os.path.join(cg, "cgroup.controllers"), "w") as f:
        f.write("cpuset cpu io memory pids\n")
    with open(os.path.join(root, "etc", "libvirt", "virtkvmmd.conf"), "w") as f:
        f.write(f'cgroup_root = "{cg}"\n')
    d = start_daemon(root=root)
    c = libvirt.open(d.uri())
    xml = tuned_xml(root, "v2").replace("<vcpu>1</vcpu>", "<vcpu>2</vcpu>").replace(
        "</memtune>", "<swap_hard_limit unit='MiB'>1536</swap_hard_limit></memtune>")
    dom = c.defineXML(xml)
    dom.create()
    [pid] = d.guests()
    path = recorded_cgroup(d, dom.UUIDString())
    vm = cg + path
    assert read(vm, "cgroup.procs") == str(pid)
    assert read(cg, "cgroup.subtree_control") == "+memory"          # the last one written
    assert read(os.path.dirname(vm), "cgroup.subtree_control") == "+memory"
    assert read(vm, "cpu.weight") == "512"
    assert read(vm, "cpu.max") == "80000 50000"
    assert read(vm, "memory.max") == str(1024 << 20)
    assert read(vm, "memory.high") == str(768 << 20)
    assert read(vm, "memory.swap.max") == str(512 << 20)
    r = virsh(d.uri(), "schedinfo", "v2", "--live", "--set", "cpu_shares=20000")
    assert r.returncode != 0 and "must be in range [1, 10000]" in r.stderr, r.stderr
    r = virsh(d.uri(), "schedinfo", "v2", "--live", "--set", "vcpu_quota=-1")
    assert r.returncode == 0, r.stderr
    assert read(vm, "cpu.max") == "max 50000"
    dom.destroy()
    c.close()
