"""Notebook 05's exercises: boot the tiny guest through libvirt at this learner's size — from the lab's
typed description (``libvirt-guest``), then from domain XML written by hand (``libvirt-xml``).

Both checkers compare what was asked for with what the guest itself
reported on its console, and tear the domain down.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass

from labkit import exercises, host, images, runtime, virt
from labkit.errors import LabkitError
from labkit.exercises import Feedback, exercise
from labkit.i18n import _

_TO_MIB = {"KiB": 1 / 1024, "MiB": 1, "GiB": 1024}


@dataclass(frozen=True)
class Size:
    """A machine to build: its vCPUs and memory."""

    vcpus: int
    memory_mib: int

    def __str__(self) -> str:
        return _("{vcpus} vCPUs and {memory_mib} MiB").format(vcpus=self.vcpus, memory_mib=self.memory_mib)


#: The sizes a learner may be asked for (each boots in seconds under TCG).
SIZES = tuple(Size(v, m) for v in (2, 3) for m in (160, 192, 224))


def target(name: str) -> Size:
    """This learner's machine for exercise ``name`` (``libvirt-guest`` or ``libvirt-xml``)."""
    return exercises.target(name, SIZES)


def defined_size(xml_text: str) -> Size:
    """The vCPUs and memory a domain's XML asks for (0 where it names none)."""
    defined = ET.fromstring(xml_text)
    memory = defined.find("memory")
    to_mib = _TO_MIB.get(memory.get("unit", "KiB"), 0) if memory is not None else 0
    return Size(int(defined.findtext("vcpu", "0")),
                round(int(memory.text or 0) * to_mib) if memory is not None and to_mib else 0)


def _seen_fits(seen: images.GuestReport, want: Size) -> bool:
    """Linux counted the vCPUs and (a little less than: the kernel keeps some) the memory it was given."""
    return seen.cpus == want.vcpus and 0.6 * want.memory_mib < seen.memory_mib <= want.memory_mib


@exercise("libvirt-guest")
def libvirt_guest(domain: object) -> Feedback:
    """Did the learner's domain get this learner's size, as the guest itself saw it?  Then it is torn down."""
    want = target("libvirt-guest")
    hints = (_("a DomainSpec describes the machine; sections 3 and 4 built and defined one"),
             _("sections 6 and 7: start it, then wait for the guest's report before checking"))
    if domain is None:
        return Feedback(False, _("set my_domain to the Domain you booted"), hints)
    if not isinstance(domain, virt.Domain):
        return Feedback(False, _("my_domain is a {type}").format(type=type(domain).__name__),
                        (_("it must be what conn.define(...) returned"), *hints))
    try:
        asked = defined_size(domain.xml)
        if asked != want:
            return Feedback(False, _("you defined {asked}, not {want}").format(asked=asked, want=want), hints)
        try:
            seen = images.parse_report(domain.console(), domain.nonce)
        except LabkitError:
            return Feedback(False, _("the guest has not printed its report"), hints[1:])
    finally:
        domain.close()
    if not _seen_fits(seen, want):
        return Feedback(False, _("the guest saw {cpus} CPUs and {memory_mib} MiB").format(
                            cpus=seen.cpus, memory_mib=seen.memory_mib),
                        (_("boot a fresh domain from your spec (the check removed this one)"),))
    return Feedback(True, _("libvirt gave the guest {want}; inside, Linux counted {cpus} CPUs and {seen_mib} MiB "
                            "(the kernel keeps the rest for itself)").format(want=want, cpus=seen.cpus,
                                                                             seen_mib=seen.memory_mib))


def _xml_hints() -> tuple[str, ...]:
    return (_("section 4 printed a whole domain XML: which elements say how big the machine is, and how it boots?"),
            _("the guest powers itself off: the domain must let it (ACPI) and end then (on_poweroff)"),
            _("libvirt's domain format: https://libvirt.org/formatdomain.html (os: direct kernel boot; memory; vcpu; "
              "features; events configuration)"))


def checked_xml(text: str, console: str) -> str:
    """The learner's XML with the checker's own parts: a lab name (labkit manages only those) and a serial
    console in a file (how the checker reads the guest's report); any serial or console of theirs is replaced."""
    root = ET.fromstring(text)
    for tag in ("name", "uuid"):
        for found in root.findall(tag):
            root.remove(found)
    ET.SubElement(root, "name").text = runtime.lab_name("xml", "domain")
    devices = root.find("devices")
    if devices is None:
        devices = ET.SubElement(root, "devices")
    for found in devices.findall("serial") + devices.findall("console"):
        devices.remove(found)
    serial = ET.SubElement(devices, "serial", type="file")
    ET.SubElement(serial, "source", path=console)
    ET.SubElement(serial, "target", port="0")
    return ET.tostring(root, encoding="unicode")


@exercise("libvirt-xml")
def libvirt_xml(conn: object, xml_text: object, timeout: float = 120.0, poweroff_s: float = 20.0) -> Feedback:
    """Define and boot the learner's hand-written domain XML on this host; does the guest report this learner's
    machine, and does the domain end when the guest powers off?"""
    want = target("libvirt-xml")
    if not isinstance(xml_text, str):
        return Feedback(False, _("my_xml should be the domain's XML, as a str"), _xml_hints())
    try:
        root = ET.fromstring(xml_text)
    except ET.ParseError as exc:
        return Feedback(False, _("the XML is not well-formed: {error}").format(error=exc), _xml_hints())
    kind = root.get("type")
    if root.tag != "domain" or kind not in ("kvm", "qemu"):
        return Feedback(False, _("the root element should be <domain type='…'> with the domain type this host "
                                 "runs Linux guests under (section 2 chose it)"), _xml_hints())
    if kind == "kvm" and not host.inspect().verdict.boots_linux:
        return Feedback(False, _("type='kvm': this host's KVM does not boot Linux (section 2 said why); "
                                 "use the type libvirt chose for it"), _xml_hints())
    asked = defined_size(xml_text)
    if asked != want:
        return Feedback(False, _("your XML asks for {asked}, not {want}").format(asked=asked, want=want),
                        _xml_hints())
    if not isinstance(conn, virt.Connection):
        return Feedback(False, _("pass the notebook's connection, conn"), (_("section 1 opened it: conn"),))
    with runtime.scratch("virt-xml") as folder:
        try:
            with conn.define(checked_xml(xml_text, str(folder / "console.log"))) as dom:
                dom.start()
                seen = dom.wait_for_report(timeout)
                try:
                    dom.wait_for_event("stopped", timeout=poweroff_s)
                except virt.VirtError:
                    return Feedback(False, _("the guest reported and powered off, but the domain still ran {seconds:g} "
                                             "s later").format(seconds=poweroff_s), _xml_hints()[1:])
        except LabkitError as exc:
            return Feedback(False, _("libvirt or the guest said: {error}").format(error=exc.what), _xml_hints())
    if not _seen_fits(seen, want):
        return Feedback(False, _("the guest saw {cpus} CPUs and {memory_mib} MiB").format(
            cpus=seen.cpus, memory_mib=seen.memory_mib), _xml_hints())
    return Feedback(True, _("your XML booted Linux {release}, which counted {cpus} CPUs and {seen_mib} MiB, and the "
                            "domain ended when the guest powered off").format(
                                release=seen.kernel_release, cpus=seen.cpus, seen_mib=seen.memory_mib))
