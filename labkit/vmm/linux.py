"""labkit's VMM booting Linux: one VM, one vCPU, the kernel entered in 64-bit mode, a UART and a clock.

:class:`LinuxVm` builds the machine the way QEMU's ``microvm``, kvmtool and
Firecracker do, from the pieces of this package: RAM in one memory slot,
the in-kernel interrupt controllers and timer (KVM_CREATE_IRQCHIP,
KVM_CREATE_PIT2, created before the vCPU), the kernel copied to its physical
addresses, the initramfs at the top of RAM, the zero page, and the vCPU set
at the kernel's 64-bit entry.  :meth:`LinuxVm.run` is the VMM's loop:
KVM_RUN, answer the UART or the RTC, until the guest resets itself —
``reboot=t`` makes the kernel triple-fault, which KVM reports as
``KVM_EXIT_SHUTDOWN``.  :func:`boot` boots the lab's tiny guest with a
nonce and returns its report, times and exits by reason.

Everything it owns is file descriptors and memory of this process, closed
on the way out: when the process dies, the kernel frees the VM with it.
"""

from __future__ import annotations

import contextlib
import mmap
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from labkit import host, images, runtime
from labkit.errors import InvalidOptionError, console_tail, from_os_error
from labkit.i18n import _
from labkit.kvm import abi
from labkit.kvm.exits import INTERRUPTED, Exit
from labkit.kvm.memory import MemorySlot
from labkit.kvm.system import Kvm
from labkit.kvm.vcpu import install_kick_handler
from labkit.vmm import cpu, zeropage
from labkit.vmm.bus import PcBus
from labkit.vmm.errors import LinuxBootError, NeedsHardwareKvmError
from labkit.vmm.kernel import LinuxKernel, copy_into, read_kernel
from labkit.vmm.rtc import CmosRtc
from labkit.vmm.uart import COM1_IRQ, Transmit, Uart, transmit
from labkit.vmm.zeropage import E820Entry

#: What this VMM adds to the tiny guest's command line, each for a reason.
VMM_CMDLINE = " ".join((
    "reboot=t",  # the guest's reboot (its /init ends with `reboot -f`) is a triple fault: KVM_EXIT_SHUTDOWN
    "pci=off",   # there is no PCI bus: do not probe for one (ports 0xcf8/0xcfc)
    "acpi=off",  # there are no ACPI tables: do not search for them (and report "A valid RSDP was not found")
    "8250.nr_uarts=1",  # COM1 is the only UART: do not probe for COM2-COM4
    # Each character the kernel prints costs ~3 exits (polling the UART): its errors about hardware this machine
    # does not have ("PCI: Fatal: No config space access function found") were ~15 % of a boot's exits.  A panic
    # (KERN_EMERG) still prints, and /init's report does not go through the kernel's log.
    "loglevel=3",
))
DEFAULT_MEMORY_MIB = 128
#: Exits served per call into the run loop; between calls the loop only checks why it came back.
EXITS_PER_SERVE = 1 << 16
#: What the nonce adds to the initramfs (a gzip'd cpio of one small file), counted when checking the RAM size.
NONCE_ROOM = 1 << 10


@dataclass(frozen=True)
class LinuxTimes:
    """When the boot got where, in seconds since the VMM's launch: it starts building the VM from the files
    (found, and the initramfs copied with the nonce, before it: as a QEMU is launched once they are)."""

    setup_s: float  # launch → first KVM_RUN: the VM, its RAM, the kernel and initramfs copied in, the vCPU set
    userspace_s: float  # launch → the report line of /init arrived on the UART
    report_after_first_run_s: float  # first KVM_RUN → the report line
    poweroff_s: float  # launch → KVM_EXIT_SHUTDOWN (the guest's reset)
    guest_uptime_s: float  # the guest's own clock at /init


