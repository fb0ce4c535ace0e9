"""Korean particles that fit the word before them: ``{name}을(를)`` becomes ``KVM을`` or ``QEMU를``.

A Korean particle depends on whether the word before it ends in a consonant (받침): 을/를, 이/가,
은/는, 과/와, 으로/로.  A translation cannot know the word a placeholder will hold, so its msgstr
writes both forms the way Korean software does (``을(를)``, ``이(가)``, ``(으)로``, ``(이)다``) and
:func:`resolve` picks one from the text that was actually inserted.  Only these written-out pairs
change; every other parenthesis stays as it is.
"""

from __future__ import annotations

import re

#: The written-out pairs: (pattern, form after a final consonant, form after a vowel).
_PAIRS = (("을(를)", "을", "를"), ("를(을)", "을", "를"), ("이(가)", "이", "가"), ("가(이)", "이", "가"),
          ("은(는)", "은", "는"), ("는(은)", "은", "는"), ("과(와)", "과", "와"), ("와(과)", "과", "와"),
          ("(으)로", "으로", "로"), ("(이)", "이", ""))
_PATTERN = re.compile("|".join(re.escape(p) for p, _, _ in _PAIRS))
_FORMS = {p: (consonant, vowel) for p, consonant, vowel in _PAIRS}

_HANGUL_FIRST, _HANGUL_LAST = 0xAC00, 0xD7A3
_RIEUL = 8  # the final-consonant index of ㄹ: 으로 takes 로 after it, like a vowel
#: How Korean reads digits and Latin letters aloud: the final consonant of each (0 = none, 8 = ㄹ, 1 = other).
_SPOKEN_FINAL = {"0": 1, "1": _RIEUL, "2": 0, "3": 1, "4": 0, "5": 0, "6": 1, "7": _RIEUL,
                 "8": _RIEUL, "9": 0, "l": _RIEUL, "r": _RIEUL, "m": 1, "n": 1}
#: What may stand between a word and its particle without being read aloud.
_SILENT = set(")]}>'\"’”`*")


def final_consonant(text: str) -> int | None:
    """The final consonant of how ``text`` ends when read aloud: 0 none, 8 ㄹ, another index for others.

    Korean syllables carry it in their code point; digits and Latin letters are read by name
    (``KVM`` → 엠, ``QEMU`` → 유, ``7`` → 칠).  None when ``text`` ends in nothing readable.
    """
    for char in reversed(text):
        if char in _SILENT:
            continue
        if _HANGUL_FIRST <= ord(char) <= _HANGUL_LAST:
            return (ord(char) - _HANGUL_FIRST) % 28
        if char.isascii() and char.isalnum():
            return _SPOKEN_FINAL.get(char.lower(), 0)
        return None
    return None


def resolve(text: str) -> str:
    """``text`` with every written-out particle pair replaced by the form its preceding word takes.

    ``(이)`` (the copula's optional 이 of ``(이)다``, ``(이)라는``) is dropped after a vowel.  A pair
    after something unreadable (a symbol, the start of the text) keeps the form for a final consonant.
    """
    def pick(match: re.Match[str]) -> str:
        consonant, vowel = _FORMS[match.group()]
        final = final_consonant(text[:match.start()])
        if final is None:
            return consonant
        if match.group() == "(으)로":
            return vowel if final in (0, _RIEUL) else consonant
        return consonant if final else vowel

    return _PATTERN.sub(pick, text)


class Translated(str):
    """A translated message whose :meth:`format` also resolves the particles around its placeholders."""

    __slots__ = ()

    def format(self, *args: object, **kwargs: object) -> str:  # noqa: A003 - str's own method, extended
        return resolve(super().format(*args, **kwargs))
