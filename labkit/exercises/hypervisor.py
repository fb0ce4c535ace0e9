"""Notebook 02's exercise: classify hypervisors as Type 1 or Type 2."""

from __future__ import annotations

from labkit import hypervisor
from labkit.exercises import Feedback


def hypervisor_types(answers: dict[str, str | None]) -> Feedback:
    """Classify hypervisors as 'type 1' or 'type 2'."""
    truth = {h.name: ("type 1" if h.type.startswith("Type 1") else "type 2") for h in hypervisor.CATALOGUE}
    if not answers:
        return Feedback(False, "classify at least one hypervisor")
    unknown = sorted(set(answers) - set(truth))
    if unknown:
        return Feedback(False, f"{unknown} are not in the catalogue; use names from hypervisor.CATALOGUE")
    wrong = sorted(name for name, given in answers.items()
                   if (given or "").strip().lower() != truth[name])
    if not wrong:
        return Feedback(True, f"all {len(answers)} classified correctly")
    return Feedback(False, f"check {', '.join(wrong)}",
                    "does it need a host operating system to run on, "
                    "or does it run on the hardware (or in the kernel) itself?")
