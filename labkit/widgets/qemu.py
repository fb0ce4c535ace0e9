"""Views for notebook 04: a guest's console live, guest vs host, and the TCG/KVM timing plot."""

from __future__ import annotations

import html
import statistics
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING

import ipywidgets as widgets
from IPython.display import display

from labkit import host, i18n, images, qemu
from labkit.i18n import _
from labkit.i18n import noop as N_
from labkit.lessons import payload
from labkit.results import plot
from labkit.widgets.static import html_to_text

if TYPE_CHECKING:
    from matplotlib.figure import Figure


class ConsoleView:
    """The last lines of a guest's serial console, updated as they arrive.

    Pass :meth:`append` as ``on_output`` to :func:`labkit.qemu.boot` (or to
    ``Machine.on_output``); it is called from the console thread.  ``pre``
    is the HTML widget showing the tail (escaped), as the learner sees it.
    """

    def __init__(self, lines: int = 14, title: str = N_("serial console (ttyS0)")) -> None:
        self.lines = lines
        self.title = _(title)
        self._text = ""
        self._lock = threading.Lock()
        self.pre = widgets.HTML(self._render())
        self.widget = widgets.VBox([widgets.HTML(f"<b>{html.escape(self.title)}</b>"), self.pre])
        self.widget.add_class("labkit-console")

    def append(self, text: str) -> None:
        with self._lock:
            self._text += text.replace("\r", "")
            self.pre.value = self._render()

    @property
    def text(self) -> str:
        return self._text

    def _render(self) -> str:
        tail = "\n".join(self._text.splitlines()[-self.lines:]) or _("(waiting for the guest…)")
        return (f"<pre style='background:#111;color:#ddd;padding:6px;height:{self.lines * 1.25}em;"
                f"overflow:auto;white-space:pre-wrap;font-size:85%'>{html.escape(tail)}</pre>")

    def _ipython_display_(self) -> None:
        """The live view; where no widget manager runs, its picture when displayed (see labkit.widgets.static)."""
        bundle = self.widget._repr_mimebundle_()
        bundle["text/html"] = self.pre.value
        bundle["text/plain"] = f"{self.title}: " + html_to_text(self.pre.value)
        display(bundle, raw=True)


class Page:
    """Static HTML saved with the notebook that reads as words where HTML is not shown (never a Python repr)."""

    def __init__(self, markup: str) -> None:
        self.markup = markup

    def _repr_mimebundle_(self, include: object = None, exclude: object = None) -> dict:
        return {"text/html": self.markup, "text/plain": html_to_text(self.markup)}


def _details(summary: str, text: str) -> str:
    """A folded block: ``summary`` is shown, ``text`` opens with one click."""
    return (f"<details><summary>{html.escape(summary)}</summary><pre style='white-space:pre-wrap;font-size:85%'>"
            f"{html.escape(str(text))}</pre></details>")


def _rows(rows: Iterable[tuple[str, str]]) -> str:
    td = "<td style='text-align:left'>"  # JupyterLab right-aligns table cells (made for numbers)
    return "".join(f"<tr><th style='text-align:left'>{html.escape(a)}</th>{td}{html.escape(b)}</td></tr>"
                   for a, b in rows)


def boot_view(console: str, report: images.GuestReport) -> Page:
    """A boot, readable: the guest's report laid out, the alarming console lines explained, the whole console folded."""
    explained = images.explain(console)
    reported = _("what the guest reported from inside")
    parts = [f"<b>{html.escape(reported)}</b>",
             f"<table class='labkit-report'>{_rows(images.report_rows(report))}</table>"]
    if explained:
        alarming = _("console lines that sound alarming, and why they are harmless here")
        parts.append(f"<b>{html.escape(alarming)}</b>")
        parts.append("<ul>" + "".join(f"<li><code>{html.escape(e.line.strip())}</code><br>{html.escape(e.why)}</li>"
                                      for e in explained) + "</ul>")
    lines = console.replace("\r", "").splitlines()
    parts.append(_details(_("the whole console ({count} lines)").format(count=len(lines)),
                          images.without_report(console)))
    return Page("<div class='labkit-boot'>" + "".join(parts) + "</div>")


