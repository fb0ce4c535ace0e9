"""Views of the host: a summary card, the layer stack, and the apartment-building planner.

Each also carries a static picture (:mod:`labkit.widgets.static`), so a saved
notebook shows the card, the stack and the building before anything runs.
"""

from __future__ import annotations

import html

import ipywidgets as w
from IPython.display import HTML

from labkit.host import HostReport
from labkit.i18n import _
from labkit.i18n import noop as N_
from labkit.lessons import hypervisor
from labkit.widgets.static import StaticFallback, StaticHTML

_COLOURS = {"hardware": "#2e7d32", "nested": "#ef6c00", "none": "#c62828", "unknown": "#616161"}


def host_card(report: HostReport, kvm: bool = True) -> StaticHTML:
    """One card: bare metal or VM, CPU virtualization, and (``kvm``) the KVM verdict with its fix.

    Notebook 01 shows it without the KVM rows: KVM is not introduced yet there.
    """
    v = report.verdict
    rows = [
        (_("kernel"), f"Linux {report.kernel.release}"),
        ("CPU", f"{report.cpu.model_name} · " + _("{cpus} CPUs").format(cpus=report.cpu.logical_cpus)
                + (" · " + (report.cpu.hardware_virtualization or _("no VT-x/AMD-V flag")) if kvm else "")),
        (_("platform"), html.escape(str(report.platform.summary))),
    ]
    if kvm:
        rows.append(("KVM", f"<b style='color:{_COLOURS[v.kind]}'>{html.escape(v.label)}</b>"))
    if kvm and v.fix:
        rows.append((_("fix"), html.escape(v.fix)))
    body = "".join(f"<tr><th style='text-align:left;padding-right:1em'>{k}</th><td>{val}</td></tr>"
                   for k, val in rows)
    return StaticHTML(f"<div class='labkit-host-card' style='border:1px solid #ccc;border-radius:6px;"
                  f"padding:.5em 1em'><table>{body}</table></div>")


def stack_view(report: HostReport) -> StaticHTML:
    """The layers of :func:`labkit.lessons.hypervisor.stack`, drawn top (you) to bottom (hardware)."""
    boxes = "".join(
        f"<div style='border:1px solid #888;border-radius:4px;margin:2px 0;padding:4px 8px;"
        f"background:{'#fff3e0' if 'hypervisor' in layer.name.lower() else '#f5f5f5'}'>"
        f"<b>{html.escape(str(layer.name))}</b> — {html.escape(str(layer.detail))}"
        "<br><small style='color:#666'>" + _("evidence") + f": {html.escape(str(layer.evidence))}</small></div>"
        for layer in reversed(hypervisor.stack(report)))
    return StaticHTML(f"<div class='labkit-stack'>{boxes}</div>")


