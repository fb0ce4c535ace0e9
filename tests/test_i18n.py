"""labkit's runtime messages in other languages (issue 15): catalogs complete, language chosen right, Korean printed.

The catalog tests read the real ``labkit/locale`` files; the behaviour tests
write a small catalog of their own under ``tmp_path`` (so they do not depend
on how far the translators are) and point :mod:`labkit.i18n.catalogs` at it.
"""

from __future__ import annotations

import ast
import os
import string
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po
from IPython.core.inputtransformer2 import TransformerManager

from labkit import i18n, lesson
from labkit.errors import InvalidOptionError
from labkit.i18n import catalogs

TOP = Path(__file__).resolve().parent.parent
KO = catalogs.LOCALE_DIR / "ko" / "LC_MESSAGES"
#: Which argument of each lesson function is text for the learner: (positional index, keyword) pairs.
LESSON_TEXT = {"check": ((0, "claim"),), "unknown": ((0, "because"),), "say": ((0, "text"),), "text": ((0, "words"),),
               "ready": ((0, "question"), (3, "why"), (4, "hint"))}
LANG_VARIABLES = ("LABKIT_LANG", *i18n.LOCALE_VARIABLES)


@pytest.fixture(autouse=True)
def english_afterwards() -> Iterator[None]:
    """Each test starts and ends in English with the real catalogs (the language is process-wide)."""
    i18n.use(i18n.ENGLISH)
    yield
    i18n.reload()
    i18n.use(i18n.ENGLISH)


@pytest.fixture
def no_language_set(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for var in LANG_VARIABLES:
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


def placeholders(text: str) -> set[tuple[str, str | None]]:
    """The ``{name!conv}`` fields of a format string (literal ``{{`` excluded)."""
    return {(name, conv) for _, name, _, conv in string.Formatter().parse(text) if name is not None}


def po(path: Path) -> dict[str, str]:
    """msgid -> msgstr of a .po file (the header left out)."""
    with path.open("rb") as f:
        return {m.id: m.string for m in read_po(f, abort_invalid=True) if m.id}


# --------------------------------------------------------------------------- the catalogs are complete

def marked_strings() -> dict[str, str]:
    """Every ``_()``/``N_()`` string in labkit's code -> the file that marks it (Babel's extractor)."""
    return {msg: fn for fn, _, msg, _, _ in extract_from_dir(str(TOP / "labkit"), method_map=[("**.py", "python")])}


def test_every_marked_string_has_a_korean_translation_with_the_same_placeholders() -> None:
    ko = po(KO / "labkit.po")
    marked = marked_strings()
    assert len(marked) > 40, "the extraction found (almost) nothing: is Babel's python extractor still used?"
    missing = [f"{fn}: {m!r}" for m, fn in marked.items() if not ko.get(m)]
    assert not missing, "strings marked with _() but not translated in labkit.po:\n" + "\n".join(missing)
    wrong = [m for m in marked if placeholders(ko[m]) != placeholders(m)]
    assert not wrong, f"the Korean of these strings has other placeholders: {wrong}"


def test_no_string_is_marked_inside_an_f_string() -> None:
    """Babel's extractor does not look into f-string fields: ``f"{_('x')}"`` would never reach labkit.po."""
    hidden = [f"{p.relative_to(TOP)}:{n}" for p in sorted((TOP / "labkit").rglob("*.py"))
              for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
              if "{_(" in line or "{N_(" in line]
    assert not hidden, f"take these _() calls out of the f-string: {hidden}"


def test_labkit_po_holds_no_string_the_code_no_longer_marks() -> None:
    stale = set(po(KO / "labkit.po")) - set(marked_strings())
    assert not stale, f"labkit.po translates strings no code marks any more (remove them): {sorted(stale)}"


def lesson_strings(source: str) -> tuple[list[str], list[str]]:
    """The literal texts a code cell passes to lesson.check/unknown/ready, and the non-literal ones."""
    tree = ast.parse(TransformerManager().transform_cell(source))  # `!cmd` and `%magic` lines become Python
    literal, other = [], []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "lesson"
                and node.func.attr in LESSON_TEXT):
            continue
        keywords = {k.arg: k.value for k in node.keywords}
        for index, name in LESSON_TEXT[node.func.attr]:
            arg = node.args[index] if index < len(node.args) else keywords.get(name)
            if arg is None:
                continue
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                literal.append(arg.value)
            else:
                other.append(ast.unparse(arg))
    return literal, other


