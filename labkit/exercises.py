"""Checkers for the notebooks' exercises: is the learner's answer right, and a hint if not.

A checker never raises on a wrong answer: it returns :class:`Feedback`, which
prints as one line (``✔ solved: …`` or ``✘ not yet: … hint: …``).
"""

from __future__ import annotations

import mmap
import os
from dataclasses import dataclass

from labkit import hypervisor
from labkit.errors import LabkitError


#: Tag of a notebook's answer cell: ``exercise:NAME``; ``solutions/NAME.py`` is its reference solution.
EXERCISE_TAG = "exercise:"


def exercise_name(cell: dict) -> str | None:
    """NAME from a notebook cell's ``exercise:NAME`` tag, or None."""
    tags = cell.get("metadata", {}).get("tags", [])
    return next((t[len(EXERCISE_TAG):] for t in tags if t.startswith(EXERCISE_TAG)), None)


class NotSolved(LabkitError, AssertionError):
    """A reference run (``LABKIT_EXPECT_SOLVED=1``) found an exercise unsolved."""


@dataclass(frozen=True)
class Feedback:
    solved: bool
    message: str

    def __post_init__(self) -> None:
        # In CI the notebooks run with the instructors' reference solutions filled
        # in (see the top-level conftest.py): an unsolved exercise there is a bug.
        if not self.solved and os.environ.get("LABKIT_EXPECT_SOLVED") == "1":
            raise NotSolved(f"reference solution did not solve the exercise: {self.message}",
                            "fix the solution in solutions/ or the checker in labkit.exercises")

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
