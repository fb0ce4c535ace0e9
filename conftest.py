"""Run the notebooks' exercises with the instructors' reference solutions.

The committed notebooks hold the learner's version of each exercise: an answer
cell tagged ``exercise:NAME`` with a template, followed by a check cell.  When
nbval runs a notebook, the answer cell's source is replaced by
``solutions/NAME.py``, which also sets ``LABKIT_EXPECT_SOLVED=1`` in the
notebook's kernel: from there on a checker raises unless the exercise is
solved — so CI proves every reference solution works.  A solution prints
nothing (as its template does), so nbval compares the cells around it as usual.
"""

from __future__ import annotations

import os
from pathlib import Path

import nbval.kernel
import pytest

from labkit.exercises import exercise_name
from tests.fakehost import FakeHostKernelManager

SOLUTIONS = Path(__file__).parent / "solutions"
# The notebooks the tests run (nbval, the browser test) record nobody's exercise progress in HOME;
# tests/test_hub.py's students do, in their own homes (their servers start with a clean environment).
os.environ["LABKIT_RESULTS"] = "off"

# nbval's kernels talk over Unix sockets in a private dir, as every kernel labkit starts (labkit.jupyter): not
# over loopback TCP, which any user of the host can reach (and ipykernel warns about on every start).  As root
# they run on another host's kernel release, host name, CPU model and count and memory (tests/fakehost.py): an
# output nbval compares that holds a host fact fails here, not on the next machine.
nbval.kernel.KernelManager = FakeHostKernelManager  # type: ignore[misc]

EXPECT_SOLVED = "import os; os.environ['LABKIT_EXPECT_SOLVED'] = '1'  # reference run\n"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        cell = getattr(item, "cell", None)  # nbval's notebook-cell items
        name = exercise_name(cell) if cell is not None else None
        if name:
            item.cell.source = EXPECT_SOLVED + (SOLUTIONS / f"{name}.py").read_text()
