"""The instructor's view of a class: who passed which exercise check.

- :mod:`.progress`: read each student's recorded checks (their own file,
  owner verified) into one table, and plot it.

``labkit class status`` and the instructor notebook
(``notebooks/instructor/class_progress.ipynb``) show it.
"""

from __future__ import annotations

from labkit.classroom.progress import Progress, collect

__all__ = ["Progress", "collect"]
