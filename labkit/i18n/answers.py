"""Answers typed in Korean, read as their English: a learner may answer 예, 문자 장치 or 타입 2.

The notebooks' questions ("ready to go on?", the hypervisor classification)
accept a few words; a Korean learner types them in Korean whichever edition
they run.  :func:`in_english` maps such an answer to the English word the
question accepts, so each question keeps one list of answers.  Only whole
answers are mapped (after folding case and blanks): a sentence is not
guessed at.
"""

from __future__ import annotations

#: Korean answers → the English answer they mean (keys folded as :func:`fold` folds them).
KOREAN: dict[str, str] = {
    # yes / no
    **dict.fromkeys(["예", "네", "응", "그렇다", "맞다", "그래"], "yes"),
    **dict.fromkeys(["아니오", "아니요", "아니", "아니다", "아뇨"], "no"),
    # bare metal or a VM
    **dict.fromkeys(["가상 머신", "가상머신", "vm이다", "가상"], "vm"),
    **dict.fromkeys(["베어메탈", "베어 메탈"], "bare metal"),
    # hypervisor types (the study note also says 베어메탈 / 호스티드)
    **dict.fromkeys(["타입 1", "타입1", "유형 1", "1형", "제1형", "타입 1 하이퍼바이저"], "type 1"),
    **dict.fromkeys(["타입 2", "타입2", "유형 2", "2형", "제2형", "타입 2 하이퍼바이저"], "type 2"),
    # kinds of files, parts of a process
    **dict.fromkeys(["문자 장치", "문자 장치 파일", "캐릭터 장치", "캐릭터 디바이스", "문자 디바이스"],
                    "character device"),
    **dict.fromkeys(["장치", "장치 파일", "디바이스"], "device"),
    **dict.fromkeys(["스레드", "쓰레드"], "thread"),
    "프로세스": "process",
    "커널 모듈": "kernel module",
    # overlay and base
    **dict.fromkeys(["오버레이", "오버레이 파일"], "overlay"),
    **dict.fromkeys(["베이스", "베이스 파일", "백킹 파일"], "base"),
    **dict.fromkeys(["둘 다", "모두"], "both"),
    # how many
    **dict.fromkeys(["없음", "없다", "하나도 없다", "0개", "0번", "0회"], "none"),
    "영": "zero",
    **dict.fromkeys(["약 0", "거의 0", "0에 가깝다"], "about 0"),
    **dict.fromkeys(["약 1 gib", "약 1gib"], "about 1 gib"),
    **dict.fromkeys(["exit 없음", "exit가 없다"], "no exit"),
}


def fold(text: str) -> str:
    """Case and blanks folded, a final full stop or question mark dropped: how answers are compared."""
    return " ".join(text.lower().split()).rstrip(".?!")


def in_english(answer: object) -> object:
    """The English answer a Korean ``answer`` means (folded); any other answer as it was."""
    if not isinstance(answer, str):
        return answer
    return KOREAN.get(fold(answer), answer)
