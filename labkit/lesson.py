"""Claims a notebook makes, checked live on this host.

Every claim in a notebook is followed by a cell that calls :func:`check`.  It
prints one line, ``✔ <claim>``, whose text does not depend on the host (so
nbval can compare it strictly), and raises :class:`ClaimFailed` with the
evidence when the host disagrees: the notebook stops at the claim that is
wrong instead of teaching something false.
"""

from __future__ import annotations

from labkit.errors import LabkitError


class ClaimFailed(LabkitError, AssertionError):
    """A claim of the lesson does not hold on this host."""


def check(claim: str, holds: bool, evidence: str = "") -> None:
    """Print ``✔ claim`` if ``holds``; otherwise raise :class:`ClaimFailed` with ``evidence``."""
    if not holds:
        raise ClaimFailed(f"the lesson claims: {claim!r}, but on this host it is not so. {evidence}".strip(),
                          "run `labkit doctor` and report the host and this message to your instructor")
    print(f"✔ {claim}")


#: MIME type of the key results a notebook records (read back by ``labkit run``).
RESULTS_MIME = "application/vnd.labkit.results+json"


def record(**results: float | int | str | bool) -> None:
    """Record a notebook's key results (boot time, accelerator, ratios...).

    They are displayed as one line and stored in the executed notebook under
    :data:`RESULTS_MIME`, where ``labkit run`` collects them into its summary
    table.  Values are host-specific: call this in a cell tagged ``nbval-ignore-output``.
    """
    from IPython.display import display

    text = ", ".join(f"{k} = {v}" for k, v in results.items())
    display({RESULTS_MIME: results, "text/plain": f"recorded: {text}"}, raw=True)
