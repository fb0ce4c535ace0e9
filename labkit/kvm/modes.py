"""Put a fresh vCPU into real, protected or long mode, the way firmware and boot loaders do.

A vCPU starts like a CPU after reset: 16-bit real mode.  Protected mode needs
a GDT (segment descriptors) and CR0.PE; 64-bit long mode also needs 4-level
page tables, CR4.PAE, EFER.LME and CR0.PG.  Here the *VMM* prepares all that
in guest memory and sets the registers with KVM_SET_SREGS, so a guest can
start directly in the mode it is written for.  (``mode_switch.S`` does the
same from inside the guest.)

Guest-physical layout shared by the VMM and the guest programs (passed to the
assembler as symbols, see :data:`LAYOUT`)::

    0x1000  GDT             0x5000  page table (4 KiB pages)
    0x2000  PML4            0x6000… stack (grows down from 0x8000)
    0x3000  PDPT            0x8000  program code (entry: label ``start``)
    0x4000  page directory

GDT descriptors have their *Accessed* bit pre-set: a CPU sets it on first
use, and KVM's instruction emulator (used for all ring-0 code on
software-assisted hosts) can loop forever on a far jump if it has to write
it into memory it treats as read-only.
"""

from __future__ import annotations

from typing import Literal

from labkit.errors import InvalidOptionError
from labkit.i18n import Phrase
from labkit.i18n import noop as N_
from labkit.kvm import abi
from labkit.kvm.memory import GuestMemory
from labkit.kvm.regs import (
    CR0_ET,
    CR0_NE,
    CR0_PE,
    CR0_PG,
    CR4_PAE,
    EFER_LMA,
    EFER_LME,
    RFLAGS_RESERVED,
    Mode,
    SpecialRegisters,
)
from labkit.kvm.system import CpuidEntry, has_feature
from labkit.kvm.vcpu import Vcpu

PageSize = Literal["4K", "2M", "1G"]
MODES: tuple[Mode, ...] = ("real", "protected", "long")
BITS: dict[str, Literal[16, 32, 64]] = {"real": 16, "protected": 32, "long": 64}

GDT_ADDR = 0x1000
PML4_ADDR = 0x2000
PDPT_ADDR = 0x3000
PD_ADDR = 0x4000
PT_ADDR = 0x5000
STACK_TOP = 0x8000
CODE_ADDR = 0x8000
MIN_MEMORY = 0x10000  # everything above fits in the first 64 KiB

# Selectors (index × 8 | requested privilege level).  The user pair follows the order SYSRET expects.
CODE32_SEL = 0x08
DATA_SEL = 0x10
CODE64_SEL = 0x18
USER_DS = 0x20 | 3
USER_CS = 0x28 | 3

# Page-table entry bits
PTE_PRESENT, PTE_WRITE, PTE_USER, PTE_HUGE = 1 << 0, 1 << 1, 1 << 2, 1 << 7
PTE_FLAGS = PTE_PRESENT | PTE_WRITE | PTE_USER  # user bit: ring 3 may use every page (a lab, not an OS)


def descriptor(base: int, limit: int, access: int, flags: int) -> int:
    """A GDT segment descriptor: the 8 bytes whose layout dates back to the 80286."""
    return ((limit & 0xFFFF) | (base & 0xFFFFFF) << 16 | access << 40
            | (limit >> 16 & 0xF) << 48 | flags << 52 | (base >> 24 & 0xFF) << 56)


# access: P | DPL | S | type (code: execute/read, data: read/write, both Accessed); flags: G | D/B | L
GDT: dict[int, int] = {
    0: 0,  # the null descriptor
    CODE32_SEL: descriptor(0, 0xFFFFF, 0x9B, 0xC),  # ring 0, 32-bit code, 4 GiB flat
    DATA_SEL: descriptor(0, 0xFFFFF, 0x93, 0xC),  # ring 0 data
    CODE64_SEL: descriptor(0, 0xFFFFF, 0x9B, 0xA),  # ring 0, 64-bit code (L=1)
    USER_DS & ~3: descriptor(0, 0xFFFFF, 0xF3, 0xC),  # ring 3 data
    USER_CS & ~3: descriptor(0, 0xFFFFF, 0xFB, 0xA),  # ring 3, 64-bit code
}

#: Symbols every guest program is assembled with (``as --defsym``).
LAYOUT: dict[str, int] = {
    "GDT_ADDR": GDT_ADDR, "PML4_ADDR": PML4_ADDR, "PDPT_ADDR": PDPT_ADDR, "PD_ADDR": PD_ADDR,
    "PT_ADDR": PT_ADDR, "STACK_TOP": STACK_TOP, "CODE32_SEL": CODE32_SEL, "DATA_SEL": DATA_SEL,
    "CODE64_SEL": CODE64_SEL, "USER_CS": USER_CS, "USER_DS": USER_DS,
}


