"""The Korean edition stays in step with the English notebooks (the drift test of issue 15).

The first tests read the real notebooks and catalogs: they fail when an
English cell changed and its translation did not, when a markdown cell has
no translation, or when a committed edition is not what the catalog
generates.  The rest drive :mod:`labkit.i18n.notebooks` on small scratch
notebooks, including the failure a translator sees after an English edit.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
import yaml

from labkit.i18n import notebooks as editions

ROOT = Path(__file__).resolve().parent.parent
ENGLISH = editions.english_notebooks(ROOT / "notebooks")


def test_every_english_notebook_has_an_edition_and_a_catalog() -> None:
    assert [p.name for p in ENGLISH] == ["01_kernel.ipynb", "02_hypervisor_types.ipynb", "03_kvm.ipynb",
                                         "03b_kvm_cpu_modes.ipynb", "04_qemu.ipynb", "04b_memory_storage_network.ipynb",
                                         "05_libvirt.ipynb", "06_own_vmm.ipynb"]
    for english in ENGLISH:
        for lang in editions.EDITIONS:
            assert editions.catalog_path(english, lang).is_file()
            assert editions.edition_path(english, lang).is_file()


@pytest.mark.parametrize("english", ENGLISH, ids=lambda p: p.stem)
@pytest.mark.parametrize("lang", editions.EDITIONS)
def test_catalog_is_in_step_with_the_english_notebook(english: Path, lang: str) -> None:
    wrong = editions.problems(english, lang)
    assert wrong == [], "\n".join(map(str, wrong))


@pytest.mark.parametrize("english", ENGLISH, ids=lambda p: p.stem)
@pytest.mark.parametrize("lang", editions.EDITIONS)
def test_committed_edition_is_what_the_catalog_generates(english: Path, lang: str) -> None:
    edition = nbformat.read(editions.edition_path(english, lang), as_version=4)
    source = nbformat.read(english, as_version=4)
    assert [c.id for c in edition.cells] == [c.id for c in source.cells]
    assert editions.in_step(english, lang), f"{editions.edition_path(english, lang)} is stale: run ./kvmlab notebooks"


# --- the generator and the drift check on scratch notebooks ------------------------------------------

def _scratch(tmp_path: Path) -> Path:
    """notebooks/01_demo.ipynb with a markdown, a parameters, a code and a shell cell, and its ko catalog."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("# 01 · Demo\n\nThe kernel owns the hardware.", id="intro"),
        nbformat.v4.new_code_cell('budget = 3\nlang = "en"   # language of labkit\'s messages', id="params",
                                  metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("x = 1  # one\nprint(x)", id="code"),
        nbformat.v4.new_code_cell("!ls /dev/kvm  # the door", id="shell"),
        nbformat.v4.new_markdown_cell("## 1. Next", id="next"),
    ]
    nb.cells[2].outputs = [nbformat.v4.new_output("stream", text="1\n")]
    folder = tmp_path / "notebooks"
    (folder / "ko" / "catalog").mkdir(parents=True)
    english = folder / "01_demo.ipynb"
    nbformat.write(nb, english)
    catalog = {
        "intro": {"en": editions.source_hash(nb.cells[0].source), "ko": "# 01 · 데모\n\n커널은 하드웨어를 소유한다.\n"},
        "code": {"en": editions.source_hash(nb.cells[2].source), "ko": "x = 1  # 하나\nprint(x)"},
        "shell": {"en": editions.source_hash(nb.cells[3].source), "ko": "!ls /dev/kvm  # 문"},
        "next": {"en": editions.source_hash(nb.cells[4].source), "ko": "## 1. 다음"},
    }
    editions.catalog_path(english, "ko").write_text(yaml.safe_dump(catalog, allow_unicode=True), encoding="utf-8")
    return english


def _edit_english(english: Path, cell_id: str, source: str) -> None:
    nb = nbformat.read(english, as_version=4)
    next(c for c in nb.cells if c.id == cell_id).source = source
    nbformat.write(nb, english)