class ApartmentPlanner(StaticFallback, w.VBox):
    """Carve the host (the building) into guests (apartments); overcommit is called out.

    The drawing is a building: its walls are the host's CPUs (one window
    column each) and its height is the host's memory.  Each guest is a floor
    as tall as its memory, with one window per vCPU: windows past the wall
    are vCPUs the host's CPUs must time-share, floors above the roof are
    memory promised beyond the RAM.  ``plan`` always holds the
    :class:`~labkit.lessons.hypervisor.Plan` that is drawn.
    """

    def __init__(self, host_cpus: int, host_memory_mib: int, guests: int = 3,
                 vcpus: int = 1, memory_mib: int = 1024) -> None:
        self.host_cpus, self.host_memory_mib = host_cpus, host_memory_mib
        self.guests = w.IntSlider(value=guests, min=1, max=16, description=_("guests"))
        self.vcpus = w.IntSlider(value=vcpus, min=1, max=max(8, 2 * host_cpus), description=_("vCPUs each"))
        self.memory = w.IntSlider(value=memory_mib, min=128, max=max(4096, host_memory_mib // 2), step=128,
                                  description=_("MiB each"))
        self.drawing = w.HTML()
        for slider in (self.guests, self.vcpus, self.memory):
            slider.observe(self._redraw, names="value")
        super().__init__([self.guests, self.vcpus, self.memory, self.drawing])
        self.add_class("labkit-apartments")
        self._redraw()

    def _redraw(self, _change: object = None) -> None:
        self.plan = hypervisor.plan(self.host_cpus, self.host_memory_mib, [
            hypervisor.GuestSpec(_("flat {number}").format(number=i + 1), self.vcpus.value, self.memory.value)
            for i in range(self.guests.value)])
        p = self.plan
        cpus = _("{vcpus} vCPUs on {cpus} CPUs ({ratio:.2f}x)").format(vcpus=p.vcpus, cpus=p.host_cpus,
                                                                      ratio=p.cpu_overcommit)
        memory = _("{guests} MiB on {host} MiB ({ratio:.2f}x)").format(guests=p.memory_mib, host=p.host_memory_mib,
                                                                      ratio=p.memory_overcommit)
        summary = (f"<span style='color:{'#c62828' if p.cpu_overcommit > 1 else '#2e7d32'}'>{cpus}</span> · "
                   f"<span style='color:{'#c62828' if p.memory_overcommit > 1 else '#2e7d32'}'>{memory}</span>")
        warnings = "".join(f"<li>{html.escape(str(n))}</li>" for n in p.warnings)
        self.drawing.value = (f"<div>{building_html(p)}<p>{summary}</p>"
                              f"<ul class='labkit-warnings'>{warnings}</ul></div>")

    def static_html(self) -> str:
        sliders = " · ".join(f"{s.description} = {s.value}" for s in (self.guests, self.vcpus, self.memory))
        return f"<div class='labkit-apartments'><p><i>{sliders}</i> " + _("(run the cell to move them)") + \
               f"</p>{self.drawing.value}</div>"

    def static_text(self) -> str:
        p = self.plan
        return _("the building: {cpus} CPUs, {memory} MiB; {guests} apartments of {vcpus} vCPUs and {each} MiB: "
                 "{all_vcpus} vCPUs ({cpu_ratio:.2f}x), {all_memory} MiB ({memory_ratio:.2f}x)").format(
            cpus=p.host_cpus, memory=p.host_memory_mib, guests=len(p.guests), vcpus=self.vcpus.value,
            each=self.memory.value, all_vcpus=p.vcpus, cpu_ratio=p.cpu_overcommit, all_memory=p.memory_mib,
            memory_ratio=p.memory_overcommit)


#: Building drawing: pixels per CPU column, for the host's memory, and the most the floors may take.
_CELL, _HOUSE_PX, _MAX_PX = 34, 200, 400


def building_html(p: hypervisor.Plan) -> str:
    """The plan as a building (see :class:`ApartmentPlanner`), drawn as a plain HTML table.

    A table with inline colours, not SVG: JupyterLab's sanitizer keeps it in a
    saved, untrusted notebook, so the building shows before anything runs.
    """
    columns = max(p.host_cpus, *(g.vcpus for g in p.guests))
    scale = min(_HOUSE_PX / p.host_memory_mib, _MAX_PX / max(p.memory_mib, 1))
    house_h = p.host_memory_mib * scale
    outside = "<td style='padding:0'></td>" * (columns - p.host_cpus)  # past the wall: nothing

    def box(colour: str, height: float, border: str = "#616161", span: int = 1) -> str:
        return (f"<td colspan='{span}' style='width:{_CELL * span}px;height:{height:.0f}px;padding:0;"
                f"border:1px solid {border};background-color:{colour}'></td>")

    def row(inner: str, label: str = "", colour: str = "#212121") -> str:
        return f"<tr>{inner}<td style='padding:0 8px;font-size:11px;text-align:left;color:{colour}'>{label}</td></tr>"

    above: list[str] = []
    below: list[str] = []
    ground = 0.0
    for g in p.guests:
        h = max(g.memory_mib * scale, 4)
        over_roof = ground + h > house_h
        windows = "".join(
            box("#e53935" if c >= p.host_cpus else "#ffcdd2" if over_roof else "#fff59d", h) if c < g.vcpus
            else box("#bbdefb", h, "#bbdefb") if c < p.host_cpus else "<td style='padding:0'></td>"
            for c in range(columns))
        (above if over_roof else below).append(row(windows, html.escape(
            _("{name}: {vcpus} vCPU, {memory} MiB").format(name=g.name, vcpus=g.vcpus, memory=g.memory_mib))))
        ground += h
    over = p.memory_overcommit > 1
    roof = row(box("#8d6e63", 12, "#c62828" if over else "#8d6e63", p.host_cpus) + outside,
               _("the host's RAM ends here") if over else _("roof"), "#c62828" if over else "#6d4c41")
    free = house_h - ground
    empty = row(box("#f5f5f5", free, "#e0e0e0", p.host_cpus) + outside, _("free")) if free >= 4 else ""
    base = row(f"<td colspan='{columns}' style='padding:0;height:4px;border-top:3px solid #424242'></td>",
               _("the ground: {cpus} CPUs wide, {memory} MiB tall").format(cpus=p.host_cpus,
                                                                           memory=p.host_memory_mib))
    return (f"<table class='labkit-building' style='border-collapse:separate;border-spacing:2px 1px'>"
            f"{''.join(reversed(above))}{roof}{empty}{''.join(reversed(below))}{base}</table>")


#: The four stacks of notebook 02's picture, bottom layer last: (title, [(layer, kind)]).
#: kinds colour the boxes: hw hardware, hv the hypervisor's code, os a host OS, app a process, vm a guest.
TYPE_STACKS: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    (N_("Type 1 (bare metal): ESXi, Xen, Hyper-V"),
     (("VM · VM · VM", "vm"), (N_("hypervisor (its own small kernel)"), "hv"), (N_("hardware"), "hw"))),
    (N_("Type 2 (hosted): VirtualBox, Workstation"),
     (("VM · VM", "vm"), (N_("hypervisor app · other apps"), "app"), (N_("host OS (Windows, macOS, Linux)"), "os"),
      (N_("hardware"), "hw"))),
    (N_("KVM: Linux becomes the hypervisor"),
     (("VM · VM", "vm"), (N_("QEMU processes (the VMMs) · other apps"), "app"),
      (N_("Linux kernel + kvm.ko (the hypervisor)"), "hv"), (N_("hardware with VT-x / AMD-V"), "hw"))),
    (N_("QEMU with TCG: an emulator"),
     (("VM", "vm"), (N_("QEMU process: translates every guest instruction"), "app"), (N_("host OS"), "os"),
      (N_("hardware (no help needed)"), "hw"))),
)
_KIND_COLOURS = {"hw": "#cfd8dc", "hv": "#ffcc80", "os": "#c5e1a5", "app": "#b3e5fc", "vm": "#e1bee7"}


