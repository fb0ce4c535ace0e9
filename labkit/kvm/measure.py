"""Trap-and-emulate made visible: the same loop in guest ring 0, guest ring 3 and on the host.

With hardware virtualization (VT-x/AMD-V) the CPU runs guest code directly,
kernel mode and user mode alike, and only *exits* cost.  Without it, a
hypervisor must keep the guest kernel from touching the real machine: it
traps and emulates privileged code.  On the nested, software-assisted KVM
of some cloud machines (PVM), guest ring-0 code goes through KVM's
instruction emulator while guest ring-3 code runs natively.

:func:`guest_loop` times ``compute_loop.S`` between two POST-code exits (the
VMM timestamps both); :func:`native_loop` runs the very same ``dec``/``jnz``
loop in this process.  :func:`explain` says what the measured ratios mean —
it only compares numbers it was given.
"""

from __future__ import annotations

import ctypes
import mmap
import time
from dataclasses import dataclass

from labkit import asm
from labkit.errors import InvalidOptionError
from labkit.kvm.machine import Machine

#: The loop of compute_loop.S as a function of this process: fn(iterations).
NATIVE_LOOP = """.intel_syntax noprefix
start:
    mov rcx, rdi          # the first argument (System V ABI): iterations
spin:
    dec rcx               # the same two instructions as in the guest
    jnz spin
    ret
"""


@dataclass(frozen=True)
class LoopTiming:
    """How long ``iterations`` rounds of the loop took, and where it ran."""

    where: str  # "guest ring 0", "guest ring 3", "host"
    iterations: int
    seconds: float

    @property
    def ns_per_iteration(self) -> float:
        return self.seconds * 1e9 / self.iterations

    @property
    def iterations_per_second(self) -> float:
        return self.iterations / self.seconds

    def __str__(self) -> str:
        return (f"{self.where:<13} {self.iterations:>13,} iterations in {self.seconds * 1e3:9.2f} ms "
                f"= {self.iterations_per_second / 1e6:10.2f} M iterations/s")


def _check(iterations: int) -> None:
    if not isinstance(iterations, int) or not 1 <= iterations < 1 << 63:
        raise InvalidOptionError(f"iterations must be a positive integer, not {iterations!r}", "e.g. 100_000")


def guest_loop(ring: int, iterations: int, timeout: float = 60.0) -> LoopTiming:
    """Run ``compute_loop.S`` for ``iterations`` in guest ``ring`` 0 or 3 and time the loop alone."""
    _check(iterations)
    if ring not in (0, 3):
        raise InvalidOptionError(f"ring must be 0 or 3, not {ring!r}", "0: guest kernel mode, 3: guest user mode")
    with Machine("compute_loop") as machine:
        machine.vcpu.set_regs(rdi=iterations, rsi=1 if ring == 3 else 0)
        result = machine.run(max_exits=10, timeout=timeout)
        start, end = machine.post_codes.codes
        if result.special.ring != ring:
            raise AssertionError(f"compute_loop ended in ring {result.special.ring}, not {ring}")
    return LoopTiming(f"guest ring {ring}", iterations, (end.time_ns - start.time_ns) / 1e9)


def native_loop(iterations: int) -> LoopTiming | None:
    """The same loop called natively in this process; None where the OS forbids executable memory."""
    _check(iterations)
    code = asm.assemble(NATIVE_LOOP, 64).image
    try:
        page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    except OSError:  # a W^X policy (SELinux execmem, PaX) refuses writable+executable memory
        return None
    try:
        page.write(code)
        buffer = ctypes.c_char.from_buffer(page)
        function = ctypes.CFUNCTYPE(None, ctypes.c_uint64)(ctypes.addressof(buffer))
        started = time.perf_counter_ns()
        function(iterations)
        elapsed = time.perf_counter_ns() - started
        del function, buffer
        return LoopTiming("host", iterations, elapsed / 1e9)
    finally:
        page.close()


