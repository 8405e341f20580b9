"""Every vCPU starts with its MTRRs enabled and RAM write-back by default,
as firmware leaves a PC (Linux turns PAT off when it finds them disabled):
the boot CPU, the APs, after a reboot, a hot-added vCPU.  Each CPU of the
test guest reads MSR_MTRRdefType itself at boot.  QEMU's SeaBIOS is the
reference; it enables the fixed ranges too (bit 10), so only the enable
bit and the default type are compared with it."""
import os

import pytest

import kvmmtest
from kvmmtest import Runner
from virtiotest import checks, finish

MTRR_E = 1 << 11
TYPE_WB = 6


def def_types(g):
    """[(cpu slot, MSR_MTRRdefType)] in the order the guest reported them."""
    return [(int(r["cpu"]), int(r["def_type"], 16)) for r in checks(g, "info", "mtrr")]


@pytest.mark.parametrize("runner", [pytest.param(Runner("kvmm"), id="kvmm"),
                                    pytest.param(Runner("qemu"), id="qemu")])
def test_every_cpu_starts_with_mtrrs_on_and_write_back_across_a_reboot(kvm, vms, tmp, runner):
    g = runner.start(vms, tmp, "kvmmtest.action=reboot", cpus=2)
    g.wait_for(r"KVMMTEST info mtrr cpu=1 ", count=2, timeout=180)
    g.kill()
    assert not g.records("fail"), g.records("fail")
    found = def_types(g)[:4]
    assert [c for c, _ in found] == [0, 1, 0, 1], found
    for cpu, v in found:
        assert v & MTRR_E and v & 0xff == TYPE_WB, f"vCPU {cpu}: MTRRdefType 0x{v:x}"
        if runner.name == "kvmm":
            # Only the default type: no fixed or variable ranges.
            assert v == MTRR_E | TYPE_WB, f"vCPU {cpu}: MTRRdefType 0x{v:x}"


def test_a_hot_added_vcpu_starts_with_mtrrs_on_and_write_back(kvm, vms, tmp):
    sock = os.path.join(tmp, "ctl.sock")
    g = kvmmtest.start(vms, kvmmtest.kvmm_argv("kvmmtest.cpuhp=120 kvmmtest.cpuhp.adds=1", 1, "256M",
                                                ["--max-cpus", "2", "--api-socket", sock]))
    g.wait_for(r"KVMMTEST event cpuhp-ready online=1")
    api = kvmmtest.Api(sock)
    try:
        assert api.call("cpu-add", {"id": 1})["return"] == {}
        g.wait_for(r"KVMMTEST pass cpuhp added=1 ", timeout=120)
    finally:
        api.close()
    assert def_types(g) == [(0, MTRR_E | TYPE_WB), (1, MTRR_E | TYPE_WB)]
    finish(g)


def test_the_mtrr_default_type_is_carried_across_a_save_and_restore(kvm, vms, tmp):
    """KVM leaves the MTRRs out of its list of MSRs to save: the guest
    changes its default type (still enabled, now uncached) and finds its
    own value, not kvmm's initial one, after the restore."""
    sock = os.path.join(tmp, "a.sock")
    g = kvmmtest.start(vms, kvmmtest.kvmm_argv("kvmmtest.action=prompt", 1, "256M",
                                                ["--api-socket", sock]))
    g.wait_for(r"kvmm-testguest> $", partial=True)
    g.send(b"mtrr 0x800\r")
    g.wait_for(r"^mtrr: def_type=0x800$")
    api = kvmmtest.Api(sock)
    state = os.path.join(tmp, "vm.state")
    try:
        r = api.call("save", {"path": state}, timeout=60)
        assert "return" in r, r
        api.wait_event("save-completed", path=state)
        assert api.call("quit")["return"] == {}
    finally:
        api.close()
    assert g.wait_exit() == 0

    h = kvmmtest.start(vms, [kvmmtest.KVMM, "--restore", state])
    h.send(b"mtrr\r")
    h.wait_for(r"^mtrr: def_type=0x800$")
    assert not [l for l in h.lines if "KVMMTEST boot" in l], "the guest booted again"
    h.send(b"poweroff\r")
    assert h.wait_exit() == 0
