"""A live dashboard of one libvirt domain: state, CPU time, memory, lifecycle events.

It redraws when libvirt sends a lifecycle event (the :class:`~labkit.virt.Domain`
listener runs on libvirt's event loop thread) and, while the guest runs, a few
times a second for the counters, which libvirt reports only when asked.
The buttons call the same :class:`~labkit.virt.Domain` methods a cell would.
"""

from __future__ import annotations

import html
import threading
from collections.abc import Callable, Iterable

import ipywidgets as w

from labkit import hypervisor, virt
from labkit.errors import LabkitError

_COLOURS = {"running": "#2e7d32", "paused": "#ef6c00", "shut off": "#616161", "crashed": "#c62828"}


def render(name: str, stats: virt.DomainStats | None, events: list[virt.LifecycleEvent]) -> str:
    """The dashboard's HTML for a domain's latest stats (None once it is gone) and its events."""
    if stats is None:
        state, rows = "undefined", []
    else:
        state = stats.state
        rows = [("state", f"<b style='color:{_COLOURS.get(state, '#000')}'>{state}</b>")]
        if state not in ("shut off", "crashed"):  # a stopped domain's counters are leftovers: not shown
            rows += [("CPU time", f"{stats.vcpu_time_ns / 1e9:.2f} s in vCPUs, {stats.cpu_time_ns / 1e9:.2f} s "
                                  "for all of QEMU"),
                     ("vCPUs", str(stats.vcpus)),
                     ("memory", f"{stats.memory_kib >> 10} MiB of {stats.max_memory_kib >> 10} MiB"),
                     ("host RSS of QEMU", f"{stats.rss_kib >> 10} MiB")]
    table = "".join(f"<tr><th style='text-align:left;padding-right:1em'>{k}</th><td>{v}</td></tr>"
                    for k, v in rows) or "<tr><td>the domain is gone (destroyed and undefined)</td></tr>"
    log = "".join(f"<li><code>{html.escape(str(e))}</code></li>" for e in events)
    return (f"<div class='labkit-virt-dashboard' data-state='{state}' style='border:1px solid #ccc;"
            f"border-radius:6px;padding:.5em 1em'><b>{html.escape(name)}</b><table>{table}</table>"
            f"<small>lifecycle events (libvirt pushed these):</small><ul>{log}</ul></div>")


class Dashboard(w.VBox):
    """State and stats of ``domain``, redrawn on every lifecycle event and every ``interval`` s.

    The event listener only wakes the dashboard's own thread, which asks
    libvirt for stats: no libvirt call runs inside libvirt's event callback.
    """

    def __init__(self, domain: virt.Domain, interval: float = 0.5) -> None:
        self.domain = domain
        self.view = w.HTML()
        buttons = []
        for label, action in (("suspend", domain.suspend), ("resume", domain.resume),
                              ("shutdown", domain.shutdown), ("destroy", domain.destroy)):
            button = w.Button(description=label, layout=w.Layout(width="8em"))
            button.on_click(lambda _b, act=action: self._act(act))
            buttons.append(button)
        self.message = w.HTML()
        self.message.add_class("labkit-virt-message")  # what a button press answered
        super().__init__([self.view, w.HBox(buttons), self.message])
        self.add_class("labkit-virt")
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._unlisten = domain.on_event(lambda _e: self._wake.set())
        self.refresh()
        self._ticker = threading.Thread(target=self._tick, args=(interval,), name="labkit-virt-dashboard",
                                        daemon=True)
        self._ticker.start()

    def refresh(self) -> bool:
        """Redraw from the domain's current stats and events; False once the domain is gone."""
        try:
            stats = self.domain.stats()
        except LabkitError:  # undefined, or the connection is gone
            stats = None
        self.view.value = render(self.domain.name, stats, list(self.domain.events))
        return stats is not None

    def _act(self, action: Callable[[], None]) -> None:
        try:
            action()
            self.message.value = ""
        except LabkitError as exc:
            self.message.value = f"<span style='color:#c62828'>{html.escape(exc.what)}</span>"

    def _tick(self, interval: float) -> None:
        while not self._stop.is_set():
            self._wake.wait(interval)
            self._wake.clear()
            if not self.refresh():
                break
        self.stop()

    def stop(self) -> None:
        """Stop redrawing (the last picture stays); the dashboard stops by itself once the domain is gone."""
        self._stop.set()
        self._wake.set()
        self._unlisten()


def command_line_table(rows: Iterable[virt.OptionRow]) -> w.HTML:
    """libvirt's QEMU command line next to labkit.qemu's, option by option; differences shaded."""
    def cell(values: tuple[str, ...]) -> str:
        return "<br>".join(f"<code>{html.escape(v) or '(flag)'}</code>" for v in values) or "—"
    body = "".join(
        f"<tr style='background:{'#fff' if r.libvirt == r.labkit else '#fff8e1'}'><td><code>"
        f"{html.escape(r.option)}</code></td><td>{cell(r.libvirt)}</td><td>{cell(r.labkit)}</td></tr>"
        for r in rows)
    return w.HTML("<table class='labkit-cmdline'><tr><th>option</th><th>libvirt generated</th>"
                  f"<th>labkit.qemu builds</th></tr>{body}</table>")


def stack_table(layers: Iterable[hypervisor.Layer]) -> w.HTML:
    """The KVM stack, top (libvirt) to bottom (hardware): role, where you ran it, what shows it here."""
    body = "".join(f"<tr><th style='text-align:left'>{html.escape(l.name)}</th><td>{html.escape(l.role)}</td>"
                   f"<td>{html.escape(l.you_ran)}</td><td>{html.escape(l.here)}</td></tr>"
                   for l in reversed(tuple(layers)))
    return w.HTML("<table class='labkit-stack'><tr><th>layer</th><th>its job</th><th>you ran</th>"
                  f"<th>on this host</th></tr>{body}</table>")
