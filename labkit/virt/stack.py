"""The whole KVM stack, hardware to libvirt, with this host's live evidence for each layer."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from labkit import host
from labkit.virt.connection import Connection


@dataclass(frozen=True)
class StackLayer:
    """One layer of the KVM stack: its job, where the learner ran it, and what shows it on this host."""

    name: str
    role: str
    you_ran: str
    here: str


def kvm_stack(report: host.HostReport, conn: Connection, domain_type: str,
              qemu_argv: Iterable[str]) -> tuple[StackLayer, ...]:
    """Hardware → Linux kernel → KVM module → QEMU → libvirt, each with this host's live evidence.

    ``domain_type`` and ``qemu_argv`` are those of a guest libvirt ran here.
    """
    cpu, argv = report.cpu, list(qemu_argv)
    accel = argv[argv.index("-accel") + 1] if "-accel" in argv[:-1] else "?"
    modules = ", ".join(m.name for m in report.kernel.kvm_modules if m.state != "absent") or "none"
    libvirt_version, qemu_version = conn.versions()
    return (
        StackLayer("hardware", "runs the code; VT-x/AMD-V lets a CPU run a guest's kernel safely",
                   "01: host.inspect() read /proc/cpuinfo; 03: KVM_RUN ran your instructions",
                   f"{cpu.model_name}: " + (cpu.hardware_virtualization or "no VT-x/AMD-V flag")
                   + (" (inside a VM: nested)" if report.platform.virtual else "")),
        StackLayer("Linux kernel (host OS)", "schedules each vCPU as a thread, backs guest RAM with its memory",
                   "01: processes, memory and system calls of this kernel",
                   f"Linux {report.kernel.release}: each guest was an ordinary QEMU process of this kernel "
                   "(virt.qemu_pids found it)"),
        StackLayer("KVM module", "turns the kernel into a hypervisor: /dev/kvm and its ioctls",
                   "03: KVM_CREATE_VM, KVM_SET_USER_MEMORY_REGION, KVM_CREATE_VCPU, KVM_RUN",
                   f"modules: {modules}; /dev/kvm " + ("present" if report.kvm.present else "absent")
                   + f"; {report.verdict.label}"),
        StackLayer("QEMU", "emulates a whole PC (devices, firmware); runs the CPU with KVM or with TCG",
                   "04: qemu-system-x86_64 booted the tiny Linux guest",
                   f"QEMU {qemu_version}: libvirt ran {Path(argv[0]).name if argv else '?'} -accel {accel}"),
        StackLayer("libvirt", "manages guests: definitions, lifecycle, events, stats, remote URIs",
                   "05: virt.connect(), define, start, suspend, save/restore, destroy, undefine",
                   f"libvirt {libvirt_version} on {conn.choice.uri}: domain type '{domain_type}'"),
    )
