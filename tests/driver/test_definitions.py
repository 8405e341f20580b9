"""Persistent domain definitions in virtkvmmd, driven by the real virsh and
python3-libvirt against a private daemon (--root in a temp dir)."""
import os
import signal
import subprocess
import time
import uuid as uuidlib

import libvirt
import pytest

from drvtest import Daemon, virsh
from kvmmtest import GUEST

UUID1 = "5d3b8f36-3c1b-4f2e-9a57-0c1d2e3f4a5b"


def domain_xml(name="g1", uuid=UUID1, extra="", devices=""):
    return f"""<domain type='kvm'>
  <name>{name}</name>
  {f"<uuid>{uuid}</uuid>" if uuid else ""}
  <memory unit='MiB'>64</memory>
  <vcpu>2</vcpu>
  {extra}
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{GUEST}</kernel>
  </os>
  <devices>{devices}</devices>
</domain>
"""


def write(tmp, name, text):
    path = os.path.join(tmp, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def ok(r):
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def fail(r, text):
    assert r.returncode != 0, r.stdout
    assert text in r.stderr, r.stderr
    return r.stderr


def refused(call, code, text, domain=None):
    """CALL() fails with libvirt's error CODE (and DOMAIN, when given),
    TEXT in its message: the code is what programs act on."""
    with pytest.raises(libvirt.libvirtError) as e:
        call()
    err = e.value
    assert (err.get_error_code(), err.get_error_domain() if domain is not None else None) == \
        (code, domain), str(err)
    assert text in str(err), str(err)
    return err


def confdir(d):
    return os.path.join(d.root, "etc", "libvirt", "kvmm")


def validates(tmp, xml):
    path = write(tmp, "emitted.xml", xml)
    r = subprocess.run(["virt-xml-validate", path, "domain"], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr + xml


def names(out):
    lines = out.splitlines()[2:]
    return sorted(l.split()[1] for l in lines if l.strip())


@pytest.fixture
def defined(daemon, tmp):
    ok(virsh(daemon.uri(), "define", write(tmp, "g1.xml", domain_xml())))
    return daemon


def test_define_list_dumpxml(defined, tmp):
    d = defined
    assert names(ok(virsh(d.uri(), "list", "--all"))) == ["g1"]
    assert names(ok(virsh(d.uri(), "list", "--inactive"))) == ["g1"]
    assert names(ok(virsh(d.uri(), "list", "--persistent", "--all"))) == ["g1"]
    assert names(ok(virsh(d.uri(), "list"))) == []
    assert names(ok(virsh(d.uri(), "list", "--all", "--transient"))) == []
    for flags in ((), ("--inactive",), ("--security-info",), ("--migratable",)):
        xml = ok(virsh(d.uri(), "dumpxml", "g1", *flags))
        assert "<name>g1</name>" in xml and f"<uuid>{UUID1}</uuid>" in xml
        assert f"<kernel>{GUEST}</kernel>" in xml
        validates(tmp, xml)
    # migratable leaves out the controllers the parser added
    assert "pci-root" in ok(virsh(d.uri(), "dumpxml", "g1"))
    assert "pci-root" not in ok(virsh(d.uri(), "dumpxml", "g1", "--migratable"))
    # the file on disk is the inactive definition, and valid
    with open(os.path.join(confdir(d), "g1.xml")) as f:
        validates(tmp, f.read())


def test_define_validate(daemon, tmp):
    ok(virsh(daemon.uri(), "define", "--validate", write(tmp, "g.xml", domain_xml())))
    bad = domain_xml(name="g2", uuid=None, extra="<bogus/>")
    err = fail(virsh(daemon.uri(), "define", "--validate", write(tmp, "b.xml", bad)),
               "XML document failed to validate against schema: Unable to validate doc against "
               "/usr/share/libvirt/schemas/domain.rng")
    assert "bogus" in err or "domain" in err
    assert "call virDomainDefineXMLFlags (350)" in daemon.output()
    # without --validate our own parser refuses it by name
    fail(virsh(daemon.uri(), "define", write(tmp, "b.xml", bad)),
         "element <bogus> is not supported by kvmm")
    c = libvirt.open(daemon.uri())
    try:
        refused(lambda: c.defineXMLFlags(bad, libvirt.VIR_DOMAIN_DEFINE_VALIDATE),
                libvirt.VIR_ERR_XML_INVALID_SCHEMA, "Unable to validate doc against")
        refused(lambda: c.defineXML(bad), libvirt.VIR_ERR_CONFIG_UNSUPPORTED,
                "element <bogus> is not supported by kvmm", libvirt.VIR_FROM_DOMAIN)
    finally:
        c.close()


def test_redefine_updates(defined, tmp):
    d = defined
    r = ok(virsh(d.uri(), "define", write(tmp, "g1.xml", domain_xml(extra="<title>T2</title>"))))
    assert "Domain 'g1' defined" in r
    assert names(ok(virsh(d.uri(), "list", "--all"))) == ["g1"]
    assert ok(virsh(d.uri(), "desc", "g1", "--title")).strip() == "T2"
    assert "redefined" in d.output()


def test_name_or_uuid_taken(defined, tmp):
    d = defined
    other = str(uuidlib.uuid4())
    fail(virsh(d.uri(), "define", write(tmp, "x.xml", domain_xml(uuid=other))),
         f"operation failed: domain 'g1' already exists with uuid {UUID1}")
    fail(virsh(d.uri(), "define", write(tmp, "x.xml", domain_xml(name="g9"))),
         f"operation failed: domain 'g1' is already defined with uuid {UUID1}")
    c = libvirt.open(d.uri())
    try:
        refused(lambda: c.defineXML(domain_xml(uuid=other)), libvirt.VIR_ERR_OPERATION_FAILED,
                f"domain 'g1' already exists with uuid {UUID1}")
        refused(lambda: c.defineXML(domain_xml(name="g9")), libvirt.VIR_ERR_OPERATION_FAILED,
                f"domain 'g1' is already defined with uuid {UUID1}")
    finally:
        c.close()
    assert names(ok(virsh(d.uri(), "list", "--all"))) == ["g1"]


def test_dominfo_domstate_ids(defined):
    d = defined
    out = ok(virsh(d.uri(), "dominfo", "g1"))
    info = {k.strip(): v.strip() for k, v in (l.split(":", 1) for l in out.splitlines() if ":" in l)}
    assert info["State"] == "shut off"
    assert info["Id"] == "-"
    assert info["UUID"] == UUID1
    assert info["OS Type"] == "hvm"
    assert info["CPU(s)"] == "2"
    assert info["Max memory"] == "65536 KiB" and info["Used memory"] == "65536 KiB"
    assert info["Persistent"] == "yes" and info["Autostart"] == "disable"
    assert ok(virsh(d.uri(), "domstate", "--reason", "g1")).strip() == "shut off (unknown)"
    assert ok(virsh(d.uri(), "domuuid", "g1")).strip() == UUID1
    assert ok(virsh(d.uri(), "domname", UUID1)).strip() == "g1"
    assert ok(virsh(d.uri(), "domid", "g1")).strip() == "-"
    assert ok(virsh(d.uri(), "dominfo", UUID1)).count("g1") == 1


def test_unknown_domain_errors(defined):
    d = defined
    for args in (("dominfo", "nosuch"), ("dumpxml", "nosuch"), ("undefine", "nosuch")):
        fail(virsh(d.uri(), *args), "failed to get domain 'nosuch'")
    c = libvirt.open(d.uri())
    try:
        with pytest.raises(libvirt.libvirtError) as e:
            c.lookupByName("nosuch")
        assert e.value.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN
        assert "Domain not found: no domain with matching name 'nosuch'" in str(e.value)
        u = str(uuidlib.uuid4())
        with pytest.raises(libvirt.libvirtError) as e:
            c.lookupByUUIDString(u)
        assert e.value.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN
        assert f"no domain with matching uuid '{u}'" in str(e.value)
        refused(lambda: c.lookupByID(7), libvirt.VIR_ERR_NO_DOMAIN, "no domain with matching id 7")
        # a domain object whose domain went away
        dom = c.lookupByName("g1")
        dom.undefine()
        with pytest.raises(libvirt.libvirtError) as e:
            dom.XMLDesc()
        assert e.value.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN
        assert f"no domain with matching uuid '{UUID1}' (g1)" in str(e.value)
    finally:
        c.close()


def test_xml_errors(daemon, tmp):
    fail(virsh(daemon.uri(), "define", write(tmp, "m.xml", "<domain type='kvm'>\n<name>x</name>\n<oops>\n</domain>\n")),
         "(domain_definition):4:")
    fail(virsh(daemon.uri(), "define",
               write(tmp, "s.xml", domain_xml(devices="<sound model='ich6'/>"))),
         "device 'sound' is not supported by kvmm")
    c = libvirt.open(daemon.uri())
    try:
        refused(lambda: c.defineXML("<domain type='kvm'>\n<name>x</name>\n<oops>\n</domain>\n"),
                libvirt.VIR_ERR_XML_DETAIL, "(domain_definition):4:", libvirt.VIR_FROM_XML)
        refused(lambda: c.defineXML(domain_xml(devices="<sound model='ich6'/>")),
                libvirt.VIR_ERR_CONFIG_UNSUPPORTED, "device 'sound' is not supported by kvmm",
                libvirt.VIR_FROM_DOMAIN)
    finally:
        c.close()
    assert names(ok(virsh(daemon.uri(), "list", "--all"))) == []


def test_autostart(defined):
    d = defined
    link = os.path.join(confdir(d), "autostart", "g1.xml")
    ok(virsh(d.uri(), "autostart", "g1"))
    assert os.path.islink(link) and os.readlink(link) == os.path.join(confdir(d), "g1.xml")
    assert names(ok(virsh(d.uri(), "list", "--all", "--autostart"))) == ["g1"]
    assert names(ok(virsh(d.uri(), "list", "--all", "--no-autostart"))) == []
    assert "Autostart:      enable" in ok(virsh(d.uri(), "dominfo", "g1"))
    ok(virsh(d.uri(), "autostart", "--disable", "g1"))
    assert not os.path.lexists(link)
    assert names(ok(virsh(d.uri(), "list", "--all", "--autostart"))) == []


def test_desc_and_metadata(defined):
    d = defined
    assert "No description for domain: g1" in ok(virsh(d.uri(), "desc", "g1"))
    ok(virsh(d.uri(), "desc", "g1", "--title", "--config", "My title"))
    ok(virsh(d.uri(), "desc", "g1", "--config", "Some words"))
    assert ok(virsh(d.uri(), "desc", "g1", "--title")).strip() == "My title"
    assert ok(virsh(d.uri(), "desc", "g1")).strip() == "Some words"
    assert "My title" in ok(virsh(d.uri(), "list", "--all", "--title"))
    # --live on a domain that is not running: libvirt's refusal
    fail(virsh(d.uri(), "desc", "g1", "--live", "x"), "domain is not running")
    ok(virsh(d.uri(), "metadata", "g1", "--uri", "https://example.org/app", "--key", "app",
             "--config", "--set", "<cfg level='3'><x>y</x></cfg>"))
    out = ok(virsh(d.uri(), "metadata", "g1", "--uri", "https://example.org/app"))
    assert '<app:cfg xmlns:app="https://example.org/app" level="3">' in out
    xml = ok(virsh(d.uri(), "dumpxml", "g1"))
    assert "<title>My title</title>" in xml and "<description>Some words</description>" in xml
    assert "https://example.org/app" in xml
    with open(os.path.join(confdir(d), "g1.xml")) as f:
        assert "https://example.org/app" in f.read()
    ok(virsh(d.uri(), "metadata", "g1", "--uri", "https://example.org/app", "--remove"))
    fail(virsh(d.uri(), "metadata", "g1", "--uri", "https://example.org/app"),
         "metadata not found: Requested metadata element is not present")
    c = libvirt.open(d.uri())
    try:
        dom = c.lookupByName("g1")
        refused(lambda: dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, "https://example.org/app",
                                     libvirt.VIR_DOMAIN_AFFECT_CONFIG),
                libvirt.VIR_ERR_NO_DOMAIN_METADATA, "Requested metadata element is not present")
        refused(lambda: dom.setMetadata(libvirt.VIR_DOMAIN_METADATA_DESCRIPTION, "x", None, None,
                                        libvirt.VIR_DOMAIN_AFFECT_LIVE),
                libvirt.VIR_ERR_OPERATION_INVALID, "domain is not running")
    finally:
        c.close()


def test_domrename(defined, tmp):
    d = defined
    ok(virsh(d.uri(), "autostart", "g1"))
    ok(virsh(d.uri(), "domrename", "g1", "g2"))
    assert names(ok(virsh(d.uri(), "list", "--all"))) == ["g2"]
    assert ok(virsh(d.uri(), "domuuid", "g2")).strip() == UUID1
    files = sorted(os.listdir(confdir(d)))
    assert files == ["autostart", "g2.xml"], files
    assert os.listdir(os.path.join(confdir(d), "autostart")) == ["g2.xml"]
    ok(virsh(d.uri(), "define", write(tmp, "g3.xml", domain_xml(name="g3", uuid=None))))
    fail(virsh(d.uri(), "domrename", "g2", "g3"), "domain with name 'g3' already exists")
    c = libvirt.open(d.uri())
    try:
        refused(lambda: c.lookupByName("g2").rename("g3"), libvirt.VIR_ERR_OPERATION_INVALID,
                "domain with name 'g3' already exists")
    finally:
        c.close()


def test_undefine(defined, tmp):
    d = defined
    ok(virsh(d.uri(), "autostart", "g1"))
    r = ok(virsh(d.uri(), "undefine", "g1"))
    assert "Domain 'g1' has been undefined" in r
    assert names(ok(virsh(d.uri(), "list", "--all"))) == []
    assert sorted(os.listdir(confdir(d))) == ["autostart"]
    assert os.listdir(os.path.join(confdir(d), "autostart")) == []
    # flags that are no-ops for kvmm (nothing to remove) are accepted
    ok(virsh(d.uri(), "define", write(tmp, "g.xml", domain_xml())))
    ok(virsh(d.uri(), "undefine", "g1", "--nvram", "--managed-save", "--snapshots-metadata"))
    c = libvirt.open(d.uri())
    try:
        dom = c.defineXML(domain_xml())
        with pytest.raises(libvirt.libvirtError) as e:
            dom.undefineFlags(1 << 20)
        assert e.value.get_error_code() == libvirt.VIR_ERR_INVALID_ARG
        assert "unsupported flags (0x100000) in function virDomainUndefineFlags" in str(e.value)
    finally:
        c.close()


def test_readonly_refusals(defined, tmp):
    d = defined
    path = write(tmp, "g.xml", domain_xml(name="g5", uuid=None))
    for args, api in ((("define", path), "virDomainDefineXML"),
                      (("undefine", "g1"), "virDomainUndefine"),
                      (("autostart", "g1"), "virDomainSetAutostart"),
                      (("desc", "g1", "--config", "x"), "virDomainSetMetadata")):
        fail(virsh(d.uri(ro=True), *args, readonly=True),
             f"operation forbidden: read only access prevents {api}")
    ro = libvirt.openReadOnly(d.uri(ro=True))
    try:
        dom = ro.lookupByName("g1")
        for call, api in ((lambda: ro.defineXML(domain_xml(name="g5", uuid=None)), "virDomainDefineXML"),
                          (dom.undefine, "virDomainUndefine"),
                          (lambda: dom.setAutostart(1), "virDomainSetAutostart")):
            refused(call, libvirt.VIR_ERR_OPERATION_DENIED,
                    f"read only access prevents {api}")
    finally:
        ro.close()
    # reading works read-only
    assert names(ok(virsh(d.uri(ro=True), "list", "--all", readonly=True))) == ["g1"]
    ok(virsh(d.uri(ro=True), "dumpxml", "g1", readonly=True))
    assert names(ok(virsh(d.uri(), "list", "--all"))) == ["g1"]


def test_definitions_survive_restart(start_daemon, tmp):
    d = start_daemon()
    ok(virsh(d.uri(), "define", write(tmp, "a.xml", domain_xml(name="a", uuid=None))))
    ok(virsh(d.uri(), "define", write(tmp, "b.xml", domain_xml(name="b", uuid=UUID1))))
    ok(virsh(d.uri(), "autostart", "b"))
    before = ok(virsh(d.uri(), "dumpxml", "a"))
    d.stop()
    d2 = Daemon(d.root)
    try:
        d2.wait_ready()
        assert names(ok(virsh(d2.uri(), "list", "--all"))) == ["a", "b"]
        assert ok(virsh(d2.uri(), "dumpxml", "a")) == before
        assert names(ok(virsh(d2.uri(), "list", "--all", "--autostart"))) == ["b"]
    finally:
        d2.stop()


def test_corrupt_file_is_skipped(start_daemon, tmp):
    d = start_daemon()
    ok(virsh(d.uri(), "define", write(tmp, "a.xml", domain_xml(name="a", uuid=None))))
    d.stop()
    bad = os.path.join(confdir(d), "broken.xml")
    with open(bad, "w") as f:
        f.write("<domain type='kvm'><name>broken</name>")
    d2 = Daemon(d.root)
    try:
        d2.wait_ready()
        assert names(ok(virsh(d2.uri(), "list", "--all"))) == ["a"]
        assert f"skipping domain definition {bad}" in d2.output()
        # never overwritten by a define of that name
        fail(virsh(d2.uri(), "define", write(tmp, "b.xml", domain_xml(name="broken", uuid=None))),
             f"{bad} exists but is not a loaded definition")
        c = libvirt.open(d2.uri())
        try:
            refused(lambda: c.defineXML(domain_xml(name="broken", uuid=None)),
                    libvirt.VIR_ERR_OPERATION_FAILED, f"{bad} exists but is not a loaded definition")
        finally:
            c.close()
        with open(bad) as f:
            assert f.read() == "<domain type='kvm'><name>broken</name>"
        assert d2.alive()
    finally:
        d2.stop()


def test_kill_during_defines_leaves_no_half_file(start_daemon, tmp):
    d = start_daemon()
    c = libvirt.open(d.uri())
    deadline = time.monotonic() + 1.0
    n = 0
    try:
        while time.monotonic() < deadline:
            c.defineXML(domain_xml(name=f"k{n}", uuid=None))
            n += 1
    finally:
        c.close()
    assert n > 0
    # now kill it mid-stream: a writer thread keeps defining while we kill
    script = ("import libvirt, sys\n"
              f"c = libvirt.open({d.uri()!r})\n"
              "i = 0\n"
              "while True:\n"
              f"    c.defineXML({domain_xml(name='z', uuid=None)!r}.replace('<name>z<', '<name>z%d<' % i))\n"
              "    i += 1\n")
    writer = subprocess.Popen(["/usr/bin/python3", "-c", script], stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        os.kill(d.proc.pid, signal.SIGKILL)
        d.proc.wait()
    finally:
        writer.wait(timeout=10)
    files = os.listdir(confdir(d))
    for f in files:
        if f.endswith(".xml"):
            validates(tmp, open(os.path.join(confdir(d), f)).read())
    d2 = Daemon(d.root)
    try:
        d2.wait_ready()
        listed = names(ok(virsh(d2.uri(), "list", "--all")))
        assert len(listed) == len([f for f in files if f.endswith(".xml")])
        assert "skipping" not in d2.output()
        # stale temp files are cleaned up, never loaded
        assert not [f for f in os.listdir(confdir(d)) if ".xml.new-" in f]
    finally:
        d2.stop()


def test_python_libvirt(daemon):
    c = libvirt.open(daemon.uri())
    try:
        dom = c.defineXML(domain_xml())
        assert dom.name() == "g1" and dom.UUIDString() == UUID1 and dom.ID() == -1
        c.defineXML(domain_xml(name="g2", uuid=None))
        assert dom.isActive() == 0 and dom.isPersistent() == 1 and dom.isUpdated() == 0
        assert dom.OSType() == "hvm" and dom.maxMemory() == 65536
        assert dom.info() == [libvirt.VIR_DOMAIN_SHUTOFF, 65536, 65536, 2, 0]
        assert dom.state() == [libvirt.VIR_DOMAIN_SHUTOFF, libvirt.VIR_DOMAIN_SHUTOFF_UNKNOWN]
        assert dom.vcpusFlags(libvirt.VIR_DOMAIN_AFFECT_CONFIG) == 2
        assert dom.vcpusFlags(libvirt.VIR_DOMAIN_AFFECT_CONFIG | libvirt.VIR_DOMAIN_VCPU_MAXIMUM) == 2
        F = libvirt
        all_ = sorted(d.name() for d in c.listAllDomains())
        assert all_ == ["g1", "g2"]
        for flags, want in ((F.VIR_CONNECT_LIST_DOMAINS_ACTIVE, []),
                            (F.VIR_CONNECT_LIST_DOMAINS_INACTIVE, all_),
                            (F.VIR_CONNECT_LIST_DOMAINS_PERSISTENT, all_),
                            (F.VIR_CONNECT_LIST_DOMAINS_TRANSIENT, []),
                            (F.VIR_CONNECT_LIST_DOMAINS_SHUTOFF, all_),
                            (F.VIR_CONNECT_LIST_DOMAINS_RUNNING | F.VIR_CONNECT_LIST_DOMAINS_PAUSED
                             | F.VIR_CONNECT_LIST_DOMAINS_OTHER, []),
                            (F.VIR_CONNECT_LIST_DOMAINS_NO_MANAGEDSAVE, all_),
                            (F.VIR_CONNECT_LIST_DOMAINS_MANAGEDSAVE, []),
                            (F.VIR_CONNECT_LIST_DOMAINS_NO_SNAPSHOT, all_),
                            (F.VIR_CONNECT_LIST_DOMAINS_HAS_SNAPSHOT, []),
                            (F.VIR_CONNECT_LIST_DOMAINS_NO_CHECKPOINT, all_),
                            (F.VIR_CONNECT_LIST_DOMAINS_INACTIVE | F.VIR_CONNECT_LIST_DOMAINS_ACTIVE, all_)):
            assert sorted(d.name() for d in c.listAllDomains(flags)) == want, flags
        dom.setAutostart(1)
        assert dom.autostart() == 1
        assert [d.name() for d in c.listAllDomains(F.VIR_CONNECT_LIST_DOMAINS_AUTOSTART)] == ["g1"]
        assert [d.name() for d in c.listAllDomains(F.VIR_CONNECT_LIST_DOMAINS_NO_AUTOSTART)] == ["g2"]
        assert c.numOfDomains() == 0 and c.listDomainsID() == []
        assert c.numOfDefinedDomains() == 2 and sorted(c.listDefinedDomains()) == all_
        assert c.lookupByName("g1").UUIDString() == UUID1
        assert c.lookupByUUIDString(UUID1).name() == "g1"
        x = dom.XMLDesc(0)
        assert "<name>g1</name>" in x
        assert dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE) == x
        with pytest.raises(libvirt.libvirtError) as e:
            dom.XMLDesc(libvirt.VIR_DOMAIN_XML_UPDATE_CPU)
        assert e.value.get_error_code() == libvirt.VIR_ERR_INVALID_ARG
        dom.undefine()
        assert [d.name() for d in c.listAllDomains()] == ["g2"]
        c.lookupByName("g2").undefineFlags(0)
        assert c.listAllDomains() == []
    finally:
        c.close()


def test_memory_is_rounded_to_pages_at_define_and_runs(daemon, kvm, tmp):
    """16385 KiB is no whole number of 4 KiB pages: define rounds it up
    (dumpxml, live and inactive, shows 16388 KiB), and the domain starts
    with that size in kvmm instead of failing there."""
    d = daemon
    log = os.path.join(tmp, "serial.log")
    xml = f"""<domain type='kvm'>
  <name>odd</name>
  <memory unit='KiB'>16385</memory>
  <os><type>hvm</type><kernel>{GUEST}</kernel>
    <cmdline>kvmmtest.action=wait</cmdline></os>
  <devices><serial type='file'><source path='{log}'/></serial></devices>
</domain>
"""
    ok(virsh(d.uri(), "define", write(tmp, "odd.xml", xml)))
    for flags in ((), ("--inactive",)):
        out = ok(virsh(d.uri(), "dumpxml", "odd", *flags))
        assert "<memory unit='KiB'>16388</memory>" in out, out
        assert "<currentMemory unit='KiB'>16388</currentMemory>" in out, out
    with open(os.path.join(confdir(d), "odd.xml")) as f:
        assert "<memory unit='KiB'>16388</memory>" in f.read()
    r = virsh(d.uri(), "start", "odd")
    assert r.returncode == 0, r.stdout + r.stderr
    try:
        deadline = time.monotonic() + 60
        while "KVMMTEST done" not in (open(log).read() if os.path.exists(log) else ""):
            assert time.monotonic() < deadline, "the guest did not finish its checks"
            assert ok(virsh(d.uri(), "domstate", "odd")).strip() == "running"
            time.sleep(0.05)
        assert "KVMMTEST fail" not in open(log).read()
        assert "<memory unit='KiB'>16388</memory>" in ok(virsh(d.uri(), "dumpxml", "odd"))
        with open(os.path.join(d.root, "log", "libvirt", "kvmm", "odd.log")) as f:
            assert f'"memory": {16388 * 1024},' in f.read()
    finally:
        ok(virsh(d.uri(), "destroy", "odd"))
