"""Remote access over TLS: virtkvmmd's listener (listen_tls, tls_port,
listen_addr, the x509 files, tls_allowed_dn_list) driven by the real
virsh and python3-libvirt through kvmm+tls://127.0.0.1:PORT/system with
pkipath=, certificates made here by a private CA; clients with a wrong
CA, a DN not on the list, an expired certificate or plain TCP refused;
a client stalled in the handshake blocking nobody and dropped after the
bound."""
import datetime
import ipaddress
import os
import socket
import ssl
import subprocess
import time

import libvirt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from drvtest import event_loop, virsh
from test_console import Console, consoles, pty_guest_xml  # noqa: F401 (fixture)

# Written as gnutls (and so libvirt, and tls_allowed_dn_list) spells
# them: in the certificate's order.
DN_ALLOWED = "C=GB,O=kvmm test,CN=allowed-client"
DN_OTHER = "C=GB,O=kvmm test,CN=other-client"
# What the daemon's log says when it refuses a DN (libvirt's wording).
DN_REFUSED = "Client's x509 Distinguished Name is not on the list of allowed clients"
HANDSHAKE_BOUND = 10            # seconds; server.c's TLS_HANDSHAKE_MS


def _name(dn):
    oids = {"CN": NameOID.COMMON_NAME, "O": NameOID.ORGANIZATION_NAME, "C": NameOID.COUNTRY_NAME}
    parts = [p.split("=", 1) for p in dn.split(",")]
    return x509.Name([x509.NameAttribute(oids[k], v) for k, v in parts])


class CA:
    """A certificate authority issuing server and client certificates."""

    def __init__(self, dn="C=GB,O=kvmm test,CN=kvmm test CA"):
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        now = datetime.datetime.now(datetime.timezone.utc)
        name = _name(dn)
        self.cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                     .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(now - datetime.timedelta(days=1))
                     .not_valid_after(now + datetime.timedelta(days=30))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                     .add_extension(x509.KeyUsage(False, False, False, False, False, True, True,
                                                  False, False), critical=True)
                     .sign(self.key, hashes.SHA256()))

    def crl(self, revoked):
        now = datetime.datetime.now(datetime.timezone.utc)
        b = (x509.CertificateRevocationListBuilder().issuer_name(self.cert.subject)
             .last_update(now - datetime.timedelta(days=1))
             .next_update(now + datetime.timedelta(days=30)))
        for cert in revoked:
            b = b.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(cert.serial_number)
                .revocation_date(now - datetime.timedelta(hours=1)).build())
        return b.sign(self.key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)

    def issue(self, dn, server=False, expired=False):
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        now = datetime.datetime.now(datetime.timezone.utc)
        if expired:
            before, after = now - datetime.timedelta(days=10), now - datetime.timedelta(days=1)
        else:
            before, after = now - datetime.timedelta(days=1), now + datetime.timedelta(days=30)
        b = (x509.CertificateBuilder().subject_name(_name(dn)).issuer_name(self.cert.subject)
             .public_key(key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(before).not_valid_after(after)
             .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
             .add_extension(x509.KeyUsage(True, False, True, False, False, False, False,
                                          False, False), critical=True)
             .add_extension(x509.ExtendedKeyUsage(
                 [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]),
                 critical=False))
        if server:
            b = b.add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
                critical=False)
        return key, b.sign(self.key, hashes.SHA256())


def pem_cert(cert):
    return cert.public_bytes(serialization.Encoding.PEM)


