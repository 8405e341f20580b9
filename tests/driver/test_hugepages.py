"""<memoryBacking><hugepages/> through libvirt: the definition keeps what
was written (with or without a <page> size), a size the host has no pool
of is refused at define, kvmm takes the guest's RAM from the host's huge
pages at start, and a pool too small refuses the start with kvmm's
reason.  The host keeps no huge pages: each test reserves its own."""
import libvirt
import pytest

from hugetlb import hugetlb_counts, reserved_2m_pages
from test_lifecycle import guest_xml, serial, wait_for

MEM_128M = "<memory unit='MiB'>128</memory>"


def hugepage_xml(root, backing, extra_devices=""):
    return guest_xml(root, extra_devices=extra_devices).replace(
        MEM_128M, MEM_128M + f"<memoryBacking>{backing}</memoryBacking>")


@pytest.mark.parametrize("backing,shown", [
    ("<hugepages/>", "<hugepages/>"),
    ("<hugepages><page size='2048' unit='KiB'/></hugepages>",
     "<hugepages>\n      <page size='2048' unit='KiB'/>\n    </hugepages>"),
    ("<hugepages><page size='2' unit='M'/></hugepages><nosharepages/>",
     "<hugepages>\n      <page size='2048' unit='KiB'/>\n    </hugepages>\n    <nosharepages/>"),
])
def test_hugepages_definition_round_trip(daemon, backing, shown):
    conn = libvirt.open(daemon.uri())
    dom = conn.defineXML(hugepage_xml(daemon.root, backing))
    assert f"<memoryBacking>\n    {shown}\n  </memoryBacking>" in dom.XMLDesc()
    conn.close()


@pytest.mark.parametrize("backing,code,message", [
    ("<hugepages><page size='4096' unit='KiB'/></hugepages>", libvirt.VIR_ERR_CONFIG_UNSUPPORTED,
     "unsupported configuration: hugepage size 4096 KiB is not available on this host "
     "(no /sys/kernel/mm/hugepages/hugepages-4096kB)"),
    ("<hugepages><page size='0'/></hugepages>", libvirt.VIR_ERR_XML_ERROR,
     "XML error: unable to parse size attribute '0' of hugepage"),
    ("<hugepages><page size='2048' nodeset='0'/></hugepages>", libvirt.VIR_ERR_CONFIG_UNSUPPORTED,
     None),
])
def test_hugepages_refused_at_define(daemon, backing, code, message):
    conn = libvirt.open(daemon.uri())
    with pytest.raises(libvirt.libvirtError) as e:
        conn.defineXML(hugepage_xml(daemon.root, backing))
    assert e.value.get_error_code() == code, str(e.value)
    if message:
        assert str(e.value) == message
    else:
        assert "nodeset" in str(e.value), str(e.value)
    assert conn.listDefinedDomains() == []
    conn.close()


def test_hugepages_guest_runs_on_the_hosts_huge_pages(daemon, kvm):
    """All 64 pages of a 128 MiB guest are the guest's while it runs (the
    ones it touched are no longer free), and back in the pool once it is
    destroyed."""
    conn = libvirt.open(daemon.uri())
    dom = conn.defineXML(hugepage_xml(daemon.root, "<hugepages/>"))
    with reserved_2m_pages(80):
        dom.create()
        wait_for(lambda: "KVMMTEST done" in serial(daemon.root), "the guest's tests", timeout=60)
        assert "KVMMTEST fail" not in serial(daemon.root)
        total, free, rsvd = hugetlb_counts()
        assert free < 80, "the running guest touched no huge page"
        assert total - free + rsvd == 64, (total, free, rsvd)
        assert dom.isActive()
        dom.destroy()
        assert daemon.guests() == []
        assert hugetlb_counts() == (80, 80, 0)
    conn.close()


def test_hugepages_start_refused_when_the_pool_is_short(daemon, kvm):
    conn = libvirt.open(daemon.uri())
    dom = conn.defineXML(hugepage_xml(daemon.root, "<hugepages/>"))
    with reserved_2m_pages(0):
        with pytest.raises(libvirt.libvirtError) as e:
            dom.create()
    assert e.value.get_error_code() == libvirt.VIR_ERR_OPERATION_FAILED, str(e.value)
    assert str(e.value) == (
        "operation failed: kvmm exited while starting (exit status 1): kvmm: error: "
        "not enough free 2048 KiB huge pages: 64 needed, 0 free; "
        "reserve them in /sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages")
    assert not dom.isActive()
    assert daemon.guests() == []
    conn.close()


@pytest.mark.parametrize("memory,devices,message", [
    ("<memory unit='MiB'>129</memory>", "",
     "memory size 132096 KiB is not a multiple of the 2048 KiB huge page size; "
     "round it to whole huge pages"),
    (MEM_128M, "\n    <memballoon model='virtio'/>",
     "<memoryBacking><hugepages/> with <memballoon model='virtio'> is not supported by kvmm: "
     "huge-page-backed memory cannot be returned to the host page by page; use one or the other"),
])
def test_hugepages_start_refusals(daemon, kvm, memory, devices, message):
    conn = libvirt.open(daemon.uri())
    dom = conn.defineXML(hugepage_xml(daemon.root, "<hugepages/>", devices).replace(MEM_128M, memory, 1))
    with pytest.raises(libvirt.libvirtError) as e:
        dom.create()
    assert e.value.get_error_code() == libvirt.VIR_ERR_CONFIG_UNSUPPORTED
    assert str(e.value) == "unsupported configuration: " + message
    conn.close()
