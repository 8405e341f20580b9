"""virsh migrate --postcopy between two virtkvmmd (docs/virtkvmmd.md
"Post-copy"): the switch asked by virsh (--postcopy-after-precopy,
--timeout-postcopy) or by virsh migrate-postcopy, kvmm's post-copy under
it, libvirt's lifecycle events, and the guest's memory checked on the
destination (the test guest rewrites 16 MiB every 20 ms and checks the
last tick's values: faster than the link's 8 MiB/s, so pre-copy alone
never converges)."""
import os
import signal

import libvirt

from drvtest import virsh
from test_attach_detach import api_of
from test_lifecycle import wait_for
from test_migrate import (DIRTY, assert_memory_right, hosts, migrate, ns_dst, ns_src,  # noqa: F401
                          running, sandboxed, start_migrate, thread_status, ticks,
                          tls_dst_conf)
from test_migrate_tls import GUEST_MARK, STREAM_MAGIC, captured, mig_pki, tls_hosts  # noqa: F401
from test_tls import pki  # noqa: F401 (fixture)

L = libvirt


def check_postcopy(src, dst, shared, before, p):
    """virsh ended well; the source went paused, paused for post-copy,
    stopped; the destination resumed in post-copy; memory right."""
    out, err = p.communicate(timeout=300)
    assert p.returncode == 0, err + src.d.output() + dst.d.output()
    assert src.events("m1", 3) == [
        (L.VIR_DOMAIN_EVENT_SUSPENDED, L.VIR_DOMAIN_EVENT_SUSPENDED_MIGRATED),
        (L.VIR_DOMAIN_EVENT_SUSPENDED, L.VIR_DOMAIN_EVENT_SUSPENDED_POSTCOPY),
        (L.VIR_DOMAIN_EVENT_STOPPED, L.VIR_DOMAIN_EVENT_STOPPED_MIGRATED)]
    evs = dst.events("m1", 2)
    assert evs[-1] == (L.VIR_DOMAIN_EVENT_RESUMED, L.VIR_DOMAIN_EVENT_RESUMED_POSTCOPY), evs
    assert src.d.guests() == []
    ddom = dst.conn.lookupByName("m1")
    assert ddom.state()[0] == L.VIR_DOMAIN_RUNNING
    # Post-copy, every page in: kvmm at the destination says so, and the
    # domain runs as after any migration.
    api = api_of(dst.d, ddom)
    wait_for(lambda: api.call("query-migrate")["return"]["status"] == "completed",
             "the destination's post-copy completed")
    assert api.call("query-migrate")["return"]["postcopy"] is True
    api.close()
    wait_for(lambda: ddom.state() == [L.VIR_DOMAIN_RUNNING, L.VIR_DOMAIN_RUNNING_MIGRATED],
             "the destination's domain running, migrated")
    assert_memory_right(shared, before)
    ddom.destroy()


def test_postcopy_after_precopy_converges_a_guest_outrunning_the_link(hosts):
    src, dst, shared = hosts
    running(src, shared, cmdline=DIRTY)
    before = ticks(shared)
    p = start_migrate(src, dst, "m1", "--live", "--postcopy", "--postcopy-after-precopy",
                      "--bandwidth", "8")
    check_postcopy(src, dst, shared, before, p)


