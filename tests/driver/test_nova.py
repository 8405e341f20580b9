"""OpenStack nova's own libvirt driver (Debian's python3-nova) against a
private virtkvmmd: nova.virt.libvirt.host.Host reads the capabilities and
domain capabilities, LibvirtDriver.init_host passes its version checks
once the operator sets hypervisor_version (and refuses by default: kvmm's
own version is not a QEMU version), and get_available_resource reports
this host.

nova runs in a child python3 (it monkey-patches the interpreter with
eventlet, as nova-compute does).  Stubbed, because they need nova's
database or message bus and nothing of libvirt's: the driver's
_set_host_enabled (the service record) and
_register_all_undefined_instance_details (instances in the database).
Everything else init_host does talks to the daemon for real."""
import json
import os
import subprocess
import tempfile

import libvirt
import pytest

from drvtest import virsh

NOVA = r"""
import nova.monkey_patch  # noqa: F401  eventlet, as nova-compute runs
import json, sys
from unittest import mock
from nova import conf as nova_conf
CONF = nova_conf.CONF
CONF([], project='nova')
CONF.set_override('virt_type', 'kvm', group='libvirt')
CONF.set_override('connection_uri', sys.argv[1], group='libvirt')
CONF.set_override('instances_path', sys.argv[2])
CONF.set_override('my_ip', '127.0.0.1')
from nova.virt.libvirt import driver as lvdriver
drv = lvdriver.LibvirtDriver(mock.MagicMock(), read_only=False)
drv._set_host_enabled = lambda *a, **k: None
drv._register_all_undefined_instance_details = lambda: None
out = {}
try:
    drv.init_host('kvmmtest')
    out['init_host'] = 'ok'
except Exception as e:
    out['init_host'] = '%s: %s' % (type(e).__name__, e)
    print(json.dumps(out)); sys.exit(0)
h = drv._host
caps = h.get_capabilities()
out['uuid'] = caps.host.uuid
out['arch'] = caps.host.cpu.arch
out['vendor'] = caps.host.cpu.vendor
dc = h.get_domain_capabilities()
out['domcaps'] = {a: {m: c.machine_type for m, c in ms.items()} for a, ms in dc.items()}
out['version'] = h.get_version()
out['type'] = h.get_driver_type()
r = drv.get_available_resource('kvmmtest')
out['resource'] = {k: r[k] for k in ('vcpus', 'memory_mb', 'hypervisor_type',
                                     'hypervisor_version', 'cpu_info')}
print(json.dumps(out))
"""


def run_nova(d, instances):
    p = subprocess.run(["/usr/bin/python3", "-c", NOVA, d.uri(), instances],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout.strip().splitlines()[-1])


@pytest.fixture
def nova_available():
    try:
        subprocess.run(["/usr/bin/python3", "-c", "import nova.virt.libvirt.driver"],
                       check=True, capture_output=True, timeout=120)
    except subprocess.CalledProcessError as e:
        pytest.fail(f"python3-nova does not import (tools/install-deps installs it): {e.stderr}")


def daemon_with_conf(start_daemon, text):
    root = tempfile.mkdtemp(prefix="kvd-")
    conf = os.path.join(root, "virtkvmmd.conf")
    with open(conf, "w") as f:
        f.write(text)
    return start_daemon(extra=["--config", conf], root=root)


def test_init_host_refused_with_kvmms_own_version(start_daemon, nova_available, tmp_path):
    d = start_daemon()
    out = run_nova(d, str(tmp_path))
    assert out["init_host"] == "InternalError: Nova requires QEMU version 4.2.0 or greater."


def test_nova_host_and_init_host(start_daemon, nova_available, tmp_path):
    d = daemon_with_conf(start_daemon, 'hypervisor_version = "4.2.0"\n')
    out = run_nova(d, str(tmp_path))
    assert out["init_host"] == "ok", out
    assert out["version"] == 4002000
    # hv_type checks compare getType with "QEMU": nova's QEMU-only paths
    # (live snapshots, NUMA placement) stay off for kvmm.
    assert out["type"] == "KVMM"
    # <host><uuid>: what virsh shows, stable across calls
    conn = libvirt.open(d.uri())
    caps = conn.getCapabilities()
    assert f"<uuid>{out['uuid']}</uuid>" in caps
    assert out["arch"] == "x86_64" and out["vendor"] in ("AMD", "Intel", "Hygon")
    assert out["domcaps"] == {"x86_64": {"pc": "pc"}}
    res = out["resource"]
    assert res["hypervisor_type"] == "KVMM" and res["hypervisor_version"] == 4002000
    assert res["vcpus"] == len(os.sched_getaffinity(0)) or res["vcpus"] == os.cpu_count()
    info = json.loads(res["cpu_info"])
    assert info["arch"] == "x86_64" and info["vendor"] == out["vendor"]
    with open("/proc/cpuinfo") as f:
        flags = next(line for line in f if line.startswith("flags")).split(":")[1].split()
    assert set(info["features"]) == set(flags)
    conn.close()
    assert "Running hypervisor: KVMM 4.2.0" in virsh(d.uri(), "version").stdout
