"""Notebook 05's dashboard: its buttons follow the domain's real state, and it outlives a stopped guest.

On libvirt's in-process mock driver (test:///default): the logic, not a boot.
"""

from __future__ import annotations

import pytest

from framework import defined, mock_connection, spec, stand_in_files  # noqa: F401 - fixtures
from labkit import virt
from labkit.widgets import virt as virt_widgets


@pytest.mark.parametrize("state, actions", [
    ("shut off", ("start", "end")),
    ("running", ("pause", "stop", "end")),
    ("paused", ("resume", "stop", "end")),
    ("crashed", ("start", "end")),
    ("shutting down", ("stop", "end")),
    ("undefined", ()),
])
def test_enabled_actions(state: str, actions: tuple[str, ...]) -> None:
    assert virt_widgets.enabled_actions(state) == actions


def enabled(board: virt_widgets.Dashboard) -> set[str]:
    return {label for label, button in board.buttons.items() if not button.disabled}


def test_buttons_follow_the_real_state_through_a_whole_life(conn: virt.Connection, files) -> None:
    dom = conn.define(spec(files))
    board = virt_widgets.Dashboard(dom, interval=0.05)
    try:
        assert board.state == "shut off" and enabled(board) == {"start", "end"}
        assert board.live
        board.buttons["start"].click()
        assert dom.state == "running" and enabled(board) == {"pause", "stop", "end"}
        board.buttons["pause"].click()
        assert dom.state == "paused" and enabled(board) == {"resume", "stop", "end"}
        board.buttons["resume"].click()
        board.buttons["stop"].click()
        assert dom.state == "shut off" and board.state == "shut off" and enabled(board) == {"start", "end"}
        assert board.watching  # a stopped guest is not the end of the dashboard: it can start again
        board.buttons["end"].click()
        assert not defined(conn, dom.name) and board.state == "undefined" and enabled(board) == set()
        assert not board.live
        assert board.wait_stopped(5)  # nothing left to watch
    finally:
        board.stop()
        dom.close()


def test_a_state_changed_elsewhere_redraws_the_buttons(conn: virt.Connection, files) -> None:
    """A cell (or virsh) starts the guest: the next redraw enables what fits, without any press."""
    with conn.define(spec(files)) as dom:
        board = virt_widgets.Dashboard(dom, interval=0.05)
        dom.start()
        board.refresh()
        assert enabled(board) == {"pause", "stop", "end"}
        board.stop()


def test_a_refused_action_is_shown_not_raised(conn: virt.Connection, files) -> None:
    with conn.define(spec(files)) as dom:
        board = virt_widgets.Dashboard(dom, interval=0.05)
        board.act(dom.suspend)  # not running: libvirt refuses
        assert "suspend" in board.message.value and board.state == "shut off"
        board.stop()


def test_saved_output_is_a_picture_not_the_widget_tree(conn: virt.Connection, files) -> None:
    with conn.define(spec(files)) as dom:
        board = virt_widgets.Dashboard(dom)
        bundle = board._repr_mimebundle_()
        assert "data-state='shut off'" in bundle["text/html"] and "application/vnd.jupyter.widget-view+json" in bundle
        assert dom.name in bundle["text/plain"] and "shut off" in bundle["text/plain"]
        assert "children=" not in bundle["text/plain"]
        board.stop()


def test_command_line_table_wraps_long_values_and_fits_the_page() -> None:
    row = virt.OptionRow("-append", ("console=ttyS0 quiet panic=-1",), ("/root/.cache/labkit/images/x,y=z",))
    shown = virt_widgets.command_line_table([row])._repr_mimebundle_()  # static: saved with the notebook
    table = shown["text/html"]
    assert "table-layout:fixed;width:100%" in table
    assert "/<wbr>root/<wbr>.cache" in table and "x,<wbr>y=<wbr>z" in table
    assert "-append" in shown["text/plain"] and "IPython" not in shown["text/plain"]  # words, not a repr
