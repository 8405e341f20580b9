"""virsh migrate --tls between two virtkvmmd instances as two hosts (the
network namespaces, veth and shared directory of test_migrate.py): the
daemons do the TLS handshake on the migration's TCP connection with
x509 certificates made here (qemu.conf's file names: ca-cert.pem,
server-cert.pem, client-cert.pem and their keys, in
migrate_tls_x509_cert_dir or the default /etc/pki/qemu under the
daemon's root) and relay the plaintext to and from kvmm.  The bytes on
the veth are captured with an AF_PACKET reader in the destination's
namespace: a plain migration shows the state stream's magic, a TLS one
does not.  An untrusted destination, an untrusted source and missing
certificates are refused with nothing left behind; migrate_tls_force
refuses a migration without --tls; a destination kvmm that dies, or an
aborted copy, leaves the source running."""
import datetime
import ipaddress
import os
import shutil
import subprocess
import sys
import tempfile

import libvirt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from drvtest import virsh
from kvmmtest import KVMM
from test_lifecycle import wait_for
from test_migrate import (DIRTY, DST_IP, DYING, DYING_AFTER, SRC_IP, TLS_PORT, Host,  # noqa: F401
                          assert_continued, assert_memory_right, live_xml, migrate, ns_dst, ns_src,
                          copying, running, start_migrate, ticks, tls_dst_conf, wait_ticks)
from test_tls import CA, pem_cert, pem_key, pki, write  # noqa: F401 (fixture)

L = libvirt
# The first bytes of kvmm's state stream (docs/state-stream.md), and a
# string of the test guest's image, in its memory.
STREAM_MAGIC = b"KVMMSTRM"
GUEST_MARK = b"KVMMTEST"
UNVERIFIED = "Unable to verify TLS peer"


def host_cert(ca, ip):
    """A key and a certificate for a host at IP, for both ends of TLS (the
    same pair serves as server-cert.pem and client-cert.pem)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "kvmm test"),
                                     x509.NameAttribute(NameOID.COMMON_NAME, ip)]))
            .issuer_name(ca.cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, False, True, False, False, False, False,
                                         False, False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                  ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]),
                           critical=False)
            .sign(ca.key, hashes.SHA256()))
    return key, cert


def cert_dir(d, trusted, key, cert):
    """A migrate_tls_x509_cert_dir: the CA it trusts, its own pair."""
    write(os.path.join(d, "ca-cert.pem"), pem_cert(trusted.cert))
    for role in ("server", "client"):
        write(os.path.join(d, f"{role}-cert.pem"), pem_cert(cert))
        write(os.path.join(d, f"{role}-key.pem"), pem_key(key))
    return d


@pytest.fixture(scope="module")
def mig_pki(tmp_path_factory):
    """Directories: src, dst (both signed by the CA they trust), and
    dst_rogue, src_rogue (trusting the CA, their own certificates signed
    by another)."""
    base = str(tmp_path_factory.mktemp("migpki"))
    ca, rogue = CA(), CA("C=GB,O=kvmm test,CN=rogue CA")
    return {
        "src": cert_dir(os.path.join(base, "src"), ca, *host_cert(ca, SRC_IP)),
        "dst": cert_dir(os.path.join(base, "dst"), ca, *host_cert(ca, DST_IP)),
        "src_rogue": cert_dir(os.path.join(base, "src_rogue"), ca, *host_cert(rogue, SRC_IP)),
        "dst_rogue": cert_dir(os.path.join(base, "dst_rogue"), ca, *host_cert(rogue, DST_IP)),
    }


@pytest.fixture
def tls_hosts(start_daemon, ns_src, ns_dst, kvm, tls_dst_conf, mig_pki):
    """make(src=, dst=, dst_conf=) -> (src, dst, shared, veth of the
    destination): the source's certificates copied to its root's default
    /etc/pki/qemu (None: none), the destination's named by
    migrate_tls_x509_cert_dir, DST_CONF more of its virtkvmmd.conf."""
    shared = tempfile.mkdtemp(prefix="kvmig-")

    def make(src="src", dst="dst", dst_conf=""):
        veth = "kmt" + ns_src[-6:]
        subprocess.run(["ip", "link", "add", veth + "a", "netns", ns_src, "type", "veth",
                        "peer", "name", veth + "b", "netns", ns_dst], check=True)
        for ns, dev, ip in ((ns_src, veth + "a", SRC_IP), (ns_dst, veth + "b", DST_IP)):
            subprocess.run(["ip", "-n", ns, "addr", "add", ip + "/24", "dev", dev], check=True)
            subprocess.run(["ip", "-n", ns, "link", "set", dev, "up"], check=True)
        with open(os.path.join(shared, "disk.img"), "wb") as f:
            f.write(os.urandom(1 << 20))
        root = tempfile.mkdtemp(prefix="kvd-")
        write(os.path.join(root, "etc", "libvirt", "virtkvmmd.conf"), b"# the migration certificates: the default directory\n")
        if src:
            shutil.copytree(mig_pki[src], os.path.join(root, "etc", "pki", "qemu"))
        with open(tls_dst_conf, "a") as f:
            f.write(f'migrate_tls_x509_cert_dir = "{mig_pki[dst]}"\n{dst_conf}\n')
        s = Host(start_daemon(root=root, prefix=["ip", "netns", "exec", ns_src]), ns_src, SRC_IP)
        d = Host(start_daemon(["--config", tls_dst_conf], prefix=["ip", "netns", "exec", ns_dst]),
                 ns_dst, DST_IP)
        return s, d, shared, veth + "b"

    yield make
    shutil.rmtree(shared, ignore_errors=True)


# Every frame on an interface, appended to a file until SIGTERM.
CAPTURE = r"""
import signal, socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
s.bind((sys.argv[1], 0))
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
with open(sys.argv[2], "wb") as out:
    print("ready", flush=True)
    while True:
        out.write(s.recv(1 << 18))
