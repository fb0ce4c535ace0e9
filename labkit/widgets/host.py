"""Views of the host: a summary card, the layer stack, and the apartment-building planner."""

from __future__ import annotations

import html

import ipywidgets as w

from labkit import hypervisor
from labkit.host import HostReport

_COLOURS = {"hardware": "#2e7d32", "nested": "#ef6c00", "none": "#c62828", "unknown": "#616161"}


def host_card(report: HostReport) -> w.HTML:
    """One card: bare metal or VM, CPU virtualization, and the KVM verdict with its fix."""
    v = report.verdict
    rows = [
        ("kernel", f"Linux {report.kernel.release}"),
        ("CPU", f"{report.cpu.model_name} · {report.cpu.logical_cpus} CPUs · "
                f"{report.cpu.hardware_virtualization or 'no VT-x/AMD-V flag'}"),
        ("platform", report.platform.summary),
        ("KVM", f"<b style='color:{_COLOURS[v.kind]}'>{html.escape(v.label)}</b>"),
    ]
    if v.fix:
        rows.append(("fix", html.escape(v.fix)))
    body = "".join(f"<tr><th style='text-align:left;padding-right:1em'>{k}</th><td>{val}</td></tr>"
                   for k, val in rows)
    return w.HTML(f"<div class='labkit-host-card' style='border:1px solid #ccc;border-radius:6px;"
                  f"padding:.5em 1em'><table>{body}</table></div>")


def stack_view(report: HostReport) -> w.HTML:
    """The layers of :func:`labkit.hypervisor.stack`, drawn top (you) to bottom (hardware)."""
    boxes = "".join(
        f"<div style='border:1px solid #888;border-radius:4px;margin:2px 0;padding:4px 8px;"
        f"background:{'#fff3e0' if 'hypervisor' in layer.name.lower() else '#f5f5f5'}'>"
        f"<b>{html.escape(layer.name)}</b> — {html.escape(layer.detail)}"
        f"<br><small style='color:#666'>evidence: {html.escape(layer.evidence)}</small></div>"
        for layer in reversed(hypervisor.stack(report)))
    return w.HTML(f"<div class='labkit-stack'>{boxes}</div>")


class ApartmentPlanner(w.VBox):
    """Carve the host (the building) into guests (apartments); overcommit is called out.

    ``plan`` always holds the :class:`~labkit.hypervisor.Plan` that is drawn.
    """

    def __init__(self, host_cpus: int, host_memory_mib: int, guests: int = 3,
                 vcpus: int = 1, memory_mib: int = 1024) -> None:
        self.host_cpus, self.host_memory_mib = host_cpus, host_memory_mib
        self.guests = w.IntSlider(value=guests, min=1, max=16, description="guests")
        self.vcpus = w.IntSlider(value=vcpus, min=1, max=max(8, 2 * host_cpus), description="vCPUs each")
        self.memory = w.IntSlider(value=memory_mib, min=128, max=max(4096, host_memory_mib // 2), step=128,
                                  description="MiB each")
        self.drawing = w.HTML()
        for slider in (self.guests, self.vcpus, self.memory):
            slider.observe(self._redraw, names="value")
        super().__init__([self.guests, self.vcpus, self.memory, self.drawing])
        self.add_class("labkit-apartments")
        self._redraw()

    def _redraw(self, _change: object = None) -> None:
        self.plan = hypervisor.plan(self.host_cpus, self.host_memory_mib, [
            hypervisor.GuestSpec(f"flat {i + 1}", self.vcpus.value, self.memory.value)
            for i in range(self.guests.value)])
        p = self.plan
        cpu_red = p.cpu_overcommit > 1
        mem_red = p.memory_overcommit > 1
        flats = "".join(
            f"<tr><td>{g.name}</td><td>{'▣' * g.vcpus}</td>"
            f"<td><div style='background:#90caf9;height:10px;width:"
            f"{min(100, 100 * g.memory_mib / p.host_memory_mib):.1f}%'></div></td></tr>"
            for g in p.guests)
        summary = (f"<span style='color:{'#c62828' if cpu_red else '#2e7d32'}'>{p.vcpus} vCPUs on "
                   f"{p.host_cpus} CPUs ({p.cpu_overcommit:.2f}x)</span> · "
                   f"<span style='color:{'#c62828' if mem_red else '#2e7d32'}'>{p.memory_mib} MiB on "
                   f"{p.host_memory_mib} MiB ({p.memory_overcommit:.2f}x)</span>")
        warnings = "".join(f"<li>{html.escape(n)}</li>" for n in p.warnings)
        self.drawing.value = (
            f"<div><b>the building</b>: {'▣' * p.host_cpus} CPUs, {p.host_memory_mib} MiB"
            f"<table style='width:100%'><tr><th>apartment</th><th>vCPUs</th><th>memory</th></tr>"
            f"{flats}</table><p>{summary}</p><ul class='labkit-warnings'>{warnings}</ul></div>")
