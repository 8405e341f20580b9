"""vCPU hotplug (docs/hotplug.md): vCPUs added to the running test guest,
started by it with INIT/SIPI and shown to take interrupts and run, one
removed at the host's request and ejected by the guest; the same scenario
under QEMU's pc machine, whose ACPI CPU hotplug interface kvmm's follows.
Then the refusals."""
import json
import os
import subprocess

import jsonschema
import pytest

import kvmmtest
from virtiotest import checks, finish

# Three adds and one removal: the guest goes on until it saw them all.
CMDLINE = "kvmmtest.cpuhp=120 kvmmtest.cpuhp.adds=3 kvmmtest.cpuhp.removals=1"

with open(os.path.join(kvmmtest.TOP, "schemas", "api.schema.json")) as f:
    SCHEMA = json.load(f)


def valid(ref, doc):
    """doc matches $defs/ref of schemas/api.schema.json."""
    sub = {"$schema": SCHEMA["$schema"], "$defs": SCHEMA["$defs"], "$ref": f"#/$defs/{ref}"}
    jsonschema.Draft202012Validator(sub).validate(doc)
    return doc


def threads(pid):
    """{thread name: state letter} of a process."""
    out = {}
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{t}/stat") as f:
                stat = f.read()
        except FileNotFoundError:
            continue
        out[stat[stat.index("(") + 1:stat.rindex(")")]] = stat[stat.rindex(")") + 2]
    return out


def online(g, apic_id):
    """Waits for the guest to start vCPU apic_id and see it run."""
    g.wait_for(rf"KVMMTEST pass cpu-work apic_id={apic_id} ", timeout=60)


def guest_handled(g):
    """The guest's records of adds 1, 2, 3 and the removal of 2."""
    g.wait_for(r"KVMMTEST pass cpuhp added=3 removed=1 online=3", timeout=120)
    assert [r["apic_id"] for r in checks(g, "pass", "cpu-online")] == ["1", "2", "3"]
    work = checks(g, "pass", "cpu-work")
    # Each new vCPU took the IPIs sent to it (the counting vector's
    # stub ran there) and ran on after each.
    assert [w["apic_id"] for w in work] == ["1", "2", "3"], work
    assert all(int(w["irqs"]) >= 1 and int(w["wakes"]) >= 1 for w in work), work
    off = checks(g, "pass", "cpu-offline")
    assert off == [{"apic_id": "2", "online": "2"}], off


