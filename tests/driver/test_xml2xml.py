"""Domain XML round trips (tests/xml2xml/): the parser and formatter of
src/driver/conf/ through the xml2xml tool.

- in/<case>.xml is parsed (as a status file's for the cases of STATUS)
  and formatted; the result must equal
  out/<case>.xml.  out/<case>.inactive.xml and out/<case>.migratable.xml,
  when present, are the same input formatted with --inactive or
  --migratable.  REGENERATE=1 rewrites the goldens instead; read the diff.
- Every golden validates against libvirt's installed schema
  (virt-xml-validate, package libvirt-clients).
- Formatting a golden again gives the same document (idempotent).
- refuse/<case>.xml must fail with exactly the line in refuse/<case>.err
  ("error: <code> <domain>: message"); every refusal the parser and
  validator (src/driver/conf/) can report, and every value list of
  domain_tables.c, has a case there.

Generated UUIDs and MAC addresses are made deterministic with
KVMM_TEST_SEED (the tool seeds its random source with it)."""
import glob
import os
import re
import shutil
import subprocess

import pytest

from kvmmtest import TOP, UNIT_DIR

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(os.path.dirname(HERE), "xml2xml")
TOOL = os.path.join(UNIT_DIR, "xml2xml")
REGENERATE = os.environ.get("REGENERATE") == "1"
CONF = os.path.join(TOP, "src", "driver", "conf")
VARIANTS = {"": [], "inactive": ["--inactive"], "migratable": ["--migratable"]}


# Cases that are a run's status XML, parsed as the daemon parses a status
# file (--status: the disks' node indexes and the chains they number are
# the run's).
STATUS = {"disk-qcow2-live", "aliases-live"}


def run(path, *flags):
    assert os.path.exists(TOOL), f"{TOOL} was not built: run make check"
    env = dict(os.environ, KVMM_TEST_SEED="1")
    if name(path).partition(".")[0] in STATUS:
        flags = ("--status", *flags)
    return subprocess.run([TOOL, *flags, path], capture_output=True, text=True, env=env, timeout=30)


def name(path):
    return os.path.splitext(os.path.basename(path))[0]


def round_trips():
    out = []
    for src in sorted(glob.glob(os.path.join(DATA, "in", "*.xml"))):
        case = name(src)
        for variant in VARIANTS:
            golden = os.path.join(DATA, "out", f"{case}.{variant}.xml" if variant else f"{case}.xml")
            if variant and not os.path.exists(golden):
                continue
            out.append(pytest.param(src, golden, variant, id=f"{case}.{variant}" if variant else case))
    return out


def goldens():
    return [pytest.param(p, id=name(p)) for p in sorted(glob.glob(os.path.join(DATA, "out", "*.xml")))]


def refusals():
    return [pytest.param(p, id=name(p)) for p in sorted(glob.glob(os.path.join(DATA, "refuse", "*.xml")))]


def test_enough_cases():
    assert len(glob.glob(os.path.join(DATA, "in", "*.xml"))) >= 20
    assert len(refusals()) >= 100


@pytest.mark.parametrize("src,golden,variant", round_trips())
def test_round_trip(src, golden, variant):
    r = run(src, *VARIANTS[variant])
    assert r.returncode == 0, r.stdout + r.stderr
    if REGENERATE:
        with open(golden, "w") as f:
            f.write(r.stdout)
        return
    assert os.path.exists(golden), f"no golden {golden}: run with REGENERATE=1 and review it"
    with open(golden) as f:
        assert r.stdout == f.read()


