"""The running kernel: release, command line, loadable modules and how the KVM modules are present.

A module's state is one of ``loaded module``, ``built in``, ``absent``,
``not loaded`` (the module list is known and lacks it, but whether it is
built in was not recorded) or ``unknown`` (nothing about it was recorded).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, cast

from labkit.host.sources import Source
from labkit.i18n import Phrase
from labkit.i18n import noop as N_

KVM_MODULES = ("kvm", "kvm_intel", "kvm_amd", "kvm_pvm")

ModuleState = Literal["loaded module", "built in", "absent", "not loaded", "unknown"]
#: Each state as the learner reads it (compared in English, shown translated: see :class:`labkit.i18n.Phrase`).
MODULE_STATES = {"loaded module": Phrase(N_("loaded module")), "built in": Phrase(N_("built in")),
                 "absent": Phrase(N_("absent")), "not loaded": Phrase(N_("not loaded")),
                 "unknown": Phrase(N_("unknown"))}

#: Loaded drivers that only a guest of a given hypervisor has (prefix → hypervisor).
GUEST_DRIVERS = (
    ("virtio_pci", "KVM/QEMU (virtio)"), ("virtio_blk", "KVM/QEMU (virtio)"), ("virtio_net", "KVM/QEMU (virtio)"),
    ("virtio_scsi", "KVM/QEMU (virtio)"), ("virtio_balloon", "KVM/QEMU (virtio)"),
    ("hv_vmbus", "Microsoft Hyper-V"), ("hv_netvsc", "Microsoft Hyper-V"), ("hv_storvsc", "Microsoft Hyper-V"),
    ("hv_utils", "Microsoft Hyper-V"), ("hv_balloon", "Microsoft Hyper-V"),
    ("xen_blkfront", "Xen"), ("xen_netfront", "Xen"), ("xenfs", "Xen"), ("xen_privcmd", "Xen"),
    ("vmw_balloon", "VMware"), ("vmw_vmci", "VMware"), ("vmw_pvscsi", "VMware"), ("vmxnet3", "VMware"),
    ("vmwgfx", "VMware"), ("vboxguest", "VirtualBox"), ("vboxsf", "VirtualBox"), ("vboxvideo", "VirtualBox"),
    ("prl_tg", "Parallels"), ("prl_fs", "Parallels"), ("prl_eth", "Parallels"),
)


@dataclass(frozen=True)
class KvmModule:
    """One of the KVM modules and how the kernel has it."""

    name: str
    state: ModuleState
    nested: str | None  # the module's ``nested`` parameter, if it has one

    @property
    def present(self) -> bool | None:
        """In the kernel (loaded or built in): True, False, or None when not known."""
        return {"loaded module": True, "built in": True, "absent": False}.get(self.state)


@dataclass(frozen=True)
class KernelInfo:
    release: str
    version: str
    cmdline: str
    loadable_modules: bool | None  # None: /proc/modules was not recorded
    loaded_modules: tuple[str, ...]
    kvm_modules: tuple[KvmModule, ...]
    design: Phrase
    evidence: tuple[str, ...]
    #: loaded drivers that betray a hypervisor: (module, hypervisor)
    guest_drivers: tuple[tuple[str, str], ...] = ()
    #: the kernel log, where it was readable or recorded (positive evidence only: it rotates)
    dmesg: str = ""

    def module(self, name: str) -> KvmModule:
        return next(m for m in self.kvm_modules if m.name == name)


def kernel_info(src: Source) -> KernelInfo:
    """Release, version, command line and how the KVM modules are present."""
    modules_state = src.state("proc/modules")
    modules_text = src.read("proc/modules")
    loaded = tuple(line.split()[0] for line in (modules_text or "").splitlines() if line.strip())
    known_filter = getattr(src, "modules_filter", None)  # e.g. a pasted `lsmod | grep kvm`

    def listed(name: str) -> bool:
        return modules_text is not None and (known_filter is None or known_filter in name)

    kvm = []
    for name in KVM_MODULES:
        sysdir = src.state(f"sys/module/{name}")
        if name in loaded:
            state: ModuleState = "loaded module"
        elif sysdir == "present" and src.state(f"sys/module/{name}/initstate") == "absent":
            state = "built in"  # built-in modules have a /sys/module dir but no initstate
        elif sysdir == "absent" and (listed(name) or modules_state == "absent"):
            state = "absent"
        elif listed(name):
            state = "not loaded"
        elif modules_state == "absent" and src.live:
            state = "absent"
        else:
            state = "unknown"
        nested = src.read(f"sys/module/{name}/parameters/nested")
        kvm.append(KvmModule(name, cast(ModuleState, MODULE_STATES[state]), nested.strip() if nested else None))
    loadable = True if modules_text is not None else (False if modules_state == "absent" else None)
    cmdline = (src.read("proc/cmdline") or "").strip()
    if loadable:
        design = Phrase(N_("monolithic kernel with loadable modules: drivers such as kvm run in the "
                           "kernel's own address space, but can be added and removed at run time"))
    elif loadable is False and "nomodule" in cmdline.split():
        design = Phrase(N_("monolithic kernel without loadable modules: everything, kvm included, was "
                           "built into one kernel image (module loading is off: 'nomodule' on the command line)"))
    elif loadable is False:
        design = Phrase(N_("monolithic kernel without loadable modules: everything, kvm included, was "
                           "built into one kernel image"))
    else:
        design = Phrase(N_("monolithic kernel; whether it loads modules was not recorded (no /proc/modules)"))
    drivers = tuple((mod, hv) for mod in loaded for prefix, hv in GUEST_DRIVERS if mod == prefix)
    return KernelInfo(
        release=(src.read("proc/sys/kernel/osrelease") or _release_from(src.read("proc/version")) or "unknown").strip(),
        version=(src.read("proc/version") or "unknown").strip(),
        cmdline=cmdline,
        loadable_modules=loadable,
        loaded_modules=loaded,
        kvm_modules=tuple(kvm),
        design=design,
        evidence=("/proc/sys/kernel/osrelease", "/proc/version", "/proc/cmdline",
                  {"present": "/proc/modules", "absent": "/proc/modules is absent"}.get(
                      modules_state, "/proc/modules was not recorded"), "/sys/module/*"),
        guest_drivers=drivers,
        dmesg=src.read("dmesg") or "",
    )


def _release_from(version: str | None) -> str | None:
    match = re.match(r"Linux version (\S+)", version or "")
    return match.group(1) if match else None
