"""virtio-balloon under kvmm and QEMU, driven by the test guest's balloon
driver (tests/guest/virtio_balloon.c): the host's memory follows the
balloon, statistics arrive, free page reporting returns memory,
DEFLATE_ON_OOM is honoured, and hostile requests leave the VM running."""
import json
import os
import subprocess

import jsonschema
import pytest

import kvmmtest
from test_schemas import load, validator
from virtiotest import RUNNERS, Balloon, by_dev, checks, finish

MiB = 1 << 20
MEMORY = 512 * MiB


def status(g, key):
    """A /proc/PID/status size of the VMM process, in bytes."""
    with open(f"/proc/{g.proc.pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


def start(runner, vms, tmp, opts, balloon=None, memory="512M"):
    g = runner.start(vms, tmp, f"kvmmtest.virtio=balloon {opts}", [balloon or Balloon()],
                     memory=memory)
    g.wait_for(r"KVMMTEST event balloon-ready dev=balloon0", timeout=60)
    return g


def state(g, why, **want):
    """Waits for the guest's `info balloon why=...` record with those
    values and returns it."""
    pat = rf"KVMMTEST info balloon dev=balloon0 why={why} " + \
        "".join(rf"(?=.*\b{k}={v}\b)" for k, v in want.items())
    g.wait_for(pat, timeout=60)
    return [r for r in checks(g, "info", "balloon")
            if r.get("why") == why and all(r[k] == str(v) for k, v in want.items())][-1]


def stop(runner, g):
    runner.power_button()
    finish(g)


@pytest.mark.parametrize("runner", RUNNERS)
def test_balloon_inflate_frees_host_memory_and_deflate_gives_it_back(kvm, vms, tmp, runner):
    """The guest writes 256 MiB and frees it; inflating by 128 MiB takes
    those pages and the VMM's RSS drops by about that; deflating gives
    them back, the guest writes on every one and the RSS grows again."""
    g = start(runner, vms, tmp, "kvmmtest.balloon0.touch=256")
    touched = status(g, "VmRSS")
    runner.balloon_set(MEMORY - 128 * MiB)
    state(g, "target", actual=32768, target=32768)
    inflated = status(g, "VmRSS")
    assert touched - inflated > 110 * MiB, (touched, inflated)
    if runner.name == "kvmm":
        q = runner.api_call("query-balloon")["return"]
        assert q["actual"] == q["target"] == MEMORY - 128 * MiB, q
        assert q["inflated"] == 128 * MiB and q["bad_pfns"] == 0, q
    runner.balloon_set(MEMORY)
    state(g, "target", actual=0, target=0, used_again=32768)
    deflated = status(g, "VmRSS")
    assert deflated - inflated > 110 * MiB, (inflated, deflated)
    if runner.name == "kvmm":
        assert runner.api_call("query-balloon")["return"]["inflated"] == 0
    stop(runner, g)


def test_balloon_change_events_follow_the_guest(kvm, vms, tmp):
    """Each change of the guest's actual is an event; the replies, events
    and arguments match schemas/api.schema.json."""
    runner = RUNNERS[0].values[0]
    schema = load("api.schema.json")
    g = start(runner, vms, tmp, "", Balloon(stats_period=1))
    g.wait_for(r"KVMMTEST info balloon-stats dev=balloon0 seq=2 ", timeout=60)
    api = kvmmtest.Api(runner.sock)
    try:
        validator(schema, "balloon").validate(api.call("query-balloon")["return"])
        args = {"target": MEMORY - 64 * MiB}
        validator(schema, "balloon-set").validate(args)
        assert api.call("balloon-set", args) == {"id": 2, "return": {}}
        e = api.wait_event("balloon-change", timeout=60, actual=MEMORY - 64 * MiB)
        validator(schema, "event").validate(e)
        q = api.call("query-balloon")["return"]
        validator(schema, "balloon").validate(q)
        assert q["stats"]["minor_faults"] >= 2 and q["stats_period"] == 1, q
        r = api.call("balloon-set", {"target": MEMORY + 4096})
        assert r["error"]["code"] == "InvalidArgument", r
        r = api.call("balloon-set", {"target": "1G"})
        assert r["error"]["code"] == "InvalidArgument", r
        assert "return" in api.call("balloon-set", {"target": MEMORY})
        api.wait_event("balloon-change", timeout=60, actual=MEMORY)
    finally:
        api.close()
    state(g, "target", actual=0, target=0)
    stop(runner, g)


@pytest.mark.parametrize("runner", RUNNERS)
def test_balloon_statistics_arrive_as_the_guest_sent_them(kvm, vms, tmp, runner):
    """With a 1 s period the device hands the buffer back and the guest
    refills it: several rounds arrive, each one as the guest recorded it
    (its minor_faults field carries the round's number)."""
    g = start(runner, vms, tmp, "kvmmtest.balloon0.touch=64")
    runner.balloon_stats_period(1)
    g.wait_for(r"KVMMTEST info balloon-stats dev=balloon0 seq=4 ", timeout=60)
    got = runner.balloon_stats()
    sent = {int(r["seq"]): r for r in checks(g, "info", "balloon-stats")}
    seq = got["minor_faults"]
    assert seq >= 3 and seq in sent, (got, sorted(sent))
    assert got["free_memory"] == int(sent[seq]["free"]), (got, sent[seq])
    assert got["total_memory"] == int(sent[seq]["total"]), (got, sent[seq])
    assert got["available_memory"] == int(sent[seq]["avail"]), (got, sent[seq])
    assert got["swap_in"] == got["major_faults"] == 0 and got["last_update"] > 0
    stop(runner, g)


@pytest.mark.parametrize("runner", RUNNERS)
def test_balloon_free_page_reporting_returns_memory(kvm, vms, tmp, runner):
    """The guest writes 256 MiB, frees it and reports it: the VMM's RSS
    falls from its peak by about that much, with no balloon target."""
    g = start(runner, vms, tmp, "kvmmtest.balloon0.touch=256 kvmmtest.balloon0.report=on")
    assert by_dev(g, "pass", "balloon-report")["balloon0"]["mib"] == "256"
    peak, now = status(g, "VmHWM"), status(g, "VmRSS")
    assert peak - now > 200 * MiB, (peak, now)
    if runner.name == "kvmm":
        assert runner.api_call("query-balloon")["return"]["reported"] == 256 * MiB
    stop(runner, g)


@pytest.mark.parametrize("runner", RUNNERS)
def test_balloon_deflate_on_oom(kvm, vms, tmp, runner):
    """With 400 MiB in the balloon the guest needs 200 MiB more: it takes
    pages back from the balloon because DEFLATE_ON_OOM was negotiated."""
    g = start(runner, vms, tmp, "kvmmtest.balloon0.oom=200")
    runner.balloon_set(MEMORY - 400 * MiB)
    r = state(g, "oom", target=102400)
    oom = by_dev(g, "pass", "balloon-oom")["balloon0"]
    assert int(oom["deflated"]) > 0 and int(r["actual"]) == 102400 - int(oom["deflated"])
    if runner.name == "kvmm":
        q = runner.api_call("query-balloon")["return"]
        assert q["actual"] == MEMORY - int(r["actual"]) * 4096, q
    stop(runner, g)


def test_balloon_without_deflate_on_oom_keeps_its_pages(kvm, vms, tmp):
    runner = RUNNERS[0].values[0]
    g = start(runner, vms, tmp, "kvmmtest.balloon0.oom=200", Balloon(deflate_on_oom=False))
    runner.balloon_set(MEMORY - 400 * MiB)
    state(g, "oom", actual=102400, target=102400)
    assert by_dev(g, "info", "balloon-oom")["balloon0"]["fits"] == "0"
    assert not runner.api_call("query-balloon")["return"]["deflate_on_oom"]
    stop(runner, g)


@pytest.mark.parametrize("runner", RUNNERS)
@pytest.mark.parametrize("kind", ["pfn-outside", "pfn-hole", "count", "stats-size"])
def test_balloon_hostile_requests_leave_the_vm_running(kvm, vms, tmp, runner, kind):
    """A PFN outside RAM or in the PCI hole is skipped and counted; a
    chain of more PFNs than kvmm takes breaks the device (QEMU takes it);
    a stats buffer of 7 bytes is refused.  The balloon then still works."""
    g = start(runner, vms, tmp, f"kvmmtest.balloon0.malformed={kind}",
              Balloon(stats_period=1))
    outcome = by_dev(g, "info", "virtio-malformed")["balloon0"]["outcome"]
    if runner.name == "kvmm":
        q = runner.api_call("query-balloon")["return"]
        if kind in ("pfn-outside", "pfn-hole"):
            assert outcome == "completed" and q["bad_pfns"] == 1 and q["inflated"] == 0, q
        elif kind == "count":
            assert outcome == "needs-reset", outcome
        else:
            g.wait_for(r"KVMMTEST info balloon-stats dev=balloon0 seq=3 ", timeout=60)
            assert runner.api_call("query-balloon")["return"]["bad_stats"] == 1
    else:
        assert outcome in ("completed", "needs-reset", "sent"), outcome
    runner.balloon_set(MEMORY - 32 * MiB)
    state(g, "target", actual=8192, target=8192)
    stop(runner, g)


def test_balloon_refused_without_the_device(kvm, vms, tmp):
    sock = os.path.join(tmp, "ctl.sock")
    g = kvmmtest.start(vms, kvmmtest.kvmm_argv("kvmmtest.action=wait", extra=["--api-socket", sock]))
    g.wait_for(r"KVMMTEST done", timeout=60)
    api = kvmmtest.Api(sock)
    try:
        for cmd, args in (("query-balloon", None), ("balloon-set", {"target": 0})):
            r = api.call(cmd, args)
            validator(load("api.schema.json"), "reply").validate(r)
            assert r["error"]["code"] == "DeviceNotFound", r
    finally:
        api.close()
    g.kill()


GOOD = [True, "", "stats_period=5", "deflate_on_oom=on,free_page_reporting=off",
        {"deflate_on_oom": True, "free_page_reporting": True, "stats_period": 0}]
BAD = ["stats_period=-1", "stats_period=86401", "autodeflate=on", "deflate_on_oom=yes",
       {"stats_period": "5"}, {"free_page_reporting": 1}, 3]


@pytest.mark.parametrize("balloon", GOOD)
def test_balloon_configs_the_schema_accepts_kvmm_accepts(kvm, tmp, balloon):
    cfg = {"kernel": kvmmtest.GUEST, "balloon": balloon, "memory": "128M",
           "cmdline": "kvmmtest.virtio=balloon kvmmtest.balloon.serve=0", "serial": "none"}
    jsonschema.validate(cfg, load("vm-config.schema.json"))
    path = os.path.join(tmp, "vm.json")
    with open(path, "w") as f:
        json.dump(cfg, f)
    r = subprocess.run([kvmmtest.KVMM, "--config", path], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("balloon", BAD)
def test_balloon_configs_the_schema_refuses_kvmm_refuses(tmp, balloon):
    cfg = {"kernel": kvmmtest.GUEST, "balloon": balloon}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(cfg, load("vm-config.schema.json"))
    path = os.path.join(tmp, "vm.json")
    with open(path, "w") as f:
        json.dump(cfg, f)
    r = subprocess.run([kvmmtest.KVMM, "--config", path], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert r.stderr.startswith("kvmm: error: balloon"), r.stderr
