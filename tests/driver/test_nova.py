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
import select
import subprocess
import tempfile
import uuid as uuidlib
import xml.etree.ElementTree as ET

import libvirt
import pytest

from drvtest import virsh
from kvmmtest import GUEST
from test_lifecycle import wait_for

# The start of every nova child's text here (and test_nova_hotplug.py's):
# nova as nova-compute runs it, configured for the daemon at argv[1].
# The child's own settings follow, then NOVA_DRIVER.
NOVA_CONF = r"""
import nova.monkey_patch  # noqa: F401  eventlet, as nova-compute runs
import json, sys
from unittest import mock
from nova import conf as nova_conf
CONF = nova_conf.CONF
CONF([], project='nova')
CONF.set_override('virt_type', 'kvm', group='libvirt')
CONF.set_override('connection_uri', sys.argv[1], group='libvirt')
CONF.set_override('my_ip', '127.0.0.1')
"""

# nova's LibvirtDriver on that daemon, with what would write nova's
# database (the service record, its instances) stubbed;
# the child calls its init_host.
NOVA_DRIVER = r"""
from nova.virt.libvirt import driver as lvdriver
drv = lvdriver.LibvirtDriver(mock.MagicMock(), read_only=False)
drv._set_host_enabled = lambda *a, **k: None
drv._register_all_undefined_instance_details = lambda: None
"""

NOVA = NOVA_CONF + r"""
CONF.set_override('instances_path', sys.argv[2])
""" + NOVA_DRIVER + r"""
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


# nova's compute-side lifecycle on one instance, one request a line on
# stdin, one JSON answer a line on stdout, so the test checks libvirt's
# view between nova's calls.  Everything it does not replace talks to the
# daemon (and to qemu-img, the instance directory and the pty) for real.
NOVA_LIFECYCLE = NOVA_CONF + r"""
import logging, shutil, traceback
from oslo_utils import timeutils
uri, instances, disk, kernel, uuid, cmdline = sys.argv[1:7]
CONF.set_override('images_type', 'raw', group='libvirt')
CONF.set_override('wait_soft_reboot_seconds', 60, group='libvirt')
CONF.set_override('enabled', False, group='vnc')
CONF.set_override('instances_path', instances)
from nova import context as nova_context, objects
from nova.network import model as network_model
from nova import utils as nova_utils
objects.register_all()
import nova.privsep
nova.privsep.sys_admin_pctxt.set_client_mode(False)
from nova.virt import images
DISK_ID, KERNEL_ID = '11111111-1111-4111-8111-111111111111', '22222222-2222-4222-8222-222222222222'

class Glance:
    files = {DISK_ID: (disk, 'raw'), KERNEL_ID: (kernel, 'aki')}
    def get(self, ctx, href, **kw):
        return {'id': href, 'disk_format': self.files[href][1]}
    def download(self, ctx, href, dest_path=None, trusted_certs=None):
        shutil.copyfile(self.files[href][0], dest_path)
images.IMAGE_API = Glance()

messages = []
class Keep(logging.Handler):
    def emit(self, record):
        messages.append(record.getMessage())
logging.getLogger('nova').addHandler(Keep(logging.INFO))
logging.getLogger('nova').setLevel(logging.INFO)

""" + NOVA_DRIVER + r"""
drv._register_undefined_instance_details = lambda *a, **k: None
drv.init_host('kvmmtest')
ctx = nova_context.get_admin_context()
flavor = objects.Flavor(id=1, flavorid='1', name='m1.kvmm', memory_mb=128, vcpus=1,
                        root_gb=1, ephemeral_gb=0, swap=0, extra_specs={},
                        rxtx_factor=1.0, vcpu_weight=None, is_public=True, disabled=False)
nets = network_model.NetworkInfo([])
image = {'id': DISK_ID, 'name': 'kvmmtest', 'disk_format': 'raw', 'container_format': 'bare',
         'min_ram': 0, 'min_disk': 0,
         'properties': {'kernel_id': KERNEL_ID, 'os_command_line': cmdline}}
