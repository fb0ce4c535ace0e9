"""The whole KVM stack, hardware to libvirt, for a guest libvirt ran on this connection."""

from __future__ import annotations

from collections.abc import Iterable

from labkit import host
from labkit.lessons import hypervisor
from labkit.virt.connection import Connection


def kvm_stack(report: host.HostReport, conn: Connection, domain_type: str,
              qemu_argv: Iterable[str]) -> tuple[hypervisor.Layer, ...]:
    """:func:`labkit.lessons.hypervisor.kvm_stack_layers` with the versions and URI of ``conn``.

    ``domain_type`` and ``qemu_argv`` are those of a guest libvirt ran here.
    """
    libvirt_version, qemu_version = conn.versions()
    return hypervisor.kvm_stack_layers(report, libvirt_version, qemu_version, conn.choice.uri, domain_type,
                                       qemu_argv)
