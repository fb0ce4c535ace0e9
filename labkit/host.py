"""What is this machine?  Kernel, CPU, bare metal or VM, and can it run KVM.

Every answer carries its *evidence* (the file or instruction it came from), so
a notebook can show the learner where a fact lives instead of asserting it.

Inspection reads through a :class:`Source`: :class:`LiveSource` reads ``/proc``,
``/sys`` and ``/dev`` under a root directory (``/`` for this host);
:class:`RecordedSource` reads a recorded tree of another host (see
:func:`record`), which is how the tests check hosts we do not have.

Live-only views of resources the kernel manages (memory, processes, network
interfaces) come from psutil: :func:`memory`, :func:`processes`,
:func:`network_interfaces`.
"""

from __future__ import annotations

import ctypes
import fcntl
import grp
import json
import mmap
import os
import pwd
import re
import shutil
import stat
import struct
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal, Protocol

import psutil

from labkit.kvm import abi

KVM_MODULES = ("kvm", "kvm_intel", "kvm_amd", "kvm_pvm")

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

#: DMI ``sys_vendor``/``product_name`` fragments that only virtual machines report.
DMI_HYPERVISORS = {
    "QEMU": "QEMU/KVM",
    "KVM": "KVM",
    "Amazon EC2": "Amazon EC2 (Nitro/KVM)",
    "Google Compute Engine": "Google Compute Engine (KVM)",
    "VMware": "VMware",
    "VirtualBox": "VirtualBox",
    "innotek GmbH": "VirtualBox",
    "Virtual Machine": "Microsoft Hyper-V",
    "Xen": "Xen",
    "Firecracker": "Firecracker (KVM)",
    "Parallels": "Parallels",
    "Bochs": "Bochs/QEMU",
}


# --------------------------------------------------------------------------- sources


@dataclass(frozen=True)
class DeviceNode:
    """``stat`` of a device file, with owner and group resolved to names."""

    mode: int
    uid: int
    gid: int
    owner: str
    group: str
    is_char_device: bool


@dataclass(frozen=True)
class KvmProbe:
    """What opening ``/dev/kvm`` and asking it answered (or why it could not be asked)."""

    api_version: int | None = None
    capabilities: dict[str, int] = field(default_factory=dict)
    error: str | None = None


class Source(Protocol):
    """Where host facts are read from."""

    def read(self, rel: str) -> str | None:
        """Text of ``root/rel`` or None when it does not exist or cannot be read."""

    def exists(self, rel: str) -> bool:
        """Whether ``root/rel`` exists."""

    def device(self, name: str) -> DeviceNode | None:
        """Stat of ``/dev/<name>``, None when absent."""

    def probe_kvm(self) -> KvmProbe:
        """Open ``/dev/kvm`` and ask its API version and capabilities."""

    def cpuid(self, leaf: int) -> tuple[int, int, int, int] | None:
        """EAX, EBX, ECX, EDX of a CPUID leaf, None when it cannot be read."""


