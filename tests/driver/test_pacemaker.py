"""Pacemaker's VirtualDomain resource agent (Debian's resource-agents)
managing a kvmm guest through virtkvmmd, run by hand as Pacemaker runs it:
the action as its argument, the resource's parameters in OCF_RESKEY_*,
its exit code the answer (0 success, 7 not running).  Two daemons in two
network namespaces joined by a veth are the two cluster nodes (the
fixtures of test_migrate); migrate_to on the source node live-migrates
with `virsh migrate --live`, migrate_from on the target checks it runs
there.  The agent builds the destination's virsh URI and the migration URI
from its `remoteuri` and `migrateuri` options, %n being the target node's
name (here its address: the namespaces resolve no host names)."""
import os
import subprocess

import libvirt
import pytest

from test_lifecycle import wait_for
from test_migrate import (DIRTY, DST_IP, assert_memory_right, hosts, live_xml,  # noqa: F401
                          ns_dst, ns_src, ticks, tls_dst_conf, wait_ticks)
from test_tls import pki  # noqa: F401 (fixture)

L = libvirt
AGENT = "/usr/lib/ocf/resource.d/heartbeat/VirtualDomain"
OCF_SUCCESS, OCF_NOT_RUNNING = 0, 7


def agent(action, config, hypervisor, **env):
    """Runs the agent's ACTION for the domain CONFIG on the node whose
    daemon is HYPERVISOR: (exit code, output)."""
    e = dict(os.environ, LC_ALL="C", OCF_ROOT="/usr/lib/ocf", OCF_RESOURCE_INSTANCE="vm1",
             OCF_RESOURCE_TYPE="VirtualDomain", OCF_RESKEY_config=config,
             OCF_RESKEY_hypervisor=hypervisor, OCF_RESKEY_CRM_meta_timeout="120000",
             HA_RSCTMP=os.path.join(os.path.dirname(config), "rsctmp"), HA_debug="0",
             **{"OCF_RESKEY_" + k: v for k, v in env.items()})
    r = subprocess.run([AGENT, action], capture_output=True, text=True, timeout=240, env=e)
    return r.returncode, r.stdout + r.stderr


@pytest.fixture
def cluster(hosts):
    if not os.access(AGENT, os.X_OK):
        pytest.fail(f"{AGENT} missing: tools/install-deps installs resource-agents")
    src, dst, shared = hosts
    os.makedirs(os.path.join(shared, "rsctmp"))
    config = os.path.join(shared, "m1.xml")
    with open(config, "w") as f:
        f.write(live_xml(shared, cmdline=DIRTY))
    yield src, dst, shared, config


def test_start_monitor_migrate_stop(cluster):
    src, dst, shared, config = cluster
    assert agent("monitor", config, src.uri)[0] == OCF_NOT_RUNNING
    rc, out = agent("start", config, src.uri)
    assert rc == OCF_SUCCESS, out + src.d.output()
    assert agent("monitor", config, src.uri)[0] == OCF_SUCCESS
    wait_ticks(shared, 3)
    before = ticks(shared)
    # migrate_to on the source node, as Pacemaker with migrate_target set.
    mig = dict(CRM_meta_migrate_target=DST_IP, CRM_meta_migrate_source="10.199.0.1",
               remoteuri=dst.uri, migrateuri="tcp://%n", migration_downtime="0",
               migration_speed="0")
    rc, out = agent("migrate_to", config, src.uri, **mig)
    assert rc == OCF_SUCCESS, out + src.d.output() + dst.d.output()
    assert f"migrate --live  m1 {dst.uri} tcp://{DST_IP}" in out, out
    rc, out = agent("migrate_from", config, dst.uri, **mig)
    assert rc == OCF_SUCCESS, out + dst.d.output()
    # It runs on the target node only, having gone on without a reboot.
    assert agent("monitor", config, dst.uri)[0] == OCF_SUCCESS
    assert agent("monitor", config, src.uri)[0] == OCF_NOT_RUNNING
    assert dst.conn.lookupByName("m1").state()[0] == L.VIR_DOMAIN_RUNNING
    assert src.d.guests() == [] and len(dst.d.guests()) == 1
    assert_memory_right(shared, before)
    rc, out = agent("stop", config, dst.uri)
    assert rc == OCF_SUCCESS, out + dst.d.output()
    assert agent("monitor", config, dst.uri)[0] == OCF_NOT_RUNNING
    assert dst.d.guests() == []


def test_a_killed_kvmm_is_not_running(cluster):
    src, dst, shared, config = cluster
    rc, out = agent("start", config, src.uri)
    assert rc == OCF_SUCCESS, out + src.d.output()
    wait_ticks(shared, 3)
    assert agent("monitor", config, src.uri)[0] == OCF_SUCCESS
    [pid] = src.d.guests()
    os.kill(pid, 9)
    # Once the daemon saw it end (what the agent asks is the daemon).
    wait_for(lambda: src.d.guests() == [] and
             "m1" not in [d.name() for d in src.conn.listAllDomains(
                 L.VIR_CONNECT_LIST_DOMAINS_ACTIVE)], "the killed kvmm gone")
    rc, out = agent("monitor", config, src.uri)
    assert rc == OCF_NOT_RUNNING, out + src.d.output()
    # Pacemaker's recovery: stop (nothing to do), then start again.
    assert agent("stop", config, src.uri)[0] == OCF_SUCCESS
    rc, out = agent("start", config, src.uri)
    assert rc == OCF_SUCCESS, out + src.d.output()
    assert agent("monitor", config, src.uri)[0] == OCF_SUCCESS
    assert agent("stop", config, src.uri)[0] == OCF_SUCCESS
