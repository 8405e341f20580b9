"""nova 26's own volume and port attach/detach (Debian's python3-nova)
against a private virtkvmmd: LibvirtDriver.attach_volume and
attach_interface put a Cinder volume (a file, as nova's 'gpfs' volume
driver gives it: <disk type='file'> with the volume id as serial) and a
Neutron port (a bridge vif, as nova's vif driver and os-vif build it:
<interface type='bridge'> with nova's tap name) into a running kvmm test
guest, live and persistent; detach_volume and detach_interface take them
out through nova's _detach_with_retry, which waits for DEVICE_REMOVED.

Replaced, because they need the database, the message bus or a neutron
agent: Instance.save(), the instance's ports and block device mappings
(empty lists, read for the device metadata), the virtapi (a MagicMock),
and the vif driver's plug/unplug (os-vif's bridge plugging; the test made
the bridge).  nova runs in a child python3, as in test_nova.py."""
import json
import os
import select
import subprocess
import uuid as uuidlib

import libvirt
import pytest

from kvmmtest import wait_record
import netns as netns_lib
from test_attach_detach import CMDLINE, api_of, crc_of, make_disk, ns_taps
from test_lifecycle import guest_xml, serial, state_dir
from test_nova import NOVA_CONF, NOVA_DRIVER, daemon_with_conf, nova_available  # noqa: F401

L = libvirt
VOLUME = "5a0c1e9e-7d5b-4f57-9a0e-6b1f2c3d4e5f"
PORT = "3f2b6b7e-9a0c-4c4d-8e1b-0123456789ab"
TAP = "tap" + PORT[:11]
MAC = "fa:16:3e:12:34:56"

NOVA = NOVA_CONF + r"""
import logging, traceback
uri, uuid, volume, port, mac, vif_type = sys.argv[1:7]
from nova import context as nova_context, objects
from nova.network import model as network_model
from nova import utils as nova_utils
objects.register_all()
import os_vif.objects
os_vif.objects.register_all()

messages = []
class Keep(logging.Handler):
    def emit(self, record):
        messages.append(record.getMessage())
logging.getLogger('nova').addHandler(Keep(logging.DEBUG))
logging.getLogger('nova').setLevel(logging.DEBUG)

""" + NOVA_DRIVER + r"""
drv.init_host('kvmmtest')
if vif_type == 'bridge':
    # os-vif's bridge plugging: the test made the bridge
    drv.vif_driver.plug = lambda *a, **k: None
    drv.vif_driver.unplug = lambda *a, **k: None
# a 'tap' vif: nova makes the tap (privsep, run in this process as root)
import nova.privsep
nova.privsep.sys_admin_pctxt.set_client_mode(False)
ctx = nova_context.get_admin_context()
flavor = objects.Flavor(id=1, flavorid='1', name='m1.kvmm', memory_mb=128, vcpus=1,
                        root_gb=1, ephemeral_gb=0, swap=0, extra_specs={},
                        rxtx_factor=1.0, vcpu_weight=None, is_public=True, disabled=False)
image = {'id': '11111111-1111-4111-8111-111111111111', 'name': 'kvmmtest',
         'disk_format': 'raw', 'container_format': 'bare', 'min_ram': 0, 'min_disk': 0,
         'properties': {}}
image_meta = objects.ImageMeta.from_dict(image)
inst = objects.Instance(
    context=ctx, id=1, uuid=uuid, project_id='p', user_id='u', flavor=flavor,
    host='kvmmtest', node='kvmmtest', display_name='test', hostname='test',
    system_metadata=nova_utils.get_system_metadata_from_image(image, flavor),
    metadata={}, device_metadata=None, pci_devices=objects.PciDeviceList(objects=[]),
    numa_topology=None, image_ref=image['id'], memory_mb=128, vcpus=1, root_gb=1,
    ephemeral_gb=0, os_type=None, vm_mode=None, root_device_name='/dev/vda',
    default_ephemeral_device=None, default_swap_device=None, config_drive='',
    pci_requests=objects.InstancePCIRequests(requests=[]), trusted_certs=None,
    resources=None, vcpu_model=None, architecture=None, key_data=None,
    vm_state='active', task_state=None, power_state=1, migration_context=None,
    info_cache=objects.InstanceInfoCache(network_info=network_model.NetworkInfo([])),
    security_groups=objects.SecurityGroupList(objects=[]), tags=objects.TagList(objects=[]),
    keypairs=objects.KeyPairList(objects=[]))
inst.save = lambda *a, **k: None
objects.VirtualInterfaceList.get_by_instance_uuid = classmethod(
    lambda cls, c, u: objects.VirtualInterfaceList(objects=[]))
objects.BlockDeviceMappingList.get_by_instance_uuid = classmethod(
    lambda cls, c, u: objects.BlockDeviceMappingList(objects=[]))

def connection_info(path):
    # what cinder's GPFS driver returns: a file the compute host sees
    return {'driver_volume_type': 'gpfs', 'serial': volume,
            'data': {'device_path': path, 'name': 'volume-' + volume, 'volume_id': volume,
                     'access_mode': 'rw', 'qos_specs': None, 'encrypted': False,
                     'discard': False}}

net = network_model.Network(id='9c5a2f7e-1b3d-4e6f-8a9b-0c1d2e3f4a5b', bridge='kvbr0',
                            label='private', subnets=[])
vif = network_model.VIF(id=port, address=mac, network=net, type=vif_type,
                        devname=('tap' + port)[:network_model.NIC_NAME_LEN],
                        vnic_type=network_model.VNIC_TYPE_NORMAL, details={},
                        ovs_interfaceid=None, active=True)

print(json.dumps({'ready': True}), flush=True)
for line in sys.stdin:
    cmd = line.split()
    out = {}
    del messages[:]
    try:
        if cmd[0] == 'attach_volume':
            drv.attach_volume(ctx, connection_info(cmd[1]), inst, '/dev/vdb', disk_bus='virtio',
                              device_type='disk')
        elif cmd[0] == 'detach_volume':
            drv.detach_volume(ctx, connection_info(cmd[1]), inst, '/dev/vdb')
        elif cmd[0] == 'attach_interface':
            drv.attach_interface(ctx, inst, image_meta, vif)
        elif cmd[0] == 'detach_interface':
            drv.detach_interface(ctx, inst, vif)
    except Exception as e:
        out['error'] = '%s: %s' % (type(e).__name__, e)
        out['traceback'] = traceback.format_exc()
    out['log'] = messages[:]
    print(json.dumps(out), flush=True)
"""


