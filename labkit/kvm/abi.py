"""The KVM ABI of ``<linux/kvm.h>``: ioctl numbers and constants, named as in the header.

Learners will meet these names in the kernel's ``Documentation/virt/kvm/api.rst``,
so they are spelled exactly as there.  This module is pure data with no
labkit imports: :mod:`labkit.host` uses it to probe ``/dev/kvm`` and
:mod:`labkit.kvm` builds the VMM on it.

The structures are :mod:`ctypes` mirrors of the header's, with the same field
names, so ``sizeof`` can be checked against the ioctl numbers and the
``kvm_run`` page that ``KVM_RUN`` fills can be read in place (``from_buffer``
on the vCPU's mmap: no copy per exit).
"""

from __future__ import annotations

import ctypes
from ctypes import c_char
from ctypes import c_uint8 as u8
from ctypes import c_uint16 as u16
from ctypes import c_uint32 as u32
from ctypes import c_uint64 as u64

# asm-generic/ioctl.h: | dir:2 | size:14 | type:8 | nr:8 |
_IOC_NONE, _IOC_WRITE, _IOC_READ = 0, 1, 2


def _IOC(direction: int, type_: int, nr: int, size: int) -> int:
    return (direction << 30) | (size << 16) | (type_ << 8) | nr


def _IO(type_: int, nr: int) -> int:
    return _IOC(_IOC_NONE, type_, nr, 0)


def _IOR(type_: int, nr: int, size: int) -> int:
    return _IOC(_IOC_READ, type_, nr, size)


def _IOW(type_: int, nr: int, size: int) -> int:
    return _IOC(_IOC_WRITE, type_, nr, size)


def _IOWR(type_: int, nr: int, size: int) -> int:
    return _IOC(_IOC_READ | _IOC_WRITE, type_, nr, size)


KVMIO = 0xAE

# System ioctls (on the /dev/kvm fd)
KVM_GET_API_VERSION = _IO(KVMIO, 0x00)
KVM_CREATE_VM = _IO(KVMIO, 0x01)
KVM_CHECK_EXTENSION = _IO(KVMIO, 0x03)
KVM_GET_VCPU_MMAP_SIZE = _IO(KVMIO, 0x04)

#: The only API version there has ever been in mainline Linux.
KVM_API_VERSION = 12

# Capabilities asked with KVM_CHECK_EXTENSION (a few the lab explains).
KVM_CAP_IRQCHIP = 0
KVM_CAP_HLT = 1
KVM_CAP_USER_MEMORY = 3
KVM_CAP_SET_TSS_ADDR = 4
KVM_CAP_EXT_CPUID = 7
KVM_CAP_NR_VCPUS = 9
KVM_CAP_NR_MEMSLOTS = 10
KVM_CAP_COALESCED_MMIO = 15
KVM_CAP_PIT2 = 33
KVM_CAP_IOEVENTFD = 36
KVM_CAP_INTERNAL_ERROR_DATA = 40
KVM_CAP_READONLY_MEM = 81
KVM_CAP_MAX_VCPUS = 66
KVM_CAP_IMMEDIATE_EXIT = 136
KVM_CAP_NESTED_STATE = 157

#: Capabilities reported by ``labkit.host`` and the KVM notebook, with why they matter.
PROBED_CAPABILITIES: dict[str, str] = {
    "KVM_CAP_USER_MEMORY": "guest RAM is ordinary memory of this process",
    "KVM_CAP_IRQCHIP": "the interrupt controllers can live in the kernel",
    "KVM_CAP_HLT": "a guest HLT can come back to user space",
    "KVM_CAP_NR_VCPUS": "recommended vCPUs per VM",
    "KVM_CAP_MAX_VCPUS": "maximum vCPUs per VM",
    "KVM_CAP_NR_MEMSLOTS": "memory slots per VM",
    "KVM_CAP_NESTED_STATE": "a guest may itself run KVM (nesting)",
}


# --------------------------------------------------------------------------- structures


class kvm_userspace_memory_region(ctypes.Structure):
    """KVM_SET_USER_MEMORY_REGION: guest-physical range backed by this process's memory."""

    _fields_ = [("slot", u32), ("flags", u32), ("guest_phys_addr", u64),
                ("memory_size", u64), ("userspace_addr", u64)]


KVM_MEM_LOG_DIRTY_PAGES = 1 << 0
KVM_MEM_READONLY = 1 << 1


class kvm_regs(ctypes.Structure):
    """General-purpose registers, RIP and RFLAGS (KVM_GET_REGS / KVM_SET_REGS)."""

    _fields_ = [(name, u64) for name in (
        "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rsp", "rbp",
        "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rip", "rflags")]