image_meta = objects.ImageMeta.from_dict(image)
inst = objects.Instance(
    context=ctx, id=1, uuid=uuid, project_id='p', user_id='u',
    image_ref=DISK_ID, kernel_id=KERNEL_ID, ramdisk_id='', flavor=flavor,
    old_flavor=None, new_flavor=None, memory_mb=128, vcpus=1, root_gb=1, ephemeral_gb=0,
    host='kvmmtest', node='kvmmtest', launched_on='kvmmtest', display_name='test',
    hostname='test', os_type=None, vm_mode=None, root_device_name=None,
    default_ephemeral_device=None, default_swap_device=None, config_drive='',
    # what the compute API keeps of the image: a hard reboot rebuilds
    # the XML from it
    system_metadata=nova_utils.get_system_metadata_from_image(image, flavor), metadata={}, numa_topology=None,
    pci_requests=objects.InstancePCIRequests(requests=[]),
    pci_devices=objects.PciDeviceList(objects=[]), trusted_certs=None, resources=None,
    vcpu_model=None, device_metadata=None, architecture=None, key_data=None,
    launched_at=None, vm_state='building', task_state=None, power_state=0,
    ephemeral_key_uuid=None, migration_context=None,
    info_cache=objects.InstanceInfoCache(network_info=nets),
    security_groups=objects.SecurityGroupList(objects=[]), tags=objects.TagList(objects=[]),
    keypairs=objects.KeyPairList(objects=[]))
inst.save = lambda *a, **k: None
objects.VirtualInterfaceList.get_by_instance_uuid = classmethod(
    lambda cls, c, u: objects.VirtualInterfaceList(objects=[]))
objects.BlockDeviceMappingList.get_by_instance_uuid = classmethod(
    lambda cls, c, u: objects.BlockDeviceMappingList(objects=[]))

print(json.dumps({'ready': True}), flush=True)
for line in sys.stdin:
    cmd = line.split()
    out = {}
    del messages[:]
    try:
        if cmd[0] == 'spawn':
            drv.spawn(ctx, inst, image_meta, [], None, {}, network_info=nets)
            inst.launched_at = timeutils.utcnow()  # as the compute manager does
        elif cmd[0] == 'reboot':
            drv.reboot(ctx, inst, nets, cmd[1])
        elif cmd[0] == 'pause':
            drv.pause(inst)
        elif cmd[0] == 'unpause':
            drv.unpause(inst)
        elif cmd[0] == 'power_off':
            drv.power_off(inst, int(cmd[1]), 5)
        elif cmd[0] == 'power_on':
            drv.power_on(ctx, inst, nets)
        elif cmd[0] == 'destroy':
            drv.destroy(ctx, inst, nets)
        elif cmd[0] == 'suspend':
            drv.suspend(ctx, inst)
        elif cmd[0] == 'resume':
            drv.resume(ctx, inst, nets)
        elif cmd[0] == 'trigger_crash_dump':
            drv.trigger_crash_dump(inst)
        elif cmd[0] == 'console':
            text = drv.get_console_output(ctx, inst)  # "" when there is no log yet
            out['console'] = text.decode(errors='replace') if isinstance(text, bytes) else text
        elif cmd[0] == 'diagnostics':
            out['diagnostics'] = drv.get_instance_diagnostics(inst).obj_to_primitive()['nova_object.data']
        elif cmd[0] == 'list':
            out['list'] = [drv.list_instances(), drv.list_instance_uuids(), drv.instance_exists(inst)]
        try:
            out['state'] = drv.get_info(inst).state
        except Exception as e:
            out['state'] = type(e).__name__
    except Exception as e:
        out['error'] = '%s: %s' % (type(e).__name__, e)
        out['traceback'] = traceback.format_exc()
    out['log'] = messages[:]
    print(json.dumps(out), flush=True)
