"""``/dev/kvm``: the system file descriptor — API version, capabilities, CPUID, new VMs.

Opening ``/dev/kvm`` is the first step of every VMM (QEMU, Firecracker,
crosvm).  What the fd answers describes *this* host's KVM: how many vCPUs and
memory slots a VM may have, which CPU features a guest can be given.
"""

from __future__ import annotations

import ctypes
import errno
import os
from dataclasses import dataclass
from pathlib import Path

from labkit.errors import AccessDeniedError, KvmUnavailableError
from labkit.i18n import _
from labkit.kvm import abi
from labkit.kvm.errors import KvmIoctlError
from labkit.kvm.fd import KvmFd, Trace
from labkit.kvm.vm import Vm

#: The device node; tests point it elsewhere to see how a missing /dev/kvm reads.
DEV_KVM = Path("/dev/kvm")


@dataclass(frozen=True)
class Capabilities:
    """``KVM_CHECK_EXTENSION`` answers a VMM needs (0 = not supported)."""

    user_memory: int
    hlt: int
    set_tss_addr: int
    immediate_exit: int
    readonly_mem: int
    irqchip: int
    nr_vcpus: int
    max_vcpus: int
    nr_memslots: int


@dataclass(frozen=True)
class CpuidEntry:
    """One CPUID leaf KVM can offer a guest (``struct kvm_cpuid_entry2``)."""

    function: int
    index: int
    flags: int
    eax: int
    ebx: int
    ecx: int
    edx: int


#: (leaf, register, bit) of CPU features the lab asks about.
CPU_FEATURES = {
    "pdpe1gb": (0x80000001, "edx", 26),  # 1 GiB pages
    "lm": (0x80000001, "edx", 29),  # long mode
    "pae": (0x1, "edx", 6),
    "vmx": (0x1, "ecx", 5),
}


def has_feature(entries: tuple[CpuidEntry, ...], feature: str) -> bool:
    """Whether a CPUID table (e.g. :meth:`Kvm.supported_cpuid`) offers ``feature``."""
    leaf, register, bit = CPU_FEATURES[feature]
    return any(e.function == leaf and getattr(e, register) >> bit & 1 for e in entries)


def open_device(path: Path) -> int:
    """Open the KVM device read-write, turning the usual failures into fixes."""
    try:
        return os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        raise KvmUnavailableError(
            f"{path} does not exist: this host offers no KVM",
            "run `labkit doctor` for the reason (module not loaded, no VT-x/AMD-V, or a VM "
            "without nested virtualization)") from None
    except PermissionError:
        raise AccessDeniedError(
            f"you may not open {path} (permission denied)",
            "add yourself to its group: sudo usermod -aG kvm $USER and log in again "
            "(or run the lab as root); `labkit doctor` shows the device's owner") from None
    except OSError as exc:
        raise KvmUnavailableError(f"cannot open {path}: {exc.strerror}",
                                  "check that the kvm module initialised: dmesg | grep -i kvm") from None


class Kvm(KvmFd):
    """The open ``/dev/kvm``: ask it about KVM, create VMs.  A context manager.

    VMs created here are closed with it.
    """

    label = "/dev/kvm"

    def __init__(self, path: Path | str | None = None, trace: Trace | None = None) -> None:
        self.path = Path(path) if path is not None else DEV_KVM
        super().__init__(open_device(self.path), trace)
        self.vms: list[Vm] = []
        try:
            version = self.api_version()
            if version != abi.KVM_API_VERSION:
                raise KvmUnavailableError(f"KVM API version {version}, expected {abi.KVM_API_VERSION}",
                                          "this kernel's KVM is not the one Linux has shipped since 2.6.22")
        except BaseException:
            self.close()
            raise

    def api_version(self) -> int:
        """KVM_GET_API_VERSION: 12 on every Linux since 2.6.22; anything else is unusable."""
        return self.ioctl(abi.KVM_GET_API_VERSION, note=lambda v: f"→ {v}")

    def check_extension(self, capability: int) -> int:
        """KVM_CHECK_EXTENSION: 0 if unsupported, else 1 or a number (e.g. max vCPUs)."""
        name = abi.CAPABILITY_NAMES.get(capability, str(capability))
        return self.ioctl(abi.KVM_CHECK_EXTENSION, capability, note=lambda v: f"{name} → {v}")

    def capabilities(self) -> Capabilities:
        """The capabilities a VMM looks at first, by name."""
        return Capabilities(**{field: self.check_extension(getattr(abi, f"KVM_CAP_{field.upper()}"))
                               for field in Capabilities.__dataclass_fields__})

    def vcpu_mmap_size(self) -> int:
        """KVM_GET_VCPU_MMAP_SIZE: bytes to mmap from a vCPU fd (``struct kvm_run`` and its data pages)."""
        return self.ioctl(abi.KVM_GET_VCPU_MMAP_SIZE, note=lambda v: f"→ {v} bytes")

    def supported_cpuid(self) -> tuple[CpuidEntry, ...]:
        """KVM_GET_SUPPORTED_CPUID: the CPUID leaves KVM can present to a guest on this host."""
        nent = 64
        while True:
            table = abi.kvm_cpuid2_with(nent)(nent=nent)
            try:
                self.ioctl(abi.KVM_GET_SUPPORTED_CPUID, ctypes.addressof(table),
                           note=lambda _: f"→ {table.nent} leaves")  # noqa: B023 - called in this iteration
            except KvmIoctlError as exc:
                if exc.errno == errno.E2BIG and nent < 4096:
                    nent *= 2
                    continue
                raise
            return tuple(CpuidEntry(e.function, e.index, e.flags, e.eax, e.ebx, e.ecx, e.edx)
                         for e in table.entries[:table.nent])

    def create_vm(self) -> Vm:
        """KVM_CREATE_VM: a new, empty VM (no memory, no vCPUs) with its own fd."""
        fd = self.ioctl(abi.KVM_CREATE_VM, note=lambda _fd: "→ " + _("a new VM (its own fd)"))
        vm = Vm(fd, self, self.trace)
        self.vms.append(vm)
        return vm

    def close_device(self) -> None:
        """Close only the /dev/kvm fd.  The VMs stay: each VM fd holds the kernel's VM on its own."""
        super().close()

    def close(self) -> None:
        """Close the VMs (and their vCPUs), then /dev/kvm: everything this object opened."""
        for vm in getattr(self, "vms", ()):
            vm.close()
        super().close()
