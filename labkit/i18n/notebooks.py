"""The notebooks in another language: generated from the English ones and a translation catalog.

One source, no drift.  ``notebooks/<lang>/catalog/NN_name.yaml`` maps each
English cell id to ``{en: <hash of the English source>, ko: <translation>}``.
The edition ``notebooks/<lang>/NN_name.ipynb`` is *generated*: the English
notebook's cells, ids, tags and metadata, with each markdown cell replaced
by its translation, code cells copied (a code entry may differ from the
English only in ``#`` comments; an exercise's template also in its
docstrings and in the comments of the assembly or XML it holds), and the
parameters cell's ``lang = "en"``
set to the edition's language.  When an English cell changes, its hash no
longer matches and :func:`problems` names the cell to translate again —
``tests/test_translations.py`` turns that into a failing test.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import sys
import tempfile
import tokenize
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import labkit
from labkit.errors import InvalidOptionError, LabkitError, MissingToolError

#: The languages that have a notebook edition (each a folder under notebooks/).
EDITIONS = ("ko",)
#: A comment on an IPython shell line: a `#` after a blank (quotes in shell lines are not parsed here).
_SHELL_COMMENT = re.compile(r"(^|\s)#.*$", re.MULTILINE)
_XML_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
#: The line of every English parameters cell that the edition rewrites.
_LANG_LINE = re.compile(r'^(lang\s*=\s*)"en"', re.MULTILINE)


class TranslationError(LabkitError):
    """An edition cannot be generated: a cell is untranslated, stale or unknown."""


@dataclass(frozen=True)
class Problem:
    """One reason an edition is out of step with its English notebook."""

    notebook: str  # the English notebook's file name
    cell_id: str
    what: str  # what is wrong
    fix: str  # what the translator does about it

    def __str__(self) -> str:
        return f"{self.notebook} cell {self.cell_id}: {self.what} (fix: {self.fix})"


def source_hash(text: str) -> str:
    """The first 12 hex digits of the SHA-256 of a cell's source: what a catalog entry names it by."""
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def catalog_path(english: Path, lang: str) -> Path:
    """Where the catalog of ``english`` in ``lang`` lives: ``notebooks/<lang>/catalog/<stem>.yaml``."""
    return english.parent / lang / "catalog" / f"{english.stem}.yaml"


def edition_path(english: Path, lang: str) -> Path:
    """Where the generated notebook lives: ``notebooks/<lang>/<name>.ipynb``."""
    return english.parent / lang / english.name


def load_catalog(path: Path) -> dict[str, dict[str, Any]]:
    """The catalog's entries by cell id; a missing or malformed file is a :class:`TranslationError`."""
    import yaml

    try:  # BaseLoader: every scalar a string, so ids like 78833246 and hashes like 297600240429 stay text
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=yaml.BaseLoader)  # noqa: S506 (no objects)
    except FileNotFoundError:
        raise TranslationError(f"no translation catalog {path}",
                               f"create it (one entry per markdown cell id of {path.stem}.ipynb)") from None
    except yaml.YAMLError as e:
        raise TranslationError(f"{path} is not valid YAML: {e}",
                               "indent every line of a `ko: |-` block the same") from None
    if not data:
        return {}
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise TranslationError(f"{path} is not a mapping of cell id → {{en, ko}}",
                               "see notebooks/ko/catalog/01_kernel.yaml for the format")
    return {str(k): v for k, v in data.items()}


def code_tokens(source: str, template: bool = False) -> list[tuple[int, str]]:
    """A code cell's tokens without comments: two cells with equal tokens differ only in ``#`` comments.

    IPython lines (``!cmd``, ``%magic``) are not Python; they are compared
    as text, line by line, without their shell comment.  An exercise's
    template (``template``: the cell the learner rewrites, which a reference
    run replaces with the solution) may also translate the prose inside its
    strings: docstrings, and the comments of the assembly or XML it holds
    (:func:`_template_string`).
    """
    lines = source.splitlines(keepends=True)
    shell = [line for line in lines if _ipython(line)]
    python = "".join("\n" if _ipython(line) else line for line in lines)
    try:
        tokens: list[tuple[int, str]] = []
        for t in tokenize.generate_tokens(io.StringIO(python).readline):
            if t.type in (tokenize.COMMENT, tokenize.NL):
                continue
            if template and t.type == tokenize.STRING:  # a statement of its own (after INDENT, NEWLINE): a docstring
                alone = not tokens or tokens[-1][0] in (tokenize.INDENT, tokenize.NEWLINE)
                tokens.append((t.type, "<docstring>" if alone else _template_string(t.string)))
            else:
                tokens.append((t.type, t.string))
    except (tokenize.TokenError, SyntaxError):
        tokens = [(-1, line) for line in python.splitlines()]
    return tokens + [(-2, _SHELL_COMMENT.sub("", line.strip()).rstrip()) for line in shell]


