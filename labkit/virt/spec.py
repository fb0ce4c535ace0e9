"""A direct-kernel-boot guest described in Python (:class:`DomainSpec`) and rendered to domain XML."""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from labkit import host, images, runtime
from labkit.errors import InvalidOptionError, MissingKernelError
from labkit.virt.errors import DomainXmlError


@dataclass(frozen=True)
class DomainSpec:
    """A direct-kernel-boot guest: what the lab's domains are made of.

    ``name`` is the short name; the domain is called ``labkit-<user>-<name>``.
    ``console_log`` None lets :class:`Domain` put the serial console in a
    scratch file of its own.
    """

    name: str
    kernel: Path
    initrd: Path | None = None
    cmdline: str = "console=ttyS0"
    memory_mib: int = 256
    vcpus: int = 1
    domain_type: str = "qemu"
    console_log: Path | None = None
    machine: str = "pc"
    uuid: str = field(default_factory=lambda: str(uuid.uuid4()))

    @classmethod
    def for_image(cls, name: str, image: images.GuestImage, **options) -> DomainSpec:
        """The tiny guest as a domain, booting its uncompressed ``vmlinux`` when the image has one.

        QEMU enters a vmlinux at its PVH entry point also on ``-M pc``: no
        in-guest decompression, about a third less boot time under TCG.
        """
        return cls(name, image.vmlinux or image.kernel, image.initrd, image.cmdline, **options)

    @property
    def domain_name(self) -> str:
        """``labkit-<user>-<name>-<pid>``: no clash between users, nor between two notebooks of one user."""
        return runtime.lab_name(self.name, "domain")

    def validate(self) -> None:
        """Raise a labkit error for anything libvirt or QEMU would reject later, less clearly."""
        runtime.lab_name(self.name, "domain")  # raises for a bad name
        host.check_guest(self.memory_mib, self.vcpus, self.cmdline)
        if self.domain_type not in ("kvm", "qemu"):
            raise InvalidOptionError(f"domain type must be 'kvm' or 'qemu', not {self.domain_type!r}",
                                     "use Connection.domain_type() to pick the right one for this host")
        _require_files(str(self.kernel), str(self.initrd) if self.initrd else None)


def domain_xml(spec: DomainSpec) -> str:
    """The libvirt domain XML for ``spec`` (``virsh dumpxml`` shows the daemon's fuller version).

    ``<acpi/>`` is there because without it the guest's ``poweroff`` does not
    end the domain; ``on_*`` = destroy so a guest that reboots or panics ends.
    No USB controller and no memory balloon: libvirt adds both to a ``pc``
    guest unless told not to, nothing in the tiny guest uses them, and its
    kernel probes each PCI device under emulation — about 0.13 s of QEMU CPU
    time per boot here (issue 17), which labkit.qemu's ``-nodefaults`` guest
    never pays.
    """
    spec.validate()
    dom = ET.Element("domain", type=spec.domain_type)
    ET.SubElement(dom, "name").text = spec.domain_name
    ET.SubElement(dom, "uuid").text = spec.uuid
    ET.SubElement(dom, "title").text = "KVM Lab tiny guest"
    ET.SubElement(dom, "memory", unit="MiB").text = str(spec.memory_mib)
    ET.SubElement(dom, "vcpu").text = str(spec.vcpus)
    os_el = ET.SubElement(dom, "os")
    ET.SubElement(os_el, "type", arch="x86_64", machine=spec.machine).text = "hvm"
    ET.SubElement(os_el, "kernel").text = str(spec.kernel)
    if spec.initrd is not None:
        ET.SubElement(os_el, "initrd").text = str(spec.initrd)
    ET.SubElement(os_el, "cmdline").text = spec.cmdline
    ET.SubElement(ET.SubElement(dom, "features"), "acpi")
    for event in ("on_poweroff", "on_reboot", "on_crash"):
        ET.SubElement(dom, event).text = "destroy"
    devices = ET.SubElement(dom, "devices")
    ET.SubElement(devices, "controller", type="usb", model="none")
    ET.SubElement(devices, "memballoon", model="none")
    if spec.console_log is not None:
        serial = ET.SubElement(devices, "serial", type="file")
        ET.SubElement(serial, "source", path=str(spec.console_log), append="on")  # else each start truncates it
        ET.SubElement(serial, "target", port="0")
    ET.indent(dom)
    return ET.tostring(dom, encoding="unicode")


def _parse_domain_xml(text: str) -> ET.Element:
    try:
        return ET.fromstring(text)
    except ET.ParseError as exc:
        raise DomainXmlError(f"the domain XML is not well-formed: {exc}",
                             "check the tags are closed and quoted, e.g. print(virt.domain_xml(spec))") from exc


def _own_xml(text: str) -> str:
    """Check the XML names a domain of this user's lab prefix; give it a UUID if it has none.

    The UUID is how labkit finds its own domain again when a define was
    interrupted before libvirt's answer arrived.
    """
    root = _parse_domain_xml(text)
    name = root.findtext("name") or ""
    if not name.startswith(runtime.prefix()):
        raise InvalidOptionError(f"domain name {name!r} lacks the lab prefix {runtime.prefix()!r}",
                                 "labkit only manages domains it names; use DomainSpec(name=...), which "
                                 "adds the prefix")
    if root.find("uuid") is None:
        ET.SubElement(root, "uuid").text = str(uuid.uuid4())
        return ET.tostring(root, encoding="unicode")
    return text


def _require_files(kernel: str | None, initrd: str | None) -> None:
    """The kernel and initramfs a direct-kernel-boot domain names must exist (QEMU fails late otherwise)."""
    for what, path in (("kernel", kernel), ("initramfs", initrd)):
        if path and not Path(path).is_file():
            raise MissingKernelError(f"the guest {what} {path} does not exist",
                                     "build the tiny guest first: labkit.images.tiny_guest() (or ./kvmlab setup)")


# --------------------------------------------------------------------------- events and stats
