"""What a learner reads in a notebook is the lesson, not the test machinery."""

from __future__ import annotations

import configparser
import json
import re
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


def _sanitizers() -> list[tuple[re.Pattern[str], str]]:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(TOP / "tests" / "nbval_sanitize.cfg")
    return [(re.compile(parser[s]["regex"]), parser[s]["replace"]) for s in parser.sections()]


def _sanitize(text: str) -> str:
    for pattern, replace in _sanitizers():
        text = pattern.sub(replace, text)
    return text


@pytest.mark.parametrize("fact", ["cr0=0x60000010", "cr0=0x80000031", "CS base 0xffff0000", "MMIO at 0x10000000",
                                  "KVM_SET_TSS_ADDR 0xfffbd000", "leaf 0x40000000"])
def test_nbval_compares_the_lessons_fixed_values(fact: str) -> None:
    assert _sanitize(fact) == fact


@pytest.mark.parametrize("volatile", ["0x007ff14084d000-0x007ff14084f000", "rip 0x55d0c2a1b000",
                                      "ffffffff at 0xffffffff81000000", "took 12.5 ms", "pid 4711"])
def test_nbval_masks_what_differs_per_run(volatile: str) -> None:
    assert _sanitize(volatile) != volatile

