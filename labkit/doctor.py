"""Is this host ready for the lab?  One check per part, each with its fix.

A check is ``ok``, ``warn`` (works, but worse than it could: e.g. KVM without
hardware virtualization) or ``fail`` (a notebook of the sequence cannot run).
"""

from __future__ import annotations

import importlib.util
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Literal

from labkit import host

Status = Literal["ok", "warn", "fail"]


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str
    fix: str | None = None


def check_kernel(report: host.HostReport) -> Check:
    k = report.kernel
    kvm = ", ".join(f"{m.name} ({m.state})" for m in k.kvm_modules if m.state != "absent") or "none"
    return Check("kernel", "ok", f"Linux {k.release}; KVM modules: {kvm}")


def check_cpu(report: host.HostReport) -> Check:
    cpu = report.cpu
    hw = cpu.hardware_virtualization
    detail = f"{cpu.model_name} ({cpu.vendor}), {cpu.logical_cpus} logical CPUs; " + (
        f"{hw} available" if hw else "no vmx/svm flag: no hardware virtualization visible")
    fix = None if hw else ("on bare metal enable VT-x/AMD-V in the firmware; in a VM enable "
                           "nested virtualization in the outer hypervisor")
    return Check("cpu", "ok" if hw else "warn", detail, fix)


def check_platform(report: host.HostReport) -> Check:
    nested = " — KVM guests here are nested" if report.nested else ""
    return Check("platform", "ok", report.platform.summary + nested)


def check_kvm(report: host.HostReport) -> Check:
    v = report.verdict
    status: Status = "ok" if v.kind == "hardware" and v.usable else "warn"
    detail = v.label + ("" if v.usable or v.kind == "none" else " (not usable by you)")
    if v.kind == "nested":
        detail += "; Linux guests fall back to QEMU's TCG emulator"
    elif v.kind == "none":
        detail += "; everything still runs under QEMU's TCG emulator, the raw-KVM notebook cannot"
    return Check("kvm", status, detail, v.fix)


#: Programs the sequence runs, the apt package that has each, and the notebooks that need it.
PROGRAMS = {
    "qemu-system-x86_64": ("qemu-system-x86", "04 QEMU, 05 libvirt"),
    "as": ("binutils", "03 KVM, 04 QEMU"),
    "ld": ("binutils", "03 KVM, 04 QEMU"),
    "busybox": ("busybox-static", "04 QEMU, 05 libvirt"),
    "virsh": ("libvirt-clients", "05 libvirt"),
    "libvirtd": ("libvirt-daemon", "05 libvirt"),
}

#: Python modules the sequence imports, and the distribution that provides each.
MODULES = {"libvirt": "libvirt-python", "capstone": "capstone", "qemu.qmp": "qemu.qmp",
           "ipywidgets": "ipywidgets", "psutil": "psutil"}


def check_programs() -> list[Check]:
    checks = []
    for prog, (pkg, needed_by) in PROGRAMS.items():
        path = shutil.which(prog) or shutil.which(prog, path="/usr/sbin:/sbin")
        checks.append(Check(prog, "ok", path) if path else
                      Check(prog, "fail", f"not installed (needed by {needed_by})",
                            f"sudo apt-get install {pkg}  (./kvmlab setup does it)"))
    return checks


def check_modules() -> list[Check]:
    checks = []
    for mod, dist in MODULES.items():
        found = importlib.util.find_spec(mod.split(".")[0]) is not None and (
            "." not in mod or importlib.util.find_spec(mod) is not None)
        checks.append(Check(f"python:{mod}", "ok" if found else "fail",
                            "importable" if found else "not importable",
                            None if found else f"pip install {dist}  (./kvmlab setup does it)"))
    return checks


HOST_CHECKS: tuple[Callable[[host.HostReport], Check], ...] = (
    check_kernel, check_cpu, check_platform, check_kvm)


def run_checks(report: host.HostReport | None = None) -> list[Check]:
    """All checks, in the order the report prints them."""
    report = report or host.inspect()
    return [c(report) for c in HOST_CHECKS] + check_programs() + check_modules()


def can_run(checks: list[Check]) -> bool:
    """The lab can run when no check failed (warnings only make it slower or narrower)."""
    return all(c.status != "fail" for c in checks)


def as_dicts(checks: list[Check]) -> list[dict]:
    return [asdict(c) for c in checks]
