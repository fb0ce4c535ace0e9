"""How long a learner needs for each notebook: a walk-through timed from the executed notebooks.

The README's "about N min" per notebook comes from here.  For each executed notebook (the committed ones, or
those a ``labkit run`` wrote) it adds up what a learner spends:

- reading: the markdown's words at ``--wpm`` (150 words a minute: careful reading of technical prose by
  someone learning the subject, about half a fluent reader's rate), and each code cell with its output at
  ``--per-cell`` seconds (reading the code and looking at what it printed);
- waiting: each cell's execution time on this host, from the notebook's own execution metadata (Jupyter
  records when each cell started and when it replied: a real run, not a guess);
- exercises: ``--per-exercise`` minutes for each exercise (a cell tagged ``exercise:NAME``), the time a first
  attempt and one hint take.

The model is stated so that it can be argued with; the waiting part is measured.  Usage::

    .venv/bin/python bench/walkthrough.py                 # notebooks/*.ipynb as committed
    .venv/bin/python bench/walkthrough.py out/*.ipynb     # the output of a labkit run on another host
"""

from __future__ import annotations

import argparse
import json
import re
from datetime import datetime
from pathlib import Path

from labkit.exercises import exercise_name

TOP = Path(__file__).resolve().parents[1]
WORD = re.compile(r"[A-Za-z][A-Za-z'-]*")


def cell_seconds(cell: dict) -> float:
    """The cell's execution time as Jupyter recorded it (0 for a cell that did not run)."""
    times = cell.get("metadata", {}).get("execution", {})
    start, end = times.get("iopub.execute_input"), times.get("shell.execute_reply")
    if not (start and end):
        return 0.0
    return (datetime.fromisoformat(end.rstrip("Z")) - datetime.fromisoformat(start.rstrip("Z"))).total_seconds()


def walkthrough(path: Path, wpm: float, per_cell_s: float, per_exercise_min: float) -> dict[str, float]:
    """Minutes of reading, waiting and exercises for one notebook, and their sum."""
    cells = json.loads(path.read_text())["cells"]
    words = sum(len(WORD.findall("".join(c["source"]))) for c in cells if c["cell_type"] == "markdown")
    code = [c for c in cells if c["cell_type"] == "code"]
    exercises = sum(1 for c in code if exercise_name(c))
    minutes = {"reading": words / wpm + len(code) * per_cell_s / 60,
               "waiting": sum(cell_seconds(c) for c in code) / 60,
               "exercises": exercises * per_exercise_min}
    return {**minutes, "total": sum(minutes.values()), "words": words, "code_cells": len(code),
            "exercise_count": exercises}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="*", type=Path)
    parser.add_argument("--wpm", type=float, default=150.0)
    parser.add_argument("--per-cell", type=float, default=20.0, help="seconds to read a code cell and its output")
    parser.add_argument("--per-exercise", type=float, default=6.0, help="minutes per exercise")
    args = parser.parse_args()
    paths = args.notebooks or sorted((TOP / "notebooks").glob("*.ipynb"))
    print(f"{'notebook':<30} {'words':>6} {'cells':>5} {'exerc.':>6} {'reading':>8} {'waiting':>8} "
          f"{'exerc.':>7} {'total':>6}  (minutes)")
    for path in paths:
        w = walkthrough(path, args.wpm, args.per_cell, args.per_exercise)
        print(f"{path.stem:<30} {w['words']:>6.0f} {w['code_cells']:>5.0f} {w['exercise_count']:>6.0f} "
              f"{w['reading']:>8.1f} {w['waiting']:>8.1f} {w['exercises']:>7.1f} {w['total']:>6.0f}")


if __name__ == "__main__":
    main()
