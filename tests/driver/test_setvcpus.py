"""virsh setvcpus / vcpucount on a running kvmm guest through virtkvmmd
(vCPU hotplug, docs/hotplug.md): <vcpu current='N'>M</vcpu> starts kvmm
with N of M vCPUs; setvcpus --live adds vCPUs the test guest
(kvmmtest.cpuhp) starts and runs on, and removes one it gives back; the
live XML, dominfo, vcpuinfo and the status file follow, a daemon restart
keeps the count; --config and --maximum --config change the definition;
libvirt's refusals."""
import glob
import os
import signal

import libvirt
import pytest

from drvtest import virsh
from kvmmtest import wait_record
from test_attach_detach import api_of
from test_lifecycle import guest_xml, serial, state_dir

L = libvirt
CMDLINE = " kvmmtest.cpuhp=120 kvmmtest.cpuhp.adds=2 kvmmtest.cpuhp.removals=1"


def vcpu_xml(root, name="vc", current=1, maximum=3):
    return guest_xml(root, name, extra_cmdline=CMDLINE).replace(
        "<vcpu>1</vcpu>", f"<vcpu current='{current}'>{maximum}</vcpu>")


def refused(fn, code, words):
    with pytest.raises(libvirt.libvirtError) as e:
        fn()
    assert e.value.get_error_code() == code, str(e.value)
    assert words in str(e.value), str(e.value)


def guest_record(d, pattern, what):
    return wait_record(lambda: serial(d.root, "vc"), pattern, what, timeout=60)


def vcpucount(uri, *flags):
    r = virsh(uri, "vcpucount", "vc", *flags)
    assert r.returncode == 0, r.stderr
    return int(r.stdout.strip())


def status_file(d):
    st = glob.glob(os.path.join(state_dir(d), "*.xml"))
    assert len(st) == 1, st
    with open(st[0]) as f:
        return f.read()


