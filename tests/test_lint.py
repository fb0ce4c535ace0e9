"""The lint, type and layer gate: ruff, mypy and import-linter, as configured in pyproject.toml.

A test, so that `./kvmlab test` (the README's command, which CI runs) runs the gate with everything else
and a finding fails the suite with the tool's own report.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

TOP = Path(__file__).resolve().parent.parent


def tool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=TOP, capture_output=True, text=True, timeout=600)


def test_ruff_finds_nothing() -> None:
    proc = tool("ruff", "check", "--no-cache", "labkit", "tests", "bench")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_mypy_finds_nothing() -> None:
    proc = tool("mypy", "--cache-dir", "/dev/null")  # files and options: [tool.mypy] in pyproject.toml
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_imports_keep_the_layers_and_make_no_cycle() -> None:
    """docs/developing.md's layers, checked: imports point down only, and no package's modules form a cycle."""
    proc = subprocess.run([str(Path(sys.executable).parent / "lint-imports"), "--no-cache"], cwd=TOP,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 kept, 0 broken" in proc.stdout, proc.stdout
