"""OpenStack nova's live migration (Debian's python3-nova) between two
virtkvmmd "hosts" (test_migrate.py's fixtures): nova's own
LibvirtDriver._live_migration_operation -- its flags from its
configuration (LIVE | PEER2PEER | PERSIST_DEST | UNDEFINE_SOURCE), the
destination XML rewritten by migration.get_updated_guest_xml,
Guest.migrate's virDomainMigrateToURI3 with migrate_uri, destination_xml,
persistent_xml and bandwidth -- runs on a thread while nova's own
_live_migration_monitor polls Guest.get_job_info (virDomainGetJobStats),
steps the maximum downtime up (virDomainMigrateSetMaxDowntime) and, past
live_migration_completion_timeout, aborts (virDomainAbortJob).

nova runs in a child python3 with its configuration; what needs nova's
database is stubbed (Migration.save), the instance is a stand-in with the
few fields these paths read.  The peer-to-peer connection is nova's
live_migration_uri: TLS to the destination's daemon across the veth."""
import json
import subprocess

import libvirt

from test_attach_detach import api_of
from test_lifecycle import wait_for
from test_migrate import (DIRTY, DST_IP, TLS_PORT, assert_memory_right, hosts,  # noqa: F401
                          ns_dst, ns_src, running, ticks, tls_dst_conf)
from test_nova import nova_available  # noqa: F401 (fixture)
from test_tls import pki  # noqa: F401 (fixture)

L = libvirt

NOVA = r"""
import collections, json, sys, threading, time, uuid
from unittest import mock
from nova import conf as nova_conf
CONF = nova_conf.CONF
CONF([], project='nova')
src_uri, dst_ip, dconn_fmt, mode = sys.argv[1:5]
CONF.set_override('virt_type', 'kvm', group='libvirt')
CONF.set_override('connection_uri', src_uri, group='libvirt')
CONF.set_override('live_migration_uri', dconn_fmt, group='libvirt')
# The downtime steps seconds apart (nova: 75 s per GiB, at least 2 GiB).
CONF.set_override('live_migration_downtime_delay', 3, group='libvirt')
if mode == 'abort':
    # A slow link and a short timeout: nova gives up and aborts.
    CONF.set_override('live_migration_bandwidth', 1, group='libvirt')
    CONF.set_override('live_migration_completion_timeout', 8, group='libvirt')
else:
    # A link the busy guest outruns: past the timeout nova pauses it so
    # that the copy completes (its force_complete without post-copy).
    CONF.set_override('live_migration_bandwidth', 8, group='libvirt')
    CONF.set_override('live_migration_completion_timeout', 3, group='libvirt')
    CONF.set_override('live_migration_timeout_action', 'force_complete', group='libvirt')
import libvirt
from nova import context as nova_context, objects
objects.register_all()
from nova.virt.libvirt import driver as lvdriver, guest as lvguest

calls = []


class Recorded:
    # The virDomain nova's Guest holds: the calls nova makes, passed on.
    def __init__(self, dom):
        self._dom = dom

    def __getattr__(self, name):
        fn = getattr(self._dom, name)
        if not callable(fn):
            return fn

        def call(*a, **k):
            if name == 'migrateToURI3':
                p = k.get('params', a[1] if len(a) > 1 else {})
                calls.append([name, a[0], sorted(p), k.get('flags', a[2] if len(a) > 2 else 0),
                              p.get('migrate_uri'), p.get('bandwidth'),
                              p.get('destination_xml') == p.get('persistent_xml'),
                              p.get('destination_xml', '')])
            elif name in ('migrateSetMaxDowntime', 'abortJob', 'suspend', 'resume'):
                # With how long it took: these run during migrateToURI3,
                # on its connection.
                t0 = time.monotonic()
                try:
                    return fn(*a, **k)
                finally:
                    calls.append([name] + list(a) + [time.monotonic() - t0])
            elif name == 'jobStats':
                if not calls or calls[-1][0] != 'jobStats':
                    calls.append(['jobStats', 0])
                calls[-1][1] += 1
            return fn(*a, **k)
        return call


# libvirt's event loop on a native thread, as nova's Host runs it.
libvirt.virEventRegisterDefaultImpl()


def event_loop():
    while True:
        libvirt.virEventRunDefaultImpl()


threading.Thread(target=event_loop, daemon=True).start()
drv = lvdriver.LibvirtDriver(mock.MagicMock(), read_only=False)
drv._parse_migration_flags()
conn = libvirt.open(src_uri)
guest = lvguest.Guest(Recorded(conn.lookupByName('m1')))
instance = mock.MagicMock(uuid=str(uuid.uuid4()), vm_state='active', resources=None,
                          migration_context=None)
instance.flavor.memory_mb = 64
instance.flavor.extra_specs = {}
migration = objects.Migration(status='running')
migrate_data = objects.LibvirtLiveMigrateData(
    block_migration=False, bdms=[], serial_listen_addr=None, serial_listen_ports=[],
    target_connect_addr=dst_ip, graphics_listen_addr_vnc='127.0.0.1',
    graphics_listen_addr_spice='127.0.0.1', supported_perf_events=[], migration=migration)
ctx = nova_context.RequestContext('u', 'p')
# As _live_migration does before it starts the two.
drv.active_migrations[instance.uuid] = collections.deque()
out = {'flags': drv._live_migration_flags}
done = threading.Event()


def operation():
    try:
        drv._live_migration_operation(ctx, instance, dst_ip, False, migrate_data, guest, [])
        out['operation'] = 'ok'
    except Exception as e:
        out['operation'] = '%s: %s' % (type(e).__name__, e)
    done.set()


class Finished:
    def ready(self):
        return done.is_set()


def post(ctx, inst, dest, block, md):
    out['result'] = 'post'


def recover(ctx, inst, dest, md, migration_status='error'):
    out['result'] = 'recover:' + migration_status


with mock.patch.object(objects.Migration, 'save'):
    t = threading.Thread(target=operation)
    t.start()
    drv._live_migration_monitor(ctx, instance, guest, dst_ip, post, recover, False,
                                migrate_data, Finished(), [])
    t.join()
out['calls'] = calls
out['memory_total'] = (migration.memory_total if migration.obj_attr_is_set('memory_total')
                       else None)
print(json.dumps(out))
"""


