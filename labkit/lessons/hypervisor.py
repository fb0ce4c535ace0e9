"""Hypervisor types, and this host's own place in the virtualization stack.

A hypervisor shares one physical machine among virtual machines, like a
building shared among apartments: each tenant thinks the flat is all theirs,
but walls, water and power are the building's.  Type 1 hypervisors run on the
hardware themselves; Type 2 run as programs on a host OS.  KVM turns the Linux
kernel itself into the hypervisor.

:func:`stack` derives the layers of *this* host from :mod:`labkit.host` facts,
and :func:`kvm_stack_layers` the layers a guest libvirt ran here went through (one
:class:`Layer` model for both); :func:`plan` carves the host's CPUs and memory into guests and calls out
overcommit.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from labkit.errors import InvalidOptionError
from labkit.host import HostReport
from labkit.i18n import Phrase, joined
from labkit.i18n import noop as N_

HypervisorType = Literal["Type 1 (bare-metal)", "Type 2 (hosted)", "Type 1 (kernel module)"]


@dataclass(frozen=True)
class Hypervisor:
    name: str
    type: HypervisorType
    runs_on: Phrase
    example_use: Phrase


CATALOGUE: tuple[Hypervisor, ...] = (
    Hypervisor("VMware ESXi", "Type 1 (bare-metal)", Phrase(N_("the hardware (its own small kernel, vmkernel)")),
               Phrase(N_("enterprise data centres"))),
    Hypervisor("Xen", "Type 1 (bare-metal)", Phrase(N_("the hardware; a privileged guest (dom0) runs the drivers")),
               Phrase(N_("early AWS EC2, Citrix"))),
    Hypervisor("Microsoft Hyper-V", "Type 1 (bare-metal)",
               Phrase(N_("the hardware; Windows becomes the root partition")), Phrase(N_("Azure, Windows Server"))),
    Hypervisor("KVM", "Type 1 (kernel module)", Phrase(N_("the Linux kernel itself, made a hypervisor by kvm.ko")),
               Phrase(N_("OpenStack, Google Cloud, AWS Nitro"))),
    Hypervisor("Oracle VirtualBox", "Type 2 (hosted)",
               Phrase(N_("a desktop OS, as an application (plus a driver)")), Phrase(N_("developer laptops"))),
    Hypervisor("VMware Workstation / Fusion", "Type 2 (hosted)", Phrase(N_("a desktop OS, as an application")),
               Phrase(N_("developer laptops"))),
    Hypervisor("QEMU (TCG, no KVM)", "Type 2 (hosted)",
               Phrase(N_("any OS, as a process that emulates the CPU in software")),
               Phrase(N_("running other CPU architectures"))),
)


@dataclass(frozen=True)
class Layer:
    """One layer of the stack, bottom first: what it is here, the evidence for it, its job, where you ran it."""

    name: Phrase
    detail: str  # what this layer is on this host
    evidence: str  # where that was read
    role: str = ""  # the layer's job (in :func:`kvm_stack_layers`)
    you_ran: str = ""  # the notebook where the learner drove it (in :func:`kvm_stack_layers`)

    @property
    def here(self) -> str:
        """:attr:`detail`, by the name notebook 05 gives it (what shows the layer on this host)."""
        return self.detail


def stack(report: HostReport) -> tuple[Layer, ...]:
    """This host's layers from the hardware up to you, each derived from a host fact."""
    cpu, platform, verdict = report.cpu, report.platform, report.verdict
    layers = [Layer(Phrase(N_("hardware")), Phrase(N_("{model}, {cpus} CPUs"), model=cpu.model_name,
                                                    cpus=cpu.logical_cpus), "/proc/cpuinfo")]
    if platform.virtual:
        layers[0] = Layer(Phrase(N_("hardware (out of sight)")),
                          Phrase(N_("the physical machine under the outer hypervisor")),
                          Phrase(N_("inferred: this kernel is a guest")))
        layers.append(Layer(Phrase(N_("outer hypervisor")), platform.hypervisor or Phrase(N_("unknown")),
                            joined(platform.evidence, "; ")))
    mods = [Phrase(N_("{module} ({state})"), module=m.name, state=m.state)
            for m in report.kernel.kvm_modules if m.state != "absent"]
    layers.append(Layer(Phrase(N_("this Linux kernel")),
                        Phrase(N_("Linux {release} with {modules}"), release=report.kernel.release,
                               modules=joined(mods, ", ")) if mods else
                        Phrase(N_("Linux {release}, no KVM module"), release=report.kernel.release),
                        "/proc/sys/kernel/osrelease, /sys/module"))
    if report.kvm.present:
        how = (Phrase(N_("guests run on the CPU's virtualization extensions ({extension})"),
                      extension=cpu.hardware_virtualization)
               if verdict.kind == "hardware" else
               Phrase(N_("no VT-x/AMD-V here: guest kernel code is handled in software by KVM")))
        layers.append(Layer(Phrase(N_("KVM hypervisor (in this kernel)")), how, "/dev/kvm"))
        layers.append(Layer(Phrase(N_("your guests")), Phrase(N_("nested: a VM inside a VM")) if platform.virtual else
                            Phrase(N_("one level of virtualization")), Phrase(N_("notebooks 03-05"))))
    else:
        layers.append(Layer(Phrase(N_("QEMU's TCG emulator (a Type 2 hypervisor)")),
                            Phrase(N_("no /dev/kvm: guests are emulated")), Phrase(N_("notebook 04"))))
    return tuple(layers)


