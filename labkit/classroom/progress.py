"""Who passed which exercise: the results each student's checkers recorded, read back for the instructor.

A learner's checks land in their own ``~/.local/share/labkit/results.jsonl``
(:func:`labkit.exercises.record_result`).  The instructor (root on a hub
host) reads every student's file — and believes a file only if the student
owns it and it is not a link: a student cannot plant results in another's
name, since they can write only under their own home.
"""

from __future__ import annotations

import json
import pwd
from dataclasses import dataclass, field
from pathlib import Path

from labkit.classroom import owned
from labkit.errors import InvalidOptionError
from labkit.exercises import results_file


@dataclass(frozen=True)
class StudentProgress:
    """One student's checks: per exercise, passed (any check solved) and how many checks they ran."""

    user: str
    passed: dict[str, bool] = field(default_factory=dict)
    attempts: dict[str, int] = field(default_factory=dict)
    problem: str | None = None  # why nothing could be read (no account, not their file...)


@dataclass(frozen=True)
class Progress:
    students: tuple[StudentProgress, ...]

    @property
    def exercises(self) -> list[str]:
        return sorted({name for s in self.students for name in s.attempts})

    def to_dict(self) -> dict:
        return {"exercises": self.exercises,
                "students": [{"user": s.user, "passed": s.passed, "attempts": s.attempts, "problem": s.problem}
                             for s in self.students]}

    def table(self) -> str:
        """One row per student: ✔ passed, ✘ tried and not passed (with the count), · not tried."""
        names = self.exercises
        width = max([len("student")] + [len(s.user) for s in self.students])
        rows = [f"{'student':<{width}}  " + "  ".join(names) + "  passed"]
        for s in self.students:
            if s.problem:
                rows.append(f"{s.user:<{width}}  ({s.problem})")
                continue
            cells = []
            for name in names:
                mark = "·" if name not in s.attempts else ("✔" if s.passed[name] else f"✘×{s.attempts[name]}")
                cells.append(f"{mark:<{len(name)}}")
            rows.append(f"{s.user:<{width}}  " + "  ".join(cells) + f"  {sum(s.passed.values())}/{len(names)}")
        return "\n".join(rows)

    def plot(self, ax=None):
        """A bar per exercise: how many students passed it, and how many tried without passing yet."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(max(4, 1.4 * len(self.exercises)), 3))
        names = self.exercises
        passed = [sum(s.passed.get(n, False) for s in self.students) for n in names]
        trying = [sum(n in s.attempts and not s.passed[n] for s in self.students) for n in names]
        ax.bar(names, passed, label="passed", color="tab:green")
        ax.bar(names, trying, bottom=passed, label="tried, not yet", color="tab:orange")
        ax.set_ylabel("students")
        ax.set_ylim(0, max(1, len(self.students)))
        ax.set_title(f"exercise checks of {len(self.students)} students")
        ax.legend(loc="upper right")
        ax.tick_params(axis="x", labelrotation=20)
        return ax


def read(user: str) -> StudentProgress:
    """``user``'s recorded checks, from their own results file (owner and no-link verified)."""
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        return StudentProgress(user, problem="no such account")
    path = results_file(Path(entry.pw_dir))
    try:
        text = owned.read_text(path, entry.pw_uid)
    except owned.NotTheirs:
        return StudentProgress(user, problem=f"{path} is not {user}'s own file: ignored")
    except OSError as exc:
        return StudentProgress(user, problem=f"cannot read {path}: {exc.strerror}")
    if text is None:
        return StudentProgress(user)
    lines = text.splitlines()
    passed: dict[str, bool] = {}
    attempts: dict[str, int] = {}
    for line in lines:
        try:
            row = json.loads(line)
            name, solved = str(row["exercise"]), bool(row["solved"])
        except (ValueError, KeyError, TypeError):
            continue  # a torn or hand-edited line counts as nothing
        attempts[name] = attempts.get(name, 0) + 1
        passed[name] = passed.get(name, False) or solved
    return StudentProgress(user, passed, attempts)


def hub_students(state_dir: str | Path) -> list[str]:
    """The students of the hub whose state folder is ``state_dir`` (``labkit hub start --state``), or []."""
    from labkit.hub.plan import PLAN_FILE, HubPlan

    plan = Path(state_dir) / PLAN_FILE
    return list(HubPlan.load(plan).students) if plan.exists() else []


def collect(users: list[str] | tuple[str, ...]) -> Progress:
    """The class's progress: each of ``users`` read by :func:`read`."""
    if not users:
        raise InvalidOptionError("no students to show",
                                 "name them (labkit class status alice bob) or start the hub with --students")
    return Progress(tuple(read(u) for u in users))