def test_timeout_postcopy_and_migrate_postcopy(hosts):
    """--timeout 2 --timeout-postcopy: virsh switches after 2 s.  And
    virsh migrate-postcopy: refused with no migration, or one started
    without --postcopy; accepted for one with it."""
    src, dst, shared = hosts
    sdom = running(src, shared, cmdline=DIRTY)
    r = virsh(src.uri, "migrate-postcopy", "m1")
    assert r.returncode != 0 and \
        "post-copy can only be started while outgoing migration is in progress" in r.stderr, r.stderr
    before = ticks(shared)
    p = start_migrate(src, dst, "m1", "--live", "--postcopy", "--timeout", "2",
                      "--timeout-postcopy", "--bandwidth", "8")
    check_postcopy(src, dst, shared, before, p)

    # Another guest, without --postcopy: migrate-postcopy is refused,
    # the rounds go on, until aborted.
    sdom = running(src, shared, "m2", cmdline=DIRTY)
    p = start_migrate(src, dst, "m2", "--live", "--bandwidth", "8")
    wait_for(lambda: sdom.jobStats().get("memory_processed"), "the copy under way", timeout=120)
    r = virsh(src.uri, "migrate-postcopy", "m2")
    assert r.returncode != 0 and "VIR_MIGRATE_POSTCOPY" in r.stderr, r.stderr
    assert sdom.jobStats()["type"] == L.VIR_DOMAIN_JOB_UNBOUNDED
    assert virsh(src.uri, "domjobabort", "m2").returncode == 0
    out, err = p.communicate(timeout=120)
    assert p.returncode != 0 and "canceled by client" in err, err
    assert sdom.state()[0] == L.VIR_DOMAIN_RUNNING
    sdom.destroy()


def test_a_sandboxed_kvmm_migrates_by_postcopy(sandboxed, hosts):
    """Confined kvmm at both ends: the destination's userfaultfd made
    before it dropped its privileges, its fault and receive threads
    under the migration threads' seccomp list."""
    src, dst, shared = hosts
    sdom = running(src, shared, cmdline=DIRTY)
    before = ticks(shared)
    p = start_migrate(src, dst, "m1", "--live", "--postcopy", "--bandwidth", "2")
    wait_for(lambda: sdom.jobStats().get("memory_processed"), "the copy under way", timeout=120)
    r = virsh(src.uri, "migrate-postcopy", "m1")
    assert r.returncode == 0, r.stderr
    # At 2 MiB/s the pages the guest does not touch take a while: the
    # destination's threads are there to look at.
    # The thread names itself, then confines itself: wait for both.
    def fault_thread():
        pids = dst.d.guests()
        st = pids and thread_status(pids[0], "postcopy-fault")
        return st if st and st["Seccomp"] == "2" else None
    st = wait_for(fault_thread, "the destination's fault thread, confined", timeout=120)
    assert st["Seccomp_filters"] == "2", st
    assert virsh(src.uri, "migrate-setspeed", "m1", "0").returncode == 0
    check_postcopy(src, dst, shared, before, p)


def test_the_source_job_lasts_through_postcopy(hosts):
    """As libvirt's: the source's migration job runs on after the switch
    (Perform returned, the destination runs the guest) with kvmm's
    figures still advancing and the destination's page requests counted;
    it cannot be aborted then; Confirm ends it, completed."""
    src, dst, shared = hosts
    sdom = running(src, shared, cmdline=DIRTY)
    before = ticks(shared)
    p = start_migrate(src, dst, "m1", "--live", "--postcopy", "--bandwidth", "2")
    wait_for(lambda: sdom.jobStats().get("memory_processed"), "the copy under way", timeout=120)
    assert virsh(src.uri, "migrate-postcopy", "m1").returncode == 0
    ddom = wait_for(lambda: dst.conn.lookupByName("m1") if "m1" in dst.conn.listDefinedDomains() +
                    [d.name() for d in dst.conn.listAllDomains()] else None,
                    "the domain on the destination", timeout=120)
    wait_for(lambda: ddom.state() == [L.VIR_DOMAIN_RUNNING, L.VIR_DOMAIN_RUNNING_POSTCOPY],
             "the destination running in post-copy", timeout=120)
    assert sdom.state() == [L.VIR_DOMAIN_PAUSED, L.VIR_DOMAIN_PAUSED_POSTCOPY]
    st = sdom.jobStats()
    assert st["type"] == L.VIR_DOMAIN_JOB_UNBOUNDED, st
    assert st["operation"] == L.VIR_DOMAIN_JOB_OPERATION_MIGRATION_OUT, st
    assert "memory_postcopy_requests" in st, st
    assert sdom.jobInfo()[0] == L.VIR_DOMAIN_JOB_UNBOUNDED
    # at 2 MiB/s the push goes on: the figures move
    wait_for(lambda: sdom.jobStats().get("memory_processed", 0) > st["memory_processed"],
             "the post-copy's figures advancing", timeout=120)
    r = virsh(src.uri, "domjobabort", "m1")
    assert r.returncode != 0 and "cannot abort migration in post-copy mode" in r.stderr, r.stderr
    r = virsh(src.uri, "domjobinfo", "m1")
    assert r.returncode == 0 and "Unbounded" in r.stdout and "Postcopy requests" in r.stdout, r.stdout
    assert virsh(src.uri, "migrate-setspeed", "m1", "0").returncode == 0
    check_postcopy(src, dst, shared, before, p)
    done = sdom.jobStats(L.VIR_DOMAIN_JOB_STATS_COMPLETED)
    assert done["type"] == L.VIR_DOMAIN_JOB_COMPLETED, done
    assert done["memory_processed"] >= st["memory_processed"] and done["data_remaining"] == 0, done
    # the guest rewrites its memory: the destination asked for pages
    assert done["memory_postcopy_requests"] > 0, done
    assert done["time_elapsed"] >= st["time_elapsed"], done


