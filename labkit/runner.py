"""Run the notebook sequence headless with papermill: parameters, sweeps, repeats.

Used by ``labkit run`` for workshops, batch runs and experiments.  Each
notebook is executed into an output folder; the result says whether it ran,
when, how long it took, which cell failed (if any), and the key results the
notebook recorded with :func:`labkit.lesson.record` (:mod:`labkit.results`
turns them into a table, summaries and plots).

The kernels talk to papermill over ZeroMQ's IPC transport
(:class:`labkit.jupyter.AsyncPrivateKernelManager`: Unix sockets in a private
scratch dir), not TCP on loopback: no other user can connect to them, so
ipykernel has no reason to warn that it runs "over TCP without encryption",
and a host whose loopback is down still runs notebooks.
"""

from __future__ import annotations

import ast
import contextlib
import itertools
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from labkit import runtime
from labkit.errors import InvalidOptionError, LabkitError
from labkit.i18n import Phrase
from labkit.i18n import noop as N_
from labkit.i18n.notebooks import edition_dir
from labkit.lesson import RESULTS_MIME
from labkit.results.declaration import Declaration, declaration, read_notebook

#: How long a kernel may take to answer its first request (a loaded 2-core host starts one in ~2 s).
KERNEL_START_TIMEOUT_S = 60


class KernelNotAnsweringError(LabkitError):
    """The notebook's kernel started but never answered papermill."""


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
    repeat: int = 1  # 1..N of ``--repeat N``
    started: float = 0.0  # wall-clock time (epoch seconds) the run began

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
            raise InvalidOptionError(Phrase(N_("no notebook called {name!r}"), name=name),
                                     Phrase(N_("choose from: {names}"), names=", ".join(p.stem for p in every)))
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
    return set(declaration(path).assigned)


def _results(path: Path) -> dict[str, object]:
    found: dict[str, object] = {}
    for cell in read_notebook(path).cells:
        for out in cell.get("outputs", []):
            found.update(out.get("data", {}).get(RESULTS_MIME, {}))
    return found


@contextlib.contextmanager
def kernel_home() -> Iterator[Path]:
    """A private scratch dir for a kernel's IPython and matplotlib dirs where HOME is read-only.

    IPython and matplotlib fall back to fresh ``/tmp`` dirs they never remove
    when ``~/.ipython`` or ``~/.config/matplotlib`` cannot be written (a
    read-only HOME): every ``labkit run`` would leave two behind.  Pointed
    into the scratch dir, they go when the run does.
    """
    with runtime.scratch("papermill") as scratch:
        saved = {name: os.environ.get(name) for name in ("IPYTHONDIR", "MPLCONFIGDIR")}
        home = Path.home()
        if "IPYTHONDIR" not in os.environ and not _writable(home / ".ipython"):
            os.environ["IPYTHONDIR"] = str(scratch / "ipython")
        if "MPLCONFIGDIR" not in os.environ and not _writable(home / ".config" / "matplotlib"):
            os.environ["MPLCONFIGDIR"] = str(scratch / "matplotlib")
        try:
            yield scratch
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


def _writable(path: Path) -> bool:
    """``path`` (a dir) can be written, or created under its nearest existing parent."""
    while not path.exists():
        if path == path.parent:
            return False
        path = path.parent
    return os.access(path, os.W_OK | os.X_OK)


def run_one(path: Path, out_dir: Path, parameters: dict[str, object], tag: str = "", *, repeat: int = 1,
            start_timeout: float = KERNEL_START_TIMEOUT_S) -> RunResult:
    """Execute one notebook with the parameters it declares; never raises for a failing cell.

    A kernel that never answers (``start_timeout`` seconds) is a
    :class:`KernelNotAnsweringError`: nothing in the notebook ran.
    """
    from labkit import notebook_format

    notebook_format.load()  # before papermill imports nbformat (the reason is there)
    import papermill
    from papermill.exceptions import PapermillExecutionError

    from labkit.jupyter import AsyncPrivateKernelManager

    declared = declared_parameters(path)
    params = {k: v for k, v in parameters.items() if k in declared}
    out_dir.mkdir(parents=True, exist_ok=True)
    output = out_dir / f"{path.stem}{tag}.ipynb"
    started, start = time.time(), time.monotonic()
    failure = None
    try:
        with kernel_home():
            papermill.execute_notebook(str(path), str(output), parameters=params, progress_bar=False,
                                       kernel_name="python3", cwd=str(path.parent), start_timeout=start_timeout,
                                       kernel_manager_class=AsyncPrivateKernelManager)
    except PapermillExecutionError as exc:
        head = (exc.source or "").strip().splitlines()
        # papermill counts the injected-parameters cell; report the index in the original notebook
        index = exc.cell_index - (1 if params else 0)
        failure = CellFailure(index, head[0] if head else "", f"{exc.ename}: {exc.evalue}")
    except RuntimeError as exc:
        if "Kernel" not in str(exc):  # jupyter_client's "Kernel didn't respond…"/"Kernel died before replying…"
            raise
        raise KernelNotAnsweringError(
            f"the Python kernel for {path.name} did not answer ({exc})",
            "check that `python -m ipykernel --version` works in the lab's venv, and that the machine is not out "
            "of memory (free -m); then run again") from None
    seconds = time.monotonic() - start
    return RunResult(path.stem, failure is None, seconds, output, params,
                     _results(output) if output.exists() else {}, failure, repeat, started)


def check(declarations: list[Declaration], parameters: dict[str, object], sweep: str | None) -> None:
    """Refuse parameters no chosen notebook assigns, and a sweep no chosen notebook declares."""
    unknown = set(parameters) - set().union(*(d.assigned for d in declarations))
    if unknown:
        raise InvalidOptionError(f"no chosen notebook has parameter(s) {sorted(unknown)}",
                                 "see each notebook's parameters cell (the first code cell)")
    if sweep and not any(d.drives(sweep) for d in declarations):
        declaring = [d.notebook for d in declarations if sweep in d.assigned]
        raise InvalidOptionError(
            f"no chosen notebook declares which results {sweep!r} drives"
            + (f" (a parameter of {', '.join(declaring)}, which records nothing it changes)" if declaring else ""),
            "sweep a parameter whose results a notebook declares (`labkit run --list-sweeps` lists them)")


def run(paths: list[Path], out_dir: Path, parameters: dict[str, object] | None = None,
        sweep: tuple[str, list[object]] | None = None, progress: bool = True, repeat: int = 1) -> list[RunResult]:
    """Run ``paths`` in order, ``repeat`` times each (once per value of a ``sweep`` parameter)."""
    parameters = dict(parameters or {})
    if repeat < 1:
        raise InvalidOptionError(f"--repeat {repeat}: a point runs at least once", "e.g. --repeat 3")
    check([declaration(p) for p in paths], {**parameters, **({sweep[0]: None} if sweep else {})},
          sweep[0] if sweep else None)
    from tqdm.auto import tqdm

    jobs = [({**parameters, sweep[0]: v}, f"-{sweep[0]}={v}") for v in sweep[1]] if sweep else [(parameters, "")]
    results = []
    with tqdm(total=len(jobs) * len(paths) * repeat, desc="notebooks", unit="nb", disable=not progress) as bar:
        for (params, tag), n, path in itertools.product(jobs, range(1, repeat + 1), paths):
            suffix = tag + (f"-run{n}" if repeat > 1 else "")
            bar.set_postfix_str(path.stem + suffix)
            results.append(run_one(path, out_dir, params, suffix, repeat=n))
            bar.update()
    return results
