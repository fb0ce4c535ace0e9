"""A class-wide experiment: every student's ``labkit run --export`` result files, merged for the instructor.

Each student keeps their result files in ``~/.local/share/labkit/runs/``
(:func:`labkit.results.share.runs_dir`).  The instructor (root on a hub host)
reads them with the same checks as ``labkit class status`` (the folder and
each file must be the student's own, no link followed): a student cannot
add results in another's name.  A student's unreadable or foreign file is
named in the report and left out; it never stops the class view.
"""

from __future__ import annotations

import pwd
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from labkit.classroom import owned
from labkit.errors import InvalidOptionError
from labkit.results import share

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class StudentRuns:
    """How many result files of a student were read, and what was left out (and why)."""

    user: str
    files: int = 0
    problems: tuple[str, ...] = ()


@dataclass(frozen=True)
class ClassResults:
    students: tuple[StudentRuns, ...]
    table: pd.DataFrame  # the merged runs; ``label`` is the student's account name

    def report(self) -> str:
        """One line per student: files read, and each problem."""
        width = max(len(s.user) for s in self.students)
        lines = []
        for s in self.students:
            lines.append(f"{s.user:<{width}}  {s.files} result file(s)")
            lines.extend(f"{'':<{width}}  left out: {p}" for p in s.problems)
        return "\n".join(lines)


def read(user: str) -> tuple[StudentRuns, list[pd.DataFrame]]:
    """``user``'s result files (their own, in their own folder), each as a table labelled with the account."""
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        return StudentRuns(user, problems=("no such account",)), []
    folder = share.runs_dir(Path(entry.pw_dir))
    try:
        files, skipped = owned.files_in(folder, entry.pw_uid, ".json")
    except owned.NotTheirs as exc:
        return StudentRuns(user, problems=(f"{exc}: ignored",)), []
    except OSError as exc:
        return StudentRuns(user, problems=(f"cannot read {folder}: {exc.strerror}",)), []
    tables, problems = [], list(skipped)
    for name, text in files:
        try:
            tables.append(share.parse(text, str(folder / name)).assign(label=user))
        except share.ResultFileError as exc:
            problems.append(exc.what)
    return StudentRuns(user, len(tables), tuple(problems)), tables


def collect(users: list[str] | tuple[str, ...]) -> ClassResults:
    """The class's merged results: each of ``users`` read by :func:`read`."""
    if not users:
        raise InvalidOptionError("no students to show",
                                 "name them (labkit class results alice bob) or start the hub with --students")
    students, tables = [], []
    for user in users:
        student, mine = read(user)
        students.append(student)
        tables.extend(mine)
    if not tables:
        why = "; ".join(f"{s.user}: {', '.join(s.problems)}" for s in students if s.problems)
        raise InvalidOptionError(f"none of the {len(users)} students has a result file in ~/{share.RUNS_DIR}"
                                 + (f" ({why})" if why else ""),
                                 "ask them to run e.g. `labkit run 01 --export` (it keeps the file there)")
    return ClassResults(tuple(students), share.merge(tables))
