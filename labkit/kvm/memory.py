"""Guest RAM: ordinary memory of this process, lent to the VM as memory slots.

``KVM_SET_USER_MEMORY_REGION`` tells KVM "guest-physical addresses
``[gpa, gpa+size)`` are these bytes of my address space".  The guest then reads
and writes them at full speed, and the VMM sees the same bytes.  Accesses to
guest-physical addresses that no slot covers leave the guest as
``KVM_EXIT_MMIO``: that is how devices are emulated.
"""

from __future__ import annotations

import ctypes
import mmap
from dataclasses import dataclass, field

from labkit.errors import InvalidOptionError
from labkit.i18n import _
from labkit.kvm.errors import GuestAddressError

PAGE_SIZE = mmap.PAGESIZE


def format_size(size: int) -> str:
    return f"{size / (1 << 20):g} MiB" if size >= 1 << 20 else f"{size / 1024:g} KiB"


@dataclass(eq=False)
class MemorySlot:
    """One memory slot: guest-physical ``[guest_phys_addr, end)`` backed by an anonymous mapping."""

    slot: int
    guest_phys_addr: int
    size: int
    readonly: bool
    mapping: mmap.mmap = field(repr=False)
    _pin: ctypes.Array | None = field(default=None, repr=False)  # holds the mapping's address

    @property
    def end(self) -> int:
        return self.guest_phys_addr + self.size

    @property
    def userspace_addr(self) -> int:
        """Where the slot lives in *this* process: the same bytes the guest sees."""
        if self._pin is None:
            self._pin = (ctypes.c_char * self.size).from_buffer(self.mapping)
        return ctypes.addressof(self._pin)

    def describe(self) -> str:
        text = _("slot {slot}: guest-physical {start:#x}–{end:#x} ({size}, read-only)") if self.readonly else \
            _("slot {slot}: guest-physical {start:#x}–{end:#x} ({size})")
        return text.format(slot=self.slot, start=self.guest_phys_addr, end=self.end - 1, size=format_size(self.size))

    def release(self) -> None:
        self._pin = None
        if not self.mapping.closed:
            self.mapping.close()


def validate_region(guest_phys_addr: int, size: int, slots: list[MemorySlot], max_slots: int) -> None:
    """Check a new slot before KVM sees it, so the learner gets a reason, not EINVAL."""
    if not isinstance(size, int) or size <= 0 or size % PAGE_SIZE:
        raise InvalidOptionError(f"memory slot size {size!r} is not a positive multiple of the "
                                 f"page size ({PAGE_SIZE} bytes)",
                                 f"use a multiple of {PAGE_SIZE}, e.g. 2 MiB = {2 << 20}")
    if not isinstance(guest_phys_addr, int) or guest_phys_addr < 0 or guest_phys_addr % PAGE_SIZE:
        raise InvalidOptionError(f"guest-physical address {guest_phys_addr!r} is not page-aligned "
                                 f"({PAGE_SIZE} bytes)", "start memory slots on a page boundary")
    if guest_phys_addr + size > 1 << 52:
        raise InvalidOptionError(f"slot end {guest_phys_addr + size:#x} is beyond x86-64's 52-bit "
                                 "physical address space", "use lower addresses")
    for other in slots:
        if guest_phys_addr < other.end and other.guest_phys_addr < guest_phys_addr + size:
            raise InvalidOptionError(f"{format_size(size)} at {guest_phys_addr:#x} overlaps {other.describe()}",
                                     "memory slots may not overlap: choose another guest-physical address")
    if len(slots) >= max_slots:
        raise InvalidOptionError(f"this KVM allows {max_slots} memory slots per VM",
                                 "use fewer, larger slots")


class GuestMemory:
    """All memory slots of a VM, read and written by guest-physical address (bounds-checked)."""

    def __init__(self) -> None:
        self.slots: list[MemorySlot] = []

    @property
    def size(self) -> int:
        return sum(s.size for s in self.slots)

    def slot_at(self, guest_phys_addr: int, length: int = 1) -> MemorySlot:
        """The slot holding all of ``[guest_phys_addr, +length)``, or :class:`GuestAddressError`."""
        for s in self.slots:
            if s.guest_phys_addr <= guest_phys_addr and guest_phys_addr + length <= s.end:
                return s
        have = "; ".join(s.describe() for s in self.slots) or "none yet"
        raise GuestAddressError(
            f"guest-physical {guest_phys_addr:#x}–{guest_phys_addr + max(length, 1) - 1:#x} is not "
            f"(entirely) inside one memory slot (slots: {have})",
            "stay inside the guest's RAM, or add a memory slot that covers this range")

    def read(self, guest_phys_addr: int, length: int) -> bytes:
        """``length`` bytes of guest memory at ``guest_phys_addr``."""
        if length < 0:
            raise InvalidOptionError(f"cannot read {length} bytes", "use a length >= 0")
        s = self.slot_at(guest_phys_addr, length)
        offset = guest_phys_addr - s.guest_phys_addr
        return s.mapping[offset:offset + length]

    def write(self, guest_phys_addr: int, data: bytes) -> None:
        """Copy ``data`` into guest memory at ``guest_phys_addr`` (the host may write read-only slots)."""
        s = self.slot_at(guest_phys_addr, len(data))
        offset = guest_phys_addr - s.guest_phys_addr
        s.mapping[offset:offset + len(data)] = bytes(data)

    def read_u64(self, guest_phys_addr: int) -> int:
        return int.from_bytes(self.read(guest_phys_addr, 8), "little")

    def write_u64(self, guest_phys_addr: int, value: int) -> None:
        self.write(guest_phys_addr, value.to_bytes(8, "little"))

    def release(self) -> None:
        for s in self.slots:
            s.release()
