"""What makes a run's numbers comparable: the host kind and verdict, CPU, kernel, QEMU and labkit versions.

Nothing personal: no host name, user name or path goes in (a result file is
shared with a class); the only free text is the learner's optional label.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from labkit.i18n import noop as N_

#: Host kinds of a class-wide comparison (the order of the merged plot), with their labels.
HOST_KINDS: dict[str, str] = {
    "hardware": N_("hardware KVM"),
    "nested": N_("nested KVM"),
    "pvm": N_("PVM"),
    "none": N_("no KVM"),
    "unknown": N_("unknown"),
}


@dataclass(frozen=True)
class RunContext:
    """The machine a run measured (shared in a result file: no host, user or path names)."""

    host_kind: str  # a key of HOST_KINDS
    host_verdict: str  # labkit's verdict on KVM here (hardware, nested, none, unknown)
    cpu_model: str
    kernel: str
    qemu: str
    labkit: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def host_kind(report) -> str:
    """The kind of KVM a :class:`~labkit.host.HostReport` shows: hardware, nested, PVM, none or unknown.

    PVM (``kvm_pvm`` loaded) is software-assisted nested KVM; ``nested`` is
    KVM inside a VM (a hypervisor passed VT-x/AMD-V through, or none and KVM
    still present); ``hardware`` is KVM on bare metal.  A host whose
    bare-metal-or-VM question was not answered stays ``unknown`` rather than
    being called bare metal.
    """
    kind = report.verdict.kind
    if kind in ("none", "unknown"):
        return str(kind)
    if report.kernel.module("kvm_pvm").present:
        return "pvm"
    if kind == "nested" or report.platform.virtual:
        return "nested"
    return "hardware" if report.platform.virtual is False else "unknown"


def context(root: Path | str = "/", qemu: str | None = None) -> RunContext:
    """The context of runs on the host at ``root`` (``/``: this machine; else a recording)."""
    import labkit
    from labkit import host

    report = host.inspect(root)
    if qemu is None:
        qemu = _qemu_version()
    return RunContext(host_kind(report), str(report.verdict.kind), report.cpu.model_name, report.kernel.release,
                      qemu, labkit.__version__)


def _qemu_version() -> str:
    """``QEMU emulator version …`` of this machine, or ``unknown`` (a run that boots no guest works without it)."""
    from labkit.errors import MissingToolError
    from labkit.qemu.config import qemu_version

    try:
        return qemu_version()
    except MissingToolError:
        return "unknown"
