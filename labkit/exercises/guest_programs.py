"""Exercises where the learner writes a guest program: notebook 03's MMIO device, notebook 03b's ring 3.

Each checker assembles the learner's source, runs it on a real VM exit by
exit (:meth:`labkit.kvm.machine.Machine.step`) and judges what the VM *did*:
the exits it made, with their addresses and values, and the vCPU's
registers and privilege level at each one.
"""

from __future__ import annotations

import itertools

from labkit import exercises
from labkit.errors import LabkitError
from labkit.exercises import Feedback, exercise
from labkit.i18n import _
from labkit.kvm import devices, guests
from labkit.kvm.errors import KvmGuestError
from labkit.kvm.exits import IoExit, MmioExit
from labkit.kvm.machine import Machine, Step
from labkit.kvm.regs import Mode

#: The most exits a learner's guest may make here: these guests need a handful.
MAX_STEPS = 200

#: What the MMIO exercise stores into the counter (one per learner), and the registers its three loads fill, in order.
MMIO_VALUES = tuple(range(20, 250))
MMIO_ORDERS = tuple(itertools.permutations(("eax", "ebx", "ecx")))

#: The characters the ring-3 exercise prints (one per learner).
RING3_CHARACTERS = "ABCDEFGHJKLMNPQRSTVWXYZ"

MMIO_STARTER = """\
.intel_syntax noprefix
# 32-bit protected mode.  Store your value into the MMIO counter, then load it three times, into your registers.
start:
    mov edi, MMIO_COUNTER     # the device register's address (no RAM there)
    # your store and three loads here
    hlt
"""

RING3_STARTER = """\
.intel_syntax noprefix
# 64-bit long mode, ring 0.  Drop to ring 3 with iretq, then print your character from there and power off.
start:
    # your iretq frame and the iretq here
user:
    mov dx, SERIAL_PORT
    mov al, CHARACTER         # your character (the check assembles it in)
    out dx, al                # a serial exit: the check reads the ring the CPU was in here
    mov al, 0
    out EXIT_PORT, al         # power off
.p2align 4
    .space 256
user_stack_top:
"""


def mmio_target() -> tuple[int, tuple[str, ...]]:
    """This learner's MMIO task: the value to store, and the registers the three loads fill, in order."""
    return exercises.target("kvm-mmio", MMIO_VALUES), exercises.target("kvm-mmio", MMIO_ORDERS)


def ring3_target() -> str:
    """The character this learner's guest prints from ring 3."""
    return exercises.target("kvm-ring3", RING3_CHARACTERS)


def run_steps(source: str, mode: Mode, **symbols: int) -> list[Step] | Feedback:
    """Every exit of ``source`` run in ``mode`` until it halts or powers off, or the Feedback saying why not.

    ``symbols`` are assembled in besides the lab's layout (the learner's target).
    """
    try:
        program = guests.build(source, mode, **symbols)
    except LabkitError as exc:
        lines = exc.what.splitlines()
        return Feedback(False, _("the program does not assemble"), lines[1] if len(lines) > 1 else exc.what)
    steps: list[Step] = []
    try:
        with Machine(program, mode) as machine:
            while not machine.finished and len(steps) < MAX_STEPS:
                steps.append(machine.step(timeout=2.0))
            if not machine.finished:
                return Feedback(False, _("the guest made {exits} exits without stopping").format(exits=MAX_STEPS),
                                _("end it with hlt (or the power-off port), and check that no loop runs forever"))
    except KvmGuestError as exc:
        return Feedback(False, exc.summary, _("look at the instruction it stopped on: {line}").format(
            line=exc.dump.splitlines()[-1].strip() if exc.dump else _("(no dump)")))
    return steps


