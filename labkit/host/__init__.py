"""What is this machine?  Kernel, CPU, bare metal or VM, and can it run KVM.

Every answer carries its *evidence* (the file, flag or log line it came
from), so a notebook can show the learner where a fact lives, and what was
*not* recorded stays unknown instead of reading as "no".

One module per job, all re-exported here (``from labkit import host;
host.inspect()``):

- :mod:`~labkit.host.sources`: this machine (:class:`LiveSource`) or a
  recording (:class:`RecordedSource`); :mod:`~labkit.host.manifest`: its ``host.json``;
- :mod:`~labkit.host.cpu`: ``/proc/cpuinfo`` for x86 and Arm, the kernel's architecture;
- :mod:`~labkit.host.running_kernel`: release, modules, the KVM modules' states, guest drivers;
- :mod:`~labkit.host.evidence`: bare metal or VM, every clue weighed;
- :mod:`~labkit.host.verdict`: ``/dev/kvm``, VT-x/AMD-V state, the verdict and its fix;
- :mod:`~labkit.host.report`: :func:`inspect`, the whole :class:`HostReport`;
- :mod:`~labkit.host.outlook`: what each notebook can do here, and notebook 03's gate;
- :mod:`~labkit.host.record`, :mod:`~labkit.host.tsc`, :mod:`~labkit.host.resources`.
"""

from __future__ import annotations

from labkit.host.cpu import ARM_IMPLEMENTERS, ARM_PARTS, NO_VT_MODELS, CpuInfo, cpu_info
from labkit.host.evidence import DMI_PRODUCTS, HYPERVISOR_SIGNATURES, UNKNOWN_HYPERVISOR, Platform, platform_info
from labkit.host.manifest import HOST_JSON_SCHEMA, HostDataError
from labkit.host.outlook import (
    NotebookOutlook,
    RawKvmUnavailableError,
    notebook_outlook,
    raw_kvm_blocker,
    recorded_run,
    require_kvm,
    require_raw_kvm,
)
from labkit.host.record import record
from labkit.host.report import HostReport, inspect
from labkit.host.resources import (
    CMDLINE_MAX,
    Memory,
    NetInterface,
    ProcessSummary,
    check_guest,
    memory,
    network_interfaces,
    processes,
)
from labkit.host.running_kernel import GUEST_DRIVERS, KVM_MODULES, KernelInfo, KvmModule, kernel_info
from labkit.host.sources import (
    KVM_DEVICE_NUMBER,
    DeviceNode,
    KvmProbe,
    LiveSource,
    RecordedSource,
    Source,
    cpuid,
    cpuid_instruction,
    source_for,
)
from labkit.host.tsc import TscFrequency, tsc_frequency
from labkit.host.verdict import (
    HOW_TO_TELL,
    NESTED_FIXES,
    VERDICT_LABELS,
    KvmDevice,
    KvmKind,
    KvmVerdict,
    User,
    VtSupport,
    access_fix,
    group_access_commands,
    kvm_device,
    kvm_verdict,
    nested_fix,
    vt_support,
)

__all__ = [
    "ARM_IMPLEMENTERS", "ARM_PARTS", "DMI_PRODUCTS", "GUEST_DRIVERS", "HOST_JSON_SCHEMA", "HOW_TO_TELL",
    "HYPERVISOR_SIGNATURES", "KVM_DEVICE_NUMBER", "KVM_MODULES", "NESTED_FIXES", "NO_VT_MODELS",
    "UNKNOWN_HYPERVISOR", "VERDICT_LABELS", "CpuInfo", "DeviceNode", "HostDataError", "HostReport", "KernelInfo",
    "KvmDevice", "KvmKind", "KvmModule", "KvmProbe", "KvmVerdict", "LiveSource", "Memory", "NetInterface",
    "NotebookOutlook", "RawKvmUnavailableError", "notebook_outlook", "raw_kvm_blocker", "recorded_run", "require_kvm",
    "require_raw_kvm",
    "Platform", "ProcessSummary", "RecordedSource", "Source", "TscFrequency", "User", "VtSupport",
    "cpuid_instruction", "access_fix", "group_access_commands", "cpu_info", "cpuid", "inspect", "kernel_info",
    "kvm_device",
    "kvm_verdict", "memory", "nested_fix", "network_interfaces", "platform_info", "processes", "record",
    "source_for", "tsc_frequency", "vt_support", "CMDLINE_MAX", "check_guest",
]
