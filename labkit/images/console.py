"""The tiny guest's console made readable: its alarming but harmless lines explained, the report laid out.

The guest's kernel prints, with ``quiet``, only warnings — and on the lab's
small machines two of them sound fatal ("ACPI BIOS Error", "PCI: Fatal")
while nothing is wrong.  :func:`explain` pairs each such line with one
sentence on why it is harmless *here*; a line it does not know stays
unexplained (the lab does not guess).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from labkit.i18n import _
from labkit.i18n import noop as N_
from labkit.images.report import REPORT_MARKER, GuestReport

#: (a console line's text, without its timestamp) -> why it is harmless for the lab's guest.
KNOWN_LINES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"ACPI BIOS Error \(bug\): A valid RSDP was not found"),
     N_("the machine has no ACPI tables (microvm without ACPI, labkit's choice for one vCPU), so the kernel "
        "finds none and boots without its ACPI interpreter")),
    (re.compile(r"PCI: Fatal: No config space access function found"),
     N_("microvm has no PCI bus at all (its devices sit on virtio-mmio): the kernel's PCI probe finds nothing "
        "and goes on without PCI")),
    (re.compile(r"reboot: Restarting system"),
     N_("how this guest ends: without ACPI it cannot power off, so /init resets it, and QEMU's -no-reboot "
        "turns the reset into QEMU's exit")),
    (re.compile(r"reboot: Power down"),
     N_("the guest powered itself off after its report, as /init does")),
    (re.compile(r"Unhandled WRMSR\(0x[0-9a-f]+\)"),
     N_("the guest wrote a model-specific register its hypervisor does not emulate; it ignores the write and "
        "the guest goes on")),
)

_TIMESTAMP = re.compile(r"^\[\s*\d+\.\d+\]\s*")


@dataclass(frozen=True)
class ExplainedLine:
    """A console line that sounds alarming, and why it is harmless here."""

    line: str
    why: str


def explain(console: str) -> tuple[ExplainedLine, ...]:
    """The console's lines :data:`KNOWN_LINES` knows, each with its explanation, in console order."""
    found = []
    for line in console.replace("\r", "").splitlines():
        text = _TIMESTAMP.sub("", line)
        why = next((reason for pattern, reason in KNOWN_LINES if pattern.search(text)), None)
        if why is not None:
            found.append(ExplainedLine(line, _(why)))
    return tuple(found)


def without_report(console: str) -> str:
    """The console with the report line shortened to its marker (the report is shown laid out instead)."""
    return "\n".join(REPORT_MARKER + "…" if line.startswith(REPORT_MARKER) else line
                     for line in console.replace("\r", "").splitlines())


def report_rows(report: GuestReport) -> tuple[tuple[str, str], ...]:
    """The guest's report as (field, value) rows a person reads: what the guest saw, from inside."""
    return (
        (_("kernel"), f"Linux {report.kernel_release} ({report.machine})"),
        (_("CPUs"), str(report.cpus)),
        (_("memory"), f"{report.memory_mib} MiB"),
        ("CPU", f"{report.cpu_vendor} {report.cpu_model}"),
        (_("hypervisor (CPUID 0x40000000)"), report.hypervisor or _("none")),
        (_("CPU flags"), f"{len(report.flags)}: " + " ".join(sorted(report.flags))),
        (_("clock source"), report.clocksource),
        (_("uptime at /init"), f"{report.uptime_s:.2f} s"),
        (_("kernel command line"), report.cmdline),
    )