def nova_migrate(src, mode, pki):
    dconn = (f"kvmm+tls://%s:{TLS_PORT}/system?pkipath={pki['allowed']}&no_verify=1")
    return subprocess.Popen(["/usr/bin/python3", "-c", NOVA, src.uri, DST_IP, dconn, mode],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def result(p, timeout=300):
    out, err = p.communicate(timeout=timeout)
    assert p.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1]), err


def kvmm_downtime(src, sdom):
    api = api_of(src.d, sdom)
    try:
        return api.call("query-migrate")["return"]["max-downtime-ms"]
    finally:
        api.close()


# How long a call nova makes during the migration, on its connection, may
# take: at once, but at times (seen with a suspend right after a
# migrateSetMaxDowntime) the call reaches the socket only once virtkvmmd
# next sends the client something -- its keepalive ping, within 5 s.
# Traced, virtkvmmd watches the socket for input all along and reads the
# call as soon as it arrives: the wait is in libvirt's client, not here.
# Without the side calls, until the migration ends.
CALL_S = 12

NOVA_FLAGS = (L.VIR_MIGRATE_LIVE | L.VIR_MIGRATE_PEER2PEER | L.VIR_MIGRATE_PERSIST_DEST |
              L.VIR_MIGRATE_UNDEFINE_SOURCE)


