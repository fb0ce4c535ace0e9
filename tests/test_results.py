"""`labkit run`'s results as data, on canned runs: the table and its units, repeats, sweeps, result files, merges.

No notebook runs here (tests/test_runner.py runs the cheap ones): the runs are
made up, the declarations are the real notebooks', and the hosts are the
recordings in tests/fixtures/hosts.
"""

from __future__ import annotations

import json
import os
import pwd
import subprocess
from pathlib import Path

import pandas as pd
import pytest

import labkit
from conftest import FIXTURES
from labkit import cli, runner
from labkit.classroom import results as class_results
from labkit.cli.run import parse_sweep
from labkit.errors import InvalidOptionError
from labkit.results import context, plot, share, table
from labkit.results.declaration import NotebookFileError, declaration
from labkit.runner import CellFailure, RunResult

HOSTS = FIXTURES / "hosts"
QEMU = "QEMU emulator version 8.2.2"
NB01 = runner.resolve(["01"])[0]
NB02 = runner.resolve(["02"])[0]
DECL = {p.stem: declaration(p) for p in (NB01, NB02)}


def labkit_cli(capsys: pytest.CaptureFixture[str], *args: str) -> subprocess.CompletedProcess:
    """``labkit ARGS`` in this process (the CLI's own error handling included): its status and output."""
    capsys.readouterr()
    status = cli.main(list(args))
    out = capsys.readouterr()
    return subprocess.CompletedProcess(["labkit", *args], status, out.out, out.err)


def run01(loops: int, native: float, kvm: float, tcg: float, repeat: int = 1, **extra: object) -> RunResult:
    """A canned run of notebook 01 (what its two lesson.record cells store)."""
    recorded = {"run_id": "", "virtual": True, "syscall_ns": 180.0 + repeat, "syscall_ratio": 10.5,
                "native_mps": native, "kvm_mps": kvm, "tcg_mps": tcg}
    return RunResult("01_kernel", True, 30.0 + repeat, Path("out/01_kernel.ipynb"),
                     {"loop_iterations": loops, **extra}, recorded, None, repeat, 1_796_000_000.0 + repeat)


def ctx(host: str = "pvm-nested") -> context.RunContext:
    return context.context(HOSTS / host, qemu=QEMU)


def test_table_has_one_row_per_result_of_each_run_with_units_and_context(tmp_path: Path) -> None:
    failed = RunResult("02_hypervisor_types", False, 4.0, Path("out/02.ipynb"), {"loop_iterations": 10}, {},
                       CellFailure(5, "plan = planner.plan", "ValueError: no"), 1, 1_796_000_100.0)
    data = table.build([run01(10, 2500, 1600, 360), failed], DECL, ctx(), label="ann")
    assert list(data.columns) == ["label", "notebook", "lang", "parameters", "param.loop_iterations", "repeat",
                                  "started", "seconds", "status", "result", "value", "text", "unit", "accelerator",
                                  "host_kind", "host_verdict", "cpu_model", "kernel", "qemu", "labkit"]
    rows = data.set_index("result")
    assert "run_id" not in rows.index  # the label is a column, not a measurement
    assert rows.loc["syscall_ns", ["value", "unit", "accelerator"]].tolist() == [181.0, "ns", ""]
    assert rows.loc["kvm_mps", ["value", "unit", "accelerator"]].tolist() == [1600.0, "M/s", "kvm"]
    assert rows.loc["tcg_mps", "accelerator"] == "tcg" and rows.loc["syscall_ratio", "unit"] == "×"
    assert rows.loc["virtual", "text"] == "True" and pd.isna(rows.loc["virtual", "value"])
    assert rows.loc["", ["notebook", "status"]].tolist() == ["02_hypervisor_types", "FAILED"]  # nothing recorded
    first = data.iloc[0]
    assert (first.host_kind, first.host_verdict, first.cpu_model, first.kernel) == (
        "pvm", "nested", "AMD EPYC", "6.18.44-fc-v669")
    assert (first.qemu, first.labkit, first.label, first.started) == (
        QEMU, labkit.__version__, "ann", "2026-11-30T00:53:21+00:00")
    assert json.loads(first.parameters) == {"loop_iterations": 10}
    csv, jsonl = table.save(data, tmp_path)
    assert pd.read_csv(csv, keep_default_na=False).shape == data.shape
    back = pd.read_json(jsonl, lines=True)
    assert back["value"].dropna().tolist() == data["value"].dropna().tolist()