def test_generated_edition_translates_markdown_and_keeps_the_code(tmp_path: Path) -> None:
    english = _scratch(tmp_path)
    written = editions.generate(english, "ko")
    assert written == tmp_path / "notebooks" / "ko" / "01_demo.ipynb"
    nb = nbformat.read(written, as_version=4)
    assert [c.id for c in nb.cells] == ["intro", "params", "code", "shell", "next"]
    assert nb.cells[0].source == "# 01 · 데모\n\n커널은 하드웨어를 소유한다."
    assert nb.cells[1].source == 'budget = 3\nlang = "ko"   # language of labkit\'s messages'
    assert nb.cells[1].metadata["tags"] == ["parameters"]
    assert nb.cells[2].source == "x = 1  # 하나\nprint(x)"
    assert nb.cells[2].outputs == []
    assert nb.metadata["language"] == "ko"
    assert list(written.parent.glob(".*")) == []  # no temp file left behind


def test_an_edition_in_step_is_not_rewritten(tmp_path: Path) -> None:
    english = _scratch(tmp_path)
    written = editions.generate(english, "ko")
    assert written is not None
    nb = nbformat.read(written, as_version=4)
    nb.cells[2].outputs = [nbformat.v4.new_output("stream", text="1\n")]  # as if executed
    nbformat.write(nb, written)
    assert editions.generate(english, "ko") is None
    assert nbformat.read(written, as_version=4).cells[2].outputs  # the executed outputs survive


def test_a_changed_declaration_puts_the_edition_out_of_step(tmp_path: Path) -> None:
    """The parameters cell's ``labkit`` metadata (what each parameter drives) is copied: an English change to it
    alone regenerates the edition; an execution timestamp does not."""
    english = _scratch(tmp_path)
    assert editions.generate(english, "ko") is not None
    nb = nbformat.read(english, as_version=4)
    nb.cells[2].metadata["execution"] = {"iopub.execute_input": "2026-12-07T13:00:00Z"}
    nbformat.write(nb, english)
    assert editions.in_step(english, "ko")
    nb.cells[1].metadata["labkit"] = {"parameters": {"budget": {"drives": ["speed"]}}}
    nbformat.write(nb, english)
    assert not editions.in_step(english, "ko")
    written = editions.generate(english, "ko")
    assert written is not None and nbformat.read(written, as_version=4).cells[1].metadata["labkit"] == \
        {"parameters": {"budget": {"drives": ["speed"]}}}


def test_drift_a_changed_english_cell_names_that_cell(tmp_path: Path) -> None:
    english = _scratch(tmp_path)
    assert editions.problems(english, "ko") == []
    _edit_english(english, "next", "## 1. Next, and a new sentence.")
    wrong = editions.problems(english, "ko")
    assert [(p.cell_id, p.what) for p in wrong] == [("next", "the English cell changed since it was translated")]
    assert editions.source_hash("## 1. Next, and a new sentence.") in wrong[0].fix
    with pytest.raises(editions.TranslationError, match="01_demo.ipynb cell next"):
        editions.generate(english, "ko")


def test_drift_new_deleted_and_untranslated_cells(tmp_path: Path) -> None:
    english = _scratch(tmp_path)
    nb = nbformat.read(english, as_version=4)
    nb.cells.append(nbformat.v4.new_markdown_cell("A new paragraph.", id="added"))
    nb.cells = [c for c in nb.cells if c.id != "next"]
    nbformat.write(nb, english)
    wrong = {(p.cell_id, p.what) for p in editions.problems(english, "ko")}
    assert wrong == {("added", "has no translation"), ("next", "is not a cell of the English notebook")}


