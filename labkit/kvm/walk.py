"""One guest address followed through every layer, and guest RAM as the host's ordinary memory.

Memory virtualization has two levels of translation.  The guest's own page
tables turn a **guest-virtual** address into a **guest-physical** one; the
VMM's memory slot turns guest-physical into a **host-virtual** address of
its own process; and the host kernel's page tables turn that into a
**host-physical** address (a page frame of real RAM).  Hardware with nested
paging (EPT/NPT) walks both levels itself; without it KVM keeps *shadow*
page tables that compose them.

:func:`follow` shows each step live on a raw KVM guest (:mod:`labkit.kvm`):
``KVM_TRANSLATE`` and a walk of the guest's page tables in software (they
must agree), the memslot arithmetic, and ``/proc/self/pagemap`` for the
frame (root only: for anyone else the kernel reports frame 0, which is
unknown, not an answer).  :func:`touch_rss` shows that the guest's RAM is
anonymous memory of the VMM process: pages cost host memory only once
touched.
"""

from __future__ import annotations

import ctypes
import os
import struct
from dataclasses import dataclass

import psutil

from labkit.errors import InvalidOptionError
from labkit.i18n import _
from labkit.kvm import modes
from labkit.kvm.guests import build
from labkit.kvm.machine import Machine
from labkit.kvm.memory import PAGE_SIZE, GuestMemory

#: The four levels of x86-64 4-level paging, top first, with the address bits each index uses.
LEVELS = (("PML4", 39), ("PDPT", 30), ("PD", 21), ("PT", 12))
_ADDR_MASK = 0x000F_FFFF_FFFF_F000

#: The lab's example: a guest-virtual address far from the identity-mapped first GiB, backed by a page
#: at a guest-physical address of our choosing, with fresh page tables for it at TABLES.
EXAMPLE_GVA = 0x0000_7F12_3456_79A8
EXAMPLE_PAGE = 0x0030_0000  # guest-physical page that backs it
EXAMPLE_TABLES = (0x6000, 0x7000, 0x0031_0000)  # PDPT, PD and PT for it (free in the lab's layout)
MAGIC = 0x4B564D_4C41_42_21  # "!BAL MVK" little-endian: what the guest stores there

_WRITER = """
.intel_syntax noprefix
start:
    movabs rax, {magic}
    movabs rdi, {gva}
    mov [rdi], rax          # a store through the guest's own page tables
    hlt
"""

_TOUCHER = """
.intel_syntax noprefix
start:
    mov rdi, {start}
    mov rcx, {pages}
next:
    mov byte ptr [rdi], 1   # one byte per page: the first touch of each page
    add rdi, 4096
    dec rcx
    jnz next
    hlt
"""


@dataclass(frozen=True)
class WalkStep:
    """One level of the guest's page-table walk."""

    level: str  # "PML4", "PDPT", "PD", "PT"
    index: int  # which of the table's 512 entries the address selects
    entry_gpa: int  # where that entry sits in guest-physical memory
    entry: int  # its 64-bit value
    points_to: int  # the next table (or, at PT, the page), guest-physical


@dataclass(frozen=True)
class AddressPath:
    """One guest-virtual address, resolved layer by layer."""

    gva: int
    gpa_kvm: int | None  # KVM_TRANSLATE's answer
    walk: tuple[WalkStep, ...]  # the guest's page tables, walked in software
    gpa_walk: int | None
    slot: int  # the memory slot holding that guest-physical address
    hva: int  # where those bytes are in the VMM's (this) process
    hpa: int | None  # the frame of host RAM (None: pagemap hides it from non-root)
    hpa_unknown_because: str | None
    value_at_hva: int  # the 8 bytes there, read as the host
    cr3: int


def map_page(memory: GuestMemory, cr3: int, gva: int, gpa: int, tables: tuple[int, int, int]) -> None:
    """Make the guest's page tables map the 4 KiB page of ``gva`` to ``gpa``, with new tables at ``tables``.

    What a guest kernel does for each new mapping; here the VMM does it
    before the guest runs, as firmware would.
    """
    table = cr3 & _ADDR_MASK
    for (_level, shift), new in zip(LEVELS[:3], tables):
        at = table + ((gva >> shift) & 511) * 8
        entry = memory.read_u64(at)
        if not entry & modes.PTE_PRESENT:
            memory.write(new, bytes(PAGE_SIZE))
            memory.write_u64(at, new | modes.PTE_FLAGS)
            entry = new | modes.PTE_FLAGS
        if entry & modes.PTE_HUGE:
            raise InvalidOptionError(f"{gva:#x} lies in a large page already mapped", "choose another address")
        table = entry & _ADDR_MASK
    memory.write_u64(table + ((gva >> 12) & 511) * 8, gpa | modes.PTE_FLAGS)


