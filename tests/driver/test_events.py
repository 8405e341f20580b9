"""Domain events from virtkvmmd: python3-libvirt callbacks (lifecycle,
metadata change, a domain filter, deregistration), the real `virsh event`,
and the wire form of the event messages seen by a raw client."""
import queue
import re
import struct
import subprocess
import time

import libvirt
import pytest

from drvtest import (CALL, MESSAGE, OK, ERROR, REMOTE_PROGRAM, Raw, call_packet,
                     decode_error, event_loop, virsh, xdr_int, xdr_uint)
from kvmmtest import GUEST
from test_lifecycle import wait_for

UUID1 = "5d3b8f36-3c1b-4f2e-9a57-0c1d2e3f4a5b"
UUID2 = "6e4c9047-4d2c-4a3f-8b68-1d2e3f4a5b6c"

PROC_EVENT_REGISTER_ANY, PROC_EVENT_DEREGISTER_ANY = 167, 168
PROC_CB_REGISTER_ANY, PROC_CB_DEREGISTER_ANY = 316, 317
MSG_LIFECYCLE, MSG_CB_LIFECYCLE = 107, 318

L = libvirt
DEFINED_ADDED = (L.VIR_DOMAIN_EVENT_DEFINED, L.VIR_DOMAIN_EVENT_DEFINED_ADDED)
DEFINED_UPDATED = (L.VIR_DOMAIN_EVENT_DEFINED, L.VIR_DOMAIN_EVENT_DEFINED_UPDATED)
DEFINED_RENAMED = (L.VIR_DOMAIN_EVENT_DEFINED, L.VIR_DOMAIN_EVENT_DEFINED_RENAMED)
UNDEFINED_REMOVED = (L.VIR_DOMAIN_EVENT_UNDEFINED, L.VIR_DOMAIN_EVENT_UNDEFINED_REMOVED)
UNDEFINED_RENAMED = (L.VIR_DOMAIN_EVENT_UNDEFINED, L.VIR_DOMAIN_EVENT_UNDEFINED_RENAMED)


def domain_xml(name="g1", uuid=UUID1, memory=64):
    return f"""<domain type='kvm'>
  <name>{name}</name>
  <uuid>{uuid}</uuid>
  <memory unit='MiB'>{memory}</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><kernel>{GUEST}</kernel></os>
  <devices/>
</domain>
"""


class Events:
    """A python3-libvirt connection whose callbacks put what they see on
    one queue, in arrival order."""

    def __init__(self, uri):
        event_loop()
        self.conn = libvirt.open(uri)
        self.q = queue.Queue()
        self.ids = []

    def lifecycle(self, dom=None):
        def cb(conn, d, event, detail, opaque):
            self.q.put((d.name(), d.UUIDString(), event, detail))
        cid = self.conn.domainEventRegisterAny(dom, L.VIR_DOMAIN_EVENT_ID_LIFECYCLE, cb, None)
        self.ids.append(cid)
        return cid

    def metadata(self):
        def cb(conn, d, mtype, nsuri, opaque):
            self.q.put(("metadata", d.name(), mtype, nsuri))
        cid = self.conn.domainEventRegisterAny(None, L.VIR_DOMAIN_EVENT_ID_METADATA_CHANGE, cb,
                                               None)
        self.ids.append(cid)
        return cid

    def next(self, timeout=10):
        try:
            return self.q.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError("no event within %ss" % timeout) from None

    def next_is(self, marker):
        """The next event is MARKER, one the test caused after an action
        that must send nothing: the daemon sends a connection's events in
        order, so any event of that action would have come first."""
        got = self.next()
        assert got == marker, f"unexpected event {got} before {marker}"

    def close(self):
        for cid in self.ids:
            try:
                self.conn.domainEventDeregisterAny(cid)
            except libvirt.libvirtError:
                pass
        self.conn.close()


@pytest.fixture
def events(daemon):
    ev = Events(daemon.uri())
    yield ev
    ev.close()


def test_lifecycle_define_redefine_rename_undefine_in_order(daemon, events):
    events.lifecycle()
    other = libvirt.open(daemon.uri())      # changes come from another client
    try:
        other.defineXML(domain_xml())
        assert events.next() == ("g1", UUID1) + DEFINED_ADDED
        other.defineXML(domain_xml(memory=128))
        assert events.next() == ("g1", UUID1) + DEFINED_UPDATED
        other.lookupByName("g1").rename("g2")
        # as libvirt: the old name goes first, then the new one comes
        assert events.next() == ("g1", UUID1) + UNDEFINED_RENAMED
        assert events.next() == ("g2", UUID1) + DEFINED_RENAMED
        other.lookupByName("g2").undefine()
        assert events.next() == ("g2", UUID1) + UNDEFINED_REMOVED
        other.defineXML(domain_xml("mk", UUID2))
        events.next_is(("mk", UUID2) + DEFINED_ADDED)
    finally:
        other.close()


