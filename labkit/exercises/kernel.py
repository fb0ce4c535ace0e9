"""Notebook 01's exercises: predict a first touch's page faults; stop a process with a signal.

Both checkers measure on this host: they touch the memory, they signal a
real child process and read its state back from the kernel.
"""

from __future__ import annotations

import signal

from labkit import kernel
from labkit.exercises import Feedback, exercise

#: How far a prediction may be from the measured faults: the interpreter itself faults a few pages meanwhile.
FAULT_SLACK = 0.02


@exercise("page-faults")
def page_faults(prediction: int | None, mib: int) -> Feedback:
    """Touch ``mib`` MiB for the first time and compare the page faults the kernel counted with ``prediction``."""
    if prediction is None:
        return Feedback(False, "set my_prediction to a number",
                        "one fault per page; mmap.PAGESIZE (or `getconf PAGESIZE` in a shell) tells the page size")
    if not isinstance(prediction, int):
        return Feedback(False, f"my_prediction is a {type(prediction).__name__}, not a whole number",
                        "use // (integer division) or int(...)")
    touch = kernel.first_touch(mib)
    measured = touch.minor_faults
    if abs(prediction - measured) <= max(8, FAULT_SLACK * measured):
        return Feedback(True, f"touching {mib} MiB just cost {measured} page faults here; you predicted {prediction}")
    if prediction == mib:
        hint = "that is one fault per MiB; a fault brings in one page, and a page is much smaller than a MiB"
    else:
        hint = (f"bytes touched ({mib} MiB = {mib} << 20) divided by the page size "
                f"({touch.page_size} bytes here)")
    return Feedback(False, f"touching {mib} MiB just cost {measured} page faults here, not {prediction}", hint)


@exercise("stop-signal")
def stop_signal(sig: signal.Signals | int | None) -> Feedback:
    """Send ``sig`` to a fresh sleeping child and read its state: does the scheduler take it off ('stopped')?"""
    if sig is None:
        return Feedback(False, "set my_signal to a signal, e.g. signal.SIGINT",
                        "`kill -l` in a shell lists them; one of them only pauses a process")
    try:
        sig = signal.Signals(sig)
    except ValueError:
        return Feedback(False, f"{sig!r} is not a signal number", "use a name from the signal module: signal.SIG...")
    seen = _state_after(sig)
    if seen == "stopped":
        return Feedback(True, f"{sig.name} took the child off the scheduler: the kernel now shows it 'stopped'")
    if seen == "zombie":
        return Feedback(False, f"{sig.name} ended the child (the kernel shows it 'zombie': dead, not yet reaped)",
                        "you want a signal that pauses, so that SIGCONT can resume it; look for STOP in `kill -l`")
    return Feedback(False, f"after {sig.name} the child is still {seen!r}, not 'stopped'",
                    "look for STOP in `kill -l`; `ps -o pid,stat,args` shows a stopped process as T")


def _state_after(sig: signal.Signals) -> str:
    """The state a sleeping child shows after ``sig`` ('zombie' if it ended: the child is reaped only on exit)."""
    with kernel.child_process("sleeper") as child:
        kernel.wait_for_state(child.pid, {"sleeping"})
        child.send_signal(sig)
        return kernel.wait_for_state(child.pid, {"stopped", "zombie"}, timeout=1.0)
