"""Where an exit is handled: inside the host kernel, or back in the user-space VMM.

"Type 1 or Type 2" is about *where* the hypervisor's work is done.  What a
lab can measure of that on one Linux host is the price of the two places an
exit can be handled by KVM:

* **in the kernel** — KVM answers the exit itself and re-enters the guest
  without ever leaving the kernel.  Here: an *ioeventfd* (``KVM_IOEVENTFD``)
  on an I/O port, the way virtio devices are notified — a guest ``out`` to
  that port only signals an eventfd, inside the kernel;
* **in the user-space VMM** — ``KVM_RUN`` returns to the VMM process with
  ``KVM_EXIT_IO``; the VMM (here labkit's Python VMM, :mod:`labkit.kvm.machine`)
  plays the device and calls ``KVM_RUN`` again.

:func:`measure` runs one guest program — ``exits`` writes to one port in a
loop — with and without an ioeventfd on that port, interleaved and repeated,
and counts where each write was handled: the eventfd's counter (the kernel)
and the VMM's ``KVM_EXIT_IO`` count.  Both numbers include the guest's own
loop (``out``, ``dec``, ``jnz``); only the place the exit is handled differs.

The loop runs in guest ring 0 by default.  On hosts where KVM runs guest
ring 0 through its instruction emulator (PVM), that emulator's time is part
of both numbers; guest ring 3 (``ring=3``, ``out`` allowed by IOPL 3) runs
natively there, but each of its ``out`` first leaves guest user mode through
PVM's own switch, which measured several times slower than the emulated
ring-0 path on these machines.  On a VT-x/AMD-V host either ring runs
natively and exits only at the ``out``.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import statistics
from collections.abc import Iterator
from dataclasses import dataclass

from labkit.errors import InvalidOptionError
from labkit.i18n import _
from labkit.kvm import abi, guests
from labkit.kvm.devices import Device
from labkit.kvm.machine import Machine
from labkit.kvm.system import Kvm

#: The port the guest writes to; no other device of the lab's machine uses it.
PORT = 0x510

#: The guest: ring 0 (RSI = 0) or ring 3 with IOPL 3; a POST mark, RDI writes to PORT, a POST mark, power off.
GUEST = f"""\
.intel_syntax noprefix
start:
    test rsi, rsi
    jz measure                  # RSI = 0: stay in ring 0
    push USER_DS
    lea rax, [rip + user_stack_top]
    push rax
    push 0x3002                 # RFLAGS with IOPL = 3: ring 3 may use out
    push USER_CS
    lea rax, [rip + measure]
    push rax
    iretq                       # to ring 3
