"""The lab's guest programs: GNU assembler source in ``programs/*.S``, shown to the learner.

Each program is assembled at :data:`~labkit.kvm.modes.CODE_ADDR` for the mode
the VMM starts it in, with the addresses and ports of the lab's layout and
devices as symbols (:data:`DEFINES`), so the source can say ``SERIAL_PORT``
instead of ``0x3f8``.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

from labkit import asm
from labkit.errors import InvalidOptionError
from labkit.i18n import Phrase
from labkit.i18n import noop as N_
from labkit.kvm import devices
from labkit.kvm.modes import BITS, CODE_ADDR, LAYOUT
from labkit.kvm.regs import Mode

#: Symbols every guest program may use.
DEFINES: dict[str, int] = {**LAYOUT, "SERIAL_PORT": devices.SERIAL_PORT, "POST_PORT": devices.POST_PORT,
                           "EXIT_PORT": devices.EXIT_PORT, "MMIO_COUNTER": devices.MMIO_COUNTER}


@dataclass(frozen=True)
class Guest:
    """A guest program from ``labkit/kvm/programs`` and the CPU mode the VMM starts it in."""

    name: str
    mode: Mode
    summary: str

    @property
    def source(self) -> str:
        return (resources.files("labkit.kvm") / "programs" / f"{self.name}.S").read_text()

    def build(self) -> asm.Program:
        return build(self.source, self.mode)


GUESTS: dict[str, Guest] = {g.name: g for g in (
    Guest("hello_real", "real", Phrase(N_("prints a line from 16-bit real mode"))),
    Guest("hello_protected", "protected", Phrase(N_("prints a line from 32-bit protected mode"))),
    Guest("hello_long", "long", Phrase(N_("prints a line from 64-bit long mode"))),
    Guest("mode_switch", "real", Phrase(N_("climbs from real to protected to long mode by itself"))),
    Guest("ring3", "long", Phrase(N_("drops from ring 0 to ring 3 with iretq and prints from both"))),
    Guest("mmio_counter", "protected", Phrase(N_("stores to and loads from a memory-mapped device"))),
    Guest("compute_loop", "long", Phrase(N_("a counting loop between two timestamps, in ring 0 or ring 3"))),
    Guest("out_loop", "real", Phrase(N_("nothing but `out`: the exit round-trip benchmark"))),
    Guest("exit_kinds", "long", Phrase(N_("a loop, then cpuid, out and hlt: which of them exit, and to whom"))),
)}

#: The hello guest of each mode (``labkit kvm demo --mode``).
HELLO: dict[str, str] = {"real": "hello_real", "protected": "hello_protected", "long": "hello_long",
                         "switch": "mode_switch", "ring3": "ring3"}


def guest(name: str) -> Guest:
    try:
        return GUESTS[name]
    except KeyError:
        raise InvalidOptionError(f"no guest program called {name!r}",
                                 f"choose one of {', '.join(GUESTS)}") from None


def build(source: str, mode: Mode, **symbols: int) -> asm.Program:
    """Assemble ``source`` for ``mode`` at the lab's code address, with :data:`DEFINES` and ``symbols``."""
    if mode not in BITS:
        raise InvalidOptionError(f"unknown CPU mode {mode!r}", f"choose one of {', '.join(BITS)}")
    return asm.assemble(source, BITS[mode], CODE_ADDR, {**DEFINES, **symbols})
