"""Can this host run KVM guests, how well, for whom, and what to do if not.

The verdict is ``hardware`` (VT-x/AMD-V or Arm's EL2 back KVM), ``nested``
(KVM without hardware virtualization: PVM-style, inside a VM), ``none``, or
``unknown`` (the recording does not say).  Every fix printed here is checked
against the evidence printed with it: no ``modprobe`` for a module that is
loaded, no ``usermod -aG kvm`` where no kvm group exists, no firmware advice
for a CPU that never had VT-x or for a VM, nothing x86 on an Arm host.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Literal

from labkit.host.cpu import CpuInfo
from labkit.host.evidence import Platform
from labkit.host.running_kernel import KernelInfo
from labkit.host.sources import DeviceNode, KvmProbe, Source
from labkit.i18n import _
from labkit.i18n import noop as N_


@dataclass(frozen=True)
class User:
    """Whose access we judge: a uid and its groups."""

    uid: int
    gids: frozenset[int]

    @classmethod
    def current(cls) -> User:
        return cls(os.getuid(), frozenset(os.getgroups()) | {os.getgid()})


@dataclass(frozen=True)
class KvmDevice:
    """``/dev/kvm`` as this user finds it (None: not recorded)."""

    present: bool | None  # there is a KVM device (a character device 10:232)
    mode: str | None
    owner: str | None
    group: str | None
    accessible: bool | None
    api_version: int | None
    capabilities: dict[str, int]
    error: str | None
    node: str = ""  # what /dev/kvm is: "a character device 10:232", "a regular file", ...
    kvm_group_exists: bool | None = None


def kvm_device(src: Source, user: User) -> KvmDevice:
    """``/dev/kvm``: is it KVM's device, its permissions, access for ``user``, what the API answers."""
    state = src.state("dev/kvm")
    group = src.group_exists("kvm")
    node = src.device("kvm")
    if node is None:
        if state == "present":  # recorded as existing, nothing more
            return KvmDevice(True, None, None, None, None, None, {}, None, "recorded as present", group)
        what = "/dev/kvm does not exist" if state == "absent" else "/dev/kvm was not recorded"
        return KvmDevice(False if state == "absent" else None, None, None, None, False if state == "absent"
                         else None, None, {}, what, "", group)
    if not src.live and "kvm" not in getattr(src, "meta", {}).get("devices", {}):
        return KvmDevice(None, None, None, None, None, None, {},
                         f"dev/kvm in this recording is {node.describe()}: a recording keeps /dev/kvm in host.json "
                         "(git cannot hold device files), so the host's /dev/kvm is unknown", node.describe(), group)
    if node.is_kvm is False:
        return KvmDevice(False, _mode(node), node.owner, node.group, False, None, {},
                         f"/dev/kvm is {node.describe()}, not KVM's character device 10:232", node.describe(), group)
    allowed = _can_read_write(node, user)
    probe = src.probe_kvm() if allowed else KvmProbe(error="permission denied")
    if not src.live and allowed and "kvm_probe" not in getattr(src, "meta", {}):
        probe = KvmProbe()  # a recording without a probe: nothing known against it
    accessible = (allowed and probe.error is None) if allowed is not None else None
    return KvmDevice(True, _mode(node), node.owner, node.group, accessible, probe.api_version,
                     dict(probe.capabilities), probe.error, node.describe(), group)


def _mode(node: DeviceNode) -> str | None:
    return None if node.mode is None else f"{node.mode:04o}"


def _can_read_write(node: DeviceNode, user: User) -> bool | None:
    if user.uid == 0:
        return True
    if node.mode is None or node.uid is None:
        return None
    if user.uid == node.uid:
        bits = node.mode >> 6
    elif node.gid in user.gids:
        bits = node.mode >> 3
    else:
        bits = node.mode
    return bits & 0o6 == 0o6


VtState = Literal["offered", "disabled by firmware", "not in this CPU", "not exposed by the hypervisor",
                  "not offered", "unknown", "not applicable"]
#: The states as text for the learner (marked for translation; the code compares the English ones).
VT_STATE_TEXT = (N_("offered"), N_("disabled by firmware"), N_("not in this CPU"), N_("not exposed by the hypervisor"),
                 N_("not offered"), N_("unknown"), N_("not applicable"))