class kvm_segment(ctypes.Structure):
    """A segment register as the CPU caches it: the descriptor unpacked."""

    _fields_ = [("base", u64), ("limit", u32), ("selector", u16), ("type", u8),
                ("present", u8), ("dpl", u8), ("db", u8), ("s", u8), ("l", u8),
                ("g", u8), ("avl", u8), ("unusable", u8), ("padding", u8)]


class kvm_dtable(ctypes.Structure):
    """GDTR / IDTR: base and limit of a descriptor table."""

    _fields_ = [("base", u64), ("limit", u16), ("padding", u16 * 3)]


KVM_NR_INTERRUPTS = 256


class kvm_sregs(ctypes.Structure):
    """Segment, control and descriptor-table registers (KVM_GET_SREGS / KVM_SET_SREGS)."""

    _fields_ = [*((name, kvm_segment) for name in ("cs", "ds", "es", "fs", "gs", "ss", "tr", "ldt")),
                ("gdt", kvm_dtable), ("idt", kvm_dtable),
                *((name, u64) for name in ("cr0", "cr2", "cr3", "cr4", "cr8", "efer", "apic_base")),
                ("interrupt_bitmap", u64 * ((KVM_NR_INTERRUPTS + 63) // 64))]


class kvm_translation(ctypes.Structure):
    """KVM_TRANSLATE: a guest-virtual address walked through the guest's page tables."""

    _fields_ = [("linear_address", u64), ("physical_address", u64), ("valid", u8),
                ("writeable", u8), ("usermode", u8), ("pad", u8 * 5)]


class kvm_cpuid_entry2(ctypes.Structure):
    _fields_ = [("function", u32), ("index", u32), ("flags", u32), ("eax", u32),
                ("ebx", u32), ("ecx", u32), ("edx", u32), ("padding", u32 * 3)]


class kvm_cpuid2(ctypes.Structure):
    """Header of the CPUID table; ``entries`` follow it (a flexible array in C)."""

    _fields_ = [("nent", u32), ("padding", u32)]


def kvm_cpuid2_with(nent: int) -> type[ctypes.Structure]:
    """``struct kvm_cpuid2`` with room for ``nent`` entries (C's flexible array member)."""
    return type(f"kvm_cpuid2_{nent}", (ctypes.Structure,), {
        "_fields_": [("nent", u32), ("padding", u32), ("entries", kvm_cpuid_entry2 * nent)]})


# kvm_run's exit union, one structure per exit that labkit decodes.
class kvm_run_hw(ctypes.Structure):
    _fields_ = [("hardware_exit_reason", u64)]


class kvm_run_fail_entry(ctypes.Structure):
    _fields_ = [("hardware_entry_failure_reason", u64), ("cpu", u32)]


class kvm_run_ex(ctypes.Structure):
    _fields_ = [("exception", u32), ("error_code", u32)]


class kvm_run_io(ctypes.Structure):
    _fields_ = [("direction", u8), ("size", u8), ("port", u16), ("count", u32),
                ("data_offset", u64)]


class kvm_run_mmio(ctypes.Structure):
    _fields_ = [("phys_addr", u64), ("data", u8 * 8), ("len", u32), ("is_write", u8)]


class kvm_run_internal(ctypes.Structure):
    _fields_ = [("suberror", u32), ("ndata", u32), ("data", u64 * 16)]


class kvm_run_system_event(ctypes.Structure):
    _fields_ = [("type", u32), ("ndata", u32), ("data", u64 * 16)]


class kvm_run_exit(ctypes.Union):
    _fields_ = [("hw", kvm_run_hw), ("fail_entry", kvm_run_fail_entry), ("ex", kvm_run_ex),
                ("io", kvm_run_io), ("mmio", kvm_run_mmio), ("internal", kvm_run_internal),
                ("system_event", kvm_run_system_event), ("padding", c_char * 256)]


class kvm_run(ctypes.Structure):
    """The vCPU's shared page: what KVM_RUN was asked (in) and why it came back (out)."""

    _anonymous_ = ("u",)
    _fields_ = [("request_interrupt_window", u8), ("immediate_exit", u8), ("padding1", u8 * 6),
                ("exit_reason", u32), ("ready_for_interrupt_injection", u8), ("if_flag", u8),
                ("flags", u16), ("cr8", u64), ("apic_base", u64), ("u", kvm_run_exit),
                ("kvm_valid_regs", u64), ("kvm_dirty_regs", u64), ("s", c_char * 2048)]


# --------------------------------------------------------------------------- VM and vCPU ioctls

KVM_GET_SUPPORTED_CPUID = _IOWR(KVMIO, 0x05, ctypes.sizeof(kvm_cpuid2))

# VM ioctls (on a VM fd)
KVM_CREATE_VCPU = _IO(KVMIO, 0x41)
KVM_SET_USER_MEMORY_REGION = _IOW(KVMIO, 0x46, ctypes.sizeof(kvm_userspace_memory_region))
KVM_SET_TSS_ADDR = _IO(KVMIO, 0x47)

# vCPU ioctls (on a vCPU fd)
KVM_RUN = _IO(KVMIO, 0x80)
KVM_GET_REGS = _IOR(KVMIO, 0x81, ctypes.sizeof(kvm_regs))
KVM_SET_REGS = _IOW(KVMIO, 0x82, ctypes.sizeof(kvm_regs))
KVM_GET_SREGS = _IOR(KVMIO, 0x83, ctypes.sizeof(kvm_sregs))
KVM_SET_SREGS = _IOW(KVMIO, 0x84, ctypes.sizeof(kvm_sregs))
KVM_TRANSLATE = _IOWR(KVMIO, 0x85, ctypes.sizeof(kvm_translation))
KVM_SET_CPUID2 = _IOW(KVMIO, 0x90, ctypes.sizeof(kvm_cpuid2))

#: Where QEMU puts the TSS that Intel VT-x needs for real mode without "unrestricted guest".
TSS_ADDR = 0xFFFBD000

# --------------------------------------------------------------------------- exits

KVM_EXIT_UNKNOWN = 0
KVM_EXIT_EXCEPTION = 1
KVM_EXIT_IO = 2
KVM_EXIT_HYPERCALL = 3
KVM_EXIT_DEBUG = 4
KVM_EXIT_HLT = 5
KVM_EXIT_MMIO = 6
KVM_EXIT_IRQ_WINDOW_OPEN = 7
KVM_EXIT_SHUTDOWN = 8
KVM_EXIT_FAIL_ENTRY = 9
KVM_EXIT_INTR = 10
KVM_EXIT_SET_TPR = 11
KVM_EXIT_TPR_ACCESS = 12
KVM_EXIT_NMI = 16
KVM_EXIT_INTERNAL_ERROR = 17
KVM_EXIT_SYSTEM_EVENT = 24
KVM_EXIT_IOAPIC_EOI = 26
KVM_EXIT_HYPERV = 27
KVM_EXIT_X86_RDMSR = 29
KVM_EXIT_X86_WRMSR = 30
KVM_EXIT_DIRTY_RING_FULL = 31
KVM_EXIT_X86_BUS_LOCK = 33
KVM_EXIT_XEN = 34
KVM_EXIT_NOTIFY = 37

#: exit_reason number -> its name in <linux/kvm.h> (the x86 ones).
EXIT_REASON_NAMES: dict[int, str] = {
    value: name for name, value in globals().items() if name.startswith("KVM_EXIT_") and isinstance(value, int)}

KVM_EXIT_IO_IN = 0
KVM_EXIT_IO_OUT = 1

# kvm_run.internal.suberror
KVM_INTERNAL_ERROR_EMULATION = 1
KVM_INTERNAL_ERROR_SIMUL_EX = 2
KVM_INTERNAL_ERROR_DELIVERY_EV = 3
KVM_INTERNAL_ERROR_UNEXPECTED_EXIT_REASON = 4

INTERNAL_ERROR_NAMES: dict[int, str] = {
    KVM_INTERNAL_ERROR_EMULATION: "KVM_INTERNAL_ERROR_EMULATION",
    KVM_INTERNAL_ERROR_SIMUL_EX: "KVM_INTERNAL_ERROR_SIMUL_EX",
    KVM_INTERNAL_ERROR_DELIVERY_EV: "KVM_INTERNAL_ERROR_DELIVERY_EV",
    KVM_INTERNAL_ERROR_UNEXPECTED_EXIT_REASON: "KVM_INTERNAL_ERROR_UNEXPECTED_EXIT_REASON",
}

#: ioctl number -> its name, for traces and error messages.
IOCTL_NAMES: dict[int, str] = {globals()[name]: name for name in (
    "KVM_GET_API_VERSION", "KVM_CREATE_VM", "KVM_CHECK_EXTENSION", "KVM_GET_VCPU_MMAP_SIZE",
    "KVM_GET_SUPPORTED_CPUID", "KVM_CREATE_VCPU", "KVM_SET_USER_MEMORY_REGION", "KVM_SET_TSS_ADDR",
    "KVM_RUN", "KVM_GET_REGS", "KVM_SET_REGS", "KVM_GET_SREGS", "KVM_SET_SREGS", "KVM_TRANSLATE",
    "KVM_SET_CPUID2")}

#: KVM_CAP_* number -> name (those defined above).
CAPABILITY_NAMES: dict[int, str] = {
    value: name for name, value in globals().items() if name.startswith("KVM_CAP_") and isinstance(value, int)}

# --------------------------------------------------------------------------- binary statistics (lessons-a)
# KVM_GET_STATS_FD (Linux 5.14+, KVM_CAP_BINARY_STATS_FD) on a VM or vCPU fd returns a read-only fd: a header,
# one descriptor per statistic, then the values (Documentation/virt/kvm/api.rst, "KVM_GET_STATS_FD").

KVM_CAP_BINARY_STATS_FD = 203
KVM_GET_STATS_FD = _IO(KVMIO, 0xCE)
IOCTL_NAMES[KVM_GET_STATS_FD] = "KVM_GET_STATS_FD"
CAPABILITY_NAMES[KVM_CAP_BINARY_STATS_FD] = "KVM_CAP_BINARY_STATS_FD"


class kvm_stats_header(ctypes.Structure):
    _fields_ = [("flags", u32), ("name_size", u32), ("num_desc", u32), ("id_offset", u32),
                ("desc_offset", u32), ("data_offset", u32)]


class kvm_stats_desc(ctypes.Structure):
    """A descriptor's fixed part; its name (``name_size`` bytes, NUL-padded) follows it."""

    _fields_ = [("flags", u32), ("exponent", ctypes.c_int16), ("size", ctypes.c_uint16), ("offset", u32),
                ("bucket_size", u32)]


KVM_STATS_TYPE_MASK, KVM_STATS_UNIT_MASK, KVM_STATS_BASE_MASK = 0xF, 0xF << 4, 0xF << 8
KVM_STATS_TYPE_NAMES = ("cumulative", "instant", "peak", "linear histogram", "log histogram")
KVM_STATS_UNIT_NAMES = ("", "bytes", "seconds", "cycles", "boolean")


# --------------------------------------------------------------------------- ioeventfd (labkit.kvm.exit_cost)


class kvm_ioeventfd(ctypes.Structure):
    """KVM_IOEVENTFD's argument: guest writes to ``addr`` signal eventfd ``fd`` inside the kernel."""

    _fields_ = [("datamatch", u64), ("addr", u64), ("len", u32), ("fd", ctypes.c_int32), ("flags", u32),
                ("pad", u8 * 36)]


KVM_IOEVENTFD = _IOW(KVMIO, 0x79, ctypes.sizeof(kvm_ioeventfd))
KVM_IOEVENTFD_FLAG_PIO = 1 << 1  # addr is an I/O port, not a guest-physical address
IOCTL_NAMES[KVM_IOEVENTFD] = "KVM_IOEVENTFD"


# --------------------------------------------------------------------------- interrupt controllers (labkit.vmm)
# A VMM that boots Linux lets KVM emulate the PC's interrupt controllers and timer in the kernel
# (KVM_CREATE_IRQCHIP: two 8259 PICs, the IOAPIC and each vCPU's local APIC; KVM_CREATE_PIT2: the 8254
# timer) and raises a device's interrupt line with KVM_IRQ_LINE.


class kvm_irq_level(ctypes.Structure):
    """KVM_IRQ_LINE: set interrupt line (GSI) ``irq`` to ``level`` (1 raised, 0 lowered)."""

    _fields_ = [("irq", u32), ("level", u32)]


class kvm_pit_config(ctypes.Structure):
    """KVM_CREATE_PIT2: options of the in-kernel 8254 timer."""

    _fields_ = [("flags", u32), ("pad", u32 * 15)]


#: The PIT's speaker port (0x61) answered in the kernel too, so a guest's timer calibration never exits.
KVM_PIT_SPEAKER_DUMMY = 1

KVM_CREATE_IRQCHIP = _IO(KVMIO, 0x60)
KVM_IRQ_LINE = _IOW(KVMIO, 0x61, ctypes.sizeof(kvm_irq_level))
KVM_CREATE_PIT2 = _IOW(KVMIO, 0x77, ctypes.sizeof(kvm_pit_config))

IOCTL_NAMES.update({globals()[name]: name for name in ("KVM_CREATE_IRQCHIP", "KVM_IRQ_LINE", "KVM_CREATE_PIT2")})