@exercise("kvm-mmio")
def check_mmio(source: str) -> Feedback:
    """Did the guest store this learner's value into the MMIO counter and load it back into their registers,
    and did the learner predict its VM exits (:func:`exercises.predict`) before the check ran it?"""
    value, order = mmio_target()
    predicted = exercises.prediction("kvm-mmio")
    if not isinstance(predicted, int):
        return Feedback(False, _("make your prediction first: exercises.predict(\"kvm-mmio\", N), N the VM exits your "
                                 "guest will make, hlt included"),
                        _("which of your guest's instructions need the VMM: a store or load at an address without RAM, "
                          "and hlt?"))
    steps = run_steps(source, "protected")
    if isinstance(steps, Feedback):
        return steps
    mmio = [s.exit for s in steps if isinstance(s.exit, MmioExit)]
    seen = "; ".join(str(e) for e in mmio) or _("none")
    concept = _("section 5's guest talks to the same counter: a store is `mov dword ptr [reg], value`, a load "
                "`mov reg, [reg]`")
    if not mmio or not mmio[0].is_write or mmio[0].value != value:
        return Feedback(False, _("the first MMIO exit should be a store of {value}; MMIO exits: {seen}").format(
                            value=value, seen=seen),
                        (concept, _("edi already holds the counter's address: store through it")))
    reads = [e for e in mmio[1:] if not e.is_write]
    if len(reads) != 3 or len(mmio) != 4 or any(e.address != devices.MMIO_COUNTER for e in mmio):
        return Feedback(False, _("expected 1 store and 3 loads at {address:#x}; MMIO exits: {seen}").format(
                            address=devices.MMIO_COUNTER, seen=seen),
                        (concept, _("one store, then three loads, each through edi")))
    regs = steps[-1].registers
    got = {name: getattr(regs, "r" + name[1:]) & 0xFFFF_FFFF for name in order}
    want = {name: value + i for i, name in enumerate(order)}
    if got != want:
        shown = ", ".join(f"{name} = {got[name]}" for name in order)
        return Feedback(False, _("after the loads: {shown}; expected {want}").format(
                            shown=shown, want=", ".join(f"{n} = {v}" for n, v in want.items())),
                        (_("each load exits to the VMM, which answers the counter and then adds one: the first "
                           "load gets the value you stored"),
                         _("load into {order}, in that order").format(order=", ".join(order))))
    if predicted != len(steps):
        return Feedback(False, _("your guest is right, and it made {exits} VM exits; you predicted {predicted}").format(
                            exits=len(steps), predicted=predicted),
                        _("count the exits in the check's run: each MMIO access is one, and hlt is one more"))
    return Feedback(True, _("{exits} VM exits, as you predicted: 4 MMIO exits (1 store, 3 loads) at {address:#x} and "
                            "hlt; the VMM answered {values}: the device, not RAM, gave {order} their values").format(
                                exits=len(steps), address=devices.MMIO_COUNTER,
                                values=", ".join(str(v) for v in want.values()), order=", ".join(order)))


@exercise("kvm-ring3")
def check_ring3(source: str) -> Feedback:
    """Did the guest print this learner's character on the serial port while the CPU was in ring 3?"""
    character = ring3_target()
    steps = run_steps(source, "long", CHARACTER=ord(character))
    if isinstance(steps, Feedback):
        return steps
    prints = [(s, s.exit) for s in steps if isinstance(s.exit, IoExit) and s.exit.port == devices.SERIAL_PORT]
    frame = _("iretq pops RIP, CS, RFLAGS, RSP and SS, in that order: push them in reverse, the ring-3 selectors "
              "USER_CS and USER_DS among them")
    if [chr(e.value) for _, e in prints] != [character]:
        last = steps[-1]
        return Feedback(False, _("the guest printed {printed!r}, expected {expected!r}; it stopped at rip {rip:#x} "
                                 "in ring {ring}").format(printed=last.serial, expected=character,
                                                          rip=last.registers.rip, ring=last.special.ring),
                        (_("keep the lines from `user:` on as they are"), frame,
                         _("`out` in ring 3 needs RFLAGS.IOPL = 3 (bits 12 and 13); bit 1 of RFLAGS is always 1")))
    ring = prints[0][0].special.ring
    if ring != 3:
        return Feedback(False, _("{character!r} was printed from ring {ring}, not ring 3").format(
                            character=character, ring=ring),
                        (_("the CPU's ring is the low two bits of CS: only an iretq (or sysret) with a ring-3 CS "
                           "lowers it"), frame,
                         _("the new RIP is the address of `user` (lea rax, [rip + user]); the new RSP the top of "
                           "the user stack")))
    return Feedback(True, _("{character!r} came out while the vCPU was in ring 3: iretq dropped it from kernel to "
                            "user mode").format(character=character))
