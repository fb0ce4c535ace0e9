"""vCPU registers as frozen values, and what they say about the CPU's mode.

``kvm_regs`` and ``kvm_sregs`` are the vCPU state a VMM reads and writes with
KVM_GET/SET_(S)REGS.  The special registers decide the CPU mode: CR0.PE
(protected mode), EFER.LMA plus CS.L (64-bit long mode), CS.DB (32-bit code),
and the privilege level (ring) is the low two bits of CS.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Literal

from labkit.i18n import _
from labkit.i18n import noop as N_
from labkit.kvm import abi

CR0_PE = 1 << 0  # protection enable
CR0_ET = 1 << 4  # extension type (always 1 on modern CPUs)
CR0_NE = 1 << 5  # native FPU errors
CR0_PG = 1 << 31  # paging
CR4_PAE = 1 << 5  # 64-bit page-table entries (required for long mode)
EFER_LME = 1 << 8  # long mode enable
EFER_LMA = 1 << 10  # long mode active (set by the CPU once paging is on)
RFLAGS_RESERVED = 1 << 1  # bit 1 of RFLAGS always reads 1

GPR_NAMES = tuple(field[0] for field in abi.kvm_regs._fields_)


@dataclass(frozen=True)
class Registers:
    """General-purpose registers, RIP and RFLAGS (``struct kvm_regs``)."""

    rax: int = 0
    rbx: int = 0
    rcx: int = 0
    rdx: int = 0
    rsi: int = 0
    rdi: int = 0
    rsp: int = 0
    rbp: int = 0
    r8: int = 0
    r9: int = 0
    r10: int = 0
    r11: int = 0
    r12: int = 0
    r13: int = 0
    r14: int = 0
    r15: int = 0
    rip: int = 0
    rflags: int = RFLAGS_RESERVED

    @classmethod
    def from_struct(cls, regs: abi.kvm_regs) -> Registers:
        return cls(*(getattr(regs, name) for name in GPR_NAMES))

    def to_struct(self) -> abi.kvm_regs:
        return abi.kvm_regs(*(getattr(self, name) for name in GPR_NAMES))

    def replace(self, **changes: int) -> Registers:
        return replace(self, **changes)

    def table(self, bits: int = 64) -> str:
        """The registers as a learner reads them: this mode's names and widths, four per line."""
        digits = {16: 4, 32: 8}.get(bits, 16)
        prefix = {16: "", 32: "e"}.get(bits, "r")
        mask = (1 << (digits * 4)) - 1
        cells = [(f"{prefix}{n}", getattr(self, "r" + n) & mask, digits)
                 for n in ("ax", "bx", "cx", "dx", "si", "di", "sp", "bp")]
        if bits == 64:
            cells += [(f"r{i}", getattr(self, f"r{i}"), digits) for i in range(8, 16)]
        cells += [(prefix + "ip" if bits != 64 else "rip", self.rip & mask, digits), ("rflags", self.rflags, 8)]
        text = [f"{name:>6}={value:0{width}x}" for name, value, width in cells]
        return "\n".join("  ".join(text[i:i + 4]) for i in range(0, len(text), 4))


@dataclass(frozen=True)
class Segment:
    """A segment register as the CPU caches it (``struct kvm_segment``)."""

    selector: int
    base: int
    limit: int
    type: int
    present: int
    dpl: int
    db: int
    s: int
    l: int  # noqa: E741 - the header's name
    g: int

    @classmethod
    def from_struct(cls, seg: abi.kvm_segment) -> Segment:
        return cls(*(getattr(seg, f.name) for f in fields(cls)))


@dataclass(frozen=True)
class DescriptorTable:
    base: int
    limit: int


Mode = Literal["real", "protected", "long"]


@dataclass(frozen=True)
class SpecialRegisters:
    """Segment, control and descriptor-table registers (``struct kvm_sregs``), with the mode they imply."""

    cs: Segment
    ds: Segment
    ss: Segment
    tr: Segment
    gdt: DescriptorTable
    idt: DescriptorTable
    cr0: int
    cr2: int
    cr3: int
    cr4: int
    efer: int

    @classmethod
    def from_struct(cls, s: abi.kvm_sregs) -> SpecialRegisters:
        return cls(Segment.from_struct(s.cs), Segment.from_struct(s.ds), Segment.from_struct(s.ss),
                   Segment.from_struct(s.tr), DescriptorTable(s.gdt.base, s.gdt.limit),
                   DescriptorTable(s.idt.base, s.idt.limit), s.cr0, s.cr2, s.cr3, s.cr4, s.efer)

    @property
    def mode(self) -> Mode:
        if not self.cr0 & CR0_PE:
            return "real"
        return "long" if self.efer & EFER_LMA else "protected"

    @property
    def bits(self) -> Literal[16, 32, 64]:
        """Width of the code being executed: what to disassemble RIP with."""
        if self.mode == "long" and self.cs.l:
            return 64
        return 32 if self.mode != "real" and self.cs.db else 16

    @property
    def ring(self) -> int:
        """Current privilege level: 0 (kernel) … 3 (user); real mode has no rings (0)."""
        return 0 if self.mode == "real" else self.cs.selector & 3

    @property
    def paging(self) -> bool:
        return bool(self.cr0 & CR0_PG)

    def describe(self) -> str:
        """E.g. ``64-bit long mode, ring 3, paging on``."""
        name = {"real": N_("real mode"), "protected": N_("protected mode"), "long": N_("long mode")}[self.mode]
        if self.mode == "long" and self.bits != 64:
            name = N_("compatibility mode (long mode)")
        paging = _("paging on") if self.paging else _("paging off")
        if self.mode == "real":
            return _("{bits}-bit {mode}, {paging}").format(bits=self.bits, mode=_(name), paging=paging)
        return _("{bits}-bit {mode}, ring {ring}, {paging}").format(bits=self.bits, mode=_(name), ring=self.ring,
                                                                  paging=paging)

    def table(self) -> str:
        return (f"    cs={self.cs.selector:04x} (base {self.cs.base:#x}, dpl {self.cs.dpl}, "
                f"l={self.cs.l} db={self.cs.db})  ss={self.ss.selector:04x}  ds={self.ds.selector:04x}\n"
                f"   cr0={self.cr0:08x}  cr3={self.cr3:08x}  cr4={self.cr4:08x}  efer={self.efer:x}  "
                f"gdt={self.gdt.base:#x}/{self.gdt.limit:#x}")
