"""Run the notebook sequence headless with papermill: parameters, sweeps, a summary.

Used by ``labkit run`` for workshops and batch runs.  Each notebook is
executed into an output folder; the result says whether it ran, how long it
took, which cell failed (if any), and the key results the notebook recorded
with :func:`labkit.lesson.record`.
"""

from __future__ import annotations

import ast
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from labkit.errors import InvalidOptionError
from labkit.i18n.notebooks import edition_dir
from labkit.lesson import RESULTS_MIME


@dataclass(frozen=True)
class CellFailure:
    index: int  # 0-based index of the cell in the notebook
    source_head: str  # first line of the failing cell
    error: str  # "ExceptionName: message"


@dataclass(frozen=True)
class RunResult:
    notebook: str
    ok: bool
    seconds: float
    output: Path
    parameters: dict[str, object] = field(default_factory=dict)
    results: dict[str, object] = field(default_factory=dict)
    failure: CellFailure | None = None

    @property
    def status(self) -> str:
        return "ok" if self.ok else "FAILED"


def resolve(names: Iterable[str], lang: str = "en") -> list[Path]:
    """Notebook paths from names: a path, a file name, a stem (``03_kvm``) or a number (``03``).

    Names other than paths are looked up in the edition of ``lang``.
    """
    names = list(names)
    every = sorted(edition_dir(lang).glob("[0-9][0-9]*_*.ipynb"))
    if not names:
        return every
    chosen = []
    for name in names:
        path = Path(name)
        if path.suffix == ".ipynb" and path.exists():
            chosen.append(path.resolve())
            continue
        match = [p for p in every if p.stem == name or p.name == name or p.stem.split("_")[0] == name.zfill(2)]
        if not match:
            raise InvalidOptionError(f"no notebook called {name!r}",
                                     f"choose from: {', '.join(p.stem for p in every)}")
        chosen.append(match[0])
    return chosen


def parse_value(text: str) -> object:
    """A ``-p NAME VALUE`` value: a Python literal (``256``, ``1.5``, ``True``, ``'kvm'``) or else a string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def declared_parameters(path: Path) -> set[str]:
    """Names the notebook's ``parameters`` cell assigns."""
    import nbformat  # the CLI starts faster without it

    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            tree = ast.parse(cell.source)
            return {t.id for node in tree.body if isinstance(node, ast.Assign)
                    for t in node.targets if isinstance(t, ast.Name)}
    return set()


def _results(path: Path) -> dict[str, object]:
    import nbformat

    found: dict[str, object] = {}
    for cell in nbformat.read(path, as_version=4).cells:
        for out in cell.get("outputs", []):
            found.update(out.get("data", {}).get(RESULTS_MIME, {}))
    return found


def run_one(path: Path, out_dir: Path, parameters: dict[str, object], tag: str = "") -> RunResult:
    """Execute one notebook with the parameters it declares; never raises for a failing cell."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    declared = declared_parameters(path)
    params = {k: v for k, v in parameters.items() if k in declared}
    out_dir.mkdir(parents=True, exist_ok=True)
    output = out_dir / f"{path.stem}{tag}.ipynb"
    start = time.monotonic()
    failure = None
    try:
        papermill.execute_notebook(str(path), str(output), parameters=params, progress_bar=False,
                                   kernel_name="python3", cwd=str(path.parent))
    except PapermillExecutionError as exc:
        head = (exc.source or "").strip().splitlines()
        # papermill counts the injected-parameters cell; report the index in the original notebook
        index = exc.cell_index - (1 if params else 0)
        failure = CellFailure(index, head[0] if head else "", f"{exc.ename}: {exc.evalue}")
    seconds = time.monotonic() - start
    return RunResult(path.stem, failure is None, seconds, output, params,
                     _results(output) if output.exists() else {}, failure)


def run(paths: list[Path], out_dir: Path, parameters: dict[str, object] | None = None,
        sweep: tuple[str, list[object]] | None = None, progress: bool = True) -> list[RunResult]:
    """Run ``paths`` in order (once, or once per value of a ``sweep`` parameter)."""
    parameters = dict(parameters or {})
    if sweep and not any(sweep[0] in declared_parameters(p) for p in paths):
        raise InvalidOptionError(f"no chosen notebook has a parameter {sweep[0]!r}",
                                 "see each notebook's parameters cell (the first code cell)")
    unknown = set(parameters) - set().union(*(declared_parameters(p) for p in paths))
    if unknown:
        raise InvalidOptionError(f"no chosen notebook has parameter(s) {sorted(unknown)}",
                                 "see each notebook's parameters cell (the first code cell)")
    from tqdm.auto import tqdm

    jobs = [({**parameters, sweep[0]: v}, f"-{sweep[0]}={v}") for v in sweep[1]] if sweep else [(parameters, "")]
    results = []
    with tqdm(total=len(jobs) * len(paths), desc="notebooks", unit="nb", disable=not progress) as bar:
        for params, tag in jobs:
            for path in paths:
                bar.set_postfix_str(path.stem + tag)
                results.append(run_one(path, out_dir, params, tag))
                bar.update()
    return results


def table(results: list[RunResult], sweep_name: str | None = None) -> str:
    """The summary as aligned text columns."""
    head = ([sweep_name] if sweep_name else []) + ["notebook", "status", "seconds", "results"]
    rows = [head]
    for r in results:
        detail = ", ".join(f"{k}={_fmt(v)}" for k, v in r.results.items())
        if r.failure:
            detail = f"cell {r.failure.index} `{r.failure.source_head[:40]}`: {r.failure.error[:80]}"
        rows.append(([_fmt(r.parameters.get(sweep_name, "-"))] if sweep_name else [])
                    + [r.notebook, r.status, f"{r.seconds:.1f}", detail])
    widths = [max(len(row[i]) for row in rows) for i in range(len(head) - 1)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[-1] for row in rows)


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"
    return str(value)


def plot_sweep(results: list[RunResult], sweep_name: str, path: Path) -> Path:
    """One panel per notebook: duration and numeric key results against the swept value."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_nb: dict[str, list[RunResult]] = {}
    for r in results:
        by_nb.setdefault(r.notebook, []).append(r)
    fig, axes = plt.subplots(1, len(by_nb), figsize=(4.5 * len(by_nb), 3.5), squeeze=False)
    for ax, (name, runs) in zip(axes[0], by_nb.items()):
        xs = [str(r.parameters.get(sweep_name)) for r in runs]
        ax.plot(xs, [r.seconds for r in runs], "o-", label="notebook seconds")
        for key in sorted({k for r in runs for k, v in r.results.items() if isinstance(v, (int, float))
                           and not isinstance(v, bool)}):
            ax.plot(xs, [r.results.get(key, float("nan")) for r in runs], "s--", label=key)
        ax.set_title(name)
        ax.set_xlabel(sweep_name)
        ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