def test_setvcpus_live_and_config(start_daemon, kvm):
    d = start_daemon()
    uri = d.uri()
    conn = libvirt.open(uri)
    dom = conn.defineXML(vcpu_xml(d.root))
    assert "<vcpu placement='static' current='1'>3</vcpu>" in dom.XMLDesc(0)
    assert vcpucount(uri, "--config", "--maximum") == 3
    assert vcpucount(uri, "--config", "--current") == 1
    dom.create()
    guest_record(d, r"KVMMTEST event cpuhp-ready online=1", "the guest's CPU hotplug")
    assert dom.info()[3] == 1
    assert vcpucount(uri, "--live", "--maximum") == 3
    assert vcpucount(uri, "--live", "--current") == 1
    assert len(dom.vcpus()[0]) == 1

    # Up to the maximum: the guest starts both and runs on each.
    r = virsh(uri, "setvcpus", "vc", "3", "--live")
    assert r.returncode == 0, r.stderr
    for apic in (1, 2):
        guest_record(d, rf"KVMMTEST pass cpu-work apic_id={apic} ", f"vCPU {apic} running")
    assert vcpucount(uri, "--live", "--current") == 3
    assert dom.info()[3] == 3
    info = dom.vcpus()[0]
    assert [(v[0], v[1]) for v in info] == [(i, L.VIR_VCPU_RUNNING) for i in range(3)], info
    assert "<vcpu placement='static'>3</vcpu>" in dom.XMLDesc(0)
    assert "<vcpu placement='static'>3</vcpu>" in status_file(d)
    # --live only: the definition keeps its current='1'
    assert vcpucount(uri, "--config", "--current") == 1

    r = virsh(uri, "setvcpus", "vc", "4", "--live")
    assert r.returncode != 0
    assert "requested vcpus is greater than max allowable vcpus for the live domain: 4 > 3" in r.stderr, r.stderr
    refused(lambda: dom.setVcpusFlags(4, L.VIR_DOMAIN_AFFECT_LIVE | L.VIR_DOMAIN_AFFECT_CONFIG |
                                      L.VIR_DOMAIN_VCPU_MAXIMUM),
            L.VIR_ERR_CONFIG_UNSUPPORTED, "maximum vcpu count of a live domain can't be modified")

    # Down by one (python3-libvirt): returns once the guest ejected it.
    dom.setVcpusFlags(2, L.VIR_DOMAIN_AFFECT_LIVE)
    guest_record(d, r"KVMMTEST pass cpu-offline apic_id=2 ", "the guest's eject")
    assert dom.vcpusFlags(L.VIR_DOMAIN_AFFECT_LIVE) == 2
    assert dom.info()[3] == 2
    assert "<vcpu placement='static' current='2'>3</vcpu>" in dom.XMLDesc(0)
    assert "<vcpu placement='static' current='2'>3</vcpu>" in status_file(d)
    guest_record(d, r"KVMMTEST pass cpuhp added=2 removed=1 online=2", "the guest's count")

    # The definition: current, then the maximum (the live domain's stays).
    r = virsh(uri, "setvcpus", "vc", "2", "--config")
    assert r.returncode == 0, r.stderr
    assert vcpucount(uri, "--config", "--current") == 2
    r = virsh(uri, "setvcpus", "vc", "5", "--config")
    assert r.returncode != 0
    assert "requested vcpus is greater than max allowable vcpus for the persistent domain: 5 > 3" in r.stderr
    r = virsh(uri, "setvcpus", "vc", "4", "--maximum", "--config")
    assert r.returncode == 0, r.stderr
    assert vcpucount(uri, "--config", "--maximum") == 4
    assert vcpucount(uri, "--live", "--maximum") == 3
    assert "<vcpu placement='static' current='2'>4</vcpu>" in dom.XMLDesc(L.VIR_DOMAIN_XML_INACTIVE)
    conn.close()

    # A restarted daemon has the count from the status file.
    os.kill(d.proc.pid, signal.SIGKILL)
    d.proc.wait()
    d2 = start_daemon(root=d.root)
    conn = libvirt.open(d2.uri())
    dom = conn.lookupByName("vc")
    assert dom.vcpusFlags(L.VIR_DOMAIN_AFFECT_LIVE) == 2
    assert dom.vcpusFlags(L.VIR_DOMAIN_AFFECT_LIVE | L.VIR_DOMAIN_VCPU_MAXIMUM) == 3
    assert dom.info()[3] == 2
    # vCPU 2 was ejected: KVM cannot create it again before a reset.
    refused(lambda: dom.setVcpusFlags(3, L.VIR_DOMAIN_AFFECT_LIVE),
            L.VIR_ERR_OPERATION_FAILED, "only 2 vCPUs can be plugged in")
    assert dom.vcpusFlags(L.VIR_DOMAIN_AFFECT_LIVE) == 2
    assert "KVMMTEST fail" not in serial(d.root, "vc")
    dom.destroy()
    # The next start takes the definition's current='2' of 4.
    dom.create()
    guest_record(d2, r"KVMMTEST event cpuhp-ready online=2", "the second boot")
    assert dom.vcpusFlags(L.VIR_DOMAIN_AFFECT_LIVE | L.VIR_DOMAIN_VCPU_MAXIMUM) == 4
    assert dom.vcpusFlags(L.VIR_DOMAIN_AFFECT_LIVE) == 2
    dom.destroy()
    conn.close()


def test_setvcpus_refusals(daemon, kvm):
    d = daemon
    conn = libvirt.open(d.uri())
    dom = conn.defineXML(vcpu_xml(d.root))
    refused(lambda: dom.setVcpusFlags(2, L.VIR_DOMAIN_AFFECT_LIVE),
            L.VIR_ERR_OPERATION_INVALID, "domain is not running")
    refused(lambda: dom.setVcpusFlags(2, L.VIR_DOMAIN_VCPU_GUEST),
            L.VIR_ERR_ARGUMENT_UNSUPPORTED, "no guest agent")
    r = virsh(d.uri(), "setvcpus", "vc", "300", "--maximum", "--config")
    assert r.returncode != 0 and "max allowable vcpus for the domain: 300 > 254" in r.stderr, r.stderr
    # Inactive, no flag: the definition.
    dom.setVcpusFlags(3, 0)
    assert dom.vcpusFlags(L.VIR_DOMAIN_AFFECT_CONFIG) == 3
    assert "<vcpu placement='static'>3</vcpu>" in dom.XMLDesc(0)
    dom.undefine()
    conn.close()


def test_setvcpus_guest_that_does_not_eject(daemon, kvm):
    """A guest that ignores the removal keeps its vCPU: libvirt's timeout
    error after 5 s, the live count unchanged, kvmm's request pending."""
    d = daemon
    conn = libvirt.open(d.uri())
    dom = conn.defineXML(guest_xml(d.root, "vc").replace("<vcpu>1</vcpu>", "<vcpu current='2'>3</vcpu>"))
    dom.create()
    wait_record(lambda: serial(d.root, "vc"), r"KVMMTEST pass smp cpus=2", "the guest's boot", timeout=60)
    refused(lambda: dom.setVcpusFlags(1, L.VIR_DOMAIN_AFFECT_LIVE),
            L.VIR_ERR_OPERATION_TIMEOUT, "vcpu unplug request timed out")
    assert dom.vcpusFlags(L.VIR_DOMAIN_AFFECT_LIVE) == 2
    assert "<vcpu placement='static' current='2'>3</vcpu>" in dom.XMLDesc(0)
    r = virsh(d.uri(), "setvcpus", "vc", "3", "--live")
    assert r.returncode == 0, r.stderr
    assert dom.vcpusFlags(L.VIR_DOMAIN_AFFECT_LIVE) == 3
    dom.destroy()
    conn.close()


