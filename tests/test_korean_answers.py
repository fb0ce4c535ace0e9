"""Answers in Korean: the notebooks' questions accept 예, 타입 2, 문자 장치… as well as the English words.

Each "ready to go on?" question of the notebooks is asked here with the
accepted answers its cell declares and answered in Korean; the hypervisor
classification (notebook 02's exercise) takes 타입 1 / 타입 2.
"""

from __future__ import annotations

import pytest

from labkit import exercises, lesson
from labkit.exercises import hypervisor
from labkit.i18n import answers

#: (the accepted answers, as the notebooks' cells declare them; a Korean answer; a wrong Korean answer)
READY_QUESTIONS = [
    ({"vm", "a vm", "virtual machine", "virtual"}, "가상 머신", "베어메탈"),  # 01: ECX bit 31
    (lambda a: str(a).strip().lower() in {"0", "about 0", "none"}, "약 0", "약 1 GiB"),  # 01: RSS after mmap
    ({"yes", "y"}, "예", "아니오"),  # 02: overcommitted?
    ({"type 2", "2", "type2"}, "타입 2", "타입 1"),  # 02: a hypervisor you install like an application
    ({"character device", "a character device", "char device", "device"}, "문자 장치", "디렉터리"),  # 03
    ({0, "0", "none", "zero", "no exit"}, "없음", "한 번"),  # 03: a store into a memory slot
    ({"thread", "a thread"}, "스레드", "프로세스"),  # 04: one vCPU on the host
    ({"overlay", "the overlay"}, "오버레이", "둘 다"),  # 04b: which file changes
    ({"no", "n"}, "아니요", "네"),  # 05: did the notebook poll?
]


@pytest.mark.parametrize(("right", "korean", "wrong"), READY_QUESTIONS, ids=[q[1] for q in READY_QUESTIONS])
def test_ready_accepts_the_korean_answer_and_not_a_wrong_one(right: object, korean: str, wrong: str,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    lesson.ready("?", korean, right, why="right")  # type: ignore[arg-type]  # the cells' own mix of types
    lesson.ready("?", f" {korean} ", right, why="right")  # type: ignore[arg-type]
    lesson.ready("?", wrong, right, why="right", hint="again")  # type: ignore[arg-type]
    assert capsys.readouterr().out.splitlines() == [
        "✔ ready to go on: right", "✔ ready to go on: right", f"↺ not quite ({wrong!r}): again — you may go on anyway"]


def test_only_whole_korean_answers_are_read_and_others_pass_through() -> None:
    assert answers.in_english("예.") == "yes" and answers.in_english("타입2") == "type 2"
    assert answers.in_english("예 아니오") == "예 아니오"  # a sentence is not guessed at
    assert answers.in_english(0) == 0 and answers.in_english("KVM_RUN") == "KVM_RUN"


def test_every_korean_answer_is_written_as_it_is_compared() -> None:
    """A key that fold() would change could never match: the table would silently accept nothing for it."""
    assert [k for k in answers.KOREAN if answers.fold(k) != k] == []


def test_the_hypervisor_classification_takes_korean_types() -> None:
    classify = exercises.all_exercises()["hypervisor-types"]  # the bare checker: no attempts counted
    first, second = hypervisor.names()[:2]
    korean = {"type 1": "타입 1", "type 2": "타입2"}
    pair = {first: korean[hypervisor.SETTLED[first]], second: korean[hypervisor.SETTLED[second]]}
    # the pair is accepted and KVM's side is read: what is left to judge is the evidence line
    no_evidence = classify({**pair, "KVM": "타입 1"}, "")
    assert no_evidence.message == "KVM as type 1: the evidence line is not one this host shows now"
    swapped = classify({first: pair[second], second: pair[first], "KVM": "타입 1"}, "")
    assert swapped.message.startswith("check ")
    neither = classify({**pair, "KVM": "타입 3"}, "")
    assert neither.message.startswith("KVM: answer 'type 1' or 'type 2'")
