"""One Korean term per concept: no Korean text of the lab writes a form the term base avoids.

The term base is docs/terms.ko.yaml (labkit.i18n.terms).  Read here: every
notebook catalog (notebooks/ko/catalog/*.yaml, the `ko:` texts; of a code cell, its comments; of an
exercise's template, also its strings), every
gettext catalog's Korean (labkit/locale/ko/LC_MESSAGES/*.po, msgstr only),
README.ko.md and the glossary's Korean column.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from babel.messages.pofile import read_po

from labkit.exercises import exercise_name
from labkit.i18n import notebooks, terms

REPO = Path(__file__).resolve().parents[1]
GLOSSARY = REPO / "notebooks" / "glossary.md"


def korean_texts() -> Iterator[tuple[str, str]]:
    """(where, Korean text) for every Korean text of the lab."""
    for catalog in sorted((REPO / "notebooks" / "ko" / "catalog").glob("*.yaml")):
        english = json.loads((REPO / "notebooks" / f"{catalog.stem}.ipynb").read_text(encoding="utf-8"))
        code = {cell["id"]: exercise_name(cell) is not None for cell in english["cells"] if cell["cell_type"] == "code"}
        for cell_id, entry in (yaml.load(catalog.read_text(encoding="utf-8"), Loader=yaml.BaseLoader) or {}).items():
            # a code cell's entry translates its comments (a template's: and its strings): the rest is the English
            # code, identifiers and all
            text = notebooks.code_comments(entry["ko"], code[cell_id]) if cell_id in code else entry["ko"]
            yield f"{catalog.relative_to(REPO)} cell {cell_id}", text
    for po in sorted((REPO / "labkit" / "locale" / "ko" / "LC_MESSAGES").glob("*.po")):
        with po.open("rb") as f:
            for message in read_po(f):
                if message.id and message.string:
                    yield f"{po.relative_to(REPO)} msgid {str(message.id)[:50]!r}", str(message.string)
    yield "README.ko.md", (REPO / "README.ko.md").read_text(encoding="utf-8")
    rows = [line.split("|")[1] for line in GLOSSARY.read_text(encoding="utf-8").splitlines()
            if line.startswith("| ") and not line.startswith("| 한국어")]
    yield f"{GLOSSARY.relative_to(REPO)} (Korean column)", "\n".join(rows)


def test_no_korean_text_uses_an_avoided_form() -> None:
    base = terms.load()
    found = [f"{where}, {stray}" for where, text in korean_texts() for stray in terms.strays(text, base)]
    assert not found, f"{len(found)} avoided form(s) (docs/terms.ko.yaml):\n" + "\n".join(found)


def test_the_texts_are_all_read() -> None:
    """The scan reaches every catalog: seven notebooks' cells and messages, labkit's own, the README, the glossary."""
    wheres = [where for where, _ in korean_texts()]
    assert sum("notebooks/ko/catalog/01_kernel.yaml" in w for w in wheres) > 10
    assert sum("LC_MESSAGES/labkit.po" in w for w in wheres) > 100
    assert sum("notebook-05_libvirt.po" in w for w in wheres) > 10
    assert "README.ko.md" in wheres and any("glossary" in w for w in wheres)


@pytest.mark.parametrize("term", terms.load(), ids=lambda t: t.en)
def test_a_term_is_not_its_own_avoided_form(term: terms.Term) -> None:
    assert not list(terms.strays(term.ko, [term])), f"{term.ko}: an avoid pattern matches the term itself"


def test_strays_skip_code_and_allowed_phrases_and_name_the_line() -> None:
    ring = terms.Term("링 0", "ring 0", (re.compile(r"\b[Rr]ing[ -]?[0-3]\b"),),
                      ("(ring-0 instruction emulation)",))
    text = ("링 0 명령어 에뮬레이션(ring-0 instruction emulation)\n`ring 0` {ring0}\n```\nring 3\n```\n"
            "사용자 모드(ring 3)에서")
    (stray,) = terms.strays(text, [ring])
    assert (stray.form, stray.line, stray.context) == ("ring 3", 6, "사용자 모드(ring 3)에서")
    assert "write 링 0 (ring 0)" in str(stray)
    level = terms.load()  # a wrapped line does not hide an avoided form of two words
    assert [s.form for s in terms.strays("게스트의 권한\n수준에", level)] == ["권한\n수준"]


def test_a_code_entry_is_read_for_its_comments_only() -> None:
    """Notebook 04's plot cell: ``runs + ring0`` is the English code, kept; a comment is the translator's."""
    ring = terms.Term("링 0", "ring 0", (re.compile(r"\b[Rr]ing[ -]?[0-3]\b"),))
    code = "fig = plot(runs + ring0, boots)  # 가속기별 중앙값\n!ls /dev  # ring 3 모드\nx = 1  # ring 0 루프\n"
    assert [(s.form, s.line) for s in terms.strays(notebooks.code_comments(code), [ring])] == [
        ("ring 3", 2), ("ring 0", 3)]
    assert [s.line for s in terms.strays(code, [ring])] == [1, 2, 3]  # read as prose, the code strays too
    template = 'guest = r"""\nstart:   # ring 3 모드\n    hlt\n"""\n\n\ndef f() -> None:\n    """ring 0 모드"""\n'
    assert [s.line for s in terms.strays(notebooks.code_comments(template, template=True), [ring])] == [2, 8]


def test_a_malformed_term_base_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "terms.yaml"
    bad.write_text("- ko: 장치\n  en: device\n  avoid: ['디바이스(']\n", encoding="utf-8")
    with pytest.raises(ValueError, match="장치"):
        terms.load(bad)
    bad.write_text("- ko: 장치\n  en: device\n", encoding="utf-8")
    with pytest.raises(ValueError, match="needs ko, en and avoid"):
        terms.load(bad)


#: A particle right after a closing dash ("자원 — 서버, 스토리지 — 을"): Korean attaches it to a noun, so the
#: aside goes into parentheses or the sentence is rebuilt.  (이/가/와/에 are left out: after an opening dash
#: they start a word — "— 이 머신에서".)
PARTICLE_AFTER_DASH = re.compile(r"— ?(을|를|은|는|의|과|로|으로|로는|으로는|에서|에서는|에는|에서도|라는|이라는)"
                                 r"(?=[\s,.:]|$)", re.MULTILINE)


def test_no_particle_follows_a_dash() -> None:
    found = [f"{where}: {line.strip()[:100]!r}" for where, text in korean_texts()
             for line in terms.prose(text).splitlines() if PARTICLE_AFTER_DASH.search(line)]
    assert not found, "a particle after a dash (use parentheses or rebuild the sentence):\n" + "\n".join(found)
