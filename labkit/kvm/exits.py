"""Why ``KVM_RUN`` came back: typed, frozen exits decoded from ``struct kvm_run``.

Each return from ``KVM_RUN`` is a *VM exit* that KVM could not (or chose not
to) handle in the kernel.  The reason is ``kvm_run.exit_reason``; the details
sit in the union that follows it.  A VMM is essentially a loop over these.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from labkit.i18n import _
from labkit.kvm import abi


@dataclass(frozen=True)
class Exit:
    """An exit KVM returned; subclasses carry the reason's details."""

    reason: int

    @property
    def name(self) -> str:
        """The reason as ``<linux/kvm.h>`` names it, e.g. ``KVM_EXIT_IO``."""
        return abi.EXIT_REASON_NAMES.get(self.reason, f"exit reason {self.reason}")

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class IoExit(Exit):
    """``in``/``out`` to an I/O port: the VMM emulates the device behind the port.

    ``data`` holds what the guest wrote (``out``); for ``in`` it is empty and
    the VMM supplies the value before the next ``KVM_RUN``.
    """

    direction: Literal["in", "out"]
    port: int
    size: int  # bytes per access: 1, 2 or 4
    count: int  # > 1 for string instructions (rep outsb)
    data: bytes

    @property
    def value(self) -> int:
        return int.from_bytes(self.data[:self.size], "little")

    def __str__(self) -> str:
        if self.direction == "in":
            return _("{name}: in from port {port:#x} ({size} bytes)").format(name=self.name, port=self.port,
                                                                            size=self.size)
        shown = f"{self.value:#x}" + (f" {chr(self.value)!r}" if self.size == 1 and 32 <= self.value < 127 else "")
        return _("{name}: out {value} to port {port:#x}").format(name=self.name, value=shown, port=self.port) + (
            f" ×{self.count}" if self.count > 1 else "")


@dataclass(frozen=True)
class MmioExit(Exit):
    """A load/store to a guest-physical address with no memory slot: memory-mapped I/O.

    For a read, the VMM supplies the ``size`` bytes the guest will load.
    """

    address: int
    size: int
    is_write: bool
    data: bytes

    @property
    def value(self) -> int:
        return int.from_bytes(self.data, "little")

    def __str__(self) -> str:
        if self.is_write:
            return _("{name}: write {value:#x} ({size} bytes) to {address:#x}").format(
                name=self.name, value=self.value, size=self.size, address=self.address)
        return _("{name}: read {size} bytes from {address:#x}").format(name=self.name, size=self.size,
                                                                      address=self.address)


@dataclass(frozen=True)
class HltExit(Exit):
    """The guest executed ``hlt`` (and there is no in-kernel interrupt controller to wake it)."""


@dataclass(frozen=True)
class ShutdownExit(Exit):
    """A triple fault: the CPU could not deliver an exception, not even a double fault."""


@dataclass(frozen=True)
class FailEntryExit(Exit):
    """The hardware refused VM entry (invalid guest state); the code is VMX/SVM specific."""

    hardware_entry_failure_reason: int
    cpu: int

    def __str__(self) -> str:
        return f"{self.name}: hardware entry failure reason {self.hardware_entry_failure_reason:#x} on CPU {self.cpu}"


@dataclass(frozen=True)
class InternalErrorExit(Exit):
    """KVM itself could not go on (e.g. its instruction emulator met an unsupported instruction)."""

    suberror: int
    data: tuple[int, ...]

    @property
    def suberror_name(self) -> str:
        return abi.INTERNAL_ERROR_NAMES.get(self.suberror, f"suberror {self.suberror}")

    def __str__(self) -> str:
        return f"{self.name}: {self.suberror_name}"


@dataclass(frozen=True)
class InterruptedExit(Exit):
    """``KVM_RUN`` returned early because this thread got a signal (a kick, Ctrl-C, a timer)."""


@dataclass(frozen=True)
class OtherExit(Exit):
    """Any other reason, reported by name."""


INTERRUPTED = InterruptedExit(abi.KVM_EXIT_INTR)

#: kvm_run offset of mmio.data (the union starts after the fixed header).
MMIO_DATA_OFFSET = abi.kvm_run.u.offset + abi.kvm_run_mmio.data.offset


def decode(run: abi.kvm_run, page) -> Exit:
    """The exit described by ``run``, a ``kvm_run`` view on ``page`` (the vCPU's mmap)."""
    reason = run.exit_reason
    if reason == abi.KVM_EXIT_IO:
        io = run.io
        out = io.direction == abi.KVM_EXIT_IO_OUT
        data = bytes(page[io.data_offset:io.data_offset + io.size * io.count]) if out else b""
        return IoExit(reason, "out" if out else "in", io.port, io.size, io.count, data)
    if reason == abi.KVM_EXIT_MMIO:
        m = run.mmio
        data = bytes(m.data[:m.len]) if m.is_write else b""
        return MmioExit(reason, m.phys_addr, m.len, bool(m.is_write), data)
    if reason == abi.KVM_EXIT_HLT:
        return HltExit(reason)
    if reason == abi.KVM_EXIT_SHUTDOWN:
        return ShutdownExit(reason)
    if reason == abi.KVM_EXIT_FAIL_ENTRY:
        return FailEntryExit(reason, run.fail_entry.hardware_entry_failure_reason, run.fail_entry.cpu)
    if reason == abi.KVM_EXIT_INTERNAL_ERROR:
        internal = run.internal
        return InternalErrorExit(reason, internal.suberror, tuple(internal.data[:min(internal.ndata, 16)]))
    if reason == abi.KVM_EXIT_INTR:
        return INTERRUPTED
    return OtherExit(reason)
