"""XML -> VM config (src/driver/kvmm/vmconfig.c) through the xml2xml tool's
--vm-config mode.

- tests/xml2config/<case>.xml gives exactly <case>.json (REGENERATE=1
  rewrites the goldens; read the diff), and every golden is valid against
  schemas/vm-config.schema.json.
- refuse/<case>.xml fails with exactly the line in refuse/<case>.err: what
  kvmm cannot run yet is refused by name, never dropped; every refusal of
  vmconfig.c has a case.
- kvmm's own config parser (config_from_json, behind `kvmm --config`, run
  by the config_dump tool) accepts every golden and reads from it exactly
  what the daemon meant; so does it every configuration made from a
  definition the daemon accepts (tests/xml2xml/in), unless the daemon
  refuses to start that one by name.
- kvmm itself boots the test guest from a generated configuration."""
import glob
import json
import os
import re
import subprocess

import pytest

from kvmmtest import GUEST, KVMM, TOP, UNIT_DIR
from test_xml2xml import uncovered

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(os.path.dirname(HERE), "xml2config")
TOOL = os.path.join(UNIT_DIR, "xml2xml")
DUMP = os.path.join(UNIT_DIR, "config_dump")
XML2XML_IN = os.path.join(os.path.dirname(HERE), "xml2xml", "in")
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
    assert len(cases()) >= 30 and len(cases("refuse")) >= 20


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


