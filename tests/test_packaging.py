"""The project's own files agree with each other: deps, notebooks, the two commands."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import tomllib
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


def test_ci_runs_the_readme_test_command(tmp_path: Path) -> None:
    """.ci/run, run in a copy of the tree whose ./kvmlab only records its arguments, runs the README's command."""
    first_block = (TOP / "README.md").read_text().split("```bash\n", 1)[1].split("```", 1)[0]
    readme_test = next(line.split("#")[0].split() for line in first_block.splitlines() if " test " in line)
    (tmp_path / ".ci").mkdir()
    shutil.copy(TOP / ".ci/run", tmp_path / ".ci/run")
    (tmp_path / "kvmlab").write_text(f'#!/bin/sh\necho "$(pwd) $0 $*" >> {tmp_path}/ran\n')
    (tmp_path / "kvmlab").chmod(0o755)
    proc = subprocess.run(["bash", str(tmp_path / ".ci/run")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert readme_test == ["./kvmlab", "test"]
    assert (tmp_path / "ran").read_text().split() == [str(tmp_path), *readme_test]  # from the tree's root


def test_kvmlab_help_is_its_comment_block() -> None:
    proc = subprocess.run([str(TOP / "kvmlab"), "help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.startswith("KVM Lab's front door.")
    assert "set -euo" not in proc.stdout and "#" not in proc.stdout
    for command in ("lab", "test", "setup", "hub", "doctor", "notebooks"):
        assert f"./kvmlab {command}" in proc.stdout
    wrong = subprocess.run([str(TOP / "kvmlab"), "tset"], capture_output=True, text=True, timeout=60)
    assert wrong.returncode == 1 and wrong.stdout == proc.stdout


def test_setup_rejects_an_unknown_option_before_doing_anything() -> None:
    proc = subprocess.run(["bash", str(TOP / "scripts/setup.sh"), "--tset"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.splitlines() == ["setup: error: unknown option --tset",
                                        "  fix: use --hub, --cluster, --test or --system-only (see the top of "
                                        f"{TOP / 'scripts/setup.sh'})"]


def test_the_version_lives_in_one_place() -> None:
    """pyproject reads labkit.__version__: the installed metadata says the same."""
    import importlib.metadata

    import labkit

    project = tomllib.loads((TOP / "pyproject.toml").read_text())
    assert "version" not in project["project"] and project["project"]["dynamic"] == ["version"]
    assert importlib.metadata.version("labkit") == labkit.__version__
