"""Notebook 04b's memory exercise: which PML4 entry translates a guest-virtual address."""

from __future__ import annotations

from labkit.exercises import Feedback, exercise
from labkit.i18n import _
from labkit.kvm import walk


@exercise("pml4-index")
def pml4_index(answer: int | None, gva: int) -> Feedback:
    """Map ``gva`` in a fresh guest, let it store there, and walk its tables: did ``answer`` name the PML4 entry?"""
    if answer is None:
        return Feedback(False, _("set my_pml4_index to a number from 0 to 511"),
                        _("each level of the walk uses 9 bits of the address; the picture above lists which"))
    if isinstance(answer, bool) or not isinstance(answer, int) or not 0 <= answer <= 511:
        return Feedback(False, _("{answer!r} is not an index of a 512-entry table").format(answer=answer),
                        _("a whole number from 0 to 511"))
    path = walk.follow(gva)
    used = path.walk[0].index
    if answer == used:
        return Feedback(True, _("the guest's walk of {gva:#x} started at PML4 entry {index}, as you said").format(
            gva=gva, index=used))
    return Feedback(False, _("the guest's walk of {gva:#x} started at PML4 entry {index}, not {answer}").format(
        gva=gva, index=used, answer=answer),
        _("the top level uses the highest 9 bits of the 48-bit address: bits 47 to 39"))
