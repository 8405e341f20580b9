"""The real virt-manager (Debian's) against virtkvmmd, under Xvfb: it
connects to kvmm:///system, lists the test guest, starts it from its own
context menu, shows its serial console (the guest's shell answers keys
typed into it), its details pages and the host's details (networks and
storage through libvirt's own daemon, as virtkvmmd forwards them), and
shuts the guest down; all checked on screenshots read by OCR, and
virt-manager's debug log has no ERROR and no traceback.  Screenshots and
logs stay in the test's tmp dir (its path is in every failure)."""
import os
import re
import shutil
import tempfile

import libvirt
import pytest

import netns as netns_lib
import xsession
from drvtest import virsh
from kvmmtest import GUEST
from libvirtd import Libvirtd
from test_lifecycle import wait_for
from xsession import Near

NAME = "vmtest"
WINDOW = f"^{NAME} on kvmm$"        # the VM window: console and details pages


def domain_xml(log):
    # A pty serial port is what virt-manager's serial console needs (its
    # log keeps the boot, which a pty drops while nobody is attached);
    # no balloon, which kvmm does not take yet.
    return f"""<domain type='kvm'>
  <name>{NAME}</name>
  <memory unit='MiB'>128</memory>
  <vcpu>1</vcpu>
  <os><type>hvm</type><kernel>{GUEST}</kernel><cmdline>kvmmtest.action=prompt</cmdline></os>
  <on_poweroff>destroy</on_poweroff>
  <devices>
    <serial type='pty'><log file='{log}'/><target port='0'/></serial>
    <console type='pty'><target type='serial' port='0'/></console>
    <memballoon model='none'/>
  </devices>
</domain>
"""


@pytest.fixture
def netns():
    yield from netns_lib.private("kvvm-")


@pytest.fixture
def fwd(start_daemon, netns):
    """virtkvmmd in the namespaces of a libvirtd with the drivers
    virt-manager lists at start-up (networks, storage, node devices)."""
    lvd = Libvirtd(netns, ("network", "storage", "nodedev"))
    try:
        yield start_daemon(prefix=lvd.prefix), lvd
    finally:
        lvd.stop()


@pytest.fixture
def xs():
    """The X session, in a directory of its own that a failed test leaves
    behind (its path is in the failure): pytest's tmp dirs rotate away
    under parallel runs.  A test that passes sets xs.passed."""
    missing = xsession.missing_tools()
    if missing or not os.path.exists("/usr/bin/virt-manager"):
        pytest.fail(f"virt-manager or {missing} not installed: run tools/install-deps")
    s = xsession.XSession(tempfile.mkdtemp(prefix="kvvm-"))
    s.passed = False
    yield s
    s.stop()
    if s.passed:
        shutil.rmtree(s.workdir, ignore_errors=True)


class VirtManager:
    """virt-manager --debug on the session's display.  Later invocations
    with --show-* hand their request to this one over the session bus,
    as they would on a desktop."""

    def __init__(self, xs, uri):
        self.xs, self.uri = xs, uri
        self.logpath = os.path.join(xs.workdir, "virt-manager.log")
        self.proc = xs.popen(["virt-manager", "--connect", uri, "--debug", "--no-fork"],
                             "virt-manager.log")
        self.nshow = 0

    def log(self):
        with open(self.logpath, errors="replace") as f:
            return f.read()

    def wait_log(self, pattern, timeout=180):
        def seen():
            assert self.proc.poll() is None, f"virt-manager exited:\n{self.log()}"
            return re.search(pattern, self.log())
        return wait_for(seen, f"{pattern!r} in {self.logpath}", timeout)

    def show(self, *option):
        """virt-manager --show-...: the request goes to the running
        instance, which logs it and opens the window."""
        self.nshow += 1
        name = f"virt-manager-show{self.nshow}.log"
        r = self.xs.run(["virt-manager", "--connect", self.uri, "--debug", "--no-fork"]
                        + list(option), timeout=600)
        with open(os.path.join(self.xs.workdir, name), "w") as f:
            f.write(r.stdout + r.stderr)
        assert "Connected to remote app instance" in r.stdout + r.stderr, r.stdout + r.stderr
        return r.stdout + r.stderr