def test_failed_define_sends_nothing(daemon, events):
    events.lifecycle()
    events.conn.defineXML(domain_xml())
    assert events.next()[2:] == DEFINED_ADDED
    with pytest.raises(libvirt.libvirtError):     # same name, other uuid
        events.conn.defineXML(domain_xml(uuid=UUID2))
    with pytest.raises(libvirt.libvirtError):
        events.conn.defineXML("<domain type='kvm'><name>bad</name></domain>")
    events.conn.defineXML(domain_xml("mk", UUID2))
    events.next_is(("mk", UUID2) + DEFINED_ADDED)


def test_callback_for_one_domain_sees_only_it(daemon, events):
    d1 = events.conn.defineXML(domain_xml("g1", UUID1))
    events.lifecycle(d1)
    events.conn.defineXML(domain_xml("g2", UUID2))
    events.conn.lookupByName("g2").undefine()
    d1.undefine()
    assert events.next() == ("g1", UUID1) + UNDEFINED_REMOVED
    events.conn.defineXML(domain_xml("g2", UUID2))     # again: still not ours
    events.conn.defineXML(domain_xml("g1", UUID1))
    events.next_is(("g1", UUID1) + DEFINED_ADDED)


def test_deregister_stops_events(daemon, events):
    cid = events.lifecycle()
    events.conn.defineXML(domain_xml())
    assert events.next()[2:] == DEFINED_ADDED
    mk = events.conn.defineXML(domain_xml("mk", UUID2))
    assert events.next() == ("mk", UUID2) + DEFINED_ADDED
    events.lifecycle(mk)                    # the marker's own callback stays
    events.conn.domainEventDeregisterAny(cid)
    events.ids.remove(cid)
    events.conn.lookupByName("g1").undefine()
    mk.undefine()
    events.next_is(("mk", UUID2) + UNDEFINED_REMOVED)
    assert "call virConnectDomainEventDeregisterAny (317)" in daemon.output()


def test_metadata_change_event(daemon, events):
    dom = events.conn.defineXML(domain_xml())
    events.metadata()
    dom.setMetadata(L.VIR_DOMAIN_METADATA_DESCRIPTION, "hello", None, None)
    assert events.next() == ("metadata", "g1", L.VIR_DOMAIN_METADATA_DESCRIPTION, None)
    dom.setMetadata(L.VIR_DOMAIN_METADATA_ELEMENT, "<k>v</k>", "app", "http://example.org/app")
    assert events.next() == ("metadata", "g1", L.VIR_DOMAIN_METADATA_ELEMENT,
                             "http://example.org/app")
    with pytest.raises(libvirt.libvirtError):       # refused: no event
        dom.setMetadata(L.VIR_DOMAIN_METADATA_TITLE, "two\nlines", None, None)
    dom.setMetadata(L.VIR_DOMAIN_METADATA_TITLE, "one line", None, None)
    events.next_is(("metadata", "g1", L.VIR_DOMAIN_METADATA_TITLE, None))


