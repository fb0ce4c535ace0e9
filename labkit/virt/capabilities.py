"""What libvirt says the host can run (``virsh capabilities``), and the domain type the lab picks."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass

from labkit import host
from labkit.i18n import Phrase
from labkit.i18n import noop as N_
from labkit.virt.errors import VirtError


@dataclass(frozen=True)
class GuestCapability:
    """One ``<guest>`` of the capabilities XML: an architecture and who can run it."""

    os_type: str
    arch: str
    emulator: str | None
    machines: tuple[str, ...]
    domain_types: tuple[str, ...]


@dataclass(frozen=True)
class HostCapabilities:
    """What libvirt reports about the host (``virsh capabilities``)."""

    arch: str
    cpu_model: str | None
    cpu_vendor: str | None
    cpus: int
    memory_kib: int
    guests: tuple[GuestCapability, ...]

    def domain_types(self, arch: str = "x86_64") -> tuple[str, ...]:
        """The ``<domain type=…>`` values offered for ``hvm`` guests of ``arch``."""
        return tuple(t for g in self.guests if g.arch == arch and g.os_type == "hvm" for t in g.domain_types)


def parse_capabilities(text: str) -> HostCapabilities:
    """Parse ``virConnectGetCapabilities`` XML."""
    root = ET.fromstring(text)
    cells = root.findall("host/topology/cells/cell")
    return HostCapabilities(
        arch=root.findtext("host/cpu/arch", "unknown"),
        cpu_model=root.findtext("host/cpu/model"),
        cpu_vendor=root.findtext("host/cpu/vendor"),
        cpus=sum(len(c.findall("cpus/cpu")) for c in cells),
        memory_kib=sum(int(c.findtext("memory", "0")) for c in cells),
        guests=tuple(GuestCapability(
            os_type=g.findtext("os_type", ""),
            arch=next((a.get("name", "") for a in g.findall("arch")), ""),
            emulator=g.findtext("arch/emulator"),
            machines=tuple(m.text or "" for m in g.findall("arch/machine")),
            domain_types=tuple(d.get("type", "") for d in g.findall("arch/domain")),
        ) for g in root.findall("guest")),
    )


@dataclass(frozen=True)
class DomainCapabilities:
    """What a domain of one type may use on this host (a few fields of ``virsh domcapabilities``)."""

    virt_type: str
    emulator: str
    machine: str  # the default machine type, resolved (e.g. pc-i440fx-7.2)
    max_vcpus: int


@dataclass(frozen=True)
class DomainTypeChoice:
    """``kvm`` or ``qemu`` for a Linux guest on this host, and why."""

    type: str
    offered: tuple[str, ...]
    reason: str


def choose_domain_type(offered: Iterable[str], verdict: host.KvmVerdict) -> DomainTypeChoice:
    """``kvm`` where libvirt offers it *and* the CPU has VT-x/AMD-V; otherwise ``qemu`` (TCG).

    libvirt offers ``kvm`` whenever ``/dev/kvm`` opens — also under nested,
    software-assisted KVM, where a Linux guest does not boot (see notebook
    04).  So the host verdict decides, not the offer alone.
    """
    offered = tuple(dict.fromkeys(offered))
    if "kvm" in offered and verdict.boots_linux:
        return DomainTypeChoice("kvm", offered, Phrase(N_("libvirt offers kvm and the host has {verdict}: the "
                                                          "guest's code runs on the CPU's virtualization extensions"),
                                                       verdict=verdict.label))
    if "kvm" in offered:
        why = Phrase(N_("libvirt offers kvm (/dev/kvm opens), but this host has {verdict}: a Linux guest does not "
                        "boot under it, so the guest runs under QEMU's TCG emulator (type 'qemu')"),
                     verdict=verdict.label)
    else:
        why = Phrase(N_("libvirt does not offer kvm on this connection (no usable /dev/kvm for the daemon), so the "
                        "guest runs under QEMU's TCG emulator (type 'qemu')"))
    if "qemu" not in offered:
        raise VirtError(f"this connection offers neither kvm nor qemu guests for x86_64 (offered: {offered})",
                        "install qemu-system-x86 (./kvmlab setup) and restart libvirtd")
    return DomainTypeChoice("qemu", offered, why)