def calibrated(measure, target_seconds: float, start: int = 10_000, limit: int = 10**11) -> LoopTiming | None:
    """Run ``measure(iterations)`` small, then larger (at most 100× per try) until it takes
    about ``target_seconds``.

    So the same notebook runs a few seconds on a host that emulates ring 0
    (~1 M iterations/s) and on one that runs it natively (~1000× faster).
    """
    timing = measure(start)
    while timing is not None and timing.seconds < target_seconds / 3 and timing.iterations < limit:
        growth = min(100.0, target_seconds / max(timing.seconds, 1e-9))
        timing = measure(min(limit, int(timing.iterations * growth) + 1))
    return timing


@dataclass(frozen=True)
class TrapAndEmulate:
    """The three timings and their ratios (per iteration, so the loop counts need not match)."""

    ring0: LoopTiming
    ring3: LoopTiming
    native: LoopTiming | None

    @property
    def ring0_vs_ring3(self) -> float:
        return self.ring0.ns_per_iteration / self.ring3.ns_per_iteration

    @property
    def ring3_vs_native(self) -> float | None:
        return self.ring3.ns_per_iteration / self.native.ns_per_iteration if self.native else None

    @property
    def ring0_vs_native(self) -> float | None:
        return self.ring0.ns_per_iteration / self.native.ns_per_iteration if self.native else None

    def table(self) -> str:
        rows = [str(t) for t in (self.ring0, self.ring3, self.native) if t]
        rows.append(f"ring 0 / ring 3: {self.ring0_vs_ring3:,.1f}× the time per iteration")
        if self.native:
            rows.append(f"ring 3 / host:   {self.ring3_vs_native:,.2f}×")
            rows.append(f"ring 0 / host:   {self.ring0_vs_native:,.1f}×")
        return "\n".join(rows)


def trap_and_emulate(target_seconds: float = 0.3) -> TrapAndEmulate:
    """Measure the loop in guest ring 0, guest ring 3 and natively, each for about ``target_seconds``."""
    ring0 = calibrated(lambda n: guest_loop(0, n), target_seconds)
    ring3 = calibrated(lambda n: guest_loop(3, n), target_seconds)
    assert ring0 is not None and ring3 is not None  # a guest loop always has a timing; only the native one may not
    return TrapAndEmulate(ring0, ring3, calibrated(native_loop, target_seconds))


#: Above this, ring 0 is not running on the CPU directly.
EMULATED = 20.0
#: Within this factor of the host, guest code counts as running natively.
NATIVE = 3.0


def explain(m: TrapAndEmulate) -> str:
    """What the measured ratios say about this host's KVM (only from the numbers in ``m``)."""
    lines = []
    r03 = m.ring0_vs_ring3
    if r03 > EMULATED:
        lines.append(f"Guest kernel-mode code (ring 0) took {r03:,.0f}× longer per iteration than the same "
                     "instructions in guest user mode (ring 3). The guest's ring 0 is not running on the CPU: "
                     "KVM traps it and emulates it instruction by instruction — trap-and-emulate, the way "
                     "hypervisors worked before VT-x/AMD-V, and the way software-assisted nested KVM (such as "
                     "PVM) still runs a guest kernel when the CPU's virtualization extensions are not available.")
    elif r03 < NATIVE:
        lines.append(f"Guest ring 0 and ring 3 ran at about the same speed ({r03:.1f}×): the CPU executes "
                     "guest kernel code directly, as hardware virtualization (VT-x/AMD-V) allows. Only exits "
                     "to the VMM cost extra.")
    else:
        lines.append(f"Guest ring 0 took {r03:.1f}× longer than ring 3: slower than hardware virtualization "
                     "usually is, faster than full emulation. A busy host can also cause this; run it again.")
    if m.native is not None:
        r3n = m.ring3_vs_native
        if r3n is not None and r3n < NATIVE:
            lines.append(f"Guest ring 3 ran at {r3n:.2f}× the host's time per iteration: user-mode guest code "
                         "runs natively on the CPU, with no hypervisor in the way until it exits.")
        else:
            lines.append(f"Guest ring 3 took {r3n:.1f}× the host's time: even user-mode guest code is slowed "
                         "down here (a loaded host, or a hypervisor that emulates more than the kernel).")
    else:
        lines.append("The host loop could not run here (this OS refuses executable memory), so there is no "
                     "native baseline.")
    return "\n".join(lines)