class _TreeSource:
    """Files under a root directory (shared by live and recorded sources)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def read(self, rel: str) -> str | None:
        try:
            return (self.root / rel).read_text(errors="replace")
        except OSError:
            return None

    def exists(self, rel: str) -> bool:
        return (self.root / rel).exists()


class LiveSource(_TreeSource):
    """This host (``root='/'``) or a live-like tree under another root."""

    def __init__(self, root: Path | str = "/") -> None:
        super().__init__(Path(root))

    def device(self, name: str) -> DeviceNode | None:
        try:
            st = os.stat(self.root / "dev" / name)
        except FileNotFoundError:
            return None
        return DeviceNode(
            mode=stat.S_IMODE(st.st_mode),
            uid=st.st_uid,
            gid=st.st_gid,
            owner=_user_name(st.st_uid),
            group=_group_name(st.st_gid),
            is_char_device=stat.S_ISCHR(st.st_mode),
        )

    def probe_kvm(self) -> KvmProbe:
        try:
            fd = os.open(self.root / "dev" / "kvm", os.O_RDWR | os.O_CLOEXEC)
        except OSError as exc:
            return KvmProbe(error=f"open /dev/kvm: {exc.strerror}")
        try:
            version = fcntl.ioctl(fd, abi.KVM_GET_API_VERSION)
            caps = {name: fcntl.ioctl(fd, abi.KVM_CHECK_EXTENSION, getattr(abi, name))
                    for name in abi.PROBED_CAPABILITIES}
            return KvmProbe(api_version=version, capabilities=caps)
        except OSError as exc:
            return KvmProbe(error=f"ioctl on /dev/kvm: {exc.strerror}")
        finally:
            os.close(fd)

    def cpuid(self, leaf: int) -> tuple[int, int, int, int] | None:
        if self.root != Path("/"):
            return None
        try:  # the cpuid driver: file offset = leaf (root only on most hosts)
            with open("/dev/cpu/0/cpuid", "rb") as dev:
                dev.seek(leaf)
                return struct.unpack("<4I", dev.read(16))
        except OSError:
            return _cpuid_instruction(leaf)


class RecordedSource(_TreeSource):
    """A recorded host: a ``proc``/``sys`` tree plus ``host.json`` for what files cannot hold.

    ``host.json`` holds device nodes (git keeps no device files or modes),
    the recorded ``/dev/kvm`` probe, and CPUID leaves.
    """

    def __init__(self, root: Path | str) -> None:
        super().__init__(Path(root))
        self.meta = json.loads((self.root / "host.json").read_text())

    def device(self, name: str) -> DeviceNode | None:
        node = self.meta.get("devices", {}).get(name)
        if node is None:
            return None
        return DeviceNode(mode=int(node["mode"], 8), uid=node["uid"], gid=node["gid"],
                          owner=node["owner"], group=node["group"], is_char_device=True)

    def probe_kvm(self) -> KvmProbe:
        return KvmProbe(**self.meta.get("kvm_probe", {"error": "no /dev/kvm"}))

    def cpuid(self, leaf: int) -> tuple[int, int, int, int] | None:
        regs = self.meta.get("cpuid", {}).get(f"{leaf:#x}")
        return tuple(regs) if regs else None


def source_for(root: Path | str = "/") -> Source:
    """The right source for ``root``: recorded if it holds ``host.json``, else live."""
    root = Path(root)
    return RecordedSource(root) if (root / "host.json").exists() else LiveSource(root)


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


# The cpuid instruction is unprivileged: user space may execute it directly.
# This stub is `cpuid(leaf, out)` for the SysV x86-64 calling convention:
#   push rbx; mov eax, edi; xor ecx, ecx; cpuid;
#   mov [rsi], eax; mov [rsi+4], ebx; mov [rsi+8], ecx; mov [rsi+12], edx;
#   pop rbx; ret
_CPUID_STUB = bytes.fromhex("53 89f8 31c9 0fa2 8906 895e04 894e08 89560c 5b c3")


def _cpuid_instruction(leaf: int) -> tuple[int, int, int, int] | None:
    """Execute CPUID in this process (x86-64 only) when ``/dev/cpu`` is not readable."""
    if os.uname().machine != "x86_64":
        return None
    try:
        code = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    except OSError:  # W^X policy forbids it
        return None
    try:
        code.write(_CPUID_STUB)
        address = ctypes.addressof(ctypes.c_char.from_buffer(code))
        func = ctypes.CFUNCTYPE(None, ctypes.c_uint32, ctypes.POINTER(ctypes.c_uint32))(address)
        out = (ctypes.c_uint32 * 4)()
        func(leaf, out)
        del func, address
        return tuple(out)
    finally:
        code.close()


def cpuid(leaf: int) -> tuple[int, int, int, int] | None:
    """Ask this machine's CPU directly: EAX, EBX, ECX, EDX of CPUID ``leaf`` (None if unreadable)."""
    return LiveSource().cpuid(leaf)


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class User:
    """Whose access we judge: a uid and its groups."""

    uid: int
    gids: frozenset[int]

    @classmethod
    def current(cls) -> User:
        return cls(os.getuid(), frozenset(os.getgroups()) | {os.getgid()})


@dataclass(frozen=True)
class KvmModule:
    """One of the KVM modules and how the kernel has it."""

    name: str
    state: Literal["loaded module", "built in", "absent"]
    nested: str | None  # the module's ``nested`` parameter, if it has one


@dataclass(frozen=True)
class KernelInfo:
    release: str
    version: str
    cmdline: str
    loadable_modules: bool
    loaded_modules: tuple[str, ...]
    kvm_modules: tuple[KvmModule, ...]
    design: str
    evidence: tuple[str, ...]


