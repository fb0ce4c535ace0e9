"""Claims a notebook makes, checked live on this host.

Every claim in a notebook is followed by a cell that calls :func:`check`.  It
prints one line whose text does not depend on the host (so nbval can compare
it strictly):

- ``✔ <claim>`` — the claim was tested here and held;
- ``○ not checkable on this host: <claim> (because <reason>)`` — when the
  notebook passes ``unknown(reason)`` instead of a result: the host lacks
  what the test needs (no ``/dev/kvm``, no microkernel to compare with...).
  ✔ therefore always means "held here", never "nothing to test".

When the host disagrees it raises :class:`ClaimFailed` with the evidence: the
notebook stops at the claim that is wrong instead of teaching something false.

Every text is English in the notebook's code and printed in the language of
:mod:`labkit.i18n` (the claim, the reason, the question and the fixed
phrases; the marks stay).  Values that vary go in keyword arguments, e.g.
``unknown("kvm's license is not readable ({source})", source=lic.source)``:
they are formatted *after* translation, so the translated text (the msgid
keeps ``{source}``) is found and the translator can move the placeholder.

:func:`ready` is the short, non-blocking question at the end of a section
("ready to go on?"): it answers, it never stops the notebook.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass

from labkit.errors import LabkitError
from labkit.i18n import _, answers

#: The marks :func:`check` prints.
HELD, NOT_CHECKABLE = "✔", "○"


class ClaimFailed(LabkitError, AssertionError):
    """A claim of the lesson does not hold on this host."""


@dataclass(frozen=True)
class Unknown:
    """A claim's result that could not be found out here, and why (see :func:`unknown`)."""

    because: str


def _say(text: str, fields: dict[str, object]) -> str:
    """``text`` translated, then its ``{placeholders}`` filled from ``fields`` (left alone without fields)."""
    said = _(text)
    return said.format(**fields) if fields else said


def say(text: str, **fields: object) -> None:
    """Print a line of the notebook's own (a measurement's labels) in the learner's language.

    The notebook's code stays one line of English for both editions, as for :func:`check`:
    ``lesson.say("mapped {mib} MiB", mib=n)`` prints the Korean of its ``notebook-NN.po`` in the
    Korean edition, the placeholders filled after translation.
    """
    print(_say(text, fields))


def text(words: str, **fields: object) -> str:
    """:func:`say`'s text without printing it: a notebook's own words as a value (a placeholder for "none")."""
    return _say(words, fields)


def unknown(because: str, **fields: object) -> Unknown:
    """The result of a claim this host cannot test: ``because`` says what is missing.

    Pass it to :func:`check` in place of a bool, e.g.
    ``lesson.check(claim, test() if report.kvm.present else lesson.unknown("this host has no /dev/kvm"))``.
    ``fields`` fill the ``{placeholders}`` of ``because`` after translation.
    """
    if not because.strip():
        raise ValueError("say why the claim cannot be checked here")
    return Unknown(_say(because.strip(), fields))


def check(claim: str, holds: bool | Unknown, evidence: str = "", **fields: object) -> None:
    """Print ``✔ claim`` if ``holds`` is True, the not-checkable line for :class:`Unknown`, else raise.

    ``holds`` must be a real ``bool`` (or :class:`Unknown`): anything else
    (None, a list, a count) is a bug in the notebook, not a result, so it
    raises :class:`TypeError` instead of passing for "true".  ``fields``
    fill the ``{placeholders}`` of ``claim`` after translation.
    """
    said = _say(claim, fields)
    if isinstance(holds, Unknown):
        print(f"{NOT_CHECKABLE} " + _("not checkable on this host: {claim} (because {because})").format(
            claim=said, because=holds.because))
        return
    if not isinstance(holds, bool):
        raise TypeError(f"lesson.check({claim!r}) needs a bool or lesson.unknown(reason), got {type(holds).__name__}")
    if not holds:
        raise ClaimFailed(_("the lesson claims: {claim!r}, but on this host it is not so. {evidence}").format(
                              claim=said, evidence=evidence).strip(),
                          _("run `labkit doctor` and report the host and this message to your instructor"))
    print(f"{HELD} {said}")


def ready(question: str, answer: object, right: str | int | Collection[str | int] | Callable[[object], bool],
          why: str, hint: str = "") -> None:
    """A section's "ready to go on?" question: answer it by editing ``answer=`` in the cell.

    Prints one line and never raises nor records anything: a wrong answer
    is a pointer back into the section, not a stop.  ``right`` is the
    accepted answer, several accepted answers, or a predicate; strings are
    compared without case or surrounding blanks, and a Korean answer (예,
    타입 2, 문자 장치: :mod:`labkit.i18n.answers`) counts as its English.
    ``why`` is shown with a right answer; ``hint`` (or a generic pointer)
    with a wrong one.
    """
    if answer is None:
        print("→ " + _("ready to go on? {question}  (put your answer in answer=… and run this cell again)").format(
            question=_(question)))
    elif _accepts(right, answer):
        print(f"{HELD} " + _("ready to go on: {why}").format(why=_(why)))
    else:
        print("↺ " + _("not quite ({answer!r}): {hint} — you may go on anyway").format(
            answer=answer, hint=_(hint) if hint else _("re-read the section above")))


def _accepts(right: str | int | Collection[str | int] | Callable[[object], bool], answer: object) -> bool:
    """Whether ``answer`` is one of the accepted answers in ``right``; a Korean answer counts as its English."""
    answer = answers.in_english(answer)
    if callable(right):
        return bool(right(answer))
    accepted = [right] if isinstance(right, (str, int)) else list(right)

    def norm(v: object) -> object:
        return answers.fold(v) if isinstance(v, str) else v
    return norm(answer) in {norm(a) for a in accepted}


#: MIME type of the key results a notebook records (read back by ``labkit run``).
RESULTS_MIME = "application/vnd.labkit.results+json"


def record(**results: float | int | str | bool) -> None:
    """Record a notebook's key results (boot time, accelerator, ratios...).

    They are displayed as one line and stored in the executed notebook under
    :data:`RESULTS_MIME`, where ``labkit run`` collects them into its summary
    table.  An empty string (``run_id`` when no run id was given) is stored
    but not shown.  Values are host-specific: call this in a cell tagged
    ``nbval-ignore-output``.
    """
    from IPython.display import display

    text = ", ".join(f"{k} = {v}" for k, v in results.items() if v != "")
    display({RESULTS_MIME: results, "text/plain": f"recorded: {text}"}, raw=True)
