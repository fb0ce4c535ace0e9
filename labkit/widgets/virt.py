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

from labkit import virt
from labkit.errors import LabkitError
from labkit.i18n import _
from labkit.i18n import noop as N_
from labkit.lessons import hypervisor
from labkit.widgets.qemu import Page
from labkit.widgets.static import StaticFallback

_COLOURS = {"running": "#2e7d32", "paused": "#ef6c00", "shut off": "#616161", "crashed": "#c62828"}


def render(name: str, stats: virt.DomainStats | None, events: list[virt.LifecycleEvent]) -> str:
    """The dashboard's HTML for a domain's latest stats (None once it is gone) and its events."""
    if stats is None:
        state, rows = "undefined", []
    else:
        state = stats.state
        rows = [(_("state"), f"<b style='color:{_COLOURS.get(state, '#000')}'>{html.escape(_(state))}</b>")]
        if state not in ("shut off", "crashed"):  # a stopped domain's counters are leftovers: not shown
            rows += [(_("CPU time"), _("{vcpu_s:.2f} s in vCPUs, {qemu_s:.2f} s for all of QEMU").format(
                          vcpu_s=stats.vcpu_time_ns / 1e9, qemu_s=stats.cpu_time_ns / 1e9)),
                     ("vCPUs", str(stats.vcpus)),
                     (_("memory"), _("{used} MiB of {total} MiB").format(used=stats.memory_kib >> 10,
                                                                         total=stats.max_memory_kib >> 10)),
                     (_("host RSS of QEMU"), f"{stats.rss_kib >> 10} MiB")]
    table = "".join(f"<tr><th style='text-align:left;padding-right:1em'>{k}</th><td>{v}</td></tr>"
                    for k, v in rows) or "<tr><td>" + _("the domain is gone (destroyed and undefined)") + "</td></tr>"
    log = "".join(f"<li><code>{html.escape(str(e))}</code></li>" for e in events)
    return (f"<div class='labkit-virt-dashboard' data-state='{state}' style='border:1px solid #ccc;"
            f"border-radius:6px;padding:.5em 1em'><b>{html.escape(name)}</b><table>{table}</table>"
            "<small>" + _("lifecycle events (libvirt pushed these):") + f"</small><ul>{log}</ul></div>")


#: Which controls make sense in which domain state: a button is enabled exactly when its action can work.
#: ``stop`` pulls the plug (``virsh destroy``): the tiny guest has no ACPI daemon to honour a polite shutdown.
ACTIONS_BY_STATE: dict[str, tuple[str, ...]] = {
    "shut off": ("start", "end"),
    "crashed": ("start", "end"),
    "running": ("pause", "stop", "end"),
    "blocked": ("pause", "stop", "end"),
    "paused": ("resume", "stop", "end"),
}
#: The dashboard's buttons, in order: label, what it does (the virsh command), tooltip.
BUTTONS: tuple[tuple[str, str], ...] = (
    (N_("start"), N_("boot the guest (virsh start)")),
    (N_("pause"), N_("stop its vCPUs; QEMU and its memory stay (virsh suspend)")),
    (N_("resume"), N_("let its vCPUs run again (virsh resume)")),
    (N_("stop"), N_("pull the plug: QEMU is killed, the definition stays (virsh destroy)")),
    (N_("end"), N_("destroy and undefine: the guest and its definition are gone (virsh destroy; virsh undefine)")),
)
#: The states a dashboard shows, as the learner reads them (libvirt's words stay the data).
STATE_WORDS = (N_("running"), N_("paused"), N_("shut off"), N_("crashed"), N_("blocked"), N_("undefined"))


def enabled_actions(state: str) -> tuple[str, ...]:
    """The buttons that can act on a domain in ``state`` ('undefined' once it is gone: none)."""
    return ACTIONS_BY_STATE.get(state, ("stop", "end") if state != "undefined" else ())


