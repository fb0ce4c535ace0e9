"""Result files to share: one JSON document per run of ``labkit run``, merged into one table for a class.

A file holds the run's table (:mod:`labkit.results.table`) and the labkit
version that wrote it.  It carries no host, user or path name: a parameter
whose value is a path is written as ``<path>``, and the only free text is
the learner's optional ``--label``.  Files of another labkit version are
refused, not mixed: the notebooks (and so the numbers) may differ between
versions.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

import labkit
from labkit.errors import InvalidOptionError
from labkit.results.table import COLUMNS, PARAM

if TYPE_CHECKING:
    import pandas as pd

FORMAT = "labkit-results"
#: Where ``labkit run`` keeps each run's file in the learner's home (``labkit class results`` reads them).
RUNS_DIR = Path(".local/share/labkit/runs")


class ResultFileError(InvalidOptionError):
    """A file given as a result file is not one of this labkit version."""


def runs_dir(home: Path | None = None) -> Path:
    """The folder of the result files of the learner whose home is ``home`` (default: this user's)."""
    return (home or Path.home()) / RUNS_DIR


def document(table: pd.DataFrame, label: str = "") -> dict:
    """The shareable form of ``table``: its rows, the label and the labkit version, paths masked."""
    rows = table.assign(label=label).to_dict(orient="records")
    for row in rows:
        row["parameters"] = json.dumps({k: _mask(v) for k, v in json.loads(row["parameters"]).items()},
                                       sort_keys=True)
        for key in [k for k in row if k.startswith(PARAM)]:
            row[key] = _mask(row[key])
        row.update({k: None for k, v in row.items() if isinstance(v, float) and v != v})  # NaN → null
    return {"format": FORMAT, "labkit": labkit.__version__, "label": label, "rows": rows}


def _mask(value: object) -> object:
    return "<path>" if isinstance(value, str) and os.sep in value else value


def write(table: pd.DataFrame, path: Path, label: str = "") -> Path:
    """Write the result file ``path`` (readable by its owner only: the instructor reads it as root)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(document(table, label), fh, ensure_ascii=False, indent=1)
    return path


def keep(table: pd.DataFrame, label: str = "", home: Path | None = None) -> Path:
    """Keep this run's result file among the learner's own (:func:`runs_dir`), named by its start time."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    return write(table, runs_dir(home) / f"run-{stamp}-{os.getpid()}.json", label)


def parse(text: str, source: str) -> pd.DataFrame:
    """The table of a result file's ``text`` (``source`` names it in errors)."""
    import pandas as pd

    fix = "give files written by `labkit run --export FILE` of this labkit version (labkit " + labkit.__version__ + ")"
    try:
        data = json.loads(text)
    except ValueError:
        raise ResultFileError(f"{source} is not a labkit result file: not JSON", fix) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ResultFileError(f"{source} is not a labkit result file", fix)
    if data.get("labkit") != labkit.__version__:
        raise ResultFileError(f"{source} was written by labkit {data.get('labkit')}, this is labkit "
                              f"{labkit.__version__}: results of different versions are not comparable",
                              "run the notebooks again with this labkit (labkit run --export FILE), or merge with "
                              "the labkit that wrote the file")
    rows = data.get("rows")
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise ResultFileError(f"{source} is not a labkit result file: it lacks its rows", fix)
    table = pd.DataFrame(rows)
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise ResultFileError(f"{source} is not a labkit result file: it lacks {missing}", fix)
    table["value"] = pd.to_numeric(table["value"], errors="coerce")
    return table


def read(path: Path) -> pd.DataFrame:
    """The table of the result file ``path``."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ResultFileError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}",
                              "give the path of a result file (labkit run --export FILE writes one)") from None
    return parse(text, str(path))


def merge(tables: list[pd.DataFrame]) -> pd.DataFrame:
    """One table of many runs (columns in the order of :data:`COLUMNS`, parameters after ``parameters``)."""
    import pandas as pd

    if not tables:
        raise InvalidOptionError("no result files to merge", "name them: labkit results merge a.json b.json …")
    merged = pd.concat(tables, ignore_index=True, sort=False)
    params = sorted(c for c in merged.columns if c.startswith(PARAM))
    return merged[[*COLUMNS[:4], *params, *COLUMNS[4:]]]