def kvm_stack_layers(report: HostReport, libvirt_version: str, qemu_version: str, uri: str, domain_type: str,
                     qemu_argv: Iterable[str]) -> tuple[Layer, ...]:
    """Hardware → Linux kernel → KVM module → QEMU → libvirt, each with this host's live evidence.

    The versions, ``uri``, ``domain_type`` and ``qemu_argv`` are those of a
    guest libvirt ran here (:func:`labkit.virt.kvm_stack` reads them from a
    connection).
    """
    cpu, argv = report.cpu, list(qemu_argv)
    accel = argv[argv.index("-accel") + 1] if "-accel" in argv[:-1] else "?"
    modules = ", ".join(m.name for m in report.kernel.kvm_modules if m.state != "absent") or Phrase(N_("none"))
    extension = cpu.hardware_virtualization or Phrase(N_("no VT-x/AMD-V flag"))
    return (
        Layer(Phrase(N_("hardware")),
              Phrase(N_("{model}: {extension} (inside a VM: nested)"), model=cpu.model_name, extension=extension)
              if report.platform.virtual else
              Phrase(N_("{model}: {extension}"), model=cpu.model_name, extension=extension), "/proc/cpuinfo",
              Phrase(N_("runs the code; VT-x/AMD-V lets a CPU run a guest's kernel safely")),
              Phrase(N_("01: host.inspect() read /proc/cpuinfo; 03: KVM_RUN ran your instructions"))),
        Layer(Phrase(N_("Linux kernel (host OS)")),
              Phrase(N_("Linux {release}: each guest was an ordinary QEMU process of this kernel "
                        "(virt.qemu_pids found it)"), release=report.kernel.release),
              "/proc/sys/kernel/osrelease, /proc/<pid>/cmdline",
              Phrase(N_("schedules each vCPU as a thread, backs guest RAM with its memory")),
              Phrase(N_("01: processes, memory and system calls of this kernel"))),
        Layer(Phrase(N_("KVM module")),
              Phrase(N_("modules: {modules}; /dev/kvm present; {verdict}")
                     if report.kvm.present else N_("modules: {modules}; /dev/kvm absent; {verdict}"),
                     modules=modules, verdict=report.verdict.label), "/sys/module, /dev/kvm",
              Phrase(N_("turns the kernel into a hypervisor: /dev/kvm and its ioctls")),
              "03: KVM_CREATE_VM, KVM_SET_USER_MEMORY_REGION, KVM_CREATE_VCPU, KVM_RUN"),
        Layer(Phrase(N_("QEMU")),
              Phrase(N_("QEMU {version}: libvirt ran {program} -accel {accel}"), version=qemu_version,
                     program=Path(argv[0]).name if argv else "?", accel=accel),
              Phrase(N_("the command line in libvirt's QEMU log")),
              Phrase(N_("emulates a whole PC (devices, firmware); runs the CPU with KVM or with TCG")),
              Phrase(N_("04: qemu-system-x86_64 booted the tiny Linux guest"))),
        Layer(Phrase(N_("libvirt")),
              Phrase(N_("libvirt {version} on {uri}: domain type '{type}'"), version=libvirt_version, uri=uri,
                     type=domain_type),
              Phrase(N_("the connection's virConnectGetLibVersion and the domain's XML")),
              Phrase(N_("manages guests: definitions, lifecycle, events, stats, remote URIs")),
              Phrase(N_("05: virt.connect(), define, start, suspend, save/restore, destroy, undefine"))),
    )


