"""The documents in schemas/ are the contracts: what kvmm really sends on
its control socket, and the configurations it accepts, must match them."""
import json
import os
import subprocess

import jsonschema
import pytest

from kvmmtest import GUEST, KVMM, TOP, Api, kvmm_argv, start

SCHEMAS = os.path.join(TOP, "schemas")


def load(name):
    with open(os.path.join(SCHEMAS, name)) as f:
        return json.load(f)


def validator(schema, ref):
    """A validator for one $defs entry of schema."""
    sub = {"$schema": schema["$schema"], "$defs": schema["$defs"], "$ref": f"#/$defs/{ref}"}
    return jsonschema.Draft202012Validator(sub)


def test_schemas_are_valid_json_schema():
    for name in ("api.schema.json", "vm-config.schema.json"):
        jsonschema.Draft202012Validator.check_schema(load(name))


def test_control_socket_messages_match_the_schema(kvm, vms, tmp):
    schema = load("api.schema.json")
    sock = os.path.join(tmp, "api.sock")
    g = start(vms, kvmm_argv("kvmmtest.action=wait", cpus=2, extra=["--api-socket", sock]))
    g.wait_for(r"KVMMTEST tick")
    api = Api(sock)
    validator(schema, "greeting").validate(api.greeting)
    replies = []
    for cmd in ("query-status", "query-commands", "pause", "resume", "no-such-thing", "reset", "quit"):
        replies.append(api.call(cmd))
        if cmd == "reset":
            # a reply means accepted; a quit sent before the reset is
            # done would win over it (and no reset event would come)
            api.events.append(api.wait_event("reset"))
    for r in replies:
        validator(schema, "reply").validate(r)
    validator(schema, "status").validate(replies[0]["return"])
    assert replies[4]["error"]["code"] == "CommandNotFound"
    # every command kvmm lists is one the schema knows, and the other way round
    assert set(replies[1]["return"]) == set(schema["$defs"]["request"]["properties"]["execute"]["enum"])
    for cmd in replies[1]["return"]:
        validator(schema, "request").validate({"id": 1, "execute": cmd})
    assert g.wait_exit() == 0
    events = list(api.events)
    try:
        while True:
            events.append(api._read_msg(5))
    except EOFError:
        pass
    for e in events:
        validator(schema, "event").validate(e)
    seen = {(e["event"], e["data"].get("state")) for e in events}
    for want in [("state-changed", "paused"), ("state-changed", "running"), ("reset", None),
                 ("state-changed", "shutdown")]:
        assert want in seen, (want, events)


GOOD = [
    {"kernel": GUEST},
    {"kernel": GUEST, "memory": "256M", "cpus": 2, "serial": "none", "cmdline": "x", "name": "n",
     "no_reboot": True},
    {"kernel": GUEST, "memory": 134217728, "cpus": "1", "serial": {"mode": "file", "path": "/dev/null"}},
    {"kernel": GUEST, "cpus": 1, "max_cpus": 4},
    {"kernel": GUEST, "cpus": 2, "max_cpus": "2"},
    {"kernel": GUEST, "console": "pty"},
    {"kernel": GUEST, "console": {"mode": "file", "path": "/dev/null"}},
    # IMG: an image the test makes in its directory.
    {"kernel": GUEST, "disks": [{"path": "IMG", "readonly": True, "cache": "none", "serial": "s1",
                                  "blk_size": 4096},
                                 "path=IMG,readonly=on,cache=unsafe"]},
]
BAD = [
    {},
    {"kernel": GUEST, "memory": "12Q"},
    {"kernel": GUEST, "cpus": 0},
    {"kernel": GUEST, "max_cpus": 0},
    {"kernel": GUEST, "max_cpus": 255},
    {"kernel": GUEST, "serial": "tcp:1"},
    {"kernel": GUEST, "floppies": []},
    {"kernel": GUEST, "disks": [{"path": "/x", "cache": "sometimes"}]},
    {"kernel": GUEST, "disks": [{"readonly": True}]},
    {"kernel": GUEST, "disks": ["path=/x,bus=ide"]},
    {"kernel": GUEST, "disks": [{"path": "/x", "serial": "s" * 21}]},
    {"kernel": GUEST, "no_reboot": "yes"},
    {"kernel": GUEST, "console": "tcp:1"},
    {"kernel": GUEST, "console": True},
    {"kernel": GUEST, "nets": [{"tap": "t0", "fd": 3}]},
    {"kernel": GUEST, "nets": [{"mac": "52:54:00:12:34:56"}]},
    {"kernel": GUEST, "nets": ["tap=t0,model=e1000"]},
    {"kernel": GUEST, "nets": [{"tap": "t0", "mac": "01:54:00:12:34:56"}]},
    {"kernel": GUEST, "nets": [{"tap": "a/b"}]},
    {"kernel": GUEST, "nets": [{"tap": "t%d" % i} for i in range(9)]},
]


@pytest.mark.parametrize("cfg", GOOD)
def test_configs_the_schema_accepts_kvmm_accepts(kvm, tmp, cfg):
    jsonschema.validate(cfg, load("vm-config.schema.json"))
    img = os.path.join(tmp, "img")
    with open(img, "wb") as f:
        f.truncate(1 << 20)
    cfg = json.loads(json.dumps(cfg).replace('"IMG', '"' + img).replace("path=IMG", "path=" + img))
    path = os.path.join(tmp, "vm.json")
    with open(path, "w") as f:
        json.dump(dict(cfg, cmdline="kvmmtest.action=poweroff", serial="none"), f)
    r = subprocess.run([KVMM, "--config", path], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("cfg", BAD)
def test_configs_the_schema_refuses_kvmm_refuses(tmp, cfg):
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(cfg, load("vm-config.schema.json"))
    path = os.path.join(tmp, "vm.json")
    with open(path, "w") as f:
        json.dump(cfg, f)
    r = subprocess.run([KVMM, "--config", path], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert r.stderr.startswith("kvmm: error: ")
