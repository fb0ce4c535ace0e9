"""Notebook 01's exercises: predict a first touch's page faults; choose the signal for a task.

Both checkers measure on this host: they touch the memory, they signal a
real child process and read its state back from the kernel.  Each learner
gets their own target (:func:`labkit.exercises.target`): a size to predict,
a task for the signal.
"""

from __future__ import annotations

import signal

from labkit import exercises
from labkit.exercises import Feedback, exercise
from labkit.i18n import _
from labkit.lessons import kernel

#: How far a prediction may be from the measured faults: the interpreter itself faults a few pages meanwhile.
FAULT_SLACK = 0.02
#: The sizes (MiB) a learner may be asked to predict the first touch of.
FAULT_TARGETS_MIB = (6, 10, 12, 20, 24, 40)


def fault_target() -> int:
    """This learner's size to predict, in MiB."""
    return exercises.target("page-faults", FAULT_TARGETS_MIB)


@exercise("page-faults")
def page_faults() -> Feedback:
    """Touch this learner's target size for the first time and compare the kernel's count with the prediction."""
    prediction = exercises.prediction("page-faults")
    mib = fault_target()
    if prediction is None:
        return Feedback(False, _("make your prediction first: set my_prediction and run the cell that records it"),
                        (_("a prediction is a number you write down before the measurement runs"),))
    if not isinstance(prediction, int) or isinstance(prediction, bool):
        return Feedback(False, _("my_prediction is a {type}, not a whole number").format(
            type=type(prediction).__name__), (_("faults are counted one by one: use a whole number, e.g. int(...)"),))
    touch = kernel.first_touch(mib)
    measured = touch.minor_faults
    if abs(prediction - measured) <= max(8, FAULT_SLACK * measured):
        return Feedback(True, _("touching {mib} MiB just cost {measured} page faults here; you predicted {prediction}")
                        .format(mib=mib, measured=measured, prediction=prediction))
    return Feedback(False, _("touching {mib} MiB just cost {measured} page faults here, not {prediction}").format(
        mib=mib, measured=measured, prediction=prediction),
                    (_("one first-touch fault brings in one page: how many pages make {mib} MiB?").format(mib=mib),
                     _("mmap.PAGESIZE (or `getconf PAGESIZE` in a shell) is the page size in bytes; "
                       "a MiB is 1 << 20 bytes")))


#: The tasks a learner's signal may have to do to a process that ignores every signal it can.
SIGNAL_TASKS = ("stopped", "ended", "resumed")


def signal_task() -> str:
    """This learner's task, said as the notebook prints it."""
    return {
        "stopped": _("take it off the scheduler without ending it, so that it can be resumed later"),
        "ended": _("end it"),
        "resumed": _("it has been stopped: make it runnable again"),
    }[exercises.target("stop-signal", SIGNAL_TASKS)]


@exercise("stop-signal")
def stop_signal(sig: signal.Signals | int | None) -> Feedback:
    """Send ``sig`` to a fresh child that ignores every signal it may, and read its state: was the task done?"""
    if sig is None:
        return Feedback(False, _("set my_signal to a signal of the signal module (signal.SIG...)"),
                        (_("`kill -l` in a shell lists the signals"),))
    try:
        sig = signal.Signals(sig)
    except ValueError:
        return Feedback(False, _("{sig!r} is not a signal number").format(sig=sig),
                        (_("use a name from the signal module: signal.SIG..."),))
    task = exercises.target("stop-signal", SIGNAL_TASKS)
    seen = _state_after(sig, task)
    if seen == task:
        return Feedback(True, _("{sig} did it: the process ignores every signal it may, and the kernel now shows "
                                "it {state}").format(sig=sig.name, state=_state_words(seen)))
    return Feedback(False, _("after {sig} the kernel shows the process {state}").format(
        sig=sig.name, state=_state_words(seen)),
                    (_("a process may catch or ignore most signals; the kernel keeps a few that act on it "
                       "regardless, and one that always resumes it"),
                     _("`man 7 signal`: its table gives each signal's default action (Term, Core, Stop, Cont) "
                       "and says which signals cannot be caught or ignored")))


def _state_words(state: str) -> str:
    return {"stopped": _("'stopped' (off the scheduler)"), "ended": _("'zombie' (ended, not yet reaped)"),
            "resumed": _("'sleeping' (runnable again)"), "unchanged": _("unchanged: it ignored your signal")}[state]


def _state_after(sig: signal.Signals, task: str) -> str:
    """What ``sig`` did to a stubborn child (stopped first when the task is to resume it)."""
    with kernel.child_process("stubborn") as child:
        kernel.wait_for_state(child.pid, {"sleeping"})
        if task == "resumed":
            child.send_signal(signal.SIGSTOP)
            kernel.wait_for_state(child.pid, {"stopped"})
        watched = {"sleeping", "running", "zombie"} if task == "resumed" else {"stopped", "zombie"}
        child.send_signal(sig)
        state = kernel.wait_for_state(child.pid, watched, timeout=1.0)
    if state not in watched:
        return "unchanged"
    return {"zombie": "ended", "stopped": "stopped"}.get(state, "resumed")