def test_repeats_keep_every_run_and_the_summary_shows_median_and_spread() -> None:
    runs = [run01(10, native, 1600, 360, repeat=n) for n, native in enumerate((2400, 2600, 2500), start=1)]
    data = table.build(runs, DECL, ctx())
    assert sorted(data[data.result == "native_mps"]["repeat"]) == [1, 2, 3]
    stats = table.medians(data, ["notebook"]).set_index("result")
    assert stats.loc["native_mps", ["n", "median", "low", "high"]].tolist() == [3, 2500, 2400, 2600]
    line = table.summary(data, None, DECL).splitlines()[1]
    assert line.split()[:3] == ["01_kernel", "3/3", "32"]  # runs ok, median seconds
    assert "native_mps=2500 M/s [2400–2600]" in line and "kvm_mps=1600 M/s [1600–1600]" in line


def test_a_sweep_plots_only_the_notebooks_that_declare_the_parameter(tmp_path: Path) -> None:
    # 02 takes loop_iterations too, but declares no recorded result it drives: it is run, never plotted
    runs = [run01(loops, 2500, 1600, 360 * (1 + n % 2)) for loops in (10**6, 10**7, 10**8) for n in range(2)]
    runs += [RunResult("02_hypervisor_types", True, 5.0, Path("o.ipynb"), {"loop_iterations": loops},
                       {"cpu_overcommit": 3.0, "memory_overcommit": 0.25}, None, 1, 0.0) for loops in (10**6, 10**8)]
    data = table.build(runs, DECL, ctx())
    assert plot.sweep_panels(data, "loop_iterations", DECL) == [
        ("01_kernel", "native_mps"), ("01_kernel", "kvm_mps"), ("01_kernel", "tcg_mps")]
    summary = table.summary(data, "loop_iterations", DECL)
    assert "02_hypervisor_types" in summary and "declares no result that loop_iterations drives" in summary
    assert "syscall_ns" not in summary  # 01 declares that loop_iterations drives only the loop speeds
    assert plot.spans_decades([10**6, 10**8]) and not plot.spans_decades([128, 256])
    png = plot.sweep(data, "loop_iterations", DECL, tmp_path / "sweep.png")
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_sweeps_and_parameters_no_chosen_notebook_declares_are_clear_errors() -> None:
    with pytest.raises(InvalidOptionError, match=r"no chosen notebook declares which results 'loop_iterations' "
                                                 r"drives \(a parameter of 02_hypervisor_types, which"):
        runner.check([DECL["02_hypervisor_types"]], {}, "loop_iterations")
    with pytest.raises(InvalidOptionError, match=r"parameter\(s\) \['colour'\]"):
        runner.check(list(DECL.values()), {"colour": 1}, None)
    runner.check(list(DECL.values()), {"guests": 2}, "loop_iterations")  # 01 declares it: fine


@pytest.mark.parametrize("text", ["size", "size=", "=1,2", "size=1,,2", "size=1,1", "2x=1,2"])
def test_a_malformed_sweep_is_a_clear_error(text: str) -> None:
    with pytest.raises(InvalidOptionError, match="--sweep"):
        parse_sweep(text)


def test_a_sweep_is_parsed_into_literals() -> None:
    assert parse_sweep("accel=tcg,kvm") == ("accel", ["tcg", "kvm"])
    assert parse_sweep("loop_iterations=10_000_000, 50000000") == ("loop_iterations", [10_000_000, 50_000_000])


@pytest.mark.parametrize("content, says", [
    ("", "it is empty"), ("not json", "not JSON"), ("{}", "it has no cells"), ("[]", "its JSON is a list"),
    ('{"cells": {}}', "it has no cells"), ('{"cells": [], "nbformat": 4}', "not a notebook nbformat can read"),
    ('{"cells": [{"cell_type": "code"}], "nbformat": 4}', "not a notebook nbformat can read"),
    ('{"cells": [1], "nbformat": 4, "nbformat_minor": 5, "metadata": {}}', "not a notebook nbformat can read"),
])
def test_a_file_that_is_no_notebook_is_one_clear_error(tmp_path: Path, content: str, says: str) -> None:
    bad = tmp_path / "bad.ipynb"
    bad.write_text(content)
    with pytest.raises(NotebookFileError, match=says):
        declaration(bad)