def test_a_translated_code_cell_may_differ_only_in_comments(tmp_path: Path) -> None:
    english = _scratch(tmp_path)
    path = editions.catalog_path(english, "ko")
    catalog = yaml.safe_load(path.read_text(encoding="utf-8"))
    catalog["code"]["ko"] = "x = 2  # 둘\nprint(x)"
    catalog["shell"]["ko"] = "!ls -l /dev/kvm  # 문"
    path.write_text(yaml.safe_dump(catalog, allow_unicode=True), encoding="utf-8")
    wrong = {(p.cell_id, p.what) for p in editions.problems(english, "ko")}
    assert wrong == {("code", "the translated code cell differs from the English in more than comments"),
                     ("shell", "the translated code cell differs from the English in more than comments")}


TEMPLATE = ('my_guest = r"""\n# Print your digits, then halt.\nstart:\n    mov dx, SERIAL_PORT   # COM1\n    hlt\n"""\n'
            'my_xml = """<domain>  <!-- your machine -->  </domain>"""\n\n\n'
            'class MyDevice:\n    """The calculator."""\n\n    def read(self) -> bytes:\n        """Return them."""\n'
            '        return bytes(f"{1:#x}", "ascii")\n')
TEMPLATE_KO = TEMPLATE.replace("Print your digits, then halt.", "숫자를 출력하고 멈춘다.").replace(
    "# COM1", "# COM1의 데이터 레지스터").replace("your machine", "여러분의 머신").replace(
    "The calculator.", "계산기.").replace("Return them.", "그 바이트를 돌려준다.")


@pytest.mark.parametrize(("tags", "ko", "in_step"), [
    (["exercise:demo"], TEMPLATE_KO, True),  # docstrings, and the assembly's and the XML's comments
    (["exercise:demo"], TEMPLATE_KO.replace("hlt", "nop"), False),  # the assembly itself is code
    (["exercise:demo"], TEMPLATE_KO.replace("{1:#x}", "{1:x}"), False),  # a format's # is no comment
    ([], TEMPLATE_KO, False),  # outside a template, a string is code
])
def test_an_exercise_template_may_translate_the_prose_in_its_strings(
        tmp_path: Path, tags: list[str], ko: str, in_step: bool) -> None:
    english = _scratch(tmp_path)
    nb = nbformat.read(english, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(TEMPLATE, id="template", metadata={"tags": tags}))
    nbformat.write(nb, english)
    path = editions.catalog_path(english, "ko")
    catalog = yaml.safe_load(path.read_text(encoding="utf-8"))
    catalog["template"] = {"en": editions.source_hash(TEMPLATE), "ko": ko}
    path.write_text(yaml.safe_dump(catalog, allow_unicode=True), encoding="utf-8")
    assert (editions.problems(english, "ko") == []) == in_step, editions.problems(english, "ko")


def test_a_parameters_cell_without_lang_is_an_error(tmp_path: Path) -> None:
    english = _scratch(tmp_path)
    _edit_english(english, "params", "budget = 3")
    with pytest.raises(editions.TranslationError, match='no line `lang = "en"`'):
        editions.translate(english, "ko")


def test_broken_or_missing_catalog_is_one_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    english = _scratch(tmp_path)
    path = editions.catalog_path(english, "ko")
    path.write_text("intro:\n  en: abc\n  ko: |-\n  not indented\n", encoding="utf-8")
    with pytest.raises(editions.TranslationError, match="not valid YAML"):
        editions.problems(english, "ko")
    path.unlink()
    assert editions.main([str(english)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("labkit: error: no translation catalog") and "\nfix: " in err
    assert "Traceback" not in err


def test_main_names_the_editions_it_writes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    english = _scratch(tmp_path)
    edition = editions.edition_path(english, "ko")
    assert editions.main([str(edition)]) == 0  # an edition named stands for its English source
    assert [Path(p).resolve() for p in capsys.readouterr().out.split()] == [edition.resolve()]
    assert editions.main([str(english)]) == 0
    assert capsys.readouterr().out == ""  # in step: nothing written
