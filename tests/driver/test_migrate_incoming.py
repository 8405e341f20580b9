"""The destination's side of a live migration's job, as libvirt's QEMU
driver has it: while the state comes in, the destination's domain holds
an incoming-migration job whose figures only the source has (GetJobStats
and GetJobInfo there: "Operation not supported: migration statistics
are available only on the source host", what virsh domjobinfo prints);
once done, `domjobinfo --completed` on the destination shows the
completed incoming migration with the source's figures (sent in the
migration cookie), and on the source the outgoing one."""
import libvirt
import pytest

from drvtest import virsh
from test_lifecycle import wait_for
from test_migrate import (DIRTY, assert_memory_right, copying, hosts,  # noqa: F401
                          ns_dst, ns_src, running, start_migrate, ticks, tls_dst_conf)
from test_tls import pki  # noqa: F401 (fixture)

L = libvirt
ONLY_SOURCE = "migration statistics are available only on the source host"


def test_destination_job_during_and_after_a_live_migration(hosts):
    src, dst, shared = hosts
    sdom = running(src, shared, cmdline=DIRTY)
    before = ticks(shared)
    p = start_migrate(src, dst, "m1", "--live", "--bandwidth", "4")
    try:
        copying(sdom)
        ddom = wait_for(lambda: dst.conn.lookupByName("m1") if "m1" in [
            d.name() for d in dst.conn.listAllDomains()] else None, "the incoming domain")
        # Refused there, by both calls, as libvirt refuses them.
        for call in (ddom.jobStats, ddom.jobInfo):
            with pytest.raises(libvirt.libvirtError) as e:
                call()
            assert e.value.get_error_code() == L.VIR_ERR_OPERATION_UNSUPPORTED, e.value
            assert ONLY_SOURCE in str(e.value)
        r = virsh(dst.uri, "domjobinfo", "m1")
        assert r.returncode != 0 and ONLY_SOURCE in r.stderr, r.stdout + r.stderr
        # The source's job is the outgoing one, under way.
        assert sdom.jobStats()["type"] == L.VIR_DOMAIN_JOB_UNBOUNDED
        # A faster link: it completes.
        assert virsh(src.uri, "migrate-setspeed", "m1", "0").returncode == 0
        out, err = p.communicate(timeout=180)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert p.returncode == 0, err + src.d.output() + dst.d.output()
    assert_memory_right(shared, before)
    # No job running on either side now.
    ddom = dst.conn.lookupByName("m1")
    assert ddom.jobStats()["type"] == L.VIR_DOMAIN_JOB_NONE
    keep = L.VIR_DOMAIN_JOB_STATS_COMPLETED | L.VIR_DOMAIN_JOB_STATS_KEEP_COMPLETED
    sdone = sdom.jobStats(keep)
    ddone = ddom.jobStats(keep)
    assert sdone["type"] == ddone["type"] == L.VIR_DOMAIN_JOB_COMPLETED, (sdone, ddone)
    assert sdone["operation"] == L.VIR_DOMAIN_JOB_OPERATION_MIGRATION_OUT, sdone
    assert ddone["operation"] == L.VIR_DOMAIN_JOB_OPERATION_MIGRATION_IN, ddone
    # The destination's figures are the source's.
    for k in ("data_processed", "memory_total", "memory_processed", "memory_iteration",
              "downtime", "setup_time"):
        assert ddone[k] == sdone[k], (k, sdone, ddone)
    assert ddone["memory_total"] == 64 << 20 and ddone["data_remaining"] == 0, ddone
    assert ddone["time_elapsed"] > 0 and ddone["success"], ddone
    for host, op in ((src, "Outgoing migration"), (dst, "Incoming migration")):
        r = virsh(host.uri, "domjobinfo", "m1", "--completed")
        assert r.returncode == 0, r.stderr
        for line in ("Job type:         Completed", f"Operation:        {op}",
                     "Memory processed:", "Total downtime:"):
            assert line in r.stdout, (line, r.stdout)
    ddom.destroy()