def kvmm_reads(path):
    """What kvmm's config parser understood from PATH (config_dump)."""
    assert os.path.exists(DUMP), f"{DUMP} was not built: run make check"
    r = subprocess.run([DUMP, path], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, f"kvmm refuses what the daemon made: {r.stdout}{r.stderr}"
    return json.loads(r.stdout)


# The keys the daemon writes, each with what kvmm makes of it when absent
# (kvmm's defaults, docs/kvmm.md).
def meaning(doc):
    """What kvmm must understand from DOC, a configuration the daemon made."""
    def chardev(c):
        log = c.get("log", {})
        return {"mode": c["mode"], "path": c.get("path"), "log": log.get("path"),
                "log_append": log.get("append", False)}

    def smbios(sm):
        if sm is None:
            return None
        out = {g: dict(sm.get(g, {})) for g in ("bios", "system", "baseboard", "chassis")}
        out["oem_strings"] = sm.get("oem_strings", [])
        uuid = sm.get("system", {}).get("uuid")
        out["uuid_bytes"] = uuid.replace("-", "").lower() if uuid else None
        return out
    def balloon(b):
        if b is None or b is False:
            return None
        b = {} if b is True else b
        return {"deflate_on_oom": b.get("deflate_on_oom", False),
                "free_page_reporting": b.get("free_page_reporting", False),
                "stats_period": b.get("stats_period", 0)}

    known = {"name", "kernel", "initrd", "cmdline", "memory", "cpus", "max_cpus", "serial", "console",
             "api_socket", "no_reboot", "paused", "rng", "disks", "nets", "smbios", "vmcoreinfo",
             "balloon", "ksm", "locked", "hugepages"}
    assert set(doc) <= known, f"the daemon writes keys this test does not know: {set(doc) - known}"
    return {
        "name": doc["name"], "kernel": doc["kernel"], "initrd": doc.get("initrd"),
        "cmdline": doc.get("cmdline", ""), "memory": doc["memory"], "cpus": doc["cpus"],
        "max_cpus": doc.get("max_cpus", doc["cpus"]),
        "serial": chardev(doc["serial"]),
        "console": chardev(doc["console"]) if "console" in doc else None,
        "api_socket": doc.get("api_socket"), "no_reboot": doc.get("no_reboot", False),
        "thp": True, "ksm": doc.get("ksm", True),
        "locked": doc.get("locked", False), "hugepages": doc.get("hugepages", 0),
        "paused": doc.get("paused", False), "rng": doc.get("rng", False),
        "disks": [{"path": d["path"], "readonly": d.get("readonly", False),
                   "cache": d.get("cache", "writeback"), "serial": d.get("serial"),
                   "blk_size": 512, "shareable": d.get("shareable", False),
                   "format": d.get("format", "raw"), "backing": d.get("backing", []),
                   "backing_format": d.get("backing_format", []) +
                   ["raw"] * (len(d.get("backing", [])) - len(d.get("backing_format", []))),
                   "error_policy": d.get("error_policy", "default"),
                   "rerror_policy": d.get("rerror_policy", "default")}
                  for d in doc.get("disks", [])],
        "nets": [{"tap": n["tap"], "fd": -1, "mac": n["mac"], "mtu": n.get("mtu", 0)}
                 for n in doc.get("nets", [])],
        "smbios": smbios(doc.get("smbios")), "vmcoreinfo": doc.get("vmcoreinfo", False),
        "balloon": balloon(doc.get("balloon")),
    }


@pytest.mark.parametrize("src", cases())
def test_kvmm_reads_the_golden_as_meant(src):
    golden = src[:-4] + ".json"
    with open(golden) as f:
        doc = json.load(f)
    assert kvmm_reads(golden) == meaning(doc)


@pytest.mark.parametrize("src", cases())
def test_system_uuid_is_the_domains(src):
    """Every configuration carries SMBIOS with the domain's UUID as the
    system's (libvirt's -uuid under QEMU; the guest's product_uuid), and
    without <smbios mode='sysinfo'/> nothing else: <sysinfo> alone stays
    out of the tables, as under libvirt."""
    r = subprocess.run([TOOL, src], capture_output=True, text=True,
                       env=dict(os.environ, KVMM_TEST_SEED="1"), timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    uuid = re.search(r"<uuid>([0-9a-f-]{36})</uuid>", r.stdout)[1]
    with open(src[:-4] + ".json") as f:
        sm = json.load(f)["smbios"]
    assert sm["system"]["uuid"] == uuid
    with open(src) as f:
        if not re.search(r"<smbios\s+mode=.sysinfo.", f.read()):
            assert sm == {"system": {"uuid": uuid}}


def definitions():
    return [pytest.param(p, id=os.path.splitext(os.path.basename(p))[0])
            for p in sorted(glob.glob(os.path.join(XML2XML_IN, "*.xml")))]


@pytest.mark.parametrize("src", definitions())
def test_kvmm_takes_what_the_daemon_defines(src, tmp):
    """Whatever defines either starts in kvmm or is refused by the daemon,
    by name, before kvmm is run: kvmm never refuses a configuration."""
    r = run(src)
    if r.returncode == 1:
        assert r.stdout.startswith("error: VIR_ERR_CONFIG_UNSUPPORTED VIR_FROM_DOMAIN: "), r.stdout
        return
    assert r.returncode == 0, r.stdout + r.stderr
    conf = os.path.join(tmp, "vm.json")
    with open(conf, "w") as f:
        f.write(r.stdout)
    assert kvmm_reads(conf) == meaning(json.loads(r.stdout))


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


def vm_limits():
    """The #defines of src/common/vm_limits.h, evaluated."""
    with open(os.path.join(TOP, "src", "common", "vm_limits.h")) as f:
        defs = dict(re.findall(r"^#define (VM_\w+)\s+([^/\n]+?)\s*(?:/\*.*)?$", f.read(), re.M))
    return {k: eval(re.sub(r"(\d+)ULL", r"\1", v)) for k, v in defs.items() if not k.endswith("_H")}


def test_schema_has_the_shared_limits():
    """schemas/vm-config.schema.json states the ranges of vm_limits.h, which
    kvmm and the daemon both compile in; they cannot drift apart."""
    lim = vm_limits()
    with open(SCHEMA) as f:
        props = json.load(f)["properties"]
    mem = props["memory"]["oneOf"][0]
    assert (mem["minimum"], mem["maximum"], mem["multipleOf"]) == \
        (lim["VM_MIN_MEMORY"], lim["VM_MAX_MEMORY"], lim["VM_MEMORY_ALIGN"])
    assert props["cpus"]["oneOf"][0]["maximum"] == lim["VM_MAX_CPUS"]
    assert props["disks"]["maxItems"] == lim["VM_MAX_DISKS"]
    disk = props["disks"]["items"]["oneOf"][1]["properties"]
    assert disk["serial"]["maxLength"] == lim["VM_DISK_SERIAL_MAX"]
    assert props["nets"]["maxItems"] == lim["VM_MAX_NETS"]
    net = props["nets"]["items"]["oneOf"][1]["properties"]
    assert net["tap"]["maxLength"] == lim["VM_TAP_NAME_MAX"]


def test_every_accepted_value_has_a_case():
    """Each value of each list in domain_tables.c appears in a definition
    here: accepted in a golden, or refused at start in refuse/."""
    with open(os.path.join(TOP, "src", "driver", "conf", "domain_tables.c")) as f:
        tables = re.findall(r'const struct conf_enum (conf_\w+) = \{\s*"[^"]*", "[^"]*",\s*\{([^}]*)\}', f.read())
    assert len(tables) > 30
    xml = ""
    for p in glob.glob(os.path.join(DATA, "*.xml")) + glob.glob(os.path.join(DATA, "refuse", "*.xml")):
        with open(p) as f:
            xml += f.read()
    # listed to be named, refused when parsed (tests/xml2xml/refuse/unix-connect)
    not_accepted = {"conf_unix_mode connect"}
    missing = [f"{name} {v}" for name, values in tables for v in re.findall(r'"([^"]+)"', values)
               if f"='{v}'" not in xml and f">{v}<" not in xml and f"{name} {v}" not in not_accepted]
    assert not missing, f"accepted values no tests/xml2config case uses: {missing}"


def test_every_refusal_has_a_case():
    # vmconfig.c moves to src/driver/kvmm/; either place will do.
    src = [p for p in (os.path.join(TOP, "src", "driver", "vmconfig.c"),
                       os.path.join(TOP, "src", "driver", "kvmm", "vmconfig.c")) if os.path.exists(p)]
    assert len(src) == 1, src
    # "%s": the daemon's own slip (no taps made), not a definition's.
    missing = uncovered(src, os.path.join(DATA, "refuse"), unreachable={"%s"})
    assert not missing, "refusals without a tests/xml2config/refuse case:\n" + "\n".join(missing)


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
