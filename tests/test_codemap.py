"""The code map stays true: every source file under src/ and tests/ is
named in docs/ARCHITECTURE.md (the test guest's own files in
tests/guest/README.md), and every file the maps name exists.

A map row names files in backticks, relative to its section's folder
(the `## src/vmm/ — ...` heading): `virtio/blk.c`, `log.c/h` (log.c and
log.h), or a folder ending in `/`, which covers the data files in it
(goldens, fixtures) but not its code."""
import os
import re
import subprocess

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CODE = (".c", ".h", ".S", ".py", ".x", ".mk", ".ld", ".sh")


def tracked(*roots):
    out = subprocess.run(["git", "ls-files", "-z", *roots], cwd=TOP, check=True,
                         capture_output=True).stdout.decode()
    return [p for p in out.split("\0") if p]


def is_code(path):
    if path.endswith(CODE):
        return True
    return os.access(os.path.join(TOP, path), os.X_OK)


def expand(token):
    """`a/b.c/h` names a/b.c and a/b.h; anything else names itself."""
    m = re.fullmatch(r"(.+)\.([a-zA-Z]{1,2})/([a-zA-Z]{1,2})", token)
    if m:
        return [f"{m.group(1)}.{m.group(2)}", f"{m.group(1)}.{m.group(3)}"]
    return [token]


def map_entries(doc, default_root=""):
    """(path, line) for every name in the first cell of the rows of DOC's
    file tables (a first column headed `file` or `path`), with its
    section's folder prepended."""
    root = default_root
    entries = []
    in_files = False
    with open(os.path.join(TOP, doc)) as f:
        for n, line in enumerate(f, 1):
            h = re.match(r"^##+ `?([\w./-]+/)`?", line)
            if line.startswith("## "):
                root = h.group(1) if h else default_root
                continue
            if not line.startswith("|"):
                in_files = False
                continue
            first = line.split("|")[1].strip()
            if first.startswith("---"):
                continue
            if first in ("file", "path", "files", "paths"):
                in_files = True
                continue
            if not in_files:
                continue
            for token in re.findall(r"`([^`\s]+)`", first):
                for name in expand(token):
                    entries.append((os.path.normpath(root + name) + ("/" if name.endswith("/") else ""),
                                    f"{doc}:{n}"))
    return entries


def covered(path, entries):
    for name, _ in entries:
        if name == path:
            return True
        if name.endswith("/") and path.startswith(name) and not is_code(path):
            return True
    return False


def test_every_source_file_is_on_the_map():
    arch = map_entries("docs/ARCHITECTURE.md")
    guest = map_entries("tests/guest/README.md", "tests/guest/")
    missing = []
    for path in tracked("src", "tests", "tools", "schemas"):
        if path.endswith("README.md"):
            continue
        entries = guest if path.startswith("tests/guest/") and is_code(path) else arch
        if not covered(path, entries):
            missing.append(path)
    assert not missing, "not on the code map (docs/ARCHITECTURE.md, or tests/guest/README.md " \
        "for the test guest's code):\n  " + "\n  ".join(missing)


def test_every_file_on_the_map_exists():
    files = set(tracked())
    folders = {os.path.dirname(p) + "/" for p in files}
    folders |= {f[:i + 1] for f in list(folders) for i in range(len(f)) if f[i] == "/"}
    stale = [f"{where}: {name}"
             for name, where in map_entries("docs/ARCHITECTURE.md")
             + map_entries("tests/guest/README.md", "tests/guest/")
             if name not in files and name not in folders]
    assert not stale, "named on a code map but not in the tree:\n  " + "\n  ".join(stale)


def test_the_map_reader_is_not_blind():
    """Guards the two tests above: the reader finds the rows it must."""
    arch = dict(map_entries("docs/ARCHITECTURE.md"))
    assert "src/vmm/main.c" in arch and "src/common/log.h" in arch
    assert not covered("src/vmm/no-such-file.c", list(arch.items()))


def test_test_files_have_unique_names():
    """pytest imports test files by their base name (tests/ has no
    packages): two files of one name in different folders stop the whole
    run at collection."""
    seen = {}
    clashes = []
    for path in tracked("tests"):
        name = os.path.basename(path)
        if name.startswith("test_") and name.endswith(".py"):
            if name in seen:
                clashes.append(f"{seen[name]} and {path}")
            seen[name] = path
    assert not clashes, "test files sharing a name:\n  " + "\n  ".join(clashes)
