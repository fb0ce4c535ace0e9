"""labkit.exercises' framework: Feedback is a value, check() counts attempts and shows hints after failures."""

from __future__ import annotations

import json
import sys
import types
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from labkit import exercises
from labkit.exercises import Feedback

NAME = "framework-test"
HINTS = ("the concept", "the instruction", "the call")
Checker = Callable[..., Feedback]


def _answer(answer: object) -> Feedback:
    """Solved by 42; every other answer gets the three hints."""
    return Feedback(answer == 42, f"you said {answer}", HINTS)


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch) -> Iterator[Checker]:
    """NAME registered for this test only, with no failed attempts and no prediction; its checker as registered."""
    monkeypatch.setattr(exercises, "EXERCISES", dict(exercises.all_exercises()))
    checker = exercises.exercise(NAME)(_answer)
    exercises.forget(NAME)
    yield checker
    exercises.forget(NAME)


def test_building_feedback_records_nothing_and_raises_nothing(monkeypatch: pytest.MonkeyPatch,
                                                                tmp_path: Path) -> None:
    monkeypatch.setenv("LABKIT_EXPECT_SOLVED", "1")
    monkeypatch.setenv("HOME", str(tmp_path))
    feedback = Feedback(False, "wrong", "one hint")
    assert feedback.hints == ("one hint",) and not (tmp_path / exercises.RESULTS_FILE).exists()


def test_no_hint_before_the_first_attempt_and_one_more_per_failed_attempt(fresh: Checker) -> None:
    shown = [exercises.check(NAME, n) for n in (1, 2, 3, 4)]
    assert [f.hints for f in shown] == [HINTS[:1], HINTS[:2], HINTS, HINTS]
    assert str(shown[0]) == "✘ you said 1\n  hint: the concept"
    assert exercises.failed_attempts(NAME) == 4
    solved = exercises.check(NAME, 42)
    assert str(solved) == "✔ you said 42" and exercises.failed_attempts(NAME) == 4


def test_calling_a_registered_checker_is_a_check(fresh: Checker) -> None:
    assert fresh(7).hints == HINTS[:1] and exercises.failed_attempts(NAME) == 1
    assert exercises.all_exercises()[NAME](7).hints == HINTS  # the bare checker: every hint, nothing counted
    assert exercises.failed_attempts(NAME) == 1


def test_a_reference_run_raises_on_an_unsolved_exercise(monkeypatch: pytest.MonkeyPatch, fresh: Checker) -> None:
    monkeypatch.setenv("LABKIT_EXPECT_SOLVED", "1")
    with pytest.raises(exercises.NotSolved, match="did not solve the exercise framework-test: ✘ you said 1"):
        exercises.check(NAME, 1)
    assert exercises.check(NAME, 42).solved


def test_an_unknown_exercise_is_a_clear_error(fresh: Checker) -> None:
    with pytest.raises(exercises.UnknownExerciseError) as raised:
        exercises.check("no-such-exercise", 1)
    assert "no-such-exercise" in raised.value.what and NAME in raised.value.fix


def test_a_prediction_is_kept_for_the_checker(fresh: Checker) -> None:
    assert exercises.prediction(NAME) is None
    exercises.predict(NAME, 7)
    assert exercises.prediction(NAME) == 7


def test_target_is_stable_per_learner_and_varies_between_learners() -> None:
    choices = tuple(range(100))
    mine = exercises.target(NAME, choices)
    assert mine == exercises.target(NAME, choices) and mine in choices
    others = {exercises.target(NAME, choices, user=f"student{i}", host="hub") for i in range(20)}
    assert len(others) > 10  # 20 students over 100 targets: a neighbour's answer rarely fits
    assert len({exercises.target(NAME, choices, user="alice", host=f"pc{i}") for i in range(20)}) > 10
    with pytest.raises(ValueError, match="no targets"):
        exercises.target(NAME, ())


def test_results_are_recorded_in_a_learners_kernel_only(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                         fresh: Checker) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("LABKIT_RESULTS", raising=False)
    monkeypatch.delenv("LABKIT_EXPECT_SOLVED", raising=False)
    assert not exercises.recording()  # pytest is no notebook kernel
    exercises.check(NAME, 1)
    assert not exercises.results_file().exists()


def test_in_a_notebook_kernel_checks_and_predictions_are_recorded(monkeypatch: pytest.MonkeyPatch,
                                                                   tmp_path: Path, fresh: Checker) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("LABKIT_RESULTS", raising=False)
    monkeypatch.delenv("LABKIT_EXPECT_SOLVED", raising=False)
    monkeypatch.setitem(sys.modules, "IPython", types.SimpleNamespace(get_ipython=lambda: object()))
    assert exercises.recording()
    exercises.predict(NAME, 41)
    exercises.check(NAME, 41)
    exercises.check(NAME, 42)
    rows = [json.loads(line) for line in exercises.results_file().read_text().splitlines()]
    assert [(r["exercise"], r.get("prediction"), r.get("solved")) for r in rows] == [
        (NAME, 41, None), (NAME, None, False), (NAME, None, True)]
    monkeypatch.setenv("LABKIT_RESULTS", "off")
    assert not exercises.recording()


def test_record_result_writes_the_row_the_class_view_reads(tmp_path: Path) -> None:
    path = exercises.record_result(NAME, Feedback(True, "right"), home=tmp_path)
    row = json.loads(path.read_text())
    assert (row["exercise"], row["solved"], row["message"]) == (NAME, True, "right")
    assert path.stat().st_mode & 0o777 == 0o600