@pytest.mark.skipif(not shutil.which("virt-xml-validate"), reason="virt-xml-validate missing (libvirt-clients)")
@pytest.mark.parametrize("golden", goldens())
def test_golden_validates_against_libvirt_schema(golden):
    r = subprocess.run(["virt-xml-validate", golden, "domain"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("golden", goldens())
def test_golden_is_a_fixed_point(golden):
    flags = VARIANTS.get(name(golden).partition(".")[2], [])
    r = run(golden, *flags)
    assert r.returncode == 0, r.stdout + r.stderr
    with open(golden) as f:
        assert r.stdout == f.read()


@pytest.mark.parametrize("src", refusals())
def test_refused(src):
    err = os.path.splitext(src)[0] + ".err"
    r = run(src)
    if REGENERATE:
        with open(err, "w") as f:
            f.write(r.stdout)
    assert r.returncode == 1, f"accepted:\n{r.stdout}{r.stderr}"
    assert os.path.exists(err), f"no {err}: run with REGENERATE=1 and review it"
    with open(err) as f:
        assert r.stdout == f.read()
    assert r.stderr == ""


def test_uuid_and_mac_are_generated_randomly_without_seed():
    src = os.path.join(DATA, "in", "generated-ids.xml")
    env = {k: v for k, v in os.environ.items() if k != "KVMM_TEST_SEED"}
    outs = [subprocess.run([TOOL, src], capture_output=True, text=True, env=env, check=True).stdout
            for _ in range(2)]
    assert outs[0] != outs[1]
    import re
    for out in outs:
        assert re.search(r"<uuid>[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}</uuid>", out)
        assert re.search(r"<mac address='52:54:00:[0-9a-f]{2}:[0-9a-f]{2}:[0-9a-f]{2}'/>", out)


def refusal_formats(path):
    """(code, format, regex) of each error the C file PATH reports with
    drv_error_report() (or vmconfig.c's unsupported(), whose code is
    VIR_ERR_CONFIG_UNSUPPORTED); the regex has a wildcard per conversion."""
    with open(path) as f:
        src = f.read()
    call = re.compile(r'(?:drv_error_report(?:_full)?\(\s*(?:VIR_FROM_\w+,\s*)?(VIR_ERR_\w+),|unsupported\()'
                      r'\s*((?:"(?:[^"\\]|\\.)*"\s*)+)')
    out = []
    for m in call.finditer(src):
        fmt = "".join(re.findall(r'"((?:[^"\\]|\\.)*)"', m.group(2)))
        parts = re.split(r"%[-#0-9.]*(?:ll|l|z|h)?[diuxsc]", fmt.replace('\\"', '"'))
        out.append((m.group(1) or "VIR_ERR_CONFIG_UNSUPPORTED", fmt, ".*".join(map(re.escape, parts))))
    assert out, f"no error reports found in {path}"
    return out


def uncovered(sources, err_dir, unreachable=()):
    """The refusal formats of SOURCES that no ERR_DIR/*.err line shows."""
    errs = []
    for p in glob.glob(os.path.join(err_dir, "*.err")):
        with open(p) as f:
            errs.append(f.read())
    missing = []
    for path in sources:
        for code, fmt, rx in refusal_formats(path):
            if fmt in unreachable:
                continue
            want = re.compile(rf"error: {code} VIR_FROM_\w+: {rx}\n", re.S)
            if not any(want.fullmatch(e) for e in errs):
                missing.append(f"{os.path.basename(path)}: {code} {fmt}")
    return missing


# Reported only when libxml2 itself fails without a parse error.
UNREACHABLE = {"out of memory", "missing root element"}


def test_every_refusal_has_a_case():
    sources = [os.path.join(CONF, f) for f in ("domain_parse.c", "domain_parse_devices.c",
                                                 "domain_validate.c", "domain_xml.c", "domain_tables.c")]
    missing = uncovered(sources, os.path.join(DATA, "refuse"), UNREACHABLE)
    assert not missing, "refusals without a tests/xml2xml/refuse case:\n" + "\n".join(missing)


def test_every_value_list_refuses_by_name():
    """Each conf_enum of domain_tables.c names what it refuses, in a case."""
    with open(os.path.join(CONF, "domain_tables.c")) as f:
        whats = re.findall(r'const struct conf_enum conf_\w+ = \{\s*"([^"]+)"', f.read())
    assert len(whats) > 30
    errs = ""
    for p in glob.glob(os.path.join(DATA, "refuse", "*.err")):
        with open(p) as f:
            errs += f.read()
    missing = [w for w in set(whats) if not re.search(
        rf"VIR_ERR_CONFIG_UNSUPPORTED VIR_FROM_DOMAIN: {re.escape(w)} '[^']*' is not supported by kvmm", errs)]
    assert not missing, f"value lists without a refusal case: {sorted(missing)}"
