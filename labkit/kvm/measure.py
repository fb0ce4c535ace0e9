"""How this host runs a guest: the same loop in guest ring 0, guest ring 3 and on the host; exits by who handles them.

With hardware-assisted virtualization (VT-x/AMD-V) the CPU runs guest code
directly, kernel mode and user mode alike, and only *exits* cost.  On the
nested, software-assisted KVM of some cloud machines (PVM) there is no
hardware guest mode for the guest's kernel: guest ring-0 code goes through
KVM's *instruction emulator*, one instruction at a time (ring-0 instruction
emulation), while guest ring-3 code runs natively.

:func:`exit_kinds` runs a loop, ``cpuid``, ``out`` and ``hlt`` and puts what
the VMM saw (``KVM_RUN`` returns) beside what the kernel counted (the vCPU's
statistics, :mod:`labkit.kvm.stats`): exits KVM handled itself never reach
the VMM, and ``insn_emulation`` counts the instructions its emulator ran.

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
from labkit.i18n import _
from labkit.i18n import noop as N_
from labkit.kvm import abi
from labkit.kvm.machine import Machine
from labkit.kvm.stats import Stats

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
class LoopResult:
    """How long ``iterations`` rounds of the loop took, and where it ran."""

    where: str  # "guest ring 0", "guest ring 3", "host": one of WHERE
    iterations: int
    seconds: float

    @property
    def ns_per_iteration(self) -> float:
        return self.seconds * 1e9 / self.iterations

    @property
    def iterations_per_second(self) -> float:
        return self.iterations / self.seconds

    def __str__(self) -> str:
        return _("{where:<13} {iterations:>13,} iterations in {ms:9.2f} ms = {rate:10.2f} M iterations/s").format(
            where=_(self.where), iterations=self.iterations, ms=self.seconds * 1e3,
            rate=self.iterations_per_second / 1e6)


#: Where a loop ran, as the learner reads it.
WHERE = (N_("guest ring 0"), N_("guest ring 3"), N_("host"))


def _check(iterations: int) -> None:
    if not isinstance(iterations, int) or not 1 <= iterations < 1 << 63:
        raise InvalidOptionError(f"iterations must be a positive integer, not {iterations!r}", "e.g. 100_000")


def guest_loop(ring: int, iterations: int, timeout: float = 60.0) -> LoopResult:
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
    return LoopResult(f"guest ring {ring}", iterations, (end.time_ns - start.time_ns) / 1e9)


def native_loop(iterations: int) -> LoopResult | None:
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
        return LoopResult("host", iterations, elapsed / 1e9)
    finally:
        page.close()


def calibrated(measure, target_seconds: float, start: int = 10_000, limit: int = 10**11) -> LoopResult | None:
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
class RingSummary:
    """The three timings and their ratios (per iteration, so the loop counts need not match)."""

    ring0: LoopResult
    ring3: LoopResult
    native: LoopResult | None

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
        rows.append(_("ring 0 / ring 3: {ratio:,.1f}× the time per iteration").format(ratio=self.ring0_vs_ring3))
        if self.native:
            rows.append(_("ring 3 / host:   {ratio:,.2f}×").format(ratio=self.ring3_vs_native))
            rows.append(_("ring 0 / host:   {ratio:,.1f}×").format(ratio=self.ring0_vs_native))
        return "\n".join(rows)


def ring_timings(target_seconds: float = 0.3) -> RingSummary:
    """Measure the loop in guest ring 0, guest ring 3 and natively, each for about ``target_seconds``."""
    ring0 = calibrated(lambda n: guest_loop(0, n), target_seconds)
    ring3 = calibrated(lambda n: guest_loop(3, n), target_seconds)
    assert ring0 is not None and ring3 is not None  # a guest loop always has a timing; only the native one may not
    return RingSummary(ring0, ring3, calibrated(native_loop, target_seconds))


#: Above this, ring 0 is not running on the CPU directly.
EMULATED = 20.0
#: Within this factor of the host, guest code counts as running natively.
NATIVE = 3.0


def explain(m: RingSummary) -> str:
    """What the measured ratios say about this host's KVM (only from the numbers in ``m``)."""
    lines = []
    r03 = m.ring0_vs_ring3
    if r03 > EMULATED:
        lines.append(_("Guest kernel-mode code (ring 0) took {ratio:,.0f}× longer per iteration than the same "
                       "instructions in guest user mode (ring 3). The guest's ring 0 is not running on the CPU: "
                       "KVM's instruction emulator decodes and executes it one instruction at a time (ring-0 "
                       "instruction emulation), the way software-assisted nested KVM (such as PVM) runs a guest "
                       "kernel when the CPU's virtualization extensions are not available.").format(ratio=r03))
    elif r03 < NATIVE:
        lines.append(_("Guest ring 0 and ring 3 ran at about the same speed ({ratio:.1f}×): the CPU executes "
                       "guest kernel code directly, as hardware virtualization (VT-x/AMD-V) allows. Only exits "
                       "to the VMM cost extra.").format(ratio=r03))
    else:
        lines.append(_("Guest ring 0 took {ratio:.1f}× longer than ring 3: slower than hardware virtualization "
                       "usually is, faster than full emulation. A busy host can also cause this; run it again."
                       ).format(ratio=r03))
    if m.native is not None:
        r3n = m.ring3_vs_native
        if r3n is not None and r3n < NATIVE:
            lines.append(_("Guest ring 3 ran at {ratio:.2f}× the host's time per iteration: user-mode guest code "
                           "runs natively on the CPU, with no hypervisor in the way until it exits.").format(ratio=r3n))
        else:
            lines.append(_("Guest ring 3 took {ratio:.1f}× the host's time: even user-mode guest code is slowed "
                           "down here (a loaded host, or a hypervisor that emulates more than the kernel)."
                           ).format(ratio=r3n))
    else:
        lines.append(_("The host loop could not run here (this OS refuses executable memory), so there is no "
                       "native baseline."))
    return "\n".join(lines)