def kvm_attempt_view(plan: qemu.KvmPlan, attempt: qemu.KvmAttempt) -> Page:
    """What the bounded KVM attempt showed: why it ran or not, how it ended, and the evidence."""
    parts = [f"<p>{html.escape(str(plan.reason))}</p>"]
    if attempt.booted:
        done = _("Linux reached its /init under KVM after {seconds:.1f} s.").format(seconds=attempt.seconds)
        parts.append(f"<p>{html.escape(done)}</p>")
    elif attempt.tried:
        rows = [(_("ended"), {"internal-error": _("QEMU stopped the vCPU: KVM internal error"),
                              "exited": _("QEMU exited"),
                              "timeout": _("no report line: the time was up")}[attempt.outcome]),
                (_("after"), f"{attempt.seconds:.1f} s"),
                (_("QEMU's run state (query-status)"), attempt.qemu_status or _("unknown")),
                (_("console output"), _("{count} bytes").format(count=len(attempt.console.encode()))
                 if attempt.console else _("not one byte"))]
        if attempt.rip is not None:
            rows.append((_("the vCPU then"), f"RIP={attempt.rip:#x} CPL={attempt.cpl}"))
        if attempt.vcpu_cpu_s is not None:
            rows.append((_("host CPU time of the vCPU thread"), f"{attempt.vcpu_cpu_s:.1f} s"))
        parts.append(f"<table class='labkit-kvm-attempt'>{_rows(rows)}</table>")
        if attempt.evidence.strip():
            parts.append(_details(_("the evidence: QEMU's message or the console's last lines"), attempt.evidence))
    return Page("<div class='labkit-kvm-attempt'>" + "".join(parts) + "</div>")


def guest_vs_host(report: images.GuestReport, host_report: host.HostReport) -> Page:
    """A table: the same questions asked of the host and of the guest (static HTML: saved with the notebook)."""
    cpu = host_report.cpu
    rows = [
        (_("kernel"), f"Linux {host_report.kernel.release}", f"Linux {report.kernel_release}"),
        ("CPU", f"{cpu.vendor} {cpu.model_name}", f"{report.cpu_vendor} {report.cpu_model}"),
        (_("logical CPUs"), cpu.logical_cpus, report.cpus),
        (_("memory"), f"{host.memory().total // 2**20} MiB", f"{report.memory_mib} MiB"),
        (_("'hypervisor' CPU flag"), cpu.hypervisor_flag, report.hypervisor_flag),
        (_("hypervisor (CPUID 0x40000000)"), host_report.platform.hypervisor or _("none"),
         report.hypervisor or _("none")),
        (_("VT-x / AMD-V offered"), cpu.hardware_virtualization or _("no"), report.hardware_virtualization or _("no")),
        (_("CPU flags"), len(cpu.flags), len(report.flags)),
    ]
    td = "<td style='text-align:left'>"  # JupyterLab right-aligns table cells (made for numbers)
    body = "".join(f"<tr><th style='text-align:left'>{html.escape(str(a))}</th>{td}{html.escape(str(b))}</td>"
                   f"{td}{html.escape(str(c))}</td></tr>" for a, b, c in rows)
    host_label, guest_label = _("host"), _("guest")
    head = f"<tr><th></th><th>{host_label}</th><th>{guest_label}</th></tr>"
    return Page(f"<table class='labkit-guest-vs-host'>{head}{body}</table>")


def plot_accelerators(runs: list[payload.PayloadResult], boots: list[qemu.BootResult]) -> Figure:
    """Left: the payload's loop rate per accelerator and ring (log scale).  Right: Linux boot phases."""
    # here, not at the top: pyplot takes 0.43 s to import here and ~8 s inside the emulated AMD-V machine, and
    # notebook 05 (its console view) and notebook 04's first cells need none of it
    import matplotlib.pyplot as plt

    plot.use_font_for(i18n.current())
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.6))
    labels = [_("{accel}\nring {ring}").format(accel=r.accel.name.upper(), ring=r.ring) for r in runs]
    rates = [(r.iterations_per_s or 0) / 1e6 for r in runs]
    bars = left.bar(labels, rates, color=["#2a7" if r.accel.name == "kvm" else "#37c" for r in runs])
    left.bar_label(bars, fmt="%.1f")
    left.set_yscale("log")
    if any(rates):
        left.set_ylim(top=max(rates) * 6)  # room for the tallest bar's label below the title
    left.set_ylabel(_("loop iterations per second (millions)"))
    left.set_title(_("bare-metal payload: the same loop"))

    groups: dict[str, list[qemu.BootTimes]] = {}
    for b in boots:
        groups.setdefault(f"{b.accel.name.upper()}\n{b.config.machine}", []).append(b.times)
    names = list(groups)
    before = [statistics.median(t.before_kernel_s for t in groups[n]) for n in names]
    kernel = [statistics.median(t.userspace_s for t in groups[n]) - b for n, b in zip(names, before)]
    off = [statistics.median((t.poweroff_s or t.userspace_s) - t.userspace_s for t in groups[n]) for n in names]
    right.bar(names, before, label=_("before the guest's clock ran (QEMU, loading, early kernel)"), color="#bbb")
    right.bar(names, kernel, bottom=before, label=_("guest kernel → /init"), color="#37c")
    right.bar(names, off, bottom=[a + b for a, b in zip(before, kernel)],
              label=_("/init: report, awk workload, power-off"), color="#e93")
    right.set_ylabel(_("seconds since QEMU was launched (median)"))
    right.set_title(_("tiny Linux guest boot ({boots} boots)").format(boots=len(boots)))
    # below the axes, never over a bar (however tall the bars of this host are)
    right.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), frameon=False)
    fig.tight_layout()
    return fig
