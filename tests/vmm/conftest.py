"""Fixtures of the tests in tests/vmm."""
import pytest

import netns as netns_lib


@pytest.fixture
def netns():
    yield from netns_lib.private("kvmmt-")