class Dashboard(StaticFallback, w.VBox):
    """State and stats of ``domain``, redrawn on every lifecycle event and every ``interval`` s.

    The buttons (start, pause, resume, stop, end) are enabled from the
    domain's *real* state at each redraw, so after Run All they show what
    can be done now, not what could be done when the cell ran.  The guest
    stays as it is until the learner acts: the dashboard never stops it.
    The event listener only wakes the dashboard's own thread, which asks
    libvirt for stats: no libvirt call runs inside libvirt's event callback.
    """

    def __init__(self, domain: virt.Domain, interval: float = 0.5) -> None:
        self.domain = domain
        self.view = w.HTML()
        self.view.add_class("labkit-virt-view")  # the drawing each redraw replaces (a test watches it)
        self.state = "undefined"  # the state last drawn: a libvirt state, or 'undefined' once the domain is gone
        actions = {"start": domain.start, "pause": domain.suspend, "resume": domain.resume,
                   "stop": domain.destroy, "end": domain.close}
        self.buttons: dict[str, w.Button] = {}
        for label, tooltip in BUTTONS:
            button = w.Button(description=_(label), tooltip=_(tooltip), layout=w.Layout(width="7em"))
            button.on_click(lambda _b, act=actions[label]: self.act(act))
            self.buttons[label] = button
        self.message = w.HTML()
        self.message.add_class("labkit-virt-message")  # what a button press answered
        super().__init__([self.view, w.HBox(list(self.buttons.values())), self.message])
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
        self.state = stats.state if stats is not None else "undefined"
        allowed = enabled_actions(self.state)
        for label, button in self.buttons.items():
            button.disabled = label not in allowed
        # a CSS hook for "this dashboard can still act": a test (and a style) can find the live one
        (self.add_class if allowed else self.remove_class)("labkit-virt-live")
        return stats is not None

    def act(self, action: Callable[[], None]) -> None:
        """Do what a button does: run ``action``, show a refusal (libvirt's words) instead of raising, redraw."""
        try:
            action()
            self.message.value = ""
        except LabkitError as exc:
            self.message.value = f"<span style='color:#c62828'>{html.escape(str(exc.what))}</span>"
        self.refresh()

    @property
    def live(self) -> bool:
        """Whether some button can still act (the ``labkit-virt-live`` CSS class a style or a test finds)."""
        return "labkit-virt-live" in self._dom_classes

    @property
    def watching(self) -> bool:
        """Whether the dashboard's thread still redraws (it ends by itself once the domain is gone)."""
        return self._ticker.is_alive()

    def wait_stopped(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for the redrawing thread to end; whether it did."""
        self._ticker.join(timeout)
        return not self._ticker.is_alive()

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

    def static_html(self) -> str:
        """The dashboard as drawn now (state, counters, events), for viewers without the widget manager."""
        return self.view.value


#: A table cell that reads left to right (JupyterLab right-aligns table cells, made for numbers).
_TD = "<td style='text-align:left;vertical-align:top'>"


def _breakable(text: str) -> str:
    """HTML of ``text`` with break opportunities after , / = : (a long QEMU option wraps, it is not clipped)."""
    escaped = html.escape(text)
    for mark in (",", "/", "=", ":"):
        escaped = escaped.replace(mark, mark + "<wbr>")
    return escaped


def command_line_table(rows: Iterable[virt.OptionRow]) -> Page:
    """libvirt's QEMU command line next to labkit.qemu's, option by option; differences shaded.

    Static HTML, not a widget: it is saved with the notebook and shows before any run.  Long values
    wrap at commas, slashes and '=' so the table fits the page.
    """
    def cell(values: tuple[str, ...]) -> str:
        return "<br>".join("<code>" + (_breakable(v) or _("(flag)")) + "</code>" for v in values) or "—"
    body = "".join(
        f"<tr style='background:{'#fff' if r.libvirt == r.labkit else '#fff8e1'}'>{_TD}<code>"
        f"{html.escape(r.option)}</code></td>{_TD}{cell(r.libvirt)}</td>{_TD}{cell(r.labkit)}</td></tr>"
        for r in rows)
    return Page("<table class='labkit-cmdline' style='table-layout:fixed;width:100%'>"
                "<colgroup><col style='width:14%'><col style='width:43%'><col style='width:43%'></colgroup>"
                + _row_of_headers(_("option"), _("libvirt generated"), _("labkit.qemu builds")) + f"{body}</table>")


def stack_table(layers: Iterable[hypervisor.Layer]) -> Page:
    """The KVM stack, top (libvirt) to bottom (hardware): role, where you ran it, what shows it here (static HTML)."""
    body = "".join(f"<tr><th style='text-align:left'>{html.escape(str(l.name))}</th>{_TD}{html.escape(str(l.role))}"
                   f"</td>{_TD}{html.escape(str(l.you_ran))}</td>{_TD}{_breakable(str(l.here))}</td></tr>"
                   for l in reversed(tuple(layers)))
    headers = _row_of_headers(_("layer"), _("its job"), _("you ran"), _("on this host"))
    return Page(f"<table class='labkit-stack'>{headers}{body}</table>")


def _row_of_headers(*titles: str) -> str:
    return "<tr>" + "".join(f"<th>{html.escape(t)}</th>" for t in titles) + "</tr>"
