"""The notebooks' exercises: is the learner's answer right, and a hint if not.

One module per notebook holds its checkers (:mod:`.kernel`, :mod:`.hypervisor`,
:mod:`.kvm`, ...).  Each notebook exercise is an answer cell tagged
``exercise:NAME``, a check cell ``exercises.check("NAME", answer)`` that runs
the checker registered under NAME with :func:`exercise`, and a reference
solution in ``solutions/NAME.py`` (for instructors; see the top-level
``conftest.py`` for how CI runs them).  A checker *measures* on this host what
the answer says (boots the guest, touches the memory, reads the process)
instead of recomputing a number the notebook already printed, and it never
raises on a wrong answer: it returns :class:`Feedback` — a plain value.

:func:`check` turns that value into a conversation: it counts the learner's
attempts and shows one more hint after each failed one (none before a first
attempt, so no hint hands out the answer ahead of the learner's own try).
Targets differ per learner and host (:func:`target`), so a neighbour's answer
does not fit; a predict-then-measure exercise records the learner's
prediction before the measurement runs (:func:`predict`).

Each answer a learner checks in a notebook is also recorded, so an instructor
can see who passed what (``labkit class status``, :mod:`labkit.classroom`):
one JSON line per check in the learner's own ``~/.local/share/labkit/
results.jsonl`` — a file in their private home that only they write.  A
prediction is a line without ``solved``: the class view counts checks only.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import pwd
import socket
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

from labkit.errors import LabkitError
from labkit.i18n import _

#: Tag of a notebook's answer cell: ``exercise:NAME``; ``solutions/NAME.py`` is its reference solution.
EXERCISE_TAG = "exercise:"


@dataclass(frozen=True, init=False)
class Feedback:
    """A checker's verdict: solved or not, what it saw, and hints from the concept to the call.

    A plain value: building one records nothing and raises nothing (:func:`check`
    does both).  ``hints`` run from a pointer to the concept to a pointer to the
    call; none of them is the answer line.  One string is one hint.
    """

    solved: bool
    message: str
    hints: tuple[str, ...]

    def __init__(self, solved: bool, message: str, hints: str | Sequence[str] = ()) -> None:
        object.__setattr__(self, "solved", solved)
        object.__setattr__(self, "message", message)
        object.__setattr__(self, "hints", tuple(h for h in ((hints,) if isinstance(hints, str) else hints) if h))

    @property
    def hint(self) -> str:
        """The first hint, or ""."""
        return self.hints[0] if self.hints else ""

    def __str__(self) -> str:
        if self.solved:
            return f"✔ {self.message}"
        return "\n  ".join([f"✘ {self.message}", *(_("hint: {hint}").format(hint=_(h)) for h in self.hints)])

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:  # IPython shows the sentence, not the dataclass
        p.text(str(self))


#: Every exercise of the notebooks: NAME (of ``exercise:NAME`` and ``solutions/NAME.py``) -> its checker.
EXERCISES: dict[str, Callable[..., Feedback]] = {}

_Checker = TypeVar("_Checker", bound=Callable[..., Feedback])


def exercise(name: str) -> Callable[[_Checker], _Checker]:
    """Register the decorated checker as the one for the notebook cell tagged ``exercise:name``.

    The name it returns is a check of ``name`` (:func:`check`), so a notebook
    cell that still calls the checker by its module's name counts, records
    and shows hints the same way; :data:`EXERCISES` keeps the bare checker.
    """
    def register(checker: _Checker) -> _Checker:
        if EXERCISES.setdefault(name, checker) is not checker:
            raise ValueError(f"two checkers for exercise {name!r}")

        @functools.wraps(checker)
        def checked(*args: Any, **kwargs: Any) -> Feedback:
            return check(name, *args, **kwargs)
        return checked  # type: ignore[return-value]  # same signature, same result type
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


class UnknownExerciseError(LabkitError, KeyError):
    """A check or prediction named an exercise no checker is registered for."""


#: Failed checks per exercise in this kernel session: the k-th failed one shows the first k hints.
_failed: Counter[str] = Counter()
#: The learner's predictions in this kernel session, by exercise.
_predictions: dict[str, object] = {}


def _known(name: str) -> Callable[..., Feedback]:
    checkers = all_exercises()
    if name not in checkers:
        raise UnknownExerciseError(f"no exercise is called {name!r}",
                                   f"use one of: {', '.join(sorted(checkers))}")
    return checkers[name]


def check(name: str, *args: Any, **kwargs: Any) -> Feedback:
    """Check the learner's answer to exercise ``name``: what the check cell shows.

    Runs the registered checker, counts the attempt, records it (only in a
    learner's notebook kernel: :func:`recording`) and returns the verdict with
    as many hints as failed attempts so far — none before the first try, one
    more after each failed one.  In a reference run (``LABKIT_EXPECT_SOLVED=1``,
    CI runs the notebooks with the solutions filled in) an unsolved exercise raises
    :class:`NotSolved`: there it is a bug.
    """
    feedback = _known(name)(*args, **kwargs)
    if os.environ.get("LABKIT_EXPECT_SOLVED") == "1" and not feedback.solved:
        raise NotSolved(f"reference solution did not solve the exercise {name}: {feedback}",
                        "fix the solution in solutions/ or the checker in labkit.exercises")
    _record_if_learner({"exercise": name, "solved": feedback.solved, "message": feedback.message})
    if feedback.solved:
        return replace(feedback, hints=())
    _failed[name] += 1
    return replace(feedback, hints=feedback.hints[:_failed[name]])


def failed_attempts(name: str) -> int:
    """How many checks of ``name`` failed in this kernel session."""
    return _failed[name]


def forget(name: str) -> None:
    """Start exercise ``name`` over in this kernel session: no failed attempts, no prediction."""
    _failed.pop(name, None)
    _predictions.pop(name, None)


def predict(name: str, value: object) -> None:
    """Record the learner's prediction for ``name`` before the cell that measures runs.

    Kept for this kernel session (:func:`prediction`) and, in a learner's
    notebook, written to the results file like a check (a line without
    ``solved``), so the prediction is on record before the measurement.
    """
    _known(name)
    _predictions[name] = value
    _record_if_learner({"exercise": name, "prediction": value})


def prediction(name: str) -> object | None:
    """The learner's prediction for ``name`` in this kernel session, or None when they made none."""
    return _predictions.get(name)


T = TypeVar("T")


def target(name: str, choices: Sequence[T], *, user: str | None = None, host: str | None = None) -> T:
    """This learner's target for exercise ``name``: one of ``choices``, the same on every call.

    Chosen from (the user name of this uid, the host name, ``name``), so the
    checker and the reference solution agree while a neighbour on another
    account or machine gets another target.  ``user``/``host`` default to this
    process's.
    """
    if not choices:
        raise ValueError(f"exercise {name!r} has no targets to choose from")
    seed = "\0".join([user if user is not None else _user_name(), host if host is not None else socket.gethostname(),
                      name])
    digest = hashlib.sha256(seed.encode()).digest()
    return choices[int.from_bytes(digest[:8], "big") % len(choices)]


def _user_name() -> str:
    """The user name of this process's uid (its number where no account names it: a bare container)."""
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return str(os.getuid())


#: A learner's results, under their home: theirs alone to write (the instructor, as root, reads them).
RESULTS_FILE = Path(".local/share/labkit/results.jsonl")


def results_file(home: Path | None = None) -> Path:
    """Where the learner whose home is ``home`` (default: this user's) records their checks."""
    return (home or Path.home()) / RESULTS_FILE


def record_result(exercise: str, feedback: Feedback, home: Path | None = None) -> Path:
    """Append one check of ``exercise`` to the learner's results file (created private, 0600)."""
    return _append({"exercise": exercise, "solved": feedback.solved, "message": feedback.message}, home)


def _append(row: dict[str, object], home: Path | None = None) -> Path:
    path = results_file(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps({**row, "time": round(time.time(), 3)}, default=str)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "a") as fh:
        fh.write(line + "\n")
    return path


def recording() -> bool:
    """Whether checks are recorded here: in a learner's notebook kernel only.

    Not outside a notebook kernel (unit tests call checkers), not in
    reference runs (``LABKIT_EXPECT_SOLVED=1``), not with ``LABKIT_RESULTS=off``
    (the test suite sets it, so its notebook runs record nobody's progress).
    """
    ipython = sys.modules.get("IPython")
    in_notebook = ipython is not None and ipython.get_ipython() is not None
    return in_notebook and os.environ.get("LABKIT_EXPECT_SOLVED") != "1" and os.environ.get("LABKIT_RESULTS") != "off"


def _record_if_learner(row: dict[str, object]) -> None:
    """Append ``row`` when :func:`recording`; a learner's progress never breaks their notebook (OSError skipped)."""
    if not recording():
        return
    try:
        _append(row)
    except OSError:
        pass
