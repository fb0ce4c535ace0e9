"""Devices the VMM emulates: what the guest talks to when it exits.

A KVM guest has no hardware of its own.  Every ``in``/``out`` to a port and
every load/store to an address without RAM exits to the VMM, which plays the
device: :class:`SerialPort` (COM1 at 0x3f8, what the guest prints),
:class:`MmioCounter` (a register at a physical address: memory-mapped I/O),
:class:`PostCodes` (port 0x80, timestamped progress marks) and
:class:`DebugExit` (port 0xf4: the guest powers itself off, as QEMU's
``isa-debug-exit``).  :class:`Bus` routes each access to its device.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from labkit.errors import InvalidOptionError
from labkit.kvm.exits import Exit, IoExit, MmioExit

SERIAL_PORT = 0x3F8
POST_PORT = 0x80
EXIT_PORT = 0xF4
MMIO_COUNTER = 0x1000_0000  # 256 MiB: above the guest's RAM, inside the first GiB the page tables map


class UnclaimedAccessError(Exception):
    """No device answers this port or address (the machine turns it into a guest error)."""

    def __init__(self, kind: str, address: int, is_write: bool, size: int) -> None:
        super().__init__(f"{'write to' if is_write else 'read from'} {kind} {address:#x}")
        self.kind, self.address, self.is_write, self.size = kind, address, is_write, size


class PowerOff(Exception):
    """The guest wrote to :class:`DebugExit`: it is done."""

    def __init__(self, code: int) -> None:
        super().__init__(f"guest powered off with code {code}")
        self.code = code


class Device:
    """A device: the I/O ports and guest-physical addresses it answers."""

    name = "device"
    ports: range = range(0)
    mmio: range = range(0)

    def out(self, port: int, data: bytes) -> None:
        """The guest wrote ``data`` to ``port``."""

    def port_in(self, port: int, size: int) -> bytes:
        """The guest reads ``size`` bytes from ``port``."""
        return bytes(size)

    def mmio_write(self, address: int, data: bytes) -> None:
        """The guest stored ``data`` at ``address``."""

    def mmio_read(self, address: int, size: int) -> bytes:
        """The guest loads ``size`` bytes from ``address``."""
        return bytes(size)


class SerialPort(Device):
    """COM1, a 16550 UART reduced to what a guest needs to print.

    Writes to the data register are the guest's output.  The line status
    register always says "ready to send", so guests that poll it work too.
    """

    name = "serial port (COM1)"
    LINE_STATUS = 5
    TRANSMITTER_EMPTY = 0x60

    def __init__(self, base: int = SERIAL_PORT) -> None:
        self.base = base
        self.ports = range(base, base + 8)
        self.output = bytearray()

    def out(self, port: int, data: bytes) -> None:
        if port == self.base:
            self.output += data

    def port_in(self, port: int, size: int) -> bytes:
        value = self.TRANSMITTER_EMPTY if port == self.base + self.LINE_STATUS else 0
        return value.to_bytes(size, "little")

    @property
    def text(self) -> str:
        return self.output.decode("utf-8", "replace")


@dataclass(frozen=True)
class PostCode:
    code: int
    time_ns: int  # host clock (time.perf_counter_ns) when the VMM saw it


class PostCodes(Device):
    """Port 0x80, where PC firmware writes progress codes; here each is timestamped by the host."""

    name = "POST code port"

    def __init__(self, port: int = POST_PORT) -> None:
        self.ports = range(port, port + 1)
        self.codes: list[PostCode] = []

    def out(self, port: int, data: bytes) -> None:
        self.codes.append(PostCode(data[0], time.perf_counter_ns()))


class DebugExit(Device):
    """Port 0xf4: a write powers the guest off with that exit code (QEMU's ``isa-debug-exit``)."""

    name = "debug exit port"

    def __init__(self, port: int = EXIT_PORT) -> None:
        self.ports = range(port, port + 4)

    def out(self, port: int, data: bytes) -> None:
        raise PowerOff(int.from_bytes(data, "little"))


class MmioCounter(Device):
    """An 8-byte register in guest-physical address space: each read returns the count and adds one.

    Writing sets the count.  Every access is a ``KVM_EXIT_MMIO`` the VMM
    answers: there is no memory behind this address.
    """

    name = "MMIO counter"

    def __init__(self, address: int = MMIO_COUNTER) -> None:
        self.mmio = range(address, address + 8)
        self.count = 0
        self.reads = 0
        self.writes = 0

    def mmio_write(self, address: int, data: bytes) -> None:
        self.writes += 1
        self.count = int.from_bytes(data, "little")

    def mmio_read(self, address: int, size: int) -> bytes:
        self.reads += 1
        value, self.count = self.count, self.count + 1
        return (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little")


class Bus:
    """Routes port and MMIO accesses to devices; an access nobody claims raises :class:`UnclaimedAccessError`."""

    def __init__(self, *devices: Device) -> None:
        self.devices: list[Device] = []
        self._ports: dict[int, Device] = {}
        #: port -> the bound ``out`` of its device: the run loop's hot path is one dict lookup
        self.out_handlers: dict[int, Callable[[int, bytes], None]] = {}
        for device in devices:
            self.attach(device)

    def attach(self, device: Device) -> Device:
        for port in device.ports:
            if port in self._ports:
                raise InvalidOptionError(f"{device.name} wants port {port:#x}, already {self._ports[port].name}'s",
                                         "give the device another port")
        for other in self.devices:
            if (device.mmio and other.mmio
                    and device.mmio.start < other.mmio.stop and other.mmio.start < device.mmio.stop):
                raise InvalidOptionError(f"{device.name} overlaps {other.name} at {device.mmio.start:#x}",
                                         "give the device another address")
        self._ports.update(dict.fromkeys(device.ports, device))
        self.out_handlers.update(dict.fromkeys(device.ports, device.out))
        self.devices.append(device)
        return device

    def _mmio_device(self, address: int, size: int, is_write: bool) -> Device:
        for device in self.devices:
            if address in device.mmio:
                return device
        raise UnclaimedAccessError("address", address, is_write, size)

    def out(self, port: int, data: bytes) -> None:
        try:
            device = self._ports[port]
        except KeyError:
            raise UnclaimedAccessError("port", port, True, len(data)) from None
        device.out(port, data)

    def port_in(self, port: int, size: int, count: int = 1) -> bytes:
        """``count`` reads of ``size`` bytes (count > 1 for ``rep insb``)."""
        try:
            device = self._ports[port]
        except KeyError:
            raise UnclaimedAccessError("port", port, False, size) from None
        return b"".join(device.port_in(port, size) for _ in range(count))

    def mmio_write(self, address: int, data: bytes) -> None:
        self._mmio_device(address, len(data), True).mmio_write(address, data)

    def mmio_read(self, address: int, size: int) -> bytes:
        return self._mmio_device(address, size, False).mmio_read(address, size)

    def handle(self, vcpu, exit_: Exit) -> bool:
        """Answer a typed port/MMIO exit on ``vcpu``; False for exits that are not device accesses."""
        if isinstance(exit_, IoExit):
            if exit_.direction == "out":
                self.out(exit_.port, exit_.data)
            else:
                vcpu.complete_in(self.port_in(exit_.port, exit_.size, exit_.count))
            return True
        if isinstance(exit_, MmioExit):
            if exit_.is_write:
                self.mmio_write(exit_.address, exit_.data)
            else:
                vcpu.complete_mmio_read(self.mmio_read(exit_.address, exit_.size))
            return True
        return False