@pytest.mark.parametrize("extra", [[], ["--sandbox"]], ids=["plain", "sandbox"])
def test_cpu_hotplug_kvmm(kvm, vms, tmp, extra):
    """Confined too: creating a vCPU and its thread, setting its LAPIC
    are in the sandbox's policy."""
    sock = os.path.join(tmp, "ctl.sock")
    # GUEST: the guest first ejects the boot CPU unasked; kvmm keeps it
    # (enabled before and after), or nothing below would run.
    g = kvmmtest.start(vms, kvmmtest.kvmm_argv(CMDLINE + " kvmmtest.cpuhp.rogue=0", 1, "256M",
                                                ["--max-cpus", "4", "--api-socket", sock] + extra))
    g.wait_for(r"KVMMTEST event cpuhp-ready online=1")
    assert checks(g, "info", "cpuhp") == [{"sel": "0", "before": "0x1", "after": "0x1"}]
    # The MADT lists the boot CPU only as enabled.
    assert checks(g, "pass", "madt") == [{"cpus": "1"}]
    api = kvmmtest.Api(sock)
    try:
        st = valid("status", api.call("query-status")["return"])
        assert (st["vcpus"], st["max_vcpus"], st["cpu_hotplug"]) == (1, 4, True), st
        r = valid("reply", api.call("cpu-add", valid("cpu-add", {"id": 1})))
        assert r["return"] == {}, r
        online(g, 1)
        assert valid("reply", api.call("cpu-add", {"id": 2}))["return"] == {}
        online(g, 2)
        assert valid("cpus", api.call("query-cpus")["return"]) == [
            {"id": i, "apic_id": i, "state": "present"} for i in range(3)]
        assert api.call("query-status")["return"]["vcpus"] == 3
        assert threads(g.proc.pid).keys() >= {"vcpu0", "vcpu1", "vcpu2"}

        # Refusals: past max_cpus, one that is there, the boot CPU, an
        # absent one.
        for cmd, args, code, msg in [
                ("cpu-add", {"id": 4}, "InvalidArgument", "vCPU 4 is out of range: this VM's vCPUs are 0 to 3 (max_cpus 4)"),
                ("cpu-add", {"id": 1}, "DeviceInUse", "vCPU 1 is already there"),
                ("cpu-add", {"id": "1"}, "InvalidArgument", None),
                ("cpu-del", {"id": 0}, "InvalidArgument", "vCPU 0, the boot CPU, cannot be removed"),
                ("cpu-del", {"id": 3}, "DeviceNotFound", "vCPU 3 is not there")]:
            e = valid("reply", api.call(cmd, args))["error"]
            assert e["code"] == code and (msg is None or e["message"] == msg), (cmd, args, e)

        assert valid("reply", api.call("cpu-del", valid("cpu-del", {"id": 2})))["return"] == {}
        ev = valid("event", api.wait_event("cpu-deleted", timeout=60, id=2))
        assert ev["data"] == {"id": 2}
        g.wait_for(r"KVMMTEST pass cpu-offline apic_id=2 ")
        assert [(c["id"], c["state"]) for c in valid("cpus", api.call("query-cpus")["return"])] == \
            [(0, "present"), (1, "present"), (2, "ejected")]
        assert api.call("query-status")["return"]["vcpus"] == 2
        # KVM cannot destroy a vCPU: its thread stays, parked for good,
        # and the id cannot be used again before a reset.
        assert threads(g.proc.pid).get("vcpu2") == "S"
        e = api.call("cpu-del", {"id": 2})["error"]
        assert e["code"] == "DeviceNotFound", e
        e = api.call("cpu-add", {"id": 2})["error"]
        assert e["code"] == "DeviceInUse" and "next reset" in e["message"], e

        assert api.call("cpu-add", {"id": 3})["return"] == {}
        online(g, 3)
        guest_handled(g)
    finally:
        api.close()
    finish(g)


def test_cpu_hotplug_qemu(kvm, vms, tmp):
    """The same guest code against QEMU's implementation of the interface."""
    sock = os.path.join(tmp, "qmp.sock")
    argv = kvmmtest.qemu_argv(CMDLINE, 1, "256M", ["-qmp", f"unix:{sock},server=on,wait=off"],
                              machine="pc")
    argv[argv.index("-smp") + 1] = "1,maxcpus=4"
    g = kvmmtest.start(vms, argv)
    g.wait_for(r"KVMMTEST event cpuhp-ready online=1")
    q = kvmmtest.Qmp(sock)
    try:
        def add(core):
            r = q.execute("device_add", {"driver": "host-x86_64-cpu", "id": f"cpu{core}",
                                         "socket-id": 0, "core-id": core, "thread-id": 0})
            assert r.get("return") == {}, r
            online(g, core)

        add(1)
        add(2)
        assert q.execute("device_del", {"id": "cpu2"}).get("return") == {}
        g.wait_for(r"KVMMTEST pass cpu-offline apic_id=2 ", timeout=60)
        add(3)
        guest_handled(g)
    finally:
        q.close()
    finish(g)


