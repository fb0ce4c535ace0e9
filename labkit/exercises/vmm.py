"""Notebook 06's exercises: two pieces of the VMM that boots Linux, written by the learner.

- ``vmm-e820``: the memory map the VMM writes into the zero page, for the
  learner's own RAM size (:func:`memory_mib`).  Judged against what the real
  kernel needs from it: its image (read from the lab's ``vmlinux``) and the
  initramfs at the top of RAM in usable memory, no RAM the VM does not have,
  none in the PC's legacy hole, all of it offered.
- ``vmm-transmit``: what the UART does with a byte written to its THR.
  Judged by driving it the way Linux's 8250 driver does — the early console
  polls, the tty layer sends by the THRE interrupt, up to 16 bytes per
  interrupt (``serial8250_tx_chars``) — and seeing what came out.

Both then go into notebook 06's one boot inside L1 (:func:`boot_pieces`):
there the kernel reads the learner's map and prints through their handler.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from labkit import exercises, images
from labkit.exercises import Feedback, exercise
from labkit.i18n import _
from labkit.i18n import noop as N_
from labkit.nested import own_vmm
from labkit.vmm import bootparam, zeropage
from labkit.vmm.kernel import LinuxKernel, read_kernel
from labkit.vmm.linux import NONCE_ROOM
from labkit.vmm.uart import COM1, IER, IER_THRI, IIR, IIR_NO_INT, LSR, LSR_TEMT_THRE, THR, Uart

E820 = "vmm-e820"
TRANSMIT = "vmm-transmit"

#: The RAM sizes a learner's guest may get (MiB): the map must fit theirs.
MEMORY_CHOICES = (96, 112, 128, 160, 192)
#: The PC's legacy hole: from the EBDA below 640 KiB to 1 MiB (VGA window, option ROMs, BIOS).
LEGACY = range(zeropage.EBDA_START, zeropage.HIGH_MEMORY)
#: Bytes the 8250 driver writes per THRE interrupt on a 16550A (its FIFO: ``tx_loadsz``).
TX_LOAD = 16
#: What the driver sends in the check: the early console's line, then a line by interrupt.
EARLY_LINE = b"Linux version 6.1 (early console)\n"
TTY_LINE = b"LABKIT-REPORT from /init, sent by the tty layer through IRQ 4\n"

E820_STARTER = "my_e820 = []"
TRANSMIT_STARTER = '''\
from labkit.vmm.uart import IER_THRI, Uart


def my_transmit(uart: Uart, value: int) -> None:
    """The guest wrote the byte `value` to THR (port 0x3f8): what does the UART do now?"""
'''


def memory_mib() -> int:
    """This learner's guest RAM (MiB), for which they write the map."""
    return exercises.target(E820, MEMORY_CHOICES)


def task() -> str:
    """The learner's map task in words, for the notebook to print."""
    return _("your guest has {mib} MiB of RAM ({size:#x} bytes) in one memory slot from address 0: write its "
             "e820 map as (address, size, type) rows, type 1 = usable RAM, 2 = reserved").format(
                 mib=memory_mib(), size=memory_mib() << 20)


def e820_hints() -> tuple[str, ...]:
    """The map's hints, in the language chosen now (a notebook chooses it after importing this module)."""
    return (
        _("the map tells the kernel which guest-physical ranges are usable RAM (type 1): the VM's RAM is one slot "
          "from 0 to its size, and the kernel may use only what the map offers"),
        _("a PC has no RAM for the kernel from the EBDA (0x9fc00) up to 1 MiB (0x100000): the VGA window, option "
          "ROMs and the BIOS live there; a map says so with a reserved row"),
        _("sizes are in bytes, rows sorted by address and not overlapping: your guest's RAM ends at {mib} << 20"
          ).format(mib=memory_mib()),
    )


def _kernel() -> tuple[LinuxKernel, int]:
    """The lab's kernel (its vmlinux) and the initramfs size notebook 06 boots with."""
    found = images.find_kernel(fetch=False, progress=False)
    initrd = images.build_initramfs(own_vmm.GUEST_COMMAND).stat().st_size + NONCE_ROOM
    return read_kernel(found.vmlinux or found.path), initrd