def problems(log):
    """virt-manager's ERROR (and CRITICAL) lines and tracebacks."""
    return [line for line in log.splitlines()
            if re.search(r"\] (ERROR|CRITICAL) \(", line) or line.startswith("Traceback")]


def test_virt_manager_connect_start_console_details_host(fwd, xs, kvm):
    d, lvd = fwd
    uri = d.uri()
    conn = libvirt.open(uri)
    log = os.path.join(d.root, "serial.log")
    dom = conn.defineXML(domain_xml(log))
    # A network for the host's "Virtual Networks" tab, in libvirt's own
    # network driver, through virtkvmmd.
    net = conn.networkDefineXML("<network><name>kvvmnet</name><bridge name='kvvmbr0'/>"
                                "<ip address='192.168.213.1' netmask='255.255.255.0'/></network>")
    _, mem_mib, host_cpus = conn.getInfo()[:3]
    vm = VirtManager(xs, uri)
    where = f"(screenshots and logs in {xs.workdir})"

    # --- connect and list ---------------------------------------------------
    manager = xs.wait_window("^Virtual Machine Manager$")
    vm.wait_log(r"changed to state=Active")
    path, text = xs.wait_text([NAME, "Shutoff", "kvmm"], manager, "manager-shutoff")
    assert "Running" not in text, where

    # --- start it from the VM's context menu --------------------------------
    x, y = xs.find_word(NAME, manager, "manager-row")
    xs.click(x, y, button=3)
    # The menu is a popup of its own, so it is read on the whole screen;
    # a shut-off VM has no other word "Run" on it.
    x, y = xs.find_word("Run", None, "context-menu")
    xs.click(x, y)
    vm.wait_log(rf"Starting vm '{NAME}'")
    wait_for(lambda: dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING, "the domain running", 120)
    xs.park_pointer()
    xs.wait_text([NAME, "Running"], manager, "manager-running")

    # --- the serial console ---------------------------------------------------
    vm.show("--show-domain-console", NAME)
    window = xs.wait_window(WINDOW)
    vm.wait_log(r"Opening console stream")
    xs.park_pointer()
    # The boot went by before anyone attached (as with QEMU, the pty
    # dropped it; the log has it): Enter brings the shell's prompt.  Keys
    # typed into virt-manager's terminal reach the guest's shell and its
    # answer comes back: a round trip through the console stream.  The
    # terminal takes the keys once it has the window's focus: a click in it.
    text = wait_for(lambda: (lambda t: "kvmm-testguest> " in t and t)(open(log).read()),
                    "the guest's shell in the serial log", 120)
    assert "KVMMTEST done pass=" in text and "KVMMTEST fail" not in text, text
    _, _, w, h = xs.geometry(window)
    xs.click(w // 2, h // 2)
    xs.key(window, "Return")
    xs.wait_text(["kvmm-testguest>"], window, "console")
    xs.type(window, "ticks")
    xs.key(window, "Return")
    xs.wait_text(["ticks:", "ms each"], window, "console-ticks")

    # --- the details pages --------------------------------------------------
    vm.show("--show-domain-editor", NAME)
    xs.park_pointer()
    xs.wait_text(["Basic Details", NAME, Near(dom.UUIDString()), "Running (Booted)",
                  "Hypervisor:", "KVM", "x86_64"], window, "details-overview")
    x, y = xs.find_word("CPUs", window, "details-list")
    xs.click(x, y)
    xs.park_pointer()
    xs.wait_text([re.compile(rf"Logical host CPUs: {host_cpus}\b"), "vCPU allocation:"], window,
                 "details-cpus")
    x, y = xs.find_word("Memory", window, "details-list")
    xs.click(x, y)
    xs.park_pointer()
    # virt-manager's own rounding of virNodeGetInfo's memory
    xs.wait_text(["Total host memory:", xs.lenient(f"{mem_mib} MiB"), "Current allocation:",
                  xs.lenient("128")], window, "details-memory")

    # --- the host's details -------------------------------------------------
    vm.show("--show-host-summary")
    host = xs.wait_window("^kvmm - Connection Details$")
    xs.park_pointer()
    xs.wait_text(["Basic details", "kvmm", "Libvirt URI:", "CPU usage", "Memory usage",
                  xs.lenient(f"of {mem_mib / 1024:2.2f} GiB")], host, "host-overview")
    x, y = xs.find_word("Networks", host, "host-tabs")
    xs.click(x, y)
    xs.park_pointer()
    xs.wait_text(["kvvmnet", "Device:", xs.lenient("kvvmbr0"), "Inactive",
                  xs.lenient("192.168.213.0/24")], host, "host-networks")
    assert net.name() == "kvvmnet"
    # At connect virt-manager builds the "default" pool if the host has
    # none: libvirt's storage driver made it, through virtkvmmd.
    x, y = xs.find_word("Storage", host, "host-tabs")
    xs.click(x, y)
    xs.park_pointer()
    xs.wait_text(["default", "Location:", "/var/lib/libvirt/images", "Active"], host,
                 "host-storage")
    pools = lvd.virsh("storage:///system", "pool-list", "--all", "--name").stdout.split()
    assert pools == ["default"], pools

    # --- shut down from the manager's context menu --------------------------
    x, y = xs.find_word(NAME, manager, "manager-row")
    xs.click(x, y, button=3)
    x0, y0 = xs.find_word("Shut", None, "context-menu")
    xs.click(x0, y0)    # opens the submenu, whose "Shut Down" is right of this one
    x, y = xs.find_word("Shut", None, "shutdown-submenu",
                        pick=lambda hits: next((w for w in hits if w.left > x0), None))
    xs.click(x, y)
    vm.wait_log(rf"Shutting down vm '{NAME}'")
    # The guest's ACPI power button handler powers it off.
    wait_for(lambda: dom.state()[0] == libvirt.VIR_DOMAIN_SHUTOFF, "the domain shut off", 120)
    xs.park_pointer()
    xs.wait_text([NAME, "Shutoff"], manager, "manager-shutoff-again")

    # --- virt-manager's log ---------------------------------------------------
    assert vm.proc.poll() is None, vm.log()
    log = vm.log()
    for f in sorted(os.listdir(xs.workdir)):
        if f.startswith("virt-manager-show"):
            with open(os.path.join(xs.workdir, f)) as fh:
                log += fh.read()
    assert problems(log) == [], f"{where}\n" + "\n".join(problems(log))
    assert d.alive(), d.output()
    r = virsh(uri, "domstate", NAME)
    assert r.stdout.strip() == "shut off", r.stdout + r.stderr
    conn.close()
    xs.passed = True


def test_log_check_finds_errors_and_tracebacks():
    """The check on virt-manager's log is not blind: its format is
    "[date virt-manager PID] LEVEL (module:line) message"."""
    log = """[Sun, 06 Dec 2026 20:55:15 virt-manager 3611] DEBUG (connection:739) Using events
[Sun, 06 Dec 2026 20:55:16 virt-manager 3611] ERROR (error:84) error dialog message:
summary=Error starting domain: internal error
Traceback (most recent call last):
  File "/usr/share/virt-manager/virtManager/asyncjob.py", line 72, in cb_wrapper
[Sun, 06 Dec 2026 20:55:17 virt-manager 3611] DEBUG (engine:316) an ERROR in a message
"""
    assert problems(log) == [log.splitlines()[1], "Traceback (most recent call last):"]
