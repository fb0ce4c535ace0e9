"""The exit stepper: run a KVM guest one VM exit at a time and watch the vCPU.

Each press of *Step* is one ``KVM_RUN``: the view shows why the guest exited,
the registers, the code around RIP (→ marks RIP) and the serial output so
far.  *Run to end* runs the rest at full speed; *Restart* builds a fresh VM.
Everything shown comes from :class:`labkit.kvm.machine.Step`.
"""

from __future__ import annotations

import html
from collections.abc import Callable

import ipywidgets as w

from labkit.errors import LabkitError
from labkit.i18n import _
from labkit.kvm.machine import Machine, Step, format_code
from labkit.widgets.static import html_to_text

_PRE = "<pre style='margin:0; font-size:12px; line-height:1.3'>{}</pre>"


def _pre(text: str) -> str:
    return _PRE.format(html.escape(text))


class ExitStepper:
    """An ipywidgets view that steps a :class:`Machine` exit by exit.

    ``guest`` is a guest name or a callable returning a new Machine (so
    *Restart* can build another).  Display the stepper itself in a cell.
    Its parts are public, so a test reads what the learner sees: ``title`` (the
    state after the last step), ``registers``, ``code``, ``serial`` and the
    ``step_button``, ``finish_button`` and ``restart_button``.
    """

    def __init__(self, guest: str | Callable[[], Machine]) -> None:
        self._make = (lambda: Machine(guest)) if isinstance(guest, str) else guest
        self.machine: Machine | None = None
        self.steps: list[Step] = []
        self.step_button = w.Button(description=_("Step"), icon="step-forward", tooltip=_("one KVM_RUN"))
        self.finish_button = w.Button(description=_("Run to end"), icon="fast-forward")
        self.restart_button = w.Button(description=_("Restart"), icon="refresh")
        self.title = w.HTML()
        self.registers = w.HTML(layout=w.Layout(width="62%"))
        self.code = w.HTML(layout=w.Layout(width="38%"))
        self.serial = w.HTML()
        self.step_button.on_click(lambda _: self.step())
        self.finish_button.on_click(lambda _: self.run_to_end())
        self.restart_button.on_click(lambda _: self.restart())
        self.title.add_class("labkit-exit-state")  # the part each step redraws
        self.widget = w.VBox([w.HBox([self.step_button, self.finish_button, self.restart_button]), self.title,
                              w.HBox([self.registers, self.code]), self.serial])
        self.widget.add_class("labkit-exit-stepper")
        self.restart()

    def restart(self) -> None:
        """Close the current VM and start the guest again on a new one."""
        self.close()
        self.machine = self._make()
        self.steps = []
        regs, special = self.machine.registers(), self.machine.special()
        self.title.value = _("<b>ready</b>: {cpu}, nothing has run yet").format(cpu=html.escape(special.describe()))
        self.registers.value = _pre(regs.table(special.bits) + "\n" + special.table())
        self.code.value = _pre(format_code(self.machine.code_at_rip(regs, special)))
        self.serial.value = _pre("serial: ''")
        self._buttons(True)

    def step(self) -> Step | None:
        """One exit; shows it and returns it (None once the guest has stopped or failed)."""
        if self.machine is None or self.machine.finished:
            return None
        try:
            step = self.machine.step()
        except LabkitError as exc:
            self._failed(exc)
            return None
        self.steps.append(step)
        self._show(step)
        return step

    def run_to_end(self) -> None:
        """Run the rest of the guest at full speed (no per-exit view)."""
        if self.machine is None or self.machine.finished:
            return
        try:
            result = self.machine.run()
        except LabkitError as exc:
            self._failed(exc)
            return
        self.title.value = _("<b>finished</b>: {stopped_by} after {exits} exits").format(
            stopped_by=html.escape(result.stopped_by), exits=result.total_exits)
        self.registers.value = _pre(result.registers.table(result.special.bits) + "\n" + result.special.table()
                                + "\n\n" + _("exits by reason:") + "\n" + result.exit_table())
        self.code.value = ""
        self.serial.value = _pre(f"serial: {result.serial!r}")
        self._buttons(False)

    def _failed(self, exc: LabkitError) -> None:
        """A guest error ends the run: show its message and register dump."""
        self.title.value = f"<b style='color:#b00'>{html.escape(type(exc).__name__)}</b>"
        self.registers.value = _pre(str(exc))
        self.code.value = ""
        self._buttons(False)

    def _show(self, step: Step) -> None:
        assert self.machine is not None  # a step was taken on it
        done = _(" — guest stopped ({how})").format(how=self.machine.finished) if self.machine.finished else ""
        self.title.value = f"<b>exit {step.index}</b>: {html.escape(str(step.exit))}{html.escape(done)}"
        self.registers.value = _pre(_("cpu: {state}").format(state=step.special.describe()) + "\n"
                                    + f"{step.registers.table(step.special.bits)}\n{step.special.table()}")
        self.code.value = _pre(format_code(step.code))
        self.serial.value = _pre(_("serial so far: {serial!r}").format(serial=step.serial))
        self._buttons(not self.machine.finished)

    def _buttons(self, running: bool) -> None:
        self.step_button.disabled = self.finish_button.disabled = not running

    def close(self) -> None:
        if self.machine is not None:
            self.machine.close()
            self.machine = None

    def static_html(self) -> str:
        """The stepper as drawn now, without its buttons (they need a kernel)."""
        return "".join(part.value for part in (self.title, self.registers, self.code, self.serial))

    def _repr_mimebundle_(self, **kwargs) -> dict:
        """The live view; where no widget manager runs, its current picture (see labkit.widgets.static)."""
        bundle = self.widget._repr_mimebundle_(**kwargs)
        bundle["text/html"] = self.static_html()
        bundle["text/plain"] = html_to_text(bundle["text/html"])
        return bundle