#: The vCPU counters :func:`exit_kinds` shows, and what each counts.
COUNTERS: dict[str, str] = {
    "exits": N_("every exit from the guest, whoever handled it"),
    "io_exits": N_("port I/O exits"),
    "halt_exits": N_("hlt exits"),
    "insn_emulation": N_("instructions KVM's instruction emulator ran for the guest"),
}
#: How many cpuid/out rounds exit_kinds.S makes after its loop.
ROUNDS = 3


@dataclass(frozen=True)
class ExitKinds:
    """What the VMM saw of one run of ``exit_kinds.S``, beside what the kernel counted for its vCPU."""

    loops: int
    vmm: dict[str, int]  # KVM_RUN returns by exit reason
    kernel: dict[str, int] | None  # the vCPU's cumulative counters over the run; None: no KVM_GET_STATS_FD here

    @property
    def vmm_exits(self) -> int:
        return sum(self.vmm.values())

    def _counted(self) -> dict[str, int]:
        if self.kernel is None:
            raise InvalidOptionError("this kernel has no KVM_GET_STATS_FD (Linux 5.14+): nothing was counted",
                                     "look at ExitKinds.kernel before asking what the kernel counted")
        return self.kernel

    @property
    def in_kernel_exits(self) -> int:
        """Exits KVM handled without returning to the VMM: the kernel's count minus KVM_RUN's returns."""
        return self._counted()["exits"] - self.vmm_exits

    @property
    def loop_emulated(self) -> bool:
        """Did KVM's instruction emulator run the loop's instructions (two per iteration)?"""
        return self._counted().get("insn_emulation", 0) >= 2 * self.loops

    @property
    def hardware_assisted(self) -> bool:
        """The loop ran on the CPU (the emulator ran less than one instruction per iteration), and the
        cpuid exits were answered in the kernel (at least one in-kernel exit per cpuid)."""
        return self._counted().get("insn_emulation", 0) < self.loops and self.in_kernel_exits >= ROUNDS

    def table(self) -> str:
        lines = [_("the guest: a loop of {loops:,} iterations ({instructions:,} instructions), {rounds} cpuid, "
                   "{rounds} out, 1 hlt").format(loops=self.loops, instructions=2 * self.loops, rounds=ROUNDS),
                 _("KVM_RUN returned to the VMM {exits} times: {reasons}").format(
                     exits=self.vmm_exits, reasons=", ".join(f"{name} {n}" for name, n in self.vmm.items()))]
        if self.kernel is None:
            lines.append(_("the kernel's counters: unknown (this kernel has no KVM_GET_STATS_FD; Linux 5.14+)"))
            return "\n".join(lines)
        lines.append(_("the vCPU's counters in the kernel (KVM_GET_STATS_FD), for this run:"))
        lines += [f"  {name:<15} {self.kernel.get(name, 0):>9,}   " + _(meaning) for name, meaning in COUNTERS.items()]
        return "\n".join(lines)


def exit_kinds(loops: int = 10_000) -> ExitKinds:
    """Run ``exit_kinds.S`` in guest ring 0 with a ``loops``-iteration loop; the VMM's and the kernel's counts."""
    _check(loops)
    with Machine("exit_kinds") as machine:
        machine.vcpu.set_regs(rdi=loops)
        stats = Stats(machine.vcpu) if machine.kvm.check_extension(abi.KVM_CAP_BINARY_STATS_FD) else None
        try:
            before = stats.counters() if stats else {}
            result = machine.run(max_exits=100, timeout=60.0)
            kernel = {k: v - before[k] for k, v in stats.counters().items()} if stats else None
        finally:
            if stats:
                stats.close()
    return ExitKinds(loops, result.exits, kernel)
