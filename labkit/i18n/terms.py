"""The Korean edition's term base (``docs/terms.ko.yaml``): one term per concept, and where a text strays.

A translation drifts one synonym at a time: 장치 here, 디바이스 there, 링 0 in
one paragraph and ring 0 in the next — and a learner wonders whether these
are two things.  The term base names the one Korean term for each concept
and the forms to avoid; :func:`strays` finds the avoided forms in a text
(without its code: inline ``code``, fenced blocks, ``{placeholders}``), and
``tests/test_terms.py`` runs it over every Korean text of the lab.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

#: The term base, next to the other documents (the lab ships only the glossary that learners read).
TERM_BASE = Path(__file__).resolve().parents[2] / "docs" / "terms.ko.yaml"

#: What is code, not prose, in a Korean text: fenced blocks, inline code, format placeholders.
_CODE = re.compile(r"```.*?```|`[^`\n]*`|\{[^{}\n]*\}", re.DOTALL)


@dataclass(frozen=True)
class Term:
    """One concept: the Korean term the edition writes, its English, the forms it must not write."""

    ko: str
    en: str
    avoid: tuple[re.Pattern[str], ...]
    allow: tuple[str, ...] = ()  # exact phrases in which an avoided form is right (the text names the slip)


@dataclass(frozen=True)
class Stray:
    """An avoided form found in a text: which, where in the text, and the term to write instead."""

    form: str
    line: int  # 1-based, within the text given to :func:`strays`
    context: str
    term: Term

    def __str__(self) -> str:
        return f"line {self.line}: {self.form!r} in {self.context!r} — write {self.term.ko} ({self.term.en})"


def load(path: Path = TERM_BASE) -> list[Term]:
    """The term base's entries; a malformed entry or pattern raises ValueError naming it."""
    import yaml

    entries = yaml.safe_load(path.read_text(encoding="utf-8"))
    terms = []
    for n, entry in enumerate(entries, 1):
        if not isinstance(entry, dict) or not {"ko", "en", "avoid"} <= set(entry):
            raise ValueError(f"{path} entry {n}: needs ko, en and avoid, has {entry!r}")
        try:
            avoid = tuple(re.compile(_across_lines(p)) for p in entry["avoid"])
        except re.error as e:
            raise ValueError(f"{path} entry {n} ({entry['ko']}): bad pattern: {e}") from None
        terms.append(Term(str(entry["ko"]), str(entry["en"]), avoid, tuple(entry.get("allow", ()))))
    return terms


def _across_lines(pattern: str) -> str:
    """``pattern`` with each literal blank (outside ``[...]``) matching any run of blanks or a line break:
    a wrapped line must not hide 권한 / 수준."""
    return re.sub(r"\[[^\]]*\]| ", lambda m: r"\s+" if m.group() == " " else m.group(), pattern)


def prose(text: str) -> str:
    """``text`` with its code blanked out (same lines, so line numbers still point into the original)."""
    return _CODE.sub(lambda m: re.sub(r"[^\n]", " ", m.group()), text)


def strays(text: str, terms: list[Term]) -> Iterator[Stray]:
    """Every avoided form in the prose of ``text`` (outside the term's ``allow`` phrases)."""
    plain = prose(text)
    for term in terms:
        checked = plain
        for phrase in term.allow:
            checked = checked.replace(phrase, " " * len(phrase))
        for pattern in term.avoid:
            for m in pattern.finditer(checked):
                start = checked.rfind("\n", 0, m.start()) + 1
                end = checked.find("\n", m.end())
                yield Stray(m.group(), checked.count("\n", 0, m.start()) + 1,
                            text[start:end if end >= 0 else len(text)].strip()[:120], term)