def test_labkit_run_on_a_file_that_is_no_notebook_says_so(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "list.ipynb"
    bad.write_text("[1, 2]")
    proc = labkit_cli(capsys, "run", str(bad), "--out", str(tmp_path / "out"), "--no-progress")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"labkit: error: {bad} is not a notebook: its JSON is a list"), proc.stderr


def _export(tmp_path: Path, host: str, *speeds: tuple[float, float, float], **extra: object) -> Path:
    runs = [run01(50_000_000, *s, repeat=n, **extra) for n, s in enumerate(speeds, start=1)]
    return share.write(table.build(runs, DECL, ctx(host)), tmp_path / f"{host}.json", label=host[:3])


def test_result_files_of_recorded_hosts_merge_into_one_table_and_plot(tmp_path: Path, capsys) -> None:
    files = [_export(tmp_path, "intel-vtx-baremetal", (2500, 2400, 300), (2600, 2300, 320)),
             _export(tmp_path, "amd-svm-baremetal", (3000, 2900, 400)),
             _export(tmp_path, "wsl2-nested-kvm", (2000, 1500, 250)),
             _export(tmp_path, "pvm-nested", (2570, 1615, 365)),
             _export(tmp_path, "no-dev-kvm", (2200, 0, 280), kernel_path=str(tmp_path / "vmlinuz"))]
    shared = files[-1].read_text()
    assert str(tmp_path) not in shared and "<path>" in shared  # a path parameter is masked
    data = json.loads(shared)
    assert set(data) == {"format", "labkit", "label", "rows"} and set(data["rows"][0]) == set(table.COLUMNS) | {
        "param.kernel_path", "param.loop_iterations"}  # nothing but the table: no host, user or home
    words = {str(v) for row in data["rows"] for v in row.values()}
    assert not words & {os.uname().nodename, pwd.getpwuid(os.getuid()).pw_name, str(Path.home())}
    merged = share.merge([share.read(f) for f in files])
    assert set(merged["host_kind"]) == {"hardware", "nested", "pvm", "none"}
    lines = table.host_kind_summary(merged, ["kvm_mps"]).splitlines()
    assert [line.split()[:3] for line in lines[1:]] == [
        ["kvm_mps", "hardware", "2"], ["kvm_mps", "nested", "1"], ["kvm_mps", "pvm", "1"], ["kvm_mps", "none", "1"]]
    assert lines[1].endswith("2625 M/s [2350–2900]")  # the median of the machines' medians: 2350 (two runs), 2900
    png = tmp_path / "class.png"
    proc = labkit_cli(capsys, "results", "merge", *map(str, files), "--result", "native_mps", "--result", "kvm_mps",
                      "--plot", str(png), "--csv", str(tmp_path / "class.csv"))
    assert proc.returncode == 0, proc.stderr
    assert ["kvm_mps", "pvm", "1"] in [line.split()[:3] for line in proc.stdout.splitlines()]
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert len(pd.read_csv(tmp_path / "class.csv")) == len(merged)


@pytest.mark.parametrize("content, says", [
    ("not json", "not JSON"),
    ("[1, 2]", "is not a labkit result file"),
    ('{"format": "labkit-results", "labkit": "0.0.1", "rows": []}', "was written by labkit 0.0.1"),
    (json.dumps({"format": "labkit-results", "labkit": labkit.__version__, "rows": [{"notebook": "01"}]}), "lacks"),
])
def test_a_bad_result_file_is_one_clear_error(tmp_path: Path, content: str, says: str) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    with pytest.raises(share.ResultFileError, match=says):
        share.read(bad)