class Nova:
    """The NOVA child: call("attach_volume PATH") -> its JSON answer."""

    def __init__(self, d, tmp, uuid, vif_type, ns):
        self.stderr = open(os.path.join(tmp, "nova.stderr"), "w+")
        # in the daemon's network namespace, where nova makes a 'tap' vif's tap
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, "/usr/bin/python3", "-c", NOVA, d.uri(), uuid, VOLUME,
             PORT, MAC, vif_type],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr, text=True)
        assert self.read(300) == {"ready": True}

    def read(self, timeout):
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        self.stderr.seek(0)
        assert ready, f"nova did not answer in {timeout}s:\n{self.stderr.read()[-4000:]}"
        line = self.proc.stdout.readline()
        assert line, f"nova exited:\n{self.stderr.read()[-4000:]}"
        return json.loads(line)

    def call(self, request, timeout=300):
        self.proc.stdin.write(request + "\n")
        self.proc.stdin.flush()
        out = self.read(timeout)
        assert "error" not in out, out["error"] + "\n" + out["traceback"]
        return out

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(60)
        self.stderr.close()


@pytest.fixture
def netns():
    yield from netns_lib.private("kvnh-")


def detached_by_event(out, name, alias):
    """nova's log of _detach_from_live_and_wait_for_event: it waited for
    the event with the alias and got it, without a retry or a timeout."""
    log = out["log"]
    assert any("Start waiting for the detach event" in m and f"device alias {alias}" in m
               for m in log), log
    assert any("Received event" in m and alias in m and "dispatched" in m for m in log), log
    assert any(f"Successfully detached device {name}" in m for m in log), log
    assert not any("timed out" in m or "retry" in m.lower() for m in log), log