HOW_TO_TELL = N_(
    "to tell a CPU without VT-x/AMD-V from one whose firmware switched it off: look the model up "
    "(Intel ARK 'Intel Virtualization Technology (VT-x)', AMD's spec page 'AMD-V'); a kernel ≥ 5.8 prints a "
    "'vmx flags' line in /proc/cpuinfo only while VMX is usable; `sudo dmesg | grep -i 'disabled by bios'`; "
    "as root `sudo modprobe msr && sudo rdmsr 0x3a` (IA32_FEATURE_CONTROL: bit 0 lock, bit 2 VMX outside "
    "SMX; locked with bit 2 clear = off in firmware; AMD: `sudo rdmsr 0xc0010114`, bit 4 SVMDIS)")


@dataclass(frozen=True)
class VtSupport:
    """What the CPU offers for virtualization here, and the evidence for it."""

    extension: str | None  # Intel VT-x, AMD-V, Arm virtualization extensions (EL2)
    state: VtState
    evidence: tuple[str, ...]


def vt_support(src: Source, cpu: CpuInfo, platform: Platform, kernel: KernelInfo) -> VtSupport:
    """Offered, off in firmware, never in this CPU, hidden by a hypervisor, or unknown — and why."""
    dmesg = kernel.dmesg
    if cpu.is_arm:
        if re.search(r"started at EL2|Hyp mode initialized successfully|VHE mode initialized", dmesg):
            return VtSupport("Arm EL2", "offered", (_("dmesg: the CPUs started at EL2 (hypervisor mode)"),))
        if re.search(r"started at EL1|HYP mode not available", dmesg):
            return VtSupport("Arm EL2", "not offered", (_("dmesg: the kernel started at EL1: no hypervisor mode"),))
        return VtSupport("Arm EL2", "unknown", (_("whether the kernel booted at EL2 was not recorded"),))
    if not cpu.is_x86 and cpu.arch != "unknown":
        return VtSupport(None, "not applicable", (_("a {arch} host").format(arch=cpu.arch),))
    ext = "Intel VT-x" if cpu.vendor == "GenuineIntel" or cpu.vmx else "AMD-V" if cpu.vendor in (
        "AuthenticAMD", "HygonGenuine") or cpu.svm else None
    firmware = re.search(r"(kvm: disabled by bios|VMX \(outside TXT\) disabled by BIOS|SVM disabled \(by BIOS\)"
                         r"[^\n]*)", dmesg, re.IGNORECASE)
    if firmware:
        ext = ext or ("AMD-V" if "SVM" in firmware.group(1) else "Intel VT-x" if "VMX" in firmware.group(1) else
                      "VT-x/AMD-V")
        return VtSupport(ext, "disabled by firmware", (f"dmesg: {firmware.group(1)!r}",))
    if cpu.vmx or cpu.svm:
        what = _("/proc/cpuinfo has the {flag} flag").format(flag="vmx" if cpu.vmx else "svm")
        return VtSupport(cpu.hardware_virtualization, "offered", (what,) + (
            (_("a 'vmx flags' line: VMX is usable"),) if cpu.vmx_flags else ()))
    vendor_module = next((m for m in ("kvm_intel", "kvm_amd") if kernel.module(m).state == "loaded module"), None)
    if vendor_module:  # it refuses to load where VT-x/AMD-V is missing or off
        return VtSupport("Intel VT-x" if vendor_module == "kvm_intel" else "AMD-V", "offered",
                         (_("{module} is loaded (it loads only where the extension works)").format(
                             module=vendor_module),))
    in_use = re.search(r"KVM: vmx: [^\n]*|kvm_intel: [^\n]*|kvm_amd: Nested[^\n]*|SVM: kvm: Nested Paging[^\n]*",
                       dmesg)
    if in_use:
        return VtSupport(ext or ("Intel VT-x" if "vmx" in in_use.group(0).lower() else "AMD-V"), "offered",
                         (_("dmesg: {line!r} (the vendor module runs)").format(line=in_use.group(0).strip()),))
    evidence: list[str] = ["dmesg: 'kvm: no hardware support'"] if "no hardware support" in dmesg else []
    if platform.virtual and (cpu.flags_known or evidence):  # a VM's firmware is not the reason
        return VtSupport(ext, "not exposed by the hypervisor", tuple(evidence) + (
            _("this VM's CPU shows no vmx/svm: the hypervisor does not pass them through") if cpu.flags_known else
            _("inside a VM the kernel found no VT-x/AMD-V: the hypervisor does not pass it through"),))
    leaf1 = src.cpuid(1)
    if cpu.flags_known and leaf1 and leaf1[2] & (1 << 5) and ext == "Intel VT-x":
        return VtSupport(ext, "disabled by firmware", (_("CPUID.1:ECX bit 5 (VMX) is set but the kernel removed "
                                                         "the vmx flag: the firmware locked VMX off"),))
    feature_control = src.msr(0x3A)
    if feature_control is not None and ext == "Intel VT-x":
        if feature_control & 1 and not feature_control & 4:
            return VtSupport(ext, "disabled by firmware",
                             (_("MSR 0x3a = {value:#x}: locked with VMX-outside-SMX clear").format(
                                 value=feature_control),))
        evidence.append(f"MSR 0x3a = {feature_control:#x}")
    model = cpu.no_vt_model()
    if model:
        return VtSupport(ext, "not in this CPU", (
            (_("{cpu} is an {model}: sold without VT-x/AMD-V, and 32-bit only") if model.only_32_bit else
             _("{cpu} is an {model}: sold without VT-x/AMD-V")).format(cpu=cpu.model_name, model=model.name),))
    if cpu.flags_known:
        return VtSupport(ext, "unknown", tuple(evidence) + (
            _("/proc/cpuinfo shows neither vmx nor svm: this CPU never had VT-x/AMD-V, or the firmware "
              "switched it off (then the kernel hides the flag)"),))
    return VtSupport(ext, "unknown", tuple(evidence) + (_("the CPU flags were not recorded"),))


