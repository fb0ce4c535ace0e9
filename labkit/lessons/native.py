"""The payload's counting loop run natively, on this host's CPU: the bare-metal side of "VM vs bare metal".

:mod:`labkit.lessons.payload` runs ``dec rcx / jnz`` in a guest under KVM and TCG and
times it with the guest's own time-stamp counter.  :func:`count_down` runs the
very same two instructions in this process, timed the same way (RDTSC before
and after), so notebook 01 can compare one piece of work natively and in a VM.
The code is assembled with :mod:`labkit.asm` and called natively
(:func:`labkit.process.native_function`).

:func:`bare_vs_vm` runs the loop natively and in the payload guest, interleaved
and repeated, and keeps every run: one run each says little on a shared host,
where another process can slow any run down; medians and the spread (the
slowest and fastest run) say how far apart the two really are.
"""

from __future__ import annotations

import ctypes
import statistics
import time
from dataclasses import dataclass

from labkit import asm, host, process, qemu
from labkit.errors import GuestError, InvalidOptionError
from labkit.i18n import _
from labkit.lessons import payload

#: The payload's counting loop as a native function: iterations in, elapsed TSC ticks out.
LOOP = """\
.intel_syntax noprefix
    mov rcx, rdi              # iterations (first argument)
    rdtsc
    shl rdx, 32
    or rax, rdx
    mov rsi, rax              # start: the time-stamp counter
count:
    dec rcx                   # the payload's loop, instruction for instruction
    jnz count
    rdtsc
    shl rdx, 32
    or rax, rdx
    sub rax, rsi              # cycles spent in the loop
    ret
"""


@dataclass(frozen=True)
class NativeResult:
    """The loop run natively: its fastest of ``repeats`` runs (the CPU's speed, less what other work took)."""

    iterations: int
    repeats: int
    loop_cycles: int  # fastest run, by the TSC
    loop_s: float  # fastest run: cycles at the TSC rate (wall clock where the TSC rate is unknown)

    @property
    def iterations_per_s(self) -> float:
        return self.iterations / self.loop_s


def count_down(iterations: int = 50_000_000, repeats: int = 5) -> NativeResult:
    """Run the payload's ``dec rcx / jnz`` loop ``iterations`` times natively, ``repeats`` times; the fastest.

    The fastest run, not the median: on a shared host a run can only be
    slowed down by others, never sped up, so the minimum is the CPU's speed.
    """
    cycles, walls = [], []
    with process.native_function(asm.assemble(LOOP, bits=64).image, ctypes.c_uint64, ctypes.c_uint64) as loop:
        for _ in range(repeats):
            start = time.perf_counter()
            cycles.append(loop(iterations))
            walls.append(time.perf_counter() - start)
    tsc = host.tsc_frequency()
    fastest = min(cycles)
    loop_s = fastest / (tsc.khz * 1000) if tsc else min(walls)
    return NativeResult(iterations, repeats, fastest, loop_s)


@dataclass(frozen=True)
class Rates:
    """Iterations per second of repeated runs in one place ("native", "kvm", "tcg")."""

    where: str
    per_s: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.per_s)

    @property
    def low(self) -> float:
        return min(self.per_s)

    @property
    def high(self) -> float:
        return max(self.per_s)


@dataclass(frozen=True)
class BareVsVm:
    """The loop natively and in a VM under each accelerator, runs interleaved."""

    native: Rates
    vms: dict[str, Rates]  # accelerator name -> its runs

    def ratio(self, accel: str) -> float:
        """The VM's median speed as a fraction of the native median (1.0: as fast)."""
        return self.vms[accel].median / self.native.median

    def faster_than_native(self, accel: str) -> bool:
        """Even the VM's slowest run beat the fastest native run: faster beyond the spread."""
        return self.vms[accel].low > self.native.high

    def slower_than_native(self, accel: str) -> bool:
        """Even the VM's fastest run was slower than the slowest native run: slower beyond the spread."""
        return self.vms[accel].high < self.native.low

    def table(self) -> str:
        """One line per place: median, spread and the ratio to native."""
        lines = []
        for rates in (self.native, *self.vms.values()):
            label = _("natively") if rates.where == "native" else _("in a VM, {accel}").format(
                accel=rates.where.upper())
            ratio = "" if rates.where == "native" else f" = {self.ratio(rates.where):5.2f}x"
            lines.append(_("{label:<14} {median:7.0f} M iterations/s (median of {n}; {low:.0f}–{high:.0f}){ratio}")
                         .format(label=label, median=rates.median / 1e6, n=len(rates.per_s), low=rates.low / 1e6,
                                 high=rates.high / 1e6, ratio=ratio))
        return "\n".join(lines)

    def verdict(self, accel: str) -> str:
        """What the numbers say about ``accel`` against native, in words that follow them."""
        ratio = self.ratio(accel)
        if self.faster_than_native(accel):
            return _("{accel} ran faster than native beyond the spread ({ratio:.2f}x): something is wrong with "
                     "the measurement").format(accel=accel.upper(), ratio=ratio)
        if self.slower_than_native(accel):
            return _("{accel} was slower than native in every run: its median is {ratio:.2f}x native").format(
                accel=accel.upper(), ratio=ratio)
        return _("{accel} and native overlap: the runs spread wider than the difference, so the guest ran the loop "
                 "as fast as the host within what this measurement can tell ({ratio:.2f}x)").format(
                     accel=accel.upper(), ratio=ratio)


async def bare_vs_vm(iterations: int = 50_000_000, repeats: int = 3, timeout: float = 60.0) -> BareVsVm:
    """The loop natively, under KVM (where ``/dev/kvm`` is usable) and under TCG, ``repeats`` rounds.

    Interleaved (native, KVM, TCG, native, ...): a busy moment of the host
    slows one round of each, not all runs of one side.
    """
    if not isinstance(repeats, int) or repeats < 1:
        raise InvalidOptionError(f"repeats must be a positive whole number, not {repeats!r}", "e.g. 3")
    accels: list[qemu.Accel] = ["kvm"] if qemu.choose_accel("auto", "payload").name == "kvm" else []
    accels.append("tcg")
    native: list[float] = []
    vms: dict[str, list[float]] = {accel: [] for accel in accels}
    for _round in range(repeats):
        # best of three back to back: a run can only be slowed by others (a 50 M loop is ~20 ms, one context
        # switch away from a spike; seen once: all three single native runs slower than every KVM run)
        native.append(count_down(iterations, repeats=3).iterations_per_s)
        for accel in accels:
            run = await payload.run(accel, iterations, ring=3, timeout=timeout)
            if run.iterations_per_s is None:
                raise GuestError(f"the payload under {accel} did not report its loop time",
                                         "run `labkit qemu payload` to see its console")
            vms[accel].append(run.iterations_per_s)
    return BareVsVm(Rates("native", tuple(native)), {a: Rates(a, tuple(r)) for a, r in vms.items()})
