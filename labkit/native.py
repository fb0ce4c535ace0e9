"""The payload's counting loop run natively, on this host's CPU: the bare-metal side of "VM vs bare metal".

:mod:`labkit.payload` runs ``dec rcx / jnz`` in a guest under KVM and TCG and
times it with the guest's own time-stamp counter.  :func:`count_down` runs the
very same two instructions in this process, timed the same way (RDTSC before
and after), so notebook 01 can compare one piece of work natively and in a VM.
The code is assembled with :mod:`labkit.asm`, copied into an executable
anonymous mapping, and called through ctypes.
"""

from __future__ import annotations

import ctypes
import mmap
import time
from dataclasses import dataclass

from labkit import asm, host

_LOOP = """\
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
class NativeRun:
    """The loop run natively: its fastest of ``repeats`` runs (the CPU's speed, less what other work took)."""

    iterations: int
    repeats: int
    loop_cycles: int  # fastest run, by the TSC
    loop_s: float  # fastest run: cycles at the TSC rate (wall clock where the TSC rate is unknown)

    @property
    def iterations_per_s(self) -> float:
        return self.iterations / self.loop_s


def count_down(iterations: int = 50_000_000, repeats: int = 5) -> NativeRun:
    """Run the payload's ``dec rcx / jnz`` loop ``iterations`` times natively, ``repeats`` times; the fastest.

    The fastest run, not the median: on a shared host a run can only be
    slowed down by others, never sped up, so the minimum is the CPU's speed.
    """
    code = asm.assemble(_LOOP, bits=64).image
    region = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    try:
        region.write(code)
        address = ctypes.addressof(ctypes.c_char.from_buffer(region))
        loop = ctypes.CFUNCTYPE(ctypes.c_uint64, ctypes.c_uint64)(address)
        cycles, walls = [], []
        for _ in range(repeats):
            start = time.perf_counter()
            cycles.append(loop(iterations))
            walls.append(time.perf_counter() - start)
        del loop, address  # no reference into the mapping may outlive it
    finally:
        region.close()
    tsc = host.tsc_frequency()
    fastest = min(cycles)
    loop_s = fastest / (tsc.khz * 1000) if tsc else min(walls)
    return NativeRun(iterations, repeats, fastest, loop_s)