def test_virsh_event_all_loop(daemon, tmp_path):
    xml = tmp_path / "g1.xml"
    xml.write_text(domain_xml())
    ev = subprocess.Popen(["virsh", "-c", daemon.uri(), "event", "--all", "--loop",
                           "--timeout", "5"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, env={"LC_ALL": "C", "PATH": "/usr/bin:/bin"})
    try:
        # virsh registers all 27 domain event IDs before it waits
        deadline = time.monotonic() + 10
        while daemon.output().count("call virConnectDomainEventRegisterAny (316)") < 27:
            assert time.monotonic() < deadline, daemon.output()
            time.sleep(0.05)
        r = virsh(daemon.uri(), "define", str(xml))
        assert r.returncode == 0, r.stderr
        r = virsh(daemon.uri(), "undefine", "g1")
        assert r.returncode == 0, r.stderr
        out, err = ev.communicate(timeout=20)
    finally:
        if ev.poll() is None:
            ev.kill()
            ev.wait()
    assert "event 'lifecycle' for domain 'g1': Defined Added" in out, out + err
    assert "event 'lifecycle' for domain 'g1': Undefined Removed" in out, out + err
    assert out.index("Defined Added") < out.index("Undefined Removed")
    assert "events received: 2" in out, out


# --- the wire form, with a raw client --------------------------------------

def nonnull_domain(name, uuid):
    b = name.encode()
    return (struct.pack(">I", len(b)) + b + b"\0" * (-len(b) % 4) +
            bytes.fromhex(uuid.replace("-", "")) + xdr_int(-1))


def next_remote(raw, timeout=5):
    """The next packet of the remote program (keepalive skipped)."""
    while True:
        r = raw.recv(timeout)
        assert r is not None, "virtkvmmd closed the connection"
        if r[0] == REMOTE_PROGRAM:
            return r


def test_event_message_framing_and_server_side_filter(daemon):
    raw = Raw(daemon.sock).open()
    # callback form, filtered on g1 (which does not exist yet)
    r = raw.call(PROC_CB_REGISTER_ANY, xdr_int(0) + xdr_uint(1) + nonnull_domain("g1", UUID1))
    assert r[5] == OK
    (cbid,) = struct.unpack(">i", r[6])
    conn = libvirt.open(daemon.uri())
    try:
        conn.defineXML(domain_xml("g2", UUID2))     # filtered out by the server
        conn.defineXML(domain_xml("g1", UUID1))
    finally:
        conn.close()
    prog, vers, proc, mtype, serial, status, body = next_remote(raw)
    # a server-initiated message: type MESSAGE, serial 0, status OK
    assert (prog, vers, proc, mtype, serial, status) == \
        (REMOTE_PROGRAM, 1, MSG_CB_LIFECYCLE, MESSAGE, 0, OK)
    assert body == xdr_int(cbid) + nonnull_domain("g1", UUID1) + xdr_int(0) + xdr_int(0)
    raw.close()


def test_legacy_registration(daemon):
    """Clients that see feature 14 as 0 use 167/168 and messages without a
    callbackID."""
    raw = Raw(daemon.sock).open()
    assert raw.call(PROC_EVENT_REGISTER_ANY, xdr_int(0))[5] == OK
    r = raw.call(PROC_EVENT_REGISTER_ANY, xdr_int(0))
    assert r[5] == ERROR and "already registered" in decode_error(r[6])[2]
    conn = libvirt.open(daemon.uri())
    try:
        conn.defineXML(domain_xml())
    finally:
        conn.close()
    r = next_remote(raw)
    assert r[2:6] == (MSG_LIFECYCLE, MESSAGE, 0, OK)
    assert r[6] == nonnull_domain("g1", UUID1) + xdr_int(0) + xdr_int(0)
    assert raw.call(PROC_EVENT_DEREGISTER_ANY, xdr_int(0))[5] == OK
    r = raw.call(PROC_EVENT_DEREGISTER_ANY, xdr_int(0))
    assert r[5] == ERROR and "not registered" in decode_error(r[6])[2]
    raw.close()


def test_bad_registrations_refused(daemon):
    raw = Raw(daemon.sock).open()
    r = raw.call(PROC_CB_REGISTER_ANY, xdr_int(27) + xdr_uint(0))
    code, _, message, _ = decode_error(r[6])
    assert r[5] == ERROR and code == L.VIR_ERR_INVALID_ARG and "event ID 27" in message
    r = raw.call(PROC_CB_REGISTER_ANY, xdr_int(-1) + xdr_uint(0))
    assert r[5] == ERROR
    # another connection's callback is not ours to remove
    other = Raw(daemon.sock).open()
    r = other.call(PROC_CB_REGISTER_ANY, xdr_int(0) + xdr_uint(0))
    (theirs,) = struct.unpack(">i", r[6])
    r = raw.call(PROC_CB_DEREGISTER_ANY, xdr_int(theirs))
    assert r[5] == ERROR and "not registered" in decode_error(r[6])[2]
    # before CONNECT_OPEN: refused
    early = Raw(daemon.sock)
    early.send(call_packet(PROC_CB_REGISTER_ANY, 0, xdr_int(0) + xdr_uint(0)))
    assert next_remote(early)[5] == ERROR
    for c in (raw, other, early):
        c.close()


def test_closed_clients_events_are_dropped(daemon, events):
    gone = Raw(daemon.sock).open()
    assert gone.call(PROC_CB_REGISTER_ANY, xdr_int(0) + xdr_uint(0))[5] == OK
    # the newest client the daemon logged is this one
    gone_id = re.findall(r"client (\d+): connected", daemon.output())[-1]
    gone.close()
    # a read-only client may listen too
    ro = Events(daemon.uri(ro=True))
    try:
        ro.lifecycle()
        events.lifecycle()
        wait_for(lambda: f"client {gone_id}: disconnected" in daemon.output(),
                 "the daemon to see the hang-up")
        events.conn.defineXML(domain_xml())
        assert events.next()[2:] == DEFINED_ADDED
        assert ro.next()[2:] == DEFINED_ADDED
    finally:
        ro.close()
    assert daemon.alive()


def test_supports_event_callback_feature(daemon):
    raw = Raw(daemon.sock).open()
    r = raw.call(60, xdr_int(14))
    assert struct.unpack(">i", r[6])[0] == 1
    raw.close()


def test_many_event_callbacks_bounded(daemon):
    raw = Raw(daemon.sock).open()
    for i in range(256):
        assert raw.call(PROC_CB_REGISTER_ANY, xdr_int(i % 27) + xdr_uint(0))[5] == OK
    r = raw.call(PROC_CB_REGISTER_ANY, xdr_int(0) + xdr_uint(0))
    assert r[5] == ERROR and "too many event callbacks" in decode_error(r[6])[2]
    raw.close()
    assert daemon.alive()
