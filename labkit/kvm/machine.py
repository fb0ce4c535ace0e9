"""A complete tiny VMM: one VM, one vCPU, RAM, devices and a guest program, in one object.

This is the loop every KVM-based VMM (QEMU, Firecracker, crosvm) has at its
heart: ``KVM_RUN``, look at why the guest exited, play the device it talked
to, enter again.  :meth:`Machine.step` does it once and records everything a
learner wants to see; :meth:`Machine.run` does it until the guest halts,
lean enough to keep up with a loop written in C.

The machine never hangs and never leaves anything behind: a time budget
kicks the vCPU out of a guest that spins, an exit budget stops a guest that
exits forever, and a guest that crashes raises a :class:`KvmGuestError` with its
registers and the code at RIP.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from labkit import asm
from labkit.errors import InvalidOptionError
from labkit.i18n import Phrase, _
from labkit.i18n import noop as N_
from labkit.kvm import abi, guests, modes
from labkit.kvm.devices import (
    Bus,
    DebugExit,
    Device,
    MmioCounter,
    PostCodes,
    PowerOff,
    SerialPort,
    UnclaimedAccessError,
)
from labkit.kvm.errors import (
    GuestAddressError,
    GuestBudgetExceededError,
    GuestEntryFailedError,
    GuestInternalError,
    GuestShutdownError,
    KvmGuestError,
    UnexpectedExitError,
    UnhandledAccessError,
)
from labkit.kvm.exits import INTERRUPTED, Exit
from labkit.kvm.fd import Trace
from labkit.kvm.regs import Mode, Registers, SpecialRegisters
from labkit.kvm.system import Kvm
from labkit.kvm.vcpu import install_kick_handler

DEFAULT_MEMORY = 2 << 20
#: A label followed by data directives (``message: .asciz "..."``): where code ends.
_DATA_LABEL = re.compile(r"^[ \t]*([A-Za-z_.$][\w.$]*):(?:\s|#[^\n]*)*"
                         r"\.(?:ascii|asciz|string|byte|word|short|long|int|quad|space|skip|fill|zero)\b", re.M)


@dataclass(frozen=True)
class CodeLine:
    """One disassembled instruction near RIP."""

    address: int
    text: str
    label: str | None  # a label of the program at this address
    at_rip: bool


@dataclass(frozen=True)
class Step:
    """One exit, with the vCPU state right after it: what the exit stepper shows."""

    index: int  # 1 for the first exit
    exit: Exit
    registers: Registers
    special: SpecialRegisters
    code: tuple[CodeLine, ...]
    serial: str  # everything the guest printed so far

    def render(self) -> str:
        return "\n".join([_("exit {index}: {exit}").format(index=self.index, exit=self.exit),
                          _("cpu: {state}").format(state=self.special.describe()),
                          self.registers.table(self.special.bits), self.special.table(),
                          format_code(self.code), _("serial so far: {serial!r}").format(serial=self.serial)])


@dataclass(frozen=True)
class GuestRunResult:
    """How a run ended: what the guest printed, its exits by reason, its final registers."""

    serial: str
    exits: dict[str, int]  # exit reason name -> count, for this machine so far
    stopped_by: str  # "KVM_EXIT_HLT" or "power off (code N)"
    registers: Registers
    special: SpecialRegisters
    seconds: float  # wall time of this run

    @property
    def total_exits(self) -> int:
        return sum(self.exits.values())

    def exit_table(self) -> str:
        width = max(map(len, self.exits), default=0)
        return "\n".join(f"  {name:<{width}}  {count:>7}" for name, count in self.exits.items())


def format_code(lines: tuple[CodeLine, ...]) -> str:
    out = []
    for line in lines:
        if line.label:
            out.append(f"          {line.label}:")
        out.append(f"{'→' if line.at_rip else ' '} {line.address:#07x}: {line.text}")
    return "\n".join(out) if out else "  " + _("(no code at rip: outside guest memory or not mapped)")


class Machine:
    """A guest program running on a fresh KVM VM.  A context manager; ``close()`` frees everything.

    ``program`` is a guest name from :data:`labkit.kvm.guests.GUESTS` (which
    knows its mode), a :class:`~labkit.kvm.guests.Guest`, or an assembled
    :class:`~labkit.asm.Program` together with ``mode``.
    """

    def __init__(self, program: asm.Program | guests.Guest | str, mode: Mode | None = None, *,
                 memory_size: int = DEFAULT_MEMORY, pages: modes.PageSize = "2M",
                 devices: tuple[Device, ...] = (), trace: Trace | None = None,
                 kvm_path: Path | str | None = None) -> None:
        self.program, self.mode = _resolve(program, mode)
        self.serial = SerialPort()
        self.post_codes = PostCodes()
        self.counter = MmioCounter()
        self.bus = Bus(self.serial, self.post_codes, DebugExit(), self.counter, *devices)
        self.kvm = Kvm(kvm_path, trace)
        try:
            modes.check_options(self.mode, pages, memory_size,
                                self.kvm.supported_cpuid() if pages == "1G" else ())
            self.vm = self.kvm.create_vm()
            self.vm.set_tss_addr()
            self.vm.add_memory(0, memory_size)
            self.vcpu = self.vm.create_vcpu()
            self.vcpu.set_cpuid(self.kvm.supported_cpuid())
            self.vm.memory.write(self.program.origin, self.program.image)
            modes.enter(self.vcpu, self.vm.memory, self.mode, self.program.symbols.get("start", self.program.origin),
                        pages)
        except BaseException:
            self.kvm.close()
            raise
        self.steps = 0
        self.finished: str | None = None  # why the guest stopped, once it has
        self._counts = [0] * 256
        self._expired = False
        self._labels = {a: n for n, a in self.program.symbols.items() if not n.startswith("_")}
        self._data = {self.program.symbols[n] for n in _DATA_LABEL.findall(self.program.source)
                      if n in self.program.symbols} | {self.program.origin + len(self.program.image)}

    # ----------------------------------------------------------------- state

    @property
    def memory(self):
        return self.vm.memory

    @property
    def exits(self) -> dict[str, int]:
        """Exits so far by reason name (``KVM_EXIT_IO``: 29, ...)."""
        return {abi.EXIT_REASON_NAMES.get(r, f"exit reason {r}"): n for r, n in enumerate(self._counts) if n}

    def registers(self) -> Registers:
        return self.vcpu.get_regs()

    def special(self) -> SpecialRegisters:
        return self.vcpu.special()

    def code_at_rip(self, regs: Registers, special: SpecialRegisters, before: int = 3,
                    after: int = 4) -> tuple[CodeLine, ...]:
        """Disassembly around RIP, decoded from guest memory in the CPU's current width."""
        linear = regs.rip if special.mode == "long" else (special.cs.base + regs.rip) & 0xFFFFFFFF
        phys = self.vcpu.translate(linear) if special.paging else linear
        if phys is None:
            return ()
        # Decode from a code label before RIP (x86 cannot be decoded backwards); the earliest that
        # lands exactly on RIP wins, else decode from RIP itself.
        starts = sorted(a for a in self._labels if a < phys and phys - a < 512 and a not in self._data)
        for origin in (*starts, phys):
            try:
                slot = self.memory.slot_at(origin)
            except GuestAddressError:
                return ()
            code = self.memory.read(origin, min(phys - origin + 15 * after, slot.end - origin))
            insns = asm.disassemble(code, origin, special.bits)
            at = next((i for i, insn in enumerate(insns) if insn.address == phys), None)
            if at is not None:
                window = insns[max(0, at - before):at + after]
                stop = next((k for k, i in enumerate(window)
                             if i.address > phys and (i.address in self._data or phys in self._data)),
                            len(window))  # not into the program's data: it would decode as nonsense
                return tuple(CodeLine(i.address, f"{i.mnemonic} {i.op_str}".rstrip(), self._labels.get(i.address),
                                      i.address == phys)
                             for i in window[:stop])
        return ()

    def dump(self) -> str:
        """Registers, mode and code at RIP: the crash report of a guest error."""
        regs, special = self.registers(), self.special()
        return "\n".join([_("cpu: {state}").format(state=special.describe()), regs.table(special.bits), special.table(),
                          format_code(self.code_at_rip(regs, special))])

    # ----------------------------------------------------------------- running

    def step(self, timeout: float = 5.0) -> Step:
        """Run the guest to its next exit, answer it, and return what happened."""
        self._check_runnable()
        with self._budget(timeout):
            while True:
                exit_ = self.vcpu.run()
                if exit_ is not INTERRUPTED:
                    break
                self._settle(exit_)  # raises if the time budget ran out
        self._counts[exit_.reason] += 1
        self.steps += 1
        try:
            if not self.bus.handle(self.vcpu, exit_):
                self._settle(exit_)
        except UnclaimedAccessError as access:
            raise self._unhandled(access, exit_) from None
        except PowerOff as off:
            self.finished = Phrase(N_("power off (code {code})"), code=off.code)
        regs, special = self.registers(), self.special()
        return Step(self.steps, exit_, regs, special, self.code_at_rip(regs, special), self.serial.text)

    def run(self, max_exits: int = 1_000_000, timeout: float = 10.0) -> GuestRunResult:
        """Run until the guest halts or powers off, at most ``max_exits`` exits and ``timeout`` seconds."""
        self._check_runnable()
        if max_exits < 1 or timeout <= 0:
            raise InvalidOptionError("max_exits and timeout must be positive", "e.g. max_exits=100_000, timeout=5")
        started, budget = time.perf_counter(), max_exits
        with self._budget(timeout):
            while self.finished is None:
                before = sum(self._counts)
                try:
                    exit_ = self.vcpu.serve(self.bus, self._counts, budget)
                except UnclaimedAccessError as access:
                    raise self._unhandled(access, None) from None
                except PowerOff as off:
                    self.finished = Phrase(N_("power off (code {code})"), code=off.code)
                    break
                finally:
                    budget -= sum(self._counts) - before
                if exit_ is None:
                    raise self._error(GuestBudgetExceededError, f"the guest made {max_exits} exits without halting",
                                      "look for a loop that never ends, or allow more with max_exits=")
                self._settle(exit_)
        self.steps = sum(self._counts)
        return GuestRunResult(self.serial.text, self.exits, self.finished, self.registers(), self.special(),
                         time.perf_counter() - started)

    def _check_runnable(self) -> None:
        if self.finished:
            raise InvalidOptionError(f"the guest has stopped ({self.finished})",
                                     "create a new Machine to run it again")

    @contextlib.contextmanager
    def _budget(self, timeout: float) -> Iterator[None]:
        """Kick the vCPU out of KVM_RUN when ``timeout`` seconds have passed."""
        if not install_kick_handler():
            raise InvalidOptionError(
                "a time budget needs a handler for the vCPU kick signal, and only the main thread can install it",
                "create the first Machine (or Vcpu) in the main thread, or call "
                "labkit.kvm.vcpu.install_kick_handler() there first")
        self._expired = False
        timer = threading.Timer(timeout, self._expire)
        timer.daemon = True
        timer.start()
        self._timeout = timeout
        try:
            yield
        finally:
            timer.cancel()

    def _expire(self) -> None:
        self._expired = True
        self.vcpu.kick()

    def _settle(self, exit_: Exit) -> None:
        """React to an exit that no device consumed: finish, go on, or raise with the dump."""
        reason = exit_.reason
        if exit_ is INTERRUPTED:
            if self._expired:
                raise self._error(GuestBudgetExceededError, f"the guest ran for {self._timeout:g} s without halting",
                                  "look for a loop that never ends (in ring 3 it runs at full speed and "
                                  "never exits), or allow more with timeout=")
        elif reason == abi.KVM_EXIT_HLT:
            self.finished = exit_.name
        elif reason == abi.KVM_EXIT_SHUTDOWN:
            raise self._error(GuestShutdownError, "the guest triple-faulted (KVM_EXIT_SHUTDOWN): an exception "
                              "occurred and the CPU could not deliver it, nor the double fault that followed",
                              "look at the instruction at rip; this guest has no IDT, so any exception "
                              "(#GP, #PF, #UD...) ends in a triple fault", exit_)
        elif reason == abi.KVM_EXIT_INTERNAL_ERROR:
            raise self._error(GuestInternalError, f"KVM could not continue the guest ({exit_})",
                              "on hosts where KVM emulates ring-0 code (nested/PVM), some instructions "
                              "(int3, int n, SSE, x87...) are not emulated: avoid them in ring 0", exit_)
        elif reason == abi.KVM_EXIT_FAIL_ENTRY:
            raise self._error(GuestEntryFailedError, f"the CPU refused to enter the guest ({exit_})",
                              "the vCPU state (segments, control registers) is inconsistent: check KVM_SET_SREGS",
                              exit_)
        else:
            raise self._error(UnexpectedExitError, f"the guest exited with {exit_}, which this VMM does not handle",
                              "this lab's VMM handles port I/O, MMIO, HLT and errors only", exit_)

    def _unhandled(self, access: UnclaimedAccessError, exit_: Exit | None) -> KvmGuestError:
        if access.kind == "port":
            what = f"the guest {'wrote to' if access.is_write else 'read from'} I/O port {access.address:#x}, " \
                   "where no device is"
            fix = "the lab's devices: serial 0x3f8-0x3ff, POST codes 0x80, debug exit 0xf4"
        else:
            slots = "; ".join(s.describe() for s in self.memory.slots)
            what = (f"the guest {'wrote to' if access.is_write else 'read from'} guest-physical "
                    f"{access.address:#x} ({access.size} bytes): no RAM there ({slots}) and no device")
            fix = f"stay inside the guest's RAM; the MMIO counter device is at {self.counter.mmio.start:#x}"
        return self._error(UnhandledAccessError, what, fix, exit_)

    def _error(self, cls: type[KvmGuestError], what: str, fix: str, exit_: Exit | None = None) -> KvmGuestError:
        """The error to raise, with the dump; a guest that crashed (not one over budget) cannot run again."""
        if cls is not GuestBudgetExceededError:
            self.finished = f"{cls.__name__}: {what}"
        regs, special = self.registers(), self.special()
        return cls(what, fix, exit=exit_, registers=regs, special=special, dump=self.dump())

    def close(self) -> None:
        """Close the vCPU, the VM (freeing its RAM) and /dev/kvm.  Safe to call twice."""
        self.kvm.close()

    def __enter__(self) -> Machine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _resolve(program, mode: Mode | None) -> tuple[asm.Program, Mode]:
    if isinstance(program, str):
        program = guests.guest(program)
    if isinstance(program, guests.Guest):
        if mode not in (None, program.mode):
            raise InvalidOptionError(f"guest {program.name} is written for {program.mode} mode, not {mode}",
                                     "leave out mode=, or build the source yourself with guests.build()")
        return program.build(), program.mode
    if mode is None:
        raise InvalidOptionError("a Program needs mode= ('real', 'protected' or 'long')",
                                 "say which CPU mode it was assembled for")
    return program, mode
