from labkit.vmm.uart import IER_THRI, MCR_LOOP, Uart


def my_transmit(uart: Uart, value: int) -> None:
    """The guest wrote the byte `value` to THR (port 0x3f8): what does the UART do now?"""
    if not uart.mcr & MCR_LOOP:
        uart.emit(value)                  # out on the line: the console shows it
    uart.thr_empty_pending = True         # sent at once: THR is empty again, and IIR will say so
    if uart.ier & IER_THRI:               # the driver asked for that interrupt
        uart.raise_irq()                  # IRQ 4: the tty layer writes its next bytes