def pem_key(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    return path


def client_dir(base, name, ca_certs, key, cert):
    """A pkipath= directory: cacert.pem, clientcert.pem, clientkey.pem."""
    d = os.path.join(base, name)
    write(os.path.join(d, "cacert.pem"), b"".join(pem_cert(c) for c in ca_certs))
    write(os.path.join(d, "clientcert.pem"), pem_cert(cert))
    write(os.path.join(d, "clientkey.pem"), pem_key(key))
    return d


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """The CA, the server's files and the clients' pkipath directories."""
    base = str(tmp_path_factory.mktemp("pki"))
    ca = CA()
    rogue = CA("C=GB,O=kvmm test,CN=rogue CA")
    skey, scert = ca.issue("C=GB,O=kvmm test,CN=127.0.0.1", server=True)
    p = {
        "base": base,
        "ca": write(os.path.join(base, "server", "cacert.pem"), pem_cert(ca.cert)),
        "cert": write(os.path.join(base, "server", "servercert.pem"), pem_cert(scert)),
        "key": write(os.path.join(base, "server", "serverkey.pem"), pem_key(skey)),
    }
    p["allowed"] = client_dir(base, "allowed", [ca.cert], *ca.issue(DN_ALLOWED))
    p["other"] = client_dir(base, "other", [ca.cert], *ca.issue(DN_OTHER))
    p["expired"] = client_dir(base, "expired", [ca.cert], *ca.issue(DN_ALLOWED, expired=True))
    # Signed by another CA with the allowed DN.  libvirt's client checks
    # its own certificate against its cacert.pem, so that file holds both
    # CAs; the daemon trusts only the real one.
    p["rogue"] = client_dir(base, "rogue", [rogue.cert, ca.cert], *rogue.issue(DN_ALLOWED))
    # An allowed DN, revoked by the CA's revocation list.
    rkey, rcert = ca.issue("C=GB,O=kvmm test,CN=allowed-revoked")
    p["revoked"] = client_dir(base, "revoked", [ca.cert], rkey, rcert)
    p["crl"] = write(os.path.join(base, "server", "crl.pem"), ca.crl([rcert]))
    return p


def tls_conf(d, pki, port, extra=""):
    path = os.path.join(d, "virtkvmmd.conf")
    with open(path, "w") as f:
        f.write(f"""listen_tls = 1
tls_port = "{port}"
listen_addr = "127.0.0.1"
ca_file = "{pki['ca']}"
cert_file = "{pki['cert']}"
key_file = "{pki['key']}"
tls_allowed_dn_list = ["C=GB,O=kvmm test,CN=allowed-*", "CN=nobody"]
{extra}""")
    return path


def wait_tcp(d, port, timeout=10):
    deadline = time.monotonic() + timeout
    while True:
        assert d.alive(), d.output()
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            assert time.monotonic() < deadline, f"nothing listens on port {port}:\n{d.output()}"
            time.sleep(0.05)


@pytest.fixture
def tls_daemon(start_daemon, pki, tmp):
    """A daemon serving TLS on a free loopback port: (daemon, port)."""
    port = free_port()
    d = start_daemon(["--config", tls_conf(tmp, pki, port)])
    wait_tcp(d, port)
    return d, port


def tls_uri(port, pkidir, extra=""):
    return f"kvmm+tls://127.0.0.1:{port}/system?pkipath={pkidir}{extra}"


def test_virsh_over_tls(tls_daemon, pki):
    d, port = tls_daemon
    libvirt.open(d.uri()).defineXML(pty_guest_xml("remote1"))
    r = virsh(tls_uri(port, pki["allowed"]), "list", "--all")
    assert r.returncode == 0, r.stderr + d.output()
    assert "remote1" in r.stdout and "shut off" in r.stdout, r.stdout
    assert f"x509 Distinguished Name '{DN_ALLOWED}' allowed" in d.output()
    # Spelled as libvirt's own tool prints it, which the docs point to.
    r = subprocess.run(["virt-pki-query-dn", os.path.join(pki["allowed"], "clientcert.pem")],
                       capture_output=True, text=True)
    assert r.stdout.strip() == DN_ALLOWED, r.stdout + r.stderr


def test_python_define_start_console_over_tls(tls_daemon, pki, consoles, kvm):
    d, port = tls_daemon
    uri = tls_uri(port, pki["allowed"])
    event_loop()            # stream data arrives through libvirt's event loop
    conn = libvirt.open(uri)
    dom = conn.defineXML(pty_guest_xml("remote2"))
    dom.create()
    assert dom.isActive() == 1
    assert [x.name() for x in conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE)] == ["remote2"]
    # The console through python3-libvirt's own stream over TLS...
    st = conn.newStream(libvirt.VIR_STREAM_NONBLOCK)
    dom.openConsole(None, st, 0)
    got, deadline, nudge = b"", time.monotonic() + 30, 0.0
    while b"kvmm-testguest> " not in got:
        assert time.monotonic() < deadline, got
        if time.monotonic() > nudge:        # a fresh prompt per Enter
            st.send(b"\r")
            nudge = time.monotonic() + 1
        data = st.recv(4096)
        if data == -2:                      # nothing yet
            time.sleep(0.05)
        else:
            got += data
    st.finish()
    # ... and virsh console on a terminal, also over TLS.
    c = Console(uri, "remote2")
    consoles.append(c)
    c.ready()
    c.send(b"help\r")
    c.read_until("kvmm-testguest> ")
    dom.destroy()
    assert dom.isActive() == 0
    conn.close()