@dataclass(frozen=True)
class CpuInfo:
    vendor: str
    model_name: str
    logical_cpus: int
    physical_cores: int
    flags: frozenset[str]

    @property
    def vmx(self) -> bool:
        return "vmx" in self.flags

    @property
    def svm(self) -> bool:
        return "svm" in self.flags

    @property
    def hypervisor_flag(self) -> bool:
        return "hypervisor" in self.flags

    @property
    def hardware_virtualization(self) -> str | None:
        """``"Intel VT-x"``, ``"AMD-V"`` or None: what the CPU tells us it offers."""
        return "Intel VT-x" if self.vmx else "AMD-V" if self.svm else None


@dataclass(frozen=True)
class Platform:
    """Bare metal or a virtual machine, and which hypervisor."""

    virtual: bool
    hypervisor: str | None
    evidence: tuple[str, ...]

    @property
    def summary(self) -> str:
        if not self.virtual:
            return "bare metal: this kernel runs directly on the hardware"
        return f"virtual machine (hypervisor: {self.hypervisor or 'unknown'})"


@dataclass(frozen=True)
class KvmDevice:
    """``/dev/kvm`` as this user finds it."""

    present: bool
    mode: str | None
    owner: str | None
    group: str | None
    accessible: bool
    api_version: int | None
    capabilities: dict[str, int]
    error: str | None


KvmKind = Literal["hardware", "nested", "none"]

VERDICT_LABELS: dict[str, str] = {
    "hardware": "hardware KVM",
    "nested": "KVM without hardware virtualization (nested/paravirtual, slow)",
    "none": "no KVM",
}


@dataclass(frozen=True)
class KvmVerdict:
    """Can this host run KVM guests, how well, and what to do if not."""

    kind: KvmKind
    label: str
    usable: bool  # this user can open /dev/kvm now
    boots_linux: bool  # a stock Linux guest boots under KVM (needs hardware virtualization)
    reasons: tuple[str, ...]
    fix: str | None


@dataclass(frozen=True)
class HostReport:
    kernel: KernelInfo
    cpu: CpuInfo
    platform: Platform
    kvm: KvmDevice
    verdict: KvmVerdict

    @property
    def nested(self) -> bool:
        """We are inside a VM and still have KVM: any guest we start is nested."""
        return self.platform.virtual and self.kvm.present

    def to_dict(self) -> dict:
        data = asdict(self)
        data["cpu"]["flags"] = sorted(self.cpu.flags)
        data["cpu"]["hardware_virtualization"] = self.cpu.hardware_virtualization
        data["nested"] = self.nested
        return data


# --------------------------------------------------------------------------- inspection


def kernel_info(src: Source) -> KernelInfo:
    """Release, version, command line and how the KVM modules are present."""
    modules_text = src.read("proc/modules")
    loaded = tuple(line.split()[0] for line in (modules_text or "").splitlines() if line.strip())
    kvm = []
    for name in KVM_MODULES:
        if name in loaded:
            state = "loaded module"
        elif src.exists(f"sys/module/{name}") and not src.exists(f"sys/module/{name}/initstate"):
            state = "built in"  # built-in modules have a /sys/module dir but no initstate
        else:
            state = "absent"
        nested = src.read(f"sys/module/{name}/parameters/nested")
        kvm.append(KvmModule(name, state, nested.strip() if nested else None))
    loadable = modules_text is not None
    cmdline = (src.read("proc/cmdline") or "").strip()
    if loadable:
        design = ("monolithic kernel with loadable modules: drivers such as kvm run in the "
                  "kernel's own address space, but can be added and removed at run time")
    else:
        design = ("monolithic kernel without loadable modules: everything, kvm included, was "
                  "built into one kernel image" + (" (module loading is off: 'nomodule' on "
                                                   "the command line)" if "nomodule" in cmdline.split() else ""))
    return KernelInfo(
        release=(src.read("proc/sys/kernel/osrelease") or "unknown").strip(),
        version=(src.read("proc/version") or "unknown").strip(),
        cmdline=cmdline,
        loadable_modules=loadable,
        loaded_modules=loaded,
        kvm_modules=tuple(kvm),
        design=design,
        evidence=("/proc/sys/kernel/osrelease", "/proc/version", "/proc/cmdline",
                  "/proc/modules" if loadable else "/proc/modules is absent", "/sys/module/*"),
    )