def segment(selector: int, desc: int | None = None) -> abi.kvm_segment:
    """The hidden part of a segment register, as the CPU loads it from descriptor ``desc``."""
    desc = GDT[selector & ~3] if desc is None else desc
    access, flags = desc >> 40 & 0xFF, desc >> 52 & 0xF
    limit = (desc & 0xFFFF) | (desc >> 48 & 0xF) << 16
    g = flags >> 3 & 1
    return abi.kvm_segment(
        base=(desc >> 16 & 0xFFFFFF) | (desc >> 56 & 0xFF) << 24,
        limit=(limit << 12 | 0xFFF) if g else limit, selector=selector, type=access & 0xF,
        present=access >> 7, dpl=access >> 5 & 3, db=flags >> 2 & 1, s=access >> 4 & 1,
        l=flags >> 1 & 1, g=g, avl=flags & 1)


def write_gdt(memory: GuestMemory) -> abi.kvm_dtable:
    """Write :data:`GDT` at :data:`GDT_ADDR`; the GDTR value that points at it."""
    for selector, desc in GDT.items():
        memory.write_u64(GDT_ADDR + selector, desc)
    return abi.kvm_dtable(base=GDT_ADDR, limit=max(GDT) + 7)


def write_page_tables(memory: GuestMemory, pages: PageSize) -> int:
    """Identity-map the first GiB (guest-virtual = guest-physical); returns CR3.

    ``2M``: PML4 → PDPT → page directory of 512 × 2 MiB pages.
    ``4K``: the same, but the first 2 MiB through one page table of 512 × 4 KiB pages.
    ``1G``: PML4 → PDPT with one 1 GiB page (needs the CPU feature pdpe1gb).
    """
    memory.write_u64(PML4_ADDR, PDPT_ADDR | PTE_FLAGS)
    if pages == "1G":
        memory.write_u64(PDPT_ADDR, 0 | PTE_FLAGS | PTE_HUGE)
        return PML4_ADDR
    memory.write_u64(PDPT_ADDR, PD_ADDR | PTE_FLAGS)
    table = b"".join((i << 21 | PTE_FLAGS | PTE_HUGE).to_bytes(8, "little") for i in range(512))
    memory.write(PD_ADDR, table)
    if pages == "4K":
        memory.write_u64(PD_ADDR, PT_ADDR | PTE_FLAGS)
        memory.write(PT_ADDR, b"".join((i << 12 | PTE_FLAGS).to_bytes(8, "little") for i in range(512)))
    return PML4_ADDR


def check_options(mode: str, pages: str, memory_size: int, cpuid: tuple[CpuidEntry, ...]) -> None:
    """Reject a mode, page size or RAM size this VMM (or this host's KVM) cannot set up."""
    if mode not in MODES:
        raise InvalidOptionError(f"unknown CPU mode {mode!r}", f"choose one of {', '.join(MODES)}")
    if pages not in ("4K", "2M", "1G"):
        raise InvalidOptionError(f"unknown page size {pages!r}", "choose 4K, 2M or 1G")
    if memory_size < MIN_MEMORY:
        raise InvalidOptionError(f"{memory_size} bytes of RAM is too little for the lab's layout",
                                 f"give the guest at least {MIN_MEMORY:#x} bytes (64 KiB)")
    if mode == "long" and pages == "1G" and not has_feature(cpuid, "pdpe1gb"):
        raise InvalidOptionError(
            Phrase(N_("1 GiB pages need the CPU feature pdpe1gb, which this host's KVM does not offer "
                      "(KVM_GET_SUPPORTED_CPUID); the guest would triple-fault")),
            Phrase(N_("use 2 MiB or 4 KiB pages (pages='2M' or '4K')")))


def enter(vcpu: Vcpu, memory: GuestMemory, mode: Mode, entry: int, pages: PageSize = "2M") -> SpecialRegisters:
    """Set up ``vcpu`` (and guest memory) so it starts executing at ``entry`` in ``mode``."""
    sregs = vcpu.get_sregs()
    if mode == "real":
        for name in ("cs", "ds", "es", "fs", "gs", "ss"):
            seg = getattr(sregs, name)
            seg.base, seg.selector = 0, 0
    else:
        sregs.gdt = write_gdt(memory)
        sregs.idt = abi.kvm_dtable(base=0, limit=0)  # no IDT: any exception becomes a triple fault
        code = CODE64_SEL if mode == "long" else CODE32_SEL
        sregs.cs = segment(code)
        for name in ("ds", "es", "fs", "gs", "ss"):
            setattr(sregs, name, segment(DATA_SEL))
        sregs.cr0 = CR0_PE | CR0_ET | CR0_NE
        if mode == "long":
            sregs.cr3 = write_page_tables(memory, pages)
            sregs.cr4 = CR4_PAE
            sregs.efer = EFER_LME | EFER_LMA
            sregs.cr0 |= CR0_PG
    vcpu.set_sregs(sregs)
    vcpu.set_regs(rip=entry, rsp=STACK_TOP, rflags=RFLAGS_RESERVED)
    return SpecialRegisters.from_struct(sregs)
