"""Notebook 04's exercise: a guest with this learner's number of vCPUs that counts its CPUs itself.

The checker boots the guest itself, twice: the learner's command on a
one-vCPU guest, then with the learner's vCPUs.  A command that prints the
number the guest sees passes both; one that prints a fixed number (the
target typed in) fails the first.
"""

from __future__ import annotations

import os
import re

from labkit import exercises, qemu
from labkit.errors import LabkitError
from labkit.exercises import Feedback, exercise
from labkit.i18n import _

NAME = "qemu-vcpus"
#: vCPU counts a learner may be asked for: at least 2 (the check's second boot has 1), at most the host's CPUs
#: (labkit refuses more: they would only wait their turn), and no more than 4 (TCG boots them one by one).
TARGETS = (2, 3, 4)


def target() -> int:
    """This learner's number of vCPUs (:func:`labkit.exercises.target`), among those this host can run."""
    fitting = tuple(n for n in TARGETS if n <= (os.cpu_count() or 1))
    return exercises.target(NAME, fitting or TARGETS[:1])


def _hints() -> tuple[str, ...]:
    return (_("the number of vCPUs is a QEMU option of the machine, like its memory: qemu.boot takes both"),
            _("inside, the guest's kernel lists each CPU it brought up in /proc/cpuinfo; busybox also has a "
              "command that prints the number of processing units"))


def _printed(result: qemu.BootResult) -> list[str]:
    """The numbers the command printed (a count is one number alone)."""
    return re.findall(r"\d+", result.report.command_output or "")


@exercise(NAME)
def cpu_count(vcpus: object, command: object = None) -> Feedback:
    """Does a guest with ``vcpus`` (this learner's target) print the CPU count it sees, and does the count follow?"""
    want = target()
    if vcpus is None or command is None:
        return Feedback(False, _("set exercise_vcpus and exercise_command first"), _hints())
    if isinstance(vcpus, bool) or vcpus != want:
        return Feedback(False, _("your guest should get {want} vCPUs, not {vcpus}").format(want=want, vcpus=vcpus),
                        _hints())
    if not isinstance(command, str) or not command.strip():
        return Feedback(False, _("exercise_command should be a shell command (a str)"), _hints())
    try:  # first the quick one-vCPU boot: a command that prints a typed-in number fails there at once
        control = qemu.boot_blocking(vcpus=1, command=command)
        if control.report.command_status:
            return Feedback(False, _("in the guest, your command failed (exit status {status}): {output}").format(
                status=control.report.command_status, output=(control.report.command_output or "").strip()[:80]),
                _hints())
        if _printed(control) != [str(control.report.cpus)]:
            return Feedback(False, _("on a one-vCPU guest your command printed {output!r}: it must count the CPUs, "
                                     "not print a number you chose").format(
                                         output=(control.report.command_output or "").strip()[:60]), _hints())
        yours = qemu.boot_blocking(vcpus=want, command=command)
    except LabkitError as exc:
        return Feedback(False, _("the guest did not boot: {error}").format(error=exc.what), _hints())
    if _printed(yours) != [str(yours.report.cpus)]:
        return Feedback(False, _("your command printed {output!r}; the guest sees {cpus} CPUs").format(
            output=(yours.report.command_output or "").strip()[:60], cpus=yours.report.cpus), _hints())
    return Feedback(True, _("the guest has {want} vCPUs and counted them itself ({yours}); on one vCPU the same "
                            "command printed {control}").format(want=want, yours=" ".join(_printed(yours)),
                                                                 control=" ".join(_printed(control))))
