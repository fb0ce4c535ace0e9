"""Bare metal or a virtual machine, and which hypervisor: every clue weighed, the winner named.

Clues, strongest first:

1. the CPU: CPUID.1:ECX bit 31, shown as the ``hypervisor`` flag (x86 only;
   a hypervisor sets it, firmware cannot), and the vendor signature of CPUID
   leaf 0x40000000;
2. the kernel's own words in dmesg: ``Hypervisor detected: …`` and
   ``Booting paravirtualized kernel on …`` (``bare hardware`` on metal);
3. ``/sys/hypervisor/type`` (Xen);
4. loaded guest drivers (virtio, hv_vmbus, xen-*front, vmw_*, vboxguest, prl_*);
5. DMI/SMBIOS strings.  They name the *product* (VirtualBox and Parallels
   present KVM's CPUID signature; Nutanix AHV presents Hyper-V's), but a
   cloud's strings are the same on its VMs and its bare-metal machines: a
   ``*.metal`` product name is bare metal, and the vendor alone proves nothing.

A VM whose hypervisor nobody identified is "unknown hypervisor", never "none";
a host nothing was recorded about is unknown, never "bare metal".
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

from labkit.host.cpu import CpuInfo
from labkit.host.running_kernel import KernelInfo
from labkit.host.sources import Source
from labkit.i18n import Phrase
from labkit.i18n import noop as N_

UNKNOWN_HYPERVISOR = "unknown hypervisor"

#: CPUID leaf 0x40000000 vendor signatures of hypervisors (EBX, ECX, EDX as text).
HYPERVISOR_SIGNATURES = {
    "KVMKVMKVM": "KVM",
    "TCGTCGTCGTCG": "QEMU TCG",
    "Microsoft Hv": "Microsoft Hyper-V",
    "VMwareVMware": "VMware",
    "XenVMMXenVMM": "Xen",
    "VBoxVBoxVBox": "VirtualBox",
    " lrpepyh  vr": "Parallels",
    "bhyve bhyve ": "bhyve",
    "ACRNACRNACRN": "ACRN",
    "QNXQVMBSQG": "QNX",
    "Linux KVM Hv": "KVM (Hyper-V enlightenments)",
}

#: DMI fragments (case-insensitive) → (hypervisor, provider).  Checked in order: products first.
DMI_PRODUCTS = (
    ("Parallels", "Parallels", None),
    ("VirtualBox", "VirtualBox", None), ("innotek GmbH", "VirtualBox", None),
    ("VMware", "VMware", None),
    ("BHYVE", "bhyve", None),
    ("Nutanix", "KVM", "Nutanix AHV"), ("AHV", "KVM", "Nutanix AHV"),
    ("Google Compute Engine", "KVM", "Google Compute Engine"),
    ("Xen HVM domU", "Xen", None), ("HVM domU", "Xen", None),
    ("Firecracker", "KVM", "Firecracker"), ("Cloud Hypervisor", "KVM", "Cloud Hypervisor"),
    ("OpenStack", "KVM", "OpenStack"), ("QEMU", "KVM/QEMU", None), ("Standard PC (", "KVM/QEMU", None),
    ("Bochs", "KVM/QEMU", None), ("KVM", "KVM", None),
)

#: DMI vendors whose machines may be VMs *or* bare metal: they name the provider only.
DMI_PROVIDERS = (("Amazon EC2", "Amazon EC2"), ("Google", "Google Compute Engine"),
                 ("Microsoft Corporation", "Microsoft"))

#: CPU model names that only a hypervisor's virtual CPU models carry.
VIRTUAL_CPU_MODELS = (("QEMU Virtual CPU", "KVM/QEMU"), ("Common KVM processor", "KVM"),
                      ("Common 32-bit KVM processor", "KVM"), ("QEMU TCG CPU", "QEMU TCG"))

#: Azure's chassis asset tag: "MSFT AZURE VM" in decimal ASCII.
AZURE_ASSET_TAG = "7783-7084-3265-9085-8269-3286-77"

_DMI_FILES = ("sys_vendor", "product_name", "board_vendor", "bios_vendor", "bios_version", "chassis_asset_tag")


@dataclass(frozen=True)
class Clue:
    """One piece of evidence: what it says (``vm``, ``bare metal`` or nothing), how strongly, and why."""

    says: str | None
    strength: int  # 3 CPU / kernel, 2 sysfs / drivers, 1 DMI
    hypervisor: str | None
    text: Phrase


@dataclass(frozen=True)
class Platform:
    """Bare metal or a virtual machine (None: not enough was recorded), and which hypervisor."""

    virtual: bool | None
    hypervisor: str | None  # None on bare metal or when unknown; "unknown hypervisor" for an unidentified VM
    evidence: tuple[Phrase, ...]
    decided_by: Phrase | str = ""
    conflicts: tuple[Phrase, ...] = ()
    provider: str | None = None  # a cloud or product name from DMI (Amazon EC2, Azure, Nutanix AHV, ...)
    detail: str | None = None  # Xen PV/HVM, Hyper-V generation

    @property
    def summary(self) -> Phrase:
        if self.virtual is None:
            return Phrase(N_("unknown: what was recorded cannot tell bare metal from a virtual machine"))
        if not self.virtual:
            if self.provider:
                return Phrase(N_("bare metal on {provider}: this kernel runs directly on the hardware"),
                              provider=self.provider)
            return Phrase(N_("bare metal: this kernel runs directly on the hardware"))
        hypervisor = self.hypervisor or UNKNOWN_HYPERVISOR
        if self.detail:
            hypervisor = f"{hypervisor}, {self.detail}"
        if self.provider:
            return Phrase(N_("virtual machine (hypervisor: {hypervisor}) on {provider}"), hypervisor=hypervisor,
                          provider=self.provider)
        return Phrase(N_("virtual machine (hypervisor: {hypervisor})"), hypervisor=hypervisor)


def platform_info(src: Source, cpu: CpuInfo, kernel: KernelInfo) -> Platform:
    """Weigh every clue; the strongest decides, and a disagreement is reported with the reason."""
    clues: list[Clue] = []  # ties between a VM clue and a bare-metal clue go to the VM
    dmi = {name: (src.read(f"sys/class/dmi/id/{name}") or "").strip() for name in _DMI_FILES}
    dmi_line = re.search(r"^.*\bDMI: (.+)$", kernel.dmesg, re.MULTILINE)
    if dmi_line and not any(dmi.values()):
        dmi["dmesg"] = dmi_line.group(1).strip()
    clues += _cpu_clues(src, cpu)
    clues += _dmesg_clues(kernel.dmesg, kernel.cmdline + " " + kernel.release)
    clues += [Clue("vm", 1, hv, Phrase(N_("the CPU model {model!r} is a hypervisor's virtual CPU"),
                                       model=cpu.model_name))
              for fragment, hv in VIRTUAL_CPU_MODELS if fragment in cpu.model_name]
    if cpu.arm_implementer is not None and cpu.arm_part == 0:  # no real core has part number 0
        clues.append(Clue("vm", 1, "Apple Hypervisor.framework" if cpu.arm_implementer == 0x61 else None,
                          Phrase(N_("CPU part 0x000: a hypervisor hid the core's part number (Apple's "
                                    "Virtualization framework, used by UTM and Parallels, does this)"))))
    hv_type = (src.read("sys/hypervisor/type") or "").strip()
    if hv_type:
        clues.append(Clue("vm", 2, hv_type.capitalize(), Phrase(N_("/sys/hypervisor/type = {type!r}"), type=hv_type)))
    for module, hv in kernel.guest_drivers:
        clues.append(Clue("vm", 2, hv, Phrase(N_("guest driver {module} is loaded (a {hypervisor} guest's driver)"),
                                              module=module, hypervisor=hv)))
    dmi_clues, provider, detail = _dmi_clues(dmi)
    clues += dmi_clues
    detail = _xen_mode(kernel.dmesg, kernel.cmdline, cpu) or detail

    evidence = tuple(c.text for c in clues) or (Phrase(N_("nothing that tells bare metal from a VM was recorded")),)
    vm = sorted((c for c in clues if c.says == "vm"), key=lambda c: -c.strength)
    metal = sorted((c for c in clues if c.says == "bare metal"), key=lambda c: -c.strength)
    conflicts: list[Phrase] = []
    if vm and (not metal or vm[0].strength >= metal[0].strength):
        winner = vm[0]
        virtual: bool | None = True
        if metal:
            conflicts.append(Phrase(N_("'{loser}' says bare metal, but '{winner}' wins: {why}"),
                                    loser=metal[0].text, winner=winner.text, why=_why(winner, metal[0])))
    elif metal:
        winner = metal[0]
        virtual = False
        if vm:
            conflicts.append(Phrase(N_("'{loser}' says VM, but '{winner}' wins: {why}"),
                                    loser=vm[0].text, winner=winner.text, why=_why(winner, vm[0])))
    else:
        return Platform(None, None, evidence, Phrase(N_("no clue decides")), (), provider, None)
    hypervisor = _name(vm, clues) if virtual else None
    return Platform(virtual, hypervisor, evidence, winner.text, tuple(conflicts), provider,
                    detail if virtual else None)


def _why(winner: Clue, loser: Clue) -> Phrase:
    if winner.strength > loser.strength:
        return Phrase(N_("what the CPU and the kernel detected at boot outranks firmware strings and missing "
                         "flags (a cloud's DMI is the same on its VMs and its bare-metal machines)"))
    return Phrase(N_("a product name that only VMs carry outweighs a missing hypervisor bit "
                     "(a hypervisor can hide it)"))


def _cpu_clues(src: Source, cpu: CpuInfo) -> list[Clue]:
    if not cpu.is_x86 or not cpu.flags_known:
        return []
    if not cpu.hypervisor_flag:
        return [Clue("bare metal", 1, None,
                     Phrase(N_("/proc/cpuinfo has no 'hypervisor' flag (CPUID.1:ECX bit 31 clear)")))]
    clues = [Clue("vm", 3, None, Phrase(N_("/proc/cpuinfo has the 'hypervisor' flag (CPUID.1:ECX bit 31)")))]
    regs = src.cpuid(0x40000000)
    if regs:
        sig = struct.pack("<3I", *regs[1:4]).rstrip(b"\0").decode("ascii", "replace")
        name = HYPERVISOR_SIGNATURES.get(sig)
        clues.append(Clue("vm", 3, name, Phrase(N_("CPUID leaf 0x40000000 vendor signature {signature!r}"),
                                                signature=sig)))
    return clues


_DMESG_HYPERVISORS = {"KVM": "KVM", "Xen HVM": "Xen", "Xen PV": "Xen", "Xen": "Xen", "VMware": "VMware",
                      "Microsoft Hyper-V": "Microsoft Hyper-V", "ACRN": "ACRN", "Jailhouse": "Jailhouse",
                      "bhyve": "bhyve"}


def _dmesg_clues(dmesg: str, cmdline: str) -> list[Clue]:
    clues = []
    detected = re.search(r"Hypervisor detected: (.+)", dmesg)
    if detected:
        name = detected.group(1).strip()
        clues.append(Clue("vm", 3, _DMESG_HYPERVISORS.get(name, name),
                          Phrase(N_("dmesg: 'Hypervisor detected: {name}'"), name=name)))
    booting = re.search(r"Booting paravirtualized kernel on (.+)", dmesg)
    if booting:
        on = booting.group(1).strip()
        if on == "bare hardware":
            clues.append(Clue("bare metal", 3, None,
                              Phrase(N_("dmesg: 'Booting paravirtualized kernel on bare hardware'"))))
        else:
            clues.append(Clue("vm", 3, _DMESG_HYPERVISORS.get(on, on),
                              Phrase(N_("dmesg: 'Booting paravirtualized kernel on {on}'"), on=on)))
    if re.search(r"using Hyper-V Enlightened VMCS|Hyper-V: privilege flags", dmesg):
        clues.append(Clue("vm", 3, "Microsoft Hyper-V", Phrase(N_("dmesg: Hyper-V interfaces in use"))))
    if "microsoft-standard" in dmesg + cmdline:
        clues.append(Clue("vm", 2, "Microsoft Hyper-V",
                          Phrase(N_("a WSL2 kernel (microsoft-standard): WSL2 is a Hyper-V VM"))))
    return clues


def _dmi_clues(dmi: dict[str, str]) -> tuple[list[Clue], str | None, str | None]:
    clues: list[Clue] = []  # ties between a VM clue and a bare-metal clue go to the VM
    provider: str | None = None
    detail: str | None = None
    shown = {k: v for k, v in dmi.items() if v}
    text = " / ".join(shown.values())
    label = "; ".join(f"DMI {k} = {v!r}" if k != "dmesg" else f"dmesg 'DMI: {v}'" for k, v in shown.items())
    if not text:
        return clues, None, None
    product = dmi.get("product_name") or dmi.get("dmesg", "")
    for fragment, prov in DMI_PROVIDERS:
        if fragment.lower() in text.lower():
            provider = prov
            break
    if dmi.get("chassis_asset_tag") == AZURE_ASSET_TAG:
        provider = "Microsoft Azure"
    if re.search(r"(\.|-|\b)metal\b", product, re.IGNORECASE):
        clues.append(Clue("bare metal", 1, None,
                          Phrase(N_("{dmi} (a *.metal product: a bare-metal instance)"), dmi=label)))
        return clues, provider, None
    if ("virtual machine" in product.lower() and "microsoft" in text.lower()) or "Hyper-V" in text:
        bios = dmi.get("bios_version", "") + " " + dmi.get("bios_vendor", "") + " " + dmi.get("dmesg", "")
        detail = ("generation 2 (UEFI)" if "Hyper-V UEFI" in bios else
                  "generation 1 (BIOS)" if "American Megatrends" in bios or "090008" in bios else None)
        clues.append(Clue("vm", 1, "Microsoft Hyper-V", Phrase(N_("{dmi} (a Hyper-V VM)"), dmi=label)))
        return clues, provider if provider != "Microsoft" else None, detail
    for fragment, hv, maker in DMI_PRODUCTS:
        if fragment.lower() in text.lower():
            clues.append(Clue("vm", 1, hv, Phrase(N_("{dmi} (a {product} VM)"), dmi=label, product=maker or hv)))
            return clues, maker or (provider if provider != "Microsoft" else None), None
    if provider == "Amazon EC2" and dmi.get("product_name"):
        clues.append(Clue("vm", 1, "KVM", Phrase(N_("{dmi} (an EC2 instance type that is not *.metal: a Nitro VM)"),
                                                 dmi=label)))
        return clues, "Amazon EC2 (Nitro)", None
    clues.append(Clue(None, 0, None, Phrase(N_("{dmi} (names no hypervisor: not proof of bare metal)"), dmi=label)))
    return clues, provider if provider != "Microsoft" else None, None


def _xen_mode(dmesg: str, cmdline: str, cpu: CpuInfo) -> str | None:
    if "Xen HVM" in dmesg:
        return "Xen HVM guest"
    if re.search(r"Xen version: .*\(preserve-AD\)|xen: PV spinlocks|Hypervisor detected: Xen PV", dmesg) or (
            "Booting paravirtualized kernel on Xen" in dmesg and "console=hvc0" in cmdline + dmesg):
        return "Xen PV guest (paravirtualized: never gets VT-x/AMD-V)"
    return None


def _name(vm: list[Clue], clues: list[Clue]) -> str:
    """The hypervisor's name: a product's DMI name beats the CPUID signature it imitates."""
    named = [c for c in vm if c.hypervisor]
    if not named:
        return UNKNOWN_HYPERVISOR
    dmi = next((c for c in named if c.strength == 1 and c.hypervisor not in ("KVM/QEMU",)), None)
    strongest = named[0]
    if dmi and strongest.hypervisor != dmi.hypervisor and dmi.hypervisor in ("Parallels", "VirtualBox", "KVM"):
        return dmi.hypervisor  # these present another hypervisor's CPUID signature
    if strongest.hypervisor in ("KVM/QEMU",) and any(c.hypervisor == "KVM" for c in named):
        return "KVM"
    return strongest.hypervisor or UNKNOWN_HYPERVISOR
