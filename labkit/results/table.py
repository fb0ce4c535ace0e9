"""Runs as a tidy pandas table: one row per recorded result of each run, with its unit and context.

A run is one notebook × parameter set × repeat; each of its recorded results
(:func:`labkit.lesson.record`) is a row carrying the run's identity
(``notebook``, ``param.<name>`` columns, ``repeat``), its unit, and the context
that makes it comparable (host kind and verdict, CPU model, kernel, QEMU and
labkit versions, the accelerator the result measured, start time, duration,
status).  A run that recorded nothing (a failure) still has one row, with an
empty ``result``.  ``table.pivot_table(index=[...], columns="result",
values="value")`` gives the wide view.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from labkit.results.context import RunContext
from labkit.results.declaration import Declaration

if TYPE_CHECKING:
    import pandas as pd

    from labkit.runner import RunResult

#: The columns every table has, in order (``param.<name>`` columns follow ``parameters``).
COLUMNS = ("label", "notebook", "lang", "parameters", "repeat", "started", "seconds", "status", "result", "value",
           "text", "unit", "accelerator", "host_kind", "host_verdict", "cpu_model", "kernel", "qemu", "labkit")
#: Recorded results that are not measurements: the learner's label travels in the ``label`` column.
NOT_RESULTS = frozenset({"run_id"})
PARAM = "param."


def build(runs: list[RunResult], declarations: dict[str, Declaration], ctx: RunContext, *, label: str = "",
          lang: str = "en") -> pd.DataFrame:
    """The tidy table of ``runs`` (units and accelerators from each notebook's declaration)."""
    import pandas as pd

    swept = sorted({name for r in runs for name in r.parameters if name not in ("lang", "run_id")})
    rows = []
    for run in runs:
        decl = declarations[run.notebook]
        base = {"label": label, "notebook": run.notebook, "lang": lang,
                "parameters": json.dumps(run.parameters, sort_keys=True, default=str), "repeat": run.repeat,
                "started": datetime.fromtimestamp(run.started, timezone.utc).isoformat(timespec="seconds"),
                "seconds": round(run.seconds, 3), "status": run.status, **ctx.to_dict()}
        base.update({PARAM + name: run.parameters.get(name) for name in swept})
        recorded = {k: v for k, v in run.results.items() if k not in NOT_RESULTS}
        if not recorded:
            rows.append({**base, "result": "", "value": math.nan, "text": "", "unit": "", "accelerator": ""})
        for name, value in recorded.items():
            info = decl.results.get(name)
            numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
            accel = (info.accel or str(run.results.get(info.accel_from, ""))) if info else ""
            rows.append({**base, "result": name, "value": float(value) if numeric else math.nan,  # type: ignore[arg-type]
                         "text": "" if numeric else str(value), "unit": info.unit if info else "",
                         "accelerator": accel})
    columns = [*COLUMNS[:4], *(PARAM + n for n in swept), *COLUMNS[4:]]
    return pd.DataFrame(rows, columns=columns)


def save(table: pd.DataFrame, out_dir: Path) -> tuple[Path, Path]:
    """``results.csv`` and ``results.jsonl`` in ``out_dir`` (the same table; JSON lines keep the types)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    csv, jsonl = out_dir / "results.csv", out_dir / "results.jsonl"
    table.to_csv(csv, index=False)
    table.to_json(jsonl, orient="records", lines=True, force_ascii=False)
    return csv, jsonl


def medians(table: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Per ``by`` group and numeric result: n, median, min and max (the spread of the repeats)."""
    numeric = table[table["value"].notna()]
    grouped = numeric.groupby([*by, "result", "unit"], sort=True, dropna=False)["value"]
    return grouped.agg(n="count", median="median", low="min", high="max").reset_index()


def summary(table: pd.DataFrame, sweep: str | None, declarations: dict[str, Declaration]) -> str:
    """Aligned text: per notebook (and swept value), runs ok, median seconds, and each result's median [min–max].

    In a sweep, a notebook shows only the results its declaration says the
    swept parameter drives (the others do not depend on it).
    """
    by = ["notebook"] + ([PARAM + sweep] if sweep else [])
    runs = table.drop_duplicates(["notebook", "parameters", "repeat"])
    head = ([sweep] if sweep else []) + ["notebook", "runs ok", "seconds", "results (median [min–max] of the runs)"]
    lines = [head]
    stats = medians(table, by)
    for key, group in runs.groupby(by, sort=False, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        notebook = key[0]
        mine = stats[(stats[by] == list(key)).all(axis=1)] if len(stats) else stats
        if sweep:
            mine = mine[mine["result"].isin(declarations[notebook].drives(sweep))]
        detail = ", ".join(f"{row.result}={_spread(row)}" for row in mine.itertuples())
        if sweep and not declarations[notebook].drives(sweep):
            detail = f"(declares no result that {sweep} drives)"
        ok = (group["status"] == "ok").sum()
        lines.append(([_fmt(key[1])] if sweep else []) + [
            notebook, f"{ok}/{len(group)}", _fmt(group["seconds"].median()), detail])
    widths = [max(len(row[i]) for row in lines) for i in range(len(head) - 1)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[-1] for row in lines)


def _spread(row) -> str:
    unit = f" {row.unit}" if row.unit else ""
    if row.n == 1:
        return f"{_fmt(row.median)}{unit}"
    return f"{_fmt(row.median)}{unit} [{_fmt(row.low)}–{_fmt(row.high)}]"


def _fmt(value: object) -> str:
    """Numbers as a reader compares them: 3 significant digits, whole from 1000, thousands marked from 100000."""
    if isinstance(value, float):
        if abs(value) >= 100_000:
            return f"{value:,.0f}"
        if abs(value) >= 1000 or value.is_integer():
            return f"{value:.0f}"
        return f"{value:.3g}"
    return f"{value:,}" if isinstance(value, int) and abs(value) >= 100_000 else str(value)


def per_host(table: pd.DataFrame) -> pd.DataFrame:
    """Each machine's median of each numeric result (a machine: label, host kind, CPU model and kernel)."""
    return medians(table, ["label", "host_kind", "cpu_model", "kernel"])


def host_kind_summary(table: pd.DataFrame, results: list[str] | None = None) -> str:
    """Per result and host kind: machines, and the median [min–max] of the machines' medians."""
    from labkit.results.context import HOST_KINDS

    hosts = per_host(table)
    if results:
        hosts = hosts[hosts["result"].isin(results)]
    stats = hosts.groupby(["result", "unit", "host_kind"], dropna=False)["median"].agg(
        n="count", median="median", low="min", high="max").reset_index()
    lines = [["result", "host kind", "machines", "median [min–max] of the machines' medians"]]
    for row in stats.sort_values(["result", "host_kind"], key=lambda s: s.map(
            lambda v: list(HOST_KINDS).index(v) if v in HOST_KINDS else v)).itertuples():
        lines.append([str(row.result), str(row.host_kind), str(row.n), _spread(row)])
    widths = [max(len(r[i]) for r in lines) for i in range(3)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1] for r in lines)
