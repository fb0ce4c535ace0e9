"""Notebook 04's exercise: a guest with 2 vCPUs that counts its CPUs itself."""

from __future__ import annotations

from labkit.exercises import Feedback, exercise
from labkit.i18n import _
from labkit.qemu import BootResult


@exercise("qemu-vcpus")
def cpu_count(result: BootResult | None) -> Feedback:
    """Did the guest get 2 vCPUs, and did its own command print how many CPUs it sees?"""
    if result is None:
        return Feedback(False, _("boot the guest first"), _("run the cell above: it sets `exercise_boot`"))
    problems, hints = [], []
    if result.config.vcpus != 2:
        problems.append(_("the machine had {vcpus} vCPU(s), not 2").format(vcpus=result.config.vcpus))
        hints.append("vcpus=2")
    output = (result.report.command_output or "").split()
    if result.report.command_output is None:
        problems.append(_("the guest ran no command"))
        hints.append(_("command='nproc', or count the 'processor' lines in /proc/cpuinfo"))
    elif str(result.report.cpus) not in output:
        problems.append(_("the command printed {output!r}, not the number of CPUs the guest sees ({cpus})").format(
            output=" ".join(output)[:60], cpus=result.report.cpus))
        hints.append(_("nproc prints it"))
    if problems:
        return Feedback(False, "; ".join(problems), "; ".join(hints))
    return Feedback(True, _("the guest has 2 vCPUs, and it counted them itself"))