KvmKind = Literal["hardware", "nested", "none", "unknown"]

#: The verdicts' labels in English (marked for translation: a verdict carries its label in the current language).
VERDICT_LABELS: dict[str, str] = {
    "hardware": N_("hardware KVM"),
    "nested": N_("KVM without hardware virtualization (nested/paravirtual, slow)"),
    "none": N_("no KVM"),
    "unknown": N_("KVM unknown (not recorded)"),
}


@dataclass(frozen=True)
class KvmVerdict:
    """Can this host run KVM guests, how well, and what to do if not."""

    kind: KvmKind
    label: str
    usable: bool  # this user can open /dev/kvm now
    boots_linux: bool  # the lab's x86-64 Linux guest boots under KVM here (needs VT-x/AMD-V on x86-64)
    reasons: tuple[str, ...]
    fix: str | None
    virtualization: VtSupport = field(default_factory=lambda: VtSupport(None, "unknown", ()))


def kvm_verdict(kernel: KernelInfo, cpu: CpuInfo, platform: Platform, dev: KvmDevice,
                vt: VtSupport) -> KvmVerdict:
    """Hardware KVM, nested, none or unknown — with the reasons and a fix that fits them."""
    reasons = [_cpu_reason(cpu, vt)]
    reasons.append(_module_reason(kernel))
    if dev.present:
        reasons.append(_("/dev/kvm is present ({node}, mode {mode}, {owner}:{group})").format(
            node=dev.node, mode=dev.mode, owner=dev.owner, group=dev.group) if dev.mode else
            _("/dev/kvm is present ({node})").format(node=dev.node))
        if dev.api_version is not None:
            reasons.append(f"KVM_GET_API_VERSION = {dev.api_version}")
        kind = _present_kind(kernel, cpu, platform, vt, reasons)
        fix = None
        if dev.accessible is False:
            reasons.append(_("you cannot open /dev/kvm"))
            fix = (_("{error}; check that the kvm module initialised (dmesg | grep -i kvm)").format(error=dev.error)
                   if dev.error and dev.error != "permission denied" else access_fix(dev))
        usable = dev.accessible is True
        return KvmVerdict(kind, _(VERDICT_LABELS[kind]), usable, usable and kind == "hardware" and cpu.arch in (
            "x86_64", "x86"), tuple(reasons), fix, vt)
    if dev.present is False:
        reasons.append(dev.error or _("/dev/kvm does not exist"))
        return KvmVerdict("none", _(VERDICT_LABELS["none"]), False, False, tuple(reasons),
                          _absent_fix(kernel, cpu, platform, vt), vt)
    # /dev/kvm unknown: say "none" only where the evidence rules KVM out, "hardware" where a vendor module runs
    reasons.append(dev.error or _("/dev/kvm was not recorded"))
    if any(kernel.module(m).present for m in ("kvm_intel", "kvm_amd")):
        reasons.append(_("a loaded kvm_intel/kvm_amd creates /dev/kvm; who may open it was not recorded"))
        return KvmVerdict("hardware", _(VERDICT_LABELS["hardware"]), False, False, tuple(reasons),
                          _("check who may open it: ls -l /dev/kvm"), vt)
    ruled_out = (vt.state in ("disabled by firmware", "not in this CPU")
                 or (platform.detail or "").startswith("Xen PV") or cpu.arch == "arm" or "no hardware support" in
                 kernel.dmesg)
    if ruled_out:
        return KvmVerdict("none", _(VERDICT_LABELS["none"]), False, False, tuple(reasons),
                          _absent_fix(kernel, cpu, platform, vt), vt)
    known = vt.state != "unknown" or platform.virtual is not None or cpu.is_arm
    fix = (_("if /dev/kvm is missing there: {fix}").format(fix=_absent_fix(kernel, cpu, platform, vt)) if known else
           _("record the whole host (`labkit host --record DIR` there), or check: ls -l /dev/kvm; lsmod | grep kvm"))
    return KvmVerdict("unknown", _(VERDICT_LABELS["unknown"]), False, False, tuple(reasons), fix, vt)