measure:
    mov dx, {PORT:#x}
    out POST_PORT, al           # mark: start (the VMM timestamps it)
    mov rcx, rdi
again:
    out dx, al                  # one exit: who handles it?
    dec rcx
    jnz again
    out POST_PORT, al           # mark: end
    out EXIT_PORT, al           # power off
.p2align 4
    .space 256
user_stack_top:
"""


class PortSink(Device):
    """The user-space side of :data:`PORT`: it only counts the writes that reached the VMM."""

    name = "exit-cost port"

    def __init__(self, port: int = PORT) -> None:
        self.ports = range(port, port + 1)
        self.writes = 0

    def out(self, port: int, data: bytes) -> None:
        self.writes += 1


@dataclass(frozen=True)
class ExitCostResult:
    """One run of the guest: how long its loop took and who saw its writes."""

    in_kernel: bool  # an ioeventfd was on the port
    exits: int  # writes the guest made
    seconds: float  # the loop, between the two POST marks (host clock)
    kernel_count: int  # writes the kernel handled: the eventfd's counter
    vmm_count: int  # writes that came back to the VMM as KVM_EXIT_IO

    @property
    def us_per_exit(self) -> float:
        return self.seconds * 1e6 / self.exits


@dataclass(frozen=True)
class ExitCostSummary:
    """Repeated runs of one configuration: the median and the spread (lowest, highest) per exit."""

    runs: tuple[ExitCostResult, ...]

    @property
    def per_exit(self) -> list[float]:
        return [r.us_per_exit for r in self.runs]

    @property
    def median_us(self) -> float:
        return statistics.median(self.per_exit)

    @property
    def spread_us(self) -> tuple[float, float]:
        return min(self.per_exit), max(self.per_exit)

    def line(self, label: str) -> str:
        low, high = self.spread_us
        return _("{label:<32} {median:8.2f} µs per exit (median of {runs}; {low:.2f}–{high:.2f})").format(
            label=label, median=self.median_us, runs=len(self.runs), low=low, high=high)


@dataclass(frozen=True)
class ExitCost:
    """The same writes, handled in the kernel (ioeventfd) and in the user-space VMM."""

    kernel: ExitCostSummary
    vmm: ExitCostSummary

    @property
    def ratio(self) -> float:
        """How many times an exit to the VMM costs one handled in the kernel (medians)."""
        return self.vmm.median_us / self.kernel.median_us

    @property
    def apart(self) -> bool:
        """Every VMM run was slower per exit than every in-kernel run: the difference is beyond the spread."""
        return self.vmm.spread_us[0] > self.kernel.spread_us[1]

    def table(self) -> str:
        return "\n".join([self.kernel.line(_("handled in the kernel (ioeventfd)")),
                          self.vmm.line(_("returned to the VMM (KVM_EXIT_IO)")),
                          _("an exit to the VMM costs {ratio:.1f}x an exit the kernel handles (medians)").format(
                              ratio=self.ratio)])


def supported() -> bool:
    """Whether this host's KVM offers ioeventfds (``KVM_CAP_IOEVENTFD``)."""
    with Kvm() as kvm:
        return kvm.check_extension(abi.KVM_CAP_IOEVENTFD) > 0


@contextlib.contextmanager
def _ioeventfd(machine: Machine, port: int) -> Iterator[int]:
    """An eventfd that KVM signals, inside the kernel, on every 1-byte write to ``port``."""
    fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
    try:
        request = abi.kvm_ioeventfd(addr=port, len=1, fd=fd, flags=abi.KVM_IOEVENTFD_FLAG_PIO)
        machine.vm.ioctl(abi.KVM_IOEVENTFD, ctypes.addressof(request), note=lambda _: f"port {port:#x} → eventfd")
        yield fd
    finally:
        machine.close()  # the VM drops its ioeventfd before we close the eventfd
        os.close(fd)


def _eventfd_count(fd: int) -> int:
    try:
        return os.eventfd_read(fd)
    except BlockingIOError:  # never signalled
        return 0


def run_once(exits: int, in_kernel: bool, ring: int = 0, timeout: float = 30.0) -> ExitCostResult:
    """Run the guest's ``exits`` writes once, with (``in_kernel``) or without an ioeventfd on the port."""
    if ring not in (0, 3):
        raise InvalidOptionError(f"ring must be 0 or 3, not {ring!r}", "0: guest kernel mode, 3: guest user mode")
    if not isinstance(exits, int) or not 1 <= exits < 1 << 32:
        raise InvalidOptionError(f"exits must be a positive whole number, not {exits!r}", "e.g. 20_000")
    sink = PortSink()
    with Machine(guests.build(GUEST, "long"), "long", devices=(sink,)) as machine:
        with _ioeventfd(machine, PORT) if in_kernel else contextlib.nullcontext(-1) as fd:
            machine.vcpu.set_regs(rdi=exits, rsi=1 if ring == 3 else 0)
            machine.run(max_exits=exits + 10, timeout=timeout)
            start, end = machine.post_codes.codes
            kernel_count = _eventfd_count(fd) if in_kernel else 0
    return ExitCostResult(in_kernel, exits, (end.time_ns - start.time_ns) / 1e9, kernel_count, sink.writes)


def measure(exits: int = 5_000, repeats: int = 5, ring: int = 0, timeout: float = 30.0,
            tries: int = 3) -> ExitCost:
    """Both configurations ``repeats`` times, interleaved so that a busy moment of the host hits both alike.

    Each round keeps the fastest of ``tries`` runs of each configuration (timeit's rule): a run during which
    the host's scheduler gave the CPU to something else measures the scheduler, not the exit, and on a busy
    host one such run was enough to make the two spreads overlap (seen once in the browser test)."""
    if not isinstance(repeats, int) or repeats < 1:
        raise InvalidOptionError(f"repeats must be a positive whole number, not {repeats!r}", "e.g. 5")
    if not isinstance(tries, int) or tries < 1:
        raise InvalidOptionError(f"tries must be a positive whole number, not {tries!r}", "e.g. 3")

    def fastest(in_kernel: bool) -> ExitCostResult:
        return min((run_once(exits, in_kernel, ring, timeout) for _ in range(tries)), key=lambda r: r.seconds)

    kernel, vmm = [], []
    for _round in range(repeats):
        kernel.append(fastest(True))
        vmm.append(fastest(False))
    return ExitCost(ExitCostSummary(tuple(kernel)), ExitCostSummary(tuple(vmm)))