def refused(d, port, pkidir):
    r = virsh(tls_uri(port, pkidir), "list", "--all")
    assert r.returncode != 0, r.stdout
    return r


def test_dn_not_allowed_refused(tls_daemon, pki):
    d, port = tls_daemon
    refused(d, port, pki["other"])
    out = d.output()
    assert DN_REFUSED in out and f"'{DN_OTHER}'" in out, out
    # The daemon still serves the allowed client.
    assert virsh(tls_uri(port, pki["allowed"]), "list").returncode == 0


def test_expired_and_wrong_ca_refused(tls_daemon, pki):
    d, port = tls_daemon
    # libvirt's client refuses its own expired certificate before it
    # connects; the daemon's check is met by a client of our own.
    r = refused(d, port, pki["expired"])
    assert "expired" in r.stderr, r.stderr
    for name in ("expired", "rogue"):
        n = d.output().count("the client's certificate is not valid")
        assert_no_confirmation(raw_tls(port, pki[name]))
        assert d.output().count("the client's certificate is not valid") == n + 1, d.output()
    # The rogue CA's client through virsh: refused alike.
    n = d.output().count("the client's certificate is not valid")
    refused(d, port, pki["rogue"])
    assert d.output().count("the client's certificate is not valid") == n + 1, d.output()
    assert virsh(tls_uri(port, pki["allowed"]), "list").returncode == 0