def _cpu_reason(cpu: CpuInfo, vt: VtSupport) -> str:
    if cpu.is_arm:
        return _("Arm CPU ({model}): KVM needs the kernel to boot at EL2; {evidence}").format(
            model=cpu.model_name, evidence=vt.evidence[0])
    if vt.state == "offered":
        return _("CPU advertises {extension} ({evidence})").format(extension=vt.extension,
                                                                  evidence="; ".join(vt.evidence))
    if vt.state == "not applicable":
        return _("{arch} CPU: no x86 virtualization extensions").format(arch=cpu.arch)
    if not cpu.flags_known and vt.state == "unknown":
        return _("the CPU flags were not recorded: VT-x/AMD-V unknown")
    return _("CPU: {extension} {state} ({evidence})").format(
        extension=vt.extension or "VT-x/AMD-V", state=_(vt.state), evidence="; ".join(vt.evidence))


def _module_reason(kernel: KernelInfo) -> str:
    present = [m.name for m in kernel.kvm_modules if m.present]
    if present:
        return _("KVM modules present: {modules}").format(modules=", ".join(present))
    unknown = [m.name for m in kernel.kvm_modules if m.present is None]
    if len(unknown) == len(kernel.kvm_modules):
        return _("which KVM modules the kernel has was not recorded")
    known_absent = [m.name for m in kernel.kvm_modules if m.present is False or m.state == "not loaded"]
    return (_("no KVM module is loaded") if not unknown else
            _("not loaded: {absent}; not recorded: {unknown}").format(absent=", ".join(known_absent),
                                                                      unknown=", ".join(unknown)))


def _present_kind(kernel: KernelInfo, cpu: CpuInfo, platform: Platform, vt: VtSupport,
                  reasons: list[str]) -> KvmKind:
    if vt.state == "offered" or any(kernel.module(m).present for m in ("kvm_intel", "kvm_amd")):
        return "hardware"
    pvm = kernel.module("kvm_pvm").present
    if pvm:
        reasons.append(_("kvm_pvm is present: PVM, software-assisted (pagetable-based) nested KVM"))
    if platform.virtual and (cpu.flags_known or pvm):
        reasons.append(_("this host is itself a virtual machine, so its guests are nested"))
        return "nested"
    if pvm:
        return "nested"
    reasons.append(_("what backs this /dev/kvm (VT-x/AMD-V or a paravirtual back end) was not recorded"))
    return "unknown"


def access_fix(dev: KvmDevice) -> str:
    """How a user gets /dev/kvm here: join the group it has, or give it one (creating the group if needed)."""
    if dev.group == "kvm" and dev.mode and int(dev.mode, 8) & 0o060 == 0o060:
        return _("add yourself to the kvm group: sudo usermod -aG kvm $USER, then log in again")
    return _("/dev/kvm is {owner}:{group} mode {mode}: run the lab as root, or give a group access: {commands} (log in "
             "again; a udev rule {rule} keeps it after a reboot)").format(
        owner=dev.owner, group=dev.group, mode=dev.mode, commands=group_access_commands(dev),
        rule='KERNEL=="kvm", GROUP="kvm", MODE="0660"')


def group_access_commands(dev: KvmDevice, who: str = "$USER") -> str:
    """The commands that let group kvm open /dev/kvm, creating the group only where it is missing."""
    make_group = {True: "", False: "sudo groupadd --system kvm && ",
                  None: "(if there is no kvm group: sudo groupadd --system kvm) "}[dev.kvm_group_exists]
    return f"{make_group}sudo chgrp kvm /dev/kvm && sudo chmod 0660 /dev/kvm && sudo usermod -aG kvm {who}"


