"""The CMOS real-time clock (MC146818) at ports 0x70 (index) and 0x71 (data): the guest's wall-clock time.

Linux reads the date from it at boot (and waits while its *update in
progress* bit is set): without one, the kernel spins on these ports — tens
of thousands of exits.  This one answers the host's UTC time in BCD, 24-hour
mode, and says its battery is good.
"""

from __future__ import annotations

import time

from labkit.kvm.devices import Device

CMOS_INDEX = 0x70
REG_A, REG_B, REG_C, REG_D = 0x0A, 0x0B, 0x0C, 0x0D
CENTURY = 0x32
REG_A_32KHZ = 0x26  # 32.768 kHz time base, 1.024 kHz rate; UIP (bit 7) clear: readable now
REG_B_24H = 0x02  # 24-hour clock, BCD, no interrupts enabled
REG_D_VALID = 0x80  # the battery is good: the time is valid


def bcd(value: int) -> int:
    return (value // 10) << 4 | value % 10


class CmosRtc(Device):
    """Index register at 0x70 (bit 7 is the NMI mask, ignored), data at 0x71."""

    name = "CMOS RTC"

    def __init__(self, clock=time.gmtime) -> None:
        self.ports = range(CMOS_INDEX, CMOS_INDEX + 2)
        self.index = 0
        self.clock = clock
        self.ram = bytearray(128)  # the rest of CMOS memory: what the guest wrote there, else 0

    def out(self, port: int, data: bytes) -> None:
        if port == CMOS_INDEX:
            self.index = data[0] & 0x7F
        elif self.index > REG_D:
            self.ram[self.index] = data[0]

    def port_in(self, port: int, size: int) -> bytes:
        return bytes((self.register(self.index) if port != CMOS_INDEX else 0xFF,)) * size

    def register(self, index: int) -> int:
        now = self.clock()
        fields = {0x00: now.tm_sec, 0x02: now.tm_min, 0x04: now.tm_hour, 0x06: (now.tm_wday + 1) % 7 + 1,
                  0x07: now.tm_mday, 0x08: now.tm_mon, 0x09: now.tm_year % 100, CENTURY: now.tm_year // 100}
        if index in fields:
            return bcd(fields[index])
        return {REG_A: REG_A_32KHZ, REG_B: REG_B_24H, REG_C: 0, REG_D: REG_D_VALID}.get(index, self.ram[index])
