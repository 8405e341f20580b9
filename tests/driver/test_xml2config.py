"""XML -> VM config (src/driver/kvmm/vmconfig.c) through the xml2xml tool's
--vm-config mode.

- tests/xml2config/<case>.xml gives exactly <case>.json (REGENERATE=1
  rewrites the goldens; read the diff), and every golden is valid against
  schemas/vm-config.schema.json.
- refuse/<case>.xml fails with exactly the line in refuse/<case>.err: what
  kvmm cannot run yet is refused by name, never dropped.
- kvmm itself boots the test guest from a generated configuration."""
import glob
import json
import os
import subprocess

import pytest

from kvmmtest import GUEST, KVMM, TOP, UNIT_DIR

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(os.path.dirname(HERE), "xml2config")
TOOL = os.path.join(UNIT_DIR, "xml2xml")
SCHEMA = os.path.join(TOP, "schemas", "vm-config.schema.json")
REGENERATE = os.environ.get("REGENERATE") == "1"
API_SOCKET = "/run/libvirt/kvmm/NAME.sock"


def run(path, api_socket=API_SOCKET):
    assert os.path.exists(TOOL), f"{TOOL} was not built: run make check"
    return subprocess.run([TOOL, f"--vm-config={api_socket}", path], capture_output=True,
                          text=True, env=dict(os.environ, KVMM_TEST_SEED="1"), timeout=30)


def cases(sub=""):
    return [pytest.param(p, id=os.path.splitext(os.path.basename(p))[0])
            for p in sorted(glob.glob(os.path.join(DATA, sub, "*.xml")))]


def test_enough_cases():
    assert len(cases()) >= 4 and len(cases("refuse")) >= 8


@pytest.mark.parametrize("src", cases())
def test_golden(src):
    r = run(src)
    assert r.returncode == 0, r.stdout + r.stderr
    golden = src[:-4] + ".json"
    if REGENERATE:
        with open(golden, "w") as f:
            f.write(r.stdout)
        return
    assert os.path.exists(golden), f"no golden {golden}: run with REGENERATE=1 and review it"
    with open(golden) as f:
        assert r.stdout == f.read()


@pytest.mark.parametrize("src", cases())
def test_golden_is_valid(src):
    import jsonschema
    with open(SCHEMA) as f:
        schema = json.load(f)
    with open(src[:-4] + ".json") as f:
        doc = json.load(f)
    jsonschema.validate(doc, schema)
    assert doc["api_socket"] == API_SOCKET


@pytest.mark.parametrize("src", cases("refuse"))
def test_refused(src):
    r = run(src)
    err = src[:-4] + ".err"
    if REGENERATE:
        with open(err, "w") as f:
            f.write(r.stdout)
    assert r.returncode == 1, r.stdout + r.stderr
    with open(err) as f:
        assert r.stdout == f.read()
    assert r.stdout.startswith("error: VIR_ERR_CONFIG_UNSUPPORTED VIR_FROM_DOMAIN: ")


def test_kvmm_runs_the_generated_config(kvm, tmp):
    """The document is what kvmm takes: the test guest boots from it, its
    serial output lands in the file the XML named, and it powers off."""
    log = os.path.join(tmp, "serial.log")
    api = os.path.join(tmp, "api.sock")
    xml = os.path.join(tmp, "guest.xml")
    with open(xml, "w") as f:
        f.write(f"""<domain type='kvm'>
  <name>from-xml</name>
  <memory unit='MiB'>192</memory>
  <vcpu>2</vcpu>
  <os><type>hvm</type><kernel>{GUEST}</kernel>
    <cmdline>kvmmtest.action=poweroff</cmdline></os>
  <on_reboot>destroy</on_reboot>
  <devices>
    <serial type='file'><source path='{log}'/><target port='0'/></serial>
  </devices>
</domain>
""")
    r = run(xml, api_socket=api)
    assert r.returncode == 0, r.stdout + r.stderr
    conf = os.path.join(tmp, "vm.json")
    with open(conf, "w") as f:
        f.write(r.stdout)
    p = subprocess.run([KVMM, "--config", conf], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    with open(log) as f:
        out = f.read()
    assert "KVMMTEST done" in out, out
    assert "cpus=2" in out and "KVMMTEST fail" not in out, out
    assert not os.path.exists(api)      # kvmm removed its socket at exit
