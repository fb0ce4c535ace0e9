"""The notebooks' exercises: is the learner's answer right, and a hint if not.

One module per notebook holds its checkers (:mod:`.kernel`, :mod:`.hypervisor`,
:mod:`.kvm`, ...).  A checker never raises on a wrong answer: it returns
:class:`Feedback`, which prints as ``✔ …`` or ``✘ …`` with a hint — a
conversation, not a traceback.  Reference solutions live in ``solutions/``
(for instructors; see the top-level ``conftest.py`` for how CI runs them).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

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
    hint: str = ""

    def __post_init__(self) -> None:
        # In CI the notebooks run with the instructors' reference solutions filled
        # in (see the top-level conftest.py): an unsolved exercise there is a bug.
        if not self.solved and os.environ.get("LABKIT_EXPECT_SOLVED") == "1":
            raise NotSolved(f"reference solution did not solve the exercise: {self}",
                            "fix the solution in solutions/ or the checker in labkit.exercises")

    def __str__(self) -> str:
        if self.solved:
            return f"✔ {self.message}"
        return f"✘ {self.message}" + (f"\n  hint: {self.hint}" if self.hint else "")

    def _repr_pretty_(self, p, cycle: bool) -> None:  # IPython shows the sentence, not the dataclass
        p.text(str(self))
