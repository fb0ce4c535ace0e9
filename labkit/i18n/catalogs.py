"""The gettext catalogs under ``labkit/locale``: find, compile and load them.

The ``.po`` files are the source of truth (committed, edited by translators);
the ``.mo`` files next to them are a compiled cache that ``scripts/setup.sh``
writes with Babel (``python -m labkit.i18n compile``) and git ignores.  At run
time nothing is ever written: a ``.mo`` that is missing or older than its
``.po`` (a translator edited it, setup has not run since) is ignored and the
``.po`` is compiled in memory instead, so a learner never sees stale text and
a shared, read-only package directory is never touched by another user.
"""

from __future__ import annotations

import gettext
import io
from pathlib import Path

#: Where the catalogs live: ``<lang>/LC_MESSAGES/<domain>.po``.
LOCALE_DIR = Path(__file__).resolve().parent.parent / "locale"
#: labkit's own strings (lesson's phrases, verdicts, widgets, exercises, doctor).
LABKIT_DOMAIN = "labkit"
#: The prefix of each notebook's domain (``notebook-01_kernel`` ...): its lesson strings.
NOTEBOOK_PREFIX = "notebook-"


def languages() -> tuple[str, ...]:
    """The languages with a catalog of labkit's own strings, sorted (English, the source, is not among them)."""
    return tuple(sorted(p.parent.parent.name for p in LOCALE_DIR.glob(f"*/LC_MESSAGES/{LABKIT_DOMAIN}.po")))


def po_files(lang: str) -> list[Path]:
    """The ``.po`` files of ``lang``: the labkit domain first, then every notebook domain by name."""
    folder = LOCALE_DIR / lang / "LC_MESSAGES"
    return [folder / f"{LABKIT_DOMAIN}.po", *sorted(folder.glob(f"{NOTEBOOK_PREFIX}*.po"))]


def mo_bytes(po: Path) -> bytes:
    """Compile one ``.po`` file to ``.mo`` bytes with Babel (untranslated and fuzzy entries left out)."""
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po

    with po.open("rb") as f:
        catalog = read_po(f, abort_invalid=True)
    out = io.BytesIO()
    write_mo(out, catalog)
    return out.getvalue()


def is_fresh(po: Path) -> bool:
    """Whether the compiled ``.mo`` next to ``po`` exists and is not older than it."""
    mo = po.with_suffix(".mo")
    return mo.is_file() and mo.stat().st_mtime >= po.stat().st_mtime


def load(po: Path) -> gettext.GNUTranslations:
    """One catalog: its fresh ``.mo`` if there is one, else the ``.po`` compiled in memory (nothing written)."""
    data = po.with_suffix(".mo").read_bytes() if is_fresh(po) else mo_bytes(po)
    return gettext.GNUTranslations(io.BytesIO(data))


def translations(lang: str) -> gettext.NullTranslations:
    """All catalogs of ``lang`` chained into one: labkit's domain, falling back to each notebook's."""
    chain: gettext.NullTranslations | None = None
    for po in po_files(lang):
        if not po.is_file():
            continue
        t = load(po)
        if chain is None:
            chain = t
        else:
            chain.add_fallback(t)
    return chain if chain is not None else gettext.NullTranslations()


def compile_all() -> list[Path]:
    """Write the ``.mo`` of every ``.po`` under :data:`LOCALE_DIR` (setup time, by whoever owns the checkout)."""
    written = []
    for po in sorted(LOCALE_DIR.glob("*/LC_MESSAGES/*.po")):
        mo = po.with_suffix(".mo")
        mo.write_bytes(mo_bytes(po))
        written.append(mo)
    return written
