"""KVM's binary statistics: what the kernel counted for a VM or a vCPU (``KVM_GET_STATS_FD``, Linux 5.14+).

Many exits never reach the VMM: KVM handles ``cpuid``, ``hlt`` with an
in-kernel interrupt controller, or an ``out`` to a port an ioeventfd claims,
inside the kernel and re-enters the guest.  ``KVM_RUN`` does not return for
them, so a VMM cannot count them by its exits; the kernel's own counters can.
``KVM_GET_STATS_FD`` on a VM or vCPU fd gives a read-only fd laid out as a
header, one descriptor per statistic (name, type, unit, where its value lies)
and the values — the interface ``kvm_stat`` and rust-vmm read.
"""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass

from labkit.i18n import _
from labkit.kvm import abi
from labkit.kvm.fd import KvmFd

Value = int | tuple[int, ...]


@dataclass(frozen=True)
class StatDescriptor:
    """One statistic: its name, what kind of number it is, and where its value lies in the data block."""

    name: str
    kind: str  # "cumulative", "instant", "peak", "linear histogram", "log histogram"
    unit: str  # "" (a count), "bytes", "seconds", "cycles", "boolean"
    exponent: int  # the value is value × base^exponent of the unit (e.g. -9 for nanoseconds)
    size: int  # how many u64 (more than one for a histogram)
    offset: int  # from the start of the data block

    @classmethod
    def parse(cls, raw: bytes, name_size: int) -> StatDescriptor:
        desc = abi.kvm_stats_desc.from_buffer_copy(raw)
        name = raw[ctypes.sizeof(desc):ctypes.sizeof(desc) + name_size].split(b"\0", 1)[0].decode()
        kind = desc.flags & abi.KVM_STATS_TYPE_MASK
        unit = (desc.flags & abi.KVM_STATS_UNIT_MASK) >> 4
        return cls(name, abi.KVM_STATS_TYPE_NAMES[kind] if kind < len(abi.KVM_STATS_TYPE_NAMES) else str(kind),
                   abi.KVM_STATS_UNIT_NAMES[unit] if unit < len(abi.KVM_STATS_UNIT_NAMES) else str(unit),
                   desc.exponent, desc.size, desc.offset)


class Stats(KvmFd):
    """The statistics fd of a VM or vCPU: its descriptors read once, its values on each :meth:`read`."""

    def __init__(self, owner: KvmFd) -> None:
        fd = owner.ioctl(abi.KVM_GET_STATS_FD, note=lambda _fd: "→ " + _("its statistics (a read-only fd)"))
        super().__init__(fd, owner.trace)
        self.label = f"{owner.label} stats"
        header = abi.kvm_stats_header.from_buffer_copy(os.pread(self.fd, ctypes.sizeof(abi.kvm_stats_header), 0))
        #: The id the kernel gives the VM or vCPU ("kvm-PID/vcpu-0").
        self.id = os.pread(self.fd, header.name_size, header.id_offset).split(b"\0", 1)[0].decode()
        step = ctypes.sizeof(abi.kvm_stats_desc) + header.name_size
        table = os.pread(self.fd, step * header.num_desc, header.desc_offset)
        self.descriptors = tuple(StatDescriptor.parse(table[i * step:(i + 1) * step], header.name_size)
                                 for i in range(header.num_desc))
        self._data_offset = header.data_offset

    def read(self) -> dict[str, Value]:
        """Every statistic's value now: an int, or a tuple of bucket counts for a histogram."""
        size = max((d.offset + 8 * d.size for d in self.descriptors), default=0)
        data = os.pread(self.fd, size, self._data_offset)
        values: dict[str, Value] = {}
        for d in self.descriptors:
            words = tuple(int.from_bytes(data[d.offset + 8 * i:d.offset + 8 * i + 8], "little") for i in range(d.size))
            values[d.name] = words[0] if d.size == 1 else words
        return values

    def counters(self) -> dict[str, int]:
        """The cumulative counts only (exits, halt_exits, io_exits, ...): what grows with the guest's work."""
        read = self.read()
        return {d.name: value for d in self.descriptors
                if d.kind == "cumulative" and isinstance(value := read[d.name], int)}
