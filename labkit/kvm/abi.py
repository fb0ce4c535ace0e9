"""The KVM ABI of ``<linux/kvm.h>``: ioctl numbers and constants, named as in the header.

Learners will meet these names in the kernel's ``Documentation/virt/kvm/api.rst``,
so they are spelled exactly as there.  This module is pure data with no
labkit imports: :mod:`labkit.host` uses it to probe ``/dev/kvm`` and
:mod:`labkit.kvm` builds the VMM on it.
"""

from __future__ import annotations

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
