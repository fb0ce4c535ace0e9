"""Everything the lab knows about a host, in one report: :func:`inspect`."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from labkit.host.cpu import CpuInfo, cpu_info
from labkit.host.evidence import Platform, platform_info
from labkit.host.running_kernel import KernelInfo, kernel_info
from labkit.host.sources import source_for
from labkit.host.verdict import KvmDevice, KvmVerdict, User, kvm_device, kvm_verdict, vt_support


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
        return bool(self.platform.virtual and self.kvm.present)

    @property
    def runs_raw_kvm(self) -> bool:
        """Notebook 03's raw-KVM guests (x86 code, ioctls on /dev/kvm) can run here for this user."""
        return self.verdict.usable and self.cpu.arch in ("x86_64", "x86")

    def to_dict(self) -> dict:
        data = asdict(self)
        data["cpu"]["flags"] = sorted(self.cpu.flags)
        data["cpu"]["vmx_flags"] = sorted(self.cpu.vmx_flags)
        data["cpu"]["hardware_virtualization"] = self.cpu.hardware_virtualization
        data["kernel"]["dmesg"] = bool(self.kernel.dmesg)  # whether it was read; not the log itself
        data["nested"] = self.nested
        return data


def inspect(root: Path | str = "/", user: User | None = None) -> HostReport:
    """Everything :mod:`labkit.host` knows about the host at ``root``, for ``user``.

    ``/`` is this machine; any other directory is a recording (see
    :func:`labkit.host.record`).  A path that cannot be a host raises
    :class:`~labkit.host.sources.HostDataError`.
    """
    src = source_for(root)
    user = user or User.current()
    kernel = kernel_info(src)
    cpu = cpu_info(src)
    platform = platform_info(src, cpu, kernel)
    dev = kvm_device(src, user)
    vt = vt_support(src, cpu, platform, kernel)
    return HostReport(kernel, cpu, platform, dev, kvm_verdict(kernel, cpu, platform, dev, vt))