def _rows(answer: object) -> tuple[zeropage.E820Entry, ...] | None:
    if not isinstance(answer, (list, tuple)) or not answer:
        return None
    rows = []
    for row in answer:
        if not isinstance(row, (list, tuple)) or len(row) != 3 or not all(
                isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in row):
            return None
        rows.append(zeropage.E820Entry(*row))
    return tuple(rows)


def _usable(rows: Sequence[zeropage.E820Entry], start: int, end: int) -> bool:
    """Whether [start, end) lies inside one usable row."""
    return any(r.type == bootparam.E820_TYPE_RAM and r.addr <= start and end <= r.end for r in rows)


@exercise(E820)
def check_e820(answer: object) -> Feedback:
    """The learner's map against what the real kernel needs of it, for their RAM size."""
    rows = _rows(answer)
    if rows is None:
        return Feedback(False, _("my_e820 should be a list of (address, size, type) rows of whole numbers, got "
                                 "{answer!r}").format(answer=answer), e820_hints())
    size = memory_mib() << 20
    problems = []
    if any(r.type not in (bootparam.E820_TYPE_RAM, bootparam.E820_TYPE_RESERVED) for r in rows):
        problems.append(_("a row's type is neither 1 (usable RAM) nor 2 (reserved)"))
    if any(b.addr < a.end for a, b in zip(rows, rows[1:])) or any(r.size == 0 for r in rows):
        problems.append(_("the rows are not sorted by address, overlap, or one is empty"))
    ram = [r for r in rows if r.type == bootparam.E820_TYPE_RAM]
    if any(r.end > size for r in ram):
        problems.append(_("usable RAM beyond {size:#x}: the VM has no memory there, and the kernel would fault "
                          "on it").format(size=size))
    if any(r.addr < LEGACY.stop and LEGACY.start < r.end for r in ram):
        problems.append(_("usable RAM in the PC's legacy hole ({start:#x}-{stop:#x})").format(
            start=LEGACY.start, stop=LEGACY.stop))
    kernel, initrd_size = _kernel()
    low = min(s.paddr for s in kernel.loads)
    if not _usable(rows, low, kernel.end):
        problems.append(_("the kernel's image ({start:#x}-{end:#x}, from its ELF headers) is not in one usable "
                          "row").format(start=low, end=kernel.end))
    initrd = zeropage.initramfs_address(size, initrd_size, kernel)
    if not _usable(rows, initrd, initrd + initrd_size):
        problems.append(_("the initramfs, at the top of RAM ({start:#x}), is not in usable RAM").format(start=initrd))
    offered = sum(min(r.end, size) - max(r.addr, zeropage.HIGH_MEMORY) for r in ram if r.end > zeropage.HIGH_MEMORY)
    if not problems and offered < size - zeropage.HIGH_MEMORY:
        problems.append(_("the map offers {got} MiB above 1 MiB of the {all} MiB there: the rest is wasted").format(
            got=offered >> 20, all=(size - zeropage.HIGH_MEMORY) >> 20))
    if problems:
        return Feedback(False, "; ".join(problems), e820_hints())
    return Feedback(True, _("{rows} rows: the kernel ({kernel} MiB at {start:#x}) and the initramfs at {initrd:#x} "
                            "lie in usable RAM, the legacy hole is not offered, all {mib} MiB are").format(
                                rows=len(rows), kernel=kernel.size >> 20, start=low, initrd=initrd,
                                mib=memory_mib()))


#: Marked with N_, translated when shown (a notebook picks its language after importing this module).
TRANSMIT_HINTS = (
    N_("a byte written to THR must come out on the console: the UART has a method that sends one"),
    N_("Linux's tty layer writes up to 16 bytes, then waits for the UART's 'transmitter holding register empty' "
      "interrupt (IRQ 4) before it writes more: after each byte THR is empty again"),
    N_("the interrupt fires only if the driver enabled it (IER bit IER_THRI), and the driver's handler reads IIR "
      "to see why it came: uart.thr_empty_pending is what IIR reports"),
)


