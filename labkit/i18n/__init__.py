"""The language labkit speaks: English source strings, translated at run time with gettext.

Notebook code stays one line of English (``lesson.check("…", holds)``); what
it prints comes out in the language chosen by :func:`use` — the notebook's
``lang`` parameter, else ``LABKIT_LANG``, else the locale (``LC_ALL``,
``LC_MESSAGES``, ``LANG``), else English.  Strings are looked up in the
``labkit`` domain (labkit's own phrases) and then in every ``notebook-*``
domain of that language (each notebook's lesson strings), see
:mod:`labkit.i18n.catalogs`.  An untranslated string prints in English.

Code marks its strings with ``_("…")`` and formats placeholders *after*
translation (``_("{n} guests").format(n=n)``) so that translators can move
them.
"""

from __future__ import annotations

import gettext as _gettext
import os
from collections.abc import Iterable
from functools import cache

from labkit.errors import InvalidOptionError
from labkit.i18n import catalogs, particles

#: The language of the source strings: translating to it changes nothing.
ENGLISH = "en"
#: The environment variables read, in order, when no language is given (the first set one wins).
LOCALE_VARIABLES = ("LC_ALL", "LC_MESSAGES", "LANG")

_current = ENGLISH
_active: _gettext.NullTranslations = _gettext.NullTranslations()


def available() -> tuple[str, ...]:
    """The languages labkit can speak: English and each language with a ``labkit.po``."""
    return (ENGLISH, *(lang for lang in catalogs.languages() if lang != ENGLISH))


def _language_of_locale(value: str) -> str:
    """The language part of a locale name: ``ko_KR.UTF-8`` → ``ko``; ``C``/``POSIX`` → English.

    Anything else that has no language part (``../../etc/passwd`` → ``""``)
    stays unknown, so an explicit choice of it is an error, not English.
    """
    lang = value.split(".")[0].split("@")[0].split("_")[0].lower()
    return ENGLISH if lang in ("c", "posix") else lang


def resolve(lang: str | None = None) -> str:
    """The language to speak: ``lang``, else ``LABKIT_LANG``, else the locale, else English.

    An explicit ``lang`` or ``LABKIT_LANG`` that labkit has no catalog for is
    an error (a typo should not silently give English); a locale language
    without a catalog (a learner's ``de_DE.UTF-8``) means English, as for any
    gettext program.
    """
    asked = (lang or "").strip() or os.environ.get("LABKIT_LANG", "").strip()
    if asked:
        code = _language_of_locale(asked)
        if code not in available():
            where = f"lang={lang!r}" if (lang or "").strip() else f"LABKIT_LANG={asked!r}"
            raise InvalidOptionError(f"labkit has no messages in the language {where}",
                                     f"use one of: {', '.join(available())}")
        return code
    for var in LOCALE_VARIABLES:
        value = os.environ.get(var, "").strip()
        if value:
            code = _language_of_locale(value)
            return code if code in available() else ENGLISH
    return ENGLISH


@cache
def _translations(lang: str) -> _gettext.NullTranslations:
    """The loaded catalogs of ``lang`` (loaded once per process)."""
    return _gettext.NullTranslations() if lang == ENGLISH else catalogs.translations(lang)


def reload() -> None:
    """Forget the loaded catalogs: the next :func:`use` reads them again (a translator's edit, a test's own)."""
    _translations.cache_clear()


def use(lang: str | None = None) -> str:
    """Speak ``lang`` from now on in this process (see :func:`resolve`); return the language chosen."""
    global _current, _active
    code = resolve(lang)
    _active = _translations(code)
    _current = code
    return code


def current() -> str:
    """The language labkit speaks now (``"en"`` until :func:`use` is called)."""
    return _current


def gettext(message: str) -> str:
    """``message`` in the current language (``message`` itself when untranslated or in English).

    Its ``format`` also picks Korean particles for what it inserts (``{name}을(를)`` → ``KVM을``):
    see :mod:`labkit.i18n.particles`.
    """
    return particles.Translated(_active.gettext(message))


def ngettext(singular: str, plural: str, n: int) -> str:
    """The singular or plural form for ``n``, in the current language."""
    return particles.Translated(_active.ngettext(singular, plural, n))


def noop(message: str) -> str:
    """Mark ``message`` for extraction without translating it now (imported as ``N_``).

    For English constants made at import time (a table of labels): the code
    translates them with :func:`gettext` where it uses them, in the language
    current then.
    """
    return message


def _english(value: object) -> object:
    """``value`` as English: a :class:`Phrase` gives its English text, anything else stays."""
    return str.__str__(value) if isinstance(value, Phrase) else value


class Phrase(str):
    """English text that shows itself in the language of the moment.

    Facts labkit collects carry sentences (a platform's evidence, a kernel's design) that tests,
    JSON and result files keep in English, while a learner reads them in their language.  A
    Phrase *is* the English string (``==``, ``json.dumps``, ``+`` and ``join`` see English) and
    *shows* the translation: ``print``, ``str()`` and f-strings translate its msgid in the current
    language and fill in its fields (themselves Phrases or values).  Mark the msgid with ``N_``:
    ``Phrase(N_("guest driver {module} is loaded"), module=name)``.
    """

    msgid: str
    fields: dict[str, object]

    def __new__(cls, msgid: str, **fields: object) -> Phrase:
        english = msgid.format(**{k: _english(v) for k, v in fields.items()}) if fields else msgid
        self = super().__new__(cls, english)
        self.msgid, self.fields = msgid, fields
        return self

    def __str__(self) -> str:
        said = gettext(self.msgid)
        return said.format(**self.fields) if self.fields else str.__str__(said)

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)

    def english(self) -> str:
        """The English text (what ``==`` and JSON see), as a plain str."""
        return str.__str__(self)


def joined(parts: Iterable[object], separator: str = ", ") -> Phrase:
    """``parts`` joined by ``separator``, each shown in the language of the moment.

    ``", ".join(phrases)`` would give English: a Phrase is English as a str.
    """
    items = tuple(parts)
    msgid = separator.replace("{", "{{").replace("}", "}}").join(f"{{p{i}}}" for i in range(len(items)))
    return Phrase(msgid, **{f"p{i}": item for i, item in enumerate(items)})


#: The usual short name for marking strings: ``_("…")``.
_ = gettext

__all__ = ["ENGLISH", "LOCALE_VARIABLES", "Phrase", "available", "current", "gettext", "joined", "ngettext", "noop",
           "resolve", "use", "_"]
