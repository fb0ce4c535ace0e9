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

#: The test files that take longest (``--durations``), longest first.  xdist (``--dist loadfile
#: --no-loadscope-reorder``) hands files to its workers in collection order, one to each and then one more to
#: each worker with at most two tests pending, so these start at once and the short ones fill in beside them
#: instead of leaving a long one to run alone at the end.  The first two are the two L1 runs
#: (tests/inside_l1.py), each on its own worker from the start; the third and fourth are short on purpose:
#: each is queued behind an L1 run on the same worker.  ``-n auto``
#: is one worker per core: two per core kept the cores busier (pytest 8:23–9:51 instead of 10:16–10:34) but
#: the heavier load broke timing-bound claims and waits (docs/developing.md, runs 39–46).
LONGEST_FIRST = (
    "tests/test_nested_inside_kvm.py",
    "tests/test_nested_inside_qemu.py",
    "tests/test_host_facts.py",
    "tests/test_nested_watch.py",
    "tests/test_hub.py",
    "tests/e2e/test_jupyterlab.py",
    "tests/test_nested.py",
    "tests/test_hub_slurm.py",
    "notebooks/06_own_vmm.ipynb",
    "notebooks/ko/06_own_vmm.ipynb",
    "notebooks/04b_memory_storage_network.ipynb",
    "notebooks/ko/04b_memory_storage_network.ipynb",
    "notebooks/04_qemu.ipynb",
    "notebooks/ko/04_qemu.ipynb",
    "notebooks/05_libvirt.ipynb",
    "notebooks/ko/05_libvirt.ipynb",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        cell = getattr(item, "cell", None)  # nbval's notebook-cell items
        name = exercise_name(cell) if cell is not None else None
        if name:
            item.cell.source = EXPECT_SOLVED + (SOLUTIONS / f"{name}.py").read_text()
    rank = {path: i for i, path in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.relative_to(config.rootpath).as_posix(), len(rank)))
