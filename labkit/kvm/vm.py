"""A VM: its file descriptor, its memory slots and its vCPUs.

A KVM VM is little more than an address space (memory slots) and a set of
vCPUs; everything else — firmware, devices, even the idea of "booting" — is
the VMM's business.  This module does the two VM ioctls a minimal VMM needs:
``KVM_SET_USER_MEMORY_REGION`` and ``KVM_CREATE_VCPU``.
"""

from __future__ import annotations

import ctypes
import mmap
import os
from typing import TYPE_CHECKING

from labkit.i18n import _
from labkit.kvm import abi
from labkit.kvm.fd import KvmFd, Trace
from labkit.kvm.memory import GuestMemory, MemorySlot, format_size, validate_region
from labkit.kvm.vcpu import Vcpu

if TYPE_CHECKING:
    from labkit.kvm.system import Kvm


class Vm(KvmFd):
    """A VM fd with its guest memory and vCPUs.  Closing it closes the vCPUs, then frees the RAM."""

    label = "VM"

    def __init__(self, fd: int, system: Kvm, trace: Trace | None = None) -> None:
        super().__init__(fd, trace)
        self.system = system  # the /dev/kvm fd: it knows the slot limit and the kvm_run size
        self.memory = GuestMemory()
        self.vcpus: list[Vcpu] = []

    def add_memory(self, guest_phys_addr: int, size: int, *, readonly: bool = False) -> MemorySlot:
        """Back guest-physical ``[guest_phys_addr, +size)`` with fresh zeroed memory (KVM_SET_USER_MEMORY_REGION).

        A read-only slot makes guest writes there leave as ``KVM_EXIT_MMIO``
        (that is how ROM and flash are emulated).
        """
        validate_region(guest_phys_addr, size, self.memory.slots,
                        self.system.check_extension(abi.KVM_CAP_NR_MEMSLOTS))
        mapping = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        slot = MemorySlot(len(self.memory.slots), guest_phys_addr, size, readonly, mapping)
        region = abi.kvm_userspace_memory_region(
            slot=slot.slot, flags=abi.KVM_MEM_READONLY if readonly else 0,
            guest_phys_addr=guest_phys_addr, memory_size=size, userspace_addr=slot.userspace_addr)
        try:
            self.ioctl(abi.KVM_SET_USER_MEMORY_REGION, ctypes.addressof(region),
                       note=lambda _result: _("{slot} ← {size} of this process").format(slot=slot.describe(),
                                                                                        size=format_size(size)))
        except BaseException:
            slot.release()
            raise
        self.memory.slots.append(slot)
        return slot

    def set_tss_addr(self, address: int = abi.TSS_ADDR) -> None:
        """KVM_SET_TSS_ADDR: three pages Intel VT-x needs to run real mode on CPUs without
        "unrestricted guest"; harmless elsewhere, so every VMM sets it."""
        self.ioctl(abi.KVM_SET_TSS_ADDR, address, note=lambda _: f"{address:#x}")

    def create_irqchip(self) -> None:
        """KVM_CREATE_IRQCHIP: the PC's interrupt controllers (8259 PICs, IOAPIC, local APICs) emulated in the
        kernel, so interrupts reach the guest without a trip through this process.  Before the first vCPU."""
        self.ioctl(abi.KVM_CREATE_IRQCHIP, note=lambda _result: _("PIC ×2, IOAPIC, local APICs in the kernel"))

    def create_pit2(self) -> None:
        """KVM_CREATE_PIT2: the 8254 timer (ports 0x40–0x43) in the kernel, ticking on IRQ 0.  Needs the irqchip."""
        config = abi.kvm_pit_config(flags=abi.KVM_PIT_SPEAKER_DUMMY)
        self.ioctl(abi.KVM_CREATE_PIT2, ctypes.addressof(config), note=lambda _result: _("8254 timer in the kernel"))

    def irq_line(self, irq: int, level: int) -> None:
        """KVM_IRQ_LINE: drive interrupt line ``irq`` to ``level`` (the in-kernel irqchip sees the edge)."""
        line = abi.kvm_irq_level(irq=irq, level=level)
        self.ioctl(abi.KVM_IRQ_LINE, ctypes.addressof(line), note=lambda _: f"IRQ {irq} ← {level}")

    def create_vcpu(self) -> Vcpu:
        """KVM_CREATE_VCPU: a new vCPU (in its reset state, like a CPU after power-on) with its own fd,
        and its ``kvm_run`` page mapped (KVM_GET_VCPU_MMAP_SIZE says how large)."""
        index = len(self.vcpus)
        fd = self.ioctl(abi.KVM_CREATE_VCPU, index,
                        note=lambda _fd: "→ " + _("vCPU {index} (its own fd)").format(index=index))
        try:
            size = self.system.vcpu_mmap_size()
        except BaseException:
            os.close(fd)
            raise
        vcpu = Vcpu(fd, index, size, self.trace)  # closes fd itself if it fails
        self.vcpus.append(vcpu)
        return vcpu

    def close(self) -> None:
        # Order matters: vCPUs hold the VM; the VM holds the slots' memory until it is gone.
        for vcpu in getattr(self, "vcpus", ()):
            vcpu.close()
        super().close()
        if hasattr(self, "memory"):
            self.memory.release()