def test_merge_of_a_bad_file_exits_2_without_a_traceback(tmp_path: Path, capsys) -> None:
    good = _export(tmp_path, "pvm-nested", (2570, 1615, 365))
    proc = labkit_cli(capsys, "results", "merge", str(good), str(tmp_path / "missing.json"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"labkit: error: cannot read {tmp_path / 'missing.json'}")


@pytest.fixture
def homes(tmp_path: Path, monkeypatch) -> dict[str, Path]:
    """Three learners' accounts (all the tester's uid), their homes under tmp_path, as the instructor looks them up."""
    me = pwd.getpwuid(os.getuid())
    accounts = {name: pwd.struct_passwd((name, "x", me.pw_uid, me.pw_gid, "", str(tmp_path / name), "/bin/sh"))
                for name in ("ann", "ben", "cy")}
    monkeypatch.setattr(class_results.pwd, "getpwnam", accounts.__getitem__)  # KeyError: no such account
    for account in accounts.values():
        Path(account.pw_dir).mkdir()
    return {name: Path(account.pw_dir) for name, account in accounts.items()}


def test_class_results_read_only_each_students_own_files(homes: dict[str, Path], tmp_path: Path) -> None:
    runs = [run01(50_000_000, 2500, 1600, 360)]
    share.keep(table.build(runs, DECL, ctx("intel-vtx-baremetal")), home=homes["ann"])
    ben = share.keep(table.build(runs, DECL, ctx("pvm-nested")), label="ben", home=homes["ben"])
    (share.runs_dir(homes["ben"]) / "planted.json").symlink_to(next(share.runs_dir(homes["ann"]).iterdir()))
    (share.runs_dir(homes["ben"]) / "old.json").write_text('{"format": "labkit-results", "labkit": "0.0.1"}')
    share.runs_dir(homes["cy"]).parent.mkdir(parents=True)
    share.runs_dir(homes["cy"]).symlink_to(share.runs_dir(homes["ann"]))  # cy claims ann's folder
    assert ben.stat().st_mode & 0o777 == 0o600

    merged = class_results.collect(["ann", "ben", "cy", "dan"])
    ann_runs, ben_runs, cy_runs, dan_runs = merged.students
    assert (ann_runs.files, ben_runs.files, cy_runs.files) == (1, 1, 0)
    assert any("Too many levels of symbolic links" in p for p in ben_runs.problems), ben_runs
    assert any("written by labkit 0.0.1" in p for p in ben_runs.problems)
    assert "not their own folder" in cy_runs.problems[0] and dan_runs.problems == ("no such account",)
    assert sorted(merged.table.drop_duplicates("label")[["label", "host_kind"]].itertuples(index=False)) == [
        ("ann", "hardware"), ("ben", "pvm")]
    assert "left out: " in merged.report()


def test_class_results_of_a_file_another_user_owns_is_left_out(homes: dict[str, Path]) -> None:
    if os.geteuid() != 0:
        pytest.skip("handing a file to another owner needs root (CI runs the suite as root)")
    path = share.keep(table.build([run01(10, 1, 1, 1)], DECL, ctx()), home=homes["ann"])
    os.chown(path, 65534, 65534)
    with pytest.raises(InvalidOptionError, match="none of the 1 students has a result file"):
        class_results.collect(["ann"])
    student, tables = class_results.read("ann")
    assert tables == [] and "not their own file" in student.problems[0]


@pytest.mark.parametrize("notebook", runner.resolve([]), ids=lambda p: p.stem)
def test_every_recorded_result_is_declared_in_both_editions(notebook: Path) -> None:
    """Each `lesson.record(name=…)` of a notebook has a declaration (unit, meaning), and so has the Korean edition."""
    import ast

    import nbformat

    decl = declaration(notebook)
    recorded = {kw.arg for cell in nbformat.read(notebook, as_version=4).cells if cell.cell_type == "code"
                for node in ast.walk(ast.parse("\n".join(line for line in cell.source.splitlines()
                                                         if not line.lstrip().startswith(("!", "%")))))
                if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "record"
                for kw in node.keywords if kw.arg} - {"run_id"}
    assert recorded <= set(decl.results), f"declare in {notebook.name}: {recorded - set(decl.results)}"
    assert {r for p in decl.parameters.values() for r in p.drives} <= set(decl.results)
    assert all(info.meaning.get("ko") for info in [*decl.parameters.values(), *decl.results.values()])
    korean = declaration(runner.resolve([notebook.stem], "ko")[0])
    assert (korean.parameters, korean.results) == (decl.parameters, decl.results)
