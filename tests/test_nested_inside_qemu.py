"""The lab's hardware-KVM path, QEMU and libvirt, tested inside one boot of the emulated AMD-V machine.

One L1 runs pytest on QEMU under KVM over QMP, libvirt's system daemon choosing KVM, notebook 04 taking its
hardware branch, and the libvirtd setup the hardware path revealed (``tests/nested/test_qemu_libvirt_path.py``),
beside ``test_nested_inside_kvm.py``'s L1 (``tests/inside_l1.py``).
"""

from __future__ import annotations

import pytest

from inside_l1 import INSIDE_RUN_TIMEOUT_S, run_in_l1

pytestmark = pytest.mark.nested


@pytest.mark.timeout(INSIDE_RUN_TIMEOUT_S + 120)
def test_qemu_and_libvirt_path_inside_l1() -> None:
    """One L1 boot runs QEMU over QMP and libvirt under KVM, notebook 04, libvirtd's user setup."""
    run_in_l1("tests/nested/test_qemu_libvirt_path.py")