def walk(memory: GuestMemory, cr3: int, gva: int) -> tuple[tuple[WalkStep, ...], int | None]:
    """Walk the guest's 4-level page tables for ``gva`` as the MMU does; the steps and the guest-physical address."""
    steps, table = [], cr3 & _ADDR_MASK
    for level, shift in LEVELS:
        index = (gva >> shift) & 511
        entry = memory.read_u64(table + index * 8)
        if not entry & modes.PTE_PRESENT:
            steps.append(WalkStep(level, index, table + index * 8, entry, 0))
            return tuple(steps), None
        steps.append(WalkStep(level, index, table + index * 8, entry, entry & _ADDR_MASK))
        if entry & modes.PTE_HUGE and level in ("PDPT", "PD"):  # a 1 GiB or 2 MiB page ends the walk early
            return tuple(steps), (entry & _ADDR_MASK & ~((1 << shift) - 1)) | (gva & ((1 << shift) - 1))
        table = entry & _ADDR_MASK
    return tuple(steps), table | (gva & 0xFFF)


def host_physical(hva: int) -> tuple[int | None, str | None]:
    """The host-physical address of ``hva`` in this process, from ``/proc/self/pagemap``; or why not."""
    try:
        with open("/proc/self/pagemap", "rb") as pagemap:
            pagemap.seek(hva // PAGE_SIZE * 8)
            raw = pagemap.read(8)
    except OSError as exc:
        return None, f"/proc/self/pagemap is not readable ({exc.strerror})"
    entry, = struct.unpack("<Q", raw)
    if not entry >> 63 & 1:
        return None, "the page is not in RAM (never touched, or swapped out)"
    pfn = entry & ((1 << 55) - 1)
    if pfn == 0:
        return None, "the kernel shows page frame numbers to root only (CAP_SYS_ADMIN)"
    return pfn * PAGE_SIZE + hva % PAGE_SIZE, None


def follow(gva: int = EXAMPLE_GVA, page: int = EXAMPLE_PAGE) -> AddressPath:
    """Run a guest that stores :data:`MAGIC` at ``gva`` (mapped to ``page``), then resolve ``gva`` layer by layer."""
    program = build(_WRITER.format(magic=MAGIC, gva=gva), "long")
    with Machine(program, "long", memory_size=4 << 20, pages="4K") as machine:
        cr3 = machine.special().cr3
        map_page(machine.memory, cr3, gva, page, EXAMPLE_TABLES)
        machine.run(max_exits=10, timeout=10)
        gpa_kvm = machine.vcpu.translate(gva)
        steps, gpa_walk = walk(machine.memory, cr3, gva)
        slot = machine.memory.slot_at(gpa_walk if gpa_walk is not None else page)
        hva = slot.userspace_addr + ((gpa_walk if gpa_walk is not None else page) - slot.guest_phys_addr)
        hpa, why = host_physical(hva)
        value = int.from_bytes(ctypes.string_at(hva, 8), "little")
        return AddressPath(gva, gpa_kvm, steps, gpa_walk, slot.slot, hva, hpa, why, value, cr3)


@dataclass(frozen=True)
class RssGrowth:
    """This process's resident memory around a guest with ``ram_mib`` MiB that touched ``touched_mib`` of it."""

    ram_mib: int
    touched_mib: int
    before: int  # bytes resident before the guest's RAM existed
    with_ram: int  # after the memory slot was added, untouched
    after_touch: int  # after the guest touched its pages


def touch_rss(ram_mib: int = 64, touched_mib: int = 16) -> RssGrowth:
    """Give a guest ``ram_mib`` MiB, let it touch ``touched_mib`` of them; this process's RSS at each step."""
    if not 0 < touched_mib <= ram_mib // 2 or ram_mib > 1024:
        raise InvalidOptionError(f"touched_mib={touched_mib} of ram_mib={ram_mib}: touch at most half, at most 1 GiB",
                                 "e.g. ram_mib=64, touched_mib=16")
    me = psutil.Process(os.getpid())
    start = ram_mib // 2 << 20  # above the lab's code and tables, inside the identity-mapped first GiB
    program = build(_TOUCHER.format(start=start, pages=touched_mib << 8), "long")
    before = me.memory_info().rss
    with Machine(program, "long", memory_size=ram_mib << 20) as machine:
        with_ram = me.memory_info().rss
        machine.run(max_exits=10, timeout=60)
        after = me.memory_info().rss
    return RssGrowth(ram_mib, touched_mib, before, with_ram, after)


def picture(path: AddressPath) -> str:
    """The two levels of translation for ``path``, top to bottom, as text."""
    steps = " → ".join(f"{s.level}[{s.index}]" for s in path.walk)
    hpa = f"{path.hpa:#x}" if path.hpa is not None else _("unknown: {why}").format(why=path.hpa_unknown_because)
    agree = _("(KVM_TRANSLATE agrees)") if path.gpa_kvm == path.gpa_walk else \
        _("(KVM_TRANSLATE says {gpa})").format(gpa=path.gpa_kvm)
    return "\n".join((
        f"guest-virtual   {path.gva:#018x}        " + _("what the guest's code used"),
        "   │  " + _("level 1, the guest's page tables (CR3 = {cr3:#x}): {steps}").format(cr3=path.cr3, steps=steps),
        f"   │  {agree}",
        f"guest-physical  {path.gpa_walk or 0:#018x}        " + _("what the guest thinks is RAM"),
        "   │  " + _("level 2a, the VMM's memory slot {slot}: slot's host address + offset").format(slot=path.slot),
        f"host-virtual    {path.hva:#018x}        " + _("an address in the VMM process (this Python)"),
        "   │  " + _("level 2b, the host kernel's page tables for this process (/proc/self/pagemap)"),
        f"host-physical   {hpa}",
    ))
