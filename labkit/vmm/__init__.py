"""labkit's own VMM that boots Linux: the lab's tiny guest on ``/dev/kvm``, with no QEMU.

Built on :mod:`labkit.kvm` (Kvm, Vm, Vcpu), one job per module:

- :mod:`~labkit.vmm.bootparam` — ``<asm/bootparam.h>``: the zero page, setup header, e820 entry (pure data)
- :mod:`~labkit.vmm.kernel` — the kernel loader: ``vmlinux`` (ELF) or ``bzImage``, their 64-bit entry
- :mod:`~labkit.vmm.zeropage` — the e820 map, command line, initramfs placement, ``struct boot_params``
- :mod:`~labkit.vmm.cpu` — CPUID, the GDT, page tables and registers of the 64-bit boot protocol
- :mod:`~labkit.vmm.uart`, :mod:`~labkit.vmm.rtc`, :mod:`~labkit.vmm.bus` — COM1 with IRQ 4, the CMOS clock,
  and all-ones for every port nobody answers
- :mod:`~labkit.vmm.linux` — :class:`LinuxVm` (build, run to ``KVM_EXIT_SHUTDOWN``) and :func:`boot`
"""

from labkit.vmm.errors import (
           LinuxBootError,
           NeedsHardwareKvmError,
           No64BitEntryError,
           NotAKernelError,
           TooLittleMemoryError,
)
from labkit.vmm.kernel import LinuxKernel, read_kernel
from labkit.vmm.linux import LinuxBoot, LinuxTimes, LinuxVm, boot, require_kvm_for_linux

__all__ = ["LinuxBoot", "LinuxBootError", "LinuxKernel", "LinuxTimes", "LinuxVm", "NeedsHardwareKvmError",
           "No64BitEntryError", "NotAKernelError", "TooLittleMemoryError", "boot", "read_kernel",
           "require_kvm_for_linux"]
