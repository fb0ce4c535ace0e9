"""`labkit run`: papermill runs with parameters, failures named by cell, sweeps."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import FIXTURES
from labkit import runner
from labkit.errors import InvalidOptionError
from labkit.i18n import notebooks as i18n_notebooks

ECHO = FIXTURES / "notebooks" / "10_echo.ipynb"
FAILS = FIXTURES / "notebooks" / "11_fails.ipynb"


def labkit(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "labkit", *args], capture_output=True, text=True)


def test_parameters_reach_the_notebook(tmp_path: Path) -> None:
    [result] = runner.run([ECHO], tmp_path, {"size": 21, "label": "x"}, progress=False)
    assert result.ok and result.failure is None
    assert result.results == {"size": 21, "doubled": 42, "label": "x"}
    assert result.output == tmp_path / "10_echo.ipynb" and result.output.exists()


def test_failing_notebook_names_the_cell(tmp_path: Path) -> None:
    proc = labkit("run", str(ECHO), str(FAILS), "-p", "size", "7", "--out", str(tmp_path), "--no-progress")
    assert proc.returncode == 1
    assert "FAILED 11_fails: cell 3 (\"raise RuntimeError(f'broken on purpose with size={size}')\")" in proc.stdout
    assert "RuntimeError: broken on purpose with size=7" in proc.stdout
    assert "10_echo" in proc.stdout and (tmp_path / "11_fails.ipynb").exists()


def test_sweep_table_and_plot(tmp_path: Path) -> None:
    proc = labkit("run", str(ECHO), "--sweep", "size=1,2,3", "--out", str(tmp_path), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split()[:4] == ["size", "notebook", "status", "seconds"]
    for value in (1, 2, 3):
        row = next(l for l in lines if l.startswith(f"{value} "))
        assert f"doubled={value * 2}" in row and " ok " in row
    assert (tmp_path / "sweep-size.png").stat().st_size > 1000
    assert sorted(p.name for p in tmp_path.glob("*.ipynb")) == [
        "10_echo-size=1.ipynb", "10_echo-size=2.ipynb", "10_echo-size=3.ipynb"]


def test_unknown_parameter_and_notebook_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(InvalidOptionError, match=r"parameter\(s\) \['colour'\]"):
        runner.run([ECHO], tmp_path, {"colour": "red"}, progress=False)
    with pytest.raises(InvalidOptionError, match="no notebook called '99'"):
        runner.resolve(["99"])
    proc = labkit("run", str(ECHO), "--sweep", "size", "--out", str(tmp_path))
    assert proc.returncode == 2 and "is not NAME=V1,V2" in proc.stderr


def test_resolve_and_declared_parameters() -> None:
    assert [p.stem for p in runner.resolve(["01", "02_hypervisor_types"])] == ["01_kernel", "02_hypervisor_types"]
    # 03b, the optional deep part of 03, is a notebook of its own: by its number, and in order among all
    assert [p.stem for p in runner.resolve(["03", "03b"])] == ["03_kvm", "03b_kvm_cpu_modes"]
    every = [p.stem for p in runner.resolve([])]
    assert every.index("03_kvm") + 1 == every.index("03b_kvm_cpu_modes") == every.index("04_qemu") - 1
    assert runner.declared_parameters(ECHO) == {"size", "label"}
    assert runner.parse_value("256") == 256 and runner.parse_value("kvm") == "kvm"


def test_the_first_two_notebooks_run_under_papermill(tmp_path: Path) -> None:
    """The real sequence, headless (a workshop's `labkit run`): 01 and 02, which boot no guest.

    nbval runs every notebook in this suite (testpaths); papermill's own path (parameters injected,
    results read back) is the same for all, so the two quick ones stand for it here.
    """
    results = runner.run(runner.resolve(["01", "02"]), tmp_path, {"touch_mib": 16}, progress=False)
    assert [r.status for r in results] == ["ok", "ok"], [r.failure for r in results]
    assert results[0].parameters == {"touch_mib": 16}
    assert results[0].results["syscall_ratio"] > 1


def test_lang_picks_the_edition_and_unknown_languages_are_clear_errors() -> None:
    [korean] = runner.resolve(["01"], "ko")
    assert korean == i18n_notebooks.notebooks_dir() / "ko" / "01_kernel.ipynb"
    assert [p.name for p in runner.resolve([], "ko")] == [p.name for p in runner.resolve([])]
    with pytest.raises(InvalidOptionError, match="no edition in 'fr'"):
        runner.resolve(["01"], "fr")
    proc = labkit("run", "01", "--lang", "fr", "--no-progress")
    assert proc.returncode == 2 and "choose --lang from: en, ko" in proc.stderr and "Traceback" not in proc.stderr


def test_korean_edition_runs_under_papermill_and_speaks_korean(tmp_path: Path) -> None:
    """`labkit run --lang ko 01`: the Korean notebook, its lesson lines printed in Korean."""
    proc = labkit("run", "01", "--lang", "ko", "-p", "touch_mib", "16", "--out", str(tmp_path), "--no-progress")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    import nbformat

    nb = nbformat.read(tmp_path / "01_kernel.ipynb", as_version=4)
    printed = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    checks = [line for line in printed.splitlines() if line.startswith("✔ ")]
    assert checks and all(any("\uac00" <= ch <= "\ud7a3" for ch in line) for line in checks), checks[:3]
    assert any("\uac00" <= ch <= "\ud7a3" for ch in nb.cells[0].source)  # the markdown is Korean too