def hypervisor_types_picture() -> HTML:
    """Type 1, Type 2, KVM and TCG drawn side by side as stacks.

    A plain HTML table with inline colours: it shows before anything runs,
    also in an untrusted notebook (JupyterLab's sanitizer keeps tables, drops SVG and flexbox).
    """
    titles = "".join(f"<th style='text-align:center;vertical-align:bottom;padding:4px'>{html.escape(_(title))}</th>"
                     for title, _layers in TYPE_STACKS)
    stacks = "".join(
        "<td style='vertical-align:bottom;width:25%;padding:4px'>" + "".join(
            f"<div style='background-color:{_KIND_COLOURS[kind]};border:1px solid #616161;border-radius:4px;"
            f"margin:3px 0;padding:6px;text-align:center'>{html.escape(_(name))}</div>" for name, kind in layers)
        + "</td>" for _title, layers in TYPE_STACKS)
    legend = " ".join(f"<span style='background-color:{_KIND_COLOURS[k]};border:1px solid #616161;"
                      "padding:0 6px'>" + _(name) + "</span>"
                      for k, name in (("hw", N_("hardware")), ("hv", N_("hypervisor code")), ("os", N_("host OS")),
                                      ("app", N_("process")), ("vm", N_("guest"))))
    return HTML(f"<div class='labkit-type-stacks'><table style='width:100%;border-collapse:separate'>"
                f"<tr>{titles}</tr><tr>{stacks}</tr></table><p style='font-size:smaller'>{legend}</p></div>")
