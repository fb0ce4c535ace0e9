"""What a learner reads in a notebook is the lesson, not the test machinery."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

TOP = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((TOP / "notebooks").glob("*.ipynb"))
#: The cell tags nbval reads (nbval >= 0.9); markers in the source would be read by learners.
NBVAL_TAGS = {"nbval-ignore-output", "nbval-skip", "nbval-check-output", "nbval-raises-exception"}


def _code_cells(path: Path) -> list[dict]:
    return [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_nbval_markers_are_cell_tags_not_comments(path: Path) -> None:
    for cell in _code_cells(path):
        source = "".join(cell["source"])
        assert "NBVAL_" not in source, f"{path.name} cell {cell.get('id')}: use a cell tag, not a # NBVAL_ comment"
        tags = {t for t in cell.get("metadata", {}).get("tags", []) if t.startswith("nbval")}
        assert tags <= NBVAL_TAGS, f"{path.name} cell {cell.get('id')}: unknown nbval tag {tags - NBVAL_TAGS}"
