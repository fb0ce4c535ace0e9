"""The notebooks' exercises: is the learner's answer right, and a hint if not.

One module per notebook holds its checkers (:mod:`.kernel`, :mod:`.hypervisor`,
:mod:`.kvm`, ...).  Each notebook exercise is an answer cell tagged
``exercise:NAME``, a check cell calling the checker registered under NAME
with :func:`exercise` (see :data:`EXERCISES`), and a reference solution in
``solutions/NAME.py`` (for instructors; see the top-level ``conftest.py`` for
how CI runs them).  A checker *measures* on this host what the answer says
(boots the guest, touches the memory, reads the process) instead of
recomputing a number the notebook already printed, and it never raises on a
wrong answer: it returns :class:`Feedback`, which prints as ``✔ …`` or
``✘ …`` with a hint — a conversation, not a traceback.

Each answer a learner checks in a notebook is also recorded, so an instructor
can see who passed what (``labkit class status``, :mod:`labkit.classroom`):
one JSON line per check in the learner's own ``~/.local/share/labkit/
results.jsonl`` — a file in their private home that only they write.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from labkit.errors import LabkitError
from labkit.i18n import _

#: Tag of a notebook's answer cell: ``exercise:NAME``; ``solutions/NAME.py`` is its reference solution.
EXERCISE_TAG = "exercise:"


#: Every exercise of the notebooks: NAME (of ``exercise:NAME`` and ``solutions/NAME.py``) -> its checker.
EXERCISES: dict[str, Callable[..., Feedback]] = {}

_Checker = TypeVar("_Checker", bound=Callable[..., "Feedback"])


def exercise(name: str) -> Callable[[_Checker], _Checker]:
    """Register the decorated checker as the one for the notebook cell tagged ``exercise:name``."""
    def register(checker: _Checker) -> _Checker:
        if EXERCISES.setdefault(name, checker) is not checker:
            raise ValueError(f"two checkers for exercise {name!r}")
        return checker
    return register


def all_exercises() -> dict[str, Callable[..., Feedback]]:
    """:data:`EXERCISES` with every checker module imported (each registers its own)."""
    import importlib
    import pkgutil

    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")
    return dict(EXERCISES)


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
        checker = sys._getframe(2)  # __post_init__ <- the dataclass __init__ <- the checker that answers
        _record_in_notebook(checker.f_globals.get("__name__", ""), checker.f_code.co_name, self)
        # In CI the notebooks run with the instructors' reference solutions filled
        # in (see the top-level conftest.py): an unsolved exercise there is a bug.
        if not self.solved and os.environ.get("LABKIT_EXPECT_SOLVED") == "1":
            raise NotSolved(f"reference solution did not solve the exercise: {self}",
                            "fix the solution in solutions/ or the checker in labkit.exercises")

    def __str__(self) -> str:
        if self.solved:
            return f"✔ {self.message}"
        return f"✘ {self.message}" + ("\n  " + _("hint: {hint}").format(hint=self.hint) if self.hint else "")

    def _repr_pretty_(self, p, cycle: bool) -> None:  # IPython shows the sentence, not the dataclass
        p.text(str(self))


#: A learner's results, under their home: theirs alone to write (the instructor, as root, reads them).
RESULTS_FILE = Path(".local/share/labkit/results.jsonl")


def results_file(home: Path | None = None) -> Path:
    """Where the learner whose home is ``home`` (default: this user's) records their checks."""
    return (home or Path.home()) / RESULTS_FILE


def record_result(exercise: str, feedback: Feedback, home: Path | None = None) -> Path:
    """Append one check of ``exercise`` to the learner's results file (created private, 0600)."""
    path = results_file(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps({"exercise": exercise, "solved": feedback.solved, "message": feedback.message,
                       "time": round(time.time(), 3)})
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "a") as fh:
        fh.write(line + "\n")
    return path


def _record_in_notebook(module: str, function: str, feedback: Feedback) -> None:
    """Record a checker's answer when a learner's notebook asked for it.

    Not outside a notebook kernel (unit tests call checkers), not in
    reference runs (``LABKIT_EXPECT_SOLVED=1``), not with ``LABKIT_RESULTS=off``
    (the test suite sets it, so its notebook runs record nobody's progress).
    The exercise is named after the checker (``qemu.cpu_count``), so the
    checkers keep their signatures.  A learner's progress must never break
    their notebook: a results file that cannot be written is skipped.
    """
    ipython = sys.modules.get("IPython")
    in_notebook = ipython is not None and ipython.get_ipython() is not None
    if not in_notebook or not module.startswith(__name__ + ".") or os.environ.get("LABKIT_EXPECT_SOLVED") == "1" \
            or os.environ.get("LABKIT_RESULTS") == "off":
        return
    try:
        record_result(f"{module.removeprefix(__name__ + '.')}.{function}", feedback)
    except OSError:
        pass
