"""Notice an L1 that has stopped for good while its command runs: halted, with nothing left to wake it.

Seen about once in three full CI runs (issue 22), and once caught live: in the middle of an L2 boot, L1's
QEMU went quiet and stayed so (42 s of CPU in 10 min).  An idle L1 is normal — Linux waits for its next
timer in ``hlt`` — but the live one showed (``info registers``, ``info lapic``; kept in
``tests/fixtures/nested/stalled-*.txt``) a vCPU halted with interrupts enabled and its APIC timer's vector
236 waiting in IRR, above the processor priority (PPR 0x10): an interrupt the CPU would take at once, had
the APIC's signal to the vCPU not been lost in TCG's emulation.  It never runs again by itself.

The watch samples QEMU's CPU time; once L1 has used less than :data:`IDLE_SHARE` of a CPU for
:data:`IDLE_WINDOW_S`, it reads the vCPU and its APIC over QMP.  If they show a stopped vCPU, it says so
and presses a key on L1's PS/2 keyboard (QMP ``send-key``, a lone Shift): the keyboard's IRQ 1 goes through
the I/O APIC to the local APIC, which evaluates what is pending again and signals the vCPU — which then
takes the lost timer interrupt too.  On the live stall an NMI (``inject-nmi``, the nudge before) left L1
halted; the key press woke it and its command ran to the end.  Each such event is kept with the run's
result (and printed by ``labkit nested run --times``), so a recovered stall is visible, never silent.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import deque
from dataclasses import dataclass

import psutil
from qemu.qmp import QMPError

from labkit import qemu

#: L1 counts as idle below this share of one CPU (QEMU's own threads use ~1–5 % around a halted vCPU).
IDLE_SHARE = 0.10
#: ... for this long: a busy L1 never idles this long while its command runs, except when the command sleeps.
IDLE_WINDOW_S = 45.0
SAMPLE_S = 5.0

_HALTED = re.compile(r"\bHLT=1\b")
_FLAGS = re.compile(r"\bRFL=([0-9a-f]+)")
_TIMER_LVT = re.compile(r"^LVTT\s+0x([0-9a-f]+).*?\b(one-shot|periodic|tsc-deadline)\b", re.M)
_COUNT = re.compile(r"current_count = (\d+)")
_IRR = re.compile(r"^IRR\s+(.*)$", re.M)
_PPR = re.compile(r"\bPPR 0x([0-9a-f]+)")
IF_FLAG = 1 << 9
LVT_MASKED = 1 << 16
#: The nudge: a Shift key press on L1's PS/2 keyboard (its IRQ 1 is routed by Linux's i8042 driver).
NUDGE_KEY = [{"type": "qcode", "data": "shift"}]


@dataclass(frozen=True)
class Look:
    """One look at an L1 that had idled a whole window: what the watch found, and whether it nudged L1."""

    at_s: float  # seconds after the watch started
    diagnosis: str | None  # None: something can still wake it (or the dump cannot tell)
    evidence: str = ""  # the lines of the dumps it decided on (vCPU state, APIC timer, IRR/ISR)

    @property
    def nudged(self) -> bool:
        return self.diagnosis is not None


def evidence(registers: str, lapic: str) -> str:
    """The lines of ``info registers`` and ``info lapic`` that :func:`diagnose` reads."""
    lines = [line for line in registers.splitlines() if line.startswith("RIP=")]
    lines += [line for line in lapic.splitlines()
              if line.split("\t")[0].strip() in ("LVTT", "Timer", "ISR", "IRR") or line.startswith("APR")]
    return "\n".join(" ".join(line.split()) for line in lines)


def diagnose(registers: str, lapic: str) -> str | None:
    """Why this vCPU will never run again (``info registers`` and ``info lapic`` of L1's one vCPU), or None
    when something can still wake it or the dump cannot tell (it runs; interrupts are disabled on purpose; the
    timer counts down, is periodic, or was masked by Linux itself; the timer is in TSC-deadline mode, whose
    deadline ``info lapic`` does not show).

    Stopped: halted with interrupts enabled and either an interrupt in IRR above the processor priority —
    one the CPU takes at once, so its signal was lost (seen live) — or the one-shot timer run out with
    nothing pending at all, so the interrupt itself was lost (how the first stall's log read)."""
    flags = _FLAGS.search(registers)
    if not _HALTED.search(registers) or flags is None or not int(flags.group(1), 16) & IF_FLAG:
        return None
    lvt, count, irr, ppr = _TIMER_LVT.search(lapic), _COUNT.search(lapic), _IRR.search(lapic), _PPR.search(lapic)
    if irr is None or ppr is None:
        return None
    pending = [int(v) for v in irr.group(1).split() if v.isdigit()]
    deliverable = [v for v in pending if v >> 4 > int(ppr.group(1), 16) >> 4]
    if deliverable:
        return (f"L1's vCPU is halted with interrupts enabled while vector {deliverable[-1]} waits in IRR above "
                f"the processor priority (PPR 0x{ppr.group(1)}): the APIC's signal to the vCPU was lost in TCG's "
                "emulation, and nothing else will wake it")
    if pending or lvt is None or count is None or lvt.group(2) == "tsc-deadline":
        return None
    if int(lvt.group(1), 16) & LVT_MASKED or lvt.group(2) != "one-shot" or int(count.group(1)) > 0:
        return None  # a masked timer is Linux's own choice (no timer pending at all); a periodic one reloads
    return ("L1's vCPU is halted with interrupts enabled, its one-shot APIC timer has run out, and nothing is "
            "pending in IRR: no interrupt will wake it (the timer's interrupt was lost in TCG's emulation)")


class IdleWatch:
    """Samples of QEMU's CPU time, and the test "idle for a whole window"."""

    def __init__(self, window_s: float = IDLE_WINDOW_S, share: float = IDLE_SHARE) -> None:
        self.window_s, self.share = window_s, share
        self.samples: deque[tuple[float, float]] = deque()

    def add(self, now: float, cpu_s: float) -> bool:
        """Record a sample; True when the samples span the window and L1 used less than ``share`` in it."""
        self.samples.append((now, cpu_s))
        while len(self.samples) > 1 and now - self.samples[1][0] >= self.window_s:
            self.samples.popleft()  # the oldest sample kept is the last one at least a window old
        first_at, first_cpu = self.samples[0]
        span = now - first_at
        return span >= self.window_s and (cpu_s - first_cpu) < self.share * span

    def restart(self) -> None:
        self.samples.clear()


async def watch(vm: qemu.QemuMachine, looks: list[Look], period_s: float = SAMPLE_S,
                idle: IdleWatch | None = None) -> None:
    """Run until cancelled: look at L1 whenever it has idled a whole window, nudge it (:data:`NUDGE_KEY`) when it
    is stopped for good, and append each look to ``looks``."""
    if vm.pid is None:
        return
    process, idle, started = psutil.Process(vm.pid), idle or IdleWatch(), time.monotonic()
    while True:
        await asyncio.sleep(period_s)
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            return
        if not idle.add(time.monotonic(), times.user + times.system):
            continue
        idle.restart()
        try:
            registers, lapic = await vm.hmp("info registers"), await vm.hmp("info lapic")
            found = diagnose(registers, lapic)
            if found is not None:
                await vm.qmp("send-key", keys=NUDGE_KEY)
        except (qemu.QemuError, QMPError, OSError):  # QEMU is going away: nothing left to watch
            return
        looks.append(Look(round(time.monotonic() - started, 1), found, evidence(registers, lapic)))
