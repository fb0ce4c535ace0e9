"""What several test modules share: running labkit as a learner would (a fresh process, in the checkout).

Tests never import one another; what two of them need lives here (and in ``conftest.py``, ``students.py``,
``fakehost.py``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TOP = Path(__file__).resolve().parent.parent


def labkit_nested(*args: str, env: dict[str, str] | None = None, timeout: float = 300,
                  stdin: str | None = None) -> subprocess.CompletedProcess:
    """``labkit nested ARGS`` in the checkout, its output captured (``env`` added to this process's)."""
    return subprocess.run([sys.executable, "-m", "labkit", "nested", *args], capture_output=True, text=True,
                          cwd=TOP, env={**os.environ, **(env or {})}, timeout=timeout, input=stdin)


def solution(name: str, **notebook: object) -> dict:
    """The names ``solutions/NAME.py`` sets, run with the notebook's names it uses (``notebook``)."""
    namespace = dict(notebook)
    exec((TOP / "solutions" / f"{name}.py").read_text(), namespace)  # our own reference files
    return namespace
