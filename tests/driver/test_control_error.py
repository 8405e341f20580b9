"""The control-error event: the daemon loses control of a kvmm that still
runs.  A real trigger, no stub: kvmm is stopped with SIGSTOP, so a command
gets no answer within monitor_timeout (virtkvmmd.conf, 1 s here); the
call fails as a timeout and python3-libvirt's CONTROL_ERROR callback
fires.  Once kvmm runs again, commands work and no further event comes."""
import os
import queue
import signal
import threading
import time

import libvirt
import pytest

from drvtest import event_loop, virsh
from test_lifecycle import assert_nothing_left, guest_xml, serial, wait_for

L = libvirt


def conf_daemon(start_daemon, tmp_path, text):
    path = tmp_path / "virtkvmmd.conf"
    path.write_text(text)
    return start_daemon(["--config", str(path)])


class ControlErrors:
    def __init__(self, uri):
        event_loop()
        self.conn = libvirt.open(uri)
        self.q = queue.Queue()
        self.lifecycle = queue.Queue()
        # both kinds in arrival order, which is the order the daemon sent them
        self.order = queue.Queue()

        def control(c, dom, _):
            self.order.put(("control error", dom.name()))
            self.q.put(dom.name())

        def lifecycle(c, dom, ev, detail, _):
            self.order.put((dom.name(), ev, detail))
            self.lifecycle.put((dom.name(), ev, detail))
        self.conn.domainEventRegisterAny(None, L.VIR_DOMAIN_EVENT_ID_CONTROL_ERROR, control,
                                         None)
        self.conn.domainEventRegisterAny(None, L.VIR_DOMAIN_EVENT_ID_LIFECYCLE, lifecycle,
                                         None)

    def forget(self):
        """Drops what arrived so far from the ordered record."""
        while not self.order.empty():
            self.order.get_nowait()

    def until(self, marker, timeout=10):
        """What arrived before MARKER, an event the test caused last."""
        seen = []
        while True:
            try:
                e = self.order.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"no {marker} within {timeout}s; saw {seen}") from None
            if e == marker:
                return seen
            seen.append(e)


def test_control_error_when_kvmm_stops_answering(start_daemon, tmp_path, kvm):
    d = conf_daemon(start_daemon, tmp_path, "monitor_timeout = 1\n")
    ev = ControlErrors(d.uri())
    conn = libvirt.open(d.uri())
    img = os.path.join(d.root, "d.img")
    with open(img, "wb") as f:
        f.truncate(1 << 20)
    dom = conn.defineXML(guest_xml(d.root, extra_devices=f"""
    <disk type='file' device='disk'><source file='{img}'/><target dev='vda' bus='virtio'/></disk>"""))
    other = conn.defineXML(guest_xml(d.root, "other"))
    dom.create()
    other.create()
    wait_for(lambda: "KVMMTEST tick" in serial(d.root), "the guest running")
    pid = int(open(os.path.join(d.root, "run", "libvirt", "kvmm", dom.UUIDString() + ".xml"))
              .read().split("pid='")[1].split("'")[0])
    assert pid in d.guests()
    # a command that kvmm itself refuses is no loss of control
    with pytest.raises(libvirt.libvirtError) as e:
        dom.blockResize("vda", 1000, L.VIR_DOMAIN_BLOCK_RESIZE_BYTES)
    assert "kvmm refused 'block-resize'" in str(e.value)
    os.kill(pid, signal.SIGSTOP)
    try:
        t = time.monotonic()
        r = virsh(d.uri(), "suspend", "g1")
        assert r.returncode != 0
        assert "Timed out" in r.stderr and "kvmm" in r.stderr, r.stderr
        assert time.monotonic() - t < 8              # the configured second, not the default 10 s
        assert ev.q.get(timeout=10) == "g1"
        # the domain is still there and running; the other one is untouched
        assert dom.state() == [L.VIR_DOMAIN_RUNNING, L.VIR_DOMAIN_RUNNING_BOOTED]
        other.suspend()
        other.resume()
    finally:
        os.kill(pid, signal.SIGCONT)
    ev.forget()
    # control is back: commands work and no further control error comes
    dom.suspend()
    assert dom.state() == [L.VIR_DOMAIN_PAUSED, L.VIR_DOMAIN_PAUSED_USER]
    dom.resume()
    ticks = serial(d.root).count("KVMMTEST tick")
    wait_for(lambda: serial(d.root).count("KVMMTEST tick") > ticks, "ticks after SIGCONT")
    # stopping domains (a destroy, a guest's own poweroff) is no control error either
    dom.destroy()
    other.shutdown()
    wait_for(lambda: not other.isActive(), "the other guest's poweroff")
    # a definition's event comes after any the above caused
    conn.defineXML(guest_xml(d.root, "marker"))
    seen = ev.until(("marker", L.VIR_DOMAIN_EVENT_DEFINED, L.VIR_DOMAIN_EVENT_DEFINED_ADDED))
    assert not [e for e in seen if e[0] == "control error"], seen
    assert_nothing_left(d)
    conn.close()
    ev.conn.close()


def test_monitor_timeout_default_is_ten_seconds(daemon, kvm):
    """Without the key the daemon waits 10 s: a stopped kvmm that answers
    after 3 s costs a slow call, not an error or an event."""
    d = daemon
    ev = ControlErrors(d.uri())
    conn = libvirt.open(d.uri())
    dom = conn.defineXML(guest_xml(d.root))
    dom.create()
    wait_for(lambda: "KVMMTEST tick" in serial(d.root), "the guest running")
    [pid] = d.guests()
    os.kill(pid, signal.SIGSTOP)
    wake = threading.Timer(3, os.kill, (pid, signal.SIGCONT))
    wake.start()
    try:
        t = time.monotonic()
        dom.suspend()
        assert time.monotonic() - t >= 2.5
    finally:
        wake.join()
        os.kill(pid, signal.SIGCONT)
    assert dom.state()[0] == L.VIR_DOMAIN_PAUSED
    # events reach ev's connection on their own time: a later one shows
    # that none came for the slow call
    conn.defineXML(guest_xml(d.root, "marker"))
    seen = ev.until(("marker", L.VIR_DOMAIN_EVENT_DEFINED, L.VIR_DOMAIN_EVENT_DEFINED_ADDED))
    assert not [e for e in seen if e[0] == "control error"], seen
    dom.destroy()
    conn.close()
    ev.conn.close()
