"""virtkvmmd.conf: every key has an effect seen from outside (socket
modes and group, log output, client limit, keepalive), the command line
overrides the file, and a bad file is refused with file:line and leaves
nothing behind."""
import grp
import os
import select
import stat
import tempfile
import time

import pytest

from drvtest import (KEEPALIVE_PROGRAM, MESSAGE, OK, PROC_SUPPORTS_FEATURE, Raw, virsh,
                     xdr_int)


def root_with_conf(text):
    """A fresh --root whose default configuration file holds text."""
    root = tempfile.mkdtemp(prefix="kvd-")
    os.makedirs(os.path.join(root, "etc", "libvirt"))
    with open(os.path.join(root, "etc", "libvirt", "virtkvmmd.conf"), "w") as f:
        f.write(text)
    return root


def conf_file(tmp_path, text, name="virtkvmmd.conf"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def open_client(d, attempts=50):
    """A raw client the daemon accepted (retrying while the probe
    connections of wait_ready are still counted)."""
    for _ in range(attempts):
        try:
            return Raw(d.sock).open()
        except (AssertionError, OSError):
            time.sleep(0.1)
    raise AssertionError("never accepted:\n" + d.output())


def test_socket_group_and_modes(start_daemon):
    nogroup = grp.getgrnam("nogroup").gr_gid
    d = start_daemon(root=root_with_conf(
        '# sockets for the nogroup group\n'
        'unix_sock_group = "nogroup"\n'
        "unix_sock_rw_perms = '0660'   # single quotes too, as libvirt\n"
        'unix_sock_ro_perms = "0640"\n'))
    rw, ro = os.stat(d.sock), os.stat(d.sock_ro)
    assert stat.S_IMODE(rw.st_mode) == 0o660 and rw.st_gid == nogroup
    assert stat.S_IMODE(ro.st_mode) == 0o640 and ro.st_gid == nogroup
    r = virsh(d.uri(), "list", "--all")
    assert r.returncode == 0, r.stderr


def test_default_socket_modes_without_a_file(daemon):
    assert stat.S_IMODE(os.stat(daemon.sock).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(daemon.sock_ro).st_mode) == 0o666
    assert os.stat(daemon.sock).st_gid == os.getegid()


@pytest.mark.parametrize("level,info,debug", [(4, False, False), (3, False, False),
                                              (2, True, False), (1, True, True)])
def test_log_level(start_daemon, level, info, debug):
    d = start_daemon(root=root_with_conf(f"log_level = {level}\n"), verbose=False)
    assert virsh(d.uri(), "list", "--all").returncode == 0
    out = d.output()
    assert ("listening on" in out) == info, out
    assert ("call virConnectListAllDomains" in out) == debug, out


def test_verbose_overrides_log_level(start_daemon):
    d = start_daemon(root=root_with_conf("log_level = 4\n"), verbose=True)
    assert virsh(d.uri(), "list", "--all").returncode == 0
    assert "call virConnectListAllDomains" in d.output()


def test_max_clients(start_daemon):
    d = start_daemon(root=root_with_conf("max_clients = 1\n"))
    first = open_client(d)
    extra = Raw(d.sock)
    assert extra.closed_by_peer(), "a second client was accepted"
    assert "already 1 clients (the limit)" in d.output()
    first.call(PROC_SUPPORTS_FEATURE, xdr_int(10))      # the first still served
    first.close()
    open_client(d).close()                              # and its place freed


def test_command_line_overrides_max_clients(start_daemon):
    d = start_daemon(["--max-clients", "3"], root=root_with_conf("max_clients = 1\n"))
    a = open_client(d)
    b = open_client(d)
    assert b.call(PROC_SUPPORTS_FEATURE, xdr_int(10))[5] == OK
    a.close()
    b.close()


def test_keepalive_from_file(start_daemon):
    d = start_daemon(root=root_with_conf("keepalive_interval = 1\nkeepalive_count = 2\n"))
    dead = open_client(d)
    assert dead.call(PROC_SUPPORTS_FEATURE, xdr_int(10))[6] == xdr_int(1)
    t0 = time.monotonic()
    pings = 0
    while (r := dead.recv(timeout=15)) is not None:
        assert r == (KEEPALIVE_PROGRAM, 1, 1, MESSAGE, 0, OK, b""), r
        pings += 1
    assert pings == 2 and time.monotonic() - t0 <= 8, pings
    assert "no answer to 2 keepalive pings: dropping it" in d.output()


def test_keepalive_disabled_by_file(start_daemon):
    d = start_daemon(root=root_with_conf("keepalive_interval = -1\n"))
    c = open_client(d)
    c.call(PROC_SUPPORTS_FEATURE, xdr_int(10))
    # A daemon on the default interval, asked after c: once its client got
    # a ping, c would have one waiting too, were the file ignored.
    ref = start_daemon()
    r = open_client(ref)
    r.call(PROC_SUPPORTS_FEATURE, xdr_int(10))
    assert r.recv(timeout=30) == (KEEPALIVE_PROGRAM, 1, 1, MESSAGE, 0, OK, b"")
    assert not c.buf and not select.select([c.sock], [], [], 0)[0], "a ping came"
    r.close()
    c.close()


def test_config_option(start_daemon, tmp_path):
    # --config replaces the default path: the (bad) default is not read
    path = conf_file(tmp_path, 'unix_sock_rw_perms = "0604"\n', "other.conf")
    d = start_daemon(["--config", path], root=root_with_conf("nonsense here\n"))
    assert stat.S_IMODE(os.stat(d.sock).st_mode) == 0o604


BAD = [
    ("log_level = 2\n\nfoo = 1\n", 3, "unknown key 'foo'"),
    ("log_level = 7\n", 1, "log_level: 7 is out of range (1 to 4)"),
    ('log_level = "2"\n', 1, "log_level: expected a number without quotes"),
    ("# perms\nunix_sock_rw_perms = 0660\n", 2, "unix_sock_rw_perms: expected a string in quotes"),
    ('unix_sock_ro_perms = "0999"\n', 1, 'unix_sock_ro_perms: "0999" is not an octal'),
    ('unix_sock_group = "no-such-group-kvmm"\n', 1, 'unix_sock_group: no group named'),
    ('unix_sock_group = "nogroup\n', 1, "unix_sock_group: string without its closing"),
    ("max_clients =\n", 1, "max_clients: expected a value"),
    ("max_clients = 0\n", 1, "max_clients: 0 is out of range"),
    ("max_workers = 0\n", 1, "max_workers: 0 is out of range"),
    ("monitor_timeout = 0\n", 1, "monitor_timeout: 0 is out of range (1 to 600)"),
    ("keepalive_count = 2 3\n", 1, "keepalive_count: unexpected text after the value"),
    ("keepalive_interval 5\n", 1, "keepalive_interval: expected '=' after the key"),
    ("= 3\n", 1, "expected 'key = value'"),
    ("log_level = 1\nlog_level = 2\n", 2, "log_level: set a second time (line 1)"),
    ('max_clients = [ "a" ]\n', 1, "max_clients: expected a single value, not a list"),
    ('tls_allowed_dn_list = "CN=a"\n', 1, "tls_allowed_dn_list: expected a list of strings"),
    ('tls_allowed_dn_list = ["CN=a" "CN=b"]\n', 1, "tls_allowed_dn_list: expected ',' or ']'"),
    ('tls_allowed_dn_list = ["CN=a", 3]\n', 1, "tls_allowed_dn_list: expected a string in quotes"),
    ('tls_allowed_dn_list = ["CN=a",\n', 1, "tls_allowed_dn_list: expected a string in quotes"),
    ("listen_tls = 2\n", 1, "listen_tls: 2 is out of range (0 to 1)"),
    ("listen_tcp = 1\n", 1, "listen_tcp: unencrypted, unauthenticated TCP is not offered"),
    ('tls_port = ""\n', 1, "tls_port: must not be empty"),
    ("ca_file = 3\n", 1, "ca_file: expected a string in quotes"),
    ('migrate_tls_x509_cert_dir = ""\n', 1, "migrate_tls_x509_cert_dir: must not be empty"),
    ("migrate_tls_x509_verify = 2\n", 1, "migrate_tls_x509_verify: 2 is out of range (0 to 1)"),
    ("migrate_tls_force = 2\n", 1, "migrate_tls_force: 2 is out of range (0 to 1)"),
    ("pvm_compat = 2\n", 1, "pvm_compat: 2 is out of range (0 to 1)"),
    ('pvm_compat = "1"\n', 1, "pvm_compat: expected a number without quotes"),
    ("pvm_compat = yes\n", 1, "pvm_compat: expected a value"),
    ("hypervisor_version = 4\n", 1, "hypervisor_version: expected a string in quotes"),
    ('hypervisor_version = "4.2"\n', 1,
     'hypervisor_version: "4.2" is not a version MAJOR.MINOR.MICRO (each 0-999)'),
    ('hypervisor_version = "4.1000.0"\n', 1, 'hypervisor_version: "4.1000.0" is not a version'),
    ('hypervisor_version = "4.2.0-rc1"\n', 1, 'hypervisor_version: "4.2.0-rc1" is not a version'),
]


@pytest.mark.parametrize("text,line,message", BAD)
def test_bad_file_refused_and_nothing_left(start_daemon, tmp_path, text, line, message):
    path = conf_file(tmp_path, text)
    d = start_daemon(["--config", path], wait=False)
    assert d.proc.wait(10) == 1
    out = d.output()
    assert f"{path}:{line}: {message}" in out, out
    assert len(out.strip().splitlines()) == 1, out          # reported once
    assert not os.path.exists(d.rundir) and not os.path.exists(d.pidfile)


def test_bad_default_file_refused(start_daemon):
    d = start_daemon(root=root_with_conf("log_level = 0\n"), wait=False)
    assert d.proc.wait(10) == 1
    assert "etc/libvirt/virtkvmmd.conf:1: log_level: 0 is out of range" in d.output()
    assert not os.path.exists(d.sock) and not os.path.exists(d.pidfile)


def test_missing_config_option_file(start_daemon, tmp_path):
    d = start_daemon(["--config", str(tmp_path / "absent.conf")], wait=False)
    assert d.proc.wait(10) == 1
    assert "cannot read configuration file" in d.output()
    assert not os.path.exists(d.rundir) and not os.path.exists(d.pidfile)
