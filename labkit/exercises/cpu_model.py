"""Notebook 04's second exercise: choose a CPU model for QEMU that gives the guest ``avx2`` and no ``svm``.

The checker reads the flags *the guest's own kernel* listed in its report
(``/proc/cpuinfo`` inside the guest), not the model name the learner typed:
what counts is what QEMU really presented.
"""

from __future__ import annotations

from labkit.exercises import Feedback, exercise
from labkit.qemu import BootResult

WANTED, UNWANTED = "avx2", "svm"


@exercise("qemu-cpu-model")
def cpu_features(result: BootResult | None) -> Feedback:
    """Did the guest boot on a CPU with WANTED and without UNWANTED, as its own /proc/cpuinfo says?"""
    if not isinstance(result, BootResult):
        return Feedback(False, "boot the guest first", "run the cell above: it sets `cpu_boot`")
    flags = result.report.flags
    model = f"{result.report.cpu_vendor} {result.report.cpu_model}"
    problems = [f"it has no {WANTED}"] * (WANTED not in flags) + [f"it offers {UNWANTED}"] * (UNWANTED in flags)
    if problems:
        return Feedback(False, f"the guest saw a {model} ({len(flags)} flags): " + " and ".join(problems),
                        "choose a model from `qemu-system-x86_64 -cpu help` that is newer than 2013 and not AMD's, "
                        "e.g. one named after an Intel Core generation (Haswell or later)")
    return Feedback(True, f"the guest's kernel saw a {model} with {WANTED} and without {UNWANTED}: "
                          "the CPU is whatever QEMU says it is")
