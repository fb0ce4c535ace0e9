"""View for notebook 04's "KVM inside an emulator": the console of the guest booted inside L1."""

from __future__ import annotations

from labkit.i18n import noop as N_
from labkit.widgets.qemu import ConsoleView


def inner_console() -> ConsoleView:
    """A console view for L2 (its own CSS class: the browser test finds it apart from the host guest's)."""
    view = ConsoleView(title=N_("L2's console, inside the emulated AMD-V machine"))
    view.widget.add_class("labkit-nested-console")
    return view
