"""The project's own files agree with each other: deps, notebooks, the two commands."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import yaml

TOP = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((TOP / "notebooks").glob("*.ipynb"))


def _requirement(spec: str) -> tuple[str, str | None]:
    """('name', 'lower bound') of a PEP 508 / conda spec, name normalised (PEP 503)."""
    m = re.fullmatch(r"\s*([A-Za-z0-9_.\-]+)\s*(?:>=\s*([0-9][^,\s]*))?.*", spec)
    assert m, f"cannot parse requirement {spec!r}"
    return re.sub(r"[-_.]+", "-", m.group(1)).lower(), m.group(2)


def test_environment_yml_matches_pyproject() -> None:
    project = tomllib.loads((TOP / "pyproject.toml").read_text())["project"]
    wanted = dict(map(_requirement, project["dependencies"] + project["optional-dependencies"]["test"]
                                         + project["optional-dependencies"]["hub"]))
    env = yaml.safe_load((TOP / "environment.yml").read_text())
    assert env["channels"][0] == "conda-forge" and "defaults" not in env["channels"]
    listed: dict[str, str | None] = {}
    for dep in env["dependencies"]:
        specs = dep["pip"] if isinstance(dep, dict) else [dep]
        for spec in specs:
            if not spec.startswith("-e"):
                listed.update([_requirement(spec)])
    listed.pop("python"), listed.pop("pip")
    assert listed == wanted, "environment.yml and pyproject.toml list different dependencies or bounds"


def test_notebooks_exist_in_sequence() -> None:
    names = [p.stem for p in NOTEBOOKS]
    assert names[:2] == ["01_kernel", "02_hypervisor_types"], names
    assert names == sorted(names)


def test_every_notebook_has_a_parameters_cell() -> None:
    """papermill silently overwrites injected values without a `parameters` cell."""
    for path in NOTEBOOKS:
        cells = json.loads(path.read_text())["cells"]
        code = [c for c in cells if c["cell_type"] == "code"]
        tagged = [c for c in code if "parameters" in c.get("metadata", {}).get("tags", [])]
        assert len(tagged) == 1, f"{path.name}: needs exactly one cell tagged 'parameters'"
        assert tagged[0] is code[0], f"{path.name}: the parameters cell must be the first code cell"


def test_ci_runs_the_readme_test_command() -> None:
    readme = (TOP / "README.md").read_text()
    assert "./kvmlab lab" in readme and "./kvmlab test" in readme
    ci = [l for l in (TOP / ".ci/run").read_text().splitlines() if l and not l.startswith(("#", "set ", "cd "))]
    assert ci == ["./kvmlab test"]