def _ipython(line: str) -> bool:
    """An IPython line (``!cmd``, ``%magic``): not Python, so not tokenized."""
    return line.lstrip().startswith(("!", "%"))


def _template_string(literal: str) -> str:
    """A template's string without the comments of the code it holds: ``# …`` after a blank or at a line's
    start (GNU as, shell) and ``<!-- … -->`` (XML).  ``{x:#x}`` and ``"#"`` keep their ``#``."""
    return _XML_COMMENT.sub("", _SHELL_COMMENT.sub("", literal))


def code_comments(source: str, template: bool = False) -> str:
    """A code cell's ``#`` comments, each on its line (the code blanked): the only prose of a code entry.

    What a term check reads of a translated code cell: its identifiers
    (``ring0``, ``vm_fd``) are code, not words the translation chose.  Of an
    exercise's template (``template``, see :func:`code_tokens`) also its
    strings, where the translation writes docstrings and assembly or XML comments.
    """
    lines = source.splitlines()
    shell = {n for n, line in enumerate(lines) if _ipython(line)}
    comments = [""] * len(lines)
    python = "\n".join("" if n in shell else line for n, line in enumerate(lines))
    try:
        for token in tokenize.generate_tokens(io.StringIO(python).readline):
            if token.type == tokenize.COMMENT:
                comments[token.start[0] - 1] += token.string
            elif template and token.type == tokenize.STRING:
                for row, text in enumerate(token.string.split("\n"), token.start[0] - 1):
                    comments[row] += text + " "
    except (tokenize.TokenError, SyntaxError):
        return source  # not Python after all: all of it is read
    for n in shell:
        found = _SHELL_COMMENT.search(lines[n].strip())
        comments[n] = found.group().strip() if found else ""
    return "\n".join(comments)


def _read(english: Path, lang: str) -> tuple[Any, dict[str, dict[str, Any]]]:
    """The English notebook and its catalog in ``lang``, each read once."""
    import nbformat

    return nbformat.read(english, as_version=4), load_catalog(catalog_path(english, lang))


def _problems(name: str, nb: Any, catalog: dict[str, dict[str, Any]], lang: str) -> list[Problem]:
    """What keeps the English notebook ``nb`` (file ``name``) and its ``catalog`` out of step."""
    found: list[Problem] = []

    def problem(cell_id: str, what: str, fix: str) -> None:
        found.append(Problem(name, cell_id, what, fix))

    cells = {cell.id: cell for cell in nb.cells}
    for cell in nb.cells:
        entry = catalog.get(cell.id)
        if entry is None:
            if cell.cell_type == "markdown":
                problem(cell.id, "has no translation",
                        f"add `{cell.id}: {{en: {source_hash(cell.source)}, {lang}: …}}` to the catalog")
            continue
        text = entry.get(lang)
        if not isinstance(text, str) or text.strip() in ("", "null", "~"):
            problem(cell.id, "its translation is empty", f"write the `{lang}:` text")
            continue
        if entry.get("en") != source_hash(cell.source):
            problem(cell.id, "the English cell changed since it was translated",
                    f"translate it again and set `en: {source_hash(cell.source)}`")
        template = any(tag.startswith("exercise:") for tag in cell.metadata.get("tags", []))
        if cell.cell_type == "code" and code_tokens(text, template) != code_tokens(cell.source, template):
            problem(cell.id, "the translated code cell differs from the English in more than comments",
                    "copy the English code and translate only the # comments")
    for cell_id in catalog:
        if cell_id not in cells:
            problem(cell_id, "is not a cell of the English notebook", "remove the entry (the cell was deleted)")
    return found


def problems(english: Path, lang: str) -> list[Problem]:
    """Everything that keeps ``english``'s edition in ``lang`` from being generated (empty: all in step)."""
    return _problems(english.name, *_read(english, lang), lang)


