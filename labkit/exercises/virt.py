"""Notebook 05's exercise: boot the tiny guest through libvirt with a given size."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from labkit import images, virt
from labkit.errors import LabkitError
from labkit.exercises import Feedback, exercise
from labkit.i18n import _

_TO_MIB = {"KiB": 1 / 1024, "MiB": 1, "GiB": 1024}


@exercise("libvirt-guest")
def libvirt_guest(domain: object, vcpus: int = 2, memory_mib: int = 192) -> Feedback:
    """Did the learner's domain get ``vcpus`` and ``memory_mib``, as the guest itself saw them?

    Compares what was asked (the domain's definition) with what the guest
    reported on its console, then destroys and undefines the domain.
    """
    if domain is None:
        return Feedback(False, _("set my_domain to the Domain you booted"),
                        _("conn.define(virt.DomainSpec(..., vcpus=..., memory_mib=...)), "
                          "then my_domain.start() and my_domain.wait_for_report()"))
    if not isinstance(domain, virt.Domain):
        return Feedback(False, _("my_domain is a {type}").format(type=type(domain).__name__),
                        _("it must be what conn.define(...) returned"))
    try:
        defined = ET.fromstring(domain.xml)
        memory = defined.find("memory")
        to_mib = _TO_MIB.get(memory.get("unit", "KiB"), 0) if memory is not None else 0
        asked = (int(defined.findtext("vcpu", "0")),
                 round(int(memory.text or 0) * to_mib) if memory is not None and to_mib else 0)
        if asked != (vcpus, memory_mib):
            return Feedback(False, _("you defined {vcpus} vCPUs and {memory_mib} MiB, not {want_vcpus} and "
                                     "{want_memory_mib}").format(vcpus=asked[0], memory_mib=asked[1],
                                                                 want_vcpus=vcpus, want_memory_mib=memory_mib),
                            "DomainSpec(..., vcpus=..., memory_mib=...)")
        try:
            seen = images.parse_report(domain.console())
        except LabkitError:
            return Feedback(False, _("the guest has not printed its report"),
                            _("my_domain.start(), then my_domain.wait_for_report() before checking"))
    finally:
        domain.close()
    if seen.cpus != vcpus or not 0.6 * memory_mib < seen.memory_mib <= memory_mib:
        return Feedback(False, _("the guest saw {cpus} CPUs and {memory_mib} MiB").format(
                            cpus=seen.cpus, memory_mib=seen.memory_mib),
                        _("boot a fresh domain from your spec (the check removed this one)"))
    return Feedback(True, _("libvirt gave the guest {vcpus} vCPUs and {memory_mib} MiB; inside, Linux counted "
                            "{cpus} CPUs and {seen_mib} MiB (the kernel keeps the rest for itself)").format(
                                vcpus=vcpus, memory_mib=memory_mib, cpus=seen.cpus, seen_mib=seen.memory_mib))