"""


def captured(ns, dev, run):
    """The bytes of every frame on DEV (in NS) while run() runs, and its
    result."""
    fd, path = tempfile.mkstemp(prefix="kvmig-cap-")
    os.close(fd)
    cap = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", CAPTURE, dev, path],
                           stdout=subprocess.PIPE, text=True)
    try:
        assert cap.stdout.readline() == "ready\n"
        result = run()
    finally:
        cap.terminate()
        cap.wait(timeout=30)
    with open(path, "rb") as f:
        data = f.read()
    os.unlink(path)
    return data, result


def nothing_left(src, dst, sdom):
    """A refused migration: the source runs on, never paused (a resume
    would have made its reason migration-canceled), the destination has
    no domain, no kvmm, no port."""
    assert sdom.state() == [L.VIR_DOMAIN_RUNNING, L.VIR_DOMAIN_RUNNING_BOOTED], sdom.state()
    dst.no_domain("m1")
    wait_for(lambda: dst.d.guests() == [] and dst.listening() == [], "the destination cleaned up")


def test_tls_live_managed_and_the_wire_carries_no_plaintext(tls_hosts):
    """--live --tls, virsh driving both daemons: the guest goes on on the
    destination; the veth carried about as many bytes as a plain
    migration back does, none of them the stream's magic or the guest's
    image, which the plain one shows."""
    src, dst, shared, dev = tls_hosts()
    sdom = running(src, shared, cmdline=DIRTY.replace("touch=16", "touch=4"))
    before = ticks(shared)
    wire, r = captured(dst.ns, dev, lambda: migrate(src, dst, "m1", "--live", "--tls"))
    assert r.returncode == 0, r.stderr + src.d.output() + dst.d.output()
    ddom = dst.conn.lookupByName("m1")
    assert ddom.state() == [L.VIR_DOMAIN_RUNNING, L.VIR_DOMAIN_RUNNING_MIGRATED]
    assert sdom.state() == [L.VIR_DOMAIN_SHUTOFF, L.VIR_DOMAIN_SHUTOFF_MIGRATED]
    assert_memory_right(shared, before)
    assert dst.listening() == [] and src.d.guests() == []
    # Back without TLS (the capture's control): the reader sees the stream.
    before = ticks(shared)
    plain, r = captured(dst.ns, dev, lambda: migrate(dst, src, "m1", "--live"))
    assert r.returncode == 0, r.stderr + src.d.output() + dst.d.output()
    assert_memory_right(shared, before)
    assert STREAM_MAGIC in plain and GUEST_MARK in plain
    assert len(wire) > len(plain) // 2, (len(wire), len(plain))
    assert STREAM_MAGIC not in wire and GUEST_MARK not in wire
    src.conn.lookupByName("m1").destroy()


def test_tls_live_p2p(tls_hosts, pki):
    """--p2p --live --tls: the source daemon drives the destination's
    steps; the stream goes over TLS all the same."""
    src, dst, shared, dev = tls_hosts()
    sdom = running(src, shared, cmdline=DIRTY.replace("touch=16", "touch=4"))
    before = ticks(shared)
    dconnuri = f"kvmm+tls://{DST_IP}:{TLS_PORT}/system?pkipath={pki['allowed']}&no_verify=1"
    wire, r = captured(dst.ns, dev, lambda: virsh(
        src.uri, "migrate", "--live", "--p2p", "--tls", "m1", dconnuri,
        "--migrateuri", f"tcp://{DST_IP}", timeout=180))
    assert r.returncode == 0, r.stderr + src.d.output() + dst.d.output()
    ddom = dst.conn.lookupByName("m1")
    assert ddom.state() == [L.VIR_DOMAIN_RUNNING, L.VIR_DOMAIN_RUNNING_MIGRATED]
    assert sdom.state() == [L.VIR_DOMAIN_SHUTOFF, L.VIR_DOMAIN_SHUTOFF_MIGRATED]
    assert_memory_right(shared, before)
    assert len(wire) > 1 << 20 and STREAM_MAGIC not in wire and GUEST_MARK not in wire
    ddom.destroy()


def test_untrusted_destination_refused(tls_hosts):
    """The destination's certificate is signed by a CA the source does not
    trust: the handshake fails on the source before its guest pauses;
    virsh says why; nothing is left on either side, and a migration
    without TLS then goes."""
    src, dst, shared, dev = tls_hosts(dst="dst_rogue")
    sdom = running(src, shared)
    r = migrate(src, dst, "m1", "--live", "--tls")
    assert r.returncode != 0 and UNVERIFIED in r.stderr, r.stderr
    assert "destination" in r.stderr, r.stderr
    nothing_left(src, dst, sdom)
    before = ticks(shared)
    wait_for(lambda: ticks(shared)[-1][0] >= before[-1][0] + 3, "ticks on the source")
    r = migrate(src, dst, "m1", "--live")
    assert r.returncode == 0, r.stderr + src.d.output() + dst.d.output()
    assert src.events("m1", 2) == [(L.VIR_DOMAIN_EVENT_SUSPENDED, L.VIR_DOMAIN_EVENT_SUSPENDED_MIGRATED),
                                   (L.VIR_DOMAIN_EVENT_STOPPED, L.VIR_DOMAIN_EVENT_STOPPED_MIGRATED)]
    assert_continued(shared, before)
    dst.conn.lookupByName("m1").destroy()


@pytest.mark.parametrize("verify", [True, False], ids=["verify", "no-verify"])
def test_untrusted_source_and_migrate_tls_x509_verify(tls_hosts, verify):
    """migrate_tls_x509_verify (on by default): a source whose certificate
    the destination's CA did not sign is refused after the handshake, and
    the source learns it before its guest pauses; the destination is
    clean.  With verify = 0 the destination asks for no certificate: the
    source (which still checks the destination's) migrates."""
    src, dst, shared, dev = tls_hosts(src="src_rogue",
                                      dst_conf="" if verify else "migrate_tls_x509_verify = 0")
    sdom = running(src, shared)
    before = ticks(shared)
    r = migrate(src, dst, "m1", "--live", "--tls")
    if not verify:
        assert r.returncode == 0, r.stderr + src.d.output() + dst.d.output()
        assert_continued(shared, before)
        dst.conn.lookupByName("m1").destroy()
        return
    assert r.returncode != 0 and "TLS handshake with the migration destination failed" in r.stderr, \
        r.stderr
    nothing_left(src, dst, sdom)
    assert "incoming migration refused" in dst.d.output()
    sdom.destroy()


def test_missing_certificates_refused(tls_hosts):
    """No certificates on the source (its default directory empty): --tls
    is refused at once, naming the file; the guest never paused."""
    src, dst, shared, dev = tls_hosts(src=None)
    sdom = running(src, shared)
    r = migrate(src, dst, "m1", "--tls")
    assert r.returncode != 0, r.stderr
    assert "Unable to access credentials" in r.stderr and "/etc/pki/qemu/ca-cert.pem" in r.stderr, \
        r.stderr
    nothing_left(src, dst, sdom)
    sdom.destroy()


def test_migrate_tls_force_refuses_a_plain_migration(tls_hosts):
    """migrate_tls_force = 1 on the destination: a migration without
    --tls is refused there (Prepare); with --tls it goes."""
    src, dst, shared, dev = tls_hosts(dst_conf="migrate_tls_force = 1")
    sdom = running(src, shared)
    r = migrate(src, dst, "m1")
    assert r.returncode != 0 and "only with VIR_MIGRATE_TLS" in r.stderr, r.stderr
    nothing_left(src, dst, sdom)
    before = ticks(shared)
    r = migrate(src, dst, "m1", "--tls")
    assert r.returncode == 0, r.stderr + src.d.output() + dst.d.output()
    assert_continued(shared, before)
    dst.conn.lookupByName("m1").destroy()


@pytest.mark.parametrize("script", ["dying", "dying_after"])
def test_destination_kvmm_killed_the_source_runs_on(tls_hosts, script):
    """The destination's kvmm killed with the stream half read (the relay
    there finds no reader, the source's TLS connection is cut), or after
    reading it all (the stream ends cleanly, Finish fails): either way the
    source runs on and nothing is left on the destination."""
    src, dst, shared, dev = tls_hosts()
    emu = os.path.join(shared, "kvmm-" + script)
    with open(emu, "w") as f:
        f.write((DYING if script == "dying" else DYING_AFTER).format(kvmm=KVMM))
    os.chmod(emu, 0o755)
    sdom = src.conn.defineXML(live_xml(shared, emulator=emu))
    sdom.create()
    wait_ticks(shared, 3)
    r = migrate(src, dst, "m1", "--tls")
    assert r.returncode != 0
    if script == "dying_after":
        assert "kvmm exited while starting" in r.stderr, r.stderr
    else:
        # The client has kvmm's error; the source's log the relay's.
        assert "the migration's TLS connection failed" in src.d.output(), src.d.output()
    assert sdom.state()[0] == L.VIR_DOMAIN_RUNNING, (sdom.state(), src.d.output())
    before = ticks(shared)
    wait_for(lambda: ticks(shared)[-1][0] >= before[-1][0] + 3, "ticks on the source")
    dst.no_domain("m1")
    wait_for(lambda: dst.d.guests() == [] and dst.listening() == [], "the destination cleaned up")
    sdom.destroy()


def test_tls_live_migration_aborted_mid_copy(tls_hosts):
    """domjobabort during a --tls live copy (a 2 MiB/s link): the source
    runs on, its memory right; the relays cut both ways, the destination
    is cleaned up; then the domain migrates over TLS."""
    src, dst, shared, dev = tls_hosts()
    sdom = running(src, shared, cmdline=DIRTY)
    p = start_migrate(src, dst, "m1", "--live", "--tls", "--bandwidth", "2")
    copying(sdom)
    r = virsh(src.uri, "domjobabort", "m1")
    assert r.returncode == 0, r.stderr
    out, err = p.communicate(timeout=120)
    assert p.returncode != 0 and \
        "operation aborted: migration out job: canceled by client" in err, err
    assert sdom.state()[0] == L.VIR_DOMAIN_RUNNING
    wait_for(lambda: dst.d.guests() == [] and dst.listening() == [], "the destination cleaned up")
    dst.no_domain("m1")
    before = ticks(shared)
    r = migrate(src, dst, "m1", "--live", "--tls")
    assert r.returncode == 0, r.stderr + src.d.output() + dst.d.output()
    assert_memory_right(shared, before)
    dst.conn.lookupByName("m1").destroy()
