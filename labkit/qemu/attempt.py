"""Trying a Linux boot under KVM, bounded in time: what happened, and the evidence when it failed.

:func:`labkit.qemu.choose_accel` decides from the host's KVM verdict; this
module *tries*.  Where ``/dev/kvm`` opens but the CPU offers no VT-x/AMD-V
(nested PVM), the lab boots the tiny guest under KVM for a few seconds and
keeps what shows the outcome: QEMU's run state over QMP (``internal-error``
when KVM's instruction emulator met an instruction it lacks), QEMU's own
message (``KVM internal error. Suberror: 1``), or the console's last lines
when the time ran out.  Where the CPU offers VT-x/AMD-V the lesson's ordinary
boot runs under KVM and *is* the attempt, so no extra boot is spent there.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import psutil
from qemu.qmp import QMPError

from labkit import host, images
from labkit.errors import console_tail
from labkit.i18n import Phrase, _
from labkit.i18n import noop as N_
from labkit.qemu.accel import Accel, AccelChoice
from labkit.qemu.boots import linux_config, machine_with_nonce
from labkit.qemu.machine import QemuError, QemuMachine, parse_registers

#: How long the attempt may take: a kernel that runs under KVM here reaches its /init in about a second;
#: one that runs through KVM's instruction emulator has stopped or is still crawling through its setup.
ATTEMPT_S = 8.0

Plan = Literal["kvm", "try", "tcg"]
Outcome = Literal["booted", "internal-error", "exited", "timeout", "not tried"]

#: QEMU's run states (QMP query-status) that end an attempt: the vCPU cannot go on.
_STOPPED_STATES = ("internal-error", "guest-panicked", "shutdown", "io-error")


@dataclass(frozen=True)
class KvmPlan:
    """Whether the lesson boots Linux under KVM, tries it first, or uses TCG only — and why."""

    plan: Plan
    reason: str


def plan_kvm_boot(verdict: host.KvmVerdict, requested: Accel = "auto") -> KvmPlan:
    """``kvm``: the ordinary boot runs under KVM (VT-x/AMD-V); ``try``: attempt KVM first, then TCG; ``tcg``."""
    if requested == "tcg":
        return KvmPlan("tcg", _("you asked for TCG (accel='tcg'): no KVM attempt"))
    if not verdict.usable:
        return KvmPlan("tcg", _("{label}: no usable /dev/kvm, so there is nothing to try").format(label=verdict.label))
    if verdict.boots_linux:
        return KvmPlan("kvm", _("{label}: the CPU offers VT-x/AMD-V, so the boot below runs under KVM itself — "
                                "no separate attempt").format(label=verdict.label))
    return KvmPlan("try", _("{label}: /dev/kvm opens but the CPU offers no VT-x/AMD-V; try a Linux boot under "
                            "KVM for {seconds:g} s, then boot under TCG").format(label=verdict.label,
                                                                                 seconds=ATTEMPT_S))


@dataclass(frozen=True)
class KvmAttempt:
    """A bounded Linux boot under KVM: how it ended, after how long, and the lines that show it."""

    outcome: Outcome
    seconds: float
    qemu_status: str | None  # QEMU's run state (QMP query-status) when the attempt ended; None: not asked
    evidence: str  # QEMU's own message, or the console's last lines
    console: str
    rip: int | None = None  # where the vCPU was when the attempt ended (HMP info registers); None: not read
    cpl: int | None = None  # its privilege level then: 0 is the guest kernel
    vcpu_cpu_s: float | None = None  # CPU time the vCPU thread had used on the host; None: not read

    @property
    def tried(self) -> bool:
        return self.outcome != "not tried"

    @property
    def booted(self) -> bool:
        return self.outcome == "booted"


NOT_TRIED = KvmAttempt("not tried", 0.0, None, "", "")


def kvm_evidence(qemu_output: str, console: str, lines: int = 8) -> str:
    """The lines that show why a KVM boot stopped: QEMU's ``KVM internal error`` report, else the console tail.

    QEMU prints the error, KVM's suberror and the vCPU's registers; the
    first lines (error, suberror, ``emulation failure``, the instruction
    pointer and the code bytes around it) are the evidence a person reads.
    """
    found = re.search(r"^KVM internal error.*$", qemu_output, re.MULTILINE)
    if found is None:
        return console_tail(console, lines) if console.strip() else Phrase(N_("(the console is empty)"))
    block = qemu_output[found.start():].splitlines()
    keep = [line for line in block[:40]
            if line.startswith(("KVM internal error", "emulation failure", "extra data", "RIP=", "Code="))]
    return "\n".join(keep[:lines])


def classify(reported: bool, exited: bool, status: str | None) -> Outcome:
    """How an attempt ended, from what was observed: the report line, QEMU's exit, its run state."""
    if reported:
        return "booted"
    if status == "internal-error":
        return "internal-error"
    if exited or status in _STOPPED_STATES:
        return "exited"
    return "timeout"


async def attempt_kvm_boot(image: images.GuestImage, plan: KvmPlan, *, memory_mib: int = 128, vcpus: int = 1,
                           seconds: float = ATTEMPT_S,
                           on_output: Callable[[str], None] | None = None) -> KvmAttempt:
    """Boot ``image`` under KVM for at most ``seconds`` where ``plan`` says ``try``; else :data:`NOT_TRIED`.

    QEMU is asked for its run state twice a second, so an ``internal-error``
    (the vCPU stopped) ends the attempt at once.  The machine never outlives
    the call.
    """
    if plan.plan != "try":
        return NOT_TRIED
    choice = AccelChoice("kvm", "kvm", plan.reason)
    config, _notes = linux_config(image, choice, memory_mib=memory_mib, vcpus=vcpus)
    with machine_with_nonce(config, "kvm-try") as (vm, token):
        report_line = re.compile(re.escape(images.report_prefix(token)))
        if on_output:
            vm.on_output(on_output)
        status: str | None = None
        async with vm:
            start = time.monotonic()
            while time.monotonic() - start < seconds:
                if vm.seen_at(report_line) is not None or vm.exited_at is not None:
                    break
                try:
                    status = (await vm.qmp("query-status"))["status"]
                except (QemuError, QMPError, OSError, EOFError):  # QEMU exited between the two looks: seen next
                    status = None
                if status in _STOPPED_STATES:
                    break
                await asyncio.sleep(0.5)
            elapsed = time.monotonic() - start
            reported, exited = vm.seen_at(report_line) is not None, vm.exited_at is not None
            where = await _vcpu_state(vm) if not (reported or exited) else {}
            console, output = vm.console, vm.qemu_output()
    outcome = classify(reported, exited, status)
    evidence = "" if outcome == "booted" else kvm_evidence(output, console)
    return KvmAttempt(outcome, elapsed, status, evidence, console, where.get("RIP"), where.get("CPL"),
                      where.get("cpu_s"))


async def _vcpu_state(vm: QemuMachine) -> dict:
    """The first vCPU's RIP and CPL (HMP ``info registers``) and its thread's CPU time, as far as readable."""
    state: dict = {}
    try:
        state.update(parse_registers(await vm.hmp("info registers")))
        thread = (await vm.qmp("query-cpus-fast"))[0]["thread-id"]
        times = next(t for t in psutil.Process(vm.pid).threads() if t.id == thread)
        state["cpu_s"] = times.user_time + times.system_time
    except (QemuError, QMPError, OSError, EOFError, StopIteration, IndexError, KeyError, psutil.Error):
        pass  # QEMU went away meanwhile: unknown, and the attempt says so by None
    return state
