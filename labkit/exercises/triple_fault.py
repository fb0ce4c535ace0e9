"""Notebook 03's debugging exercise: a guest that triple-faults because one table entry is wrong.

The VMM sets up the guest's GDT and page tables (:mod:`labkit.kvm.modes`);
here one entry of them has lost its *present* bit — which one differs per
learner (:func:`exercises.target`).  The guest has no IDT, so its first
exception ends in a triple fault: ``KVM_EXIT_SHUTDOWN``.  The learner reads
the crash (:func:`crash`: registers, the code at RIP, the raw entries), names
the entry and its right value, and :func:`check_fix` writes that one entry
into a fresh broken guest and runs it: solved when the guest now prints
``ok`` and halts, and the entry written is the one that was wrong.
"""

from __future__ import annotations

from dataclasses import dataclass

from labkit import exercises
from labkit.exercises import Feedback, exercise
from labkit.i18n import _
from labkit.i18n import noop as N_
from labkit.kvm import guests, modes
from labkit.kvm.errors import KvmGuestError
from labkit.kvm.machine import Machine, format_code

NAME = "kvm-triple-fault"

GUEST = """\
.intel_syntax noprefix
# 64-bit long mode, 4 KiB pages.  Load the data segment into SS, push "ok", pop it, print it, halt.
start:
    mov ax, DATA_SEL
    mov ss, ax                # a segment load: the CPU reads the descriptor from the GDT
    push 0x6b6f               # "ok" onto the stack, just below STACK_TOP
    pop rbx
    mov dx, SERIAL_PORT
    mov al, bl
    out dx, al
    mov al, bh
    out dx, al
    hlt
"""

#: Where each table of the guest lies in guest-physical memory, and its entries the crash report shows.
TABLES: dict[str, tuple[int, range]] = {
    "GDT": (modes.GDT_ADDR, range(len(modes.GDT))), "PML4": (modes.PML4_ADDR, range(1)),
    "PDPT": (modes.PDPT_ADDR, range(1)), "PD": (modes.PD_ADDR, range(2)), "PT": (modes.PT_ADDR, range(6, 10))}

#: The present bit: bit 47 of a segment descriptor (the P of its access byte), bit 0 of a page-table entry.
PRESENT = {"GDT": 1 << 47, "PML4": modes.PTE_PRESENT, "PDPT": modes.PTE_PRESENT, "PD": modes.PTE_PRESENT,
           "PT": modes.PTE_PRESENT}

