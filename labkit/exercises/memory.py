"""Notebook 04b's memory exercises: which PML4 entry translates a guest-virtual address; shadow vs nested paging.

The first checker walks a real guest's page tables; the second compares the
learner's recorded prediction with the comparison measured right after it in
the emulated AMD-V machine (:mod:`labkit.nested.paging`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from labkit import exercises
from labkit.exercises import Feedback, exercise
from labkit.i18n import _
from labkit.kvm import walk

if TYPE_CHECKING:
    from labkit.nested.paging import PagingComparison


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


#: The answers the paging prediction chooses from.
FASTER = ("nested", "shadow")
FACTORS = ("under 2x", "2x to 5x", "over 5x")
#: KVM's counters a learner may name as the one that grows most under shadow paging.
GROWING = ("io_exits", "halt_exits", "pf_fixed", "tlb_flush", "mmu_pte_write")
#: Near a boundary between two factors (within this ratio of it), either is right: the measurement is noisy.
FACTOR_SLACK = 1.25


def _factor_fits(factor: str, slowdown: float) -> bool:
    low, high = {"under 2x": (0.0, 2.0), "2x to 5x": (2.0, 5.0), "over 5x": (5.0, float("inf"))}[factor]
    return low / FACTOR_SLACK <= max(slowdown, 1 / slowdown) < high * FACTOR_SLACK


@exercise("paging-prediction")
def paging_prediction(measured: PagingComparison | None) -> Feedback:
    """Compare the learner's prediction (``exercises.predict``, before the measurement) with the run just made:
    which paging finished first, by how much, and which of KVM's counters grew most under shadow paging."""
    predicted = exercises.prediction("paging-prediction")
    hints = (_("under shadow paging KVM must see every change of the guest's address space: what does the guest "
               "do in every round?"),
             _("count what exits per round under each mode: the guest loads CR3 once and touches each fresh "
               "mapping once; which of those can the CPU handle alone with nested paging?"))
    if not isinstance(predicted, tuple) or len(predicted) != 3 or None in predicted:
        return Feedback(False, _("make your prediction first: set my_faster, my_factor and my_counter and run the "
                                 "cell that records them"), hints)
    faster, factor, counter = predicted
    wrong = [_("my_faster is one of {choices}").format(choices=", ".join(FASTER))] if faster not in FASTER else []
    wrong += [_("my_factor is one of {choices}").format(choices=", ".join(FACTORS))] if factor not in FACTORS else []
    wrong += [_("my_counter is one of {choices}").format(choices=", ".join(GROWING))] if counter not in GROWING else []
    if wrong:
        return Feedback(False, "; ".join(wrong), hints)
    if measured is None or not measured.ran:
        why = measured.why_not if measured is not None else _("the measurement was skipped (paging_demo = False)")
        return Feedback(False, _("nothing was measured here to compare with: {why}").format(why=why))
    won = "nested" if measured.slowdown > 1 else "shadow"
    grew = max(GROWING, key=measured.grown)
    right = [faster == won, _factor_fits(factor, measured.slowdown), counter == grew]
    seen = _("the guest took {nested:.3f} s under nested paging and {shadow:.3f} s under shadow paging "
             "({slowdown:.1f}x); {grew} grew most ({nested_n:,} → {shadow_n:,})").format(
        nested=measured.nested.seconds, shadow=measured.shadow.seconds,  # type: ignore[union-attr]
        slowdown=max(measured.slowdown, 1 / measured.slowdown), grew=grew,
        nested_n=measured.nested.counters.get(grew, 0), shadow_n=measured.shadow.counters.get(grew, 0))  # type: ignore[union-attr]
    if all(right):
        return Feedback(True, _("as you predicted: {seen}").format(seen=seen))
    missed = [name for name, ok in zip(("my_faster", "my_factor", "my_counter"), right) if not ok]
    return Feedback(False, _("{seen}; your {missed} did not match").format(seen=seen, missed=", ".join(missed)), hints)
