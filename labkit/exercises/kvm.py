"""Notebook 03's exercise: write a guest that prints the digits, checked on a real VM.

The learner edits :data:`STARTER` (16-bit real mode); :func:`check_digits`
assembles and runs it and says what is right or, with a hint, what is not.
"""

from __future__ import annotations

from labkit.errors import LabkitError
from labkit.exercises import Feedback, exercise
from labkit.i18n import _
from labkit.kvm import guests
from labkit.kvm.errors import GuestBudgetExceededError, GuestError, UnhandledAccessError
from labkit.kvm.machine import Machine

EXPECTED = "0123456789\n"

STARTER = """\
.intel_syntax noprefix
# Print 0123456789 and a newline on the serial port, then halt.
# Today it prints only "0".  Make it loop: out, next digit, until '9' is printed.
start:
    mov dx, SERIAL_PORT     # COM1's data register
    mov al, '0'             # the first digit
    out dx, al
    # your loop here (inc al / cmp al, '9' / jbe ...)
    mov al, '\\n'
    out dx, al
    hlt
"""


@exercise("kvm-digits")
def check_digits(source: str) -> Feedback:
    """Run ``source`` in real mode; it passes when the guest prints EXPECTED, one ``out`` per character, and halts."""
    try:
        program = guests.build(source, "real")
    except LabkitError as exc:
        return Feedback(False, _("the program does not assemble"), exc.what.splitlines()[1] if "\n" in exc.what
                       else exc.what)
    try:
        with Machine(program, "real") as machine:
            result = machine.run(max_exits=1000, timeout=5.0)
    except GuestError as exc:
        end = program.origin + len(program.image)
        if exc.registers is not None and not program.origin <= exc.registers.rip < end:
            hint = _("the guest left your program (it ran past the end, or an exception sent it elsewhere): "
                     "end it with hlt")
        elif isinstance(exc, GuestBudgetExceededError):
            hint = _("does your loop end? compare al with '9' and jump back only while it is at most '9' (jbe)")
        elif isinstance(exc, UnhandledAccessError):
            hint = _("print with `out dx, al` where dx = SERIAL_PORT (0x3f8)")
        else:
            hint = _("look at the instruction at rip: {line}").format(line=exc.dump.splitlines()[-1].strip()) \
                if exc.dump else ""
        return Feedback(False, exc.summary, hint)
    printed = result.serial
    outs = result.exits.get("KVM_EXIT_IO", 0)
    if printed != EXPECTED:
        if printed == "":
            hint = _("nothing reached COM1's data register: `out dx, al` with dx = SERIAL_PORT (0x3f8)")
        elif printed == "0\n":
            hint = _("only the first digit came out: add the loop")
        else:
            hint = _("each digit once, in order, then the newline")
        return Feedback(False, _("the guest printed {printed!r}, expected {expected!r}").format(
            printed=printed, expected=EXPECTED), hint)
    if outs != len(EXPECTED):
        return Feedback(False, _("right output, but {outs} port exits for {chars} characters").format(
            outs=outs, chars=len(EXPECTED)), _("one `out` per character"))
    return Feedback(True, _("the guest printed {printed!r} with {outs} port exits and halted").format(
        printed=printed, outs=outs))