def removing(d, dom):
    api = api_of(d, dom)
    try:
        return sorted(c["id"] for c in api.call("query-cpus")["return"] if c["state"] == "removing")
    finally:
        api.close()


def asked(d, command):
    """How many times the daemon asked kvmm COMMAND (its debug log)."""
    return d.output().count(f" <- {command}\n")


def removal(d, dom, n):
    """setvcpus --live N, refused by the guest that does not eject; the
    kvmm commands it took."""
    before = {c: asked(d, c) for c in ("query-cpus", "query-status", "cpu-del")}
    refused(lambda: dom.setVcpusFlags(n, L.VIR_DOMAIN_AFFECT_LIVE),
            L.VIR_ERR_OPERATION_TIMEOUT, "vcpu unplug request timed out")
    return {c: asked(d, c) - k for c, k in before.items()}


def test_setvcpus_removal_ids_across_restarts(start_daemon, kvm):
    """The daemon keeps the run's vCPU ids (start, cpu-add) so that a
    removal asks kvmm cpu-del alone; a restarted daemon reads them again
    (query-cpus): each removal asks back the highest vCPU there, which
    kvmm shows being removed (the guest never ejects)."""
    d = start_daemon()
    conn = libvirt.open(d.uri())
    dom = conn.defineXML(guest_xml(d.root, "vc").replace("<vcpu>1</vcpu>", "<vcpu current='2'>4</vcpu>"))
    dom.create()
    wait_record(lambda: serial(d.root, "vc"), r"KVMMTEST pass smp cpus=2", "the guest's boot", timeout=60)
    # from the start config: vCPU 1
    assert removal(d, dom, 1) == {"query-cpus": 0, "query-status": 0, "cpu-del": 1}
    assert removing(d, dom) == [1]
    conn.close()

    os.kill(d.proc.pid, signal.SIGKILL)
    d.proc.wait()
    d = start_daemon(root=d.root)
    conn = libvirt.open(d.uri())
    dom = conn.lookupByName("vc")
    assert dom.vcpusFlags(L.VIR_DOMAIN_AFFECT_LIVE) == 2
    # the adopted run's ids from kvmm, then the added vCPUs 2 and 3
    dom.setVcpusFlags(4, L.VIR_DOMAIN_AFFECT_LIVE)
    assert dom.vcpusFlags(L.VIR_DOMAIN_AFFECT_LIVE) == 4
    assert removal(d, dom, 3) == {"query-cpus": 0, "query-status": 0, "cpu-del": 1}
    assert removing(d, dom) == [1, 3]
    conn.close()

    # adopted again, a removal first: the ids come from kvmm
    os.kill(d.proc.pid, signal.SIGKILL)
    d.proc.wait()
    d = start_daemon(root=d.root)
    conn = libvirt.open(d.uri())
    dom = conn.lookupByName("vc")
    assert removal(d, dom, 2)["query-cpus"] == 1
    assert removing(d, dom) == [1, 2, 3]
    assert dom.vcpusFlags(L.VIR_DOMAIN_AFFECT_LIVE) == 4
    assert "KVMMTEST fail" not in serial(d.root, "vc")
    dom.destroy()
    conn.close()


def test_setvcpus_without_vcpu_hotplug(daemon, kvm):
    """A domain started with all its vCPUs has no CPU hotplug: refused."""
    d = daemon
    conn = libvirt.open(d.uri())
    dom = conn.defineXML(guest_xml(d.root, "vc").replace("<vcpu>1</vcpu>", "<vcpu>2</vcpu>"))
    dom.create()
    # the second time from what the daemon learnt of the run the first
    for _ in range(2):
        refused(lambda: dom.setVcpusFlags(1, L.VIR_DOMAIN_AFFECT_LIVE),
                L.VIR_ERR_OPERATION_UNSUPPORTED,
                "vcpu hotplug needs a domain started with <vcpu current='N'> below its maximum")
    assert dom.vcpusFlags(L.VIR_DOMAIN_AFFECT_LIVE) == 2
    dom.destroy()
    conn.close()
