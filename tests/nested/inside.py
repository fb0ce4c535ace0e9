"""What the tests inside L1 share: the lab's CLI, the QEMUs running, a notebook run (tests/nested/conftest.py
makes sure they run inside L1 only)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psutil

TOP = Path(__file__).resolve().parents[2]


def labkit(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "labkit", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=TOP)


def qemus() -> list[str]:
    """The QEMU processes running in L1 (the start of each command line)."""
    return [" ".join(p.info["cmdline"][:3]) for p in psutil.process_iter(["cmdline"])
            if p.info["cmdline"] and Path(p.info["cmdline"][0]).name.startswith("qemu-system")]


def run_notebook(notebook: str, parameters: dict, expected: dict, out: Path) -> None:
    """Run a notebook as papermill does and check the results it records (``expected``, a subset)."""
    from labkit import runner

    result = runner.run_one(TOP / "notebooks" / f"{notebook}.ipynb", out, parameters)
    assert result.ok, result.failure
    assert {k: result.results.get(k) for k in expected} == expected, result.results
