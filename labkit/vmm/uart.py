"""An 8250/16550A UART at COM1 (ports 0x3f8–0x3ff, IRQ 4): the guest's console, with the interrupts Linux needs.

The kernel's early console writes by polling the line status register, but
once ``/init`` runs, the tty layer sends bytes by interrupt: it enables the
*transmitter holding register empty* interrupt (IER bit 1) and writes the
next bytes when it fires.  So besides storing what the driver's probe writes
and reads back (IER, LCR with the divisor latch, MCR with loopback reflected
in MSR, the scratch register, the FIFO bits of IIR), this UART raises IRQ 4
whenever its transmitter becomes empty with that interrupt enabled — which,
sending instantly, is right after each byte and when the interrupt is
enabled.  The line goes through KVM_IRQ_LINE to the in-kernel PIC/IOAPIC.

What a write to THR does is one replaceable function, :data:`Transmit`
(default :func:`transmit`): notebook 06's learners write their own and boot
Linux with it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from labkit.kvm.devices import Device

COM1 = 0x3F8
COM1_IRQ = 4
# register offsets
THR, IER, IIR, LCR, MCR, LSR, MSR, SCR = range(8)  # IIR reads where FCR is written
DLL, DLM = 0, 1  # with LCR.DLAB set
LCR_DLAB = 0x80
IER_THRI = 0x02  # transmitter holding register empty interrupt
IIR_NO_INT, IIR_THRI, IIR_FIFO = 0x01, 0x02, 0xC0
FCR_ENABLE_FIFO = 0x01
LSR_TEMT_THRE = 0x60  # transmitter empty, holding register empty: always ready to send
MCR_LOOP = 0x10

#: The handler of a write to THR: ``transmit(uart, value)`` sends the byte and signals that THR is empty again.
Transmit = Callable[["Uart", int], None]


def transmit(uart: Uart, value: int) -> None:
    """A byte written to THR: out on the line at once (unless looped back), so THR is empty again."""
    if not uart.mcr & MCR_LOOP:
        uart.emit(value)
    uart.thr_empty_pending = True  # IIR names the THRE interrupt until it is read or THR written
    if uart.ier & IER_THRI:
        uart.raise_irq()


class Uart(Device):
    """COM1 as a 16550A with nothing to receive.  ``raise_irq()`` pulses its interrupt line.

    ``on_output`` sees each write to THR as text; :attr:`lines` holds when each
    line ended (``time.perf_counter()``), so a caller learns *when* the guest said something.
    """

    name = "8250 UART (COM1)"

    def __init__(self, raise_irq: Callable[[], None], on_output: Callable[[str], None] | None = None,
                 base: int = COM1, transmit: Transmit = transmit) -> None:
        self.base = base
        self.ports = range(base, base + 8)
        self._pulse = raise_irq
        self.on_output = on_output
        self.transmit = transmit
        self.output = bytearray()
        self.line_ends: list[tuple[int, float]] = []  # (offset after the newline, perf_counter)
        self.ier = self.lcr = self.mcr = self.scr = self.dll = self.dlm = 0
        self.fifo = False
        self.thr_empty_pending = False  # the THRE interrupt is asserted until IIR reports it or THR is written
        self.interrupts = 0

    def out(self, port: int, data: bytes) -> None:
        reg, value = port - self.base, data[0]
        if reg == THR and not self.lcr & LCR_DLAB:
            self.thr_empty_pending = False  # the write fills THR: its empty interrupt is no longer pending
            self.transmit(self, value)
        elif reg == IER and not self.lcr & LCR_DLAB:
            was = self.ier
            self.ier = value & 0x0F
            if self.ier & IER_THRI and not was & IER_THRI:  # the transmitter is empty: it interrupts at once
                self._thr_empty()
        elif reg == DLL:
            self.dll = value
        elif reg == DLM:
            self.dlm = value
        elif reg == IIR:  # FCR
            self.fifo = bool(value & FCR_ENABLE_FIFO)
        elif reg == LCR:
            self.lcr = value
        elif reg == MCR:
            self.mcr = value & 0x1F
        elif reg == SCR:
            self.scr = value

    def port_in(self, port: int, size: int) -> bytes:
        return bytes((self._read(port - self.base),)) * size

    def _read(self, reg: int) -> int:
        if self.lcr & LCR_DLAB and reg in (DLL, DLM):
            return self.dll if reg == DLL else self.dlm
        if reg == IER:
            return self.ier
        if reg == IIR:
            fifo = IIR_FIFO if self.fifo else 0
            if self.thr_empty_pending and self.ier & IER_THRI:
                self.thr_empty_pending = False  # reading IIR that names it clears the THRE interrupt
                return fifo | IIR_THRI
            return fifo | IIR_NO_INT
        if reg == LCR:
            return self.lcr
        if reg == MCR:
            return self.mcr
        if reg == LSR:
            return LSR_TEMT_THRE
        if reg == MSR:
            return self._modem_status()
        if reg == SCR:
            return self.scr
        return 0  # RBR: nothing received

    def _modem_status(self) -> int:
        """In loopback the modem outputs come back as inputs (the driver's probe checks this); else CTS|DSR|DCD."""
        if not self.mcr & MCR_LOOP:
            return 0xB0
        m = self.mcr
        return (m & 0x02) << 3 | (m & 0x01) << 5 | (m & 0x04) << 4 | (m & 0x08) << 4  # RTS→CTS DTR→DSR OUT1→RI OUT2→DCD

    def emit(self, value: int) -> None:
        """The byte ``value`` leaves on the line: the console gets it (and a newline's time is kept)."""
        self.output.append(value)
        if value == 0x0A:
            self.line_ends.append((len(self.output), time.perf_counter()))
        if self.on_output is not None:
            self.on_output(chr(value))  # byte by byte, as it arrives (Latin-1; .text decodes UTF-8)

    def raise_irq(self) -> None:
        """Pulse IRQ 4 (counted in :attr:`interrupts`)."""
        self.interrupts += 1
        self._pulse()

    def _thr_empty(self) -> None:
        self.thr_empty_pending = True
        if self.ier & IER_THRI:
            self.raise_irq()

    @property
    def text(self) -> str:
        return self.output.decode("utf-8", "replace")

    def time_of(self, marker: bytes) -> float | None:
        """When the first line holding ``marker`` ended (perf_counter), or None if none has."""
        at = self.output.find(marker)
        if at < 0:
            return None
        return next((t for end, t in self.line_ends if end > at), None)
