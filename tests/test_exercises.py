"""Every notebook ends with an exercise; every exercise has a reference solution that CI runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from labkit import exercises
from labkit.exercises import exercise_name, kernel

TOP = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((TOP / "notebooks").glob("*.ipynb"))


def _exercise_cells(path: Path) -> list[tuple[str, list[dict]]]:
    cells = json.loads(path.read_text())["cells"]
    return [(exercise_name(c), cells[i + 1:]) for i, c in enumerate(cells) if exercise_name(c)]


def _text(output: dict) -> str:
    text = output.get("text") or output.get("data", {}).get("text/plain", "")
    return "".join(text) if isinstance(text, list) else text


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_has_an_exercise_shown_unsolved(path: Path) -> None:
    found = _exercise_cells(path)
    assert found, f"{path.name} has no cell tagged exercise:NAME"
    for name, rest in found:
        assert (TOP / "solutions" / f"{name}.py").exists(), f"no solutions/{name}.py"
        check = next(c for c in rest if c["cell_type"] == "code")
        assert "nbval-ignore-output" in check.get("metadata", {}).get("tags", []), \
            f"{path.name}: the check cell of {name} must be tagged nbval-ignore-output"
        shown = "".join(_text(o) for o in check.get("outputs", []))
        assert shown.startswith("✘ "), f"{path.name}: the stored notebook should show {name} unsolved"


def test_every_solution_belongs_to_an_exercise() -> None:
    used = {name for p in NOTEBOOKS for name, _ in _exercise_cells(p)}
    assert {p.stem for p in (TOP / "solutions").glob("*.py")} == used


def test_expect_solved_turns_feedback_into_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABKIT_EXPECT_SOLVED", "1")
    with pytest.raises(exercises.NotSolved, match="reference solution did not solve"):
        kernel.page_faults(None, mib=1)
    assert kernel.page_faults(256, mib=1).solved
