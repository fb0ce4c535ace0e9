"""lesson.check's three marks, lesson.ready's answers, lesson.record's line."""

from __future__ import annotations

import pytest

from labkit import lesson


def test_a_claim_that_holds_prints_the_held_mark(capsys: pytest.CaptureFixture[str]) -> None:
    lesson.check("two is even", 2 % 2 == 0)
    assert capsys.readouterr().out == "✔ two is even\n"


def test_a_claim_that_fails_stops_the_notebook_with_the_evidence() -> None:
    with pytest.raises(lesson.ClaimFailed, match="three is even.*remainder 1"):
        lesson.check("three is even", 3 % 2 == 0, evidence="remainder 1")


def test_an_uncheckable_claim_gets_its_own_mark_never_the_tick(capsys: pytest.CaptureFixture[str]) -> None:
    lesson.check("/dev/kvm is a device of this kernel", lesson.unknown("this host has no /dev/kvm"))
    out = capsys.readouterr().out
    assert out == ("○ not checkable on this host: /dev/kvm is a device of this kernel "
                   "(because this host has no /dev/kvm)\n")
    assert "✔" not in out


@pytest.mark.parametrize("not_a_result", [None, [], [1], 1, "yes"])
def test_only_a_bool_counts_as_a_result(not_a_result: object) -> None:
    with pytest.raises(TypeError, match="needs a bool"):
        lesson.check("something", not_a_result)  # type: ignore[arg-type]


def test_unknown_needs_a_reason() -> None:
    with pytest.raises(ValueError, match="say why"):
        lesson.unknown("  ")


def test_ready_never_stops_and_says_which_way(capsys: pytest.CaptureFixture[str]) -> None:
    q = "which call enters the kernel: abs or getppid?"
    lesson.ready(q, None, "getppid", why="getppid is a system call")
    lesson.ready(q, " GetPPID ", "getppid", why="getppid is a system call")
    lesson.ready(q, "abs", "getppid", why="getppid is a system call", hint="which one asks the kernel?")
    lesson.ready(q, 4096, lambda a: a == 4096, why="one page")
    lesson.ready(q, "type 2", {"type 1", "type 2"}, why="either, with the argument")
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("→ ready to go on? which call")
    assert lines[1] == "✔ ready to go on: getppid is a system call"
    assert lines[2] == "↺ not quite ('abs'): which one asks the kernel? — you may go on anyway"
    assert lines[3] == "✔ ready to go on: one page"
    assert lines[4] == "✔ ready to go on: either, with the argument"


def test_record_hides_an_empty_run_id_but_keeps_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import IPython.display

    shown: list[dict] = []
    monkeypatch.setattr(IPython.display, "display", lambda obj, raw=False: shown.append(obj))
    lesson.record(run_id="", syscall_ns=207.6)
    lesson.record(run_id="alice", syscall_ns=1.0)
    assert shown[0]["text/plain"] == "recorded: syscall_ns = 207.6"
    assert shown[0][lesson.RESULTS_MIME] == {"run_id": "", "syscall_ns": 207.6}
    assert shown[1]["text/plain"] == "recorded: run_id = alice, syscall_ns = 1.0"
