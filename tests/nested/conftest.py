"""Every test here runs inside the emulated AMD-V machine (L1): tests/test_nested_inside_*.py boot it and run
pytest on this folder's files (``LABKIT_IN_L1=1``); run on the host, each test fails saying so (the main run never
collects this folder: ``norecursedirs``)."""

from __future__ import annotations

import os

import pytest

IN_L1 = os.environ.get("LABKIT_IN_L1") == "1"


@pytest.fixture(autouse=True)
def inside_l1() -> None:
    if not IN_L1:
        pytest.fail("these tests run inside the emulated AMD-V machine: run "
                    "tests/test_nested_inside_kvm.py or _qemu.py (labkit nested run -- pytest ...)")
