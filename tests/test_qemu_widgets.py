"""labkit.widgets.qemu: the views notebook 04 shows (fed with recorded data, no QEMU)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

from conftest import FIXTURES  # noqa: E402
from labkit import host, images, qemu  # noqa: E402
from labkit.lessons import payload
from labkit.widgets import qemu as views  # noqa: E402

REPORT = images.parse_report((FIXTURES / "consoles" / "tiny-tcg.txt").read_text())


def test_console_view_shows_the_tail_as_text() -> None:
    view = views.ConsoleView(lines=2)
    assert "waiting for the guest" in view.pre.value
    view.append("one\r\ntwo\r\n")
    view.append("three <b>\r\n")
    assert view.text == "one\ntwo\nthree <b>\n"
    assert "one" not in view.pre.value and "three &lt;b&gt;" in view.pre.value  # escaped, last 2 lines


def test_guest_vs_host_table() -> None:
    table = views.guest_vs_host(REPORT, host.inspect(FIXTURES / "hosts" / "pvm-nested")).markup  # static HTML
    assert "QEMU TCG" in table and "AMD-V" in table and "<th>guest</th>" in table


def test_plot_accelerators() -> None:
    choice = qemu.AccelChoice("tcg", "auto", "test")
    run = payload.PayloadResult(choice, 3, 1000, payload.EXIT_STATUS, 0.03, 2000, 0.001, 0.05, "", ())
    times = qemu.BootTimes(0.7, 1.3, 1.35, 0.8)
    boot = qemu.BootResult(REPORT, times, choice, qemu.MachineConfig(machine="microvm"), (), "", 0)
    fig = views.plot_accelerators([run], [boot, boot])
    left, right = fig.axes
    assert [t.get_text() for t in left.get_xticklabels()] == ["TCG\nring 3"]
    assert [round(p.get_height(), 2) for p in right.patches] == [0.5, 0.8, 0.05]
    fig.canvas.draw()
    legend = right.get_legend().get_window_extent()
    assert not any(legend.overlaps(bar.get_window_extent()) for bar in right.patches)  # the legend covers no bar
    assert legend.y1 <= right.get_window_extent().y0  # it sits below the plot


def test_views_show_a_sentence_where_no_widget_manager_runs(monkeypatch) -> None:
    """GitHub, nbviewer, a notebook opened without its kernel: a sentence, never `VBox(children=(…`."""
    shown = []
    monkeypatch.setattr(views, "display", lambda bundle, raw: shown.append(bundle))  # what goes to IPython
    views.ConsoleView()._ipython_display_()
    assert shown[0]["text/plain"] == "serial console (ttyS0): (waiting for the guest…)"
    assert "waiting for the guest" in shown[0]["text/html"]
    assert "application/vnd.jupyter.widget-view+json" in shown[0]
    table = views.guest_vs_host(REPORT, host.inspect(FIXTURES / "hosts" / "pvm-nested"))._repr_mimebundle_()
    assert "QEMU TCG" in table["text/plain"] and "IPython" not in table["text/plain"]  # words, not a repr