def raw_tls(port, pkidir):
    """A TLS client of our own: the connection after the handshake."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(os.path.join(pkidir, "cacert.pem"))
    ctx.load_cert_chain(os.path.join(pkidir, "clientcert.pem"), os.path.join(pkidir, "clientkey.pem"))
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    return ctx.wrap_socket(s, server_hostname="127.0.0.1")


def test_confirmation_byte_only_for_allowed(tls_daemon, pki):
    d, port = tls_daemon
    ok = raw_tls(port, pki["allowed"])
    assert ok.recv(1) == b"\x01"
    ok.close()
    assert_no_confirmation(raw_tls(port, pki["other"]))


def assert_no_confirmation(conn):
    """The daemon closes the connection without the byte 1 (in TLS 1.3
    it checks the client after the client's side of the handshake has
    finished, so the refusal arrives as the end of the stream)."""
    try:
        assert conn.recv(1) == b""
    except (ssl.SSLError, ConnectionResetError):
        pass
    conn.close()


def test_plain_tcp_to_the_tls_port(tls_daemon, pki):
    d, port = tls_daemon
    failed = d.output().count("TLS handshake failed: An unexpected TLS packet")
    r = virsh(f"kvmm+tcp://127.0.0.1:{port}/system", "list")
    assert r.returncode != 0, r.stdout
    # A raw RPC packet instead of a ClientHello: the connection ends.
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(b"\x00\x00\x00\x1c" + b"\x20\x00\x80\x86" + b"\x00" * 20)
    s.settimeout(10)
    try:
        while s.recv(4096):
            pass
    except ConnectionResetError:        # closed with our bytes unread
        pass
    s.close()
    assert d.output().count("TLS handshake failed: An unexpected TLS packet") == failed + 2, \
        d.output()
    assert virsh(tls_uri(port, pki["allowed"]), "list").returncode == 0


def test_stalled_handshake_blocks_nobody(tls_daemon, pki):
    d, port = tls_daemon
    stalled = socket.create_connection(("127.0.0.1", port), timeout=30)
    # Half a ClientHello: the record header promises more than comes.
    stalled.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
    silent = socket.create_connection(("127.0.0.1", port), timeout=30)
    t0 = time.monotonic()
    r = virsh(tls_uri(port, pki["allowed"]), "list", "--all")
    assert r.returncode == 0, r.stderr
    assert time.monotonic() - t0 < HANDSHAKE_BOUND
    # Both are dropped after the bound, not before.
    for s in (stalled, silent):
        s.settimeout(HANDSHAKE_BOUND * 3)
        assert s.recv(1) == b""
    assert time.monotonic() - t0 >= HANDSHAKE_BOUND - 1
    assert d.output().count("no TLS handshake within") == 2, d.output()


def test_listen_flag_and_default_off(start_daemon, pki, tmp):
    port = free_port()
    conf = tls_conf(tmp, pki, port).replace(".conf", "-off.conf")
    with open(tls_conf(tmp, pki, port)) as f:
        text = f.read().replace("listen_tls = 1\n", "")
    with open(conf, "w") as f:
        f.write(text)
    # listen_tls defaults to 0: the keys alone open no port.
    d = start_daemon(["--config", conf])
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5)
    d.stop()
    # --listen turns it on, as libvirtd's.
    d = start_daemon(["--config", conf, "--listen"])
    wait_tcp(d, port)
    r = virsh(tls_uri(port, pki["allowed"]), "list", "--all")
    assert r.returncode == 0, r.stderr + d.output()


@pytest.mark.parametrize("key,value,message", [
    ("ca_file", "/nonexistent/cacert.pem",
     "cannot read CA certificate '/nonexistent/cacert.pem': No such file or directory"),
    ("key_file", "CA", "cannot load server certificate"),
    ("tls_priority", "NORMAL:+NO-SUCH-THING", 'tls_priority "NORMAL:+NO-SUCH-THING"'),
])
def test_bad_tls_setup_refused_and_nothing_left(start_daemon, pki, tmp, key, value, message):
    port = free_port()
    path = tls_conf(tmp, pki, port)
    with open(path) as f:
        lines = [ln for ln in f.read().splitlines() if not ln.startswith(key + " ")]
    # "CA": the CA's certificate where a key belongs (not the server's key).
    lines.append(f'{key} = "{pki["ca"] if value == "CA" else value}"')
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    d = start_daemon(["--config", path], wait=False)
    assert d.proc.wait(10) == 1
    out = d.output()
    assert message in out, out
    assert len(out.strip().splitlines()) == 1, out
    assert not os.path.exists(d.rundir) and not os.path.exists(d.pidfile)


def test_default_certificate_locations_under_root(start_daemon, pki, tmp):
    """Without the file keys, libvirt's locations (under --root's DIR)."""
    import shutil
    root = os.path.join(tmp, "root")
    for src, dst in ((pki["ca"], "etc/pki/CA/cacert.pem"),
                     (pki["cert"], "etc/pki/libvirt/servercert.pem"),
                     (pki["key"], "etc/pki/libvirt/private/serverkey.pem")):
        os.makedirs(os.path.dirname(os.path.join(root, dst)), exist_ok=True)
        shutil.copy(src, os.path.join(root, dst))
    port = free_port()
    path = os.path.join(tmp, "plain.conf")
    with open(path, "w") as f:
        f.write(f'listen_tls = 1\ntls_port = "{port}"\nlisten_addr = "127.0.0.1"\n')
    d = start_daemon(["--config", path], root=root)
    wait_tcp(d, port)
    # No tls_allowed_dn_list: any certificate from the CA.
    r = virsh(tls_uri(port, pki["other"]), "list", "--all")
    assert r.returncode == 0, r.stderr + d.output()


# Run in the child: the socket onto fd 3, LISTEN_PID its own pid (the
# exec keeps it), as systemd's service manager does.
ACTIVATE = """
import os, sys
fd = int(sys.argv[1])
if fd != 3:
    os.dup2(fd, 3)