@dataclass(frozen=True)
class LinuxBoot:
    """A finished boot under labkit's VMM: what the guest saw, the times, and the exits by reason."""

    report: images.GuestReport
    times: LinuxTimes
    exits: dict[str, int]  # KVM_EXIT_* name -> count
    console: str
    kernel: Path
    kernel_kind: str
    cmdline: str
    memory_mib: int
    interrupts: int  # times the UART raised IRQ 4
    unclaimed: dict[str, int] = field(default_factory=dict)  # ports/addresses no device answered
    first_exits: tuple[str, ...] = ()  # the first exits, as KVM described them (LinuxVm's ``first_exits``)
    lines: tuple[tuple[float, str], ...] = ()  # each console line and when it ended, since the first KVM_RUN
    end: str = ""  # the exit that ended the guest (KVM_EXIT_SHUTDOWN) and where

    @property
    def total_exits(self) -> int:
        return sum(self.exits.values())

    def to_dict(self) -> dict:
        return {"vmm": "labkit", "accel": "kvm", "vcpus": 1, "memory_mib": self.memory_mib,
                "kernel": str(self.kernel), "kernel_kind": self.kernel_kind, "cmdline": self.cmdline,
                "report": self.report.to_dict(), "times": {**vars(self.times)},
                "exits": dict(self.exits), "total_exits": self.total_exits, "uart_interrupts": self.interrupts,
                "unclaimed": dict(self.unclaimed), "first_exits": list(self.first_exits),
                "lines": [list(line) for line in self.lines], "end": self.end}