@pytest.mark.parametrize("vif_type", ["bridge", "tap"])
def test_nova_attaches_and_detaches_a_volume_and_a_port(start_daemon, nova_available, netns,
                                                        kvm, tmp_path, vif_type):
    """A 'bridge' vif: <interface type='bridge'>, its tap made by the
    daemon; a 'tap' vif: <interface type='ethernet'> on the tap nova's
    vif driver made, which the test then puts on the bridge (what
    neutron's agent does) and nova's unplug deletes."""
    ns = netns
    for cmd in (["link", "add", "kvbr0", "type", "bridge"],
                ["addr", "add", "10.0.9.1/24", "dev", "kvbr0"],
                ["link", "set", "kvbr0", "up"]):
        subprocess.run(["ip", "-n", ns] + cmd, check=True)
    d = daemon_with_conf(lambda **kw: start_daemon(prefix=["ip", "netns", "exec", ns], **kw),
                         'hypervisor_version = "4.2.0"\n')
    conn = libvirt.open(d.uri())
    uuid = str(uuidlib.uuid4())
    xml = guest_xml(d.root, "hp", extra_cmdline=CMDLINE + " kvmmtest.hotplug.removals=2"
                    " kvmmtest.net0.ip=10.0.9.15 kvmmtest.net.serve=60")
    xml = xml.replace("<name>hp</name>", f"<name>hp</name><uuid>{uuid}</uuid>", 1)
    dom = conn.defineXML(xml)
    assert dom.UUIDString() == uuid
    dom.create()
    wait_record(lambda: serial(d.root, "hp"), r"KVMMTEST event hotplug-ready", "the guest's hotplug")
    api = api_of(d, dom)
    status = os.path.join(state_dir(d), uuid + ".xml")
    n = Nova(d, str(tmp_path), uuid, vif_type, ns)

    # the volume: nova's <disk>, live and in the definition
    img = make_disk(os.path.join(d.root, "volume-" + VOLUME))
    n.call(f"attach_volume {img}")
    rec = wait_record(lambda: serial(d.root, "hp"), r"KVMMTEST pass virtio-blk-read dev=blk0 .*",
                      "the guest's read of nova's volume", timeout=60).group(0)
    assert int(rec.split("crc32=")[1].split()[0], 16) == crc_of(img), rec
    # the volume id is 36 characters: the guest's virtio-blk ID holds the
    # first 20, as under QEMU; the XML keeps it whole
    wait_record(lambda: serial(d.root, "hp"),
                r'virtio-blk dev=blk0 .* serial="' + VOLUME[:20] + '"',
                "the guest's record of the volume's ID", timeout=60)
    for flags in (0, L.VIR_DOMAIN_XML_INACTIVE):
        text = dom.XMLDesc(flags)
        assert f"<source file='{img}'/>" in text and "<target dev='vdb' bus='virtio'/>" in text, text
        assert f"<serial>{VOLUME}</serial>" in text, text
    assert [(x["id"], x["path"]) for x in api.call("query-devices")["return"]] == [
        ("virtio-disk1", img)]

    # the port: nova's <interface> with its tap on the bridge
    n.call("attach_interface")
    assert ns_taps(ns) == [TAP]
    if vif_type == "tap":
        subprocess.run(["ip", "-n", ns, "link", "set", TAP, "master", "kvbr0", "up"], check=True)
    for flags in (0, L.VIR_DOMAIN_XML_INACTIVE):
        text = dom.XMLDesc(flags)
        assert f"<mac address='{MAC}'/>" in text, text
        assert ("<source bridge='kvbr0'/>" in text) == (vif_type == "bridge"), text
        assert f"<interface type='{'bridge' if vif_type == 'bridge' else 'ethernet'}'>" in text, text
    assert f"<target dev='{TAP}'/>" in dom.XMLDesc(0)
    wait_record(lambda: serial(d.root, "hp"), r"KVMMTEST event virtio-net-ready nics=1",
                "the guest's new NIC", timeout=60)
    assert [x["id"] for x in api.call("query-devices")["return"]] == ["virtio-disk1", "net0"]
    r = netns_lib.probe(ns, "10.0.9.15", 7)
    assert r["ping"] == 3 and r["udp"] == r["udp_sent"] and r["quit"] == 1, r

    # detach as nova does: the definition, then the guest, waiting for
    # DEVICE_REMOVED
    out = n.call(f"detach_volume {img}")
    detached_by_event(out, "vdb", "virtio-disk1")
    for flags in (0, L.VIR_DOMAIN_XML_INACTIVE):
        assert img not in dom.XMLDesc(flags)
    assert img not in open(status).read()
    out = n.call("detach_interface")
    detached_by_event(out, TAP, "net0")
    wait_record(lambda: serial(d.root, "hp"), r"KVMMTEST pass hotplug added=2 removed=2",
                "the guest's ejects", timeout=60)
    for flags in (0, L.VIR_DOMAIN_XML_INACTIVE):
        assert MAC not in dom.XMLDesc(flags)
    assert MAC not in open(status).read()
    assert ns_taps(ns) == []
    # kvmm holds no device: the PCI slots are free again
    assert api.call("query-devices")["return"] == []
    api.close()
    assert "KVMMTEST fail" not in serial(d.root, "hp")
    n.close()
    dom.destroy()
    conn.close()