os.set_inheritable(3, True)
os.environ["LISTEN_PID"] = str(os.getpid())
os.execv(sys.argv[2], sys.argv[2:])
"""


def test_socket_activation_of_the_tls_port(pki, tmp):
    """virtkvmmd-tls.socket: a TCP socket from systemd is served with TLS
    (listen_tls need not be set), and left open at exit."""
    import subprocess as sp
    import signal
    import sys
    from drvtest import VIRTKVMMD
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(16)
    port = lsock.getsockname()[1]
    conf = tls_conf(tmp, pki, port)
    with open(conf) as f:
        text = f.read().replace("listen_tls = 1\n", "")
    with open(conf, "w") as f:
        f.write(text)
    root = os.path.join(tmp, "root")
    log = os.path.join(tmp, "daemon.log")
    env = dict(os.environ, LISTEN_FDS="1", LISTEN_FDNAMES="virtkvmmd-tls.socket")
    with open(log, "wb") as out:
        d = sp.Popen([sys.executable, "-c", ACTIVATE, str(lsock.fileno()), VIRTKVMMD,
                      "--root", root, "--config", conf, "--verbose"],
                     pass_fds=[lsock.fileno()], env=env, stdout=out, stderr=sp.STDOUT)
    try:
        r = virsh(tls_uri(port, pki["allowed"]), "list", "--all")
        assert r.returncode == 0, r.stderr + open(log).read()
        assert f"listening on tls 127.0.0.1:{port} (from systemd)" in open(log).read()
        os.kill(d.pid, signal.SIGTERM)
        assert d.wait(30) == 0
    finally:
        if d.poll() is None:
            d.kill()
            d.wait()
    # Still systemd's, still listening: the next client waits for the next daemon.
    socket.create_connection(("127.0.0.1", port), timeout=5).close()
    lsock.close()


def test_silent_clients_count_against_max_anonymous_clients(start_daemon, pki, tmp):
    """Clients in the handshake are anonymous: with max_anonymous_clients
    of them, the next waits in the backlog until the bound drops one."""
    port = free_port()
    d = start_daemon(["--config", tls_conf(tmp, pki, port, "max_anonymous_clients = 2\n")])
    wait_tcp(d, port)       # its probe goes at once: it closes
    deadline = time.monotonic() + 10
    while "closed the connection during the TLS handshake" not in d.output():
        assert time.monotonic() < deadline, d.output()
        time.sleep(0.05)
    silent = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(2)]
    t0 = time.monotonic()
    r = virsh(tls_uri(port, pki["allowed"]), "list", "--all", timeout=60)
    took = time.monotonic() - t0
    assert r.returncode == 0, r.stderr + d.output()
    assert took >= HANDSHAKE_BOUND - 1, took
    assert "have not opened a connection (max_anonymous_clients): new ones wait" in d.output()
    for s in silent:
        s.close()


def test_revoked_certificate_refused(start_daemon, pki, tmp):
    port = free_port()
    d = start_daemon(["--config", tls_conf(tmp, pki, port, f'crl_file = "{pki["crl"]}"\n')])
    wait_tcp(d, port)
    r = refused(d, port, pki["revoked"])
    out = d.output()
    assert "the client's certificate is not valid" in out and "revoked" in out, out + r.stderr
    assert virsh(tls_uri(port, pki["allowed"]), "list").returncode == 0, d.output()


def test_large_packets_and_concurrent_calls_over_tls(tls_daemon, pki):
    """Packets over many TLS records both ways, and calls from threads
    sharing one connection (records queued in the session, not on the
    socket)."""
    import threading
    d, port = tls_daemon
    conn = libvirt.open(tls_uri(port, pki["allowed"]))
    dom = conn.defineXML(pty_guest_xml("big"))
    text = "".join(f"line {i:07d} of a long description\n" for i in range(30000))   # ~1 MiB
    dom.setMetadata(libvirt.VIR_DOMAIN_METADATA_DESCRIPTION, text, None, None,
                    libvirt.VIR_DOMAIN_AFFECT_CONFIG)
    assert dom.metadata(libvirt.VIR_DOMAIN_METADATA_DESCRIPTION, None,
                        libvirt.VIR_DOMAIN_AFFECT_CONFIG) == text
    assert text in dom.XMLDesc(0)
    errors = []

    def worker():
        try:
            for _ in range(40):
                assert conn.lookupByName("big").name() == "big"
                assert len(conn.listAllDomains()) == 1
        except Exception as e:          # reported below
            errors.append(e)
    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads) and errors == [], errors
    conn.close()


def test_no_verify_certificate_lets_any_client_in(start_daemon, pki, tmp):
    port = free_port()
    d = start_daemon(["--config", tls_conf(tmp, pki, port, "tls_no_verify_certificate = 1\n")])
    wait_tcp(d, port)
    assert "tls_no_verify_certificate is set: any TLS client may use the daemon" in d.output()
    for name in ("other", "allowed"):
        r = virsh(tls_uri(port, pki[name]), "list", "--all")
        assert r.returncode == 0, r.stderr + d.output()
    ok = raw_tls(port, pki["rogue"])
    assert ok.recv(1) == b"\x01"
    ok.close()
    assert "client certificate not valid" in d.output()