def test_nova_live_migrates_a_running_guest(hosts, pki, nova_available):
    """8 MiB/s, which the guest's rewriting outruns, and a completion
    timeout of 3 s per GiB (6 s) with the force_complete action: nova
    steps the downtime up, then pauses the guest, and the copy completes;
    the guest runs on the destination, persistent, gone from the source."""
    src, dst, shared = hosts
    sdom = running(src, shared, cmdline=DIRTY)
    before = ticks(shared)
    r, err = result(nova_migrate(src, "complete", pki))
    assert r["operation"] == "ok" and r["result"] == "post", (r, err, src.d.output(),
                                                              dst.d.output())
    assert r["flags"] == NOVA_FLAGS, r
    mig = [c for c in r["calls"] if c[0] == "migrateToURI3"]
    assert len(mig) == 1, r["calls"]
    _, dconn, params, flags, migrate_uri, bandwidth, same_xml, xml = mig[0]
    assert dconn.startswith(f"kvmm+tls://{DST_IP}:") and flags == NOVA_FLAGS, mig
    assert params == ["bandwidth", "destination_xml", "migrate_uri", "persistent_xml"], params
    assert migrate_uri == f"tcp://{DST_IP}" and bandwidth == 8 and same_xml, mig
    assert "<name>m1</name>" in xml and "kvmmtest.live.dirty=on" in xml
    # nova polled the job, set its first downtime step (50 ms: its 500 ms
    # over 10 steps), then paused the guest; its job figures were there.
    names = [c[0] for c in r["calls"]]
    assert [c[1] for c in r["calls"] if c[0] == "migrateSetMaxDowntime"][:1] == [50], r["calls"]
    assert all(c[-1] < CALL_S for c in r["calls"] if c[0] in ("migrateSetMaxDowntime", "suspend")), \
        r["calls"]
    assert "suspend" in names and "abortJob" not in names, r["calls"]
    assert names.index("jobStats") < names.index("suspend"), r["calls"]
    assert r["memory_total"] == 64 << 20, r
    # Migrated: persistent on the destination, gone from the source.
    ddom = dst.conn.lookupByName("m1")
    assert ddom.isPersistent() and ddom.state() == [L.VIR_DOMAIN_RUNNING,
                                                    L.VIR_DOMAIN_RUNNING_MIGRATED]
    src.no_domain("m1")
    assert src.d.guests() == []
    assert_memory_right(shared, before)
    assert sdom.jobStats  # the source's handle, its domain gone
    ddom.destroy()


def test_nova_aborts_a_migration_past_its_timeout(hosts, pki, nova_available):
    """1 MiB/s and a completion timeout of 8 s per GiB (16 s): nova steps
    the downtime up meanwhile (kvmm gets it), then aborts; the guest runs on
    on the source, the destination is cleaned up, nova recovers."""
    src, dst, shared = hosts
    sdom = running(src, shared, cmdline=DIRTY)
    p = nova_migrate(src, "abort", pki)
    try:
        wait_for(lambda: sdom.jobStats().get("memory_processed"), "the migration under way",
                 timeout=120)
        # The second downtime step (95 ms) reaches the running copy.
        wait_for(lambda: kvmm_downtime(src, sdom) == 95, "nova's second downtime step in kvmm",
                 timeout=60)
        r, err = result(p)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert r["result"] == "recover:error", (r, err)
    assert "operation aborted: migration out job: canceled by client" in r["operation"], r
    assert "abortJob" in [c[0] for c in r["calls"]], r["calls"]
    downtimes = [c[1] for c in r["calls"] if c[0] == "migrateSetMaxDowntime"]
    assert downtimes[:2] == [50, 95], downtimes
    # Each answered at once, beside the migration on its connection.
    assert all(c[-1] < CALL_S for c in r["calls"] if c[0] in ("migrateSetMaxDowntime", "abortJob")), \
        r["calls"]
    assert sdom.state()[0] == L.VIR_DOMAIN_RUNNING and sdom.isPersistent()
    assert_memory_right(shared, ticks(shared))
    wait_for(lambda: dst.d.guests() == [] and dst.listening() == [], "the destination cleaned up")
    dst.no_domain("m1")
    assert sdom.jobStats(L.VIR_DOMAIN_JOB_STATS_COMPLETED)["type"] == L.VIR_DOMAIN_JOB_CANCELLED

