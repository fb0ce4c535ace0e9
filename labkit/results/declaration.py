"""What a notebook says about itself: its parameters, which results each drives, and each result's unit.

A notebook's ``parameters`` cell assigns its knobs (papermill injects values
after it); its metadata (``metadata.labkit``) declares what the numbers mean::

    "labkit": {
      "parameters": {"loop_iterations": {"meaning": {"en": "…", "ko": "…"},
                                         "drives": ["native_mps", "kvm_mps", "tcg_mps"]}},
      "results": {"kvm_mps": {"unit": "M/s", "meaning": {"en": "…", "ko": "…"}, "accel": "kvm"}}
    }

so ``labkit run`` never guesses which results a sweep changes or in what unit
they are (a result without a declared unit is shown without one).
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass, field
from pathlib import Path

from labkit.errors import InvalidOptionError


class NotebookFileError(InvalidOptionError):
    """A file named as a notebook is not one (not JSON, empty, ``{}``, a list, no cells...)."""


@dataclass(frozen=True)
class ResultInfo:
    """A recorded result's unit, meaning (per language) and the accelerator it measured (if one).

    ``accel`` names the accelerator (``kvm``, ``tcg``, ``native``) when the
    result always measures one; ``accel_from`` names the recorded result that
    says which one the run used (notebook 04's ``accel``).
    """

    unit: str = ""
    meaning: dict[str, str] = field(default_factory=dict)
    accel: str = ""
    accel_from: str = ""


@dataclass(frozen=True)
class ParameterInfo:
    """A declared parameter: what it means (per language) and which recorded results it drives."""

    meaning: dict[str, str] = field(default_factory=dict)
    drives: tuple[str, ...] = ()


@dataclass(frozen=True)
class Declaration:
    """One notebook's parameters (the names its parameters cell assigns) and its ``labkit`` metadata."""

    notebook: str
    assigned: frozenset[str]
    parameters: dict[str, ParameterInfo] = field(default_factory=dict)
    results: dict[str, ResultInfo] = field(default_factory=dict)

    def drives(self, parameter: str) -> tuple[str, ...]:
        """The results ``parameter`` drives here (empty: this notebook does not declare it)."""
        info = self.parameters.get(parameter)
        return info.drives if info else ()

    def unit(self, result: str) -> str:
        return self.results[result].unit if result in self.results else ""


def meaning(texts: dict[str, str], lang: str, fallback: str) -> str:
    """The text in ``lang``, else English, else ``fallback`` (the bare name)."""
    return texts.get(lang) or texts.get("en") or fallback


def read_notebook(path: Path):
    """``path`` as an nbformat v4 notebook, or one :class:`NotebookFileError` saying what it is instead."""
    from labkit import notebook_format  # here, not at the top: the CLI starts faster without nbformat

    nbformat = notebook_format.load()

    fix = "name a Jupyter notebook (.ipynb) saved by Jupyter, e.g. one of notebooks/"
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise NotebookFileError(f"{path} is not a notebook: not text", fix) from None
    except OSError as exc:
        raise NotebookFileError(f"cannot read {path}: {exc.strerror}", fix) from None
    try:
        data = json.loads(text)
    except ValueError:
        raise NotebookFileError(f"{path} is not a notebook: " + ("it is empty" if not text.strip() else "not JSON"),
                                fix) from None
    if not isinstance(data, dict):
        raise NotebookFileError(f"{path} is not a notebook: its JSON is a {type(data).__name__}, not an object", fix)
    if not isinstance(data.get("cells"), list):
        raise NotebookFileError(f"{path} is not a notebook: it has no cells", fix)
    try:
        return nbformat.reads(text, as_version=4)
    except Exception as exc:  # nbformat's validator and converters raise many kinds: the file is what is wrong
        raise NotebookFileError(f"{path} is not a notebook nbformat can read ({type(exc).__name__})", fix) from None


def declaration(path: Path) -> Declaration:
    """What ``path`` declares; an unreadable notebook or a malformed declaration is one clear error."""
    nb = read_notebook(path)
    for cell in nb.cells:
        if "parameters" not in cell.get("metadata", {}).get("tags", []):
            continue
        try:
            tree = ast.parse(cell.source)
        except SyntaxError as exc:
            raise NotebookFileError(f"{path}: its parameters cell is not Python ({exc.msg}, line {exc.lineno})",
                                    "fix the cell tagged `parameters` (the first code cell)") from None
        assigned = frozenset(t.id for node in tree.body if isinstance(node, ast.Assign)
                             for t in node.targets if isinstance(t, ast.Name))
        return _from_metadata(path, assigned, cell.metadata.get("labkit", {}))
    return Declaration(path.stem, frozenset())


def _from_metadata(path: Path, assigned: frozenset[str], data: object) -> Declaration:
    fix = "see labkit/results/declaration.py for the form of the parameters cell's `labkit` metadata"
    try:
        assert isinstance(data, dict)
        parameters = {name: ParameterInfo(dict(p.get("meaning", {})), tuple(str(r) for r in p.get("drives", ())))
                      for name, p in data.get("parameters", {}).items()}
        results = {name: ResultInfo(str(r.get("unit", "")), dict(r.get("meaning", {})), str(r.get("accel", "")),
                                    str(r.get("accel_from", "")))
                   for name, r in data.get("results", {}).items()}
    except (AssertionError, AttributeError, TypeError, ValueError):
        raise NotebookFileError(f"{path}: the parameters cell's `labkit` metadata is malformed", fix) from None
    undeclared = sorted(set(parameters) - assigned)
    if undeclared:
        raise NotebookFileError(f"{path}: the metadata declares {undeclared}, which the parameters cell does not "
                                "assign", fix)
    return Declaration(path.stem, assigned, parameters, results)
