"""Notebook 04's second exercise: choose a CPU model for QEMU that gives the guest ``avx2`` and no ``svm``.

The checker reads the flags *the guest's own kernel* listed in its report
(``/proc/cpuinfo`` inside the guest), not the model name the learner typed:
what counts is what QEMU really presented.
"""

from __future__ import annotations

from labkit.exercises import Feedback, exercise
from labkit.i18n import _
from labkit.qemu import BootResult

WANTED, UNWANTED = "avx2", "svm"


@exercise("qemu-cpu-model")
def cpu_features(result: BootResult | None) -> Feedback:
    """Did the guest boot on a CPU with WANTED and without UNWANTED, as its own /proc/cpuinfo says?"""
    if not isinstance(result, BootResult):
        return Feedback(False, _("boot the guest first"), _("run the cell above: it sets `cpu_boot`"))
    flags = result.report.flags
    model = f"{result.report.cpu_vendor} {result.report.cpu_model}"
    problems = ([_("it has no {flag}").format(flag=WANTED)] * (WANTED not in flags)
                + [_("it offers {flag}").format(flag=UNWANTED)] * (UNWANTED in flags))
    if problems:
        return Feedback(False, _("the guest saw a {model} ({count} flags): {problems}").format(
                            model=model, count=len(flags), problems=_(" and ").join(problems)),
                        _("choose a model from `qemu-system-x86_64 -cpu help` that is newer than 2013 and not AMD's, "
                          "e.g. one named after an Intel Core generation (Haswell or later)"))
    return Feedback(True, _("the guest's kernel saw a {model} with {wanted} and without {unwanted}: "
                            "the CPU is whatever QEMU says it is").format(model=model, wanted=WANTED,
                                                                          unwanted=UNWANTED))
