"""Notebook 03's first exercise: a guest that counts from one digit to another, checked on a real VM.

Each learner gets their own range (:func:`digits_target`), so a neighbour's
guest does not fit.  The template (:data:`STARTER`) only sets up the serial
port: the loop is the learner's to write.  :func:`check_digits` assembles and
runs their source and says what the guest did; the hints of a failed check
go from the idea (a loop) to the instructions, never to the answer lines.
"""

from __future__ import annotations

from labkit import exercises
from labkit.errors import LabkitError
from labkit.exercises import Feedback, exercise
from labkit.i18n import _
from labkit.i18n import noop as N_
from labkit.kvm import guests
from labkit.kvm.errors import GuestBudgetExceededError, KvmGuestError, UnhandledAccessError
from labkit.kvm.machine import Machine

NAME = "kvm-digits"

#: The ranges a learner may get: from one of 0–4 to one of 5–9.
RANGES: tuple[tuple[str, str], ...] = tuple((first, last) for first in "01234" for last in "56789")

STARTER = """\
.intel_syntax noprefix
# Print your digits on the serial port, one `out` per character, then a newline, then halt.
start:
    mov dx, SERIAL_PORT     # COM1's data register
    # your code here
    hlt
"""

LOOP_HINT = N_("a loop: keep the next character in al; after each `out`, step to the next character and jump "
              "back while it is not past your last digit")
INSTRUCTION_HINT = N_("`inc al` steps to the next character; `cmp al, <char>` then `jbe <label>` jumps back while al "
                     "is at most <char> (an unsigned compare)")


def digits_target() -> str:
    """What this learner's guest must print: their digits, in order, then a newline."""
    first, last = exercises.target(NAME, RANGES)
    return "".join(chr(c) for c in range(ord(first), ord(last) + 1)) + "\n"


def _assembly_failed(exc: LabkitError) -> Feedback:
    lines = exc.what.splitlines()
    return Feedback(False, _("the program does not assemble"), lines[1] if len(lines) > 1 else exc.what)


@exercise(NAME)
def check_digits(source: str) -> Feedback:
    """Run ``source`` in real mode: solved when it prints :func:`digits_target`, one ``out`` each, and halts."""
    expected = digits_target()
    try:
        program = guests.build(source, "real")
    except LabkitError as exc:
        return _assembly_failed(exc)
    try:
        with Machine(program, "real") as machine:
            result = machine.run(max_exits=1000, timeout=5.0)
    except KvmGuestError as exc:
        end = program.origin + len(program.image)
        return Feedback(False, exc.summary, _guest_error_hints(exc, program.origin, end))
    printed = result.serial
    outs = result.exits.get("KVM_EXIT_IO", 0)
    if printed != expected:
        if printed == "":
            first = _("nothing reached COM1's data register: print with `out dx, al` while dx holds SERIAL_PORT")
        elif expected.startswith(printed.rstrip("\n")) and printed.rstrip("\n"):
            first = _("it stopped early: is the last digit still printed before the loop ends?")
        else:
            first = _("each of your digits once, in order, from the first to the last, then the newline")
        return Feedback(False, _("the guest printed {printed!r}, expected {expected!r}").format(
            printed=printed, expected=expected), (first, LOOP_HINT, INSTRUCTION_HINT))
    if outs != len(expected):
        return Feedback(False, _("right output, but {outs} port exits for {chars} characters").format(
            outs=outs, chars=len(expected)), _("one `out` per character"))
    return Feedback(True, _("the guest printed {printed!r} with {outs} port exits and halted").format(
        printed=printed, outs=outs))


def _guest_error_hints(exc: KvmGuestError, start: int, end: int) -> tuple[str, ...]:
    """Why the guest stopped, from the concept (where did it go?) to the instruction."""
    if exc.registers is not None and not start <= exc.registers.rip < end:
        return (_("the guest left your program (it ran past the end, or an exception sent it elsewhere): "
                  "end it with hlt"),)
    if isinstance(exc, GuestBudgetExceededError):
        return (_("does your loop end? it must stop jumping back once the last digit is printed"), INSTRUCTION_HINT)
    if isinstance(exc, UnhandledAccessError):
        return (_("print with `out dx, al` where dx = SERIAL_PORT (0x3f8)"),)
    return (_("look at the instruction at rip: {line}").format(line=exc.dump.splitlines()[-1].strip()),) \
        if exc.dump else ()