#: The entries that may be broken: the data segment's descriptor, each level on the way to the code page, the
#: stack's page.
BROKEN: tuple[tuple[str, int], ...] = (("GDT", modes.DATA_SEL // 8), ("PML4", 0), ("PDPT", 0), ("PD", 0),
                                       ("PT", modes.CODE_ADDR >> 12), ("PT", (modes.STACK_TOP - 8) >> 12))


@dataclass(frozen=True)
class Entry:
    """One 8-byte entry of a descriptor or page table, as the crash report shows it."""

    table: str
    index: int
    address: int  # guest-physical
    value: int

    @property
    def present(self) -> bool:
        return bool(self.value & PRESENT[self.table])

    def render(self) -> str:
        return f"  {self.table + f'[{self.index}]':<9} at {self.address:#07x}: {self.value:#018x}"


@dataclass(frozen=True)
class Crash:
    """What the VMM can read after the triple fault: registers, the code at RIP, the tables."""

    reason: str
    rip: int
    rsp: int
    cr2: int
    cr3: int
    code: str
    entries: tuple[Entry, ...]

    def render(self) -> str:
        return "\n".join([
            _("the guest stopped: {reason} (a triple fault)").format(reason=self.reason),
            f"rip {self.rip:#x}   rsp {self.rsp:#x}   cr2 {self.cr2:#x}   cr3 {self.cr3:#x}",
            _("code at rip:"), self.code,
            _("tables (guest-physical address: the raw 64-bit entry):"), *(e.render() for e in self.entries)])


def broken_entry() -> tuple[str, int]:
    """The entry that is wrong in this learner's guest: (table, index)."""
    return exercises.target(NAME, BROKEN)


def broken_machine() -> Machine:
    """A fresh machine running :data:`GUEST` with this learner's entry missing its present bit."""
    machine = Machine(guests.build(GUEST, "long"), "long", pages="4K")
    table, index = broken_entry()
    address = TABLES[table][0] + 8 * index
    machine.memory.write_u64(address, machine.memory.read_u64(address) & ~PRESENT[table])
    return machine


def _entries(machine: Machine) -> tuple[Entry, ...]:
    return tuple(Entry(table, i, base + 8 * i, machine.memory.read_u64(base + 8 * i))
                 for table, (base, shown) in TABLES.items() for i in shown)


def crash() -> Crash:
    """Run the broken guest and read what the triple fault left: the learner's evidence."""
    with broken_machine() as machine:
        try:
            result = machine.run(max_exits=100, timeout=5.0)
        except KvmGuestError as exc:
            regs, special = machine.registers(), machine.special()
            return Crash(exc.exit.name if exc.exit is not None else exc.summary, regs.rip, regs.rsp, special.cr2,
                         special.cr3, format_code(machine.code_at_rip(regs, special)), _entries(machine))
    raise AssertionError(f"the broken guest ran to the end ({result.stopped_by}): the exercise lost its fault")


def _valid(fix: object) -> tuple[str, int, int] | None:
    if not (isinstance(fix, tuple) and len(fix) == 3):
        return None
    table, index, value = fix
    if table not in TABLES or not isinstance(index, int) or not isinstance(value, int):
        return None
    if not (0 <= index < (len(modes.GDT) if table == "GDT" else 512) and 0 <= value < 1 << 64):
        return None
    return table, index, value


HINTS = (
    N_("read the code at rip first: which access did the CPU try (an instruction fetch, a push, a segment load)? "
      "for a page fault, cr2 holds the address it could not reach"),
    N_("walk that address through the tables from cr3: the PML4 index is bits 47–39, PDPT 38–30, PD 29–21, PT 20–12; "
      "every entry on the way needs its present bit (bit 0). A segment load reads the descriptor at GDT index "
      "selector >> 3, whose present bit is bit 47"),
    N_("compare the entry with its neighbours: a right one differs only in the address it holds"),
)


@exercise(NAME)
def check_fix(fix: object) -> Feedback:
    """Write ``fix`` = (table, index, value) into a fresh broken guest and run it: does it print ``ok`` now?"""
    valid = _valid(fix)
    if valid is None:
        return Feedback(False, _("set my_fix to (table, index, value): table one of {tables}, index a whole number, "
                                 "value the 64-bit entry").format(tables=", ".join(TABLES)), HINTS)
    table, index, value = valid
    with broken_machine() as machine:
        machine.memory.write_u64(TABLES[table][0] + 8 * index, value)
        try:
            result = machine.run(max_exits=100, timeout=5.0)
        except KvmGuestError as exc:
            regs, special = machine.registers(), machine.special()
            return Feedback(False, _("with {table}[{index}] = {value:#x} the guest still stops: {why} (rip {rip:#x}, "
                                     "cr2 {cr2:#x})").format(table=table, index=index, value=value, why=exc.summary,
                                                             rip=regs.rip, cr2=special.cr2), HINTS)
    if result.serial != "ok":
        return Feedback(False, _("the guest ran but printed {printed!r}, not 'ok'").format(printed=result.serial),
                        HINTS[2:])
    if (table, index) != broken_entry():
        return Feedback(False, _("the guest runs with your {table}[{index}], but the entry that was wrong is still "
                                 "wrong: you went around it").format(table=table, index=index), HINTS[1:])
    return Feedback(True, _("with {table}[{index}] = {value:#x} the guest printed 'ok' and halted: its present bit "
                            "was the one missing").format(table=table, index=index, value=value))
