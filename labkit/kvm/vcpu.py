"""A vCPU: its registers, its ``kvm_run`` page, and ``KVM_RUN``.

``KVM_RUN`` enters the guest on the calling thread and returns at the next VM
exit the kernel hands to user space.  The reason and its details are in
``struct kvm_run``, which the vCPU fd lets us ``mmap`` — it is read here in
place (ctypes ``from_buffer``), with no copy per exit.

Stopping a guest that never exits (a spinning loop, even in ring 3 where it
runs at native speed) is the *kick*: set ``kvm_run.immediate_exit`` and send
the vCPU's thread a signal, as QEMU does with ``SIG_IPI`` (SIGUSR1).  The
signal makes ``KVM_RUN`` return ``EINTR``; ``immediate_exit`` covers a signal
that lands just before the thread re-enters the guest.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import signal
import struct
import threading

from labkit.kvm import abi
from labkit.kvm.errors import KvmIoctlError
from labkit.kvm.exits import INTERRUPTED, MMIO_DATA_OFFSET, Exit, decode
from labkit.kvm.fd import KvmFd, Trace, libc_ioctl_raw
from labkit.kvm.regs import Registers, SpecialRegisters

#: kvm_run.exit_reason and kvm_run.io (direction, size, port, count, data_offset), read in one call:
#: the hot path's only look at the page besides the data bytes.
EXIT_AND_IO = struct.Struct(
    f"<I{abi.kvm_run.u.offset - abi.kvm_run.exit_reason.offset - 4}xBBHIQ")

#: The signal that kicks a vCPU thread out of KVM_RUN (QEMU's SIG_IPI).
KICK_SIGNAL = signal.SIGUSR1


def _ignore_kick(signum, frame) -> None:
    """A handler that does nothing: its only job is to interrupt KVM_RUN."""


def install_kick_handler() -> bool:
    """Give :data:`KICK_SIGNAL` a handler (main thread only) so a kick interrupts, not kills.

    An existing handler of the application is kept: any handler interrupts
    ``KVM_RUN``.  Returns whether the signal is safe to send.
    """
    current = signal.getsignal(KICK_SIGNAL)
    if current not in (signal.SIG_DFL, signal.SIG_IGN, None):
        return True
    if threading.current_thread() is not threading.main_thread():
        return False
    signal.signal(KICK_SIGNAL, _ignore_kick)
    return True


class Vcpu(KvmFd):
    """One vCPU: get/set registers, run it, answer its I/O.  Closed with its VM."""

    def __init__(self, fd: int, index: int, mmap_size: int, trace: Trace | None = None) -> None:
        super().__init__(fd, trace)
        self.index = index
        self.label = f"vCPU {index}"
        self._thread: int | None = None  # ident of the thread inside KVM_RUN
        try:
            self._page = mmap.mmap(fd, mmap_size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        except BaseException:
            self.close()
            raise
        self._run = abi.kvm_run.from_buffer(self._page)
        self._io = self._run.io  # views into the page, made once: no allocation per exit
        self._mmio = self._run.mmio
        install_kick_handler()

    # ----------------------------------------------------------------- registers

    def get_regs(self) -> Registers:
        """KVM_GET_REGS."""
        regs = abi.kvm_regs()
        self.ioctl(abi.KVM_GET_REGS, ctypes.addressof(regs))
        return Registers.from_struct(regs)

    def set_regs(self, regs: Registers | None = None, **changes: int) -> Registers:
        """KVM_SET_REGS with ``regs`` (default: the current ones) updated by ``changes``."""
        regs = (regs or self.get_regs()).replace(**changes)
        struct = regs.to_struct()
        self.ioctl(abi.KVM_SET_REGS, ctypes.addressof(struct),
                   note=lambda _: " ".join(f"{k}={v:#x}" for k, v in changes.items()))
        return regs

    def get_sregs(self) -> abi.kvm_sregs:
        """KVM_GET_SREGS, as the raw (mutable) structure a VMM edits and sets back."""
        sregs = abi.kvm_sregs()
        self.ioctl(abi.KVM_GET_SREGS, ctypes.addressof(sregs))
        return sregs

    def set_sregs(self, sregs: abi.kvm_sregs) -> None:
        """KVM_SET_SREGS."""
        self.ioctl(abi.KVM_SET_SREGS, ctypes.addressof(sregs),
                   note=lambda _: SpecialRegisters.from_struct(sregs).describe())

    def special(self) -> SpecialRegisters:
        """The special registers as a frozen value (mode, ring, paging...)."""
        return SpecialRegisters.from_struct(self.get_sregs())

    def translate(self, linear: int) -> int | None:
        """KVM_TRANSLATE: the guest-physical address of a guest-virtual one (None if unmapped)."""
        tr = abi.kvm_translation(linear_address=linear)
        self.ioctl(abi.KVM_TRANSLATE, ctypes.addressof(tr))
        return tr.physical_address if tr.valid else None

    def set_cpuid(self, entries) -> None:
        """KVM_SET_CPUID2: the CPUID leaves the guest sees (usually KVM_GET_SUPPORTED_CPUID's)."""
        table = abi.kvm_cpuid2_with(len(entries))(nent=len(entries))
        for dst, e in zip(table.entries, entries):
            for name in ("function", "index", "flags", "eax", "ebx", "ecx", "edx"):
                setattr(dst, name, getattr(e, name))
        self.ioctl(abi.KVM_SET_CPUID2, ctypes.addressof(table), note=lambda _: f"{len(entries)} leaves")

    # ----------------------------------------------------------------- running

    def run(self) -> Exit:
        """KVM_RUN once: enter the guest until the next exit, and say why it came back."""
        return decode(self._run, self._page) if self._enter() else INTERRUPTED

    def _enter(self) -> bool:
        """One KVM_RUN; False when a signal interrupted it."""
        if self.closed:
            self.ioctl(abi.KVM_RUN)  # raises the closed-object error
        self._thread = threading.get_ident()
        try:
            ret = libc_ioctl_raw(self.fd, abi.KVM_RUN, 0)
        finally:
            self._thread = None
        if ret < 0:
            self._interrupted(ctypes.get_errno())
            return False
        if self.trace is not None:
            self.trace(f"{'KVM_RUN':<27} {self.label:<9} → {abi.EXIT_REASON_NAMES.get(self._run.exit_reason)}")
        return True

    def _interrupted(self, err: int) -> None:
        if err != errno.EINTR:
            raise KvmIoctlError("KVM_RUN", err, f"on {self.label}")
        self._run.immediate_exit = 0
        if self.trace is not None:
            self.trace(f"{'KVM_RUN':<27} {self.label:<9} → interrupted (EINTR)")

    def serve(self, bus, counts: list[int], max_exits: int) -> Exit | None:
        """Run until an exit the ``bus`` does not consume, at most ``max_exits`` exits.

        Port and MMIO exits are answered by the bus's devices right here — the
        hot path of every VMM, kept lean: no objects per exit beyond the data
        bytes.  ``counts[reason]`` is incremented per exit.  Returns the first
        other exit (HLT, SHUTDOWN, ``INTERRUPTED`` by a signal...), or None
        after ``max_exits``.  Unclaimed ports and addresses raise from the bus.
        """
        if self.closed or self.trace is not None:  # the traced path shows every ioctl
            return self._serve_slowly(bus, counts, max_exits)
        run, mmio, page, fd = self._run, self._mmio, self._page, self.fd
        header, at = EXIT_AND_IO.unpack_from, abi.kvm_run.exit_reason.offset
        io_exit, mmio_exit, request = abi.KVM_EXIT_IO, abi.KVM_EXIT_MMIO, abi.KVM_RUN
        outs, out, port_in, mmio_write, mmio_read = (bus.out_handlers, bus.out, bus.port_in, bus.mmio_write,
                                                     bus.mmio_read)
        self._thread = threading.get_ident()
        try:
            for _ in range(max_exits):
                if libc_ioctl_raw(fd, request, 0) < 0:
                    self._interrupted(ctypes.get_errno())
                    return INTERRUPTED
                reason, direction, size, port, count, offset = header(page, at)
                counts[reason] += 1
                if reason == io_exit:
                    if direction:
                        (outs.get(port) or out)(port, page[offset:offset + size * count])
                    else:
                        page[offset:offset + size * count] = port_in(port, size, count)
                elif reason == mmio_exit:
                    if mmio.is_write:
                        mmio_write(mmio.phys_addr, bytes(mmio.data[:mmio.len]))
                    else:
                        page[MMIO_DATA_OFFSET:MMIO_DATA_OFFSET + mmio.len] = mmio_read(mmio.phys_addr, mmio.len)
                else:
                    return decode(run, page)
            return None
        except BaseException:
            # The traceback keeps this frame alive: drop its views of kvm_run so close() can unmap.
            run = mmio = None  # type: ignore[assignment]  # noqa: F841
            raise
        finally:
            self._thread = None

    def _serve_slowly(self, bus, counts: list[int], max_exits: int) -> Exit | None:
        """:meth:`serve` through :meth:`run` and typed exits (for traces)."""
        for _ in range(max_exits):
            exit_ = self.run()
            if exit_ is INTERRUPTED:
                return exit_
            counts[exit_.reason] += 1
            if not bus.handle(self, exit_):
                return exit_
        return None

    def complete_in(self, data: bytes) -> None:
        """Give the pending ``in`` its value (written where KVM reads it on the next KVM_RUN)."""
        offset = self._io.data_offset
        self._page[offset:offset + len(data)] = data

    def complete_mmio_read(self, data: bytes) -> None:
        """Give the pending MMIO read its value (``kvm_run.mmio.data``)."""
        self._page[MMIO_DATA_OFFSET:MMIO_DATA_OFFSET + len(data)] = data

    def kick(self) -> None:
        """Make KVM_RUN return now (from any thread): immediate_exit plus a signal to the vCPU thread."""
        if self.closed:
            return
        self._run.immediate_exit = 1
        thread = self._thread
        if thread is not None and install_kick_handler():
            try:
                signal.pthread_kill(thread, KICK_SIGNAL)
            except ProcessLookupError:  # the thread left KVM_RUN meanwhile; immediate_exit still holds
                pass

    def close(self) -> None:
        """Unmap ``kvm_run`` and close the fd."""
        self._io = self._mmio = self._run = None  # type: ignore[assignment]
        page = getattr(self, "_page", None)
        if page is not None and not page.closed:
            try:
                page.close()
            except BufferError:  # someone still holds a view of kvm_run: unmapped when it is dropped
                pass
        super().close()