class LinuxVm:
    """A VM with ``kernel`` and ``initrd`` loaded, ready to run.  A context manager; ``close()`` frees it all.

    Two pieces can be replaced (notebook 06's learners write them): ``e820``, the memory map written into
    the zero page (default :func:`zeropage.e820_map` of the RAM size), and ``transmit``, what the UART does
    with a byte written to its THR (default :func:`labkit.vmm.uart.transmit`).  ``first_exits``: how many
    of the first exits to keep, described, in :attr:`first_exit_log`.
    """

    def __init__(self, kernel: LinuxKernel, initrd: bytes, cmdline: str, memory_size: int, *,
                 on_output: Callable[[str], None] | None = None, kvm_path: Path | str | None = None,
                 e820: Sequence[E820Entry] | None = None, transmit: Transmit = transmit,
                 first_exits: int = 0) -> None:
        zeropage.check_memory(memory_size, kernel, len(initrd))
        command_line = cmdline.encode() + b"\0"
        if len(command_line) > zeropage.cmdline_limit(kernel) + 1:
            raise InvalidOptionError(f"the command line is {len(command_line) - 1} bytes; this kernel takes at "
                                     f"most {zeropage.cmdline_limit(kernel)}", "shorten the command")
        self.kernel, self.cmdline, self.memory_size = kernel, cmdline, memory_size
        self.kvm = Kvm(kvm_path)
        try:
            self.vm = self.kvm.create_vm()
            self.vm.set_tss_addr()
            self.vm.create_irqchip()
            self.vm.create_pit2()
            prefer_huge_pages(self.vm.add_memory(0, memory_size))
            self.uart = Uart(self._raise_uart_irq, on_output, transmit=transmit)
            self.bus = PcBus(self.uart, CmosRtc())
            self.vcpu = self.vm.create_vcpu()
            self.vcpu.set_cpuid(cpu.guest_cpuid(self.kvm.supported_cpuid()))
            memory = self.vm.memory
            copy_into(kernel, memory)
            initrd_addr = zeropage.initramfs_address(memory_size, len(initrd), kernel)
            memory.write(initrd_addr, initrd)
            memory.write(zeropage.CMDLINE, command_line)
            memory_map = tuple(e820) if e820 is not None else zeropage.e820_map(memory_size)
            params = zeropage.zero_page(kernel, initrd_addr, len(initrd), memory_map)
            memory.write(zeropage.ZERO_PAGE, bytes(params))
            cpu.enter_64bit(self.vcpu, memory, kernel.entry, zeropage.ZERO_PAGE)
        except BaseException:
            self.kvm.close()
            raise
        self.counts = [0] * 256
        self.first_run: float | None = None
        self._expired = False
        self.first_exits = first_exits
        self.first_exit_log: list[str] = []

    def _raise_uart_irq(self) -> None:
        """An edge on IRQ 4: the in-kernel PIC latches it (raise, then lower the line)."""
        self.vm.irq_line(COM1_IRQ, 1)
        self.vm.irq_line(COM1_IRQ, 0)

    @property
    def exits(self) -> dict[str, int]:
        return {abi.EXIT_REASON_NAMES.get(r, f"exit reason {r}"): n for r, n in enumerate(self.counts) if n}

    def run(self, timeout: float) -> Exit:
        """Run the vCPU until the guest resets itself (``KVM_EXIT_SHUTDOWN``, returned) or ``timeout`` passes.

        Any other end — KVM's emulator giving up, a refused entry, the time
        running out — raises :class:`LinuxBootError` with the evidence: the
        exit, the registers at it, and the console's last lines.
        """
        if not install_kick_handler():
            raise InvalidOptionError("the VMM's time limit needs the vCPU kick signal's handler, which only "
                                     "the main thread can install", "boot from the main thread")
        self._expired = False  # a run after one that timed out gets its own time
        timer = threading.Timer(timeout, self._expire)
        timer.daemon = True
        self.first_run = self.first_run or time.perf_counter()
        timer.start()
        try:
            while True:
                exit_ = self._first_exit() if len(self.first_exit_log) < self.first_exits else \
                    self.vcpu.serve(self.bus, self.counts, EXITS_PER_SERVE)
                if exit_ is None:
                    continue
                if exit_.reason == abi.KVM_EXIT_SHUTDOWN:
                    return exit_
                if exit_ is INTERRUPTED and not self._expired:
                    continue  # a signal for this process (its handler has run): go on
                raise self._failure(exit_, timeout)
        finally:
            timer.cancel()

    def _first_exit(self) -> Exit | None:
        """One KVM_RUN, its exit described in :attr:`first_exit_log` and served; None when the bus took it."""
        exit_ = self.vcpu.run()
        if exit_ is INTERRUPTED:
            return exit_
        self.counts[exit_.reason] += 1
        self.first_exit_log.append(f"{time.perf_counter() - (self.first_run or 0):8.4f} s  {exit_}")
        return None if self.bus.handle(self.vcpu, exit_) else exit_

    def _expire(self) -> None:
        self._expired = True
        self.vcpu.kick()

    def _failure(self, exit_: Exit, timeout: float) -> LinuxBootError:
        regs = self.vcpu.get_regs()
        if exit_ is INTERRUPTED:
            what = f"the guest did not reset itself within {timeout:g} s (labkit stopped it at rip {regs.rip:#x})"
            fix = "a longer command needs a longer --timeout; the console's last lines say where it was"
        else:
            what = f"the guest stopped with {exit_} at rip {regs.rip:#x}, before it reset itself"
            fix = ("KVM could not go on with this guest (on a host whose KVM emulates ring 0, that is expected: "
                   "labkit nested run -- labkit kvm linux); elsewhere the console's last lines and the exit say "
                   "how far it got: report them with the kernel's version")
        return LinuxBootError(f"{what}. Exits so far: {self.exits}. Last console lines:\n"
                              f"{console_tail(self.uart.text)}", fix)

    def close(self) -> None:
        """Close the vCPU, the VM (freeing its RAM) and /dev/kvm.  Safe to call twice."""
        self.kvm.close()

    def __enter__(self) -> LinuxVm:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def prefer_huge_pages(slot: MemorySlot) -> None:
    """Ask for 2 MiB pages behind the guest's RAM (``MADV_HUGEPAGE``, as QEMU does for every RAM block).

    KVM maps guest memory with the page size the host used for it: each 4 KiB
    page the guest touches first costs a nested page fault (an exit KVM
    handles in the kernel); a 2 MiB page costs one for 512 of them.
    Where the host has no transparent huge pages this changes nothing.
    """
    with contextlib.suppress(OSError, AttributeError):  # AttributeError: no MADV_HUGEPAGE on this platform
        slot.mapping.madvise(mmap.MADV_HUGEPAGE)


def require_kvm_for_linux(report: host.HostReport | None = None) -> None:
    """Raise :class:`NeedsHardwareKvmError` where this host's KVM cannot run a Linux kernel (labkit.host's verdict)."""
    verdict = (report or host.inspect()).verdict
    if verdict.boots_linux:
        return
    raise NeedsHardwareKvmError(
        f"this host's KVM cannot run a Linux kernel ({verdict.label}: {'; '.join(verdict.reasons)}): without "
        "VT-x/AMD-V, KVM runs the guest's ring 0 through its instruction emulator, which stops on instructions "
        "it lacks",
        "run it inside the emulated AMD-V machine, where real kvm_amd runs: labkit nested run -- labkit kvm linux")