"""


class Nova:
    """The NOVA_LIFECYCLE child: call("reboot SOFT") -> its JSON answer."""

    def __init__(self, d, tmp, cmdline):
        self.instances = os.path.join(tmp, "instances")
        os.makedirs(self.instances)
        self.disk = os.path.join(tmp, "image.raw")
        with open(self.disk, "wb") as f:
            f.truncate(1 << 20)
        self.uuid = str(uuidlib.uuid4())
        self.dir = os.path.join(self.instances, self.uuid)
        self.stderr = open(os.path.join(tmp, "nova.stderr"), "w+")
        self.proc = subprocess.Popen(
            ["/usr/bin/python3", "-c", NOVA_LIFECYCLE, d.uri(), self.instances, self.disk,
             GUEST, self.uuid, cmdline],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr, text=True)
        assert self.read(300) == {"ready": True}

    def read(self, timeout):
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            self.stderr.seek(0)
            raise AssertionError(f"nova did not answer in {timeout}s:\n{self.stderr.read()[-4000:]}")
        line = self.proc.stdout.readline()
        if not line:
            self.stderr.seek(0)
            raise AssertionError(f"nova exited:\n{self.stderr.read()[-4000:]}")
        return json.loads(line)

    def call(self, request, timeout=300, fails=False):
        self.proc.stdin.write(request + "\n")
        self.proc.stdin.flush()
        out = self.read(timeout)
        if fails:
            assert "error" in out, out
        else:
            assert "error" not in out, out["error"] + "\n" + out["traceback"]
        return out

    def console(self):
        return self.call("console")["console"]

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(60)
        self.stderr.close()


# nova.compute.power_state
RUNNING, PAUSED, SHUTDOWN = 1, 3, 4
BOOT = b"KVMMTEST boot"
MARK = b"OLD-RUN-MARK!"
assert len(MARK) == len(BOOT)


def ticks(text):
    return [int(line.split()[2]) for line in text.splitlines()
            if line.startswith("KVMMTEST tick ") and line.split()[2].isdigit()]


@pytest.fixture
def nova(start_daemon, nova_available, tmp_path):
    d = daemon_with_conf(start_daemon, 'hypervisor_version = "4.2.0"\n')
    n = Nova(d, str(tmp_path), "kvmmtest.action=wait kvmmtest.tick_ms=100")
    conn = libvirt.open(d.uri())
    yield d, n, conn
    conn.close()
    n.close()


def test_nova_spawns_reboots_pauses_powers_off_on_and_destroys(nova):
    """nova 26's LibvirtDriver.spawn, reboot (soft and hard), pause,
    unpause, power_off (clean and hard), power_on, suspend and resume
    (libvirt's managed save), get_console_output, get_instance_diagnostics
    and destroy on one instance, each checked in nova's get_info and in
    libvirt's view; trigger_crash_dump refused (kvmm has no NMI yet).

    nova runs as nova-compute would, with [libvirt]images_type=raw (a
    plain copy of the image; the qcow2 overlay is another test's
    subject), [vnc]enabled=false (kvmm has no display, and nova then asks
    for no USB controller either) and the image property os_command_line.
    The image's kernel_id makes nova emit <kernel>: the test guest.
    Replaced, because they need glance, the database or the message bus:
    - glance (nova.virt.images.IMAGE_API): get() says the disk image is
      'raw' and the kernel 'aki'; download() copies a 1 MiB file or the
      test guest.  nova's own image cache, format checks and qemu-img
      run on them;
    - the database: Instance.save() does nothing, the instance's ports
      and block device mappings (VirtualInterfaceList and
      BlockDeviceMappingList.get_by_instance_uuid, asked for the config
      drive's device metadata) are empty lists, and the driver's
      _register_undefined_instance_details is not run (it saves image
      properties); the instance object carries every field nova reads;
    - the message bus: the virtapi is a MagicMock (nova waits on it for
      neutron's vif-plugged events; there are no ports);
    - privsep runs its functions in this process (set_client_mode(False))
      instead of in a helper started through sudo: the test runs as root.
    """
    d, n, conn = nova
    out = n.call("spawn")
    assert out["state"] == RUNNING
    dom = conn.lookupByUUIDString(n.uuid)
    assert dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING
    # nova's XML as nova wrote it: its kernel copy, its disk, its console log
    root = ET.fromstring(dom.XMLDesc())
    kernel = root.find("os/kernel").text
    assert kernel == os.path.join(n.dir, "kernel")
    with open(kernel, "rb") as a, open(GUEST, "rb") as b:
        assert a.read() == b.read()
    assert root.find("os/cmdline").text == "kvmmtest.action=wait kvmmtest.tick_ms=100"
    assert root.find("devices/disk/source").get("file") == os.path.join(n.dir, "disk")
    log = os.path.join(n.dir, "console.log")
    assert root.find("devices/console/log").get("file") == log
    assert root.find("devices/serial/log").get("file") == log
    # get_console_output: the guest's serial output, read by nova
    text = wait_for(lambda: (lambda t: "KVMMTEST done" in t and t)(n.console()),
                    "the guest's records in nova's console output", timeout=120)
    assert text.startswith("KVMMTEST boot"), text[:200]
    assert "KVMMTEST fail" not in text, text

    assert n.call("list")["list"] == [["instance-00000001"], [n.uuid], True]
    diag = n.call("diagnostics")["diagnostics"]
    assert diag["state"] == "running" and diag["num_cpus"] == 1 and diag["num_disks"] == 1

    # What kvmm cannot do yet (inject an NMI) is refused as libvirt
    # refuses what a driver lacks, and nova says so; the guest runs on
    out = n.call("trigger_crash_dump", fails=True)
    assert out["error"] == "TriggerCrashDumpNotSupported: Triggering crash dump is not supported"
    assert n.call("state")["state"] == RUNNING
    assert dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING and not dom.hasManagedSaveImage()

    # pause: the guest stops ticking; unpause: it ticks on
    assert n.call("pause")["state"] == PAUSED
    assert dom.state()[0] == libvirt.VIR_DOMAIN_PAUSED
    assert n.call("unpause")["state"] == RUNNING
    assert dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING
    last = max(ticks(n.console()), default=0)
    wait_for(lambda: max(ticks(n.console()), default=0) > last, "a tick after unpause", 60)

    def restarted(request, old_id, expect_log=()):
        # Mark the old run's first line where nothing writes again (kvmm
        # writes on at its offset, nova appends): only a new run's log,
        # written over from the start, begins with the boot record again.
        with open(log, "r+b") as f:
            assert f.read(len(BOOT)) == BOOT
            f.seek(0)
            f.write(MARK)
        out = n.call(request)
        assert out["state"] == RUNNING, out
        for message in expect_log:
            assert message in out["log"], out["log"]
        dom = conn.lookupByUUIDString(n.uuid)
        assert dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING
        assert dom.ID() not in (-1, old_id)      # a new kvmm process
        # the new run's console log (append='off': the file written over)
        text = wait_for(lambda: (lambda t: "KVMMTEST done" in t and t)(n.console()),
                        f"the guest's records after {request}", timeout=120)
        assert text.startswith(BOOT.decode()), text[:300]
        return dom, text

    # soft: the guest takes the ACPI power button and powers off; nova
    # starts it again (without falling back to a hard reboot)
    dom, text = restarted("reboot SOFT", dom.ID(), ["Instance shutdown successfully."])
    assert "event power-button" not in text
    dom, _ = restarted("reboot HARD", dom.ID())

    # power_off with a timeout: the clean shutdown (power button)
    out = n.call("power_off 60")
    assert out["state"] == SHUTDOWN and any("shutdown successfully" in m for m in out["log"]), out
    assert dom.state()[0] == libvirt.VIR_DOMAIN_SHUTOFF
    assert "event power-button" in open(log, errors="replace").read()
    dom, _ = restarted("power_on", -1)
    # power_off without one: destroyed
    assert n.call("power_off 0")["state"] == SHUTDOWN
    assert dom.state()[0] == libvirt.VIR_DOMAIN_SHUTOFF
    dom, _ = restarted("power_on", -1)

    # suspend: nova's managed save -- the domain saved and shut off; resume
    # redefines it and starts it, which restores the image: the guest goes
    # on where it was (its ticks continue, no new boot), the image gone.
    # Last, as the restored run's log starts without the boot record.
    wait_for(lambda: ticks(n.console()), "a tick before suspend", 60)
    before = n.console()
    last = max(ticks(before))
    assert n.call("suspend")["state"] == SHUTDOWN
    assert dom.state() == [libvirt.VIR_DOMAIN_SHUTOFF, libvirt.VIR_DOMAIN_SHUTOFF_SAVED]
    assert dom.hasManagedSaveImage() == 1
    assert n.call("resume")["state"] == RUNNING
    dom = conn.lookupByUUIDString(n.uuid)
    assert dom.state() == [libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_RUNNING_RESTORED]
    assert dom.hasManagedSaveImage() == 0

    def after_resume():
        text = n.console()
        # append='off': the restored run's log is written over, or (if not
        # shorter yet) goes on after what was there
        return text[len(before):] if text.startswith(before) else text
    wait_for(lambda: len(ticks(after_resume())) >= 2, "ticks after resume", 60)
    new = after_resume()
    assert BOOT.decode() not in new, new[:300]
    assert min(ticks(new)) > last and ticks(new) == sorted(ticks(new)), new[:300]

    out = n.call("destroy")
    assert out["state"] == "InstanceNotFound"
    with pytest.raises(libvirt.libvirtError) as e:
        conn.lookupByUUIDString(n.uuid)
    assert e.value.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN
    assert not os.path.exists(n.dir)
    wait_for(lambda: d.guests() == [], "kvmm gone after destroy")


def test_nova_console_output_is_the_guests_output_once(nova):
    d, n, conn = nova
    assert n.call("spawn")["state"] == RUNNING
    log = os.path.join(n.dir, "console.log")
    wait_for(lambda: os.path.exists(log) and "KVMMTEST done" in open(log, errors="replace").read(),
             "the guest's records in the log kvmm writes", timeout=120)
    text = n.console()
    assert text.count("KVMMTEST boot") == 1, text