def cpu_info(src: Source) -> CpuInfo:
    """Vendor, model, counts and flags from ``/proc/cpuinfo``."""
    blocks = [b for b in (src.read("proc/cpuinfo") or "").split("\n\n") if b.strip()]
    procs = [dict(_kv(line) for line in b.splitlines() if ":" in line) for b in blocks]
    first = procs[0] if procs else {}
    cores = {(p.get("physical id", "0"), p.get("core id", str(i))) for i, p in enumerate(procs)}
    return CpuInfo(
        vendor=first.get("vendor_id", "unknown"),
        model_name=first.get("model name", "unknown"),
        logical_cpus=len(procs),
        physical_cores=len(cores),
        flags=frozenset(first.get("flags", "").split()),
    )


def _kv(line: str) -> tuple[str, str]:
    key, _, value = line.partition(":")
    return key.strip(), value.strip()


def platform_info(src: Source, cpu: CpuInfo) -> Platform:
    """Bare metal or VM, from the hypervisor flag, CPUID leaf 0x40000000, DMI and /sys/hypervisor."""
    evidence: list[str] = []
    names: list[str] = []
    if cpu.hypervisor_flag:
        evidence.append("/proc/cpuinfo has the 'hypervisor' flag (CPUID.1:ECX bit 31)")
        regs = src.cpuid(0x40000000)
        if regs:
            sig = struct.pack("<3I", *regs[1:4]).rstrip(b"\0").decode("ascii", "replace")
            name = HYPERVISOR_SIGNATURES.get(sig)
            evidence.append(f"CPUID leaf 0x40000000 vendor signature {sig!r}")
            if name:
                names.append(name)
    else:
        evidence.append("/proc/cpuinfo has no 'hypervisor' flag")
    for rel in ("sys/class/dmi/id/sys_vendor", "sys/class/dmi/id/product_name"):
        value = (src.read(rel) or "").strip()
        if not value:
            continue
        match = next((hv for frag, hv in DMI_HYPERVISORS.items() if frag.lower() in value.lower()), None)
        evidence.append(f"/{rel} = {value!r}" + (f" (a {match} VM)" if match else ""))
        if match:
            names.append(match)
    hv_type = (src.read("sys/hypervisor/type") or "").strip()
    if hv_type:
        evidence.append(f"/sys/hypervisor/type = {hv_type!r}")
        names.append(hv_type.capitalize())
    virtual = cpu.hypervisor_flag or bool(names)
    return Platform(virtual=virtual, hypervisor=names[0] if names else None, evidence=tuple(evidence))


def kvm_device(src: Source, user: User) -> KvmDevice:
    """``/dev/kvm``: presence, permissions, access for ``user`` and what the API answers."""
    node = src.device("kvm")
    if node is None:
        return KvmDevice(False, None, None, None, False, None, {}, "/dev/kvm does not exist")
    accessible = _can_read_write(node, user)
    probe = src.probe_kvm() if accessible else KvmProbe(error="permission denied")
    return KvmDevice(
        present=True,
        mode=f"{node.mode:04o}",
        owner=node.owner,
        group=node.group,
        accessible=accessible and probe.error is None,
        api_version=probe.api_version,
        capabilities=dict(probe.capabilities),
        error=probe.error,
    )


def _can_read_write(node: DeviceNode, user: User) -> bool:
    if user.uid == 0:
        return True
    if user.uid == node.uid:
        bits = node.mode >> 6
    elif node.gid in user.gids:
        bits = node.mode >> 3
    else:
        bits = node.mode
    return bits & 0o6 == 0o6


