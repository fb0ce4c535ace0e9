"""The PC's port and MMIO space as a booting kernel meets it: a few devices, and silence everywhere else.

A kernel probes for hardware that may not be there (a second serial port, a
keyboard controller, the ``io_delay`` writes to port 0x80).  On a PC, a read
no device answers floats to all ones and a write goes nowhere — that is how
the probe learns "absent".  :class:`PcBus` does the same (where the lab's
:class:`~labkit.kvm.devices.Bus` stops a guest on such an access, to teach),
and counts each unclaimed port and address.
"""

from __future__ import annotations

from collections import Counter

from labkit.kvm.devices import Bus, UnclaimedAccessError


class PcBus(Bus):
    """Routes to the devices; an unclaimed port or address reads all ones and ignores writes."""

    def __init__(self, *devices) -> None:
        super().__init__(*devices)
        self.unclaimed: Counter[str] = Counter()  # "port 0x80" / "mmio 0xfed00000" -> accesses

    def out(self, port: int, data: bytes) -> None:
        try:
            super().out(port, data)
        except UnclaimedAccessError:
            self.unclaimed[f"port {port:#x}"] += 1

    def port_in(self, port: int, size: int, count: int = 1) -> bytes:
        try:
            return super().port_in(port, size, count)
        except UnclaimedAccessError:
            self.unclaimed[f"port {port:#x}"] += 1
            return b"\xff" * (size * count)

    def mmio_write(self, address: int, data: bytes) -> None:
        try:
            super().mmio_write(address, data)
        except UnclaimedAccessError:
            self.unclaimed[f"mmio {address:#x}"] += 1

    def mmio_read(self, address: int, size: int) -> bytes:
        try:
            return super().mmio_read(address, size)
        except UnclaimedAccessError:
            self.unclaimed[f"mmio {address:#x}"] += 1
            return b"\xff" * size