def boot(kernel: Path | str | None = None, *, command: str | None = None,
         memory_mib: int = DEFAULT_MEMORY_MIB, vcpus: int = 1, timeout: float = 60.0,
         on_output: Callable[[str], None] | None = None, check_host: bool = True,
         e820: Sequence[E820Entry] | None = None, transmit: Transmit = transmit, first_exits: int = 0) -> LinuxBoot:
    """Boot the lab's tiny guest under labkit's VMM: its report (with this boot's nonce), times and exits.

    ``kernel`` defaults to the lab's cached one (its uncompressed vmlinux);
    ``command`` runs in the guest after its report.  Bad input is refused
    before the host is asked anything; ``check_host=False`` skips the host's
    verdict (for a caller that asked it already).  ``e820``, ``transmit`` and
    ``first_exits`` go to :class:`LinuxVm`.
    """
    if vcpus != 1:
        raise InvalidOptionError(f"vcpus={vcpus!r}: labkit's VMM boots one vCPU (more need an MP table or "
                                 "ACPI's MADT to tell the kernel about them)", "use --vcpus 1")
    if isinstance(memory_mib, bool) or not isinstance(memory_mib, int) or memory_mib <= 0:
        raise InvalidOptionError(f"memory {memory_mib!r} MiB: must be a whole number of MiB above 0",
                                 f"use e.g. --memory {DEFAULT_MEMORY_MIB}")
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise InvalidOptionError(f"timeout={timeout!r}: must be a number of seconds above 0", "use e.g. 60")
    if kernel is None:
        found = images.find_kernel(fetch=False, progress=False)
        kernel = found.vmlinux or found.path
    linux = read_kernel(kernel)
    initrd_path = images.build_initramfs(command)
    zeropage.check_memory(memory_mib << 20, linux, initrd_path.stat().st_size + NONCE_ROOM)
    if check_host:
        require_kvm_for_linux()
    token = images.nonce()
    try:
        with runtime.scratch("vmm-initrd") as folder:  # gone before the guest runs: nothing to leak later
            initrd = images.with_nonce(initrd_path, folder, token).read_bytes()
    except OSError as exc:
        raise from_os_error(exc, "copy the initramfs with this boot's nonce") from None
    cmdline = f"{images.BASE_CMDLINE} {VMM_CMDLINE}"
    launched = time.perf_counter()
    with LinuxVm(linux, initrd, cmdline, memory_mib << 20, on_output=on_output, e820=e820, transmit=transmit,
                 first_exits=first_exits) as vm:
        end = vm.run(timeout)
        stopped = time.perf_counter()
        rip = vm.vcpu.get_regs().rip
        console = vm.uart.text
        report_at = vm.uart.time_of(images.report_prefix(token).encode())
        first_run = vm.first_run
        exits, interrupts, unclaimed = vm.exits, vm.uart.interrupts, dict(vm.bus.unclaimed)
        lines = console_lines(vm.uart, vm.first_run or launched)
        first = tuple(vm.first_exit_log)
    report = images.parse_report(console, token)  # a panic, or no report: the error quotes the console
    assert first_run is not None and report_at is not None  # parse_report found the line, so it ended
    times = LinuxTimes(setup_s=first_run - launched, userspace_s=report_at - launched,
                       report_after_first_run_s=report_at - first_run, poweroff_s=stopped - launched,
                       guest_uptime_s=report.uptime_s)
    return LinuxBoot(report, times, exits, console, linux.path, linux.kind, cmdline, memory_mib, interrupts,
                     unclaimed, first, lines, _("{exit} at rip {rip:#x}").format(exit=end, rip=rip))


def console_lines(uart: Uart, since: float) -> tuple[tuple[float, str], ...]:
    """Each whole line the UART sent, with when it ended in seconds after ``since``."""
    lines, start = [], 0
    for end, at in uart.line_ends:
        lines.append((at - since, uart.output[start:end].decode("utf-8", "replace").rstrip("\r\n")))
        start = end
    return tuple(lines)
