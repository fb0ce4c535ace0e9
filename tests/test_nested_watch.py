"""labkit.nested.watch: telling an idle L1 from one that no interrupt will ever wake.

The dumps are L1's own (QEMU 7.2's ``info registers`` and ``info lapic``): ``idle-*`` of an L1 idling in
``sleep 75``, ``stalled-*`` of the L1 caught stopped for good mid L2 boot (woken by a key press, not by an NMI);
the other states are the idle dump with one field changed, as the watch would read them.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest

from labkit import images, qemu
from labkit.nested import watch

FIXTURES = Path(__file__).parent / "fixtures" / "nested"
REGISTERS = (FIXTURES / "idle-registers.txt").read_text()
LAPIC = (FIXTURES / "idle-lapic.txt").read_text()
RAN_OUT = LAPIC.replace("current_count = 7759502", "current_count = 0")
STALLED_REGISTERS = (FIXTURES / "stalled-registers.txt").read_text()
STALLED_LAPIC = (FIXTURES / "stalled-lapic.txt").read_text()


def test_an_idle_l1_with_its_timer_counting_is_left_alone() -> None:
    assert "HLT=1" in REGISTERS and "current_count = 7759502" in LAPIC
    assert watch.diagnose(REGISTERS, LAPIC) is None


def test_halted_with_the_one_shot_timer_run_out_and_nothing_pending_is_stopped_for_good() -> None:
    found = watch.diagnose(REGISTERS, RAN_OUT)
    assert found is not None and "no interrupt will wake it" in found


def test_the_stall_caught_live_is_stopped_for_good() -> None:
    """Halted, IF set, the timer's vector 236 in IRR above PPR 0x10: the CPU would take it at once."""
    assert "HLT=1" in STALLED_REGISTERS and "IRR\t 236" in STALLED_LAPIC and "PPR 0x10" in STALLED_LAPIC
    found = watch.diagnose(STALLED_REGISTERS, STALLED_LAPIC)
    assert found is not None and "vector 236 waits in IRR" in found


def test_the_evidence_is_the_lines_it_decides_on() -> None:
    lines = watch.evidence(STALLED_REGISTERS, STALLED_LAPIC).splitlines()
    assert [line.split("=")[0].split()[0] for line in lines] == ["RIP", "LVTT", "Timer", "ISR", "IRR", "APR"]
    assert "HLT=1" in lines[0] and "current_count = 0" in lines[2] and "236" in lines[4] and "PPR 0x10" in lines[5]


@pytest.mark.parametrize(("what", "registers", "lapic"), [
    ("running, not halted", REGISTERS.replace("HLT=1", "HLT=0"), RAN_OUT),
    ("interrupts disabled", REGISTERS.replace("RFL=00000246", "RFL=00000046"), RAN_OUT),
    ("a vector in IRR at the processor priority waits for it to drop", REGISTERS,
     RAN_OUT.replace("IRR\t (none)", "IRR\t 20")),
    ("the live stall, running again", STALLED_REGISTERS.replace("HLT=1", "HLT=0"), STALLED_LAPIC),
    ("the live stall, with interrupts disabled", STALLED_REGISTERS.replace("RFL=00000246", "RFL=00000046"),
     STALLED_LAPIC),
    ("Linux masked the timer itself", REGISTERS, RAN_OUT.replace("LVTT\t 0x000000ec", "LVTT\t 0x000100ec")),
    ("TSC-deadline: the deadline is not shown", REGISTERS, RAN_OUT.replace("one-shot", "tsc-deadline")),
    ("a dump it cannot read", REGISTERS, "dumping local APIC state for CPU 0\n"),
])
def test_what_can_still_wake_it_or_cannot_be_told_is_not_called_stopped(what: str, registers: str,
                                                                       lapic: str) -> None:
    assert (registers, lapic) not in ((REGISTERS, RAN_OUT), (STALLED_REGISTERS, STALLED_LAPIC)), what
    assert watch.diagnose(registers, lapic) is None, what


def test_idle_means_under_the_share_for_a_whole_window() -> None:
    idle = watch.IdleWatch(window_s=40, share=0.1)
    assert not idle.add(0, 100.0)
    assert not idle.add(20, 100.5)  # quiet, but only half a window seen
    assert idle.add(40, 101.0)  # 1 s of CPU in 40 s: 2.5 %
    idle.restart()
    assert not idle.add(45, 101.0)
    busy = watch.IdleWatch(window_s=40, share=0.1)
    assert not any(busy.add(t, t * 0.5) for t in range(0, 100, 5))  # half a CPU all along


def halted(looks: list[watch.Look]) -> list[watch.Look]:
    """The looks that found the vCPU in hlt."""
    return [look for look in looks if "HLT=1" in look.evidence]


def test_the_watch_looks_at_an_idle_machine_over_qmp_and_leaves_it_running() -> None:
    """The loop for real, on an idle tiny guest (TCG, in ``sleep``): it samples QEMU's CPU time, reads the vCPU
    and the APIC over QMP when the window is quiet, finds nothing wrong, and nudges nothing.  The nudge itself
    is a command this QEMU takes as written."""
    sleeper = images.tiny_guest(command="sleep 600", fetch=False, progress=False)
    config, _ = qemu.linux_config(sleeper, qemu.choose_accel("tcg"))

    async def scenario() -> tuple[list[watch.Look], str]:
        async with qemu.QemuMachine(config, name="watch") as vm:
            await vm.wait_for(images.COMMAND_BEGIN, timeout=120)
            looks: list[watch.Look] = []
            watcher = asyncio.ensure_future(watch.watch(vm, looks, period_s=0.25,
                                                        idle=watch.IdleWatch(window_s=1.0, share=0.5)))
            try:
                # Until a look finds the vCPU halted: an idle guest sits in hlt, but a look can also catch it
                # awake for a moment, handling a tick (run 40, on a loaded host: HLT=0 in the first look).
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(60):
                        while not halted(looks):
                            await asyncio.sleep(0.25)
            finally:
                watcher.cancel()
            await vm.qmp("send-key", keys=watch.NUDGE_KEY)
            return looks, (await vm.qmp("query-status"))["status"]

    looks, status = asyncio.run(scenario())
    assert halted(looks), looks  # within a minute, the watch looked while the guest idled in hlt
    assert not any(look.nudged for look in looks), looks  # and neither then nor at any other look did it nudge
    assert status == "running"