def translate(english: Path, lang: str) -> Any:
    """The edition of ``english`` in ``lang`` as a notebook object, outputs cleared (running fills them)."""
    nb, catalog = _read(english, lang)
    wrong = _problems(english.name, nb, catalog, lang)
    if wrong:
        raise TranslationError(f"{len(wrong)} cell(s) of {english.name} are not translated in step:\n  "
                               + "\n  ".join(map(str, wrong)),
                               f"edit {catalog_path(english, lang)}, then run ./kvmlab notebooks")
    nb.metadata["language"] = lang
    nb.metadata.pop("widgets", None)  # saved widget state belongs to an executed notebook
    for cell in nb.cells:
        if cell.id in catalog:
            cell.source = catalog[cell.id][lang].rstrip("\n")
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
            if "parameters" in cell.metadata.get("tags", []):
                cell.source, n = _LANG_LINE.subn(rf'\g<1>"{lang}"', cell.source)
                if n != 1:
                    raise TranslationError(f"{english.name}'s parameters cell has no line `lang = \"en\"`",
                                           "add it: the edition sets it to its own language")
    return nb


def _on_disk_is(out: Path, edition: Any) -> bool:
    """Whether the notebook at ``out`` has exactly ``edition``'s cells: ids, types, sources, and the metadata the
    lab reads (tags; ``labkit``, the results a parameters cell declares) — not outputs, nor the execution
    timestamps that differ between two runs."""
    import nbformat

    def cells(nb: Any) -> list[tuple[str, str, str, Any, Any]]:
        return [(c.id, c.cell_type, c.source, c.metadata.get("tags"), c.metadata.get("labkit")) for c in nb.cells]
    return out.is_file() and cells(nbformat.read(out, as_version=4)) == cells(edition)


def in_step(english: Path, lang: str) -> bool:
    """Whether the edition on disk has exactly the cells generation would write (see :func:`_on_disk_is`)."""
    return _on_disk_is(edition_path(english, lang), translate(english, lang))


def generate(english: Path, lang: str) -> Path | None:
    """Write the edition of ``english`` in ``lang`` unless it is in step; the path written, else None.

    An edition in step is left alone, so its executed outputs (what nbval
    compares) survive.  Writing is atomic: never a half-written notebook.
    """
    import nbformat

    nb = translate(english, lang)
    out = edition_path(english, lang)
    if _on_disk_is(out, nb):
        return None
    fd, tmp = tempfile.mkstemp(prefix=f".{out.stem}.", suffix=".ipynb", dir=out.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            nbformat.write(nb, f)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out


def english_notebooks(folder: Path) -> list[Path]:
    """The English notebooks that have editions: ``NN_name.ipynb`` directly under ``folder``."""
    return sorted(folder.glob("[0-9][0-9]*_*.ipynb"))


def notebooks_dir() -> Path:
    """The lab's notebooks: next to the labkit package in a checkout, else ./notebooks."""
    for candidate in (Path(labkit.__file__).resolve().parent.parent / "notebooks", Path.cwd() / "notebooks"):
        if candidate.is_dir():
            return candidate
    raise MissingToolError("cannot find the notebooks/ folder", "run from the KVM Lab checkout, or name notebooks")


def edition_dir(lang: str = "en") -> Path:
    """The folder of the notebooks in ``lang``: notebooks/ for English, notebooks/<lang>/ for an edition."""
    from labkit.i18n import ENGLISH

    if lang == ENGLISH:
        return notebooks_dir()
    if lang not in EDITIONS:
        raise InvalidOptionError(f"the notebooks have no edition in {lang!r}",
                                 f"choose --lang from: {', '.join((ENGLISH, *EDITIONS))}")
    return notebooks_dir() / lang


def main(argv: list[str]) -> int:
    """``python -m labkit.i18n.notebooks [ENGLISH.ipynb...]``: regenerate the editions that are out of step.

    Prints each edition written (``./kvmlab notebooks`` then executes them);
    a catalog out of step is one ``labkit: error``/``fix`` message, exit 2.
    """
    named = [Path(a) for a in argv]
    # an edition named on the command line stands for its English source
    sources = sorted({p.parent.parent / p.name if p.parent.name in EDITIONS else p for p in named}) \
        or english_notebooks(notebooks_dir())
    try:
        for english in sources:
            for lang in EDITIONS:
                written = generate(english, lang)
                if written:
                    print(os.path.relpath(written))
    except LabkitError as e:
        print(f"labkit: error: {e.what}\nfix: {e.fix}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
