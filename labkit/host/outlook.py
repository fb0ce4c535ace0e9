"""What each notebook can do on this host, for this user — and notebook 03's gate.

Notebook 03 drives ``/dev/kvm`` itself with x86 guest code.  Where that
cannot work (no KVM, a user who may not open ``/dev/kvm``, a non-x86 host)
it must not die with a traceback on its seventh cell: :func:`require_raw_kvm`
stops it with one explanation, the fix, and a clearly labelled recorded run
of the section it cannot run.  ``labkit doctor`` prints the same outlook,
notebook by notebook.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from typing import Literal

from labkit.errors import LabkitError
from labkit.host.report import HostReport
from labkit.i18n import _

Runs = Literal["live", "partly", "no"]


@dataclass(frozen=True)
class NotebookOutlook:
    """How one notebook will run here: ``live``, ``partly`` (it explains what it cannot do), or ``no``."""

    notebook: str
    runs: Runs
    detail: str
    fix: str | None = None


def raw_kvm_blocker(report: HostReport) -> tuple[str, str | None] | None:
    """Why notebook 03's raw-KVM part cannot run here for this user, and the fix (None: it can run)."""
    if report.runs_raw_kvm:
        return None
    v, cpu = report.verdict, report.cpu
    if cpu.arch not in ("x86_64", "x86", "unknown"):
        return (f"this is a {cpu.arch} host: notebook 03's guests are x86 machine code run through the x86 KVM "
                "API, so they need an x86-64 host (KVM on this host runs guests of its own architecture)",
                "run notebook 03 on an x86-64 machine; notebooks 04 and 05 still run here (QEMU's TCG "
                "emulates an x86 guest)")
    if v.kind == "none" or report.kvm.present is False:
        return f"this host has no KVM ({'; '.join(v.reasons)})", v.fix
    if report.kvm.accessible is False:
        return (f"you may not open /dev/kvm (mode {report.kvm.mode}, {report.kvm.owner}:{report.kvm.group})",
                v.fix)
    return f"KVM here is {v.label}", v.fix


def notebook_outlook(report: HostReport) -> tuple[NotebookOutlook, ...]:
    """The host-dependent outlook of notebooks 01–05 (the programs they need are doctor's other checks)."""
    accel = ("KVM" if report.verdict.boots_linux else
             _("QEMU's TCG emulator (no VT-x/AMD-V KVM for this user here: slower, same results)"))
    blocker = raw_kvm_blocker(report)
    nb03 = (NotebookOutlook("03 KVM", "live", _("raw KVM API live ({verdict})").format(verdict=report.verdict.label))
            if blocker is None else
            NotebookOutlook("03 KVM", "partly", _("stops before its first ioctl with one explanation and a "
                                                  "recorded run: {blocker}").format(blocker=blocker[0]), blocker[1]))
    return (
        NotebookOutlook("01 kernel", "live", _("reads this kernel's /proc and /sys")),
        NotebookOutlook("02 hypervisor types", "live", _("this host: {platform}").format(
            platform=report.platform.summary)),
        nb03,
        NotebookOutlook("04 QEMU", "live", _("boots the tiny Linux guest under {accel}").format(accel=accel)),
        NotebookOutlook("05 libvirt", "live", _("libvirt domains under {accel}").format(accel=accel)),
    )


class RawKvmUnavailableError(LabkitError):
    """Notebook 03 stops here: shown without a traceback (IPython renders :meth:`_render_traceback_`)."""

    def __init__(self, what: str, fix: str | None, recorded: str) -> None:
        super().__init__(what, fix)
        self.recorded = recorded

    def _render_traceback_(self) -> list[str]:
        return [f"Notebook 03 stops here: {self.what}.", f"fix: {self.fix}" if self.fix else "",
                "", self.recorded]


def recorded_run() -> str:
    """Section 3 of notebook 03 as recorded on a lab machine, labelled so nobody takes it for this host."""
    doc = json.loads(resources.files("labkit.host").joinpath("recorded_run_03.json").read_text())
    bar = "=" * 78
    lines = [bar, "RECORDED RUN, FOR REFERENCE ONLY — not this host, not live.",
             f"What: {doc['what']}.", f"From: {doc['recorded_from']}.", bar]
    for step in doc["steps"]:
        lines += [">>> " + step["code"].rstrip().replace("\n", "\n... "), step["output"].rstrip(), ""]
    return "\n".join(lines + [bar, "END OF THE RECORDED RUN", bar])


def require_kvm(report: HostReport) -> None:
    """Notebook 03's first gate, before its claims about ``/dev/kvm``: stop where nobody here can run it.

    A host without KVM, or not x86, would fail those claims with a misleading "report this" message.  A
    student who only lacks permission to open ``/dev/kvm`` reads on through the modules and the device (they
    are there to see) and stops at :func:`require_raw_kvm`, just before the first ioctl.
    """
    if report.kvm.present and report.kvm.accessible is False:
        return
    require_raw_kvm(report)


def require_raw_kvm(report: HostReport) -> None:
    """Return quietly where notebook 03 can drive /dev/kvm; else stop it with the reason, fix and recorded run."""
    blocker = raw_kvm_blocker(report)
    if blocker is not None:
        raise RawKvmUnavailableError(blocker[0], blocker[1], recorded_run())
