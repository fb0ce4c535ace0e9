"""Shared fixtures: recorded hosts, and the facts of the machine running the tests."""

from __future__ import annotations

import os
import textwrap
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


def lab_guests(name: str) -> str:
    """Python lines (for an async context) that start what a lab run owns: a paused labkit.qemu guest
    ``vm`` and a suspended libvirt domain ``dom`` on ``conn``, both called ``name``."""
    return textwrap.dedent(f"""
        vm = await qemu.QemuMachine(qemu.MachineConfig(memory_mib=32), name={name!r}).start(paused=True)
        conn = virt.connect()
        dom = conn.define(virt.DomainSpec.for_image({name!r}, images.tiny_guest(fetch=False, progress=False),
                                                    memory_mib=64))
        dom.start()
        dom.suspend()
    """)