class _Driver:
    """The parts of Linux's 8250 driver that write: polled (early console) and by interrupt (the tty)."""

    def __init__(self, handler: Callable[[Uart, int], None]) -> None:
        self.irqs = 0
        self.uart = Uart(self._irq, transmit=handler)

    def _irq(self) -> None:
        self.irqs += 1

    def reg(self, offset: int) -> int:
        return self.uart.port_in(COM1 + offset, 1)[0]

    def poll_write(self, text: bytes) -> None:
        """serial8250_console_write: wait for LSR's THRE, write the byte, for each byte (IER off)."""
        self.uart.out(COM1 + IER, b"\0")
        for byte in text:
            if self.reg(LSR) & LSR_TEMT_THRE:
                self.uart.out(COM1 + THR, bytes((byte,)))

    def interrupt_write(self, text: bytes) -> int:
        """start_tx sets IER_THRI; each IRQ 4 runs the handler: IIR, then up to 16 bytes.  Bytes sent."""
        pending = list(text)
        self.uart.out(COM1 + IER, bytes((IER_THRI,)))
        while pending and self.irqs:
            self.irqs = 0  # the PIC latched the edge(s): one run of the handler
            if self.reg(IIR) & IIR_NO_INT:
                break  # the handler found no reason: it returns, and no more bytes are written
            for _i in range(min(TX_LOAD, len(pending))):
                self.uart.out(COM1 + THR, bytes((pending.pop(0),)))
        self.uart.out(COM1 + IER, b"\0")
        return len(text) - len(pending)


@exercise(TRANSMIT)
def check_transmit(answer: object) -> Feedback:
    """Drive the learner's handler as Linux's 8250 driver does; judge what reached the console."""
    if not callable(answer):
        return Feedback(False, _("pass your function, my_transmit (got a {type})").format(type=type(answer).__name__),
                        tuple(map(_, TRANSMIT_HINTS)))
    driver = _Driver(answer)  # any callable: its errors become feedback below
    try:
        driver.poll_write(EARLY_LINE)
        early = bytes(driver.uart.output)
        sent = driver.interrupt_write(TTY_LINE)
    except Exception as exc:  # the learner's handler ran inside the UART: its error is feedback, not a traceback
        return Feedback(False, _("your handler raised {error}").format(error=f"{type(exc).__name__}: {exc}"),
                        tuple(map(_, TRANSMIT_HINTS)))
    out = bytes(driver.uart.output)
    if early != EARLY_LINE:
        return Feedback(False, _("the early console wrote {want} bytes to THR; the console got {got}").format(
            want=len(EARLY_LINE), got=len(early)), tuple(map(_, TRANSMIT_HINTS)))
    if out != EARLY_LINE + TTY_LINE:
        return Feedback(False, _("the tty layer sent {sent} of {want} bytes by interrupt, then IRQ 4 did not come "
                                 "(or IIR named no reason): /init's report would stop there").format(
                                     sent=sent, want=len(TTY_LINE)), tuple(map(_, TRANSMIT_HINTS)))
    return Feedback(True, _("the early console's line came out polled, and /init's line by IRQ 4, {n} bytes per "
                            "interrupt, as Linux's 8250 driver sends").format(n=TX_LOAD))


def boot_pieces(e820: object, transmit: object) -> tuple[own_vmm.Pieces, list[str]]:
    """The pieces for notebook 06's boot: the learner's where their check passes, else the VMM's own (said)."""
    notes = []
    mib = memory_mib()
    rows = _rows(e820) if exercises.all_exercises()[E820](e820).solved else None
    notes.append(_("e820 map: yours") if rows else _("e820 map: the VMM's own (yours does not pass its check yet)"))
    handler = transmit if exercises.all_exercises()[TRANSMIT](transmit).solved else None
    notes.append(_("THR handler: yours") if handler else
                 _("THR handler: the VMM's own (yours does not pass its check yet)"))
    return own_vmm.Pieces(mib, rows, handler), notes  # type: ignore[arg-type]  # checked: a callable
