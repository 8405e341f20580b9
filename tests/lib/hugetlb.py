"""The host's pool of 2 MiB huge pages, for tests of hugepage-backed guests:
the host keeps none, so each test reserves what it needs and gives it back."""
import contextlib
import os

HUGE_2M = "/sys/kernel/mm/hugepages/hugepages-2048kB"


def hugetlb_counts():
    """HugePages_Total, _Free and _Rsvd of /proc/meminfo (2 MiB pages, the
    host's default size)."""
    with open("/proc/meminfo") as f:
        m = {k: int(v.split()[0]) for k, v in (line.split(":", 1) for line in f)}
    return m["HugePages_Total"], m["HugePages_Free"], m["HugePages_Rsvd"]


@contextlib.contextmanager
def reserved_2m_pages(n):
    """Sets the host's pool of 2 MiB pages to n for the test (the host
    keeps none), and puts the old size back whatever happens."""
    path = os.path.join(HUGE_2M, "nr_hugepages")
    with open(path) as f:
        old = f.read().strip()
    try:
        with open(path, "w") as f:
            f.write(str(n))
        with open(path) as f:
            got = int(f.read())
        assert got == n, f"the host gave {got} of {n} huge pages"
        yield
    finally:
        with open(path, "w") as f:
            f.write(old)
