"""Checkers for the notebooks' exercises: is the learner's answer right, and a hint if not.

A checker never raises on a wrong answer: it returns :class:`Feedback`, which
prints as one line (``✔ solved: …`` or ``✘ not yet: … hint: …``).
"""

from __future__ import annotations

import mmap
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from labkit import hypervisor, images, virt
from labkit.errors import LabkitError


@dataclass(frozen=True)
class Feedback:
    solved: bool
    message: str

    def __str__(self) -> str:
        return f"✔ solved: {self.message}" if self.solved else f"✘ not yet: {self.message}"

    def _repr_pretty_(self, p, cycle: bool) -> None:  # IPython shows the sentence, not the dataclass
        p.text(str(self))


def page_faults(prediction: int | None, mib: int) -> Feedback:
    """Notebook 01: how many page faults does the first touch of ``mib`` MiB cost?"""
    answer = (mib << 20) // mmap.PAGESIZE
    if prediction == answer:
        return Feedback(True, f"{mib} MiB / {mmap.PAGESIZE} B per page = {answer} first-touch faults")
    if prediction is None:
        return Feedback(False, "set my_prediction to a number. hint: one fault per page, "
                               "and mmap.PAGESIZE tells the page size")
    return Feedback(False, f"{prediction} is not it. hint: divide the bytes touched by the page size "
                           f"({mmap.PAGESIZE} bytes), not by 1 MiB")


def hypervisor_types(answers: dict[str, str | None]) -> Feedback:
    """Notebook 02: classify hypervisors as 'type 1' or 'type 2'."""
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
    return Feedback(False, f"check {', '.join(wrong)}. hint: does it need a host operating system "
                           "to run on, or does it run on the hardware (or in the kernel) itself?")


def libvirt_guest(domain: object, vcpus: int = 2, memory_mib: int = 192) -> Feedback:
    """Notebook 05: boot the tiny guest through libvirt with ``vcpus`` and ``memory_mib``.

    Compares what was asked (the domain's definition) with what the guest
    itself saw (its report line), then destroys and undefines the domain.
    """
    if domain is None:
        return Feedback(False, "set my_domain to the Domain you booted. hint: conn.define(virt.DomainSpec(..., "
                               "vcpus=..., memory_mib=...)), then my_domain.start() and my_domain.wait_for_report()")
    if not isinstance(domain, virt.Domain):
        return Feedback(False, f"my_domain is a {type(domain).__name__}; it must be what conn.define(...) returned")
    try:
        defined = ET.fromstring(domain.xml)
        memory = defined.find("memory")
        to_mib = {"KiB": 1 / 1024, "MiB": 1, "GiB": 1024}.get(memory.get("unit", "KiB"), 0) if memory is not None else 0
        asked = (int(defined.findtext("vcpu", "0")), round(int(memory.text or 0) * to_mib) if to_mib else 0)
        if asked != (vcpus, memory_mib):
            return Feedback(False, f"you defined {asked[0]} vCPUs and {asked[1]} MiB, not {vcpus} and "
                                   f"{memory_mib}. hint: DomainSpec(..., vcpus=..., memory_mib=...)")
        try:
            seen = images.parse_report(domain.console())
        except LabkitError:
            return Feedback(False, "the guest has not printed its report. hint: my_domain.start(), then "
                                   "my_domain.wait_for_report() before checking")
    finally:
        domain.close()
    if seen.cpus != vcpus or not 0.6 * memory_mib < seen.memory_mib <= memory_mib:
        return Feedback(False, f"the guest saw {seen.cpus} CPUs and {seen.memory_mib} MiB. hint: boot a fresh "
                               "domain from your spec (the check removed this one)")
    return Feedback(True, f"libvirt gave the guest {vcpus} vCPUs and {memory_mib} MiB; inside, Linux counted "
                          f"{seen.cpus} CPUs and {seen.memory_mib} MiB (the kernel keeps the rest for itself)")