# ----------------------------------------------------------------------------- carving a host


@dataclass(frozen=True)
class GuestSpec:
    name: str
    vcpus: int
    memory_mib: int


@dataclass(frozen=True)
class Plan:
    """Guests carved out of a host, and how far they overcommit it."""

    host_cpus: int
    host_memory_mib: int
    guests: tuple[GuestSpec, ...]

    @property
    def vcpus(self) -> int:
        return sum(g.vcpus for g in self.guests)

    @property
    def memory_mib(self) -> int:
        return sum(g.memory_mib for g in self.guests)

    @property
    def cpu_overcommit(self) -> float:
        """vCPUs per physical CPU: above 1 the guests take turns on the real CPUs."""
        return self.vcpus / self.host_cpus

    @property
    def memory_overcommit(self) -> float:
        """Guest memory per byte of host memory: above 1, not every guest can touch all its RAM."""
        return self.memory_mib / self.host_memory_mib

    @property
    def warnings(self) -> tuple[Phrase, ...]:
        notes = []
        if self.cpu_overcommit > 1:
            notes.append(Phrase(N_("CPU overcommitted {ratio:.1f}x: {vcpus} vCPUs share {cpus} CPUs, so the host "
                                   "scheduler time-slices them"), ratio=self.cpu_overcommit, vcpus=self.vcpus,
                                cpus=self.host_cpus))
        if self.memory_overcommit > 1:
            notes.append(Phrase(N_("memory overcommitted {ratio:.1f}x: fine while guests leave pages untouched; "
                                   "if all touch their RAM the host swaps or its OOM killer strikes"),
                                ratio=self.memory_overcommit))
        big = [g.name for g in self.guests if g.vcpus > self.host_cpus]
        if big:
            notes.append(Phrase(N_("{guests} has more vCPUs than the host has CPUs: its own threads will compete "
                                   "for the same core"), guests=joined(big, ", ")))
        return tuple(notes)


def plan(host_cpus: int, host_memory_mib: int, guests: list[GuestSpec] | tuple[GuestSpec, ...]) -> Plan:
    """Validate and build a :class:`Plan` (apartments in the building)."""
    if host_cpus < 1 or host_memory_mib < 1:
        raise InvalidOptionError("the host needs at least 1 CPU and 1 MiB of memory")
    for g in guests:
        if g.vcpus < 1 or g.memory_mib < 16:
            raise InvalidOptionError(f"guest {g.name!r} needs at least 1 vCPU and 16 MiB, "
                                     f"not {g.vcpus} vCPUs and {g.memory_mib} MiB",
                                     "give every guest >= 1 vCPU and >= 16 MiB")
    return Plan(host_cpus, host_memory_mib, tuple(guests))
