"""`labkit run`: papermill runs with parameters, failures named by cell, sweeps."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil
import pytest

from conftest import FIXTURES
from labkit import runner
from labkit.errors import InvalidOptionError
from labkit.i18n import notebooks as i18n_notebooks
from labkit.results import share

ECHO = FIXTURES / "notebooks" / "10_echo.ipynb"
FAILS = FIXTURES / "notebooks" / "11_fails.ipynb"


def labkit(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "labkit", *args], capture_output=True, text=True)


#: The one line a green run may print: jupyter_client interrupts a kernel before shutting it down (SIGINT), and
#: a kernel still busy at that moment logs it. Seen once in a fresh-clone run, where SIGINT is not ignored.
SHUTDOWN_INTERRUPT = "[IPKernelApp] ERROR | KeyboardInterrupt caught in kernel."


def quiet(stderr: str) -> bool:
    """Nothing on stderr but, at most, the kernels' shutdown interrupt."""
    return all(line == SHUTDOWN_INTERRUPT for line in stderr.splitlines())


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


def test_sweep_with_repeats_writes_the_table_summary_and_plot(tmp_path: Path) -> None:
    """The one real sweep: 2 values × 2 repeats of the echo notebook, its table read back with pandas."""
    proc = labkit("run", str(ECHO), "--sweep", "size=1,100", "--repeat", "2", "--label", "ann", "--out",
                  str(tmp_path), "--no-progress", "--export", str(tmp_path / "ann.json"))
    assert proc.returncode == 0, proc.stderr
    assert quiet(proc.stderr), proc.stderr  # a green run is quiet: no kernel warning (IPC transport), no progress bar
    lines = proc.stdout.splitlines()
    assert lines[0].split()[:4] == ["size", "notebook", "runs", "ok"]
    for value in (1, 100):
        row = next(line for line in lines if line.startswith(f"{value} "))
        assert row.split()[1:3] == ["10_echo", "2/2"] and f"doubled={value * 2} items [" in row
    assert (tmp_path / "sweep-size.png").read_bytes()[:4] == b"\x89PNG"
    assert sorted(p.name for p in tmp_path.glob("*.ipynb")) == [
        "10_echo-size=1-run1.ipynb", "10_echo-size=1-run2.ipynb", "10_echo-size=100-run1.ipynb",
        "10_echo-size=100-run2.ipynb"]
    import pandas as pd

    table = pd.read_csv(tmp_path / "results.csv")
    doubled = table[table.result == "doubled"].sort_values(["param.size", "repeat"])
    assert doubled[["param.size", "repeat", "value", "unit", "label", "status"]].values.tolist() == [
        [1, 1, 2.0, "items", "ann", "ok"], [1, 2, 2.0, "items", "ann", "ok"],
        [100, 1, 200.0, "items", "ann", "ok"], [100, 2, 200.0, "items", "ann", "ok"]]
    assert (table["seconds"] > 0).all() and table["started"].str.endswith("+00:00").all()
    shared = share.read(tmp_path / "ann.json")  # the file to share: the same rows, read back
    assert shared[shared.result == "doubled"]["value"].sort_values().tolist() == [2.0, 2.0, 200.0, 200.0]


def test_a_kernel_that_never_answers_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A kernel that starts and never answers (a hung interpreter) stops the run with one error, and is stopped."""
    spec = tmp_path / "kernels" / "python3"
    spec.mkdir(parents=True)
    marker = f"never-answers-{tmp_path.name}"
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-c", f"import time; time.sleep(60)  # {marker}", "{connection_file}"],
        "display_name": "hung", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path))
    with pytest.raises(runner.KernelNotAnsweringError, match="did not answer"):
        runner.run_one(ECHO, tmp_path / "out", {}, start_timeout=3)
    assert not [p for p in psutil.process_iter(["cmdline"]) if marker in " ".join(p.info["cmdline"] or ())]


def test_loopback_down_and_a_read_only_home_still_run_and_leave_nothing(tmp_path: Path) -> None:
    """No TCP (the kernels use Unix sockets), and IPython's and matplotlib's dirs go with the run, not into /tmp."""
    if shutil.which("unshare") is None or subprocess.run(["unshare", "-rn", "true"]).returncode != 0:
        pytest.skip("unshare -rn (a network namespace whose loopback is down) is not allowed here")
    tmp = Path(tempfile.mkdtemp(prefix="lkt-", dir="/tmp"))  # short: a Unix socket's path has 107 bytes at most
    env = {k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"}
    try:
        proc = subprocess.run(["unshare", "-rn", sys.executable, "-m", "labkit", "run", str(ECHO), "--out",
                               str(tmp_path / "out"), "--no-progress"], capture_output=True, text=True,
                              env={**env, "HOME": "/proc/self", "TMPDIR": str(tmp)})  # /proc/self: no one may write
        left = {p.name: sorted(c.name for c in p.iterdir()) if p.is_dir() else None for p in tmp.iterdir()}
    finally:
        shutil.rmtree(tmp)
    assert proc.returncode == 0 and quiet(proc.stderr), proc.stderr
    assert "doubled=2 items" in proc.stdout
    [(run_dir, inside)] = left.items()  # labkit's own run dir, empty, and nothing else
    assert run_dir.startswith("labkit-") and inside == [], left


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
    assert quiet(proc.stderr), proc.stderr
    import nbformat

    nb = nbformat.read(tmp_path / "01_kernel.ipynb", as_version=4)
    printed = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    checks = [line for line in printed.splitlines() if line.startswith("✔ ")]
    assert checks and all(any("\uac00" <= ch <= "\ud7a3" for ch in line) for line in checks), checks[:3]
    assert any("\uac00" <= ch <= "\ud7a3" for ch in nb.cells[0].source)  # the markdown is Korean too


def test_notebooks_are_read_and_run_without_the_iri_format_checker() -> None:
    """labkit imports nbformat (and papermill) with jsonschema's ``iri`` checker left out
    (:mod:`labkit.notebook_format`: its parsers took 0.85 s of every ``labkit run`` here); nbformat still
    validates, so a broken notebook is still refused."""
    code = ("import sys\nfrom pathlib import Path\nfrom labkit import runner\nfrom labkit.results import declaration\n"
            "nb = declaration.read_notebook(Path('notebooks/01_kernel.ipynb'))\n"
            "import nbformat, papermill\n"
            "nb.cells[0].cell_type = 'nonsense'\n"
            "try:\n    nbformat.validate(nb)\n    print('accepted')\n"
            "except nbformat.ValidationError:\n    print('refused')\n"
            "print(sys.modules.get('rfc3987_syntax', 'never imported'))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=Path(runner.__file__).resolve().parents[1])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["refused", "None"], proc.stdout
