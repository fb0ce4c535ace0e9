"""The lab's hardware-KVM path, KVM itself, tested inside one boot of the emulated AMD-V machine (``labkit nested``).

One L1 runs pytest on the host verdict and doctor, the raw VMM in every mode on SVM, labkit's own VMM booting
Linux, and notebook 03 taking its hardware branch (``tests/nested/test_kvm_path.py``, ``test_own_vmm.py``).
``test_nested_inside_qemu.py`` runs QEMU's and libvirt's part in a second L1 beside it (``tests/inside_l1.py``);
``tests/test_nested.py`` tests the ``labkit nested`` command itself.
"""

from __future__ import annotations

import pytest

from inside_l1 import INSIDE_RUN_TIMEOUT_S, run_in_l1, running_inside

pytestmark = pytest.mark.nested


def test_running_inside_names_the_test_that_had_not_ended() -> None:
    done = ("tests/nested/t.py::test_a PASSED                  [  5%]\n"
            "tests/nested/t.py::test_b[kvm] FAILED             [ 11%]\n")
    assert running_inside(done) is None
    assert running_inside(done + "tests/nested/t.py::test_c[auto] ") == "tests/nested/t.py::test_c[auto]"
    assert running_inside("") is None


@pytest.mark.timeout(INSIDE_RUN_TIMEOUT_S + 120)
def test_kvm_path_inside_l1() -> None:
    """One L1 boot runs the host verdict and doctor, the raw VMM on SVM, labkit's VMM booting Linux, notebook 03."""
    run_in_l1("tests/nested/test_kvm_path.py", "tests/nested/test_own_vmm.py")
