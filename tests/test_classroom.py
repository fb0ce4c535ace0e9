"""The instructor's view: checkers record each learner's answers in their own file, read back per student."""

from __future__ import annotations

import json
import os
import pwd
import sys
import types
from pathlib import Path

import pytest

from labkit import cli, exercises
from labkit.classroom import progress
from labkit.exercises import Feedback


@pytest.fixture
def homes(tmp_path: Path, monkeypatch) -> dict[str, Path]:
    """Two learners' homes (owned by whoever runs the tests), looked up by name as the instructor does."""
    me = pwd.getpwuid(os.getuid())
    found = {name: tmp_path / name for name in ("ann", "ben")}
    for home in found.values():
        home.mkdir()

    def getpwnam(name: str):
        if name not in found:
            raise KeyError(name)
        return pwd.struct_passwd((name, "x", me.pw_uid, me.pw_gid, "", str(found[name]), "/bin/sh"))

    monkeypatch.setattr(progress.pwd, "getpwnam", getpwnam)
    return found


def test_checks_are_recorded_per_learner_and_read_back_as_a_table(homes: dict[str, Path]) -> None:
    exercises.record_result("qemu.cpu_count", Feedback(False, "1 vCPU", "vcpus=2"), homes["ann"])
    exercises.record_result("qemu.cpu_count", Feedback(True, "2 vCPUs"), homes["ann"])
    exercises.record_result("virt.libvirt_guest", Feedback(False, "no domain"), homes["ann"])
    exercises.record_result("virt.libvirt_guest", Feedback(False, "no domain"), homes["ben"])
    path = exercises.results_file(homes["ann"])
    assert path.stat().st_mode & 0o777 == 0o600
    assert [json.loads(line)["solved"] for line in path.read_text().splitlines()] == [False, True, False]

    report = progress.collect(["ann", "ben", "cat"])
    ann, ben, cat = report.students
    assert ann.passed == {"qemu.cpu_count": True, "virt.libvirt_guest": False}
    assert ann.attempts == {"qemu.cpu_count": 2, "virt.libvirt_guest": 1}
    assert ben.passed == {"virt.libvirt_guest": False} and cat.problem == "no such account"
    assert report.exercises == ["qemu.cpu_count", "virt.libvirt_guest"]
    lines = report.table().splitlines()
    assert lines[0].split() == ["student", "qemu.cpu_count", "virt.libvirt_guest", "passed"]
    assert lines[1].split() == ["ann", "✔", "✘×1", "1/2"]
    assert lines[2].split() == ["ben", "·", "✘×1", "0/2"]
    assert "no such account" in lines[3]
    ax = report.plot()
    assert [p.get_height() for p in ax.patches] == [1, 0, 0, 2]  # passed per exercise, then tried-not-passed


def test_a_results_file_that_is_a_link_or_not_theirs_is_ignored(homes: dict[str, Path], tmp_path: Path) -> None:
    exercises.record_result("qemu.cpu_count", Feedback(True, "2 vCPUs"), homes["ann"])
    planted = exercises.results_file(homes["ben"])
    planted.parent.mkdir(parents=True)
    planted.symlink_to(exercises.results_file(homes["ann"]))  # ben claims ann's results
    ben = progress.read("ben")
    assert ben.attempts == {} and "cannot read" in ben.problem


def test_torn_lines_count_as_nothing(homes: dict[str, Path]) -> None:
    path = exercises.record_result("qemu.cpu_count", Feedback(True, "2 vCPUs"), homes["ann"])
    with open(path, "a") as fh:
        fh.write('{"exercise": "qemu.cpu_count", "sol')
    assert progress.read("ann").attempts == {"qemu.cpu_count": 1}


@pytest.mark.parametrize("in_kernel, env, recorded", [
    (True, {}, True),                                 # a learner's notebook
    (False, {}, False),                               # a unit test calling a checker
    (True, {"LABKIT_EXPECT_SOLVED": "1"}, False),     # a reference run (nbval with the solutions)
    (True, {"LABKIT_RESULTS": "off"}, False),         # the test suite's notebook runs
])
def test_checkers_record_only_in_a_learners_notebook(in_kernel: bool, env: dict[str, str], recorded: bool,
                                                     tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("LABKIT_RESULTS", raising=False)
    monkeypatch.delenv("LABKIT_EXPECT_SOLVED", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setitem(sys.modules, "IPython", types.SimpleNamespace(get_ipython=lambda: object() if in_kernel
                                                                      else None))
    from labkit.exercises import qemu

    if env.get("LABKIT_EXPECT_SOLVED"):  # a reference run stops at an unsolved check
        with pytest.raises(exercises.NotSolved):
            qemu.cpu_count(None)
    else:
        qemu.cpu_count(None)
    path = exercises.results_file(tmp_path)
    assert path.exists() == recorded
    assert not recorded or json.loads(path.read_text())["exercise"] == "qemu-vcpus"  # the one id


def test_class_status_names_a_missing_class(capsys) -> None:
    assert cli.main(["class", "status", "--state", "/nonexistent"]) == 2
    assert "labkit: error: no students to show" in capsys.readouterr().err