def kvm_verdict(kernel: KernelInfo, cpu: CpuInfo, platform: Platform, dev: KvmDevice) -> KvmVerdict:
    """Hardware KVM, KVM without hardware virtualization, or no KVM — with reasons and the fix."""
    hw = cpu.hardware_virtualization
    modules = {m.name: m for m in kernel.kvm_modules}
    loaded = [m.name for m in kernel.kvm_modules if m.state != "absent"]
    reasons = [f"CPU advertises {hw}" if hw else "CPU advertises neither vmx (VT-x) nor svm (AMD-V)"]
    reasons.append(f"KVM modules present: {', '.join(loaded)}" if loaded else "no KVM module is loaded")
    if not dev.present:
        reasons.append("/dev/kvm does not exist")
        vendor_mod = "kvm_intel" if cpu.vmx else "kvm_amd"
        if hw:
            fix = f"load the module: sudo modprobe {vendor_mod}"
        elif platform.virtual:
            fix = ("this VM's hypervisor does not pass virtualization through: enable nested "
                   "virtualization for this VM (e.g. on a KVM host: kvm_intel nested=1 / kvm_amd "
                   "nested=1 and a CPU model with vmx/svm), or use QEMU's TCG emulator")
        else:
            fix = ("enable Intel VT-x / AMD-V (SVM) in the firmware (BIOS/UEFI) setup, reboot, "
                   "then: sudo modprobe kvm_intel (or kvm_amd)")
        return KvmVerdict("none", VERDICT_LABELS["none"], False, False, tuple(reasons), fix)

    reasons.append(f"/dev/kvm is present (mode {dev.mode}, {dev.owner}:{dev.group})")
    if dev.api_version is not None:
        reasons.append(f"KVM_GET_API_VERSION = {dev.api_version}")
    if hw:
        kind: KvmKind = "hardware"
    else:
        kind = "nested"
        if modules["kvm_pvm"].state != "absent":
            reasons.append("kvm_pvm is present: PVM, software-assisted (pagetable-based) nested KVM")
        if platform.virtual:
            reasons.append("this host is itself a virtual machine, so its guests are nested")
    fix = None
    if not dev.accessible:
        if dev.error and dev.error != "permission denied":
            fix = f"{dev.error}; check that the kvm module initialised (dmesg | grep -i kvm)"
        elif dev.group == "kvm":
            fix = "add yourself to the kvm group: sudo usermod -aG kvm $USER, then log in again"
        else:
            fix = (f"/dev/kvm is {dev.owner}:{dev.group} mode {dev.mode}: run the lab as root, or "
                   "sudo chgrp kvm /dev/kvm && sudo chmod 0660 /dev/kvm && sudo usermod -aG kvm $USER")
        reasons.append("you cannot open /dev/kvm")
    return KvmVerdict(kind, VERDICT_LABELS[kind], dev.accessible, kind == "hardware", tuple(reasons), fix)


def inspect(root: Path | str = "/", user: User | None = None) -> HostReport:
    """Everything :mod:`labkit.host` knows about the host at ``root``, for ``user``."""
    src = source_for(root)
    user = user or User.current()
    kernel = kernel_info(src)
    cpu = cpu_info(src)
    platform = platform_info(src, cpu)
    dev = kvm_device(src, user)
    return HostReport(kernel, cpu, platform, dev, kvm_verdict(kernel, cpu, platform, dev))


@dataclass(frozen=True)
class TscFrequency:
    """The host's TSC frequency and where it was read."""

    khz: int
    source: str


def tsc_frequency(root: Path | str = "/") -> TscFrequency | None:
    """The host's (invariant) TSC frequency and its evidence, or None when it cannot be known for sure.

    :mod:`labkit.qemu` uses it: under TCG the guest's TSC *is* the host's (QEMU reads the host counter),
    but the guest kernel calibrates it against an emulated timer, which is
    slow and can fail ("Unable to calibrate against PIT") on a busy host.
    Passing the known frequency as ``tsc_early_khz`` skips that.
    """
    src = source_for(root)
    cpu = cpu_info(src)
    if "constant_tsc" not in cpu.flags:
        return None
    sysfs = src.read("sys/devices/system/cpu/cpu0/tsc_freq_khz")
    if sysfs and sysfs.strip().isdigit():
        return TscFrequency(int(sysfs), "/sys/devices/system/cpu/cpu0/tsc_freq_khz")
    leaf0 = src.cpuid(0)
    if leaf0 and leaf0[0] >= 0x15:
        denominator, numerator, crystal_hz, _ = src.cpuid(0x15) or (0, 0, 0, 0)
        if denominator and numerator and crystal_hz:
            return TscFrequency(crystal_hz * numerator // denominator // 1000,
                                "CPUID leaf 0x15 (crystal clock × TSC ratio)")
    hv = src.cpuid(0x40000000) if cpu.hypervisor_flag else None
    if hv and hv[0] >= 0x40000010:
        khz = (src.cpuid(0x40000010) or (0,))[0]
        if khz:
            return TscFrequency(khz, "CPUID leaf 0x40000010 (the hypervisor's timing leaf)")
    if not src.exists("sys/devices/system/cpu/cpu0/cpufreq"):
        match = re.search(r"^cpu MHz\s*:\s*([\d.]+)", src.read("proc/cpuinfo") or "", re.MULTILINE)
        if match:  # no frequency scaling: the kernel's figure is its TSC calibration
            return TscFrequency(round(float(match.group(1)) * 1000),
                                "/proc/cpuinfo 'cpu MHz' (constant TSC, no frequency scaling)")
    return None


