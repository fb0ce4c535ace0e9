from labkit.exercises.mmio_device import DEVICE_ADDR, INPUT, RESULT, formula
from labkit.kvm.devices import Device

_m, _k = formula()


class MyDevice(Device):
    """The calculator at DEVICE_ADDR: the guest stores a number to INPUT, then loads RESULT."""

    name = "calculator"

    def __init__(self) -> None:
        self.mmio = range(DEVICE_ADDR, DEVICE_ADDR + 8)
        self.input = 0

    def mmio_write(self, address: int, data: bytes) -> None:
        if address - DEVICE_ADDR == INPUT:
            self.input = int.from_bytes(data, "little")

    def mmio_read(self, address: int, size: int) -> bytes:
        value = _m * self.input + _k if address - DEVICE_ADDR == RESULT else 0
        return value.to_bytes(size, "little")
