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