ENGLISH_NOTEBOOKS = sorted((TOP / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("notebook", ENGLISH_NOTEBOOKS, ids=lambda p: p.stem)
def test_every_lesson_string_of_a_notebook_is_translated(notebook: Path) -> None:
    """A claim, reason or question the English notebook prints has its Korean in notebook-NN.po.

    Fails while the translators' catalogs are incomplete: that is the point.
    """
    literal, other = [], []
    for cell in nbformat.read(notebook, 4).cells:
        if cell.cell_type == "code":
            found, not_literal = lesson_strings(cell.source)
            literal += found
            other += not_literal
    assert literal, f"{notebook.name}: no lesson.check/unknown/ready found: has the notebook's API changed?"
    assert not other, (f"{notebook.name}: lesson texts must be string literals (gettext cannot find an f-string); "
                       f"pass values as keyword arguments, e.g. lesson.unknown('… ({{source}})', source=x): {other}")
    ko = po(KO / f"notebook-{notebook.stem}.po")
    missing = [m for m in literal if not ko.get(m)]
    assert not missing, f"no Korean in notebook-{notebook.stem}.po for:\n" + "\n".join(missing)
    wrong = [m for m in literal if placeholders(ko[m]) != placeholders(m)]
    assert not wrong, f"the Korean of these strings has other placeholders: {wrong}"


def test_lesson_strings_are_found_in_every_form_the_notebooks_use() -> None:
    literal, other = lesson_strings('!ls /dev/kvm\nlesson.check("a", x)\n'
                                    'lesson.ready("q", answer=None, right="y", why="w", hint="h")\n'
                                    'lesson.ready("q2", None, "y", "w2")\n'
                                    'lesson.unknown(f"x {y}")\nlesson.unknown("b ({z})", z=1)')
    assert sorted(literal) == sorted(["a", "q", "w", "h", "q2", "w2", "b ({z})"])
    assert other == ["f'x {y}'"]


@pytest.mark.parametrize("notebook", ENGLISH_NOTEBOOKS, ids=lambda p: p.stem)
def test_every_notebook_chooses_its_language_first(notebook: Path) -> None:
    """``lang = "en"`` in the parameters cell, ``i18n.use(lang)`` in the next cell before anything prints.

    The Korean edition is generated by setting ``lang = "ko"`` there, so both must stay where they are.
    """
    cells = nbformat.read(notebook, 4).cells
    index = next(i for i, c in enumerate(cells) if "parameters" in c.metadata.get("tags", []))
    assert any(line.startswith('lang = "en"') for line in cells[index].source.splitlines())
    setup = ast.parse(cells[index + 1].source)
    calls = [ast.unparse(n) for n in setup.body if isinstance(n, (ast.Expr, ast.Assign))]
    assert calls and calls[0] == "i18n.use(lang)", f"the setup cell's first statement after the imports: {calls[:1]}"


# --------------------------------------------------------------------------- a catalog of our own

@pytest.fixture
def korean_catalogs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A locale dir with a labkit domain (the real Korean one) and one small notebook domain."""
    folder = tmp_path / "ko" / "LC_MESSAGES"
    folder.mkdir(parents=True)
    (folder / "labkit.po").write_bytes((KO / "labkit.po").read_bytes())
    (folder / "notebook-99_test.po").write_text(
        'msgid ""\nmsgstr ""\n"Content-Type: text/plain; charset=UTF-8\\n"\n"Language: ko\\n"\n\n'
        'msgid "the kernel manages the hardware"\nmsgstr "커널은 하드웨어를 관리한다"\n\n'
        'msgid "the file {path} is missing here ({source})"\nmsgstr "여기에는 {source}: {path} 파일이 없다"\n\n'
        'msgid "which one sets the bit?"\nmsgstr "어느 쪽이 그 비트를 켜는가?"\n\n'
        'msgid "only a hypervisor sets it"\nmsgstr "하이퍼바이저만 그 비트를 켠다"\n\n'
        'msgid "not translated yet"\nmsgstr ""\n', encoding="utf-8")
    monkeypatch.setattr(catalogs, "LOCALE_DIR", tmp_path)
    i18n.reload()
    return folder


def test_use_ko_then_check_prints_korean(korean_catalogs: Path, capsys: pytest.CaptureFixture) -> None:
    assert i18n.use("ko") == "ko" and i18n.current() == "ko"
    lesson.check("the kernel manages the hardware", True)
    lesson.check("the kernel manages the hardware", lesson.unknown("the file {path} is missing here ({source})",
                                                                   path="/dev/kvm", source="modinfo"))
    lesson.check("not translated yet", True)
    assert capsys.readouterr().out.splitlines() == [
        "✔ 커널은 하드웨어를 관리한다",
        # the reason's placeholders filled after translation, in the translator's order
        "○ 이 호스트에서는 확인할 수 없음: 커널은 하드웨어를 관리한다 (이유: 여기에는 modinfo: /dev/kvm 파일이 없다)",
        "✔ not translated yet",  # untranslated: English, not empty
    ]


def test_ready_and_a_failed_claim_in_korean(korean_catalogs: Path, capsys: pytest.CaptureFixture) -> None:
    i18n.use("ko")
    lesson.ready("which one sets the bit?", None, "hypervisor", why="only a hypervisor sets it")
    lesson.ready("which one sets the bit?", "hypervisor", "hypervisor", why="only a hypervisor sets it")
    lesson.ready("which one sets the bit?", "cpu", "hypervisor", why="only a hypervisor sets it")
    assert capsys.readouterr().out.splitlines() == [
        "→ 다음으로 넘어갈 준비가 됐나? 어느 쪽이 그 비트를 켜는가?  "
        "(answer=…에 답을 넣고 이 셀을 다시 실행해 보자. 한국어로 답해도 된다)",
        "✔ 넘어갈 준비가 됐다: 하이퍼바이저만 그 비트를 켠다",
        "↺ 조금 다르다 ('cpu'): 위 절을 다시 읽어 보자 — 그래도 넘어가도 된다",
    ]
    with pytest.raises(lesson.ClaimFailed) as failed:
        lesson.check("the kernel manages the hardware", False, "evidence")
    assert failed.value.what == ("실습은 '커널은 하드웨어를 관리한다'라고 주장하지만, 이 호스트에서는 그렇지 않다. "
                                 "evidence")
    assert failed.value.fix.startswith("`labkit doctor`를 실행하고")


def test_english_is_the_source_text(korean_catalogs: Path, capsys: pytest.CaptureFixture) -> None:
    i18n.use("ko")
    i18n.use("en")
    lesson.check("the kernel manages the hardware", lesson.unknown("the file {path} is missing here ({source})",
                                                                   path="/x", source="y"))
    assert capsys.readouterr().out == ("○ not checkable on this host: the kernel manages the hardware "
                                       "(because the file /x is missing here (y))\n")


def test_a_stale_mo_is_not_used_and_a_fresh_one_is(korean_catalogs: Path) -> None:
    po_file = korean_catalogs / "notebook-99_test.po"
    mo_file = po_file.with_suffix(".mo")
    po_file.write_text(po_file.read_text(encoding="utf-8").replace("관리한다", "다룬다"), encoding="utf-8")
    mo_file.write_bytes(catalogs.mo_bytes(po_file))  # compiled from "다룬다"
    po_file.write_text(po_file.read_text(encoding="utf-8").replace("다룬다", "관리한다"), encoding="utf-8")
    os.utime(mo_file, (1, 1))  # the translator edited the .po after setup compiled it
    assert not catalogs.is_fresh(po_file)
    assert catalogs.translations("ko").gettext("the kernel manages the hardware") == "커널은 하드웨어를 관리한다"
    os.utime(po_file, (1, 1))  # now the .mo is the newer one: it is what is read
    assert catalogs.is_fresh(po_file)
    assert catalogs.translations("ko").gettext("the kernel manages the hardware") == "커널은 하드웨어를 다룬다"


# --------------------------------------------------------------------------- which language

@pytest.mark.parametrize("env, asked, expected", [
    ({}, None, "en"),
    ({"LABKIT_LANG": "ko"}, None, "ko"),
    ({"LABKIT_LANG": "ko"}, "en", "en"),                     # the notebook's parameter wins
    ({"LABKIT_LANG": "en", "LANG": "ko_KR.UTF-8"}, None, "en"),  # LABKIT_LANG before the locale
    ({"LANG": "ko_KR.UTF-8"}, None, "ko"),
    ({"LC_MESSAGES": "ko_KR.UTF-8", "LANG": "en_US.UTF-8"}, None, "ko"),
    ({"LC_ALL": "C", "LANG": "ko_KR.UTF-8"}, None, "en"),      # LC_ALL overrides the rest, as in gettext
    ({"LANG": "de_DE.UTF-8"}, None, "en"),                  # a locale with no catalog: English
    ({"LABKIT_LANG": "ko_KR.UTF-8"}, None, "ko"),
    ({"LABKIT_LANG": "ko"}, "", "ko"),                      # an empty parameter means "not given"
])
def test_language_precedence(no_language_set: pytest.MonkeyPatch, env: dict[str, str], asked: str | None,
                             expected: str) -> None:
    for var, value in env.items():
        no_language_set.setenv(var, value)
    assert i18n.use(asked) == expected == i18n.current()


def test_available_languages_come_from_the_catalogs() -> None:
    assert i18n.available() == ("en", "ko")


@pytest.mark.parametrize("asked, env", [("fr", {}), (None, {"LABKIT_LANG": "klingon"})])
def test_an_unknown_language_is_an_error_with_the_choices(no_language_set: pytest.MonkeyPatch, asked: str | None,
                                                          env: dict[str, str]) -> None:
    for var, value in env.items():
        no_language_set.setenv(var, value)
    with pytest.raises(InvalidOptionError) as error:
        i18n.use(asked)
    assert "fr" in error.value.what or "klingon" in error.value.what
    assert error.value.fix == "use one of: en, ko"
    assert i18n.current() == "en"  # unchanged


# --------------------------------------------------------------------------- the command line

def labkit(*args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in LANG_VARIABLES}
    return subprocess.run([sys.executable, "-m", "labkit", *args], capture_output=True, text=True,
                          env={**clean, **env})


def test_doctor_in_korean() -> None:
    run = labkit("doctor", LABKIT_LANG="ko")
    assert run.returncode in (0, 1), run.stderr
    assert "Traceback" not in run.stderr
    last = run.stdout.strip().splitlines()[-1]
    assert last.startswith(("준비됨:", "부분적으로 준비됨:", "준비 안 됨:")), last
    assert not [line for line in run.stdout.splitlines() if line.strip().startswith("fix:")]


def test_an_unknown_language_in_the_cli_is_one_clear_error() -> None:
    run = labkit("doctor", LABKIT_LANG="xx")
    assert run.returncode == 2
    assert run.stderr.splitlines() == ["labkit: error: labkit has no messages in the language LABKIT_LANG='xx'",
                                       "  fix: use one of: en, ko"]


def test_compile_command_rejects_anything_else() -> None:
    run = subprocess.run([sys.executable, "-m", "labkit.i18n", "extract"], capture_output=True, text=True)
    assert run.returncode == 2
    assert run.stderr.startswith("labkit: error:") and "fix: python -m labkit.i18n compile" in run.stderr


# --------------------------------------------------------------------------- particles and phrases

@pytest.mark.parametrize("template, word, expected", [
    ("{x}을(를) 실행했다", "KVM", "KVM을 실행했다"),      # 엠: a final consonant
    ("{x}을(를) 실행했다", "QEMU", "QEMU를 실행했다"),    # 유: none
    ("{x}이(가) 있다", "커널", "커널이 있다"),
    ("{x}이(가) 있다", "리눅스", "리눅스가 있다"),
    ("{x}(으)로 간다", "파일", "파일로 간다"),            # ㄹ takes 로
    ("{x}(으)로 간다", "KVM", "KVM으로 간다"),
    ("{x}(이)다", "'ok'", "'ok'다"),                      # quotes are not read aloud
    ("{x}은(는) 같다", "(41, 42, 43)", "(41, 42, 43)은 같다"),  # 삼
    ("{x}와(과) {y}", "7", "7과 {y}"),                     # 칠
])
def test_particles_fit_the_inserted_word(template: str, word: str, expected: str) -> None:
    from labkit.i18n import particles
    assert particles.resolve(template.replace("{x}", word)) == expected
    assert particles.Translated(template).format(x=word, y="{y}") == expected


def test_a_phrase_is_english_and_shows_the_language_of_the_moment(korean_catalogs: Path) -> None:
    (korean_catalogs / "notebook-99_test.po").write_text(
        'msgid ""\nmsgstr ""\n"Content-Type: text/plain; charset=UTF-8\\n"\n"Language: ko\\n"\n\n'
        'msgid "guest driver {module} is loaded"\nmsgstr "게스트 드라이버 {module}(이)가 로드되어 있다"\n',
        encoding="utf-8")
    i18n.reload()
    i18n.use("ko")
    said = i18n.Phrase("guest driver {module} is loaded", module="virtio_pci")
    assert said == "guest driver virtio_pci is loaded"  # data, JSON and tests see English
    assert str(said) == f"{said}" == "게스트 드라이버 virtio_pci가 로드되어 있다"
    assert str(i18n.joined([said, "x"], "; ")) == "게스트 드라이버 virtio_pci가 로드되어 있다; x"
    i18n.use("en")
    assert str(said) == "guest driver virtio_pci is loaded"
