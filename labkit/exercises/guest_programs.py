"""Exercises where the learner writes a guest program: notebook 03's MMIO device, notebook 03b's ring 3.

Each checker assembles the learner's source, runs it on a real VM exit by
exit (:meth:`labkit.kvm.machine.Machine.step`) and judges what the VM *did*:
the exits it made, with their addresses and values, and the vCPU's
registers and privilege level at each one.
"""

from __future__ import annotations

from labkit.errors import LabkitError
from labkit.exercises import Feedback, exercise
from labkit.i18n import _
from labkit.kvm import devices, guests
from labkit.kvm.errors import GuestError
from labkit.kvm.exits import IoExit, MmioExit
from labkit.kvm.machine import Machine, Step
from labkit.kvm.regs import Mode

#: The most exits a learner's guest may make here: these guests need a handful.
MAX_STEPS = 200

MMIO_STORE = 10  # the value the MMIO exercise stores into the counter

MMIO_STARTER = """\
.intel_syntax noprefix
# 32-bit protected mode.  Store 10 into the MMIO counter, then load it three times: into eax, ebx, ecx.
start:
    mov edi, MMIO_COUNTER     # the device register's address (no RAM there)
    # your store and three loads here
    hlt
"""

RING3_STARTER = """\
.intel_syntax noprefix
# 64-bit long mode, ring 0.  Drop to ring 3 with iretq, then print 'U' from there and power off.
start:
    # your iretq frame here: push SS, RSP, RFLAGS, CS, RIP (as the ring3 guest does), then iretq
user:
    mov dx, SERIAL_PORT
    mov al, 'U'
    out dx, al                # a serial exit: the check reads the ring the CPU was in here
    mov al, 0
    out EXIT_PORT, al         # power off
.p2align 4
    .space 256
user_stack_top:
"""


def run_steps(source: str, mode: Mode) -> list[Step] | Feedback:
    """Every exit of ``source`` run in ``mode`` until it halts or powers off, or the Feedback saying why not."""
    try:
        program = guests.build(source, mode)
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
    except GuestError as exc:
        return Feedback(False, exc.summary, _("look at the instruction it stopped on: {line}").format(
            line=exc.dump.splitlines()[-1].strip() if exc.dump else _("(no dump)")))
    return steps


@exercise("kvm-mmio")
def check_mmio(source: str) -> Feedback:
    """Did the guest store MMIO_STORE into the MMIO counter and load it back three times, into eax, ebx, ecx?"""
    steps = run_steps(source, "protected")
    if isinstance(steps, Feedback):
        return steps
    mmio = [s.exit for s in steps if isinstance(s.exit, MmioExit)]
    seen = ", ".join(str(e) for e in mmio) or _("none")
    if not mmio or not mmio[0].is_write or mmio[0].value != MMIO_STORE:
        return Feedback(False, _("the first MMIO exit should be a store of {value}; MMIO exits: {seen}").format(
                            value=MMIO_STORE, seen=seen),
                        "mov dword ptr [edi], 10")
    reads = [e for e in mmio[1:] if not e.is_write]
    if len(reads) != 3 or len(mmio) != 4 or any(e.address != devices.MMIO_COUNTER for e in mmio):
        return Feedback(False, _("expected 1 store and 3 loads at {address:#x}; MMIO exits: {seen}").format(
                            address=devices.MMIO_COUNTER, seen=seen),
                        "mov eax, [edi] / mov ebx, [edi] / mov ecx, [edi]")
    regs = steps[-1].registers
    got = (regs.rax & 0xFFFF_FFFF, regs.rbx & 0xFFFF_FFFF, regs.rcx & 0xFFFF_FFFF)
    want = (MMIO_STORE, MMIO_STORE + 1, MMIO_STORE + 2)
    if got != want:
        return Feedback(False, _("eax, ebx, ecx = {got}, expected {want}").format(got=got, want=want),
                        _("each load exits to the VMM, which answers the counter and adds one: load into eax, ebx, "
                          "ecx in that order"))
    return Feedback(True, _("4 MMIO exits (1 store, 3 loads) at {address:#x}; the VMM answered {want}: the device, "
                            "not RAM, gave eax, ebx and ecx their values").format(address=devices.MMIO_COUNTER,
                                                                                   want=want))


@exercise("kvm-ring3")
def check_ring3(source: str) -> Feedback:
    """Did the guest print 'U' on the serial port while the CPU was in ring 3?"""
    steps = run_steps(source, "long")
    if isinstance(steps, Feedback):
        return steps
    prints = [(s, s.exit) for s in steps if isinstance(s.exit, IoExit) and s.exit.port == devices.SERIAL_PORT]
    if [chr(e.value) for _, e in prints] != ["U"]:
        return Feedback(False, _("the guest printed {printed!r}, expected {expected!r}").format(
                            printed=steps[-1].serial, expected="U"),
                        _("keep the lines from `user:` on as they are"))
    ring = prints[0][0].special.ring
    if ring != 3:
        return Feedback(False, _("'U' was printed from ring {ring}, not ring 3").format(ring=ring),
                        _("before `user:`, push USER_DS, the address of user_stack_top, 0x3002, USER_CS and the "
                          "address of user (lea rax, [rip + user]), then iretq"))
    return Feedback(True, _("'U' came out while the vCPU was in ring 3: iretq dropped it from kernel to user mode"))
