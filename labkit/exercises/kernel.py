"""Notebook 01's exercises: predict a first touch's page faults; stop a process with a signal.

Both checkers measure on this host: they touch the memory, they signal a
real child process and read its state back from the kernel.
"""

from __future__ import annotations

import signal

from labkit import kernel
from labkit.exercises import Feedback, exercise
from labkit.i18n import _

#: How far a prediction may be from the measured faults: the interpreter itself faults a few pages meanwhile.
FAULT_SLACK = 0.02


@exercise("page-faults")
def page_faults(prediction: int | None, mib: int) -> Feedback:
    """Touch ``mib`` MiB for the first time and compare the page faults the kernel counted with ``prediction``."""
    if prediction is None:
        return Feedback(False, _("set my_prediction to a number"),
                        _("one fault per page; mmap.PAGESIZE (or `getconf PAGESIZE` in a shell) tells the page size"))
    if not isinstance(prediction, int):
        return Feedback(False, _("my_prediction is a {type}, not a whole number").format(
            type=type(prediction).__name__), _("use // (integer division) or int(...)"))
    touch = kernel.first_touch(mib)
    measured = touch.minor_faults
    if abs(prediction - measured) <= max(8, FAULT_SLACK * measured):
        return Feedback(True, _("touching {mib} MiB just cost {measured} page faults here; you predicted {prediction}")
                        .format(mib=mib, measured=measured, prediction=prediction))
    if prediction == mib:
        hint = _("that is one fault per MiB; a fault brings in one page, and a page is much smaller than a MiB")
    else:
        hint = _("bytes touched ({mib} MiB = {mib} << 20) divided by the page size ({page_size} bytes here)").format(
            mib=mib, page_size=touch.page_size)
    return Feedback(False, _("touching {mib} MiB just cost {measured} page faults here, not {prediction}").format(
        mib=mib, measured=measured, prediction=prediction), hint)


@exercise("stop-signal")
def stop_signal(sig: signal.Signals | int | None) -> Feedback:
    """Send ``sig`` to a fresh sleeping child and read its state: does the scheduler take it off ('stopped')?"""
    if sig is None:
        return Feedback(False, _("set my_signal to a signal, e.g. signal.SIGINT"),
                        _("`kill -l` in a shell lists them; one of them only pauses a process"))
    try:
        sig = signal.Signals(sig)
    except ValueError:
        return Feedback(False, _("{sig!r} is not a signal number").format(sig=sig),
                        _("use a name from the signal module: signal.SIG..."))
    seen = _state_after(sig)
    if seen == "stopped":
        return Feedback(True, _("{sig} took the child off the scheduler: the kernel now shows it 'stopped'").format(
            sig=sig.name))
    if seen == "zombie":
        return Feedback(False, _("{sig} ended the child (the kernel shows it 'zombie': dead, not yet reaped)").format(
            sig=sig.name),
                        _("you want a signal that pauses, so that SIGCONT can resume it; look for STOP in `kill -l`"))
    return Feedback(False, _("after {sig} the child is still {seen!r}, not 'stopped'").format(sig=sig.name, seen=seen),
                    _("look for STOP in `kill -l`; `ps -o pid,stat,args` shows a stopped process as T"))


def _state_after(sig: signal.Signals) -> str:
    """The state a sleeping child shows after ``sig`` ('zombie' if it ended: the child is reaped only on exit)."""
    with kernel.child_process("sleeper") as child:
        kernel.wait_for_state(child.pid, {"sleeping"})
        child.send_signal(sig)
        return kernel.wait_for_state(child.pid, {"stopped", "zombie"}, timeout=1.0)
