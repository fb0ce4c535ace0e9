"""The vCPU as the 64-bit boot protocol wants it: long mode, flat segments, ``rsi`` = the zero page.

boot.rst ("64-bit boot protocol"): the CPU in 64-bit mode with paging on;
the kernel, the zero page and the command line identity-mapped; a GDT with
flat 4 GiB descriptors for selectors ``__BOOT_CS`` (0x10, execute/read) and
``__BOOT_DS`` (0x18, read/write) loaded in CS and DS/ES/SS; interrupts off;
``rsi`` the zero page's address.  Real firmware and GRUB get there step by
step from real mode; a VMM just sets the registers (KVM_SET_SREGS/REGS).

The CPU the guest sees is what KVM offers here (KVM_GET_SUPPORTED_CPUID),
with the two things a VMM adds, as QEMU and Firecracker do: the *hypervisor*
bit (CPUID.1:ECX[31], so the kernel looks for KVM's leaves at 0x40000000)
and the vCPU's APIC ID.
"""

from __future__ import annotations

from dataclasses import replace

from labkit.kvm import abi, modes
from labkit.kvm.memory import GuestMemory
from labkit.kvm.regs import CR0_ET, CR0_NE, CR0_PE, CR0_PG, CR4_PAE, EFER_LMA, EFER_LME, RFLAGS_RESERVED
from labkit.kvm.system import CpuidEntry
from labkit.kvm.vcpu import Vcpu

BOOT_CS = 0x10
BOOT_DS = 0x18
GDT_ADDR = 0x1000
STACK_TOP = 0x8000  # the kernel sets up its own stack first thing; this one only has to be RAM

#: boot.rst's GDT: 64-bit code (L=1) and data, ring 0, flat, Accessed bits pre-set (see labkit.kvm.modes).
GDT: dict[int, int] = {
    0: 0,
    BOOT_CS: modes.descriptor(0, 0xFFFFF, 0x9B, 0xA),
    BOOT_DS: modes.descriptor(0, 0xFFFFF, 0x93, 0xC),
}
HYPERVISOR_BIT = 1 << 31  # CPUID.1:ECX


def guest_cpuid(supported: tuple[CpuidEntry, ...], apic_id: int = 0) -> tuple[CpuidEntry, ...]:
    """KVM's supported CPUID, plus the hypervisor bit and this vCPU's initial APIC ID in leaf 1."""
    out = []
    for entry in supported:
        if entry.function == 1:
            entry = replace(entry, ecx=entry.ecx | HYPERVISOR_BIT, ebx=entry.ebx & 0x00FFFFFF | apic_id << 24)
        out.append(entry)
    return tuple(out)


def write_gdt(memory: GuestMemory) -> abi.kvm_dtable:
    """Write :data:`GDT` at :data:`GDT_ADDR`; the GDTR that points at it."""
    for selector, desc in GDT.items():
        memory.write_u64(GDT_ADDR + selector, desc)
    return abi.kvm_dtable(base=GDT_ADDR, limit=max(GDT) + 7)


def enter_64bit(vcpu: Vcpu, memory: GuestMemory, entry: int, zero_page: int) -> None:
    """Put ``vcpu`` at the kernel's 64-bit ``entry`` the way boot.rst describes (page tables, GDT, registers)."""
    sregs = vcpu.get_sregs()
    sregs.gdt = write_gdt(memory)
    sregs.idt = abi.kvm_dtable(base=0, limit=0)  # interrupts are off until the kernel loads its own IDT
    sregs.cs = modes.segment(BOOT_CS, GDT[BOOT_CS])
    for name in ("ds", "es", "fs", "gs", "ss"):
        setattr(sregs, name, modes.segment(BOOT_DS, GDT[BOOT_DS]))
    sregs.cr3 = modes.write_page_tables(memory, "2M")  # the first GiB identity-mapped: the kernel is inside
    sregs.cr4 = CR4_PAE
    sregs.efer = EFER_LME | EFER_LMA
    sregs.cr0 = CR0_PE | CR0_ET | CR0_NE | CR0_PG
    vcpu.set_sregs(sregs)
    vcpu.set_regs(rip=entry, rsi=zero_page, rsp=STACK_TOP, rflags=RFLAGS_RESERVED)
