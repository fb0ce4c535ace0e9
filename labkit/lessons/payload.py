"""A bare-metal payload: QEMU + KVM shown for real, even where Linux cannot boot under KVM.

``labkit/lessons/payload.S`` is a 64 KiB firmware image (``qemu -bios``): from
the reset vector it switches real → protected → long mode, prints on the
serial port, counts down a loop in ring 0 or ring 3, and makes QEMU exit
through the ``isa-debug-exit`` device.  No firmware, no kernel: the first
instruction the vCPU runs is ours.  Run under ``-accel kvm`` and ``-accel
tcg`` side by side it shows what an accelerator changes: under TCG QEMU
translates every instruction; under KVM the CPU runs them (on these nested
PVM hosts: ring 3 natively, ring 0 through KVM's instruction emulator).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from labkit import asm, host, qemu
from labkit.errors import InvalidOptionError

SOURCE = Path(__file__).parent / "payload.S"
ORIGIN = qemu.BIOS_ORIGIN  # where the payload runs: a -bios image (labkit.qemu.firmware)
EXIT_OK = 0x10  # the value the payload writes to the isa-debug-exit port
EXIT_STATUS = EXIT_OK << 1 | 1  # QEMU's exit status when the payload finished
LOOP_END = re.compile(r"loop end, TSC cycles: ([0-9a-f]{16})\n")


@dataclass(frozen=True)
class Payload:
    """The assembled payload and where its image file is."""

    path: Path
    program: asm.Program
    iterations: int
    ring: int


def build(iterations: int = 50_000_000, ring: int = 3) -> Payload:
    """Assemble the payload for ``iterations`` loop steps in ``ring`` (0 or 3); cached by content."""
    if ring not in (0, 3):
        raise InvalidOptionError(f"ring must be 0 (kernel mode) or 3 (user mode), not {ring!r}")
    if not isinstance(iterations, int) or not 1 <= iterations < 2**63:
        raise InvalidOptionError(f"iterations must be a positive whole number, not {iterations!r}",
                                 "e.g. 50_000_000 (about a second under TCG)")
    source = f".set ITERATIONS, {iterations}\n.set RING, {ring}\n" + SOURCE.read_text()
    path, program = qemu.bios_image(source, "payload")
    return Payload(path, program, iterations, ring)


@dataclass(frozen=True)
class PayloadResult:
    """One run of the payload under one accelerator, timed from the host."""

    accel: qemu.AccelChoice
    ring: int
    iterations: int
    exit_status: int | None
    first_output_s: float | None  # launch → the payload's first byte (QEMU start-up + mode switches)
    loop_cycles: int | None  # the loop as the guest's own time-stamp counter (RDTSC) measured it
    loop_s: float | None  # loop_cycles at the host's TSC rate (console timestamps where that is unknown)
    total_s: float  # launch → QEMU exited
    console: str
    command_line: tuple[str, ...]

    @property
    def finished(self) -> bool:
        """The payload ran to its end and QEMU exited through isa-debug-exit."""
        return self.exit_status == EXIT_STATUS

    @property
    def iterations_per_s(self) -> float | None:
        return self.iterations / self.loop_s if self.loop_s else None


async def run(accel: qemu.Accel = "auto", iterations: int = 50_000_000, ring: int = 3,
              cpu: str | None = None, timeout: float = 60.0) -> PayloadResult:
    """Run the payload once (``accel='auto'``: KVM whenever ``/dev/kvm`` is usable)."""
    payload = build(iterations, ring)
    choice = qemu.choose_accel(accel, "payload")
    config = qemu.MachineConfig(accel=choice.name, machine="pc", cpu=cpu, memory_mib=16, bios=payload.path,
                                devices=(qemu.DEBUG_EXIT_DEVICE,))
    async with qemu.QemuMachine(config, name="payload") as vm:
        await vm.wait_exit(timeout)
    assert vm.launched_at is not None and vm.exited_at is not None
    first = vm.first_output_at()
    match = LOOP_END.search(vm.console)
    cycles = int(match.group(1), 16) if match else None
    tsc = host.tsc_frequency()
    loop_s: float | None
    if cycles is not None and tsc:  # both TCG and KVM guests read the host's counter (KVM adds an offset)
        loop_s = cycles / (tsc.khz * 1000)
    else:
        start, end = vm.seen_at("loop start\n"), vm.seen_at(LOOP_END)
        loop_s = end - start if start and end else None
    return PayloadResult(choice, ring, iterations, vm.returncode, first - vm.launched_at if first else None,
                      cycles, loop_s, vm.exited_at - vm.launched_at, vm.console, tuple(vm.command_line))


async def compare(iterations: int = 50_000_000, ring: int = 3, timeout: float = 60.0) -> list[PayloadResult]:
    """The payload under KVM (where ``/dev/kvm`` is usable) and under TCG, one after the other."""
    runs = []
    if qemu.choose_accel("auto", "payload").name == "kvm":
        runs.append(await run("kvm", iterations, ring, timeout=timeout))
    runs.append(await run("tcg", iterations, ring, timeout=timeout))
    return runs
