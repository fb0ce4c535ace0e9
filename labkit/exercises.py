"""Checkers for the notebooks' exercises: is the learner's answer right, and a hint if not.

A checker never raises on a wrong answer: it returns :class:`Feedback`, which
prints as one line (``✔ solved: …`` or ``✘ not yet: … hint: …``).
"""

from __future__ import annotations

import mmap
from dataclasses import dataclass

from labkit import hypervisor


@dataclass(frozen=True)
class Feedback:
    solved: bool
    message: str

    def __str__(self) -> str:
        return f"✔ solved: {self.message}" if self.solved else f"✘ not yet: {self.message}"

    def _repr_pretty_(self, p, cycle: bool) -> None:  # IPython shows the sentence, not the dataclass
        p.text(str(self))


def page_faults(prediction: int | None, mib: int) -> Feedback:
    """Notebook 01: how many page faults does the first touch of ``mib`` MiB cost?"""
    answer = (mib << 20) // mmap.PAGESIZE
    if prediction == answer:
        return Feedback(True, f"{mib} MiB / {mmap.PAGESIZE} B per page = {answer} first-touch faults")
    if prediction is None:
        return Feedback(False, "set my_prediction to a number. hint: one fault per page, "
                               "and mmap.PAGESIZE tells the page size")
    return Feedback(False, f"{prediction} is not it. hint: divide the bytes touched by the page size "
                           f"({mmap.PAGESIZE} bytes), not by 1 MiB")


def hypervisor_types(answers: dict[str, str | None]) -> Feedback:
    """Notebook 02: classify hypervisors as 'type 1' or 'type 2'."""
    truth = {h.name: ("type 1" if h.type.startswith("Type 1") else "type 2") for h in hypervisor.CATALOGUE}
    if not answers:
        return Feedback(False, "classify at least one hypervisor")
    unknown = sorted(set(answers) - set(truth))
    if unknown:
        return Feedback(False, f"{unknown} are not in the catalogue; use names from hypervisor.CATALOGUE")
    wrong = sorted(name for name, given in answers.items()
                   if (given or "").strip().lower() != truth[name])
    if not wrong:
        return Feedback(True, f"all {len(answers)} classified correctly")
    return Feedback(False, f"check {', '.join(wrong)}. hint: does it need a host operating system "
                           "to run on, or does it run on the hardware (or in the kernel) itself?")
