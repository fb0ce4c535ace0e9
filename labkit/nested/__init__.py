"""The emulated AMD-V machine: run the lab's hardware-KVM path on any x86-64 host.

One module per job: :mod:`.modules` (kvm-amd and virtiofs from the kernel's
package, cached), :mod:`.initramfs` (L1's initramfs), :mod:`.job` (the
command as the caller, inside), :mod:`.machine` (virtiofsd + QEMU/TCG with
``-cpu qemu64,+svm,+npt``, serial relays, release of everything),
:mod:`.watch` (an L1 stopped for good while its command runs: found, nudged, reported),
:mod:`.demo` (notebook 04: the tiny guest under KVM inside L1), :mod:`.own_vmm` (notebook 06: labkit's VMM
and QEMU on the same guest).
"""

from labkit.nested.demo import NestedBoot, boot_under_kvm_inside
from labkit.nested.errors import CannotRunHereError, NestedError
from labkit.nested.machine import CPU, NestedResult, check_host, prepare, run, run_sync, virtiofsd_path

__all__ = ["CPU", "CannotRunHereError", "NestedBoot", "NestedError", "boot_under_kvm_inside", "NestedResult",
           "check_host", "prepare", "run", "run_sync", "virtiofsd_path"]
