"""View for notebook 06: the console of the Linux guest that labkit's own VMM boots (inside L1 where needed)."""

from __future__ import annotations

from labkit.i18n import noop as N_
from labkit.widgets.qemu import ConsoleView


def own_console() -> ConsoleView:
    """A console view for the guest of labkit's VMM (its own CSS class, for the browser test)."""
    view = ConsoleView(lines=18, title=N_("the guest's console, through labkit's UART"))
    view.widget.add_class("labkit-vmm-console")
    return view
