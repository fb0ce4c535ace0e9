"""Shared fixtures: recorded hosts, and the facts of the machine running the tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
HOSTS = FIXTURES / "hosts"


@pytest.fixture
def host_tree():
    """Path to a recorded host tree by name."""
    return lambda name: HOSTS / name


def kvm_openable() -> bool:
    try:
        os.close(os.open("/dev/kvm", os.O_RDWR))
        return True
    except OSError:
        return False


#: For tests that need a working /dev/kvm; CI machines have one, so CI never skips them.
needs_kvm = pytest.mark.skipif(not kvm_openable(), reason="/dev/kvm is absent or not openable by this user")
