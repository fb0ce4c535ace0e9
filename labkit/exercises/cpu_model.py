"""Notebook 04's second exercise: choose a CPU model for QEMU whose guest sees one feature and lacks another.

Each learner gets a pair (:data:`TARGETS`): a feature the guest's CPU must
offer and one it must not.  No model the notebook shows fits any pair; the
learner reasons from when each instruction set arrived.  The checker reads
the flags *the guest's own kernel* listed in its report (``/proc/cpuinfo``
inside the guest), not the model name the learner typed: what counts is what
QEMU really presented.
"""

from __future__ import annotations

from labkit import exercises
from labkit.exercises import Feedback, exercise
from labkit.i18n import _
from labkit.qemu import BootResult

NAME = "qemu-cpu-model"
#: (a flag the guest must see, one it must not): SSE4.2 came before AES-NI, AES-NI before AVX, AVX before AVX2.
TARGETS = (("sse4_2", "aes"), ("aes", "avx"), ("avx", "avx2"))


def target() -> tuple[str, str]:
    """This learner's (wanted, unwanted) flags (:func:`labkit.exercises.target`)."""
    return exercises.target(NAME, TARGETS)


@exercise(NAME)
def cpu_features(result: BootResult | None) -> Feedback:
    """Did the guest boot on a CPU with the wanted flag and without the unwanted one, as its /proc/cpuinfo says?"""
    wanted, unwanted = target()
    hints = (_("each x86 generation added instructions; a model named after a generation offers what it had"),
             _("qemu.cpu_models() lists the models; boot a candidate and read cpu_boot.report.flags, as the section "
               "'another CPU model' did"))
    if not isinstance(result, BootResult):
        return Feedback(False, _("boot the guest first"), (_("run the cell above: it sets `cpu_boot`"),))
    flags = result.report.flags
    model = f"{result.report.cpu_vendor} {result.report.cpu_model}"
    problems = ([_("it has no {flag}").format(flag=wanted)] * (wanted not in flags)
                + [_("it offers {flag}").format(flag=unwanted)] * (unwanted in flags))
    if problems:
        return Feedback(False, _("the guest saw a {model} ({count} flags): {problems}").format(
                            model=model, count=len(flags), problems=_(" and ").join(problems)), hints)
    return Feedback(True, _("the guest's kernel saw a {model} with {wanted} and without {unwanted}: "
                            "the CPU is whatever QEMU says it is").format(model=model, wanted=wanted,
                                                                          unwanted=unwanted))