def _absent_fix(kernel: KernelInfo, cpu: CpuInfo, platform: Platform, vt: VtSupport) -> str:
    if cpu.arch == "arm":
        return _("KVM for 32-bit Arm hosts was removed in Linux 5.7: install a 64-bit (arm64) kernel; "
                 "QEMU's TCG still runs the lab's x86 guests")
    if cpu.is_arm:
        where = (_("ask for a bare-metal instance (*.metal): cloud Arm VMs get no EL2") if platform.provider else
                 _("this Arm VM gets EL2 only if its hypervisor offers nested virtualization (Apple's "
                   "Virtualization framework: M3 or later with macOS 15)") if platform.virtual else
                 _("boot the kernel at EL2 (the firmware/boot loader decides) with CONFIG_KVM=y"))
        return _("{where}; QEMU's TCG still runs the lab's x86 guests").format(where=where)
    if (platform.detail or "").startswith("Xen PV"):
        return _("a Xen PV guest never gets VT-x/AMD-V: run the lab in an HVM/PVH guest with nested "
                 "virtualization, or on bare metal; QEMU's TCG works here")
    vendor = "kvm_intel" if vt.extension == "Intel VT-x" else "kvm_amd" if vt.extension == "AMD-V" else None
    if vt.state == "disabled by firmware":
        return _("enable {extension} in the firmware (BIOS/UEFI) setup, power the machine off and on, then: "
                 "{command}").format(extension=vt.extension or "VT-x/AMD-V",
                                     command=f"sudo modprobe {vendor or 'kvm_intel (or kvm_amd)'}")
    if vt.state == "offered":
        mod = kernel.module(vendor) if vendor else None
        if mod is not None and mod.present:
            return _("{module} is loaded but /dev/kvm is missing: look at `sudo dmesg | grep -i kvm`; without "
                     "udev, create it: sudo mknod /dev/kvm c 10 232").format(module=vendor)
        if mod is not None and mod.state in ("absent", "not loaded"):
            return _("load the module: {command}").format(command=f"sudo modprobe {vendor}")
        return _("check `lsmod | grep kvm`; if {module} is missing: {command}").format(
            module=vendor or "kvm_intel/kvm_amd", command=f"sudo modprobe {vendor or 'kvm_intel (or kvm_amd)'}")
    tcg = _("; meanwhile QEMU's TCG emulator runs every notebook except the raw-KVM one (03)")
    if vt.state == "not in this CPU":
        return _("this CPU has no VT-x/AMD-V, so KVM cannot run on it (no setting changes that)") + tcg
    if platform.virtual:
        return nested_fix(platform) + tcg
    if platform.virtual is False:
        return _("enable VT-x/AMD-V in the firmware (BIOS/UEFI) setup if the CPU has it, then sudo modprobe "
                 "kvm_intel (or kvm_amd) — {how_to_tell}").format(how_to_tell=_(HOW_TO_TELL)) + tcg
    return _("on bare metal, enable VT-x/AMD-V in the firmware if the CPU has it; in a VM, {nested} — "
             "{how_to_tell}").format(nested=nested_fix(platform), how_to_tell=_(HOW_TO_TELL)) + tcg


#: How to pass VT-x/AMD-V into a guest, per outer hypervisor (on the host that runs this VM).
NESTED_FIXES = {
    "KVM": N_("on the KVM host: nested=1 for kvm_intel/kvm_amd and a CPU model with vmx/svm (-cpu host)"),
    "Microsoft Hyper-V": N_("on the Hyper-V host: Set-VMProcessor -VMName NAME -ExposeVirtualizationExtensions "
                            "$true (WSL2: nestedVirtualization=true in .wslconfig)"),
    "VMware": N_("in VMware: enable 'Virtualize Intel VT-x/EPT or AMD-V/RVI' for this VM"),
    "VirtualBox": N_("in VirtualBox: VBoxManage modifyvm NAME --nested-hw-virt on"),
    "Parallels": N_("in Parallels: enable nested virtualization in the VM's CPU settings"),
    "Xen": N_("on the Xen host: nestedhvm=1 in the guest's config (HVM guests only)"),
}

#: Hypervisors that offer their guests no VT-x/AMD-V at all.
NO_NESTED = {"bhyve": N_("bhyve gives its guests no VT-x/AMD-V: run the lab on bare metal or under a hypervisor "
                         "with nested virtualization")}


def nested_fix(platform: Platform) -> str:
    hv = platform.hypervisor or ""
    if platform.provider and "Google" in platform.provider:
        return _("enable nested virtualization: create the VM with --enable-nested-virtualization (GCE)")
    if platform.provider and "Amazon" in platform.provider:
        return _("use a bare-metal instance (*.metal) or an instance type that offers nested virtualization")
    if hv in NO_NESTED:
        return _(NO_NESTED[hv])
    key = next((k for k in NESTED_FIXES if k in hv), None)
    return (_("enable nested virtualization: {how}").format(how=_(NESTED_FIXES[key])) if key else
            _("enable nested virtualization in the outer hypervisor (this VM's hypervisor was not identified)"))
