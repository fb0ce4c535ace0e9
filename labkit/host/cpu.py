"""The CPU and the kernel's architecture, from ``/proc/cpuinfo`` (x86 and Arm).

x86 cpuinfo names the CPU (``model name``) and lists ``flags``; Arm's names
nothing: it gives the MIDR fields ``CPU implementer`` and ``CPU part``,
which :data:`ARM_PARTS` turns into a name (the table ``lscpu`` keeps too).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from labkit.host.sources import Source

#: Arm MIDR implementer codes.
ARM_IMPLEMENTERS = {0x41: "Arm", 0x42: "Broadcom", 0x43: "Cavium", 0x46: "Fujitsu", 0x48: "HiSilicon",
                    0x4E: "NVIDIA", 0x51: "Qualcomm", 0x61: "Apple", 0xC0: "Ampere"}

#: (implementer, part) → core name, for the cores a learner is likely to meet.
ARM_PARTS = {
    (0x41, 0xD03): "Cortex-A53", (0x41, 0xD04): "Cortex-A35", (0x41, 0xD05): "Cortex-A55",
    (0x41, 0xD07): "Cortex-A57", (0x41, 0xD08): "Cortex-A72", (0x41, 0xD09): "Cortex-A73",
    (0x41, 0xD0A): "Cortex-A75", (0x41, 0xD0B): "Cortex-A76", (0x41, 0xD0C): "Neoverse-N1",
    (0x41, 0xD0D): "Cortex-A77", (0x41, 0xD40): "Neoverse-V1", (0x41, 0xD41): "Cortex-A78",
    (0x41, 0xD44): "Cortex-X1", (0x41, 0xD46): "Cortex-A510", (0x41, 0xD47): "Cortex-A710",
    (0x41, 0xD48): "Cortex-X2", (0x41, 0xD49): "Neoverse-N2", (0x41, 0xD4F): "Neoverse-V2",
    (0x41, 0xD80): "Cortex-A520", (0x41, 0xD81): "Cortex-A720", (0x41, 0xD82): "Cortex-X4",
    (0x43, 0x0AF): "ThunderX2", (0x46, 0x001): "A64FX", (0x48, 0xD01): "Kunpeng-920",
    (0x4E, 0x004): "Carmel", (0x51, 0x001): "Oryon",
    (0x61, 0x022): "M1 Icestorm", (0x61, 0x023): "M1 Firestorm", (0x61, 0x032): "M2 Blizzard",
    (0x61, 0x033): "M2 Avalanche", (0xC0, 0xAC3): "Ampere-1", (0xC0, 0xAC4): "Ampere-1a",
}


@dataclass(frozen=True)
class NoVtModel:
    """A CPU family that was sold without VT-x/AMD-V (so firmware cannot be the reason)."""

    pattern: str
    name: str
    only_32_bit: bool


#: CPUs that never had VT-x/AMD-V (Intel ARK: "Intel Virtualization Technology (VT-x): No").
NO_VT_MODELS = (
    NoVtModel(r"\bN2[78]0\b", "Atom N270/N280", True),
    NoVtModel(r"Atom\(TM\) CPU\s+(Z5\d\d|N4\d\d|N5\d\d|D4\d\d|D5\d\d|2[23]0|330)\b",
              "Atom Z5xx/N4xx/N5xx/D4xx/D5xx/230/330", False),
    NoVtModel(r"Celeron\(R\) M\b|Pentium\(R\) M\b", "Pentium M / Celeron M", True),
    NoVtModel(r"Genuine Intel\(R\) CPU\s+T2\d{3}|Core\(TM\) (Duo|Solo) CPU", "Core Duo/Solo (Yonah)", True),
    NoVtModel(r"Pentium\(R\) Dual\s+CPU\s+(E2\d{3}|T2\d{3}|T3\d{3})", "Pentium Dual-Core E2xxx/T2xxx/T3xxx", False),
    NoVtModel(r"Celeron\(R\) CPU\s+(E1\d{3}|[234]\d{2})\b", "Celeron E1xxx / 2xx-4xx", False),
    NoVtModel(r"Core\(TM\)2 Duo CPU\s+(E4\d{3}|T5[2-5]\d{2})\b", "Core 2 Duo E4xxx / T5200-T5500", False),
)


@dataclass(frozen=True)
class CpuInfo:
    vendor: str
    model_name: str
    logical_cpus: int
    physical_cores: int
    flags: frozenset[str]
    #: ``/proc/cpuinfo`` had a flags (x86) or Features (Arm) line: absent flags really are absent
    flags_known: bool = True
    #: the ``vmx flags`` line (kernels ≥ 5.8 print it when VMX is usable)
    vmx_flags: frozenset[str] = frozenset()
    #: the kernel's architecture: x86_64, i686, x86 (bitness unknown), aarch64, arm, or unknown
    arch: str = "unknown"
    arm_implementer: int | None = None
    arm_part: int | None = None

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
        """``"Intel VT-x"``, ``"AMD-V"`` or None: what the CPU flags say it offers."""
        return "Intel VT-x" if self.vmx else "AMD-V" if self.svm else None

    @property
    def is_x86(self) -> bool:
        return self.arch in ("x86_64", "i686", "x86")

    @property
    def is_arm(self) -> bool:
        return self.arch in ("aarch64", "arm")

    def no_vt_model(self) -> NoVtModel | None:
        """The known family without VT-x/AMD-V this CPU belongs to, if any."""
        return next((m for m in NO_VT_MODELS if re.search(m.pattern, self.model_name)), None)


def cpu_info(src: Source) -> CpuInfo:
    """Vendor, model, counts, flags and architecture from ``/proc/cpuinfo`` (and ``uname -m``)."""
    text = src.read("proc/cpuinfo") or ""
    blocks = [b for b in text.split("\n\n") if b.strip()]
    procs = [dict(_kv(line) for line in b.splitlines() if ":" in line) for b in blocks]
    procs = [p for p in procs if "processor" in p] or procs[:1]
    first = next((p for p in procs if "flags" in p or "Features" in p), procs[0] if procs else {})
    cores = {(p.get("physical id", "0"), p.get("core id", str(i))) for i, p in enumerate(procs)}
    flag_line = first.get("flags", first.get("Features"))
    implementer = _hex(first.get("CPU implementer"))
    part = _hex(first.get("CPU part"))
    arch = _arch(src, text, first)
    return CpuInfo(
        vendor=first.get("vendor_id") or (ARM_IMPLEMENTERS.get(implementer, f"implementer {implementer:#x}")
                                          if implementer is not None else "unknown"),
        model_name=_arm_name(implementer, part) if implementer is not None else first.get("model name", "unknown"),
        logical_cpus=len(procs) if any("processor" in p for p in procs) else text.count("model name"),
        physical_cores=len(cores),
        flags=frozenset((flag_line or "").split()),
        flags_known=flag_line is not None,
        vmx_flags=frozenset(first.get("vmx flags", "").split()),
        arch=arch,
        arm_implementer=implementer,
        arm_part=part,
    )


def _kv(line: str) -> tuple[str, str]:
    key, _, value = line.partition(":")
    return key.strip(), value.strip()


def _hex(value: str | None) -> int | None:
    try:
        return int(value, 16) if value else None
    except ValueError:
        return None


def _arm_name(implementer: int, part: int | None) -> str:
    vendor = ARM_IMPLEMENTERS.get(implementer, f"implementer {implementer:#x}")
    if part is not None and (implementer, part) in ARM_PARTS:
        return f"{vendor} {ARM_PARTS[implementer, part]}"
    if part == 0:  # Apple's Virtualization framework (UTM, Parallels) zeroes the part number
        return f"{vendor} (part number hidden by the hypervisor)"
    return f"{vendor} part {part:#x}" if part is not None else vendor


_ARCH_PATTERNS = ((r"\b(x86_64|amd64)\b", "x86_64"), (r"\b(i[3-6]86|686(-pae)?)\b", "i686"),
                  (r"\b(aarch64|arm64)\b", "aarch64"), (r"\b(armv[5-7]\w*|v7l\+?)\b", "arm"))


def _arch(src: Source, cpuinfo: str, first: dict[str, str]) -> str:
    """The kernel's architecture: ``uname -m`` if known, else the kernel's name, else cpuinfo's shape."""
    machine = src.machine()
    if machine:
        return _normalise(machine)
    for rel in ("proc/sys/kernel/osrelease", "proc/version"):
        text = src.read(rel) or ""
        for pattern, arch in _ARCH_PATTERNS:
            if re.search(pattern, text):
                return arch
    if "CPU implementer" in cpuinfo:  # an arm64 kernel lists asimd; a 32-bit one lists neon/vfp
        return "aarch64" if "asimd" in first.get("Features", "").split() else "arm"
    return "x86" if "vendor_id" in cpuinfo or "fpu" in first.get("flags", "").split() else "unknown"


def _normalise(machine: str) -> str:
    return next((arch for pattern, arch in _ARCH_PATTERNS if re.search(pattern, machine)), machine)