# --------------------------------------------------------------------------- recording

_RECORDED_FILES = ("proc/cpuinfo", "proc/version", "proc/cmdline", "proc/modules",
                   "proc/sys/kernel/osrelease", "sys/class/dmi/id/sys_vendor",
                   "sys/class/dmi/id/product_name", "sys/hypervisor/type")


def record(dest: Path | str, root: Path | str = "/") -> Path:
    """Record the host at ``root`` into ``dest`` so it can be inspected elsewhere.

    Instructors can collect these from lab machines; the test fixtures of
    other hosts have this layout.
    """
    src = LiveSource(root)
    dest = Path(dest)
    for rel in _RECORDED_FILES:
        text = src.read(rel)
        if text is not None:
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            (dest / rel).write_text(text)
    for name in KVM_MODULES:
        mod = Path(root) / "sys/module" / name
        for rel in ("initstate", "parameters/nested"):
            if (mod / rel).exists():
                target = dest / "sys/module" / name / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(mod / rel, target)
        if mod.exists() and not (dest / "sys/module" / name).exists():
            (dest / "sys/module" / name).mkdir(parents=True)
            (dest / "sys/module" / name / "uevent").write_text("")  # git keeps no empty dirs
    meta: dict = {"devices": {}, "cpuid": {}}
    node = src.device("kvm")
    if node:
        meta["devices"]["kvm"] = {"mode": f"{node.mode:04o}", "uid": node.uid, "gid": node.gid,
                                  "owner": node.owner, "group": node.group}
        probe = src.probe_kvm()
        meta["kvm_probe"] = {k: v for k, v in asdict(probe).items() if v not in (None, {})}
    regs = src.cpuid(0x40000000)
    if regs:
        meta["cpuid"]["0x40000000"] = list(regs)
    (dest / "host.json").write_text(json.dumps(meta, indent=2) + "\n")
    return dest


# --------------------------------------------------------------------------- live resources


@dataclass(frozen=True)
class Memory:
    total: int
    available: int
    used: int
    percent: float
    swap_total: int


@dataclass(frozen=True)
class ProcessSummary:
    count: int
    threads: int
    by_state: dict[str, int]


@dataclass(frozen=True)
class NetInterface:
    name: str
    is_up: bool
    mtu: int
    addresses: tuple[str, ...]


def memory() -> Memory:
    """Physical memory the kernel manages, from ``/proc/meminfo`` via psutil."""
    vm = psutil.virtual_memory()
    return Memory(vm.total, vm.available, vm.used, vm.percent, psutil.swap_memory().total)


def processes() -> ProcessSummary:
    """How many processes and threads the kernel schedules right now, by state."""
    states: dict[str, int] = {}
    threads = 0
    count = 0
    for proc in psutil.process_iter(["status", "num_threads"]):
        count += 1
        threads += proc.info["num_threads"] or 0
        states[proc.info["status"]] = states.get(proc.info["status"], 0) + 1
    return ProcessSummary(count, threads, dict(sorted(states.items())))


def network_interfaces() -> tuple[NetInterface, ...]:
    """The network interfaces the kernel manages, with their addresses."""
    stats = psutil.net_if_stats()
    addrs = psutil.net_if_addrs()
    return tuple(
        NetInterface(name, st.isup, st.mtu,
                     tuple(a.address for a in addrs.get(name, ()) if a.family.name in ("AF_INET", "AF_INET6")))
        for name, st in sorted(stats.items())
    )