def test_no_cpu_hotplug_without_max_cpus(kvm, vms, tmp):
    """Without --max-cpus above --cpus the machine is as before: no
    hotplug registers, cpu-add refused."""
    sock = os.path.join(tmp, "ctl.sock")
    # action=wait: the guest, done, stays until the quit (had it ended,
    # kvmm could be gone before the questions).
    g = kvmmtest.start(vms, kvmmtest.kvmm_argv("kvmmtest.cpuhp=1 kvmmtest.cpuhp.adds=0 kvmmtest.action=wait",
                                                2, "256M", ["--api-socket", sock]))
    g.wait_for(r"KVMMTEST fail cpuhp no modern CPU hotplug interface at 0xaf00")
    api = kvmmtest.Api(sock)
    try:
        st = api.call("query-status")["return"]
        assert (st["vcpus"], st["max_vcpus"], st["cpu_hotplug"]) == (2, 2, False), st
        e = api.call("cpu-add", {"id": 1})["error"]
        assert e == {"code": "InvalidArgument",
                     "message": "this VM has no vCPU hotplug: start it with --max-cpus above --cpus"}, e
        g.wait_for(r"KVMMTEST done")
        assert api.call("quit")["return"] == {}
    finally:
        api.close()
    assert g.wait_exit() == 0


def test_max_cpus_below_cpus_refused():
    r = subprocess.run(kvmmtest.kvmm_argv("", 3, "256M", ["--max-cpus", "2"]),
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert r.stderr.startswith("kvmm: error: max_cpus 2 is below cpus 3"), r.stderr


def test_cpu_hotplug_across_a_reset(kvm, vms, tmp):
    """A reset rebuilds the VM: an ejected vCPU's id can be added again,
    an added vCPU stays, enabled in the new boot's MADT (as QEMU rebuilds
    its tables), so the guest starts it at boot."""
    sock = os.path.join(tmp, "ctl.sock")
    g = kvmmtest.start(vms, kvmmtest.kvmm_argv(
        # Each boot: it waits for one add and one removal (the first
        # boot's second add comes before the removal).
        "kvmmtest.cpuhp=120 kvmmtest.cpuhp.adds=1 kvmmtest.cpuhp.removals=1 kvmmtest.action=wait",
        1, "256M", ["--max-cpus", "3", "--api-socket", sock]))
    g.wait_for(r"KVMMTEST event cpuhp-ready online=1")
    api = kvmmtest.Api(sock)
    try:
        assert api.call("cpu-add", {"id": 1})["return"] == {}
        online(g, 1)
        assert api.call("cpu-add", {"id": 2})["return"] == {}
        online(g, 2)
        assert api.call("cpu-del", {"id": 1})["return"] == {}
        api.wait_event("cpu-deleted", timeout=60, id=1)
        assert api.call("cpu-add", {"id": 1})["error"]["code"] == "DeviceInUse"
        g.wait_for(r"KVMMTEST pass cpuhp added=2 removed=1 online=2")
        g.wait_for(r"KVMMTEST done")

        assert "return" in api.call("reset")
        g.wait_for(r"KVMMTEST event cpuhp-ready online=2")
        assert checks(g, "pass", "madt") == [{"cpus": "1"}, {"cpus": "2"}]
        assert checks(g, "pass", "smp") == [{"cpus": "1"}, {"cpus": "2"}]
        assert [(c["id"], c["state"]) for c in api.call("query-cpus")["return"]] == \
            [(0, "present"), (2, "present")]
        assert api.call("query-status")["return"]["vcpus"] == 2
        assert api.call("cpu-add", {"id": 1})["return"] == {}
        g.wait_for(r"KVMMTEST pass cpu-work apic_id=1 ", count=2, timeout=60)
        assert api.call("cpu-del", {"id": 2})["return"] == {}
        assert api.wait_event("cpu-deleted", timeout=60, id=2)["data"] == {"id": 2}
        # The boot-started vCPU 2 stopped and ejected; 1 runs.
        g.wait_for(r"KVMMTEST pass cpuhp added=1 removed=1 online=2")
        assert checks(g, "pass", "cpu-offline")[-1] == {"apic_id": "2", "online": "2"}
        g.wait_for(r"KVMMTEST done", count=2)
        assert "return" in api.call("power-button")
    finally:
        api.close()
    assert g.wait_exit() == 0
    assert not g.records("fail")