def test_the_source_lost_during_postcopy_loses_the_guest(hosts):
    """The source's kvmm killed while the destination still pulls pages
    (the push kept to 1 MiB/s): the destination's guest is paused for
    good (paused, post-copy failed), and resume is refused.  The source's
    Confirm fails (virsh, as libvirt's client, only warns of it)."""
    src, dst, shared = hosts
    sdom = running(src, shared, cmdline=DIRTY)
    p = start_migrate(src, dst, "m1", "--live", "--postcopy", "--bandwidth", "1")
    wait_for(lambda: sdom.jobStats().get("memory_processed"), "the copy under way", timeout=120)
    assert virsh(src.uri, "migrate-postcopy", "m1").returncode == 0
    ddom = wait_for(lambda: dst.conn.lookupByName("m1") if "m1" in dst.conn.listDefinedDomains() +
                    [d.name() for d in dst.conn.listAllDomains()] else None,
                    "the domain on the destination", timeout=120)
    wait_for(lambda: ddom.state() == [L.VIR_DOMAIN_RUNNING, L.VIR_DOMAIN_RUNNING_POSTCOPY],
             "the destination running in post-copy", timeout=120)
    api = api_of(dst.d, ddom)
    assert api.call("query-migrate")["return"]["status"] == "postcopy-active"
    api.close()
    os.kill(src.d.guests()[0], signal.SIGKILL)
    wait_for(lambda: ddom.state() == [L.VIR_DOMAIN_PAUSED, L.VIR_DOMAIN_PAUSED_POSTCOPY_FAILED],
             "the destination's guest paused, lost", timeout=120)
    evs = dst.events("m1", 3)
    assert evs[-1] == (L.VIR_DOMAIN_EVENT_SUSPENDED, L.VIR_DOMAIN_EVENT_SUSPENDED_POSTCOPY_FAILED), evs
    r = virsh(dst.uri, "resume", "m1")
    assert r.returncode != 0, r.stdout
    out, err = p.communicate(timeout=120)
    assert "probably left in 'paused' state on source" in err, err
    ddom.destroy()


def test_postcopy_over_tls_and_the_wire_carries_no_plaintext(tls_hosts):
    """--postcopy --tls: the daemons' relays outlive Perform and Finish,
    carrying the pages the destination asks for and the source pushes
    until kvmm's post-copy ends; memory right on the destination, and
    none of it in the clear on the wire."""
    src, dst, shared, dev = tls_hosts()
    running(src, shared, cmdline=DIRTY)
    before = ticks(shared)

    def run():
        p = start_migrate(src, dst, "m1", "--live", "--postcopy", "--postcopy-after-precopy",
                          "--bandwidth", "8", "--tls")
        check_postcopy(src, dst, shared, before, p)

    wire, _ = captured(dst.ns, dev, run)
    # Both relays saw the other's close_notify: no cut.
    for h in (src, dst):
        wait_for(lambda: "post-copy migration's TLS stream ended" in h.d.output(),
                 "the relay ended cleanly")
    assert len(wire) > 1 << 20 and STREAM_MAGIC not in wire and GUEST_MARK not in wire
